"""Corruptions: how a clean or measured sample becomes a training pair.

- :mod:`~mri_n2n.corruptions.base` -- :class:`Corruption` and :class:`Pair`, the interface.
- :mod:`~mri_n2n.corruptions.mri` -- :class:`MRIUndersampling`, the paper's k-space undersampling,
  one class for every acquisition kind and coil count (:class:`MultiCoilUndersampling` records
  the coil count of coil data).
- :mod:`~mri_n2n.corruptions.noise` -- the photographic noises (:data:`NOISES`,
  :func:`make_corruption`, :func:`default_loss`).
- :mod:`~mri_n2n.corruptions.text` -- the text-overlay renderer.
"""

from ..seeding import seeded_generator
from .base import TARGETS, Corruption, Pair
from .mri import MRIUndersampling, MultiCoilUndersampling, is_measured, random_shift
from .noise import (
    NOISES,
    BernoulliNoise,
    GaussianNoise,
    ImageCorruption,
    ImpulseNoise,
    MonteCarloPairs,
    NoisyPairs,
    PoissonNoise,
    TextOverlay,
    default_loss,
    make_corruption,
)

__all__ = [
    "TARGETS",
    "Corruption",
    "Pair",
    "seeded_generator",
    "MRIUndersampling",
    "MultiCoilUndersampling",
    "is_measured",
    "random_shift",
    "NOISES",
    "make_corruption",
    "default_loss",
    "ImageCorruption",
    "GaussianNoise",
    "PoissonNoise",
    "BernoulliNoise",
    "TextOverlay",
    "ImpulseNoise",
    "NoisyPairs",
    "MonteCarloPairs",
]
