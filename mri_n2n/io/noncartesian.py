"""ISMRMRD acquisitions that carry k-space trajectories (2-D radial, spiral): the data class
:class:`NonCartesianKSpace`, its reader and a writer for tests and benchmarks.

:func:`~mri_n2n.io.mrd.read_ismrmrd` (and so :func:`~mri_n2n.io.raw.read_raw`) returns a
:class:`NonCartesianKSpace` for a file whose image readouts carry trajectories; Cartesian files
read as before. The trajectory is normalised to the encoded matrix (:func:`normalize_trajectory`):
whatever the file's unit (k-space points, cycles per pixel, radians), the largest ``|k|`` maps to
the matrix edge, 0.5 cycles per pixel, as mrpro reads ISMRMRD trajectories.

Layout, as the Cartesian reader's grid: image rows run along the readout direction (ISMRMRD
``x``, ``read_dir``), columns along the phase direction (``y``, ``phase_dir``);
``trajectory[..., 0]`` is the frequency along the rows' axis (the file's first trajectory
coordinate), ``trajectory[..., 1]`` along the columns' axis (its second), so a sample of image
``x`` ``(rows, cols)`` is ``sum_p x[p] exp(-2 pi i k . (p - matrix // 2))`` in the sign
convention of the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path
from .base import VolumeError, describe
from .mrd_format import (
    ReadoutKinds,
    check_single_image,
    coil_count,
    ismrmrd_encoding,
    ismrmrd_header_xml,
    place_readout,
    read_acquisitions,
    readout_kinds,
    slice_meta,
)

__all__ = [
    "NonCartesianKSpace",
    "TRAJECTORY_TYPES",
    "normalize_trajectory",
    "validate_noncartesian",
    "read_ismrmrd_noncartesian",
    "noncartesian_from_acquisitions",
    "write_ismrmrd_noncartesian",
]

#: The ISMRMRD header's ``<trajectory>`` values (the schema's enumeration).
TRAJECTORY_TYPES = ("cartesian", "epi", "radial", "goldenangle", "spiral", "other")


@dataclass
class NonCartesianKSpace:
    """Multi-coil k-space sampled along a trajectory, as the ISMRMRD reader returns it.

    Attributes:
        kspace: complex64 ``(slices, coils, readouts, samples)``: the image readouts of each
            slice in file order (``discard_pre``/``discard_post`` samples dropped).
        trajectory: float32 ``(readouts, samples, 2)``: each sample's position in cycles per
            pixel of the encoded matrix, normalised so the largest ``|k|`` is 0.5 (the matrix
            edge; :func:`normalize_trajectory`); axis 0 along the image rows (readout
            direction), axis 1 along the columns (phase direction). One trajectory shared by
            the slices.
        matrix: the encoded matrix ``(rows, cols)`` (ISMRMRD ``encodedSpace`` ``x``, ``y``):
            the grid the trajectory is normalised to and the images are made on.
        recon_shape: the reconstruction matrix ``(rows, cols)`` (``reconSpace``; ``matrix``
            when the header has none).
        voxel_size: ``(row, col, slice)`` mm of the encoded matrix's pixels, from the encoded
            field of view; ``None`` when the header does not say.
        encoded_fov: the encoded field of view ``(x, y, z)`` mm, or ``None``.
        trajectory_type: the header's ``<trajectory>`` (``"radial"``, ``"goldenangle"``,
            ``"spiral"``, ``"other"``, ...).
        source: ``"ismrmrd"``.
        path: the file.
        meta: ``slice_indices``, ``slice_positions`` ``(slices, 3)``, ``read_dir``,
            ``phase_dir``, ``slice_dir`` (as :class:`~mri_n2n.io.multicoil.MultiCoilKSpace`
            gives them), ``skipped`` counts, ``noise`` ``(coils, samples)`` when noise readouts
            are present, ``encoding_limits``, ``encoded_matrix``, and the trajectory's reading:
            ``trajectory_normalization`` (``"radius"`` or ``"per-axis"``),
            ``trajectory_scale`` (the two factors from the file's unit to cycles per pixel:
            ``file coordinates * scale = trajectory``), ``trajectory_dimensions`` (the file's).
    """

    kspace: np.ndarray
    trajectory: np.ndarray
    matrix: tuple[int, int]
    recon_shape: tuple[int, int]
    voxel_size: tuple[float, float, float] | None
    encoded_fov: tuple[float, float, float] | None
    trajectory_type: str
    source: str
    path: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(slices, coils, readouts, samples)``."""
        return tuple(self.kspace.shape)  # type: ignore[return-value]


def _non_finite(t: np.ndarray) -> str:
    """``"2 NaN and 1 infinite coordinates"``: what is not finite in ``t``."""
    n_nan, n_inf = int(np.isnan(t).sum()), int(np.isinf(t).sum())
    what = " and ".join(
        p for p in (f"{n_nan} NaN" if n_nan else "", f"{n_inf} infinite" if n_inf else "") if p
    )
    return f"{what} coordinate{'s' if n_nan + n_inf != 1 else ''}"


def normalize_trajectory(
    trajectory: np.ndarray, matrix: Sequence[int], where: str = "trajectory"
) -> tuple[np.ndarray, tuple[float, float]]:
    """A 2-D trajectory in any unit as float32 cycles per pixel of ``matrix`` ``(rows, cols)``,
    and the two scale factors applied (``trajectory * scale``).

    Square matrix: one factor for both axes, so the largest radius ``sqrt(k0^2 + k1^2)`` becomes
    0.5. That is exact for radial and spiral trajectories in k-space points, cycles per pixel or
    radians, whatever the spoke angles (a golden-angle set need not hold a spoke along either
    axis). Non-square matrix: the file's unit may differ between the axes (k-space points), so
    each axis is scaled on its own, its largest ``|k|`` becoming 0.5 (mrpro's rule; exact when
    the trajectory reaches the edge along both axes). A trajectory that deliberately stops short
    of the encoded matrix's edge is stretched to it: the unit is not recorded in ISMRMRD files.

    Raises:
        VolumeError: not ``(..., 2)``, empty, NaN or infinite coordinates, or zero everywhere
            (nothing to normalise by); the message starts with ``where``.
    """
    t = np.asarray(trajectory, dtype=np.float64)
    if t.ndim < 2 or t.shape[-1] != 2:
        raise VolumeError(f"{where}: trajectory of shape {tuple(t.shape)}; expected (..., 2) coordinates")
    if t.size == 0:
        raise VolumeError(f"{where}: the trajectory is empty")
    finite = np.isfinite(t)
    if not finite.all():
        raise VolumeError(f"{where}: the trajectory holds {_non_finite(t)}")
    rows, cols = (int(v) for v in matrix)
    flat = t.reshape(-1, 2)
    if rows == cols:
        radius = float(np.sqrt((flat**2).sum(axis=1)).max())
        if radius == 0:
            raise VolumeError(
                f"{where}: the trajectory is zero everywhere; it cannot be normalised to the matrix"
            )
        scale = (0.5 / radius, 0.5 / radius)
    else:
        extent = np.abs(flat).max(axis=0)
        if (extent == 0).any():
            axis = "both axes" if (extent == 0).all() else f"axis {int(np.flatnonzero(extent == 0)[0])}"
            raise VolumeError(
                f"{where}: the trajectory is zero along {axis}; it cannot be normalised to the "
                f"{rows} x {cols} matrix"
            )
        scale = (0.5 / float(extent[0]), 0.5 / float(extent[1]))
    out = (t * np.asarray(scale)).astype(np.float32)
    return out, (float(scale[0]), float(scale[1]))


def validate_noncartesian(nc: NonCartesianKSpace) -> NonCartesianKSpace:
    """Check a reader's result (shapes, finiteness) before handing it out; its arrays become
    contiguous complex64 / float32 (in place: ``nc`` itself is returned).

    Raises:
        VolumeError: empty k-space, a trajectory that does not match it, NaN or infinite values.
    """
    where, k, t = nc.path, nc.kspace, nc.trajectory
    if k.ndim != 4 or k.size == 0:
        raise VolumeError(
            f"{where}: k-space of shape {tuple(k.shape)} is empty or not (slices, coils, readouts, samples)"
        )
    if t.shape != (k.shape[2], k.shape[3], 2):
        raise VolumeError(
            f"{where}: trajectory of shape {tuple(t.shape)} does not match k-space {tuple(k.shape)} "
            "(expected (readouts, samples, 2))"
        )
    if not np.isfinite(k).all():
        raise VolumeError(f"{where}: k-space contains NaN or infinite values")
    if not np.isfinite(t).all():
        raise VolumeError(f"{where}: the trajectory contains NaN or infinite values")
    if min(nc.matrix) < 1:
        raise VolumeError(f"{where}: encoded matrix {nc.matrix} is empty")
    nc.kspace = np.ascontiguousarray(k, dtype=np.complex64)
    nc.trajectory = np.ascontiguousarray(t, dtype=np.float32)
    return nc


def read_ismrmrd_noncartesian(path: str | os.PathLike, dataset: str = "dataset") -> NonCartesianKSpace:
    """Read an ISMRMRD file whose image readouts carry 2-D trajectories (radial, golden-angle
    radial, spiral; one or many coils; several slices).

    Image readouts are sorted by ``idx.slice`` (``meta["slice_indices"]``) and kept in file
    order within a slice; every slice must hold the same number of readouts along the same
    trajectory (golden-angle sets that continue from slice to slice are refused, not read
    per slice). Noise readouts go to ``meta["noise"]``; navigator, phase-correction, feedback,
    dummy and phase-stabilisation readouts, readouts of other encodings and calibration-only
    readouts are skipped (``meta["skipped"]``) as :func:`~mri_n2n.io.mrd.read_ismrmrd` does.
    ``discard_pre``/``discard_post`` samples are dropped from the data and the trajectory;
    ``ACQ_IS_REVERSE`` needs no handling (each sample carries its own position). A third
    trajectory coordinate that is zero everywhere is dropped (a 2-D trajectory written as 3-D);
    any other is refused. The trajectory is normalised by :func:`normalize_trajectory`.

    Raises:
        VolumeError: one line naming the file and the problem: what
            :func:`~mri_n2n.io.mrd.read_ismrmrd` refuses for every file (unreadable, no
            header, no image readouts, several contrasts/phases/repetitions/sets, varying coil
            counts); a Cartesian file; a 3-D encoding; a trajectory of 1 or more than 2
            dimensions, on some image readouts only, of another sample count than the data,
            empty, with NaN or infinite coordinates, or zero everywhere; readouts of different
            lengths; slices with different readout counts or trajectories; non-finite data.
    """
    p = Path(path)
    where = str(p)
    xml, rows = read_acquisitions(p, dataset)
    enc = ismrmrd_encoding(xml, where)
    kinds = readout_kinds(rows["head"])
    if not kinds.imaging.any():
        raise VolumeError(f"{where}: no image readouts among {len(rows)} ISMRMRD acquisitions")
    if not (rows["head"]["trajectory_dimensions"][kinds.imaging] > 0).any():
        raise VolumeError(
            f"{where}: no image readout carries a trajectory (a Cartesian file: use read_ismrmrd)"
        )
    return noncartesian_from_acquisitions(where, enc, rows, kinds)


def noncartesian_from_acquisitions(
    where: str, enc: dict[str, Any], rows: np.ndarray, kinds: ReadoutKinds
) -> NonCartesianKSpace:
    """:class:`NonCartesianKSpace` from a file's parsed header ``enc``, acquisition ``rows`` and
    their ``kinds`` (what :func:`read_ismrmrd_noncartesian` does once the file is read)."""
    head = rows["head"]
    idx = head["idx"]
    imaging = kinds.imaging
    try:
        traj_rows = rows["traj"]
        payload = rows["data"]
    except Exception as exc:
        raise VolumeError(f"{where}: cannot read the ISMRMRD trajectories ({describe(exc)})") from None
    n_img = int(imaging.sum())
    dims = head["trajectory_dimensions"].astype(np.int64)
    with_traj = imaging & (dims > 0)
    if (imaging & (dims == 0)).any():
        raise VolumeError(
            f"{where}: a trajectory on {int(with_traj.sum())} of {n_img} image readouts; every image "
            "readout needs one (or none, for Cartesian data)"
        )
    depth = int(enc["encoded"][2]) if len(enc["encoded"]) > 2 else 1
    if depth > 1:
        raise VolumeError(
            f"{where}: a 3-D encoding (encoded matrix z = {depth}); only 2-D trajectories are read"
        )
    used_dims = np.unique(dims[imaging])
    if len(used_dims) > 1:
        raise VolumeError(
            f"{where}: the image readouts' trajectories have {sorted(used_dims.tolist())} dimensions; "
            "expected one count"
        )
    n_dims = int(used_dims[0])
    if n_dims not in (2, 3):
        raise VolumeError(
            f"{where}: {n_dims}-D trajectory for a 2-D encoding; 2-D coordinates (kx, ky) are read"
        )
    check_single_image(where, idx, imaging)
    n_coils = coil_count(where, head, imaging)
    n_samp = head["number_of_samples"].astype(np.int64)
    pre = head["discard_pre"].astype(np.int64)
    post = head["discard_post"].astype(np.int64)
    order = np.flatnonzero(imaging)
    kept = n_samp[order] - pre[order] - post[order]
    if (n_samp[order] == 0).any():
        i = int(order[n_samp[order] == 0][0])
        raise VolumeError(f"{where}: acquisition {i} has no samples (and a zero-length trajectory)")
    if (kept < 1).any():
        i = int(order[kept < 1][0])
        raise VolumeError(
            f"{where}: acquisition {i} discards {int(pre[i])} + {int(post[i])} of its "
            f"{int(n_samp[i])} samples"
        )
    if len(np.unique(kept)) > 1:
        raise VolumeError(
            f"{where}: the image readouts keep {int(kept.min())} to {int(kept.max())} samples; "
            "one length is read"
        )
    n_keep = int(kept[0])
    slice_ids = np.unique(idx["slice"][imaging])
    slot = {int(v): n for n, v in enumerate(slice_ids)}
    per_slice = np.bincount([slot[int(v)] for v in idx["slice"][order]], minlength=len(slice_ids))
    if len(np.unique(per_slice)) > 1:
        raise VolumeError(
            f"{where}: the slices hold {int(per_slice.min())} to {int(per_slice.max())} image readouts; "
            "one trajectory shared by the slices is read"
        )
    n_read = int(per_slice[0])
    k = np.zeros((len(slice_ids), n_coils, n_read, n_keep), np.complex64)
    traj = np.zeros((len(slice_ids), n_read, n_keep, n_dims), np.float64)
    filled = np.zeros(len(slice_ids), np.int64)
    for i in order:
        coords = np.asarray(traj_rows[i], dtype=np.float32)
        if coords.size == 0:
            raise VolumeError(
                f"{where}: acquisition {i} has a zero-length trajectory "
                f"(trajectory_dimensions {int(dims[i])}, no coordinates)"
            )
        if coords.size != n_samp[i] * dims[i]:
            raise VolumeError(
                f"{where}: acquisition {i} has {coords.size} trajectory values for "
                f"{int(n_samp[i])} samples x {int(dims[i])} dimensions ({int(n_samp[i] * dims[i])}); "
                "the trajectory does not match the data"
            )
        data = np.asarray(payload[i], dtype=np.float32)
        if data.size != 2 * n_coils * n_samp[i]:
            raise VolumeError(
                f"{where}: acquisition {i} holds {data.size // 2} complex values for {n_coils} coils x "
                f"{int(n_samp[i])} samples"
            )
        s = slot[int(idx["slice"][i])]
        r = filled[s]
        stop = int(n_samp[i] - post[i])
        k[s, :, r] = data.view(np.complex64).reshape(n_coils, n_samp[i])[:, pre[i] : stop]
        traj[s, r] = coords.reshape(n_samp[i], dims[i])[pre[i] : stop]
        filled[s] += 1
    bad = ~np.isfinite(traj)
    if bad.any():
        s, r = (int(v) for v in np.argwhere(bad)[0][:2])
        raise VolumeError(
            f"{where}: the trajectory holds {_non_finite(traj)} (first: readout {r} of slice "
            f"{int(slice_ids[s])})"
        )
    if n_dims == 3:
        kz = traj[..., 2]
        if (kz != 0).any():
            raise VolumeError(
                f"{where}: 3-D trajectory (its third coordinate spans {kz.min():.4g} to "
                f"{kz.max():.4g}) for a 2-D encoding (encoded matrix z = 1); only 2-D trajectories are read"
            )
        traj = traj[..., :2]
    for s in range(1, len(slice_ids)):
        gap = float(np.abs(traj[s] - traj[0]).max())
        tol = 1e-5 * max(float(np.abs(traj[0]).max()), 1e-30)
        if gap > tol:
            raise VolumeError(
                f"{where}: slice {int(slice_ids[s])} has another trajectory than slice {int(slice_ids[0])} "
                f"(up to {gap:.4g} apart); one trajectory shared by the slices is read"
            )
    matrix = (int(enc["encoded"][0]), int(enc["encoded"][1]))
    trajectory, scale = normalize_trajectory(traj[0], matrix, where)

    meta = slice_meta(head, imaging, slice_ids, dict(kinds.skipped), enc)
    calib_only = int(kinds.calibration.sum())
    if calib_only:
        meta["skipped"]["calibration"] = calib_only
    noise_data = []
    try:
        for i in np.flatnonzero(kinds.noise):
            noise_data.append(np.asarray(payload[i], np.float32).view(np.complex64).reshape(-1, n_samp[i]))
    except (ValueError, TypeError):
        noise_data = []  # unreadable noise readouts are left out, as the Cartesian reader does
    if noise_data and all(d.shape[0] == n_coils for d in noise_data):
        meta["noise"] = np.concatenate(noise_data, axis=1)
    meta.update(
        trajectory_normalization="radius" if matrix[0] == matrix[1] else "per-axis",
        trajectory_scale=scale,
        trajectory_dimensions=n_dims,
    )
    recon = enc.get("recon", enc["encoded"])
    fov = enc.get("encoded_fov")
    voxel = None
    if fov is not None:
        voxel = (fov[0] / matrix[0], fov[1] / matrix[1], fov[2] / max(enc["encoded"][2], 1.0))
    return validate_noncartesian(
        NonCartesianKSpace(
            kspace=k,
            trajectory=trajectory,
            matrix=matrix,
            recon_shape=(int(recon[0]), int(recon[1])),
            voxel_size=voxel,
            encoded_fov=fov,
            trajectory_type=str(enc.get("trajectory", "other")),
            source="ismrmrd",
            path=where,
            meta=meta,
        )
    )


# ----------------------------------------------------------------------------- writing


def write_ismrmrd_noncartesian(
    path: str | os.PathLike,
    kspace: np.ndarray,
    trajectory: np.ndarray,
    matrix: Sequence[int],
    *,
    recon_matrix: Sequence[int] | None = None,
    voxel_size: Sequence[float] = (1.0, 1.0, 3.0),
    trajectory_type: str = "radial",
    noise_readouts: int = 0,
    navigators: bool = False,
    seed: int = 0,
    dataset: str = "dataset",
) -> None:
    """Write an ISMRMRD file (group ``dataset``) of readouts along a trajectory, with the
    ``ismrmrd`` package (``pip install mri-n2n[raw]``), atomically.

    Args:
        path: the file to write.
        kspace: complex ``(slices, coils, readouts, samples)``.
        trajectory: ``(readouts, samples, D)`` shared by the slices, or ``(slices, readouts,
            samples, D)`` one per slice, in the unit the file should hold (k-space points,
            cycles per pixel, radians: the reader normalises any); ``D`` is the file's
            ``trajectory_dimensions`` (2 for these 2-D encodings; 1 or 3 make files the reader
            refuses, for tests).
        matrix: the encoded matrix ``(rows, cols)`` (``encodedSpace`` ``x``, ``y``).
        recon_matrix: ``reconSpace`` (default ``matrix``).
        voxel_size: ``(row, col, slice)`` mm; the fields of view are ``matrix * voxel_size``.
        trajectory_type: the header's ``<trajectory>`` (one of :data:`TRAJECTORY_TYPES`).
        noise_readouts: noise readouts written first (seeded Gaussian noise, no trajectory).
        navigators: one navigator readout of large junk per slice, with a trajectory, that a
            reader must skip.
        seed: the noise readouts' seed.
        dataset: the HDF5 group.

    One acquisition per readout and slice: ``idx.kspace_encode_step_1`` the readout index,
    ``idx.slice``, ``center_sample`` the sample nearest ``k = 0``, slice ``position``
    ``(0, 0, (s - (slices - 1) / 2) * voxel_size[2])`` and axis-aligned directions.

    Raises:
        ValueError: shapes that do not fit together, an unknown ``trajectory_type``.
    """
    import ismrmrd

    k = np.asarray(kspace)
    t = np.asarray(trajectory, dtype=np.float32)
    if k.ndim != 4:
        raise ValueError(f"kspace must be (slices, coils, readouts, samples), got shape {k.shape}")
    s_, c_, r_, n_ = k.shape
    if t.ndim == 3:
        t = np.broadcast_to(t, (s_, *t.shape))
    if t.ndim != 4 or t.shape[:3] != (s_, r_, n_) or not 1 <= t.shape[3] <= 3:
        raise ValueError(
            f"trajectory of shape {np.shape(trajectory)} does not fit kspace {k.shape}: expected "
            f"({r_}, {n_}, D) or ({s_}, {r_}, {n_}, D), D in 1..3"
        )
    if trajectory_type not in TRAJECTORY_TYPES:
        raise ValueError(f"trajectory_type {trajectory_type!r} is not one of {', '.join(TRAJECTORY_TYPES)}")
    matrix = tuple(int(v) for v in matrix)
    if len(matrix) != 2 or min(matrix) < 1:
        raise ValueError(f"matrix must be (rows, cols) of positive sizes, got {matrix}")
    recon = tuple(int(v) for v in (recon_matrix if recon_matrix is not None else matrix))
    fov = (matrix[0] * float(voxel_size[0]), matrix[1] * float(voxel_size[1]))  # one field of view
    xml = ismrmrd_header_xml(
        matrix, recon, voxel_size, coils=c_, slices=s_, step1_limits=(0, r_ - 1, r_ // 2),
        trajectory=trajectory_type, recon_fov=fov,
    )  # fmt: skip
    ismrmrd.xsd.CreateFromDocument(xml)  # the header is valid against the schema
    vs = float(voxel_size[2])
    rng = np.random.default_rng(seed)

    def acquisition(data: np.ndarray, coords: np.ndarray | None, s: int, line: int, *flags: int) -> Any:
        data = np.ascontiguousarray(data, np.complex64)
        if coords is None:
            acq = ismrmrd.Acquisition.from_array(data)
        else:
            acq = ismrmrd.Acquisition.from_array(data, trajectory=np.ascontiguousarray(coords, np.float32))
            radius = (
                (coords[:, :2].astype(np.float64) ** 2).sum(axis=1)
                if coords.shape[1] > 1
                else coords[:, 0] ** 2
            )
            acq.center_sample = int(np.nanargmin(radius)) if np.isfinite(radius).any() else 0
        return place_readout(
            acq, line=line, slice_index=s, slices=s_, slice_mm=vs, sample_time_us=2.0, flags=flags
        )

    with atomic_path(Path(path)) as tmp:
        ds = ismrmrd.Dataset(str(tmp), dataset, mode="w")
        try:
            ds.write_xml_header(xml)
            for _ in range(noise_readouts):
                z = rng.standard_normal((2, c_, n_)).astype(np.float32) * 1e-3
                ds.append_acquisition(
                    acquisition(z[0] + 1j * z[1], None, 0, 0, ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
                )
            for s in range(s_) if navigators else ():
                junk = np.full((c_, n_), 1e3 + 1e3j, np.complex64)
                ds.append_acquisition(acquisition(junk, t[s, 0], s, 0, ismrmrd.ACQ_IS_NAVIGATION_DATA))
            for s in range(s_):
                for r in range(r_):
                    ds.append_acquisition(acquisition(k[s, :, r], t[s, r], s, r))
        finally:
            ds.close()
