"""ISMRMRD (MRD) HDF5 raw data: Cartesian 2-D multi-slice acquisitions to :class:`MultiCoilKSpace`.

The acquisitions are read with h5py in the HDF5 layout the ``ismrmrd`` package writes (group
``dataset`` with ``xml`` and ``data``: a compound of ``head``, ``traj`` and ``data``), so reading
needs no optional package; the header is parsed with ElementTree (tolerant of vendor
extensions the strict schema parser rejects).
"""

from __future__ import annotations

import contextlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from .base import VolumeError, describe
from .kspace import ismrmrd_spaces, open_h5
from .multicoil import MultiCoilKSpace, ReadoutGrid, h5_errors, validate_multicoil

if TYPE_CHECKING:
    from .noncartesian import NonCartesianKSpace

__all__ = [
    "ISMRMRD_FLAGS",
    "read_ismrmrd",
    "ismrmrd_xml_text",
    "read_acquisitions",
    "ReadoutKinds",
    "readout_kinds",
    "check_single_image",
    "coil_count",
    "slice_meta",
]

#: ISMRMRD acquisition flag bits (1-based, as in the ISMRMRD standard and ``ismrmrd.ACQ_*``).
ISMRMRD_FLAGS = {
    "noise": 19,  # ACQ_IS_NOISE_MEASUREMENT
    "calibration": 20,  # ACQ_IS_PARALLEL_CALIBRATION
    "calibration_and_imaging": 21,  # ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING
    "reverse": 22,  # ACQ_IS_REVERSE
    "navigation": 23,  # ACQ_IS_NAVIGATION_DATA
    "phasecorr": 24,  # ACQ_IS_PHASECORR_DATA
    "hpfeedback": 26,  # ACQ_IS_HPFEEDBACK_DATA
    "dummyscan": 27,  # ACQ_IS_DUMMYSCAN_DATA
    "rtfeedback": 28,  # ACQ_IS_RTFEEDBACK_DATA
    "surfacecoilcorrection": 29,  # ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA
    "phase_stabilization_reference": 30,  # ACQ_IS_PHASE_STABILIZATION_REFERENCE
    "phase_stabilization": 31,  # ACQ_IS_PHASE_STABILIZATION
}
# Readouts that are not image data: skipped (counted in ``meta["skipped"]``).
_ISMRMRD_SKIP = (
    "navigation",
    "phasecorr",
    "hpfeedback",
    "dummyscan",
    "rtfeedback",
    "surfacecoilcorrection",
    "phase_stabilization_reference",
    "phase_stabilization",
)


def ismrmrd_xml_text(xml: Any) -> str:
    """An ISMRMRD XML header as text: bytes are decoded (UTF-8), a numpy array gives its (first)
    element."""
    if isinstance(xml, np.ndarray):
        xml = xml.item() if xml.shape == () else xml.ravel()[0]
    return xml.decode("utf-8", "replace") if isinstance(xml, bytes) else str(xml)


def _ismrmrd_encoding(xml: Any, where: str) -> dict[str, Any]:
    """Matrices, fields of view, encoding limits and trajectory of the first ``<encoding>``."""
    text = ismrmrd_xml_text(xml)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise VolumeError(f"{where}: the ISMRMRD XML header does not parse ({exc})") from None
    out: dict[str, Any] = dict(ismrmrd_spaces(text))
    if "encoded" not in out:
        raise VolumeError(f"{where}: the ISMRMRD header has no encodedSpace matrix size")

    def tag(node: Any) -> str:
        return node.tag.rsplit("}", 1)[-1]

    enc = next((c for c in root if tag(c) == "encoding"), None)
    limits: dict[str, tuple[int, int, int]] = {}
    for node in enc if enc is not None else []:
        if tag(node) == "trajectory":
            out["trajectory"] = (node.text or "").strip().lower()
        if tag(node) == "encodingLimits":
            for lim in node:
                vals = {tag(v): (v.text or "").strip() for v in lim}
                with contextlib.suppress(KeyError, ValueError):
                    limits[tag(lim)] = (int(vals["minimum"]), int(vals["maximum"]), int(vals["center"]))
    out["limits"] = limits
    out["n_encodings"] = sum(1 for c in root if tag(c) == "encoding")
    return out


