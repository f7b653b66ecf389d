"""Throughput of the N2N training pipeline against the bare network step, and inference.

The *pipeline* step is what :class:`~mri_n2n.training.Trainer` does: fetch a batch from the
dataset, draw two Hermitian masks per sample, FFTs, density-compensated zero-filling, the
forward pass, data consistency, the loss, backward and the Adam step. The *bare* step is the
same network's forward/backward/Adam step on tensors already in memory: the floor the pipeline's
overhead is measured against. The *reference* step is a same-size plain cascade written here
(:class:`PlainCascade`: per cascade a DnCNN-style stack of 3x3 convolutions and ReLUs with a
residual, then the single-coil data-consistency projection
(:meth:`~mri_n2n.physics.Acquisition.project`, by uncentred FFTs), contiguous memory layout, as
a peer such as deepinv's unrolled HQS network runs on a CPU) on the same tensors, mask and
optimiser settings: what our network's step is compared with (also timed in the channels-last
layout our trainer uses on a CPU, for a like-for-like layout). Blocks of the three are
interleaved and the median block rate is reported with its spread (the smallest and largest
block), so slow drifts of a shared machine hit all alike; the ratio of our bare step to the
reference is the median of the per-block ratios.

*Inference* is timed the same way, interleaved with the peer: our network through the one
reconstruction engine (:func:`~mri_n2n.reconstruction.engine.stream_reconstruction`: the
compensated zero-filled input, the network in the memory format training uses, data
consistency, the output image) against the plain cascade on the same acquisition (zero-filled
input, the cascade with its data consistency, the magnitude; contiguous layout, as the peer runs
on a CPU), both without gradients; ``inference_over_reference`` is the median of the per-block
ratios.
"""

from __future__ import annotations

import copy
import functools
import statistics
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import Config, resolve_config
from ..corruptions import MRIUndersampling
from ..fft import to_complex
from ..physics import SpectralSampling
from ..reconstruction.engine import SliceBatch, default_channels_last, stream_reconstruction
from ..training import Trainer

__all__ = ["bench_speed", "PlainCascade"]


