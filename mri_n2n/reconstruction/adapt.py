"""Scan-specific self-supervised adaptation: fine-tune a trained network on the measurements of
the scan it is about to reconstruct, with no reference image.

A network trained on one data set meets other contrasts, matrices and textures in real scans.
The scan's own undersampled k-space is enough to adapt to them, with the single-acquisition
Noisier2Noise loss the trainer already uses (:mod:`mri_n2n.splits`; in the spirit of Yaman et
al. 2022, "zero-shot self-supervised learning"): every step draws a second mask of the same law,
the network sees the zero-filled image of the doubly undersampled set, and the loss is the
``1/p``-weighted k-space L2 on the measured bins it did not see
(:func:`mri_n2n.losses.kspace_loss`). The weights move from the trained ones for a fixed number
of Adam steps at a small learning rate (:data:`ADAPT_STEPS`, :data:`ADAPT_LR`; fixed before any
real volume was scored, see the README), then the adapted copy reconstructs the scan with all its
measurements as usual; the trained model is not changed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from tqdm.auto import tqdm

from ..corruptions import MRIUndersampling
from ..corruptions.mri import MEASURED_CHANNELS
from ..losses import kspace_loss
from ..masks import MaskFamily, complete_measurements
from ..models import ends_with_dc, measurement_kwargs
from ..models.ensemble import SelfEnsemble
from ..splits import make_split

__all__ = ["ADAPT_STEPS", "ADAPT_LR", "ADAPT_SPLIT", "adapt_model"]

#: Default number of adaptation steps, learning rate and held-out share of each acquisition.
ADAPT_STEPS = 200
ADAPT_LR = 3e-4
ADAPT_SPLIT = 0.4


def adapt_model(
    model: nn.Module,
    family: MaskFamily,
    mask: torch.Tensor,
    kspace: torch.Tensor,
    *,
    complex_data: bool,
    steps: int = ADAPT_STEPS,
    lr: float = ADAPT_LR,
    split: float = ADAPT_SPLIT,
    batch_size: int = 8,
    max_shift: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> nn.Module:
    """A copy of ``model`` fine-tuned on one scan's measurements (module docstring).

    Args:
        model: a trained MRI network (a :class:`~mri_n2n.models.ensemble.SelfEnsemble` is
            adapted inside and returned wrapped).
        family: the law the masks were drawn from (its keep probability weighs the loss and
            compensates the inputs, as in training).
        mask: bool ``(N, H, W)`` sampled sets of the scan's slices (Hermitian-complete for real
            images).
        kspace: complex ``(N, H, W)`` measurements, in the network's units (normalised as in
            training); all-zero slices are skipped.
        complex_data: two-channel (complex) network; a one-channel network needs measurements of
            real images.
        steps: Adam steps (0 returns ``model`` itself).
        lr: learning rate.
        split: expected share of each acquisition held out for the loss, in (0, 1).
        batch_size: slices per step.
        max_shift: random circular shifts of the data up to this many pixels (a phase ramp of the
            measurements, as in training); ``None``: a quarter of the smaller side.
        seed: seeds the slice choice and the second masks.
        progress: show a progress bar.

    Raises:
        ValueError: no slice with measurements, mismatched shapes, a bad setting, or a loss that
            stops being finite.
    """
    if steps < 0 or not lr > 0 or batch_size < 1:
        raise ValueError(
            f"adaptation needs steps >= 0, lr > 0, batch_size >= 1 (got {steps}, {lr}, {batch_size})"
        )
    if steps == 0:
        return model
    if mask.shape != kspace.shape or mask.ndim != 3 or tuple(mask.shape[-2:]) != tuple(family.shape):
        raise ValueError(
            f"adaptation: mask {tuple(mask.shape)} and k-space {tuple(kspace.shape)} must both be (N, H, W) "
            f"with (H, W) = {tuple(family.shape)}"
        )
    wrapped = isinstance(model, SelfEnsemble)
    net = copy.deepcopy(model.module if wrapped else model)
    device = next(net.parameters()).device
    p = family.keep_probability() if complex_data else family.real_keep_probability()
    law = make_split("noisier2noise", family, p, float(split), hermitian=not complex_data)
    shift = min(family.shape) // 4 if max_shift is None else int(max_shift)
    corr = MRIUndersampling(family, complex_data=complex_data, split=law, max_shift=shift)
    mask = mask.bool().cpu()
    kspace = kspace.to(torch.complex64).cpu() * mask
    if not complex_data:  # a real image's measurements: the Hermitian completion, as in training
        kspace, mask = complete_measurements(kspace, mask)
    active = (kspace.abs().flatten(1).amax(1) > 0).nonzero().flatten()
    if active.numel() == 0:
        raise ValueError("adaptation: the scan has no slice with measurements")
    dens = p.float().expand(mask.shape)
    measured = torch.stack([kspace.real, kspace.imag, mask.float(), dens], dim=1)
    assert measured.shape[1] == MEASURED_CHANNELS
    g = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.Adam(net.parameters(), lr=float(lr))
    net.train()
    for step in tqdm(range(int(steps)), desc="adapt", unit="step", disable=not progress, leave=False):
        pick = active[torch.randperm(active.numel(), generator=g)[:batch_size]]
        pair = corr.single_pair(measured[pick], generator=g, seeds=pick)
        ctx = {k: v.to(device) for k, v in pair.context.items()}
        out = net(pair.input.to(device), **measurement_kwargs(net, ctx))
        if not ends_with_dc(net):
            out = corr.project(out, ctx)
        loss = kspace_loss(out, pair.target.to(device), ctx)
        if not torch.isfinite(loss):
            raise ValueError(f"adaptation: the loss is not finite at step {step} (lower the learning rate)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    return SelfEnsemble(net) if wrapped else net
