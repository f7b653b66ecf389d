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
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from .fft import fft2c, ifft2c

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

PhaseRef = Literal["first", "virtual"]
Array = torch.Tensor | np.ndarray


def _complex(x: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` as a complex tensor, promoted with ``like``'s dtype and moved to its device."""
    if not x.is_complex():
        if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16):
            x = x.to(torch.get_default_dtype())
        x = torch.complex(x, torch.zeros_like(x))
    if like is not None:
        dtype = torch.promote_types(x.dtype, like.dtype)
        x = x.to(device=like.device, dtype=dtype)
    return x


def _bdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real part of the per-sample inner product ``<a, b>`` over all dims but the first, kept
    as ``(B, 1, ..., 1)`` for broadcasting."""
    dims = tuple(range(1, a.ndim))
    return (a.conj() * b).real.sum(dim=dims, keepdim=True)


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``, else 0, with finite gradients in both branches."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``(B, H, W)`` -> masked multi-coil k-space ``M F S x``, ``(B, C, H, W)``."""
        k = fft2c(self.expand(x))
        return k * self._m().to(k.real.dtype)

    __call__ = forward

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Multi-coil k-space ``(B, C, H, W)`` -> image ``sum_c conj(S_c) F^-1 (M y_c)``, ``(B, H, W)``.

        The exact adjoint of :meth:`forward` (``<A x, y> = <x, A^H y>``); the mask is applied, so
        unmasked data give the same result as masked data.
        """
        y = _complex(y, self.maps)
        return self.reduce(ifft2c(y * self._m().to(y.real.dtype)))

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x`` for an image ``(B, H, W)`` (``x`` on the support for a full mask). For even
        sizes ``F_c^-1 M F_c = F^-1 ifftshift(M) F`` (the shifts' sign flips cancel), and a mask of
        whole lines (constant along ``H``) leaves 1-D FFTs along ``W``: twice as fast."""
        h, w = self.mask.shape[-2:]
        if h % 2 or w % 2:
            return self.adjoint(self.forward(x))
        u = self.expand(x)
        m = torch.fft.ifftshift(self._m(), dim=(-2, -1))
        if self._lines is None:  # tested once per operator (a device sync), not per CG iteration
            self._lines = bool((m == m[..., :1, :]).all())
        if self._lines:  # whole lines along H
            k = torch.fft.fft(u, dim=-1, norm="ortho") * m[..., :1, :].to(u.real.dtype)
            return self.reduce(torch.fft.ifft(k, dim=-1, norm="ortho"))
        k = torch.fft.fft2(u, norm="ortho") * m.to(u.real.dtype)
        return self.reduce(torch.fft.ifft2(k, norm="ortho"))

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

    def coil_rss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
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

        Returns:
            Real magnitude ``(B, H, W)``.
        """
        k = fft2c(self.expand(x))
        k = torch.where(self._m(), _complex(y, k), k)
        return rss(ifft2c(k), dim=-3)

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
        ``argmin_z ||A z - y||^2 + lam ||z - x||^2`` by conjugate gradients.

        Solves ``(A^H A + lam I) z = A^H y + lam x`` from the warm start ``z = x``; the batch
        runs in lock-step with one step size per sample. The unrolled iterations are
        differentiable w.r.t. ``x``, ``y``, ``lam`` and the maps. ``lam -> 0`` gives the exact
        projection of ``x`` onto ``{z : A z = y}`` (the minimum-change consistent image) as far as
        ``iters`` converge; ``lam -> inf`` returns ``x``; ``x = 0`` gives Tikhonov-regularised
        SENSE (:meth:`sense`).

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
        z = _complex(x, self.maps)
        lam_t = torch.as_tensor(lam, device=z.device, dtype=z.real.dtype)
        if not torch.is_tensor(lam) and float(lam) < 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        if lam_t.ndim:
            lam_t = lam_t.reshape(-1, *([1] * (z.ndim - 1)))
        r = (self.adjoint(y) if aty is None else aty) - self.normal(z)  # b - (A^H A + lam) z, z = x
        p = r
        rs = _bdot(r, r)
        rs0 = rs
        for _ in range(iters):
            ap = self.normal(p) + lam_t * p
            alpha = _safe_div(rs, _bdot(p, ap))
            z = z + alpha * p
            r = r - alpha * ap
            rs_new = _bdot(r, r)
            if tol > 0 and bool((rs_new <= tol**2 * rs0).all()):
                break
            p = r + _safe_div(rs_new, rs) * p
            rs = rs_new
        return z

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


def rss(coil_images: Array, dim: int = -3) -> Array:
    """Root-sum-of-squares ``sqrt(sum_c |x_c|^2)`` over the coil dim ``dim`` (default ``-3`` of
    ``(B, C, H, W)`` / ``(C, H, W)``); numpy in, numpy out; torch in, torch out (differentiable)."""
    if isinstance(coil_images, np.ndarray):
        return np.sqrt((np.abs(coil_images) ** 2).sum(axis=dim))
    return coil_images.abs().pow(2).sum(dim=dim).sqrt()


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


# --------------------------------------------------------------------------- calibration region


def _sampled(k: torch.Tensor) -> torch.Tensor:
    """Bins ``(H, W)`` measured in at least one coil of every batch item of k-space
    ``(C, H, W)`` / ``(B, C, H, W)``, or kept by every mask of a bool ``(H, W)`` / ``(B, H, W)``."""
    if k.dtype == torch.bool:
        return k.reshape(-1, *k.shape[-2:]).all(dim=0)
    if k.ndim < 3:
        raise ValueError(f"multi-coil k-space must be (C, H, W) or (B, C, H, W), got shape {tuple(k.shape)}")
    return (k != 0).any(dim=-3).reshape(-1, *k.shape[-2:]).all(dim=0)


def _centred(n: int, size: int) -> slice:
    start = n // 2 - size // 2
    return slice(start, start + size)


def find_calibration(kspace_or_mask: Array) -> tuple[int, int]:
    """Size ``(h, w)`` of the largest fully sampled block centred on DC.

    A block of size ``(h, w)`` covers rows ``H // 2 - h // 2 ... + h`` and columns alike (the
    layout of the fully sampled centre of :mod:`mri_n2n.masks` and fastMRI). It is grown greedily,
    a row and a column at a time: for line masks it is ``(H, number of centre lines)``, for 2-D
    masks the fully sampled centre square.

    Args:
        kspace_or_mask: multi-coil k-space ``(C, H, W)`` or ``(B, C, H, W)`` (a bin counts as
            sampled when it is nonzero in some coil of every batch item) or a bool mask
            ``(H, W)`` / ``(B, H, W)`` (kept by every mask); numpy or torch.

    Raises:
        ValueError: a non-bool input with fewer than 3 dims.

    Returns:
        ``(h, w)``; ``(0, 0)`` when DC itself is not sampled.
    """
    s = _sampled(torch.as_tensor(kspace_or_mask)).cpu()
    H, W = s.shape
    if not s[H // 2, W // 2]:
        return 0, 0
    h = w = 1
    grew = True
    while grew:
        grew = False
        if h < H and bool(s[_centred(H, h + 1), _centred(W, w)].all()):
            h, grew = h + 1, True
        if w < W and bool(s[_centred(H, h), _centred(W, w + 1)].all()):
            w, grew = w + 1, True
    return h, w


def _calib_size(calib: int | tuple[int, int], hw: tuple[int, int]) -> tuple[int, int]:
    ch, cw = (calib, calib) if isinstance(calib, int) else tuple(calib)
    ch, cw = min(int(ch), hw[0]), min(int(cw), hw[1])
    if ch < 1 or cw < 1:
        raise ValueError(f"calib must be positive, got {calib}")
    return ch, cw


def _calib_block(k: torch.Tensor, calib: tuple[int, int]) -> torch.Tensor:
    """The centred calibration block ``(C, h, w)`` of ``k`` ``(C, H, W)``; it must be fully sampled."""
    block = k[..., _centred(k.shape[-2], calib[0]), _centred(k.shape[-1], calib[1])]
    missing = int((~_sampled(block)).sum())
    if missing:
        raise ValueError(
            f"the centred {calib[0]}x{calib[1]} calibration block of the k-space is not fully sampled "
            f"({missing} bins are zero in every coil); use a smaller calib or estimate_maps(calib=None)"
        )
    return block


# --------------------------------------------------------------------------- estimation


def _as_work(kspace: Array) -> tuple[torch.Tensor, bool, torch.dtype | np.dtype]:
    """Multi-coil k-space as complex128 torch on its device; whether it came from numpy; its dtype."""
    was_numpy = isinstance(kspace, np.ndarray)
    k = torch.from_numpy(np.asarray(kspace)) if was_numpy else kspace.detach()
    if k.ndim not in (3, 4):
        raise ValueError(f"k-space must be (C, H, W) or (B, C, H, W), got shape {tuple(k.shape)}")
    out_dtype = kspace.dtype if k.is_complex() else (np.complex128 if was_numpy else torch.complex128)
    return _complex(k).to(torch.complex128), was_numpy, out_dtype


def _back(maps: torch.Tensor, was_numpy: bool, dtype: torch.dtype | np.dtype) -> Array:
    if was_numpy:
        return maps.cpu().numpy().astype(dtype)
    return maps.to(dtype)


def _phase_unit(maps: torch.Tensor, block: torch.Tensor, phase_ref: PhaseRef) -> torch.Tensor:
    """Unit complex ``(H, W)`` that :func:`_align_phase` multiplies maps ``(C, H, W)`` by (1 where
    the reference vanishes)."""
    if phase_ref == "first":
        ref = maps[0]
    elif phase_ref == "virtual":
        flat = block.reshape(block.shape[0], -1)
        w = torch.linalg.eigh(flat @ flat.conj().T)[1][:, -1]
        ref = (w.conj()[:, None, None] * maps).sum(0)
    else:
        raise ValueError(f"phase_ref must be 'first' or 'virtual', got {phase_ref!r}")
    mag = ref.abs()
    return torch.where(mag > 0, ref.conj() / torch.where(mag > 0, mag, torch.ones_like(mag)), 1)


def _align_phase(maps: torch.Tensor, block: torch.Tensor, phase_ref: PhaseRef) -> torch.Tensor:
    """Remove the per-pixel phase ambiguity of unit eigenvector maps ``(C, H, W)``.

    ``"first"``: coil 0 gets zero phase (sigpy and BART's ESPIRiT convention). ``"virtual"``:
    the virtual body coil ``w^H S`` has zero phase, ``w`` the first principal component of the
    calibration data across coils (Buehrer et al. 2007).
    """
    return maps * _phase_unit(maps, block, phase_ref)


def _top_eig(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest eigenvalue ``(H, W)`` and its unit eigenvector ``(C, H, W)`` of Hermitian
    matrices ``(H, W, C, C)``."""
    g = 0.5 * (g + g.conj().transpose(-1, -2))
    vals, vecs = torch.linalg.eigh(g)
    return vals[..., -1], vecs[..., -1].permute(2, 0, 1)


def _espirit_one(
    k: torch.Tensor, calib: tuple[int, int], kernel: int, thresh: float, crop: float, phase_ref: PhaseRef
) -> torch.Tensor:
    C, H, W = k.shape
    block = _calib_block(k, calib)
    kh, kw = min(kernel, calib[0]), min(kernel, calib[1])
    if kh < 2 or kw < 2:
        raise ValueError(f"ESPIRiT needs a calibration region of at least 2x2, got {calib[0]}x{calib[1]}")
    # Calibration matrix: one row per kh x kw patch position, all coils stacked.
    patches = block.unfold(1, kh, 1).unfold(2, kw, 1)  # (C, nh, nw, kh, kw)
    x = patches.permute(1, 2, 0, 3, 4).reshape(-1, C * kh * kw)
    gram = x.T @ x.conj()  # sum over patches of x x^H; eigenvalues = squared singular values
    vals, vecs = torch.linalg.eigh(gram)
    keep = vals.clamp_min(0).sqrt() > thresh * vals.clamp_min(0).max().sqrt()
    basis = vecs[:, keep]  # orthonormal basis of the signal subspace of patches
    proj = (basis @ basis.conj().T).reshape(C, kh, kw, C, kh, kw)
    # Every patch equals its projection; averaging that identity over the patch positions of a
    # target bin makes it a k-space convolution y_c = sum_c' h_cc' * y_c' whose kernel
    # h_cc'(d) sums proj[c, a, c', a'] over a - a' = d.
    h = torch.zeros(C, C, 2 * kh - 1, 2 * kw - 1, dtype=k.dtype, device=k.device)
    for a in range(kh):
        for b in range(kw):
            rows, cols = slice(kh - 1 - a, 2 * kh - 1 - a), slice(kw - 1 - b, 2 * kw - 1 - b)
            h[:, :, rows, cols] += proj[..., a, b].permute(0, 3, 1, 2)
    big = torch.zeros(C, C, H, W, dtype=k.dtype, device=k.device)
    big[:, :, _centred(H, 2 * kh - 1), _centred(W, 2 * kw - 1)] = h
    # Convolution in k-space = per-pixel C x C matrix in image space (orthonormal FFT: sqrt(HW)).
    g = ifft2c(big) * (math.sqrt(H * W) / (kh * kw))
    lam, vec = _top_eig(g.permute(2, 3, 0, 1))
    maps = _align_phase(vec, block, phase_ref)
    return maps * (lam > crop)


def _per_item(kspace: Array, fn) -> Array:
    k, was_numpy, dtype = _as_work(kspace)
    maps = torch.stack([fn(item) for item in k]) if k.ndim == 4 else fn(k)
    return _back(maps, was_numpy, dtype)


def espirit_maps(
    kspace: Array,
    calib: int | tuple[int, int] = 24,
    kernel: int = 6,
    thresh: float = 0.02,
    crop: float = 0.95,
    *,
    phase_ref: PhaseRef = "first",
) -> Array:
    """ESPIRiT coil sensitivities from the fully sampled centre of multi-coil k-space.

    Builds the calibration matrix of all ``kernel x kernel`` multi-coil patches of the centred
    ``calib`` block, keeps the right singular vectors with singular value above ``thresh``
    times the largest (the signal subspace), turns the resulting k-space convolution into a
    ``C x C`` matrix per pixel, and takes its top eigenvector where its eigenvalue exceeds
    ``crop`` (zero elsewhere). Computed in complex128 on the input's device.

    Args:
        kspace: complex multi-coil k-space ``(C, H, W)`` or ``(B, C, H, W)``, numpy or torch;
            only the calibration block is used.
        calib: size of the centred calibration block, ``n`` or ``(h, w)`` (clipped to the image).
        kernel: patch size (clipped to the block).
        thresh: relative singular-value threshold of the signal subspace.
        crop: eigenvalue threshold of the support (ESPIRiT's ``c``).
        phase_ref: ``"first"`` (coil 0 has zero phase; sigpy/BART) or ``"virtual"`` (the virtual
            body coil, the calibration data's principal coil combination, has zero phase).

    Returns:
        Maps of the input's shape, kind (numpy/torch), device and complex dtype, with
        ``sum_c |S_c|^2 = 1`` on the support and 0 outside it.

    Raises:
        ValueError: bad shapes, or the calibration block is not fully sampled.
    """
    k = kspace if isinstance(kspace, np.ndarray | torch.Tensor) else np.asarray(kspace)
    cal = _calib_size(calib, tuple(k.shape[-2:]))
    return _per_item(k, lambda x: _espirit_one(x, cal, kernel, thresh, crop, phase_ref))


def _walsh_one(
    k: torch.Tensor, calib: tuple[int, int], window: int, thresh: float, phase_ref: PhaseRef
) -> torch.Tensor:
    C, H, W = k.shape
    block = _calib_block(k, calib)
    # Low-resolution coil images: the calibration block, Hann-tapered against ringing, zero-padded.
    taper = torch.outer(
        torch.hann_window(calib[0] + 2, periodic=False, dtype=torch.float64)[1:-1],
        torch.hann_window(calib[1] + 2, periodic=False, dtype=torch.float64)[1:-1],
    ).to(k.device)
    low = torch.zeros_like(k)
    low[:, _centred(H, calib[0]), _centred(W, calib[1])] = block * taper
    img = ifft2c(low)  # (C, H, W)
    # Local coil covariance, box-smoothed over window x window pixels.
    cov = (img[:, None] * img[None].conj()).reshape(C * C, H, W)
    pad = window // 2
    parts = torch.stack([cov.real, cov.imag])  # (2, C*C, H, W)
    smooth = F.avg_pool2d(parts, window, stride=1, padding=pad, count_include_pad=False)[..., :H, :W]
    cov = torch.complex(smooth[0], smooth[1]).reshape(C, C, H, W).permute(2, 3, 0, 1)
    _, vec = _top_eig(cov)
    energy = rss(img, dim=0)
    maps = _align_phase(vec, block, phase_ref)
    return maps * (energy > thresh * energy.max())


def _box_response(n: int, g: int, window: int) -> torch.Tensor:
    """Frequency response ``(g,)`` at the centred frequencies ``-g // 2 ... g - g // 2 - 1`` (cycles
    per field of view) of a circular ``window``-pixel moving average on an ``n``-pixel grid."""
    f = torch.arange(g, dtype=torch.float64) - g // 2
    den = window * torch.sin(math.pi * f / n)
    return torch.where(f == 0, 1.0, torch.sin(math.pi * f * window / n) / torch.where(f == 0, 1.0, den))


def _lerp(x: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """Periodic linear interpolation of ``x``, sampled on a centred ``g``-point grid along ``dim``,
    onto the centred ``n``-point grid of the same field of view (pixel ``i`` sits at
    ``(i - n // 2) / n`` of it, as for :func:`mri_n2n.fft.ifft2c` images)."""
    g = x.shape[dim]
    u = (torch.arange(n, dtype=torch.float64) - n // 2) * (g / n) + g // 2
    i0 = torch.floor(u)
    shape = [1] * x.ndim
    shape[dim] = n
    w = (u - i0).to(x.dtype).reshape(shape).to(x.device)
    i0 = i0.long() % g
    i0, i1 = i0.to(x.device), ((i0 + 1) % g).to(x.device)
    return torch.lerp(x.index_select(dim, i0), x.index_select(dim, i1), w)


def _dft_eval(n_freq: int, g: int, device: torch.device) -> torch.Tensor:
    """``(g, n_freq)`` matrix evaluating an ``n_freq``-point spectrum in :func:`torch.fft.fft`'s
    order (the inverse DFT, up to scale) at the centred ``g`` pixel positions ``(j - g // 2) / g``
    of the field of view: exact samples of the band-limited image on the coarser grid."""
    f = torch.fft.fftfreq(n_freq, 1 / n_freq, dtype=torch.float64)
    q = (torch.arange(g, dtype=torch.float64) - g // 2) / g
    angle = 2 * math.pi * q[:, None] * f[None]
    return torch.polar(torch.ones_like(angle), angle).to(device)


def _walsh_lowres(
    k: torch.Tensor,
    calib: tuple[int, int],
    window: int,
    thresh: float,
    phase_ref: PhaseRef,
    grid: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Walsh maps ``(B, C, H, W)`` of ``dtype`` for a batch ``(B, C, H, W)``, with the
    eigenproblems on a coarse ``min(grid, H) x min(grid, W)`` grid.

    The low-resolution coil images have bandwidth ``calib``, so their covariance has bandwidth
    ``2 calib - 1``: its spectrum is computed exactly on a ``2 calib`` grid, multiplied by the
    frequency response of the full-resolution box smoothing (circular; the full-resolution path
    excludes the zero padding at the border) and evaluated exactly at the coarse grid's pixels.
    The top eigenvectors there, phase-aligned to the virtual body coil (smooth), are interpolated
    linearly to full resolution, renormalised and aligned to ``phase_ref``; the support is the
    full-resolution RSS of the low-resolution coil images (upsampled exactly by zero-padding).
    """
    B, C, H, W = k.shape
    block = _complex(_calib_block(k, calib)).to(torch.complex128)  # (B, C, ch, cw)
    fh, fw = min(H, 2 * calib[0]), min(W, 2 * calib[1])  # covariance spectrum grid
    gh, gw = min(H, grid), min(W, grid)  # eigenproblem grid
    taper = torch.outer(
        torch.hann_window(calib[0] + 2, periodic=False, dtype=torch.float64)[1:-1],
        torch.hann_window(calib[1] + 2, periodic=False, dtype=torch.float64)[1:-1],
    ).to(k.device)
    low = torch.zeros(B, C, fh, fw, dtype=block.dtype, device=k.device)
    low[..., _centred(fh, calib[0]), _centred(fw, calib[1])] = block * taper
    # uncentred FFTs (pixel j at j / f of the field of view, periodic): no shifts of the big arrays
    img = torch.fft.ifft2(torch.fft.ifftshift(low, dim=(-2, -1)))  # exact samples of the low-pass images
    resp = _box_response(H, fh, window)[:, None] * _box_response(W, fw, window)[None]
    resp = torch.fft.ifftshift(resp, dim=(-2, -1)).to(k.device)
    lo, hi = torch.tril_indices(C, C)  # eigh reads the lower triangle of the Hermitian covariance
    spec = torch.fft.fft2(img[:, lo] * img[:, hi].conj()) * resp  # (B, C (C + 1) / 2, fh, fw)
    eh, ew = _dft_eval(fh, gh, k.device).to(dtype), _dft_eval(fw, gw, k.device).to(dtype)
    cov = torch.zeros(B, gh, gw, C, C, dtype=dtype, device=k.device)
    cov[..., lo, hi] = (eh @ spec.to(dtype) @ ew.T).permute(0, 2, 3, 1)
    vec = torch.linalg.eigh(cov)[1][..., -1].permute(0, 3, 1, 2)  # (B, C, gh, gw), unit
    vec = torch.stack([_align_phase(v, b.to(dtype), "virtual") for v, b in zip(vec, block)])
    maps = _lerp(_lerp(vec, W, -1), H, -2)
    # one pass over the maps: renormalise, align the phase to phase_ref, zero outside the support
    norm = torch.view_as_real(maps).square().sum(-1).sum(-3).sqrt().clamp_min(1e-30)
    unit = torch.stack([_phase_unit(m, b.to(dtype), phase_ref) for m, b in zip(maps, block)])  # of m / norm
    # RSS^2 of the low-resolution images has bandwidth 2 calib - 1: zero-padding is exact
    e2 = torch.fft.fftshift(torch.fft.fft2(img.abs().square().sum(1)), dim=(-2, -1))
    big = torch.zeros(B, H, W, dtype=e2.dtype, device=e2.device)
    big[:, _centred(H, fh), _centred(W, fw)] = e2
    energy = ifft2c(big).real.clamp_min(0).sqrt()
    keep = energy > thresh * energy.amax(dim=(-2, -1), keepdim=True)
    return maps * (unit * keep / norm).unsqueeze(1)


def walsh_maps(
    kspace: Array,
    calib: int | tuple[int, int] = 24,
    window: int = 5,
    thresh: float = 0.05,
    *,
    phase_ref: PhaseRef = "first",
    grid: int | None = 48,
) -> Array:
    """Adaptive-combine (Walsh) coil sensitivities from low-resolution coil images: the fast fallback.

    The centred ``calib`` block (Hann-tapered, zero-padded) gives smooth coil images; each pixel's
    map is the top eigenvector of their coil covariance averaged over a ``window x window``
    neighbourhood. Pixels whose low-resolution RSS is below ``thresh`` times its maximum are
    set to 0. Less accurate than ESPIRiT at object edges, but needs only FFTs and ``C x C``
    eigen-decompositions.

    With ``grid`` (default) the covariance and its eigenvectors are computed on a coarse grid of
    ``min(grid, H) x min(grid, W)`` points (the covariance of the low-resolution images is band
    limited, so it is evaluated there exactly) and the maps are interpolated linearly: about
    ``(H W) / grid^2`` times fewer eigenproblems (25x at 320 x 320), within a fraction of a
    percent of the full-resolution maps on the support (tests/test_multicoil.py). The batch's
    eigenproblems are solved together. ``grid=None``: every pixel's own eigenproblem, one item
    at a time.

    Args:
        kspace: complex multi-coil k-space ``(C, H, W)`` or ``(B, C, H, W)``, numpy or torch.
        calib: size of the centred calibration block, ``n`` or ``(h, w)`` (clipped to the image).
        window: odd smoothing window of the covariance, in pixels.
        thresh: relative RSS threshold of the support.
        phase_ref: ``"first"`` or ``"virtual"``, as in :func:`espirit_maps`.
        grid: smallest side of the coarse grid of the eigenproblems, or ``None`` for full
            resolution.

    Returns:
        Maps like :func:`espirit_maps`: same shape/kind/dtype, ``sum_c |S_c|^2 = 1`` on the support.

    Raises:
        ValueError: bad shapes, an even ``window``, a ``grid < 1``, or the calibration block is
            not fully sampled.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    if grid is not None and grid < 1:
        raise ValueError(f"grid must be a positive number of pixels or None, got {grid}")
    k = kspace if isinstance(kspace, np.ndarray | torch.Tensor) else np.asarray(kspace)
    cal = _calib_size(calib, tuple(k.shape[-2:]))
    if grid is None:
        return _per_item(k, lambda x: _walsh_one(x, cal, window, thresh, phase_ref))
    was_numpy = isinstance(k, np.ndarray)
    work = torch.from_numpy(k) if was_numpy else k.detach()
    if work.ndim not in (3, 4):
        raise ValueError(f"k-space must be (C, H, W) or (B, C, H, W), got shape {tuple(work.shape)}")
    out = work.dtype if work.is_complex() else torch.complex128  # as _as_work
    dtype = torch.complex64 if out == torch.complex64 else torch.complex128
    maps = _walsh_lowres(work if work.ndim == 4 else work[None], cal, window, thresh, phase_ref, grid, dtype)
    maps = (maps if work.ndim == 4 else maps[0]).to(out)
    return maps.cpu().numpy() if was_numpy else maps


def estimate_maps(
    kspace: Array,
    method: Literal["espirit", "walsh"] = "espirit",
    calib: int | tuple[int, int] | None = None,
    *,
    max_calib: int | None = 48,
    min_calib: int = 8,
    **kwargs,
) -> Array:
    """Coil sensitivities from multi-coil k-space, finding the calibration region if needed.

    Args:
        kspace: complex multi-coil k-space ``(C, H, W)`` or ``(B, C, H, W)`` (numpy or torch),
            zero where not sampled.
        method: ``"espirit"`` (:func:`espirit_maps`) or ``"walsh"`` (:func:`walsh_maps`).
        calib: calibration block size; ``None`` detects the largest fully sampled centred block
            (:func:`find_calibration`, over all batch items) and crops each side to ``max_calib``
            (``None``: no cap), which bounds the cost for fully sampled data.
        min_calib: smallest usable side of a detected block.
        **kwargs: passed to the method (``kernel``, ``thresh``, ``crop``, ``window``, ``grid``,
            ``phase_ref``).

    Returns:
        Maps of the input's shape, kind and dtype, ``sum_c |S_c|^2 = 1`` on the support.

    Raises:
        ValueError: an unknown method, or no usable calibration region (one line, with the size
            found).
    """
    fns = {"espirit": espirit_maps, "walsh": walsh_maps}
    if method not in fns:
        raise ValueError(f"method must be one of {sorted(fns)}, got {method!r}")
    if calib is None:
        h, w = find_calibration(kspace)
        if min(h, w) < min_calib:
            raise ValueError(
                f"no usable calibration region: the largest fully sampled block at the k-space centre "
                f"is {h}x{w}, at least {min_calib}x{min_calib} is needed to estimate coil maps "
                f"(acquire a fully sampled centre, or pass precomputed maps)"
            )
        if max_calib is not None:
            h, w = min(h, max_calib), min(w, max_calib)
        calib = (h, w)
    return fns[method](kspace, calib, **kwargs)


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
