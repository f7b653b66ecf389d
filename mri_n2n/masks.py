"""Mask families: laws over k-space sampling masks that know their own keep probabilities.

A :class:`MaskFamily` draws seeded masks of one shape ``(H, W)`` (centred k-space, DC at
``(H // 2, W // 2)``, phase-encode lines along the last dim) and gives, exactly, the marginal
probability that a draw keeps each bin: :meth:`~MaskFamily.keep_probability`. That is what
the ``1 / p`` compensation of the Noise2Noise input and target needs to be unbiased.

Families (names are the ``--density`` choices):

- ``exp`` (the paper's), ``gaussian``, ``uniform``: 2-D variable-density Bernoulli masks
  (:mod:`mri_n2n.sampling`), for the phase-encode plane of a 3-D scan.
- ``lines_random``: 1-D Cartesian lines, the central ``round(W * center_fraction)`` columns
  always kept and every other column independently with the probability that makes the
  expected fraction ``1 / acceleration`` (fastMRI's ``random`` masks).
- ``lines_gaussian``: 1-D lines with a fully sampled centre and a Gaussian variable density
  outside it (floored at a quarter of the mean outer rate, so ``1 / p`` stays bounded),
  independent per column, same expected fraction.
- ``lines_equispaced``: the centre plus every ``s``-th column from a uniformly random
  offset, ``s`` adjusted so that the expected total is ``W / acceleration`` (fastMRI's
  ``equispaced_fraction``); ``lines_lattice``: the centre plus every ``acceleration``-th
  column from a random offset in ``[0, acceleration)`` (fastMRI's ``equispaced``). Their law is
  a uniform mixture over finitely many offsets, so every probability is computed exactly by
  enumerating the offsets.

**Real images.** The k-space of a real image is Hermitian, ``y(-k) = conj(y(k))``: measuring
``k`` also measures ``-k``. Real (one-channel) models therefore use the *Hermitian completion*
of a mask, ``M | M(-k)`` (:func:`hermitian_complete`), for zero-filling and data consistency,
which keeps data consistency exact on every measured frequency and the image real; its keep
probability is :meth:`~MaskFamily.real_keep_probability`. Families drawn with
``hermitian=True`` (the paper's 2-D masks, and random or Gaussian lines for real data) share
one uniform draw per pair of partner bins, so they are already complete and keep each bin with
probability exactly ``p``.

**Estimated laws.** A file that does not record its law gets ``estimate_family`` of its
masks: the exact equispaced law when the masks are lattice (or ``equispaced_fraction``) masks,
independent lines or a radial 2-D density otherwise, Hermitian when every mask is symmetric with
enough evidence; the estimate says in ``unidentified`` when the masks do not identify a law.

Every family is described by a JSON-able dict (:meth:`~MaskFamily.describe`) and rebuilt by
:func:`family_from_description`: files written by this project record it (HDF5 attribute
:data:`MASK_LAW_ATTR`), so ``reconstruct`` compensates with the law the file's mask came from.
"""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple, Protocol

import torch

from .devices import resident
from .laws import BernoulliLaw, SampleLaw, held_share
from .registry import NameView, Registry
from .sampling import (
    DENSITIES_2D,
    bernoulli_mask,
    center_lines,
    hermitian_mirror,
    hermitian_partner,
    make_density,
    share_partner_draws,
    symmetric_density,
)
from .solvers import bisect

__all__ = [
    "SampleLaw",
    "BernoulliLaw",
    "DENSITIES",
    "LINE_FAMILIES",
    "MASK_LAW_ATTR",
    "MaskFamily",
    "Bernoulli2D",
    "IndependentLines",
    "independent_lines",
    "EquispacedLines",
    "make_family",
    "family_for",
    "SamplingConfig",
    "family_names",
    "is_line_family",
    "FamilySettings",
    "family_from_description",
    "hermitian_complete",
    "complete_measurements",
    "line_mask",
    "SSDU_ACS",
    "SSDU_STD_SCALE",
]

#: The built-in 1-D (whole phase-encode line) families; :func:`is_line_family` knows every one.
LINE_FAMILIES = ("lines_random", "lines_equispaced", "lines_lattice", "lines_gaussian")
#: name -> the :class:`MaskFamily` subclass that builds it (filled by ``MaskFamily.__init_subclass__``)
_REGISTRY: Registry[type[MaskFamily]] = Registry("density")


