"""NIfTI-1/2 files: :func:`load_nifti` reads a :class:`~mri_n2n.io.base.Volume`,
:func:`write_nifti` writes one back with the input's header and geometry.

The writer keeps the input's header (data type, units, codes, intent; ``descrip`` marks the
reconstruction) and writes the affine to the sform and qform with the header's own codes.
With an integer on-disk type nibabel chooses a new ``scl_slope``/``scl_inter`` so the float
reconstruction fits; reading applies it, so values come back within half a slope step.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from .atomic import atomic_path
from .base import Volume, VolumeError, check_finite, describe, strip_nifti_suffix

__all__ = ["load_nifti", "write_nifti"]


def load_nifti(
    path: str | os.PathLike | None = None, *, data: bytes | None = None, name: str | None = None
) -> Volume:
    """Read a NIfTI-1/2 file (``.nii`` or ``.nii.gz``) with nibabel.

    Args:
        path: the file. Ignored when ``data`` is given (then it only labels messages).
        data: the file's bytes (gzip-compressed or not), e.g. a tar member.
        name: the label used in messages and as :attr:`Volume.name` (default: file stem).

    Returns:
        A :class:`Volume`; scaling (``scl_slope``/``scl_inter``) is applied, trailing
        singleton dimensions are dropped, a 2-D image becomes ``(I, J, 1)``, and complex data
        become their magnitude.

    Raises:
        VolumeError: missing, unreadable or truncated file, more than 3 non-singleton
            dimensions, or NaN/infinite voxels.
    """
    where = str(path) if path is not None else (name or "<NIfTI bytes>")
    label = name or strip_nifti_suffix(Path(str(path if path is not None else "volume")).name)
    try:
        if data is not None:
            raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
            img = (
                nib.Nifti1Image.from_bytes(raw)
                if raw[344:348] != b"n+2\0"
                else nib.Nifti2Image.from_bytes(raw)
            )
        else:
            if path is None:
                raise VolumeError("load_nifti needs a path or data")
            p = Path(path)
            if not p.exists():
                raise VolumeError(f"{where}: file not found")
            if not p.is_file():
                raise VolumeError(f"{where}: not a file")
            img = nib.load(str(p))
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise VolumeError(f"{where}: not a NIfTI image ({type(img).__name__})")
        arr = np.asanyarray(img.dataobj)
    except VolumeError:
        raise
    except Exception as exc:  # nibabel raises many types for bad files (EOFError, zlib.error, ...)
        raise VolumeError(
            f"{where}: cannot read NIfTI (truncated or corrupt file?) ({describe(exc)})"
        ) from None
    if arr.dtype.fields is not None:
        raise VolumeError(f"{where}: RGB/structured NIfTI data ({arr.dtype}) are not supported")
    arr = np.abs(arr) if np.iscomplexobj(arr) else arr
    arr = np.asarray(arr, dtype=np.float32)
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise VolumeError(
            f"{where}: expected a 3-D volume, got shape {tuple(arr.shape)} (pass one 3-D volume)"
        )
    if arr.size == 0:
        raise VolumeError(f"{where}: empty volume (shape {tuple(arr.shape)})")
    check_finite(arr, where)
    affine = np.asarray(img.affine, dtype=np.float64)
    meta = {
        "format": "nifti",
        "source": where,
        "header": img.header.copy(),
        "zooms": tuple(float(z) for z in img.header.get_zooms()[:3]),
    }
    return Volume(array=np.ascontiguousarray(arr), affine=affine, meta=meta, name=label)



def write_nifti(
    path: str | os.PathLike,
    array: np.ndarray,
    affine: np.ndarray,
    *,
    header: Any | None = None,
    dtype: np.dtype | str | None = None,
    description: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a 3-D volume as NIfTI-1 (``.nii`` or ``.nii.gz``), atomically.

    Args:
        path: the target file.
        array: the volume ``(I, J, K)`` in the units to store (e.g. the input's units).
        affine: ``(4, 4)`` voxel -> RAS+ mm affine.
        header: a nibabel NIfTI header to keep (typically the input's); its data type, units,
            intent, dim info and sform/qform codes are kept, its scaling is recomputed. ``None``
            writes a fresh header (float32, mm units, scanner-aligned codes).
        dtype: on-disk data type; default the header's, or float32 without a header. Integer
            types get a ``scl_slope``/``scl_inter`` chosen by nibabel to hold the values.
        description: the ``descrip`` field (at most 80 characters; longer text is cut).
        overwrite: replace an existing file (otherwise :class:`FileExistsError`).

    Returns:
        The path written.

    Raises:
        FileExistsError: the file exists and ``overwrite`` is false.
        ValueError: not a 3-D array, or a non-finite value.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists (pass --force to replace it)")
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise ValueError(f"write_nifti expects a 3-D volume, got shape {arr.shape}")
    if np.iscomplexobj(arr) or not np.isfinite(arr).all():
        raise ValueError("write_nifti expects finite real values")
    aff = np.asarray(affine, dtype=np.float64)
    if header is not None:
        hdr = header.copy()
        if not isinstance(hdr, nib.Nifti1Header) or isinstance(hdr, nib.Nifti2Header):
            hdr = nib.Nifti1Header.from_header(hdr)
        sform_code = int(hdr["sform_code"])
        qform_code = int(hdr["qform_code"])
        out_dtype = np.dtype(dtype) if dtype is not None else hdr.get_data_dtype()
    else:
        hdr = nib.Nifti1Header()
        sform_code = qform_code = 1
        out_dtype = np.dtype(dtype) if dtype is not None else np.dtype(np.float32)
        hdr.set_xyzt_units("mm", "sec")
    if out_dtype.kind not in "iuf":  # complex or other types: the values are real
        out_dtype = np.dtype(np.float32)
    hdr.set_data_dtype(out_dtype)
    hdr.set_slope_inter(np.nan, np.nan)  # let nibabel choose the scaling for integer types
    img = nib.Nifti1Image(np.asarray(arr, dtype=np.float32), aff, header=hdr)
    img.set_sform(aff, code=sform_code)
    img.set_qform(aff, code=qform_code)
    if description is not None:
        img.header["descrip"] = description.encode("ascii", "replace")[:80]
    img.header.set_data_dtype(out_dtype)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return path


