"""The slice pipeline: 3-D volume -> normalised, centred 2-D slices with provenance.

Following the paper's MRI experiment, a volume is

1. divided by its own maximum (``normalize="max"``, the paper) or by a robust percentile
   of its non-zero voxels (``"percentile"`` = 99.5th, or ``"pNN"`` e.g. ``"p99"``; values
   above the percentile are kept, so they may exceed 1), or left as is (``"none"``);
2. cut into 2-D slices along ``axis`` within ``slice_range`` (half-open, Python style;
   clipped to the volume). A slice along axis ``a`` keeps the two other array axes in
   increasing order, e.g. ``axis=2`` gives ``array[:, :, k]`` with rows = ``i``, columns = ``j``;
3. optionally resampled in-plane by ``zoom`` (antialiased, used for small MNI152 images);
4. centre-padded with zeros and/or centre-cropped to ``size x size``;
5. all-black slices (no non-zero pixel, or fewer than ``min_content`` of them) are skipped,
   and with ``min_peak`` also the slices whose largest normalised value is at most
   ``min_peak`` (the IXI reference keeps a slice when its maximum exceeds 1/255 of the
   volume's maximum, see :data:`mri_n2n.data.ixi.PAPER_MIN_PEAK`).

Centring rule (shared by padding and cropping, so that one undoes the other): along an
axis of length ``n`` and target ``m``, padding puts ``(m - n) // 2`` zeros before the data
and cropping starts at ``(n - m) // 2``.

Each slice keeps its provenance (its slice index; datasets add the file/subject), and
:func:`stable_ident` turns provenance into a process-independent integer seed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "NORMALIZE_CHOICES",
    "check_normalize",
    "volume_scale",
    "normalize_volume",
    "center_pad_crop",
    "warn_if_cropped",
    "resample_inplane",
    "volume_to_slices",
    "block_split",
    "parse_slice_range",
]

#: Named normalisation modes (``"pNN"``, e.g. ``"p99.9"``, is accepted too).
NORMALIZE_CHOICES = ("max", "percentile", "none")



def _percentile_of(normalize: str) -> float | None:
    if normalize == "percentile":
        return 99.5
    if len(normalize) > 1 and normalize[0] == "p":
        try:
            q = float(normalize[1:])
        except ValueError:
            return None
        return q if 0.0 < q <= 100.0 else None
    return None


def check_normalize(normalize: str) -> str:
    """Return ``normalize`` if it is a valid mode (see :func:`volume_scale`), else raise ValueError."""
    if normalize in ("max", "none") or _percentile_of(str(normalize)) is not None:
        return normalize
    raise ValueError(
        f"unknown normalize={normalize!r}; choose from {', '.join(NORMALIZE_CHOICES)} or 'pNN' (e.g. p99.5)"
    )


def volume_scale(array: np.ndarray, normalize: str = "max") -> float:
    """The divisor that normalises a volume.

    Args:
        array: the volume (any shape).
        normalize: ``"max"`` (maximum of ``|array|``), ``"percentile"`` (99.5th percentile of
            the non-zero ``|array|`` values), ``"pNN"`` (NN-th percentile, e.g. ``"p99"``) or
            ``"none"`` (1.0).

    Returns:
        A positive float (1.0 for an all-zero volume).

    Raises:
        ValueError: unknown mode.
    """
    if normalize == "none":
        return 1.0
    mag = np.abs(array)
    if normalize == "max":
        s = float(mag.max()) if mag.size else 0.0
    else:
        q = _percentile_of(check_normalize(normalize))
        assert q is not None
        nz = mag[mag > 0]
        s = float(np.percentile(nz, q)) if nz.size else 0.0
    return s if s > 0 and math.isfinite(s) else 1.0


def normalize_volume(array: np.ndarray, normalize: str = "max") -> np.ndarray:
    """``array / volume_scale(array, normalize)`` as float32 (complex stays complex64)."""
    dtype = np.complex64 if np.iscomplexobj(array) else np.float32
    return (array / volume_scale(array, normalize)).astype(dtype, copy=False)


def center_pad_crop(image: np.ndarray, shape: int | Sequence[int]) -> np.ndarray:
    """Centre-pad with zeros and/or centre-crop the last two dims to ``shape``.

    Args:
        image: ``(..., H, W)``.
        shape: ``size`` or ``(height, width)``.

    Returns:
        ``(..., height, width)``, a new array (same dtype).
    """
    th, tw = (shape, shape) if isinstance(shape, (int, np.integer)) else (int(shape[0]), int(shape[1]))
    h, w = image.shape[-2:]
    # crop
    y0 = max(0, (h - th) // 2)
    x0 = max(0, (w - tw) // 2)
    image = image[..., y0 : y0 + min(h, th), x0 : x0 + min(w, tw)]
    h, w = image.shape[-2:]
    out = np.zeros(image.shape[:-2] + (th, tw), dtype=image.dtype)
    py, px = (th - h) // 2, (tw - w) // 2
    out[..., py : py + h, px : px + w] = image
    return out


def warn_if_cropped(shapes: Sequence[tuple[int, int]], size: int | None, what: str) -> bool:
    """Warn once (``UserWarning``) when any in-plane shape exceeds ``size``: the centre crop would
    drop the edges of the field of view (the CPU preset's 128 would keep the central 128 x 128
    of a 256 x 256 brain). Returns whether it warned."""
    if size is None or not shapes:
        return False
    h = max(int(s[0]) for s in shapes)
    w = max(int(s[1]) for s in shapes)
    if h <= size and w <= size:
        return False
    warnings.warn(
        f"{what}: slices of up to {h}x{w} are centre-cropped to {size}x{size}, dropping the edges of "
        f"the field of view (pass --size {max(h, w)} to keep it whole)",
        stacklevel=3,
    )
    return True


def resample_inplane(stack: np.ndarray, factor: float) -> np.ndarray:
    """Resample ``(N, H, W)`` slices by ``factor`` in both in-plane directions.

    Downsampling (``factor < 1``) first applies a Gaussian prefilter with
    ``sigma = (1/factor - 1) / 2`` pixels (the antialiasing rule of scikit-image's
    ``rescale``), then linear interpolation on pixel-area grids (``grid_mode=True``), so
    the field of view is preserved and non-negative data stay non-negative. The output
    size is ``round(H * factor) x round(W * factor)``.
    """
    if factor == 1.0:
        return stack.astype(np.float32, copy=True)
    x = stack.astype(np.float32, copy=False)
    if factor < 1.0:
        sigma = (1.0 / factor - 1.0) / 2.0
        x = ndimage.gaussian_filter(x, sigma=(0, sigma, sigma), mode="constant")
    out_hw = (max(1, round(x.shape[1] * factor)), max(1, round(x.shape[2] * factor)))
    zooms = (1.0, out_hw[0] / x.shape[1], out_hw[1] / x.shape[2])
    y = ndimage.zoom(x, zooms, order=1, mode="grid-constant", grid_mode=True, cval=0.0)
    return np.maximum(y, 0.0, out=y) if (stack >= 0).all() else y


def volume_to_slices(
    array: np.ndarray,
    *,
    axis: int = 2,
    slice_range: tuple[int, int] | None = None,
    size: int | None = 256,
    normalize: str = "max",
    zoom: float = 1.0,
    min_content: float = 0.0,
    min_peak: float | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Turn a volume into normalised, centred 2-D slices (see the module docstring).

    Args:
        array: ``(I, J, K)`` volume (real, or complex: complex stays complex).
        axis: slicing axis (0, 1 or 2; default 2, i.e. ``array[:, :, k]``).
        slice_range: ``(start, stop)``, half-open, clipped to the volume; ``None`` = all.
        size: output side (centre pad/crop); ``None`` keeps the in-plane shape.
        normalize: see :func:`volume_scale`; the scale is computed over the whole volume
            (after ``zoom``), not just the selected slices.
        zoom: in-plane resampling factor applied before padding (1 = none).
        min_content: a slice is kept only if its fraction of non-zero pixels (after
            pad/crop) exceeds this (0 = skip only all-black slices).
        min_peak: if given, a slice is also kept only if its largest value after
            normalisation (magnitude for complex volumes) exceeds this, in the units of
            ``normalize`` (with ``"max"``: a fraction of the volume's maximum).

    Returns:
        ``(slices, indices)``: float32 (or complex64) ``(N, size, size)`` and the ``N`` slice
        indices along ``axis`` they came from.

    Raises:
        ValueError: bad axis, range or normalisation mode.
    """
    if array.ndim != 3:
        raise ValueError(f"expected a 3-D volume, got shape {array.shape}")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    n = array.shape[axis]
    start, stop = (0, n) if slice_range is None else (int(slice_range[0]), int(slice_range[1]))
    if start < 0 or stop <= start:
        raise ValueError(f"bad slice range {start}:{stop} (need 0 <= start < stop)")
    start, stop = min(start, n), min(stop, n)
    stack = np.moveaxis(array, axis, 0)
    if zoom != 1.0:
        if np.iscomplexobj(stack):
            stack = resample_inplane(stack.real, zoom) + 1j * resample_inplane(stack.imag, zoom)
        else:
            stack = resample_inplane(stack, zoom)
    scale = volume_scale(stack, normalize)
    sel = stack[start:stop]
    if size is not None:
        sel = center_pad_crop(sel, size)
    dtype = np.complex64 if np.iscomplexobj(sel) else np.float32
    sel = (sel / scale).astype(dtype, copy=False)
    if sel.shape[0] == 0:
        return sel, []
    flat = sel.reshape(sel.shape[0], -1)
    keep_mask = np.count_nonzero(flat, axis=1) / float(sel[0].size) > min_content
    if min_peak is not None:
        keep_mask &= (np.abs(flat) if np.iscomplexobj(flat) else flat).max(axis=1) > min_peak
    keep = np.nonzero(keep_mask)[0]
    return np.ascontiguousarray(sel[keep]), [start + int(k) for k in keep]


