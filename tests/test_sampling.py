"""Sampling densities and masks: the paper's density, keep rates, Hermitian symmetry, seeding."""

import math

import pytest
import torch

from mri_n2n.masks import line_mask
from mri_n2n.sampling import (
    bernoulli_mask,
    exp_decay_density,
    gaussian_density,
    hermitian_partner,
    line_density,
    make_density,
    uniform_density,
)


def test_paper_density_at_256():
    d = exp_decay_density(256)
    assert d.shape == (256, 256)
    assert d[128, 128] == 1.0
    lam = math.log(40) / 127
    assert torch.isclose(d[128, 255], torch.tensor(math.exp(-lam * 127)), rtol=1e-5)
    assert torch.isclose(d[128, 255], torch.tensor(0.025), rtol=1e-4)
    assert 0.095 < d.mean().item() < 0.11  # "about 10 %"
    assert (d > 0).all() and (d <= 1).all()


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.25])
@pytest.mark.parametrize("shape", [(256, 256), (64, 80), (33, 47)])
def test_fraction_is_solved(shape, fraction):
    for d in (exp_decay_density(shape, fraction=fraction), gaussian_density(shape, fraction=fraction)):
        assert abs(d.mean().item() - fraction) < 1e-4
        assert d[shape[0] // 2, shape[1] // 2] == pytest.approx(1.0)
        assert (d > 0).all() and (d <= 1).all()
    assert uniform_density(shape, fraction=fraction).mean().item() == pytest.approx(fraction)


def test_bad_fraction_rejected():
    with pytest.raises(ValueError, match="fraction"):
        exp_decay_density(64, fraction=1.5)
    with pytest.raises(ValueError, match="unknown density"):
        make_density("spiral", 64)


@pytest.mark.parametrize("hermitian", [False, True])
def test_keep_rate_matches_density(hermitian):
    d = exp_decay_density(256)
    g = torch.Generator().manual_seed(0)
    m = bernoulli_mask(d, generator=g, batch_size=64, hermitian=hermitian)
    assert m.dtype == torch.bool and m.shape == (64, 256, 256)
    rate = m.float().mean().item()
    assert abs(rate / d.mean().item() - 1) < 0.01
    # per-bin: the empirical keep frequency follows p(k) (centre always kept, edge rare)
    freq = m.float().mean(0)
    assert freq[128, 128] == 1.0
    ring = (freq - d).abs().mean().item()
    assert ring < 0.03


@pytest.mark.parametrize("shape", [(8, 8), (7, 9), (256, 256), (255, 129)])
def test_hermitian_symmetry(shape):
    h, w = shape
    g = torch.Generator().manual_seed(1)
    m = bernoulli_mask(exp_decay_density(shape, fraction=0.3), generator=g, batch_size=5, hermitian=True)
    pi, pj = hermitian_partner(h), hermitian_partner(w)
    assert torch.equal(m, m[:, pi][:, :, pj])
    # not trivially symmetric without the flag
    m2 = bernoulli_mask(exp_decay_density(shape, fraction=0.3), generator=g, batch_size=5)
    if h * w > 64:
        assert not torch.equal(m2, m2[:, pi][:, :, pj])


def test_hermitian_partner_is_frequency_negation():
    for n in (6, 7):
        f = torch.arange(n) - n // 2
        p = hermitian_partner(n)
        assert torch.equal((f[p] + f) % n, torch.zeros(n, dtype=torch.long))
        assert torch.equal(p[p], torch.arange(n))


def test_seeding():
    d = exp_decay_density(64)
    a = bernoulli_mask(d, generator=torch.Generator().manual_seed(5), batch_size=2, hermitian=True)
    b = bernoulli_mask(d, generator=torch.Generator().manual_seed(5), batch_size=2, hermitian=True)
    c = bernoulli_mask(d, generator=torch.Generator().manual_seed(6), batch_size=2, hermitian=True)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # independent within a batch
    assert bernoulli_mask(d, generator=torch.Generator().manual_seed(5)).shape == (64, 64)


def test_line_masks():
    shape = (64, 320)
    d = line_density(shape, acceleration=4, center_fraction=0.08)
    assert d.mean().item() == pytest.approx(0.25, abs=1e-6)
    g = torch.Generator().manual_seed(2)
    m = line_mask(shape, acceleration=4, center_fraction=0.08, generator=g, batch_size=400)
    assert m.shape == (400, 64, 320)
    assert torch.equal(m, m[:, :1].expand_as(m))  # whole columns
    assert abs(m.float().mean().item() - 0.25) < 0.01
    n_center = round(320 * 0.08)
    start = (320 - n_center + 1) // 2
    assert m[:, :, start : start + n_center].all()
    e = line_mask(shape, acceleration=4, center_fraction=0.08, kind="equispaced", generator=g, batch_size=3)
    assert abs(e[:, 0].float().mean().item() - 0.25) < 0.03
    mh = line_mask(shape, generator=g, batch_size=8, hermitian=True)
    pj = hermitian_partner(320)
    assert torch.equal(mh, mh[:, :, pj])
