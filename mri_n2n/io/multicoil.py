"""The multi-coil k-space type every raw reader returns (:class:`MultiCoilKSpace`) and the
helpers the readers (:mod:`~mri_n2n.io.raw`, :mod:`~mri_n2n.io.mrd`, :mod:`~mri_n2n.io.twix`)
share: result validation (:func:`validate_multicoil`), masks (:func:`mask3d`), header numbers
(:func:`positive_float`), and the grid readouts are placed on (:class:`ReadoutGrid`,
:func:`fit_matrix`).

Layout: complex64 ``(slices, coils, ky, kx)`` as fastMRI stores it: rows (``ky`` in this
package's names) run along the readout, columns (``kx``) are the phase-encoding lines, DC at
``(ky // 2, kx // 2)`` so :func:`mri_n2n.fft.ifft2c` gives the coil images.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .base import VolumeError, describe
from .kspace import expand_mask

__all__ = [
    "MultiCoilKSpace",
    "RAW_INSTALL",
    "validate_multicoil",
    "h5_errors",
    "mask3d",
    "positive_float",
    "ReadoutGrid",
    "fit_matrix",
]

#: What to install for the optional raw-format readers (twixtools, ismrmrd).
RAW_INSTALL = "install mri-n2n[raw]"


@dataclass
class MultiCoilKSpace:
    """Multi-coil k-space as :func:`read_raw` and the format readers return it.

    Attributes:
        kspace: complex64 ``(slices, coils, ky, kx)``: rows are the readout (oversampled as
            acquired), columns the phase encodes; DC at ``(ky // 2, kx // 2)``.
        mask: bool ``(slices or 1, ky, kx)``: True where k-space was acquired; ``None`` when the
            file does not say (fastMRI training files: fully sampled).
        reference: the file's reference magnitude ``(slices, H, W)`` (fastMRI
            ``reconstruction_rss``), or ``None``.
        recon_shape: the image matrix ``(rows, cols)`` to centre-crop ``ifft2c(kspace)`` to
            (readout oversampling removed); the k-space grid when nothing says otherwise.
        voxel_size: ``(row, col, slice)`` mm of the k-space grid's image, from the header;
            ``None`` when the file does not say.
        encoded_fov: the encoded field of view ``(x, y, z)`` mm as the header gives it, or ``None``.
        max_value: the file's ``max`` attribute (fastMRI's data range), or ``None``.
        source: ``"fastmri"``, ``"fastmri-singlecoil"``, ``"ismrmrd"``, ``"twix"``, ``"npy"``
            or ``"npz"``.
        path: the file.
        meta: what else the format records: ``readout_oversampling``; ISMRMRD/twix:
            ``slice_positions`` ``(slices, 3)`` and directions/quaternions, ``skipped`` counts,
            ``noise`` ``(coils, samples)`` when noise readouts are present; fastMRI: ``attrs``,
            ``ismrmrd_header``.
        calibration: complex64 ``(slices, coils, ky, kx)`` parallel-imaging calibration (ACS)
            readouts when the file stores some separately from the image readouts, else ``None``.
    """

    kspace: np.ndarray
    mask: np.ndarray | None
    reference: np.ndarray | None
    recon_shape: tuple[int, int]
    voxel_size: tuple[float, float, float] | None
    encoded_fov: tuple[float, float, float] | None
    max_value: float | None
    source: str
    path: str
    meta: dict[str, Any] = field(default_factory=dict)
    calibration: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(slices, coils, ky, kx)``."""
        return tuple(self.kspace.shape)  # type: ignore[return-value]

    @property
    def undersampled(self) -> bool:
        """Whether the file's mask drops samples (no mask: fully sampled, as fastMRI's training
        files)."""
        return self.mask is not None and not bool(np.asarray(self.mask).all())

    def sampled(self) -> np.ndarray:
        """Bool ``(slices, ky, kx)``: the mask broadcast, or (no mask) where any coil is non-zero."""
        if self.mask is not None:
            return np.broadcast_to(self.mask, (self.shape[0], *self.shape[2:]))
        return (self.kspace != 0).any(axis=1)


