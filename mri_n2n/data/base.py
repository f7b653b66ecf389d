"""The base classes of the MRI slice datasets (every source builds on them).

Every dataset yields ``(image, ident)``:

- ``image``: float32 tensor ``(1, size, size)`` (magnitude), or ``(2, size, size)``
  (real, imaginary) for complex k-space data;
- ``ident``: a Python int (62 bits), stable across runs and processes, derived from the
  slice's provenance with :func:`~mri_n2n.data.slices.stable_ident`; the trainer seeds the
  fixed validation masks with it.

``dataset.provenance(i)`` returns a dict with at least ``dataset``, ``source`` (subject,
file or series), ``slice`` (index along the slicing axis); ``len(dataset)`` the count.
Slices cut from an image volume (MNI152, IXI, NIfTI and DICOM folders) also carry ``axis`` and
``affine`` (the volume's voxel-to-RAS+ matrix as nested lists), which figures use to show the
slice in the radiological convention (:func:`mri_n2n.plots.provenance_view`).

All datasets work with ``DataLoader(num_workers > 0)`` under fork, spawn or forkserver:
HDF5 files are opened lazily in each worker process, never pickled.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from ..io import VolumeError
from ..seeding import stable_ident
from .slices import center_pad_crop

__all__ = ["DataDirError", "SliceDataset", "H5SliceDataset", "check_data_dir"]


class DataDirError(ValueError):
    """The data directory is missing, empty or holds no usable data (message: dir + problem)."""


def check_data_dir(data_dir: str | os.PathLike | None, dataset: str, *, allow_file: bool = False) -> Path:
    """Return ``data_dir`` as a Path, or raise :class:`DataDirError` if unusable.

    Args:
        data_dir: the folder given by the user.
        dataset: the dataset name (for the message).
        allow_file: accept a regular file too (e.g. a tarball or a single volume).
    """
    if data_dir is None or str(data_dir) == "":
        raise DataDirError(f"dataset {dataset!r} needs a data directory (--data-dir); none was given")
    p = Path(data_dir).expanduser()
    if not p.exists():
        raise DataDirError(f"data dir {p} does not exist (dataset {dataset!r})")
    if p.is_file():
        if allow_file:
            return p
        raise DataDirError(f"data dir {p} is a file, not a folder (dataset {dataset!r})")
    if not any(p.iterdir()):
        raise DataDirError(f"data dir {p} is empty (dataset {dataset!r})")
    return p


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W)`` real -> ``(1, H, W)``; complex -> ``(2, H, W)``; ``(C, H, W)`` kept. float32 copy."""
    if np.iscomplexobj(image):
        image = np.stack([image.real, image.imag])
    elif image.ndim == 2:
        image = image[None]
    return torch.from_numpy(np.array(image, dtype=np.float32, copy=True))


