"""fastMRI-style single-coil k-space files (``--dataset kspace``).

Layout (HDF5, as in the fastMRI single-coil knee release):

- ``kspace``: complex64 ``(slices, ky, kx)`` (a single 2-D slice ``(ky, kx)`` is accepted);
  the k-space centre (DC) is at ``(ky // 2, kx // 2)``, i.e. :func:`mri_n2n.fft.ifft2c`
  gives the image;
- optional ``mask``: the sampling mask (fastMRI test files: 1-D over ``kx``);
- optional ``reconstruction_esc`` / ``reconstruction_rss``: reference magnitude images;
- attribute ``max`` (maximum of the reference), plus e.g. ``norm``, ``patient_id``,
  ``acquisition``.

Training needs fully sampled k-space: the clean image is the complex image ``ifft2c(kspace)``
as two real channels (``complex_kspace=True``, the default of ``--dataset kspace``: the
Noise2Noise pair is then drawn from the measured spectrum itself, its phase and noise
included), or its magnitude. Readout oversampling is removed the way fastMRI does: the image is
centre-cropped to the file's reconstruction matrix (the reference's shape, else the ISMRMRD
header's ``reconSpace``; fastMRI knee: 640 x 368 -> 320 x 320), then centre-cropped/padded to
``size x size`` (a warning says when ``size`` drops part of that matrix). Each volume (file) is
divided by the maximum magnitude of its cropped images (``normalize="max"``; the divisor is
computed once per file and process, by reading the whole file, when the dataset is built).
:meth:`KSpaceSliceDataset.reference` gives the file's reference (``reconstruction_esc``) in the
same crop and units, which evaluation uses when present. Files whose ``mask`` drops samples
are refused for training.

Split: a folder laid out as fastMRI distributes its data, with a training and a validation
subfolder (``train``/``val``, ``multicoil_train``/``multicoil_val``, ``singlecoil_train``/
``singlecoil_val``; ``valid`` and ``validation`` also name the validation one), is split by those
subfolders (:func:`explicit_split`), so the held-out files are the ones the data's author held
out. Otherwise by file, as for user folders (:func:`~mri_n2n.data.folders.split_by_key`); a single
file is split into slice blocks with a 5-slice gap.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..io import VolumeError
from ..io.kspace import as_complex, find_kspace_files, open_h5, read_kspace_h5
from ..seeding import stable_ident
from ._acquire import image_of
from .base import DataDirError
from .folders import split_by_key
from .maps_cache import resolve_maps_cache
from .measured import file_recon_shape
from .multicoil import MultiCoilSliceDataset, is_multicoil
from .slices import block_split, center_pad_crop, file_slice_rows, volume_scale, warn_if_cropped
from .undersampled import UndersampledKSpaceDataset, is_undersampled

__all__ = [
    "kspace_to_image",
    "KSpaceSliceDataset",
    "build_kspace_datasets",
    "explicit_split",
]

#: Subfolder names of an explicit split (fastMRI's ``multicoil_train`` ends with ``_train``).
TRAIN_DIRS = ("train",)
VALID_DIRS = ("val", "valid", "validation")


def _split_role(name: str) -> str | None:
    low = name.lower()
    tail = low.rsplit("_", 1)[-1]
    if low in TRAIN_DIRS or tail in TRAIN_DIRS:
        return "train"
    if low in VALID_DIRS or tail in VALID_DIRS:
        return "valid"
    return None


def explicit_split(root: str | os.PathLike, files: Sequence[Path]) -> tuple[list[int], list[int]] | None:
    """Positions of ``files`` under the training and the validation subfolder of ``root``.

    ``root`` has an explicit split when it holds exactly one training subfolder (``train`` or a
    name ending in ``_train``) and one validation subfolder (``val``, ``valid``, ``validation``
    or a name ending in one of those after ``_``), as fastMRI's releases do. Files elsewhere in
    ``root`` are not used (a warning names how many). Returns ``None`` without such a layout.

    Raises:
        DataDirError: two training or two validation subfolders, or one of them without files.
    """
    root = Path(root)
    if not root.is_dir():
        return None
    roles: dict[str, list[str]] = {"train": [], "valid": []}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        role = _split_role(d.name)
        if role:
            roles[role].append(d.name)
    if not roles["train"] or not roles["valid"]:
        return None
    if len(roles["train"]) > 1 or len(roles["valid"]) > 1:
        raise DataDirError(
            f"data dir {root}: several training or validation subfolders "
            f"({', '.join(roles['train'] + roles['valid'])}); keep one of each"
        )
    tr_dir, va_dir = roles["train"][0], roles["valid"][0]
    top = [f.relative_to(root).parts[0] for f in files]
    train = [i for i, t in enumerate(top) if t == tr_dir]
    valid = [i for i, t in enumerate(top) if t == va_dir]
    if not train or not valid:
        empty = tr_dir if not train else va_dir
        raise DataDirError(f"data dir {root}: the split subfolder '{empty}' holds no k-space files")
    other = len(files) - len(train) - len(valid)
    if other:
        warnings.warn(
            f"data dir {root}: split by its '{tr_dir}' and '{va_dir}' subfolders; {other} other "
            "k-space file(s) are not used",
            stacklevel=2,
        )
    return train, valid

def kspace_to_image(
    kspace: np.ndarray,
    *,
    size: int | None = None,
    complex_output: bool = False,
    recon_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """The image ``F^-1 k`` of fully sampled ``(..., ky, kx)`` k-space (``F`` the centred FFT of
    :mod:`mri_n2n.fft`), centre-cropped to ``recon_shape`` (the file's
    reconstruction matrix) when given, then centre cropped/padded to ``size`` in image space.

    Returns:
        complex64 image(s) if ``complex_output`` else float32 magnitude.
    """
    img = image_of(np.ascontiguousarray(kspace, dtype=np.complex64)).numpy()
    if recon_shape is not None:
        img = center_pad_crop(img, recon_shape)
    if size is not None:
        img = center_pad_crop(img, size)
    return img.astype(np.complex64, copy=False) if complex_output else np.abs(img).astype(np.float32)


@functools.lru_cache(maxsize=4096)
def _volume_info(
    path: str, mtime_ns: int, nbytes: int, size: int, normalize: str
) -> tuple[float, tuple[int, ...], tuple[int, int] | None]:
    """(normalisation divisor, non-black slice indices, reconstruction matrix) of one file;
    cached per process."""
    k, mask, _ = read_kspace_h5(path)
    if mask is not None and mask.size and float(mask.min()) <= 0:
        kept = float(np.mean(mask > 0))
        raise VolumeError(
            f"{path}: undersampled k-space (mask keeps {kept:.0%}); training needs fully sampled data"
        )
    with open_h5(path) as f:
        recon = file_recon_shape(f, tuple(k.shape[-2:]))
    mag = kspace_to_image(k, size=size, recon_shape=recon)
    scale = volume_scale(mag, normalize)
    nonblack = tuple(int(i) for i in np.nonzero(mag.reshape(len(mag), -1).max(axis=1) > 0)[0])
    return scale, nonblack, recon


def _info(path: Path, size: int, normalize: str) -> tuple[float, tuple[int, ...], tuple[int, int] | None]:
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
        found: list[tuple[int, ...]] = []
        self._scales: list[float] = []
        self._recon: list[tuple[int, int] | None] = []
        for path in self.files:
            scale, nonblack, recon = _info(Path(path), self.size, normalize)
            self._scales.append(scale)
            self._recon.append(recon)
            found.append(nonblack)
        self._rows = file_slice_rows(found, self.keys, slices, keep)
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
        img = kspace_to_image(
            ks, size=self.size, complex_output=self.complex_kspace, recon_shape=self._recon[fi]
        )
        img = img / self._scales[fi]
        if self.complex_kspace:
            arr = np.stack([img.real, img.imag]).astype(np.float32)
        else:
            arr = img[None].astype(np.float32)
        return torch.from_numpy(arr), self._idents[i]

    def reference(self, i: int) -> np.ndarray | None:
        """The file's reference magnitude for item ``i`` (``reconstruction_esc``, else
        ``reconstruction_rss``), centre cropped/padded to ``size`` and in the items' units
        (divided by the file's scale); ``None`` when the file has none."""
        fi, k = self._rows[i]
        f = self._kspace(fi).file
        for name in ("reconstruction_esc", "reconstruction_rss"):
            if name in f:
                d = f[name]
                ref = np.asarray(d[...] if d.ndim == 2 else d[k], np.float32)
                return (center_pad_crop(ref, self.size) / self._scales[fi]).astype(np.float32)
        return None

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
    undersampled: bool = False,
    maps_cache: str | os.PathLike | None = None,
    virtual_coils: int | None = None,
) -> tuple[Dataset, Dataset]:
    """Train and validation datasets from a folder of k-space files (see the module docstring).

    Multi-coil files only: ``maps_cache``, the coil maps' disk cache (``"auto"``, ``"none"`` or a
    folder, :func:`~mri_n2n.data.maps_cache.resolve_maps_cache`; ``None``: none), and
    ``virtual_coils``, SVD coil compression at load time (:class:`MultiCoilSliceDataset`).

    ``undersampled``: the run learns from one acquisition per slice (``--target ssdu`` or
    ``noisier2noise``); a folder of prospectively undersampled files then gives
    :class:`~mri_n2n.data.undersampled.UndersampledKSpaceDataset` (measurements, no reference),
    a folder of fully sampled files the usual clean slices (each acquired once by the corruption).

    Raises:
        DataDirError: no ``.h5``/``.hdf5`` file, or fully sampled and undersampled files mixed.
        VolumeError: a file is unreadable, multi-coil, or undersampled without ``undersampled``
            (names it).
    """
    root = Path(data_dir)
    files = find_kspace_files(root)
    if not files:
        raise DataDirError(f"data dir {root} contains no k-space files (.h5, .hdf5)")
    keys = [f.name if root.is_file() else f.relative_to(root).as_posix() for f in files]
    multi = [is_multicoil(f) for f in files]
    if any(multi):
        if not all(multi):
            raise DataDirError(
                f"data dir {root}: {sum(multi)} multi-coil and {len(files) - sum(multi)} single-coil files; "
                "use one kind per run"
            )
        cache = resolve_maps_cache(maps_cache) if maps_cache is not None else None
        return _split_files(MultiCoilSliceDataset, root, files, keys, valid_fraction, seed,
                            dict(size=size, slices=slices, normalize=normalize, maps_cache=cache,
                                 virtual_coils=virtual_coils))
    under = [is_undersampled(f) for f in files]
    if any(under):
        first = files[under.index(True)]
        if not undersampled:
            raise VolumeError(
                f"{first}: undersampled k-space; train on undersampled files with --target ssdu or "
                "noisier2noise (one acquisition per slice), or give fully sampled files"
            )
        if not all(under):
            raise DataDirError(
                f"data dir {root}: {sum(under)} undersampled and {len(files) - sum(under)} fully sampled "
                "files; use one kind per run"
            )
        return _split_files(UndersampledKSpaceDataset, root, files, keys, valid_fraction, seed,
                            dict(size=size, slices=slices, normalize=normalize))
    common = dict(size=size, slices=slices, normalize=normalize, complex_kspace=complex_kspace)
    shapes = []
    for f in files:
        recon = _info(f, size, normalize)[2]
        if recon is None:
            with open_h5(f) as h:
                recon = tuple(h["kspace"].shape[-2:]) if "kspace" in h else None
        if recon is not None:
            shapes.append(recon)
    warn_if_cropped(shapes, size, "--dataset kspace")
    return _split_files(KSpaceSliceDataset, root, files, keys, valid_fraction, seed, common)


def _split_files(
    cls, root: Path, files, keys, valid_fraction: float, seed: int, common: dict
) -> tuple[Dataset, Dataset]:
    """Train/validation datasets of ``cls``: by the folder's explicit split, else by file (a
    single file: slice blocks)."""
    explicit = explicit_split(root, files)
    if explicit is not None:
        train, valid = explicit
        return (
            cls([files[i] for i in train], keys=[keys[i] for i in train], **common),
            cls([files[i] for i in valid], keys=[keys[i] for i in valid], **common),
        )
    if len(files) == 1 and valid_fraction > 0:
        whole = cls(files, keys=keys, **common)
        idx = [k for _, k in whole._rows]
        tr, va = block_split(idx, valid_fraction=valid_fraction, spacing_mm=1.0, gap_mm=5.0)
        return (
            cls(files, keys=keys, keep={keys[0]: tr}, **common),
            cls(files, keys=keys, keep={keys[0]: va}, **common),
        )
    train, valid = split_by_key(keys, valid_fraction=valid_fraction, seed=seed)
    return (
        cls([files[i] for i in train], keys=[keys[i] for i in train], **common),
        cls([files[i] for i in valid], keys=[keys[i] for i in valid], **common),
    )
