"""Checkpoints: one self-describing file that holds everything inference needs.

A checkpoint is a plain ``dict`` of tensors, numbers, strings, lists and dicts, so it
loads with ``torch.load(weights_only=True)``: a checkpoint can never run code. Keys:

- ``format`` (``"mri_n2n-checkpoint"``) and ``version``;
- ``task``: ``"mri"`` or ``"image"``;
- ``model_spec``: ``{"name": ..., "kwargs": {...}}`` for :func:`mri_n2n.models.build_model`;
- ``model``: the state dict;
- ``config``: the full resolved run configuration (a nested dict);
- optional training state: ``optimizer``, ``scheduler``, ``step``, ``epoch``, ``rng``,
  ``best_metric``, ``metrics``.

Files are written atomically (see :mod:`mri_n2n.io`).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from .io import atomic_torch_save
from .models import build_model

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "model_from_checkpoint",
    "PRETRAINED_DIR",
    "pretrained",
    "resolve_checkpoint",
]

FORMAT = "mri_n2n-checkpoint"
_TASKS = {"mri": "MRI reconstruction", "image": "photographic denoising"}
VERSION = 1


class CheckpointError(ValueError):
    """A file is not a usable mri_n2n checkpoint (the message names the file and why)."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically. ``state`` must contain ``task``, ``model_spec`` and ``model``."""
    missing = [k for k in ("task", "model_spec", "model") if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    atomic_torch_save({"format": FORMAT, "version": VERSION, **state}, path)


#: Where the shipped weights live (package data): ``registry.json`` names each file and records
#: the command, seed and validation PSNR that made it.
PRETRAINED_DIR = Path(__file__).parent / "weights"


def pretrained() -> dict[str, dict[str, Any]]:
    """The shipped checkpoints: name -> its record (``file``, ``val_psnr``, ``command``, ...)."""
    registry = PRETRAINED_DIR / "registry.json"
    if not registry.is_file():
        return {}
    return json.loads(registry.read_text())


#: The name that means "the shipped model the registry marks as the default".
DEFAULT_NAME = "default"


def default_pretrained() -> str:
    """The name of the shipped model the registry marks ``"default": true`` (the first one when
    none is marked; ``""`` when nothing is shipped)."""
    reg = pretrained()
    marked = [k for k, v in reg.items() if v.get("default")]
    return marked[0] if marked else next(iter(reg), "")


def resolve_checkpoint(path_or_name: str | os.PathLike) -> Path:
    """A checkpoint path: an existing file as is, else the shipped checkpoint of that name
    (e.g. ``"mni152-n2n"``, or ``"default"`` for the registry's default, see :func:`pretrained`);
    other values are returned unchanged, so :func:`load_checkpoint` reports them as missing."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    name = default_pretrained() if str(path_or_name) == DEFAULT_NAME else str(path_or_name)
    entry = pretrained().get(name)
    return PRETRAINED_DIR / entry["file"] if entry else path


def load_checkpoint(
    path: str | os.PathLike, *, map_location: str | torch.device = "cpu", task: str | None = None
) -> dict[str, Any]:
    """Load and validate a checkpoint with ``torch.load(weights_only=True)``.

    Args:
        path: checkpoint file, or the name of a shipped checkpoint (:func:`pretrained`).
        map_location: where tensors are loaded.
        task: when given (``"mri"`` or ``"image"``), refuse checkpoints of another task.

    Raises:
        CheckpointError: the file is missing, not a torch file, would need to run code
            to load, is not an mri_n2n checkpoint, or belongs to another task.
    """
    path = resolve_checkpoint(path)
    if not path.is_file():
        names = ", ".join(pretrained()) or "none"
        raise CheckpointError(f"{path}: no such checkpoint file (shipped checkpoints: {names})")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (not a torch.save zip archive)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        culprit = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln), "")
        culprit = re.sub(r"\s+", " ", culprit)[:160]
        raise CheckpointError(
            f"{path}: refused: loading it would run or import arbitrary Python code"
            + (f" ({culprit})" if culprit else "")
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({msg[:160]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an mri_n2n checkpoint (no '{FORMAT}' format tag)")
    if int(ckpt.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt.get('version')} is newer than this mri_n2n")
    if task is not None and ckpt.get("task") != task:
        have = ckpt.get("task")
        raise CheckpointError(
            f"{path}: this is a checkpoint of task '{have}' ({_TASKS.get(have, '?')}), "
            f"but this command needs task '{task}' ({_TASKS.get(task, '?')})"
        )
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], *, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Build the model described by ``ckpt['model_spec']`` and load its weights (eval mode)."""
    spec = ckpt["model_spec"]
    model = build_model(spec["name"], **spec.get("kwargs", {}))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()
