"""Scan-specific self-supervised adaptation: fine-tune a trained network on the measurements of
the scan it is about to reconstruct, with no reference image. One function, :func:`adapt`, takes
the scan's :class:`~mri_n2n.physics.Acquisition` (any kind, one coil or several) and its law;
:func:`adapt_model` (single-coil masks and k-space) and :func:`adapt_multicoil` (coil k-space
and maps) are its forms for loose Cartesian tensors.

A network trained on one data set meets other contrasts, matrices and textures in real scans.
The scan's own undersampled k-space is enough to adapt to them, with the single-acquisition
Noisier2Noise loss the trainer already uses (:mod:`mri_n2n.splits`; in the spirit of Yaman et
al. 2022, "zero-shot self-supervised learning"): every step draws a second set of the same law
(the law's own :meth:`~mri_n2n.masks.SampleLaw.second_law`), the network sees the zero-filled
image of the doubly undersampled set (the SENSE-1 image for coil data), and the loss is the
``1/p``-weighted k-space L2 on the measured samples it did not see
(:func:`mri_n2n.losses.kspace_loss`; also weighted by the trajectory's density compensation for a
model trained with ``kspace_density``). The weights move from the trained ones for at most
:data:`ADAPT_STEPS` Adam steps at the learning rate :data:`ADAPT_LR` (chosen on tuning volumes
that share no pixel with any evaluation volume, see ``docs/results.md``), then the adapted copy
reconstructs the scan with all its measurements as usual; the trained model is not changed.

**Self-validated early stopping** (``validation > 0``; Yaman et al.'s zero-shot recipe, for every
kind and coil count): a fixed share of each slice's measured samples, the set ``Gamma`` (the law's
:meth:`~mri_n2n.masks.SampleLaw.uniform_law`: one draw per partner pair for real images), is held
out from the adaptation altogether (:meth:`~mri_n2n.physics.Acquisition.restrict`); the network
learns from the rest, ``Omega - Gamma`` (its keep probability ``p (1 - v)``), and every
``check_every`` steps it reconstructs a few slices from ``Omega - Gamma`` and is scored on how
well it predicts the measurements in ``Gamma`` it never saw. The weights with the lowest
validation loss are kept, and the adaptation stops when the loss has not fallen for ``patience``
checks: a scan the network already fits stops after a few steps, one it does not fit adapts
longer. :class:`AdaptReport` says what happened.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from ..corruptions import MRIUndersampling, Pair
from ..fft import to_complex
from ..laws import CroppedLaw
from ..losses import KSPACE_WEIGHTINGS, kspace_loss
from ..masks import SampleLaw
from ..models import apply_model, ends_with_dc
from ..models.ensemble import SelfEnsemble
from ..physics import Acquisition, CartesianAcquisition, acquisition_kind
from ..splits import SplitLaw, make_split

__all__ = [
    "ADAPT_STEPS", "ADAPT_LR", "ADAPT_SPLIT", "ADAPT_MAX_SHIFT", "ADAPT_VALIDATION", "ADAPT_CHECK_EVERY",
    "ADAPT_PATIENCE", "ADAPT_BATCH_SIZE", "ADAPT_PIXELS", "ADAPT_VISITS", "ADAPT_MIN_CROP", "AdaptPlan",
    "AdaptReport", "adapt", "adapt_model", "adapt_multicoil", "adapt_plan",
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
#: The adaptation's cost grows no faster than the scan (:func:`adapt_plan`): a step learns from
#: at most ``max(ADAPT_PIXELS, ADAPT_VISITS x scan pixels / steps)`` image pixels (two 128 x 128
#: slices' worth, the budget the defaults were tuned at, or ``ADAPT_VISITS`` pixel-steps per
#: pixel of a larger scan), from exact windows of the readout of larger line-sampled slices.
ADAPT_PIXELS = 2 * 128 * 128
ADAPT_VISITS = 3.0
#: The shortest window (rows of the readout) the adaptation learns from.
ADAPT_MIN_CROP = 64


@dataclass
class AdaptReport:
    """What an adaptation did (filled in by :func:`adapt`, which also returns it).

    Attributes:
        steps: Adam steps taken.
        best_step: the step whose weights were kept (``steps`` without validation).
        seconds: wall time of the adaptation.
        val_losses: ``(step, loss)`` of every self-validation check (empty without validation).
        stopped_early: the validation loss stopped falling before the step budget ran out.
        split: the held-out share the adaptation used: the asked one, or the largest of
            :data:`FALLBACK_SPLITS` below it that the law's second mask can hold out (a small
            matrix with a large fully sampled centre leaves few lines to hold out).
        crop: the readout window (rows) each step learned from (:func:`adapt_plan`); ``None``:
            whole slices.
    """

    steps: int = 0
    best_step: int = 0
    seconds: float = 0.0
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    stopped_early: bool = False
    split: float = 0.0
    crop: int | None = None


#: Held-out shares tried, in order, below the asked one when the law's second mask cannot hold
#: the asked share out (:func:`adapt`).
FALLBACK_SPLITS = (0.3, 0.2, 0.1)


def _second_split(law: SampleLaw, p: torch.Tensor, split: float, real: bool) -> tuple[SplitLaw, float]:
    """Noisier2Noise's split of the adaptation at the share ``split``, or at the largest share of
    :data:`FALLBACK_SPLITS` below it that the law allows; ``(split law, share used)``.

    Raises:
        ValueError: not even the smallest share can be held out.
    """
    *larger, last = [float(split), *(v for v in FALLBACK_SPLITS if v < float(split))]
    for share in larger:
        try:
            return make_split("noisier2noise", law, p, share, hermitian=real), share
        except ValueError:
            continue
    return make_split("noisier2noise", law, p, last, hermitian=real), last


@dataclass(frozen=True)
class AdaptPlan:
    """How the adaptation's steps see a scan (:func:`adapt_plan`).

    Attributes:
        length: rows of the readout window each step learns from (``None``: whole slices).
        batch: slices (or windows) per step.
        steps: Adam steps (fewer than asked only for large scans without exact windows).
    """

    length: int | None
    batch: int
    steps: int


def adapt_plan(
    acq: Acquisition,
    slices: int,
    batch_size: int,
    steps: int,
    pixels: int | None = ADAPT_PIXELS,
    visits: float = ADAPT_VISITS,
) -> AdaptPlan:
    """The adaptation's plan for a scan of ``slices`` slices with measurements, so that its cost
    grows no faster than the scan's pixels ``N`` (each step costs about its image pixels).

    A step learns from at most ``P = max(pixels, visits N / steps)`` image pixels: two 128 x 128
    slices' worth for every scan up to about ``pixels x steps / visits`` pixels (the budget the
    defaults were tuned at), and ``visits`` pixel-steps per scan pixel beyond. When
    ``batch_size`` whole slices hold more, slices with exact windows
    (:meth:`~mri_n2n.acquisition.Acquisition.crop_axis`: whole Cartesian lines, their readout
    fully sampled) learn from windows of ``P / (slices x W)`` readout rows (at least
    :data:`ADAPT_MIN_CROP`, with fewer slices per step when those exceed ``P``); other scans
    (2-D masks) learn from whole slices, one per step, for ``P x steps / (H W)`` steps (at least
    one). ``pixels=None``: whole slices, the steps asked.
    """
    h, w = (int(v) for v in acq.image_shape)
    if pixels is None or steps <= 0:
        return AdaptPlan(None, int(batch_size), int(steps))
    budget = max(float(pixels), float(visits) * max(int(slices), 1) * h * w / int(steps))
    if batch_size * h * w <= budget:
        return AdaptPlan(None, int(batch_size), int(steps))
    if acq.crop_axis() == -2:
        length = max(min(ADAPT_MIN_CROP, h), min(h, int(budget // (batch_size * w))))
        batch = max(1, min(int(batch_size), int(budget // (length * w))))
        return AdaptPlan(None if length >= h else length, batch, int(steps))
    batch = max(1, min(int(batch_size), int(budget // (h * w))))
    return AdaptPlan(None, batch, max(1, min(int(steps), round(budget * steps / (batch * h * w)))))


def _check_settings(steps: int, lr: float, batch_size: int) -> None:
    """One-line ``ValueError`` for adaptation settings that cannot work."""
    if steps < 0 or not lr > 0 or batch_size < 1:
        raise ValueError(
            f"adaptation needs steps >= 0, lr > 0, batch_size >= 1 (got {steps}, {lr}, {batch_size})"
        )


def _check_validation(validation: float, check_every: int, patience: int) -> None:
    if not 0.0 <= validation < 0.5 or check_every < 1 or patience < 1:
        raise ValueError(
            f"adaptation needs 0 <= validation < 0.5, check_every >= 1, patience >= 1 "
            f"(got {validation}, {check_every}, {patience})"
        )


def _val_loss(
    net: nn.Module, fit: Acquisition, held: Acquisition, channels: int, weighting: str = "inverse"
) -> float:
    """Mean ``|A_held f - y_held|^2`` over the held-out measurements of the reconstruction ``f``
    from the other measurements ``fit`` (compensated by their keep probability); ``weighting=
    "density"`` weighs each measurement by the kind's density compensation, as the loss."""
    inp = fit.channels_of(fit.zero_filled(), channels)
    with torch.no_grad():
        out = apply_model(net, inp, fit).float()
    f = held.image_of(to_complex(out, keepdim=True) if out.shape[1] == 1 else out)
    err = held.residual(f).abs().square()  # one channel: a real image
    d = held.density() if weighting == "density" else None
    if d is not None:  # the mean stays a mean: weights of mean 1 over the held-out measurements
        d = torch.broadcast_to(d.to(err.device, err.dtype), err.shape)
        sel = torch.broadcast_to(held.expand_samples(held.sampled), err.shape)
        err = err * d / d[sel].mean().clamp_min(torch.finfo(d.dtype).tiny)
    count = torch.broadcast_to(held.expand_samples(held.sampled), err.shape).sum()
    return float(err.sum() / count.clamp_min(1))


