"""Random receive-coil arrays, their correlated noise and fastMRI's readout oversampling, for
synthesising multi-coil acquisitions from images.

**Geometry.** Lengths are in units of the half field of view, as in
:func:`mri_n2n.coils.birdcage_maps`: the image spans ``[-1, 1)`` along both axes (``x`` along the
columns, ``y`` along the rows), ``z`` is through the slice. :func:`random_coil_array` puts
``C`` coils on an ellipse around the object: fitted to the object's ``support`` (the ellipse
of the same second moments, enlarged to contain it) plus a random gap, or a random ellipse
without one. Arrays of more than a ring's worth of loops (6 to 12) are several staggered rings
stacked along ``z``, as head and body arrays tile a surface; the slice lies a random distance
from their centre. The coils sit at jittered, evenly spaced angles from a random start, each
loop's axis pointing inward with a random tilt, its size set by the spacing of its ring.

**Sensitivities.** A coil's receive sensitivity is its in-plane magnetic field per unit current
(reciprocity), ``S = B_x + i B_y``, from the Biot--Savart law:

- ``element="loop"`` (default): a circular loop of radius ``a`` (exact field, with elliptic
  integrals: Jackson's off-axis loop field); loops are sized from the spacing of the array
  (``loop_size`` times the arc between neighbours, as overlap-decoupled arrays are built);
- ``element="wire"``: a long straight conductor along ``z`` (field ``1 / d``), the element of
  :func:`mri_n2n.coils.birdcage_maps`: on a regular ring without jitter it gives the same maps up
  to one constant phase per coil (tested).

Each coil then gets a random gain and phase and, optionally, a smooth random complex
modulation (``b1_amplitude``, ``b1_phase``: dielectric and wavelength effects of high fields).
These are *true* sensitivities: they are **not** normalised to ``sum_c |S_c|^2 = 1`` (real coils
are not; the array is only scaled so that its root-sum-of-squares peaks at 1 on the support).
:func:`coil_images` gives the coil images ``S_c x`` the scanner measures; the maps a
reconstruction uses are estimated from those data, or the true ones normalised with
:func:`mri_n2n.coils.normalize_maps` (the project's convention, ``sum_c |S_c|^2 = 1`` on the
support).

**Noise.** :func:`correlated_noise` draws complex Gaussian noise whose coil covariance is a
random Hermitian positive-definite matrix: a per-coil noise level and couplings between coils
that decay with their distance (mutual inductance, shared preamplifier noise).

**Oversampling.** :func:`oversample_readout` writes k-space with fastMRI's 2x readout
oversampling (twice the field of view along the rows); :func:`mri_n2n.data.multicoil.crop_coil_kspace`
removes it again (tested: the round trip is exact to float precision).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F

from ...coils import rss

__all__ = [
    "CoilArrayParams",
    "CoilArray",
    "random_coil_array",
    "random_coil_maps",
    "element_maps",
    "coil_images",
    "noise_covariance",
    "correlated_noise",
    "oversample_readout",
]

ELEMENTS = ("loop", "wire")


@dataclass(frozen=True)
class CoilArrayParams:
    """Ranges of the random coil array (module docstring); draws are uniform in their range.

    Attributes:
        n_coils: ``(min, max)`` number of coils when :func:`random_coil_array` is not given one
            (``(2, 32)``).
        element: ``"loop"`` (circular loops, default) or ``"wire"`` (straight conductors).
        loop_size: ``(min, max)`` loop diameter as a fraction of the arc between neighbouring
            coils (``(0.6, 1.1)``: from gaps between loops to overlap).
        loop_radius: ``(min, max)`` limits of a loop's radius, half-FOV units (``(0.08, 0.6)``).
        size_jitter: relative spread of the loops' radii within an array (``0.15``).
        gap: ``(min, max)`` distance from the object's enclosing ellipse to the coils'
            conductors, half-FOV units (``(0.1, 0.3)``: housing and padding, 1 to 4 cm of a
            25 cm field of view).
        array_radius: ``(min, max)`` semi-major axis of the array's ellipse without a support
            (``(1.0, 1.4)``).
        aspect: ``(min, max)`` minor / major axis of that ellipse (``(0.7, 1.0)``).
        centre_offset: the array's centre is shifted by up to this much along each axis without
            a support (``0.1``).
        angle_jitter: each coil's angle is jittered by up to this fraction of the even angular
            spacing (``0.3``).
        ring_coils: ``(min, max)`` coils per ring of loops: larger arrays are rings stacked
            along ``z``, staggered, as head and body arrays tile a surface (``(6, 12)``).
        ring_overlap: ``(min, max)`` distance between neighbouring rings in loop diameters
            (``(0.8, 1.0)``).
        z_offset: the slice lies up to this far from the centre of the rings along ``z``
            (``0.2``).
        tilt: each coil's axis is tilted by up to this many radians from pointing at the
            array's centre, in the plane (``0.3``).
        gain: ``(min, max)`` per-coil gain (``(0.8, 1.25)``).
        b1_amplitude: largest relative amplitude of each coil's smooth random modulation
            (``0.2``; ``0`` disables it).
        b1_phase: largest phase of that modulation, radians (``0.3``).
    """

    n_coils: tuple[int, int] = (2, 32)
    element: str = "loop"
    loop_size: tuple[float, float] = (0.6, 1.1)
    loop_radius: tuple[float, float] = (0.08, 0.6)
    size_jitter: float = 0.15
    gap: tuple[float, float] = (0.1, 0.3)
    array_radius: tuple[float, float] = (1.0, 1.4)
    aspect: tuple[float, float] = (0.7, 1.0)
    centre_offset: float = 0.1
    angle_jitter: float = 0.3
    ring_coils: tuple[int, int] = (6, 12)
    ring_overlap: tuple[float, float] = (0.8, 1.0)
    z_offset: float = 0.2
    tilt: float = 0.3
    gain: tuple[float, float] = (0.8, 1.25)
    b1_amplitude: float = 0.2
    b1_phase: float = 0.3

    def __post_init__(self) -> None:
        if self.element not in ELEMENTS:
            raise ValueError(f"CoilArrayParams.element must be one of {ELEMENTS}, got {self.element!r}")
        for name in (
            "n_coils",
            "loop_size",
            "loop_radius",
            "gap",
            "array_radius",
            "aspect",
            "gain",
            "ring_coils",
            "ring_overlap",
        ):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(
                    f"CoilArrayParams.{name} must be (min, max) with 0 <= min <= max, got {(lo, hi)}"
                )
        positive = (
            self.n_coils[0],
            self.ring_coils[0],
            self.loop_radius[0],
            self.array_radius[0],
            self.aspect[0],
            self.gain[0],
        )
        if min(positive) <= 0:
            raise ValueError(
                "CoilArrayParams: n_coils, ring_coils, loop_radius, array_radius, aspect and gain "
                "must be positive"
            )
        for name in (
            "size_jitter",
            "centre_offset",
            "angle_jitter",
            "z_offset",
            "tilt",
            "b1_amplitude",
            "b1_phase",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"CoilArrayParams.{name} must be >= 0, got {getattr(self, name)}")

    def describe(self) -> dict[str, Any]:
        """The parameters as a JSON-able dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class CoilArray:
    """One drawn array: its maps and the geometry they came from.

    Attributes:
        maps: complex64 true sensitivities ``(C, H, W)`` (not normalised; RSS peaks at 1 on the
            support).
        centres: float64 ``(C, 3)`` coil centres ``(x, y, z)``, half-FOV units.
        axes: float64 ``(C, 3)`` unit loop axes (for wires: the conductor's direction, ``z``).
        radii: float64 ``(C,)`` loop radii (zeros for wires).
        gains: float64 ``(C,)`` the gains the maps were multiplied by (before the overall scale).
        phases: float64 ``(C,)`` the constant phases they were multiplied by (radians).
        element: ``"loop"`` or ``"wire"``.
    """

    maps: torch.Tensor
    centres: torch.Tensor
    axes: torch.Tensor
    radii: torch.Tensor
    gains: torch.Tensor
    phases: torch.Tensor
    element: str

    @property
    def n_coils(self) -> int:
        """Number of coils ``C``."""
        return int(self.maps.shape[0])

    def describe(self) -> dict[str, Any]:
        """The geometry as a JSON-able dict (the maps excluded)."""
        return {
            "element": self.element,
            "n_coils": self.n_coils,
            "shape": list(self.maps.shape[-2:]),
            "centres": [[round(float(v), 6) for v in row] for row in self.centres.tolist()],
            "axes": [[round(float(v), 6) for v in row] for row in self.axes.tolist()],
            "radii": [round(float(v), 6) for v in self.radii.tolist()],
            "gains": [round(float(v), 6) for v in self.gains.tolist()],
            "phases": [round(float(v), 6) for v in self.phases.tolist()],
        }


