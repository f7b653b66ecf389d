"""The paper's photographic corruptions, plus real noisy pairs and Monte Carlo renderings.

=============  ==========================================  ===============  ==========  =======
name           corruption of a clean image ``x`` in [0,1]  training range   test level  loss
=============  ==========================================  ===============  ==========  =======
``gaussian``   ``x + sigma n``, not clipped, not quantised  sigma [0, 50]    25          ``l2``
               (levels in 8-bit units: sigma / 255)
``poisson``    ``Poisson(lambda x) / lambda``               lambda (0, 50]   30          ``l2``
``bernoulli``  pixel kept with probability ``1 - p``        p [0, 0.95]      0.5         ``l2``
               else 0; the loss counts target-valid pixels
``text``       random strings (:mod:`.text`) over a         [0, 0.5]         0.25        ``l1``
               fraction ``coverage`` of the pixels
``impulse``    pixel replaced by a uniform random colour    p [0, 0.95]      0.70        ``l0``
               with probability ``p``
``pairs``      real noisy pairs: no synthetic noise         --               --          ``l2``
``montecarlo`` pairs of noisy HDR renderings; input         --               --          ``hdr``
               tone-mapped, target linear
=============  ==========================================  ===============  ==========  =======

**Levels.** Each example of a training batch draws its own level uniformly from the training
range, independently for the input and for the target (the target's corruption stays zero-mean,
zero-median or mode-preserving whatever its level), as the authors' code does for Gaussian and
Poisson noise. The exception is ``impulse``, whose input and target share the pair's rate ``p``
(see :class:`ImpulseNoise`). The corruptions themselves (which pixels, which values) are always
drawn independently, as Noise2Noise requires. Validation uses the fixed test level and the clean
image as the target.

**Pixels.** Bernoulli and impulse noise act on whole pixels (all channels together), as in the
paper; Gaussian and Poisson noise are independent per channel.

**Randomness and devices.** Every training draw comes from the ``generator`` passed to
:meth:`~ImageCorruption.pair`. Draws are made on the *generator's* device and then moved to the
batch's device, so a CPU generator works with a CUDA batch (at the cost of a host-to-device copy
of the noise); pass a generator on the batch's device to avoid it. Text overlays are rendered
with Pillow on the CPU from integer seeds drawn from the generator. Validation draws use one CPU
generator per image, seeded with that image's seed (its identity), so validation is identical on
every device, across epochs and runs.

**Stacked observations** (``pairs``, ``montecarlo``): the dataset yields the observations of
one scene stacked on channels, ``[a, b]`` (``2C`` channels) or ``[a, b, clean]`` (``3C``);
validation items are ``[observation, reference]``, where the reference is the clean image when
the dataset has one (else the second observation). :meth:`~ImageCorruption.pair` splits them,
swapping the roles of ``a`` and ``b`` at random per example.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..images.hdr import tonemap
from ..seeding import seeded_generator
from .base import TARGETS, Corruption, Pair
from .text import render_text_overlay

__all__ = [
    "ImageCorruption",
    "GaussianNoise",
    "PoissonNoise",
    "BernoulliNoise",
    "TextOverlay",
    "ImpulseNoise",
    "NoisyPairs",
    "MonteCarloPairs",
    "NOISES",
    "make_corruption",
    "default_loss",
]


def _check_batch(clean: torch.Tensor) -> None:
    if clean.ndim != 4:
        raise ValueError(f"expected a batch (B, C, H, W), got shape {tuple(clean.shape)}")


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")


def _rand(shape: Sequence[int], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) draws made on the generator's device, returned on ``like``'s device (float32)."""
    return torch.rand(tuple(shape), generator=generator, device=generator.device).to(like.device)


