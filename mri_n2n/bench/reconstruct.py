"""Reconstruction speed: slices per second of :meth:`Reconstructor.kspace` on a k-space volume."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config, resolve_config
from ..data.synthetic import phantom_volume
from ..models import build_model
from ..physics import SpectralSampling
from ..reconstruction import Reconstructor
from ..reconstruction.engine import simulated_masks

__all__ = ["bench_reconstruct"]


def _default_checkpoint() -> Path | None:
    """The README's quick-start run (``runs/mni152``), else the trainer's default ``runs/latest``."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        for run in ("mni152", "latest"):
            p = base / "runs" / run / "checkpoints" / "best.pt"
            if p.is_file():
                return p
    return None


def bench_reconstruct(
    checkpoint: str | os.PathLike | None = None,
    *,
    size: int = 256,
    slices: int = 32,
    batch_size: int = 8,
    device: str = "cpu",
    fraction: float = 0.1,
    threads: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Reconstruction speed: slices per second for a ``size x size x slices`` k-space volume.

    The volume is a synthetic phantom undersampled with the checkpoint's density at
    ``fraction``; the timed call is :meth:`Reconstructor.kspace` (zero-filling, normalisation,
    network, data consistency, magnitude), after one warm-up batch.

    Args:
        checkpoint: an MRI checkpoint; default ``runs/mni152/checkpoints/best.pt`` (or
            ``runs/latest/...``) when present, else an untrained model of the CPU preset (the same
            speed).
        size: slice side.
        slices: number of slices.
        batch_size: slices per network call.
        device: ``cpu``, ``cuda`` or ``auto``.
        fraction: sampling density of the test data.
        threads: ``torch.set_num_threads`` during the run (default: unchanged).
        seed: mask seed.

    Returns:
        ``{"name", "slices_per_s", "seconds", "slices", "shape", "batch_size", "device",
        "threads", "checkpoint", "model"}``.
    """
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        ck = Path(checkpoint) if checkpoint is not None else _default_checkpoint()
        if ck is not None:
            rec = Reconstructor.from_checkpoint(ck, device=device, batch_size=batch_size)
            label = str(ck)
        else:
            cfg, _ = resolve_config(Config(preset="cpu"))
            model = build_model("unet", in_channels=1, out_channels=1, base=cfg.base, depth=cfg.depth)
            rec = Reconstructor(model, cfg, device=device, batch_size=batch_size)
            label = "untrained cpu-preset model (speed only)"
        vol = phantom_volume((size, size, slices), content=(0, slices), seed=seed, peak=1000.0)
        images = np.moveaxis(vol, 2, 0)
        corruption = rec.corruption((size, size), fraction)
        masks = simulated_masks(corruption, range(slices), seed)
        kspace = SpectralSampling(masks).forward(torch.from_numpy(np.ascontiguousarray(images)))
        kspace, masks = kspace.numpy().astype(np.complex64), masks.numpy()
        rec.kspace(kspace[: min(batch_size, slices)], masks[: min(batch_size, slices)])  # warm-up
        if rec.device.type == "cuda":
            torch.cuda.synchronize(rec.device)
        t0 = time.perf_counter()
        rec.kspace(kspace, masks)
        if rec.device.type == "cuda":
            torch.cuda.synchronize(rec.device)
        seconds = time.perf_counter() - t0
        spec = getattr(rec.model, "spec", {})
        return {
            "name": "reconstruct",
            "slices_per_s": slices / seconds,
            "seconds": seconds,
            "slices": slices,
            "shape": [size, size, slices],
            "batch_size": batch_size,
            "device": str(rec.device),
            "threads": torch.get_num_threads(),
            "checkpoint": label,
            "model": spec.get("name") if isinstance(spec, dict) else None,
        }
    finally:
        torch.set_num_threads(old_threads)
