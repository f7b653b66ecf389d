"""The model registry: a network is a ``--model`` choice once it is registered.

:func:`register_model` records, under a name, the factory that :func:`build_model` calls with a
checkpoint's ``spec["kwargs"]`` and how the network is built from a run config (its
``from_config(cfg, channels)`` classmethod, or one given at registration). The registry sits
below :mod:`mri_n2n.config`, so the config is read by attribute (``cfg.width``, ``cfg.base``,
...) and never imported here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from ..registry import Registry

__all__ = ["ModelEntry", "register_model", "model_names", "build_model", "model_from_config"]

F = TypeVar("F", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelEntry:
    """A registered network.

    Attributes:
        name: its ``--model`` name and ``spec["name"]``.
        factory: ``factory(**spec["kwargs"])`` builds it (:func:`build_model`).
        from_config: ``from_config(cfg, channels)`` builds it for a run config with ``channels``
            in and out (:func:`model_from_config`).
    """

    name: str
    factory: Callable[..., nn.Module]
    from_config: Callable[[Any, int], nn.Module]


_REGISTRY: Registry[ModelEntry] = Registry("model")


def register_model(
    name: str,
    factory: Callable[..., nn.Module] | None = None,
    *,
    from_config: Callable[[Any, int], nn.Module] | None = None,
) -> Any:
    """Register a network under ``name``; returns it unchanged (usable as a class decorator).

    ``@register_model("tiny")`` on a class registers the class as its own factory, built from a
    config by its ``from_config(cfg, channels)`` classmethod when it has one, else as
    ``cls(in_channels=channels, out_channels=channels)``. ``register_model(name, factory,
    from_config=...)`` registers a factory (e.g. an alternative constructor) directly.

    Args:
        name: the ``--model`` name; the model's ``spec["name"]`` must be it, so checkpoints
            rebuild it with :func:`build_model`.
        factory: the callable :func:`build_model` calls with a spec's kwargs (decorator form:
            the decorated class or function).
        from_config: ``(cfg, channels) -> model`` (default: the factory's ``from_config``
            attribute, else the factory with ``in_channels`` and ``out_channels`` only).

    Raises:
        ValueError: ``name`` is registered already by another factory.
    """

    def add(fn: F) -> F:
        build = from_config or getattr(fn, "from_config", None)
        if build is None:

            def build(cfg: Any, channels: int) -> nn.Module:
                return fn(in_channels=channels, out_channels=channels)

        _REGISTRY.add(name, ModelEntry(name, fn, build), fn)
        return fn

    return add if factory is None else add(factory)


def model_names() -> tuple[str, ...]:
    """Every registered model name (the ``--model`` choices), in registration order."""
    return _REGISTRY.names()


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model by name, e.g. ``build_model("unet_paper", in_channels=1)``.

    Args:
        name: one of :func:`model_names`.
        **kwargs: keyword arguments of that model's constructor (its ``spec["kwargs"]``).

    Returns:
        The model, freshly initialised; its ``spec`` rebuilds it.

    Raises:
        ValueError: unknown ``name`` (the message lists the known names).
    """
    return _REGISTRY.get(name).factory(**kwargs)


def model_from_config(cfg: Any, channels: int) -> nn.Module:
    """The network ``cfg.model`` names, built by its registered ``from_config`` for ``channels``
    in and out (``cfg`` is a resolved :class:`~mri_n2n.config.Config`, or one whose ``None``
    fields were given their fallbacks).

    Raises:
        ValueError: unknown ``cfg.model`` (the message lists the known names).
    """
    return _REGISTRY.get(cfg.model).from_config(cfg, channels)
