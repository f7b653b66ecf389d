"""The optimiser schedules: learning rate and Adam beta1 as functions of the step.

``--schedule`` chooses one (:data:`SCHEDULES`):

- ``cosine`` (every preset but ``paper``): a sigmoid ramp-up ``exp(-5 (1 - t)^2)`` over the
  first ``--rampup`` fraction of the steps, then constant, then ``(0.5 + 0.5 cos(pi t))^2``
  over the last ``--rampdown`` fraction; beta1 stays 0.9. Step-wise and smooth.
- ``paper`` (``--preset paper``): the schedule of the authors' MRI code (NVlabs/noise2noise,
  ``train_mri.py``), set once per epoch. With ``e`` the 0-based epoch and ``E`` the number of
  epochs::

      up(e)   = exp(-5 (1 - e / 10)^2)            for e < 10, else 1      (10-epoch ramp-up)
      down(e) = exp(-((e - (E - 30)) / 2)^2 / 30)  for e >= E - 30, else 1 (30-epoch ramp-down)
      lr      = lr_max * up(e) * down(e)
      beta1   = 0.9 * down(e) + 0.5 * (1 - down(e))                       (0.9 -> 0.5)

  The lengths are fixed in epochs as in the reference (``--rampup``/``--rampdown`` do not
  apply); runs shorter than 40 epochs overlap the ramps exactly as the reference would.
  Adam's bias correction differs in form: TensorFlow divides by ``1 - `` the product of the
  beta1 values of all steps, PyTorch by ``1 - beta1^step`` with the current beta1; both are 1
  in floating point once ``0.9^step < 1e-16`` (about 350 steps at beta1 0.9), long before a
  300-epoch run's ramp-down starts, so the updates agree.

Everything is a function of the step alone, so a resumed run recomputes the same values.
"""

from __future__ import annotations

import math

from ..config import Config

__all__ = [
    "SCHEDULES",
    "ADAM_BETA1",
    "PAPER_RAMPUP_EPOCHS",
    "PAPER_RAMPDOWN_EPOCHS",
    "PAPER_BETA1_RAMPDOWN",
    "cosine_factor",
    "paper_factors",
    "optimizer_schedule",
    "learning_rate",
]

#: ``--schedule`` values.
SCHEDULES = ("cosine", "paper")
#: Adam beta1 outside the paper schedule's ramp-down (and its starting value).
ADAM_BETA1 = 0.9
PAPER_RAMPUP_EPOCHS = 10
PAPER_RAMPDOWN_EPOCHS = 30
#: The beta1 that the paper schedule moves towards during its ramp-down (reached as ``down -> 0``).
PAPER_BETA1_RAMPDOWN = 0.5


def cosine_factor(step: int, total: int, rampup: float, rampdown: float) -> float:
    """The ``cosine`` schedule's multiplier of the peak learning rate at ``step`` of ``total``."""
    frac = step / max(total, 1)
    factor = 1.0
    if rampup > 0 and frac < rampup:
        factor *= math.exp(-5.0 * (1.0 - frac / rampup) ** 2)
    if rampdown > 0 and frac > 1.0 - rampdown:
        t = (frac - (1.0 - rampdown)) / rampdown
        factor *= (0.5 + 0.5 * math.cos(math.pi * min(t, 1.0))) ** 2
    return factor


def paper_factors(epoch: int, num_epochs: int) -> tuple[float, float]:
    """The reference's ``(up, down)`` factors at 0-based ``epoch`` of ``num_epochs`` (see the
    module docstring)."""
    up = 1.0
    if epoch < PAPER_RAMPUP_EPOCHS:
        p = 1.0 - max(0.0, float(epoch)) / PAPER_RAMPUP_EPOCHS
        up = math.exp(-5.0 * p * p)
    down = 1.0
    start = num_epochs - PAPER_RAMPDOWN_EPOCHS
    if epoch >= start:
        half = (epoch - start) * 0.5
        down = math.exp(-(half * half) / PAPER_RAMPDOWN_EPOCHS)
    return up, down


def optimizer_schedule(
    step: int, total: int, cfg: Config, steps_per_epoch: int | None = None
) -> tuple[float, float]:
    """``(learning rate, Adam beta1)`` for optimisation ``step`` (0-based) of ``total``.

    ``cfg.schedule`` picks the schedule (``None``, an unresolved config, is ``cosine``); the
    ``paper`` schedule needs ``steps_per_epoch`` (its epoch is ``step // steps_per_epoch`` and
    it has ``ceil(total / steps_per_epoch)`` epochs).

    Raises:
        ValueError: an unknown schedule, or ``paper`` without ``steps_per_epoch``.
    """
    name = cfg.schedule or "cosine"
    if name == "cosine":
        return cfg.lr * cosine_factor(step, total, cfg.rampup, cfg.rampdown), ADAM_BETA1
    if name != "paper":
        raise ValueError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")
    if not steps_per_epoch or steps_per_epoch < 1:
        raise ValueError("the paper schedule is per epoch: give steps_per_epoch >= 1")
    up, down = paper_factors(step // steps_per_epoch, math.ceil(max(total, 1) / steps_per_epoch))
    beta1 = down * ADAM_BETA1 + (1.0 - down) * PAPER_BETA1_RAMPDOWN
    return cfg.lr * up * down, beta1


def learning_rate(step: int, total: int, cfg: Config, steps_per_epoch: int | None = None) -> float:
    """The learning rate of :func:`optimizer_schedule`."""
    return optimizer_schedule(step, total, cfg, steps_per_epoch)[0]
