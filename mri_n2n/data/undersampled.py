"""Prospectively undersampled single-coil k-space files as training data (one acquisition per
slice, no fully sampled reference): ``--dataset kspace`` with ``--target ssdu|noisier2noise``.

Each item is the slice's measurement as a Cartesian :class:`~mri_n2n.physics.Acquisition` (a
batch of one): the sampling mask ``(1, size, size)``, the measured k-space ``y``
``(1, 1, size, size)`` (complex64, zero off the mask) and the keep probability ``p`` of every bin
under the file's mask law (the law the file records in :data:`~mri_n2n.masks.MASK_LAW_ATTR`, else
estimated from its masks, :func:`~mri_n2n.data.measured.file_mask_law`); the keep probability
marks it as measured data. :func:`mri_n2n.data.collate` stacks a loader's items; the corruption
splits them at every step.

Geometry, all exact for the measured data:

- readout oversampling is removed as fastMRI does (:func:`~mri_n2n.data.measured.crop_readout`,
  which needs whole-column masks; 2-D masks are used as they are);
- the grid is then centre cropped/padded *in k-space* to ``size x size``: padding adds bins
  that are never measured (``p = 0``), cropping drops the outermost frequencies (a lower
  resolution over the same field of view, as a warning says).

Each file is divided by the maximum magnitude of its compensated zero-filled images
``F^-1(M y / p)`` on that grid (``normalize``: see :func:`~mri_n2n.data.slices.volume_scale`).
Nothing in this mode reads a fully sampled reference.
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
from ..io.kspace import as_complex, expand_mask, open_h5, read_kspace_h5
from ..masks import MASK_LAW_ATTR, Bernoulli2D, IndependentLines, MaskFamily
from ..physics import CartesianAcquisition, SpectralSampling
from ..seeding import stable_ident
from ._acquire import sampled
from .measured import CenteringError, check_centred, crop_readout, file_mask_law, file_recon_shape
from .slices import center_pad_crop, file_slice_rows, volume_scale

__all__ = ["UndersampledKSpaceDataset", "is_undersampled", "measured_slice"]


def _stored_mask(f: Any) -> np.ndarray | None:
    """The file's ``mask`` dataset, else its ``mask`` attribute (some fastMRI test files)."""
    if "mask" in f:
        return np.asarray(f["mask"][...])
    if "mask" in f.attrs:
        return np.asarray(f.attrs["mask"])
    return None


def is_undersampled(path: str | os.PathLike) -> bool:
    """Whether the file's ``mask`` drops samples (a prospectively undersampled acquisition)."""
    with open_h5(path) as f:
        m = _stored_mask(f)
    return m is not None and bool(m.size) and float(m.min()) <= 0


