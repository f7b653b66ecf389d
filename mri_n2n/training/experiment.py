"""What a run trains: datasets, corruption, loss and network, built from a resolved config."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torch.utils.data import Dataset

from ..config import Config, with_fallbacks
from ..corruptions import Corruption, MRIUndersampling, default_loss, make_corruption
from ..corruptions.multicoil import MultiCoilUndersampling
from ..data.datasets import mri_datasets_from_config
from ..images import build_image_datasets
from ..models import model_from_config

__all__ = ["Experiment", "build_experiment", "build_model_for"]


@dataclass
class Experiment:
    """What a run trains: data, corruption, loss, and the model's channel count."""

    train_set: Dataset
    valid_set: Dataset
    corruption: Corruption
    loss_name: str
    channels: int


def build_experiment(cfg: Config) -> Experiment:
    """Datasets, corruption and loss for a resolved config."""
    if cfg.task == "mri":
        complex_data = bool(cfg.complex)
        train_set, valid_set = mri_datasets_from_config(cfg)
        if getattr(train_set, "multicoil", False):  # the coil-combined complex image
            if not complex_data:
                raise ValueError("multi-coil k-space trains as complex data (drop --complex false)")
            mc = MultiCoilUndersampling.from_config(cfg, (cfg.size, cfg.size), coils=train_set.coils)
            return Experiment(train_set, valid_set, mc, cfg.loss or "l2", 2)
        family = None
        if getattr(train_set, "measured", False):  # undersampled files: their own mask law
            if not complex_data:
                raise ValueError("undersampled k-space files train as complex data (drop --complex false)")
            family = train_set.family()
        corruption = MRIUndersampling.from_config(cfg, (cfg.size, cfg.size), family=family)
        return Experiment(train_set, valid_set, corruption, cfg.loss or "l2", 2 if complex_data else 1)
    train_set, valid_set = build_image_datasets(
        cfg.dataset, data_dir=cfg.data_dir, crop=cfg.size, noise=cfg.noise, seed=cfg.seed
    )
    corruption = make_corruption(cfg.noise, **cfg.noise_options)
    channels = int(getattr(train_set, "channels", 3))
    return Experiment(train_set, valid_set, corruption, cfg.loss or default_loss(cfg.noise), channels)


def build_model_for(cfg: Config, channels: int) -> nn.Module:
    """The network a config names, for ``channels`` in and out, built by its registered
    ``from_config`` (:func:`~mri_n2n.models.register_model`; fields left ``None``: their
    fallbacks, :func:`~mri_n2n.config.with_fallbacks`)."""
    return model_from_config(with_fallbacks(cfg), channels)
