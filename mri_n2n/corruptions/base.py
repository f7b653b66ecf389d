"""The corruption interface shared by the MRI and photographic experiments.

Every Noise2Noise experiment is the same loop (see ``docs/architecture.md``)::

    clean (or measured) batch --Corruption.pair--> Pair(input, target, acq, target_acq, valid)
    output = Corruption.data_consistency(apply_model(model, pair.input, pair.acq), pair.acq)
    loss   = loss_fn(output, pair.target, pair, progress)

A corruption draws *independent* corruptions for input and target (Noise2Noise) or
returns the clean image as the target (Noise2Clean). Every random draw takes an
explicit :class:`torch.Generator`; validation draws are seeded from each sample's
identity so that validation is identical across epochs and runs.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

from ..physics import Acquisition

__all__ = ["Pair", "Corruption", "TARGETS", "AcquisitionLike", "as_acquisition"]

#: Allowed values of the ``target`` argument: Noise2Noise or Noise2Clean.
TARGETS = ("noisy", "clean")


@dataclass
class Pair:
    """A batch of (input, target) pairs and what the projection and the loss need.

    Attributes:
        input: network input ``(B, C, H, W)``.
        target: training target ``(B, C, H, W)`` (a second corrupted observation, or clean).
        acq: the input's :class:`~mri_n2n.physics.Acquisition` (MRI): its sampled set, its
            measurements ``y`` (with the maps for coil data) and ``keep_prob``, the law's keep
            probability that compensates the input. The model's data consistency and
            :meth:`Corruption.data_consistency` use it; ``None`` for image corruptions.
        target_acq: the acquisition of a Noise2Noise / SSDU target (MRI, noisy and split
            targets): its sampled set, its measurements and ``keep_prob``, the probability that
            weighs the k-space loss (:func:`mri_n2n.losses.kspace_loss`); ``None`` for clean
            targets.
        valid: the masked-loss map (bool or float, broadcast over channels): only these pixels
            of the target count in a per-pixel loss (:func:`mri_n2n.losses.masked_mean`).
    """

    input: torch.Tensor
    target: torch.Tensor
    acq: Acquisition | None = None
    target_acq: Acquisition | None = None
    valid: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Pair:
        """The same pair on ``device`` (tensors and acquisitions)."""
        def mv(a: Acquisition | None) -> Acquisition | None:
            return None if a is None else a.to(device)

        valid = None if self.valid is None else self.valid.to(device)
        return Pair(self.input.to(device), self.target.to(device), mv(self.acq), mv(self.target_acq), valid)


#: What :meth:`Corruption.data_consistency` and the trainer accept for an acquisition: the operator, or a
#: pair (its input's).
AcquisitionLike = Acquisition | Pair


def as_acquisition(acq: AcquisitionLike | None) -> Acquisition | None:
    """The input acquisition of ``acq``: itself, or a pair's :attr:`Pair.acq`."""
    return acq.acq if isinstance(acq, Pair) else acq


class Corruption(abc.ABC):
    """Base class of all corruptions.

    Subclasses implement :meth:`pair` and :meth:`validation_pair`, and override
    :meth:`data_consistency` when part of the measurement must be restored exactly.
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

    def data_consistency(self, output: torch.Tensor, acq: AcquisitionLike | None) -> torch.Tensor:
        """Restore the measurements of ``acq`` (a pair's :attr:`Pair.acq`) into the network
        output (identity by default)."""
        return output

    def project(self, output: torch.Tensor, acq: AcquisitionLike | None) -> torch.Tensor:
        """:meth:`data_consistency` (its historical name)."""
        return self.data_consistency(output, acq)

    def config(self) -> dict:
        """A JSON-serialisable description, stored in checkpoints."""
        return {"name": type(self).__name__}
