"""A law over sampling laws: each training item draws its own mask family, acceleration and
centre fraction, as scans from many protocols do.

Scanners undersample by whole phase-encode lines with many settings: fastMRI's random and
equispaced masks, 2x to 8x, 4 % to 12 % of the lines fully sampled at the centre. A network
trained on one setting sees one aliasing pattern. :func:`draw_line_law` draws, per item, one
registered :class:`~mri_n2n.masks.MaskFamily` (built with :func:`~mri_n2n.masks.make_family`):

- the family, uniformly from ``families`` (line families, :data:`LINE_LAW_FAMILIES` by default),
  or with probability ``two_d_share`` from ``two_d_families`` (2-D variable-density masks, the
  phase-encode plane of a 3-D scan, at sampling density ``1 / acceleration``);
- the acceleration, log-uniform in ``accelerations`` (as likely between 2 and 4 as between 4
  and 8), rounded to ``acceleration_step``; an integer for ``lines_lattice``;
- the number of fully sampled central lines, uniform over the whole numbers of lines whose
  fraction of the width lies in ``center_fractions``, and at most ``W / acceleration - 1`` (one
  expected line outside the centre at least); the centre fraction is that number over ``W``.

The item's masks and their exact keep probability then come from that family
(:meth:`~mri_n2n.masks.MaskFamily.sample`, :meth:`~mri_n2n.masks.MaskFamily.keep_probability`),
the two masks of a Noise2Noise pair from the same law: :func:`draw_line_laws` and
:func:`sample_masks` do this for a batch. Each drawn law has a JSON-able description
(:meth:`~mri_n2n.masks.MaskFamily.describe`, which
:func:`~mri_n2n.masks.family_from_description` rebuilds), the record files keep of their
mask's law. Built families are cached (they are immutable), so a training run builds each
setting once.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from ...masks import FamilySettings, MaskFamily, family_names, is_line_family, make_family

__all__ = [
    "LINE_LAW_FAMILIES",
    "TWO_D_FAMILIES",
    "DrawnLaw",
    "draw_line_law",
    "draw_line_laws",
    "sample_masks",
    "MixedLines",
    "MixedEquispaced",
]

#: The line families a law is drawn from by default (every built-in one).
LINE_LAW_FAMILIES = ("lines_random", "lines_equispaced", "lines_lattice", "lines_gaussian")
#: The 2-D families drawn with probability ``two_d_share``.
TWO_D_FAMILIES = ("gaussian", "uniform", "exp")


class DrawnLaw(NamedTuple):
    """One item's law: the built family and its JSON-able description (``family.describe()``)."""

    family: MaskFamily
    description: dict[str, Any]


@functools.lru_cache(maxsize=256)
def _build(name: str, shape: tuple[int, int], acceleration: float, center_fraction: float, hermitian: bool):
    return make_family(
        name,
        shape,
        fraction=1.0 / acceleration,
        acceleration=acceleration,
        center_fraction=center_fraction,
        hermitian=hermitian,
    )


def _check_range(name: str, rng: Sequence[float], low: float) -> tuple[float, float]:
    lo, hi = (float(v) for v in rng)
    if not low <= lo <= hi:
        raise ValueError(f"{name} must be (min, max) with {low} <= min <= max, got {tuple(rng)}")
    return lo, hi


def _check_families(names: Sequence[str], lines: bool) -> tuple[str, ...]:
    known = family_names()
    out = tuple(names)
    for n in out:
        if n not in known:
            raise ValueError(f"unknown mask family '{n}' (registered: {', '.join(known)})")
        if is_line_family(n) != lines:
            kind = "a line" if lines else "a 2-D"
            raise ValueError(f"'{n}' is not {kind} family")
    return out


def _center_counts(w: int, lo: float, hi: float) -> tuple[int, int]:
    n_lo, n_hi = max(1, math.ceil(lo * w - 1e-9)), math.floor(hi * w + 1e-9)
    if n_lo > n_hi:
        raise ValueError(f"no whole number of central lines of {w} lies in center_fractions ({lo}, {hi})")
    return n_lo, n_hi