def read_acquisitions(path: Path, dataset: str = "dataset") -> tuple[Any, np.ndarray]:
    """``(xml, rows)``: the XML header and every acquisition (the compound rows ``head``,
    ``traj``, ``data``) of an ISMRMRD file's group ``dataset``, read whole with h5py.

    Raises:
        VolumeError: unreadable file, no such group, header or acquisitions.
    """
    where = str(path)
    with h5_errors(where), open_h5(path) as f:
        if dataset not in f or not isinstance(f[dataset], h5py.Group):
            raise VolumeError(
                f"{where}: no ISMRMRD group {dataset!r} (have: {', '.join(sorted(f.keys())) or 'nothing'})"
            )
        g = f[dataset]
        for name, what in (("xml", "XML header"), ("data", "acquisitions")):
            if name not in g:
                raise VolumeError(f"{where}: the ISMRMRD group {dataset!r} has no {what} ({dataset}/{name})")
        try:
            xml = g["xml"][0]
            rows = g["data"][...]
            for name in ("flags", "idx", "trajectory_dimensions", "active_channels", "encoding_space_ref"):
                rows["head"][name]  # the fields every reader needs: missing ones are refused here
            rows["data"]
        except Exception as exc:
            raise VolumeError(f"{where}: cannot read the ISMRMRD acquisitions ({describe(exc)})") from None
    return xml, rows


@dataclass
class ReadoutKinds:
    """What each acquisition of a file is, as bool arrays over the rows (from their flags).

    Attributes:
        flag: ``flag(name)`` -> bool array, the :data:`ISMRMRD_FLAGS` bit ``name`` per row.
        noise: noise readouts.
        calibration: calibration-only readouts (``ACQ_IS_PARALLEL_CALIBRATION`` without
            ``..._AND_IMAGING``), not noise nor skipped.
        imaging: image readouts (``..._CALIBRATION_AND_IMAGING`` ones included).
        skipped: counts of what is not read, by kind (``noise``, ``navigation``, ...,
            ``other_encoding`` for readouts of another ``encoding_space_ref``).
    """

    flag: Callable[[str], np.ndarray]
    noise: np.ndarray
    calibration: np.ndarray
    imaging: np.ndarray
    skipped: dict[str, int]


def readout_kinds(head: np.ndarray) -> ReadoutKinds:
    """Sort the acquisitions (their ``head`` rows) into noise, skipped (navigator,
    phase-correction, feedback, dummy, phase-stabilisation, other encodings), calibration-only
    and image readouts."""
    flags = head["flags"].astype(np.uint64)

    def flag(name: str) -> np.ndarray:
        return (flags >> np.uint64(ISMRMRD_FLAGS[name] - 1)) & np.uint64(1) != 0

    noise = flag("noise")
    calib = flag("calibration") & ~flag("calibration_and_imaging")
    other = np.zeros(len(head), bool)
    skipped = {}
    for name in _ISMRMRD_SKIP:
        hit = flag(name) & ~noise & ~other
        if hit.any():
            skipped[name] = int(hit.sum())
        other |= hit
    if noise.any():
        skipped["noise"] = int(noise.sum())
    foreign = (head["encoding_space_ref"] != 0) & ~noise & ~other
    if foreign.any():
        skipped["other_encoding"] = int(foreign.sum())
    imaging = ~noise & ~other & ~foreign & ~calib
    calib &= ~noise & ~other & ~foreign
    return ReadoutKinds(flag, noise, calib, imaging, skipped)


def check_single_image(where: str, idx: np.ndarray, used: np.ndarray) -> None:
    """Refuse readouts ``used`` that span several 3-D partitions, contrasts, phases, repetitions
    or sets (one 2-D multi-slice image is read)."""
    many = []
    for key, what in (
        ("kspace_encode_step_2", "3-D partitions"),
        ("contrast", "contrasts"),
        ("phase", "phases"),
        ("repetition", "repetitions"),
        ("set", "sets"),
    ):
        n = len(np.unique(idx[key][used]))
        if n > 1:
            many.append(f"{n} {what}")
    if many:
        raise VolumeError(f"{where}: {', '.join(many)}; only 2-D multi-slice single-image data are read")


def coil_count(where: str, head: np.ndarray, used: np.ndarray) -> int:
    """The one coil count (``active_channels``) of the readouts ``used``."""
    coils = np.unique(head["active_channels"][used])
    if len(coils) != 1 or coils[0] < 1:
        raise VolumeError(f"{where}: the readouts have {sorted(coils.tolist())} coils; expected one count")
    return int(coils[0])


