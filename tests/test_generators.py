"""The generators of training data for real acquisitions (mri_n2n.data.generators): a smooth
phase that keeps the magnitude, coil arrays that cover the object, noise with the covariance it
reports, readout oversampling that the loaders undo, and per-item line laws whose masks keep
each line as often as the law says."""

from __future__ import annotations

import math

import pytest
import torch

from mri_n2n.data.generators import (
    PhaseParams,
    random_phase,
    support_edges,
    with_random_phase,
)

torch.set_num_threads(1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ellipse(n: int, b: int = 1, ry: float = 0.4, rx: float = 0.33) -> torch.Tensor:
    """``(b, 1, n, n)`` magnitude images: a textured ellipse on air."""
    y, x = torch.meshgrid(torch.arange(n) - n // 2, torch.arange(n) - n // 2, indexing="ij")
    inside = ((y / (ry * n)) ** 2 + (x / (rx * n)) ** 2) <= 1
    tex = 0.7 + 0.3 * torch.cos(x / 3.0) * torch.sin(y / 5.0)
    return (inside * tex).float().expand(b, 1, n, n).clone()


# ----------------------------------------------------------------------------------- phase
def test_phase_is_deterministic_per_seed():
    mag = _ellipse(48, b=3)
    a = random_phase((3, 48, 48), _gen(7), magnitude=mag)
    b = random_phase((3, 48, 48), _gen(7), magnitude=mag)
    c = random_phase((3, 48, 48), _gen(8), magnitude=mag)
    assert a.shape == (3, 48, 48) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a[0], a[1])  # each item its own draw


@pytest.mark.parametrize("n", [64, 128])
def test_phase_is_smooth_and_spans_a_few_radians(n):
    """Neighbouring pixels differ by well under pi (the model adds no wrap of its own) and on
    average by a few hundredths of a radian, while the phase spans radians over the object."""
    b = 16
    mag = _ellipse(n, b=b)
    phi = random_phase((b, n, n), _gen(n), magnitude=mag)
    assert torch.isfinite(phi).all()
    dy = (phi[:, 1:] - phi[:, :-1]).abs()
    dx = (phi[..., 1:] - phi[..., :-1]).abs()
    assert max(dy.max(), dx.max()) < 1.0
    assert dx.mean() < 3.0 / n
    on = mag[:, 0] > 0
    spans = torch.stack([p[o].max() - p[o].min() for p, o in zip(phi, on)])
    assert 1.0 < spans.median() < 2 * math.pi


def test_complex_image_keeps_the_magnitude():
    mag = _ellipse(40, b=2) * 3.0
    z = with_random_phase(mag, _gen(0))
    assert z.shape == (2, 1, 40, 40) and z.dtype == torch.complex64
    torch.testing.assert_close(z.abs(), mag, atol=1e-5, rtol=1e-6)
    ch = with_random_phase(mag, _gen(0), channels=True)  # smooth_phase's two-channel layout
    assert ch.shape == (2, 2, 40, 40) and ch.dtype == mag.dtype
    torch.testing.assert_close(torch.complex(ch[:, 0:1], ch[:, 1:2]), z)
    with pytest.raises(ValueError):
        with_random_phase(mag[:, 0], _gen(0))


def test_bumps_sit_on_the_boundary_with_air_and_flows_inside():
    n, b = 96, 12
    mag = _ellipse(n, b=b)
    support, edges = support_edges(mag)
    assert edges[support.logical_not() & (edges > 0)].numel() > 0  # the blurred edge straddles it
    flat = {"constant": 0.0, "shift": 0.0, "quadratic": 0.0}
    bumps = PhaseParams(**flat, bumps=(1, 1), bump_width=(0.03, 0.03), flows=(0, 0))
    phi = random_phase((b, n, n), _gen(3), bumps, magnitude=mag)
    # the distance of each bump's peak from the ellipse's boundary, in pixels
    y, x = torch.meshgrid(torch.arange(n) - n // 2, torch.arange(n) - n // 2, indexing="ij")
    rho = torch.sqrt((y / (0.4 * n)) ** 2 + (x / (0.33 * n)) ** 2)
    peak = phi.abs().flatten(1).argmax(1)
    dist = (rho.flatten()[peak] - 1).abs() * 0.33 * n
    assert (dist < 0.08 * n).all() and dist.mean() < 0.04 * n, dist  # (the ellipse's radii: 0.33 n, 0.4 n)
    flows = PhaseParams(**flat, bumps=(0, 0), flows=(1, 1))
    phi = random_phase((b, n, n), _gen(4), flows, magnitude=mag)
    peak = phi.abs().flatten(1).argmax(1)
    assert support.flatten(1).gather(1, peak[:, None]).all()
    # without an image: centred, no error
    assert random_phase((2, 32, 32), _gen(5)).shape == (2, 32, 32)
