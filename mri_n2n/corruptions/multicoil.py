"""Noise2Noise on multi-coil k-space: pairs from independent masks applied to the coils' data.

A multi-coil batch is ``(B, 4 C, H, W)`` channels (:func:`~mri_n2n.data.multicoil.split_multicoil`:
the coils' k-space and their sensitivity maps ``S``, normalised so that ``sum_c |S_c|^2 = 1``).
The model sees the coil-combined complex image (two channels):

- input: the SENSE-1 zero-filled image ``sum_c conj(S_c) F^-1(M y_c / p)`` of one mask;
- Noise2Noise target: the same under an independent mask (and, for the k-space loss, that
  mask's per-coil measurements, compared with ``F S_c f``); Noise2Clean: the combined clean
  image ``sum_c conj(S_c) F^-1 y_c``; SSDU / Noisier2Noise: each slice acquired once, split afresh
  at every step into the input and the held-out coils' samples (:mod:`mri_n2n.splits`);
- data consistency, after the network (:meth:`project`) and inside every cascade of the
  unrolled network (which gets the maps with the measurements): per-coil replacement of the
  measured entries, then the SENSE-1 combination (:meth:`mri_n2n.coils.SenseOperator.project`,
  E2E-VarNet's choice). Every coil's k-space is exactly the measurements on the measured
  entries before the combination; with several coils the combined image is one gradient step
  ``x + A^H (y - A x)`` towards ``{z : A z = y}``, not its projection (it never increases the
  residual). It costs two FFTs per coil. Networks built with ``--dc prox`` instead end every
  cascade with MoDL's learned proximal CG-SENSE step (:mod:`mri_n2n.models.unrolled`); their
  output is final and :meth:`project` is not applied to it: noisy multi-coil data overdetermine
  the image, and forcing them exactly keeps all their noise.

Masks come from the run's family (complex data: drawn as they are), shared by the coils; k-space
noise is added per coil; a random circular shift moves the coil images and the maps together.
"""

from __future__ import annotations

import dataclasses

import torch

from ..coils import SenseOperator
from ..data.multicoil import split_multicoil
from ..fft import to_channels
from ..masks import MaskFamily
from ..physics import Acquisition
from ..seeding import seeded_generator
from ..splits import SplitLaw, split_loss_density
from .base import AcquisitionLike, Pair, as_acquisition
from .mri import _ACQ_SALT, MRIUndersampling, SamplingSettings, random_shift

__all__ = ["MultiCoilUndersampling", "split_multicoil"]


