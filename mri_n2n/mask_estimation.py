"""Estimating the law of observed sampling masks (files that record no law).

:func:`estimate_family` turns the masks of an acquisition (one or several slices) into the
:class:`~mri_n2n.masks.MaskFamily` they were most plausibly drawn from, and says so when the masks
do not identify one (``family.unidentified``):

- whole-line masks: fastMRI's ``equispaced`` (a lattice, every R-th line from an offset) and
  ``equispaced_fraction`` masks give their exact law, the centre block taken inside the run every
  mask keeps (a lattice line next to the block is never counted as centre); other line masks the
  centre with probability 1 and the uniform rate elsewhere;
- 2-D masks: the keep rate in rings around DC; masks that all equal their mirror give a
  Hermitian law (one draw per partner pair), whose real keep probability is ``p`` itself.
"""

from __future__ import annotations

import math

import torch

from .masks import Bernoulli2D, EquispacedLines, IndependentLines, MaskFamily
from .sampling import hermitian_mirror, hermitian_partner, radius_grid

__all__ = ["estimate_family", "HERMITIAN_EVIDENCE", "EQUISPACED_EVIDENCE", "RANDOMNESS_Z", "FASTMRI_CENTRE"]


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
    return c | hermitian_mirror(c, ndim=1) if hermitian else c


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
    if torch.equal(cols, hermitian_mirror(cols, ndim=1)):
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
    sym = torch.equal(cols, hermitian_mirror(cols, ndim=1))
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
    column_p = torch.where(centre, 1.0, rate).double()  # 1 on the centre, the outer rate elsewhere
    return IndependentLines(h, column_p, hermitian=hermitian, name="lines"), notes


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
    partner = hermitian_mirror(lin)
    hermitian = False
    if torch.equal(m, hermitian_mirror(m)):
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
    keep_prob = p.clamp(min=1.0 / (s * h * w), max=1.0)
    return Bernoulli2D(keep_prob.float(), hermitian=hermitian, name="bernoulli"), notes


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
