"""Splitting one acquisition into a network input and a held-out loss set (single-acquisition
self-supervision: SSDU and Noisier2Noise).

Noise2Noise needs two independent acquisitions of a slice. With one acquisition ``Omega``
(mask drawn with keep probability ``p``), the methods below draw a *split* ``keep`` independent
of ``Omega`` at every training step: the network sees ``Omega & keep`` (and keeps it in its data
consistency) and the loss is computed on the held-out set ``Omega & ~keep``.

- ``ssdu`` (Yaman et al., MRM 2020): each acquired bin is held out independently with a
  probability ``s(k)`` shaped like a centred Gaussian (standard deviation ``N / 4`` along each
  axis, as the paper's code selects its loss points), scaled so that the expected held-out
  share of the acquired bins is ``rho`` (paper: 0.4); a central 5 x 5 block always stays in
  the input (the paper's small 4 x 4 ACS block, made symmetric about DC). The split is
  point-wise for every mask family.
- ``noisier2noise`` (Millard and Chiew, IEEE TCI 2023): the kept set is a second mask ``Lambda``
  drawn from a family of the acquisition's own kind (2-D families: the same density at another
  mean, for an estimated radial density ``d`` its power ``d ** gamma``; line families: random
  lines with the same fully sampled centre, since two independent equispaced lattices rarely
  intersect, for an estimated law the columns it always keeps), whose mean is solved so that
  the expected held-out share is again ``rho``.

Both give, for every bin, the exact laws the corruption and the loss need (``q`` is the
probability that an acquired bin stays in the input, the split being independent of ``Omega``):

- input keep probability ``P(k in Omega & keep) = p q``: the input's ``1 / p`` compensation;
- ``P(k held out | k not in the input) = p (1 - q) / (1 - p q)``: with ``1 /`` this as the weight
  of a k-space L2 on the held-out set, its expectation given the input is the L2 against the
  *fully sampled* k-space on every bin the input lacks (plus the measurement noise). This is
  Millard and Chiew's weighted SSDU, their ``(1 - K)^{-1}`` with ``1 - K = p (1 - q) / (1 - p q)``:
  the Noisier2Noise correction folded into the loss, so the network estimates the full spectrum
  directly and inference needs no correction. With a flat weight the per-bin minimiser is the
  same, only the balance between frequencies changes (SSDU's unweighted loss).

Real images (Hermitian-completed acquisitions) get conjugate-symmetric splits, so the input and
the held-out set stay Hermitian.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .masks import (
    LINE_FAMILIES,
    Bernoulli2D,
    IndependentLines,
    MaskFamily,
    _center_set,
    _mirror_cols,
    make_family,
)
from .sampling import DENSITIES_2D
from .solvers import bisect

__all__ = ["SPLIT_TARGETS", "SplitLaw", "make_split", "split_loss_density"]

#: Training targets that learn from one acquisition per slice.
SPLIT_TARGETS = ("ssdu", "noisier2noise")
#: SSDU: the central block ``|k| <= SSDU_ACS / 2`` (5 x 5) always stays in the input (Yaman et al.
#: keep a 4 x 4 block; ours is symmetric about DC so real images keep Hermitian sets).
SSDU_ACS = 4
#: SSDU: the selection Gaussian's standard deviation is ``N / SSDU_STD_SCALE`` along each axis.
SSDU_STD_SCALE = 4.0
#: Bisection steps of the laws' parameters.
_ITERS = 60


def _held_share(p: torch.Tensor, q: torch.Tensor) -> float:
    """Expected share of the acquired bins that the split holds out."""
    p = p.double()
    return float((p * (1 - q.double())).sum() / p.sum().clamp_min(1e-12))


class SplitLaw:
    """A random split of acquired bins into an input set and a held-out set: a mask law
    (:class:`~mri_n2n.masks.MaskFamily`) over the kept sets, drawn independently of the
    acquisition, applied with :meth:`~mri_n2n.physics.Acquisition.restrict`.

    SSDU's law is a 2-D Bernoulli family of point-wise keep probabilities (one shared uniform per
    pair of partner bins for Hermitian splits); Noisier2Noise's is a second mask family of the
    acquisition's kind. Both share the families' draws, exact marginals and descriptions.

    Attributes:
        kind: ``"ssdu"`` or ``"noisier2noise"``.
        shape: ``(H, W)``.
        rho: expected share of the acquired bins held out.
        hermitian: conjugate-symmetric splits (real images).
        family: the law of the kept sets.
    """

    def __init__(self, kind: str, family: MaskFamily, rho: float, *, hermitian: bool) -> None:
        if kind not in SPLIT_TARGETS:
            raise ValueError(f"split kind must be one of {SPLIT_TARGETS}, got {kind!r}")
        self.kind = kind
        self.family = family
        self.shape = family.shape
        self.rho = float(rho)
        self.hermitian = bool(hermitian)

    def keep_probability(self) -> torch.Tensor:
        """``q``: probability ``(H, W)`` that an acquired bin stays in the input."""
        return self.family.keep_probability().float()

    def draw(self, batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """Kept sets ``(B, H, W)`` (bool), drawn independently of any acquisition on the
        generator's device (the same sets on CPU and CUDA) and moved to ``device``."""
        if device is None:
            device = generator.device if generator is not None else "cpu"
        return self.family.sample(batch, generator=generator).to(device)

    def split(
        self, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input set, held-out set)`` of acquired masks ``(B, H, W)``: disjoint, and their
        union is the acquired set."""
        mask = mask.bool()
        keep = self.draw(mask.shape[0], generator, device=mask.device)
        return mask & keep, mask & ~keep

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (recorded with the run)."""
        d: dict[str, Any] = {"kind": self.kind, "rho": self.rho, "hermitian": self.hermitian}
        if self.kind == "noisier2noise":
            d["second_mask"] = self.family.describe()
        else:
            d.update(selection="gaussian", std_scale=SSDU_STD_SCALE, acs=SSDU_ACS)
        return d

    def __repr__(self) -> str:
        return f"SplitLaw({self.describe()})"


