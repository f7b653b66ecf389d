"""Multi-coil SENSE operator, data consistency and coil-sensitivity estimation (mri_n2n.coils)."""

import ast
import importlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mri_n2n.coils import (
    SenseOperator,
    birdcage_maps,
    compress_coils,
    espirit_maps,
    estimate_maps,
    find_calibration,
    normalize_maps,
    rss,
    walsh_maps,
)
from mri_n2n.fft import fft2c, ifft2c
from mri_n2n.physics import Acquisition

C128 = torch.complex128


def _cplx(*shape, g, dtype=torch.float64):
    re, im = (torch.randn(*shape, generator=g, dtype=dtype) for _ in range(2))
    return torch.complex(re, im)


def _random_maps(b, c, h, w, g):
    """Smooth-ish random complex maps (low-pass random coil images), normalised to RSS 1."""
    k = torch.zeros(b, c, h, w, dtype=C128)
    k[..., h // 2 - 2 : h // 2 + 3, w // 2 - 2 : w // 2 + 3] = _cplx(b, c, 5, 5, g=g)
    return normalize_maps(ifft2c(k) + 0.3)


def _lines_mask(h, w, accel=4, center=24):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[:, ::accel] = True
    m[:, w // 2 - center // 2 : w // 2 - center // 2 + center] = True
    return m


def _phantom(n):
    """Soft-edged ellipses (edges ~1 pixel wide at n=96) times a slow phase ramp, complex ``(n, n)``."""
    yy, xx = torch.meshgrid(*(torch.linspace(-1, 1, n, dtype=torch.float64),) * 2, indexing="ij")
    img = torch.zeros(n, n, dtype=torch.float64)
    ellipses = [
        (0, 0, 0.7, 0.85, 1.0), (0.2, 0.1, 0.2, 0.3, 0.5), (-0.25, -0.2, 0.15, 0.2, -0.4),
        (-0.3, 0.4, 0.06, 0.06, 0.6), (0.35, -0.45, 0.05, 0.1, -0.5), (0.0, -0.6, 0.2, 0.04, 0.5),
    ]  # fmt: skip
    for cx, cy, a, b, v in ellipses:
        img = img + v * torch.sigmoid(50 * (1 - ((xx - cx) / a) ** 2 - ((yy - cy) / b) ** 2))
    return img * torch.exp(1j * math.pi * 0.4 * (0.8 * xx + 0.3 * yy))


def _map_scores(est, true, support):
    """Per-pixel |normalised correlation| (mean, min) and the relative error after removing the
    best per-pixel phase, over ``support``."""
    inner = (est.conj() * true).sum(0)
    corr = inner.abs() / (rss(est, 0) * rss(true, 0)).clamp_min(1e-12)
    aligned = est * torch.exp(1j * torch.angle(inner))
    energy = lambda m: m.abs().pow(2).sum(0)[support].sum().sqrt()  # noqa: E731
    err = energy(aligned - true) / energy(true)
    return corr[support].mean().item(), corr[support].min().item(), err.item()


# --------------------------------------------------------------------------- the operator


@pytest.mark.parametrize("batched_maps", [False, True])
@pytest.mark.parametrize("batched_mask", [False, True])
def test_adjointness_and_normal(batched_maps, batched_mask):
    g = torch.Generator().manual_seed(1)
    b, c, h, w = 3, 4, 16, 12
    maps = _random_maps(b if batched_maps else 1, c, h, w, g)
    maps = maps if batched_maps else maps[0]
    mask = torch.rand(*((b,) if batched_mask else ()), h, w, generator=g) < 0.4
    op = Acquisition(mask, maps)
    x, y = _cplx(b, h, w, g=g), _cplx(b, c, h, w, g=g)
    ax = op.forward(x)
    assert ax.shape == (b, c, h, w) and op.adjoint(y).shape == (b, h, w)
    lhs = torch.vdot(ax.flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), op.adjoint(y).flatten())
    assert torch.allclose(lhs, rhs, rtol=1e-12, atol=1e-10)
    assert torch.allclose(op.normal(x), op.adjoint(op.forward(x)))
    for hh, ww in ((16, 12), (15, 12), (16, 11)):  # the even-size paths: 2-D masks and whole lines
        sub = (slice(None), slice(0, hh), slice(0, ww))
        for mk in (mask[..., :hh, :ww], (mask[..., :1, :ww] | torch.zeros(hh, ww, dtype=torch.bool))):
            o = Acquisition(mk, maps[..., :hh, :ww])
            assert torch.allclose(o.normal(x[sub]), o.adjoint(o.forward(x[sub])), atol=1e-10)
    # masked entries are zero and the adjoint ignores unmeasured data
    m = mask if batched_mask else mask.expand(b, h, w)
    assert ax.permute(1, 0, 2, 3)[:, ~m].abs().max() == 0
    assert torch.allclose(op.adjoint(y), op.adjoint(y * m[:, None]))


def test_adjointness_complex64():
    g = torch.Generator().manual_seed(2)
    maps = _random_maps(1, 8, 32, 32, g)[0].to(torch.complex64)
    op = Acquisition(torch.rand(2, 32, 32, generator=g) < 0.3, maps)
    x, y = _cplx(2, 32, 32, g=g).to(torch.complex64), _cplx(2, 8, 32, 32, g=g).to(torch.complex64)
    lhs = torch.vdot(op.forward(x).flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), op.adjoint(y).flatten())
    assert op.forward(x).dtype == torch.complex64
    assert abs(lhs - rhs) < 1e-5 * abs(lhs)


