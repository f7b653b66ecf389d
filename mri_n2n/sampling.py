"""k-space sampling densities and Bernoulli masks.

Conventions: k-space is centred (DC at ``(H // 2, W // 2)``, see :mod:`mri_n2n.fft`);
a *density* is a float tensor ``(H, W)`` of keep probabilities in (0, 1]; a *mask* is a
bool tensor ``(H, W)`` or ``(B, H, W)``.

The paper's density is :func:`exp_decay_density`: ``p(r) = exp(-lambda * r)`` with ``r``
the distance from the centre in frequency bins, ``lambda`` chosen so that ``p`` equals
``edge = 0.025`` at the edge of the axis (``lambda = ln(40) / 127`` at 256x256, mean
density about 0.10), or solved for a given mean ``fraction``.

Masks drawn with ``hermitian=True`` are conjugate-symmetric about the DC bin
(``mask[k] == mask[-k]``, the Nyquist row/column of even sizes being its own partner),
so the zero-filled reconstruction of a real image is real. Symmetrising a mask drawn
with probability ``p`` by OR-ing it with its mirror would raise the keep rate to
``2p - p^2``; instead one uniform draw is shared by each pair of partner bins, so
every bin is still kept with probability exactly ``p(k)`` (for a symmetric density;
an asymmetric one is symmetrised by averaging ``p(k)`` and ``p(-k)``).
"""

from __future__ import annotations

import math

import torch

from .solvers import bisect

__all__ = [
    "radius_grid",
    "exp_decay_density",
    "gaussian_density",
    "uniform_density",
    "line_density",
    "center_lines",
    "bernoulli_mask",
    "hermitian_partner",
    "hermitian_mirror",
    "share_partner_draws",
    "symmetric_density",
    "make_density",
    "DENSITIES_2D",
]


def _shape2(shape: tuple[int, int] | int) -> tuple[int, int]:
    if isinstance(shape, int):
        return (shape, shape)
    h, w = (int(s) for s in shape)
    if h < 1 or w < 1:
        raise ValueError(f"invalid k-space shape {shape}")
    return h, w