def slice_meta(
    head: np.ndarray, imaging: np.ndarray, slice_ids: np.ndarray, skipped: dict[str, int], enc: dict[str, Any]
) -> dict[str, Any]:
    """The per-slice geometry (first image readout of each slice ``slice_ids``: ``position``,
    ``read_dir``, ``phase_dir``, ``slice_dir``) and header facts every ISMRMRD reader returns in
    ``meta``."""
    slot = {int(v): n for n, v in enumerate(slice_ids)}
    idx = head["idx"]
    first = {slot[int(idx["slice"][i])]: i for i in reversed(np.flatnonzero(imaging))}
    order = [first[s] for s in range(len(slice_ids))]
    return {
        "slice_indices": slice_ids.astype(int).tolist(),
        "slice_positions": head["position"][order].astype(np.float64),
        "read_dir": head["read_dir"][order].astype(np.float64),
        "phase_dir": head["phase_dir"][order].astype(np.float64),
        "slice_dir": head["slice_dir"][order].astype(np.float64),
        "skipped": skipped,
        "encoding_limits": enc["limits"],
        "encoded_matrix": tuple(int(v) for v in enc["encoded"]),
    }


def read_ismrmrd(path: str | os.PathLike, dataset: str = "dataset") -> MultiCoilKSpace | NonCartesianKSpace:
    """Read a 2-D (multi-slice) ISMRMRD / MRD HDF5 file (group ``dataset``).

    Files whose image readouts carry trajectories (radial, spiral) come back as
    :class:`~mri_n2n.io.noncartesian.NonCartesianKSpace`
    (:func:`~mri_n2n.io.noncartesian.read_ismrmrd_noncartesian` says how); Cartesian files as
    :class:`~mri_n2n.io.multicoil.MultiCoilKSpace`, as follows.

    The XML header gives the encoded matrix ``(x: readout, y: phase)`` and fields of view, the
    reconstruction matrix (``recon_shape``: readout oversampling is kept in ``kspace``) and the
    encoding limits. Each image readout lands in column ``ky_cols // 2 - centre +
    idx.kspace_encode_step_1`` (``centre``: ``encodingLimits.kspace_encoding_step_1.center``), so
    partial-Fourier data are zero-filled with the mask 0 there; its samples are placed so that
    ``center_sample`` lands on row ``rows // 2`` (asymmetric echoes), ``discard_pre``/``_post``
    samples dropped. Slices by ``idx.slice`` (``meta["slice_indices"]``), repeated averages
    averaged. Noise readouts go to ``meta["noise"]``; navigator, phase-correction, feedback,
    dummy and phase-stabilisation readouts are skipped (``meta["skipped"]``);
    calibration-only readouts (``ACQ_IS_PARALLEL_CALIBRATION``) go to ``calibration``, while
    ``ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING`` ones are image data (and calibration).

    Raises:
        VolumeError: unreadable file, no such group / header / acquisitions, a non-Cartesian
            header whose readouts carry no trajectory, 3-D, multi-contrast/phase/repetition/set
            or EPI (reversed) readouts, readouts that do not fit the encoded matrix, varying coil
            counts, non-finite data; for files with trajectories, what
            :func:`~mri_n2n.io.noncartesian.read_ismrmrd_noncartesian` refuses.
    """
    p = Path(path)
    where = str(p)
    xml, rows = read_acquisitions(p, dataset)
    enc = _ismrmrd_encoding(xml, where)
    head, payload = rows["head"], rows["data"]
    idx = head["idx"]
    kinds = readout_kinds(head)
    flag, noise, calib, imaging = kinds.flag, kinds.noise, kinds.calibration, kinds.imaging
    if not imaging.any():
        raise VolumeError(f"{where}: no image readouts among {len(rows)} ISMRMRD acquisitions")
    if (head["trajectory_dimensions"][imaging] > 0).any():
        from .noncartesian import noncartesian_from_acquisitions  # it imports this module

        return noncartesian_from_acquisitions(where, enc, rows, kinds)
    if enc.get("trajectory", "cartesian") != "cartesian":
        raise VolumeError(
            f"{where}: {enc['trajectory']} trajectory in the header, but no readout carries its coordinates; "
            "Cartesian readouts or readouts with trajectories are read"
        )
    if flag("reverse")[imaging].any():
        raise VolumeError(f"{where}: reversed (EPI) readouts need phase correction; not supported")
    used = imaging | calib
    check_single_image(where, idx, used)
    n_coils = coil_count(where, head, used)

    rows_enc, cols_enc = int(enc["encoded"][0]), int(enc["encoded"][1])
    e1 = idx["kspace_encode_step_1"].astype(np.int64)
    lim = enc["limits"].get("kspace_encoding_step_1")
    centre = lim[2] if lim is not None else cols_enc // 2
    col = cols_enc // 2 - centre + e1
    if ((col[used] < 0) | (col[used] >= cols_enc)).any() and centre == 0:
        col = e1  # a header that leaves the centre at 0: lines counted over the full matrix
    bad = used & ((col < 0) | (col >= cols_enc))
    if bad.any():
        raise VolumeError(
            f"{where}: encode step 1 values {int(e1[used].min())}..{int(e1[used].max())} (centre {centre}) "
            f"do not fit the encoded matrix of {cols_enc} phase-encoding lines"
        )
    n_samp = head["number_of_samples"].astype(np.int64)
    c_samp = head["center_sample"].astype(np.int64)
    c_samp = np.where((c_samp == 0) & (n_samp == rows_enc), n_samp // 2, c_samp)  # centre left unset
    pre = head["discard_pre"].astype(np.int64)
    post = head["discard_post"].astype(np.int64)
    start = rows_enc // 2 - c_samp + pre
    bad = used & ((start < 0) | (start + n_samp - pre - post > rows_enc) | (n_samp - pre - post < 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise VolumeError(
            f"{where}: readout {i} ({int(n_samp[i])} samples, centre {int(c_samp[i])}) does not fit the "
            f"encoded matrix of {rows_enc} readout samples"
        )
    slice_ids = np.unique(idx["slice"][used])
    slot = {int(v): n for n, v in enumerate(slice_ids)}
    grids = {"image": ReadoutGrid(len(slice_ids), n_coils, rows_enc, cols_enc)}
    if calib.any():
        grids["calibration"] = ReadoutGrid(len(slice_ids), n_coils, rows_enc, cols_enc)
    is_cal = flag("calibration") | flag("calibration_and_imaging")
    try:
        for i in np.flatnonzero(used):
            data = np.asarray(payload[i], np.float32).view(np.complex64).reshape(n_coils, n_samp[i])
            data = data[:, pre[i] : n_samp[i] - post[i]]
            s, c, r = slot[int(idx["slice"][i])], int(col[i]), int(start[i])
            if imaging[i]:
                grids["image"].add(s, c, r, data)
            if "calibration" in grids and is_cal[i]:
                grids["calibration"].add(s, c, r, data)
        noise_data = [
            np.asarray(payload[i], np.float32).view(np.complex64).reshape(-1, n_samp[i])
            for i in np.flatnonzero(noise)
        ]
    except (ValueError, TypeError) as exc:
        raise VolumeError(
            f"{where}: an ISMRMRD readout does not hold its samples ({describe(exc)})"
        ) from None
    k, mask = grids["image"].result()
    cal = grids["calibration"].result()[0] if "calibration" in grids else None

    meta = slice_meta(head, imaging, slice_ids, kinds.skipped, enc)
    if noise_data and all(d.shape[0] == n_coils for d in noise_data):
        meta["noise"] = np.concatenate(noise_data, axis=1)
    recon = enc.get("recon", enc["encoded"])
    fov, rfov = enc.get("encoded_fov"), enc.get("recon_fov")
    meta["readout_oversampling"] = (
        fov[0] / rfov[0] if fov is not None and rfov is not None and rfov[0] > 0 else rows_enc / recon[0]
    )
    voxel = None
    if fov is not None:
        voxel = (fov[0] / rows_enc, fov[1] / cols_enc, fov[2] / max(enc["encoded"][2], 1.0))
    return validate_multicoil(
        MultiCoilKSpace(
            kspace=k,
            mask=mask,
            reference=None,
            recon_shape=(int(recon[0]), int(recon[1])),
            voxel_size=voxel,
            encoded_fov=fov,
            max_value=None,
            source="ismrmrd",
            path=where,
            meta=meta,
            calibration=cal,
        )
    )
