"""Losses matched to the corruption's statistics (paper, section 3).

Every loss has the signature ``loss(output, target, context, progress) -> scalar``:
``context`` is the :class:`~mri_n2n.corruptions.Pair` context (e.g. a ``valid`` mask)
and ``progress`` in [0, 1] is the fraction of training done (used by annealed losses).

The minimiser of each loss over a constant is a statistic of the targets, which is what makes
Noise2Noise work when the target's corruption leaves that statistic unchanged:

========  ==============================================  ====================================
name      per-pixel value                                 minimiser (targets' ...)
========  ==============================================  ====================================
``l2``    ``(f - y)^2``                                   mean
``l1``    ``|f - y|``                                     median
``l0``    ``(|f - y| + 1e-8)^gamma``, gamma = 2 (1 - t)   mode (annealed, t = progress)
``hdr``   ``(f - y)^2 / (f.detach() + 0.01)^2``           mean (relative L2 for HDR images)
========  ==============================================  ====================================

**Masking.** When ``context`` holds a ``"valid"`` mask (bool or float, ``(B, 1 | C, H, W)``,
broadcast over channels), every loss is the mean over valid pixels only: invalid pixels
contribute neither to the value nor to the gradient. This is the Bernoulli experiment's rule: only pixels that
are valid in the *target* count. A mask with no valid pixel gives a loss of 0 (with a graph).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

__all__ = ["l2_loss", "l1_loss", "l0_loss", "hdr_loss", "l0_gamma", "masked_mean", "LOSSES", "get_loss"]

LossFn = Callable[[torch.Tensor, torch.Tensor, dict, float], torch.Tensor]

#: Added to ``|f - y|`` by the annealed L0 loss (paper: 1e-8) so that a zero residual stays finite.
L0_EPS = 1e-8
#: Added to the (detached) output in the HDR loss's denominator (paper: 0.01).
HDR_EPS = 0.01


def masked_mean(values: torch.Tensor, context: Mapping[str, torch.Tensor] | None) -> torch.Tensor:
    """Mean of per-pixel ``values``, over the pixels where ``context["valid"]`` is set.

    Args:
        values: per-pixel loss values ``(B, C, H, W)`` (any shape the mask broadcasts to).
        context: a pair's context; without a ``"valid"`` entry this is the plain mean.

    Returns:
        A scalar: ``sum(values * valid) / sum(valid)`` with the mask broadcast over
        channels; ``0`` (still attached to the graph) when no pixel is valid.
    """
    valid = None if context is None else context.get("valid")
    if valid is None:
        return values.mean()
    valid = valid.to(device=values.device)
    keep = (valid != 0).expand_as(values)
    weight = valid.to(values.dtype).expand_as(values)
    # sums in float32 (a float16 sum of weights overflows at 65504 pixels)
    summed = (torch.where(keep, values, torch.zeros_like(values)) * weight).sum(dtype=torch.float32)
    # no valid pixel: summed is 0 and so is the result (no host sync needed to test for it)
    return summed / weight.sum(dtype=torch.float32).clamp_min(torch.finfo(torch.float32).tiny)


def l2_loss(
    output: torch.Tensor, target: torch.Tensor, context: dict | None = None, progress: float = 0.0
) -> torch.Tensor:
    """Mean squared error: its minimiser is the conditional mean of the targets."""
    return masked_mean((output - target) ** 2, context)


def l1_loss(
    output: torch.Tensor, target: torch.Tensor, context: dict | None = None, progress: float = 0.0
) -> torch.Tensor:
    """Mean absolute error: its minimiser is the conditional median (text overlay experiment)."""
    return masked_mean((output - target).abs(), context)


def l0_gamma(progress: float) -> float:
    """The annealed L0 exponent: ``2 * (1 - progress)``, linear from 2 at the start to 0 at the end.

    ``progress`` is clamped to [0, 1].
    """
    t = min(max(float(progress), 0.0), 1.0)
    return 2.0 * (1.0 - t)


def l0_loss(
    output: torch.Tensor, target: torch.Tensor, context: dict | None = None, progress: float = 0.0
) -> torch.Tensor:
    """Annealed "L0" loss ``(|f - y| + 1e-8)^gamma``, gamma from 2 to 0 over training.

    Its minimiser moves from the mean (gamma 2) through the median (gamma 1) towards the mode
    (gamma -> 0), which survives random-valued impulse noise. At ``progress == 1`` the loss is
    constant (gamma 0) and has no gradient.
    """
    gamma = l0_gamma(progress)
    return masked_mean(((output - target).abs() + L0_EPS) ** gamma, context)


def hdr_loss(
    output: torch.Tensor, target: torch.Tensor, context: dict | None = None, progress: float = 0.0
) -> torch.Tensor:
    """Relative L2 for HDR images: ``(f - y)^2 / (f + 0.01)^2`` with the denominator *detached*.

    Detaching keeps the minimiser at the mean of the targets (a non-detached denominator would
    push outputs up to shrink the relative error, a known defect of earlier reimplementations).
    """
    denom = (output.detach() + HDR_EPS) ** 2
    return masked_mean((output - target) ** 2 / denom, context)


LOSSES: dict[str, LossFn] = {"l2": l2_loss, "l1": l1_loss, "l0": l0_loss, "hdr": hdr_loss}


def get_loss(name: str) -> LossFn:
    """Look a loss up by name; raises ``ValueError`` listing the known names."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss '{name}' (choose from {', '.join(sorted(LOSSES))})") from None
