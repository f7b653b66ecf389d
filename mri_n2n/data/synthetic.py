"""Small synthetic data in the real on-disk layouts, for tests, demos and smoke runs.

Nothing here is used by training on real data. The writers produce:

- :func:`write_synthetic_ixi`: NIfTI volumes named like IXI T1 files
  (``IXI012-HH-1211-T1.nii.gz``), optionally bundled into an ``IXI-T1.tar``;
- :func:`write_dicom_series`: a single-frame MR DICOM series (one file per slice, files
  written in shuffled order, with rescale slope/intercept and any orientation);
- :func:`write_enhanced_dicom`: one enhanced multi-frame MR DICOM file (frames shuffled);
- :func:`write_fastmri_h5`: a fastMRI-style single-coil k-space file;
- :func:`write_undersampled_folder`: a folder of prospectively undersampled fastMRI-style
  files (one acquisition per slice: its own line mask, a smooth phase, k-space noise).

The DICOM writers take the volume in NIfTI voxel order ``(i, j, k)`` and store
``array[:, :, k].T`` as slice ``k`` (rows = ``j``, columns = ``i``), the convention of
:mod:`mri_n2n.io`.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import nibabel as nib
import numpy as np
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from ..io import atomic_path
from ..masks import make_family
from ._acquire import kspace_of, sampled

__all__ = [
    "phantom_volume",
    "ixi_subject_names",
    "write_synthetic_ixi",
    "write_ixi_tar",
    "DicomGeometry",
    "OBLIQUE_GEOMETRY",
    "write_dicom_series",
    "write_enhanced_dicom",
    "write_fastmri_h5",
    "write_undersampled_folder",
]


def phantom_volume(
    shape: Sequence[int] = (40, 48, 130),
    *,
    content: tuple[int, int] | None = None,
    seed: int = 0,
    peak: float = 1000.0,
) -> np.ndarray:
    """A head-like float32 phantom: nested ellipsoids with texture, exactly zero outside.

    Args:
        shape: ``(I, J, K)``.
        content: ``(first, last + 1)`` slices (axis 2) the head spans; default the middle 80 %.
        seed: texture and noise seed.
        peak: the volume's maximum.
    """
    rng = np.random.default_rng(seed)
    ni, nj, nk = (int(s) for s in shape)
    k0, k1 = content if content is not None else (int(0.1 * nk), nk - int(0.1 * nk))
    i, j, k = np.meshgrid(np.arange(ni), np.arange(nj), np.arange(nk), indexing="ij")
    ci, cj, ck = (ni - 1) / 2 + rng.uniform(-1, 1), (nj - 1) / 2 + rng.uniform(-1, 1), (k0 + k1 - 1) / 2
    ri, rj, rk = 0.42 * ni, 0.44 * nj, max((k1 - k0) / 2, 0.5)
    r2 = ((i - ci) / ri) ** 2 + ((j - cj) / rj) ** 2 + ((k - ck) / rk) ** 2
    head = (r2 <= 1.0) & (k >= k0) & (k < k1)
    vol = np.where(head, 0.55, 0.0)
    vol = np.where(r2 <= 0.75, 0.8, vol)
    vol = np.where(r2 <= 0.3, 0.45, vol)
    texture = (
        0.08 * np.sin(i / 2.3 + rng.uniform(0, 6)) * np.cos(j / 3.1 + rng.uniform(0, 6)) * np.sin(k / 4.0)
    )
    vol = np.where(head, vol + texture + 0.03 * rng.standard_normal(vol.shape), 0.0)
    vol = np.clip(vol, 0.01, None) * head
    return (vol / vol.max() * peak).astype(np.float32)


def ixi_subject_names(n: int, *, seed: int = 0) -> list[str]:
    """``n`` distinct IXI-style subject IDs (``IXI012-HH-1211``), in shuffled order."""
    rng = np.random.default_rng(seed)
    numbers = rng.choice(np.arange(2, 663), size=n, replace=False)
    sites = ("Guys", "HH", "IOP")
    return [f"IXI{int(x):03d}-{sites[int(x) % 3]}-{1000 + int(rng.integers(0, 9000)):04d}" for x in numbers]


def write_synthetic_ixi(
    folder: str | os.PathLike,
    n_subjects: int = 6,
    *,
    shape: Sequence[int] = (40, 48, 130),
    seed: int = 0,
    dtype: str = "int16",
    subjects: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write ``n_subjects`` phantom volumes as ``<folder>/IXI???-<site>-????-T1.nii.gz``.

    ``subjects`` gives the IDs (e.g. ``"IXI002-Guys-0828"``; then ``n_subjects`` is ignored);
    by default they are ``n_subjects`` random IXI-style IDs.

    Each volume has its own maximum (so per-volume normalisation is observable), content in
    slices 10..119 of axis 2 (so with 130 slices the paper's range 25..124 contains black
    slices 120..124), and an IXI-like affine (0.94 x 0.94 x 1.2 mm).

    Returns:
        ``{subject ID: path}``.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    affine = np.diag([0.9375, 0.9375, 1.2, 1.0])
    affine[:3, 3] = [-20.0, -24.0, -70.0]
    written = {}
    names = list(subjects) if subjects is not None else ixi_subject_names(n_subjects, seed=seed)
    for n, subject in enumerate(names):
        peak = 400.0 + 250.0 * n
        vol = phantom_volume(shape, content=(10, min(120, shape[2])), seed=seed * 1000 + n, peak=peak)
        img = nib.Nifti1Image(np.round(vol).astype(dtype), affine)
        path = out / f"{subject}-T1.nii.gz"
        with atomic_path(path) as tmp:
            nib.save(img, tmp)
        written[subject] = path
    return written


def write_ixi_tar(files: Sequence[str | os.PathLike], tar_path: str | os.PathLike) -> Path:
    """Bundle ``files`` (flat, by base name) into an uncompressed tarball like ``IXI-T1.tar``."""
    tar_path = Path(tar_path)
    with atomic_path(tar_path, suffix=".tar") as tmp:
        with tarfile.open(tmp, "w") as tf:
            for f in files:
                tf.add(str(f), arcname=Path(f).name)
    return tar_path


class DicomGeometry:
    """Geometry of a synthetic DICOM series (all lengths in mm, DICOM LPS coordinates).

    Args:
        row_cosine: direction of increasing column index (``ImageOrientationPatient[:3]``).
        col_cosine: direction of increasing row index (``ImageOrientationPatient[3:]``).
        origin: ``ImagePositionPatient`` of slice 0.
        pixel_spacing: ``(row spacing, column spacing)`` (``PixelSpacing``).
        slice_step: distance between slices along the normal ``row x col``.
    """

    def __init__(
        self,
        row_cosine: Sequence[float] = (1, 0, 0),
        col_cosine: Sequence[float] = (0, 1, 0),
        origin: Sequence[float] = (0, 0, 0),
        pixel_spacing: Sequence[float] = (1.0, 1.0),
        slice_step: float = 1.0,
    ) -> None:
        self.row_cosine = np.asarray(row_cosine, float)
        self.col_cosine = np.asarray(col_cosine, float)
        self.origin = np.asarray(origin, float)
        self.pixel_spacing = (float(pixel_spacing[0]), float(pixel_spacing[1]))
        self.slice_step = float(slice_step)

    @property
    def normal(self) -> np.ndarray:
        """The slice normal ``row_cosine x col_cosine``."""
        return np.cross(self.row_cosine, self.col_cosine)

    def position(self, k: int) -> np.ndarray:
        """``ImagePositionPatient`` of slice ``k``."""
        return self.origin + k * self.slice_step * self.normal

    def ras_affine(self) -> np.ndarray:
        """The expected voxel ``(i=column, j=row, k=slice)`` -> RAS+ affine, built independently."""
        lps = np.eye(4)
        lps[:3, 0] = self.row_cosine * self.pixel_spacing[1]
        lps[:3, 1] = self.col_cosine * self.pixel_spacing[0]
        lps[:3, 2] = self.normal * self.slice_step
        lps[:3, 3] = self.origin
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


#: An oblique orientation whose direction cosines are exact decimals (3-4-5 triangles), so that
#: geometry round trips can be checked tightly: ``row x col = (-0.48, -0.36, 0.8)``.
OBLIQUE_GEOMETRY = DicomGeometry(
    row_cosine=(0.64, 0.48, 0.6),
    col_cosine=(-0.6, 0.8, 0.0),
    origin=(-10.5, 20.25, 3.0),
    pixel_spacing=(0.9, 1.1),
    slice_step=2.5,
)


def _ds(values: Sequence[float]) -> list[str]:
    return [f"{float(v):.10g}" for v in values]


def _base_dataset(sop_class: str, series_uid: str, study_uid: str, rows: int, cols: int) -> Any:
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "MR"
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = "SYNTH0001"
    ds.SeriesDescription = "synthetic T1"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    return ds


def _to_stored(plane: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    stored = np.round((plane - intercept) / slope)
    if stored.min() < 0 or stored.max() > 65535:
        raise ValueError("values do not fit uint16 with this slope/intercept")
    return stored.astype(np.uint16)


def write_dicom_series(
    folder: str | os.PathLike,
    array: np.ndarray,
    geometry: DicomGeometry,
    *,
    slope: float = 1.0,
    intercept: float = 0.0,
    shuffle_seed: int | None = 0,
    series_uid: str | None = None,
    instance_order: str = "spatial",
    with_position: bool = True,
) -> dict[str, Any]:
    """Write ``array`` ``(I, J, K)`` as a single-frame MR series, one file per slice.

    Stored value = ``round((value - intercept) / slope)`` as uint16, so the reader must apply
    RescaleSlope/Intercept to get ``array`` back (to within ``slope / 2``).

    Args:
        folder: output folder (created).
        array: the volume in NIfTI voxel order.
        geometry: orientation, positions, spacing.
        slope, intercept: RescaleSlope / RescaleIntercept.
        shuffle_seed: files are written in a random order with random names (None: in order).
        series_uid: SeriesInstanceUID (default: a new one).
        instance_order: ``"spatial"`` (InstanceNumber = k + 1) or ``"reversed"``.
        with_position: write ImagePositionPatient (False tests the InstanceNumber fallback).

    Returns:
        ``{"series_uid", "files" (in slice order k), "quantised" (the exact values the reader
        should return, (I, J, K) float32)}``.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    ni, nj, nk = array.shape
    order = list(range(nk))
    names = [f"IM{n:04d}.dcm" for n in range(nk)]
    if shuffle_seed is not None:
        rng = np.random.default_rng(shuffle_seed)
        order = [int(x) for x in rng.permutation(nk)]
        names = [f"{int(x):08x}.dcm" for x in rng.choice(2**31, size=nk, replace=False)]
    files: list[Path | None] = [None] * nk
    quantised = np.zeros(array.shape, np.float32)
    for n, k in enumerate(order):
        plane = array[:, :, k].T  # (rows = j, cols = i)
        stored = _to_stored(plane, slope, intercept)
        quantised[:, :, k] = (stored.astype(np.float64) * slope + intercept).T
        ds = _base_dataset(MRImageStorage, series_uid, study_uid, nj, ni)
        ds.InstanceNumber = k + 1 if instance_order == "spatial" else nk - k
        ds.ImageOrientationPatient = _ds(list(geometry.row_cosine) + list(geometry.col_cosine))
        if with_position:
            ds.ImagePositionPatient = _ds(geometry.position(k))
        ds.PixelSpacing = _ds(geometry.pixel_spacing)
        ds.SliceThickness = _ds([geometry.slice_step])[0]
        ds.RescaleSlope = _ds([slope])[0]
        ds.RescaleIntercept = _ds([intercept])[0]
        ds.PixelData = stored.tobytes()
        path = out / names[n]
        with atomic_path(path, suffix=".tmp") as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        files[k] = path
    return {"series_uid": series_uid, "files": files, "quantised": quantised}


