"""fastMRI-style single-coil k-space files (``--dataset kspace``).

Layout (HDF5, as in the fastMRI single-coil knee release):

- ``kspace``: complex64 ``(slices, ky, kx)`` (a single 2-D slice ``(ky, kx)`` is accepted);
  the k-space centre (DC) is at ``(ky // 2, kx // 2)``, i.e. :func:`mri_n2n.fft.ifft2c`
  gives the image;
- optional ``mask``: the sampling mask (fastMRI test files: 1-D over ``kx``);
- optional ``reconstruction_esc`` / ``reconstruction_rss``: reference magnitude images;
- attribute ``max`` (maximum of the reference), plus e.g. ``norm``, ``patient_id``,
  ``acquisition``.

Training needs fully sampled k-space: the clean image is ``|ifft2c(kspace)|`` (or the
complex image as two real channels with ``complex_kspace=True``), centre-cropped/padded to
``size x size`` in image space, divided per volume (file) by the maximum magnitude of its
cropped images (``normalize="max"``; the divisor is computed once per file and process, by
reading the whole file, when the dataset is built). Files whose ``mask`` drops samples are
refused for training.

Split: by file, as for user folders (:func:`~mri_n2n.data.folders.split_by_key`); a single
file is split into slice blocks with a 5-slice gap.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..fft import ifft2c
from ..io import VolumeError
from ..io.kspace import as_complex, find_kspace_files, open_h5, read_kspace_h5
from ..seeding import stable_ident
from .base import DataDirError
from .folders import split_by_key
from .slices import block_split, center_pad_crop, volume_scale

__all__ = [
    "kspace_to_image",
    "KSpaceSliceDataset",
    "build_kspace_datasets",
]

def kspace_to_image(
    kspace: np.ndarray, *, size: int | None = None, complex_output: bool = False
) -> np.ndarray:
    """``ifft2c`` of ``(..., ky, kx)`` k-space, centre cropped/padded to ``size`` in image space.

    Returns:
        complex64 image(s) if ``complex_output`` else float32 magnitude.
    """
    img = ifft2c(torch.from_numpy(np.ascontiguousarray(kspace, dtype=np.complex64))).numpy()
    if size is not None:
        img = center_pad_crop(img, size)
    return img.astype(np.complex64, copy=False) if complex_output else np.abs(img).astype(np.float32)


@functools.lru_cache(maxsize=4096)
def _volume_info(
    path: str, mtime_ns: int, nbytes: int, size: int, normalize: str
) -> tuple[float, tuple[int, ...]]:
    """(normalisation divisor, non-black slice indices) of one file; cached per process."""
    k, mask, _ = read_kspace_h5(path)
    if mask is not None and mask.size and float(mask.min()) <= 0:
        kept = float(np.mean(mask > 0))
        raise VolumeError(
            f"{path}: undersampled k-space (mask keeps {kept:.0%}); training needs fully sampled data"
        )
    mag = kspace_to_image(k, size=size)
    scale = volume_scale(mag, normalize)
    nonblack = tuple(int(i) for i in np.nonzero(mag.reshape(len(mag), -1).max(axis=1) > 0)[0])
    return scale, nonblack


def _info(path: Path, size: int, normalize: str) -> tuple[float, tuple[int, ...]]:
    st = path.stat()
    return _volume_info(str(path), st.st_mtime_ns, st.st_size, size, normalize)


class KSpaceSliceDataset(Dataset):
    """Slices of fully sampled single-coil k-space files, read lazily.

    Items: ``(image, ident)`` with ``image`` float32 ``(1, size, size)`` magnitude or
    ``(2, size, size)`` (real, imaginary) when ``complex_kspace``.

    Args:
        files: the ``.h5`` files.
        keys: one stable key per file (provenance and identities); default the file names.
        size: image side (centre crop/pad in image space).
        slices: ``(start, stop)`` slice range, ``None`` = all (all-zero slices are skipped).
        normalize: per-file normalisation (see :func:`~mri_n2n.data.slices.volume_scale`).
        complex_kspace: yield complex images as two channels.
        keep: optional ``{key: slice indices}`` restricting the slices per file.
    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike],
        *,
        keys: Sequence[str] | None = None,
        size: int = 256,
        slices: tuple[int, int] | None = None,
        normalize: str = "max",
        complex_kspace: bool = False,
        keep: dict[str, Sequence[int]] | None = None,
    ) -> None:
        self.files = [str(f) for f in files]
        self.keys = list(keys) if keys is not None else [Path(f).name for f in self.files]
        self.size = int(size)
        self.complex_kspace = bool(complex_kspace)
        self._rows: list[tuple[int, int]] = []
        self._scales: list[float] = []
        for fi, path in enumerate(self.files):
            scale, nonblack = _info(Path(path), self.size, normalize)
            self._scales.append(scale)
            idx = [k for k in nonblack if slices is None or slices[0] <= k < slices[1]]
            if keep is not None:
                wanted = set(keep.get(self.keys[fi], ()))
                idx = [k for k in idx if k in wanted]
            self._rows += [(fi, k) for k in idx]
        self._idents = [stable_ident("kspace", self.keys[fi], k) for fi, k in self._rows]
        self._handles: dict[str, Any] = {}
        self._pid: int | None = None

    def _kspace(self, fi: int) -> Any:
        if self._pid != os.getpid():
            self._handles = {}
            self._pid = os.getpid()
        h = self._handles.get(self.files[fi])
        if h is None:
            h = self._handles[self.files[fi]] = open_h5(self.files[fi])
        return h["kspace"]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}
        state["_pid"] = None
        return state

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        fi, k = self._rows[i]
        d = self._kspace(fi)
        pairs = d.dtype.kind == "f" and d.shape[-1] == 2
        raw = np.asarray(d[...] if d.ndim - pairs == 2 else d[k])
        ks = as_complex(raw, self.files[fi])
        img = kspace_to_image(ks, size=self.size, complex_output=self.complex_kspace) / self._scales[fi]
        if self.complex_kspace:
            arr = np.stack([img.real, img.imag]).astype(np.float32)
        else:
            arr = img[None].astype(np.float32)
        return torch.from_numpy(arr), self._idents[i]

    def provenance(self, i: int) -> dict[str, Any]:
        """``dataset``, ``source`` (file key), ``slice``, ``file`` and ``scale`` of item ``i``."""
        fi, k = self._rows[i]
        return {
            "dataset": "kspace",
            "source": self.keys[fi],
            "slice": k,
            "axis": 0,
            "file": self.files[fi],
            "scale": self._scales[fi],
        }

    def ident(self, i: int) -> int:
        """The stable identity of item ``i``."""
        return self._idents[i]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every item."""
        return (2 if self.complex_kspace else 1, self.size, self.size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(files={len(self.files)}, n={len(self)}, shape={self.image_shape})"


def build_kspace_datasets(
    data_dir: str | os.PathLike,
    *,
    size: int = 256,
    slices: tuple[int, int] | None = None,
    normalize: str = "max",
    complex_kspace: bool = False,
    valid_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[KSpaceSliceDataset, KSpaceSliceDataset]:
    """Train and validation datasets from a folder of k-space files (see the module docstring).

    Raises:
        DataDirError: no ``.h5``/``.hdf5`` file.
        VolumeError: a file is unreadable, multi-coil, undersampled (names it).
    """
    root = Path(data_dir)
    files = find_kspace_files(root)
    if not files:
        raise DataDirError(f"data dir {root} contains no k-space files (.h5, .hdf5)")
    keys = [f.name if root.is_file() else f.relative_to(root).as_posix() for f in files]
    common = dict(size=size, slices=slices, normalize=normalize, complex_kspace=complex_kspace)
    if len(files) == 1 and valid_fraction > 0:
        _, nonblack = _info(files[0], size, normalize)
        idx = [k for k in nonblack if slices is None or slices[0] <= k < slices[1]]
        tr, va = block_split(idx, valid_fraction=valid_fraction, spacing_mm=1.0, gap_mm=5.0)
        return (
            KSpaceSliceDataset(files, keys=keys, keep={keys[0]: tr}, **common),
            KSpaceSliceDataset(files, keys=keys, keep={keys[0]: va}, **common),
        )
    train, valid = split_by_key(keys, valid_fraction=valid_fraction, seed=seed)
    return (
        KSpaceSliceDataset([files[i] for i in train], keys=[keys[i] for i in train], **common),
        KSpaceSliceDataset([files[i] for i in valid], keys=[keys[i] for i in valid], **common),
    )