def test_sample_masks_every_coil():
    g = torch.Generator().manual_seed(4)
    mask = torch.rand(2, 16, 12, generator=g) < 0.3
    op = Acquisition(mask, _random_maps(2, 4, 16, 12, g))
    y = _cplx(2, 4, 16, 12, g=g)
    assert torch.equal(op.sample(y), torch.where(mask[:, None], y, torch.zeros_like(y)))
    x = _cplx(2, 16, 12, g=g)
    assert torch.equal(op.forward(x), op.sample(fft2c(op.expand(x))))
    assert torch.equal(op.coil_images(y), ifft2c(op.sample(y)))


def test_full_mask_and_normalised_maps_give_identity():
    g = torch.Generator().manual_seed(3)
    maps = birdcage_maps((20, 24), 6, dtype=C128)
    assert torch.allclose(rss(maps, 0), torch.ones(20, 24, dtype=torch.float64))
    op = Acquisition(torch.ones(20, 24, dtype=torch.bool), maps)
    x = _cplx(2, 20, 24, g=g)
    assert torch.allclose(op.normal(x), x, atol=1e-12)
    full = fft2c(op.expand(x))
    assert torch.allclose(op.combine(full), x, atol=1e-12)
    assert torch.allclose(op.zero_filled(full), x, atol=1e-12)
    # a real image is promoted to the maps' complex dtype
    assert op.forward(x.real).dtype == C128


def test_zero_filled_density_compensation():
    g = torch.Generator().manual_seed(4)
    maps = birdcage_maps((16, 16), 4, dtype=C128)
    x = _cplx(1, 16, 16, g=g)
    p = torch.full((16, 16), 0.25, dtype=torch.float64)
    p[6:10, 6:10] = 1.0
    n = 1500
    mask = torch.rand(n, 16, 16, generator=g, dtype=torch.float64) < p
    op = Acquisition(mask, maps)
    y = op.forward(x.expand(n, 16, 16))
    z = op.zero_filled(y, p)
    assert torch.allclose(op.zero_filled(y), op.adjoint(y))
    two = Acquisition(mask[:2], maps)
    assert torch.allclose(two.zero_filled(y[:2], p.expand(2, 16, 16)), z[:2])  # a (B, H, W) density
    err, single = (z.mean(0) - x[0]).norm() / x.norm(), (z[0] - x[0]).norm() / x.norm()
    assert err < 0.06 and err < single / 10  # unbiased over masks


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="maps must be"):
        Acquisition(torch.ones(8, 8, dtype=torch.bool), torch.ones(8, 8, dtype=C128))
    with pytest.raises(ValueError, match="differ in \\(H, W\\)"):
        Acquisition(torch.ones(8, 9, dtype=torch.bool), torch.ones(2, 8, 8, dtype=C128))


# --------------------------------------------------------------------------- data consistency


