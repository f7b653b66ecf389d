"""One entry point for image volumes: :func:`load_volume` (a NIfTI file, a DICOM file or a
DICOM series folder) and :func:`find_volumes` (every volume under a folder)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .base import Volume, VolumeError, is_dicom_file, is_nifti_path
from .dicom import dicom_files_in, load_dicom_series, scan_dicom
from .nifti import load_nifti

__all__ = ["VolumeSource", "load_volume", "find_volumes", "output_name_safe"]


@dataclass(frozen=True)
class VolumeSource:
    """A volume found on disk by :func:`find_volumes`; :meth:`load` reads it.

    Attributes:
        kind: ``"nifti"`` or ``"dicom"``.
        paths: the file(s) holding the volume (one NIfTI file, or the series' DICOM files).
        key: a stable identifier: the path relative to the searched folder (NIfTI) or the
            SeriesInstanceUID (DICOM). Used for provenance and deterministic splits.
        description: a human-readable label.
    """

    kind: str
    paths: tuple[str, ...]
    key: str
    description: str = ""

    def load(self) -> Volume:
        """Read the volume (see :func:`load_volume`)."""
        if self.kind == "nifti":
            return load_nifti(self.paths[0])
        return load_dicom_series(self.paths, series_uid=self.key)



def load_volume(path: str | os.PathLike | VolumeSource, *, series_uid: str | None = None) -> Volume:
    """Read a NIfTI file, a DICOM file or a DICOM series folder.

    Args:
        path: a ``.nii``/``.nii.gz`` file, a DICOM file (an enhanced multi-frame file gives a
            volume; a single-frame file a one-slice volume), a folder holding one DICOM
            series, or a :class:`VolumeSource` from :func:`find_volumes`.
        series_uid: the series to read from a folder holding several.

    Returns:
        The :class:`Volume` (float32 array in NIfTI voxel order, RAS+ affine, metadata).

    Raises:
        VolumeError: with the file and the reason (see :func:`load_nifti`,
            :func:`load_dicom_series`).
    """
    if isinstance(path, VolumeSource):
        return path.load()
    p = Path(path)
    if not p.exists():
        raise VolumeError(f"{p}: not found")
    if p.is_dir():
        if not dicom_files_in(p):
            nifti = sorted(q.name for q in p.rglob("*") if is_nifti_path(q))
            if nifti:
                raise VolumeError(
                    f"{p}: a folder of {len(nifti)} NIfTI file(s), not a DICOM series; "
                    "pass one file, or list them with find_volumes()"
                )
        return load_dicom_series(p, series_uid=series_uid)
    if is_nifti_path(p):
        return load_nifti(p)
    if is_dicom_file(p):
        return load_dicom_series(p, series_uid=series_uid)
    raise VolumeError(f"{p}: unknown format (expected .nii, .nii.gz, a DICOM file or a DICOM folder)")


def find_volumes(
    folder: str | os.PathLike, *, kinds: Sequence[str] = ("nifti", "dicom")
) -> list[VolumeSource]:
    """Walk ``folder`` recursively and list its volumes.

    NIfTI files (``.nii``, ``.nii.gz``) are one volume each; DICOM files (recognised by their
    ``DICM`` header) are grouped by SeriesInstanceUID, one volume per series. Hidden files
    and folders and non-image DICOM objects are skipped.

    Args:
        folder: the folder to search (a single file is accepted too).
        kinds: which kinds to list.

    Returns:
        Sources sorted by kind then ``key`` (relative NIfTI path or series UID).

    Raises:
        VolumeError: ``folder`` does not exist, or a DICOM header cannot be read.
    """
    root = Path(folder)
    if not root.exists():
        raise VolumeError(f"{root}: not found")
    nifti: list[VolumeSource] = []
    dicom_files: list[str] = []
    if root.is_file():
        candidates = [(str(root), root.name)]
    else:
        candidates = []
        for base, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for fn in sorted(files):
                if not fn.startswith("."):
                    p = os.path.join(base, fn)
                    candidates.append((p, os.path.relpath(p, root)))
    for p, rel in candidates:
        if is_nifti_path(p):
            if "nifti" in kinds:
                nifti.append(VolumeSource("nifti", (p,), rel.replace(os.sep, "/"), rel))
        elif "dicom" in kinds and is_dicom_file(p):
            dicom_files.append(p)
    dicom: list[VolumeSource] = []
    if dicom_files:
        for uid, frames in scan_dicom(dicom_files, strict=False).items():
            files = tuple(sorted({f.path for f in frames}))
            rel = os.path.relpath(os.path.dirname(files[0]), root) if root.is_dir() else files[0]
            dicom.append(VolumeSource("dicom", files, uid, f"{rel} ({len(frames)} slices)"))
    return sorted(nifti, key=lambda s: s.key) + sorted(dicom, key=lambda s: s.key)


def output_name_safe(name: str, *, fallback: str = "volume") -> str:
    """``name`` with characters other than letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``."""
    out = "".join(c if (c.isalnum() and c.isascii()) or c in "._-" else "_" for c in name).strip("._")
    return out[:120] or fallback
