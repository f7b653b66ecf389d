"""FFT and spectral sampling operator: unitarity, adjointness, data-consistency exactness."""

import pytest
import torch

from mri_n2n.fft import fft2c, ifft2c, promote_complex, to_channels, to_complex
from mri_n2n.physics import SpectralSampling
from mri_n2n.sampling import bernoulli_mask, exp_decay_density

SIZES = [(16, 16), (15, 17), (32, 21)]


def _cplx(*shape, g):
    return torch.complex(
        torch.randn(*shape, generator=g, dtype=torch.float64),
        torch.randn(*shape, generator=g, dtype=torch.float64),
    )


@pytest.mark.parametrize("hw", SIZES)
def test_fft_roundtrip_and_parseval(hw):
    g = torch.Generator().manual_seed(1)
    x = _cplx(2, 3, *hw, g=g)
    k = fft2c(x)
    assert torch.allclose(ifft2c(k), x, atol=1e-12)
    assert torch.allclose(k.abs().pow(2).sum(), x.abs().pow(2).sum(), rtol=1e-12)


@pytest.mark.parametrize("hw", SIZES)
def test_fft_is_centred(hw):
    h, w = hw
    x = torch.ones(h, w, dtype=torch.float64)  # constant image: all energy at DC
    k = fft2c(x)
    assert k.abs().argmax().item() == (h // 2) * w + (w // 2)
    assert torch.isclose(k[h // 2, w // 2].real, torch.tensor((h * w) ** 0.5, dtype=torch.float64))


def test_fft_accepts_real_and_leading_dims():
    x = torch.randn(2, 3, 4, 8, 8)
    assert fft2c(x).shape == x.shape and fft2c(x).is_complex()
    assert torch.allclose(ifft2c(fft2c(x)).real, x, atol=1e-5)


@pytest.mark.parametrize("hw", SIZES)
def test_operator_adjoint_identity(hw):
    g = torch.Generator().manual_seed(2)
    mask = bernoulli_mask(exp_decay_density(hw), generator=g, batch_size=3)
    op = SpectralSampling(mask)
    x = _cplx(3, 1, *hw, g=g)
    y = _cplx(3, 1, *hw, g=g)
    lhs = torch.vdot(op.forward(x).flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), op.adjoint(y).flatten())
    assert torch.allclose(lhs, rhs, atol=1e-10)
    # A A* = M: a projection
    assert torch.allclose(op.forward(op.adjoint(y)), y * mask[:, None], atol=1e-10)


@pytest.mark.parametrize("hw", SIZES)
def test_projection_exact_idempotent_and_leaves_unsampled(hw):
    g = torch.Generator().manual_seed(3)
    mask = bernoulli_mask(exp_decay_density(hw), generator=g, batch_size=2, hermitian=True)
    op = SpectralSampling(mask)
    truth = torch.rand(2, 1, *hw, generator=g, dtype=torch.float64)
    y = op.forward(truth)
    net_out = torch.randn(2, 1, *hw, generator=g, dtype=torch.float64)
    proj = op.project(net_out, y)
    assert not proj.is_complex()
    kp = fft2c(proj)
    m = mask[:, None]
    # exact on sampled frequencies
    assert torch.allclose(kp[m.expand_as(kp)], y[m.expand_as(y)], atol=1e-10)
    # unsampled frequencies of the network output are untouched
    ko = fft2c(net_out)
    assert torch.allclose(kp[~m.expand_as(kp)], ko[~m.expand_as(ko)], atol=1e-10)
    # idempotent
    assert torch.allclose(op.project(proj, y), proj, atol=1e-10)


def test_projection_complex_any_mask():
    g = torch.Generator().manual_seed(4)
    mask = bernoulli_mask(exp_decay_density((20, 20)), generator=g, batch_size=2)
    op = SpectralSampling(mask)
    y = op.forward(_cplx(2, 1, 20, 20, g=g))
    x = _cplx(2, 1, 20, 20, g=g)
    p = op.project(x, y)
    assert p.is_complex()
    assert torch.allclose(op.forward(p), y, atol=1e-10)
    assert torch.allclose(op.project(p, y), p, atol=1e-10)


@pytest.mark.parametrize("hw", [(64, 64), (63, 65)])
def test_zero_filled_of_real_image_is_real(hw):
    g = torch.Generator().manual_seed(5)
    d = exp_decay_density(hw)
    mask = bernoulli_mask(d, generator=g, batch_size=4, hermitian=True)
    op = SpectralSampling(mask)
    x = torch.rand(4, 1, *hw, generator=g, dtype=torch.float64)
    z = op.zero_filled(op.forward(x), d)
    assert z.imag.norm() < 1e-5 * z.norm()
    assert op.adjoint(op.forward(x)).imag.norm() < 1e-5 * x.norm()


def test_zero_filled_density_compensation_is_unbiased():
    # E_mask[F^-1(M F x / p)] = x: average over many masks approaches the image.
    g = torch.Generator().manual_seed(6)
    d = exp_decay_density((32, 32), fraction=0.3)
    x = torch.rand(1, 1, 32, 32, generator=g, dtype=torch.float64)
    n = 4000
    mask = bernoulli_mask(d, generator=g, batch_size=n, hermitian=True)
    z = SpectralSampling(mask).zero_filled(fft2c(x).expand(n, 1, 32, 32), d).real
    err = (z.mean(0) - x[0]).norm() / x.norm()
    single = (z[0] - x[0]).norm() / x.norm()
    assert err < 0.05 and err < single / 10


def test_projection_is_differentiable():
    g = torch.Generator().manual_seed(7)
    mask = bernoulli_mask(exp_decay_density((16, 16)), generator=g, batch_size=1, hermitian=True)
    op = SpectralSampling(mask)
    y = op.forward(torch.rand(1, 1, 16, 16))
    x = torch.randn(1, 1, 16, 16, requires_grad=True)
    op.project(x, y).pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_channel_conversions_are_inverse():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 2, 5, 4, generator=g)
    z = to_complex(x)
    assert z.dtype == torch.complex64 and z.shape == (3, 5, 4)
    assert torch.equal(z.real, x[:, 0]) and torch.equal(z.imag, x[:, 1])
    assert torch.equal(to_channels(z), x) and to_channels(z).is_contiguous()
    zk = to_complex(x, keepdim=True)
    assert zk.shape == (3, 1, 5, 4) and torch.equal(zk[:, 0], z)
    assert torch.equal(to_channels(zk, keepdim=True), x)
    assert to_complex(x.double()).dtype == torch.complex128
    real = x[:, :1]  # one channel: a real image, zero imaginary part
    assert torch.equal(to_complex(real), real[:, 0].to(torch.complex64))
    assert torch.equal(to_complex(real, keepdim=True), real.to(torch.complex64))
    with pytest.raises(ValueError, match="2 channels"):
        to_complex(torch.zeros(1, 3, 4, 4))


def test_promote_complex_keeps_values_and_follows_like():
    x = torch.arange(6.0).reshape(2, 3)
    z = promote_complex(x)
    assert z.dtype == torch.complex64 and torch.equal(z.real, x) and not z.imag.any()
    assert promote_complex(torch.arange(3)).dtype == torch.complex64  # integers: the default float
    assert promote_complex(x.half()).dtype == torch.complex64
    assert promote_complex(z) is z  # complex without ``like``: unchanged
    like = torch.zeros(1, dtype=torch.complex128)
    assert promote_complex(x, like).dtype == torch.complex128
    wide = promote_complex(z.to(torch.complex128), torch.zeros(1, dtype=torch.complex64))
    assert wide.dtype == torch.complex128  # the promoted dtype of the two, never narrower


def test_sample_masks_kspace_per_channel():
    g = torch.Generator().manual_seed(8)
    mask = torch.rand(2, 8, 6, generator=g) > 0.5
    k = _cplx(2, 3, 8, 6, g=g)
    op = SpectralSampling(mask)
    y = op.sample(k)
    assert torch.equal(y, torch.where(mask[:, None], k, torch.zeros_like(k)))
    x = _cplx(2, 3, 8, 6, g=g)
    assert torch.equal(op.forward(x), op.sample(fft2c(x)))
    assert torch.equal(op.adjoint(k), ifft2c(y))


def test_zero_filled_takes_a_per_sample_density():
    g = torch.Generator().manual_seed(9)
    mask = torch.rand(2, 8, 6, generator=g) > 0.5
    p = torch.rand(2, 8, 6, generator=g) * 0.5 + 0.25
    y = _cplx(2, 1, 8, 6, g=g)
    z = SpectralSampling(mask).zero_filled(y, p)
    assert z.shape == y.shape
    for i in range(2):
        assert torch.equal(z[i], SpectralSampling(mask[i]).zero_filled(y[i], p[i]))


# --- the one acquisition operator ---------------------------------------------------------------
def _acq_case(coils: int, seed: int = 0):
    from mri_n2n.coils import birdcage_maps

    g = torch.Generator().manual_seed(seed)
    h, w = 12, 16
    mask = torch.rand(2, h, w, generator=g) < 0.4
    maps = None if coils == 0 else birdcage_maps((h, w), coils)[None].expand(2, -1, -1, -1).clone()
    x = torch.complex(torch.randn(2, h, w, generator=g), torch.randn(2, h, w, generator=g))
    return mask, maps, x


def test_one_all_ones_coil_is_the_single_coil_operator():
    """The single-coil acquisition is the multi-coil one with one all-ones coil: the same
    forward, adjoint, normal, zero-filled image, projection and proximal step."""
    from mri_n2n.physics import Acquisition

    mask, _, x = _acq_case(0)
    ones = torch.ones(2, 1, *mask.shape[-2:], dtype=torch.complex64)
    p = torch.full(mask.shape[-2:], 0.4)
    single = Acquisition(mask, None, None, keep_prob=p)
    multi = Acquisition(mask, ones, None, keep_prob=p)
    y = multi.forward(x)  # (2, 1, H, W)
    torch.testing.assert_close(single.forward(x), y[:, 0])
    single, multi = single.with_data(y[:, 0]), multi.with_data(y)
    z = torch.randn_like(x)
    torch.testing.assert_close(single.adjoint(), multi.adjoint())
    torch.testing.assert_close(single.normal(z), multi.normal(z), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(single.zero_filled(), multi.zero_filled())
    torch.testing.assert_close(single.project(z), multi.project(z), atol=1e-6, rtol=1e-5)
    # one coil: the CG solve of the proximal step converges to the closed form
    torch.testing.assert_close(single.prox(z, 0.3), multi.prox(z, 0.3, iters=30), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("coils", [0, 3])
def test_restrict_splits_one_acquisition_into_disjoint_exact_parts(coils):
    """restrict(keep) and restrict(~keep) keep the measurements on their own bins: the two
    parts' data sum to the whole acquisition's, and each projection is exact on its bins."""
    from mri_n2n.physics import Acquisition

    mask, maps, x = _acq_case(coils, seed=1)
    whole = Acquisition(mask, maps)
    whole = whole.with_data(whole.forward(x))
    keep = torch.rand(mask.shape, generator=torch.Generator().manual_seed(2)) < 0.6
    a, b = whole.restrict(keep), whole.restrict(~keep)
    assert not bool((a.mask & b.mask).any()) and torch.equal(a.mask | b.mask, mask)
    torch.testing.assert_close(a.y + b.y, whole.y)
    if coils == 0:
        z = a.project(torch.randn_like(x))
        k = a.forward(z)
        assert float((k - a.y).abs().max()) < 1e-5 * float(a.y.abs().max())


def test_transformed_acquisition_measures_the_transformed_image():
    """A circular flip commutes with the centred FFT: the flipped acquisition of an image's
    measurements is the acquisition of the flipped image (what the self-ensemble relies on)."""
    from mri_n2n.models.ensemble import circular_flip
    from mri_n2n.physics import Acquisition

    mask, maps, x = _acq_case(3, seed=3)
    acq = Acquisition(mask, maps)
    acq = acq.with_data(acq.forward(x))
    flip = acq.transformed(lambda t: circular_flip(t, -1))
    torch.testing.assert_close(flip.forward(circular_flip(x, -1)), flip.y, atol=1e-5, rtol=1e-4)


def test_a_phase_map_keeps_the_projection_of_a_real_image_real_and_exact():
    """A real image whose data carry a smooth phase (image = real * phase): the projection works
    on real * phase and returns a real image whose phased spectrum matches the measurements."""
    from mri_n2n.physics import Acquisition

    g = torch.Generator().manual_seed(4)
    h, w = 16, 16
    real = torch.rand(2, 1, h, w, generator=g)
    phase = torch.polar(torch.ones(2, h, w), torch.rand(2, 1, 1, generator=g) * 3.0)
    mask = torch.rand(2, h, w, generator=g) < 0.5
    y = Acquisition(mask).forward(real * phase[:, None])
    acq = Acquisition(mask, None, y, phase=phase)
    out = acq.project(torch.rand(2, 1, h, w, generator=g))
    assert not out.is_complex()
    k = Acquisition(mask).forward(out * phase[:, None])
    # the real part of the phased replacement: exact where the data's conjugate partner is too
    both = mask & mask.flip(-1).roll(1, -1).flip(-2).roll(1, -2)
    err = (k - y).abs()[both[:, None]]
    assert float(err.max()) < 1e-4