class MultiCoilUndersampling(MRIUndersampling):
    """Random undersampling of multi-coil k-space (module docstring).

    Args:
        family: the mask family (drawn as is: multi-coil data are complex).
        coils: number of coils ``C`` of the batches.
        max_shift: random circular shifts up to this many pixels (coil images and maps alike).
        noise_std: complex Gaussian noise added to every coil's k-space (one noisy acquisition
            per slice, shared by both observations of a pair).
    """

    def __init__(
        self,
        family: MaskFamily,
        *,
        coils: int,
        max_shift: int = 0,
        noise_std: float = 0.0,
        split: SplitLaw | None = None,
    ) -> None:
        super().__init__(family, max_shift=max_shift, complex_data=True, noise_std=noise_std, split=split)
        if coils < 1:
            raise ValueError(f"coils must be >= 1, got {coils}")
        self.coils = int(coils)

    @classmethod
    def from_config(
        cls, cfg: SamplingSettings, shape: tuple[int, int], *, fraction: float | None = None, coils: int = 1
    ) -> MultiCoilUndersampling:
        """The multi-coil corruption a run's config describes (mask family, shift, noise, and the
        split law of the single-acquisition targets)."""
        # multi-coil data are complex: the single-coil complex corruption has the family (masks
        # as drawn), the shift, the noise and the split law
        cfg = dataclasses.replace(cfg, complex=True)
        one = MRIUndersampling.from_config(cfg, shape, fraction=fraction)
        return cls(one.family, coils=coils, max_shift=one.max_shift, noise_std=one.noise_std, split=one.split)

    def _check(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, maps = split_multicoil(batch)
        if k.shape[1] != self.coils:
            raise ValueError(f"expected {self.coils} coils, the batch has {k.shape[1]}")
        return k, maps

    def _observe_coils(
        self, k: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor
    ) -> tuple[Acquisition, torch.Tensor]:
        """``(acquisition, SENSE-1 compensated zero-filled image as channels)`` of the coil
        spectra ``k`` under ``mask``: its measurements and the corruption's keep probability."""
        mask = mask.to(k.device).bool()
        acq = SenseOperator(maps, mask, keep_prob=self.keep_prob.to(k.device)).with_data(k)
        return acq, to_channels(acq.zero_filled())

    def _shift(
        self, k: torch.Tensor, maps: torch.Tensor, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The coil spectra and the maps of the coil images circularly shifted together (the
        coils' images ``F^-1 k_c`` and spectra by the one-coil operator of a full mask)."""
        if self.max_shift <= 0:
            return k, maps
        full = Acquisition(torch.ones(k.shape[-2:], dtype=torch.bool, device=k.device))
        both = random_shift(torch.cat([full.combine(k), maps], dim=1), self.max_shift, g)
        return full.full(both[:, : self.coils]), both[:, self.coils :]

    def paired(self, clean: torch.Tensor, *, generator: torch.Generator, target: str = "noisy") -> Pair:
        k, maps = self._check(clean)
        k, maps = self._shift(k, maps, generator)
        noisy = self._acquire(k, [generator])
        b = k.shape[0]
        acq, inp = self._observe_coils(noisy, maps, self.draw_masks(b, generator))
        if target != "noisy":
            return Pair(inp, to_channels(acq.combine(k)), acq)
        target_acq, tgt = self._observe_coils(noisy, maps, self.draw_masks(b, generator))
        return Pair(inp, tgt, acq, target_acq)

    def single_pair(self, batch: torch.Tensor, *, generator: torch.Generator, seeds: torch.Tensor) -> Pair:
        """SSDU / Noisier2Noise: each slice acquired once (mask and per-coil noise seeded by its
        identity), then split afresh (:meth:`MRIUndersampling.single_pair` for one coil)."""
        g = generator
        if self.split is None:
            raise ValueError("this corruption has no split law (build it for --target ssdu or noisier2noise)")
        k, maps = self._check(batch)
        ids = [int(v) ^ _ACQ_SALT for v in torch.as_tensor(seeds).tolist()]
        noisy = self._acquire(k, [seeded_generator(v ^ 0x401CE) for v in ids])
        mask = torch.cat([self.draw_masks(1, seeded_generator(v)) for v in ids]).to(k.device)
        y, maps = self._shift(SenseOperator(maps, mask).sample(noisy), maps, g)
        return self.split_measured(y, mask, maps, generator=g)

    def split_measured(
        self, kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor, *, generator: torch.Generator
    ) -> Pair:
        """A single-acquisition pair of measured coil data: the sampled sets ``mask`` ``(B, H, W)``
        split afresh by the split law into the input and the held-out bins. Input: the SENSE-1
        zero-filled image of the input bins (compensated by ``p q``); target: that of all the
        measurements; the target acquisition holds the held-out coils' samples and their loss
        keep probability. Used by :meth:`single_pair` and by scan-specific adaptation to a
        measured file."""
        if self.split is None:
            raise ValueError("this corruption has no split law (build it for --target ssdu or noisier2noise)")
        mask = mask.bool()
        # a shift is a phase ramp of the data: the sampled set stays
        whole = SenseOperator(maps, mask).with_data(kspace)
        p = self.keep_prob.to(whole.y.device)
        q = self.split.keep_probability().to(whole.y.device)
        inp, held = self.split.split(mask, generator)
        part = whole.restrict(inp, p * q)
        z = part.zero_filled(whole.y)
        full = whole.zero_filled(keep_prob=p)
        target_acq = whole.restrict(held, split_loss_density(p, q))
        return Pair(to_channels(z), to_channels(full), part, target_acq)

    def measure(
        self, clean: torch.Tensor, mask: torch.Tensor, *, phase_seeds: torch.Tensor | None = None
    ) -> Pair:
        """Undersample a multi-coil batch with given masks; the target is the combined clean image
        (noise seeded per sample by ``phase_seeds``, default the sample's index)."""
        k, maps = self._check(clean)
        seeds = torch.arange(k.shape[0]) if phase_seeds is None else phase_seeds
        noisy = self._acquire(k, [seeded_generator(int(s) ^ 0x401CE) for s in seeds.tolist()])
        acq, img = self._observe_coils(noisy, maps, mask)
        return Pair(img, to_channels(acq.combine(k)), acq)

    def validation_pair(self, clean: torch.Tensor, seeds: torch.Tensor) -> Pair:
        masks = torch.cat([self.draw_masks(1, seeded_generator(int(s))) for s in seeds.tolist()], dim=0)
        return self.measure(clean, masks.to(clean.device), phase_seeds=seeds)

    def project(self, output: torch.Tensor, acq: AcquisitionLike) -> torch.Tensor:
        """The final data consistency: per-coil replacement of the measured entries, then the
        SENSE-1 combination (module docstring); ``acq`` is the input's acquisition (or its pair)."""
        acq = as_acquisition(acq)
        z = acq.project(acq.image_of(output.float()))
        return acq.channels_of(z, output.shape[1]).to(output.dtype)

    def config(self) -> dict:
        return {**super().config(), "name": "MultiCoilUndersampling", "coils": self.coils}
