"""Training: one loop for the MRI and the photographic experiments.

- :mod:`~mri_n2n.training.experiment` -- datasets, corruption, loss and network from a config.
- :mod:`~mri_n2n.training.trainer` -- :class:`Trainer`, :func:`train`, :func:`resume` and the
  paper's learning-rate schedule.
"""

from .experiment import Experiment, build_experiment, build_model_for
from .trainer import Trainer, TrainingError, learning_rate, resume, train

__all__ = [
    "Experiment",
    "build_experiment",
    "build_model_for",
    "Trainer",
    "TrainingError",
    "learning_rate",
    "resume",
    "train",
]