def _ssdu_keep(p: torch.Tensor, rho: float) -> torch.Tensor:
    h, w = p.shape
    ky = torch.arange(h, dtype=torch.float64) - h // 2
    kx = torch.arange(w, dtype=torch.float64) - w // 2
    sy, sx = max(h - 1, 1) / SSDU_STD_SCALE, max(w - 1, 1) / SSDU_STD_SCALE
    g = torch.exp(-0.5 * ((ky[:, None] / sy) ** 2 + (kx[None, :] / sx) ** 2))
    a = SSDU_ACS // 2  # |k| <= a on both axes: symmetric about DC, so real images keep Hermitian sets
    acs = (ky.abs()[:, None] <= a) & (kx.abs()[None, :] <= a)
    g = torch.where(acs, torch.zeros_like(g), g)

    def share(c: float) -> float:
        return _held_share(p, 1 - (c * g).clamp(max=1.0))

    if share(1e6) < rho:
        raise ValueError(f"ssdu: cannot hold out {rho:.0%} of the acquired bins (at most {share(1e6):.0%})")
    c = bisect(share, rho, 0.0, 1e6, increasing=True, iters=_ITERS)
    return (1 - (c * g).clamp(max=1.0)).float()


def _always_kept_columns(acquisition: MaskFamily) -> torch.Tensor:
    """The columns a line law keeps in every draw (its fully sampled centre)."""
    return acquisition.keep_probability()[0].double() >= 1.0 - 1e-9


