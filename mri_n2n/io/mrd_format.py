"""The ISMRMRD (MRD) HDF5 format as this package reads and writes it: acquisition flags, the XML
header's encoding, the acquisitions read whole with h5py, the readouts' kinds and slice geometry
(shared by the Cartesian reader :mod:`mri_n2n.io.mrd` and the trajectory reader
:mod:`mri_n2n.io.noncartesian`), and the header the test and benchmark writers emit.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .base import VolumeError, describe
from .kspace import ismrmrd_spaces, open_h5
from .multicoil import h5_errors

__all__ = [
    "ISMRMRD_FLAGS",
    "ISMRMRD_SKIP",
    "ismrmrd_xml_text",
    "ismrmrd_encoding",
    "ismrmrd_header_xml",
    "place_readout",
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
ISMRMRD_SKIP = (
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


def ismrmrd_encoding(xml: Any, where: str) -> dict[str, Any]:
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


def has_trajectories(path: str | Path, dataset: str = "dataset") -> bool:
    """Whether an ISMRMRD file's readouts carry trajectories (non-Cartesian k-space): reads only
    the acquisition headers. ``False`` for files that are not ISMRMRD or cannot be read (their
    reader says why)."""
    try:
        with open_h5(path) as f:
            g = f.get(dataset)
            if not isinstance(g, h5py.Group) or "data" not in g:
                return False
            head = g["data"].fields("head")[...]
            return bool((head["trajectory_dimensions"] > 0).any())
    except Exception:
        return False


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
    for name in ISMRMRD_SKIP:
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



def ismrmrd_header_xml(
    encoded: Sequence[int],
    recon: Sequence[int],
    voxel_size: Sequence[float],
    *,
    coils: int,
    slices: int,
    step1_limits: Sequence[int] | None = None,
    trajectory: str = "cartesian",
    recon_fov: Sequence[float] | None = None,
) -> str:
    """An ISMRMRD XML header (valid against the schema) for a 2-D multi-slice scan (the test and
    benchmark writers').

    ``encoded``/``recon``: ``(readout, phase)`` matrices; ``voxel_size``: ``(readout, phase,
    slice)`` mm, so the fields of view are matrix x voxel size (the reconstruction space's
    ``recon_fov`` ``(x, y)`` mm when given); ``step1_limits``: ``(minimum, maximum, center)`` of
    ``kspace_encoding_step_1`` (default ``0, W - 1, W // 2``); ``trajectory``: the encoding's
    trajectory (``cartesian``, ``radial``, ``spiral``, ...).
    """
    vr, vp, vs = (float(v) for v in voxel_size)
    lo, hi, ctr = step1_limits if step1_limits is not None else (0, encoded[1] - 1, encoded[1] // 2)

    def space(tag: str, m: Sequence[int], fov: Sequence[float] | None = None) -> str:
        fx, fy = (m[0] * vr, m[1] * vp) if fov is None else (float(fov[0]), float(fov[1]))
        return (
            f"<{tag}><matrixSize><x>{m[0]}</x><y>{m[1]}</y><z>1</z></matrixSize>"
            f"<fieldOfView_mm><x>{fx:.6g}</x><y>{fy:.6g}</y><z>{vs:.6g}</z></fieldOfView_mm>"
            f"</{tag}>"
        )

    def limit(tag: str, a: int, b: int, c: int) -> str:
        return f"<{tag}><minimum>{a}</minimum><maximum>{b}</maximum><center>{c}</center></{tag}>"

    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
        f"<acquisitionSystemInformation><receiverChannels>{coils}</receiverChannels>"
        "</acquisitionSystemInformation>"
        "<experimentalConditions><H1resonanceFrequency_Hz>127740000</H1resonanceFrequency_Hz>"
        "</experimentalConditions><encoding>"
        + space("encodedSpace", encoded)
        + space("reconSpace", recon, recon_fov)
        + "<encodingLimits>"
        + limit("kspace_encoding_step_1", lo, hi, ctr)
        + limit("kspace_encoding_step_2", 0, 0, 0)
        + limit("slice", 0, slices - 1, slices // 2)
        + f"</encodingLimits><trajectory>{trajectory}</trajectory></encoding></ismrmrdHeader>"
    )


def place_readout(
    acq: Any, *, line: int, slice_index: int, slices: int, slice_mm: float, sample_time_us: float,
    flags: Sequence[int] = (),
) -> Any:
    """Fill in what the test and benchmark writers give every ISMRMRD readout (an
    ``ismrmrd.Acquisition``): its encoding step and slice, the dwell time, the slice's position
    (axial slices centred on the isocentre, ``slice_mm`` apart), axis-aligned directions and the
    flags (1-based :data:`ISMRMRD_FLAGS` bits); returns ``acq``."""
    acq.idx.kspace_encode_step_1 = int(line)
    acq.idx.slice = int(slice_index)
    acq.sample_time_us = float(sample_time_us)
    acq.position[:] = (0.0, 0.0, (slice_index - (slices - 1) / 2) * float(slice_mm))
    acq.read_dir[:] = (1.0, 0.0, 0.0)
    acq.phase_dir[:] = (0.0, 1.0, 0.0)
    acq.slice_dir[:] = (0.0, 0.0, 1.0)
    for f in flags:
        acq.set_flag(f)
    return acq
