"""The generators of training data for real acquisitions (mri_n2n.data.generators): a smooth
phase that keeps the magnitude, coil arrays that cover the object, noise with the covariance it
reports, readout oversampling that the loaders undo, and per-item line laws whose masks keep
each line as often as the law says."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mri_n2n.coils import birdcage_maps, rss
from mri_n2n.data.generators import (
    LINE_LAW_FAMILIES,
    CoilArrayParams,
    PhaseParams,
    coil_images,
    correlated_noise,
    draw_line_law,
    draw_line_laws,
    element_maps,
    noise_covariance,
    oversample_readout,
    random_coil_array,
    random_coil_maps,
    random_phase,
    sample_masks,
    support_edges,
    with_random_phase,
)
from mri_n2n.data.multicoil import crop_coil_kspace
from mri_n2n.masks import family_from_description, is_line_family

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


# ----------------------------------------------------------------------------------- coils
@pytest.mark.parametrize("n_coils", [2, 8, 32])
def test_coil_maps_cover_the_object_smoothly(n_coils):
    n = 128
    support = _ellipse(n)[0, 0] > 0
    maps = random_coil_maps((n, n), n_coils, _gen(n_coils), support=support)
    assert maps.shape == (n_coils, n, n) and maps.dtype == torch.complex64
    assert torch.isfinite(maps).all()
    r = rss(maps, dim=0)
    assert r[support].max() == pytest.approx(1.0, abs=1e-5)  # the scale, not sum |S|^2 = 1
    assert r[support].min() > 0.01
    assert r[support].min() < 0.9  # true sensitivities: not normalised
    inner = support.clone()  # away from the boundary: the one-pixel steps of every map are small
    inner[1:-1] &= support[2:] & support[:-2]
    inner[:, 1:-1] &= support[:, 2:] & support[:, :-2]
    step_y = (maps[:, 1:] - maps[:, :-1]).abs().amax(0)[inner[1:]]
    step_x = (maps[..., 1:] - maps[..., :-1]).abs().amax(0)[inner[:, 1:]]
    assert max(step_y.max(), step_x.max()) < 0.2


def test_coil_array_is_seeded_and_draws_its_size():
    a = random_coil_array((48, 48), None, _gen(1))
    b = random_coil_array((48, 48), None, _gen(1))
    assert torch.equal(a.maps, b.maps)
    assert 2 <= a.n_coils <= 32
    sizes = {
        random_coil_array((16, 16), None, _gen(s), CoilArrayParams(n_coils=(3, 5))).n_coils for s in range(12)
    }
    assert sizes == {3, 4, 5}
    json.dumps(a.describe())
    assert not torch.equal(random_coil_maps((48, 48), 4, _gen(2)), random_coil_maps((48, 48), 4, _gen(3)))


def test_loop_field_is_biot_savart():
    """The elliptic-integral field equals the Biot-Savart sum over a finely discretised loop."""
    n = 24
    centre = np.array([0.3, 1.3, 0.2])
    axis = np.array([0.2, -1.0, 0.1])
    axis /= np.linalg.norm(axis)
    radius = 0.35
    got = element_maps((n, n), centre[None], axes=axis[None], radii=radius)[0].numpy()
    # dB ~ dl x r / |r|^3 over 4000 segments (mu0 I / 4 pi); the closed form is in mu0 I / 2 pi
    e1 = np.cross(axis, [0.0, 0.0, 1.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    t = np.linspace(0, 2 * np.pi, 4000, endpoint=False)
    pts = centre + radius * (np.cos(t)[:, None] * e1 + np.sin(t)[:, None] * e2)
    dl = radius * (-np.sin(t)[:, None] * e1 + np.cos(t)[:, None] * e2) * (2 * np.pi / len(t))
    g = (np.arange(n) - n / 2) / (n / 2)
    P = np.stack([*np.meshgrid(g, g, indexing="xy"), np.zeros((n, n))], axis=-1)  # (y, x, 3) of (x, y, 0)
    r = P[:, :, None, :] - pts
    field = (np.cross(dl, r) / (np.linalg.norm(r, axis=-1, keepdims=True) ** 3)).sum(2) / 2
    want = field[..., 0] + 1j * field[..., 1]
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())


def test_wire_elements_are_birdcage_maps():
    """On a regular ring, wires are :func:`mri_n2n.coils.birdcage_maps` up to one phase per coil."""
    n, c, r = 40, 6, 1.5
    theta = 2 * np.pi * np.arange(c) / c
    centres = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    ours = element_maps((n, n), centres, element="wire").to(torch.complex128)
    ref = birdcage_maps((n, n), c, r, normalize=False, dtype=torch.complex128)
    ratio = ref / ours
    torch.testing.assert_close(ratio, ratio[:, :1, :1].expand_as(ratio), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        ratio[:, 0, 0], torch.polar(torch.ones(c, dtype=torch.float64), torch.from_numpy(-theta - np.pi / 2))
    )


def test_coarse_grid_is_within_two_percent():
    n = 160
    support = _ellipse(n)[0, 0] > 0
    for seed, c in [(0, 4), (1, 12)]:
        fine = random_coil_array((n, n), c, _gen(seed), support=support, grid=None).maps
        coarse = random_coil_array((n, n), c, _gen(seed), support=support, grid=80).maps
        assert (coarse - fine).abs()[:, support].max() < 0.02


def test_coil_images():
    maps = random_coil_maps((16, 16), 3, _gen(0))
    x = torch.rand(2, 1, 16, 16)
    out = coil_images(x, maps)
    assert out.shape == (2, 3, 16, 16)
    torch.testing.assert_close(out[1, 2], maps[2] * x[1, 0])
    assert coil_images(x[0, 0], maps).shape == (3, 16, 16)


# ----------------------------------------------------------------------------------- noise
def test_noise_covariance_is_hermitian_positive_definite_and_decays():
    c = 12
    cov = noise_covariance(c, _gen(0), std=0.5, correlation=0.4)
    assert cov.shape == (c, c) and cov.dtype == torch.complex128
    torch.testing.assert_close(cov, cov.conj().T, rtol=0, atol=0)
    assert torch.linalg.eigvalsh(cov).min() > 0
    std = cov.diagonal().real.sqrt()
    assert ((std > 0.5 * 0.8 - 1e-9) & (std < 0.5 * 1.2 + 1e-9)).all()
    corr = (cov / (std[:, None] * std[None, :])).abs()
    idx = torch.arange(c)
    ring = torch.minimum((idx[:, None] - idx).abs(), c - (idx[:, None] - idx).abs())
    assert corr[ring == 1].mean() > 2 * corr[ring >= 3].mean()  # coupling falls with distance
    assert 0.1 < corr[ring == 1].mean() < 0.4


def test_noise_has_its_covariance():
    """The sample covariance of 16384 draws per coil matches the law's within 4.5 standard
    errors, entry by entry (a complex entry's error has variance Sigma_ii Sigma_jj / N)."""
    c = 8
    pos = random_coil_array((32, 32), c, _gen(1)).centres
    noise, cov = correlated_noise((4, 64, 64), c, _gen(2), std=2.0, correlation=0.5, positions=pos)
    assert noise.shape == (4, c, 64, 64) and noise.dtype == torch.complex64
    flat = noise.transpose(0, 1).reshape(c, -1).to(torch.complex128)
    n = flat.shape[1]
    emp = flat @ flat.conj().T / n
    d = cov.diagonal().real
    se = torch.sqrt(d[:, None] * d[None, :] / n)
    assert ((emp - cov).abs() < 4.5 * se).all()
    assert noise.mean().abs() < 5 * float(d.mean().sqrt()) / math.sqrt(noise.numel())
    # a given covariance is used as it is; a singular one is refused
    again, same = correlated_noise((16, 16), c, _gen(3), covariance=cov)
    assert torch.equal(same, cov) and again.shape == (c, 16, 16)
    with pytest.raises(ValueError):
        correlated_noise((8, 8), 2, _gen(0), covariance=torch.ones(2, 2))


# ----------------------------------------------------------------------------- oversampling
@pytest.mark.parametrize("n", [48, 37])
def test_readout_oversampling_round_trips_through_the_loader_crop(n):
    k = torch.randn(3, n, n, dtype=torch.complex64, generator=_gen(n))
    over = oversample_readout(k)
    assert over.shape == (3, 2 * n, n)
    torch.testing.assert_close(over.abs().pow(2).sum(), k.abs().pow(2).sum(), rtol=1e-5, atol=0)  # Parseval
    img = torch.fft.fftshift(torch.fft.ifft(torch.fft.ifftshift(over, dim=-2), dim=-2, norm="ortho"), dim=-2)
    lo = (2 * n - n) // 2
    assert img[:, :lo].abs().max() < 1e-5 and img[:, lo + n :].abs().max() < 1e-5  # the empty FOV
    back = crop_coil_kspace(over.numpy(), n, n)
    np.testing.assert_allclose(back, k.numpy(), rtol=0, atol=1e-5 * float(k.abs().max()))
    as_np = oversample_readout(k.numpy())
    assert isinstance(as_np, np.ndarray) and as_np.dtype == np.complex64
    np.testing.assert_allclose(as_np, over.numpy(), atol=1e-6)


# ----------------------------------------------------------------------------------- laws
def test_line_laws_stay_in_their_ranges():
    g = _gen(0)
    seen = set()
    for _ in range(200):
        fam, desc = draw_line_law(g, (40, 100), accelerations=(2, 8), center_fractions=(0.04, 0.12))
        seen.add(fam.name)
        json.dumps(desc)
        assert family_from_description(desc) == fam
        if is_line_family(fam.name):
            assert fam.name in LINE_LAW_FAMILIES
            assert 2 <= desc["acceleration"] <= 8
            assert 0.04 <= desc["center_fraction"] <= 0.12
            if fam.name == "lines_lattice":
                assert float(desc["acceleration"]).is_integer()
            assert fam.fraction == pytest.approx(1 / desc["acceleration"], abs=0.1)
        else:
            assert 1 / 8 - 1e-9 <= desc["fraction"] <= 1 / 2 + 1e-9
    assert set(LINE_LAW_FAMILIES) <= seen and len(seen) > len(LINE_LAW_FAMILIES)  # some 2-D
    assert draw_line_law(_gen(5), (40, 100)) == draw_line_law(_gen(5), (40, 100))


def test_two_d_share():
    g = _gen(1)
    names = [draw_line_law(g, (24, 24), two_d_share=0.3).family.name for _ in range(400)]
    share = sum(not is_line_family(n) for n in names) / len(names)
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 400)
    assert all(is_line_family(draw_line_law(g, (24, 24), two_d_share=0).family.name) for _ in range(30))
    assert not any(is_line_family(draw_line_law(g, (24, 24), two_d_share=1).family.name) for _ in range(10))
    with pytest.raises(ValueError, match="not a 2-D"):
        draw_line_law(g, (24, 24), two_d_families=("lines_random",))
    with pytest.raises(ValueError, match="unknown mask family"):
        draw_line_law(g, (24, 24), families=("lines_nope",))
    with pytest.raises(ValueError, match="no line outside"):
        draw_line_law(g, (24, 12), accelerations=(2, 8), center_fractions=(0.1, 0.2))


