"""Run configuration: one flat dataclass is the single source of defaults.

CLI flags and YAML files override it; the resolved config is written to
``config.yaml`` in every run folder and stored in every checkpoint, so a checkpoint
alone is enough for inference.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Config", "load_yaml", "save_yaml", "PRESETS"]


@dataclass
class Config:
    """Every setting of a training run.

    MRI fields apply when ``task == "mri"``; image fields when ``task == "image"``.
    ``None`` for ``size``/``model``/``batch_size``/... means "chosen by the preset".
    """

    # what to learn
    task: str = "mri"  # "mri" or "image"
    target: str = "noisy"  # "noisy" (Noise2Noise) or "clean" (Noise2Clean)
    preset: str = "auto"  # "auto", "cpu", "paper", "tiny"
    # data
    dataset: str = "mni152"
    data_dir: str | None = None
    size: int | None = None  # MRI slice size / image crop size
    slices: str | None = None  # "25:125"
    axis: int = 2
    normalize: str = "max"  # "max" or "p99.5"
    num_workers: int = 0
    # MRI corruption (paper: exp-decay density, 10 % of k-space, Hermitian masks)
    density: str = "exp"  # "exp", "gaussian", "uniform", "lines_random", "lines_equispaced"
    fraction: float = 0.1
    edge: float = 0.025
    acceleration: int = 4  # for line masks
    center_fraction: float = 0.08  # for line masks
    shift: int | None = None  # max circular shift in px (default size // 4); 0 disables
    # image corruption
    noise: str = "gaussian"
    loss: str | None = None  # default: l2 for MRI, the noise's default for images
    # model
    model: str | None = None  # "unet" (plain) or "unet_paper"
    width: float = 1.0  # unet_paper width multiplier
    base: int = 16  # plain unet base channels
    depth: int = 3  # plain unet: number of 2x poolings (3 = a 4-level U-Net, 16-32-64-128)
    # optimisation (paper: Adam 0.9/0.99/1e-8, lr 1e-3, ramp-up and ramp-down)
    batch_size: int | None = None
    lr: float = 1e-3
    rampup: float = 0.1  # fraction of steps with a linear... (sigmoid) ramp-up
    rampdown: float = 0.3  # fraction of steps with a cosine ramp-down
    epochs: int | None = None
    max_steps: int | None = None
    steps_per_epoch: int | None = None
    stop_after: int | None = None  # stop this invocation after N steps (resumable)
    grad_clip: float | None = None
    seed: int = 0
    # hardware
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1"
    amp: bool | None = None  # default: on for CUDA
    channels_last: bool | None = None  # default: on for CUDA
    compile: bool = False
    threads: int | None = None
    # validation and output
    val_every: int = 1  # epochs
    val_limit: int | None = None  # validate on at most this many slices/images
    val_batch_size: int | None = None
    out: str = "runs/latest"
    figures: bool = True
    tensorboard: bool = True
    quiet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML/JSON/checkpoint safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Build from a dict; unknown keys raise ``ValueError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **kw: Any) -> Config:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **kw)


#: Values each preset fills in for fields left at ``None``.
PRESETS: dict[str, dict[str, Any]] = {
    # the paper's MRI setting: full U-Net of Table 2, 256x256, batch 16, 300 epochs
    "paper": {"model": "unet_paper", "size": 256, "batch_size": 16, "epochs": 300},
    # CPU default: chosen by measured time-to-quality (see README)
    "cpu": {"model": "unet", "size": 128, "batch_size": 8, "max_steps": 1500, "steps_per_epoch": 100},
    # tests and smoke runs
    "tiny": {"model": "unet", "size": 32, "batch_size": 4, "max_steps": 20, "base": 8, "depth": 2},
}


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping of config overrides (raises ``ValueError`` naming the file)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: cannot read config ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: config must be a YAML mapping")
    return data


def save_yaml(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config atomically as YAML."""
    from .io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
