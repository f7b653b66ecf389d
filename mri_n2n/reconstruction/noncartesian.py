"""Reconstruction of non-Cartesian k-space files (ISMRMRD files whose readouts carry a
trajectory, :class:`~mri_n2n.io.noncartesian.NonCartesianKSpace`) with a network trained on a
trajectory kind (``--trajectory``).

The file's readouts, with its trajectory normalised to the encoded matrix (largest ``|k|`` at
the matrix edge), are the acquisition (``kind.from_arrays``: every readout measured); coil data
get maps estimated from the data themselves (``kind.estimate_maps``: each coil's compensated
adjoint gridded, ESPIRiT on the densely sampled centre). The network's input is the
density-compensated adjoint (its ``zero_filled``, SENSE-1 for coils), normalised by its maximum as
in training, and the one reconstruction loop
(:func:`~mri_n2n.reconstruction.engine.stream_reconstruction`) applies the network, its data
consistency and the output magnitude. Images come out at the encoded matrix, ``(rows, cols,
slices)`` as the other raw readers' outputs.

``--adapt``: the file's readouts are all measured (no law drew them), so the adaptation's law is
the certain one, every readout kept with probability 1 (:func:`measured_law`); Noisier2Noise's
second law then holds a share of the readouts out at random, as for any kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from ..acquisition import Acquisition, acquisition_kind
from ..io.noncartesian import NonCartesianKSpace
from ..laws import BernoulliLaw, SampleLaw
from .engine import Reconstruction, ReconstructionError, SliceBatch, model_channels, stream_reconstruction

__all__ = [
    "NONCARTESIAN_KIND",
    "NONCARTESIAN_MAPS",
    "inference_maps",
    "measured_law",
    "reconstruct_noncartesian",
]

#: The registered kind that reconstructs trajectory files.
NONCARTESIAN_KIND = "noncartesian"


def measured_law(readouts: int) -> SampleLaw:
    """The law of a trajectory file's readouts: every one of them measured (keep probability 1)."""
    return BernoulliLaw(torch.ones(int(readouts)), name="measured")


#: How ``reconstruct`` estimates the coil maps of trajectory files from their gridded centre
#: (:meth:`~mri_n2n.noncartesian.NonCartesianAcquisition.estimate_maps`).
NONCARTESIAN_MAPS: dict[str, Any] = {"method": "espirit"}


def inference_maps(
    kind: Any, scan: NonCartesianKSpace, settings: Mapping[str, Any] | None = None
) -> torch.Tensor:
    """The coil maps ``(slices, C, H, W)`` ``reconstruct`` estimates for a trajectory file with the
    kind's estimator and ``settings`` (``None``: :data:`NONCARTESIAN_MAPS`)."""
    opts = dict(NONCARTESIAN_MAPS if settings is None else settings)
    try:
        return kind.estimate_maps(scan.kspace, scan.trajectory, tuple(int(v) for v in scan.matrix), **opts)
    except TypeError as e:  # a keyword the estimator does not take (reconstruct says it in one line)
        raise ValueError(f"coil-map settings {opts}: {e}") from None


def reconstruct_noncartesian(
    model: torch.nn.Module,
    scan: NonCartesianKSpace,
    *,
    batch_size: int = 4,
    amp: bool = False,
    channels_last: bool | None = None,
    adapt: Callable[[SampleLaw, Acquisition], torch.nn.Module] | None = None,
    maps_settings: Mapping[str, Any] | None = None,
) -> Reconstruction:
    """Reconstruct one trajectory file (module docstring) with a two-channel network trained on
    the non-Cartesian kind. ``adapt``: ``adapt(law, acq) -> model``, called once with the file's
    law (:func:`measured_law`) and its acquisition in the network's units; the model it returns
    reconstructs the file. ``maps_settings``: how the coil maps are estimated from the gridded
    centre (``{"method": ..., **keywords}`` of :func:`~mri_n2n.coil_maps.estimate_maps`);
    ``None``: :data:`NONCARTESIAN_MAPS`.

    Raises:
        ReconstructionError: a one-channel model, the kind's libraries missing, maps that cannot
            be estimated, or data that do not fit the trajectory (one line naming the file).
    """
    where = scan.path
    if model_channels(model) != 2:
        raise ReconstructionError(f"{where}: non-Cartesian k-space needs a two-channel (complex) checkpoint")
    try:
        kind = acquisition_kind(NONCARTESIAN_KIND)
        s, c, _, _ = scan.shape
        matrix = tuple(int(v) for v in scan.matrix)
        maps = inference_maps(kind, scan, maps_settings) if c > 1 else None
        whole = kind.from_arrays(scan.kspace, scan.trajectory, matrix, maps)
        zf = torch.cat([whole.batch(slice(i, i + batch_size)).zero_filled() for i in range(0, s, batch_size)])
    except (ValueError, ImportError, RuntimeError) as e:
        raise ReconstructionError(f"{where}: {' '.join(str(e).split())[:300]}") from None
    scale = float(zf.abs().max()) or 1.0
    rows, cols = matrix
    if adapt is not None:
        model = adapt(measured_law(whole.sample_shape[0]), whole.with_data(whole.y / scale))

    def batches(idx: list[int]) -> SliceBatch:
        part: Acquisition = whole.batch(torch.as_tensor(idx))
        return SliceBatch(part.with_data(part.y / scale), None, zf[idx] / scale)

    out = np.zeros((rows, cols, s), np.float32)
    res = stream_reconstruction(
        model,
        n=s,
        batch_fn=batches,
        channels=2,
        scale=scale,
        out_view=np.moveaxis(out, 2, 0),
        batch_size=batch_size,
        preview_index=s // 2,
        amp=amp,
        channels_last=channels_last,
    )
    return Reconstruction(
        image=out,
        scale=scale,
        sampled_fraction=1.0,
        metrics=res.metrics,
        preview=res.preview,
        mask_law={"source": "trajectory", "trajectory": scan.trajectory_type, "readouts": int(scan.shape[2])},
    )
