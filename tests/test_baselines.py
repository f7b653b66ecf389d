"""CS-TV baseline: data consistency, quality over zero-filling, convergence, batching, layouts."""

import pytest
import torch

from mri_n2n.baselines import (
    DEFAULT_TV_LAM,
    _grad,
    _grad_adj,
    _laplacian_symbol,
    cs_tv,
    cs_tv_objective,
    total_variation,
    tune_tv_lambda,
    tv_objective,
    tv_reconstruct,
)
from mri_n2n.corruptions import MRIUndersampling
from mri_n2n.fft import fft2c, ifft2c
from mri_n2n.metrics import psnr
from mri_n2n.physics import Acquisition, SpectralSampling
from mri_n2n.sampling import bernoulli_mask, exp_decay_density

SIZE = 64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # 64x64 images: per-op work is tiny, and a second intra-op thread only adds contention
    # (it made these tests up to 100x slower on a busy 2-core machine).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def camera() -> torch.Tensor:
    """scikit-image's camera man, 64x64, scaled to max 1, as (1, 1, H, W)."""
    skd = pytest.importorskip("skimage.data")
    skt = pytest.importorskip("skimage.transform")
    img = skt.resize(skd.camera().astype("float64") / 255.0, (SIZE, SIZE), anti_aliasing=True)
    x = torch.from_numpy(img).float()
    return (x / x.max())[None, None]


@pytest.fixture(scope="module")
def measured(camera):
    """Three 10 % Hermitian exp-decay masks (seeded) of the camera man: (clean, pair)."""
    clean = camera.repeat(3, 1, 1, 1)
    corruption = MRIUndersampling(exp_decay_density((SIZE, SIZE), fraction=0.1))
    pair = corruption.validation_pair(clean, torch.tensor([11, 12, 13]))
    return clean, pair


def _psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return psnr(x.clamp(0, 1), ref, data_range=1.0, reduction="none")


def test_tv_operators_adjoint_and_fourier_symbol():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 9, 12, generator=g, dtype=torch.float64)
    px, py = torch.randn(2, 2, 1, 9, 12, generator=g, dtype=torch.float64)
    gx, gy = _grad(x)
    assert torch.allclose((gx * px).sum() + (gy * py).sum(), (x * _grad_adj(px, py)).sum())
    # grad^T grad is diagonal in (unshifted) Fourier space with the symbol used by the solver
    lap = _grad_adj(*_grad(x))
    sym = _laplacian_symbol(9, 12, half=False, dtype=torch.float64, device=x.device)
    assert torch.allclose(torch.fft.fft2(lap), sym * torch.fft.fft2(x), atol=1e-10)
    # TV: constant image has none; a unit step has (perimeter) = 2 * H for a vertical band
    assert total_variation(torch.ones(3, 5, 5)).abs().max() == 0
    band = torch.zeros(8, 8)
    band[:, 2:5] = 1.0
    assert total_variation(band).item() == pytest.approx(16.0)


def test_exact_on_sampled_frequencies_and_real(measured):
    clean, pair = measured
    y, mask = pair.acq.y, pair.acq.mask
    out = tv_reconstruct(y, mask, iters=30)
    assert out.shape == clean.shape and out.dtype == torch.float32 and not out.is_complex()
    k = fft2c(out)
    m = mask[:, None]
    err = (k - y)[m.expand_as(k)].abs().max()
    assert err < 1e-4 * y.abs().max()


def test_beats_zero_filled_by_a_clear_margin(measured):
    clean, pair = measured
    y, mask = pair.acq.y, pair.acq.mask
    zf_comp = _psnr(pair.input, clean)  # 1/p compensated: measured 12.0-12.8 dB
    zf_plain = _psnr(SpectralSampling(mask).adjoint(y).real, clean)  # measured 14.0-16.2 dB
    tv = _psnr(tv_reconstruct(y, mask), clean)  # measured 19.2-22.5 dB
    assert (tv > zf_plain + 3.5).all(), (tv, zf_plain)  # measured margin >= 5.2 dB
    assert (tv > zf_comp + 5.0).all(), (tv, zf_comp)  # measured margin >= 7.1 dB
    # the default weight is not far from the best of a coarse grid on this image either
    best = max(_psnr(tv_reconstruct(y, mask, lam=lam), clean).mean() for lam in (1e-4, 1e-3, 1e-2))
    assert tv.mean() > best - 0.5


