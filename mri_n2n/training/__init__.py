"""Training: one loop for the MRI and the photographic experiments.

- :mod:`~mri_n2n.training.experiment` -- datasets, corruption, loss and network from a config.
- :mod:`~mri_n2n.training.trainer` -- :class:`Trainer`, :func:`train`, :func:`resume`.
- :mod:`~mri_n2n.training.distributed` -- DDP plumbing: the process group, sums over processes,
  one clear line on every process when one fails.
- :mod:`~mri_n2n.training.schedule` -- the learning-rate and Adam beta1 schedules (``cosine``,
  and the reference's per-epoch ``paper`` one).
"""

from .experiment import Experiment, acquisition_signature, build_experiment, build_model_for
from .schedule import SCHEDULES, learning_rate, optimizer_schedule
from .trainer import Trainer, TrainingError, resume, train

__all__ = [
    "Experiment",
    "build_experiment",
    "build_model_for",
    "acquisition_signature",
    "Trainer",
    "TrainingError",
    "learning_rate",
    "optimizer_schedule",
    "SCHEDULES",
    "resume",
    "train",
]
