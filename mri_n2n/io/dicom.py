"""DICOM: read a series (single-frame files, or an enhanced multi-frame file) into a
:class:`~mri_n2n.io.base.Volume`, and write a reconstruction as a new MR series.

Reading follows dcm2niix's conventions (before its optional row flip): ``i`` indexes the
DICOM columns (along ``ImageOrientationPatient[:3]``, step ``PixelSpacing[1]``), ``j`` the
rows, ``k`` the slices sorted by ``ImagePositionPatient`` projected on ``row x column``
(or by ``InstanceNumber``). So ``array[:, :, k] == pixel_array_k.T`` after rescaling, and
the affine is built in LPS and converted to RAS.

Writing (:func:`write_dicom_series`) makes a new single-frame series: new Series/SOP
Instance UIDs, patient/study/equipment tags copied from a template when there is one,
geometry from the affine, 16-bit pixels with one ``RescaleSlope`` per series. The series is
written into a hidden temporary folder and renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from .atomic import atomic_path
from .base import Volume, VolumeError, check_finite, describe, is_dicom_file, is_nifti_path
from .geometry import lps_to_ras, ras_to_lps

__all__ = [
    "DICOMDIR_CLASS",
    "load_dicom_series",
    "scan_dicom",
    "dicom_files_in",
    "DicomSliceGeometry",
    "dicom_geometry_from_affine",
    "write_dicom_series",
    "DicomSeriesInfo",
    "COPIED_DICOM_TAGS",
]

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

# --------------------------------------------------------------------------------------
# DICOM


@dataclass
class _Frame:
    """Geometry and scaling of one 2-D frame of a DICOM series (no pixels)."""

    path: str
    frame: int | None  # frame index in a multi-frame file, None for single-frame files
    rows: int
    cols: int
    iop: np.ndarray | None
    ipp: np.ndarray | None
    spacing: np.ndarray | None  # (row spacing, column spacing)
    slope: float
    intercept: float
    order: float  # InstanceNumber / in-stack position fallback
    thickness: float | None
    between: float | None
    series_uid: str


def _floats(value: Any, n: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        out = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (n,) and np.isfinite(out).all() else None


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def _seq_attr(groups: Sequence[Any], seq: str, attr: str) -> Any:
    """First ``groups[g].<seq>[0].<attr>`` found (per-frame group first, then shared)."""
    for g in groups:
        if g is None:
            continue
        s = g.get(seq)
        if s:
            v = s[0].get(attr)
            if v is not None:
                return v
    return None


def _frames_of(ds: Any, path: str) -> list[_Frame]:
    """Describe every frame of a DICOM dataset (single- or multi-frame)."""
    uid = str(ds.get("SeriesInstanceUID", "") or "")
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if rows is None or cols is None:
        raise VolumeError(
            f"{path}: not an image DICOM, or truncated (no Rows/Columns; "
            f"SOP class {ds.get('SOPClassUID', '?')})"
        )
    rows, cols = int(rows), int(cols)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared = shared[0] if shared else None
    per = ds.get("PerFrameFunctionalGroupsSequence")
    top_iop = _floats(ds.get("ImageOrientationPatient"), 6)
    top_ipp = _floats(ds.get("ImagePositionPatient"), 3)
    top_spacing = _floats(ds.get("PixelSpacing"), 2)
    top_slope = _float(ds.get("RescaleSlope"))
    top_inter = _float(ds.get("RescaleIntercept"))
    top_thick = _float(ds.get("SliceThickness"))
    top_between = _float(ds.get("SpacingBetweenSlices"))
    instance = _float(ds.get("InstanceNumber"))
    frames = []
    if n_frames == 1 and not per:
        frames.append(
            _Frame(
                path,
                None,
                rows,
                cols,
                top_iop,
                top_ipp,
                top_spacing,
                1.0 if top_slope is None else top_slope,
                0.0 if top_inter is None else top_inter,
                0.0 if instance is None else instance,
                top_thick,
                top_between,
                uid,
            )
        )
        return frames
    if per is not None and len(per) != n_frames:
        raise VolumeError(f"{path}: {len(per)} per-frame functional groups for {n_frames} frames")
    normal = np.cross(top_iop[:3], top_iop[3:]) if top_iop is not None else None
    legacy_step = top_between or top_thick
    for f in range(n_frames):
        groups = [per[f] if per is not None else None, shared]
        iop = _floats(_seq_attr(groups, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
        ipp = _floats(_seq_attr(groups, "PlanePositionSequence", "ImagePositionPatient"), 3)
        spacing = _floats(_seq_attr(groups, "PixelMeasuresSequence", "PixelSpacing"), 2)
        thick = _float(_seq_attr(groups, "PixelMeasuresSequence", "SliceThickness"))
        between = _float(_seq_attr(groups, "PixelMeasuresSequence", "SpacingBetweenSlices"))
        slope = _float(_seq_attr(groups, "PixelValueTransformationSequence", "RescaleSlope"))
        inter = _float(_seq_attr(groups, "PixelValueTransformationSequence", "RescaleIntercept"))
        order = _float(_seq_attr(groups, "FrameContentSequence", "InStackPositionNumber"))
        if iop is None:
            iop = top_iop
        if ipp is None and top_ipp is not None and normal is not None and legacy_step:
            ipp = top_ipp + f * legacy_step * normal  # legacy multi-frame: frames stacked along the normal
        frames.append(
            _Frame(
                path,
                f,
                rows,
                cols,
                iop,
                ipp,
                spacing if spacing is not None else top_spacing,
                slope if slope is not None else (1.0 if top_slope is None else top_slope),
                inter if inter is not None else (0.0 if top_inter is None else top_inter),
                float(f) if order is None else order,
                thick if thick is not None else top_thick,
                between if between is not None else top_between,
                uid,
            )
        )
    return frames


def _read_header(path: str) -> Any:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError as exc:
        raise VolumeError(f"{path}: not a DICOM file ({describe(exc)})") from None
    except Exception as exc:
        raise VolumeError(
            f"{path}: cannot read DICOM header (truncated or corrupt?) ({describe(exc)})"
        ) from None


def _read_pixels(path: str) -> np.ndarray:
    """Raw pixel array of a DICOM file: ``(rows, cols)`` or ``(frames, rows, cols)``."""
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise VolumeError(
            f"{path}: cannot read DICOM file (truncated or corrupt?) ({describe(exc)})"
        ) from None
    if not any(t in ds for t in _PIXEL_TAGS):
        raise VolumeError(
            f"{path}: no PixelData (not an image DICOM, or a truncated file; "
            f"SOP class {ds.get('SOPClassUID', '?')})"
        )
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise VolumeError(
            f"{path}: colour DICOM ({ds.get('PhotometricInterpretation', '?')}) is not supported"
        )
    try:
        arr = ds.pixel_array
    except Exception as exc:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        hint = f"; transfer syntax {ts.name if ts is not None else '?'}"
        raise VolumeError(f"{path}: cannot decode pixel data ({describe(exc)}{hint})") from None
    return np.asarray(arr)


def _unique_or_error(values: list[np.ndarray], what: str, where: str, atol: float) -> np.ndarray:
    ref = values[0]
    for v in values[1:]:
        if not np.allclose(v, ref, atol=atol):
            raise VolumeError(
                f"{where}: inconsistent {what} in series ({np.round(ref, 4).tolist()} vs "
                f"{np.round(v, 4).tolist()})"
            )
    return ref


def _assemble(frames: list[_Frame], where: str, uid: str) -> tuple[list[_Frame], np.ndarray, dict[str, Any]]:
    """Check consistency, order the frames and build the RAS affine."""
    sizes = sorted({(f.rows, f.cols) for f in frames})
    if len(sizes) > 1:
        desc = "rows x columns " + ", ".join(f"{r}x{c}" for r, c in sizes)
        raise VolumeError(f"{where}: mixed matrix sizes in series {uid or '?'} ({desc})")
    have_iop = all(f.iop is not None for f in frames)
    iop = (
        _unique_or_error([f.iop for f in frames], "ImageOrientationPatient", where, 1e-4)
        if have_iop
        else None
    )
    have_spacing = all(f.spacing is not None for f in frames)
    spacing = (
        _unique_or_error([f.spacing for f in frames], "PixelSpacing", where, 1e-4)
        if have_spacing
        else np.array([1.0, 1.0])
    )
    notes = []
    if iop is None:
        iop = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        notes.append("no ImageOrientationPatient: axial orientation assumed")
    if not have_spacing:
        notes.append("no PixelSpacing: 1 mm assumed")
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    have_ipp = all(f.ipp is not None for f in frames)
    if have_ipp:
        dist = np.array([float(f.ipp @ normal) for f in frames])
        order = sorted(range(len(frames)), key=lambda n: (dist[n], frames[n].order))
        d_sorted = dist[order]
        if len(frames) > 1 and np.min(np.diff(d_sorted)) < 1e-3:
            n_unique = 1 + int(np.sum(np.diff(d_sorted) >= 1e-3))
            raise VolumeError(
                f"{where}: {len(frames)} slices at only {n_unique} distinct positions in series {uid or '?'} "
                "(several echoes, time points or stacks in one series are not supported)"
            )
    else:
        order = sorted(range(len(frames)), key=lambda n: frames[n].order)
        notes.append("no ImagePositionPatient: slices ordered by InstanceNumber")
    frames = [frames[n] for n in order]
    k = len(frames)
    first = frames[0]
    uniform = True
    if have_ipp and k > 1:
        pos = np.stack([f.ipp for f in frames])
        steps = np.diff(pos, axis=0)
        step = (pos[-1] - pos[0]) / (k - 1)
        dev = np.max(np.linalg.norm(steps - step, axis=1))
        if dev > max(1e-2, 0.01 * float(np.linalg.norm(step))):
            uniform = False
            notes.append(f"non-uniform slice spacing (max deviation {dev:.3g} mm): mean spacing used")
    else:
        fallback = first.between or first.thickness or 1.0
        step = normal * fallback
    lps = np.eye(4)
    lps[:3, 0] = row_dir * spacing[1]
    lps[:3, 1] = col_dir * spacing[0]
    lps[:3, 2] = step
    lps[:3, 3] = first.ipp if first.ipp is not None else 0.0
    affine = lps_to_ras(lps)
    for n in notes:
        warnings.warn(f"{where}: {n}", stacklevel=3)
    meta = {
        "positions": np.stack([f.ipp for f in frames]) if have_ipp else None,
        "orientation": iop.copy(),
        "pixel_spacing": (float(spacing[0]), float(spacing[1])),
        "slice_spacing": float(np.linalg.norm(step)),
        "slice_thickness": first.thickness,
        "rescale": np.array([[f.slope, f.intercept] for f in frames], dtype=np.float64),
        "uniform_spacing": uniform,
        "notes": notes,
    }
    return frames, affine, meta


def dicom_files_in(folder: Path) -> list[str]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for fn in sorted(files):
            if fn.startswith(".") or is_nifti_path(fn):
                continue
            p = os.path.join(root, fn)
            if is_dicom_file(p):
                out.append(p)
    return out


def scan_dicom(paths: Iterable[str], *, strict: bool) -> dict[str, list[_Frame]]:
    """Read headers and group frames by SeriesInstanceUID.

    With ``strict`` every file must be an image DICOM; otherwise non-image DICOMs
    (structured reports, presentation states, DICOMDIR) are skipped.
    """
    series: dict[str, list[_Frame]] = {}
    for p in paths:
        ds = _read_header(p)
        if str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "")) == DICOMDIR_CLASS:
            if strict:
                raise VolumeError(f"{p}: a DICOMDIR index, not an image (pass its folder instead)")
            continue
        if not strict and (ds.get("Rows") is None or ds.get("Columns") is None):
            continue
        for fr in _frames_of(ds, p):
            series.setdefault(fr.series_uid, []).append(fr)
    return series


def load_dicom_series(
    paths: str | os.PathLike | Sequence[str | os.PathLike], *, series_uid: str | None = None
) -> Volume:
    """Read a DICOM series into a :class:`Volume`.

    Args:
        paths: a folder (searched recursively; non-DICOM and non-image DICOM files are
            skipped), one file (single-frame: a one-slice volume; enhanced multi-frame: all
            its frames), or an explicit list of files.
        series_uid: which series to read when the files hold several.

    Raises:
        VolumeError: no image DICOM, several series and no ``series_uid``, mixed matrix sizes,
            inconsistent orientation or spacing, duplicate slice positions, undecodable or
            missing pixel data, NaN values.
    """
    if isinstance(paths, (str, os.PathLike)):
        p = Path(paths)
        if not p.exists():
            raise VolumeError(f"{p}: not found")
        if p.is_dir():
            where = str(p)
            files = dicom_files_in(p)
            if not files:
                raise VolumeError(f"{where}: no DICOM files found (files need the 'DICM' Part 10 header)")
            series = scan_dicom(files, strict=False)
            if not series:
                raise VolumeError(f"{where}: no image DICOM files (only non-image objects such as reports)")
        else:
            where = str(p)
            series = scan_dicom([str(p)], strict=True)
    else:
        files = [str(x) for x in paths]
        if not files:
            raise VolumeError("load_dicom_series: empty file list")
        where = files[0] if len(files) == 1 else f"{os.path.dirname(files[0]) or '.'} ({len(files)} files)"
        series = scan_dicom(files, strict=len(files) == 1)
        if not series:
            raise VolumeError(f"{where}: no image DICOM files")
    if series_uid is not None:
        if series_uid not in series:
            raise VolumeError(f"{where}: series {series_uid} not found (have: {', '.join(sorted(series))})")
        uid = series_uid
    elif len(series) > 1:
        raise VolumeError(
            f"{where}: {len(series)} series found ({', '.join(sorted(series))}); "
            "pass series_uid= or use find_volumes()"
        )
    else:
        uid = next(iter(series))
    frames, affine, geo = _assemble(series[uid], where, uid)

    cache: dict[str, np.ndarray] = {}
    planes = []
    for fr in frames:
        if fr.path not in cache:
            if len(cache) and frames[0].frame is None:
                cache.clear()  # single-frame files: keep memory flat
            cache[fr.path] = _read_pixels(fr.path)
        raw = cache[fr.path]
        if fr.frame is None:
            if raw.ndim != 2:
                raise VolumeError(f"{fr.path}: expected one frame, pixel data has shape {raw.shape}")
            plane = raw
        else:
            if raw.ndim == 2 and fr.frame == 0:
                raw = raw[None]
            if raw.ndim != 3 or raw.shape[0] <= fr.frame:
                raise VolumeError(f"{fr.path}: frame {fr.frame} missing from pixel data of shape {raw.shape}")
            plane = raw[fr.frame]
        if plane.shape != (fr.rows, fr.cols):
            raise VolumeError(
                f"{fr.path}: pixel data shape {plane.shape} != Rows x Columns {(fr.rows, fr.cols)}"
            )
        planes.append(plane.astype(np.float64) * fr.slope + fr.intercept)
    stack = np.stack(planes, axis=-1)  # (rows, cols, K)
    array = np.ascontiguousarray(
        np.transpose(stack, (1, 0, 2)).astype(np.float32)
    )  # (cols, rows, K) = (i, j, k)
    check_finite(array, where)
    header = _read_header(frames[0].path)
    meta = {
        "format": "dicom",
        "source": where,
        "series_uid": uid,
        "files": [fr.path for fr in frames],
        "frames": [fr.frame for fr in frames],
        "multiframe": frames[0].frame is not None,
        "dataset": header,
        **geo,
    }
    desc = str(header.get("SeriesDescription", "") or "")
    return Volume(array=array, affine=affine, meta=meta, name=uid or desc or Path(frames[0].path).stem)



#: Tags copied from the template dataset: patient, study, frame of reference, equipment and
#: MR acquisition modules (per-instance, per-slice and pixel tags are never copied).
COPIED_DICOM_TAGS: tuple[str, ...] = (
    "SpecificCharacterSet",
    # patient
    "PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDsSequence", "PatientBirthDate",
    "PatientBirthTime", "PatientSex", "PatientAge", "PatientSize", "PatientWeight", "EthnicGroup",
    "PatientComments", "PatientIdentityRemoved", "DeidentificationMethod",
    # study
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
    "StudyDescription", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy",
    # frame of reference
    "FrameOfReferenceUID", "PositionReferenceIndicator",
    # equipment
    "Manufacturer", "InstitutionName", "InstitutionAddress", "StationName", "ManufacturerModelName",
    "DeviceSerialNumber",
    # series / acquisition context
    "Modality", "BodyPartExamined", "PatientPosition", "ProtocolName", "Laterality",
    # MR image module
    "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "SequenceName",
    "AngioFlag", "RepetitionTime", "EchoTime", "InversionTime", "NumberOfAverages", "ImagingFrequency",
    "ImagedNucleus", "EchoNumbers", "MagneticFieldStrength", "NumberOfPhaseEncodingSteps",
    "EchoTrainLength", "PercentSampling", "PercentPhaseFieldOfView", "PixelBandwidth", "ReceiveCoilName",
    "TransmitCoilName", "AcquisitionMatrix", "InPlanePhaseEncodingDirection", "FlipAngle",
)

_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_ORTHO_TOL = 1e-4


# --------------------------------------------------------------------------------------
# DICOM geometry


@dataclass
class DicomSliceGeometry:
    """Per-slice DICOM geometry of a volume (LPS millimetres).

    Attributes:
        orientation: ``ImageOrientationPatient``: row cosine (direction of increasing column
            index ``i``) then column cosine (direction of increasing row index ``j``).
        positions: ``(K, 3)`` ``ImagePositionPatient`` of each slice ``k``.
        pixel_spacing: ``(row spacing, column spacing)`` = (step along ``j``, step along ``i``).
        slice_spacing: distance between neighbouring slice positions (mean).
        normal: ``row cosine x column cosine``.
    """

    orientation: np.ndarray
    positions: np.ndarray
    pixel_spacing: tuple[float, float]
    slice_spacing: float
    normal: np.ndarray = field(default_factory=lambda: np.zeros(3))


def dicom_geometry_from_affine(affine: np.ndarray, n_slices: int) -> DicomSliceGeometry:
    """DICOM orientation, spacing and slice positions for a RAS+ ``affine`` (voxel ``(i, j, k)``).

    Raises:
        ValueError: the ``i`` and ``j`` axes are not orthogonal (a sheared in-plane grid has no
            DICOM representation) or an axis has zero length.
    """
    lps = ras_to_lps(affine)
    ci, cj, ck = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    si, sj = float(np.linalg.norm(ci)), float(np.linalg.norm(cj))
    if si <= 0 or sj <= 0 or not np.isfinite([si, sj]).all():
        raise ValueError(f"affine has a zero-length in-plane axis:\n{affine}")
    row, col = ci / si, cj / sj
    if abs(float(row @ col)) > _ORTHO_TOL:
        raise ValueError(
            "affine has a sheared in-plane grid (i and j axes not orthogonal): no DICOM geometry"
        )
    positions = np.stack([lps[:3, 3] + k * ck for k in range(n_slices)])
    return DicomSliceGeometry(
        orientation=np.concatenate([row, col]),
        positions=positions,
        pixel_spacing=(sj, si),
        slice_spacing=float(np.linalg.norm(ck)),
        normal=np.cross(row, col),
    )


def _ds_str(value: float) -> str:
    """A DICOM decimal string (at most 16 characters)."""
    for digits in (10, 9, 8, 7, 6):
        s = f"{float(value):.{digits}g}"
        if len(s) <= 16:
            return s
    return f"{float(value):.5e}"[:16]


def _quantisation(array: np.ndarray) -> tuple[np.dtype, int, float, float]:
    """(stored dtype, PixelRepresentation, slope as read back, intercept) for ``array``."""
    vmin = float(np.min(array)) if array.size else 0.0
    vmax = float(np.max(array)) if array.size else 0.0
    if vmin >= 0:
        dtype, rep, top = np.dtype("<u2"), 0, 65535.0
        peak = vmax
    else:
        dtype, rep, top = np.dtype("<i2"), 1, 32767.0
        peak = max(abs(vmin), abs(vmax))
    slope = peak / top if peak > 0 else 1.0
    slope = float(_ds_str(slope))  # the value readers will parse
    if slope <= 0:
        slope = 1.0
    return dtype, rep, slope, 0.0


@dataclass
class DicomSeriesInfo:
    """What :func:`write_dicom_series` wrote.

    Attributes:
        folder: the series folder.
        series_uid: the new SeriesInstanceUID.
        files: the files, in slice order ``k`` of the array.
        sop_uids: their SOPInstanceUIDs, in slice order ``k``.
        slope: the RescaleSlope (intercept is 0).
        pixel_representation: 0 (unsigned) or 1 (signed).
    """

    folder: Path
    series_uid: str
    files: list[Path]
    sop_uids: list[str]
    slope: float
    pixel_representation: int


def _now() -> tuple[str, str]:
    now = datetime.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")


def write_dicom_series(
    folder: str | os.PathLike,
    array: np.ndarray,
    affine: np.ndarray,
    *,
    template: Any | None = None,
    positions: np.ndarray | None = None,
    series_description: str = "mri_n2n reconstruction",
    series_number: int | None = None,
    comments: str | None = None,
    overwrite: bool = False,
) -> DicomSeriesInfo:
    """Write ``array`` ``(I, J, K)`` as a new single-frame MR DICOM series in ``folder``.

    Args:
        folder: the series folder to create (one ``IM00001.dcm`` ... file per slice).
        array: real values in the units to store (e.g. the input's units).
        affine: voxel ``(i, j, k)`` -> RAS+ mm.
        template: a :class:`pydicom.Dataset` whose patient, study, frame-of-reference, equipment
            and MR tags are copied (:data:`COPIED_DICOM_TAGS`), e.g. the input's header
            (``Volume.meta["dataset"]``). ``None``: a new study.
        positions: ``(K, 3)`` LPS ``ImagePositionPatient`` of each slice (e.g. the input's own,
            ``Volume.meta["positions"]``); default from the affine.
        series_description: ``SeriesDescription`` (at most 64 characters; cut).
        series_number: ``SeriesNumber``; default the template's plus 1000, else 1001.
        comments: ``ImageComments`` of every file (provenance).
        overwrite: replace an existing ``folder`` (otherwise :class:`FileExistsError`).

    Returns:
        A :class:`DicomSeriesInfo`.

    Raises:
        FileExistsError: ``folder`` exists and ``overwrite`` is false.
        ValueError: not a finite real 3-D array, a sheared affine, or ``positions`` of the wrong shape.
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder}: exists (pass --force to replace it)")
    arr = np.asarray(array)
    if arr.ndim != 3 or np.iscomplexobj(arr) or not np.isfinite(arr).all():
        raise ValueError(f"write_dicom_series expects a finite real 3-D volume, got shape {arr.shape}")
    ni, nj, nk = arr.shape
    geo = dicom_geometry_from_affine(affine, nk)
    if positions is not None:
        positions = np.asarray(positions, dtype=np.float64)
        if positions.shape != (nk, 3):
            raise ValueError(f"positions must have shape ({nk}, 3), got {positions.shape}")
        geo.positions = positions
        if nk > 1:
            geo.slice_spacing = float(np.linalg.norm(positions[-1] - positions[0]) / (nk - 1))
    dtype, rep, slope, intercept = _quantisation(arr)
    lo, hi = (0, 65535) if rep == 0 else (-32768, 32767)

    series_uid = generate_uid()
    date, time = _now()
    base = Dataset()
    if template is not None:
        for kw in COPIED_DICOM_TAGS:
            if kw in template:
                base[kw] = copy.deepcopy(template[kw])
    if "StudyInstanceUID" not in base:
        base.StudyInstanceUID = generate_uid()
        base.StudyDate, base.StudyTime = date, time
        base.StudyID = ""
        base.AccessionNumber = ""
        base.ReferringPhysicianName = ""
    if "PatientName" not in base:
        base.PatientName = ""
    if "PatientID" not in base:
        base.PatientID = ""
    for kw in ("PatientBirthDate", "PatientSex"):  # type 2: present, possibly empty
        if kw not in base:
            setattr(base, kw, "")
    if "FrameOfReferenceUID" not in base:
        base.FrameOfReferenceUID = generate_uid()
        base.PositionReferenceIndicator = ""
    base.Modality = "MR"
    if "ScanningSequence" not in base:
        base.ScanningSequence = "RM"  # research mode: the reconstruction is not an acquisition
    if "SequenceVariant" not in base:
        base.SequenceVariant = "NONE"
    for kw in ("ScanOptions", "MRAcquisitionType", "EchoTime", "RepetitionTime", "EchoTrainLength"):
        if kw not in base:  # type 2 attributes of the MR image module: present, empty
            setattr(base, kw, None)
    if series_number is None:
        orig = template.get("SeriesNumber") if template is not None else None
        try:
            series_number = int(orig) + 1000 if orig not in (None, "") else 1001
        except (TypeError, ValueError):
            series_number = 1001
    base.SeriesInstanceUID = series_uid
    base.SeriesNumber = int(series_number)
    base.SeriesDescription = series_description[:64]
    base.SeriesDate, base.SeriesTime = date, time
    base.ContentDate, base.ContentTime = date, time
    base.InstanceCreationDate, base.InstanceCreationTime = date, time
    base.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    base.DerivationDescription = "Noise2Noise reconstruction (mri_n2n)"
    if comments:
        base.ImageComments = comments[:10240]
    base.SOPClassUID = _MR_IMAGE_STORAGE
    base.ImageOrientationPatient = [_ds_str(v) for v in geo.orientation]
    base.PixelSpacing = [_ds_str(v) for v in geo.pixel_spacing]
    base.SpacingBetweenSlices = _ds_str(geo.slice_spacing if geo.slice_spacing > 0 else 1.0)
    if template is not None and template.get("SliceThickness") not in (None, ""):
        base.SliceThickness = template.SliceThickness
    else:
        base.SliceThickness = _ds_str(geo.slice_spacing if geo.slice_spacing > 0 else 1.0)
    base.Rows, base.Columns = nj, ni
    base.SamplesPerPixel = 1
    base.PhotometricInterpretation = "MONOCHROME2"
    base.BitsAllocated = 16
    base.BitsStored = 16
    base.HighBit = 15
    base.PixelRepresentation = rep
    base.RescaleSlope = _ds_str(slope)
    base.RescaleIntercept = _ds_str(intercept)
    base.RescaleType = "US"
    top = float(np.percentile(arr[::2, ::2, :], 99.5)) if arr.size else 0.0
    bottom = min(0.0, float(arr.min())) if arr.size else 0.0
    width = max(top - bottom, 1e-6)
    base.WindowCenter = _ds_str(bottom + width / 2)
    base.WindowWidth = _ds_str(width)

    # slices numbered along the normal, as viewers and readers sort them
    along = geo.positions @ geo.normal
    order = sorted(range(nk), key=lambda k: (along[k], k))
    instance_of = {k: n + 1 for n, k in enumerate(order)}

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    files: list[Path] = []
    sops: list[str] = []
    try:
        for k in range(nk):
            ds = copy.deepcopy(base)
            sop = generate_uid()
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = _MR_IMAGE_STORAGE
            meta.MediaStorageSOPInstanceUID = sop
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta = meta
            ds.SOPInstanceUID = sop
            ds.InstanceNumber = instance_of[k]
            pos = geo.positions[k]
            ds.ImagePositionPatient = [_ds_str(v) for v in pos]
            ds.SliceLocation = _ds_str(float(pos @ geo.normal))
            plane = arr[:, :, k].T.astype(np.float64)
            stored = np.clip(np.round((plane - intercept) / slope), lo, hi).astype(dtype)
            ds.PixelData = np.ascontiguousarray(stored).tobytes()
            name = f"IM{instance_of[k]:05d}.dcm"
            with atomic_path(tmpdir / name, suffix=".tmp") as tmp:
                ds.save_as(tmp, enforce_file_format=True)
            files.append(folder / name)
            sops.append(sop)
        _swap_into_place(tmpdir, folder, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    return DicomSeriesInfo(folder, series_uid, files, sops, slope, rep)


def _swap_into_place(tmpdir: Path, folder: Path, *, overwrite: bool) -> None:
    """Rename the finished ``tmpdir`` onto ``folder`` (moving an old one aside first)."""
    if not folder.exists():
        os.replace(tmpdir, folder)
        return
    if not overwrite:
        raise FileExistsError(f"{folder}: exists (pass --force to replace it)")
    old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
    os.rmdir(old)
    os.replace(folder, old)
    try:
        os.replace(tmpdir, folder)
    except BaseException:
        os.replace(old, folder)
        raise
    with contextlib.suppress(OSError):
        shutil.rmtree(old) if old.is_dir() else old.unlink()