def draw_line_law(
    generator: torch.Generator,
    shape: tuple[int, int],
    families: Sequence[str] = LINE_LAW_FAMILIES,
    accelerations: tuple[float, float] = (2.0, 8.0),
    center_fractions: tuple[float, float] = (0.04, 0.12),
    *,
    two_d_families: Sequence[str] = TWO_D_FAMILIES,
    two_d_share: float = 0.1,
    acceleration_step: float | None = 0.05,
    hermitian: bool = False,
) -> DrawnLaw:
    """Draw one item's sampling law (module docstring) and build its family.

    Args:
        generator: the source of the draw (a few numbers; on its device).
        shape: k-space ``(H, W)``; lines run along the first dim, one per column.
        families: registered line families to choose from (uniformly).
        accelerations: ``(min, max)``, ``min >= 1``; log-uniform.
        center_fractions: ``(min, max)`` fraction of the columns fully sampled at the centre.
        two_d_families: registered 2-D families, chosen with probability ``two_d_share``.
        two_d_share: probability of a 2-D family, in ``[0, 1]`` (``0``: lines only).
        acceleration_step: the acceleration is rounded to a multiple of it (kept in range);
            ``None`` keeps it continuous. Rounding lets the built families be reused.
        hermitian: conjugate-symmetric draws where the family allows them (real images).

    Returns:
        :class:`DrawnLaw` ``(family, description)``.

    Raises:
        ValueError: unknown or misplaced family names, bad ranges, or a width too small for
            ``center_fractions`` at the largest acceleration.
    """
    h, w = (int(s) for s in shape)
    lines = _check_families(families, True)
    planes = _check_families(two_d_families, False)
    a_lo, a_hi = _check_range("accelerations", accelerations, 1.0)
    c_lo, c_hi = _check_range("center_fractions", center_fractions, 0.0)
    if c_hi > 1:
        raise ValueError(f"center_fractions must lie in [0, 1], got {tuple(center_fractions)}")
    if not 0.0 <= two_d_share <= 1.0:
        raise ValueError(f"two_d_share must lie in [0, 1], got {two_d_share}")
    n_lo, n_hi = _center_counts(w, c_lo, c_hi)
    if math.floor(w / a_hi - 1 + 1e-9) < n_lo:
        raise ValueError(
            f"{w} columns at acceleration {a_hi} leave no line outside {n_lo} central lines "
            "(a larger width, a lower acceleration or a smaller centre fraction)"
        )
    g = generator
    u = torch.rand(4, generator=g, device=g.device, dtype=torch.float64).tolist()
    two_d = bool(planes) and (u[0] < two_d_share or not lines)
    pool = planes if two_d else lines
    name = pool[min(int(u[1] * len(pool)), len(pool) - 1)]
    acc = math.exp(math.log(a_lo) + u[2] * (math.log(a_hi) - math.log(a_lo)))
    if name == "lines_lattice":
        r_lo, r_hi = math.ceil(a_lo - 1e-9), math.floor(a_hi + 1e-9)
        if r_lo > r_hi:
            raise ValueError(f"lines_lattice needs an integer acceleration in {tuple(accelerations)}")
        acc = float(min(max(round(acc), r_lo), r_hi))
    elif acceleration_step:
        acc = min(max(round(acc / acceleration_step) * acceleration_step, a_lo), a_hi)
        acc = float(f"{acc:.10g}")  # 3.4500000000000002 -> 3.45: one cache entry, a clean record
    n_max = min(n_hi, math.floor(w / acc - 1 + 1e-9))
    n = n_lo + min(int(u[3] * (n_max - n_lo + 1)), n_max - n_lo)
    cf = n / w
    fam = _build(name, (h, w), acc, cf, bool(hermitian))
    return DrawnLaw(fam, fam.describe())


def draw_line_laws(
    generator: torch.Generator, batch: int, shape: tuple[int, int], **kwargs: Any
) -> list[DrawnLaw]:
    """``batch`` independent laws of :func:`draw_line_law` (same keyword arguments), one per item."""
    return [draw_line_law(generator, shape, **kwargs) for _ in range(int(batch))]