def test_objective_decreases(measured):
    clean, pair = measured
    y, mask = pair.acq.y, pair.acq.mask
    lam = 1e-3
    values = [
        tv_objective(tv_reconstruct(y, mask, lam=lam, iters=n), y, mask, lam).sum().item()
        for n in (0, 2, 5, 20, 100)
    ]
    # iters=0 is the zero-filled image; every output is data-consistent, so this is lam * TV
    assert values[-1] < 0.85 * values[0]  # measured ratio 0.78
    assert all(b <= a * 1.01 for a, b in zip(values, values[1:])), values


def test_admm_and_pdhg_reach_the_same_minimiser(camera):
    # A 32x32 crop keeps PDHG's many iterations cheap; float64 for a tight comparison.
    clean = camera[..., 16:48, 16:48].double()
    mask = bernoulli_mask(
        exp_decay_density((32, 32), fraction=0.25), generator=torch.Generator().manual_seed(5)
    )
    y = SpectralSampling(mask).forward(clean)
    lam = 1e-2
    a = tv_reconstruct(y, mask, lam=lam, iters=300)
    b = tv_reconstruct(y, mask, lam=lam, iters=1500, method="pdhg")
    assert a.dtype == torch.float64
    assert (a - b).abs().max() < 5e-3
    fa = tv_objective(a, y, mask, lam).item()
    fb = tv_objective(b, y, mask, lam).item()
    assert fa <= fb * 1.001


def test_full_sampling_returns_the_image(camera):
    full = torch.ones(1, SIZE, SIZE, dtype=torch.bool)
    y = fft2c(camera)
    for lam in (0.0, DEFAULT_TV_LAM):
        out = tv_reconstruct(y, full, lam=lam, iters=10)
        assert torch.allclose(out, camera, atol=1e-5)


def test_lam_zero_is_the_zero_filled_image(measured):
    _, pair = measured
    y, mask = pair.acq.y, pair.acq.mask
    out = tv_reconstruct(y, mask, lam=0.0)
    assert torch.allclose(out, SpectralSampling(mask).adjoint(y).real, atol=1e-6)


def test_batched_equals_per_sample(measured):
    _, pair = measured
    y, mask = pair.acq.y, pair.acq.mask
    batched = tv_reconstruct(y, mask, iters=40)
    for i in range(y.shape[0]):
        single = tv_reconstruct(y[i : i + 1], mask[i : i + 1], iters=40)
        assert torch.allclose(batched[i : i + 1], single, atol=1e-5)


def test_layouts_and_shared_mask(measured):
    _, pair = measured
    y, mask = pair.acq.y, pair.acq.mask
    four = tv_reconstruct(y, mask, iters=20)
    three = tv_reconstruct(y[:, 0], mask, iters=20)
    assert three.shape == y[:, 0].shape
    assert torch.allclose(three, four[:, 0], atol=1e-6)
    also = tv_reconstruct(y, mask[:, None], iters=20)
    assert torch.allclose(also, four, atol=1e-6)
    # one (H, W) mask shared by the batch
    shared = mask[0]
    ys = y * shared
    a = tv_reconstruct(ys, shared, iters=20)
    b = tv_reconstruct(ys, shared.expand_as(mask), iters=20)
    assert torch.allclose(a, b, atol=1e-6)


def test_complex_mode_agrees_for_real_data(measured):
    _, pair = measured
    y, mask = pair.acq.y, pair.acq.mask
    real = tv_reconstruct(y, mask, lam=1e-3, iters=60)
    cplx = tv_reconstruct(y, mask, lam=1e-3, iters=60, real=False)
    assert cplx.is_complex() and cplx.shape == real.shape
    # Hermitian mask + real image: the complex problem has the real solution
    assert (cplx.real - real).abs().max() < 1e-4
    assert cplx.imag.abs().max() < 1e-4


def test_x0_tol_and_errors(measured):
    clean, pair = measured
    y, mask = pair.acq.y, pair.acq.mask
    # iters=0 returns the projected start: the clean image is already consistent
    assert torch.allclose(tv_reconstruct(y, mask, iters=0, x0=clean), clean, atol=1e-5)
    assert torch.allclose(tv_reconstruct(y[:, 0], mask, iters=0, x0=clean[:, 0]), clean[:, 0], atol=1e-5)
    # a huge tolerance stops at the first test (iteration 10)
    assert torch.allclose(tv_reconstruct(y, mask, tol=1e9), tv_reconstruct(y, mask, iters=10))
    with pytest.raises(ValueError, match="method"):
        tv_reconstruct(y, mask, method="fista")
    with pytest.raises(ValueError, match="lam"):
        tv_reconstruct(y, mask, lam=-1.0)
    with pytest.raises(TypeError, match="complex"):
        tv_reconstruct(y.real, mask)
    with pytest.raises(ValueError, match="mask"):
        tv_reconstruct(y, mask[:, None, None])