def test_project_single_coil_is_exact_and_idempotent():
    g = torch.Generator().manual_seed(5)
    maps = torch.exp(1j * _cplx(1, 16, 16, g=g).real)  # |S| = 1, arbitrary phase
    mask = torch.rand(2, 16, 16, generator=g) < 0.3
    op = Acquisition(mask, maps)
    y = op.forward(_cplx(2, 16, 16, g=g))
    x = _cplx(2, 16, 16, g=g)
    p = op.project(x, y)
    assert torch.allclose(op.forward(p), y, atol=1e-12)  # exact on measured entries
    assert torch.allclose(op.project(p, y), p, atol=1e-12)  # idempotent
    unmeasured = ~mask[:, None]
    assert torch.allclose(fft2c(op.expand(p))[unmeasured], fft2c(op.expand(x))[unmeasured], atol=1e-12)


def test_project_multicoil_replaces_per_coil_then_combines():
    """With normalised maps, per-coil replacement + SENSE-1 is exactly x + A^H (y - A x): exact per
    coil before combination, a fixed point at consistent images, never worse in data residual."""
    g = torch.Generator().manual_seed(6)
    maps = birdcage_maps((24, 24), 8, dtype=C128)
    mask = torch.rand(2, 24, 24, generator=g) < 0.35
    op = Acquisition(mask, maps)
    truth = _cplx(2, 24, 24, g=g)
    y = op.forward(truth)
    x = _cplx(2, 24, 24, g=g, dtype=torch.float64)
    p = op.project(x, y)
    # the intermediate per-coil k-space is y on measured entries, F S x elsewhere
    k = torch.where(mask[:, None], y, fft2c(op.expand(x)))
    assert torch.allclose(p, op.reduce(ifft2c(k)))
    assert torch.allclose(k[mask[:, None].expand_as(k)], y[mask[:, None].expand_as(y)])
    assert torch.allclose(p, x + op.adjoint(y - op.forward(x)), atol=1e-12)
    assert torch.allclose(op.project(truth, y), truth, atol=1e-12)  # consistent images are fixed
    res = [(op.forward(x) - y).norm()]
    for _ in range(5):
        x = op.project(x, y)
        res.append((op.forward(x) - y).norm())
    assert all(b <= a for a, b in zip(res, res[1:], strict=False)) and res[-1] < 0.5 * res[0]


def test_cg_dc_matches_a_dense_solve():
    g = torch.Generator().manual_seed(7)
    b, c, h, w = 2, 3, 6, 5
    maps = _random_maps(b, c, h, w, g)
    mask = torch.rand(b, h, w, generator=g) < 0.5
    op = Acquisition(mask, maps)
    x, y = _cplx(b, h, w, g=g), op.forward(_cplx(b, h, w, g=g))
    lam = torch.tensor([0.05, 2.0], dtype=torch.float64)
    z = op.cg_dc(x, y, lam, iters=h * w)
    for i in range(b):  # dense A^H A from the operator applied to the identity basis
        basis = torch.eye(h * w, dtype=C128).reshape(h * w, h, w)
        one = Acquisition(mask[i], maps[i])
        aha = one.normal(basis).reshape(h * w, h * w).T
        rhs = (one.adjoint(y[i : i + 1]) + lam[i] * x[i]).reshape(-1)
        ref = torch.linalg.solve(aha + lam[i] * torch.eye(h * w, dtype=C128), rhs)
        assert torch.allclose(z[i].reshape(-1), ref, atol=1e-8)


def test_cg_dc_limits():
    g = torch.Generator().manual_seed(8)
    maps = birdcage_maps((32, 32), 8, dtype=C128)
    truth, x = _cplx(2, 32, 32, g=g), _cplx(2, 32, 32, g=g)
    full = Acquisition(torch.ones(32, 32, dtype=torch.bool), maps)
    assert torch.allclose(full.cg_dc(x, full.forward(truth), 1e-8, iters=3), truth, atol=1e-6)  # SENSE
    op = Acquisition(_lines_mask(32, 32, accel=2, center=8), maps)
    y = op.forward(truth)
    assert torch.allclose(op.cg_dc(x, y, 1e8, iters=5), x, atol=1e-6)  # lam -> inf: the prior
    z = op.cg_dc(x, y, 1e-9, iters=60)  # lam -> 0: projection onto {A z = y}
    assert (op.forward(z) - y).norm() < 1e-6 * y.norm()
    assert (op.cg_dc(z, y, 1e-9, iters=60) - z).norm() < 1e-6 * z.norm()
    # tol stops early with a consistent answer; iters=0 is the identity
    assert (op.forward(op.cg_dc(x, y, 1e-9, iters=200, tol=1e-8)) - y).norm() < 1e-5 * y.norm()
    assert torch.equal(op.cg_dc(x, y, 1.0, iters=0), x)
    assert torch.allclose(op.sense(y[1], iters=5), op.sense(y, iters=5)[1])  # unbatched k-space
    with pytest.raises(ValueError, match="needs a batch"):
        op.cg_dc(x[0], y[0], 1.0)
    with pytest.raises(ValueError, match="lam must be"):
        op.cg_dc(x, y, -1.0)