@pytest.mark.parametrize("family", [*LINE_LAW_FAMILIES, "gaussian"])
def test_drawn_law_keeps_bins_at_its_keep_probability(family):
    """Over 3000 masks, every bin's empirical keep rate is within 4 standard errors of the
    drawn family's keep_probability (exactly 0 or 1 where that is 0 or 1)."""
    shape = (8, 40) if family != "gaussian" else (16, 16)
    kw = (
        {"families": (family,), "two_d_share": 0.0}
        if family != "gaussian"
        else {"two_d_families": (family,), "two_d_share": 1.0}
    )
    for seed in range(2):
        fam, _ = draw_line_law(_gen(seed), shape, **kw)
        assert fam.name == family
        n = 3000
        rate = fam.sample(n, generator=_gen(100 + seed)).double().mean(0)
        p = fam.keep_probability().double()
        se = torch.sqrt(p * (1 - p) / n)
        assert ((rate - p).abs() <= 4 * se + 1e-12).all()


def test_sample_masks_pairs_share_each_items_law():
    laws = draw_line_laws(_gen(0), 5, (12, 32), two_d_share=0.0)
    masks, keep = sample_masks(laws, _gen(1))
    assert masks.shape == (5, 2, 12, 32) and masks.dtype == torch.bool
    assert keep.shape == (5, 12, 32) and keep.dtype == torch.float32
    for i, law in enumerate(laws):
        torch.testing.assert_close(keep[i], law.family.keep_probability())
        assert (masks[i][:, :, keep[i][0] == 1]).all()  # the fully sampled centre, in both masks
        assert not (masks[i][:, :, keep[i][0] == 0]).any()


def test_figure_cli_writes_a_png(tmp_path):
    from mri_n2n.data.generators.figure import main

    out = tmp_path / "gen.png"
    assert main(["--out", str(out), "--size", "48", "--examples", "2"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
