"""Scan-specific self-supervised adaptation: fine-tune a trained network on the measurements of
the scan it is about to reconstruct, with no reference image.

A network trained on one data set meets other contrasts, matrices and textures in real scans.
The scan's own undersampled k-space is enough to adapt to them, with the single-acquisition
Noisier2Noise loss the trainer already uses (:mod:`mri_n2n.splits`; in the spirit of Yaman et
al. 2022, "zero-shot self-supervised learning"): every step draws a second mask of the same law,
the network sees the zero-filled image of the doubly undersampled set, and the loss is the
``1/p``-weighted k-space L2 on the measured bins it did not see
(:func:`mri_n2n.losses.kspace_loss`). The weights move from the trained ones for at most
:data:`ADAPT_STEPS` Adam steps at the learning rate :data:`ADAPT_LR` (chosen on tuning volumes
that share no pixel with any evaluation volume, see ``docs/results.md``), then the adapted copy
reconstructs the scan with all its measurements as usual; the trained model is not changed.

**Self-validated early stopping** (``validation > 0``; Yaman et al.'s zero-shot recipe): a fixed
share of each slice's measured bins, the set ``Gamma`` (one draw per partner pair for real
images), is held out from the adaptation altogether; the network learns from the rest,
``Omega - Gamma`` (its keep probability ``p (1 - v)``), and every ``check_every`` steps it
reconstructs a few slices from ``Omega - Gamma`` and is scored on how well it predicts the
measurements in ``Gamma`` it never saw. The weights with the lowest validation loss are kept, and
the adaptation stops when the loss has not fallen for ``patience`` checks: a scan the network
already fits stops after a few steps, one it does not fit adapts longer. :class:`AdaptReport`
says what happened.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from ..corruptions import MRIUndersampling, Pair
from ..corruptions.mri import pack_measured
from ..corruptions.multicoil import MultiCoilUndersampling
from ..fft import to_channels, to_complex
from ..losses import kspace_loss
from ..masks import MaskFamily, complete_measurements
from ..models import apply_model, ends_with_dc
from ..models.ensemble import SelfEnsemble
from ..physics import Acquisition, SpectralSampling
from ..sampling import share_partner_draws
from ..splits import make_split

__all__ = [
    "ADAPT_STEPS", "ADAPT_LR", "ADAPT_SPLIT", "ADAPT_MAX_SHIFT", "ADAPT_VALIDATION", "ADAPT_CHECK_EVERY",
    "ADAPT_PATIENCE", "ADAPT_BATCH_SIZE", "AdaptReport", "adapt_model", "adapt_multicoil",
]

#: Default number of adaptation steps, learning rate and held-out share of each acquisition.
ADAPT_STEPS = 40
ADAPT_LR = 3e-4
ADAPT_SPLIT = 0.4
#: Circular shifts of the adaptation's pairs, at most this many pixels (``None``: a quarter of
#: the smaller side, as in training); the tuning set preferred none.
ADAPT_MAX_SHIFT: int | None = 0
#: Defaults of the self-validated early stopping: share of the measurements held out (0: off,
#: a fixed number of steps), steps between checks, checks without progress before stopping.
ADAPT_VALIDATION = 0.0
ADAPT_CHECK_EVERY = 5
ADAPT_PATIENCE = 3
#: Slices per adaptation step (a step's cost grows with it; fewer slices, more steps per second).
ADAPT_BATCH_SIZE = 2


@dataclass
class AdaptReport:
    """What an adaptation did (filled in by :func:`adapt_model` when given one).

    Attributes:
        steps: Adam steps taken.
        best_step: the step whose weights were kept (``steps`` without validation).
        seconds: wall time of the adaptation.
        val_losses: ``(step, loss)`` of every self-validation check (empty without validation).
        stopped_early: the validation loss stopped falling before the step budget ran out.
    """

    steps: int = 0
    best_step: int = 0
    seconds: float = 0.0
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    stopped_early: bool = False


def _check_settings(steps: int, lr: float, batch_size: int) -> None:
    """One-line ``ValueError`` for adaptation settings that cannot work."""
    if steps < 0 or not lr > 0 or batch_size < 1:
        raise ValueError(
            f"adaptation needs steps >= 0, lr > 0, batch_size >= 1 (got {steps}, {lr}, {batch_size})"
        )


def _holdout(mask: torch.Tensor, share: float, hermitian: bool, g: torch.Generator) -> torch.Tensor:
    """A fixed validation set: each measured bin with probability ``share`` (partners together)."""
    u = torch.rand(mask.shape, generator=g)
    if hermitian:  # one draw per pair of partner bins
        u = share_partner_draws(u)
    return mask & (u < share)


def _val_loss(
    net: nn.Module,
    y_fit: torch.Tensor,
    m_fit: torch.Tensor,
    y_val: torch.Tensor,
    m_val: torch.Tensor,
    p_fit: torch.Tensor,
    complex_data: bool,
) -> float:
    """Mean ``|A_val f - y_val|^2`` over the held-out bins ``m_val`` of the reconstruction ``f``
    from the other measurements (``y_fit`` on ``m_fit``, keep probability ``p_fit``; all
    ``(B, H, W)``)."""
    fit = SpectralSampling(m_fit, y_fit[:, None], keep_prob=p_fit)
    z = fit.zero_filled()  # (B, 1, H, W), compensated by 1 / p_fit
    inp = to_channels(z, keepdim=True) if complex_data else z.real
    with torch.no_grad():
        out = apply_model(net, inp, fit).float()
    held = SpectralSampling(m_val, y_val)
    err = (held.forward(to_complex(out)) - held.y).abs().square()  # one channel: a real image
    return float(err.sum() / m_val.sum().clamp_min(1))


def _step(
    net: nn.Module,
    corr: MRIUndersampling,
    opt: torch.optim.Optimizer,
    pair: Pair,
    device: torch.device,
    step: int,
) -> None:
    """One adaptation step on a pair of the measurements' own split: the network (then the
    corruption's projection, unless the network ends with its own data consistency), the
    k-space loss on the held-out measurements, backward, Adam."""
    pair = pair.to(device)
    out = apply_model(net, pair.input, pair.acq)
    if not ends_with_dc(net):
        out = corr.project(out, pair.acq)
    loss = kspace_loss(out, pair.target, pair)
    if not torch.isfinite(loss):
        raise ValueError(f"adaptation: the loss is not finite at step {step} (lower the learning rate)")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


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
    batch_size: int = ADAPT_BATCH_SIZE,
    max_shift: int | None = ADAPT_MAX_SHIFT,
    seed: int = 0,
    progress: bool = False,
    validation: float = ADAPT_VALIDATION,
    check_every: int = ADAPT_CHECK_EVERY,
    patience: int = ADAPT_PATIENCE,
    report: AdaptReport | None = None,
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
        validation: share of each slice's measured bins held out for self-validated early
            stopping, in [0, 0.5); 0 adapts for exactly ``steps`` steps.
        check_every: steps between validation checks.
        patience: checks without a lower validation loss before the adaptation stops.
        report: an :class:`AdaptReport` to fill in.

    Raises:
        ValueError: no slice with measurements, mismatched shapes, a bad setting, or a loss that
            stops being finite.
    """
    _check_settings(steps, lr, batch_size)
    if not 0.0 <= validation < 0.5 or check_every < 1 or patience < 1:
        raise ValueError(
            f"adaptation needs 0 <= validation < 0.5, check_every >= 1, patience >= 1 "
            f"(got {validation}, {check_every}, {patience})"
        )
    t_start = time.perf_counter()
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
    acquired = SpectralSampling(mask.bool().cpu()).with_data(kspace.to(torch.complex64).cpu())
    mask, kspace = acquired.mask, acquired.y
    if not complex_data:  # a real image's measurements: the Hermitian completion, as in training
        kspace, mask = complete_measurements(kspace, mask)
    active = (kspace.abs().flatten(1).amax(1) > 0).nonzero().flatten()
    if active.numel() == 0:
        raise ValueError("adaptation: the scan has no slice with measurements")
    g = torch.Generator().manual_seed(int(seed))
    keep_p = p.float().expand(mask.shape)
    val = None
    if validation > 0:  # hold Gamma out of everything the adaptation learns from
        whole = SpectralSampling(mask, kspace)
        gamma = _holdout(mask, float(validation), not complex_data, g)
        fit, held = whole.restrict(~gamma), whole.restrict(gamma)
        keep_p = keep_p * (1.0 - float(validation))
        picks = active[torch.linspace(0, active.numel() - 1, min(batch_size, active.numel())).round().long()]
        val = (
            fit.y[picks].to(device), fit.mask[picks].to(device), held.y[picks].to(device),
            held.mask[picks].to(device), keep_p[picks].to(device),
        )
        kspace, mask = fit.y, fit.mask
    # the split of what the adaptation learns from: its keep probability is p (1 - validation)
    law = make_split("noisier2noise", family, keep_p[0], float(split), hermitian=not complex_data)
    shift = min(family.shape) // 4 if max_shift is None else int(max_shift)
    corr = MRIUndersampling(family, complex_data=complex_data, split=law, max_shift=shift)
    measured = pack_measured(kspace, mask, keep_p)
    opt = torch.optim.Adam(net.parameters(), lr=float(lr))
    rep = report if report is not None else AdaptReport()
    best: tuple[float, int, dict] | None = None
    bad = 0

    def check(step: int) -> bool:
        """Score the weights after ``step`` steps; True when the adaptation should stop."""
        nonlocal best, bad
        net.eval()
        loss = _val_loss(net, *val, complex_data)
        net.train()
        rep.val_losses.append((step, loss))
        if best is None or loss < best[0]:
            best = (loss, step, copy.deepcopy(net.state_dict()))
            bad = 0
        else:
            bad += 1
        return bad >= patience

    if val is not None:
        check(0)
    net.train()
    step = 0
    for step in tqdm(range(1, int(steps) + 1), desc="adapt", unit="step", disable=not progress, leave=False):
        pick = active[torch.randperm(active.numel(), generator=g)[:batch_size]]
        _step(net, corr, opt, corr.single_pair(measured[pick], generator=g, seeds=pick), device, step)
        if val is not None and (step % check_every == 0 or step == steps) and check(step):
            rep.stopped_early = step < steps
            break
    rep.steps = step
    rep.best_step = step
    if best is not None:
        net.load_state_dict(best[2])
        rep.best_step = best[1]
    rep.seconds = time.perf_counter() - t_start
    net.eval()
    return SelfEnsemble(net) if wrapped else net


