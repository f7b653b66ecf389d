"""The paper's MRI corruption: random undersampling of the measurements (section 3.4), one class
for every acquisition kind and coil count, built from a run's :class:`~mri_n2n.config.Config` by
:meth:`MRIUndersampling.from_config` alike for training, reconstruction and evaluation.

A batch is either a tensor of clean images (a magnitude or two-channel complex slice: the kind's
:meth:`~mri_n2n.physics.Acquisition.fully_sampled` acquisition measures it) or an
:class:`~mri_n2n.physics.Acquisition` (:func:`mri_n2n.data.collate` stacks a loader's items):
fully sampled data (no keep probability, e.g. coil k-space with its maps), or one measured
acquisition per slice (its sampled set and the law's keep probability, e.g. undersampled files,
which train only with the single-acquisition targets). Every path is the same few calls of the
interface: the full measurements ``k`` -> k-space noise -> :meth:`~mri_n2n.physics.Acquisition.observe`
of sets drawn from the law -> :meth:`~mri_n2n.physics.Acquisition.zero_filled` as the model's
channels; the single-acquisition targets split one acquisition with
:meth:`~mri_n2n.physics.Acquisition.restrict` (:mod:`mri_n2n.splits`).

Sampled sets come from a :class:`~mri_n2n.masks.SampleLaw` (a
:class:`~mri_n2n.masks.MaskFamily` for Cartesian data), which knows the exact keep probability
of every sample. Real (one-channel) images use the kind's completion of each set (Cartesian: the
Hermitian completion, :func:`~mri_n2n.masks.complete_measurements`): data consistency stays exact
on every measured frequency and the image real, for line masks too. Complex (two-channel) images
use the sets as drawn; a magnitude dataset trained with ``--complex`` gets a random smooth phase
per slice (:func:`smooth_phase`), as real scans have. Coil data are complex; their model image
is the coil combination by the maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from ..coil_maps import INFERENCE_MAPS, MAPS_MIN_CALIBRATION, estimate_maps
from ..data.generators.phase import with_random_phase
from ..devices import reads_sync, resident
from ..fft import to_complex
from ..masks import Bernoulli2D, MaskFamily, SampleLaw, family_from_description
from ..physics import Acquisition, CartesianAcquisition, acquisition_kind
from ..seeding import SALT_ACQUISITION, SALT_NOISE, SALT_PHASE, seeded_generator
from ..splits import SPLIT_TARGETS, SplitLaw, make_split, split_loss_density
from .augment import augment_batch, random_crop, random_rescale, resize_acquisition
from .base import TARGETS, AcquisitionLike, Corruption, Pair, as_acquisition


class SamplingSettings(Protocol):
    """The settings :meth:`MRIUndersampling.from_config` reads (a :class:`mri_n2n.config.Config`
    has them; the config module sits above this layer, so it is not imported here)."""

    acquisition: str
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
    rescale: bool | None
    kspace_noise: float
    target: str
    split: float


__all__ = ["MRIUndersampling", "MultiCoilUndersampling", "random_shift", "smooth_phase", "is_measured"]

Batch = torch.Tensor | Acquisition
#: ``--train-maps``: the coil maps a multi-coil network trains with: the data's true maps, or
#: maps estimated from each input's fully sampled centre with these settings, those of
#: ``reconstruct`` (:data:`mri_n2n.coil_maps.INFERENCE_MAPS`), so that the network learns to
#: live with the estimate's errors.
TRAIN_MAPS: dict[str, dict[str, Any] | None] = {"true": None, "estimated": INFERENCE_MAPS}
#: The phase models of magnitudes trained as complex (``--phase-model``).
PHASE_MODELS = ("smooth", "realistic")


def is_measured(batch: Batch) -> bool:
    """Whether a batch is measured data: an acquisition with the law's keep probability of its
    sampled set (one acquisition per slice), rather than clean images or fully sampled data
    (an acquisition without keep probability measures every sample)."""
    return isinstance(batch, Acquisition) and batch.keep_prob is not None


# --------------------------------------------------------------------------------------


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
    if reads_sync(offsets.device):  # no host read of the offsets: an exact per-sample gather
        return roll_each(x, offsets.to(x.device))
    return torch.stack(
        [torch.roll(x[i], shifts=(dy, dx), dims=(-2, -1)) for i, (dy, dx) in enumerate(offsets.tolist())]
    )


def roll_each(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, ..., H, W)`` with sample ``i`` rolled circularly by ``offsets[i] = (dy, dx)``
    along the last two dims (``torch.roll`` per sample, the same values), as two gathers that
    never read the offsets on the host."""
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    rows = (torch.arange(h, device=x.device) - offsets[:, :1]) % h  # out[i] = x[(i - dy) mod H]
    cols = (torch.arange(w, device=x.device) - offsets[:, 1:]) % w
    lead = (b,) + (1,) * (x.ndim - 3)
    y = torch.gather(x, -2, rows.view(*lead, h, 1).expand(x.shape))
    return torch.gather(y, -1, cols.view(*lead, 1, w).expand(x.shape))


