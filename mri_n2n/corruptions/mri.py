"""The paper's MRI corruption: random undersampling of k-space (section 3.4), built from a
run's :class:`~mri_n2n.config.Config` by :meth:`MRIUndersampling.from_config` alike for
training, reconstruction and evaluation.

Masks come from a :class:`~mri_n2n.masks.MaskFamily`, which knows the exact keep probability of
every bin. Real (one-channel) images use the Hermitian completion of each mask
(:func:`~mri_n2n.masks.complete_measurements`): data consistency stays exact on every measured
frequency and the image real, for line masks too. Complex (two-channel) images use the masks as
drawn; a magnitude dataset trained with ``--complex`` gets a random smooth phase per slice
(:func:`smooth_phase`), as real scans have.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from ..fft import to_channels, to_complex
from ..masks import (
    Bernoulli2D,
    MaskFamily,
    complete_measurements,
    family_for,
    family_from_description,
)
from ..physics import Acquisition, SpectralSampling
from ..seeding import seeded_generator
from ..splits import SPLIT_TARGETS, SplitLaw, make_split, split_loss_density
from .augment import augment_batch, random_crop
from .base import TARGETS, AcquisitionLike, Corruption, Pair, as_acquisition


class SamplingSettings(Protocol):
    """The settings :meth:`MRIUndersampling.from_config` reads (a :class:`mri_n2n.config.Config`
    has them; the config module sits above this layer, so it is not imported here)."""

    density: str
    fraction: float
    edge: float
    acceleration: float
    center_fraction: float
    shift: int | None
    complex: bool | None
    augment: bool | None
    deform: bool | None
    crop: bool | None
    kspace_noise: float
    target: str
    split: float


__all__ = [
    "MRIUndersampling", "random_shift", "smooth_phase", "MEASURED_CHANNELS", "pack_measured",
    "unpack_measured",
]

#: Channels of a measured (undersampled) k-space item: real and imaginary k-space, the mask, and
#: the keep probability of every bin (see :class:`~mri_n2n.data.kspace.KSpaceSliceDataset`).
MEASURED_CHANNELS = 4
#: Salts of the per-slice seeds of a single acquisition (mask, noise, phase), so that a slice
#: keeps its one acquisition for the whole run.
_ACQ_SALT = 0xAC90


# --------------------------------------------------------------------------------------


def pack_measured(y: torch.Tensor, mask: torch.Tensor, keep_prob: torch.Tensor) -> torch.Tensor:
    """A measured batch ``(B, 4, H, W)`` (:data:`MEASURED_CHANNELS`: real and imaginary k-space,
    the mask, the keep probability) from single-coil measurements ``y`` ``(B, H, W)`` complex,
    their mask ``(B, H, W)`` and the law's keep probability (broadcast to the mask)."""
    keep_prob = keep_prob.to(device=y.device, dtype=y.real.dtype).expand(mask.shape)
    return torch.stack([y.real, y.imag, mask.to(y.real.dtype), keep_prob], dim=1)


def unpack_measured(batch: torch.Tensor) -> Acquisition:
    """The single-coil acquisition of a measured batch ``(B, 4, H, W)`` (:func:`pack_measured`):
    mask ``(B, H, W)``, measurements ``y`` ``(B, 1, H, W)`` (zero off the mask) and the keep
    probability ``(B, H, W)`` of every bin.

    Raises:
        ValueError: ``batch`` is not ``(B, 4, H, W)``.
    """
    if batch.ndim != 4 or batch.shape[1] != MEASURED_CHANNELS:
        raise ValueError(f"a measured batch is (B, {MEASURED_CHANNELS}, H, W), got {tuple(batch.shape)}")
    mask = batch[:, 2] > 0.5
    y = SpectralSampling(mask).sample(to_complex(batch[:, :2].float(), keepdim=True))
    return SpectralSampling(mask, y, keep_prob=batch[:, 3].float())


