"""Fully sampled multi-coil k-space files as training data (``--dataset kspace`` on fastMRI
multi-coil HDF5 or ISMRMRD files: the file's layout decides).

Each item is one slice as a fully sampled :class:`~mri_n2n.physics.Acquisition` (a batch of
one: a full mask, the ``C`` coils' sensitivity maps ``(1, C, size, size)`` and their k-space
``y`` ``(1, C, size, size)``, complex64, no keep probability); :func:`mri_n2n.data.collate`
stacks a loader's items into one acquisition. The maps are estimated from the slice's own
fully sampled k-space centre
(:func:`mri_n2n.coils.estimate_maps`, Walsh's adaptive combination on a 24 x 24 calibration
block, cached per slice on disk (:mod:`mri_n2n.data.maps_cache`, ``--maps-cache``) or, without
a disk cache, per process; the method reconstruction uses too, because ESPIRiT needs a
wider calibration region than accelerated line masks keep: on 8 of 48 lines its maps covered
18 % of the image, Walsh's the whole object) and normalised so that ``sum_c |S_c|^2 = 1`` on the
support; the coil-combined image
``sum_c conj(S_c) F^-1 y_c`` is then the clean target, and its magnitude equals the
root-sum-of-squares image where the maps are exact.

Geometry: readout oversampling is removed as fastMRI does (centre crop of every coil image to
the reconstruction matrix), then each coil image is centre cropped/padded to ``size x size``
(fully sampled data: image-space crops are exact); an axis whose crop changes nothing is not
transformed (:func:`crop_coil_kspace`). ``virtual_coils`` compresses the coils at load time
(SVD, :func:`mri_n2n.coils.compress_coils`) before the maps are estimated. Each file is divided by the maximum
magnitude of its coil-combined images. All files of a dataset must have the same number of
coils (refused in one line otherwise), so that slices batch together.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
import torch
from torch.utils.data import Dataset

from ..coils import compress_coils, estimate_maps
from ..io import VolumeError
from ..io.kspace import as_complex, open_h5
from ..io.noncartesian import NonCartesianKSpace
from ..io.raw import read_raw
from ..physics import CartesianAcquisition
from ..seeding import stable_ident
from ._acquire import image_of
from .maps_cache import MapsCache
from .slices import center_pad_crop, file_slice_rows, volume_scale

__all__ = ["MultiCoilSliceDataset", "is_multicoil", "crop_coil_kspace", "CALIBRATION"]

#: Side of the centred calibration block the training maps are estimated from.
CALIBRATION = 24


def is_multicoil(path: str | os.PathLike) -> bool:
    """Whether a k-space file holds multi-coil data: a 4-D fastMRI ``kspace`` or an ISMRMRD file."""
    with open_h5(path) as f:
        if "kspace" in f:
            d = f["kspace"]
            pairs = d.dtype.kind == "f" and d.shape and d.shape[-1] == 2
            return len(d.shape) - bool(pairs) == 4
        group = f.get("dataset")
        return hasattr(group, "keys") and "data" in group  # an ISMRMRD group, not a dataset


def _coil_images(k: np.ndarray, rows: int, size: int) -> np.ndarray:
    """``(C, ky, kx)`` k-space -> coil images cropped to ``rows`` then to ``size x size`` (the
    readout transformed and cropped first, so the second FFT runs on the cropped rows only)."""
    r, w = k.shape[-2:]
    img = _centred_fft(np.ascontiguousarray(k, np.complex64), -2, inverse=True)
    img = _centred_fft(center_pad_crop(img, (min(rows, r), w)), -1, inverse=True)
    return center_pad_crop(img, size).astype(np.complex64)


def _centred_fft(x: np.ndarray, axis: int, *, inverse: bool) -> np.ndarray:
    """The centred orthonormal 1-D (inverse) FFT along ``axis`` (one axis of
    :func:`~mri_n2n.fft.fft2c`), with :mod:`scipy.fft` (single precision stays single; about
    2.5 times faster than torch's FFT along a non-last axis on one CPU thread)."""
    x = scipy.fft.ifftshift(x, axes=axis)  # a copy: overwriting it is safe
    x = (scipy.fft.ifft if inverse else scipy.fft.fft)(x, axis=axis, norm="ortho", overwrite_x=True)
    return scipy.fft.fftshift(x, axes=axis)


def crop_coil_kspace(k: np.ndarray, rows: int, size: int) -> np.ndarray:
    """``(C, ky, kx)`` k-space -> the k-space of the coil images cropped to ``rows`` (readout
    oversampling) then centre cropped/padded to ``size x size``: ``fft2c`` of
    :func:`_coil_images`, but each axis is transformed only when its crop changes it (the 2-D
    FFT is separable), so fastMRI's 640 x 320 -> 320 x 320 costs two 1-D FFTs along the
    readout instead of two 2-D ones. complex64."""
    x = np.ascontiguousarray(k, np.complex64)
    r, w = x.shape[-2:]
    if not r == min(rows, r) == size:  # the readout (rows): crop the oversampling, then to size
        img = _centred_fft(x, -2, inverse=True)
        img = center_pad_crop(center_pad_crop(img, (min(rows, r), w)), (size, w))
        x = _centred_fft(img, -2, inverse=False)
    if w != size:  # the phase encoding (columns)
        x = _centred_fft(center_pad_crop(_centred_fft(x, -1, inverse=True), (size, size)), -1, inverse=False)
    return x.astype(np.complex64, copy=False)


@functools.lru_cache(maxsize=2)
def _read(path: str, mtime_ns: int) -> Any:
    mc = read_raw(path)
    if isinstance(mc, NonCartesianKSpace):
        raise VolumeError(
            f"{path}: non-Cartesian k-space ({mc.trajectory_type} trajectory); multi-coil training and "
            "evaluation read Cartesian files"
        )
    return mc


@functools.lru_cache(maxsize=256)
def _file_info(
    path: str, mtime_ns: int, size: int, normalize: str
) -> tuple[float, tuple[int, ...], int, int]:
    """(divisor, slices with signal, coils, readout rows of the reconstruction matrix)."""
    mc = _read(path, mtime_ns)
    if mc.undersampled:
        raise VolumeError(
            f"{path}: undersampled multi-coil k-space; multi-coil training needs fully sampled files "
            "(each slice is then acquired once for --target ssdu|noisier2noise)"
        )
    s, c, h, _ = mc.kspace.shape
    rows = int(mc.recon_shape[0]) if mc.recon_shape else h
    mags = []
    for i in range(s):
        imgs = _coil_images(mc.kspace[i], rows, size)
        mags.append(np.sqrt((np.abs(imgs) ** 2).sum(0)))  # RSS: the combined magnitude's scale
    mag = np.stack(mags)
    nonblack = tuple(int(i) for i in np.nonzero(mag.reshape(s, -1).max(1) > 0)[0])
    return volume_scale(mag, normalize), nonblack, c, rows


class MultiCoilSliceDataset(Dataset):
    """Slices of fully sampled multi-coil k-space files (module docstring).

    Items: ``(acquisition, ident)``: the slice's fully sampled Cartesian acquisition (full mask,
    maps and coil k-space, complex64 ``(1, C, size, size)`` each; module docstring).

    Args:
        files: fastMRI multi-coil ``.h5`` or ISMRMRD files.
        keys: one stable key per file; default the file names.
        size: image side.
        slices: ``(start, stop)`` slice range, ``None`` = all slices with signal.
        normalize: per-file normalisation of the combined magnitude.
        keep: optional ``{key: slice indices}``.
        maps_method: ``"walsh"`` (default) or ``"espirit"`` (:func:`mri_n2n.coils.estimate_maps`).
        maps_cache: folder of the on-disk maps cache (:mod:`mri_n2n.data.maps_cache`: each
            slice's maps are estimated once, then read back by every process and run); ``None``
            (default): kept in each process's memory only.
        virtual_coils: compress each slice's coils to this many virtual coils at load time
            (:func:`mri_n2n.coils.compress_coils`, SVD; the maps are estimated from the
            compressed data); the cost of the maps and of multi-coil data consistency scale with
            the coils. ``None`` or at least the files' coil count: no compression.
    """

    #: items are coil k-space and maps (the corruption combines them)
    multicoil = True

    def __init__(
        self,
        files: Sequence[str | os.PathLike],
        *,
        keys: Sequence[str] | None = None,
        size: int = 256,
        slices: tuple[int, int] | None = None,
        normalize: str = "max",
        keep: dict[str, Sequence[int]] | None = None,
        maps_method: str = "walsh",
        maps_cache: str | os.PathLike | None = None,
        virtual_coils: int | None = None,
    ) -> None:
        self.files = [str(f) for f in files]
        self.keys = list(keys) if keys is not None else [Path(f).name for f in self.files]
        self.size = int(size)
        self.maps_method = maps_method
        self._info = [_file_info(f, Path(f).stat().st_mtime_ns, self.size, normalize) for f in self.files]
        coils = sorted({info[2] for info in self._info})
        if len(coils) > 1:
            raise VolumeError(
                f"{self.files[0]}: the files have {', '.join(map(str, coils))} coils; a dataset needs one "
                "coil count (split the folder)"
            )
        self.coils = coils[0] if coils else 0
        if virtual_coils is not None and virtual_coils < 1:
            raise ValueError(f"virtual_coils must be at least 1, got {virtual_coils}")
        self.virtual_coils = virtual_coils if virtual_coils and virtual_coils < self.coils else None
        self.coils = self.virtual_coils or self.coils
        self.maps_cache = MapsCache(maps_cache) if maps_cache is not None else None
        self._rows = file_slice_rows([info[1] for info in self._info], self.keys, slices, keep)
        self._idents = [stable_ident("kspace", self.keys[fi], k) for fi, k in self._rows]
        self._maps: dict[int, np.ndarray] = {}
        self._handles: dict[str, Any] = {}
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def coil_kspace(self, i: int) -> np.ndarray:
        """Item ``i``'s normalised coil k-space, complex64 ``(C, size, size)``."""
        fi, k = self._rows[i]
        path = self.files[fi]
        scale, _, _, rows = self._info[fi]
        ksp = crop_coil_kspace(self._raw_slice(path, k), rows, self.size) / np.float32(scale)
        if self.virtual_coils is not None:
            ksp = compress_coils(ksp, self.virtual_coils)
        return ksp.astype(np.complex64, copy=False)

    def _raw_slice(self, path: str, k: int) -> np.ndarray:
        """Slice ``k`` of a file as ``(C, ky, kx)``: read alone from a fastMRI file's ``kspace``
        (handles kept per process, as batches mix files), else from the whole file as
        :func:`~mri_n2n.io.raw.read_raw` reads it (ISMRMRD, twix: a small per-process cache)."""
        if self._pid != os.getpid():
            self._handles, self._pid = {}, os.getpid()
        if path not in self._handles:
            f = open_h5(path)
            self._handles[path] = f["kspace"] if "kspace" in f else None
        d = self._handles[path]
        if d is None:
            return _read(path, Path(path).stat().st_mtime_ns).kspace[k]
        return as_complex(np.asarray(d[k]), path)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"], state["_pid"] = {}, None
        return state

    def maps(self, i: int, kspace: np.ndarray | None = None) -> np.ndarray:
        """Item ``i``'s sensitivity maps, complex64 ``(C, size, size)``: from the disk cache
        when the dataset has one (estimated and stored on a miss), else estimated once per
        process and kept in memory. ``kspace``: the item's :meth:`coil_kspace`, if at hand."""
        if self.maps_cache is None:
            if i not in self._maps:
                self._maps[i] = self._estimate_maps(i, kspace)
            return self._maps[i]
        fi, k = self._rows[i]
        return self.maps_cache.get(
            self.files[fi], k, self.maps_settings(fi), (self.coils, self.size, self.size),
            lambda: self._estimate_maps(i, kspace),
        )

    def maps_settings(self, fi: int) -> dict[str, Any]:
        """What file ``fi``'s maps depend on besides the file (the disk cache's key)."""
        scale, _, _, rows = self._info[fi]
        return {"method": self.maps_method, "calib": min(CALIBRATION, self.size), "size": self.size,
                "rows": rows, "scale": float(scale).hex(), "virtual_coils": self.virtual_coils}

    def _estimate_maps(self, i: int, kspace: np.ndarray | None = None) -> np.ndarray:
        k = self.coil_kspace(i) if kspace is None else kspace
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small eigenproblems: one thread is several times faster
        try:
            m = estimate_maps(k, self.maps_method, calib=min(CALIBRATION, self.size))
        except ValueError as e:
            raise VolumeError(f"{self.files[self._rows[i][0]]}: {e}") from None
        finally:
            torch.set_num_threads(threads)
        return np.asarray(m, np.complex64)

    def __getitem__(self, i: int) -> tuple[CartesianAcquisition, int]:
        k = self.coil_kspace(i)
        s = self.maps(i, k)
        full = torch.ones(self.size, self.size, dtype=torch.bool)
        maps = torch.tensor(np.asarray(s, np.complex64))[None]
        return CartesianAcquisition(full, maps, torch.tensor(k)[None]), self._idents[i]

    def reference(self, i: int) -> np.ndarray:
        """Item ``i``'s reference magnitude in the items' units: the file's own
        (``reconstruction_rss``, cropped like the items), else the root-sum-of-squares of its
        coils (which keeps their noise, background included)."""
        fi, k = self._rows[i]
        path = self.files[fi]
        mc = _read(path, Path(path).stat().st_mtime_ns)
        if mc.reference is not None:
            ref = center_pad_crop(np.asarray(mc.reference[k], np.float32), self.size)
            return (ref / self._info[fi][0]).astype(np.float32)
        img = image_of(self.coil_kspace(i)).numpy()
        return np.sqrt((np.abs(img) ** 2).sum(0)).astype(np.float32)

    def provenance(self, i: int) -> dict[str, Any]:
        """``dataset``, ``source``, ``slice``, ``file``, ``scale`` and ``coils`` of item ``i``."""
        fi, k = self._rows[i]
        return {"dataset": "kspace", "source": self.keys[fi], "slice": k, "axis": 0,
                "file": self.files[fi], "scale": self._info[fi][0], "coils": self.coils}

    def ident(self, i: int) -> int:
        """The stable identity of item ``i``."""
        return self._idents[i]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every item's coil k-space and maps."""
        return (self.coils, self.size, self.size)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(files={len(self.files)}, n={len(self)}, coils={self.coils}, "
                f"size={self.size})")