class SliceDataset(Dataset):
    """Slices held in memory.

    Args:
        images: ``(N, H, W)`` real or complex, or ``(N, C, H, W)`` real.
        provenance: one dict per slice (``dataset``, ``source``, ``slice``, ...).
        idents: one int per slice; default ``stable_ident(dataset, source, slice)``.
    """

    def __init__(
        self, images: np.ndarray, provenance: Sequence[dict[str, Any]], idents: Sequence[int] | None = None
    ) -> None:
        if len(images) != len(provenance):
            raise ValueError(f"{len(images)} images but {len(provenance)} provenance records")
        if np.iscomplexobj(images):
            images = np.stack([images.real, images.imag], axis=1)
        elif images.ndim == 3:
            images = images[:, None]
        if images.ndim != 4:
            raise ValueError(f"images must be (N, H, W) or (N, C, H, W), got {images.shape}")
        self._images = np.ascontiguousarray(images, dtype=np.float32)
        self._prov = [dict(p) for p in provenance]
        if idents is None:
            idents = [
                stable_ident(p.get("dataset", ""), p.get("source", ""), p.get("slice", i))
                for i, p in enumerate(self._prov)
            ]
        self._idents = [int(i) for i in idents]

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self._images[i].copy()), self._idents[i]

    def provenance(self, i: int) -> dict[str, Any]:
        """Where slice ``i`` came from (a copy)."""
        return dict(self._prov[i])

    def ident(self, i: int) -> int:
        """The stable identity of slice ``i``."""
        return self._idents[i]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every item."""
        return tuple(self._images.shape[1:])  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, shape={self.image_shape})"


class H5SliceDataset(Dataset):
    """Slices read lazily from an HDF5 file (the layout :func:`~mri_n2n.data.ixi.prepare_ixi` writes).

    Layout: ``slices`` float32 ``(N, H, W)``; ``subject`` (strings) and ``slice_index`` (ints),
    one per row. The file is opened on first access in each process (DataLoader workers
    included) and never pickled; only the rows' provenance is kept in memory.

    Args:
        path: the ``.h5`` file.
        rows: the rows to expose (default all), e.g. a slice-range subset.
        size: centre pad/crop each slice to ``size x size`` on the fly (default: as stored).
        dataset: the dataset name used in provenance and identities.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        rows: Sequence[int] | None = None,
        size: int | None = None,
        dataset: str = "ixi",
    ) -> None:
        self.path = str(path)
        self.dataset = dataset
        try:
            with h5py.File(self.path, "r") as f:
                if "slices" not in f:
                    raise VolumeError(f"{self.path}: no 'slices' dataset (not a prepared slice file)")
                self._stored_shape = tuple(f["slices"].shape)
                self._axis = int(f.attrs.get("axis", 2))
                subjects = np.asarray(f["subject"].asstr()[...], dtype=object)
                slice_idx = np.asarray(f["slice_index"][...], dtype=np.int64)
                # files prepared before the affines were stored have none (figures: array order)
                affines = np.asarray(f["affine"][...], dtype=np.float64) if "affine" in f else None
        except VolumeError:
            raise
        except Exception as exc:
            raise VolumeError(
                f"{self.path}: cannot read prepared HDF5 ({type(exc).__name__}: {exc})"
            ) from None
        n = self._stored_shape[0]
        self._rows = np.arange(n) if rows is None else np.asarray(list(rows), dtype=np.int64)
        if self._rows.size and (self._rows.min() < 0 or self._rows.max() >= n):
            raise ValueError(f"{self.path}: row index out of range 0..{n - 1}")
        self._subjects = [str(s) for s in subjects[self._rows]]
        self._slice_idx = [int(k) for k in slice_idx[self._rows]]
        self._idents = [stable_ident(dataset, s, k) for s, k in zip(self._subjects, self._slice_idx)]
        self._affines = None if affines is None else affines[self._rows]
        self.size = size
        self._file: Any = None
        self._pid: int | None = None

    def _slices(self) -> Any:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file["slices"]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = np.asarray(self._slices()[int(self._rows[i])], dtype=np.float32)
        if self.size is not None and img.shape != (self.size, self.size):
            img = center_pad_crop(img, self.size)
        return torch.from_numpy(np.ascontiguousarray(img)[None].copy()), self._idents[i]

    def provenance(self, i: int) -> dict[str, Any]:
        """``dataset``, ``source``/``subject``, ``slice``, ``axis``, ``file``, ``row`` of item ``i``,
        and ``affine`` (its volume's) when the file stores it."""
        prov: dict[str, Any] = {
            "dataset": self.dataset,
            "source": self._subjects[i],
            "subject": self._subjects[i],
            "slice": self._slice_idx[i],
            "axis": self._axis,
            "file": self.path,
            "row": int(self._rows[i]),
        }
        if self._affines is not None:
            prov["affine"] = self._affines[i].tolist()
        return prov

    def ident(self, i: int) -> int:
        """The stable identity of item ``i``."""
        return self._idents[i]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every item."""
        h, w = (self.size, self.size) if self.size is not None else self._stored_shape[1:]
        return (1, int(h), int(w))

    def close(self) -> None:
        """Close this process's file handle (it reopens on the next access)."""
        if self._file is not None and self._pid == os.getpid():
            try:
                self._file.close()
            except Exception:  # pragma: no cover - best effort
                pass
        self._file = None
        self._pid = None

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r}, n={len(self)}, shape={self.image_shape})"
