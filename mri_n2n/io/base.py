"""The volume type every reader returns, its error, and helpers shared by the format modules.

A :class:`Volume`'s ``array`` is float32 in *NIfTI voxel order* ``(i, j, k)`` and its
``affine`` maps voxel indices to RAS+ millimetres exactly as nibabel defines it
(``xyz = affine @ [i, j, k, 1]``). Every read failure raises one :class:`VolumeError`
(a :class:`ValueError`) whose message names the file and the reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Volume", "VolumeError", "is_nifti_path", "is_dicom_file"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


class VolumeError(ValueError):
    """A volume could not be read; the message names the file and the reason."""


@dataclass
class Volume:
    """A 3-D image volume with its geometry.

    Attributes:
        array: float32 ``(I, J, K)`` voxel values in NIfTI voxel order (rescaling applied).
        affine: ``(4, 4)`` float64, voxel ``(i, j, k)`` -> RAS+ millimetres (nibabel's convention).
        meta: what a writer needs to produce a matching file. Always has ``format``
            (``"nifti"`` or ``"dicom"``) and ``source`` (path). NIfTI: ``header`` (a copy of the
            nibabel header). DICOM: ``series_uid``, ``files`` and ``frames`` (file and frame index
            of each slice ``k``), ``positions`` (``(K, 3)`` ImagePositionPatient, LPS),
            ``orientation`` (ImageOrientationPatient, 6 values), ``pixel_spacing`` (row, column),
            ``slice_spacing``, ``slice_thickness``, ``rescale`` (``(K, 2)`` slope, intercept
            applied), ``value_mapping`` (their source: ``"rescale"``, ``"real world value"``,
            ``"none"``, or several joined by ``" + "``),
            ``uniform_spacing``, ``multiframe`` and ``dataset`` (the representative
            :class:`pydicom.Dataset` header of the first slice, without pixel data).
        name: a short, stable identifier (file name without suffix, or the series UID).
    """

    array: np.ndarray
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        """The array shape ``(I, J, K)``."""
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def zooms(self) -> tuple[float, float, float]:
        """Voxel sizes in mm along ``i``, ``j``, ``k`` (column norms of the affine)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]



def is_nifti_path(path: str | os.PathLike) -> bool:
    """True when the file name ends in ``.nii`` or ``.nii.gz`` (case-insensitive)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True when the file carries the DICOM Part 10 magic (``DICM`` at byte 128).

    Files without the 128-byte preamble (old ACR-NEMA style) are not recognised.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def strip_nifti_suffix(name: str) -> str:
    low = name.lower()
    for suf in (".nii.gz", ".nii"):
        if low.endswith(suf):
            return name[: -len(suf)]
    return name


def check_finite(array: np.ndarray, where: str) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        n_nan = int(np.isnan(array).sum())
        n_inf = int(array.size - finite.sum() - n_nan)
        parts = [f"{n_nan} NaN" if n_nan else "", f"{n_inf} infinite" if n_inf else ""]
        raise VolumeError(f"{where}: contains {' and '.join(p for p in parts if p)} voxel values")


def describe(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


