"""Device selection shared by every command line (train, reconstruct, denoise, evaluate, bench)."""

from __future__ import annotations

import os

import torch

__all__ = ["resolve_device"]


def resolve_device(name: str | torch.device) -> torch.device:
    """Turn ``--device`` into a :class:`torch.device`.

    ``auto`` is CUDA when present, else CPU; ``cpu``; ``cuda`` or ``cuda:N``. A bare ``cuda``
    under ``torchrun`` is the local rank's GPU (``LOCAL_RANK``).

    Raises:
        ValueError: an unknown name, or CUDA asked for but absent (one line, naming the flag).
    """
    if isinstance(name, torch.device):
        return name
    name = str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device: bad device {name!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA device is available")
        if dev.index is None:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return dev