def validate_multicoil(mc: MultiCoilKSpace) -> MultiCoilKSpace:
    """Validate a reader's result (shape, finiteness, mask, reference) before handing it out;
    its k-space becomes contiguous complex64 (in place: ``mc`` itself is returned).

    Raises:
        VolumeError: empty or too small k-space, NaN or infinite values, a mask that samples
            nothing, or a reference whose slices do not match (the message names the file).
    """
    where, k = mc.path, mc.kspace
    if k.ndim != 4 or k.size == 0 or min(k.shape[2:]) < 2:
        raise VolumeError(f"{where}: k-space of shape {tuple(k.shape)} is empty or too small")
    if not np.isfinite(k).all():
        raise VolumeError(f"{where}: k-space contains NaN or infinite values")
    mc.kspace = np.ascontiguousarray(k, dtype=np.complex64)
    if mc.mask is not None and not mc.mask.any():
        raise VolumeError(f"{where}: the mask samples nothing")
    if mc.reference is not None and mc.reference.shape[0] != k.shape[0]:
        raise VolumeError(
            f"{where}: reference of shape {tuple(mc.reference.shape)} does not match the "
            f"{k.shape[0]} k-space slices"
        )
    return mc


@contextlib.contextmanager
def h5_errors(where: str) -> Iterator[None]:
    """Turn whatever a damaged HDF5 file raises (h5py: OSError, RuntimeError, KeyError...) into one
    :class:`VolumeError` line naming the file."""
    try:
        yield
    except VolumeError:
        raise
    except Exception as exc:
        raise VolumeError(f"{where}: damaged HDF5 file ({describe(exc)})") from None


def mask3d(mask: Any, shape: tuple[int, int, int], where: str) -> np.ndarray:
    """A file's mask as contiguous bool ``(slices or 1, ky, kx)`` for k-space ``shape``
    ``(slices, ky, kx)``: a 3-D mask keeps its slices, a 1-D (over ``kx``) or 2-D one becomes one
    shared slice (:func:`~mri_n2n.io.kspace.expand_mask`; ``where`` names the file in errors)."""
    full = expand_mask(mask, shape, where)
    return np.ascontiguousarray(full if np.ndim(mask) == 3 else full[:1])


def positive_float(value: Any) -> float | None:
    """A header value as a finite positive float, or ``None`` (missing, not a number, zero,
    negative or not finite)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


class ReadoutGrid:
    """Readouts accumulated onto a ``(slices, coils, ky, kx)`` grid; repeats are averaged.

    :meth:`add` places one readout ``data`` ``(coils, n)`` of slice ``s`` in column ``col`` from
    row ``start``; :meth:`result` gives the k-space and the bool mask of acquired samples.
    """

    def __init__(self, slices: int, coils: int, rows: int, cols: int) -> None:
        self.k = np.zeros((slices, coils, rows, cols), np.complex64)
        self.n = np.zeros((slices, rows, cols), np.uint16)

    def add(self, s: int, col: int, start: int, data: np.ndarray) -> None:
        """Accumulate the readout ``data`` ``(coils, n)`` at rows ``start:start + n`` of column
        ``col`` of slice ``s``."""
        stop = start + data.shape[-1]
        self.k[s, :, start:stop, col] += data
        self.n[s, start:stop, col] += 1

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(kspace, mask)``: complex64 ``(slices, coils, ky, kx)`` with repeated samples
        averaged, and bool ``(slices, ky, kx)``, True where a readout landed."""
        many = self.n > 1
        if many.any():
            self.k /= np.maximum(self.n, 1)[:, None].astype(np.float32)
        return self.k, self.n > 0


def fit_matrix(size: int, before: int, after: int) -> int:
    """The smallest matrix ``>= size`` whose centre ``n // 2`` has ``before`` samples below it and
    ``after`` samples from it on (centre included)."""
    n = max(int(size), 1)
    while n // 2 < before or n - n // 2 < after:
        n += 1
    return n
