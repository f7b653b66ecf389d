"""Laws over the samples of an acquisition kind: what draws the sampled sets, compensates them
and splits them, whatever the kind (:mod:`mri_n2n.acquisition`).

:class:`SampleLaw` is the interface (draws over :attr:`~SampleLaw.shape`, the kind's
``sample_shape``; the exact keep probability of every sample; the laws of the single-acquisition
targets' splits, asked of the law itself); :class:`BernoulliLaw` draws every sample
independently, over any sample shape. The Cartesian laws are the mask families of
:mod:`mri_n2n.masks`.
"""

from __future__ import annotations

from typing import Any

import torch

from .devices import resident

__all__ = ["SampleLaw", "BernoulliLaw", "CroppedLaw", "held_share"]


def held_share(p: torch.Tensor, q: torch.Tensor) -> float:
    """Expected share of the acquired samples (keep probability ``p``) that a selection keeping
    each with probability ``q`` holds out: ``sum p (1 - q) / sum p``."""
    p = p.double()
    return float((p * (1 - q.double())).sum() / p.sum().clamp_min(1e-12))


class SampleLaw:
    """A law over the sampled sets of an acquisition kind: bool sets of :attr:`shape` (the kind's
    ``sample_shape``: grid bins for Cartesian masks, spokes for a trajectory), with the exact
    probability that a draw keeps each sample.

    A kind's law draws the acquisitions (:meth:`sample`), compensates them
    (:meth:`keep_probability`) and splits them for the single-acquisition targets: SSDU's
    point-wise selection (:meth:`ssdu_law`) and Noisier2Noise's second law of the same kind
    (:meth:`second_law`) are asked of the law itself. The defaults here are kind-neutral
    (independent draws per sample); :class:`MaskFamily` is the Cartesian law.

    Attributes:
        name: the law's name; shape: the sample space; hermitian: conjugate-symmetric draws.
    """

    name: str = ""
    lines: bool = False
    unidentified: str | None = None
    shape: tuple[int, ...] = ()
    hermitian: bool = False
    #: for a split's selection law (:meth:`ssdu_law`): how its keep probabilities were chosen,
    #: recorded with the run (:meth:`mri_n2n.splits.SplitLaw.describe`); None for other laws
    selection: dict[str, Any] | None = None
    #: every item draws its own law (a mixture of protocols): :meth:`draw_items` gives each
    #: item's exact keep probability, and :meth:`keep_probability` is only the marginal
    per_item: bool = False

    def keep_probability(self) -> torch.Tensor:
        """``P(sample kept)`` for every sample, float32 of :attr:`shape`, exact."""
        raise NotImplementedError

    def real_keep_probability(self) -> torch.Tensor:
        """The keep probability of the sets a real image's data are completed to (kinds without
        a symmetry completion: :meth:`keep_probability`)."""
        return self.keep_probability()

    def sample(
        self,
        batch: int | None = None,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw sets: :attr:`shape` when ``batch`` is None, else ``(batch, *shape)`` (bool), on
        ``device`` (default: the generator's, else CPU)."""
        if device is None:
            device = generator.device if generator is not None else "cpu"
        b = 1 if batch is None else int(batch)
        m = self._draw(b, generator, torch.device(device))
        return m[0] if batch is None else m

    def _draw(self, b: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        raise NotImplementedError

    def draw_items(
        self, batch: int, n: int, *, generator: torch.Generator, real: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``n`` sampled sets for each of ``batch`` items, ``(n, batch, *shape)``, and the keep
        probability per item ``(batch, *shape)`` when it differs between items (a law drawn per
        item, e.g. a scan protocol), else ``None`` (:meth:`keep_probability` serves every item;
        ``real``: that of the completed sets). The sets of one item (a Noise2Noise pair) share
        its law. Here: ``n`` independent draws of :meth:`sample`, in order."""
        return torch.stack([self.sample(batch, generator=generator) for _ in range(int(n))]), None

    def at_rate(self, fraction: float) -> SampleLaw:
        """The law a retrospective study at mean sampling rate ``fraction`` draws from: this law
        (its own rate is in its settings); a law per item gives one protocol at that rate."""
        return self

    @property
    def fraction(self) -> float:
        """Expected fraction of the samples kept."""
        return float(self.keep_probability().double().mean())

    def serves(self, lines: bool) -> bool:
        """Whether this law draws whole-line sets (``lines``) or 2-D ones; a law drawn per item
        answers for what its items draw."""
        return bool(self.lines) == bool(lines)

    def fraction_range(self) -> tuple[float, float]:
        """The sampled fractions its sets can have on average (one law: its :attr:`fraction`; a
        law drawn per item: the range of its items' rates)."""
        f = self.fraction
        return f, f

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (recorded with a run)."""
        name = self.name or type(self).__name__
        return {"law": name, "shape": list(self.shape), "hermitian": self.hermitian}

    def ssdu_law(self, p: torch.Tensor, rho: float, *, hermitian: bool = False) -> SampleLaw:
        """SSDU's selection of the kept (input) samples for acquisitions of keep probability
        ``p``: here each sample independently with ``q = 1 - rho`` (every acquired sample is held
        out with probability ``rho``). The returned law's :attr:`selection` describes the rule."""
        law = BernoulliLaw(torch.full(tuple(p.shape), 1.0 - float(rho)), name="ssdu")
        law.selection = {"selection": "uniform"}
        return law

    def second_law(self, p: torch.Tensor, rho: float, *, hermitian: bool = False) -> SampleLaw:
        """Noisier2Noise's second law of this kind whose draws hold out a share ``rho`` of the
        acquired samples: here independent draws at the rate ``1 - rho``."""
        return BernoulliLaw(torch.full(tuple(p.shape), 1.0 - float(rho)), name="second")

    def uniform_law(self, q: float, *, hermitian: bool = False) -> SampleLaw:
        """Independent draws that keep every sample with the same probability ``q`` (partner
        samples together when ``hermitian``, for kinds with a conjugate symmetry): a fixed
        held-out share of an acquisition (scan-specific adaptation's self-validation set)."""
        return BernoulliLaw(torch.full(tuple(self.shape), float(q)), name="uniform")


class BernoulliLaw(SampleLaw):
    """Independent draws per sample with keep probabilities ``q`` (any sample shape)."""

    def __init__(self, q: torch.Tensor, *, name: str = "bernoulli") -> None:
        self.q = q.float().cpu()
        self.shape = tuple(self.q.shape)
        self.name = name

    def keep_probability(self) -> torch.Tensor:
        return self.q.clone()

    def _draw(self, b: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        u = torch.rand((b, *self.shape), generator=g, device=g.device if g is not None else device)
        return (u < resident(self, "q", self.q, u.device)).to(device)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "mean": self.fraction}


class CroppedLaw(SampleLaw):
    """The law of a window of ``length`` samples along ``axis`` of another law's sample space,
    for laws whose draws are constant along that axis (whole Cartesian lines, cropped along the
    fully sampled readout: :meth:`~mri_n2n.acquisition.Acquisition.cropped`). Its draws and keep
    probabilities are the other law's, narrowed, so they are exact; its split laws are the other
    law's split laws (asked with the keep probability repeated along the axis), narrowed.

    Raises:
        ValueError: ``length`` outside ``[1, shape[axis]]``.
    """

    def __init__(self, law: SampleLaw, length: int, axis: int = -2) -> None:
        self.base = law
        self.axis = int(axis) % len(law.shape)
        if not 1 <= int(length) <= law.shape[self.axis]:
            raise ValueError(f"crop length {length} is not in [1, {law.shape[self.axis]}]")
        self.length = int(length)
        shape = list(law.shape)
        shape[self.axis] = self.length
        self.shape = tuple(shape)
        self.name, self.lines, self.hermitian = law.name, law.lines, law.hermitian
        self.unidentified = law.unidentified

    def serves(self, lines: bool) -> bool:
        return self.base.serves(lines)

    def fraction_range(self) -> tuple[float, float]:
        return self.base.fraction_range()

    def _narrow(self, t: torch.Tensor) -> torch.Tensor:
        return t.narrow(t.ndim - len(self.shape) + self.axis, 0, self.length)

    def _full(self, p: torch.Tensor) -> torch.Tensor:
        """``p`` over the window, repeated along the axis to the other law's sample space."""
        dim = p.ndim - len(self.shape) + self.axis
        return p.narrow(dim, 0, 1).expand(*p.shape[:dim], self.base.shape[self.axis], *p.shape[dim + 1:])

    def keep_probability(self) -> torch.Tensor:
        return self._narrow(self.base.keep_probability())

    def real_keep_probability(self) -> torch.Tensor:
        return self._narrow(self.base.real_keep_probability())

    def _draw(self, b: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        return self._narrow(self.base.sample(b, generator=g, device=device))

    def draw_items(
        self, batch: int, n: int, *, generator: torch.Generator, real: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        sets, per_item = self.base.draw_items(batch, n, generator=generator, real=real)
        return self._narrow(sets), None if per_item is None else self._narrow(per_item)

    def describe(self) -> dict[str, Any]:
        return {**self.base.describe(), "shape": list(self.shape), "crop": [self.axis, self.length]}

    def ssdu_law(self, p: torch.Tensor, rho: float, *, hermitian: bool = False) -> SampleLaw:
        law = CroppedLaw(self.base.ssdu_law(self._full(p), rho, hermitian=hermitian), self.length, self.axis)
        law.selection = law.base.selection
        return law

    def second_law(self, p: torch.Tensor, rho: float, *, hermitian: bool = False) -> SampleLaw:
        law = self.base.second_law(self._full(p), rho, hermitian=hermitian)
        return CroppedLaw(law, self.length, self.axis)

    def uniform_law(self, q: float, *, hermitian: bool = False) -> SampleLaw:
        return CroppedLaw(self.base.uniform_law(q, hermitian=hermitian), self.length, self.axis)
