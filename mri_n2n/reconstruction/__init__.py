"""MRI reconstruction with a trained network.

- :mod:`~mri_n2n.reconstruction.engine` -- the streaming engine (zero-filling, normalisation,
  network, data consistency) and retrospective studies; :class:`Reconstruction` results.
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
    reconstruct_kspace,
    reconstruct_volume,
    simulate_kspace,
    slice_seed,
)
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
    "multicoil_affine",
    "reconstruct_multicoil",
]