def _randn(shape: Sequence[int], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal draws made on the generator's device, returned on ``like``'s device (float32)."""
    return torch.randn(tuple(shape), generator=generator, device=generator.device).to(like.device)


def _seeds(seeds: torch.Tensor | Sequence[int], n: int) -> list[int]:
    values = [int(s) for s in (seeds.tolist() if isinstance(seeds, torch.Tensor) else seeds)]
    if len(values) != n:
        raise ValueError(f"need one seed per image: {n} images, {len(values)} seeds")
    return values


class ImageCorruption(Corruption):
    """Base class of the image corruptions (``task = "image"``).

    Adds :meth:`inference_input`, which turns an observed image into the network input at
    inference time (identity, except tone mapping for Monte Carlo renderings).
    """

    task = "image"
    #: registry name (see :data:`mri_n2n.images.NOISES`)
    name: str = ""
    #: True when batches hold stacked observations (``pairs``, ``montecarlo``)
    stacked: bool = False

    def inference_input(self, observed: torch.Tensor) -> torch.Tensor:
        """The network input for an observed (noisy) image ``(B, C, H, W)``: identity by default."""
        return observed

    def config(self) -> dict[str, Any]:
        """A JSON-serialisable description, stored in checkpoints."""
        return {"name": self.name}


class _LevelledNoise(ImageCorruption):
    """A synthetic corruption with a per-example level drawn from a training range."""

    #: default training range and test level (in the units of the table above)
    default_range: tuple[float, float] = (0.0, 1.0)
    default_test: float = 0.5
    #: True when the target's kept-pixel mask must go to the loss as ``Pair.valid``
    masks_target = False
    #: True when input and target of a pair share one level (their realisations stay independent)
    shared_level = False

    def __init__(self, train_range: Sequence[float] | None = None, test_level: float | None = None) -> None:
        lo, hi = (float(v) for v in (train_range if train_range is not None else self.default_range))
        test = float(test_level if test_level is not None else self.default_test)
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
            raise ValueError(f"{self.name}: train_range must satisfy 0 <= low <= high, got ({lo}, {hi})")
        self._check_level(hi)
        self._check_level(test)
        self.train_range = (lo, hi)
        self.test_level = test

    def _check_level(self, level: float) -> None:
        if not (math.isfinite(level) and level >= 0):
            raise ValueError(f"{self.name}: levels must be finite and >= 0, got {level}")

    def _levels(self, n: int, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
        """``(n, 1, 1, 1)`` levels, uniform in the training range."""
        lo, hi = self.train_range
        return lo + (hi - lo) * _rand((n, 1, 1, 1), generator, like)

    def corrupt(
        self, clean: torch.Tensor, level: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Corrupt ``clean`` at per-example ``level`` ``(B, 1, 1, 1)``.

        Returns:
            ``(noisy, valid)``: the observation (``clean``'s dtype and device) and, for
            corruptions that drop pixels, the float mask of kept pixels ``(B, 1, H, W)``
            (else ``None``).
        """
        raise NotImplementedError

    def pair(self, clean: torch.Tensor, *, generator: torch.Generator, target: str = "noisy") -> Pair:
        """Input and target corrupted independently, each at its own level from the training range.

        With ``target="clean"`` the target is ``clean`` itself (Noise2Clean). For ``bernoulli``
        and ``target="noisy"``, ``Pair.valid`` is the target's kept-pixel mask.
        """
        _check_batch(clean)
        _check_target(target)
        n = clean.shape[0]
        level_in = self._levels(n, generator, clean)
        noisy_in, _ = self.corrupt(clean, level_in, generator)
        if target == "clean":
            return Pair(noisy_in, clean)
        level_target = level_in if self.shared_level else self._levels(n, generator, clean)
        noisy_target, valid = self.corrupt(clean, level_target, generator)
        return Pair(noisy_in, noisy_target, valid=valid if self.masks_target else None)

    def validation_pair(self, clean: torch.Tensor, seeds: torch.Tensor | Sequence[int]) -> Pair:
        """Input at the test level, seeded per image from ``seeds``; the target is ``clean``."""
        _check_batch(clean)
        outs = []
        for i, seed in enumerate(_seeds(seeds, clean.shape[0])):
            g = seeded_generator(seed)
            x = clean[i : i + 1]
            level = torch.full((1, 1, 1, 1), self.test_level, device=x.device)
            outs.append(self.corrupt(x, level, g)[0])
        return Pair(torch.cat(outs), clean)

    def config(self) -> dict[str, Any]:
        """Name, training range and test level."""
        return {"name": self.name, "train_range": list(self.train_range), "test_level": self.test_level}


class GaussianNoise(_LevelledNoise):
    """Additive white Gaussian noise; levels are standard deviations in 8-bit units (/255).

    The result is neither clipped nor quantised: either would bias the zero-mean noise that
    Noise2Noise relies on.
    """

    name = "gaussian"
    default_range = (0.0, 50.0)
    default_test = 25.0

    def corrupt(self, clean, level, generator):
        sigma = level / 255.0
        noise = _randn(clean.shape, generator, clean)
        return (clean + sigma * noise).to(clean.dtype), None


class PoissonNoise(_LevelledNoise):
    """Poisson (shot) noise ``Poisson(lambda x) / lambda``: unbiased, variance ``x / lambda``.

    Training levels are drawn from ``(low, high]`` (never 0). Not the ``x + Poisson(x)`` of some
    earlier reimplementations.
    """

    name = "poisson"
    default_range = (0.0, 50.0)
    default_test = 30.0

    def _check_level(self, level: float) -> None:
        if not (math.isfinite(level) and level > 0):
            raise ValueError(f"{self.name}: lambda must be finite and > 0, got {level}")

    def _levels(self, n, generator, like):
        lo, hi = self.train_range
        return hi - (hi - lo) * _rand((n, 1, 1, 1), generator, like)  # in (lo, hi]

    def corrupt(self, clean, level, generator):
        lam = level.to(torch.float32)
        rate = (clean.to(torch.float32).clamp_min(0) * lam).to(generator.device)
        counts = torch.poisson(rate, generator=generator).to(clean.device)
        return (counts / lam).to(clean.dtype), None


class BernoulliNoise(_LevelledNoise):
    """Multiplicative Bernoulli noise: each pixel kept with probability ``1 - p``, else set to 0.

    In Noise2Noise training the loss counts only the pixels kept in the *target*
    (``Pair.valid``, float ``(B, 1, H, W)``).
    """

    name = "bernoulli"
    default_range = (0.0, 0.95)
    default_test = 0.5
    masks_target = True

    def _check_level(self, level: float) -> None:
        if not (0 <= level < 1):
            raise ValueError(f"{self.name}: p must be in [0, 1), got {level}")

    def corrupt(self, clean, level, generator):
        b, _, h, w = clean.shape
        keep = (_rand((b, 1, h, w), generator, clean) >= level).to(clean.dtype)
        return clean * keep, keep


class ImpulseNoise(_LevelledNoise):
    """Random-valued impulse noise: each pixel replaced by a uniform random colour with probability p.

    Input and target of a training pair share their ``p`` (the rate is a property of the pair, as
    for two captures through the same faulty channel); which pixels are hit, and their colours,
    are drawn independently. This is what makes the paper's loss comparison meaningful: with an
    independent target rate drawn from [0, 0.95], more than half of the pooled target mass sits
    at the clean value for every input, so the median (L1) is already unbiased and the mode (L0)
    has nothing to add. With a shared rate the network can read the rate off the input, and for
    ``p > 0.5`` the median of the targets is biased towards mid-grey while the mode is not.
    """

    name = "impulse"
    default_range = (0.0, 0.95)
    default_test = 0.70
    shared_level = True

    def _check_level(self, level: float) -> None:
        if not (0 <= level <= 1):
            raise ValueError(f"{self.name}: p must be in [0, 1], got {level}")

    def corrupt(self, clean, level, generator):
        b, c, h, w = clean.shape
        hit = _rand((b, 1, h, w), generator, clean) < level
        colour = _rand((b, c, h, w), generator, clean).to(clean.dtype)
        return torch.where(hit, colour, clean), None


class TextOverlay(_LevelledNoise):
    """Random text overlays (:func:`~mri_n2n.corruptions.text.render_text_overlay`); level = coverage.

    Each image's overlay is rendered with Pillow on the CPU from a seed drawn from the
    generator; strings have random size, colour, position and content.
    """

    name = "text"
    default_range = (0.0, 0.5)
    default_test = 0.25

    def _check_level(self, level: float) -> None:
        if not (0 <= level < 1):
            raise ValueError(f"{self.name}: coverage must be in [0, 1), got {level}")

    def corrupt(self, clean, level, generator):
        b, c, h, w = clean.shape
        seeds = torch.randint(0, 2**62, (b,), generator=generator, device=generator.device).tolist()
        levels = level.reshape(-1).tolist()
        out = clean.clone()
        for i in range(b):
            mask, colours = render_text_overlay(h, w, c, levels[i], seeds[i])
            m = torch.from_numpy(mask).to(clean.device)
            col = torch.from_numpy(colours).permute(2, 0, 1).to(device=clean.device, dtype=clean.dtype)
            out[i] = torch.where(m, col, clean[i])
        return out, None


class NoisyPairs(ImageCorruption):
    """Real noisy pairs: two captures of a scene stacked on channels; no synthetic noise.

    Args:
        channels: channels ``C`` of one capture; by default inferred from the batch
            (2 or 6 channels: ``[a, b]``; 3 or 9: ``[a, b, clean]``).
    """

    name = "pairs"
    stacked = True

    def __init__(self, channels: int | None = None) -> None:
        if channels is not None and int(channels) < 1:
            raise ValueError(f"{self.name}: channels must be >= 1, got {channels}")
        self.channels = None if channels is None else int(channels)

    def _split(self, x: torch.Tensor) -> list[torch.Tensor]:
        _check_batch(x)
        n = x.shape[1]
        c = self.channels
        if c is None:
            if n % 2 == 0 and n // 2 in (1, 3, 4):
                c = n // 2
            elif n % 3 == 0:
                c = n // 3
            else:
                raise ValueError(f"{self.name}: cannot split {n} channels into stacked observations")
        if n % c or n // c not in (2, 3):
            raise ValueError(f"{self.name}: expected 2 or 3 stacked {c}-channel images, got {n} channels")
        return list(torch.split(x, c, dim=1))

    def _observe(self, x: torch.Tensor) -> torch.Tensor:
        """How an observation is shown to the network."""
        return x

    def pair(self, clean: torch.Tensor, *, generator: torch.Generator, target: str = "noisy") -> Pair:
        """Split ``[a, b(, clean)]``; per example, ``a``/``b`` swap roles with probability 1/2.

        With ``target="clean"`` the batch must carry the clean image as a third block.
        """
        _check_target(target)
        parts = self._split(clean)
        a, b = parts[0], parts[1]
        swap = (_rand((a.shape[0], 1, 1, 1), generator, a) < 0.5).expand_as(a)
        first, second = torch.where(swap, b, a), torch.where(swap, a, b)
        if target == "clean":
            if len(parts) < 3:
                raise ValueError(f"{self.name}: target='clean' needs clean references (a 'clean' folder)")
            return Pair(self._observe(first), parts[2])
        return Pair(self._observe(first), second)

    def validation_pair(self, clean: torch.Tensor, seeds: torch.Tensor | Sequence[int] | None = None) -> Pair:
        """``[observation, reference]`` -> (input, target); deterministic (``seeds`` are unused)."""
        parts = self._split(clean)
        return Pair(self._observe(parts[0]), parts[1])

    def config(self) -> dict[str, Any]:
        """Name and channels per observation."""
        return {"name": self.name, "channels": self.channels}


class MonteCarloPairs(NoisyPairs):
    """Pairs of independent noisy Monte Carlo renderings (linear HDR, stacked on channels).

    The input is tone-mapped, ``(v / (1 + v))^(1/2.2)`` (:func:`~mri_n2n.images.hdr.tonemap`);
    the target stays linear, and the network predicts linear radiance (loss ``hdr``).
    """

    name = "montecarlo"

    def _observe(self, x: torch.Tensor) -> torch.Tensor:
        return tonemap(x)

    def inference_input(self, observed: torch.Tensor) -> torch.Tensor:
        """Tone-map a linear HDR rendering for the network."""
        return tonemap(observed)


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