def write_enhanced_dicom(
    path: str | os.PathLike,
    array: np.ndarray,
    geometry: DicomGeometry,
    *,
    slopes: Sequence[float] | float = 1.0,
    intercept: float = 0.0,
    shuffle_seed: int | None = 0,
) -> dict[str, Any]:
    """Write ``array`` ``(I, J, K)`` as one enhanced multi-frame MR file, frames in shuffled order.

    Per-frame functional groups carry each frame's ImagePositionPatient and rescale (a
    per-slice ``slopes`` sequence is allowed); shared groups carry orientation and spacing.

    Returns:
        ``{"series_uid", "path", "frame_of_slice" (frame index of each slice k), "quantised"}``.
    """
    ni, nj, nk = array.shape
    slopes = [float(slopes)] * nk if np.isscalar(slopes) else [float(s) for s in slopes]  # type: ignore[arg-type]
    order = (
        list(range(nk))
        if shuffle_seed is None
        else [int(x) for x in np.random.default_rng(shuffle_seed).permutation(nk)]
    )
    series_uid = generate_uid()
    ds = _base_dataset(EnhancedMRImageStorage, series_uid, generate_uid(), nj, ni)
    ds.NumberOfFrames = nk
    ds.InstanceNumber = 1
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = _ds(geometry.pixel_spacing)
    pm.SliceThickness = _ds([geometry.slice_step])[0]
    shared.PixelMeasuresSequence = [pm]
    po = Dataset()
    po.ImageOrientationPatient = _ds(list(geometry.row_cosine) + list(geometry.col_cosine))
    shared.PlaneOrientationSequence = [po]
    ds.SharedFunctionalGroupsSequence = [shared]
    per, planes = [], []
    quantised = np.zeros(array.shape, np.float32)
    frame_of_slice = [0] * nk
    for f, k in enumerate(order):
        g = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = _ds(geometry.position(k))
        g.PlanePositionSequence = [pp]
        pv = Dataset()
        pv.RescaleSlope = _ds([slopes[k]])[0]
        pv.RescaleIntercept = _ds([intercept])[0]
        pv.RescaleType = "US"
        g.PixelValueTransformationSequence = [pv]
        fc = Dataset()
        fc.InStackPositionNumber = k + 1
        g.FrameContentSequence = [fc]
        per.append(g)
        stored = _to_stored(array[:, :, k].T, slopes[k], intercept)
        quantised[:, :, k] = (stored.astype(np.float64) * slopes[k] + intercept).T
        planes.append(stored)
        frame_of_slice[k] = f
    ds.PerFrameFunctionalGroupsSequence = per
    ds.PixelData = np.stack(planes).tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".tmp") as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return {"series_uid": series_uid, "path": path, "frame_of_slice": frame_of_slice, "quantised": quantised}


