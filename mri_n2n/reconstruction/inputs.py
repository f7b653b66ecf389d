"""The engine's single-coil inputs: measured Cartesian k-space (:func:`reconstruct_kspace`) and
retrospective studies of image volumes (:func:`reconstruct_volume`, any acquisition kind) and of
fully sampled k-space (:func:`simulate_kspace`). Each builds the batch function of its input (the
slices' acquisition, normalised, and their reference) and runs the one reconstruction loop,
:func:`~mri_n2n.reconstruction.engine.stream_reconstruction`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..data import center_pad_crop, volume_scale
from ..io.kspace import as_kspace, expand_mask
from ..masks import SampleLaw
from ..physics import Acquisition, CartesianAcquisition, acquisition_kind
from .engine import (
    CPU_MAX_PIXELS,
    AdaptFn,
    Reconstruction,
    ReconstructionError,
    SliceBatch,
    check_batch,
    cpu_batch_size,
    middle_slice,
    model_device,
    network_channels,
    simulated_masks,
    stream_reconstruction,
)

__all__ = ["reconstruct_kspace", "reconstruct_volume", "simulate_kspace"]


def _kspace_acquisitions(
    kspace: np.ndarray, mask: np.ndarray | None, keep_prob: torch.Tensor
) -> Callable[[list[int]], CartesianAcquisition]:
    """``idx -> `` the single-coil acquisition of those slices of measured k-space (input units;
    the data as given, zeroed off the mask only by :meth:`~mri_n2n.physics.Acquisition.with_data`),
    images ``(B, 1, H, W)``, with the law's keep probability."""

    def fn(idx: list[int]) -> CartesianAcquisition:
        k = torch.from_numpy(np.ascontiguousarray(kspace[idx]))
        m = torch.from_numpy(np.ascontiguousarray(mask[idx])) if mask is not None else k != 0
        return CartesianAcquisition(m, None, k[:, None], keep_prob=keep_prob)

    return fn


def _adapt_model(
    adapt: AdaptFn | None,
    model: torch.nn.Module,
    acquire: Callable[[list[int]], Acquisition],
    n: int,
    scale: float,
) -> torch.nn.Module:
    """``model``, or what ``adapt`` makes of it given all ``n`` slices' measurements divided by
    the volume's ``scale``."""
    if adapt is None:
        return model
    acq = acquire(list(range(n)))
    acq = acq.with_data(acq.y)
    return adapt(acq.with_data(acq.y / scale))


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
    channels: int | None = None,
    channels_last: bool | None = None,
) -> Reconstruction:
    """Reconstruct undersampled (Cartesian, single-coil) k-space directly (zero-filled ->
    network -> data consistency, :func:`stream_reconstruction`).

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
        amp: mixed precision in the device's dtype (:func:`~mri_n2n.devices.amp_dtype`);
            default off: float32, as evaluate runs.
        keep_complex: also return the complex data-consistent volume.
        reference: reference magnitudes ``(slices, rows, cols)`` (e.g. fastMRI's
            ``reconstruction_esc``): the outputs are centre-cropped in image space to its
            in-plane shape and compared with it (fastMRI volume metrics).
        data_range: the metrics' data range (fastMRI: the file's ``max``); default the
            reference's maximum.
        output_shape: centre-crop the outputs in image space to ``(rows, cols)`` (default the
            reference's shape, else no crop).
        adapt: an adaptation hook (:data:`AdaptFn`) given the whole scan once it is normalised.
        channels: the network's input channels, 1 (real images) or 2 (complex); default what
            the model's spec records (:func:`model_channels`).
        channels_last: run the network in the channels-last memory format; default the one
            training uses (:func:`default_channels_last`).

    Returns:
        A :class:`Reconstruction` with ``image`` laid out ``(rows, cols, slices)``; without a
        crop its k-space equals the measured one on every sampled frequency (exactly, up to
        float32 round-off, for ``complex_image``; for ``image`` too where the complex image is
        real and non-negative).
    """
    k = as_kspace(kspace, "kspace")
    s, h, w = k.shape
    m = None if mask is None else expand_mask(mask, k.shape, "mask")
    c = network_channels(model, channels)

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
    acquire = _kspace_acquisitions(k, m, p)
    zf_mag = np.zeros((s, oh, ow), np.float32)
    energy = np.zeros(s)
    dev = model_device(model)
    for start in range(0, s, bs):
        idx = list(range(start, min(s, start + bs)))
        acq = acquire(idx).to(dev)
        acq = acq.with_data(acq.y)
        mag = acq.zero_filled().abs()[:, 0].cpu().numpy()
        zf_mag[idx] = mag if output_shape is None else center_pad_crop(mag, (oh, ow))
        energy[idx] = acq.y.abs().flatten(1).amax(1).cpu().numpy()
    if not energy.any():
        raise ReconstructionError("no sampled k-space value is non-zero: nothing to reconstruct")
    scale = volume_scale(zf_mag, normalize)
    del zf_mag
    inv = 1.0 / scale

    def batches(idx: list[int]) -> SliceBatch:
        acq = acquire(idx)
        return SliceBatch(acq.with_data(acq.y * inv), None if ref is None else ref[idx])

    dr = data_range if data_range is not None else (float(ref.max()) if ref is not None else None)
    model = _adapt_model(adapt, model, acquire, s, scale)
    res = stream_reconstruction(
        model,
        n=s,
        batch_fn=batches,
        channels=c,
        scale=scale,
        out_view=view,
        batch_size=cpu_batch_size(model, bs, oh * ow, CPU_MAX_PIXELS),
        amp=amp,
        data_range=dr,
        preview_index=middle_slice(energy),
        complex_view=cview,
        real_keep_prob=p_real,
        output_shape=None if output_shape is None else (oh, ow),
        channels_last=channels_last,
    )
    return Reconstruction(out, scale, res.sampled_fraction, res.metrics, res.preview, cplx)


