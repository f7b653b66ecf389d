"""FFT and spectral sampling operator: unitarity, adjointness, data-consistency exactness."""

import pytest
import torch

from mri_n2n.fft import fft2c, ifft2c, to_channels, to_complex
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
