"""Losses matched to the corruption's statistics (paper, section 3).

Every loss has the signature ``loss(output, target, context, progress) -> scalar``:
``context`` is the :class:`~mri_n2n.corruptions.Pair` context (e.g. a ``valid`` mask)
and ``progress`` in [0, 1] is the fraction of training done (used by annealed losses).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["l2_loss", "LOSSES", "get_loss"]

LossFn = Callable[[torch.Tensor, torch.Tensor, dict, float], torch.Tensor]


def l2_loss(output: torch.Tensor, target: torch.Tensor, context: dict | None = None, progress: float = 0.0):
    """Mean squared error: its minimiser is the conditional mean of the targets."""
    return torch.mean((output - target) ** 2)


LOSSES: dict[str, LossFn] = {"l2": l2_loss}


def get_loss(name: str) -> LossFn:
    """Look a loss up by name; raises ``ValueError`` listing the known names."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss '{name}' (choose from {', '.join(sorted(LOSSES))})") from None
