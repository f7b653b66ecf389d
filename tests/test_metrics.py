"""Tests for mri_n2n.metrics: agreement with scikit-image, definitions, shapes, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mri_n2n.metrics import nmse, psnr, ssim, volume_metrics

skimage = pytest.importorskip("skimage")
from skimage import data as skdata  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio as sk_psnr  # noqa: E402
from skimage.metrics import structural_similarity as sk_ssim  # noqa: E402

GAUSS = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


@pytest.fixture(scope="module")
def camera_pair() -> tuple[np.ndarray, np.ndarray]:
    clean = skdata.camera().astype(np.float64) / 255.0
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + 0.1 * rng.standard_normal(clean.shape), 0.0, 1.0)
    return noisy, clean


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_agrees_with_skimage_on_camera(camera_pair, dtype):
    noisy, clean = camera_pair
    x, ref = torch.tensor(noisy, dtype=dtype), torch.tensor(clean, dtype=dtype)
    assert psnr(x, ref, data_range=1.0).item() == pytest.approx(
        sk_psnr(clean, noisy, data_range=1.0), abs=1e-4
    )
    uni = sk_ssim(
        noisy, clean, data_range=1.0, win_size=7, gaussian_weights=False, use_sample_covariance=True
    )
    assert abs(ssim(x, ref, data_range=1.0).item() - uni) < 1e-4
    gau = sk_ssim(noisy, clean, data_range=1.0, **GAUSS)
    assert abs(ssim(x, ref, data_range=1.0, gaussian_weights=True).item() - gau) < 1e-4
    assert 0.1 < uni < 0.9 and abs(uni - gau) > 1e-3  # a meaningful, window-sensitive case


def test_agrees_with_skimage_random_batched():
    rng = np.random.default_rng(1)
    b, c, h, w = 3, 2, 29, 37
    ref = rng.random((b, c, h, w))
    x = ref + rng.normal(0, 0.2, ref.shape) * rng.random((b, 1, 1, 1))
    ranges = np.array([1.0, 2.0, 0.5])
    xt, rt, rr = torch.tensor(x), torch.tensor(ref), torch.tensor(ranges)
    got_u = ssim(xt, rt, data_range=rr, reduction="none")
    got_g = ssim(xt, rt, data_range=rr, gaussian_weights=True, reduction="none")
    got_p = psnr(xt, rt, data_range=rr, reduction="none")
    assert got_u.shape == got_g.shape == got_p.shape == (b,)
    for i in range(b):
        xi, ri = np.moveaxis(x[i], 0, -1), np.moveaxis(ref[i], 0, -1)
        assert abs(got_u[i].item() - sk_ssim(xi, ri, data_range=ranges[i], channel_axis=-1)) < 1e-6
        exp_g = sk_ssim(xi, ri, data_range=ranges[i], channel_axis=-1, **GAUSS)
        assert abs(got_g[i].item() - exp_g) < 1e-6
        assert got_p[i].item() == pytest.approx(sk_psnr(ri, xi, data_range=ranges[i]), abs=1e-9)
    # float32 within the 1e-3 promise
    got32 = ssim(xt.float(), rt.float(), data_range=rr.float(), reduction="none")
    torch.testing.assert_close(got32.double(), got_u, rtol=0, atol=1e-3)
    # mean / sum reductions
    assert ssim(xt, rt, data_range=rr).item() == pytest.approx(got_u.mean().item())
    assert psnr(xt, rt, data_range=rr, reduction="sum").item() == pytest.approx(got_p.sum().item())


def test_shapes_and_reductions():
    torch.manual_seed(0)
    img = torch.rand(16, 20)
    noisy = img + 0.1 * torch.randn_like(img)
    for fn, kw in ((psnr, {"data_range": 1.0}), (ssim, {"data_range": 1.0}), (nmse, {})):
        v2 = fn(noisy, img, **kw)
        v3 = fn(noisy[None], img[None], **kw)
        v4 = fn(noisy[None, None], img[None, None], **kw, reduction="none")
        assert v2.dim() == 0 and v4.shape == (1,)
        torch.testing.assert_close(v2, v3)
        torch.testing.assert_close(v2, v4[0])
        batch = fn(noisy.expand(4, 3, 16, 20), img.expand(4, 3, 16, 20), **kw, reduction="none")
        assert batch.shape == (4,)
        torch.testing.assert_close(batch, v2.expand(4))  # identical channels: same as one channel
    with pytest.raises(ValueError):
        psnr(noisy, img, data_range=1.0, reduction="max")
    with pytest.raises(ValueError):
        psnr(noisy, img[:-1], data_range=1.0)
    with pytest.raises(ValueError):
        ssim(noisy[:5, :5], img[:5, :5], data_range=1.0)  # smaller than the 7x7 window
    with pytest.raises(ValueError):
        psnr(noisy.expand(2, 1, 16, 20), img.expand(2, 1, 16, 20), data_range=torch.ones(3))
    with pytest.raises(TypeError):
        nmse(torch.randn(8, 8, dtype=torch.complex64), torch.randn(8, 8, dtype=torch.complex64))


def test_definitions():
    torch.manual_seed(1)
    ref = torch.rand(2, 1, 12, 13, dtype=torch.float64)
    x = ref + 0.05 * torch.randn_like(ref)
    mse = (x - ref).pow(2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(psnr(x, ref, data_range=2.0, reduction="none"), 10 * torch.log10(4.0 / mse))
    expected = (x - ref).pow(2).sum(dim=(1, 2, 3)) / ref.pow(2).sum(dim=(1, 2, 3))
    torch.testing.assert_close(nmse(x, ref, reduction="none"), expected)
    assert nmse(2 * x, 2 * ref).item() == pytest.approx(nmse(x, ref).item())  # scale-free
    # identical images
    assert psnr(ref, ref, data_range=1.0).item() == math.inf
    assert ssim(ref, ref, data_range=1.0).item() == pytest.approx(1.0)
    assert ssim(ref, ref, data_range=1.0, gaussian_weights=True).item() == pytest.approx(1.0)
    assert nmse(ref, ref).item() == 0.0
    # the paper's convention: clipped output, peak 1
    out = ref + torch.where(ref > 0.9, 0.5, 0.0)
    assert psnr(out.clamp(0, 1), ref, data_range=1.0) > psnr(out, ref, data_range=1.0)


def test_ssim_gradient():
    torch.manual_seed(2)
    ref = torch.rand(1, 1, 9, 10, dtype=torch.float64)
    x = (ref + 0.1 * torch.randn_like(ref)).requires_grad_(True)
    for kw in ({}, {"gaussian_weights": True, "win_size": 5}):
        assert torch.autograd.gradcheck(
            lambda a, kw=kw: ssim(a, ref, data_range=1.0, **kw), (x,), fast_mode=True
        )
    # gradient ascent on SSIM moves the estimate towards the reference
    x32 = x.detach().float().requires_grad_(True)
    s = ssim(x32, ref.float(), data_range=1.0)
    s.backward()
    with torch.no_grad():
        s2 = ssim(x32 + 0.05 * x32.grad / x32.grad.abs().max(), ref.float(), data_range=1.0)
    assert s2 > s


def test_volume_metrics_fastmri_convention():
    rng = np.random.default_rng(3)
    vol = rng.random((4, 24, 30)) * 3.0
    rec = vol + rng.normal(0, 0.2, vol.shape)
    got = volume_metrics(torch.tensor(rec, dtype=torch.float32), torch.tensor(vol, dtype=torch.float32))
    r = vol.max()
    vol32, rec32 = vol.astype(np.float32).astype(np.float64), rec.astype(np.float32).astype(np.float64)
    exp_ssim = np.mean([sk_ssim(vol32[d], rec32[d], data_range=r) for d in range(4)])
    assert got["data_range"] == pytest.approx(r, rel=1e-6)
    assert got["psnr"] == pytest.approx(sk_psnr(vol32, rec32, data_range=r), abs=1e-4)
    assert got["ssim"] == pytest.approx(exp_ssim, abs=1e-5)
    exp_nmse = np.linalg.norm(vol32 - rec32) ** 2 / np.linalg.norm(vol32) ** 2
    assert got["nmse"] == pytest.approx(exp_nmse, rel=1e-6)
    # an explicit range overrides ref.max() (here 1.0 < max, so a lower PSNR)
    assert volume_metrics(rec, vol, data_range=1.0)["psnr"] < got["psnr"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(4)
    ref = torch.rand(2, 1, 32, 32)
    x = ref + 0.1 * torch.randn_like(ref)
    for fn, kw in ((psnr, {"data_range": 1.0}), (ssim, {"data_range": 1.0}), (nmse, {})):
        torch.testing.assert_close(
            fn(x.cuda(), ref.cuda(), **kw).cpu(), fn(x, ref, **kw), rtol=1e-5, atol=1e-5
        )