def write_fastmri_h5(
    path: str | os.PathLike,
    images: np.ndarray,
    *,
    reference: bool = True,
    mask: np.ndarray | None = None,
    attrs: dict[str, Any] | None = None,
    oversample: int = 1,
    noise_std: float = 0.0,
    seed: int = 0,
    mask_attribute: bool = False,
) -> np.ndarray:
    """Write ``images`` ``(slices, H, W)`` (real or complex) as a fastMRI single-coil file.

    ``kspace = fft2c(images)`` (complex64); ``reconstruction_esc = |images|`` when
    ``reference``; attributes ``max``, ``norm``, ``acquisition``, ``patient_id`` (plus ``attrs``).

    Args:
        oversample: readout oversampling as fastMRI's files have it (640 rows for a 320-row
            reconstruction): the images are zero-padded to ``oversample * H`` rows before the FFT,
            the reference stays ``H x W`` and an ISMRMRD header records the encoded and
            reconstruction matrices.
        noise_std: complex Gaussian noise (standard deviation, seeded by ``seed``) added to the
            k-space, as a scanner's thermal noise; the reference stays noise-free.
        mask: stored as the ``mask`` dataset, or (``mask_attribute``) as an attribute as some
            fastMRI test files have it; the k-space is zeroed outside it.

    Returns:
        The k-space written.
    """
    imgs = np.asarray(images)
    s_, h, w = imgs.shape
    padded = imgs.astype(np.complex64)
    if oversample > 1:
        padded = np.zeros((s_, oversample * h, w), np.complex64)
        top = (oversample * h - h) // 2
        padded[:, top : top + h] = imgs
    k = kspace_of(padded).numpy().astype(np.complex64)
    if noise_std > 0:
        rng = np.random.default_rng(seed)
        k = k + (noise_std / np.sqrt(2) * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)))
        k = k.astype(np.complex64)
    if mask is not None:
        m = np.asarray(mask) > 0
        k = sampled(k, m if m.ndim != 1 else m[None, None, :])
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("kspace", data=k)
            ref = np.abs(imgs).astype(np.float32)
            if reference:
                f.create_dataset("reconstruction_esc", data=ref)
            if mask is not None and mask_attribute:
                f.attrs["mask"] = np.asarray(mask)
            elif mask is not None:
                f.create_dataset("mask", data=np.asarray(mask))
            if oversample > 1:
                header = _ismrmrd_header((oversample * h, w), (h, w))
                f.create_dataset("ismrmrd_header", data=np.bytes_(header))
            f.attrs["max"] = float(ref.max())
            f.attrs["norm"] = float(np.linalg.norm(ref))
            f.attrs["acquisition"] = "CORPD_FBK"
            f.attrs["patient_id"] = path.stem
            for key, v in (attrs or {}).items():
                f.attrs[key] = v
    return k


