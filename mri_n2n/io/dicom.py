"""DICOM: read a series (single-frame files, or an enhanced multi-frame file) into a
:class:`~mri_n2n.io.base.Volume`, and write a reconstruction as a new MR series.

Reading follows dcm2niix's conventions (before its optional row flip): ``i`` indexes the
DICOM columns (along ``ImageOrientationPatient[:3]``, step ``PixelSpacing[1]``), ``j`` the
rows, ``k`` the slices sorted by ``ImagePositionPatient`` projected on ``row x column``
(or by ``InstanceNumber``). So ``array[:, :, k] == pixel_array_k.T`` after rescaling, and
the affine is built in LPS and converted to RAS.

Values: the Modality LUT rescale (``RescaleSlope``/``RescaleIntercept``, or an enhanced file's
Pixel Value Transformation) when a frame has one; otherwise the first linear item of its Real World
Value Mapping Sequence (what :func:`write_dicom_series` writes, as the MR Image IOD has no Modality
LUT); otherwise the stored values. ``meta["value_mapping"]`` says which.

Writing (:func:`write_dicom_series`, re-exported from :mod:`mri_n2n.io.dicom_write`) makes
a new single-frame MR series.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from .base import Volume, VolumeError, check_finite, describe, is_dicom_file, is_nifti_path
from .dicom_write import (
    COPIED_DICOM_TAGS,
    DicomSeriesInfo,
    DicomSliceGeometry,
    dicom_geometry_from_affine,
    write_dicom_series,
)
from .geometry import lps_to_ras

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
    mapping: str  # "rescale", "real world value" or "none": where slope and intercept come from
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


def _rwv_linear(items: Any) -> tuple[float, float] | None:
    """(slope, intercept) of the first linear item of a Real World Value Mapping Sequence (items
    with a LUT instead of a slope are skipped)."""
    for item in items or ():
        slope = _float(item.get("RealWorldValueSlope"))
        if slope is not None:
            inter = _float(item.get("RealWorldValueIntercept"))
            return slope, 0.0 if inter is None else inter
    return None


def _value_mapping(
    slope: float | None, inter: float | None, groups: Sequence[Any]
) -> tuple[float, float, str]:
    """(slope, intercept, source): the rescale when there is one, else a linear Real World Value
    Mapping from the first of ``groups`` (datasets or functional groups) that has one, else 1, 0."""
    if slope is not None or inter is not None:
        return (1.0 if slope is None else slope), (0.0 if inter is None else inter), "rescale"
    for g in groups:
        rwv = _rwv_linear(g.get("RealWorldValueMappingSequence")) if g is not None else None
        if rwv is not None:
            return rwv[0], rwv[1], "real world value"
    return 1.0, 0.0, "none"


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
        slope, inter, mapping = _value_mapping(top_slope, top_inter, [ds])
        frames.append(
            _Frame(
                path,
                None,
                rows,
                cols,
                top_iop,
                top_ipp,
                top_spacing,
                slope,
                inter,
                mapping,
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
        slope = top_slope if slope is None else slope
        inter = top_inter if inter is None else inter
        slope, inter, mapping = _value_mapping(slope, inter, [*groups, ds])
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
                slope,
                inter,
                mapping,
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
        "value_mapping": " + ".join(sorted({f.mapping for f in frames})),
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