def test_cg_dc_and_project_are_differentiable():
    g = torch.Generator().manual_seed(9)
    maps = birdcage_maps((16, 16), 4)
    op = Acquisition(torch.rand(1, 16, 16, generator=g) < 0.4, maps)
    y = op.forward(_cplx(1, 16, 16, g=g, dtype=torch.float32))
    x = torch.randn(1, 16, 16, generator=g, requires_grad=True)
    lam = torch.tensor(0.1, requires_grad=True)
    out = op.cg_dc(x, y, lam, iters=5)
    assert out.dtype == torch.complex64
    (out.abs().pow(2).sum() + op.project(x, y).abs().sum()).backward()
    for t in (x, lam):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


# --------------------------------------------------------------------------- helpers and maps


def test_rss_birdcage_and_normalize():
    maps = birdcage_maps((12, 10), 5, r=1.2, normalize=False, dtype=C128)
    assert maps.shape == (5, 12, 10)
    assert not torch.allclose(maps[0].abs(), maps[1].abs())
    assert torch.allclose(rss(normalize_maps(maps), 0), torch.ones(12, 10, dtype=torch.float64))
    assert np.allclose(rss(maps.numpy(), 0), rss(maps, 0).numpy())
    u = torch.zeros(2, 3, 4, 4, dtype=C128)
    u[..., 1:3, 1:3] = 1
    n = normalize_maps(u)
    assert torch.allclose(rss(n), (rss(u) > 0).double())
    with pytest.raises(ValueError, match="n_coils"):
        birdcage_maps((8, 8), 0)


def test_find_calibration():
    assert find_calibration(_lines_mask(40, 64, accel=4, center=10)) == (40, 10)
    m = torch.rand(48, 48, generator=torch.Generator().manual_seed(10)) < 0.2
    m[24 - 8 : 24 + 8, 24 - 7 : 24 + 7] = True
    assert find_calibration(m.numpy()) == (16, 14)
    k = torch.ones(2, 3, 48, 48, dtype=C128) * m  # multi-coil k-space, zero where not sampled
    assert find_calibration(k) == (16, 14)
    other = m.clone()
    other[:, 24 + 6 :] = False  # a batch: the block must be sampled in every item
    assert find_calibration(torch.stack([m, other])) == (16, 12)
    assert find_calibration(torch.stack([k[0], k[1] * other])) == (16, 12)
    m[24, 24] = False
    assert find_calibration(m) == (0, 0)
    with pytest.raises(ValueError, match="multi-coil k-space must be"):
        find_calibration(torch.ones(8, 8, dtype=C128))


def test_no_calibration_region_is_a_clear_error():
    k = torch.ones(4, 32, 32, dtype=C128) * _lines_mask(32, 32, accel=4, center=0)
    with pytest.raises(ValueError, match=r"no usable calibration region.* 32x1,") as err:
        estimate_maps(k)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="not fully sampled"):
        espirit_maps(k, calib=16)
    with pytest.raises(ValueError, match="method must be"):
        estimate_maps(k, method="sense")


@pytest.fixture(scope="module")
def scan():
    """8-coil birdcage scan of a smooth phantom, 96x96, 4x equispaced lines + 24 centre lines."""
    n = 96
    g = torch.Generator().manual_seed(11)
    truth = _phantom(n)
    maps = birdcage_maps((n, n), 8, dtype=C128)
    full = fft2c(maps * truth)
    full = full + 1e-5 * full.abs().max() * _cplx(*full.shape, g=g) / math.sqrt(2)
    mask = _lines_mask(n, n)
    support = truth.abs() > 0.1 * truth.abs().max()
    return {"truth": truth, "maps": maps, "y": full * mask, "mask": mask, "support": support}