def _study_law(corruption: SampleLaw | Any) -> SampleLaw:
    """The law of a study: a :class:`~mri_n2n.masks.SampleLaw`, or the one a corruption holds."""
    return getattr(corruption, "family", corruption)


def _kind_of(kind: str | type[Acquisition]) -> type[Acquisition]:
    return acquisition_kind(kind) if isinstance(kind, str) else kind


def reconstruct_volume(
    model: torch.nn.Module,
    corruption: SampleLaw | Any,
    array: np.ndarray,
    *,
    axis: int = 2,
    seed: int = 0,
    normalize: str = "max",
    batch_size: int = 8,
    amp: bool | None = None,
    keep_complex: bool = False,
    adapt: AdaptFn | None = None,
    kind: str | type[Acquisition] = "cartesian",
    channels: int | None = None,
    channels_last: bool | None = None,
) -> Reconstruction:
    """Retrospective study of an image volume: undersample each slice, reconstruct, compare.

    The slices along ``axis`` are normalised like training (divided by ``volume_scale(array,
    normalize)``), acquired by the acquisition ``kind`` (a registered name or class, default
    ``"cartesian"``) on sampled sets drawn from the law seeded per slice (:func:`slice_seed`),
    zero-filled with its ``1 / p`` compensation, passed through the network and made consistent
    with their measurements (:func:`stream_reconstruction`); outputs are mapped back to the
    array's units.

    Args:
        model: the MRI network (on its device).
        corruption: the law of the sampled sets (a :class:`~mri_n2n.masks.SampleLaw` over the
            kind's samples, e.g. the checkpoint's mask family at the slice shape), or an
            :class:`MRIUndersampling` that holds it (see :meth:`MRIUndersampling.from_config`).
        array: real image volume, e.g. :attr:`mri_n2n.data.Volume.array`.
        axis: slicing axis (the checkpoint's ``axis``).
        seed: study seed.
        normalize: the checkpoint's normalisation.
        batch_size: slices per network call.
        amp: mixed precision in the device's dtype (:func:`~mri_n2n.devices.amp_dtype`);
            default off: float32, as evaluate runs.
        keep_complex: also return the complex data-consistent volume.
        adapt: an adaptation hook (:data:`AdaptFn`) given the whole study once it is measured.
        kind: the acquisition kind (:func:`~mri_n2n.physics.acquisition_kind`).
        channels, channels_last: as :func:`reconstruct_kspace`.

    Returns:
        A :class:`Reconstruction` in ``array``'s layout, with fastMRI volume metrics of the
        zero-filled image and of the reconstruction against ``array``.
    """
    arr = np.asarray(array)
    if arr.ndim != 3 or np.iscomplexobj(arr):
        raise ReconstructionError(f"expected a real 3-D image volume, got shape {arr.shape} ({arr.dtype})")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    c = network_channels(model, channels)
    law = _study_law(corruption)
    view_in = np.moveaxis(arr, axis, 0)
    n, h, w = view_in.shape
    if h < 2 or w < 2:
        raise ReconstructionError(f"slices of shape {(h, w)} along axis {axis} are too small")
    full = _kind_of(kind).for_law(law, (h, w))
    if tuple(full.image_shape) != (h, w) or tuple(law.shape) != tuple(full.sample_shape):
        raise ReconstructionError(
            f"the sampling law over {tuple(law.shape)} ({full.kind} acquisitions of "
            f"{tuple(full.image_shape)} images) does not match slices {(h, w)}"
        )
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
    keep_prob = law.keep_probability().float()
    inv = 1.0 / scale

    def acquire(idx: list[int]) -> Acquisition:
        ref = torch.from_numpy(np.ascontiguousarray(view_in[idx], dtype=np.float32))
        return full.observe(full.full(ref[:, None]), simulated_masks(law, idx, seed), keep_prob)

    def batches(idx: list[int]) -> SliceBatch:
        acq = acquire(idx)
        return SliceBatch(acq.with_data(acq.y * inv), np.ascontiguousarray(view_in[idx], dtype=np.float32))

    model = _adapt_model(adapt, model, acquire, n, scale)
    res = stream_reconstruction(
        model,
        n=n,
        batch_fn=batches,
        channels=c,
        scale=scale,
        out_view=view,
        batch_size=cpu_batch_size(model, check_batch(batch_size), h * w, CPU_MAX_PIXELS),
        amp=amp,
        data_range=data_range,
        preview_index=middle_slice(energy),
        complex_view=cview,
        real_keep_prob=law.real_keep_probability().float(),
        channels_last=channels_last,
    )
    return Reconstruction(out, scale, res.sampled_fraction, res.metrics, res.preview, cplx)