def test_tune_tv_lambda_prefers_a_sensible_weight(camera):
    clean = torch.cat([camera, camera.flip(-1)])
    best, table = tune_tv_lambda(clean, lams=(1e-3, 0.3), iters=30, seeds=torch.tensor([3, 4]))
    assert best == 1e-3  # 0.3 wipes out the image
    assert [row["lam"] for row in table] == [1e-3, 0.3]
    assert table[0]["psnr"] > table[1]["psnr"] + 2
    assert set(table[0]) == {"lam", "psnr", "psnr_std", "psnr_median", "seconds_per_slice"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(measured):
    _, pair = measured
    y, mask = pair.acq.y, pair.acq.mask
    cpu = tv_reconstruct(y, mask, iters=30)
    gpu = tv_reconstruct(y.cuda(), mask.cuda(), iters=30)
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-4)


@pytest.fixture(scope="module")
def multicoil(camera):
    """A 48x48 complex image seen by 6 birdcage coils, equispaced 3x lines + 6 centre lines,
    complex noise 0.02 per coil."""
    from mri_n2n.coils import birdcage_maps

    img = torch.nn.functional.interpolate(camera, size=(48, 48), mode="area")[0, 0]
    x = (img * torch.exp(1j * torch.linspace(0, 1.5, 48))[None, :]).to(torch.complex64)[None]
    maps = birdcage_maps((48, 48), 6)[None].to(torch.complex64)
    mask = torch.zeros(1, 48, 48, dtype=torch.bool)
    mask[..., ::3] = True
    mask[..., 21:27] = True
    g = torch.Generator().manual_seed(0)
    noise = torch.complex(torch.randn(1, 6, 48, 48, generator=g), torch.randn(1, 6, 48, 48, generator=g))
    y = (Acquisition(mask, maps).forward(x) + 0.02 / 2**0.5 * noise) * mask[:, None]
    return x, y, maps, mask


def test_tv_sense_minimises_its_objective_and_beats_cg_sense(multicoil):
    """TV-SENSE reaches its objective's minimum (within 0.5 % of a 6x longer run), lowers it from
    the CG-SENSE start, lam = 0 returns that start, and on noisy data it is closer to the truth."""
    from mri_n2n.baselines import tv_sense, tv_sense_objective

    x, y, maps, mask = multicoil
    lam = 3e-3
    start = Acquisition(mask, maps).sense(y, 1e-3, 30)
    assert torch.equal(tv_sense(y, maps, mask, lam=0.0), start)
    out = tv_sense(y, maps, mask, lam=lam, iters=100)
    long = tv_sense(y, maps, mask, lam=lam, iters=600, inner=6)
    f_out, f_long, f_start = (float(tv_sense_objective(v, y, maps, mask, lam)) for v in (out, long, start))
    assert abs(f_out - f_long) <= 0.005 * f_long and f_out < 0.9 * f_start
    err = [float((v.abs() - x.abs()).square().mean()) for v in (start, out)]
    assert err[1] < 0.7 * err[0]
    with pytest.raises(ValueError, match="complex"):
        tv_sense(y.abs(), maps, mask, lam=lam)


def test_tv_sense_single_coil_matches_cs_tv(measured):
    """One coil of unit sensitivity: TV-SENSE minimises CS-TV's objective (complex mode) as well
    as tv_reconstruct's own solver does."""
    from mri_n2n.baselines import tv_sense, tv_sense_objective

    pair = measured[1]
    y1, m1 = pair.acq.y[:1, 0].to(torch.complex64), pair.acq.mask[:1]
    m1 = m1[:, 0] if m1.ndim == 4 else m1
    maps = torch.ones(1, 1, *y1.shape[-2:], dtype=torch.complex64)
    lam = 1e-3
    ours = tv_sense(y1[:, None], maps, m1, lam=lam, iters=300, inner=6)
    ref = tv_reconstruct(y1, m1, lam=lam, iters=300, real=False)
    f_ours = float(tv_sense_objective(ours, y1[:, None], maps, m1, lam))
    f_ref = float(tv_sense_objective(ref, y1[:, None], maps, m1, lam))
    assert f_ours <= 1.01 * f_ref


