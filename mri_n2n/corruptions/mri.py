"""The paper's MRI corruption: random undersampling of k-space (section 3.4), built from a
run's :class:`~mri_n2n.config.Config` by :meth:`MRIUndersampling.from_config` alike for
training, reconstruction and evaluation."""

from __future__ import annotations

from typing import Protocol

import torch

from ..fft import fft2c
from ..physics import SpectralSampling
from ..sampling import bernoulli_mask, line_mask, make_density, symmetric_density
from ..seeding import seeded_generator
from .augment import augment_batch
from .base import TARGETS, Corruption, Pair


class SamplingSettings(Protocol):
    """The settings :meth:`MRIUndersampling.from_config` reads (a :class:`mri_n2n.config.Config`
    has them; the config module sits above this layer, so it is not imported here)."""

    density: str
    fraction: float
    edge: float
    acceleration: float
    center_fraction: float
    shift: int | None
    complex: bool
    augment: bool | None

__all__ = ["MRIUndersampling", "random_shift"]


# --------------------------------------------------------------------------------------


def _to_complex(x: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) real/imag channels -> (B, 1, H, W) complex."""
    return torch.complex(x[:, 0:1].float(), x[:, 1:2].float())


def _to_channels(z: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) complex -> (B, 2, H, W) real/imag channels."""
    return torch.cat([z.real, z.imag], dim=1)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Circularly translate each image of ``(B, C, H, W)`` by its own random offset in
    ``[-max_shift, max_shift]`` along both axes (the paper's augmentation; no flips)."""
    if max_shift <= 0:
        return x
    offsets = torch.randint(
        -max_shift, max_shift + 1, (x.shape[0], 2), generator=generator, device=generator.device
    )
    offsets = offsets.tolist()
    return torch.stack(
        [torch.roll(x[i], shifts=(dy, dx), dims=(-2, -1)) for i, (dy, dx) in enumerate(offsets)]
    )


class MRIUndersampling(Corruption):
    """The paper's MRI corruption: random Bernoulli undersampling of k-space.

    For each sample and every call a fresh mask is drawn from ``density`` (Hermitian for
    real images, so the zero-filled image is real). The network input is the zero-filled
    reconstruction with ``1/p`` density compensation; the Noise2Noise target is the same
    slice under a second, independent mask processed the same way; the Noise2Clean target
    is the clean slice. :meth:`project` (data consistency with the input's own measured
    k-space) belongs to the graph in training and at inference.

    Args:
        density: keep probabilities ``(H, W)`` (see :mod:`mri_n2n.sampling`).
        max_shift: training augmentation, random circular shifts up to this many pixels.
        complex_data: images are ``(B, 2, H, W)`` real/imag channels (masks not Hermitian).
        lines: ``None`` for 2-D Bernoulli masks; ``"random"`` or ``"equispaced"`` for 1-D
            Cartesian line masks with ``acceleration`` and ``center_fraction``.
        augment: augment each clean training slice (:func:`~mri_n2n.corruptions.augment.augment_batch`)
            before its observations are drawn.
    """

    task = "mri"

    def __init__(
        self,
        density: torch.Tensor,
        *,
        max_shift: int = 0,
        complex_data: bool = False,
        lines: str | None = None,
        acceleration: float = 4.0,
        center_fraction: float = 0.08,
        augment: bool = False,
    ) -> None:
        self.density = density.float()
        self.max_shift = int(max_shift)
        self.complex_data = complex_data
        self.lines = lines
        self.acceleration = acceleration
        self.center_fraction = center_fraction
        self.augment = bool(augment)

    @classmethod
    def from_config(
        cls, cfg: SamplingSettings, shape: tuple[int, int], *, fraction: float | None = None
    ) -> MRIUndersampling:
        """The corruption a run's config describes, for k-space of ``shape`` (training,
        reconstruction and evaluation alike).

        Args:
            cfg: a :class:`~mri_n2n.config.Config` (its ``density``, ``fraction``, ``edge``,
                ``acceleration``, ``center_fraction``, ``shift`` and ``complex``).
            shape: slice shape ``(H, W)``.
            fraction: another mean sampling density (``lines_*`` densities: acceleration
                ``1 / fraction``); ``None`` keeps the config's.

        Raises:
            ValueError: the density cannot be built (e.g. a fraction outside ``(0, 1]``).
        """
        shape = (int(shape[0]), int(shape[1]))
        lines = {"lines_random": "random", "lines_equispaced": "equispaced"}.get(cfg.density)
        frac, acceleration = cfg.fraction, cfg.acceleration
        if fraction is not None:
            if not 0.0 < float(fraction) <= 1.0:
                raise ValueError(f"sampling density must lie in (0, 1], got {fraction}")
            if lines:
                acceleration = 1.0 / float(fraction)
            else:
                frac = float(fraction)
        density = make_density(
            cfg.density,
            shape,
            fraction=frac if frac else None,
            edge=cfg.edge,
            acceleration=acceleration,
            center_fraction=cfg.center_fraction,
        )
        return cls(
            density,
            max_shift=min(shape) // 4 if cfg.shift is None else cfg.shift,
            complex_data=bool(cfg.complex),
            lines=lines,
            acceleration=acceleration,
            center_fraction=cfg.center_fraction,
            augment=bool(cfg.augment),
        )

    def draw_masks(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Draw ``batch`` independent masks ``(B, H, W)`` on the generator's device."""
        hermitian = not self.complex_data
        if self.lines is None:
            density = self.density.to(generator.device)
            return bernoulli_mask(density, generator=generator, batch_size=batch, hermitian=hermitian)
        return line_mask(
            tuple(self.density.shape),
            acceleration=self.acceleration,
            center_fraction=self.center_fraction,
            kind=self.lines,
            generator=generator,
            batch_size=batch,
            hermitian=hermitian and self.lines == "random",
            device=generator.device,
        )

    def _observe(self, k: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Measured k-space and the compensated zero-filled image (as model channels)."""
        op = SpectralSampling(mask)
        y = k * op._m(k)
        z = op.zero_filled(y, self.density.to(k.device))
        img = _to_channels(z) if self.complex_data else z.real
        return y, img

    def _spectrum(self, clean: torch.Tensor) -> torch.Tensor:
        return fft2c(_to_complex(clean) if self.complex_data else clean.float())

    def measure(self, clean: torch.Tensor, mask: torch.Tensor) -> Pair:
        """Undersample ``clean`` with given masks; the target is the clean batch."""
        y, img = self._observe(self._spectrum(clean), mask.to(clean.device))
        return Pair(img, clean, {"mask": mask.to(clean.device), "kspace": y})

    def pair(self, clean: torch.Tensor, *, generator: torch.Generator, target: str = "noisy") -> Pair:
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got '{target}'")
        if self.augment:
            clean = augment_batch(clean, generator)
        clean = random_shift(clean, self.max_shift, generator)
        k = self._spectrum(clean)
        b = clean.shape[0]
        mask = self.draw_masks(b, generator)
        y, inp = self._observe(k, mask)
        context = {"mask": mask, "kspace": y}
        if target == "noisy":
            mask2 = self.draw_masks(b, generator)
            y2, tgt = self._observe(k, mask2)
            # what a k-space loss needs (mri_n2n.losses.kspace_loss): the target's own sampled
            # set, its measured (unscaled) k-space and each bin's keep probability
            p2 = self.keep_probability(k.device)
            context.update(target_mask=mask2, target_kspace=y2, target_density=p2)
        else:
            tgt = clean
        return Pair(inp, tgt, context)

    def keep_probability(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The marginal probability ``(H, W)`` that a drawn mask keeps each bin.

        For 2-D Bernoulli masks this is the density (averaged with its Hermitian partner's when
        masks are Hermitian, as :func:`~mri_n2n.sampling.bernoulli_mask` draws them). For line
        masks it is the density as given (the sampler's own per-line probabilities).
        """
        p = self.density.to(device)
        if self.lines is None and not self.complex_data:
            p = symmetric_density(p)
        return p

    def validation_pair(self, clean: torch.Tensor, seeds: torch.Tensor) -> Pair:
        masks = torch.cat(
            [self.draw_masks(1, seeded_generator(int(s), clean.device)) for s in seeds.tolist()], dim=0
        )
        return self.measure(clean, masks)

    def project(self, output: torch.Tensor, context: dict[str, torch.Tensor]) -> torch.Tensor:
        op = SpectralSampling(context["mask"])
        if self.complex_data:
            return _to_channels(op.project(_to_complex(output), context["kspace"]))
        return op.project(output.float(), context["kspace"]).to(output.dtype)

    def config(self) -> dict:
        return {
            "name": "MRIUndersampling",
            "max_shift": self.max_shift,
            "complex_data": self.complex_data,
            "lines": self.lines,
            "augment": self.augment,
        }