def measured_slice(
    kspace: np.ndarray, mask: np.ndarray, p: np.ndarray, *, rows: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One slice ``(ky, kx)`` on the training grid: readout cropped to ``rows`` (whole-column
    masks), then centre cropped/padded in k-space to ``size x size``. Returns ``(k-space, mask,
    p)`` with unmeasured bins exactly 0."""
    k, m = kspace[None], mask[None]
    if rows < k.shape[1] and bool((m == m[:, :1, :]).all()):
        k, m = crop_readout(k, m, rows)
        p = p[: m.shape[1]]  # a line law is constant along the readout
    k = center_pad_crop(k[0], size)
    m = center_pad_crop(m[0].astype(np.float32), size) > 0.5
    p = center_pad_crop(np.asarray(p, np.float32), size)
    return sampled(k, m), m, np.where(p > 0, p, 0).astype(np.float32)


@functools.lru_cache(maxsize=1024)
def _file_info(
    path: str, mtime_ns: int, nbytes: int, size: int, normalize: str
) -> tuple[float, tuple[int, ...], np.ndarray, np.ndarray, bool, int]:
    """(divisor, slices with signal, keep probability on the file's grid and on the training
    grid, whole-column masks, readout rows) of one undersampled file; cached per process."""
    k, _, attrs = read_kspace_h5(path)
    with open_h5(path) as f:
        mask = _stored_mask(f)
    m = expand_mask(mask if mask is not None else np.abs(k) > 0, k.shape, path)
    try:
        check_centred(k, m, where=path)
        family, _ = file_mask_law(k, m, attrs.get(MASK_LAW_ATTR), where=path)
    except (CenteringError, ValueError) as e:
        raise VolumeError(str(e)) from None
    if family is None:
        raise VolumeError(f"{path}: the mask samples everything; this file is not undersampled")
    with open_h5(path) as f:
        shape = file_recon_shape(f, tuple(k.shape[1:]))
        rows = k.shape[1] if shape is None else int(shape[0])
    p = family.keep_probability().numpy()
    lines = bool((m == m[:, :1, :]).all())
    imgs, p_grid = [], None
    for s in range(k.shape[0]):
        ks, ms, p_grid = measured_slice(k[s], np.asarray(m[s]), p, rows=rows, size=size)
        # the 1/p compensated zero-filled image: A^H (y / p) (Acquisition.zero_filled multiplies by
        # 1/p, which rounds differently from this division: the files' scales stay as they were)
        comp = torch.from_numpy(ks / np.maximum(p_grid, 1e-12))
        imgs.append(np.abs(SpectralSampling(torch.from_numpy(ms)).adjoint(comp).numpy()))
    mag = np.stack(imgs)
    nonblack = tuple(int(i) for i in np.nonzero(mag.reshape(len(mag), -1).max(axis=1) > 0)[0])
    return volume_scale(mag, normalize), nonblack, p, p_grid, lines, rows


def _info(path: Path, size: int, normalize: str):
    st = path.stat()
    return _file_info(str(path), st.st_mtime_ns, st.st_size, size, normalize)


class UndersampledKSpaceDataset(Dataset):
    """Slices of prospectively undersampled single-coil k-space files (module docstring).

    Items: ``(acquisition, ident)``: the slice's measured acquisition (module docstring; k-space
    normalised).

    Args:
        files: the ``.h5`` files (each with a ``mask`` that drops samples).
        keys: one stable key per file (identities); default the file names.
        size: grid side (k-space centre crop/pad).
        slices: ``(start, stop)`` slice range, ``None`` = all slices with signal.
        normalize: per-file normalisation of the compensated zero-filled magnitude.
        keep: optional ``{key: slice indices}`` restricting the slices per file.
    """

    #: Items are measurements, not clean images (the trainer validates on held-out k-space).
    measured = True

    def __init__(
        self,
        files: Sequence[str | os.PathLike],
        *,
        keys: Sequence[str] | None = None,
        size: int = 256,
        slices: tuple[int, int] | None = None,
        normalize: str = "max",
        keep: dict[str, Sequence[int]] | None = None,
    ) -> None:
        self.files = [str(f) for f in files]
        self.keys = list(keys) if keys is not None else [Path(f).name for f in self.files]
        self.size = int(size)
        self._info = [_info(Path(f), self.size, normalize) for f in self.files]
        self._rows = file_slice_rows([info[1] for info in self._info], self.keys, slices, keep)
        self._idents = [stable_ident("kspace", self.keys[fi], k) for fi, k in self._rows]

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> tuple[CartesianAcquisition, int]:
        fi, k = self._rows[i]
        scale, _, p_file, _, _, rows = self._info[fi]
        path = self.files[fi]
        with open_h5(path) as f:
            d = f["kspace"]
            pairs = d.dtype.kind == "f" and d.shape[-1] == 2
            raw = np.asarray(d[...] if d.ndim - pairs == 2 else d[k])
            ks = as_complex(raw, path)
            n = 1 if d.ndim - pairs == 2 else int(d.shape[0])
            m = expand_mask(_stored_mask(f), (n, *ks.shape[-2:]), path)[min(k, n - 1)]
        ky, mk, p = measured_slice(ks, np.asarray(m), p_file, rows=rows, size=self.size)
        ky = np.asarray(ky / scale).astype(np.complex64)
        mask = torch.from_numpy(np.ascontiguousarray(mk, bool))[None]
        keep_prob = torch.from_numpy(np.ascontiguousarray(p, np.float32))[None]
        acq = CartesianAcquisition(mask, None, None, keep_prob=keep_prob)
        return acq.with_data(torch.from_numpy(ky)[None, None]), self._idents[i]

    def family(self) -> MaskFamily:
        """One law for the whole dataset on the training grid (its mean keep probability): whole
        columns when every file's masks are, else 2-D. The split law is built from it; each
        item carries its own file's ``p`` for the compensation and the loss weights."""
        p = torch.from_numpy(np.mean([info[3] for info in self._info], axis=0)).float()
        if all(info[4] for info in self._info):
            return IndependentLines(self.size, p[0].double().clamp(0, 1), name="lines")
        return Bernoulli2D(p.clamp(0, 1), name="bernoulli")

    def provenance(self, i: int) -> dict[str, Any]:
        """``dataset``, ``source`` (file key), ``slice``, ``file`` and ``scale`` of item ``i``."""
        fi, k = self._rows[i]
        return {"dataset": "kspace", "source": self.keys[fi], "slice": k, "axis": 0,
                "file": self.files[fi], "scale": self._info[fi][0]}

    def ident(self, i: int) -> int:
        """The stable identity of item ``i``."""
        return self._idents[i]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(1, H, W)`` of every item's k-space."""
        return (1, self.size, self.size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(files={len(self.files)}, n={len(self)}, shape={self.image_shape})"


def warn_if_resampled(shapes: Sequence[tuple[int, int]], size: int) -> None:
    """One warning when ``size`` crops measured k-space (a lower resolution)."""
    big = [s for s in shapes if s[0] > size or s[1] > size]
    if big:
        warnings.warn(
            f"--dataset kspace: --size {size} crops the measured k-space of {len(big)} file(s) "
            f"(e.g. {big[0][0]}x{big[0][1]}): training sees a lower resolution", stacklevel=2
        )