# ----------------------------------------------------------------------------------- fields
def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``y (H, 1)``, ``x (1, W)`` in half-FOV units (``birdcage_maps``' grid)."""
    h, w = shape
    y = ((np.arange(h, dtype=np.float64) - h / 2) / (h / 2))[:, None]
    x = ((np.arange(w, dtype=np.float64) - w / 2) / (w / 2))[None, :]
    return y, x


def _loop_field(
    centre: np.ndarray, axis: np.ndarray, radius: float, y: np.ndarray, x: np.ndarray, eps: float
) -> np.ndarray:
    """In-plane field ``B_x + i B_y`` (complex ``(H, W)``, units of ``mu0 I / (2 pi)`` per unit length)
    of a circular loop of ``radius`` centred at ``centre`` with unit normal ``axis``, at the
    points ``(x, y, 0)``. Points within ``eps`` of the wire are evaluated at distance ``eps``."""
    d = np.stack(np.broadcast_arrays(x - centre[0], y - centre[1], np.full_like(x * y, -centre[2])))
    zl = np.tensordot(axis, d, axes=1)  # along the axis
    rvec = d - axis[:, None, None] * zl
    rho = np.sqrt((rvec**2).sum(0))
    a = float(radius)
    wire2 = np.maximum((a - rho) ** 2 + zl**2, eps**2)  # squared distance to the wire
    far2 = wire2 + 4 * a * rho  # (a + rho)^2 + z^2
    m = 4 * a * rho / far2
    k, e = scipy.special.ellipk(m), scipy.special.ellipe(m)
    root = np.sqrt(far2)
    b_axis = (k + (a**2 - rho**2 - zl**2) / wire2 * e) / root
    # B_rho = z / (rho root) (-K + (a^2 + rho^2 + z^2) / wire2 E); the bracket vanishes like rho^2
    safe = np.maximum(rho, 1e-12)
    b_rho = np.where(rho > 1e-9, zl / (safe * root) * (-k + (a**2 + rho**2 + zl**2) / wire2 * e), 0.0)
    bvec = axis[:, None, None] * b_axis + rvec / safe * b_rho
    return bvec[0] + 1j * bvec[1]


def _wire_field(centre: np.ndarray, y: np.ndarray, x: np.ndarray, eps: float) -> np.ndarray:
    """In-plane field ``B_x + i B_y`` of an infinite straight wire along ``z`` through ``centre``:
    ``i e^{i phi} / d`` with ``phi`` the direction from the wire to the point."""
    dx, dy = x - centre[0], y - centre[1]
    d2 = np.maximum(dx**2 + dy**2, eps**2)
    return 1j * (dx + 1j * dy) / d2


def _ellipse_of(support: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre ``(2,)``, semi-axes ``(2,)`` and unit axes ``(2, 2)`` (columns, ``(x, y)``) of the
    ellipse with the second moments of a bool support ``(H, W)``, enlarged until it contains
    every pixel of the support (and half a pixel more)."""
    h, w = support.shape
    y, x = _grid((h, w))
    s = support.detach().cpu().numpy().astype(bool)
    if not s.any():
        raise ValueError("the support is empty")
    pts = np.stack([np.broadcast_to(x, s.shape)[s], np.broadcast_to(y, s.shape)[s]])  # (2, N)
    centre = pts.mean(1)
    cov = np.cov(pts) if pts.shape[1] > 2 else np.eye(2) * 1e-4
    vals, vecs = np.linalg.eigh(np.atleast_2d(cov))
    semi = 2 * np.sqrt(np.maximum(vals, 0)) + 1.0 / max(h, w)  # a uniform ellipse's own
    uv = vecs.T @ (pts - centre[:, None]) / semi[:, None]
    semi = semi * max(1.0, float(np.sqrt((uv**2).sum(0)).max())) + 1.0 / max(h, w)
    return centre, semi, vecs


def _grid_size(shape: tuple[int, int], grid: int | None) -> tuple[int, int]:
    h, w = shape
    if grid is None:
        return h, w
    if int(grid) < 4:
        raise ValueError(f"grid must be at least 4 (or None), got {grid}")
    return min(h, int(grid)), min(w, int(grid))


def _fields(
    shape: tuple[int, int],
    coarse: tuple[int, int],
    centres: np.ndarray,
    axes: np.ndarray | None,
    radii: np.ndarray,
    element: str,
) -> torch.Tensor:
    """complex64 ``(C, *coarse)`` fields of the elements on ``coarse`` points spanning the pixel
    centres of an image of ``shape`` (the same points when ``coarse == shape``)."""
    y, x = _grid(shape)
    y = np.linspace(y[0, 0], y[-1, 0], coarse[0])[:, None]
    x = np.linspace(x[0, 0], x[0, -1], coarse[1])[None, :]
    eps = 1.0 / max(shape)  # half a pixel
    if element == "loop":
        assert axes is not None
        fields = [_loop_field(centres[i], axes[i], float(radii[i]), y, x, eps) for i in range(len(centres))]
    elif element == "wire":
        fields = [_wire_field(centres[i], y, x, eps) for i in range(len(centres))]
    else:
        raise ValueError(f"element must be one of {ELEMENTS}, got {element!r}")
    return torch.from_numpy(np.stack(fields)).to(torch.complex64)


def _upsample(maps: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Bicubic interpolation of complex ``(C, h, w)`` maps sampled on points spanning the pixel
    centres to ``(C, *shape)`` (``align_corners``: the end points coincide)."""
    if tuple(maps.shape[-2:]) == tuple(shape):
        return maps
    ri = F.interpolate(torch.stack([maps.real, maps.imag]), size=shape, mode="bicubic", align_corners=True)
    return torch.complex(ri[0], ri[1])


def element_maps(
    image_shape: tuple[int, int],
    centres: torch.Tensor | np.ndarray,
    *,
    axes: torch.Tensor | np.ndarray | None = None,
    radii: torch.Tensor | np.ndarray | float | None = None,
    element: str = "loop",
    grid: int | None = None,
) -> torch.Tensor:
    """The raw Biot--Savart sensitivities ``B_x + i B_y`` of given coil elements (no gain, phase,
    modulation or scaling: the model of :func:`random_coil_array`, for a geometry of one's own).

    Args:
        image_shape: ``(H, W)``; coordinates in half-FOV units (module docstring).
        centres: ``(C, 3)`` element centres ``(x, y, z)`` (or ``(C, 2)``: in the slice).
        axes: ``(C, 3)`` (or ``(C, 2)``) loop normals, normalised here; loops only.
        radii: ``(C,)`` loop radii, or one for all; loops only.
        element: ``"loop"`` (circular loops) or ``"wire"`` (straight conductors along ``z``,
            :func:`mri_n2n.coils.birdcage_maps`' element: ``i e^{i phi} / d``).
        grid: evaluate on at most ``grid`` x ``grid`` points and interpolate (default: every pixel).

    Returns:
        complex64 ``(C, H, W)``; within half a pixel of a conductor the field is that at half a
        pixel (finite everywhere).
    """
    h, w = (int(s) for s in image_shape)
    pos = np.asarray(torch.as_tensor(centres).cpu(), dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] not in (2, 3):
        raise ValueError(f"centres must be (C, 2) or (C, 3), got shape {pos.shape}")
    pos = np.concatenate([pos, np.zeros((len(pos), 3 - pos.shape[1]))], axis=1)
    ax = None
    if element == "loop":
        if axes is None or radii is None:
            raise ValueError("loop elements need axes and radii")
        ax = np.asarray(torch.as_tensor(axes).cpu(), dtype=np.float64)
        ax = np.concatenate([ax, np.zeros((len(ax), 3 - ax.shape[1]))], axis=1)
        if ax.shape != pos.shape:
            raise ValueError(f"axes must be ({len(pos)}, 3), got shape {ax.shape}")
        ax = ax / np.linalg.norm(ax, axis=1, keepdims=True)
    r = np.broadcast_to(
        np.asarray(torch.as_tensor(0.0 if radii is None else radii).cpu(), np.float64), (len(pos),)
    )
    maps = _fields((h, w), _grid_size((h, w), grid), pos, ax, r, element)
    return _upsample(maps, (h, w))


def _smooth_modulation(
    n: int, shape: tuple[int, int], amplitude: float, phase: float, g: torch.Generator
) -> torch.Tensor:  # complex64
    """``(n, H, W)`` complex ``exp(amplitude f + i phase f')``, ``f, f'`` random bicubic fields
    from 3 x 3 grids in ``[-1, 1]``."""
    coarse = torch.rand((2, n, 3, 3), generator=g, device=g.device, dtype=torch.float32).cpu() * 2 - 1
    field = F.interpolate(coarse, size=shape, mode="bicubic", align_corners=True).clamp(-1, 1)
    return torch.polar(torch.exp(amplitude * field[0]), phase * field[1])


def random_coil_array(
    image_shape: tuple[int, int],
    n_coils: int | None,
    generator: torch.Generator,
    params: CoilArrayParams | None = None,
    *,
    support: torch.Tensor | None = None,
    grid: int | None = 128,
) -> CoilArray:
    """Draw a random receive array around the object and its true sensitivities.

    Args:
        image_shape: ``(H, W)``.
        n_coils: number of coils ``C``; ``None`` draws it uniformly from ``params.n_coils``.
        generator: the source of every draw.
        params: the ranges (default :class:`CoilArrayParams`).
        support: bool ``(H, W)``: the object; the array's ellipse is fitted around it and the
            maps are scaled so that their RSS peaks at 1 on it. Without it, a random ellipse
            around the centre, and the scale set on the inner three quarters of its ellipse.
        grid: the fields are evaluated on at most ``grid`` x ``grid`` points spanning the image
            and interpolated (bicubic: the maps are smooth; on the object within 2 % of the RSS
            peak of the exact ones at half resolution, tested, the largest errors at its edge
            next to a coil); ``None`` evaluates them at every pixel (about 5x slower at 320).

    Returns:
        A :class:`CoilArray` (maps complex64 ``(C, H, W)`` on CPU, and their geometry).

    Raises:
        ValueError: ``n_coils < 1``, a bad shape or an empty support.
    """
    p = params or CoilArrayParams()
    h, w = (int(s) for s in image_shape)
    if h < 2 or w < 2:
        raise ValueError(f"image_shape must be (H, W) with H, W >= 2, got {image_shape}")
    g = generator

    def uniform(n: int, lo: float, hi: float) -> np.ndarray:
        u = torch.rand(n, generator=g, device=g.device, dtype=torch.float64).cpu().numpy()
        return lo + (hi - lo) * u

    if n_coils is None:
        n_coils = int(torch.randint(p.n_coils[0], p.n_coils[1] + 1, (1,), generator=g, device=g.device))
    c = int(n_coils)
    if c < 1:
        raise ValueError(f"n_coils must be >= 1, got {n_coils}")

    # the array's ellipse: around the support, or a random one
    if support is not None:
        if tuple(support.shape) != (h, w):
            raise ValueError(f"support has shape {tuple(support.shape)}, expected {(h, w)}")
        centre, semi, vecs = _ellipse_of(support)
        semi = semi + uniform(1, *p.gap)[0]
    else:
        major = uniform(1, *p.array_radius)[0]
        semi = np.array([major, major * uniform(1, *p.aspect)[0]])
        psi = uniform(1, 0.0, math.pi)[0]
        vecs = np.array([[math.cos(psi), -math.sin(psi)], [math.sin(psi), math.cos(psi)]])
        centre = uniform(2, -p.centre_offset, p.centre_offset)
    # rings of loops along z (wires: one ring), each with evenly spaced, jittered angles
    per_ring = int(torch.randint(p.ring_coils[0], p.ring_coils[1] + 1, (1,), generator=g, device=g.device))
    n_rings = 1 if p.element == "wire" else math.ceil(c / max(per_ring, 1))
    ring = np.arange(c) % n_rings
    counts = np.bincount(ring, minlength=n_rings)
    slot = np.array([int((ring[:i] == ring[i]).sum()) for i in range(c)])  # index within its ring
    step = 2 * math.pi / counts[ring]
    rot = uniform(1, 0.0, 2 * math.pi)[0]
    theta = rot + step * (slot + 0.5 * (ring % 2)) + p.angle_jitter * step * uniform(c, -0.5, 0.5)
    local = np.stack([semi[0] * np.cos(theta), semi[1] * np.sin(theta)])  # (2, C) in the ellipse frame
    xy = centre[:, None] + vecs @ local
    normal = vecs @ np.stack([np.cos(theta) / semi[0], np.sin(theta) / semi[1]])
    normal = -normal / np.linalg.norm(normal, axis=0, keepdims=True)  # inward
    tilt = uniform(c, -p.tilt, p.tilt)
    ct, st = np.cos(tilt), np.sin(tilt)
    inward = np.stack([ct * normal[0] - st * normal[1], st * normal[0] + ct * normal[1]])
    wires_in = np.abs(st)  # a tilted loop's near conductor moves inward by radius * |sin(tilt)|

    # perimeter (Ramanujan) -> the arc between neighbours of a ring -> loop radii
    a_, b_ = semi
    perimeter = math.pi * (3 * (a_ + b_) - math.sqrt((3 * a_ + b_) * (a_ + 3 * b_)))
    base = float(np.clip(uniform(1, *p.loop_size)[0] * perimeter / counts.max() / 2, *p.loop_radius))
    radii = np.clip(base * (1 + p.size_jitter * uniform(c, -1.0, 1.0)), *p.loop_radius)
    if p.element == "loop":  # back out, so that the conductors keep the gap
        xy = xy - normal * (radii * wires_in)
    spacing = 2 * base * uniform(1, *p.ring_overlap)[0]
    z = (ring - (n_rings - 1) / 2) * spacing + uniform(1, -p.z_offset, p.z_offset)[0]
    centres = np.stack([xy[0], xy[1], z], axis=1)  # (C, 3)

    # the fields on a grid of at most `grid` points per side (the maps are smooth), then gains,
    # phases and the smooth modulation
    hc, wc = _grid_size((h, w), grid)
    if p.element == "wire":
        radii = np.zeros(c)
    axes = np.concatenate([inward.T, np.zeros((c, 1))], axis=1) if p.element == "loop" else None
    maps = _fields((h, w), (hc, wc), centres, axes, radii, p.element)  # (C, hc, wc)
    axes = axes if axes is not None else np.tile(np.array([0.0, 0.0, 1.0]), (c, 1))
    gains = np.exp(uniform(c, math.log(p.gain[0]), math.log(p.gain[1])))
    phases = uniform(c, 0.0, 2 * math.pi)
    maps = maps * torch.polar(torch.from_numpy(gains), torch.from_numpy(phases)).to(maps.dtype)[:, None, None]
    if p.b1_amplitude > 0 or p.b1_phase > 0:
        maps = maps * _smooth_modulation(c, (hc, wc), p.b1_amplitude, p.b1_phase, g)
    maps = _upsample(maps, (h, w))
    if support is not None:
        region = support.cpu().bool()
    else:  # the inner part of the array's ellipse, where an object would be
        yy, xx = _grid((h, w))
        dx, dy = xx - centre[0], yy - centre[1]
        u = (vecs[0, 0] * dx + vecs[1, 0] * dy) / semi[0]
        v = (vecs[0, 1] * dx + vecs[1, 1] * dy) / semi[1]
        region = torch.from_numpy(u**2 + v**2 <= 0.75**2)
    maps = maps / rss(maps, dim=0)[region].max().clamp_min(torch.finfo(torch.float32).tiny)
    return CoilArray(
        maps=maps,
        centres=torch.from_numpy(centres),
        axes=torch.from_numpy(axes),
        radii=torch.from_numpy(np.asarray(radii, dtype=np.float64)),
        gains=torch.from_numpy(gains),
        phases=torch.from_numpy(phases),
        element=p.element,
    )


def random_coil_maps(
    image_shape: tuple[int, int],
    n_coils: int | None,
    generator: torch.Generator,
    params: CoilArrayParams | None = None,
    support: torch.Tensor | None = None,
) -> torch.Tensor:
    """The true sensitivities ``(C, H, W)`` (complex64, not normalised) of a random array:
    :attr:`CoilArray.maps` of :func:`random_coil_array` (see it for the arguments)."""
    return random_coil_array(image_shape, n_coils, generator, params, support=support).maps


def coil_images(image: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """The coil images ``S_c x`` an array with sensitivities ``maps`` sees of ``image``.

    Args:
        image: ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)``, real or complex.
        maps: complex ``(C, H, W)`` (shared by the batch) or ``(B, C, H, W)``.

    Returns:
        Complex ``(C, H, W)`` for an ``(H, W)`` image and ``(C, H, W)`` maps, else
        ``(B, C, H, W)``; ``fft2c`` of it is the coil k-space.
    """
    x = image if image.is_complex() else image.to(torch.promote_types(image.dtype, torch.float32))
    if x.ndim == 2 and maps.ndim == 3:
        return maps * x
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"a (B, 1, H, W) image was expected, got {tuple(image.shape)}")
        x = x[:, 0]
    x = x if x.ndim == 3 else x[None]
    m = maps if maps.ndim == 4 else maps[None]
    return m * x[:, None]


# ----------------------------------------------------------------------------------- noise
def _ring_positions(c: int) -> np.ndarray:
    t = 2 * math.pi * np.arange(c) / c
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def noise_covariance(
    n_coils: int,
    generator: torch.Generator,
    std: float = 1.0,
    correlation: float = 0.3,
    *,
    positions: torch.Tensor | np.ndarray | None = None,
    std_spread: float = 0.2,
) -> torch.Tensor:
    """A random Hermitian positive-definite ``C x C`` noise covariance (complex128).

    ``Sigma = D R D``: ``D`` the per-coil noise levels ``std * U(1 - std_spread, 1 + std_spread)``,
    ``R`` the correlation matrix of ``A A^H`` with ``A = I + K``, ``K_ij = correlation / 2 * u_ij
    * exp(-(d_ij / s - 1)) * exp(i psi_ij)`` for ``i != j``: ``u_ij`` uniform in ``[0.25, 1]``,
    ``d_ij`` the distance between coils ``i`` and ``j``, ``s`` the median nearest-neighbour
    distance (neighbours couple most; two spacings away about a third as much), ``psi_ij``
    uniform. Neighbours' correlation coefficients are then of size up to about ``correlation``.
    ``A`` is nonsingular (diagonally dominant for ``correlation <= 0.6``), so ``Sigma`` is
    positive definite.

    Args:
        n_coils: ``C``.
        generator: the source of every draw.
        std: typical per-coil noise standard deviation (of the complex value: ``E|n|^2 = std^2``).
        correlation: coupling strength in ``[0, 1)``.
        positions: ``(C, 2)`` or ``(C, 3)`` coil positions (e.g. :attr:`CoilArray.centres`);
            default evenly spaced on a ring.
        std_spread: relative spread of the per-coil noise levels.

    Raises:
        ValueError: ``n_coils < 1``, ``std <= 0``, ``correlation`` outside ``[0, 1)`` or bad positions.
    """
    c = int(n_coils)
    if c < 1 or std <= 0 or not 0 <= correlation < 1 or not 0 <= std_spread < 1:
        raise ValueError(
            f"need n_coils >= 1, std > 0, 0 <= correlation < 1, 0 <= std_spread < 1; got "
            f"{n_coils}, {std}, {correlation}, {std_spread}"
        )
    g = generator
    pos = (
        _ring_positions(c)
        if positions is None
        else np.asarray(torch.as_tensor(positions).cpu(), dtype=np.float64)
    )
    if pos.shape[0] != c:
        raise ValueError(f"positions has {pos.shape[0]} rows for {c} coils")
    d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    if c > 1:
        nn = np.where(np.eye(c, dtype=bool), np.inf, d).min(1)
        s = max(float(np.median(nn)), 1e-9)
        decay = np.exp(-(d / s - 1)).clip(max=1.0)
    else:
        decay = np.zeros((1, 1))

    def rand(*shape: int) -> np.ndarray:
        return torch.rand(shape, generator=g, device=g.device, dtype=torch.float64).cpu().numpy()

    u = 0.25 + 0.75 * rand(c, c)
    psi = 2 * math.pi * rand(c, c)
    k = (correlation / 2) * u * decay * np.exp(1j * psi)
    np.fill_diagonal(k, 0)
    a = np.eye(c) + k
    sigma = a @ a.conj().T
    dn = 1 / np.sqrt(np.real(np.diag(sigma)))
    r = dn[:, None] * sigma * dn[None, :]
    levels = std * (1 + std_spread * (2 * rand(c) - 1))
    cov = levels[:, None] * r * levels[None, :]
    cov = 0.5 * (cov + cov.conj().T)  # exactly Hermitian
    return torch.from_numpy(cov)


def correlated_noise(
    shape: tuple[int, ...],
    n_coils: int,
    generator: torch.Generator,
    std: float = 1.0,
    correlation: float = 0.3,
    *,
    positions: torch.Tensor | np.ndarray | None = None,
    std_spread: float = 0.2,
    covariance: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Complex Gaussian noise correlated across coils, as a receive array's thermal noise.

    Every pixel (or k-space bin) gets an independent draw ``n = L z`` with ``z`` standard complex
    Gaussian (``E z z^H = I``) and ``L L^H = Sigma`` (Cholesky), so ``E n n^H = Sigma``: the
    covariance of :func:`noise_covariance` (drawn first from ``generator``) or ``covariance``.
    White noise is white in both image and k-space (the FFTs are unitary), so the draw serves
    for either.

    Args:
        shape: ``(H, W)`` or ``(B, H, W)``: the noise is ``(C, H, W)`` or ``(B, C, H, W)``.
        n_coils: ``C``.
        generator: the source of every draw.
        std, correlation, positions, std_spread: of :func:`noise_covariance`.
        covariance: a given Hermitian positive-definite ``(C, C)`` covariance instead of a drawn
            one (the other covariance arguments are then ignored).

    Returns:
        ``(noise, covariance)``: complex64 noise on the generator's device and the complex128
        ``(C, C)`` covariance it was drawn with.

    Raises:
        ValueError: a bad shape or covariance (not ``(C, C)`` or not positive definite).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"shape must be (H, W) or (B, H, W), got {shape}")
    c = int(n_coils)
    if covariance is None:
        cov = noise_covariance(c, generator, std, correlation, positions=positions, std_spread=std_spread)
    else:
        cov = torch.as_tensor(covariance).to(torch.complex128).cpu()
        if tuple(cov.shape) != (c, c):
            raise ValueError(f"covariance must be ({c}, {c}), got {tuple(cov.shape)}")
    chol, info = torch.linalg.cholesky_ex(cov)
    if int(info) != 0:
        raise ValueError("the noise covariance is not Hermitian positive definite")
    g = generator
    lead, (h, w) = shape[:-2], shape[-2:]
    z = torch.randn((*lead, c, h, w, 2), generator=g, device=g.device, dtype=torch.float32) / math.sqrt(2)
    z = torch.view_as_complex(z)
    noise = torch.einsum("ij,...jhw->...ihw", chol.to(device=g.device, dtype=torch.complex64), z)
    return noise, cov


# ------------------------------------------------------------------------------ oversampling
def oversample_readout(kspace: torch.Tensor | np.ndarray, factor: float = 2) -> torch.Tensor | np.ndarray:
    """K-space with readout oversampling, as fastMRI's multi-coil files store it.

    The image of ``kspace`` (centred orthonormal inverse FFT along the readout, the rows, dim
    ``-2``) is zero-padded about its centre to ``round(factor * H)`` rows (a field of view
    ``factor`` times longer, empty outside the object's) and transformed back; the phase-encode
    axis (columns) is untouched. Cropping the central ``H`` rows of the image undoes it:
    ``crop_coil_kspace(oversample_readout(k), rows=H, size=H)`` is ``k`` for square ``H x H``
    k-space (:func:`mri_n2n.data.multicoil.crop_coil_kspace`, which the loaders apply).

    Args:
        kspace: complex ``(..., H, W)``, numpy or torch (centred k-space, DC at ``(H//2, W//2)``).
        factor: oversampling factor ``>= 1`` along the readout (fastMRI: 2).

    Returns:
        ``(..., round(factor * H), W)`` of the input's kind and complex dtype.
    """
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    was_numpy = isinstance(kspace, np.ndarray)
    k = torch.from_numpy(np.asarray(kspace)) if was_numpy else kspace
    if not k.is_complex():
        k = k.to(torch.complex64 if k.dtype != torch.float64 else torch.complex128)
    if k.ndim < 2:
        raise ValueError(f"k-space must be (..., H, W), got shape {tuple(k.shape)}")
    h = k.shape[-2]
    rows = int(round(factor * h))
    img = torch.fft.fftshift(torch.fft.ifft(torch.fft.ifftshift(k, dim=-2), dim=-2, norm="ortho"), dim=-2)
    pad = (rows - h) // 2
    img = F.pad(img.transpose(-2, -1), (pad, rows - h - pad)).transpose(-2, -1)
    out = torch.fft.fftshift(torch.fft.fft(torch.fft.ifftshift(img, dim=-2), dim=-2, norm="ortho"), dim=-2)
    return out.numpy() if was_numpy else out