def sample_masks(
    laws: Sequence[DrawnLaw | MaskFamily],
    generator: torch.Generator,
    n_masks: int = 2,
    *,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent masks per item from its own law, and that law's keep probability.

    Args:
        laws: one law (or family) per item, all of one shape ``(H, W)``.
        generator: the source of the masks.
        n_masks: masks per item (``2``: a Noise2Noise pair from one law).
        device: where the masks go (default: the generator's device).

    Returns:
        ``(masks, keep_prob)``: bool ``(B, n_masks, H, W)`` and float32 ``(B, H, W)`` (what the
        ``1 / p`` compensation of each item needs).
    """
    fams = [law.family if isinstance(law, DrawnLaw) else law for law in laws]
    if not fams:
        raise ValueError("no laws")
    if len({f.shape for f in fams}) != 1:
        raise ValueError(f"laws of different shapes: {sorted({f.shape for f in fams})}")
    dev = torch.device(device) if device is not None else generator.device
    masks = torch.stack([f.sample(int(n_masks), generator=generator, device=generator.device) for f in fams])
    keep = torch.stack([f.keep_probability() for f in fams])
    return masks.to(dev), keep.to(dev)


#: Laws drawn (from a fixed seed) to estimate :class:`MixedLines`' marginal keep probability.
MARGINAL_DRAWS = 256


class MixedLines(MaskFamily):
    """``--density mixed``: every item draws its own law (:func:`draw_line_law` with its
    defaults: the four line families at accelerations 2 to 8 with 4 to 12 % central lines, and a
    2-D family in 10 % of the items), so that one model serves the protocols scanners use.

    The corruption asks :meth:`draw_items` for each item's masks (both masks of a Noise2Noise
    pair from its law) and that law's exact keep probability, which compensates the item. As a
    family of its own, :meth:`keep_probability` is the marginal over the laws (estimated from
    :data:`MARGINAL_DRAWS` laws of a fixed seed) and :meth:`sample` draws a law per mask.
    ``--acceleration`` and ``--center-fraction`` do not apply: the ranges are the law.
    """

    names = ("mixed",)
    #: each item draws its own law (:meth:`draw_items` gives its keep probability)
    per_item = True
    #: the line families an item's law is drawn from, and the share of 2-D laws
    line_families: tuple[str, ...] = LINE_LAW_FAMILIES
    two_d_share: float = 0.1
    #: the ranges an item's acceleration and centre fraction are drawn from
    accelerations: tuple[float, float] = (2.0, 8.0)
    center_fractions: tuple[float, float] = (0.04, 0.12)

    @classmethod
    def build(
        cls, name: str, shape: tuple[int, int], settings: FamilySettings, *, hermitian: bool
    ) -> MaskFamily:
        return cls(shape, hermitian=hermitian)

    def __init__(self, shape: tuple[int, int] | int, *, hermitian: bool = False) -> None:
        super().__init__(shape, hermitian=hermitian)
        self.name = self.names[0]
        self._marginal: dict[bool, torch.Tensor] = {}

    def draw_law(self, generator: torch.Generator) -> MaskFamily:
        """One item's law."""
        return draw_line_law(
            generator, self.shape, self.line_families, self.accelerations, self.center_fractions,
            two_d_share=self.two_d_share, hermitian=self.hermitian,
        ).family

    def serves(self, lines: bool) -> bool:
        """Whether items of this mixture draw whole-line masks (``lines``) or 2-D masks."""
        return bool(self.line_families) if lines else self.two_d_share > 0

    def fraction_range(self) -> tuple[float, float]:
        """The sampled fractions an item's law can have: from the highest acceleration without a
        centre to the lowest one plus the largest centre (the rates a model of it was trained on,
        which :func:`~mri_n2n.data.measured.law_mismatch` checks a file against)."""
        lo, hi = self.accelerations
        return 1.0 / hi, min(1.0, 1.0 / lo + self.center_fractions[1])

    def _marginal_of(self, real: bool) -> torch.Tensor:
        if real not in self._marginal:
            g = torch.Generator().manual_seed(0x11E5)
            fams = [self.draw_law(g) for _ in range(MARGINAL_DRAWS)]
            ps = [f.real_keep_probability() if real else f.keep_probability() for f in fams]
            self._marginal[real] = torch.stack(ps).double().mean(0).float()
        return self._marginal[real].clone()

    def keep_probability(self) -> torch.Tensor:
        return self._marginal_of(False)

    def real_keep_probability(self) -> torch.Tensor:
        return self._marginal_of(True)

    def _draw(self, b: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        g = g if g is not None else torch.Generator()
        return torch.cat([self.draw_law(g).sample(1, generator=g, device=device) for _ in range(b)])

    def draw_items(
        self, batch: int, n: int, *, generator: torch.Generator, real: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        g = generator
        laws = [self.draw_law(g) for _ in range(int(batch))]
        sets = torch.stack([f.sample(int(n), generator=g) for f in laws], dim=1)  # (n, B, H, W)
        p = torch.stack([f.real_keep_probability() if real else f.keep_probability() for f in laws])
        return sets, p.float()

    def at_rate(self, fraction: float) -> MaskFamily:
        """A retrospective study at rate ``fraction``: fastMRI's equispaced protocol at
        acceleration ``1 / fraction`` with 8 % central lines (one protocol, not the mixture)."""
        return make_family(
            "lines_equispaced", self.shape, acceleration=1.0 / float(fraction), center_fraction=0.08,
            hermitian=self.hermitian,
        )

    def params(self) -> dict[str, Any]:
        return {}


class MixedEquispaced(MixedLines):
    """``--density mixed-equispaced``: :class:`MixedLines` restricted to equispaced lines
    (fastMRI's ``lines_equispaced`` at accelerations 2 to 8 with 4 to 12 % central lines, no 2-D
    masks). Regular undersampling is what parallel-imaging protocols write, and its aliasing is
    coherent: whole copies of the object a quarter of the field of view away at 4x, which the
    full mixture shows a network in under a quarter of its items. The shipped complex and
    multi-coil models end their training on it (after the full mixture); on the tuning sources
    that lifted every law, random lines and 2-D masks included (docs/results.md)."""

    names = ("mixed-equispaced",)
    lines = True
    line_families = ("lines_equispaced",)
    two_d_share = 0.0
