"""The reconstruction engine: slices stream through zero-filling with ``1/p`` compensation,
normalisation, the network and data consistency, ``batch_size`` at a time.

One loop, :func:`stream_reconstruction`, serves every input: a batch function gives each batch's
:class:`~mri_n2n.physics.Acquisition` (normalised) and reference, and the loop runs the network
on the acquisition's compensated zero-filled image, its data consistency and its output image
convention, for every acquisition kind, single- and multi-coil.
:func:`reconstruct_kspace` reconstructs measured k-space; :func:`reconstruct_volume` and
:func:`simulate_kspace` run retrospective studies (seeded sampled sets per slice, metrics against
the reference); :func:`~mri_n2n.reconstruction.multicoil.reconstruct_multicoil` reads multi-coil
files.
``docs/guide/reconstruction.md`` ("The pipeline") describes it step by step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..data import center_pad_crop
from ..devices import autocast_dtype
from ..fft import to_complex
from ..masks import SampleLaw
from ..metrics import ssim
from ..models import apply_model, ends_with_dc
from ..physics import Acquisition
from ..seeding import seeded_generator, stable_ident

__all__ = [
    "ReconstructionError",
    "Reconstruction",
    "CPU_MAX_PIXELS",
    "model_channels",
    "kspace_normalize",
    "slice_seed",
    "simulated_masks",
    "check_batch",
    "SliceBatch",
    "BatchFn",
    "OutputFn",
    "AdaptFn",
    "Streamed",
    "stream_reconstruction",
    "consistent",
    "default_channels_last",
    "network_channels",
    "model_device",
    "middle_slice",
    "cpu_batch_size",
]


class ReconstructionError(ValueError):
    """An input cannot be reconstructed; the message names the input and why."""


#: On CPU one network call holds at most this many pixels (4 slices of 512x512, 16 of 256x256):
#: measured activation memory per 512x512 slice is about 190 MB for the plain U-Net and 400 MB
#: for the paper's, so a call stays under about 1.6 GB whatever ``--batch-size`` says.
CPU_MAX_PIXELS = 1 << 20


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


def inference_dtype(amp: bool | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of inference on ``device``: ``None`` (full precision, float32, as
    ``evaluate`` and training's validation run) unless ``amp`` asks for mixed precision, then
    the device's :func:`~mri_n2n.devices.amp_dtype` (bf16 from compute capability 8.0, fp16 on
    7.x, none below; bf16 on a CPU). Measured on CPU-simulated bf16, mixed precision moves
    outputs by up to 1.7e-2 relative (U-Net) and 3e-3 (unrolled): opt in with ``--amp``."""
    return autocast_dtype(amp, device, default=False)


