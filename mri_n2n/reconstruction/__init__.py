"""MRI reconstruction with a trained network.

- :mod:`~mri_n2n.reconstruction.engine` -- the one streaming reconstruction loop
  (:func:`~mri_n2n.reconstruction.engine.stream_reconstruction`: zero-filling, network, data
  consistency, output image, for every acquisition kind), :class:`Reconstruction` results and
  with its single-coil inputs below.
- :mod:`~mri_n2n.reconstruction.inputs` -- its single-coil inputs: measured k-space and
  retrospective studies of image volumes and fully sampled k-space.
- :mod:`~mri_n2n.reconstruction.api` -- :class:`Reconstructor`, a checkpoint ready to use.
- :mod:`~mri_n2n.reconstruction.multicoil` -- multi-coil files (:func:`reconstruct_multicoil`,
  :func:`multicoil_affine` for the output's geometry).
- :mod:`~mri_n2n.reconstruction.batch` -- input discovery, output planning and reports for
  ``mri-n2n reconstruct``.
"""

from .api import Reconstructor
from .engine import (
    CPU_MAX_PIXELS,
    Reconstruction,
    ReconstructionError,
    kspace_normalize,
    slice_seed,
    stream_reconstruction,
)
from .inputs import reconstruct_kspace, reconstruct_volume, simulate_kspace
from .multicoil import multicoil_affine, reconstruct_multicoil

__all__ = [
    "Reconstructor",
    "Reconstruction",
    "ReconstructionError",
    "CPU_MAX_PIXELS",
    "kspace_normalize",
    "reconstruct_kspace",
    "reconstruct_volume",
    "simulate_kspace",
    "slice_seed",
    "stream_reconstruction",
    "multicoil_affine",
    "reconstruct_multicoil",
]
