"""Checkpoints: one self-describing file that holds everything inference needs.

A checkpoint is a plain ``dict`` of tensors, numbers, strings, lists and dicts, so it
loads with ``torch.load(weights_only=True)``: a checkpoint can never run code. Keys:

- ``format`` (``"mri_n2n-checkpoint"``) and ``version``;
- ``task``: ``"mri"`` or ``"image"``;
- ``model_spec``: ``{"name": ..., "kwargs": {...}}`` for :func:`mri_n2n.models.build_model`;
- ``model``: the state dict;
- ``config``: the full resolved run configuration (a nested dict);
- ``acquisition`` (MRI): what the model was trained for, ``{"kind", "complex", "coils",
  "channels", "law", "measured_law"}`` (:func:`checkpoint_acquisition` reads it, and derives it
  from the config and the model spec for checkpoints written before it existed);
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

from .config import MULTICOIL_PRESETS, Config
from .io import atomic_torch_save
from .masks import family_for
from .models import build_model

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "model_from_checkpoint",
    "checkpoint_acquisition",
    "ACQUISITION_KEYS",
    "PRETRAINED_DIR",
    "pretrained",
    "resolve_checkpoint",
    "default_pretrained",
    "tuned_adaptation",
    "DEFAULT_NAME",
    "DEFAULT_INPUTS",
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


#: The kinds of input ``--checkpoint default`` chooses a shipped model for: magnitude images (a
#: ``--simulate`` study of a volume), single-coil complex k-space, multi-coil k-space, and
#: non-Cartesian k-space (files whose readouts carry trajectories, one coil or many).
DEFAULT_INPUTS = ("magnitude", "complex", "multicoil", "noncartesian")


def default_pretrained(data: str = "magnitude") -> str:
    """The name of the shipped model made for ``data`` (one of :data:`DEFAULT_INPUTS`): the entry
    whose ``default_for`` lists it, else the one the registry marks ``"default": true`` (the
    magnitude model, and the fallback for data no shipped model serves), else the first one;
    ``""`` when nothing is shipped.

    Raises:
        ValueError: ``data`` is not one of :data:`DEFAULT_INPUTS`.
    """
    if data not in DEFAULT_INPUTS:
        raise ValueError(f"data must be one of {DEFAULT_INPUTS}, got {data!r}")
    reg = pretrained()
    made = [k for k, v in reg.items() if data in v.get("default_for", ())]
    if made:
        return made[0]
    marked = [k for k, v in reg.items() if v.get("default")]
    return marked[0] if marked else next(iter(reg), "")


def tuned_adaptation(path_or_name: str | os.PathLike) -> dict[str, Any]:
    """The adaptation settings chosen for a shipped model on the tuning sources (its registry
    entry's ``adapt`` mapping, e.g. ``{"lr": 0.001, "tuned": "..."}``); ``{}`` for a file on disk
    or a model with none (the library's defaults serve it). ``"default"`` is the magnitude default."""
    if Path(path_or_name).is_file():
        return {}
    name = default_pretrained() if str(path_or_name) == DEFAULT_NAME else str(path_or_name)
    return dict(pretrained().get(name, {}).get("adapt") or {})


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


#: The keys of a checkpoint's ``acquisition`` block (:func:`checkpoint_acquisition`).
ACQUISITION_KEYS = ("kind", "complex", "coils", "channels", "law", "measured_law")
#: The corruption classes whose checkpoints (written before the ``acquisition`` block) were
#: trained on coil data.
_MULTICOIL_CORRUPTIONS = ("MultiCoilUndersampling",)


def checkpoint_acquisition(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What an MRI checkpoint's model was trained for: its ``acquisition`` block, completed for
    checkpoints written before the trainer recorded it.

    Returns a dict with

    - ``kind``: the registered acquisition kind (:func:`mri_n2n.physics.acquisition_kind`);
    - ``complex``: two-channel complex images (``True``) or real magnitude images;
    - ``coils``: ``"single"`` or ``"multi"`` (coil k-space with sensitivity maps);
    - ``channels``: the model's input channels (1 or 2);
    - ``law``: the description of the sampling law the model was trained on
      (:meth:`~mri_n2n.masks.SampleLaw.describe`), ``None`` when it cannot be rebuilt;
    - ``measured_law``: the law of the undersampled files it was trained on (a description;
      a recorded ``True`` flag means the recorded ``law``), ``None`` for retrospectively
      undersampled training data.

    Fallback for older checkpoints (no ``acquisition`` block, or keys missing from it), from the
    saved config, the corruption record and the model spec: kind the config's ``acquisition``
    (``"cartesian"``, the only kind there was), ``complex`` from the config's ``complex`` (else
    the corruption's ``complex_data``, else two input channels), ``coils`` ``"multi"`` when the
    corruption was the multi-coil one (or the preset a multi-coil one), ``channels`` from the
    model spec's ``in_channels`` (else 2 for complex data, 1 otherwise), ``law`` the measured law
    or else the config's mask family at its slice size, ``measured_law`` the corruption's record.

    Raises:
        CheckpointError: a recorded block that is not a dict, or values that contradict each
            other (channels other than 1 or 2, complex with one channel, coils with real images).
    """
    block = ckpt.get("acquisition")
    if block is not None and not isinstance(block, dict):
        raise CheckpointError(f"checkpoint acquisition record is a {type(block).__name__}, not a dict")
    block = dict(block or {})
    cfg = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    corruption = ckpt.get("corruption") if isinstance(ckpt.get("corruption"), dict) else {}
    kwargs = (ckpt.get("model_spec") or {}).get("kwargs") or {}
    out: dict[str, Any] = {}
    out["kind"] = str(block.get("kind") or cfg.get("acquisition") or "cartesian")
    channels = block.get("channels", kwargs.get("in_channels"))
    if "complex" in block:
        out["complex"] = bool(block["complex"])
    elif cfg.get("complex") is not None:
        out["complex"] = bool(cfg["complex"])
    elif "complex_data" in corruption:
        out["complex"] = bool(corruption["complex_data"])
    else:  # a config that left it to the data: the model's channels say
        out["complex"] = channels is not None and int(channels) == 2
    if block.get("coils") is not None:
        out["coils"] = str(block["coils"])
    else:
        multi = corruption.get("name") in _MULTICOIL_CORRUPTIONS or cfg.get("preset") in MULTICOIL_PRESETS
        out["coils"] = "multi" if multi else "single"
    out["channels"] = int(channels) if channels is not None else (2 if out["complex"] else 1)
    measured = block.get("measured_law", corruption.get("measured_law"))
    if measured is True:  # the trainer's flag: the recorded law is the measured files'
        measured = block.get("law")
    out["measured_law"] = measured if isinstance(measured, dict) else None
    if "law" in block:
        out["law"] = block["law"]
    else:  # measured training files: their law replaced the config's family
        out["law"] = out["measured_law"] or _config_law(cfg, out)
    if out["channels"] not in (1, 2):
        raise CheckpointError(f"an MRI model takes 1 or 2 channels, this one takes {out['channels']}")
    if out["complex"] != (out["channels"] == 2):
        what = "complex" if out["complex"] else "real"
        raise CheckpointError(f"checkpoint records {what} images but a {out['channels']}-channel model")
    if out["coils"] not in ("single", "multi"):
        raise CheckpointError(f"checkpoint coils must be 'single' or 'multi', got {out['coils']!r}")
    if out["coils"] == "multi" and not out["complex"]:
        raise CheckpointError("checkpoint records coil data with real (magnitude) images")
    return {k: out[k] for k in ACQUISITION_KEYS}


def _config_law(cfg: dict[str, Any], acq: dict[str, Any]) -> dict[str, Any] | None:
    """The description of the Cartesian mask family a saved config trained on (``None`` when the
    config does not build one, e.g. an unknown kind or a family that is not registered here)."""
    if acq["kind"] != "cartesian" or not cfg:
        return None
    try:
        config = Config.from_dict(cfg, where="checkpoint config")
        size = int(config.size or 0)
        if size < 1:
            return None
        return family_for(config, (size, size), hermitian=not acq["complex"]).describe()
    except (KeyError, TypeError, ValueError):
        return None