class PlainCascade(nn.Module):
    """The reference of :func:`bench_speed`: ``cascades`` x (``x + CNN(x)``, then data
    consistency ``F^-1((1 - M') F x) + F_c^-1 (M y)`` with uncentred FFTs, ``M'`` the mask in
    their order: :meth:`~mri_n2n.physics.Acquisition.project`), each CNN ``depth`` 3x3
    convolutions ``width`` wide with ReLUs between; real ``(B, 1, H, W)`` or complex
    ``(B, 2, H, W)`` images, bool mask ``(B, H, W)`` and complex k-space ``(B, H, W)`` centred as
    :mod:`mri_n2n.fft` centres them (shifted once per call)."""

    def __init__(self, channels: int, cascades: int, width: int, depth: int) -> None:
        super().__init__()

        def cnn() -> nn.Sequential:
            layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            for _ in range(depth - 2):
                layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
            return nn.Sequential(*layers, nn.Conv2d(width, channels, 3, padding=1))

        self.cnns = nn.ModuleList(cnn() for _ in range(cascades))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, kspace: torch.Tensor) -> torch.Tensor:
        m = mask.reshape(-1, *mask.shape[-2:]).bool()
        acq = SpectralSampling(m, kspace.reshape(-1, 1, *kspace.shape[-2:]))  # F_c^-1 (M y) once
        channels = x.shape[1]
        for cnn in self.cnns:
            x = x + cnn(x)
            x = acq.channels_of(acq.project(acq.image_of(x)), channels)
        return x


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
    (``bare / pipeline - 1``), ``inference_slices_per_s`` (the one reconstruction engine:
    zero-filled -> network -> data consistency -> output image, no gradients, 256x256 slices),
    ``reference_inference_slices_per_s`` (the plain cascade on the same slices),
    ``inference_over_reference`` (median of the interleaved blocks' ratios) and the settings.
    """
    blocks = blocks or (9 if quick else 12)  # enough interleaved blocks for a median and a spread
    steps = steps_per_block or (3 if quick else 8)
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
        out = trainer._forward(trainer.net, x, fixed.acq)
        loss = torch.mean((out - y) ** 2)
        opt.zero_grad(set_to_none=True)
        trainer.scaler.scale(loss).backward()
        trainer.scaler.step(opt)
        trainer.scaler.update()

    def pipeline_step() -> None:
        clean, _ = next(batches)
        trainer.train_step(clean)

    torch.manual_seed(cfg.seed)
    ref_net = PlainCascade(trainer.exp.channels, cfg.cascades, cfg.cascade_width, cfg.cascade_depth).to(dev)
    ref_opt = torch.optim.Adam(ref_net.parameters(), lr=cfg.lr, betas=(0.9, 0.99), eps=1e-8)
    ref_mask, ref_k = fixed.acq.mask, fixed.acq.y

    cl_net = copy.deepcopy(ref_net).to(memory_format=torch.channels_last)
    cl_opt = torch.optim.Adam(cl_net.parameters(), lr=cfg.lr, betas=(0.9, 0.99), eps=1e-8)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def reference_step(net=ref_net, opt=ref_opt, inp=x) -> None:
        loss = torch.mean((net(inp, ref_mask, ref_k) - y) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    steps_of = {
        "pipeline": pipeline_step,
        "bare": bare_step,
        "reference": reference_step,
        "reference_channels_last": functools.partial(reference_step, cl_net, cl_opt, x_cl),
    }
    for _ in range(3):  # warm-up (allocator, kernels, first DataLoader)
        for fn in steps_of.values():
            fn()
    rates: dict[str, list[float]] = {name: [] for name in steps_of}
    for _ in range(blocks):
        for name, fn in steps_of.items():
            _sync(dev)
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync(dev)
            rates[name].append(steps * b / (time.perf_counter() - t0))
    pipe = statistics.median(rates["pipeline"])
    bare = statistics.median(rates["bare"])
    ref = statistics.median(rates["reference"])
    paired = [b_ / r_ for b_, r_ in zip(rates["bare"], rates["reference"])]

    # inference: 256x256 slices by default, batch of 8, as volume reconstruction does it, through
    # the one engine, interleaved with the plain cascade (the peer) on the same acquisition
    inf_size, inf_batch = inference_size, 8
    corr = MRIUndersampling.from_config(cfg, (inf_size, inf_size))
    vol = torch.rand(inf_batch, 1, inf_size, inf_size, generator=g).to(dev)
    masks = corr.draw_masks(inf_batch, torch.Generator(device=dev).manual_seed(1))
    acq = corr.measure(vol, masks).acq  # the slices' acquisition, normalised (peak about 1)
    channels = trainer.exp.channels
    model.eval()
    ref_net.eval()
    out_view = np.zeros((inf_batch, inf_size, inf_size), np.float32)

    def ours() -> None:
        stream_reconstruction(
            model, n=inf_batch, batch_fn=lambda idx: SliceBatch(acq), channels=channels, scale=1.0,
            out_view=out_view, batch_size=inf_batch, preview_index=-1,
        )  # fmt: skip

    def peer() -> None:
        with torch.inference_mode():
            x = acq.channels_of(acq.zero_filled(), channels)
            out = ref_net(x, acq.sampled, acq.y)
            out_view[:] = to_complex(out, keepdim=True)[:, 0].abs().cpu().numpy()

    inf_steps = max(steps // 2, 2)
    inf_of = {"ours": ours, "peer": peer}
    for fn in inf_of.values():  # warm-up
        fn()
    inf_rates: dict[str, list[float]] = {name: [] for name in inf_of}
    for i in range(blocks):
        for name in (("ours", "peer") if i % 2 == 0 else ("peer", "ours")):  # alternate who goes first
            _sync(dev)
            t0 = time.perf_counter()
            for _ in range(inf_steps):
                inf_of[name]()
            _sync(dev)
            inf_rates[name].append(inf_steps * inf_batch / (time.perf_counter() - t0))
    inf_paired = [o / p for o, p in zip(inf_rates["ours"], inf_rates["peer"])]
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
        "reference_slices_per_s": ref,
        "reference_block_rates": rates["reference"],
        "reference": "PlainCascade (ReLU, contiguous layout, uncentred-FFT data consistency)",
        "reference_channels_last_slices_per_s": statistics.median(rates["reference_channels_last"]),
        "bare_over_reference": statistics.median(paired),
        "bare_over_reference_blocks": paired,
        "spread": {k: [min(v), max(v)] for k, v in rates.items()},
        "inference_size": inf_size,
        "inference_slices_per_s": statistics.median(inf_rates["ours"]),
        "inference_block_rates": inf_rates["ours"],
        "inference_channels_last": default_channels_last(model, dev),
        "reference_inference_slices_per_s": statistics.median(inf_rates["peer"]),
        "reference_inference_block_rates": inf_rates["peer"],
        "inference_over_reference": statistics.median(inf_paired),
        "inference_over_reference_blocks": inf_paired,
    }
