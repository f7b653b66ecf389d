"""Throughput of the N2N training pipeline against the bare network step, and inference.

The *pipeline* step is what :class:`~mri_n2n.training.Trainer` does: fetch a batch from the
dataset, draw two Hermitian masks per sample, FFTs, density-compensated zero-filling, the
forward pass, data consistency, the loss, backward and the Adam step. The *bare* step is the
same network's forward/backward/Adam step on tensors already in memory: the floor the
pipeline's overhead is measured against. Blocks of both are interleaved and the median block
rate is reported, so slow drifts of a shared machine hit both alike.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from ..config import Config, resolve_config
from ..corruptions import MRIUndersampling
from ..training import Trainer

__all__ = ["bench_speed"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_speed(
    *,
    quick: bool = False,
    device: str = "auto",
    size: int | None = None,
    batch_size: int | None = None,
    blocks: int | None = None,
    steps_per_block: int | None = None,
    inference_size: int = 256,
    out: str = "results/speed_run",
) -> dict[str, Any]:
    """Measure training-step and inference throughput (slices/s) for the default preset.

    Returns a dict with ``pipeline_slices_per_s``, ``bare_slices_per_s``, ``overhead``
    (``bare / pipeline - 1``), ``inference_slices_per_s`` (zero-filled -> network -> data
    consistency, no gradients, 256x256 slices) and the settings.
    """
    blocks = blocks or (4 if quick else 8)
    steps = steps_per_block or (5 if quick else 10)
    cfg, why = resolve_config(
        Config(
            dataset="mni152",
            device=device,
            quiet=True,
            figures=False,
            tensorboard=False,
            out=out,
            size=size,
            batch_size=batch_size,
            max_steps=10_000,
        )
    )
    trainer = Trainer(cfg)
    dev = trainer.device
    model = trainer.model
    batches = trainer._batches()

    # the bare step: same model, optimiser and AMP settings, tensors preloaded on the device
    b, s = cfg.batch_size, cfg.size
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.rand(b, trainer.exp.channels, s, s, generator=g).to(dev)
    y = torch.rand(b, trainer.exp.channels, s, s, generator=g).to(dev)
    opt = trainer.opt
    # a network that takes the measurements (unrolled) gets a fixed mask and k-space: its data
    # consistency is part of the network, not of the pipeline's overhead
    fixed = trainer.corruption.measure(x, trainer.corruption.draw_masks(b, torch.Generator(device=dev)))

    def bare_step() -> None:
        out = trainer._forward(trainer.net, x, fixed.context)
        loss = torch.mean((out - y) ** 2)
        opt.zero_grad(set_to_none=True)
        trainer.scaler.scale(loss).backward()
        trainer.scaler.step(opt)
        trainer.scaler.update()

    def pipeline_step() -> None:
        clean, _ = next(batches)
        trainer.train_step(clean)

    for _ in range(3):  # warm-up (allocator, kernels, first DataLoader)
        pipeline_step()
        bare_step()
    rates: dict[str, list[float]] = {"pipeline": [], "bare": []}
    for _ in range(blocks):
        for name, fn in (("pipeline", pipeline_step), ("bare", bare_step)):
            _sync(dev)
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync(dev)
            rates[name].append(steps * b / (time.perf_counter() - t0))
    pipe = statistics.median(rates["pipeline"])
    bare = statistics.median(rates["bare"])

    # inference: 256x256 slices by default, batch of 8, as volume reconstruction does it
    inf_size, inf_batch = inference_size, 8
    corr = MRIUndersampling.from_config(cfg, (inf_size, inf_size))
    vol = torch.rand(inf_batch, 1, inf_size, inf_size, generator=g).to(dev)
    masks = corr.draw_masks(inf_batch, torch.Generator(device=dev).manual_seed(1))
    model.eval()
    inf_rates = []
    with torch.no_grad():
        for i in range(blocks + 1):
            _sync(dev)
            t0 = time.perf_counter()
            for _ in range(max(steps // 2, 2)):
                pair = corr.measure(vol, masks)
                trainer._predict(model, pair)
            _sync(dev)
            if i:  # the first block is warm-up
                inf_rates.append(max(steps // 2, 2) * inf_batch / (time.perf_counter() - t0))
    return {
        "preset": cfg.preset,
        "preset_reason": why,
        "model": cfg.model,
        "base": cfg.base,
        "depth": cfg.depth,
        "cascades": cfg.cascades,
        "cascade_width": cfg.cascade_width,
        "size": s,
        "batch_size": b,
        "device": str(dev),
        "amp": trainer.amp,
        "channels_last": trainer.channels_last,
        "pipeline_slices_per_s": pipe,
        "bare_slices_per_s": bare,
        "overhead": bare / pipe - 1.0,
        "pipeline_block_rates": rates["pipeline"],
        "bare_block_rates": rates["bare"],
        "inference_size": inf_size,
        "inference_slices_per_s": statistics.median(inf_rates),
    }