def radius_grid(shape: tuple[int, int] | int, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Distance of each bin from the k-space centre ``(H // 2, W // 2)``, in bins."""
    h, w = _shape2(shape)
    ky = torch.arange(h, dtype=dtype) - h // 2
    kx = torch.arange(w, dtype=dtype) - w // 2
    return torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


def _edge_radius(h: int, w: int) -> int:
    # Distance from the centre to the last bin of the shorter axis: 127 for 256 or 255.
    return max((min(h, w) - 1) // 2, 1)


def _check_fraction(fraction: float, h: int, w: int) -> None:
    if not (1.0 / (h * w) < fraction <= 1.0):
        raise ValueError(f"sampling fraction must lie in (1/(H*W), 1], got {fraction}")


def exp_decay_density(
    shape: tuple[int, int] | int, *, edge: float = 0.025, fraction: float | None = None
) -> torch.Tensor:
    """The paper's density ``p(r) = exp(-lambda * r)`` (float32, DC value 1).

    Args:
        shape: k-space size ``(H, W)``.
        edge: keep probability at the edge of the (shorter) axis, used when ``fraction``
            is ``None``: ``lambda = -ln(edge) / ((min(H, W) - 1) // 2)``; at 256x256 this is
            the paper's ``ln(40) / 127`` with a mean density of about 0.10.
        fraction: if given, ``lambda`` is solved (bisection) so that the mean density
            equals ``fraction``.

    Returns:
        Density ``(H, W)``, values in (0, 1].
    """
    h, w = _shape2(shape)
    r = radius_grid((h, w))
    if fraction is None:
        if not 0.0 < edge <= 1.0:
            raise ValueError(f"edge density must lie in (0, 1], got {edge}")
        lam = -math.log(edge) / _edge_radius(h, w)
    else:
        _check_fraction(fraction, h, w)
        if fraction >= 1.0:
            return torch.ones(h, w)
        lam = bisect(lambda l: torch.exp(-l * r).mean().item(), fraction, 0.0, 50.0)
    return torch.exp(-lam * r).float()


def gaussian_density(
    shape: tuple[int, int] | int, *, fraction: float = 0.1, floor: float = 0.0
) -> torch.Tensor:
    """2-D Gaussian variable density ``p = floor + (1 - floor) exp(-r^2 / (2 sigma^2))``.

    ``sigma`` (in bins) is solved so that the mean density equals ``fraction``; DC is 1.
    """
    h, w = _shape2(shape)
    _check_fraction(fraction, h, w)
    if not 0.0 <= floor < fraction:
        raise ValueError(f"floor must lie in [0, fraction), got {floor}")
    r2 = radius_grid((h, w)) ** 2

    def dens(inv_sigma: float) -> torch.Tensor:
        return floor + (1.0 - floor) * torch.exp(-0.5 * r2 * inv_sigma**2)

    inv = bisect(lambda s: dens(s).mean().item(), fraction, 0.0, 50.0)
    return dens(inv).float()


def uniform_density(shape: tuple[int, int] | int, *, fraction: float = 0.1) -> torch.Tensor:
    """Uniform density: every bin kept with probability ``fraction``."""
    h, w = _shape2(shape)
    _check_fraction(fraction, h, w)
    return torch.full((h, w), float(fraction))


def center_lines(w: int, center_fraction: float) -> tuple[int, int]:
    """``(start, n)``: the ``n = round(w * center_fraction)`` (at least 1) fully sampled central
    columns start at ``(w - n + 1) // 2`` (fastMRI's convention)."""
    if not 0.0 <= center_fraction <= 1.0:
        raise ValueError(f"center_fraction must lie in [0, 1], got {center_fraction}")
    n = max(1, int(round(w * center_fraction)))
    return (w - n + 1) // 2, n


def line_density(
    shape: tuple[int, int] | int, *, acceleration: float = 4.0, center_fraction: float = 0.08
) -> torch.Tensor:
    """Density of 1-D Cartesian masks: whole phase-encode columns (last dim), fastMRI style.

    The ``round(W * center_fraction)`` central columns are always kept; every other column is
    kept with the probability that makes the expected fraction of columns ``1 / acceleration``.
    Returned as ``(H, W)`` (constant along the first dim).
    """
    h, w = _shape2(shape)
    if acceleration < 1:
        raise ValueError(f"acceleration must be >= 1, got {acceleration}")
    start, n = center_lines(w, center_fraction)
    if n > w / acceleration:
        raise ValueError(
            f"center_fraction {center_fraction} keeps more than 1/acceleration "
            f"= {1 / acceleration:.3f} of the lines"
        )
    p_outer = (w / acceleration - n) / max(w - n, 1)
    col = torch.full((w,), p_outer)
    col[start : start + n] = 1.0
    return col.expand(h, w).clone()


def hermitian_partner(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Index of the frequency ``-f`` for each centred bin of a length-``n`` axis.

    Bin ``i`` holds frequency ``i - n // 2``; its partner is ``(2 * (n // 2) - i) % n``. For
    even ``n`` the Nyquist bin 0 is its own partner, as is the DC bin ``n // 2``.
    """
    c = n // 2
    return (2 * c - torch.arange(n, device=device)) % n


def hermitian_mirror(x: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """``x(-k)``: every centred bin of the last ``ndim`` dims (2: ``(H, W)``, 1: ``(W,)``)
    takes the value of its Hermitian partner (:func:`hermitian_partner`)."""
    for d in range(1, ndim + 1):
        x = x.index_select(-d, hermitian_partner(x.shape[-d], x.device))
    return x


def share_partner_draws(u: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """One draw per pair of partner bins: every bin of the last ``ndim`` dims of the draws ``u``
    takes the draw of its pair's first bin (the lower flat index), so ``u[..., k] == u[..., -k]``
    and every bin keeps its own law. Masks ``u < p`` are then conjugate-symmetric, each bin kept
    with probability exactly ``p(k)`` for a symmetric ``p``."""
    sizes = u.shape[-ndim:]
    lin = torch.arange(math.prod(sizes), device=u.device).reshape(sizes)
    first = torch.minimum(lin, hermitian_mirror(lin, ndim)).flatten()
    return u.flatten(-ndim)[..., first].reshape(u.shape)


def bernoulli_mask(
    density: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    hermitian: bool = False,
) -> torch.Tensor:
    """Draw independent Bernoulli masks: bin ``k`` is kept with probability ``density[k]``.

    Args:
        density: keep probabilities ``(H, W)``, on the device where masks are drawn.
        generator: a :class:`torch.Generator` on that device (``None``: the global RNG).
        batch_size: draw ``(B, H, W)`` independent masks; ``None`` draws one ``(H, W)`` mask.
        hermitian: make each mask conjugate-symmetric about DC (one draw per partner pair),
            which keeps the expected keep rate equal to the density.

    Returns:
        A bool mask ``(H, W)`` or ``(B, H, W)``.
    """
    if density.ndim != 2:
        raise ValueError(f"density must be (H, W), got shape {tuple(density.shape)}")
    shape = density.shape if batch_size is None else (batch_size, *density.shape)
    u = torch.rand(shape, generator=generator, device=density.device, dtype=torch.float32)
    p = density.to(torch.float32)
    if hermitian:
        u = share_partner_draws(u)
        p = symmetric_density(p)
    return u < p


def symmetric_density(p: torch.Tensor) -> torch.Tensor:
    """Average each bin's probability with its Hermitian partner's (``p`` is ``(..., H, W)``)."""
    return 0.5 * (p + hermitian_mirror(p))


#: The 2-D densities :func:`make_density` builds (the mask families, 1-D lines included, are in
#: :mod:`mri_n2n.masks`).
DENSITIES_2D = ("exp", "gaussian", "uniform")


def make_density(
    kind: str,
    shape: tuple[int, int] | int,
    *,
    fraction: float | None = 0.1,
    edge: float = 0.025,
    acceleration: float = 4.0,
    center_fraction: float = 0.08,
) -> torch.Tensor:
    """Build a named density: ``exp`` (the paper's; ``fraction=None`` uses ``edge``),
    ``gaussian``, ``uniform``, or ``lines_random`` (the column law of fastMRI's random line
    masks, from ``acceleration`` and ``center_fraction``). Other line families' laws are
    :meth:`mri_n2n.masks.MaskFamily.keep_probability`."""
    if kind == "exp":
        return exp_decay_density(shape, edge=edge, fraction=fraction)
    if kind == "gaussian":
        return gaussian_density(shape, fraction=0.1 if fraction is None else fraction)
    if kind == "uniform":
        return uniform_density(shape, fraction=0.1 if fraction is None else fraction)
    if kind == "lines_random":
        return line_density(shape, acceleration=acceleration, center_fraction=center_fraction)
    raise ValueError(f"unknown density '{kind}' (choose from {', '.join(DENSITIES_2D)}, lines_random)")
