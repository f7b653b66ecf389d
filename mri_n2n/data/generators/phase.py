"""A smooth random phase model for turning magnitude images into complex MR images.

The phase of a real complex MR image is smooth almost everywhere and has a few recognisable
parts; :func:`random_phase` draws each of them, batched and seeded by an explicit
:class:`torch.Generator`:

``phi = c + 2 pi (dx u_x + dy u_y) + q_xx (2u)^2 + q_yy (2v)^2 + q_xy (2u)(2v) + bumps + flows``

- **constant** ``c``, uniform in ``[-constant, constant]``: the receiver's reference phase;
- **linear ramps** ``2 pi (dx x / W + dy y / H)``: the ramp a k-space shift of ``(dy, dx)``
  samples makes (an echo off the centre of the readout window, a gradient delay), ``dx, dy``
  uniform in ``[-shift, shift]`` samples; ``shift = 0.5`` gives up to ``+-pi/2`` at the edges;
- **quadratic** terms, each coefficient uniform in ``[-quadratic, quadratic]`` radians at the
  edge of the field of view: the slowly varying part of the B0 field and of the coil phase;
- **off-resonance bumps**: Gaussian bumps of amplitude uniform in
  ``[-bump_amplitude, bump_amplitude]`` (up to ``pi``) and width ``bump_width`` (fractions of the
  field of view), centred near the object's boundary with air, where susceptibility differences
  bend B0 (sinuses, ear canals, bowel gas): centres are drawn with probability proportional to
  the gradient magnitude of the object's smoothed support (``magnitude > support_threshold``
  times the item's maximum); without an image, uniformly in the central disc;
- **flow patches**: small elongated Gaussian regions (length ``flow_length``, width
  ``flow_width``, random orientation) inside the object with a phase offset uniform in
  ``[-flow_amplitude, flow_amplitude]``, as moving spins in vessels acquire.

Lengths are fractions of the field of view's larger side (square pixels); no width is ever
below ``min_width_px`` pixels, so every term is smooth on the pixel grid: with the defaults the
largest difference between neighbouring pixels stays well below ``pi`` (tested), and the model
introduces no phase wrap of its own; ``exp(i phi)`` wraps it like a scanner does.
:func:`with_random_phase` multiplies magnitude images ``(B, 1, H, W)`` by ``exp(i phi)``.

This model replaces :func:`mri_n2n.corruptions.mri.smooth_phase` (a random 4 x 4 bicubic field
plus a constant) for data that should look like real acquisitions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["PhaseParams", "random_phase", "with_random_phase", "support_edges"]


@dataclass(frozen=True)
class PhaseParams:
    """Ranges of the random phase model (module docstring); every draw is uniform in its range.

    Attributes:
        constant: the constant term lies in ``[-constant, constant]`` radians (``pi``: any
            reference phase).
        shift: the linear ramps are those of a k-space shift of up to ``shift`` samples along
            each axis (``0.5``: at most ``pi/2`` at the edges of the field of view).
        quadratic: each of the three quadratic coefficients lies in ``[-quadratic, quadratic]``
            radians at the edge of the field of view (``1.0``).
        bumps: ``(min, max)`` number of off-resonance bumps per image (``(0, 4)``).
        bump_amplitude: bump heights lie in ``[-bump_amplitude, bump_amplitude]`` radians (``pi``).
        bump_width: ``(min, max)`` standard deviation of a bump, fraction of the field of view
            (``(0.03, 0.10)``).
        flows: ``(min, max)`` number of flow patches per image (``(0, 3)``).
        flow_amplitude: flow phase offsets lie in ``[-flow_amplitude, flow_amplitude]`` (``pi/2``).
        flow_length: ``(min, max)`` standard deviation of a flow patch along its axis, fraction
            of the field of view (``(0.02, 0.08)``).
        flow_width: ``(min, max)`` standard deviation across its axis (``(0.005, 0.015)``).
        min_width_px: no bump or flow patch is narrower than this many pixels (``2.0``), so the
            phase stays smooth on small grids.
        support_threshold: the object is where the magnitude exceeds this fraction of the
            item's maximum (``0.1``).
        edge_smoothing: standard deviation of the blur of the support whose gradient places the
            bumps, fraction of the field of view (``0.02``).
    """

    constant: float = math.pi
    shift: float = 0.5
    quadratic: float = 1.0
    bumps: tuple[int, int] = (0, 4)
    bump_amplitude: float = math.pi
    bump_width: tuple[float, float] = (0.03, 0.10)
    flows: tuple[int, int] = (0, 3)
    flow_amplitude: float = math.pi / 2
    flow_length: tuple[float, float] = (0.02, 0.08)
    flow_width: tuple[float, float] = (0.005, 0.015)
    min_width_px: float = 2.0
    support_threshold: float = 0.1
    edge_smoothing: float = 0.02

    def __post_init__(self) -> None:
        for name in ("bumps", "flows", "bump_width", "flow_length", "flow_width"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(
                    f"PhaseParams.{name} must be (min, max) with 0 <= min <= max, got {(lo, hi)}"
                )
        for name in ("constant", "shift", "quadratic", "bump_amplitude", "flow_amplitude", "min_width_px"):
            if getattr(self, name) < 0:
                raise ValueError(f"PhaseParams.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.support_threshold < 1:
            raise ValueError(
                f"PhaseParams.support_threshold must lie in [0, 1), got {self.support_threshold}"
            )

    def describe(self) -> dict[str, Any]:
        """The parameters as a JSON-able dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _uniform(n: tuple[int, ...], lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=g.device, dtype=torch.float32)