def smooth_phase(x: torch.Tensor, generator: torch.Generator, *, max_phase: float = torch.pi) -> torch.Tensor:
    """Complex two-channel images ``(B, 2, H, W)`` from magnitudes ``(B, 1, H, W)``: each image
    times ``exp(i phi)`` with ``phi`` a smooth random field in ``[-max_phase, max_phase]`` (a
    random 4x4 grid, bicubic upsampled) plus a random constant, as the phase of real scans
    (B0 and coil phase) is smooth."""
    b, c, h, w = x.shape
    if c != 1:
        raise ValueError(f"smooth_phase takes magnitude images (B, 1, H, W), got {c} channels")
    g = generator
    coarse = (torch.rand(b, 1, 4, 4, generator=g, device=g.device) * 2 - 1).to(x.device, torch.float32)
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True).clamp(-1, 1)
    offset = (torch.rand(b, 1, 1, 1, generator=g, device=g.device) * 2 - 1).to(x.device, torch.float32)
    phi = max_phase * 0.5 * (field + offset)
    mag = x.float()
    return torch.cat([mag * torch.cos(phi), mag * torch.sin(phi)], dim=1).to(x.dtype)


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
    """The paper's MRI corruption: random undersampling of k-space.

    For each sample and every call a fresh mask is drawn from ``family``. The network input is
    the zero-filled reconstruction with ``1/p`` compensation by the exact keep probability
    (:attr:`keep_prob`); the Noise2Noise target is the same slice under a second, independent
    mask processed the same way; the Noise2Clean target is the clean slice. :meth:`project`
    (data consistency with the input's own measured k-space) belongs to the graph in training
    and at inference.

    Args:
        family: a :class:`~mri_n2n.masks.MaskFamily`, or a density tensor ``(H, W)`` for 2-D
            Bernoulli masks (Hermitian for real data, as the paper draws them).
        max_shift: training augmentation, random circular shifts up to this many pixels.
        complex_data: images are ``(B, 2, H, W)`` real/imag channels; a one-channel (magnitude)
            clean batch gets a random smooth phase (:func:`smooth_phase`).
        augment: augment each clean training slice (:func:`~mri_n2n.corruptions.augment.augment_batch`)
            before its observations are drawn.
        deform: with ``augment``, also warp each slice by a random affine and elastic
            deformation (:func:`~mri_n2n.corruptions.augment.random_deformation`).
        crop: with ``augment``, also cut each training batch to a random matrix size
            (:func:`~mri_n2n.corruptions.augment.random_crop`); its masks are drawn from the
            family rebuilt at that size (a named family, see :meth:`law_at`).
        noise_std: standard deviation of complex Gaussian noise (real and imaginary parts each
            ``noise_std / sqrt(2)``) added to the k-space of each (normalised) slice: one noisy
            acquisition per slice, from which both observations of a pair are drawn, as a
            scanner gives. The Noise2Clean target stays clean.
        split: a :class:`~mri_n2n.splits.SplitLaw` for the single-acquisition targets (``ssdu``,
            ``noisier2noise``): every slice is acquired once (mask, noise and phase seeded by its
            identity), and each training step splits that acquisition into the input and a
            held-out set for the k-space loss (:meth:`single_pair`).
    """

    task = "mri"

    def __init__(
        self,
        family: MaskFamily | torch.Tensor,
        *,
        max_shift: int = 0,
        complex_data: bool = False,
        augment: bool = False,
        deform: bool = False,
        crop: bool = False,
        noise_std: float = 0.0,
        split: SplitLaw | None = None,
    ) -> None:
        if isinstance(family, torch.Tensor):
            family = Bernoulli2D(family, hermitian=not complex_data, name="bernoulli")
        self.family = family
        self.complex_data = bool(complex_data)
        self.max_shift = int(max_shift)
        self.augment = bool(augment)
        self.deform = bool(deform) and self.augment
        self.crop = bool(crop) and self.augment
        if self.crop and family.name in ("bernoulli", "lines"):
            raise ValueError(f"crops need a named mask family to rebuild at each size, not '{family.name}'")
        self._laws: dict[tuple[int, int], tuple[MaskFamily, torch.Tensor]] = {}
        if not noise_std >= 0:
            raise ValueError(f"k-space noise must be >= 0, got {noise_std}")
        self.noise_std = float(noise_std)
        p = family.keep_probability() if self.complex_data else family.real_keep_probability()
        self.keep_prob = p.float()  # the compensation: P(bin in the mask the model works with)
        if split is not None and augment:
            raise ValueError(
                "augmentation transforms the image before it is acquired, which a single acquisition "
                "per slice does not allow (only circular shifts, a phase ramp of the data, apply)"
            )
        self.split = split
        #: the family is the law of measured training files (recorded in checkpoints)
        self.measured_law = False

    @classmethod
    def from_config(
        cls,
        cfg: SamplingSettings,
        shape: tuple[int, int],
        *,
        fraction: float | None = None,
        family: MaskFamily | None = None,
    ) -> MRIUndersampling:
        """The corruption a run's config describes, for k-space of ``shape`` (training,
        reconstruction and evaluation alike).

        Args:
            cfg: a :class:`~mri_n2n.config.Config` (its ``density``, ``fraction``, ``edge``,
                ``acceleration``, ``center_fraction``, ``shift``, ``complex`` and ``augment``).
            shape: slice shape ``(H, W)``.
            fraction: another mean sampling density (line families: acceleration
                ``1 / fraction``); ``None`` keeps the config's.
            family: the acquisitions' law when the data are measured (it replaces the config's
                mask family, e.g. the law of undersampled training files).

        Raises:
            ValueError: the family cannot be built (e.g. a fraction outside ``(0, 1]``).
        """
        shape = (int(shape[0]), int(shape[1]))
        complex_data = bool(cfg.complex)
        given = family is not None
        family = family or family_for(cfg, shape, fraction=fraction, hermitian=not complex_data)
        split = None
        target = getattr(cfg, "target", "noisy")
        if target in SPLIT_TARGETS:
            p = family.keep_probability() if complex_data else family.real_keep_probability()
            split = make_split(
                target, family, p, float(getattr(cfg, "split", 0.4)), hermitian=not complex_data
            )
        out = cls(
            family,
            max_shift=min(shape) // 4 if cfg.shift is None else cfg.shift,
            complex_data=complex_data,
            augment=bool(cfg.augment) and split is None,
            deform=bool(getattr(cfg, "deform", False)),
            crop=bool(getattr(cfg, "crop", False)),
            noise_std=float(getattr(cfg, "kspace_noise", 0.0) or 0.0),
            split=split,
        )
        out.measured_law = given
        return out

    @property
    def shape(self) -> tuple[int, int]:
        """The k-space shape ``(H, W)``."""
        return self.family.shape

    def law_at(self, shape: tuple[int, int]) -> tuple[MaskFamily, torch.Tensor]:
        """The mask family rebuilt for k-space of ``shape`` (same name and parameters) and its
        keep probability; the corruption's own for its shape. Cached per shape."""
        shape = (int(shape[0]), int(shape[1]))
        if shape == tuple(self.family.shape):
            return self.family, self.keep_prob
        if shape not in self._laws:
            fam = family_from_description({**self.family.describe(), "shape": list(shape)})
            p = fam.keep_probability() if self.complex_data else fam.real_keep_probability()
            self._laws[shape] = (fam, p.float())
        return self._laws[shape]

    def draw_masks(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Draw ``batch`` independent masks ``(B, H, W)`` on the generator's device."""
        return self.family.sample(batch, generator=generator)

    def _as_model_data(self, clean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Clean batch in the model's layout: magnitude -> complex with a smooth phase."""
        if self.complex_data and clean.shape[1] == 1:
            if generator is None:
                raise ValueError("a magnitude batch for complex data needs a generator for its phase")
            return smooth_phase(clean, generator)
        return clean

    def _observe(
        self, k: torch.Tensor, mask: torch.Tensor, keep_prob: torch.Tensor | None = None
    ) -> tuple[Acquisition, torch.Tensor]:
        """``(acquisition, compensated zero-filled image as model channels)`` of the spectra ``k``
        ``(B, 1, H, W)`` under ``mask``: its measurements and ``keep_prob`` (default the
        corruption's own), the compensation of the image. Real data use the Hermitian completion
        of ``mask``."""
        mask = mask.to(k.device)
        y = SpectralSampling(mask).sample(k)
        if not self.complex_data and not self.family.hermitian:  # Hermitian draws are complete
            yc, mask = complete_measurements(y[:, 0], mask)
            y = yc[:, None]
        p = self.keep_prob if keep_prob is None else keep_prob
        acq = SpectralSampling(mask, y, keep_prob=p.to(k.device))
        return acq, self._as_channels(acq.zero_filled())

    def _as_channels(self, z: torch.Tensor) -> torch.Tensor:
        """A complex image ``(B, 1, H, W)`` as the model's channels (two, or the real part)."""
        return to_channels(z, keepdim=True) if self.complex_data else z.real

    def _spectrum(self, clean: torch.Tensor) -> torch.Tensor:
        """The full spectra ``F x`` ``(B, 1, H, W)`` of a clean batch in the model's layout."""
        x = to_complex(clean.float(), keepdim=True) if self.complex_data else clean.float()
        return Acquisition.fully_sampled(x.shape, device=x.device).full(x)

    def _acquire(self, k: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        """The k-space ``(B, 1, H, W)`` plus complex Gaussian noise (one generator per sample, or
        one for the batch)."""
        if self.noise_std <= 0:
            return k
        shape = (2, *k.shape[1:])
        if len(generators) == 1 and k.shape[0] > 1:
            g = generators[0]
            n = torch.randn((k.shape[0], *shape), generator=g, device=g.device).to(k.device)
        else:
            n = torch.stack([torch.randn(shape, generator=g, device=g.device) for g in generators])
            n = n.to(k.device)
        return k + (self.noise_std / 2**0.5) * to_complex(n).to(k.dtype)

    def measure(
        self, clean: torch.Tensor, mask: torch.Tensor, *, phase_seeds: torch.Tensor | None = None
    ) -> Pair:
        """Undersample ``clean`` with given masks; the target is the clean batch.

        A magnitude batch for complex data gets the smooth phase, and every slice its k-space
        noise, seeded per sample by ``phase_seeds`` (default: the sample's index).
        """
        if self.complex_data and clean.shape[1] == 1:
            seeds = torch.arange(clean.shape[0]) if phase_seeds is None else phase_seeds
            clean = torch.cat(
                [
                    smooth_phase(clean[i : i + 1], seeded_generator(int(s) ^ 0x5EED))
                    for i, s in enumerate(seeds.tolist())
                ]
            )
        seeds = torch.arange(clean.shape[0]) if phase_seeds is None else phase_seeds
        k = self._acquire(self._spectrum(clean), [seeded_generator(int(s) ^ 0x401CE) for s in seeds.tolist()])
        acq, img = self._observe(k, mask.to(clean.device))
        return Pair(img, clean, acq)

    # -- single acquisitions (SSDU, Noisier2Noise) --------------------------------------------
    def acquire_once(self, clean: torch.Tensor, seeds: torch.Tensor) -> Acquisition:
        """Each slice's one acquisition, seeded by its identity so it never changes during a run:
        mask ``(B, H, W)``, measured k-space ``(B, 1, H, W)``, the corruption's keep probability.
        The mask, the k-space noise and (for
        magnitude data trained as complex) the smooth phase are drawn on the CPU from the seed;
        real images use the Hermitian completion of the mask."""
        seeds = [int(v) ^ _ACQ_SALT for v in torch.as_tensor(seeds).tolist()]
        if self.complex_data and clean.shape[1] == 1:
            clean = torch.cat(
                [smooth_phase(clean[i : i + 1], seeded_generator(v ^ 0x5EED)) for i, v in enumerate(seeds)]
            )
        k = self._acquire(self._spectrum(clean), [seeded_generator(v ^ 0x401CE) for v in seeds])
        masks = torch.cat([self.draw_masks(1, seeded_generator(v)) for v in seeds], dim=0)
        acq, _ = self._observe(k, masks.to(clean.device))
        return acq

    def _shift_data(self, acq: Acquisition, generator: torch.Generator) -> Acquisition:
        """The paper's random circular shift applied to measured data: a phase ramp in k-space
        (exact; the sampled set does not change)."""
        if self.max_shift <= 0:
            return acq
        img = random_shift(acq.coil_images(), self.max_shift, generator)
        return acq.with_data(acq.forward(img if self.complex_data else img.real))

    def _split_pair(self, acq: Acquisition, inp_mask: torch.Tensor, held: torch.Tensor) -> Pair:
        """The pair of a split of the acquisition ``acq`` (its keep probability ``p``) into the
        input bins ``inp_mask`` and the held-out bins ``held``: the input is the zero-filled
        image of ``acq.restrict(inp_mask)`` compensated by ``p q``; the target acquisition the
        held-out bins with the loss's keep probability
        (:func:`~mri_n2n.splits.split_loss_density`)."""
        p = acq.keep_prob
        q = self.split.keep_probability().to(acq.y.device)
        # p is shared (H, W) or per sample (B, H, W, measured files), as zero_filled takes it
        inp = acq.restrict(inp_mask, p * q)
        z = inp.zero_filled(acq.y)
        full = acq.zero_filled()
        target_acq = acq.restrict(held, split_loss_density(p, q))
        return Pair(self._as_channels(z), self._as_channels(full), inp, target_acq)

    def single_pair(self, batch: torch.Tensor, *, generator: torch.Generator, seeds: torch.Tensor) -> Pair:
        """A training pair from one acquisition per slice (``ssdu`` / ``noisier2noise``).

        ``batch`` is clean ``(B, C, H, W)`` (each slice acquired once by :meth:`acquire_once`) or
        measured ``(B, 4, H, W)`` (:func:`unpack_measured`). A fresh split of the acquisition:
        the input is the zero-filled image of ``Omega & keep`` compensated by ``p q`` (the pair's
        ``acq``); its ``target_acq`` holds the held-out set, its k-space and
        ``P(held out | not in the input)`` for :func:`mri_n2n.losses.kspace_loss`. The pair's
        ``target`` is the compensated zero-filled image of the whole acquisition (for display;
        the k-space loss does not read it).
        """
        if self.split is None:
            raise ValueError("this corruption has no split law (build it for --target ssdu or noisier2noise)")
        measured = batch.shape[1] == MEASURED_CHANNELS
        acq = unpack_measured(batch) if measured else self.acquire_once(batch, seeds)
        acq = self._shift_data(acq, generator)
        inp_mask, held = self.split.split(acq.mask, generator)
        return self._split_pair(acq, inp_mask, held)

    def pair(
        self,
        clean: torch.Tensor,
        *,
        generator: torch.Generator,
        target: str = "noisy",
        seeds: torch.Tensor | None = None,
    ) -> Pair:
        if target in SPLIT_TARGETS:
            if seeds is None:
                raise ValueError(f"target '{target}' needs each sample's identity (seeds) to acquire it")
            return self.single_pair(clean, generator=generator, seeds=seeds)
        if target not in TARGETS:
            raise ValueError(f"target must be one of {(*TARGETS, *SPLIT_TARGETS)}, got '{target}'")
        return self.paired(clean, generator=generator, target=target)

    def paired(self, clean: torch.Tensor, *, generator: torch.Generator, target: str = "noisy") -> Pair:
        """A Noise2Noise (``noisy``) or Noise2Clean (``clean``) pair: two independent masks on one
        (noisy) acquisition of each slice, drawn afresh at every call."""
        if clean.shape[1] == MEASURED_CHANNELS:
            raise ValueError(f"undersampled data train only with the targets {SPLIT_TARGETS}")
        clean = self._as_model_data(clean, generator)
        if self.augment:
            clean = augment_batch(clean, generator, deform=self.deform)
            if self.crop:
                clean = random_crop(clean, generator)
        clean = random_shift(clean, self.max_shift, generator)
        k = self._acquire(self._spectrum(clean), [generator])
        b = clean.shape[0]
        family, keep_prob = self.law_at(clean.shape[-2:])
        acq, inp = self._observe(k, family.sample(b, generator=generator), keep_prob)
        if target != "noisy":
            return Pair(inp, clean, acq)
        # what a k-space loss needs (mri_n2n.losses.kspace_loss): the target's own sampled set,
        # its measured (unscaled) k-space and each bin's keep probability
        target_acq, tgt = self._observe(k, family.sample(b, generator=generator), keep_prob)
        return Pair(inp, tgt, acq, target_acq)

    def keep_probability(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The probability ``(H, W)`` that the mask the model works with keeps each bin: the
        family's keep probability (complex data) or that of its Hermitian completion (real)."""
        return self.keep_prob.to(device)

    def validation_pair(self, clean: torch.Tensor, seeds: torch.Tensor) -> Pair:
        """Fixed corruptions seeded per sample; masks are drawn on the CPU, so CPU and CUDA runs
        validate on the same masks.

        A measured batch (no clean reference) gets a split seeded per sample, as in training:
        the validation loss is then the held-out k-space loss."""
        if clean.shape[1] == MEASURED_CHANNELS:
            if self.split is None:
                raise ValueError("measured validation data need a split law (--target ssdu or noisier2noise)")
            acq = unpack_measured(clean)
            keep = torch.cat(
                [self.split.draw(1, seeded_generator(int(s) ^ _ACQ_SALT)) for s in seeds.tolist()]
            ).to(acq.mask.device)
            return self._split_pair(acq, acq.mask & keep, acq.mask & ~keep)
        masks = torch.cat([self.draw_masks(1, seeded_generator(int(s))) for s in seeds.tolist()], dim=0)
        return self.measure(clean, masks.to(clean.device), phase_seeds=seeds)

    def project(self, output: torch.Tensor, acq: AcquisitionLike) -> torch.Tensor:
        """Data consistency of the model's output with the input's measurements
        (:meth:`~mri_n2n.physics.Acquisition.project`): model channels in, model channels out;
        ``acq`` is the input's acquisition (or its pair)."""
        acq = as_acquisition(acq)
        channels = output.shape[1]
        z = acq.project(acq.image_of(output.float()), acq.y)  # y given: the centred-FFT path
        out = acq.channels_of(z, channels)
        return out if self.complex_data else out.to(output.dtype)

    def config(self) -> dict:
        return {
            "name": "MRIUndersampling",
            "family": self.family.name,
            "max_shift": self.max_shift,
            "complex_data": self.complex_data,
            "augment": self.augment,
            "deform": self.deform,
            "crop": self.crop,
            "noise_std": self.noise_std,
            "split": None if self.split is None else self.split.describe(),
            "measured_law": self.family.describe() if self.measured_law else None,
        }
