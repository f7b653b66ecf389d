"""DICOM writing: a reconstruction as a new single-frame MR Image Storage series.

:func:`write_dicom_series` makes a new series: new Series/SOP Instance UIDs, patient/study/equipment
tags copied from a template when there is one, geometry from the affine, and pixels a viewer shows
correctly without any value mapping. The series is written into a hidden temporary folder and
renamed into place when complete. Re-exported by :mod:`mri_n2n.io.dicom`.

Pixel values. The classic MR Image IOD (PS3.3 A.4) has no Modality LUT module, and the MR Image
module (C.8.3.1) defines no Rescale Slope/Intercept, so a viewer may ignore them and show
``RescaleSlope``-scaled pixels mis-scaled. So the stored integers themselves are the
image: ``stored = round(value / factor)`` with one ``factor`` per series chosen so the series peak
maps to the top of a 12-bit range (``BitsStored`` 12 in a 16-bit word: unsigned 0..4095, or, when
the array has negative values, signed -2047..2047), no ``RescaleSlope``/``RescaleIntercept``/
``RescaleType``, and ``factor`` recorded in the Real World Value Mapping Sequence (0040,9096) of the
General Image module (C.7.6.1, type 3; item macro C.7.6.16.2.11.1) of every instance: slope
``factor`` (FD, exact), intercept 0, units UCUM ``[arb'U]``. Reading ``stored * factor`` gives the
values back within ``factor / 2`` (= peak / 8190 unsigned, peak / 4094 signed). The window
(VOI LUT module) is in stored values, as the VOI LUT applies to them when there is no Modality LUT.
:func:`~mri_n2n.io.dicom.load_dicom_series` and nibabel >= 5.3 apply the mapping; a reader that
ignores it gets the stored integers, proportional to the values.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from .atomic import atomic_path
from .geometry import ras_to_lps

__all__ = [
    "DicomSliceGeometry",
    "dicom_geometry_from_affine",
    "write_dicom_series",
    "DicomSeriesInfo",
    "COPIED_DICOM_TAGS",
    "BITS_STORED",
]

#: Bits of each stored value of a written series (in a 16-bit word): 0..4095 unsigned.
BITS_STORED = 12


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


def _quantisation(array: np.ndarray) -> tuple[np.dtype, int, int, int, float]:
    """(stored dtype, PixelRepresentation, lowest and highest stored value, factor) for ``array``.

    ``stored = round(value / factor)``: unsigned ``0 .. 2**BITS_STORED - 1`` when ``array`` has no
    negative value (magnitude images, all that reconstruction writes), else signed
    ``-(2**(BITS_STORED - 1) - 1) .. 2**(BITS_STORED - 1) - 1`` (negative values are kept, not
    clipped; the range stays symmetric so that ``factor`` is the same for either sign). The peak
    ``max |value|`` maps to the top value, so the rounding error is at most ``factor / 2``.
    """
    vmin = float(np.min(array)) if array.size else 0.0
    vmax = float(np.max(array)) if array.size else 0.0
    if vmin >= 0:
        dtype, rep, lo, hi = np.dtype("<u2"), 0, 0, 2**BITS_STORED - 1
        peak = vmax
    else:
        hi = 2 ** (BITS_STORED - 1) - 1
        dtype, rep, lo = np.dtype("<i2"), 1, -hi
        peak = max(abs(vmin), abs(vmax))
    factor = peak / hi if peak > 0 else 1.0
    if not (np.isfinite(factor) and factor > 0):  # a peak near the smallest float
        factor = 1.0
    return dtype, rep, lo, hi, factor


def _real_world_value_mapping(factor: float, lo: int, hi: int, rep: int) -> Dataset:
    """One Real World Value Mapping item (PS3.3 C.7.6.16.2.11.1): ``value = stored * factor``."""
    vr = "US" if rep == 0 else "SS"  # the "US or SS" attributes follow PixelRepresentation
    item = Dataset()
    item.add(DataElement(0x00409216, vr, lo))  # Real World Value First Value Mapped
    item.add(DataElement(0x00409211, vr, hi))  # Real World Value Last Value Mapped
    item.RealWorldValueIntercept = 0.0
    item.RealWorldValueSlope = float(factor)
    item.LUTExplanation = "reconstruction in the input's intensity units"
    item.LUTLabel = "MRI_N2N_RECON"
    units = Dataset()
    units.CodeValue = "[arb'U]"
    units.CodingSchemeDesignator = "UCUM"
    units.CodeMeaning = "arbitrary unit"
    item.MeasurementUnitsCodeSequence = [units]
    return item


@dataclass
class DicomSeriesInfo:
    """What :func:`write_dicom_series` wrote.

    Attributes:
        folder: the series folder.
        series_uid: the new SeriesInstanceUID.
        files: the files, in slice order ``k`` of the array.
        sop_uids: their SOPInstanceUIDs, in slice order ``k``.
        slope: the series' factor, the RealWorldValueSlope: ``value = stored * slope`` (intercept
            0; no RescaleSlope is written), to within ``slope / 2``.
        pixel_representation: 0 (unsigned, 0..4095) or 1 (signed, -2047..2047: the array had
            negative values).
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
        array: real values in the units to store (e.g. the input's units), stored as 12-bit
            integers proportional to them (see the module docstring): unsigned when no value is
            negative, else signed.
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
    dtype, rep, lo, hi, factor = _quantisation(arr)

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
    base.BitsStored = BITS_STORED
    base.HighBit = BITS_STORED - 1
    base.PixelRepresentation = rep
    base.RealWorldValueMappingSequence = [_real_world_value_mapping(factor, lo, hi, rep)]
    # the window is in stored values (no Modality LUT: the VOI LUT applies to them)
    top = float(np.percentile(arr[::2, ::2, :], 99.5)) / factor if arr.size else 0.0
    bottom = min(0.0, float(arr.min()) / factor) if arr.size else 0.0
    width = max(top - bottom, 1.0)
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
            stored = np.clip(np.round(plane / factor), lo, hi).astype(dtype)
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
    return DicomSeriesInfo(folder, series_uid, files, sops, factor, rep)


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


