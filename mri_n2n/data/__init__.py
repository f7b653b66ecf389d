"""MRI training data: the slice pipeline and the datasets of every source.

File formats live in :mod:`mri_n2n.io`; this package turns volumes and k-space files into
normalised slices and torch datasets yielding ``(item, ident)``: a clean image tensor, or an
:class:`~mri_n2n.physics.Acquisition` (fully sampled coil data, measured undersampled data);
:func:`collate` makes a loader's batch of either.

- :mod:`~mri_n2n.data.slices` -- :func:`volume_to_slices`: per-volume normalisation, axis and
  slice range, centre pad/crop, black-slice skip.
- :mod:`~mri_n2n.data.base` -- :class:`SliceDataset`, :class:`H5SliceDataset`, :class:`DataDirError`.
- :mod:`~mri_n2n.data.mni152`, :mod:`~mri_n2n.data.ixi`, :mod:`~mri_n2n.data.folders`
  (NIfTI/DICOM folders), :mod:`~mri_n2n.data.kspace` (fully sampled k-space files) -- the sources.
- :mod:`~mri_n2n.data.datasets` -- the dataset registry (:func:`register_dataset`, :data:`DATASET_NAMES`)
  and :func:`build_mri_datasets`.
- :mod:`~mri_n2n.data.synthetic` -- small synthetic files in the real layouts (tests, demos).
- :mod:`~mri_n2n.data.generators` -- training data like real acquisitions: a smooth random
  phase, random coil arrays with correlated noise and readout oversampling, per-item line laws.
- :mod:`~mri_n2n.data.loader` -- :func:`collate` and :func:`to_device`: one batch type.
"""

from . import generators  # noqa: F401  (registers --density mixed)
from .base import DataDirError, H5SliceDataset, SliceDataset
from .datasets import DATASET_NAMES, build_mri_datasets
from .ixi import build_ixi_datasets, find_ixi_subjects, prepare_ixi, split_subjects
from .kspace import KSpaceSliceDataset, kspace_to_image
from .loader import collate, to_device
from .slices import (
    NORMALIZE_CHOICES,
    block_split,
    center_pad_crop,
    check_normalize,
    normalize_volume,
    parse_slice_range,
    volume_scale,
    volume_to_slices,
)

__all__ = [
    "DATASET_NAMES",
    "NORMALIZE_CHOICES",
    "DataDirError",
    "H5SliceDataset",
    "KSpaceSliceDataset",
    "SliceDataset",
    "block_split",
    "build_ixi_datasets",
    "build_mri_datasets",
    "center_pad_crop",
    "collate",
    "check_normalize",
    "find_ixi_subjects",
    "kspace_to_image",
    "normalize_volume",
    "parse_slice_range",
    "prepare_ixi",
    "split_subjects",
    "to_device",
    "volume_scale",
    "volume_to_slices",
]
