"""Reconstructing multi-coil k-space (fastMRI multi-coil HDF5, ISMRMRD, Siemens twix as
:func:`mri_n2n.io.raw.read_raw` reads them) with a two-channel (complex) checkpoint.

Per slice: readout oversampling is removed in image space (exact for masks of whole lines),
coil maps are estimated from the fully sampled k-space centre (:func:`mri_n2n.coils.estimate_maps`,
Walsh's method, as for training: ESPIRiT needs a wider calibration region than accelerated line
masks keep), the network sees the SENSE-1 zero-filled image compensated by the file's mask law
(recorded or estimated, :func:`~mri_n2n.data.measured.file_mask_law`), unrolled networks get the
coils' measurements and maps for their data consistency (one
:class:`~mri_n2n.physics.Acquisition` per batch of slices: maps, masks, measurements and the
law's keep probability), and the output goes through the acquisition's per-coil data
consistency (:meth:`~mri_n2n.physics.Acquisition.project`, as
:class:`~mri_n2n.corruptions.multicoil.MultiCoilUndersampling` trained it; ``--dc prox``
networks: their own). The written image follows fastMRI's convention
(:func:`multicoil_output`, ``output="rss"``): the root-sum-of-squares of the coil images whose
k-space holds the measurements on the measured bins and the network's ``F S_c x`` elsewhere, in
the input's units, exactly the data's root-sum-of-squares on a fully sampled file (outside the
maps' support too); ``output="sense"`` keeps the network's coil-combined image on the maps'
support. The output is the magnitude ``(rows, cols, slices)`` cropped to the reconstruction
matrix; with a reference (the file's ``reconstruction_rss``, or for ``simulate`` the
root-sum-of-squares of the fully sampled coils) fastMRI volume metrics compare it, the SENSE-1
compensated zero-filled image (in the same convention) and the usual baseline, the
root-sum-of-squares of the zero-filled coil images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from ..coil_maps import INFERENCE_MAPS
from ..coil_maps import MAPS_MIN_CALIBRATION as _MIN_CALIBRATION
from ..coils import compress_coils, estimate_maps, find_calibration, rss
from ..data.measured import crop_readout, file_mask_law
from ..data.slices import center_pad_crop
from ..fft import to_complex
from ..io.kspace import kspace_affine
from ..io.multicoil import MultiCoilKSpace
from ..masks import MASK_LAW_ATTR, MaskFamily, SampleLaw
from ..models import ends_with_dc
from ..physics import Acquisition, SpectralSampling
from ..seeding import seeded_generator
from .engine import (
    Reconstruction,
    ReconstructionError,
    SliceBatch,
    model_channels,
    slice_seed,
    stream_reconstruction,
)

__all__ = [
    "reconstruct_multicoil",
    "multicoil_affine",
    "multicoil_output",
    "MULTICOIL_OUTPUTS",
    "MAPS_MIN_CALIBRATION",
    "MAPS",
    "inference_maps",
]

#: The multi-coil output conventions of :func:`multicoil_output` (the first is the default).
MULTICOIL_OUTPUTS = ("rss", "sense")


def multicoil_output(
    image: torch.Tensor,
    acq: Acquisition,
    output: str = "rss",
    coil_images: torch.Tensor | None = None,
) -> torch.Tensor:
    """The magnitude a multi-coil method delivers, in the units of its measurements.

    ``image`` is the method's final complex SENSE image ``x`` (real/imaginary channels
    ``(B, 2, H, W)`` or complex ``(B, H, W)``): a network's output after its data consistency
    (``--dc prox`` networks: their own output; others: the corruption's per-coil projection),
    a baseline's solution (CG-SENSE, TV-SENSE) or the SENSE-1 zero-filled image; ``acq`` is
    the slices' acquisition (:class:`~mri_n2n.physics.Acquisition` with maps and measurements).

    - ``"rss"`` (default; fastMRI's convention, E2E-VarNet's output): the root-sum-of-squares
      of the coil images of the per-coil data-consistent k-space, ``k_c = M y_c + (1 - M) F S_c
      x`` (:meth:`~mri_n2n.physics.CartesianAcquisition.coil_rss`). On a fully sampled slice this is
      the root-sum-of-squares of the data, exactly, outside the maps' support too; on measured
      bins every coil keeps its measurements (their noise included).
    - ``"sense"``: the SENSE image itself where the maps see the object, ``|x| sqrt(sum_c
      |S_c|^2)`` (``|x|`` for normalised maps), and the ``"rss"`` image outside the maps'
      support (where ``x`` is not defined). Same units as ``"rss"``; it keeps the denoising of
      methods that do not force the measurements (``--dc prox``, CG-SENSE, TV-SENSE).

    ``coil_images``: the zero-filled coil images of the measurements
    (:meth:`~mri_n2n.physics.CartesianAcquisition.coil_images`, Cartesian coils), when already computed;
    ``None``: ``"rss"`` is the acquisition's :meth:`~mri_n2n.physics.Acquisition.output_image`.

    Both scale with ``(image, kspace)``: a k-space ``c`` times larger gives a ``c`` times larger
    output (the reconstruction normalises its input and multiplies the output back).

    Why not ``|x|`` itself: the coil combination by the maps is the root-sum-of-squares only where
    the maps match the signal; where noise dominates it keeps one channel's worth of noise power
    while the root-sum-of-squares sums all ``C`` (``sqrt(C)`` times larger: 1.41 for a 2-channel
    file), and it is zero outside the maps' support. Written as the image, ``|x|`` was therefore
    not in the units of the file's own root-sum-of-squares, even for a fully sampled file.

    Returns:
        float32 magnitude ``(B, H, W)``.

    Raises:
        ValueError: an unknown ``output``.
    """
    if output not in MULTICOIL_OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(MULTICOIL_OUTPUTS)}, got {output!r}")
    x = image if image.is_complex() else to_complex(image.float())
    # the kind's output image (Cartesian coils: the RSS of the data-consistent coil images),
    # sharing the coil images when the caller already has them
    out = acq.output_image(x) if coil_images is None else acq.coil_rss(x, acq.y, coil_images)
    if output == "sense":
        norm = rss(acq.maps, dim=-3).expand_as(out)
        out = torch.where(norm > 0, x.abs() * norm, out)
    return out.float()


#: Smallest side of the fully sampled centre from which maps are estimated at inference
#: (:data:`mri_n2n.coil_maps.MAPS_MIN_CALIBRATION`).
MAPS_MIN_CALIBRATION = _MIN_CALIBRATION


def _crop_rows(k: np.ndarray, mask: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``(S, C, ky, kx)`` and ``(S, ky, kx)`` with the readout cropped to ``rows``."""
    s, c, h, w = k.shape
    if rows >= h:
        return k, mask
    flat, m = crop_readout(k.reshape(s * c, h, w), np.repeat(mask, c, axis=0), rows)
    return flat.reshape(s, c, rows, w), m.reshape(s, c, rows, w)[:, 0]


#: On a CPU, most image pixels (slices x H x W) per network call: batches of smaller slices keep
#: the activations in cache; 5 cascades of 16-channel convolutions on 320 x 320 slices took half
#: the time in pairs of slices as in batches of 8 (2 slices: 1.15 s, 8: 2.33 s per 8 slices, one
#: thread), whose 52 MB activations are allocated and page-faulted afresh in every layer.
CPU_PIXELS_PER_CALL = 2**18

#: Slices whose maps are estimated in one call (their small eigenproblems solved together), one
#: call per thread: 16-coil 320 x 320 slices in pairs took 4.5 s for 30 slices on 2 threads, in
#: eights 6.7 s (their temporaries no longer fit in cache).
MAPS_CHUNK = 2


#: How ``reconstruct`` estimates each slice's coil maps from its fully sampled centre
#: (:data:`mri_n2n.coil_maps.INFERENCE_MAPS`, where the choice is documented; the same dict).
MAPS: dict[str, Any] = INFERENCE_MAPS


def inference_maps(
    k: torch.Tensor, settings: Mapping[str, Any] | None = None, where: str = "k-space"
) -> torch.Tensor:
    """Coil maps ``(S, C, H, W)`` of k-space ``(S, C, H, W)`` as ``reconstruct`` estimates them:
    each slice from its own fully sampled centre, with ``settings`` (``{"method": "walsh" or
    "espirit", **keywords of that estimator}``; ``None``: :data:`MAPS`). The slices are grouped by
    their calibration size and estimated in chunks, one chunk per thread of
    ``torch.get_num_threads()``, each chunk single-threaded.

    Raises:
        ReconstructionError: no usable calibration region, or settings the estimator does not
            take (one line naming ``where``).
    """
    opts = dict(MAPS if settings is None else settings)
    method = opts.pop("method", "walsh")
    groups: dict[tuple[int, int], list[int]] = {}
    for i in range(k.shape[0]):
        groups.setdefault(find_calibration(k[i]), []).append(i)
    out = torch.empty_like(k)
    jobs = [idx[j : j + MAPS_CHUNK] for idx in groups.values() for j in range(0, len(idx), MAPS_CHUNK)]

    def one(chunk: list[int]) -> torch.Tensor:
        torch.set_num_threads(1)  # small eigenproblems and elementwise work: one thread is faster
        try:
            return estimate_maps(k[chunk], method, min_calib=MAPS_MIN_CALIBRATION, **opts)
        except TypeError as e:  # a keyword the estimator does not take
            raise ValueError(f"coil-map settings {dict(settings or MAPS)}: {e}") from None

    threads = torch.get_num_threads()
    try:
        if threads > 1 and len(jobs) > 1:  # one chunk per thread instead (torch frees the GIL)
            with ThreadPoolExecutor(min(threads, len(jobs))) as pool:
                maps = list(pool.map(one, jobs))
        else:
            maps = [one(chunk) for chunk in jobs]
    except ValueError as e:
        raise ReconstructionError(f"{where}: {e}") from None
    finally:
        torch.set_num_threads(threads)
    for chunk, m in zip(jobs, maps):
        out[chunk] = m
    return out


def reconstruct_multicoil(
    model: torch.nn.Module,
    corruption_project: Callable[[torch.Tensor, Acquisition], torch.Tensor] | None,
    mc: MultiCoilKSpace,
    *,
    family: MaskFamily | None = None,
    simulate: float | None = None,
    seed: int = 0,
    batch_size: int = 4,
    virtual_coils: int | None = None,
    output: str = "rss",
    adapt: Callable[[SampleLaw, Acquisition], torch.nn.Module] | None = None,
    cg_iters: int | None = None,
    channels: int | None = None,
    amp: bool = False,
    channels_last: bool | None = None,
    maps_settings: Mapping[str, Any] | None = None,
) -> Reconstruction:
    """Reconstruct one multi-coil file (module docstring) with the one reconstruction loop
    (:func:`~mri_n2n.reconstruction.engine.stream_reconstruction`).

    Args:
        model: a two-channel (complex) MRI network, on the device to use.
        corruption_project: ``project(output, acq)`` to use instead of the acquisition's
            per-coil data consistency (:func:`~mri_n2n.reconstruction.engine.consistent`, what
            :meth:`~mri_n2n.corruptions.multicoil.MultiCoilUndersampling.project` does), given
            the network's channels and the batch's acquisition; ``None``: the acquisition's.
        mc: the file as :func:`~mri_n2n.io.raw.read_raw` returns it.
        family: for ``simulate``, the checkpoint's mask family at the file's grid (after the
            readout crop); its draws are seeded per slice by ``seed``.
        simulate: retrospective study: undersample the fully sampled file with ``family``.
        seed: seeds the simulated masks.
        batch_size: slices per network call (on a CPU at most :data:`CPU_PIXELS_PER_CALL` pixels).
        virtual_coils: compress each slice's coils to this many virtual coils first
            (:func:`~mri_n2n.coils.compress_coils`; the costs of the maps, the zero-filled images
            and the data consistency scale with the coils); ``None`` or at least the file's
            coils: no compression. The reference of ``simulate`` uses all coils.
        output: the output convention (:func:`multicoil_output`): ``"rss"`` (default; fastMRI's:
            the root-sum-of-squares of the data-consistent coil images, the data's own
            root-sum-of-squares on fully sampled files) or ``"sense"`` (the network's SENSE
            image scaled by the maps' root-sum-of-squares on their support). Both are in the
            input's units; the report's zero-filled row follows the same convention.
        adapt: ``adapt(law, acq) -> model``, called once before reconstructing with the file's
            mask law and the whole file's acquisition (masks ``(N, H, W)``, coil measurements
            ``(N, C, H, W)`` in the network's units, maps); the model it returns (an adapted
            copy, :func:`~mri_n2n.reconstruction.adapt.adapt`) reconstructs the file.
        cg_iters: conjugate-gradient iterations of each cascade's proximal data consistency
            (``--dc prox`` networks) for this reconstruction, instead of the trained count: fewer
            are faster and change the output (the benchmark ``bench reconstruct --multicoil``
            states by how much); ``None``: the trained count.
        channels: the network's input channels (must be 2); default what its spec records.
        amp: mixed precision for the network in the device's dtype
            (:func:`~mri_n2n.devices.amp_dtype`); default off: float32 (the coil data consistency
            always runs in full precision).
        channels_last: the network's memory format (default: the one training uses,
            :func:`~mri_n2n.reconstruction.engine.default_channels_last`).
        maps_settings: how the coil maps are estimated (:func:`inference_maps`); ``None``:
            :data:`MAPS`.

    Raises:
        ReconstructionError: a one-channel model, an undersampled file with ``simulate``, no
            usable calibration region, an unreadable mask law (one line naming the file).
    """
    where = mc.path
    if output not in MULTICOIL_OUTPUTS:
        known = ", ".join(MULTICOIL_OUTPUTS)
        raise ReconstructionError(f"{where}: output must be one of {known}, got {output!r}")
    if (model_channels(model) if channels is None else int(channels)) != 2:
        raise ReconstructionError(f"{where}: multi-coil data need a two-channel (complex) checkpoint")
    if cg_iters is not None and not (ends_with_dc(model) and hasattr(model, "cg_iters")):
        raise ReconstructionError(f"{where}: cg_iters needs a network with --dc prox data consistency")
    if cg_iters is not None and cg_iters < 1:
        raise ReconstructionError(f"{where}: cg_iters must be >= 1, got {cg_iters}")
    k = np.asarray(mc.kspace, np.complex64)
    s, c, h, w = k.shape
    sampled = np.ascontiguousarray(mc.sampled())
    if simulate is not None and not bool(sampled.all()):
        raise ReconstructionError(f"{where}: --simulate needs fully sampled k-space")
    rows, cols = mc.recon_shape if mc.recon_shape else (h, w)
    columns = bool((sampled == sampled[:, :1, :]).all())
    if rows < h and columns:
        k, sampled = _crop_rows(k, sampled, rows)
    h = k.shape[2]
    if simulate is not None:
        if family is None or family.shape != (h, w):
            raise ReconstructionError(f"{where}: no mask family for the {h}x{w} grid")
        draws = [family.sample(1, generator=seeded_generator(slice_seed(seed, i))) for i in range(s)]
        sampled = torch.cat(draws).numpy()
        law, source = family, "simulated"
    else:
        try:
            recorded = (mc.meta.get("attrs") or {}).get(MASK_LAW_ATTR)
            law, source = file_mask_law(k[:, 0], sampled, recorded, where=where)
        except ValueError as e:
            raise ReconstructionError(str(e)) from None
    full = None
    if mc.reference is None and (simulate is not None or bool(sampled.all())):
        coil_images = Acquisition.fully_sampled((h, w)).combine(torch.from_numpy(k))
        full = np.sqrt((np.abs(coil_images.numpy()) ** 2).sum(1))  # RSS of all coils
    if virtual_coils is not None and virtual_coils < 1:
        raise ReconstructionError(f"{where}: virtual_coils must be >= 1, got {virtual_coils}")
    if virtual_coils is not None and virtual_coils < c:
        k = compress_coils(k, virtual_coils)
    p = torch.ones(h, w) if law is None else law.keep_probability().float()
    m_all = torch.from_numpy(sampled.astype(bool))
    y_all = SpectralSampling(m_all).sample(torch.from_numpy(k).to(torch.complex64))  # every coil's M y
    dev = next(model.parameters()).device
    # per slice: maps, SENSE-1 compensated zero-filled image
    maps = inference_maps(y_all, maps_settings, where)
    step = batch_size  # slices per call below: on a CPU, few enough to stay in cache
    if dev.type == "cpu":
        step = max(1, min(batch_size, CPU_PIXELS_PER_CALL // (h * w)))
    chunks = [slice(i, i + step) for i in range(0, s, step)]
    zf = torch.cat([Acquisition(m_all[b], maps[b], y_all[b], keep_prob=p).zero_filled() for b in chunks])
    # the normalisation: the maximum of the compensated SENSE-1 zero-filled magnitude (docs:
    # "Normalisation"; within 0.2 % of the training rule's clean RSS maximum on undersampled files)
    scale = float(zf.abs().max()) or 1.0
    if adapt is not None:
        if law is None:
            raise ReconstructionError(f"{where}: adaptation needs the law of the mask (none found)")
        model = adapt(law, Acquisition(m_all, maps, y_all / scale))
    ref = mc.reference if mc.reference is not None else full
    ref = None if ref is None else center_pad_crop(np.asarray(ref, np.float32), (rows, cols))
    data_range = None if ref is None else float(ref.max())
    if mc.max_value and simulate is None and mc.reference is not None:
        data_range = float(mc.max_value)  # fastMRI: the file's max is the metrics' range

    def batches(idx: list[int]) -> SliceBatch:
        acq = Acquisition(m_all[idx], maps[idx], y_all[idx] / scale, keep_prob=p)
        return SliceBatch(acq, None if ref is None else ref[idx], zf[idx] / scale)

    coil_cache: dict[str, object] = {}

    def coils_of(acq: Acquisition) -> torch.Tensor:
        """The batch's zero-filled coil images, computed once for its three images."""
        if coil_cache.get("acq") is not acq:
            coil_cache.clear()
            coil_cache.update(acq=acq, coils=acq.coil_images())
        return coil_cache["coils"]  # type: ignore[return-value]

    active = np.nonzero(y_all.abs().flatten(1).amax(1).numpy() > 0)[0]
    out = np.zeros((rows, cols, s), np.float32)
    trained_iters = getattr(model, "cg_iters", None)
    if cg_iters is not None:
        model.cg_iters = int(cg_iters)
    try:
        res = stream_reconstruction(
            model,
            n=s,
            batch_fn=batches,
            channels=2,
            scale=scale,
            out_view=np.moveaxis(out, 2, 0),
            batch_size=step,
            preview_index=int(active[len(active) // 2]) if active.size else s // 2,
            amp=amp,
            data_range=data_range,
            output_shape=(rows, cols),
            output=lambda x, acq: multicoil_output(x, acq, output, coils_of(acq)),
            plain=lambda acq: rss(coils_of(acq), dim=-3),  # the RSS of the zero-filled coils
            project=corruption_project,
            channels_last=channels_last,
        )
    finally:
        if cg_iters is not None:
            model.cg_iters = trained_iters
    described = {"source": source, **({} if law is None else {"family": law.name, "fraction": law.fraction})}
    return Reconstruction(
        image=out,
        scale=scale,
        sampled_fraction=float(sampled.mean()),
        metrics=res.metrics,
        preview=res.preview,
        mask_law=described,
    )


def multicoil_affine(mc: MultiCoilKSpace, shape: tuple[int, int, int]) -> np.ndarray:
    """The output's affine: axis-aligned, the file's voxel sizes (1 mm when it records none)."""
    return kspace_affine(shape, mc.voxel_size)


