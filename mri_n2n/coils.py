"""Multi-coil (parallel imaging) physics and coil-sensitivity estimation.

**Model.** A receive array of ``C`` coils sees the image ``x`` weighted by each coil's
sensitivity ``S_c``; each coil's k-space is sampled on the same mask ``M``::

    y_c = M F (S_c x),        A = M F S,        A^H y = sum_c conj(S_c) F^-1 (M y_c)

with ``F`` the centred orthonormal FFT of :mod:`mri_n2n.fft`. :class:`SenseOperator` implements
``A``, its adjoint, the normal operator, coil combination, zero-filling, two kinds of data
consistency for a network output (per-coil replacement, :meth:`SenseOperator.project`, and the
exact proximal/CG-SENSE step, :meth:`SenseOperator.cg_dc`) and fastMRI's output image, the
root-sum-of-squares of the per-coil data-consistent coil images (:meth:`SenseOperator.coil_rss`).

**Conventions.** Images ``(B, H, W)`` complex; multi-coil k-space and coil images
``(B, C, H, W)`` complex; maps ``(C, H, W)`` (shared by the batch) or ``(B, C, H, W)``; masks
``(H, W)`` or ``(B, H, W)`` (bool or 0/1), shared by all coils, phase-encode lines along the last
dim as in :mod:`mri_n2n.masks`. Estimated maps are normalised so that ``sum_c |S_c|^2 = 1`` where
there is signal and are zero elsewhere; then ``S^H S = 1`` on the support, the SENSE-1
combination ``sum_c conj(S_c) x_c`` is the least-squares coil combination, and a full mask gives
``A^H A x = x`` on the support.

**Estimation** from the fully sampled k-space centre (the calibration region, "ACS"):
:func:`espirit_maps` (ESPIRiT, Uecker et al. 2014: calibration matrix, SVD, signal-subspace
kernels to image space, per-pixel eigen-decomposition), :func:`walsh_maps` (adaptive combine,
Walsh et al. 2000, on low-resolution coil images, its eigenproblems on a coarse grid: a fast
fallback) and :func:`estimate_maps`, which finds the calibration region itself
(:func:`find_calibration`). They take and return numpy or torch ``(C, H, W)`` or ``(B, C, H, W)``.
:func:`birdcage_maps` makes analytic sensitivities for tests and synthetic data.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .coil_maps import (  # noqa: F401  (re-exported: the estimation API lives in coil_maps)
    _complex,
    espirit_maps,
    estimate_maps,
    find_calibration,
    rss,
    walsh_maps,
)
from .fft import fft2c, ifft2c
from .solvers import conjugate_gradient

__all__ = [
    "SenseOperator",
    "rss",
    "normalize_maps",
    "birdcage_maps",
    "find_calibration",
    "espirit_maps",
    "walsh_maps",
    "estimate_maps",
    "compress_coils",
]

Array = torch.Tensor | np.ndarray


#: Most multi-coil k-space elements (samples x coils x H x W) :meth:`SenseOperator.cg_dc` works
#: on at once; larger batches are solved in chunks of samples (the same result: every sample has
#: its own step sizes). A 16-coil 320 x 320 slice (1.6 M) is one chunk: on 2 CPU cores chunks of
#: one slice ran the 6-iteration solve 2.7x faster than four slices at once, whose 52 MB
#: temporaries were allocated and page-faulted afresh in every operation.
CG_CHUNK_ELEMENTS = 2**21


class SenseOperator:
    """The multi-coil sampling operator ``A = M F S`` (SENSE) for one batch of maps and masks.

    Args:
        maps: complex coil sensitivities ``(C, H, W)`` (shared by the batch) or ``(B, C, H, W)``.
            The identities of the docstrings below that say "normalised maps" need
            ``sum_c |S_c|^2 = 1`` on the support (what the estimators return; see
            :func:`normalize_maps`).
        mask: bool or 0/1 mask ``(H, W)`` or ``(B, H, W)``, shared by all coils.

    Every method is batched, differentiable (also w.r.t. the maps) and runs on the maps'
    device (CPU or CUDA); inputs are promoted to the maps' complex dtype (or a wider one) and
    moved to their device. Images are ``(B, H, W)`` complex (real is promoted), multi-coil
    k-space ``(B, C, H, W)``.

    Raises:
        ValueError: maps not 3-D/4-D, mask not 2-D/3-D, or their ``(H, W)`` differ.
    """

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor) -> None:
        if maps.ndim not in (3, 4):
            raise ValueError(f"maps must be (C, H, W) or (B, C, H, W), got shape {tuple(maps.shape)}")
        if mask.ndim not in (2, 3):
            raise ValueError(f"mask must be (H, W) or (B, H, W), got shape {tuple(mask.shape)}")
        if tuple(mask.shape[-2:]) != tuple(maps.shape[-2:]):
            raise ValueError(f"mask {tuple(mask.shape)} and maps {tuple(maps.shape)} differ in (H, W)")
        maps = _complex(maps)
        self.maps = maps if maps.ndim == 4 else maps.unsqueeze(0)
        self.mask = mask.to(self.maps.device).bool()
        self._lines: bool | None = None  # the mask is whole lines along H (:meth:`normal`)
        self._shifted: torch.Tensor | None = None  # the mask as :meth:`normal` applies it
        self._conj: torch.Tensor | None = None  # conj(S), resolved once for inference

    @property
    def n_coils(self) -> int:
        """Number of coils ``C``."""
        return self.maps.shape[-3]

    def _m(self) -> torch.Tensor:
        return self.mask.unsqueeze(-3) if self.mask.ndim == 3 else self.mask  # (B, 1, H, W) or (H, W)

    def _s(self, like: torch.Tensor) -> torch.Tensor:
        return self.maps.to(dtype=torch.promote_types(self.maps.dtype, like.dtype))

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``(B, H, W)`` -> coil images ``S x``, ``(B, C, H, W)``."""
        x = _complex(x, self.maps)
        return self._s(x) * x.unsqueeze(-3)

    def reduce(self, u: torch.Tensor) -> torch.Tensor:
        """Coil images ``(B, C, H, W)`` -> image ``sum_c conj(S_c) u_c`` ``(B, H, W)`` (adjoint of
        :meth:`expand`; the SENSE-1 / least-squares combination for normalised maps)."""
        u = _complex(u, self.maps)
        return (self._s(u).conj() * u).sum(dim=-3)

    def sample(self, y: torch.Tensor) -> torch.Tensor:
        """``M y_c`` for every coil: multi-coil k-space ``(B, C, H, W)`` with its unsampled bins
        zeroed, e.g. the measurements of coil spectra already in k-space (:meth:`forward` is
        ``sample(F S x)``)."""
        y = _complex(y, self.maps)
        return y * self._m().to(y.real.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``(B, H, W)`` -> masked multi-coil k-space ``M F S x``, ``(B, C, H, W)``."""
        return self.sample(fft2c(self.expand(x)))

    __call__ = forward

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Multi-coil k-space ``(B, C, H, W)`` -> image ``sum_c conj(S_c) F^-1 (M y_c)``, ``(B, H, W)``.

        The exact adjoint of :meth:`forward` (``<A x, y> = <x, A^H y>``); the mask is applied, so
        unmasked data give the same result as masked data.
        """
        return self.reduce(self.coil_images(y))

    def _masked(self, u: torch.Tensor, keep: bool = True, inplace: bool = False) -> torch.Tensor:
        """``F^-1 M F u`` (``keep``) or ``F^-1 (1 - M) F u`` for coil images ``(B, C, H, W)`` of
        even sizes. ``F_c^-1 M F_c = F^-1 ifftshift(M) F`` (the shifts' sign flips cancel), and
        a mask of whole lines (constant along ``H``) leaves 1-D FFTs along ``W``: twice as fast.
        ``inplace`` (outside autograd) reuses the transform's buffer for the masking."""
        if self._shifted is None:  # once per operator (the line test is a device sync)
            m = torch.fft.ifftshift(self._m(), dim=(-2, -1))
            self._lines = bool((m == m[..., :1, :]).all())
            self._shifted = m[..., :1, :] if self._lines else m
        m = self._shifted if keep else ~self._shifted
        m = m.to(u.real.dtype)
        if self._lines:  # whole lines along H
            k = torch.fft.fft(u, dim=-1, norm="ortho")
            return torch.fft.ifft(k.mul_(m) if inplace else k * m, dim=-1, norm="ortho")
        k = torch.fft.fft2(u, norm="ortho")
        return torch.fft.ifft2(k.mul_(m) if inplace else k * m, norm="ortho")

    def _even(self) -> bool:
        h, w = self.mask.shape[-2:]
        return h % 2 == 0 and w % 2 == 0

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x`` for an image ``(B, H, W)`` (``x`` on the support for a full mask). For even
        sizes by uncentred FFTs, 1-D ones for masks of whole lines (:meth:`_masked`). Outside
        autograd (inference, baselines) the coil images are updated in place, which saves two
        of the five passes over them."""
        if not self._even():
            return self.adjoint(self.forward(x))
        x = _complex(x, self.maps)
        s = self._s(x)
        grad = torch.is_grad_enabled() and (x.requires_grad or s.requires_grad)
        u = self._masked(s * x.unsqueeze(-3), inplace=not grad)
        if grad:
            return (s.conj() * u).sum(dim=-3)
        if self._conj is None or self._conj.dtype != s.dtype:
            self._conj = s.conj().resolve_conj()
        return u.mul_(self._conj).sum(dim=-3)

    def coil_images(self, y: torch.Tensor) -> torch.Tensor:
        """The zero-filled coil images ``F^-1 (M y_c)``, ``(B, C, H, W)`` (their root-sum-of-squares
        is the usual zero-filled baseline; :meth:`coil_rss` reuses them)."""
        return ifft2c(self.sample(y))

    def combine(self, y: torch.Tensor) -> torch.Tensor:
        """Coil combination ``sum_c conj(S_c) F^-1 y_c`` of (unmasked, e.g. fully sampled)
        multi-coil k-space ``(B, C, H, W)`` -> image ``(B, H, W)``; for data ``F S x`` and
        normalised maps it returns ``x`` on the support. See :func:`rss` for the map-free
        magnitude combination."""
        y = _complex(y, self.maps)
        return self.reduce(ifft2c(y))

    def zero_filled(self, y: torch.Tensor, density: torch.Tensor | None = None) -> torch.Tensor:
        """Zero-filled SENSE-1 image ``sum_c conj(S_c) F^-1 (M y_c / p)``, ``(B, H, W)``.

        With ``density`` (the keep probability ``p`` of every k-space bin, ``(H, W)`` or
        ``(B, H, W)``, shared by the coils) each sampled value is divided by ``p`` like
        :meth:`mri_n2n.physics.SpectralSampling.zero_filled`, which makes the result unbiased
        over random masks; without it this equals :meth:`adjoint`.
        """
        y = _complex(y, self.maps)
        m = self._m().to(y.real.dtype)
        if density is not None:
            p = density.to(device=y.device, dtype=y.real.dtype)
            p = p.unsqueeze(-3) if p.ndim == 3 else p
            m = m / p.clamp_min(torch.finfo(p.dtype).tiny)
        return self.reduce(ifft2c(y * m))

    def project(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Data consistency by per-coil replacement (E2E-VarNet style), then SENSE-1 combination::

            project(x, y) = sum_c conj(S_c) F^-1 ((1 - M) F S_c x + M y_c)

        The intermediate coil k-space equals ``y`` exactly on the measured entries and ``F S x``
        elsewhere. The combined image is exact on the measured entries (``M F S project(x, y) =
        y``) and ``project`` is idempotent only when, in addition to normalised maps
        (``sum |S_c|^2 = 1`` on the support) and data consistent with the maps (``y = A x_true``),
        the replaced coil images stay in the range of ``S`` -- e.g. when ``x`` is already
        consistent (then ``project(x, y) = x``) or with one coil. With ``C > 1`` coils and a
        general ``x`` it is one step of alternating projections (onto the measured data, then
        onto the maps' range); with normalised maps it equals ``x + A^H (y - A x)`` on the
        support, a unit-step gradient (Landweber) step, which never increases the data residual
        ``||A x - y||`` but does not zero it. For exact data consistency use :meth:`cg_dc`
        (``lam -> 0`` is the exact projection onto ``{z : A z = y}``).

        Args:
            x: image estimate ``(B, H, W)`` (e.g. a network output), real or complex.
            y: measured multi-coil k-space ``(B, C, H, W)`` (entries off the mask are ignored).

        Returns:
            Complex image ``(B, H, W)``.
        """
        k = fft2c(self.expand(x))
        k = torch.where(self._m(), _complex(y, k), k)
        return self.reduce(ifft2c(k))

    def coil_rss(
        self, x: torch.Tensor, y: torch.Tensor, coil_images: torch.Tensor | None = None
    ) -> torch.Tensor:
        """fastMRI's multi-coil output: the root-sum-of-squares of the coil images of the
        per-coil data-consistent k-space (E2E-VarNet's final image)::

            coil_rss(x, y) = sqrt(sum_c |F^-1 k_c|^2),    k_c = M y_c + (1 - M) F S_c x

        Every coil's k-space holds the measurements on the measured entries and the estimate's
        ``F S_c x`` elsewhere; no coil combination by the maps is involved, so the result is in
        the data's units everywhere, outside the maps' support too. A full mask gives the
        root-sum-of-squares of the data (:func:`rss` of ``F^-1 y``) whatever ``x``; the result
        scales with ``(x, y)``.

        Args:
            x: image estimate ``(B, H, W)``, real or complex.
            y: measured multi-coil k-space ``(B, C, H, W)`` (entries off the mask are ignored).
            coil_images: :meth:`coil_images` of ``y``, when already computed.

        Returns:
            Real magnitude ``(B, H, W)``.
        """
        if not self._even():
            k = fft2c(self.expand(x))
            k = torch.where(self._m(), _complex(y, k), k)
            return rss(ifft2c(k), dim=-3)
        # F^-1 k_c = F^-1 (M y_c) + F^-1 (1 - M) F S_c x: no centring shifts, 1-D FFTs for lines
        zc = self.coil_images(y) if coil_images is None else _complex(coil_images, self.maps)
        u = self.expand(x)
        grad = torch.is_grad_enabled() and (u.requires_grad or zc.requires_grad)
        u = self._masked(u, keep=False, inplace=not grad)
        return rss(u + zc if grad else u.add_(zc), dim=-3)

    def cg_dc(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        lam: float | torch.Tensor,
        iters: int = 10,
        *,
        tol: float = 0.0,
        aty: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Proximal data consistency (MoDL's DC, CG-SENSE):
        ``argmin_z ||A z - y||^2 + lam ||z - x||^2`` by conjugate gradients
        (:func:`~mri_n2n.solvers.conjugate_gradient`).

        Solves ``(A^H A + lam I) z = A^H y + lam x`` from the warm start ``z = x``; the batch
        runs in lock-step with one step size per sample. The unrolled iterations are
        differentiable w.r.t. ``x``, ``y``, ``lam`` and the maps. ``lam -> 0`` gives the exact
        projection of ``x`` onto ``{z : A z = y}`` (the minimum-change consistent image) as far as
        ``iters`` converge; ``lam -> inf`` returns ``x``; ``x = 0`` gives Tikhonov-regularised
        SENSE (:meth:`sense`). Batches of more than :data:`CG_CHUNK_ELEMENTS` k-space elements
        are solved in chunks of samples (the same iterates; faster on a CPU).

        Args:
            x: prior image ``(B, H, W)`` (e.g. a network output), real or complex.
            y: measured multi-coil k-space ``(B, C, H, W)``.
            lam: weight ``>= 0`` of the prior, a number or a tensor broadcastable to ``(B,)``.
            iters: number of CG iterations (fixed, so the graph is the same for every batch).
            tol: if ``> 0``, stop once every sample's residual norm is below ``tol`` times its
                initial one (one device sync per iteration).
            aty: ``A^H y`` when already computed (an unrolled network reuses it in every cascade).

        Returns:
            Complex image ``(B, H, W)``. Raises ``ValueError`` for a negative ``lam`` (number) or
            ``iters``, or unbatched ``x`` / ``y``.
        """
        if iters < 0:
            raise ValueError(f"iters must be >= 0, got {iters}")
        if x.ndim != 3 or y.ndim != 4:
            raise ValueError(
                f"cg_dc needs a batch: x (B, H, W) and y (B, C, H, W), "
                f"got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if not torch.is_tensor(lam) and float(lam) < 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        per = y[0].numel()
        step = max(1, CG_CHUNK_ELEMENTS // max(per, 1))
        if y.shape[0] > step:  # samples are independent: chunks keep the coil images in cache
            lam_b = torch.as_tensor(lam)
            parts = []
            for i in range(0, y.shape[0], step):
                sl = slice(i, i + step)
                lam_i = lam_b.reshape(-1)[sl] if lam_b.numel() > 1 else lam
                parts.append(self._samples(sl).cg_dc(
                    x[sl], y[sl], lam_i, iters, tol=tol, aty=None if aty is None else aty[sl]
                ))
            return torch.cat(parts)
        z = _complex(x, self.maps)
        lam_t = torch.as_tensor(lam, device=z.device, dtype=z.real.dtype)
        if lam_t.ndim:
            lam_t = lam_t.reshape(-1, *([1] * (z.ndim - 1)))
        r = (self.adjoint(y) if aty is None else aty) - self.normal(z)  # b - (A^H A + lam) z, z = x
        return conjugate_gradient(lambda p: self.normal(p) + lam_t * p, z, r, iters, tol=tol)

    def _samples(self, sl: slice) -> SenseOperator:
        """The operator of samples ``sl`` of the batch (shared maps and masks stay shared)."""
        maps = self.maps[sl] if self.maps.shape[0] > 1 else self.maps
        mask = self.mask[sl] if self.mask.ndim == 3 and self.mask.shape[0] > 1 else self.mask
        return SenseOperator(maps, mask)

    def sense(
        self, y: torch.Tensor, lam: float | torch.Tensor = 1e-4, iters: int = 30, *, tol: float = 0.0
    ) -> torch.Tensor:
        """CG-SENSE reconstruction ``argmin_z ||A z - y||^2 + lam ||z||^2`` (:meth:`cg_dc` from
        ``x = 0``): multi-coil k-space ``(B, C, H, W)`` -> complex image ``(B, H, W)``;
        ``(C, H, W)`` -> ``(H, W)``."""
        if y.ndim == 3:
            return self.sense(y.unsqueeze(0), lam, iters, tol=tol)[0]
        shape = (y.shape[0], *self.maps.shape[-2:])
        x0 = torch.zeros(shape, dtype=torch.promote_types(self.maps.dtype, y.dtype), device=self.maps.device)
        return self.cg_dc(x0, y, lam, iters, tol=tol)


def normalize_maps(maps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale maps ``(..., C, H, W)`` so that ``sum_c |S_c|^2 = 1`` at every pixel whose RSS exceeds
    ``eps`` times the largest; the other pixels are set to zero."""
    norm = rss(maps, dim=-3).unsqueeze(-3)
    ok = norm > eps * norm.amax(dim=(-2, -1), keepdim=True)
    return torch.where(ok, maps / torch.where(ok, norm, torch.ones_like(norm)), torch.zeros_like(maps))


def birdcage_maps(
    shape: tuple[int, int],
    n_coils: int = 8,
    r: float = 1.5,
    *,
    normalize: bool = True,
    dtype: torch.dtype = torch.complex64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Analytic sensitivities ``(C, H, W)`` of ``C`` loop coils evenly spaced on a ring.

    Coil ``c`` sits at angle ``2 pi c / C`` on a circle of radius ``r`` in units of the half
    field of view (the image spans ``[-1, 1)`` in both axes, so ``r > 1`` puts the coils outside
    it). Its sensitivity at distance ``d`` is ``exp(i (phi - 2 pi c / C)) / d`` with ``phi`` the
    direction from the coil to the pixel, so all coils share one phase at the centre. With
    ``normalize`` (default) the maps satisfy ``sum_c |S_c|^2 = 1`` everywhere.

    Raises:
        ValueError: ``n_coils < 1`` or ``r <= 0``.
    """
    if n_coils < 1 or r <= 0:
        raise ValueError(f"need n_coils >= 1 and r > 0, got n_coils={n_coils}, r={r}")
    h, w = shape
    f64 = torch.float64
    v = (torch.arange(h, dtype=f64, device=device) - h / 2) / (h / 2)
    u = (torch.arange(w, dtype=f64, device=device) - w / 2) / (w / 2)
    theta = 2 * math.pi * torch.arange(n_coils, dtype=f64, device=device) / n_coils
    dx = u[None, None, :] - r * torch.cos(theta)[:, None, None]
    dy = v[None, :, None] - r * torch.sin(theta)[:, None, None]
    dist = torch.sqrt(dx**2 + dy**2).clamp_min(1e-6)
    phase = torch.atan2(dy, dx) - theta[:, None, None]
    maps = torch.polar(1.0 / dist, phase)
    if normalize:
        maps = maps / rss(maps, dim=0)
    return maps.to(dtype)


def compress_coils(kspace: Array, n_virtual: int) -> Array:
    """SVD coil compression (Huang et al. 2008; BART ``cc -S``): the ``n_virtual`` principal
    combinations of the coils of each item's k-space.

    Each item's coils are rotated by the eigenvectors of their ``C x C`` covariance over all its
    k-space bins, strongest first, and the first ``n_virtual`` kept: a unitary map for
    ``n_virtual = C`` (lossless: the root-sum-of-squares image and any coil combination are
    unchanged), otherwise the least-squares best ``n_virtual`` coils. Zeros (unsampled bins) stay
    zero, so masks are unchanged; maps must be estimated from the compressed data. Costs of
    maps and multi-coil data consistency scale with the number of coils.

    Args:
        kspace: complex multi-coil k-space ``(C, H, W)`` or ``(B, C, H, W)``, numpy or torch.
        n_virtual: number of virtual coils, ``1 <= n_virtual <= C``.

    Returns:
        ``(n_virtual, H, W)`` or ``(B, n_virtual, H, W)`` of the input's kind and dtype; raises
        ``ValueError`` for bad shapes or ``n_virtual`` out of range.
    """
    was_numpy = isinstance(kspace, np.ndarray)
    k = torch.from_numpy(kspace) if was_numpy else kspace.detach()
    if k.ndim not in (3, 4):
        raise ValueError(f"k-space must be (C, H, W) or (B, C, H, W), got shape {tuple(k.shape)}")
    C = k.shape[-3]
    if not 1 <= n_virtual <= C:
        raise ValueError(f"n_virtual must be in 1..{C}, got {n_virtual}")
    batch = _complex(k if k.ndim == 4 else k[None])
    flat = batch.reshape(batch.shape[0], C, -1)
    cov = (flat @ flat.conj().transpose(-1, -2)).to(torch.complex128)  # (B, C, C)
    vecs = torch.linalg.eigh(cov)[1].flip(-1)[..., :n_virtual]  # strongest first
    out = (vecs.conj().transpose(-1, -2).to(flat.dtype) @ flat).reshape(-1, n_virtual, *k.shape[-2:])
    out = out if k.ndim == 4 else out[0]
    return out.numpy() if was_numpy else out
