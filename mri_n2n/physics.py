"""The acquisition operator of every MRI path: ``A = M F S``.

One class, :class:`Acquisition`, applies the sampling mask ``M``, the centred orthonormal 2-D FFT
``F`` (:mod:`mri_n2n.fft`) and the coil sensitivities ``S`` and their adjoints; training pairs,
models, losses, baselines, reconstruction and adaptation all receive one and call it. It
holds the mask, the maps, the measurements ``y`` and the law's keep probability ``p`` of every
bin, so that a consumer never rebuilds the physics from loose tensors::

    y_c = M F (S_c x),     A^H y = sum_c conj(S_c) F^-1 (M y_c),     A^H A = S^H F^-1 M F S

**Single coil** (``maps=None``): ``S`` is one all-ones coil and the coil dim is not added:
images and k-space share the shape ``(..., H, W)`` (models use ``(B, 1, H, W)``; a ``(B, H, W)``
mask applies to every channel of ``(B, C, H, W)`` data). ``A A^H = M``, and the
*data-consistency projection* replaces the sampled frequencies of ``x`` by the measurements::

    project(x) = F^-1 ((1 - M) F x + M y)

exact on the sampled frequencies, idempotent, the paper's spectral projection.

**Multi-coil** (``maps`` ``(C, H, W)`` or ``(B, C, H, W)``): images ``(B, H, W)`` complex,
k-space ``(B, C, H, W)``; the mask is shared by the coils. Estimated maps are normalised so
that ``sum_c |S_c|^2 = 1`` where there is signal and are zero elsewhere; then ``S^H S = 1`` on the
support and a full mask gives ``A^H A x = x`` there. :meth:`Acquisition.project` is the per-coil
replacement (E2E-VarNet), :meth:`Acquisition.prox` the proximal step (MoDL, CG-SENSE by
:func:`~mri_n2n.solvers.conjugate_gradient`), :meth:`Acquisition.coil_rss` fastMRI's output image.

**Real images** (one channel whose k-space is Hermitian) pass through unchanged: the projection
of a real ``x`` returns its real part. A real image whose data are not Hermitian (a
phase-corrected complex slice) carries its unit ``phase`` map: ``image = real * phase``, the
projection works on ``x * phase`` and returns the real part of ``project(...) * conj(phase)``.

**Splits and second masks** are :meth:`Acquisition.restrict`: the same coils and measurements on
``M & keep``, with the keep probability of the restricted set.

:class:`SpectralSampling` (``A = M F``) and the deprecated :class:`~mri_n2n.coils.SenseOperator`
(``A = M F S``, maps first) are the two constructors of the same class under their historical
names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .acquisition import KINDS, Acquisition, acquisition_kind, kind_names  # noqa: F401  (re-exported)
from .coil_maps import rss
from .fft import fft2c, fftc, ifft2c, ifftc, promote_complex
from .masks import SampleLaw, complete_measurements, family_for
from .sampling import hermitian_mirror, radius_grid
from .solvers import conjugate_gradient

__all__ = [
    "Acquisition", "CartesianAcquisition", "NonCartesianAcquisition", "SpectralSampling",
    "CG_CHUNK_ELEMENTS", "CG_CHUNK_ELEMENTS_DEVICE", "cg_chunk_elements", "KINDS",
    "acquisition_kind", "kind_names", "phase_factors", "HERMITIAN_TOL",
]


#: Most multi-coil k-space elements (samples x coils x H x W) :meth:`Acquisition.cg_dc` works
#: on at once; larger batches are solved in chunks of samples (the same result: every sample has
#: its own step sizes). A 16-coil 320 x 320 slice (1.6 M) is one chunk: on 2 CPU cores chunks of
#: one slice ran the 6-iteration solve 2.7x faster than four slices at once, whose 52 MB
#: temporaries were allocated and page-faulted afresh in every operation.
CG_CHUNK_ELEMENTS = 2**21
#: The same bound on a GPU, where the cache argument does not hold and every chunk costs kernel
#: launches: 2^26 elements (512 MB per complex temporary) keep a ``multicoil-gpu`` batch (8 x 16
#: coils x 320 x 320, 13 M) in one solve.
CG_CHUNK_ELEMENTS_DEVICE = 2**26


def cg_chunk_elements(device: torch.device) -> int:
    """The most k-space elements one CG solve of :meth:`Acquisition.cg_dc` works on at once on
    ``device`` (:data:`CG_CHUNK_ELEMENTS` on a CPU, :data:`CG_CHUNK_ELEMENTS_DEVICE` elsewhere)."""
    return CG_CHUNK_ELEMENTS if device.type == "cpu" else CG_CHUNK_ELEMENTS_DEVICE


def _per_channel(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample ``(B, H, W)`` map as ``(B, 1, H, W)`` for ``(B, C, H, W)`` data."""
    return t.unsqueeze(-3) if like.ndim == t.ndim + 1 and t.ndim >= 3 else t