def _ismrmrd_header(encoded: tuple[int, int], recon: tuple[int, int]) -> str:
    """A minimal ISMRMRD XML header with the encoded and reconstruction matrices (1 mm pixels)."""

    def space(tag: str, m: tuple[int, int]) -> str:
        return (
            f"<{tag}><matrixSize><x>{m[0]}</x><y>{m[1]}</y><z>1</z></matrixSize>"
            f"<fieldOfView_mm><x>{m[0]}</x><y>{m[1]}</y><z>3</z></fieldOfView_mm></{tag}>"
        )

    return (
        '<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>'
        + space("encodedSpace", encoded)
        + space("reconSpace", recon)
        + "</encoding></ismrmrdHeader>"
    )


def _smooth_phase_np(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A smooth random phase map (a random low-order polynomial), as B0 and coil phase are."""
    h, w = shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    c = rng.uniform(-1, 1, 6)
    poly = c[0] + c[1] * yy + c[2] * xx + c[3] * yy * xx + c[4] * yy**2 + c[5] * xx**2
    return (np.pi / 2 * poly).astype(np.float32)


def write_undersampled_folder(
    out_dir: str | os.PathLike,
    images: np.ndarray,
    *,
    files: int = 4,
    family: str = "lines_random",
    acceleration: float = 4.0,
    center_fraction: float = 0.08,
    noise_std: float = 0.02,
    oversample: int = 2,
    seed: int = 0,
    reference: bool = False,
) -> list[Path]:
    """Write magnitude slices ``(S, H, W)`` (peak about 1) as ``files`` prospectively
    undersampled fastMRI-style files (consecutive blocks of slices): every slice gets a smooth
    random phase, complex k-space noise of ``noise_std`` and its own mask of whole columns from
    ``family`` (stored as a 3-D ``mask`` dataset), as a scanner acquires each slice once. The
    mask law is not recorded (readers estimate it). ``reference``: also store
    ``reconstruction_esc`` (for scoring only; single-acquisition training never reads it).

    Returns:
        The files written.
    """
    imgs = np.asarray(images, np.float32)
    if imgs.ndim != 3:
        raise ValueError(f"images must be (slices, H, W), got shape {imgs.shape}")
    s_, h, w = imgs.shape
    rng = np.random.default_rng(seed)
    fam = make_family(family, (oversample * h, w), acceleration=acceleration, center_fraction=center_fraction)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, block in enumerate(np.array_split(np.arange(s_), max(int(files), 1))):
        if len(block) == 0:
            continue
        cplx = np.stack([imgs[j] * np.exp(1j * _smooth_phase_np((h, w), rng)) for j in block])
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        masks = fam.sample(len(block), generator=gen).numpy().astype(np.float32)
        path = out / f"acq{i:03d}.h5"
        write_fastmri_h5(
            path, cplx, mask=masks, oversample=oversample, noise_std=noise_std,
            seed=int(rng.integers(2**31)), reference=reference,
        )
        paths.append(path)
    return paths