def _second_family(acquisition: MaskFamily, p: torch.Tensor, rho: float, hermitian: bool) -> MaskFamily:
    """Noisier2Noise's second mask: the acquisition's own kind at the mean that holds out ``rho``.

    Named line laws (random or Gaussian lines) keep their kind and centre fraction; equispaced
    laws give random lines with the same centre; other line laws (an estimate) random lines whose
    always-kept columns are the acquisition's. Named 2-D laws keep their density at another mean;
    other 2-D laws (an estimated radial density ``d``) give ``d ** gamma``, which is exactly "the
    same density at another mean" for the named ones (``exp``: ``exp(-gamma lambda r)``;
    ``gaussian``: its width over ``sqrt(gamma)``; ``uniform``: another constant).
    """
    shape = acquisition.shape
    params = acquisition.describe()
    if acquisition.lines:
        if acquisition.name in LINE_FAMILIES:
            kind = (
                acquisition.name if acquisition.name in ("lines_random", "lines_gaussian") else "lines_random"
            )
            cf = float(params.get("center_fraction", 0.08))

            def fam(r: float) -> MaskFamily:
                return make_family(kind, shape, acceleration=r, center_fraction=cf, hermitian=hermitian)

            def share(r: float) -> float:
                return _held_share(p, fam(r).keep_probability())

            hi = max(shape[1] / max(int(_center_set(shape[1], cf, hermitian).sum()), 1), 1.0) * 0.999
            if share(hi) < rho:
                raise ValueError(f"noisier2noise: a second line mask cannot hold out {rho:.0%} of the data")
            r = bisect(share, rho, 1.0, hi, increasing=True, iters=_ITERS)
            return fam(r)
        centre = _always_kept_columns(acquisition)
        if hermitian:
            centre = centre | _mirror_cols(centre)

        def lines(rate: float) -> MaskFamily:
            col = torch.where(centre, 1.0, rate).double()
            return IndependentLines(shape[0], col, hermitian=hermitian, name="lines")

        if _held_share(p, lines(0.0).keep_probability()) < rho:
            raise ValueError(f"noisier2noise: a second line mask cannot hold out {rho:.0%} of the data")
        rate = bisect(lambda v: _held_share(p, lines(v).keep_probability()), rho, 0.0, 1.0, iters=_ITERS)
        return lines(rate)
    if acquisition.name in DENSITIES_2D:
        kind = acquisition.name

        def fam2(f: float) -> MaskFamily:
            return make_family(kind, shape, fraction=f, hermitian=hermitian)

        f = bisect(lambda f: _held_share(p, fam2(f).keep_probability()), rho, 1e-3, 1.0, iters=_ITERS)
        return fam2(f)
    dens = acquisition.keep_probability().double().clamp(1e-12, 1.0)

    def powered(log_gamma: float) -> MaskFamily:
        return Bernoulli2D((dens ** math.exp(log_gamma)).float(), hermitian=hermitian, name="bernoulli")

    if _held_share(p, powered(12.0).keep_probability()) < rho:
        raise ValueError(
            f"noisier2noise: a second mask of this density cannot hold out {rho:.0%} of the data"
        )
    g = bisect(lambda t: _held_share(p, powered(t).keep_probability()), rho, -12.0, 12.0,
               increasing=True, iters=_ITERS)
    return powered(g)


def make_split(
    kind: str, acquisition: MaskFamily, p: torch.Tensor, rho: float = 0.4, *, hermitian: bool = False
) -> SplitLaw:
    """The split law of a single-acquisition target for acquisitions from ``acquisition``.

    Args:
        kind: ``"ssdu"`` or ``"noisier2noise"`` (see the module docstring).
        acquisition: the acquisition's mask family (its kind shapes Noisier2Noise's second mask).
        p: the acquired sets' keep probability ``(H, W)`` (for real images, that of the
            Hermitian completion).
        rho: expected share of the acquired bins held out, in (0, 1).
        hermitian: conjugate-symmetric splits (real images).

    Raises:
        ValueError: unknown kind, ``rho`` outside (0, 1), or a share the law cannot reach.
    """
    if not 0.0 < float(rho) < 1.0:
        raise ValueError(f"the held-out share must lie in (0, 1), got {rho}")
    p = p.float().cpu()
    if kind == "ssdu":  # point-wise Bernoulli draws; q is symmetric, so Hermitian draws keep it exactly
        keep = Bernoulli2D(_ssdu_keep(p, float(rho)), hermitian=hermitian, name="bernoulli")
        return SplitLaw(kind, keep, rho, hermitian=hermitian)
    if kind == "noisier2noise":
        return SplitLaw(kind, _second_family(acquisition, p, float(rho), hermitian), rho, hermitian=hermitian)
    raise ValueError(f"split kind must be one of {SPLIT_TARGETS}, got {kind!r}")


def split_loss_density(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``P(k held out | k not in the input) = p (1 - q) / (1 - p q)`` (1 where the input always
    has the bin: such bins are never held out, their weight is never used)."""
    p, q = p.float(), q.to(p.device).float()
    num = p * (1 - q)
    den = 1 - p * q
    out = num / den.clamp_min(1e-12)
    return torch.where(den > 1e-7, out, torch.ones_like(out)).clamp(0.0, 1.0)