def simulate_kspace(
    model: torch.nn.Module,
    corruption: SampleLaw | Any,
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
    channels: int | None = None,
    channels_last: bool | None = None,
) -> Reconstruction:
    """Retrospective study of fully sampled (Cartesian, single-coil) k-space ``(slices, ky, kx)``:
    each slice is undersampled with seeded masks from the law (``corruption``: a
    :class:`~mri_n2n.masks.MaskFamily`, or a corruption holding one; :func:`slice_seed`),
    reconstructed and compared (fastMRI volume metrics) with ``reference`` (default
    ``|F^-1 kspace|``). Outputs (and the default reference) are centre-cropped in image space to
    ``output_shape`` (default: the reference's shape, else none) and laid out ``(rows, cols,
    slices)``; the metrics' data range is ``data_range`` (fastMRI: the file's ``max``), default
    the reference's maximum; ``adapt`` (:data:`AdaptFn`) may replace the network once the study
    is measured; ``channels``, ``channels_last`` as :func:`reconstruct_kspace`."""
    k = as_kspace(kspace, "kspace")
    s, h, w = k.shape
    c = network_channels(model, channels)
    law = _study_law(corruption)
    if tuple(law.shape) != (h, w):
        raise ReconstructionError(
            f"the corruption's mask family {tuple(law.shape)} does not match k-space {(h, w)}"
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
    full = CartesianAcquisition.fully_sampled((h, w))  # F^-1 of the fully sampled k-space
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
    keep_prob = law.keep_probability().float()
    inv = 1.0 / scale

    def acquire(idx: list[int]) -> Acquisition:
        kk = torch.from_numpy(np.ascontiguousarray(k[idx]))
        return full.observe(kk[:, None], simulated_masks(law, idx, seed), keep_prob)

    def batches(idx: list[int]) -> SliceBatch:
        acq = acquire(idx)
        kk = torch.from_numpy(np.ascontiguousarray(k[idx]))
        ref = crop(full.combine(kk).abs().numpy()) if ref_given is None else ref_given[idx]
        return SliceBatch(acq.with_data(acq.y * inv), ref)

    model = _adapt_model(adapt, model, acquire, s, scale)
    res = stream_reconstruction(
        model,
        n=s,
        batch_fn=batches,
        channels=c,
        scale=scale,
        out_view=view,
        batch_size=cpu_batch_size(model, bs, oh * ow, CPU_MAX_PIXELS),
        amp=amp,
        data_range=dr,
        preview_index=middle_slice(energy),
        real_keep_prob=law.real_keep_probability().float(),
        output_shape=None if output_shape is None else (oh, ow),
        channels_last=channels_last,
    )
    return Reconstruction(out, scale, res.sampled_fraction, res.metrics, res.preview, None)


