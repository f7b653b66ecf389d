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
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..physics import Acquisition
from .red import RED30
from .unet import UNet
from .unrolled import Unrolled

__all__ = [
    "UNet", "RED30", "Unrolled", "build_model", "uses_measurements", "apply_model", "ends_with_dc",
    "MODEL_NAMES",
]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "unet_paper": UNet.paper,
    "unet": UNet.plain,
    "unet_custom": UNet,
    "red30": RED30,
    "unrolled": Unrolled,
}

MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)
"""Names accepted by :func:`build_model`."""


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model by name, e.g. ``build_model("unet_paper", in_channels=1)``.

    Args:
        name: one of :data:`MODEL_NAMES`.
        **kwargs: keyword arguments of that model's constructor (its ``spec["kwargs"]``).

    Returns:
        The model, freshly initialised; its ``spec`` rebuilds it.

    Raises:
        ValueError: unknown ``name`` (the message lists the known names).
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}") from None
    return factory(**kwargs)


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
