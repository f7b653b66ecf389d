"""User folders of NIfTI volumes or DICOM series (``--dataset nifti`` / ``--dataset dicom``).

The folder is searched recursively (:func:`~mri_n2n.io.find_volumes`); every
volume goes through the slice pipeline (:func:`~mri_n2n.data.slices.volume_to_slices`) and
the slices are held in memory.

Split rule (deterministic, by volume, so no subject leaks between train and validation):
each volume's key (relative NIfTI path, or SeriesInstanceUID) is hashed with the seed
(SHA-256 of ``"<seed>:<key>"``); the ``n_valid = max(1, round(valid_fraction * n))``
volumes with the smallest hashes validate (at most ``n - 1``), the rest train. Adding or
removing other files does not move a volume between sets unless the counts change. With a
single volume the split falls back to slice blocks inside it, with every training slice more
than 5 mm from every validation slice (:func:`~mri_n2n.data.slices.block_split`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io import VolumeSource, find_volumes
from .base import DataDirError, SliceDataset
from .slices import block_split, volume_to_slices, warn_if_cropped

__all__ = ["split_by_key", "build_folder_datasets", "volumes_to_dataset"]


def split_by_key(
    keys: Sequence[str], *, valid_fraction: float = 0.2, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Deterministic split of items by their keys (see the module docstring).

    Returns:
        ``(train, valid)`` positions into ``keys``, each sorted. With one key, or
        ``valid_fraction == 0``, everything trains.
    """
    n = len(keys)
    if n < 2 or valid_fraction <= 0:
        return list(range(n)), []
    n_valid = min(n - 1, max(1, round(valid_fraction * n)))
    rank = sorted(range(n), key=lambda i: hashlib.sha256(f"{seed}:{keys[i]}".encode()).hexdigest())
    valid = sorted(rank[:n_valid])
    train = sorted(rank[n_valid:])
    return train, valid


def _make_dataset(
    items: Sequence[tuple[VolumeSource, np.ndarray, list[int], np.ndarray]],
    dataset: str,
    *,
    size: int,
    axis: int,
) -> SliceDataset:
    images: list[np.ndarray] = []
    prov: list[dict] = []
    for src, stack, idx, affine in items:
        images.append(stack)
        aff = np.asarray(affine, dtype=np.float64).tolist()
        for k in idx:
            p = {
                "dataset": dataset,
                "source": src.key,
                "slice": k,
                "axis": axis,
                "file": src.paths[0],
                "affine": aff,
            }
            if src.kind == "dicom":
                p["series_uid"] = src.key
                p["n_files"] = len(src.paths)
            prov.append(p)
    arr = np.concatenate(images) if images else np.zeros((0, size, size), np.float32)
    return SliceDataset(arr, prov)


def volumes_to_dataset(
    sources: Sequence[VolumeSource],
    dataset: str,
    *,
    size: int = 256,
    slices: tuple[int, int] | None = None,
    axis: int = 2,
    normalize: str = "max",
) -> SliceDataset:
    """Load ``sources``, slice them (:func:`~mri_n2n.data.slices.volume_to_slices`) and stack
    the slices into one in-memory :class:`SliceDataset` named ``dataset``."""
    items = []
    shapes = []
    for src in sources:
        vol = src.load()
        shapes.append(tuple(s for a, s in enumerate(vol.array.shape) if a != axis))
        stack, idx = volume_to_slices(
            vol.array, axis=axis, slice_range=slices, size=size, normalize=normalize
        )
        items.append((src, stack, idx, vol.affine))
    warn_if_cropped(shapes, size, f"--dataset {dataset}")
    return _make_dataset(items, dataset, size=size, axis=axis)


def build_folder_datasets(
    kind: str,
    data_dir: str | Path,
    *,
    size: int = 256,
    slices: tuple[int, int] | None = None,
    axis: int = 2,
    normalize: str = "max",
    valid_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[SliceDataset, SliceDataset]:
    """Train and validation datasets from a folder of NIfTI files or DICOM series.

    Args:
        kind: ``"nifti"`` or ``"dicom"``.
        data_dir: the folder (searched recursively) or a single NIfTI file.
        size, slices, axis, normalize: see :func:`~mri_n2n.data.slices.volume_to_slices`.
        valid_fraction, seed: see the module docstring.

    Raises:
        DataDirError: no volume of that kind in the folder.
        VolumeError: a volume cannot be read (names the file).
    """
    if kind not in ("nifti", "dicom"):
        raise ValueError(f"kind must be 'nifti' or 'dicom', got {kind!r}")
    sources = find_volumes(data_dir, kinds=(kind,))
    if not sources:
        what = "NIfTI files (.nii, .nii.gz)" if kind == "nifti" else "DICOM image series"
        raise DataDirError(f"data dir {data_dir} contains no {what}")
    common = dict(size=size, slices=slices, axis=axis, normalize=normalize)
    if len(sources) == 1 and valid_fraction > 0:
        src = sources[0]
        vol = src.load()
        in_plane = tuple(s for a, s in enumerate(vol.array.shape) if a != axis)
        warn_if_cropped([in_plane], size, f"--dataset {kind}")
        stack, idx = volume_to_slices(
            vol.array, axis=axis, slice_range=slices, size=size, normalize=normalize
        )
        if not idx:
            raise DataDirError(f"data dir {data_dir}: its only volume ({src.key}) has no non-black slice")
        spacing = float(np.linalg.norm(vol.affine[:3, axis])) or 1.0
        tr, va = block_split(idx, valid_fraction=valid_fraction, spacing_mm=spacing)
        pos = {k: n for n, k in enumerate(idx)}
        return tuple(  # type: ignore[return-value]
            _make_dataset([(src, stack[[pos[k] for k in sel]], sel, vol.affine)], kind, size=size, axis=axis)
            for sel in (tr, va)
        )
    train_pos, valid_pos = split_by_key([s.key for s in sources], valid_fraction=valid_fraction, seed=seed)
    return (
        volumes_to_dataset([sources[i] for i in train_pos], kind, **common),
        volumes_to_dataset([sources[i] for i in valid_pos], kind, **common),
    )
