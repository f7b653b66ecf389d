"""The acquisition interface every MRI path uses, and the registry of acquisition kinds.

:class:`Acquisition` is kind-neutral: a linear operator from images to measurements that
carries a batch's measurements, the set of measured samples over the kind's sample space and
the law's keep probability of each. A kind is one subclass that sets :attr:`Acquisition.kind`
(it then registers itself); the Cartesian kind ``A = M F S`` is
:class:`mri_n2n.physics.CartesianAcquisition`. See the guide "Acquisition kinds".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from .fft import promote_complex, to_channels, to_complex
from .registry import Registry
from .solvers import conjugate_gradient

if TYPE_CHECKING:
    from .masks import SampleLaw

__all__ = ["Acquisition", "KINDS", "DEFAULT_KIND", "acquisition_kind", "kind_names"]

#: The kind ``Acquisition(...)`` builds, and the default of ``--acquisition``.
DEFAULT_KIND = "cartesian"


#: name -> acquisition kind (filled by ``Acquisition.__init_subclass__``)
KINDS: Registry[type[Acquisition]] = Registry("acquisition kind")


def acquisition_kind(name: str) -> type[Acquisition]:
    """The registered acquisition kind ``name`` (``"cartesian"``, or one a test or plugin added).

    Raises:
        ValueError: unknown name (the message lists the registered kinds).
    """
    return KINDS.get(name)


def kind_names() -> tuple[str, ...]:
    """The registered acquisition kinds, in registration order (``--acquisition`` choices)."""
    return KINDS.names()


class Acquisition:
    """The interface of every acquisition kind: a linear operator ``A`` from images to
    measurements, with the measurements ``y`` of a batch, the set of samples that were measured
    and the law's keep probability of every sample.

    Consumers (pairs, models, losses, corruptions, baselines, reconstruction and adaptation) use
    only this interface; a kind is one subclass that sets :attr:`kind` (it then registers itself,
    as a mask family does) and implements the few methods marked *kind* below. Everything else
    has a kind-neutral default.

    **Samples.** A kind measures its data in units of :attr:`sample_shape`: the ``(H, W)`` grid
    bins for Cartesian data, spokes or interleaves for a trajectory. :attr:`sampled` is the bool
    set ``(B, *sample_shape)`` (or shared, ``sample_shape``) of the measured samples and
    :attr:`keep_prob` the law's probability that a draw keeps each sample; laws, splits
    (:meth:`restrict`) and the k-space loss weights are defined over samples, and
    :meth:`expand_samples` spreads a per-sample tensor over the measurements.

    **Images** are ``(B, 1, H, W)`` single coil (real or complex) and ``(B, H, W)`` complex for
    coil data (:attr:`maps` ``(C, H, W)`` or ``(B, C, H, W)``); :meth:`image_of` and
    :meth:`channels_of` convert a model's channels.

    **Data consistency** (:meth:`data_consistency`): the exact replacement of the measured
    samples (:meth:`project`) where the kind has one (:attr:`replaces`), else the proximal step
    :meth:`prox` (conjugate gradients on :meth:`normal`), which ``lam -> 0`` makes the exact
    projection onto ``{z : A z = y}``.

    Calling ``Acquisition(mask, maps, y, keep_prob=..., phase=...)`` builds the Cartesian kind
    (:class:`~mri_n2n.physics.CartesianAcquisition`), so the historical constructor keeps working.

    Attributes:
        kind: the registered name of the kind.
        replaces: the kind has an exact replacement projection (:meth:`project`).
        compensated: the kind's candidate samples do not tile k-space evenly, so it has a
            density compensation (:meth:`density`) and trains with the ``kspace_density`` loss
            by default instead of ``kspace``.
        augmentations: the image transforms that map an acquisition of an image to one of the
            transformed image (:meth:`transformed`): ``"flip"``, ``"transpose"``, ``"shift"``.
    """

    kind: ClassVar[str] = ""
    replaces: ClassVar[bool] = False
    compensated: ClassVar[bool] = False
    #: the kind's default single-coil CS-TV weight (images normalised to peak 1) where the
    #: baselines' Cartesian one does not fit it; ``None``: :data:`mri_n2n.baselines.DEFAULT_TV_LAM`
    tv_lam: ClassVar[float | None] = None
    augmentations: ClassVar[frozenset[str]] = frozenset()
    #: per tensor field (:meth:`_fields`), the number of its dims without the batch dim: a
    #: field with more dims is per sample, else shared by the batch (:meth:`batch`, :meth:`collate`)
    _dims: ClassVar[dict[str, int]] = {}

    y: torch.Tensor | None
    keep_prob: torch.Tensor | None
    maps: torch.Tensor | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("kind")
        if name:
            KINDS.add(name, cls, cls)

    def __new__(cls, *args: Any, **kwargs: Any) -> Acquisition:
        # the historical constructor ``Acquisition(mask, ...)`` builds the Cartesian kind
        if cls is Acquisition:
            cls = KINDS.get(DEFAULT_KIND)
        return super().__new__(cls)

    # -- what a kind implements ----------------------------------------------------------------
    @property
    def sampled(self) -> torch.Tensor:
        """*kind*: the measured samples, bool ``(B, *sample_shape)`` or shared ``sample_shape``."""
        raise NotImplementedError

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """*kind*: the shape of the sample space (grid bins, spokes, ...)."""
        raise NotImplementedError

    @property
    def image_shape(self) -> tuple[int, int]:
        """*kind*: the image matrix ``(H, W)``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """*kind*: image -> measurements ``A x`` (complex; zero off the sampled set)."""
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor | None = None) -> torch.Tensor:
        """*kind*: measurements -> image ``A^H y`` (default: the acquisition's measurements)."""
        raise NotImplementedError

    def expand_samples(self, t: torch.Tensor) -> torch.Tensor:
        """*kind*: a per-sample tensor (``(B, *sample_shape)`` or ``sample_shape``) broadcastable
        against the measurements ``(B, [C,] ...)`` (the sampled set as a measurement mask, the
        keep probabilities as loss weights)."""
        raise NotImplementedError

    @classmethod
    def fully_sampled(
        cls,
        shape: tuple[int, ...],
        maps: torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> Acquisition:
        """*kind*: the acquisition that measures every sample of images of ``shape`` (last two
        dims ``(H, W)``), without data: :meth:`full` gives all the measurements of an image
        (``Acquisition.fully_sampled``: the Cartesian kind's)."""
        if cls is Acquisition:
            return KINDS.get(DEFAULT_KIND).fully_sampled(shape, maps, device)
        raise NotImplementedError

    @classmethod
    def for_law(
        cls,
        law: SampleLaw,
        shape: tuple[int, ...],
        maps: torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> Acquisition:
        """The fully sampled acquisition whose samples ``law`` draws from, for images of
        ``shape``: what a corruption or a study measures clean images with. Kinds whose sample
        space depends on the run's settings (a trajectory's readouts) take it from the law; the
        default is :meth:`fully_sampled` (the Cartesian grid is the same for every law)."""
        return cls.fully_sampled(shape, maps, device)

    @classmethod
    def law(
        cls, settings: Any, shape: tuple[int, int], *, fraction: float | None = None, hermitian: bool = False
    ) -> SampleLaw:
        """*kind*: the law of the sampled sets a run's settings describe for images of ``shape``
        (a :class:`~mri_n2n.masks.SampleLaw` over :attr:`sample_shape`); ``fraction`` another mean
        sampling rate, ``hermitian`` conjugate-symmetric draws (real images) where possible
        (``Acquisition.law``: the Cartesian kind's)."""
        if cls is Acquisition:
            return KINDS.get(DEFAULT_KIND).law(settings, shape, fraction=fraction, hermitian=hermitian)
        raise NotImplementedError

    def _fields(self) -> dict[str, Any]:
        """*kind*: the constructor's keyword arguments that rebuild this acquisition (tensors or
        ``None``); :meth:`to`, :meth:`batch`, :meth:`restrict`, :meth:`with_data` and
        :meth:`collate` rebuild through it. The sampled set is the field ``sampled``."""
        raise NotImplementedError

    # -- kind-neutral defaults -----------------------------------------------------------------
    def _rebuild(self, **changes: Any) -> Acquisition:
        return type(self)(**{**self._fields(), **changes})

    @property
    def multicoil(self) -> bool:
        """``True`` for coil data (maps given)."""
        return self.maps is not None

    @property
    def n_coils(self) -> int:
        """Number of coils ``C`` (1 for single-coil data)."""
        return 1 if self.maps is None else int(self.maps.shape[-3])

    @property
    def batch_size(self) -> int | None:
        """The number of samples of a batched acquisition (``None`` when nothing is per sample)."""
        for name, t in self._fields().items():
            if torch.is_tensor(t) and t.ndim > self._dims.get(name, t.ndim):
                return int(t.shape[0])
        return None

    def to(self, device: torch.device | str) -> Acquisition:
        """The same acquisition on ``device``."""
        return self._rebuild(**{k: v.to(device) for k, v in self._fields().items() if torch.is_tensor(v)})

    def batch(self, sl: slice) -> Acquisition:
        """The acquisition of samples ``sl`` of the batch (shared fields stay shared)."""
        def part(name: str, t: Any) -> Any:
            per = torch.is_tensor(t) and t.ndim > self._dims.get(name, t.ndim) and t.shape[0] > 1
            return t[sl] if per else t

        return self._rebuild(**{k: part(k, v) for k, v in self._fields().items()})

    @classmethod
    def collate(cls, items: Sequence[Acquisition]) -> Acquisition:
        """One batched acquisition from per-item ones (a data loader's batch): per-sample fields
        are concatenated, shared ones taken from the first item."""
        first = items[0]
        out: dict[str, Any] = {}
        for name, t in first._fields().items():
            per = torch.is_tensor(t) and t.ndim > first._dims.get(name, t.ndim)
            out[name] = torch.cat([it._fields()[name] for it in items]) if per else t
        return type(first)(**out)

    def translated(self, roll: Callable[[torch.Tensor], torch.Tensor], *, real: bool = False) -> Acquisition:
        """The acquisition of the images circularly translated by ``roll`` (kinds that admit
        ``"shift"``): ``roll`` maps a batch of image-domain tensors ``(B, n, H, W)`` to the same
        batch translated, one translation per sample, and is called once (on the coil images and
        the maps together); ``real``: the images are real (their translated data stay Hermitian).
        The sampled set does not change: a translation is a phase ramp of the measurements."""
        raise NotImplementedError(f"{self.kind} acquisitions admit no translations")

    def transformed(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Acquisition:
        """The acquisition of an image transformed by ``fn`` (one of :attr:`augmentations`)."""
        raise NotImplementedError(f"{self.kind} acquisitions admit no image transforms")

    def admits(self, transform: str) -> bool:
        """Whether ``transform`` (``"flip"``, ``"transpose"``, ``"shift"``) maps this acquisition
        of an image to one of the transformed image (self-ensembles and augmentations ask)."""
        return transform in self.augmentations

    def crop_axis(self) -> int | None:
        """The image axis (``-2`` or ``-1``) along which windows of the images have exact
        measurements of their own (:meth:`cropped`), or ``None``. Kind-neutral default: none.
        Scan-specific adaptation learns from such windows of large slices."""
        return None

    def cropped(self, starts: torch.Tensor, length: int) -> Acquisition:
        """The acquisition of the circular windows ``[start, start + length)`` of every item's
        images along :meth:`crop_axis` (``starts``: one per item), with its exact measurements and
        keep probabilities (*kind*, where :meth:`crop_axis` is not ``None``)."""
        raise NotImplementedError(f"{self.kind} acquisitions have no exact crops")

    def sample(self, y: torch.Tensor) -> torch.Tensor:
        """The measurements ``y`` with the unsampled ones zeroed."""
        return y * self.expand_samples(self.sampled).to(y.real.dtype)

    def with_data(self, y: torch.Tensor) -> Acquisition:
        """The same operator with the measurements ``y`` (zeroed off the sampled set)."""
        out = self._rebuild(y=None)
        out.y = out.sample(y)
        return out

    def restrict(self, keep: torch.Tensor, keep_prob: torch.Tensor | None = None) -> Acquisition:
        """The same operator and measurements on the sampled set ``sampled & keep`` (a split's
        input or held-out set), with ``keep_prob`` its law's keep probability."""
        sampled = self.sampled & keep.to(self.sampled.device).bool()
        out = self._rebuild(sampled=sampled, y=None, keep_prob=keep_prob)
        if self.y is not None:
            out.y = out.sample(self.y)
        return out

    def _data(self, y: torch.Tensor | None) -> torch.Tensor:
        if y is not None:
            return y
        if self.y is None:
            raise ValueError("this acquisition holds no measurements: pass y")
        return self.y

    def full(self, x: torch.Tensor) -> torch.Tensor:
        """All the measurements of an image (for the acquisition of :meth:`fully_sampled`)."""
        return self.forward(x)

    def density(self) -> torch.Tensor | None:
        """The density compensation of every candidate measurement, broadcastable against the
        measurements (``None``: uniform, as on a Cartesian grid, where each measured frequency
        stands for one grid cell). With it, ``sum_k d(k) |(A_full e)(k)|^2`` over the candidates
        approximates ``||e||^2``: the k-space loss's ``density`` weighting reads it."""
        return None

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x``."""
        return self.adjoint(self.forward(x))

    def zero_filled(
        self, y: torch.Tensor | None = None, keep_prob: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The compensated adjoint ``A^H (y / p)``: every measurement divided by its sample's keep
        probability (``keep_prob``, else the acquisition's; none: the plain adjoint), an unbiased
        estimate of the image over the law's draws."""
        y = self._data(y)
        p = self.keep_prob if keep_prob is None else keep_prob
        w = self.expand_samples(self.sampled).to(y.real.dtype)
        if p is not None:
            p = self.expand_samples(p.to(device=y.device, dtype=y.real.dtype))
            w = w / p.clamp_min(torch.finfo(p.dtype).tiny)
        return self.adjoint(y * w)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """``A x - y`` on the measured samples (the k-space loss's residual)."""
        kx = self.forward(x)
        return kx - self._data(None).to(kx.dtype)

    def project(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The exact replacement of the measured samples (kinds with :attr:`replaces` only)."""
        raise NotImplementedError(f"{self.kind} acquisitions have no exact replacement: use prox()")

    def prox(self, x: torch.Tensor, lam: float | torch.Tensor, iters: int = 6) -> torch.Tensor:
        """``argmin_z ||A z - y||^2 + lam ||z - x||^2`` by ``iters`` conjugate-gradient iterations
        on :meth:`normal` warm-started at ``x`` (complex image of ``x``'s shape)."""
        y = self._data(None)
        z = promote_complex(x)
        lam_t = torch.as_tensor(lam, device=z.device, dtype=z.real.dtype)
        if lam_t.ndim:
            lam_t = lam_t.reshape(-1, *([1] * (z.ndim - 1)))
        r = self.adjoint(y) - self.normal(z)  # b - (A^H A + lam) z at z = x
        return conjugate_gradient(lambda v: self.normal(v) + lam_t * v, z, r, iters)

    def data_consistency(
        self,
        x: torch.Tensor,
        lam: float | torch.Tensor | None = None,
        iters: int = 6,
        *,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Data consistency of an image: ``lam=None`` the exact projection (:meth:`project` where
        the kind :attr:`replaces`, else :meth:`prox` with ``lam = 0``), else the proximal step.
        ``y``: the measurements to restore (default the acquisition's; the Cartesian
        replacement then takes its centred-FFT path, equal to the default up to round-off)."""
        if lam is None and self.replaces:
            return self.project(x, y)
        acq = self if y is None or y is self.y else self.with_data(y)
        return acq.prox(x, 0.0 if lam is None else lam, iters)

    def real_data(self) -> bool:
        """Whether the measurements are a real image's (a one-channel model adapts only to those);
        kinds without a symmetry test: ``True``."""
        return True

    def real_view(self, real_keep_prob: torch.Tensor | None = None) -> Acquisition:
        """The acquisition as a one-channel (real-image) network sees it: the kind's completion of
        a real image's data (Cartesian: Hermitian, with ``real_keep_prob``); here itself (the
        network reads the real part of the adjoint)."""
        return self

    def output_image(self, x: torch.Tensor) -> torch.Tensor:
        """The output image convention: the magnitude of the (combined) image."""
        return x.abs()

    def image_of(self, x: torch.Tensor) -> torch.Tensor:
        """A model's channels ``(B, 1 or 2, H, W)`` as this operator's image: single coil
        ``(B, 1, H, W)`` (a real one-channel image stays real), multi-coil ``(B, H, W)`` complex."""
        if self.maps is None:
            return x if x.shape[1] == 1 else to_complex(x, keepdim=True)
        if x.shape[1] != 2:
            raise ValueError(f"multi-coil images need 2 channels (complex), got {x.shape[1]}")
        return to_complex(x)

    def channels_of(self, z: torch.Tensor, channels: int) -> torch.Tensor:
        """The inverse of :meth:`image_of`: ``channels`` 1 (the real part) or 2 (real/imaginary)."""
        if self.maps is None:
            if channels == 1:
                return z.real if z.is_complex() else z
            return to_channels(z, keepdim=True)
        return to_channels(z)

    def observe(
        self, k: torch.Tensor, sampled: torch.Tensor, keep_prob: torch.Tensor | None, *, real: bool = False
    ) -> Acquisition:
        """The acquisition of the samples ``sampled`` of full measurements ``k`` (this
        acquisition is :meth:`fully_sampled`), with the law's ``keep_prob``; ``real``: the images
        are real (a kind may complete the sampled set by symmetry)."""
        return self.with_data(k).restrict(sampled, keep_prob)
