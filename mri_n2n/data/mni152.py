"""The embedded default dataset: the MNI152 T1 template shipped inside nilearn (offline).

nilearn's ``load_mni152_template(resolution=1)`` is the skull-stripped ICBM152 2009a
(asymmetric) T1 template, 197 x 233 x 189 voxels at 1 mm. It needs no download, so a
newcomer gets a real brain MRI experiment with no data at all.

Slices: along ``axis`` (default 2, axial), normalised by the volume maximum, keeping the
slices with brain content (more than 1 % of the in-plane voxels non-zero; 144 axial slices).

Size: for ``size >= 256`` the slices are centre zero-padded (no resampling), as the paper
pads IXI. For ``size < 256`` (e.g. 128 or 64 for fast CPU runs) each slice is first resampled
in-plane by ``size / 256`` with an antialiasing Gaussian prefilter (see
:func:`~mri_n2n.data.slices.resample_inplane`), then centre-padded, so the whole head stays
visible at the same relative scale as in the 256 version; the volume is re-normalised to a
maximum of 1 after resampling.

Split: validation takes a few contiguous blocks of slices spread through the volume
(:func:`~mri_n2n.data.slices.block_split`), and training slices within 5 mm of any
validation slice are dropped: train and validation are disjoint and every training slice is
more than 5 mm (at least 6 slices) away from every validation slice.
"""

from __future__ import annotations

import functools

import numpy as np

from .base import SliceDataset
from .slices import block_split, volume_to_slices

__all__ = ["MNI152_NAME", "load_mni152_volume", "mni152_slices", "build_mni152_datasets"]

#: Source label used in provenance and identities.
MNI152_NAME = "MNI152_2009a_T1_1mm"
#: Minimum fraction of non-zero in-plane voxels for a slice to count as brain content.
MIN_CONTENT = 0.01
#: Validation slices are kept more than this far (mm) from every training slice.
GAP_MM = 5.0


@functools.lru_cache(maxsize=1)
def load_mni152_volume() -> tuple[np.ndarray, np.ndarray]:
    """The template as ``(array float32 (197, 233, 189), affine)``; cached per process.

    Raises:
        ImportError: nilearn is missing (the message says how to install it).
    """
    try:
        from nilearn.datasets import load_mni152_template
    except ImportError as exc:
        raise ImportError(
            'the mni152 dataset needs nilearn: pip install "mri-n2n[demo]" (or pip install nilearn)'
        ) from exc
    img = load_mni152_template(resolution=1)
    arr = np.asarray(img.get_fdata(dtype=np.float32), dtype=np.float32)
    return arr, np.asarray(img.affine, dtype=np.float64)


@functools.lru_cache(maxsize=8)
def mni152_slices(
    size: int = 256, axis: int = 2, normalize: str = "max", slices: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, ...], float]:
    """Content slices of the template; cached per process (do not modify the array).

    Returns:
        ``(stack float32 (N, size, size), slice indices, slice spacing in mm)``.
    """
    arr, affine = load_mni152_volume()
    zoom = min(1.0, size / 256.0)
    stack, idx = volume_to_slices(
        arr, axis=axis, slice_range=slices, size=size, normalize=normalize, zoom=zoom, min_content=MIN_CONTENT
    )
    stack.setflags(write=False)
    spacing = float(np.linalg.norm(affine[:3, axis]))
    return stack, tuple(idx), spacing


def build_mni152_datasets(
    *,
    size: int = 256,
    slices: tuple[int, int] | None = None,
    axis: int = 2,
    normalize: str = "max",
    valid_fraction: float = 0.2,
) -> tuple[SliceDataset, SliceDataset]:
    """Train and validation datasets of MNI152 template slices (see the module docstring)."""
    stack, idx, spacing = mni152_slices(int(size), int(axis), normalize, slices)
    affine = load_mni152_volume()[1].tolist()  # cached: for figures (radiological view)
    if len(idx) == 0:
        raise ValueError(f"no MNI152 slices with content in range {slices} along axis {axis}")
    train_idx, valid_idx = block_split(idx, valid_fraction=valid_fraction, spacing_mm=spacing, gap_mm=GAP_MM)
    pos = {k: n for n, k in enumerate(idx)}

    def make(sel: list[int]) -> SliceDataset:
        rows = [pos[k] for k in sel]
        images = stack[rows] if rows else np.zeros((0,) + stack.shape[1:], np.float32)
        prov = [
            {
                "dataset": "mni152",
                "source": MNI152_NAME,
                "slice": k,
                "axis": axis,
                "offset_mm": k * spacing,
                "affine": affine,
            }
            for k in sel
        ]
        return SliceDataset(images, prov)

    return make(train_idx), make(valid_idx)