def _step(
    net: nn.Module,
    corr: MRIUndersampling,
    opt: torch.optim.Optimizer,
    pair: Pair,
    device: torch.device,
    step: int,
    weighting: str = "inverse",
) -> None:
    """One adaptation step on a pair of the measurements' own split: the network (then the
    corruption's data consistency, unless the network ends with its own), the k-space loss on
    the held-out measurements, backward, Adam."""
    pair = pair.to(device)
    out = apply_model(net, pair.input, pair.acq)
    if not ends_with_dc(net):
        out = corr.data_consistency(out, pair.acq)
    loss = kspace_loss(out, pair.target, pair, weighting=weighting)
    if not torch.isfinite(loss):
        raise ValueError(f"adaptation: the loss is not finite at step {step} (lower the learning rate)")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def adapt(
    model: nn.Module,
    acq: Acquisition,
    law: SampleLaw,
    *,
    real: bool = False,
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
    pixels: int | None = ADAPT_PIXELS,
    visits: float = ADAPT_VISITS,
    report: AdaptReport | None = None,
    weighting: str = "inverse",
) -> tuple[nn.Module, AdaptReport]:
    """A copy of ``model`` fine-tuned on one scan's measurements (module docstring), for every
    acquisition kind and coil count.

    Args:
        model: a trained MRI network (a :class:`~mri_n2n.models.ensemble.SelfEnsemble` is
            adapted inside and returned wrapped).
        acq: the scan's acquisition, one slice per sample: its sampled sets ``(N, *sample_shape)``
            and measurements (coil data with their maps), in the network's units (normalised as
            in training); slices without measurements are skipped.
        law: the law the sets were drawn from (its keep probability weighs the loss and
            compensates the inputs, as in training; its second law splits the measurements).
        real: the network reconstructs real images (one channel): the measurements are
            completed by the kind's symmetry (Cartesian: Hermitian) and the splits are symmetric;
            coil data are complex.
        steps: Adam steps (0 returns ``model`` itself).
        lr: learning rate.
        split: expected share of each acquisition held out for the loss, in (0, 1).
        batch_size: slices per step.
        max_shift: random circular shifts of the data up to this many pixels (a phase ramp of the
            measurements, as in training; kinds that admit shifts); ``None``: a quarter of the
            smaller side.
        seed: seeds the slice choice, the validation set and the second sets.
        progress: show a progress bar.
        validation: share of each slice's measured samples held out for self-validated early
            stopping, in [0, 0.5); 0 adapts for exactly ``steps`` steps.
        check_every: steps between validation checks.
        patience: checks without a lower validation loss before the adaptation stops.
        pixels: the smallest budget of image pixels per step of :func:`adapt_plan` (large scans
            learn from exact readout windows, or take fewer steps, so that the cost grows no
            faster than the scan); ``None``: whole slices and the steps asked.
        visits: pixel-steps per scan pixel of :func:`adapt_plan` beyond that budget.
        report: an :class:`AdaptReport` to fill in (default: a new one).
        weighting: the k-space loss's weighting (:func:`~mri_n2n.losses.kspace_loss`): the one
            the model trained with (``"density"`` for a ``kspace_density`` model off the grid).

    Returns:
        ``(adapted model, report)``.

    Raises:
        ValueError: no slice with measurements, a law of other samples, a bad setting, or a
            loss that stops being finite.
    """
    _check_settings(steps, lr, batch_size)
    _check_validation(validation, check_every, patience)
    if weighting not in KSPACE_WEIGHTINGS:
        raise ValueError(f"adaptation: the loss weighting must be one of {KSPACE_WEIGHTINGS}: {weighting!r}")
    rep = report if report is not None else AdaptReport()
    t_start = time.perf_counter()
    if steps == 0:
        return model, rep
    if acq.y is None:
        raise ValueError("adaptation: the acquisition holds no measurements")
    if tuple(acq.sample_shape) != tuple(law.shape):
        raise ValueError(
            f"adaptation: the law is for samples {tuple(law.shape)}, the scan's are {tuple(acq.sample_shape)}"
        )
    if real and acq.multicoil:
        raise ValueError("adaptation: coil data are complex (real=False)")
    wrapped = isinstance(model, SelfEnsemble)
    net = copy.deepcopy(model.module if wrapped else model)
    device = next(net.parameters()).device
    channels = 1 if real else 2
    p = (law.real_keep_probability() if real else law.keep_probability()).float()
    whole = acq.to("cpu")
    whole = whole.with_data(whole.y.to(torch.complex64))
    if real:  # a real image's measurements: the completion, as in training
        whole = whole.observe(whole.y, whole.sampled, None, real=True)
    active = (whole.y.abs().flatten(1).amax(1) > 0).nonzero().flatten()
    if active.numel() == 0:
        raise ValueError("adaptation: the scan has no slice with measurements")
    n = int(whole.y.shape[0])
    g = torch.Generator().manual_seed(int(seed))
    val = None
    if validation > 0:  # hold Gamma out of everything the adaptation learns from
        gamma = whole.sampled & law.uniform_law(float(validation), hermitian=real).sample(n, generator=g)
        held = whole.restrict(gamma)
        p = p * (1.0 - float(validation))
        whole = whole.restrict(~gamma, p)
        picks = active[torch.linspace(0, active.numel() - 1, min(batch_size, active.numel())).round().long()]
        val = (whole.batch(picks).to(device), held.batch(picks).to(device))
    else:
        whole = whole.restrict(whole.sampled, p)
    # large scans: each step learns from exact windows of the readout, or fewer steps (adapt_plan)
    plan = adapt_plan(whole, active.numel(), batch_size, int(steps), pixels, visits)
    length, batch_size, steps = plan.length, plan.batch, plan.steps
    image_shape = tuple(acq.image_shape)
    if length is not None:
        law = CroppedLaw(law, length, axis=-2)
        p = p[..., :length, :]
        image_shape = (length, image_shape[1])
        rep.crop = length
    # the split of what the adaptation learns from: its keep probability is p (1 - validation)
    second, rep.split = _second_split(law, p, float(split), real)
    shift = min(image_shape) // 4 if max_shift is None else int(max_shift)
    kind = acquisition_kind(acq.kind)
    corr = MRIUndersampling(
        law, kind=kind, image_shape=image_shape, complex_data=not real, split=second, max_shift=shift
    )
    height = int(acq.image_shape[0])
    opt = torch.optim.Adam(net.parameters(), lr=float(lr))
    best: tuple[float, int, dict] | None = None
    bad = 0

    def check(step: int) -> bool:
        """Score the weights after ``step`` steps; True when the adaptation should stop."""
        nonlocal best, bad
        net.eval()
        loss = _val_loss(net, *val, channels, weighting)
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
        part = whole.batch(pick)
        if length is not None:  # a random window of each slice's readout
            part = part.cropped(torch.randint(0, height, (pick.numel(),), generator=g), length)
        _step(net, corr, opt, corr.single_pair(part, generator=g, seeds=pick), device, step, weighting)
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
    return (SelfEnsemble(net) if wrapped else net), rep