class FamilySettings(NamedTuple):
    """The sampling settings a named family is built from (the config's ``fraction``, ``edge``,
    ``acceleration`` and ``center_fraction``; each family reads the ones it needs)."""

    fraction: float | None
    edge: float
    acceleration: float
    center_fraction: float
#: HDF5 attribute (a JSON string) in which a k-space file records the law of its mask.
MASK_LAW_ATTR = "mri_n2n_mask_law"


def _mirror_cols(x: torch.Tensor) -> torch.Tensor:
    return hermitian_mirror(x, ndim=1)


_mirror2 = hermitian_mirror


def hermitian_complete(mask: torch.Tensor) -> torch.Tensor:
    """``M | M(-k)``: the frequencies known for a real image from a mask ``(..., H, W)``."""
    m = mask.bool()
    return m | _mirror2(m)


def complete_measurements(y: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Hermitian completion of measurements ``y`` of a real image on ``mask``.

    Returns ``(y_c, m_c)``: ``m_c = M | M(-k)`` and ``y_c(k) = y(k)`` where measured, else
    ``conj(y(-k))``. Exact for a real image; measured values are kept as they are.
    """
    m = mask.bool()
    mirrored = _mirror2(y).conj()
    mm = _mirror2(m)
    yc = torch.where(m, y, torch.where(mm, mirrored, torch.zeros_like(y)))
    return yc, m | mm


def _shape2(shape: tuple[int, int] | int) -> tuple[int, int]:
    if isinstance(shape, int):
        shape = (shape, shape)
    h, w = (int(s) for s in shape)
    if h < 1 or w < 1:
        raise ValueError(f"invalid k-space shape {shape}")
    return h, w


class MaskFamily(SampleLaw):
    """A law over bool masks ``(H, W)``; subclasses define the draw and the exact marginals.

    Attributes:
        name: the family's ``--density`` name.
        shape: ``(H, W)``.
        hermitian: draws are conjugate-symmetric about DC (one draw per partner pair).
        lines: masks are whole columns (constant along the first dim).
        unidentified: for an estimate (``estimate_family``), why its law is only a guess;
            None when the masks identify it.
    """

    name: str = ""
    lines: bool = False
    #: an estimated law that is a guess: why (``estimate_family``); None otherwise
    unidentified: str | None = None
    #: the ``--density`` names this class builds; a subclass that sets them is registered (the
    #: configs, the CLIs, :func:`make_family` and :func:`family_from_description` then know it)
    names: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for n in cls.__dict__.get("names", ()):
            _REGISTRY.add(n, cls, cls)

    def __init__(self, shape: tuple[int, int] | int, *, hermitian: bool = False) -> None:
        self.shape = _shape2(shape)
        self.hermitian = bool(hermitian)

    @classmethod
    def build(
        cls, name: str, shape: tuple[int, int], settings: FamilySettings, *, hermitian: bool
    ) -> MaskFamily:
        """The registered family ``name`` (one of :attr:`names`) for k-space of ``shape`` from the
        run's sampling ``settings`` (:class:`FamilySettings`); ``hermitian`` asks for
        conjugate-symmetric draws where the family allows them (real images otherwise use the
        completion). Subclasses with :attr:`names` implement it."""
        raise NotImplementedError(f"{cls.__name__} registers no names")

    # -- the law ----------------------------------------------------------------------
    def keep_probability(self) -> torch.Tensor:
        """``P(k in M)`` for every bin, float32 ``(H, W)``, exact."""
        raise NotImplementedError

    def real_keep_probability(self) -> torch.Tensor:
        """``P(k in M or -k in M)``: the keep probability of :func:`hermitian_complete` masks."""
        raise NotImplementedError

    # draws (:meth:`SampleLaw.sample`: masks ``(H, W)`` or ``(batch, H, W)``) and the expected
    # fraction of k-space kept (:attr:`SampleLaw.fraction`) come from the base class

    # -- the single-acquisition targets' laws (mri_n2n.splits) -------------------------
    def ssdu_law(self, p: torch.Tensor, rho: float, *, hermitian: bool = False) -> SampleLaw:
        """SSDU's selection for every Cartesian family: each acquired bin is held out
        independently with a probability shaped like a centred Gaussian (standard deviation
        ``N / SSDU_STD_SCALE`` along each axis), scaled so that the expected held-out share of the
        acquired bins (keep probability ``p``) is ``rho``; the central ``(SSDU_ACS + 1)^2`` block
        always stays in the input. One draw per partner pair when ``hermitian``."""
        return _ssdu_selection(p, float(rho), hermitian)

    def second_law(self, p: torch.Tensor, rho: float, *, hermitian: bool = False) -> SampleLaw:
        """Noisier2Noise's second mask of this family's kind at the mean that holds out ``rho`` of
        the acquired bins (keep probability ``p``). Here, for any family (a subclass overrides it
        for its own kind): line laws give random lines whose always-kept columns are this law's;
        2-D laws with density ``d`` give ``d ** gamma`` (exactly "the same density at another
        mean" for the named 2-D densities)."""
        if self.lines:
            return _always_kept_lines(self, p, float(rho), hermitian)
        return _powered_density(self, p, float(rho), hermitian)

    def uniform_law(self, q: float, *, hermitian: bool = False) -> SampleLaw:
        """Independent bins kept with probability ``q`` (one draw per partner pair when
        ``hermitian``)."""
        return Bernoulli2D(torch.full(self.shape, float(q)), hermitian=hermitian, name="bernoulli")

    # -- description ------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """The parameters that rebuild the family (besides ``name``, ``shape``, ``hermitian``)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """A JSON-able description; :func:`family_from_description` rebuilds the family."""
        return {"family": self.name, "shape": list(self.shape), "hermitian": self.hermitian, **self.params()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self.describe())})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MaskFamily) and self.describe() == other.describe()

    __hash__ = None  # type: ignore[assignment]