def model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _inner(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside a wrapper (self-ensemble, DDP, ``torch.compile``)."""
    for attr in ("module", "_orig_mod"):
        inner = getattr(model, attr, None)
        if isinstance(inner, torch.nn.Module):
            return _inner(inner)
    return model


def model_channels(model: torch.nn.Module) -> int:
    """The input channels an MRI network's spec records (``spec["kwargs"]["in_channels"]``): 1
    (real images) or 2 (real, imaginary). A checkpoint says it too
    (:func:`~mri_n2n.checkpoint.checkpoint_acquisition`), which is what
    :class:`~mri_n2n.reconstruction.Reconstructor` reads.

    Raises:
        ReconstructionError: the model records no spec (pass ``channels`` to the engine).
    """
    spec = getattr(_inner(model), "spec", None) or {}
    kw = spec.get("kwargs", {}) if isinstance(spec, dict) else {}
    if "in_channels" not in kw:
        raise ReconstructionError(
            f"{type(model).__name__} records no input channels (no spec): pass channels= (1 real, 2 complex)"
        )
    return int(kw["in_channels"])


def network_channels(model: torch.nn.Module, channels: int | None) -> int:
    """The network's input channels: ``channels`` when given, else what its spec records."""
    c = model_channels(model) if channels is None else int(channels)
    if c not in (1, 2):
        raise ReconstructionError(f"an MRI network takes 1 (real) or 2 (complex) channels, got {c}")
    return c


def default_channels_last(model: torch.nn.Module, device: torch.device) -> bool:
    """The memory format training uses for ``model`` on ``device`` (the trainer's default): the
    channels-last layout on CUDA, and on a CPU for networks that prefer it
    (``prefers_channels_last``: the unrolled network, whose convolutions run faster so)."""
    return device.type == "cuda" or bool(getattr(_inner(model), "prefers_channels_last", False))


def _channels_last_now(model: torch.nn.Module) -> bool:
    """Whether the model's convolution weights are in the channels-last layout."""
    for p in model.parameters():
        if p.ndim == 4 and p.shape[1] * p.shape[2] * p.shape[3] > 1 and p.shape[1] > 1:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


def _select(acq: Acquisition, sel: torch.Tensor) -> Acquisition:
    """The acquisition of the samples ``sel`` (indices) of a batched acquisition."""
    return type(acq).collate([acq.batch(slice(i, i + 1)) for i in sel.tolist()])


def _network_view(acq: Acquisition, channels: int, real_keep_prob: torch.Tensor | None) -> Acquisition:
    """The acquisition the network works with: a one-channel (real) network on single-coil
    data gets the kind's :meth:`~mri_n2n.acquisition.Acquisition.real_view` (Cartesian: the
    Hermitian completion, or the phase of non-Hermitian slices); every other model the
    measurements as they are."""
    if channels == 1 and not acq.multicoil:
        return acq.real_view(real_keep_prob)
    return acq


def _network_input(acq: Acquisition, z: torch.Tensor, channels: int) -> torch.Tensor:
    """The network's channels of its (complex) input image ``z``; a real network sees the real
    part of the phase-demodulated image when the acquisition carries a phase."""
    phase = getattr(acq, "phase", None)
    if channels == 1 and phase is not None:
        z = z * phase.conj().unsqueeze(1)
    return acq.channels_of(z, channels)


def _network_image(acq: Acquisition, out: torch.Tensor) -> torch.Tensor:
    """The network's output channels as the acquisition's complex image (a real network's output
    is a real image, modulated back by the acquisition's phase when it carries one)."""
    if acq.multicoil:
        return acq.image_of(out)
    est = to_complex(out, keepdim=True)  # one channel (a real model): the real part
    phase = getattr(acq, "phase", None)
    return est if phase is None else est * phase.unsqueeze(1)


def consistent(acq: Acquisition, x: torch.Tensor) -> torch.Tensor:
    """The data-consistent image of an estimate ``x``: :meth:`Acquisition.data_consistency`
    (the exact replacement of the measured samples where the kind has one, else the proximal
    step with ``lam -> 0``). For a kind with the replacement the measurements are passed
    explicitly: the single-coil Cartesian kind then takes its centred-FFT path, which
    reconstruction has always used (its uncentred fast path, taken when no ``y`` is passed, is
    equal up to float round-off)."""
    return acq.data_consistency(x, y=acq.y)


@dataclass
class SliceBatch:
    """What a batch function (:data:`BatchFn`) gives the engine for some slices.

    Attributes:
        acq: the slices' acquisition as measured, normalised (network units).
        reference: their reference magnitudes in the input's units (the output's shape), or
            ``None``.
        zero_filled: the network's ``1 / p`` compensated zero-filled input image in network
            units when the caller already computed it (multi-coil files: for the normalisation);
            ``None``: ``acq.zero_filled()`` of the acquisition the network works with.
    """

    acq: Acquisition
    reference: np.ndarray | None = None
    zero_filled: torch.Tensor | None = None


#: ``batch_fn(indices) -> SliceBatch``: the acquisition of those slices, normalised.
BatchFn = Callable[[list[int]], SliceBatch]
#: An output convention: ``(complex image, acquisition) -> magnitude`` (default
#: :meth:`~mri_n2n.physics.Acquisition.output_image`).
OutputFn = Callable[[torch.Tensor, Acquisition], torch.Tensor]
#: Scan-specific adaptation hook: the whole scan's acquisition, normalised as in training ->
#: the network to use for this scan (:meth:`mri_n2n.reconstruction.Reconstructor.adapted`).
AdaptFn = Callable[[Acquisition], torch.nn.Module]


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


@dataclass
class Streamed:
    """What :func:`stream_reconstruction` returns: the volume ``metrics`` (empty without a
    reference), the ``preview`` of one slice and the mean ``sampled_fraction`` of the slices with
    signal."""

    metrics: dict[str, float]
    preview: dict[str, Any]
    sampled_fraction: float


def _plain_image(acq: Acquisition) -> torch.Tensor:
    """The uncompensated zero-filled image ``A^H y`` in the output convention (the usual
    baseline of the metrics)."""
    return acq.output_image(acq.adjoint())


def _per_slice(t: torch.Tensor, b: int) -> torch.Tensor:
    """A batch of images ``(B, 1, H, W)`` or ``(B, H, W)`` as ``(B, H, W)``."""
    return t.reshape(b, *t.shape[-2:])


def stream_reconstruction(
    model: torch.nn.Module,
    *,
    n: int,
    batch_fn: BatchFn,
    channels: int,
    scale: float,
    out_view: np.ndarray,
    batch_size: int,
    preview_index: int,
    amp: bool | None = None,
    data_range: float | None = None,
    complex_view: np.ndarray | None = None,
    output_shape: tuple[int, int] | None = None,
    real_keep_prob: torch.Tensor | None = None,
    output: OutputFn | None = None,
    plain: Callable[[Acquisition], torch.Tensor] | None = None,
    project: Callable[[torch.Tensor, Acquisition], torch.Tensor] | None = None,
    channels_last: bool | None = None,
) -> Streamed:
    """The one reconstruction loop: ``n`` slices stream, ``batch_size`` at a time, through the
    compensated zero-filling, the network, data consistency and the output convention, for every
    acquisition kind, single- and multi-coil, file and volume inputs.

    ``batch_fn(indices)`` gives the slices' :class:`SliceBatch`: their acquisition as measured,
    normalised (network units), and their reference magnitudes (input units, ``output_shape``)
    or ``None``. Per batch, the slices with measurements go to the network as the acquisition
    it works with (:func:`_network_view`: a one-channel model on single-coil Cartesian data
    sees the Hermitian completion of a real image's measurements, compensated by
    ``real_keep_prob``, or phase-demodulated data), its ``1 / p`` compensated zero-filled image
    as the network's channels (:func:`~mri_n2n.models.apply_model`, in the memory format
    training uses: ``channels_last``, default :func:`default_channels_last`), then the data
    consistency of the acquisition (:func:`consistent`, or ``project(output, acq)`` when
    given; none for a network that ends with its own) and the output convention
    (``output(image, acq)``, default :meth:`~mri_n2n.physics.Acquisition.output_image`: the
    magnitude, or for Cartesian coils the root-sum-of-squares of the data-consistent coil
    images). The compensated zero-filled image is reported in the same convention, and with a
    reference the uncompensated one (``plain(acq)``, default the output image of ``A^H y``).
    Magnitudes (input units, centre-cropped in image space to ``output_shape`` when given) go
    to ``out_view[indices]`` (a ``(n, H', W')`` view of the output volume), complex images to
    ``complex_view`` when given; slices without measurements give zeros.
    """
    device = model_device(model)
    amp_dtype = inference_dtype(amp, device)
    use_amp = amp_dtype is not None
    p_real = None if real_keep_prob is None else real_keep_prob.to(device=device, dtype=torch.float32)
    cl = default_channels_last(model, device) if channels_last is None else bool(channels_last)
    out_fn: OutputFn = output or (lambda x, a: a.output_image(x))
    plain_fn = plain or _plain_image
    acc = _Accum(data_range)

    def crop(a: np.ndarray) -> np.ndarray:
        return a if output_shape is None else center_pad_crop(a, output_shape)

    preview: dict[str, Any] = {}
    inv = 1.0 / scale
    model.eval()
    was_cl = _channels_last_now(model)
    if cl != was_cl:
        model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                idx = list(range(start, min(n, start + batch_size)))
                batch = batch_fn(idx)
                measured = batch.acq.to(device)
                b = len(idx)
                active = measured.y.abs().flatten(1).amax(1) > 0
                sampled = measured.sampled
                if sampled.ndim == len(measured.sample_shape):  # shared by the batch
                    sampled = sampled.expand(b, *sampled.shape)
                fractions = sampled.flatten(1).float().mean(1)
                for j in range(b):
                    if bool(active[j]):
                        acc.frac_sum += float(fractions[j])
                        acc.frac_n += 1
                h, w = measured.image_shape
                rec_mag = torch.zeros(b, h, w, device=device)
                zf_mag = torch.zeros_like(rec_mag)
                x_all = None
                if complex_view is not None:
                    x_all = torch.zeros(b, h, w, dtype=torch.complex64, device=device)
                if bool(active.any()):
                    sel = active.nonzero().flatten()
                    part = measured if bool(active.all()) else _select(measured, sel)
                    acq = _network_view(part, channels, p_real)
                    z = acq.zero_filled() if batch.zero_filled is None else batch.zero_filled.to(device)[sel]
                    inp = _network_input(acq, z, channels)
                    if cl:
                        inp = inp.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                        out = apply_model(model, inp.float(), acq)
                    out = out.float()
                    if ends_with_dc(model):
                        x = _network_image(acq, out)
                    elif project is not None:
                        x = project(out, acq)
                        x = x if x.is_complex() else acq.image_of(x.float())
                    else:
                        x = consistent(acq, _network_image(acq, out))
                    k = len(sel)
                    rec_mag[sel] = _per_slice(out_fn(x, acq), k).float()
                    zf_mag[sel] = _per_slice(out_fn(z, acq), k).float()
                    if x_all is not None:
                        x_all[sel] = _per_slice(x, k).to(torch.complex64)
                rec = crop((rec_mag * scale).cpu().numpy())
                zf = crop((zf_mag * scale).cpu().numpy())
                out_view[idx] = rec
                if complex_view is not None and x_all is not None:
                    complex_view[idx] = crop((x_all * scale).cpu().numpy())
                ref = batch.reference
                if ref is not None:  # the uncompensated zero-filled image only serves the metrics
                    plain_mag = crop((_per_slice(plain_fn(measured), b).float() * scale).cpu().numpy())
                    acc.add({"zf": zf, "plain": plain_mag, "rec": rec}, ref)
                if preview_index in idx:
                    j = idx.index(preview_index)
                    preview = {
                        "slice": preview_index,
                        "mask": sampled[j].cpu().numpy() if sampled.ndim == 3 else None,  # the grid's mask
                        "zero_filled": zf[j] * inv,
                        "reconstruction": rec[j] * inv,
                    }
                    if ref is not None:
                        preview["reference"] = np.asarray(ref[j], np.float32) * inv
    finally:
        if cl != was_cl:  # the model's own layout again, even on errors
            model.to(memory_format=torch.channels_last if was_cl else torch.contiguous_format)
    frac = acc.frac_sum / acc.frac_n if acc.frac_n else 0.0
    return Streamed(acc.result(), preview, frac)


def middle_slice(energy: np.ndarray) -> int:
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


def cpu_batch_size(model: torch.nn.Module, batch_size: int, pixels: int, cap: int) -> int:
    """``batch_size``, on a CPU at most ``cap // pixels`` slices (at least one) per network call."""
    if model_device(model).type == "cpu":
        return min(batch_size, max(1, cap // max(pixels, 1)))
    return batch_size


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


def simulated_masks(law: SampleLaw | Any, idx: Sequence[int], seed: int) -> torch.Tensor:
    """The sampled sets ``(len(idx), *law.shape)`` of slices ``idx`` in a study with ``seed``
    (``law``: a :class:`~mri_n2n.masks.SampleLaw`, or a corruption holding one as ``family``),
    drawn on the CPU (:func:`slice_seed`) so that they depend on neither the batching nor the
    device."""
    law = getattr(law, "family", law)
    return torch.cat([law.sample(1, generator=seeded_generator(slice_seed(seed, k))) for k in idx]).bool()

