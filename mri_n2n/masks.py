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

**Estimated laws.** A file that does not record its law gets :func:`estimate_family` of its
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
from typing import Any

import torch

from .sampling import (
    DENSITIES_2D,
    _solve_monotone,
    bernoulli_mask,
    center_lines,
    hermitian_partner,
    make_density,
    radius_grid,
    symmetric_density,
)

__all__ = [
    "DENSITIES",
    "LINE_FAMILIES",
    "MASK_LAW_ATTR",
    "MaskFamily",
    "Bernoulli2D",
    "IndependentLines",
    "independent_lines",
    "EquispacedLines",
    "make_family",
    "family_from_description",
    "hermitian_complete",
    "complete_measurements",
    "estimate_family",
    "line_mask",
]

#: Named families for configs and CLIs (``--density``).
DENSITIES = (*DENSITIES_2D, "lines_random", "lines_equispaced", "lines_lattice", "lines_gaussian")
#: The 1-D (whole phase-encode line) families.
LINE_FAMILIES = ("lines_random", "lines_equispaced", "lines_lattice", "lines_gaussian")
#: HDF5 attribute (a JSON string) in which a k-space file records the law of its mask.
MASK_LAW_ATTR = "mri_n2n_mask_law"


def _mirror_cols(x: torch.Tensor) -> torch.Tensor:
    return x[..., hermitian_partner(x.shape[-1], x.device)]


