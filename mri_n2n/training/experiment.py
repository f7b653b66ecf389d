"""What a run trains: datasets, corruption, loss and network, built from a resolved config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from ..checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
from ..config import Config, with_fallbacks
from ..corruptions import Corruption, MRIUndersampling, default_loss, make_corruption
from ..corruptions.mri import is_measured
from ..data.datasets import mri_datasets_from_config
from ..images import build_image_datasets
from ..models import model_from_config
from ..physics import Acquisition, acquisition_kind

__all__ = ["Experiment", "build_experiment", "build_model_for", "acquisition_signature"]


@dataclass
class Experiment:
    """What a run trains: data, corruption, loss, and the model's channel count.

    Attributes:
        measured: the MRI data are measured acquisitions (one per slice, no clean reference):
            the trainer validates on held-out measurements.
    """

    train_set: Dataset
    valid_set: Dataset
    corruption: Corruption
    loss_name: str
    channels: int
    measured: bool = False


def _first_item(ds: Dataset) -> Any:
    """The first item of a dataset (what its batches are: clean images or acquisitions), or
    ``None`` for an empty one."""
    return ds[0][0] if len(ds) else None


def build_experiment(cfg: Config) -> Experiment:
    """Datasets, corruption and loss for a resolved config.

    MRI: what the data are is read from the type of their items (:func:`mri_n2n.data.collate`):
    clean images, fully sampled acquisitions (coil data: the corruption of ``C`` coils) or
    measured ones (their own law, from the dataset); the acquisition kind is the config's.
    """
    if cfg.task == "mri":
        complex_data = bool(cfg.complex)
        train_set, valid_set = mri_datasets_from_config(cfg)
        item = _first_item(train_set)
        kind = acquisition_kind(cfg.acquisition)
        family, coils, measured = None, None, is_measured(item)
        if isinstance(item, Acquisition):
            if item.kind != kind.kind and measured:  # fully sampled data are re-acquired
                raise ValueError(
                    f"the data are measured {item.kind} acquisitions, the run's --acquisition is {kind.kind}"
                )
            if item.multicoil:  # the coil-combined complex image
                if not complex_data:
                    raise ValueError("multi-coil k-space trains as complex data (drop --complex false)")
                coils = item.n_coils
        if measured:  # undersampled files: their own mask law
            if not complex_data:
                raise ValueError("undersampled k-space files train as complex data (drop --complex false)")
            family = train_set.family()
        corruption = MRIUndersampling.from_config(cfg, (cfg.size, cfg.size), family=family, coils=coils)
        channels = 2 if complex_data or coils is not None else 1
        return Experiment(train_set, valid_set, corruption, cfg.loss or "l2", channels, measured)
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


def acquisition_signature(cfg: Config, corruption: MRIUndersampling) -> dict[str, Any]:
    """What an MRI model was trained for, as its checkpoints record it (``"acquisition"``), so
    that inference reads it instead of guessing from parameter shapes::

        {"kind": "cartesian", "complex": bool, "coils": "single" | "multi", "channels": 1 | 2,
         "law": <the corruption law's describe()>, "measured_law": bool}

    ``law`` is the law the training sets were drawn from (a mask family's description for
    Cartesian data), ``measured_law`` whether it is the law of measured training files (rather
    than the config's).
    """
    coils = getattr(corruption, "coils", None)
    return {
        "kind": str(getattr(cfg, "acquisition", "cartesian") or "cartesian"),
        "complex": bool(corruption.complex_data),
        "coils": "single" if coils is None else "multi",
        "channels": int(corruption.channels),
        "law": corruption.family.describe(),
        "measured_law": bool(corruption.measured_law),
    }


def init_weights(model: nn.Module, source: str, task: str = "mri") -> None:
    """Load the network weights of checkpoint (or shipped name) ``source`` into ``model``
    (``--init-from``: fine-tuning starts from them).

    Raises:
        ValueError: not a checkpoint of ``task``, or a network that is not ``model``'s (one line,
            naming ``--init-from`` and the checkpoint's layout).
    """
    try:
        ckpt = load_checkpoint(resolve_checkpoint(source), map_location="cpu", task=task)
    except CheckpointError as e:
        raise ValueError(f"--init-from: {e}") from None
    state, own = ckpt.get("model"), model.state_dict()
    theirs = {k: tuple(v.shape) for k, v in state.items()} if isinstance(state, dict) else {}
    # a hybrid cascade's U-Net branch (".glob."; its output starts at zero) may be new: a CNN
    # model's weights then start the hybrid exactly where the CNN ended
    needed = {k: tuple(v.shape) for k, v in own.items() if k in theirs or ".glob." not in k}
    if theirs != needed:
        saved = ckpt.get("config") or {}
        layout = ", ".join(f"{k}={saved.get(k)}" for k in ("model", "cascades", "cascade_width", "dc"))
        raise ValueError(
            f"--init-from {source}: its network ({layout}) is not this run's: give the same "
            "--model, --cascades, widths and data channels"
        )
    model.load_state_dict(state, strict=False)