def test_tune_sense_lambda_picks_a_regularising_weight(multicoil):
    from mri_n2n.baselines import tune_sense_lambda

    x, y, maps, mask = multicoil
    batches = [(Acquisition(mask, maps, y), x.abs())]
    best, table = tune_sense_lambda(batches, [1e-5, 3e-3, 10.0], method="tv", iters=60)
    assert best == 3e-3 and [r["lam"] for r in table] == [1e-5, 3e-3, 10.0]
    # noisy 3x data: a little Tikhonov damping beats none (noise amplification) and too much
    best_t, table_t = tune_sense_lambda(batches, [1e-6, 1e-2, 10.0], method="tikhonov", iters=30)
    assert best_t == 1e-2 and table_t[1]["psnr"] > table_t[0]["psnr"] + 1.0
    with pytest.raises(ValueError, match="method"):
        tune_sense_lambda(batches, [1.0], method="l1")


def test_the_operator_is_the_argument(measured, multicoil):
    """cs_tv / cs_tv_objective take the acquisition: the single-coil wrappers (k-space and mask)
    and the multi-coil ones (coil k-space, maps, mask) are the same computation on the operator
    they build, and an acquisition without measurements or a real multi-coil image is refused."""
    from mri_n2n.baselines import cs_tv, cs_tv_objective, tv_sense, tv_sense_objective

    pair = measured[1]
    y, mask = pair.acq.y.to(torch.complex64), pair.acq.mask
    acq = SpectralSampling(mask[:, None] if mask.ndim == 3 else mask, y)
    for real in (True, False):
        out = cs_tv(acq, lam=1e-3, iters=20, real=real)
        assert torch.equal(out, tv_reconstruct(y, mask, lam=1e-3, iters=20, real=real))
        assert torch.equal(cs_tv_objective(acq, out, 1e-3), tv_objective(out, y, mask, 1e-3))
    x, yc, maps, m = multicoil
    sense = Acquisition(m, maps, yc)
    out = cs_tv(sense, lam=3e-3, iters=10)
    assert torch.equal(out, tv_sense(yc, maps, m, lam=3e-3, iters=10))
    assert torch.equal(cs_tv_objective(sense, out, 3e-3), tv_sense_objective(out, yc, maps, m, 3e-3))
    with pytest.raises(ValueError, match="measurements"):
        cs_tv(SpectralSampling(acq.mask), lam=1e-3)
    with pytest.raises(ValueError, match="multi-coil"):
        cs_tv(sense, lam=1e-3, real=True)


class _DenseGrid(Acquisition):
    """A single-coil grid acquisition that is not the Cartesian class (no ``kind``: not
    registered), so CS-TV takes its generic path: the x-step by CG on ``normal``."""

    _dims = {"sampled": 2, "y": 3, "keep_prob": 2}

    def __init__(self, sampled, y=None, keep_prob=None, maps=None) -> None:
        self._sampled, self.y, self.keep_prob = sampled.bool(), y, keep_prob

    sampled = property(lambda self: self._sampled)
    sample_shape = property(lambda self: tuple(self._sampled.shape[-2:]))
    image_shape = property(lambda self: tuple(self._sampled.shape[-2:]))

    def _fields(self):
        return {"sampled": self._sampled, "y": self.y, "keep_prob": self.keep_prob}

    def expand_samples(self, t):
        return t.unsqueeze(-3) if t.ndim == 3 else t

    def forward(self, x):
        return self.sample(fft2c(x.to(torch.complex64)))

    def adjoint(self, y=None):
        return ifft2c(self.sample(self._data(y)))


@pytest.mark.parametrize("real", [True, False])
def test_cs_tv_works_for_any_kind_by_cg_on_the_normal_operator(camera, real):
    """A kind without the Cartesian FFT-diagonal x-step: ADMM with CG on ``acq.normal`` reaches
    the objective of the Cartesian solver (which also ends with the exact projection) and beats
    zero-filling; a real image stays real."""
    g = torch.Generator().manual_seed(0)
    density = exp_decay_density((SIZE, SIZE), fraction=0.3)
    m = bernoulli_mask(density, generator=g, batch_size=1, hermitian=real)
    y = fft2c(camera.to(torch.complex64)) * m[:, None]
    dense = _DenseGrid(m, y)
    got = cs_tv(dense, lam=DEFAULT_TV_LAM, iters=60, real=real, inner=6)
    assert got.shape == camera.shape and (not got.is_complex()) == real
    cart = cs_tv(SpectralSampling(m, y), lam=DEFAULT_TV_LAM, iters=60, real=real)
    obj = float(cs_tv_objective(dense, got, DEFAULT_TV_LAM).sum())
    assert obj <= 1.01 * float(cs_tv_objective(dense, cart, DEFAULT_TV_LAM).sum())
    zf = dense.adjoint()
    def score(x):
        return float(psnr(x.abs().clamp(0, 1), camera, data_range=1.0))

    assert score(got) > score(zf) + 1
    with pytest.raises(ValueError, match="ADMM"):
        cs_tv(dense, method="pdhg")