#: Squared relative Hermitian defect below which k-space counts as data of a real image.
HERMITIAN_TOL = 1e-6


def phase_factors(y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Unit phase ``exp(i phi)`` per pixel for a batch ``(B, H, W)`` of measured k-space.

    Slices whose measurements are Hermitian (the k-space of a real image, on the pairs of
    frequencies that are both sampled) get ``phi = 0``: the paper's real pipeline exactly.
    Others get the phase of a low-resolution image (Gaussian window of width ``min(H, W) / 32``
    bins around DC), so the network sees a nearly real image.
    """
    h, w = y.shape[-2:]
    yp = hermitian_mirror(y).conj()
    both = (m & hermitian_mirror(m)).to(y.real.dtype)
    num = ((y - yp).abs().square() * both).flatten(1).sum(1)
    den = (y.abs().square() * both).flatten(1).sum(1)
    real_like = (den > 0) & (num <= HERMITIAN_TOL * den)
    ones = torch.ones_like(y)
    if bool(real_like.all()):
        return ones
    sigma = max(min(h, w) / 32.0, 2.0)
    win = torch.exp(-0.5 * radius_grid((h, w)).square() / sigma**2).to(device=y.device, dtype=y.real.dtype)
    low = SpectralSampling(m).combine(y * win)  # the low-resolution image of the measurements
    mag = low.abs()
    ph = torch.where(mag > 0, low / mag.clamp_min(torch.finfo(mag.dtype).tiny), ones)
    return torch.where(real_like[:, None, None], ones, ph)


class CartesianAcquisition(Acquisition):
    """The Cartesian kind: the sampling operator ``A = M F S`` of one batch, with its measurements
    and law (``Acquisition(mask, ...)`` builds one: the public name is kept).

    Args:
        mask: bool or 0/1 mask ``(H, W)`` or ``(B, H, W)`` (single coil: anything that broadcasts
            against the images after a channel dim is inserted), shared by all coils.
        maps: complex coil sensitivities ``(C, H, W)`` (shared by the batch) or ``(B, C, H, W)``;
            ``None`` for single-coil data (one all-ones coil, no coil dim).
        y: the measurements ``A x_true`` (k-space; entries off the mask are ignored), the default
            of every method that takes data; ``None`` for an operator without data.
        keep_prob: the probability ``p`` that the law of the masks keeps each bin (``(H, W)`` or
            ``(B, H, W)``): the ``1/p`` compensation of :meth:`zero_filled` and the weights of the
            k-space loss.
        phase: unit complex ``(B, H, W)`` map of a real single-coil image whose data are not
            Hermitian (module docstring).

    Every method is batched, differentiable (also w.r.t. the maps) and runs on the mask's (or
    the maps') device; multi-coil inputs are promoted to the maps' complex dtype.

    Raises:
        ValueError: a mask of fewer than 2 dims; with maps: maps not 3-D/4-D, mask not 2-D/3-D,
            or their ``(H, W)`` differ.
    """

    kind = "cartesian"
    replaces = True
    augmentations = frozenset({"flip", "transpose", "shift"})
    _dims = {"mask": 2, "maps": 3, "y": 3, "keep_prob": 2, "phase": 2}

    def __init__(
        self,
        mask: torch.Tensor,
        maps: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        *,
        keep_prob: torch.Tensor | None = None,
        phase: torch.Tensor | None = None,
    ) -> None:
        if mask.ndim < 2:
            raise ValueError(f"mask must have at least 2 dims (H, W), got shape {tuple(mask.shape)}")
        if maps is not None:
            if maps.ndim not in (3, 4):
                raise ValueError(f"maps must be (C, H, W) or (B, C, H, W), got shape {tuple(maps.shape)}")
            if mask.ndim not in (2, 3):
                raise ValueError(f"mask must be (H, W) or (B, H, W), got shape {tuple(mask.shape)}")
            if tuple(mask.shape[-2:]) != tuple(maps.shape[-2:]):
                raise ValueError(f"mask {tuple(mask.shape)} and maps {tuple(maps.shape)} differ in (H, W)")
            maps = promote_complex(maps)
            maps = maps if maps.ndim == 4 else maps.unsqueeze(0)
            mask = mask.to(maps.device)
        self.maps = maps
        self.mask = mask.bool()
        self.y = y
        self.keep_prob = keep_prob
        self.phase = phase
        self._lines: bool | None = None  # the mask is whole lines along H (:meth:`_masked`)
        self._shifted: torch.Tensor | None = None  # the mask in uncentred FFT order
        self._conj: torch.Tensor | None = None  # conj(S), resolved once for inference
        self._measured: torch.Tensor | None = None  # F_c^-1 (M y), reused by every projection
        self._aty: torch.Tensor | None = None  # A^H y, reused by every proximal step
        self._support: torch.Tensor | None = None

    @classmethod
    def fully_sampled(
        cls,
        shape: tuple[int, ...],
        maps: torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> CartesianAcquisition:
        """The acquisition of a full mask on the last two dims of ``shape`` (``F S`` and its
        inverse: :meth:`full` and :meth:`combine` of fully sampled data)."""
        mask = torch.ones(int(shape[-2]), int(shape[-1]), dtype=torch.bool, device=device)
        return CartesianAcquisition(mask, maps)

    # -- the batch -----------------------------------------------------------------------
    @classmethod
    def law(
        cls, settings: Any, shape: tuple[int, int], *, fraction: float | None = None, hermitian: bool = False
    ) -> SampleLaw:
        """The mask family of a run's settings (:func:`~mri_n2n.masks.family_for`)."""
        return family_for(settings, shape, fraction=fraction, hermitian=hermitian)

    # -- the kind's interface ------------------------------------------------------------
    @property
    def sampled(self) -> torch.Tensor:
        """The mask: the sampled grid bins ``(B, H, W)`` or ``(H, W)``."""
        return self.mask

    @property
    def sample_shape(self) -> tuple[int, int]:
        """The k-space grid ``(H, W)``."""
        return self.shape

    @property
    def image_shape(self) -> tuple[int, int]:
        """The image matrix ``(H, W)`` (the k-space grid's)."""
        return self.shape

    def expand_samples(self, t: torch.Tensor) -> torch.Tensor:
        """A per-bin ``(B, H, W)`` tensor as ``(B, 1, H, W)`` (shared by the coils or the
        channel); ``(H, W)`` as it is."""
        return t.unsqueeze(-3) if t.ndim == 3 else t

    def _fields(self) -> dict[str, Any]:
        return {
            "mask": self.mask, "maps": self.maps, "y": self.y,
            "keep_prob": self.keep_prob, "phase": self.phase,
        }

    def admits(self, transform: str) -> bool:
        """Flips and shifts always; transposes unless the mask is whole lines (a transpose would
        turn lines into rows the law never draws)."""
        if transform == "transpose":
            return not bool((self.mask == self.mask[..., :1, :]).all())
        return transform in self.augmentations

    def crop_axis(self) -> int | None:
        """``-2`` when every mask (and keep probability) is whole lines along ``H``, the fully
        sampled readout (:meth:`cropped`), else ``None``; data with a :attr:`phase` map have
        none."""
        if self.phase is not None or self.y is None:
            return None
        m, kp = self.mask, self.keep_prob
        lines = bool((m == m[..., :1, :]).all()) and (kp is None or bool((kp == kp[..., :1, :]).all()))
        return -2 if lines else None

    def cropped(self, starts: torch.Tensor, length: int) -> CartesianAcquisition:
        """The acquisition of rows ``[start, start + length)`` (circular) of every item's images:
        the readout is fully sampled, so the hybrid data ``F_H^-1 y`` (image rows by measured
        columns) of those rows, back through a ``length``-point centred FFT, are exactly the
        measurements of the window on the same columns (ortho FFTs: white noise stays white).

        Raises:
            ValueError: the masks are not whole lines along ``H`` (:meth:`crop_axis`), or
                ``length`` is not in ``[1, H]``.
        """
        h = self.shape[0]
        if self.crop_axis() != -2:
            raise ValueError("only whole-line masks with measurements and no phase map have exact crops")
        if not 1 <= int(length) <= h:
            raise ValueError(f"crop length {length} is not in [1, {h}]")
        length = int(length)
        y = self.y
        b = int(y.shape[0])
        starts = torch.as_tensor(starts).reshape(-1).long().cpu()
        if starts.numel() != b:
            raise ValueError(f"{starts.numel()} crop starts for {b} items")

        def rows(t: torch.Tensor) -> torch.Tensor:  # (B, ..., H, W): each item's window of rows
            return torch.stack([t[i].roll(-int(s), dims=-2)[..., :length, :] for i, s in enumerate(starts)])

        data = fftc(rows(ifftc(y, -2)), -2)
        maps = None if self.maps is None else rows(self.maps.expand(b, -1, -1, -1))
        kp = self.keep_prob
        out = CartesianAcquisition(
            self.mask[..., :length, :], maps, None, keep_prob=None if kp is None else kp[..., :length, :]
        )
        return out.with_data(data)

    def output_image(self, x: torch.Tensor) -> torch.Tensor:
        """Single coil: the magnitude; coils: :meth:`coil_rss` (fastMRI's convention)."""
        return self.coil_rss(x) if self.maps is not None else x.abs()

    def real_data(self) -> bool:
        """Whether every slice's measurements are a real image's (Hermitian on the pairs of
        sampled frequencies, :func:`phase_factors`); coil data are complex."""
        if self.maps is not None:
            return False
        return bool((phase_factors(self.y[:, 0], self.mask) == 1).all())

    def real_view(self, real_keep_prob: torch.Tensor | None = None) -> CartesianAcquisition:
        """A single-coil acquisition ``(B, 1, H, W)`` as a one-channel (real) network sees it:
        slices with Hermitian measurements get the Hermitian completion of their data and mask
        with ``real_keep_prob`` (default the acquisition's), as it was trained; when any slice
        is not Hermitian the acquisition carries every slice's :func:`phase_factors` (1 for the
        Hermitian ones), and those slices keep the mask as measured."""
        y, m = self.y[:, 0], self.mask
        keep_prob = self.keep_prob
        p: torch.Tensor = keep_prob
        ph = phase_factors(y, m)
        real_like = (ph == 1).flatten(1).all(1)
        if bool(real_like.any()):  # a real image: its Hermitian completion
            yc, mc = complete_measurements(y, m)
            rl = real_like[:, None, None]
            y, m = torch.where(rl, yc, y), torch.where(rl, mc, m)
            p = torch.where(rl, keep_prob if real_keep_prob is None else real_keep_prob, keep_prob)
        phase = None if bool(real_like.all()) else ph
        return CartesianAcquisition(m, None, y[:, None], keep_prob=p, phase=phase)

    def observe(
        self, k: torch.Tensor, sampled: torch.Tensor, keep_prob: torch.Tensor | None, *, real: bool = False
    ) -> CartesianAcquisition:
        """The acquisition of the bins ``sampled`` of full k-space ``k``; ``real``: complete the
        mask and the measurements by Hermitian symmetry (a real image's data), exact on every
        measured bin (:func:`~mri_n2n.masks.complete_measurements`)."""
        mask = sampled.to(k.device)
        y = CartesianAcquisition(mask, self.maps).sample(k)
        if real:
            if self.maps is not None:
                raise ValueError("coil data are complex: no Hermitian completion")
            yc, mask = complete_measurements(y[:, 0], mask)
            y = yc[:, None]
        kp = None if keep_prob is None else keep_prob.to(k.device)
        out = CartesianAcquisition(mask, self.maps, y, keep_prob=kp, phase=self.phase)
        return out

    @property
    def shape(self) -> tuple[int, int]:
        """The k-space matrix ``(H, W)``."""
        return (int(self.mask.shape[-2]), int(self.mask.shape[-1]))

    def to(self, device: torch.device | str) -> CartesianAcquisition:
        """The same acquisition on ``device``."""
        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return CartesianAcquisition(
            mv(self.mask), mv(self.maps), mv(self.y), keep_prob=mv(self.keep_prob), phase=mv(self.phase)
        )

    def batch(self, sl: slice) -> CartesianAcquisition:
        """The acquisition of samples ``sl`` of the batch (shared masks and maps stay shared)."""
        def part(t: torch.Tensor | None, ndim: int) -> torch.Tensor | None:
            return t[sl] if t is not None and t.ndim >= ndim and t.shape[0] > 1 else t

        maps = None if self.maps is None else part(self.maps, 4)
        out = CartesianAcquisition(
            part(self.mask, 3), maps, part(self.y, 3), keep_prob=part(self.keep_prob, 3),
            phase=part(self.phase, 3),
        )
        if self._lines and self.maps is not None:  # whole lines here: whole lines in every part
            out._shifted, out._lines = part(self._shifted, 3), True
        return out

    def translated(
        self, roll: Callable[[torch.Tensor], torch.Tensor], *, real: bool = False
    ) -> CartesianAcquisition:
        """The acquisition of the translated images (:meth:`Acquisition.translated`): the coil
        images ``F^-1 (M y_c)`` and the maps rolled together, back to k-space (the real part first
        for ``real`` images), on the same mask."""
        u = self.coil_images()
        maps = self.maps
        if maps is not None:
            c = u.shape[-3]
            both = roll(torch.cat([u, maps.expand(u.shape[0], -1, -1, -1)], dim=-3))
            u, maps = both[:, :c], both[:, c:]
        else:
            u = roll(u)
        out = CartesianAcquisition(self.mask, maps, None, keep_prob=self.keep_prob, phase=self.phase)
        return out.with_data(fft2c(u.real if real else u))

    def transformed(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> CartesianAcquisition:
        """The acquisition with ``fn`` applied to every tensor it holds (mask, maps, measurements,
        keep probability, phase) over their last two dims: a flip or transpose that commutes with
        the centred FFT (:func:`~mri_n2n.models.ensemble.circular_flip`) maps the acquisition of
        an image to that of the transformed image."""
        def f(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else fn(t)

        return CartesianAcquisition(
            f(self.mask), f(self.maps), f(self.y), keep_prob=f(self.keep_prob), phase=f(self.phase)
        )

    def restrict(self, keep: torch.Tensor, keep_prob: torch.Tensor | None = None) -> CartesianAcquisition:
        """The same coils and measurements on the sampled set ``M & keep`` (a split's input or
        held-out set, a second mask on one acquisition), with ``keep_prob`` its law's keep
        probability (``None``: none known)."""
        mask = self.mask & keep.to(self.mask.device).bool()
        out = CartesianAcquisition(mask, self.maps, None, keep_prob=keep_prob, phase=self.phase)
        if self.y is not None:
            out.y = out.sample(self.y)
        return out

    def with_data(self, y: torch.Tensor) -> CartesianAcquisition:
        """The same operator with the measurements ``y`` (masked)."""
        out = CartesianAcquisition(self.mask, self.maps, None, keep_prob=self.keep_prob, phase=self.phase)
        out.y = out.sample(y)
        return out

    # -- A, A^H, A^H A ---------------------------------------------------------------------------
    def _m(self, like: torch.Tensor | None = None) -> torch.Tensor:
        if self.maps is not None:
            return self.mask.unsqueeze(-3) if self.mask.ndim == 3 else self.mask  # (B, 1, H, W) or (H, W)
        return _per_channel(self.mask, like)

    def _s(self, like: torch.Tensor) -> torch.Tensor:
        return self.maps.to(dtype=torch.promote_types(self.maps.dtype, like.dtype))

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``(B, H, W)`` -> coil images ``S x``, ``(B, C, H, W)`` (single coil: ``x``)."""
        if self.maps is None:
            return x
        x = promote_complex(x, self.maps)
        return self._s(x) * x.unsqueeze(-3)

    def reduce(self, u: torch.Tensor) -> torch.Tensor:
        """Coil images ``(B, C, H, W)`` -> image ``sum_c conj(S_c) u_c`` ``(B, H, W)`` (adjoint of
        :meth:`expand`; the SENSE-1 / least-squares combination for normalised maps)."""
        if self.maps is None:
            return u
        u = promote_complex(u, self.maps)
        return (self._s(u).conj() * u).sum(dim=-3)

    def sample(self, k: torch.Tensor) -> torch.Tensor:
        """``M k`` for every coil: k-space with its unsampled bins zeroed, e.g. the measurements of
        spectra already in k-space (:meth:`forward` is ``sample(F S x)``)."""
        if self.maps is not None:
            k = promote_complex(k, self.maps)
        return k * self._m(k).to(k.real.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> masked (coil) k-space ``M F S x`` (complex)."""
        return self.sample(fft2c(self.expand(x)))

    __call__ = forward

    def adjoint(self, y: torch.Tensor | None = None) -> torch.Tensor:
        """k-space -> image ``sum_c conj(S_c) F^-1 (M y_c)`` (complex); default: the measurements.
        The exact adjoint of :meth:`forward`; unmasked data give the same result as masked data."""
        return self.reduce(self.coil_images(y))

    def coil_images(self, y: torch.Tensor | None = None) -> torch.Tensor:
        """The zero-filled coil images ``F^-1 (M y_c)`` (single coil: the zero-filled image)."""
        return ifft2c(self.sample(self._data(y)))

    def combine(self, k: torch.Tensor) -> torch.Tensor:
        """Coil combination ``sum_c conj(S_c) F^-1 k_c`` of unmasked (e.g. fully sampled) k-space;
        for data ``F S x`` and normalised maps it returns ``x`` on the support (single coil:
        ``F^-1 k``)."""
        if self.maps is not None:
            k = promote_complex(k, self.maps)
        return self.reduce(ifft2c(k))

    def full(self, x: torch.Tensor) -> torch.Tensor:
        """The fully sampled (coil) k-space ``F S x`` of an image (no mask)."""
        return fft2c(self.expand(x))

    def _even(self) -> bool:
        h, w = self.mask.shape[-2:]
        return h % 2 == 0 and w % 2 == 0

    def _masked_operator(self, like: torch.Tensor) -> None:
        """Resolve the mask in uncentred FFT order and whether it is whole lines along ``H``,
        once per operator (the line test is a device sync; :meth:`batch` passes both on)."""
        if self._shifted is None:
            m = torch.fft.ifftshift(self._m(like), dim=(-2, -1))
            self._lines = bool((m == m[..., :1, :]).all())
            self._shifted = m[..., :1, :] if self._lines else m

    def _masked(self, u: torch.Tensor, keep: bool = True, inplace: bool = False) -> torch.Tensor:
        """``F^-1 M F u`` (``keep``) or ``F^-1 (1 - M) F u`` for (coil) images of even sizes.
        ``F_c^-1 M F_c = F^-1 ifftshift(M) F`` (the shifts' sign flips cancel), and a mask of
        whole lines (constant along ``H``) leaves 1-D FFTs along ``W``: twice as fast.
        ``inplace`` (outside autograd) reuses the transform's buffer for the masking."""
        self._masked_operator(u)
        m = self._shifted if keep else ~self._shifted
        m = m.to(u.real.dtype)
        if self._lines:  # whole lines along H
            k = torch.fft.fft(u, dim=-1, norm="ortho")
            return torch.fft.ifft(k.mul_(m) if inplace else k * m, dim=-1, norm="ortho")
        k = torch.fft.fft2(u, norm="ortho")
        return torch.fft.ifft2(k.mul_(m) if inplace else k * m, norm="ortho")

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x`` (``x`` on the support for a full mask). For even sizes by uncentred FFTs,
        1-D ones for masks of whole lines (:meth:`_masked`). Outside autograd (inference,
        baselines) the coil images are updated in place, which saves two of the five passes."""
        if not self._even():
            return self.adjoint(self.forward(x))
        if self.maps is None:
            return self._masked(promote_complex(x))
        x = promote_complex(x, self.maps)
        s = self._s(x)
        grad = torch.is_grad_enabled() and (x.requires_grad or s.requires_grad)
        u = self._masked(s * x.unsqueeze(-3), inplace=not grad)
        if grad:
            return (s.conj() * u).sum(dim=-3)
        if self._conj is None or self._conj.dtype != s.dtype:
            self._conj = s.conj().resolve_conj()
        return u.mul_(self._conj).sum(dim=-3)

    # -- reconstructions and data consistency ------------------------------------------------
    def zero_filled(
        self, y: torch.Tensor | None = None, keep_prob: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Zero-filled (SENSE-1) image ``sum_c conj(S_c) F^-1 (M y_c / p)`` (complex).

        ``p`` is ``keep_prob`` or else the acquisition's own (:attr:`keep_prob`), broadcastable
        to the data or per sample ``(B, H, W)`` like the mask: every sampled value is divided by
        its keep probability (the paper's "Russian roulette" compensation), which makes the
        result an unbiased estimate of the image over random masks. Without any ``p`` this equals
        :meth:`adjoint`. ``y`` defaults to the measurements.
        """
        y = self._data(y)
        if self.maps is not None:
            y = promote_complex(y, self.maps)
        m = self._m(y).to(y.real.dtype)
        p = self.keep_prob if keep_prob is None else keep_prob
        if p is not None:
            p = _per_channel(p.to(device=y.device, dtype=y.real.dtype), y)
            m = m / p.clamp_min(torch.finfo(p.dtype).tiny)
        return self.reduce(ifft2c(y * m))

    def _fast_terms(self) -> torch.Tensor | None:
        """``F_c^-1 (M y)`` for a single-coil acquisition of even size with measurements (its
        projection then needs no centring shifts), else ``None``."""
        if self.maps is not None or self.y is None or self.phase is not None or not self._even():
            return None
        if self._measured is None:
            y = self.y.to(torch.complex64)
            m = self._m(y)
            self._measured = ifft2c(torch.where(m, y, torch.zeros((), dtype=y.dtype, device=y.device)))
        return self._measured

    def _uncentred(self, like: torch.Tensor) -> torch.Tensor:
        """The mask in uncentred FFT order for the single-coil fast path, computed once per
        operator without the line test of :meth:`_masked` (no device sync in a training step)."""
        if self._shifted is None:
            self._shifted = torch.fft.ifftshift(self._m(like), dim=(-2, -1))
            self._lines = False
        return self._shifted

    def project(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Data consistency: the sampled frequencies of every coil's ``F S x`` replaced by the
        measurements (default: the acquisition's), then the coil combination::

            project(x) = sum_c conj(S_c) F^-1 ((1 - M) F S_c x + M y_c)

        Single coil: exact on the sampled frequencies and idempotent; real when ``x`` is real
        (the discarded imaginary part is round-off for Hermitian masks and data). Multi-coil: the
        combined image is exact on the measured entries only when the replaced coil images stay
        in the range of ``S`` (one coil, or ``x`` already consistent); in general it is one
        unit-step gradient step ``x + A^H (y - A x)`` on the support, which never increases the
        residual ``||A x - y||``. For exact multi-coil consistency use :meth:`prox` with
        ``lam -> 0``.

        Args:
            x: image estimate (single coil ``(..., H, W)``, multi-coil ``(B, H, W)``), real or complex.
            y: measured k-space; ``None`` for the acquisition's measurements.
        """
        if y is None and (measured := self._fast_terms()) is not None:
            z = x.float() if not x.is_complex() else x
            k = torch.fft.fft2(z, norm="ortho")
            out = torch.fft.ifft2(k.masked_fill(self._uncentred(z), 0), norm="ortho") + measured
            return out if x.is_complex() else out.real
        y = self._data(y)
        z = x
        if self.phase is not None and not x.is_complex():
            z = x * _per_channel(self.phase, x)
        k = fft2c(self.expand(z))
        k = torch.where(self._m(k), y.to(k.dtype) if self.maps is None else promote_complex(y, k), k)
        out = self.reduce(ifft2c(k))
        if self.maps is not None or x.is_complex():
            return out
        if self.phase is not None:
            out = out * _per_channel(self.phase, out).conj()
        return out.real

    def prox(self, x: torch.Tensor, lam: float | torch.Tensor, iters: int = 6) -> torch.Tensor:
        """The proximal data consistency ``argmin_z ||A z - y||^2 + lam ||z - x||^2`` with the
        acquisition's measurements (MoDL's DC step): in closed form for one coil,
        ``(y + lam F x) / (1 + lam)`` on the sampled set and ``F x`` elsewhere (real part for a
        real ``x``); by ``iters`` conjugate-gradient iterations warm-started at ``x`` for coils
        (:meth:`cg_dc`), zero outside the maps' support (where no coil sees the image)."""
        y = self._data(None)
        if self.maps is not None:
            if self._support is None:
                self._support = self.maps.abs().square().sum(-3) > 0
            if self._aty is None:
                self._aty = self.adjoint(y)
            return self.cg_dc(x, y, lam, iters, aty=self._aty) * self._support
        if (measured := self._fast_terms()) is not None:
            z = x.float() if not x.is_complex() else x
            k = torch.fft.fft2(z, norm="ortho")
            one = torch.ones((), dtype=k.real.dtype, device=k.device)
            # (1 - M) F x + M lam F x / (1 + lam)
            keep = torch.where(self._uncentred(z), lam / (1 + lam), one)
            out = torch.fft.ifft2(k * keep, norm="ortho") + measured / (1 + lam)
            return out if x.is_complex() else out.real
        z = x if self.phase is None or x.is_complex() else x * _per_channel(self.phase, x)
        k = fft2c(z)
        k = torch.where(self._m(k), (y.to(k.dtype) + lam * k) / (1 + lam), k)
        out = ifft2c(k)
        if x.is_complex():
            return out
        if self.phase is not None:
            out = out * _per_channel(self.phase, out).conj()
        return out.real

    def coil_rss(
        self, x: torch.Tensor, y: torch.Tensor | None = None, coil_images: torch.Tensor | None = None
    ) -> torch.Tensor:
        """fastMRI's multi-coil output: the root-sum-of-squares of the coil images of the
        per-coil data-consistent k-space (E2E-VarNet's final image)::

            coil_rss(x, y) = sqrt(sum_c |F^-1 k_c|^2),    k_c = M y_c + (1 - M) F S_c x

        Every coil's k-space holds the measurements on the measured entries and the estimate's
        ``F S_c x`` elsewhere; no coil combination by the maps is involved, so the result is in
        the data's units everywhere, outside the maps' support too. A full mask gives the
        root-sum-of-squares of the data whatever ``x``; the result scales with ``(x, y)``.

        Args:
            x: image estimate ``(B, H, W)``, real or complex.
            y: measured multi-coil k-space ``(B, C, H, W)``; ``None``: the acquisition's.
            coil_images: :meth:`coil_images` of ``y``, when already computed.

        Returns:
            Real magnitude ``(B, H, W)``.
        """
        y = self._data(y) if coil_images is None else y
        if not self._even() or self.maps is None:
            k = fft2c(self.expand(x))
            k = torch.where(self._m(k), promote_complex(y, k), k)
            return rss(ifft2c(k), dim=-3) if self.maps is not None else ifft2c(k).abs()
        # F^-1 k_c = F^-1 (M y_c) + F^-1 (1 - M) F S_c x: no centring shifts, 1-D FFTs for lines
        zc = self.coil_images(y) if coil_images is None else promote_complex(coil_images, self.maps)
        u = self.expand(x)
        grad = torch.is_grad_enabled() and (u.requires_grad or zc.requires_grad)
        u = self._masked(u, keep=False, inplace=not grad)
        return rss(u + zc if grad else u.add_(zc), dim=-3)

    def cg_dc(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None,
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
            y: measured multi-coil k-space ``(B, C, H, W)``; ``None``: the acquisition's.
            lam: weight ``>= 0`` of the prior, a number or a tensor broadcastable to ``(B,)``.
            iters: number of CG iterations (fixed, so the graph is the same for every batch).
            tol: if ``> 0``, stop once every sample's residual norm is below ``tol`` times its
                initial one (one device sync per iteration).
            aty: ``A^H y`` when already computed (an unrolled network reuses it in every cascade).

        Returns:
            Complex image ``(B, H, W)``. Raises ``ValueError`` for a negative ``lam`` (number) or
            ``iters``, unbatched ``x`` / ``y``, or a single-coil acquisition.
        """
        if self.maps is None:
            raise ValueError("cg_dc solves multi-coil data; a single coil has the closed form prox()")
        y = self._data(y)
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
        step = max(1, cg_chunk_elements(y.device) // max(per, 1))
        if y.shape[0] > step:  # samples are independent: chunks keep the coil images in cache
            if self._even():  # the line test once (a device sync); lines are lines in every chunk
                self._masked_operator(y)
            lam_b = torch.as_tensor(lam)
            parts = []
            for i in range(0, y.shape[0], step):
                sl = slice(i, i + step)
                lam_i = lam_b.reshape(-1)[sl] if lam_b.numel() > 1 else lam
                sub = self.batch(sl)
                aty_i = None if aty is None else aty[sl]
                parts.append(sub.cg_dc(x[sl], y[sl], lam_i, iters, tol=tol, aty=aty_i))
            return torch.cat(parts)
        z = promote_complex(x, self.maps)
        lam_t = torch.as_tensor(lam, device=z.device, dtype=z.real.dtype)
        if lam_t.ndim:
            lam_t = lam_t.reshape(-1, *([1] * (z.ndim - 1)))
        r = (self.adjoint(y) if aty is None else aty) - self.normal(z)  # b - (A^H A + lam) z, z = x
        return conjugate_gradient(lambda p: self.normal(p) + lam_t * p, z, r, iters, tol=tol)

    def sense(
        self,
        y: torch.Tensor | None = None,
        lam: float | torch.Tensor = 1e-4,
        iters: int = 30,
        *,
        tol: float = 0.0,
    ) -> torch.Tensor:
        """CG-SENSE reconstruction ``argmin_z ||A z - y||^2 + lam ||z||^2`` (:meth:`cg_dc` from
        ``x = 0``): multi-coil k-space ``(B, C, H, W)`` -> complex image ``(B, H, W)``;
        ``(C, H, W)`` -> ``(H, W)``."""
        y = self._data(y)
        if y.ndim == 3:
            return self.sense(y.unsqueeze(0), lam, iters, tol=tol)[0]
        shape = (y.shape[0], *self.maps.shape[-2:])
        x0 = torch.zeros(shape, dtype=torch.promote_types(self.maps.dtype, y.dtype), device=self.maps.device)
        return self.cg_dc(x0, y, lam, iters, tol=tol)


class SpectralSampling(CartesianAcquisition):
    """The single-coil operator ``A = M F`` of a batch of masks (an :class:`Acquisition`
    without maps): ``SpectralSampling(mask)``, optionally with the measurements and the law's
    keep probability."""

    def __init__(
        self, mask: torch.Tensor, y: torch.Tensor | None = None, *, keep_prob: torch.Tensor | None = None
    ) -> None:
        super().__init__(mask, None, y, keep_prob=keep_prob)


# the non-Cartesian kind registers itself after the Cartesian one (the default stays the first
# of the --acquisition choices); its NUFFT libraries are imported only when it is used
from .noncartesian import NonCartesianAcquisition  # noqa: E402