class MRIUndersampling(Corruption):
    """The paper's MRI corruption: random undersampling of the measurements (module docstring).

    For each sample and every call a fresh sampled set is drawn from ``family``. The network
    input is the zero-filled reconstruction with ``1/p`` compensation by the exact keep
    probability (:attr:`keep_prob`); the Noise2Noise target is the same slice under a second,
    independent set processed the same way; the Noise2Clean target is the clean slice (for
    fully sampled coil data: its coil combination). :meth:`data_consistency` (with the input's
    own measurements) belongs to the graph in training and at inference.

    Args:
        family: the law of the sampled sets (a :class:`~mri_n2n.masks.SampleLaw` of the kind's
            samples; a :class:`~mri_n2n.masks.MaskFamily` for Cartesian data), or a density
            tensor ``(H, W)`` for 2-D Bernoulli masks (Hermitian for real data, as the paper
            draws them).
        kind: the acquisition kind (a registered name or class, :mod:`mri_n2n.physics`).
        coils: the number of coils of coil data (multi-coil training; complex), ``None`` for
            single-coil data.
        image_shape: the image matrix ``(H, W)`` the law is for (default: the law's shape, the
            Cartesian grid).
        max_shift: training augmentation, random circular shifts up to this many pixels (kinds
            that admit ``"shift"``; coil images and maps alike).
        complex_data: images are ``(B, 2, H, W)`` real/imag channels; a one-channel (magnitude)
            clean batch gets a random smooth phase (:func:`smooth_phase`).
        augment: augment each clean training slice (:func:`~mri_n2n.corruptions.augment.augment_batch`)
            before its observations are drawn (kinds that admit flips).
        deform: with ``augment``, also warp each slice by a random affine and elastic
            deformation (:func:`~mri_n2n.corruptions.augment.random_deformation`).
        crop: with ``augment``, also cut each training batch to a random matrix size
            (:func:`~mri_n2n.corruptions.augment.random_crop`); its masks are drawn from the
            family rebuilt at that size (a named family, see :meth:`law_at`). Fully sampled coil
            data are cut with their maps
            (:func:`~mri_n2n.corruptions.augment.resize_acquisition`).
        rescale: likewise, resample each training batch to a random coarser matrix by k-space
            truncation (:func:`~mri_n2n.corruptions.augment.random_rescale`; coil data with their
            maps).
        estimate_maps: coil data: the settings (``{"method": ..., **keywords}``) with which every
            input's maps are estimated from its own fully sampled centre and given to the network
            in place of the data's true maps (``--train-maps estimated``); ``None``: the true maps.
        noise_std: standard deviation of complex Gaussian noise (real and imaginary parts each
            ``noise_std / sqrt(2)``) added to the measurements of each (normalised) slice: one
            noisy acquisition per slice, from which both observations of a pair are drawn, as a
            scanner gives. The Noise2Clean target stays clean.
        split: a :class:`~mri_n2n.splits.SplitLaw` for the single-acquisition targets (``ssdu``,
            ``noisier2noise``): every slice is acquired once (sampled set, noise and phase seeded
            by its identity), and each training step splits that acquisition into the input and a
            held-out set for the k-space loss (:meth:`single_pair`).
    """

    task = "mri"

    def __init__(
        self,
        family: SampleLaw | torch.Tensor,
        *,
        kind: str | type[Acquisition] = "cartesian",
        coils: int | None = None,
        image_shape: tuple[int, int] | None = None,
        max_shift: int = 0,
        complex_data: bool = False,
        augment: bool = False,
        deform: bool = False,
        crop: bool = False,
        rescale: bool = False,
        estimate_maps: dict[str, Any] | None = None,
        noise_std: float = 0.0,
        split: SplitLaw | None = None,
        phase_model: str = "smooth",
    ) -> None:
        if phase_model not in PHASE_MODELS:
            raise ValueError(f"phase_model must be one of {PHASE_MODELS}, got {phase_model!r}")
        #: the random phase of magnitudes trained as complex (``smooth``: :func:`smooth_phase`;
        #: ``realistic``: :func:`~mri_n2n.data.generators.phase.with_random_phase`)
        self.phase_model = phase_model
        if isinstance(family, torch.Tensor):
            family = Bernoulli2D(family, hermitian=not complex_data, name="bernoulli")
        self.kind = acquisition_kind(kind) if isinstance(kind, str) else kind
        if coils is not None:
            if coils < 1:
                raise ValueError(f"coils must be >= 1, got {coils}")
            if not complex_data:
                raise ValueError("coil data are complex: build their corruption with complex_data=True")
        self.coils = None if coils is None else int(coils)
        self.family = family
        self.image_shape = tuple(int(v) for v in (image_shape or family.shape))
        self.complex_data = bool(complex_data)
        #: the model's channels: two (real, imaginary) for complex or coil data, else one
        self.channels = 2 if self.complex_data else 1
        self.max_shift = int(max_shift)
        self.augment = bool(augment) and "flip" in self.kind.augmentations
        self.deform = bool(deform) and self.augment
        # coil data (fully sampled acquisitions) are cut and resampled with their maps
        resizable = self.augment or (coils is not None and "shift" in self.kind.augmentations)
        self.crop = bool(crop) and resizable
        self.rescale = bool(rescale) and resizable
        #: coil data: the network sees maps estimated from each input with these settings
        #: (``{"method": ..., **estimator keywords}``) instead of the data's true maps
        self.estimate_maps = None if estimate_maps is None or coils is None else dict(estimate_maps)
        named = isinstance(family, MaskFamily) and family.name not in ("bernoulli", "lines")
        if (self.crop or self.rescale) and not named:
            raise ValueError(
                f"crops and rescales need a named mask family to rebuild at each size, not '{family.name}'"
            )
        self._laws: dict[tuple[int, int], tuple[SampleLaw, torch.Tensor]] = {}
        #: a mixture of protocols' components (one per batch) and their keep probabilities
        self._protocols: dict[int, tuple[SampleLaw, torch.Tensor]] = {}
        if not noise_std >= 0:
            raise ValueError(f"k-space noise must be >= 0, got {noise_std}")
        self.noise_std = float(noise_std)
        p = family.keep_probability() if self.complex_data else family.real_keep_probability()
        self.keep_prob = p.float()  # the compensation: P(sample in the set the model works with)
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
        family: SampleLaw | None = None,
        coils: int | None = None,
    ) -> MRIUndersampling:
        """The corruption a run's config describes, for images of ``shape`` (training,
        reconstruction and evaluation alike).

        Args:
            cfg: a :class:`~mri_n2n.config.Config` (its ``acquisition``, ``density``,
                ``fraction``, ``edge``, ``acceleration``, ``center_fraction``, ``shift``,
                ``complex``, ``augment``, ``kspace_noise``, ``target`` and ``split``).
            shape: slice shape ``(H, W)``.
            fraction: another mean sampling density (line families: acceleration
                ``1 / fraction``); ``None`` keeps the config's.
            family: the acquisitions' law when the data are measured (it replaces the config's
                law, e.g. the law of undersampled training files).
            coils: coil data of this many coils (a :class:`MultiCoilUndersampling`: complex, not
                augmented); ``None``: single-coil data.

        Raises:
            ValueError: the law cannot be built (e.g. a fraction outside ``(0, 1]``).
        """
        shape = (int(shape[0]), int(shape[1]))
        complex_data = bool(cfg.complex) or coils is not None
        kind = acquisition_kind(getattr(cfg, "acquisition", "cartesian") or "cartesian")
        given = family is not None
        family = family or kind.law(cfg, shape, fraction=fraction, hermitian=not complex_data)
        split = None
        target = getattr(cfg, "target", "noisy")
        if target in SPLIT_TARGETS:
            p = family.keep_probability() if complex_data else family.real_keep_probability()
            split = make_split(
                target, family, p, float(getattr(cfg, "split", 0.4)), hermitian=not complex_data
            )
        if coils is not None and not issubclass(cls, MultiCoilUndersampling):
            cls = MultiCoilUndersampling
        out = cls(
            family,
            kind=kind,
            coils=coils,
            image_shape=shape,
            max_shift=min(shape) // 4 if cfg.shift is None else cfg.shift,
            complex_data=complex_data,
            augment=bool(cfg.augment) and split is None and coils is None,
            deform=bool(getattr(cfg, "deform", False)),
            crop=bool(getattr(cfg, "crop", False)) and bool(cfg.augment) and split is None,
            rescale=bool(getattr(cfg, "rescale", False)) and bool(cfg.augment) and split is None,
            estimate_maps=TRAIN_MAPS.get(str(getattr(cfg, "train_maps", None) or "true")),
            noise_std=float(getattr(cfg, "kspace_noise", 0.0) or 0.0),
            split=split,
            phase_model=str(getattr(cfg, "phase_model", "smooth") or "smooth"),
        )
        out.measured_law = given
        return out

    @property
    def law(self) -> SampleLaw:
        """The law of the sampled sets (:attr:`family`)."""
        return self.family

    @property
    def shape(self) -> tuple[int, ...]:
        """The law's sample shape (the k-space grid ``(H, W)`` for Cartesian data)."""
        return tuple(self.family.shape)

    def law_at(self, shape: tuple[int, int]) -> tuple[SampleLaw, torch.Tensor]:
        """The law rebuilt for images of ``shape`` (a named mask family: same name and
        parameters) and its keep probability; the corruption's own for its shape. Cached per
        shape."""
        shape = (int(shape[0]), int(shape[1]))
        if shape == self.image_shape:
            return self.family, self.keep_prob
        if shape not in self._laws:
            if not isinstance(self.family, MaskFamily):
                raise ValueError(
                    f"the law {self.family.name!r} is for images of {self.image_shape}, not {shape}"
                )
            fam = family_from_description({**self.family.describe(), "shape": list(shape)})
            p = fam.keep_probability() if self.complex_data else fam.real_keep_probability()
            self._laws[shape] = (fam, p.float())
        return self._laws[shape]

    def protocol(
        self, law: SampleLaw, keep_prob: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[SampleLaw, torch.Tensor]:
        """A batch's law and keep probability: ``law`` itself, or for a mixture of protocols that
        a batch must share (a :class:`~mri_n2n.noncartesian.TrajectoryMixture`: one trajectory per
        batch) one component drawn from ``generator``, without one the mixture's fixed base."""
        pick = getattr(law, "component", None)
        if pick is None:
            return law, keep_prob
        part = pick(generator)
        if id(part) not in self._protocols:
            p = part.keep_probability() if self.complex_data else part.real_keep_probability()
            self._protocols[id(part)] = (part, p.float())
        return self._protocols[id(part)]

    def draw_masks(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Draw ``batch`` independent sampled sets ``(B, *sample_shape)`` on the generator's device."""
        return self.family.sample(batch, generator=generator)

    def keep_probability(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The probability that the set the model works with keeps each sample: the law's keep
        probability (complex data) or that of its completion (real)."""
        return resident(self, f"keep_prob{tuple(self.keep_prob.shape)}", self.keep_prob, device)

    # -- the pieces of every path ----------------------------------------------------------
    def _as_model_data(self, clean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Clean batch in the model's layout: magnitude -> complex with a smooth phase."""
        if self.complex_data and clean.shape[1] == 1:
            if generator is None:
                raise ValueError("a magnitude batch for complex data needs a generator for its phase")
            return self._phase(clean, generator)
        return clean

    def _phase(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Magnitudes as complex channels with the corruption's phase model."""
        if self.phase_model == "realistic":
            return with_random_phase(clean, generator, channels=True)
        return smooth_phase(clean, generator)

    def _seeded_phase(self, clean: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
        """Magnitudes trained as complex: each slice's smooth phase seeded by ``seeds``."""
        if self.complex_data and clean.shape[1] == 1:
            gens = [seeded_generator(v ^ SALT_PHASE) for v in seeds]
            return torch.cat([self._phase(clean[i : i + 1], g) for i, g in enumerate(gens)])
        return clean

    def _check(self, acq: Acquisition) -> Acquisition:
        if acq.kind != self.kind.kind and is_measured(acq):
            raise ValueError(f"a {acq.kind} batch for a corruption of {self.kind.kind} acquisitions")
        if self.coils is not None and acq.n_coils != self.coils:
            raise ValueError(f"expected {self.coils} coils, the batch has {acq.n_coils}")
        return acq

    def _full(self, batch: Batch, law: SampleLaw | None = None) -> tuple[Acquisition, torch.Tensor]:
        """``(fully sampled acquisition, all its measurements k)`` of clean images in the model's
        layout (the kind's :meth:`~mri_n2n.physics.Acquisition.fully_sampled`) or of fully
        sampled data; ``law``: the batch's law (default the corruption's at the images' size)."""
        if isinstance(batch, Acquisition):
            acq = self._check(batch)
            if acq.kind == self.kind.kind:
                return acq, acq.y
            # fully sampled data of another kind (synthetic coil k-space on the grid): their
            # image and maps, acquired by this kind
            x = acq.adjoint()
            law = law or self.law_at(acq.image_shape)[0]
            full = self.kind.for_law(law, x.shape, maps=acq.maps, device=x.device)
            return full, full.full(x)
        x = to_complex(batch.float(), keepdim=True) if self.complex_data else batch.float()
        law = law or self.law_at(tuple(x.shape[-2:]))[0]
        full = self.kind.for_law(law, x.shape, device=x.device)
        return full, full.full(x)

    def _reference(self, batch: Batch, full: Acquisition, k: torch.Tensor) -> torch.Tensor:
        """The clean target: the clean images, or the image of fully sampled data (its coil
        combination)."""
        if isinstance(batch, Acquisition):
            if batch.kind != full.kind:  # data of another kind, re-acquired: their own image
                return batch.channels_of(batch.adjoint(), self.channels)
            return full.channels_of(full.adjoint(k), self.channels)
        return batch

    def _spectrum(self, clean: torch.Tensor) -> torch.Tensor:
        """The full measurements of a clean batch in the model's layout."""
        return self._full(clean)[1]

    def _acquire(self, k: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        """The measurements ``k`` ``(B, ...)`` plus complex Gaussian noise (one generator per
        sample, or one for the batch)."""
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

    def _acquisition(
        self, full: Acquisition, k: torch.Tensor, sampled: torch.Tensor, keep_prob: torch.Tensor | None = None
    ) -> Acquisition:
        """The acquisition of the samples ``sampled`` of the full measurements ``k`` of ``full``,
        with ``keep_prob`` (default the corruption's own). Real data use the kind's completion of
        the set (a law drawn symmetric is complete already)."""
        p = self.keep_prob if keep_prob is None else keep_prob
        own = (*self._laws.values(), *self._protocols.values())
        if p is self.keep_prob or any(p is law[1] for law in own):  # the laws' own:
            p = resident(self, f"keep_prob{tuple(p.shape)}", p, k.device)  # copied to the device once
        # a law drawn symmetric needs no completion (laws per item: some of theirs are not)
        real = not self.complex_data and (not self.family.hermitian or self.family.per_item)
        return full.observe(k, sampled.to(k.device), p, real=real)

    def _observe(
        self, full: Acquisition, k: torch.Tensor, sampled: torch.Tensor, keep_prob: torch.Tensor | None = None
    ) -> tuple[Acquisition, torch.Tensor]:
        """``(acquisition, compensated zero-filled image as model channels)``
        (:meth:`_acquisition`)."""
        acq = self._acquisition(full, k, sampled, keep_prob)
        return acq, self._channels(acq, acq.zero_filled())

    def _channels(self, acq: Acquisition, z: torch.Tensor) -> torch.Tensor:
        """An image of ``acq`` as the model's channels (two, or the real part)."""
        return acq.channels_of(z, self.channels)

    def _shift(self, acq: Acquisition, generator: torch.Generator) -> Acquisition:
        """The paper's random circular shift of an acquisition's images (kinds that admit it): a
        phase ramp of the measurements, exact, the sampled set unchanged; coil maps move with the
        coil images."""
        if self.max_shift <= 0 or not acq.admits("shift"):
            return acq
        def roll(t: torch.Tensor) -> torch.Tensor:
            return random_shift(t, self.max_shift, generator)

        return acq.translated(roll, real=not self.complex_data)

    # -- Noise2Noise and Noise2Clean -----------------------------------------------------------
    def pair(
        self,
        clean: Batch,
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

    def paired(self, clean: Batch, *, generator: torch.Generator, target: str = "noisy") -> Pair:
        """A Noise2Noise (``noisy``) or Noise2Clean (``clean``) pair: two independent sampled sets
        on one (noisy) acquisition of each slice, drawn afresh at every call. ``clean``: clean
        images, or fully sampled data (an acquisition)."""
        g = generator
        if is_measured(clean):
            raise ValueError(f"undersampled data train only with the targets {SPLIT_TARGETS}")
        if isinstance(clean, Acquisition):  # fully sampled data: shift the images, maps alike
            clean = self._shift(self._check(clean), g)  # the reference of data of another kind
            resizable = isinstance(clean, CartesianAcquisition) and clean.maps is not None
            if (self.rescale or self.crop) and resizable:
                clean = resize_acquisition(clean, g, rescale=self.rescale, crop=self.crop)
            shape = tuple(clean.image_shape)
        else:
            clean = self._as_model_data(clean, g)
            if self.augment:
                clean = augment_batch(clean, g, deform=self.deform)
                if self.rescale:
                    clean = random_rescale(clean, g)
                if self.crop:
                    clean = random_crop(clean, g)
            if self.max_shift > 0 and "shift" in self.kind.augmentations:
                clean = random_shift(clean, self.max_shift, g)
            shape = tuple(clean.shape[-2:])
        law, keep_prob = self.protocol(*self.law_at(shape), g)
        full, k = self._full(clean, law)
        noisy = self._acquire(k, [g])
        b = k.shape[0]
        # the sets of both observations (an item's law may be its own: both from it)
        sets, per_item = law.draw_items(b, 2 if target == "noisy" else 1, generator=g, real=self._real())
        keep_prob = keep_prob if per_item is None else per_item
        seen = self._seen_maps(full, noisy, sets[0])
        acq, inp = self._observe(seen, noisy, sets[0], keep_prob)
        if target != "noisy":
            return Pair(inp, self._reference(clean, full, k), acq)
        # what a k-space loss needs (mri_n2n.losses.kspace_loss): the target's own sampled set,
        # its measured (unscaled) k-space and each sample's keep probability
        target_acq, tgt = self._observe(seen, noisy, sets[1], keep_prob)
        return Pair(inp, tgt, acq, target_acq)

    def _seen_maps(self, full: Acquisition, k: torch.Tensor, sampled: torch.Tensor) -> Acquisition:
        """``full`` with the coil maps the network is given: its own (the data's true maps), or
        with ``estimate_maps`` set, each item's maps estimated from the measurements ``k`` on
        its input's sampled set ``sampled``, as ``reconstruct`` estimates them from a file
        (:func:`~mri_n2n.coil_maps.estimate_maps` on the fully sampled centre; an item whose
        centre is too small for an estimate keeps its true maps)."""
        if self.estimate_maps is None or not isinstance(full, CartesianAcquisition) or full.maps is None:
            return full
        opts = dict(self.estimate_maps)
        method = opts.pop("method", "espirit")
        m = sampled.to(k.device)
        y = full.sample(k) * m.reshape(-1, 1, *m.shape[-2:])  # per-item (B, H, W) or shared (H, W) sets
        maps = full.maps.expand(y.shape[0], -1, -1, -1).clone()
        for i in range(y.shape[0]):
            live = y[i].flatten(1).abs().amax(1) > 0  # padded silent coils stay silent
            try:
                est = estimate_maps(y[i, live], method, min_calib=MAPS_MIN_CALIBRATION, **opts)
            except ValueError:
                continue
            maps[i, live] = est.to(maps.dtype)
        return CartesianAcquisition(full.mask, maps, full.y, keep_prob=full.keep_prob, phase=full.phase)

    def _real(self) -> bool:
        """The model's images are real: the kind's completion of the sets applies."""
        return not self.complex_data

    def measure(
        self,
        clean: Batch,
        mask: torch.Tensor,
        *,
        phase_seeds: torch.Tensor | None = None,
        keep_prob: torch.Tensor | None = None,
        law: SampleLaw | None = None,
    ) -> Pair:
        """Undersample ``clean`` (clean images or fully sampled data) with given sampled sets
        ``mask`` (of the law's keep probability ``keep_prob``, per item or shared; default the
        corruption's); the target is the clean batch (of fully sampled data: its image).

        A magnitude batch for complex data gets the smooth phase, and every slice its k-space
        noise, seeded per sample by ``phase_seeds`` (default: the sample's index). ``law``: the
        law the sets are of (one protocol of a mixture; default the corruption's).
        """
        n = clean.batch_size if isinstance(clean, Acquisition) else clean.shape[0]
        seeds = (torch.arange(n) if phase_seeds is None else torch.as_tensor(phase_seeds)).tolist()
        if not isinstance(clean, Acquisition):
            clean = self._seeded_phase(clean, seeds)
        full, k = self._full(clean, law)
        noisy = self._acquire(k, [seeded_generator(int(s) ^ SALT_NOISE) for s in seeds])
        seen = self._seen_maps(full, noisy, mask)
        acq, img = self._observe(seen, noisy, mask.to(k.device), keep_prob)
        return Pair(img, self._reference(clean, full, k), acq)

    def validation_pair(self, clean: Batch, seeds: torch.Tensor) -> Pair:
        """Fixed corruptions seeded per sample; sampled sets are drawn on the CPU, so CPU and
        CUDA runs validate on the same sets.

        A measured batch (no clean reference) gets a split seeded per sample, as in training:
        the validation loss is then the held-out k-space loss."""
        if is_measured(clean):
            if self.split is None:
                raise ValueError("measured validation data need a split law (--target ssdu or noisier2noise)")
            acq = self._check(clean)
            draws = [self.split.draw(1, seeded_generator(int(s) ^ SALT_ACQUISITION)) for s in seeds.tolist()]
            return self._split_pair(acq, torch.cat(draws).to(acq.sampled.device))
        ids = seeds.tolist()
        law, mixed, p = self._fixed_protocol()
        draws = [law.draw_items(1, 1, generator=seeded_generator(int(s)), real=self._real()) for s in ids]
        masks = torch.cat([d[0][0] for d in draws], dim=0)
        per_item = None if draws[0][1] is None else torch.cat([d[1] for d in draws]).to(masks.device)
        p = p if per_item is None else per_item
        return self.measure(clean, masks, phase_seeds=seeds, keep_prob=p, law=mixed)

    def _fixed_protocol(self) -> tuple[SampleLaw, SampleLaw | None, torch.Tensor | None]:
        """``(law to draw from, the protocol or None, its keep probability or None)`` of fixed
        draws: for a mixture of protocols its base (the same whatever the batching), else the
        corruption's own law (``None, None``: the law at the data's size serves)."""
        if getattr(self.family, "component", None) is None:
            return self.family, None, None
        law, p = self.protocol(self.family, self.keep_prob)
        return law, law, p

    # -- single acquisitions (SSDU, Noisier2Noise) --------------------------------------------
    def acquire_once(self, clean: Batch, seeds: torch.Tensor) -> Acquisition:
        """Each slice's one acquisition, seeded by its identity so it never changes during a run:
        its sampled set, its measurements (noise included), the corruption's keep probability.
        The set, the k-space noise and (for magnitude data trained as complex) the smooth phase
        are drawn on the CPU from the seed; real images use the completion of the set."""
        ids = [int(v) ^ SALT_ACQUISITION for v in torch.as_tensor(seeds).tolist()]
        if not isinstance(clean, Acquisition):
            clean = self._seeded_phase(clean, ids)
        law, mixed, p = self._fixed_protocol()
        full, k = self._full(clean, mixed)
        noisy = self._acquire(k, [seeded_generator(v ^ SALT_NOISE) for v in ids])
        draws = [law.draw_items(1, 1, generator=seeded_generator(v), real=self._real()) for v in ids]
        masks = torch.cat([d[0][0] for d in draws], dim=0)
        per_item = None if draws[0][1] is None else torch.cat([d[1] for d in draws]).to(noisy.device)
        return self._acquisition(full, noisy, masks, p if per_item is None else per_item)

    def single_pair(self, batch: Batch, *, generator: torch.Generator, seeds: torch.Tensor) -> Pair:
        """A training pair from one acquisition per slice (``ssdu`` / ``noisier2noise``).

        ``batch`` is clean images or fully sampled data (each slice acquired once by
        :meth:`acquire_once`) or measured data (an acquisition with keep probabilities). After the
        random shift (a phase ramp), a fresh split of the acquisition: the input is the
        zero-filled image of ``Omega & keep`` compensated by ``p q`` (the pair's ``acq``); its
        ``target_acq`` holds the held-out set, its measurements and ``P(held out | not in the
        input)`` for :func:`mri_n2n.losses.kspace_loss`. The pair's ``target`` is the compensated
        zero-filled image of the whole acquisition (for display; the k-space loss does not read
        it).
        """
        if self.split is None:
            raise ValueError("this corruption has no split law (build it for --target ssdu or noisier2noise)")
        acq = self._check(batch) if is_measured(batch) else self.acquire_once(batch, seeds)
        acq = self._shift(acq, generator)
        keep = self.split.draw(acq.batch_size or 1, generator, device=acq.sampled.device)
        return self._split_pair(acq, keep)

    def _split_pair(self, acq: Acquisition, keep: torch.Tensor) -> Pair:
        """The pair of a split of the acquisition ``acq`` (its keep probability ``p``) by the kept
        sets ``keep``: the input is the zero-filled image of ``acq.restrict(keep)`` compensated by
        ``p q``; the target acquisition the held-out samples with the loss's keep probability
        (:func:`~mri_n2n.splits.split_loss_density`)."""
        p = acq.keep_prob
        q = self.split.keep_probability().to(acq.y.device)
        # p is shared or per sample (measured files), as zero_filled takes it
        inp = acq.restrict(keep, p * q)
        z = inp.zero_filled(acq.y)
        full = acq.zero_filled()
        target_acq = acq.restrict(~keep, split_loss_density(p, q))
        return Pair(self._channels(acq, z), self._channels(acq, full), inp, target_acq)

    # -- data consistency ----------------------------------------------------------------------
    def data_consistency(self, output: torch.Tensor, acq: AcquisitionLike) -> torch.Tensor:
        """Data consistency of the model's output with the input's measurements
        (:meth:`~mri_n2n.physics.Acquisition.data_consistency`: the exact replacement where the
        kind has one, else the exact projection by conjugate gradients): model channels in, model
        channels out; ``acq`` is the input's acquisition (or its pair). With several coils the
        replacement is per coil, then the SENSE-1 combination (E2E-VarNet's choice): one
        gradient step towards ``{z : A z = y}`` that never increases the residual."""
        acq = as_acquisition(acq)
        # y given: the Cartesian replacement's centred-FFT path
        z = acq.data_consistency(acq.image_of(output.float()), y=acq.y)
        return acq.channels_of(z, output.shape[1]).to(output.dtype)

    def config(self) -> dict:
        out = {
            "name": "MRIUndersampling" if self.coils is None else "MultiCoilUndersampling",
            "family": self.family.name,
            "max_shift": self.max_shift,
            "complex_data": self.complex_data,
            **({"phase_model": self.phase_model} if self.phase_model != "smooth" else {}),
            "augment": self.augment,
            "deform": self.deform,
            "crop": self.crop,
            **({"rescale": True} if self.rescale else {}),
            **({"estimate_maps": self.estimate_maps} if self.estimate_maps else {}),
            "noise_std": self.noise_std,
            "split": None if self.split is None else self.split.describe(),
            "measured_law": self.family.describe() if self.measured_law else None,
        }
        if self.coils is not None:
            out["coils"] = self.coils
        return out


class MultiCoilUndersampling(MRIUndersampling):
    """:class:`MRIUndersampling` of coil data (complex, not augmented): the same class, with the
    coil count its batches must have (checked) and record.

    Args:
        family: the law of the (coil-shared) sampled sets.
        coils: number of coils ``C`` of the batches.
        **kwargs: as :class:`MRIUndersampling` (``max_shift``, ``noise_std``, ``split``, ...).
    """

    def __init__(self, family: SampleLaw | torch.Tensor, *, coils: int, **kwargs) -> None:
        kwargs.setdefault("complex_data", True)
        super().__init__(family, coils=coils, **kwargs)

    @classmethod
    def from_config(
        cls,
        cfg: SamplingSettings,
        shape: tuple[int, int],
        *,
        fraction: float | None = None,
        family: SampleLaw | None = None,
        coils: int | None = 1,
    ) -> MRIUndersampling:
        """:meth:`MRIUndersampling.from_config` for coil data of ``coils`` coils."""
        return super().from_config(cfg, shape, fraction=fraction, family=family, coils=coils or 1)
