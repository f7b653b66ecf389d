"""Generic photographic Noise2Noise: the paper's noise types, datasets, and their default losses.

The image experiments use the same trainer as MRI; this package supplies the pieces that
differ:

- :func:`make_corruption` -- a :class:`~mri_n2n.corruptions.Corruption` by name (:data:`NOISES`),
  see :mod:`mri_n2n.images.noise` for the training ranges and test levels;
- :func:`default_loss` -- the paper's loss for each noise (``--loss`` overrides it);
- :func:`build_image_datasets` -- ``(train, valid)`` datasets, see :mod:`mri_n2n.images.datasets`.

Example::

    from mri_n2n.images import build_image_datasets, make_corruption, default_loss
    train_ds, valid_ds = build_image_datasets("images", crop=64)
    corruption = make_corruption("text")
    pair = corruption.pair(batch, generator=g)           # independent input and target
    loss = get_loss(default_loss("text"))(model(pair.input), pair.target, pair.context, progress)
"""

from __future__ import annotations

from typing import Any

from .datasets import DATASETS, ImageDataset, build_image_datasets, load_image, stable_id
from .hdr import read_hdr, tonemap
from .noise import (
    BernoulliNoise,
    GaussianNoise,
    ImageCorruption,
    ImpulseNoise,
    MonteCarloPairs,
    NoisyPairs,
    PoissonNoise,
    TextOverlay,
)

__all__ = [
    "NOISES",
    "DATASETS",
    "make_corruption",
    "default_loss",
    "build_image_datasets",
    "ImageCorruption",
    "GaussianNoise",
    "PoissonNoise",
    "BernoulliNoise",
    "TextOverlay",
    "ImpulseNoise",
    "NoisyPairs",
    "MonteCarloPairs",
    "ImageDataset",
    "load_image",
    "stable_id",
    "read_hdr",
    "tonemap",
]

_CORRUPTIONS: dict[str, type[ImageCorruption]] = {
    "gaussian": GaussianNoise,
    "poisson": PoissonNoise,
    "bernoulli": BernoulliNoise,
    "text": TextOverlay,
    "impulse": ImpulseNoise,
    "montecarlo": MonteCarloPairs,
    "pairs": NoisyPairs,
}

#: Names accepted by :func:`make_corruption` (``--noise``).
NOISES: tuple[str, ...] = tuple(_CORRUPTIONS)

_DEFAULT_LOSS = {
    "gaussian": "l2",
    "poisson": "l2",
    "bernoulli": "l2",
    "text": "l1",
    "impulse": "l0",
    "montecarlo": "hdr",
    "pairs": "l2",
}


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown image noise '{name}' (choose from {', '.join(NOISES)})")


def make_corruption(name: str, **kwargs: Any) -> ImageCorruption:
    """Build an image corruption by name.

    Args:
        name: one of :data:`NOISES`.
        **kwargs: constructor options, e.g. ``train_range=(0, 50)`` and ``test_level=25`` for
            the synthetic noises, ``channels=3`` for ``pairs``/``montecarlo``.

    Raises:
        ValueError: unknown name (the message lists the known ones) or bad options.
    """
    try:
        cls = _CORRUPTIONS[name]
    except KeyError:
        raise _unknown(name) from None
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"noise '{name}': {e}") from None


def default_loss(name: str) -> str:
    """The paper's loss for a noise: ``l2`` (gaussian, poisson, bernoulli, pairs), ``l1`` (text),
    ``l0`` (impulse, annealed) or ``hdr`` (montecarlo)."""
    try:
        return _DEFAULT_LOSS[name]
    except KeyError:
        raise _unknown(name) from None
