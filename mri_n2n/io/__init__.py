"""File input and output, one module per format with its reader and writer side by side.

- :mod:`~mri_n2n.io.atomic` -- files written under a temporary name and renamed into place.
- :mod:`~mri_n2n.io.base` -- :class:`Volume` (float32 array in NIfTI voxel order, RAS+
  affine, metadata) and :class:`VolumeError`.
- :mod:`~mri_n2n.io.geometry` -- the LPS/RAS conversions.
- :mod:`~mri_n2n.io.nifti` -- :func:`load_nifti`, :func:`write_nifti`.
- :mod:`~mri_n2n.io.dicom` -- :func:`load_dicom_series`, :func:`write_dicom_series`.
- :mod:`~mri_n2n.io.volume` -- :func:`load_volume` and :func:`find_volumes` for any of them.
- :mod:`~mri_n2n.io.kspace` -- k-space files (fastMRI HDF5, ``.npy``, ``.npz``).
- :mod:`~mri_n2n.io.raw` -- multi-coil and raw scanner k-space (:func:`read_raw`: fastMRI
  multi-coil, ISMRMRD in :mod:`~mri_n2n.io.mrd`, Siemens twix in :mod:`~mri_n2n.io.twix`) as
  :class:`~mri_n2n.io.multicoil.MultiCoilKSpace`.
- :mod:`~mri_n2n.io.noncartesian` -- ISMRMRD files whose readouts carry trajectories (radial,
  spiral) as :class:`~mri_n2n.io.noncartesian.NonCartesianKSpace`, and their writer.
"""

from .atomic import atomic_path, atomic_torch_save, atomic_write_bytes, atomic_write_json, atomic_write_text
from .base import Volume, VolumeError, is_dicom_file, is_nifti_path
from .dicom import DicomSeriesInfo, load_dicom_series, write_dicom_series
from .geometry import LPS_TO_RAS, RAS_TO_LPS, lps_to_ras, ras_to_lps
from .kspace import KSPACE_SUFFIXES, KSpaceInput, read_kspace_h5, read_kspace_input, read_kspace_reference
from .nifti import load_nifti, write_nifti
from .noncartesian import NonCartesianKSpace, read_ismrmrd_noncartesian, write_ismrmrd_noncartesian
from .raw import MultiCoilKSpace, read_fastmri_multicoil, read_ismrmrd, read_raw, read_twix
from .volume import VolumeSource, find_volumes, load_volume, output_name_safe

__all__ = [
    "atomic_path",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "Volume",
    "VolumeError",
    "VolumeSource",
    "is_dicom_file",
    "is_nifti_path",
    "load_volume",
    "find_volumes",
    "load_nifti",
    "write_nifti",
    "load_dicom_series",
    "write_dicom_series",
    "DicomSeriesInfo",
    "LPS_TO_RAS",
    "RAS_TO_LPS",
    "lps_to_ras",
    "ras_to_lps",
    "KSPACE_SUFFIXES",
    "KSpaceInput",
    "read_kspace_h5",
    "read_kspace_input",
    "read_kspace_reference",
    "output_name_safe",
    "MultiCoilKSpace",
    "read_raw",
    "read_fastmri_multicoil",
    "read_ismrmrd",
    "read_twix",
    "NonCartesianKSpace",
    "read_ismrmrd_noncartesian",
    "write_ismrmrd_noncartesian",
]
