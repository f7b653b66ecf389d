"""The corruption interface shared by the MRI and photographic experiments.

Every Noise2Noise experiment is the same loop (see ``docs/architecture.md``)::

    clean (or measured) batch --Corruption.pair--> Pair(input, target, acq, target_acq, valid)
    output = Corruption.project(apply_model(model, pair.input, pair.acq), pair.acq)
    loss   = loss_fn(output, pair.target, pair, progress)

A corruption draws *independent* corruptions for input and target (Noise2Noise) or
returns the clean image as the target (Noise2Clean). Every random draw takes an
explicit :class:`torch.Generator`; validation draws are seeded from each sample's
identity so that validation is identical across epochs and runs.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
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
        acq: the input's :class:`~mri_n2n.physics.Acquisition` (MRI): its mask, measured
            k-space ``y`` (single coil ``(B, 1, H, W)``, coils ``(B, C, H, W)`` with the maps)
            and ``keep_prob``, the law's keep probability that compensates the input. The
            model's data consistency and :meth:`Corruption.project` use it; ``None`` for
            image corruptions.
        target_acq: the acquisition of a Noise2Noise / SSDU target (MRI, noisy and split
            targets): its mask, its measurements and ``keep_prob``, the probability that weighs
            the k-space loss (:func:`mri_n2n.losses.kspace_loss`); ``None`` for clean targets.
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

    @property
    def context(self) -> dict[str, torch.Tensor]:
        """A read-only compatibility view: the string-keyed dict pairs carried before they held
        acquisitions (``mask``, ``kspace``, ``maps``, ``target_mask``, ``target_kspace``,
        ``target_density``, ``valid``), rebuilt at every call from the typed fields for the
        consumers that still read it. New code reads :attr:`acq`, :attr:`target_acq` and
        :attr:`valid`."""
        ctx: dict[str, torch.Tensor] = {}
        if self.acq is not None:
            ctx["mask"] = self.acq.mask
            if self.acq.y is not None:
                ctx["kspace"] = self.acq.y
            if self.acq.maps is not None:
                ctx["maps"] = self.acq.maps
        if self.target_acq is not None:
            ctx["target_mask"] = self.target_acq.mask
            if self.target_acq.y is not None:
                ctx["target_kspace"] = self.target_acq.y
            if self.target_acq.keep_prob is not None:
                ctx["target_density"] = self.target_acq.keep_prob
        if self.valid is not None:
            ctx["valid"] = self.valid
        return ctx

    @classmethod
    def from_context(
        cls, input: torch.Tensor | None, target: torch.Tensor | None, context: Mapping[str, torch.Tensor]
    ) -> Pair:
        """The pair a legacy context dict (keys as :attr:`context`) describes: the inverse of the
        compatibility view, for callers that still hold such dicts."""
        maps = context.get("maps")
        acq = target_acq = None
        if "mask" in context:
            acq = Acquisition(_hw_mask(context["mask"]), maps, _coil_dim(context.get("kspace"), maps))
        if "target_mask" in context:
            target_acq = Acquisition(
                _hw_mask(context["target_mask"]), maps, _coil_dim(context.get("target_kspace"), maps),
                keep_prob=context.get("target_density"),
            )
        return cls(input, target, acq, target_acq, context.get("valid"))  # type: ignore[arg-type]


def _hw_mask(mask: torch.Tensor) -> torch.Tensor:
    """A ``(B, 1, H, W)`` mask as ``(B, H, W)`` (masks are shared by channels and coils)."""
    return mask[:, 0] if mask.ndim == 4 else mask


def _coil_dim(y: torch.Tensor | None, maps: torch.Tensor | None) -> torch.Tensor | None:
    """Single-coil k-space ``(B, H, W)`` as ``(B, 1, H, W)``, like the images."""
    return y[:, None] if y is not None and maps is None and y.ndim == 3 else y


#: What :meth:`Corruption.project` and the trainer accept for an acquisition: the operator, a pair
#: (its input's), or a legacy context dict (:meth:`Pair.from_context`).
AcquisitionLike = Acquisition | Pair | Mapping[str, torch.Tensor]


def as_acquisition(acq: AcquisitionLike | None) -> Acquisition | None:
    """The input acquisition of ``acq``: itself, a pair's :attr:`Pair.acq`, or that of a legacy
    context dict (:meth:`Pair.from_context`)."""
    if acq is None or isinstance(acq, Acquisition):
        return acq
    if isinstance(acq, Pair):
        return acq.acq
    return Pair.from_context(None, None, acq).acq


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

    def project(self, output: torch.Tensor, acq: AcquisitionLike | None) -> torch.Tensor:
        """Restore the measurements of ``acq`` (a pair's :attr:`Pair.acq`) into the network
        output (identity by default)."""
        return output

    def config(self) -> dict:
        """A JSON-serialisable description, stored in checkpoints."""
        return {"name": type(self).__name__}
