"""The reconstruction engine: slices stream through zero-filling with ``1/p`` compensation,
normalisation, the network and data consistency, ``batch_size`` at a time.

:func:`reconstruct_kspace` reconstructs measured k-space; :func:`reconstruct_volume` and
:func:`simulate_kspace` run retrospective studies (seeded masks per slice, metrics against the
reference). ``docs/guide/reconstruction.md`` ("The pipeline") describes it step by step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..corruptions import MRIUndersampling
from ..data import center_pad_crop, volume_scale
from ..fft import to_channels, to_complex
from ..io.kspace import as_kspace, expand_mask
from ..masks import complete_measurements
from ..metrics import ssim
from ..models import apply_model, ends_with_dc
from ..physics import Acquisition, SpectralSampling
from ..sampling import hermitian_mirror, radius_grid
from ..seeding import seeded_generator, stable_ident

__all__ = [
    "ReconstructionError",
    "Reconstruction",
    "CPU_MAX_PIXELS",
    "model_channels",
    "reconstruct_kspace",
    "reconstruct_volume",
    "simulate_kspace",
    "kspace_normalize",
    "slice_seed",
    "simulated_masks",
    "check_batch",
    "phase_factors",
]

class ReconstructionError(ValueError):
    """An input cannot be reconstructed; the message names the input and why."""


#: On CPU one network call holds at most this many pixels (4 slices of 512x512, 16 of 256x256):
#: measured activation memory per 512x512 slice is about 190 MB for the plain U-Net and 400 MB
#: for the paper's, so a call stays under about 1.6 GB whatever ``--batch-size`` says.
CPU_MAX_PIXELS = 1 << 20
#: Squared relative Hermitian defect below which k-space counts as data of a real image.
_HERMITIAN_TOL = 1e-6


# --------------------------------------------------------------------------------------
# results


@dataclass
class Reconstruction:
    """The result of reconstructing one volume.

    Attributes:
        image: float32 magnitude volume in the input's units, in the input's layout (an image
            volume's ``(I, J, K)``; k-space ``(ky, kx, slices)``).
        scale: the normalisation divisor (input units per network unit).
        sampled_fraction: mean fraction of sampled k-space over the slices with signal.
        metrics: with a reference: ``psnr``, ``ssim``, ``nmse`` of the reconstruction and
            ``psnr_zero_filled``, ``ssim_zero_filled``, ``nmse_zero_filled`` of the ``1/p``
            compensated zero-filled image (the network's input), the same with ``_plain`` for the
            uncompensated zero-filled image ``F^-1 M y`` (the usual baseline), fastMRI volume
            convention, and ``data_range``; empty otherwise.
        preview: the middle slice with content, in network units: ``mask``, ``zero_filled``,
            ``reconstruction`` and, with a reference, ``reference``; ``slice`` is its index.
        complex_image: the complex data-consistent volume (input units, same layout as
            ``image``) when asked for (``keep_complex=True``), else ``None``.
        mask_law: measured k-space: the description of the law used for the ``1 / p``
            compensation (:meth:`mri_n2n.masks.MaskFamily.describe`) and ``source``
            (``recorded``, ``estimated``, ``given`` or ``fully sampled``); else empty.
        warnings: one-line warnings (e.g. the checkpoint was trained on another mask family).
    """

    image: np.ndarray
    scale: float
    sampled_fraction: float
    metrics: dict[str, float] = field(default_factory=dict)
    preview: dict[str, Any] = field(default_factory=dict)
    complex_image: np.ndarray | None = None
    mask_law: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# the streaming engine


def _amp_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def model_channels(model: torch.nn.Module) -> int:
    """The input channels of an MRI network: 1 (real images) or 2 (real, imaginary)."""
    spec = getattr(model, "spec", None) or {}
    kw = spec.get("kwargs", {}) if isinstance(spec, dict) else {}
    if "in_channels" in kw:
        return int(kw["in_channels"])
    for p in model.parameters():
        if p.ndim == 4:
            return int(p.shape[1])
    return 1


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
    real_like = (den > 0) & (num <= _HERMITIAN_TOL * den)
    ones = torch.ones_like(y)
    if bool(real_like.all()):
        return ones
    sigma = max(min(h, w) / 32.0, 2.0)
    win = torch.exp(-0.5 * radius_grid((h, w)).square() / sigma**2).to(device=y.device, dtype=y.real.dtype)
    low = SpectralSampling(m).combine(y * win)  # the low-resolution image of the measurements
    mag = low.abs()
    ph = torch.where(mag > 0, low / mag.clamp_min(torch.finfo(mag.dtype).tiny), ones)
    return torch.where(real_like[:, None, None], ones, ph)


def _acquisition(
    y: torch.Tensor,
    m: torch.Tensor,
    keep_prob: torch.Tensor,
    real_keep_prob: torch.Tensor,
    *,
    real_model: bool,
) -> Acquisition:
    """The acquisition of a batch of slices with signal as the network sees them, images
    ``(B, 1, H, W)``: measured k-space ``y`` (zero off the mask) and bool masks ``m``, ``(B, H, W)``,
    with the law's keep probability. For a one-channel (real) model, slices with Hermitian
    measurements get the Hermitian completion of their data and mask and ``real_keep_prob``;
    when any slice is not Hermitian, the acquisition carries every slice's
    :func:`phase_factors` (1 for the Hermitian ones)."""
    p: torch.Tensor = keep_prob
    phase = None
    if real_model:
        ph = phase_factors(y, m)
        real_like = (ph == 1).flatten(1).all(1)
        if bool(real_like.any()):  # a real image: its Hermitian completion
            yc, mc = complete_measurements(y, m)
            rl = real_like[:, None, None]
            y, m = torch.where(rl, yc, y), torch.where(rl, mc, m)
            p = torch.where(rl, real_keep_prob, keep_prob)
        if not bool(real_like.all()):
            phase = ph
    return Acquisition(m, None, y[:, None], keep_prob=p, phase=phase)


BatchFn = Callable[[list[int]], tuple[torch.Tensor, torch.Tensor, np.ndarray | None]]
#: Scan-specific adaptation hook: ``(normalised k-space (N, H, W), bool masks (N, H, W)) -> the
#: network to use for this scan`` (:meth:`mri_n2n.reconstruction.Reconstructor.adapted`).
AdaptFn = Callable[[torch.Tensor, torch.Tensor], torch.nn.Module]


def _adapt_with(adapt: AdaptFn | None, model: torch.nn.Module, n: int, batch_fn: BatchFn, scale: float):
    """``model``, or what ``adapt`` makes of it given all ``n`` slices' normalised measurements."""
    if adapt is None:
        return model
    y, m, _ = batch_fn(list(range(n)))
    acq = SpectralSampling(m.bool()).with_data(y.to(torch.complex64))
    return adapt(acq.y / scale, acq.mask)


@dataclass
class _Accum:
    """Running sums for fastMRI volume metrics of named images (``zf``: the ``1/p``
    compensated zero-filled image, ``plain``: the uncompensated one ``F^-1 M y``, ``rec``: the
    reconstruction) and the sampled fraction."""

    data_range: float | None
    sse: dict[str, float] = field(default_factory=dict)
    ssim_sum: dict[str, float] = field(default_factory=dict)
    ref2: float = 0.0
    n_vox: int = 0
    n_slices: int = 0
    frac_sum: float = 0.0
    frac_n: int = 0

    def add(self, images: dict[str, np.ndarray], ref: np.ndarray) -> None:
        r = self.data_range
        ref64 = torch.from_numpy(np.asarray(ref, np.float64))
        self.ref2 += float(ref64.square().sum())
        self.n_vox += ref64.numel()
        self.n_slices += ref64.shape[0]
        for name, img in images.items():
            x64 = torch.from_numpy(np.asarray(img, np.float64))
            self.sse[name] = self.sse.get(name, 0.0) + float((x64 - ref64).square().sum())
            if r and ref64.shape[-1] >= 7 and ref64.shape[-2] >= 7:
                value = float(ssim(x64[:, None], ref64[:, None], data_range=r, reduction="sum"))
            else:
                value = math.nan
            self.ssim_sum[name] = self.ssim_sum.get(name, 0.0) + value

    def result(self) -> dict[str, float]:
        r = self.data_range
        if r is None or self.n_vox == 0:
            return {}

        def _psnr(sse: float) -> float:
            mse = sse / self.n_vox
            return math.inf if mse == 0 else 20 * math.log10(r) - 10 * math.log10(mse)

        def _nmse(sse: float) -> float:
            return sse / self.ref2 if self.ref2 > 0 else math.nan

        out: dict[str, float] = {}
        for name, suffix in (("zf", "_zero_filled"), ("plain", "_zero_filled_plain"), ("rec", "")):
            if name in self.sse:
                out[f"psnr{suffix}"] = _psnr(self.sse[name])
                out[f"ssim{suffix}"] = self.ssim_sum[name] / self.n_slices
                out[f"nmse{suffix}"] = _nmse(self.sse[name])
        out["data_range"] = float(r)
        return out


def _run(
    model: torch.nn.Module,
    *,
    n: int,
    batch_fn: BatchFn,
    keep_prob: torch.Tensor,
    scale: float,
    out_view: np.ndarray,
    batch_size: int,
    amp: bool | None,
    data_range: float | None,
    preview_index: int,
    complex_view: np.ndarray | None = None,
    real_keep_prob: torch.Tensor | None = None,
    output_shape: tuple[int, int] | None = None,
) -> tuple[_Accum, dict[str, Any]]:
    """Stream ``n`` slices through zero-filling, the network and data consistency.

    ``batch_fn(indices)`` returns the measured k-space ``y`` (complex, input units), the bool
    mask and the reference magnitude (input units, ``output_shape``) or ``None``, all
    ``(B, H, W)``. Magnitudes (input units, centre-cropped in image space to ``output_shape``
    when given) go to ``out_view[indices]`` (a ``(n, H', W')`` view of the output volume).

    Each batch's slices with signal are one :class:`~mri_n2n.physics.Acquisition`: it gives the
    ``1 / p`` compensated zero-filled input, goes to the network (:func:`~mri_n2n.models.apply_model`)
    and projects its output onto the measurements. A one-channel (real) model given the
    measurements of a real image (Hermitian on the frequencies measured with their partner) works
    with the Hermitian completion of the mask, compensated by ``real_keep_prob`` (default
    ``keep_prob``), as it was trained; other slices are phase-demodulated (:func:`phase_factors`,
    the acquisition's ``phase``) and use the mask as measured.
    """
    device = _model_device(model)
    if device.type == "cpu":  # bound host memory: at most CPU_MAX_PIXELS per network call
        h, w = out_view.shape[-2:]
        batch_size = min(batch_size, max(1, CPU_MAX_PIXELS // max(h * w, 1)))
    use_amp = (device.type == "cuda") if amp is None else (bool(amp) and device.type == "cuda")
    amp_dtype = _amp_dtype(device)
    complex_model = model_channels(model) == 2
    p = keep_prob.to(device=device, dtype=torch.float32)
    p_real = p if real_keep_prob is None else real_keep_prob.to(device=device, dtype=torch.float32)
    acc = _Accum(data_range)

    def crop(a: np.ndarray) -> np.ndarray:
        return a if output_shape is None else center_pad_crop(a, output_shape)

    preview: dict[str, Any] = {}
    inv = 1.0 / scale
    model.eval()
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            idx = list(range(start, min(n, start + batch_size)))
            y_cpu, m_cpu, ref = batch_fn(idx)
            m = m_cpu.to(device=device, dtype=torch.bool)
            # the whole batch's measurements M y (its adjoint: the uncompensated zero-filled images)
            whole = SpectralSampling(m).with_data(y_cpu.to(device, torch.complex64) * inv)
            y = whole.y
            active = y.abs().flatten(1).amax(1) > 0
            msum = m.flatten(1).float().mean(1)
            for b in range(len(idx)):
                if bool(active[b]):
                    acc.frac_sum += float(msum[b])
                    acc.frac_n += 1
            z = torch.zeros_like(y)  # the compensated zero-filled images, 0 for slices without signal
            x = torch.zeros_like(z)
            if bool(active.any()):
                sel = active.nonzero().flatten()
                acq = _acquisition(y[sel], m[sel], p, p_real, real_model=not complex_model)
                za = acq.zero_filled()[:, 0]
                z[sel] = za  # the reported compensated zero-filled image is the network's input
                if complex_model:
                    inp = to_channels(za)
                else:
                    inp = (za * acq.phase.conj()).real[:, None] if acq.phase is not None else za.real[:, None]
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    out = apply_model(model, inp.float(), acq)
                out = out.float()
                est = to_complex(out, keepdim=True)  # one channel (a real model): the real part
                if acq.phase is not None:
                    est = est * acq.phase[:, None]
                # the centred projection (acq.project(est) would take the uncentred fast path,
                # equal up to float round-off)
                x[sel] = (est if ends_with_dc(model) else acq.project(est, acq.y))[:, 0]
            rec = crop((x.abs() * scale).float().cpu().numpy())
            zf = crop((z.abs() * scale).float().cpu().numpy())
            out_view[idx] = rec
            if complex_view is not None:
                complex_view[idx] = crop((x * scale).cpu().numpy())
            if ref is not None:  # the uncompensated zero-filled image only serves the metrics
                plain = crop((whole.adjoint().abs() * scale).float().cpu().numpy())
                acc.add({"zf": zf, "plain": plain, "rec": rec}, ref)
            if preview_index in idx:
                b = idx.index(preview_index)
                preview = {
                    "slice": preview_index,
                    "mask": m[b].cpu().numpy(),  # the k-space grid's mask (not cropped)
                    "zero_filled": zf[b] * inv,
                    "reconstruction": rec[b] * inv,
                }
                if ref is not None:
                    preview["reference"] = np.asarray(ref[b], np.float32) * inv
    return acc, preview


def _middle_active(energy: np.ndarray) -> int:
    """Index of the slice with signal nearest the middle (the middle when none has signal)."""
    n = len(energy)
    nz = np.nonzero(energy > 0)[0]
    if nz.size == 0:
        return n // 2
    return int(nz[np.argmin(np.abs(nz - (n - 1) / 2))])


def check_batch(batch_size: int) -> int:
    if int(batch_size) < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    return int(batch_size)


def _kspace_batches(kspace: np.ndarray, mask: np.ndarray | None) -> BatchFn:
    def fn(idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, None]:
        k = torch.from_numpy(np.ascontiguousarray(kspace[idx]))
        m = torch.from_numpy(np.ascontiguousarray(mask[idx])) if mask is not None else k != 0
        return k, m, None

    return fn


def reconstruct_kspace(
    model: torch.nn.Module,
    kspace: np.ndarray,
    mask: np.ndarray | None = None,
    keep_prob: torch.Tensor | np.ndarray | None = None,
    *,
    real_keep_prob: torch.Tensor | np.ndarray | None = None,
    normalize: str = "p99.5",
    batch_size: int = 8,
    amp: bool | None = None,
    keep_complex: bool = False,
    reference: np.ndarray | None = None,
    data_range: float | None = None,
    output_shape: tuple[int, int] | None = None,
    adapt: AdaptFn | None = None,
) -> Reconstruction:
    """Reconstruct undersampled k-space directly (zero-filled -> network -> data consistency).

    Args:
        model: a trained MRI network (one channel: real images; two: real/imaginary), on the
            device to use (CPU or CUDA).
        kspace: complex ``(slices, ky, kx)`` or ``(ky, kx)``, DC at ``(ky // 2, kx // 2)``.
        mask: sampled frequencies, broadcastable to ``kspace`` (1-D masks run over ``kx``);
            ``None``: the non-zero pattern of ``kspace``. Values outside the mask are ignored.
        keep_prob: keep probabilities ``(ky, kx)`` of the law the mask was drawn from, for the
            ``1 / p`` compensation (:meth:`mri_n2n.masks.MaskFamily.keep_probability`);
            ``None``: no compensation.
        real_keep_prob: the keep probabilities of the mask's Hermitian completion
            (:meth:`~mri_n2n.masks.MaskFamily.real_keep_probability`), used by one-channel
            models on the measurements of a real image; default ``keep_prob``.
        normalize: how the zero-filled magnitude volume is normalised
            (:func:`mri_n2n.data.volume_scale`); see :func:`kspace_normalize`.
        batch_size: slices per network call.
        amp: autocast on CUDA (default: on for CUDA).
        keep_complex: also return the complex data-consistent volume.
        reference: reference magnitudes ``(slices, rows, cols)`` (e.g. fastMRI's
            ``reconstruction_esc``): the outputs are centre-cropped in image space to its
            in-plane shape and compared with it (fastMRI volume metrics).
        data_range: the metrics' data range (fastMRI: the file's ``max``); default the
            reference's maximum.
        output_shape: centre-crop the outputs in image space to ``(rows, cols)`` (default the
            reference's shape, else no crop).
        adapt: an adaptation hook (:data:`AdaptFn`) given the whole scan once it is normalised.

    Returns:
        A :class:`Reconstruction` with ``image`` laid out ``(rows, cols, slices)``; without a
        crop its k-space equals the measured one on every sampled frequency (exactly, up to
        float32 round-off, for ``complex_image``; for ``image`` too where the complex image is
        real and non-negative).
    """
    k = as_kspace(kspace, "kspace")
    s, h, w = k.shape
    m = None if mask is None else expand_mask(mask, k.shape, "mask")

    def as_keep_prob(d: torch.Tensor | np.ndarray | None, what: str) -> torch.Tensor | None:
        if d is None:
            return None
        t = torch.as_tensor(np.asarray(d), dtype=torch.float32)
        if tuple(t.shape) != (h, w):
            raise ReconstructionError(
                f"{what} of shape {tuple(t.shape)} does not match k-space slices {(h, w)}"
            )
        return t

    p = as_keep_prob(keep_prob, "keep probability")
    p = torch.ones(h, w) if p is None else p
    p_real = as_keep_prob(real_keep_prob, "real keep probability")
    ref = None
    if reference is not None:
        ref = np.asarray(reference, np.float32)
        ref = ref[None] if ref.ndim == 2 else ref
        if ref.ndim != 3 or ref.shape[0] != s:
            raise ReconstructionError(f"reference of shape {ref.shape} does not match {s} k-space slices")
        output_shape = output_shape or (int(ref.shape[1]), int(ref.shape[2]))
        if tuple(ref.shape[1:]) != tuple(output_shape):
            raise ReconstructionError(
                f"reference slices {ref.shape[1:]} differ from the output shape {output_shape}"
            )
    oh, ow = (h, w) if output_shape is None else (int(output_shape[0]), int(output_shape[1]))
    bs = check_batch(batch_size)
    out = np.zeros((oh, ow, s), np.float32)
    view = np.moveaxis(out, 2, 0)
    cview = None
    cplx = None
    if keep_complex:
        cplx = np.zeros((oh, ow, s), np.complex64)
        cview = np.moveaxis(cplx, 2, 0)
    # pass 1: the zero-filled magnitude volume gives the normalisation
    batches = _kspace_batches(k, m)
    zf_mag = np.zeros((s, oh, ow), np.float32)
    energy = np.zeros(s)
    dev = _model_device(model)
    p_dev = p.to(dev)
    for start in range(0, s, bs):
        idx = list(range(start, min(s, start + bs)))
        y, mm, _ = batches(idx)
        acq = SpectralSampling(mm.to(dev), keep_prob=p_dev).with_data(y.to(dev))
        mag = acq.zero_filled().abs().cpu().numpy()
        zf_mag[idx] = mag if output_shape is None else center_pad_crop(mag, (oh, ow))
        energy[idx] = acq.y.abs().flatten(1).amax(1).cpu().numpy()
    if not energy.any():
        raise ReconstructionError("no sampled k-space value is non-zero: nothing to reconstruct")
    scale = volume_scale(zf_mag, normalize)
    del zf_mag
    if ref is not None:
        base = batches

        def batches(idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:  # noqa: F811
            y, mm, _ = base(idx)
            return y, mm, ref[idx]

    dr = data_range if data_range is not None else (float(ref.max()) if ref is not None else None)
    model = _adapt_with(adapt, model, s, batches, scale)
    acc, preview = _run(
        model,
        n=s,
        batch_fn=batches,
        keep_prob=p,
        scale=scale,
        out_view=view,
        batch_size=bs,
        amp=amp,
        data_range=dr,
        preview_index=_middle_active(energy),
        complex_view=cview,
        real_keep_prob=p_real,
        output_shape=None if output_shape is None else (oh, ow),
    )
    frac = acc.frac_sum / acc.frac_n if acc.frac_n else 0.0
    return Reconstruction(out, scale, frac, acc.result(), preview, cplx)


def kspace_normalize(normalize: str) -> str:
    """The normalisation of a zero-filled k-space volume for a checkpoint trained with ``normalize``.

    Training divided each *clean* volume by its maximum (``"max"``, the paper) or a percentile.
    Undersampled k-space has no clean volume, and the maximum of the density-compensated
    zero-filled magnitude overshoots the clean maximum (compensation noise peaks: 1.47x on the
    MNI152 template at 10 % sampling), so ``"max"`` is replaced by the 99.5th percentile of the
    non-zero zero-filled magnitudes (1.13x there; the reconstruction PSNR was within 0.05 dB of
    using the true maximum). Percentile modes are kept as they are.
    """
    return "p99.5" if normalize == "max" else normalize


def slice_seed(seed: int, index: int) -> int:
    """The mask seed of slice ``index`` in a retrospective study with ``--seed seed``."""
    return stable_ident("mri_n2n.reconstruct", int(seed), int(index))


def simulated_masks(corruption: MRIUndersampling, idx: Sequence[int], seed: int) -> torch.Tensor:
    """The masks ``(len(idx), H, W)`` of slices ``idx`` in a study with ``seed``, drawn on the
    CPU (:func:`slice_seed`) so that they depend on neither the batching nor the device."""
    return torch.cat([corruption.draw_masks(1, seeded_generator(slice_seed(seed, k))) for k in idx]).bool()


def reconstruct_volume(
    model: torch.nn.Module,
    corruption: MRIUndersampling,
    array: np.ndarray,
    *,
    axis: int = 2,
    seed: int = 0,
    normalize: str = "max",
    batch_size: int = 8,
    amp: bool | None = None,
    keep_complex: bool = False,
    adapt: AdaptFn | None = None,
) -> Reconstruction:
    """Retrospective study of an image volume: undersample each slice, reconstruct, compare.

    The slices along ``axis`` are normalised like training (divided by ``volume_scale(array,
    normalize)``), undersampled with masks from ``corruption`` seeded per slice
    (:func:`slice_seed`), zero-filled with its ``1 / p`` compensation, passed through the network
    and projected onto their measurements; outputs are mapped back to the array's units.

    Args:
        model: the MRI network (on its device).
        corruption: an :class:`MRIUndersampling` whose mask family matches the slice shape (see
            :meth:`MRIUndersampling.from_config`).
        array: real image volume, e.g. :attr:`mri_n2n.data.Volume.array`.
        axis: slicing axis (the checkpoint's ``axis``).
        seed: study seed.
        normalize: the checkpoint's normalisation.
        batch_size: slices per network call.
        amp: autocast on CUDA (default: on for CUDA).
        keep_complex: also return the complex data-consistent volume.
        adapt: an adaptation hook (:data:`AdaptFn`) given the whole study once it is measured.

    Returns:
        A :class:`Reconstruction` in ``array``'s layout, with fastMRI volume metrics of the
        zero-filled image and of the reconstruction against ``array``.
    """
    arr = np.asarray(array)
    if arr.ndim != 3 or np.iscomplexobj(arr):
        raise ReconstructionError(f"expected a real 3-D image volume, got shape {arr.shape} ({arr.dtype})")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    view_in = np.moveaxis(arr, axis, 0)
    n, h, w = view_in.shape
    if tuple(corruption.family.shape) != (h, w):
        raise ReconstructionError(
            f"the corruption's mask family {tuple(corruption.family.shape)} does not match slices {(h, w)}"
        )
    if h < 2 or w < 2:
        raise ReconstructionError(f"slices of shape {(h, w)} along axis {axis} are too small")
    scale = volume_scale(arr, normalize)
    out = np.zeros(arr.shape, np.float32)
    view = np.moveaxis(out, axis, 0)
    cplx = np.zeros(arr.shape, np.complex64) if keep_complex else None
    cview = np.moveaxis(cplx, axis, 0) if cplx is not None else None
    other = tuple(a for a in range(3) if a != axis)
    energy = np.maximum(arr.max(axis=other), -arr.min(axis=other))  # max |value| per slice, no copy
    data_range = float(arr.max())
    if not data_range > 0:
        raise ReconstructionError("the image volume is empty (maximum <= 0)")

    def batches(idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        ref = np.ascontiguousarray(view_in[idx], dtype=np.float32)
        m = simulated_masks(corruption, idx, seed)
        return SpectralSampling(m).forward(torch.from_numpy(ref)), m, ref

    model = _adapt_with(adapt, model, n, batches, scale)
    acc, preview = _run(
        model,
        n=n,
        batch_fn=batches,
        keep_prob=corruption.family.keep_probability(),
        real_keep_prob=corruption.family.real_keep_probability(),
        scale=scale,
        out_view=view,
        batch_size=check_batch(batch_size),
        amp=amp,
        data_range=data_range,
        preview_index=_middle_active(energy),
        complex_view=cview,
    )
    frac = acc.frac_sum / acc.frac_n if acc.frac_n else 0.0
    return Reconstruction(out, scale, frac, acc.result(), preview, cplx)


def simulate_kspace(
    model: torch.nn.Module,
    corruption: MRIUndersampling,
    kspace: np.ndarray,
    *,
    seed: int = 0,
    normalize: str = "max",
    batch_size: int = 8,
    amp: bool | None = None,
    reference: np.ndarray | None = None,
    data_range: float | None = None,
    output_shape: tuple[int, int] | None = None,
    adapt: AdaptFn | None = None,
) -> Reconstruction:
    """Retrospective study of fully sampled k-space ``(slices, ky, kx)``: each slice is
    undersampled with seeded masks from ``corruption`` (:func:`slice_seed`), reconstructed and
    compared (fastMRI volume metrics) with ``reference`` (default ``|F^-1 kspace|``).
    Outputs (and the default reference) are centre-cropped in image space to ``output_shape``
    (default: the reference's shape, else none) and laid out ``(rows, cols, slices)``; the
    metrics' data range is ``data_range`` (fastMRI: the file's ``max``), default the reference's
    maximum; ``adapt`` (:data:`AdaptFn`) may replace the network once the study is measured."""
    k = as_kspace(kspace, "kspace")
    s, h, w = k.shape
    if tuple(corruption.family.shape) != (h, w):
        raise ReconstructionError(
            f"the corruption's mask family {tuple(corruption.family.shape)} does not match k-space {(h, w)}"
        )
    bs = check_batch(batch_size)
    ref_given = None if reference is None else np.asarray(reference, np.float32)
    if ref_given is not None:
        ref_given = ref_given[None] if ref_given.ndim == 2 else ref_given
        if ref_given.ndim != 3 or ref_given.shape[0] != s:
            raise ReconstructionError(f"reference of shape {ref_given.shape} does not match {s} slices")
        output_shape = output_shape or (int(ref_given.shape[1]), int(ref_given.shape[2]))
    oh, ow = (h, w) if output_shape is None else (int(output_shape[0]), int(output_shape[1]))

    def crop(a: np.ndarray) -> np.ndarray:
        return a if output_shape is None else center_pad_crop(a, (oh, ow))

    out = np.zeros((oh, ow, s), np.float32)
    view = np.moveaxis(out, 2, 0)
    energy = np.zeros(s)
    full = Acquisition.fully_sampled((h, w))  # F^-1 of the fully sampled k-space
    for start in range(0, s, bs):  # the reference volume (in the output buffer) gives the scale
        idx = list(range(start, min(s, start + bs)))
        if ref_given is None:
            view[idx] = crop(full.combine(torch.from_numpy(k[idx])).abs().numpy())
        else:
            view[idx] = ref_given[idx]
        energy[idx] = view[idx].reshape(len(idx), -1).max(1)
    scale = volume_scale(out, normalize)
    dr = float(out.max()) if data_range is None else float(data_range)
    if not float(out.max()) > 0:
        raise ReconstructionError("the k-space is all zero")

    def batches(idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        kk = torch.from_numpy(np.ascontiguousarray(k[idx]))
        ref = crop(full.combine(kk).abs().numpy()) if ref_given is None else ref_given[idx]
        m = simulated_masks(corruption, idx, seed)
        return SpectralSampling(m).sample(kk), m, ref

    model = _adapt_with(adapt, model, s, batches, scale)
    acc, preview = _run(
        model,
        n=s,
        batch_fn=batches,
        keep_prob=corruption.family.keep_probability(),
        real_keep_prob=corruption.family.real_keep_probability(),
        scale=scale,
        out_view=view,
        batch_size=bs,
        amp=amp,
        data_range=dr,
        preview_index=_middle_active(energy),
        output_shape=None if output_shape is None else (oh, ow),
    )
    frac = acc.frac_sum / acc.frac_n if acc.frac_n else 0.0
    return Reconstruction(out, scale, frac, acc.result(), preview, None)
