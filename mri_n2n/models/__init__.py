"""Network architectures and a name-based registry.

Every model carries a JSON-serialisable ``spec = {"name": ..., "kwargs": {...}}`` such that
``build_model(spec["name"], **spec["kwargs"])`` rebuilds the same architecture; checkpoints store
it (see :mod:`mri_n2n.checkpoint`).

Registered names:

- ``"unet_paper"`` -- :meth:`UNet.paper` (kwargs ``in_channels``, ``out_channels``, ``width``):
  the paper's Table 2 network;
- ``"unet"`` -- :meth:`UNet.plain` (kwargs ``in_channels``, ``out_channels``, ``base``, ``depth``):
  the conventional, faster U-Net (CPU default);
- ``"unet_custom"`` -- :class:`UNet` with an explicit layout (the spec of a directly built UNet);
- ``"red30"`` -- :class:`RED30` (kwargs ``in_channels``, ``out_channels``, ``features``,
  ``num_layers``): the RED30 network of the paper's Gaussian row;
- ``"unrolled"`` -- :class:`Unrolled` (kwargs ``in_channels``, ``out_channels``, ``cascades``,
  ``width``, ``depth``, ``share_weights``, ``block``): cascades of a small CNN and exact data
  consistency. Its ``uses_measurements`` attribute is ``True``: call it as ``model(x, acq)``
  with the batch's :class:`~mri_n2n.physics.Acquisition` (:func:`apply_model` does it for any
  model); with ``dc="prox"`` its output is final (see :func:`ends_with_dc`).

**Adding a model** is one registered class (:func:`register_model`): it becomes a ``--model``
choice, a config value, a network the trainer builds (its ``from_config(cfg, channels)``) and a
spec that checkpoints rebuild (:func:`build_model`)::

    @register_model("tiny_res")
    class TinyRes(nn.Module):
        @classmethod
        def from_config(cls, cfg, channels):
            return cls(channels, width=cfg.cascade_width)
        ...  # __init__ sets self.spec = {"name": "tiny_res", "kwargs": {...}}; forward
"""

from __future__ import annotations

import torch
from torch import nn

from ..physics import Acquisition
from ..registry import NameView
from .red import RED30
from .registry import ModelEntry, build_model, model_from_config, model_names, register_model
from .unet import UNet
from .unrolled import Unrolled

__all__ = [
    "UNet", "RED30", "Unrolled", "build_model", "uses_measurements", "apply_model", "ends_with_dc",
    "MODEL_NAMES", "ModelEntry", "register_model", "model_names", "model_from_config",
]

MODEL_NAMES = NameView(model_names)
"""Every registered model name, always current: a :class:`~mri_n2n.registry.NameView` of
:func:`~mri_n2n.models.registry.model_names` (the built-in ones and those registered since)."""


def apply_model(model: nn.Module, x: torch.Tensor, acq: Acquisition | None = None) -> torch.Tensor:
    """Run ``model`` on the input ``x`` of a batch acquired by ``acq``: ``model(x, acq)`` for
    networks that take measurements (unrolled nets, :func:`uses_measurements`) and for a
    :class:`~mri_n2n.models.ensemble.SelfEnsemble` (which reads the mask's geometry),
    ``model(x)`` for the others."""
    if acq is not None and (uses_measurements(model) or getattr(model, "needs_mask_geometry", False)):
        return model(x, acq)
    return model(x)


def uses_measurements(model: nn.Module) -> bool:
    """Whether ``model`` takes the acquisition, ``model(x, acq)`` (unrolled nets); looks through DDP and
    ``torch.compile`` wrappers."""
    for attr in ("module", "_orig_mod"):
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module):
            return uses_measurements(inner)
    return bool(getattr(model, "uses_measurements", False))


def ends_with_dc(model: nn.Module) -> bool:
    """Whether ``model``'s output is final: it ends with its own learned data consistency
    (an unrolled net with ``dc="prox"``), so callers must not apply the corruption's projection
    again. Looks through DDP and ``torch.compile`` wrappers."""
    for attr in ("module", "_orig_mod"):
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module):
            return ends_with_dc(inner)
    return bool(getattr(model, "ends_with_dc", False))