class Bernoulli2D(MaskFamily):
    """Independent Bernoulli draws per bin with keep probabilities ``density`` (2-D masks).

    Args:
        density: ``(H, W)`` probabilities in (0, 1].
        hermitian: one draw per pair of partner bins (then each bin is kept with the partner-
            averaged probability :func:`~mri_n2n.sampling.symmetric_density`).
        name: the family name; params: what rebuilds it (see :func:`make_family`).
    """

    names = DENSITIES_2D

    @classmethod
    def build(
        cls, name: str, shape: tuple[int, int], settings: FamilySettings, *, hermitian: bool
    ) -> MaskFamily:
        d = make_density(name, shape, fraction=settings.fraction, edge=settings.edge)
        params: dict[str, Any] = {"fraction": settings.fraction, "edge": settings.edge}
        if name != "exp":  # make_density's default for the other 2-D densities
            params = {"fraction": 0.1 if settings.fraction is None else settings.fraction}
        return cls(d, hermitian=hermitian, name=name, params=params)

    def __init__(
        self,
        density: torch.Tensor,
        *,
        hermitian: bool = False,
        name: str = "bernoulli",
        params: dict[str, Any] | None = None,
    ) -> None:
        if density.ndim != 2:
            raise ValueError(f"density must be (H, W), got shape {tuple(density.shape)}")
        super().__init__(tuple(density.shape), hermitian=hermitian)
        self.density = density.float().cpu()
        self.name = name
        self._params = dict(params or {})

    def keep_probability(self) -> torch.Tensor:
        return symmetric_density(self.density) if self.hermitian else self.density.clone()

    def real_keep_probability(self) -> torch.Tensor:
        p = self.keep_probability()
        if self.hermitian:
            return p
        q = _mirror2(p)
        h, w = self.shape
        lin = torch.arange(h * w).reshape(h, w)
        self_partner = lin == _mirror2(lin)
        return torch.where(self_partner, p, p + q - p * q)

    def _draw(self, b: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        density = resident(self, "density", self.density, device)  # copied to the device once
        return bernoulli_mask(density, generator=g, batch_size=b, hermitian=self.hermitian)

    def second_law(self, p: torch.Tensor, rho: float, *, hermitian: bool = False) -> SampleLaw:
        """A named 2-D density (``exp``, ``gaussian``, ``uniform``): the same density at the mean
        that holds out ``rho``; an explicit (estimated) density: :meth:`MaskFamily.second_law`."""
        if self.name not in DENSITIES_2D:
            return super().second_law(p, rho, hermitian=hermitian)
        return _named_second_density(self, p, float(rho), hermitian)

    def params(self) -> dict[str, Any]:
        if self.name == "bernoulli":  # an explicit density (e.g. estimated): store it
            return {"density": [[round(float(v), 7) for v in row] for row in self.density.tolist()]}
        return dict(self._params)


class IndependentLines(MaskFamily):
    """Whole columns drawn independently, column ``j`` kept with probability ``column_p[j]``.

    With ``hermitian=True`` one draw is shared by each pair of partner columns (the column
    probabilities must then be symmetric); the mask is conjugate-symmetric and each column is
    still kept with probability exactly ``column_p[j]``.
    """

    lines = True
    names = ("lines_random", "lines_gaussian")

    @classmethod
    def build(
        cls, name: str, shape: tuple[int, int], settings: FamilySettings, *, hermitian: bool
    ) -> MaskFamily:
        return independent_lines(
            name, shape, acceleration=settings.acceleration, center_fraction=settings.center_fraction,
            hermitian=hermitian,
        )

    def __init__(
        self,
        height: int,
        column_p: torch.Tensor,
        *,
        hermitian: bool = False,
        name: str = "lines",
        params: dict[str, Any] | None = None,
    ) -> None:
        col = column_p.double().cpu().flatten()
        super().__init__((int(height), col.numel()), hermitian=hermitian)
        if not bool(((col >= 0) & (col <= 1)).all()):
            raise ValueError("column keep probabilities must lie in [0, 1]")
        if hermitian and not torch.allclose(col, _mirror_cols(col), atol=1e-9):
            raise ValueError("a Hermitian line family needs symmetric column probabilities")
        self.column_p = col
        self.name = name
        self._params = dict(params or {})

    def keep_probability(self) -> torch.Tensor:
        return self.column_p.float().expand(self.shape).clone()

    def real_keep_probability(self) -> torch.Tensor:
        p = self.column_p
        if not self.hermitian:
            q = _mirror_cols(p)
            self_partner = torch.arange(p.numel()) == hermitian_partner(p.numel())
            p = torch.where(self_partner, p, p + q - p * q)
        return p.float().expand(self.shape).clone()

    def _draw(self, b: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        w = self.shape[1]
        u = torch.rand((b, w), generator=g, device=device, dtype=torch.float64)
        if self.hermitian:
            u = share_partner_draws(u, ndim=1)
        cols = u < resident(self, "column_p", self.column_p, device)
        return cols[:, None, :].expand(b, *self.shape).clone()

    def params(self) -> dict[str, Any]:
        if self.name == "lines":
            return {"column_p": [round(float(v), 9) for v in self.column_p.tolist()]}
        return dict(self._params)

    def second_law(self, p: torch.Tensor, rho: float, *, hermitian: bool = False) -> SampleLaw:
        """Random or Gaussian lines: the same kind and centre fraction at the acceleration that
        holds out ``rho``; explicit (estimated) column laws: :meth:`MaskFamily.second_law`."""
        if self.name not in ("lines_random", "lines_gaussian"):
            return super().second_law(p, rho, hermitian=hermitian)
        return _named_second_lines(self, self.name, p, float(rho), hermitian)


def _center_set(w: int, center_fraction: float, hermitian: bool) -> torch.Tensor:
    start, n = center_lines(w, center_fraction)
    c = torch.zeros(w, dtype=torch.bool)
    c[start : start + n] = True
    if hermitian:  # an even-sized block is one column short of symmetric: add its mirror
        c = c | _mirror_cols(c)
    return c


def _with_center(center: torch.Tensor, rate: float) -> torch.Tensor:
    """Column probabilities: 1 on ``center``, ``rate`` elsewhere (float64)."""
    return torch.where(center, 1.0, rate).double()


def _outer_rate(w: int, n_center: int, acceleration: float, name: str) -> float:
    if acceleration < 1:
        raise ValueError(f"acceleration must be >= 1, got {acceleration}")
    target = w / acceleration
    if n_center > target + 1e-9:
        raise ValueError(
            f"{name}: the {n_center} fully sampled central lines are more than 1/acceleration "
            f"= {1 / acceleration:.3f} of the {w} lines (lower --center-fraction or --acceleration)"
        )
    return (target - n_center) / max(w - n_center, 1)


def _uniform_profile(center: torch.Tensor, rate: float) -> torch.Tensor:
    """Random lines: every column outside the centre at the same rate."""
    return _with_center(center, rate)


def _gaussian_profile(center: torch.Tensor, rate: float) -> torch.Tensor:
    """Gaussian lines: ``floor + (1 - floor) exp(-d^2 / 2 sigma^2)`` outside the centre, with
    ``floor = rate / 4`` (so ``1/p`` stays bounded) and ``sigma`` solved for the mean ``rate``."""
    w = center.numel()
    d2 = (torch.arange(w, dtype=torch.float64) - w // 2) ** 2
    outer = ~center
    if rate >= 1.0 or not bool(outer.any()):
        return torch.ones(w, dtype=torch.float64)
    floor = 0.25 * rate

    def col_for(inv_sigma: float) -> torch.Tensor:
        prof = floor + (1 - floor) * torch.exp(-0.5 * d2 * inv_sigma**2)
        return torch.where(center, torch.ones_like(d2), prof)

    return col_for(bisect(lambda s: col_for(s)[outer].mean().item(), rate, 0.0, 10.0))


_PROFILES = {"lines_random": _uniform_profile, "lines_gaussian": _gaussian_profile}


def independent_lines(
    name: str,
    shape: tuple[int, int] | int,
    *,
    acceleration: float = 4.0,
    center_fraction: float = 0.08,
    hermitian: bool = False,
) -> IndependentLines:
    """``lines_random`` (fastMRI's random masks) or ``lines_gaussian``: a fully sampled centre
    (mirrored to be symmetric when ``hermitian``) and independent columns outside it whose
    probabilities make the expected fraction ``1 / acceleration`` (see the module docstring)."""
    h, w = _shape2(shape)
    center = _center_set(w, center_fraction, hermitian)
    rate = _outer_rate(w, int(center.sum()), acceleration, name)
    col = _PROFILES[name](center, rate)
    params = {"acceleration": float(acceleration), "center_fraction": float(center_fraction)}
    return IndependentLines(h, col, hermitian=hermitian, name=name, params=params)


class EquispacedLines(MaskFamily):
    """Equispaced lines from a uniformly random offset, plus a fully sampled centre.

    ``mode="fraction"`` (``lines_equispaced``, fastMRI's ``equispaced_fraction``): spacing
    ``s = (W - n) / (W / R - n)`` for ``n`` centre lines, offsets ``0 .. round(s) - 1``, columns
    ``round(offset + i s) < W - 1``; with a non-integer ``s`` a few columns are never sampled by
    any offset (their keep probability is 0, exactly as fastMRI draws them: no estimator can
    be unbiased there). ``mode="lattice"`` (``lines_lattice``, fastMRI's
    ``equispaced``): every ``R``-th column (``R`` an integer) from an offset in ``[0, R)``.
    Masks are not Hermitian; real images use their completion (module docstring).
    """

    lines = True
    names = ("lines_equispaced", "lines_lattice")

    @classmethod
    def build(
        cls, name: str, shape: tuple[int, int], settings: FamilySettings, *, hermitian: bool
    ) -> MaskFamily:
        mode = "fraction" if name == "lines_equispaced" else "lattice"
        acc, cf = settings.acceleration, settings.center_fraction
        return cls(shape, acceleration=acc, center_fraction=cf, mode=mode)

    def __init__(
        self,
        shape: tuple[int, int] | int,
        *,
        acceleration: float = 4.0,
        center_fraction: float = 0.08,
        mode: str = "fraction",
    ) -> None:
        super().__init__(shape, hermitian=False)
        h, w = self.shape
        self.acceleration = float(acceleration)
        self.center_fraction = float(center_fraction)
        self.mode = mode
        self.name = {"fraction": "lines_equispaced", "lattice": "lines_lattice"}.get(mode, "")
        if not self.name:
            raise ValueError(f"unknown equispaced mode '{mode}' (choose fraction or lattice)")
        start, n = center_lines(w, center_fraction)
        center = torch.zeros(w, dtype=torch.bool)
        center[start : start + n] = True
        if mode == "fraction":
            _outer_rate(w, n, acceleration, self.name)
            spacing = (w - n) / max(w / acceleration - n, 1e-9) if w / acceleration > n else float(w)
            offsets = range(max(int(round(spacing)), 1))

            def cols(o: int) -> torch.Tensor:
                idx = torch.round(torch.arange(o, w - 1, spacing, dtype=torch.float64)).long()
                return idx[idx < w]
        else:
            r = int(round(acceleration))
            if abs(r - acceleration) > 1e-9 or r < 1:
                raise ValueError(f"lines_lattice needs an integer acceleration, got {acceleration}")
            offsets = range(r)

            def cols(o: int) -> torch.Tensor:
                return torch.arange(o, w, r)

        table = torch.zeros((len(offsets), w), dtype=torch.bool)
        for i, o in enumerate(offsets):
            table[i, cols(o)] = True
        self.table = table | center  # one row per equally likely offset

    def keep_probability(self) -> torch.Tensor:
        return self.table.double().mean(0).float().expand(self.shape).clone()

    def real_keep_probability(self) -> torch.Tensor:
        t = self.table | _mirror_cols(self.table)
        return t.double().mean(0).float().expand(self.shape).clone()

    def _draw(self, b: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        rows = torch.randint(0, self.table.shape[0], (b,), generator=g, device=device)
        cols = resident(self, "table", self.table, device)[rows]
        return cols[:, None, :].expand(b, *self.shape).clone()

    def params(self) -> dict[str, Any]:
        return {"acceleration": self.acceleration, "center_fraction": self.center_fraction}

    def second_law(self, p: torch.Tensor, rho: float, *, hermitian: bool = False) -> SampleLaw:
        """Random lines with the same centre fraction (two independent equispaced lattices rarely
        intersect) at the acceleration that holds out ``rho``."""
        return _named_second_lines(self, "lines_random", p, float(rho), hermitian)


# -- the laws of the single-acquisition targets (SSDU, Noisier2Noise: mri_n2n.splits) ----------
#: SSDU: the central block ``|k| <= SSDU_ACS / 2`` (5 x 5) always stays in the input (Yaman et al.
#: keep a 4 x 4 block; ours is symmetric about DC so real images keep Hermitian sets).
SSDU_ACS = 4
#: SSDU: the selection Gaussian's standard deviation is ``N / SSDU_STD_SCALE`` along each axis.
SSDU_STD_SCALE = 4.0
#: Bisection steps of the split laws' parameters.
_SPLIT_ITERS = 60


def _ssdu_keep(p: torch.Tensor, rho: float) -> torch.Tensor:
    """SSDU's keep probabilities ``(H, W)`` for acquisitions of keep probability ``p``."""
    h, w = p.shape
    ky = torch.arange(h, dtype=torch.float64) - h // 2
    kx = torch.arange(w, dtype=torch.float64) - w // 2
    sy, sx = max(h - 1, 1) / SSDU_STD_SCALE, max(w - 1, 1) / SSDU_STD_SCALE
    g = torch.exp(-0.5 * ((ky[:, None] / sy) ** 2 + (kx[None, :] / sx) ** 2))
    a = SSDU_ACS // 2  # |k| <= a on both axes: symmetric about DC, so real images keep Hermitian sets
    acs = (ky.abs()[:, None] <= a) & (kx.abs()[None, :] <= a)
    g = torch.where(acs, torch.zeros_like(g), g)

    def share(c: float) -> float:
        return held_share(p, 1 - (c * g).clamp(max=1.0))

    if share(1e6) < rho:
        raise ValueError(f"ssdu: cannot hold out {rho:.0%} of the acquired bins (at most {share(1e6):.0%})")
    c = bisect(share, rho, 0.0, 1e6, increasing=True, iters=_SPLIT_ITERS)
    return (1 - (c * g).clamp(max=1.0)).float()


def _ssdu_selection(p: torch.Tensor, rho: float, hermitian: bool) -> MaskFamily:
    """SSDU's selection law (:func:`_ssdu_keep`, one draw per partner pair when ``hermitian``),
    its :attr:`~mri_n2n.masks.SampleLaw.selection` recorded."""
    keep = Bernoulli2D(_ssdu_keep(p, float(rho)), hermitian=hermitian, name="bernoulli")
    keep.selection = {"selection": "gaussian", "std_scale": SSDU_STD_SCALE, "acs": SSDU_ACS}
    return keep


def _named_second_density(law: Bernoulli2D, p: torch.Tensor, rho: float, hermitian: bool) -> MaskFamily:
    """Noisier2Noise's second mask of a named 2-D density: the same density at the fraction that
    holds out ``rho``."""
    name, shape = law.name, law.shape

    def fam(f: float) -> MaskFamily:
        return make_family(name, shape, fraction=f, hermitian=hermitian)

    f = bisect(lambda f: held_share(p, fam(f).keep_probability()), rho, 1e-3, 1.0, iters=_SPLIT_ITERS)
    return fam(f)


def _named_second_lines(
    law: MaskFamily, kind: str, p: torch.Tensor, rho: float, hermitian: bool
) -> MaskFamily:
    """Noisier2Noise's second mask of a named line law: ``kind`` lines (``lines_random`` or
    ``lines_gaussian``) with the law's centre fraction, at the acceleration that holds out ``rho``."""
    shape = law.shape
    cf = float(law.describe().get("center_fraction", 0.08))

    def fam(r: float) -> MaskFamily:
        return make_family(kind, shape, acceleration=r, center_fraction=cf, hermitian=hermitian)

    def share(r: float) -> float:
        return held_share(p, fam(r).keep_probability())

    hi = max(shape[1] / max(int(_center_set(shape[1], cf, hermitian).sum()), 1), 1.0) * 0.999
    if share(hi) < rho:
        raise ValueError(f"noisier2noise: a second line mask cannot hold out {rho:.0%} of the data")
    return fam(bisect(share, rho, 1.0, hi, increasing=True, iters=_SPLIT_ITERS))


def _always_kept_lines(law: MaskFamily, p: torch.Tensor, rho: float, hermitian: bool) -> MaskFamily:
    """Noisier2Noise's second mask of any line law: random lines whose always-kept columns are the
    law's (its fully sampled centre), at the rate that holds out ``rho``."""
    shape = law.shape
    centre = law.keep_probability()[0].double() >= 1.0 - 1e-9
    if hermitian:
        centre = centre | _mirror_cols(centre)

    def lines(rate: float) -> MaskFamily:
        col = torch.where(centre, 1.0, rate).double()
        return IndependentLines(shape[0], col, hermitian=hermitian, name="lines")

    if held_share(p, lines(0.0).keep_probability()) < rho:
        raise ValueError(f"noisier2noise: a second line mask cannot hold out {rho:.0%} of the data")
    rate = bisect(lambda v: held_share(p, lines(v).keep_probability()), rho, 0.0, 1.0, iters=_SPLIT_ITERS)
    return lines(rate)


def _powered_density(law: MaskFamily, p: torch.Tensor, rho: float, hermitian: bool) -> MaskFamily:
    """Noisier2Noise's second mask of any 2-D law of density ``d``: ``d ** gamma`` at the power
    that holds out ``rho`` (``exp``: ``exp(-gamma lambda r)``; ``gaussian``: its width over
    ``sqrt(gamma)``; ``uniform``: another constant)."""
    dens = law.keep_probability().double().clamp(1e-12, 1.0)

    def powered(log_gamma: float) -> MaskFamily:
        return Bernoulli2D((dens ** math.exp(log_gamma)).float(), hermitian=hermitian, name="bernoulli")

    if held_share(p, powered(12.0).keep_probability()) < rho:
        raise ValueError(
            f"noisier2noise: a second mask of this density cannot hold out {rho:.0%} of the data"
        )
    g = bisect(lambda t: held_share(p, powered(t).keep_probability()), rho, -12.0, 12.0,
               increasing=True, iters=_SPLIT_ITERS)
    return powered(g)


def make_family(
    name: str,
    shape: tuple[int, int] | int,
    *,
    fraction: float | None = 0.1,
    edge: float = 0.025,
    acceleration: float = 4.0,
    center_fraction: float = 0.08,
    hermitian: bool = False,
) -> MaskFamily:
    """Build a registered family (:func:`family_names`) for k-space of ``shape``.

    2-D families use ``fraction`` (``exp`` with ``fraction=None`` uses ``edge``, the paper's
    setting); line families use ``acceleration`` and ``center_fraction``. ``hermitian`` draws
    conjugate-symmetric masks where the family allows it (2-D, random and Gaussian lines); the
    equispaced families ignore it (real images use their completion).
    """
    cls = _REGISTRY.get(name)
    settings = FamilySettings(fraction, float(edge), float(acceleration), float(center_fraction))
    return cls.build(name, _shape2(shape), settings, hermitian=hermitian)


class SamplingConfig(Protocol):
    """The mask settings of a run (a :class:`mri_n2n.config.Config` has them; the config module
    sits above this layer)."""

    density: str
    fraction: float
    edge: float
    acceleration: float
    center_fraction: float


def family_for(
    cfg: SamplingConfig, shape: tuple[int, int], *, fraction: float | None = None, hermitian: bool = False
) -> MaskFamily:
    """The mask family a run's settings describe (``--density`` and its parameters) for k-space of
    ``shape``, the one function training, reconstruction and evaluation build it with.

    Args:
        cfg: the run's settings (``density``, ``fraction``, ``edge``, ``acceleration``,
            ``center_fraction``).
        shape: ``(H, W)``.
        fraction: another mean sampling density (line families: acceleration ``1 / fraction``);
            ``None`` keeps the settings'.
        hermitian: conjugate-symmetric draws where the family allows them (real images).

    Raises:
        ValueError: a ``fraction`` outside ``(0, 1]`` or a family that cannot be built.
    """
    frac, acceleration = cfg.fraction, cfg.acceleration
    if fraction is not None:
        if not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f"sampling density must lie in (0, 1], got {fraction}")
        if is_line_family(cfg.density):
            acceleration = 1.0 / float(fraction)
        else:
            frac = float(fraction)
    fam = make_family(
        cfg.density,
        (int(shape[0]), int(shape[1])),
        fraction=frac if frac else None,
        edge=cfg.edge,
        acceleration=acceleration,
        center_fraction=cfg.center_fraction,
        hermitian=hermitian,
    )
    return fam.at_rate(float(fraction)) if fraction is not None else fam


def family_names() -> tuple[str, ...]:
    """The registered family names (the ``--density`` choices), built-in ones first, then any
    :class:`MaskFamily` subclass that sets :attr:`~MaskFamily.names`, in definition order."""
    return _REGISTRY.names()


#: Every registered family name (``--density`` choices), always current: a view of
#: :func:`family_names` (built-in names first, then those of registered subclasses).
DENSITIES = NameView(family_names)


def is_line_family(name: str) -> bool:
    """Whether the registered family ``name`` draws whole phase-encode lines."""
    return name in _REGISTRY and bool(_REGISTRY.get(name).lines)


def family_from_description(desc: dict[str, Any] | str) -> MaskFamily:
    """Rebuild a family from :meth:`MaskFamily.describe` (a dict or its JSON text).

    Raises:
        ValueError: not a description of a known family (the message says what is wrong).
    """
    if isinstance(desc, (str, bytes)):
        try:
            desc = json.loads(desc)
        except json.JSONDecodeError as e:
            raise ValueError(f"mask law is not valid JSON ({e.msg})") from None
    if not isinstance(desc, dict) or "family" not in desc or "shape" not in desc:
        raise ValueError("a mask law needs 'family' and 'shape'")
    try:
        name = str(desc["family"])
        shape = _shape2(tuple(int(s) for s in desc["shape"]))
        herm = bool(desc.get("hermitian", False))
        if name == "bernoulli":
            return Bernoulli2D(torch.tensor(desc["density"], dtype=torch.float32), hermitian=herm)
        if name == "lines":
            return IndependentLines(shape[0], torch.tensor(desc["column_p"]), hermitian=herm)
        kw = {k: desc[k] for k in ("fraction", "edge", "acceleration", "center_fraction") if k in desc}
        fam = make_family(name, shape, hermitian=herm, **kw)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"invalid mask law {desc!r:.120} ({e})") from None
    if fam.shape != shape:
        raise ValueError(f"mask law shape {shape} is not the family's {fam.shape}")
    return fam


def line_mask(
    shape: tuple[int, int] | int,
    *,
    acceleration: float = 4.0,
    center_fraction: float = 0.08,
    kind: str = "random",
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    hermitian: bool = False,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw 1-D Cartesian masks of a line family: ``kind`` is ``random``, ``equispaced``,
    ``lattice`` or ``gaussian`` (``lines_<kind>`` of :func:`make_family`)."""
    fam = make_family(
        f"lines_{kind}", shape, acceleration=acceleration, center_fraction=center_fraction,
        hermitian=hermitian,
    )  # fmt: skip
    if hermitian and not fam.hermitian:
        raise ValueError(f"{kind} line masks cannot be drawn Hermitian; use hermitian_complete")
    return fam.sample(batch_size, generator=generator, device=device)
