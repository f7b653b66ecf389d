"""MRI data: volume readers, the slice pipeline, and datasets.

- :mod:`~mri_n2n.data.volumes` -- :func:`load_volume` (NIfTI, DICOM series, enhanced
  multi-frame DICOM) -> :class:`Volume` (float32 array in NIfTI voxel order, RAS+ affine,
  metadata); :func:`find_volumes` walks a folder.
- :mod:`~mri_n2n.data.slices` -- :func:`volume_to_slices`: per-volume normalisation, axis
  and slice range, centre pad/crop, black-slice skip; :func:`stable_ident`.
- :mod:`~mri_n2n.data.datasets` -- :func:`build_mri_datasets` (``mni152``, ``ixi``,
  ``nifti``, ``dicom``, ``kspace``) and the torch datasets.
- :mod:`~mri_n2n.data.ixi` -- IXI preparation (:func:`prepare_ixi`) and reading.
- :mod:`~mri_n2n.data.mni152` -- the offline default (nilearn's MNI152 template).
- :mod:`~mri_n2n.data.kspace` -- fastMRI-style single-coil HDF5 (:func:`read_kspace_h5`).
- :mod:`~mri_n2n.data.synthetic` -- small synthetic files in those layouts (tests, demos).
"""

from .datasets import DATASET_NAMES, DataDirError, H5SliceDataset, SliceDataset, build_mri_datasets
from .ixi import build_ixi_datasets, find_ixi_subjects, prepare_ixi, split_subjects
from .kspace import KSpaceSliceDataset, kspace_to_image, read_kspace_h5, read_kspace_reference
from .slices import (
    NORMALIZE_CHOICES,
    block_split,
    center_pad_crop,
    check_normalize,
    normalize_volume,
    parse_slice_range,
    stable_ident,
    volume_scale,
    volume_to_slices,
)
from .volumes import (
    Volume,
    VolumeError,
    VolumeSource,
    find_volumes,
    load_dicom_series,
    load_nifti,
    load_volume,
)

__all__ = [
    "DATASET_NAMES",
    "NORMALIZE_CHOICES",
    "DataDirError",
    "H5SliceDataset",
    "KSpaceSliceDataset",
    "SliceDataset",
    "Volume",
    "VolumeError",
    "VolumeSource",
    "block_split",
    "build_ixi_datasets",
    "build_mri_datasets",
    "center_pad_crop",
    "check_normalize",
    "find_ixi_subjects",
    "find_volumes",
    "kspace_to_image",
    "load_dicom_series",
    "load_nifti",
    "load_volume",
    "normalize_volume",
    "parse_slice_range",
    "prepare_ixi",
    "read_kspace_h5",
    "read_kspace_reference",
    "split_subjects",
    "stable_ident",
    "volume_scale",
    "volume_to_slices",
]