def adapt_multicoil(
    model: nn.Module,
    family: MaskFamily,
    mask: torch.Tensor,
    kspace: torch.Tensor,
    maps: torch.Tensor,
    *,
    steps: int = ADAPT_STEPS,
    lr: float = ADAPT_LR,
    split: float = ADAPT_SPLIT,
    batch_size: int = ADAPT_BATCH_SIZE,
    seed: int = 0,
    progress: bool = False,
    report: AdaptReport | None = None,
) -> nn.Module:
    """A copy of a multi-coil (two-channel) ``model`` fine-tuned on one scan's coil measurements.

    The multi-coil form of :func:`adapt_model` (module docstring), as multi-coil Noisier2Noise
    trains (:meth:`~mri_n2n.corruptions.multicoil.MultiCoilUndersampling.single_pair`): each step
    splits every picked slice's sampled set by the split law of ``family``, the network sees the
    SENSE-1 zero-filled image of the input part (compensated by ``p q``) with the maps, and the
    loss is the ``1/p``-weighted k-space L2 of every coil's spectrum ``F S_c f`` on the held-out
    measured bins. No circular shifts and no early stopping (the single-coil tuning chose none).

    Args:
        model: a trained two-channel multi-coil MRI network (a
            :class:`~mri_n2n.models.ensemble.SelfEnsemble` is adapted inside and returned wrapped).
        family: the law the (coil-shared) masks were drawn from.
        mask: bool ``(N, H, W)`` sampled sets of the scan's slices.
        kspace: complex ``(N, C, H, W)`` coil measurements, in the network's units.
        maps: complex ``(N, C, H, W)`` sensitivity maps (``sum_c |S_c|^2 = 1`` on the support).
        steps, lr, split, batch_size, seed, progress, report: as :func:`adapt_model`.

    Raises:
        ValueError: no slice with measurements, mismatched shapes, a bad setting, or a loss that
            stops being finite.
    """
    _check_settings(steps, lr, batch_size)
    t_start = time.perf_counter()
    if steps == 0:
        return model
    n, _, h, w = kspace.shape if kspace.ndim == 4 else (0, 0, 0, 0)
    if kspace.ndim != 4 or maps.shape != kspace.shape or tuple(mask.shape) != (n, h, w):
        raise ValueError(
            f"multi-coil adaptation: k-space {tuple(kspace.shape)} and maps {tuple(maps.shape)} must be "
            f"(N, C, H, W) and the mask {tuple(mask.shape)} (N, H, W)"
        )
    if tuple(mask.shape[-2:]) != tuple(family.shape):
        raise ValueError(
            f"multi-coil adaptation: the law is for {family.shape}, the masks are {tuple(mask.shape[-2:])}"
        )
    wrapped = isinstance(model, SelfEnsemble)
    net = copy.deepcopy(model.module if wrapped else model)
    device = next(net.parameters()).device
    maps = maps.to(torch.complex64).cpu()
    whole = Acquisition(mask.bool().cpu(), maps).with_data(kspace.to(torch.complex64).cpu())
    mask, kspace = whole.mask, whole.y
    active = (kspace.abs().flatten(1).amax(1) > 0).nonzero().flatten()
    if active.numel() == 0:
        raise ValueError("adaptation: the scan has no slice with measurements")
    g = torch.Generator().manual_seed(int(seed))
    law = make_split("noisier2noise", family, family.keep_probability().float(), float(split))
    corr = MultiCoilUndersampling(family, coils=kspace.shape[1], split=law)  # as multi-coil N2N trains
    opt = torch.optim.Adam(net.parameters(), lr=float(lr))
    rep = report if report is not None else AdaptReport()
    net.train()
    step = 0
    for step in tqdm(range(1, int(steps) + 1), desc="adapt", unit="step", disable=not progress, leave=False):
        pick = active[torch.randperm(active.numel(), generator=g)[:batch_size]]
        pair = corr.split_measured(kspace[pick], mask[pick], maps[pick], generator=g)
        _step(net, corr, opt, pair, device, step)
    rep.steps = rep.best_step = step
    rep.seconds = time.perf_counter() - t_start
    net.eval()
    return SelfEnsemble(net) if wrapped else net
