"""The corruption interface shared by the MRI and photographic experiments.

Every Noise2Noise experiment is the same loop (see ``docs/architecture.md``)::

    clean (or measured) batch --Corruption.pair--> Pair(input, target, context)
    output = Corruption.project(model(pair.input), pair.context)
    loss   = loss_fn(output, pair.target, pair.context, progress)

A corruption draws *independent* corruptions for input and target (Noise2Noise) or
returns the clean image as the target (Noise2Clean). Every random draw takes an
explicit :class:`torch.Generator`; validation draws are seeded from each sample's
identity so that validation is identical across epochs and runs.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch

__all__ = ["Pair", "Corruption", "TARGETS"]

#: Allowed values of the ``target`` argument: Noise2Noise or Noise2Clean.
TARGETS = ("noisy", "clean")


@dataclass
class Pair:
    """A batch of (input, target) pairs and what the projection and loss need.

    Attributes:
        input: network input ``(B, C, H, W)``.
        target: training target ``(B, C, H, W)`` (a second corrupted observation, or clean).
        context: tensors for :meth:`Corruption.project` and the loss, e.g. ``mask``
            and ``kspace`` for MRI data consistency, ``valid`` for masked losses.
    """

    input: torch.Tensor
    target: torch.Tensor
    context: dict[str, torch.Tensor] = field(default_factory=dict)


class Corruption(abc.ABC):
    """Base class of all corruptions.

    Subclasses implement :meth:`pair` and :meth:`validation_pair`, and override
    :meth:`project` when part of the measurement must be restored exactly.
    ``task`` names the family (``"mri"`` or ``"image"``) and is stored in checkpoints.
    """

    task: str = "image"

    @abc.abstractmethod
    def pair(self, clean: torch.Tensor, *, generator: torch.Generator, target: str = "noisy") -> Pair:
        """Draw a training pair for a clean batch ``(B, C, H, W)`` on the generator's device."""

    @abc.abstractmethod
    def validation_pair(self, clean: torch.Tensor, seeds: torch.Tensor) -> Pair:
        """A deterministic validation pair; the target is the clean batch.

        Args:
            clean: clean batch ``(B, C, H, W)``.
            seeds: ``(B,)`` integer seeds, one per sample (its identity).
        """

    def project(self, output: torch.Tensor, context: dict[str, torch.Tensor]) -> torch.Tensor:
        """Restore measured information into the network output (identity by default)."""
        return output

    def config(self) -> dict:
        """A JSON-serialisable description, stored in checkpoints."""
        return {"name": type(self).__name__}
