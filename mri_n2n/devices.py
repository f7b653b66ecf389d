"""Device selection and the device-dependent choices shared by training, inference and the benches.

- :func:`resolve_device`: ``--device`` as a :class:`torch.device` (every command line).
- :func:`amp_dtype`: the autocast dtype a device supports well (bf16 from compute capability 8.0,
  fp16 with a gradient scaler on 7.x, none below; bf16 on a CPU).
- :func:`reads_sync`: whether reading a tensor's values on the host waits for its device (code
  with a sync-free path for devices takes it where this is true; tests patch it to run those
  paths on a CPU).
- :func:`synchronize` and :class:`Stopwatch`: wall-clock timing of device work (the one timing
  helper: CUDA runs asynchronously, so a timer must wait for the device at both ends).
- :func:`resident`: a host tensor's copy on a device, made once (mask-law tables used every step).
- :func:`configure_backend`: per-device backend settings (cuDNN's autotuner on CUDA).
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch

__all__ = [
    "resolve_device", "amp_dtype", "autocast_dtype", "reads_sync", "synchronize", "Stopwatch", "resident",
    "configure_backend", "BF16_MIN_CAPABILITY", "FP16_MIN_CAPABILITY",
]

#: The first CUDA compute capability with native bf16 convolutions and matmuls (Ampere, A100).
#: ``torch.cuda.is_bf16_supported()`` also answers true on older cards (emulation), whose cuDNN
#: has no bf16 convolutions.
BF16_MIN_CAPABILITY = (8, 0)
#: The first compute capability with fp16 tensor cores (Volta, V100; Turing T4 is 7.5): below it
#: fp16 autocast is no faster than fp32 and loses range, so mixed precision is off.
FP16_MIN_CAPABILITY = (7, 0)


def resolve_device(name: str | torch.device) -> torch.device:
    """Turn ``--device`` into a :class:`torch.device`.

    ``auto`` is CUDA when present, else CPU; ``cpu``; ``cuda`` or ``cuda:N``. A bare ``cuda``
    (or ``auto``) under ``torchrun`` is the local rank's GPU (``LOCAL_RANK``); ``cuda:N`` is
    refused there, as it would put every rank on GPU ``N``.

    Raises:
        ValueError: an unknown name, CUDA asked for but absent, or ``cuda:N`` under ``torchrun``
            (one line, naming the flag).
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
        local = os.environ.get("LOCAL_RANK")
        if dev.index is not None and local is not None and int(os.environ.get("WORLD_SIZE", 1)) > 1:
            raise ValueError(
                f"--device {name} under torchrun would put every process on GPU {dev.index}; give "
                "--device cuda (each process takes its LOCAL_RANK's GPU; choose GPUs with "
                "CUDA_VISIBLE_DEVICES)"
            )
        if dev.index is None:
            dev = torch.device("cuda", int(local or 0))
    return dev


def amp_dtype(device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``device``, or ``None`` where mixed precision is unsafe or slower.

    CUDA: bfloat16 from compute capability :data:`BF16_MIN_CAPABILITY` (asked of ``device``
    itself, not the current device), float16 (with a gradient scaler in training) from
    :data:`FP16_MIN_CAPABILITY`, ``None`` below. CPU: bfloat16 (CPU autocast supports only it).
    Other devices: ``None``.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return torch.bfloat16
    if device.type != "cuda":
        return None
    cap = tuple(torch.cuda.get_device_capability(device))
    if cap >= BF16_MIN_CAPABILITY:
        return torch.bfloat16
    if cap >= FP16_MIN_CAPABILITY:
        return torch.float16
    return None


def autocast_dtype(amp: bool | None, device: torch.device | str, *, default: bool) -> torch.dtype | None:
    """The autocast dtype a run uses: ``amp`` (``None``: ``default``) and the device's
    :func:`amp_dtype`; ``None`` means full precision (float32)."""
    on = default if amp is None else bool(amp)
    return amp_dtype(device) if on else None


def reads_sync(device: torch.device | str) -> bool:
    """Whether reading a tensor's values on the host (``.item()``, ``.tolist()``, ``bool(t)``)
    waits for ``device``'s queued work: true for every device but the CPU. Code that has a path
    free of such reads for devices takes it where this is true (the CPU keeps its faster path;
    the two give identical values)."""
    return torch.device(device).type != "cpu"


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for the work queued on ``device`` (CUDA); nothing on a CPU. ``None``: the current
    CUDA device when CUDA is initialised."""
    dev = None if device is None else torch.device(device)
    if dev is None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
    elif dev.type == "cuda":
        torch.cuda.synchronize(dev)


class Stopwatch:
    """Wall-clock seconds of device work: synchronises ``device`` when started and when read,
    so asynchronous CUDA kernels are charged to the code that queued them::

        with Stopwatch(device) as sw:
            out = model(x)
        seconds = sw.seconds
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = device
        self.seconds = 0.0
        self._t0: float | None = None

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - (self._t0 or 0.0)


def resident(owner: Any, name: str, t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``t`` on ``device``, copied once and kept on ``owner`` (under ``name``) while ``owner``
    holds the same ``t``: tables that a law or a corruption reads every step (densities, keep
    probabilities) are not copied from pageable host memory at every step."""
    device = torch.device(device)
    if t.device == device:
        return t
    cache = owner.__dict__.setdefault("_resident", {})
    key = (name, str(device))
    hit = cache.get(key)
    if hit is None or hit[0] is not t:
        hit = (t, t.to(device))
        cache[key] = hit
    return hit[1]


def configure_backend(device: torch.device | str) -> None:
    """Backend settings for training on ``device``: on CUDA, cuDNN's autotuner
    (``cudnn.benchmark``: the fixed slice sizes of a run pick the fastest convolution once);
    nothing on a CPU."""
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True