def _counts(b: int, rng: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    """``(b,)`` integer counts uniform in ``[lo, hi]``."""
    return torch.randint(int(rng[0]), int(rng[1]) + 1, (b,), generator=g, device=g.device)


def _blur(x: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, 1, H, W)`` with zero padding (air outside the FOV)."""
    if sigma_px <= 0:
        return x
    r = max(1, int(math.ceil(3 * sigma_px)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma_px) ** 2)
    k = k / k.sum()
    x = F.conv2d(x, k.view(1, 1, 1, -1), padding=(0, r))
    return F.conv2d(x, k.view(1, 1, -1, 1), padding=(r, 0))


def support_edges(
    magnitude: torch.Tensor, *, threshold: float = 0.1, smoothing: float = 0.02
) -> tuple[torch.Tensor, torch.Tensor]:
    """The object's support and the strength of its boundary with air.

    Args:
        magnitude: real images ``(B, 1, H, W)`` or ``(B, H, W)``.
        threshold: the support is ``magnitude > threshold * max`` (per item).
        smoothing: standard deviation of the blur applied to the support before its gradient
            is taken, fraction of the larger side.

    Returns:
        ``(support, edges)``, each ``(B, H, W)``: the bool support and the gradient magnitude of
        the blurred support (non-negative, largest on the boundary, zero far from it).
    """
    m = magnitude.abs().float()
    if m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4 or m.shape[1] != 1:
        raise ValueError(f"magnitude must be (B, 1, H, W) or (B, H, W), got {tuple(magnitude.shape)}")
    peak = m.amax(dim=(-2, -1), keepdim=True)
    support = m > threshold * peak.clamp_min(torch.finfo(m.dtype).tiny)
    smooth = _blur(support.float(), smoothing * max(m.shape[-2:]))
    gy = torch.zeros_like(smooth)
    gx = torch.zeros_like(smooth)
    gy[..., 1:-1, :] = 0.5 * (smooth[..., 2:, :] - smooth[..., :-2, :])
    gx[..., :, 1:-1] = 0.5 * (smooth[..., :, 2:] - smooth[..., :, :-2])
    return support[:, 0], torch.sqrt(gx**2 + gy**2)[:, 0]


def _coords(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Pixel coordinates relative to the centre ``(H // 2, W // 2)`` (``y (H, 1)``, ``x (1, W)``)
    and the length of the field of view's larger side in pixels."""
    y = (torch.arange(h, device=device, dtype=torch.float32) - h // 2)[:, None]
    x = (torch.arange(w, device=device, dtype=torch.float32) - w // 2)[None, :]
    return y, x, float(max(h, w))


def _centres(
    weights: torch.Tensor | None, b: int, k: int, h: int, w: int, g: torch.Generator
) -> torch.Tensor:
    """``(b, k, 2)`` pixel centres ``(y, x)`` relative to the image centre, drawn with probability
    proportional to ``weights (b, H, W)`` (uniform in the central disc where None or all zero)."""
    yy, xx = torch.meshgrid(
        torch.arange(h, device=g.device, dtype=torch.float32) - h // 2,
        torch.arange(w, device=g.device, dtype=torch.float32) - w // 2,
        indexing="ij",
    )
    disc = ((yy / (h / 2)) ** 2 + (xx / (w / 2)) ** 2 <= 0.5**2).float().flatten()
    p = disc.expand(b, -1).clone()
    if weights is not None:
        wts = weights.to(g.device, torch.float32).reshape(b, -1)
        ok = wts.sum(dim=1) > 0
        p = torch.where(ok[:, None], wts, p)
    idx = torch.multinomial(p, k, replacement=True, generator=g)  # (b, k)
    jitter = torch.rand((b, k, 2), generator=g, device=g.device) - 0.5  # sub-pixel
    return torch.stack([yy.flatten()[idx], xx.flatten()[idx]], dim=-1) + jitter


def random_phase(
    shape: tuple[int, int, int],
    generator: torch.Generator,
    params: PhaseParams | None = None,
    *,
    magnitude: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw smooth random phase maps (module docstring), one per batch item.

    Args:
        shape: ``(B, H, W)``.
        generator: the source of every draw; the maps are computed on its device.
        params: the ranges (default :class:`PhaseParams`).
        magnitude: the images ``(B, 1, H, W)`` or ``(B, H, W)`` the phase is for: bumps are placed
            on their boundary with air and flow patches inside them. Without it, both are placed
            uniformly in the central disc of half the field of view.

    Returns:
        float32 ``(B, H, W)`` phase in radians on the generator's device (not wrapped).

    Raises:
        ValueError: a bad shape, or a magnitude whose shape is not ``shape``.
    """
    p = params or PhaseParams()
    b, h, w = (int(s) for s in shape)
    if b < 1 or h < 1 or w < 1:
        raise ValueError(f"shape must be (B, H, W) with positive sizes, got {shape}")
    g = generator
    dev = g.device
    y, x, side = _coords(h, w, dev)
    # constant, linear (k-space shift), quadratic (in units of the half field of view)
    c = _uniform((b, 1, 1), -p.constant, p.constant, g)
    dy, dx = _uniform((2, b, 1, 1), -p.shift, p.shift, g)
    phi = c + 2 * math.pi * (dy * (y / h) + dx * (x / w))
    q = _uniform((3, b, 1, 1), -p.quadratic, p.quadratic, g)
    v, u = 2 * y / side, 2 * x / side
    phi = phi + q[0] * u**2 + q[1] * v**2 + q[2] * u * v

    support = edges = None
    if magnitude is not None:
        mag = magnitude if magnitude.ndim == 4 else magnitude[:, None]
        if tuple(mag.shape) != (b, 1, h, w):
            raise ValueError(f"magnitude has shape {tuple(magnitude.shape)}, expected ({b}, 1, {h}, {w})")
        support, edges = support_edges(mag.to(dev), threshold=p.support_threshold, smoothing=p.edge_smoothing)
    min_w = p.min_width_px / side

    # off-resonance bumps on the boundary with air
    kb = int(p.bumps[1])
    if kb > 0 and p.bump_amplitude > 0:
        active = torch.arange(kb, device=dev)[None] < _counts(b, p.bumps, g)[:, None]  # (b, kb)
        amp = _uniform((b, kb), -p.bump_amplitude, p.bump_amplitude, g) * active
        sigma = _uniform((b, kb), *p.bump_width, g).clamp_min(min_w) * side  # pixels
        ctr = _centres(edges, b, kb, h, w, g)
        gy = torch.exp(-0.5 * ((y.view(1, 1, h) - ctr[..., 0:1]) / sigma[..., None]) ** 2)  # (b, kb, h)
        gx = torch.exp(-0.5 * ((x.view(1, 1, w) - ctr[..., 1:2]) / sigma[..., None]) ** 2)  # (b, kb, w)
        phi = phi + torch.einsum("bk,bkh,bkw->bhw", amp, gy, gx)

    # flow patches inside the object
    kf = int(p.flows[1])
    if kf > 0 and p.flow_amplitude > 0:
        active = torch.arange(kf, device=dev)[None] < _counts(b, p.flows, g)[:, None]
        amp = _uniform((b, kf), -p.flow_amplitude, p.flow_amplitude, g) * active
        length = _uniform((b, kf), *p.flow_length, g).clamp_min(min_w) * side
        width = _uniform((b, kf), *p.flow_width, g).clamp_min(min_w) * side
        angle = _uniform((b, kf), 0.0, math.pi, g)
        inside = None if support is None else support.float()
        ctr = _centres(inside, b, kf, h, w, g)
        ry = y.view(1, 1, h, 1) - ctr[..., 0, None, None]  # (b, kf, h, 1)
        rx = x.view(1, 1, 1, w) - ctr[..., 1, None, None]  # (b, kf, 1, w)
        cos, sin = torch.cos(angle)[..., None, None], torch.sin(angle)[..., None, None]
        along = rx * cos + ry * sin
        across = -rx * sin + ry * cos
        arg = (along / length[..., None, None]) ** 2 + (across / width[..., None, None]) ** 2
        phi = phi + (amp[..., None, None] * torch.exp(-0.5 * arg)).sum(dim=1)
    return phi


def with_random_phase(
    magnitude: torch.Tensor,
    generator: torch.Generator,
    params: PhaseParams | None = None,
    *,
    channels: bool = False,
) -> torch.Tensor:
    """Complex images from magnitudes ``(B, 1, H, W)``: each times ``exp(i phi)`` with ``phi``
    from :func:`random_phase` placed on that image's own boundary and support.

    Args:
        magnitude: real, non-negative ``(B, 1, H, W)``.
        generator: the source of every draw.
        params: the phase model's ranges (default :class:`PhaseParams`).
        channels: return real/imaginary channels ``(B, 2, H, W)`` in ``magnitude``'s dtype (the
            layout of :func:`mri_n2n.corruptions.mri.smooth_phase`, which this replaces) instead
            of a complex ``(B, 1, H, W)``.

    Returns:
        Complex ``(B, 1, H, W)`` (complex64 for float32 input) on ``magnitude``'s device whose
        magnitude is the input, or the two-channel layout with ``channels``.

    Raises:
        ValueError: ``magnitude`` is not ``(B, 1, H, W)`` real.
    """
    if magnitude.ndim != 4 or magnitude.shape[1] != 1 or magnitude.is_complex():
        raise ValueError(
            f"with_random_phase takes real magnitudes (B, 1, H, W), got {tuple(magnitude.shape)}"
        )
    b, _, h, w = magnitude.shape
    phi = random_phase((b, h, w), generator, params, magnitude=magnitude).to(magnitude.device)[:, None]
    mag = magnitude if magnitude.dtype == torch.float64 else magnitude.float()
    phi = phi.to(mag.dtype)
    if channels:
        return torch.cat([mag * torch.cos(phi), mag * torch.sin(phi)], dim=1).to(magnitude.dtype)
    return torch.polar(mag, phi)