def _mirror2(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    return x[..., hermitian_partner(h, x.device), :][..., :, hermitian_partner(w, x.device)]


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


class MaskFamily:
    """A law over bool masks ``(H, W)``; subclasses define the draw and the exact marginals.

    Attributes:
        name: the family's ``--density`` name.
        shape: ``(H, W)``.
        hermitian: draws are conjugate-symmetric about DC (one draw per partner pair).
        lines: masks are whole columns (constant along the first dim).
        unidentified: for an estimate (:func:`estimate_family`), why its law is only a guess;
            None when the masks identify it.
    """

    name: str = ""
    lines: bool = False
    #: an estimated law that is a guess: why (:func:`estimate_family`); None otherwise
    unidentified: str | None = None

    def __init__(self, shape: tuple[int, int] | int, *, hermitian: bool = False) -> None:
        self.shape = _shape2(shape)
        self.hermitian = bool(hermitian)

    # -- the law ----------------------------------------------------------------------
    def keep_probability(self) -> torch.Tensor:
        """``P(k in M)`` for every bin, float32 ``(H, W)``, exact."""
        raise NotImplementedError

    def real_keep_probability(self) -> torch.Tensor:
        """``P(k in M or -k in M)``: the keep probability of :func:`hermitian_complete` masks."""
        raise NotImplementedError

    def sample(
        self,
        batch: int | None = None,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw masks: ``(H, W)`` when ``batch`` is None, else ``(batch, H, W)`` (bool), on
        ``device`` (default: the generator's, else CPU)."""
        if device is None:
            device = generator.device if generator is not None else "cpu"
        b = 1 if batch is None else int(batch)
        m = self._draw(b, generator, torch.device(device))
        return m[0] if batch is None else m

    def _draw(self, b: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        raise NotImplementedError

    @property
    def fraction(self) -> float:
        """Expected fraction of k-space kept."""
        return float(self.keep_probability().double().mean())

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
        return bernoulli_mask(self.density.to(device), generator=g, batch_size=b, hermitian=self.hermitian)

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
            pj = hermitian_partner(w, device)
            idx = torch.arange(w, device=device)
            u = torch.where(idx <= pj, u, u[:, pj])
        cols = u < self.column_p.to(device)
        return cols[:, None, :].expand(b, *self.shape).clone()

    def params(self) -> dict[str, Any]:
        if self.name == "lines":
            return {"column_p": [round(float(v), 9) for v in self.column_p.tolist()]}
        return dict(self._params)


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

    return col_for(_solve_monotone(lambda s: col_for(s)[outer].mean().item(), rate, 0.0, 10.0))


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
        cols = self.table.to(device)[rows]
        return cols[:, None, :].expand(b, *self.shape).clone()

    def params(self) -> dict[str, Any]:
        return {"acceleration": self.acceleration, "center_fraction": self.center_fraction}


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
    """Build a named family (:data:`DENSITIES`) for k-space of ``shape``.

    2-D families use ``fraction`` (``exp`` with ``fraction=None`` uses ``edge``, the paper's
    setting); line families use ``acceleration`` and ``center_fraction``. ``hermitian`` draws
    conjugate-symmetric masks where the family allows it (2-D, random and Gaussian lines); the
    equispaced families ignore it (real images use their completion).
    """
    if name in DENSITIES_2D:
        d = make_density(name, shape, fraction=fraction, edge=edge)
        params: dict[str, Any] = {"fraction": fraction, "edge": edge}
        if name != "exp":  # make_density's default for the other 2-D densities
            params = {"fraction": 0.1 if fraction is None else fraction}
        return Bernoulli2D(d, hermitian=hermitian, name=name, params=params)
    kw = {"acceleration": float(acceleration), "center_fraction": float(center_fraction)}
    if name in _PROFILES:
        return independent_lines(name, shape, hermitian=hermitian, **kw)
    if name == "lines_equispaced":
        return EquispacedLines(shape, mode="fraction", **kw)
    if name == "lines_lattice":
        return EquispacedLines(shape, mode="lattice", **kw)
    raise ValueError(f"unknown density '{name}' (choose from {', '.join(DENSITIES)})")


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


# -- estimating a law from observed masks ---------------------------------------------------------

#: Evidence (nats) below which conjugate-symmetric masks are called Hermitian only with a warning:
#: ``log`` of the likelihood ratio of the Hermitian law over the independent one (same density).
HERMITIAN_EVIDENCE = 20.0
#: The randomness checks of an estimate flag masks whose statistic is this many standard
#: deviations away from what independent draws give.
RANDOMNESS_Z = 5.0
#: Evidence (nats) below which an equispaced law is returned only with a warning: the log-likelihood
#: ratio of the law over the likeliest random lines with the same centre.
EQUISPACED_EVIDENCE = 10.0
#: fastMRI pairs an acceleration ``R`` with the centre fraction ``0.32 / R`` (4x: 0.08, 8x: 0.04).
FASTMRI_CENTRE = 0.32
_PERMUTATIONS = 400


def _block(w: int, n: int, hermitian: bool = False) -> torch.Tensor:
    """fastMRI's centre of ``n`` columns (:func:`~mri_n2n.sampling.center_lines`), with its mirror
    when ``hermitian``; empty for ``n = 0``."""
    c = torch.zeros(w, dtype=torch.bool)
    if n > 0:
        start = (w - n + 1) // 2
        c[start : start + n] = True
    return c | _mirror_cols(c) if hermitian else c


def _central_run(cols: torch.Tensor) -> tuple[int, int]:
    """``(start, stop)`` of the run of kept columns through the centre (empty: (c, c))."""
    w = cols.numel()
    c = w // 2
    if not bool(cols[c]):
        return c, c
    lo, hi = c, c + 1
    while lo > 0 and bool(cols[lo - 1]):
        lo -= 1
    while hi < w and bool(cols[hi]):
        hi += 1
    return lo, hi


def _centre_sizes(kept: torch.Tensor, hermitian: bool = False) -> list[int]:
    """Every ``n >= 1`` whose centre block (:func:`_block`) lies in the run of ``kept`` columns
    through DC; the blocks are nested, so this is ``1 .. n_max`` (empty when DC is not kept)."""
    w = kept.numel()
    lo, hi = _central_run(kept)
    run = torch.zeros(w, dtype=torch.bool)
    run[lo:hi] = True
    sizes = []
    for n in range(1, hi - lo + 1):
        if bool((_block(w, n, hermitian) & ~run).any()):
            break
        sizes.append(n)
    return sizes


def _centre_count(w: int, cf: float) -> int:
    return max(1, int(round(w * cf)))


def _whole_fraction(n: int, w: int, step: float = 0.01) -> float | None:
    """The smallest multiple of ``step`` that :func:`center_lines` turns into ``n`` of ``w``
    columns, or None."""
    for k in range(1, int(round(1 / step)) + 1):
        cf = round(k * step, 6)
        if _centre_count(w, cf) == n:
            return cf
    return None


def _centre_fraction(n: int, w: int, acceleration: float | None = None) -> float:
    """A centre fraction giving ``n`` central columns of ``w``: fastMRI's ``0.32 / R`` when it
    does, else the smallest whole percent (then per mille), else ``n / w``."""
    if acceleration and _centre_count(w, FASTMRI_CENTRE / acceleration) == n:
        return round(FASTMRI_CENTRE / acceleration, 6)
    for step in (0.01, 0.001):
        cf = _whole_fraction(n, w, step)
        if cf is not None:
            return cf
    return n / w


def _fastmri_pair(w: int, n: int, acceleration: float | None) -> bool:
    """``n`` is fastMRI's centre for ``acceleration``: ``round(W * 0.32 / R)`` where ``0.32 / R``
    is a whole percent (4x: 8 %, 8x: 4 %, 2x: 16 %)."""
    if not acceleration:
        return False
    cf = FASTMRI_CENTRE / acceleration
    return abs(cf * 100 - round(cf * 100)) < 1e-9 and _centre_count(w, cf) == n


def _pick_centre(fits: dict[int, float | None], w: int) -> tuple[int | None, str]:
    """The centre size among ``fits`` (size -> acceleration, every one consistent with the masks)
    and what decided it: ``"only"`` (one size fits), ``"fastmri"`` (the only one fastMRI's pairing
    gives, :func:`_fastmri_pair`), ``"percent"`` (the only one a whole-percent centre fraction
    gives) or ``""`` (nothing decides: None)."""
    sizes = sorted(fits)
    if len(sizes) == 1:
        return sizes[0], "only"
    paired = [n for n in sizes if _fastmri_pair(w, n, fits[n])]
    if len(paired) == 1:
        return paired[0], "fastmri"
    whole = [n for n in sizes if _whole_fraction(n, w) is not None]
    return (whole[0], "percent") if len(whole) == 1 else (None, "")


def _lattice_period(rows: torch.Tensor, centre: torch.Tensor) -> int | None:
    """``R >= 2`` when every row is ``centre`` plus every ``R``-th column from an offset of its own
    (at least four of them outside the centre), else None."""
    r, firsts = 0, []
    for row in rows:
        idx = (row & ~centre).nonzero().flatten().tolist()
        if len(idx) < 4:
            return None
        for a, b in zip(idx, idx[1:]):
            r = math.gcd(r, b - a)
        firsts.append(idx[0])
    if r < 2:
        return None
    for row, first in zip(rows, firsts):
        want = centre.clone()
        want[first % r :: r] = True
        if not torch.equal(row, want):
            return None
    return r


def _in_table(rows: torch.Tensor, table: torch.Tensor) -> bool:
    """Every row is one of the table's (one per offset)."""
    return bool((rows[:, None, :] == table[None]).all(-1).any(1).all())


#: Accelerations tried for ``lines_equispaced`` masks, roundest first (whole, halves, quarters):
#: with finer steps a few lines fit some law by chance.
_ROUNDNESS = (1.0, 0.5, 0.25)


def _fraction_fit(
    rows: torch.Tensor, n: int, shape: tuple[int, int]
) -> tuple[EquispacedLines, int, bool] | None:
    """The ``lines_equispaced`` law (fastMRI's ``equispaced_fraction``) with ``n`` central lines
    that has every row among its offsets and its level of :data:`_ROUNDNESS`: the roundest
    acceleration whose spacing lies in the bounds the rows allow (``k`` steps of a rounded
    progression span ``k s +- 1`` columns), the nearest to their middle first; and whether every
    acceleration of that level that fits gives the same keep probabilities."""
    h, w = shape
    centre = _block(w, n)
    start = int(centre.nonzero()[0])
    lo, hi = 2.0, float(w)
    for row in rows:
        idx = (row & ~centre).nonzero().flatten()
        if idx.numel() < 3:
            return None
        for side in (idx[idx < start], idx[idx > start]):
            k = side.numel() - 1
            if k >= 1:
                span = float(side[-1] - side[0])
                lo, hi = max(lo, (span - 1) / k), min(hi, (span + 1) / k)
    if lo > hi:
        return None

    def accel(s: float) -> float:  # inverse of s = (W - n) / (W / R - n)
        return w / ((w - n) / s + n)

    r_lo, r_hi, r_mid = accel(lo), accel(hi), accel(0.5 * (lo + hi))
    for level, step in enumerate(_ROUNDNESS):
        ks = range(max(1, math.ceil(r_lo / step - 1e-9)), math.floor(r_hi / step + 1e-9) + 1)
        found = []
        for r in sorted({round(k * step, 6) for k in ks if k * step > 1}, key=lambda v: abs(v - r_mid)):
            try:
                fam = EquispacedLines(shape, acceleration=r, center_fraction=_centre_fraction(n, w, r))
            except ValueError:
                continue
            if _in_table(rows, fam.table):
                found.append(fam)
        if found:
            p = found[0].keep_probability()
            return found[0], level, all(torch.equal(f.keep_probability(), p) for f in found)
    return None


def _equispaced(cols: torch.Tensor, h: int) -> tuple[EquispacedLines | None, list[str]]:
    """The equispaced law (lattice first, then fraction) that has every observed row among its
    offsets, with its centre; None when none does."""
    w = cols.shape[1]
    rows = torch.unique(cols, dim=0)
    sizes = _centre_sizes(cols.all(0))
    # equispaced columns are never adjacent (spacing >= 2): the centre is the run through DC less
    # at most one column on each side
    fits: dict[int, EquispacedLines] = {}
    for n in sizes[-3:]:
        r = _lattice_period(rows, _block(w, n))
        if r is not None:
            cf = _centre_fraction(n, w, r)
            fam = EquispacedLines((h, w), acceleration=r, center_fraction=cf, mode="lattice")
            if _in_table(rows, fam.table):
                fits[n] = fam
    notes = []
    found = {n: f for n in sizes[-3:] if (f := _fraction_fit(rows, n, (h, w))) is not None}
    if fits:  # a whole spacing is also an equispaced_fraction law, but for the last column
        if any(
            level == 0 and not torch.equal(f.keep_probability(), fits[n].keep_probability())
            for n, (f, level, _) in found.items()
            if n in fits
        ):
            notes.append("the masks fit both a lattice and an equispaced_fraction law; the lattice assumed")
    else:
        best = min((level for _, level, _ in found.values()), default=None)
        fits = {n: fam for n, (fam, level, _) in found.items() if level == best}
        if not all(unique for n, (_, _, unique) in found.items() if n in fits):
            notes.append(
                "several accelerations of equispaced_fraction masks fit these masks; the nearest assumed"
            )
    if not fits:
        return None, []
    n, how = _pick_centre({k: f.acceleration for k, f in fits.items()}, w)
    if how not in ("only", "fastmri"):
        if n is None:
            n = min(fits)  # no equispaced line counted as the centre's
        notes.append(
            f"the fully sampled centre is {min(fits)} to {max(fits)} lines: these masks do not tell "
            f"(an equispaced line next to it or its edge); {n} assumed"
            + (" (a whole-percent centre fraction)" if how else "")
        )
    fam = fits[n]
    llr = _equispaced_evidence(cols, fam, _block(w, n))
    if llr < EQUISPACED_EVIDENCE:
        notes.append(
            "too few lines outside the centre to tell an equispaced law from random lines "
            f"(evidence {llr:.1f})"
        )
    return fam, notes


def _equispaced_evidence(cols: torch.Tensor, fam: EquispacedLines, centre: torch.Tensor) -> float:
    """Log-likelihood ratio (nats) of ``fam`` over the likeliest random lines with the same centre
    (one rate, fitted; for symmetric masks one draw per partner pair, as Hermitian lines)."""
    outer = ~centre
    if torch.equal(cols, _mirror_cols(cols)):
        outer = outer & (torch.arange(cols.shape[1]) < hermitian_partner(cols.shape[1]))
    x = cols[:, outer]
    k, m = float(x.sum()), float(x.numel())
    q = k / m if m else 0.0
    random = (k * math.log(q) if k else 0.0) + ((m - k) * math.log1p(-q) if m > k else 0.0)
    return -cols.shape[0] * math.log(fam.table.shape[0]) - random


def _symmetry_evidence(x: torch.Tensor, p: torch.Tensor) -> float:
    """Log-likelihood ratio (nats) of a Hermitian law over an independent one with keep
    probabilities ``p`` for symmetric masks: ``x (S, K)`` the canonical bins of each pair."""
    inner = (p > 0) & (p < 1)
    if not bool(inner.any()):
        return 0.0
    pi = p[inner].double()
    e = torch.where(x[:, inner], -torch.log(pi), -torch.log1p(-pi))
    return float(e.sum())


def _line_randomness(cols: torch.Tensor, outer: torch.Tensor) -> list[str]:
    """Do the ``outer`` columns of masks ``cols (S, W)`` look like independent draws at one rate?

    Two statistics against their laws given each row's count (kept columns placed uniformly at
    random among the outer ones): the number of irregular gaps between consecutive kept columns
    (at most half or at least twice the mean gap; by permutations) and the summed distance of the
    kept columns from DC (exact moments). Notes for what is more than :data:`RANDOMNESS_Z` off."""
    w = cols.shape[1]
    idx = outer.nonzero().flatten()
    m = idx.numel()
    x = cols[:, idx]
    k = x.sum(1)
    if m == 0 or int(k.sum()) == 0:
        return ["no line outside the centre is sampled: their rate is a guess"]
    notes = []
    dist = (idx - w // 2).abs().double()
    mu, var = float(dist.mean()), float(dist.var(unbiased=False))
    d_obs = float((x.double() * dist).sum())
    d_mean = float(k.sum()) * mu
    d_var = float((k.double() * var * (m - k.double()) / max(m - 1, 1)).sum())
    if d_var > 0 and abs(d_obs - d_mean) / d_var**0.5 > RANDOMNESS_Z:
        z = (d_obs - d_mean) / d_var**0.5
        notes.append(
            f"the rate of the lines outside the centre changes with the distance from DC (z = {z:.1f})"
        )
    g = torch.Generator().manual_seed(0)
    obs, sims = 0.0, torch.zeros(_PERMUTATIONS, dtype=torch.float64)
    for row, kk in zip(x, k.tolist()):
        if kk < 3 or kk > m - 2:
            continue
        gbar = m / kk
        pos = row.nonzero().flatten()
        d = pos.diff()
        obs += float(((d <= gbar / 2) | (d >= 2 * gbar)).sum())
        perm = torch.rand((_PERMUTATIONS, m), generator=g).argsort(1)[:, :kk].sort(1).values
        d = perm.diff(dim=1)
        sims += ((d <= gbar / 2) | (d >= 2 * gbar)).sum(1).double()
    sd = float(sims.std())
    if sd > 0:
        z = (obs - float(sims.mean())) / sd
        if z < -RANDOMNESS_Z:
            notes.append(
                f"the lines outside the centre are more regular than random ones (z = {z:.1f}) "
                "but no equispaced law fits"
            )
        elif z > RANDOMNESS_Z:
            notes.append(f"the lines outside the centre are more clustered than random ones (z = {z:.1f})")
    return notes


def _estimate_lines(cols: torch.Tensor, h: int) -> tuple[MaskFamily, list[str]]:
    s, w = cols.shape
    fam, notes = _equispaced(cols, h)
    if fam is not None:
        return fam, notes
    sym = torch.equal(cols, _mirror_cols(cols))
    sizes = _centre_sizes(cols.all(0), sym)
    # The largest centre in the run through DC is the likeliest (a random line next to it is kept
    # with probability < 1). Where centre fractions in whole percent single out some of the three
    # largest blocks (not all: the width is large enough for them to tell), the largest of those
    # is taken instead, or fastMRI's pairing for the observed acceleration when it is one of them.
    blocks: list[int] = []
    for n in reversed(sizes):
        if not blocks or not torch.equal(_block(w, n, sym), _block(w, blocks[-1], sym)):
            blocks.append(n)
    smallest = int(_block(w, blocks[:3][-1], sym).sum()) if blocks else 0
    top = [n for n in sizes if int(_block(w, n, sym).sum()) >= smallest]
    whole = [n for n in top if _whole_fraction(n, w) is not None]
    n = sizes[-1] if sizes else 0
    if whole and len(whole) < len(top):
        r_obs = round(w / max(float(cols.double().sum(1).mean()), 1.0))
        paired = [k for k in whole if _fastmri_pair(w, k, r_obs)]
        n = paired[0] if len(paired) == 1 else max(whole)
    centre = _block(w, n, sym)
    outer = ~centre
    m = int(outer.sum())
    rate = float(cols[:, outer].double().mean()) if m else 1.0
    rate = min(max(rate, 1.0 / (s * max(m, 1))), 1.0)
    partner = hermitian_partner(w)
    hermitian = False
    if sym:
        canon = torch.arange(w) < partner
        e = _symmetry_evidence(cols[:, canon & outer], torch.full((int((canon & outer).sum()),), rate))
        hermitian = e > 0
        if hermitian and e < HERMITIAN_EVIDENCE:
            notes.append(
                f"the masks are symmetric about DC but too few to tell a Hermitian law (evidence {e:.1f})"
            )
    if hermitian:
        outer = outer & (torch.arange(w) <= partner)
    notes += _line_randomness(cols, outer)
    return IndependentLines(h, _with_center(centre, rate), hermitian=hermitian, name="lines"), notes


def _adjacency_z(x: torch.Tensor, p: torch.Tensor, valid: torch.Tensor) -> tuple[float, float]:
    """``(z, variance)`` of the number of pairs of neighbouring kept bins (rows and columns, both
    ``valid``) in masks ``x (S, H, W)`` under independent draws with keep probabilities ``p``."""
    x, p = x.double(), p.double()
    nsum, nsq = torch.zeros_like(p), torch.zeros_like(p)
    t = mean = var = 0.0
    h, w = p.shape
    for a, b in (
        ((slice(None), slice(0, w - 1)), (slice(None), slice(1, w))),
        ((slice(0, h - 1), slice(None)), (slice(1, h), slice(None))),
    ):
        e = valid[a] & valid[b]
        t += float((x[(slice(None), *a)] * x[(slice(None), *b)])[:, e].sum())
        pp = (p[a] * p[b])[e]
        mean += float(pp.sum())
        var += float((pp * (1 - pp)).sum())
        nsum[a] += torch.where(e, p[b], 0.0)
        nsum[b] += torch.where(e, p[a], 0.0)
        nsq[a] += torch.where(e, p[b] ** 2, 0.0)
        nsq[b] += torch.where(e, p[a] ** 2, 0.0)
    var += float((p * (1 - p) * (nsum**2 - nsq))[valid].sum())  # pairs sharing a bin
    s = x.shape[0]
    var *= s
    return ((t - s * mean) / var**0.5 if var > 0 else 0.0), var


def _estimate_2d(m: torch.Tensor) -> tuple[MaskFamily, list[str]]:
    s, h, w = m.shape
    r = radius_grid((h, w))
    width = max(1.0, min(h, w) / 64)
    ring = torch.floor(r / width).long()
    kept = torch.zeros(int(ring.max()) + 1, dtype=torch.float64)
    total = torch.zeros_like(kept)
    kept.index_add_(0, ring.flatten(), m.double().sum(0).flatten())
    total.index_add_(0, ring.flatten(), torch.full((h * w,), float(s), dtype=torch.float64))
    p = (kept / total.clamp_min(1))[ring]  # the keep rate of each ring of equal width around DC
    notes = []
    lin = torch.arange(h * w).reshape(h, w)
    partner = _mirror2(lin)
    hermitian = False
    if torch.equal(m, _mirror2(m)):
        canon = lin < partner
        e = _symmetry_evidence(m[:, canon], p[canon])
        hermitian = e > 0
        if hermitian and e < HERMITIAN_EVIDENCE:
            notes.append(
                f"the masks are symmetric about DC but too few to tell a Hermitian law (evidence {e:.1f})"
            )
    valid = lin <= partner if hermitian else torch.ones(h, w, dtype=torch.bool)
    spread = float((p * (1 - p))[valid].sum()) * s
    z, _ = _adjacency_z(m, p, valid)
    if spread < 10:
        notes.append(
            "the masks keep each ring of k-space (almost) always or never: a fixed pattern, not a random law"
        )
    elif abs(z) > RANDOMNESS_Z:
        how = "more" if z > 0 else "less"
        notes.append(
            f"neighbouring bins are kept together {how} often than independent draws would (z = {z:.1f}): "
            "not a Bernoulli law (a calibration block, Poisson-disc or lines?)"
        )
    dens = p.clamp(min=1.0 / (s * h * w), max=1.0)
    return Bernoulli2D(dens.float(), hermitian=hermitian, name="bernoulli"), notes


def estimate_family(masks: torch.Tensor) -> MaskFamily:
    """A law estimated from observed masks ``(S, H, W)`` (or ``(H, W)``) of one acquisition.

    Masks of whole columns (the usual 1-D Cartesian scan, fastMRI's layout):

    - **equispaced**: when every mask is a centre block plus every ``R``-th column from an offset
      of its own (at least four outside the centre), the exact ``lines_lattice`` law (fastMRI's
      ``equispaced``); else, when every mask is a row of a ``lines_equispaced`` law (fastMRI's
      ``equispaced_fraction``, rounded spacing; accelerations in whole, half, then quarter steps),
      that law. The centre is fastMRI's block of ``n`` columns
      (:func:`~mri_n2n.sampling.center_lines`) inside the run every mask keeps through DC, so a
      lattice line next to the block is never absorbed; with several masks of different offsets
      ``n`` is exact. When the masks leave ``n`` open (one mask: a lattice line next to the block,
      or on its edge), fastMRI's ``round(W * 0.32 / R)`` for ``0.32 / R`` in whole percent (4x:
      8 %, 8x: 4 %) decides; else the only ``n`` a whole-percent centre fraction gives, else the
      smallest, both flagged. The law is flagged too when it is likelier than the best random
      lines by less than :data:`EQUISPACED_EVIDENCE` nats (a few lines at small widths).
    - otherwise **independent lines**: the centre block has probability 1 and the other columns
      the uniform rate at which they are kept. The block is the largest in the run through DC
      (the likeliest: a random line next to it is kept with probability below 1), unless centre
      fractions in whole percent single out some of the three largest blocks, then the largest of
      those, or fastMRI's pairing for the observed acceleration among them.

    2-D masks: the keep rate in rings of equal width around DC (a radial density), floored at
    ``1 / (S H W)`` so every bin has a positive probability.

    **Hermitian laws**: masks that all equal their mirror (``k -> -k``) give a Hermitian family
    (one draw per partner pair, :func:`hermitian_complete` adds nothing). Symmetry is evidence
    only where the estimated keep probability lies strictly between 0 and 1: the log-likelihood
    ratio of the Hermitian law over the independent one, ``sum log(1/p)`` over kept partner pairs
    plus ``sum log(1/(1 - p))`` over missed ones, must reach :data:`HERMITIAN_EVIDENCE` (20 nats:
    an independent law gives such symmetric masks with probability below ``2e-9``), else the
    Hermitian estimate is flagged. One random 10 % 2-D mask at 64 x 64 or lines at 368 columns is
    far above it; a deterministic pattern has none.

    **Unidentified laws**: the returned family's ``unidentified`` attribute is None, or a short
    text saying why the law is a guess: a fixed pattern, too little evidence for its symmetry,
    an ambiguous centre, or masks that are not plausibly independent draws (2-D: neighbouring
    kept bins more or less often than independent ones give; lines not equispaced: gaps between
    kept lines too regular or clustered, or a rate that changes with the distance from DC; each
    more than :data:`RANDOMNESS_Z` standard deviations off).
    """
    m = masks.bool().cpu()
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3 or m.shape[0] == 0:
        raise ValueError(f"masks must be (S, H, W), got shape {tuple(masks.shape)}")
    if bool((m == m[:, :1, :]).all()):  # whole columns
        fam, notes = _estimate_lines(m[:, 0, :], m.shape[1])
    else:
        fam, notes = _estimate_2d(m)
    fam.unidentified = "; ".join(notes) or None
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
