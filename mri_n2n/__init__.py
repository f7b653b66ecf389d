"""mri_n2n: Noise2Noise MRI reconstruction and image restoration from corrupted data alone.

After Lehtinen et al., "Noise2Noise: Learning Image Restoration without Clean Data" (ICML
2018). The names a notebook reaches for are importable from here; the modules behind them are:

- physics: :mod:`~mri_n2n.fft` (centred orthonormal FFTs), :mod:`~mri_n2n.sampling`
  (densities and masks), :mod:`~mri_n2n.physics` (:class:`SpectralSampling`, data consistency);
- I/O and data: :mod:`~mri_n2n.io` (NIfTI, DICOM, k-space files, atomic writes),
  :mod:`~mri_n2n.data` (MRI slice datasets), :mod:`~mri_n2n.images` (photographs);
- learning: :mod:`~mri_n2n.corruptions`, :mod:`~mri_n2n.losses`, :mod:`~mri_n2n.models`,
  :mod:`~mri_n2n.metrics`, :mod:`~mri_n2n.config`;
- workflows: :mod:`~mri_n2n.training`, :mod:`~mri_n2n.reconstruction`,
  :mod:`~mri_n2n.evaluation`, :mod:`~mri_n2n.bench`, :mod:`~mri_n2n.cli` (``mri-n2n``).

Example::

    from mri_n2n import Reconstructor, load_volume
    rec = Reconstructor.from_checkpoint("runs/mni152/checkpoints/best.pt")
    study = rec.simulate(load_volume("t1.nii.gz").array, fraction=0.1)
    print(study.metrics["psnr_zero_filled"], "->", study.metrics["psnr"])
"""

from ._version import __version__
from .checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from .config import Config, ConfigError, load_yaml, resolve_config
from .corruptions import (
    NOISES,
    Corruption,
    MRIUndersampling,
    Pair,
    default_loss,
    make_corruption,
    seeded_generator,
)
from .data import build_mri_datasets
from .data.datasets import register_dataset
from .evaluation import evaluate_mri
from .fft import fft2c, ifft2c
from .images import build_image_datasets
from .io import (
    Volume,
    VolumeError,
    find_volumes,
    load_dicom_series,
    load_nifti,
    load_volume,
    read_kspace_input,
    write_dicom_series,
    write_nifti,
)
from .losses import LOSSES, get_loss, register_loss
from .masks import DENSITIES, MaskFamily, family_names, line_mask, make_family
from .metrics import nmse, psnr, ssim, volume_metrics
from .models import MODEL_NAMES, apply_model, build_model, register_model
from .physics import Acquisition, SpectralSampling
from .reconstruction import Reconstruction, ReconstructionError, Reconstructor
from .sampling import bernoulli_mask, make_density
from .training import Trainer, resume, train

#: The public API: every name here is documented where it is defined (``help(mri_n2n.NAME)``).
__all__ = [
    "__version__",
    # physics: FFTs, sampling densities and masks (a MaskFamily subclass registers itself), the
    # acquisition operator
    "fft2c",
    "ifft2c",
    "DENSITIES",
    "make_density",
    "bernoulli_mask",
    "line_mask",
    "MaskFamily",
    "make_family",
    "family_names",
    "Acquisition",
    "SpectralSampling",
    # corruptions, losses, metrics, models
    "Corruption",
    "Pair",
    "MRIUndersampling",
    "NOISES",
    "make_corruption",
    "default_loss",
    "seeded_generator",
    "LOSSES",
    "get_loss",
    "register_loss",
    "psnr",
    "ssim",
    "nmse",
    "volume_metrics",
    "MODEL_NAMES",
    "build_model",
    "register_model",
    "apply_model",
    # configuration, training, checkpoints
    "Config",
    "ConfigError",
    "load_yaml",
    "resolve_config",
    "Trainer",
    "train",
    "resume",
    "save_checkpoint",
    "load_checkpoint",
    "model_from_checkpoint",
    "CheckpointError",
    # data and files
    "build_mri_datasets",
    "register_dataset",
    "build_image_datasets",
    "Volume",
    "VolumeError",
    "load_volume",
    "find_volumes",
    "load_nifti",
    "load_dicom_series",
    "write_nifti",
    "write_dicom_series",
    "read_kspace_input",
    # reconstruction and evaluation
    "Reconstructor",
    "Reconstruction",
    "ReconstructionError",
    "evaluate_mri",
]