@pytest.mark.parametrize("method", ["espirit", "walsh"])
def test_estimated_maps_match_birdcage_and_reconstruct(scan, method):
    est = estimate_maps(scan["y"], method)  # finds the 96x24 calibration region itself
    assert est.shape == scan["maps"].shape and est.dtype == C128
    on = rss(est, 0)
    assert torch.allclose(on[on > 0], torch.ones_like(on[on > 0]))  # normalised where nonzero
    mean_corr, min_corr, err = _map_scores(est, scan["maps"], scan["support"])
    assert mean_corr > 0.999 and min_corr > 0.98 and err < 0.05, (mean_corr, min_corr, err)
    assert torch.allclose(est[0][on > 0].imag, torch.zeros(1, dtype=torch.float64), atol=1e-12)  # phase ref
    # CG-SENSE with the estimated maps; the image is known up to the maps' phase convention
    rec = Acquisition(scan["mask"], est).sense(scan["y"][None], lam=1e-4, iters=30)[0]
    truth = scan["truth"]
    rel = (rec.abs() - truth.abs()).norm() / truth.norm()
    zf = (rss(ifft2c(scan["y"]), 0) - truth.abs()).norm() / truth.norm()
    assert rel < 0.03 and rel < zf / 4, (rel, zf)


@pytest.mark.parametrize("phase_ref", ["first", "virtual"])
def test_walsh_coarse_grid_matches_full_resolution(scan, phase_ref):
    """The default coarse-grid Walsh maps (eigenproblems on a 48 x 48 grid, interpolated) agree
    with the per-pixel full-resolution ones to 0.5 % (max over the object, |S| = 1 per pixel),
    0.1 % on average, with the same support and normalisation."""
    full = walsh_maps(scan["y"], calib=(48, 24), grid=None, phase_ref=phase_ref)
    coarse = walsh_maps(scan["y"], calib=(48, 24), phase_ref=phase_ref)
    assert coarse.shape == full.shape and coarse.dtype == full.dtype
    assert torch.equal(rss(coarse, 0) > 0, rss(full, 0) > 0)  # same support
    on = rss(coarse, 0) > 0
    assert torch.allclose(rss(coarse, 0)[on], torch.ones(1, dtype=torch.float64))
    err = rss(coarse - full, 0)[scan["support"]]
    assert err.max() < 5e-3 and err.mean() < 1e-3, (err.max(), err.mean())
    if phase_ref == "first":
        assert torch.allclose(coarse[0][on].imag, torch.zeros(1, dtype=torch.float64), atol=1e-12)
    # a finer grid gets closer; with grid = image size the only difference is the smoothing's
    # circular border
    fine = walsh_maps(scan["y"], calib=(48, 24), grid=96, phase_ref=phase_ref)
    assert rss(fine - full, 0)[scan["support"]].max() < err.max()


def test_espirit_coarse_grid_matches_full_resolution(scan):
    """ESPIRiT with ``grid`` (eigenproblems on a coarse grid, interpolated, refined by power
    iterations with the exact full-resolution matrices) agrees with the per-pixel eigenproblems
    on the object; the refinement is what makes it agree (one iteration of none is further off),
    and a finer grid gets closer."""
    kw = {"calib": (48, 24), "kernel": 4, "crop": 0.0}
    full = espirit_maps(scan["y"], **kw)
    coarse = espirit_maps(scan["y"], grid=24, **kw)
    assert coarse.shape == full.shape and coarse.dtype == full.dtype
    assert torch.allclose(rss(coarse, 0), torch.ones(1, dtype=torch.float64))  # crop 0: no support cut
    assert torch.allclose(coarse[0].imag, torch.zeros(1, dtype=torch.float64), atol=1e-12)  # phase ref
    err = rss(coarse - full, 0)[scan["support"]]
    assert err.max() < 1e-2 and err.mean() < 2e-3, (err.max(), err.mean())
    none = rss(espirit_maps(scan["y"], grid=24, power_iters=0, **kw) - full, 0)[scan["support"]]
    assert none.mean() > err.mean()
    fine = rss(espirit_maps(scan["y"], grid=48, **kw) - full, 0)[scan["support"]]
    assert fine.mean() < err.mean()
    # with the default crop the support is where the interpolated eigenvalue passes it
    cut = rss(espirit_maps(scan["y"], calib=(48, 24), kernel=4, grid=24), 0) > 0
    want = rss(espirit_maps(scan["y"], calib=(48, 24), kernel=4), 0) > 0
    assert 0.2 < want.float().mean() < 0.9 and (cut != want).float().mean() < 0.01
    with pytest.raises(ValueError, match="grid"):
        espirit_maps(scan["y"], grid=0, **kw)