def parse_slice_range(text: str) -> tuple[int, int]:
    """Parse ``"25:125"`` into ``(25, 125)`` (half-open); raises ValueError when malformed."""
    try:
        a, b = text.split(":")
        start, stop = int(a), int(b)
    except ValueError:
        raise ValueError(f"bad slice range {text!r}; expected START:STOP, e.g. 25:125") from None
    if start < 0 or stop <= start:
        raise ValueError(f"bad slice range {text!r}; need 0 <= START < STOP")
    return start, stop


def block_split(
    indices: Sequence[int],
    *,
    valid_fraction: float = 0.2,
    spacing_mm: float = 1.0,
    gap_mm: float = 5.0,
    n_blocks: int | None = None,
) -> tuple[list[int], list[int]]:
    """Split the slices of one volume into train and validation with a safety gap.

    Validation takes ``n_blocks`` contiguous blocks (default: one per ~50 slices, at most 3,
    spread evenly so they sample different anatomy); training slices closer than or at
    ``gap_mm`` to any validation slice are dropped, so every training slice is more than
    ``gap_mm`` away from every validation slice. The block length is chosen so that the
    validation share of the *kept* slices is about ``valid_fraction``.

    Args:
        indices: slice indices (any order; their index values define distances).
        valid_fraction: target validation share (``0`` gives no validation slices).
        spacing_mm: slice spacing (distance between consecutive indices).
        gap_mm: minimum excluded distance.
        n_blocks: number of validation blocks (default as above).

    Returns:
        ``(train, valid)``: sorted index lists, disjoint.

    Raises:
        ValueError: fraction out of ``[0, 1)`` or too few slices for the gap.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    idx = sorted(int(i) for i in indices)
    if valid_fraction == 0.0 or not idx:
        return idx, []
    n = len(idx)
    gap = int(math.floor(gap_mm / spacing_mm + 1e-9)) if spacing_mm > 0 else 0
    nb = n_blocks or max(1, min(3, round(n / 50)))
    while True:
        usable = n - 2 * gap * nb
        if usable >= 2 or nb == 1:
            break
        nb -= 1
    if usable < 2:
        raise ValueError(f"{n} slices are too few for a validation split with a {gap_mm} mm gap")
    length = max(1, round(valid_fraction * usable / nb))
    valid_pos: set[int] = set()
    for b in range(nb):
        c = int((b + 0.5) * n / nb)
        lo = min(max(0, c - length // 2), n - length)
        valid_pos.update(range(lo, lo + length))
    valid = [idx[p] for p in sorted(valid_pos)]
    varr = np.asarray(valid, dtype=np.float64)
    train = [
        i
        for p, i in enumerate(idx)
        if p not in valid_pos and np.min(np.abs(varr - i)) * spacing_mm > gap_mm + 1e-9
    ]
    if not train:
        raise ValueError(f"{n} slices are too few for a validation split with a {gap_mm} mm gap")
    return train, valid


def file_slice_rows(
    nonblack: Sequence[Sequence[int]],
    keys: Sequence[str],
    slices: tuple[int, int] | None,
    keep: dict[str, Sequence[int]] | None,
) -> list[tuple[int, int]]:
    """``(file index, slice index)`` rows of a multi-file dataset: each file's slices with signal
    (``nonblack[i]``), within ``slices`` and, with ``keep``, among ``keep[keys[i]]``."""
    rows: list[tuple[int, int]] = []
    for fi, ks in enumerate(nonblack):
        idx = [k for k in ks if slices is None or slices[0] <= k < slices[1]]
        if keep is not None:
            wanted = set(keep.get(keys[fi], ()))
            idx = [k for k in idx if k in wanted]
        rows += [(fi, k) for k in idx]
    return rows