def adapt_model(
    model: nn.Module,
    family: SampleLaw,
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
    """:func:`adapt` of a single-coil Cartesian scan given as loose tensors.

    Args:
        model: a trained MRI network.
        family: the law the masks were drawn from.
        mask: bool ``(N, H, W)`` sampled sets of the scan's slices (Hermitian-complete for real
            images).
        kspace: complex ``(N, H, W)`` measurements, in the network's units (normalised as in
            training); all-zero slices are skipped.
        complex_data: two-channel (complex) network; a one-channel network needs measurements of
            real images.
        steps: Adam steps, and ``lr``, ``split``, ``batch_size``, ``max_shift``, ``seed``,
            ``progress``, ``validation``, ``check_every``, ``patience``, ``report``: as
            :func:`adapt`.

    Raises:
        ValueError: no slice with measurements, mismatched shapes, a bad setting, or a loss that
            stops being finite.
    """
    _check_settings(steps, lr, batch_size)
    _check_validation(validation, check_every, patience)
    if steps == 0:
        return model
    if mask.shape != kspace.shape or mask.ndim != 3 or tuple(mask.shape[-2:]) != tuple(family.shape):
        raise ValueError(
            f"adaptation: mask {tuple(mask.shape)} and k-space {tuple(kspace.shape)} must both be (N, H, W) "
            f"with (H, W) = {tuple(family.shape)}"
        )
    acq = CartesianAcquisition(mask.bool().cpu(), None, kspace.to(torch.complex64).cpu()[:, None])
    net, _ = adapt(
        model, acq, family, real=not complex_data, steps=steps, lr=lr, split=split, batch_size=batch_size,
        max_shift=max_shift, seed=seed, progress=progress, validation=validation, check_every=check_every,
        patience=patience, report=report,
    )
    return net


def adapt_multicoil(
    model: nn.Module,
    family: SampleLaw,
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
    """:func:`adapt` of a multi-coil Cartesian scan given as loose tensors (a two-channel
    ``model``), as multi-coil Noisier2Noise trains: each step splits every picked slice's sampled
    set by the second law of ``family``, the network sees the SENSE-1 zero-filled image of the
    input part (compensated by ``p q``) with the maps, and the loss is the ``1/p``-weighted
    k-space L2 of every coil's spectrum ``F S_c f`` on the held-out measured bins. No circular
    shifts and no early stopping (the single-coil tuning chose none).

    Args:
        model: a trained two-channel multi-coil MRI network.
        family: the law the (coil-shared) masks were drawn from.
        mask: bool ``(N, H, W)`` sampled sets of the scan's slices.
        kspace: complex ``(N, C, H, W)`` coil measurements, in the network's units.
        maps: complex ``(N, C, H, W)`` sensitivity maps (``sum_c |S_c|^2 = 1`` on the support).
        steps: Adam steps, and ``lr``, ``split``, ``batch_size``, ``seed``, ``progress``,
            ``report``: as :func:`adapt`.

    Raises:
        ValueError: no slice with measurements, mismatched shapes, a bad setting, or a loss that
            stops being finite.
    """
    _check_settings(steps, lr, batch_size)
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
    acq = CartesianAcquisition(
        mask.bool().cpu(), maps.to(torch.complex64).cpu(), kspace.to(torch.complex64).cpu()
    )
    net, _ = adapt(
        model, acq, family, steps=steps, lr=lr, split=split, batch_size=batch_size, max_shift=0, seed=seed,
        progress=progress, report=report,
    )
    return net