def test_inference_maps_follow_the_settings_and_the_default(scan):
    """``reconstruct``'s maps: the library default (:data:`MAPS`), or the settings given, per slice."""
    from mri_n2n.reconstruction.multicoil import MAPS, inference_maps

    y = torch.stack([scan["y"], 2 * scan["y"]]).to(torch.complex64)
    default = inference_maps(y)
    opts = dict(MAPS)
    assert torch.allclose(default[1], estimate_maps(y[1], opts.pop("method"), min_calib=4, **opts), atol=1e-6)
    walsh = inference_maps(y, {"method": "walsh"})
    assert torch.allclose(walsh[0], estimate_maps(y[0], "walsh", min_calib=4), atol=1e-6)
    assert not torch.allclose(walsh, default, atol=1e-3)
    for maps in (default, walsh):  # both fit the birdcage maps on the object
        mean_corr, _, _ = _map_scores(maps[0].to(C128), scan["maps"], scan["support"])
        assert mean_corr > 0.999
    with pytest.raises(Exception, match="slices.h5: .*method must be one of"):
        inference_maps(y, {"method": "sense"}, "slices.h5")
    with pytest.raises(Exception, match=r"slices.h5: coil-map settings .*'kernal'") as err:  # a typo
        inference_maps(y, {"method": "espirit", "kernal": 4}, "slices.h5")
    assert "\n" not in str(err.value)


def test_walsh_batch_equals_items_and_complex64(scan):
    y = scan["y"]
    ramp = torch.exp(0.7j * torch.linspace(0, 1, 96, dtype=torch.float64))
    other = fft2c(ifft2c(y) * ramp)[None] * scan["mask"]
    batch = torch.cat([y[None], 3 * other])
    maps = walsh_maps(batch, calib=(48, 24))
    assert maps.shape == (2, 8, 96, 96)
    assert torch.allclose(maps[0], walsh_maps(y, calib=(48, 24)), atol=1e-10)
    assert torch.allclose(maps[1], walsh_maps(other[0], calib=(48, 24)), atol=1e-10)
    single = walsh_maps(y.to(torch.complex64).numpy(), calib=(48, 24))
    assert single.dtype == np.complex64
    assert np.abs(single - maps[0].numpy()).max() < 1e-4
    with pytest.raises(ValueError, match="grid"):
        walsh_maps(y, calib=(48, 24), grid=0)


def test_compress_coils(scan):
    y = scan["y"]  # 8 birdcage coils
    same = compress_coils(y, 8)
    assert same.shape == y.shape and same.dtype == y.dtype
    assert torch.allclose(rss(ifft2c(same), 0), rss(ifft2c(y), 0), atol=1e-10)  # lossless: unitary
    assert torch.equal(same != 0, y != 0)  # unsampled bins stay zero
    four = compress_coils(y, 4)
    assert four.shape == (4, 96, 96)
    kept = four.abs().square().sum() / y.abs().square().sum()
    assert kept > 0.97, kept  # 4 of 8 birdcage coils keep > 97 % of the energy
    img, ref = rss(ifft2c(four), 0), rss(ifft2c(y), 0)
    assert ((img - ref).norm() / ref.norm()) < 0.03  # and the RSS image within 3 %
    batch = compress_coils(torch.stack([y, 2 * y]).numpy(), 4)
    assert isinstance(batch, np.ndarray) and batch.shape == (2, 4, 96, 96)
    assert np.allclose(np.abs(batch[1]), 2 * np.abs(four.numpy()))  # per item, up to each coil's sign
    with pytest.raises(ValueError, match="n_virtual"):
        compress_coils(y, 9)


