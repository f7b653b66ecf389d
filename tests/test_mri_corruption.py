"""The MRI corruption: pair statistics, independence, data consistency, determinism."""

import pytest
import torch

from mri_n2n.config import Config
from mri_n2n.corruptions import MRIUndersampling, random_shift, seeded_generator
from mri_n2n.fft import fft2c
from mri_n2n.sampling import exp_decay_density


def _phantom(n=32, b=1):
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    img = ((xx**2 / 0.6 + yy**2 / 0.8) < 1).float() * 0.6 + ((xx - 0.2) ** 2 + yy**2 < 0.05).float() * 0.4
    return img.expand(b, 1, n, n).clone()


def test_n2n_targets_average_to_clean():
    clean = _phantom(32)
    corr = MRIUndersampling(exp_decay_density(32, fraction=0.3), max_shift=0)
    g = seeded_generator(0)
    acc = torch.zeros_like(clean)
    n = 1500
    first = None
    for _ in range(n // 50):
        p = corr.pair(clean.expand(50, 1, 32, 32), generator=g, target="noisy")
        acc += p.target.sum(0, keepdim=True)
        first = p.target[:1] if first is None else first
    mean = acc / n
    err_mean = (mean - clean).norm() / clean.norm()
    err_single = (first - clean).norm() / clean.norm()
    assert err_mean < 0.05
    assert err_mean < err_single / 5


def test_n2c_target_is_clean_and_masks_are_independent():
    clean = _phantom(32, b=4)
    corr = MRIUndersampling(exp_decay_density(32), max_shift=0)
    p = corr.pair(clean, generator=seeded_generator(1), target="clean")
    assert torch.equal(p.target, clean)
    q = corr.pair(clean, generator=seeded_generator(1), target="noisy")
    assert not torch.allclose(q.input, q.target)  # a second, independent mask
    m = q.context["mask"]
    assert not torch.equal(m[0], m[1])  # independent per sample
    with pytest.raises(ValueError, match="target"):
        corr.pair(clean, generator=seeded_generator(1), target="mean")


def test_projection_restores_measured_frequencies():
    clean = _phantom(32, b=2)
    corr = MRIUndersampling(exp_decay_density(32), max_shift=8)
    p = corr.pair(clean, generator=seeded_generator(2))
    out = corr.project(torch.randn(2, 1, 32, 32), p.context)
    k = fft2c(out)[:, 0]
    m = p.context["mask"]
    assert torch.allclose(k[m], p.context["kspace"][:, 0][m], atol=1e-5)
    assert not out.is_complex() and out.dtype == torch.float32


def test_input_is_real_density_compensated_zero_fill():
    clean = _phantom(32, b=2)
    d = exp_decay_density(32)
    corr = MRIUndersampling(d, max_shift=0)
    p = corr.pair(clean, generator=seeded_generator(3))
    # the input's spectrum is y / p on the mask and 0 elsewhere
    k = fft2c(p.input)[:, 0]
    m = p.context["mask"]
    expect = torch.where(m, p.context["kspace"][:, 0] / d, torch.zeros_like(k))
    assert torch.allclose(k, expect, atol=1e-4)


def test_validation_pairs_are_fixed_per_identity():
    clean = _phantom(32, b=3)
    corr = MRIUndersampling(exp_decay_density(32), max_shift=8)
    a = corr.validation_pair(clean, torch.tensor([5, 6, 7]))
    b = corr.validation_pair(clean, torch.tensor([5, 6, 7]))
    c = corr.validation_pair(clean, torch.tensor([5, 6, 8]))
    assert torch.equal(a.input, b.input) and torch.equal(a.target, clean)
    assert torch.equal(a.input[:2], c.input[:2]) and not torch.equal(a.input[2], c.input[2])


def test_random_shift_is_circular_and_bounded():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).expand(6, 1, 4, 4)
    y = random_shift(x, 1, seeded_generator(4))
    for i in range(6):
        found = any(
            torch.equal(torch.roll(x[i], (dy, dx), (-2, -1)), y[i]) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
        )
        assert found
    assert torch.equal(random_shift(x, 0, seeded_generator(4)), x)


def test_complex_data_and_line_masks_from_config():
    cfg = Config(density="lines_random", acceleration=4, center_fraction=0.1, shift=0)
    corr = MRIUndersampling.from_config(cfg.replace(complex=True), (32, 32))
    clean = torch.randn(2, 2, 32, 32)
    p = corr.pair(clean, generator=seeded_generator(5))
    assert p.input.shape == (2, 2, 32, 32)
    m = p.context["mask"]
    assert torch.equal(m, m[:, :1].expand_as(m))  # whole lines
    out = corr.project(torch.randn(2, 2, 32, 32), p.context)
    k = fft2c(torch.complex(out[:, 0], out[:, 1]))
    assert torch.allclose(k[m], p.context["kspace"][:, 0][m], atol=1e-5)
    default = MRIUndersampling.from_config(Config(), (64, 64))
    assert default.max_shift == 16 and abs(default.density.mean().item() - 0.1) < 1e-4