def test_estimation_numpy_batch_and_phase_reference(scan):
    y = scan["y"].to(torch.complex64)
    small = fft2c(ifft2c(y)[:, 24:72, 24:72])  # a 48x48 field of view keeps this fast
    small = small * _lines_mask(48, 48)
    out = walsh_maps(small.numpy(), calib=(48, 24))
    assert isinstance(out, np.ndarray) and out.dtype == np.complex64 and out.shape == (8, 48, 48)
    batch = espirit_maps(torch.stack([small, 2 * small]), calib=(48, 24))
    assert batch.shape == (2, 8, 48, 48) and batch.dtype == torch.complex64
    assert torch.allclose(batch[0], batch[1], atol=1e-4)  # scale invariant
    virt = espirit_maps(small, calib=(48, 24), phase_ref="virtual")
    phase = virt[0] * batch[0, 0].conj()  # same maps up to one phase per pixel
    assert torch.allclose((virt * phase.conj().sgn()), batch[0], atol=1e-4)
    with pytest.raises(ValueError, match="phase_ref"):
        espirit_maps(small, calib=(48, 24), phase_ref="body")


def test_espirit_matches_sigpy_when_available(scan):
    sigpy_mri = pytest.importorskip("sigpy.mri")
    y = scan["y"].numpy()
    ours = espirit_maps(y, calib=24).astype(np.complex128)
    ref = sigpy_mri.app.EspiritCalib(y, calib_width=24, show_pbar=False).run()
    both = (np.abs(ours).sum(0) > 0) & (np.abs(ref).sum(0) > 0) & scan["support"].numpy()
    corr = np.abs((ours.conj() * ref).sum(0)) / (rss(ours, 0) * rss(ref, 0) + 1e-12)
    assert corr[both].mean() > 0.9999 and corr[both].min() > 0.999  # equal up to the phase convention
    assert ((np.abs(ours).sum(0) > 0) == (np.abs(ref).sum(0) > 0)).mean() > 0.99  # same crop


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(scan):
    g = torch.Generator().manual_seed(12)
    maps = birdcage_maps((32, 32), 8)
    mask = torch.rand(2, 32, 32, generator=g) < 0.4
    x, y = _cplx(2, 32, 32, g=g, dtype=torch.float32), _cplx(2, 8, 32, 32, g=g, dtype=torch.float32)
    cpu, gpu = Acquisition(mask, maps), Acquisition(mask.cuda(), maps.cuda())
    assert gpu.forward(x).is_cuda
    for fn in ("forward", "adjoint", "project", "cg_dc"):
        args = {"forward": (x,), "adjoint": (y,), "project": (x, y), "cg_dc": (x, y, 0.1, 5)}[fn]
        a = getattr(cpu, fn)(*args)
        b = getattr(gpu, fn)(*(t.cuda() if torch.is_tensor(t) else t for t in args))
        assert torch.allclose(a, b.cpu(), atol=1e-4), fn
    est = estimate_maps(scan["y"].cuda())
    assert est.is_cuda
    assert torch.allclose(est.cpu(), estimate_maps(scan["y"]), atol=1e-6)


@pytest.mark.parametrize("module", ["coils", "coil_maps"])
def test_coils_stays_at_the_bottom(module):
    """coils and coil_maps may import only fft, physics and each other from the package (coils
    also the solvers) (plus numpy, scipy, torch); coil_maps never imports coils (no cycle)."""
    mod = importlib.import_module(f"mri_n2n.{module}")
    tree = ast.parse(Path(mod.__file__).read_text())
    allowed = {"fft", "physics", "numpy", "scipy", "torch", "__future__", "math", "typing", "warnings"}
    local = ("fft", "physics") if module == "coil_maps" else ("fft", "physics", "coil_maps", "solvers")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 or node.module in local, node.module
            if node.level == 0:
                assert node.module.split(".")[0] in allowed, node.module
        elif isinstance(node, ast.Import):
            assert all(a.name.split(".")[0] in allowed for a in node.names)
    assert all(getattr(mod, n).__doc__ for n in mod.__all__)


def test_sense_operator_is_the_historical_name_of_the_one_constructor():
    """``SenseOperator(maps, mask, ...)`` (the old argument order) still builds the same operator as
    ``Acquisition(mask, maps, ...)``, with a deprecation warning naming the one order."""
    g = torch.Generator().manual_seed(9)
    maps = _random_maps(1, 3, 8, 8, g)[0]
    mask = torch.rand(8, 8, generator=g) < 0.5
    y = _cplx(1, 3, 8, 8, g=g)
    with pytest.warns(DeprecationWarning, match=r"Acquisition\(mask, maps"):
        old = SenseOperator(maps, mask, y)
    new = Acquisition(mask, maps, y)
    x = _cplx(1, 8, 8, g=g)
    assert torch.equal(old.forward(x), new.forward(x)) and torch.equal(old.adjoint(), new.adjoint())
