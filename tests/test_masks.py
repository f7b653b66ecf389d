"""Mask families: keep rates equal the exact law, exact data consistency for every family (real
and complex), unbiased compensation, descriptions round-trip, estimates from observed masks."""

import math

import pytest
import torch

from mri_n2n.corruptions import MRIUndersampling, seeded_generator
from mri_n2n.fft import fft2c, ifft2c
from mri_n2n.masks import (
    DENSITIES,
    EquispacedLines,
    complete_measurements,
    estimate_family,
    family_from_description,
    hermitian_complete,
    make_family,
)
from mri_n2n.sampling import hermitian_partner

SHAPE = (24, 64)


def _family(name, hermitian, shape=SHAPE):
    return make_family(name, shape, fraction=0.2, acceleration=4, center_fraction=0.08, hermitian=hermitian)


def _assert_rate(masks, p, n):
    """Empirical keep rate within 5 binomial standard errors of ``p`` at every bin."""
    rate = masks.double().mean(0)
    se = torch.sqrt(p.double() * (1 - p.double()) / n).clamp_min(1e-12)
    z = ((rate - p.double()).abs() / se)[(p > 0) & (p < 1)]
    assert float(z.max()) < 5.5
    assert torch.equal(rate[p >= 1], torch.ones_like(rate[p >= 1]))  # always-kept bins: always


@pytest.mark.parametrize("name", DENSITIES)
@pytest.mark.parametrize("hermitian", [False, True])
def test_keep_rate_equals_the_law(name, hermitian):
    fam = _family(name, hermitian)
    n = 6000
    m = fam.sample(n, generator=seeded_generator(3))
    assert m.shape == (n, *SHAPE) and m.dtype == torch.bool
    _assert_rate(m, fam.keep_probability(), n)
    _assert_rate(hermitian_complete(m), fam.real_keep_probability(), n)
    if fam.hermitian:  # drawn conjugate-symmetric: the completion changes nothing
        assert torch.equal(hermitian_complete(m), m)
    if name.startswith("lines_"):
        assert torch.equal(m, m[:, :1].expand_as(m))  # whole phase-encode lines
        n_c = round(SHAPE[1] * 0.08)  # lattice: every 4th line plus the centre lines off it
        expected = 0.25 + n_c * 0.75 / SHAPE[1] if name == "lines_lattice" else 0.25
        assert abs(fam.fraction - expected) < 0.02


def test_hermitian_random_lines_keep_each_column_at_its_probability():
    """The old code OR-ed each column with its mirror: column 138 of 256 was always kept while
    the compensation used p = 0.186."""
    fam = make_family("lines_random", (4, 256), acceleration=4, center_fraction=0.08, hermitian=True)
    n = 20000
    cols = fam.sample(n, generator=seeded_generator(1))[:, 0]
    pj = hermitian_partner(256)
    assert torch.equal(cols, cols[:, pj])
    p = fam.keep_probability()[0]
    _assert_rate(cols, p, n)
    assert float(p[138]) == 1.0  # the even centre block's mirror column: kept, and the law says so
    assert float(p[139]) < 0.25 and abs(float(cols[:, 139].double().mean()) - float(p[139])) < 0.01


def test_equispaced_law_is_the_mixture_over_offsets():
    fam = EquispacedLines((8, 100), acceleration=4, center_fraction=0.08, mode="fraction")
    rows = fam.table
    assert torch.allclose(fam.keep_probability()[0], rows.double().mean(0).float())
    assert abs(rows.double().sum(1).mean().item() - 25) < 1.5  # about W / R lines per mask
    lattice = EquispacedLines((8, 100), acceleration=4, center_fraction=0.08, mode="lattice")
    start = (100 - 8 + 1) // 2
    assert torch.equal(lattice.table[1, 1:100:4], torch.ones(25, dtype=torch.bool))
    assert lattice.table[:, start : start + 8].all()
    with pytest.raises(ValueError, match="integer acceleration"):
        EquispacedLines((8, 100), acceleration=2.5, mode="lattice")
    with pytest.raises(ValueError, match="central lines"):
        make_family("lines_random", (8, 100), acceleration=8, center_fraction=0.2)


def _real(b, h, w, seed):
    return torch.rand(b, 1, h, w, generator=seeded_generator(seed))


def _smooth_complex(b, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(b, 1, h, w, generator=g) + 0.2
    phase = torch.linspace(0, 2.0, w)[None, None, None, :] + torch.linspace(0, 1.0, h)[None, None, :, None]
    z = img * torch.exp(1j * phase)
    return torch.cat([z.real, z.imag], 1).float()


@pytest.mark.parametrize("name", DENSITIES)
@pytest.mark.parametrize("complex_data", [False, True])
def test_data_consistency_is_exact_on_every_sampled_frequency(name, complex_data):
    h, w = SHAPE
    fam = _family(name, hermitian=not complex_data)
    corr = MRIUndersampling(fam, complex_data=complex_data)
    clean = _smooth_complex(3, h, w, 0) if complex_data else _real(3, h, w, 0)
    raw = fam.sample(3, generator=seeded_generator(7))  # the acquisition, as drawn
    pair = corr.measure(clean, raw)
    out = corr.project(torch.randn(3, 2 if complex_data else 1, h, w), pair.context)
    k_out = fft2c(torch.complex(out[:, 0], out[:, 1]) if complex_data else out[:, 0].double())
    k_true = fft2c(torch.complex(clean[:, 0], clean[:, 1]) if complex_data else clean[:, 0].double())
    err = (k_out - k_true).abs()[raw].max() / k_true.abs().max()
    assert float(err) < 1e-5  # was 4.6 % for real images with equispaced lines
    if not complex_data:  # and the image stays real: the model's mask is the completion
        assert torch.equal(pair.context["mask"], hermitian_complete(raw))


@pytest.mark.parametrize("name", ["lines_equispaced", "lines_lattice"])
@pytest.mark.parametrize("complex_data", [False, True])
def test_compensated_zero_filled_is_exactly_unbiased_for_equispaced(name, complex_data):
    """The law is a uniform mixture over offsets: the average over every possible mask of the
    ``1/p`` compensated zero-filled image is the image itself, to round-off, on every frequency
    the family can sample (fastMRI's equispaced_fraction never samples a few columns: rounded
    non-integer spacings skip them for every offset)."""
    h, w = SHAPE
    fam = _family(name, hermitian=False)
    corr = MRIUndersampling(fam, complex_data=complex_data)
    clean = _smooth_complex(1, h, w, 2) if complex_data else _real(1, h, w, 2)
    masks = fam.table[:, None, :].expand(fam.table.shape[0], h, w)
    inputs = corr.measure(clean.expand(len(masks), -1, -1, -1), masks).input.double().mean(0)
    if complex_data:
        k_mean, k_true = fft2c(torch.complex(inputs[0], inputs[1])), fft2c(torch.complex(*clean[0].double()))
    else:
        k_mean, k_true = fft2c(inputs[0]), fft2c(clean[0, 0].double())
    reachable = corr.density > 0
    assert torch.allclose(k_mean[reachable], k_true[reachable], atol=1e-4)
    assert float(reachable.float().mean()) > 0.9


@pytest.mark.parametrize("name", ["exp", "lines_random", "lines_gaussian"])
def test_compensated_zero_filled_is_unbiased_for_independent_families(name):
    h, w = SHAPE
    fam = _family(name, hermitian=True)
    corr = MRIUndersampling(fam)
    clean = torch.rand(1, 1, h, w, generator=seeded_generator(5))
    n, acc = 4000, torch.zeros(1, h, w, dtype=torch.float64)
    g = seeded_generator(9)
    for _ in range(n // 500):
        acc += corr.measure(clean.expand(500, -1, -1, -1), fam.sample(500, generator=g)).input.double().sum(0)
    bias = (acc / n - clean[0]).norm()
    # the standard error of the mean: per frequency |k|^2 (1 - p) / p / n, partner bins correlated
    k2 = fft2c(clean[0, 0].double()).abs().square()
    p = corr.density.double()
    se = math.sqrt(2 * float((k2 * (1 - p) / p).sum()) / n)
    assert float(bias) < 3 * se
    assert float(bias) < 0.05 * float(clean.norm())


def test_completion_is_exact_for_a_real_image():
    x = torch.rand(2, *SHAPE, dtype=torch.float64)
    k = fft2c(x)
    raw = _family("lines_equispaced", False).sample(2, generator=seeded_generator(1))
    yc, mc = complete_measurements(k * raw, raw)
    assert torch.allclose(yc, k * mc, atol=1e-12)
    assert mc.sum() > raw.sum()
    assert torch.allclose(ifft2c(yc).imag, torch.zeros(2, *SHAPE, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("name", DENSITIES)
def test_descriptions_round_trip(name):
    fam = _family(name, hermitian=name != "lines_equispaced")
    again = family_from_description(fam.describe())
    assert again == fam and torch.equal(again.keep_probability(), fam.keep_probability())
    import json

    assert family_from_description(json.dumps(fam.describe())) == fam
    with pytest.raises(ValueError, match="mask law"):
        family_from_description('{"family": "spiral", "shape": [8, 8]}')
    with pytest.raises(ValueError, match="JSON"):
        family_from_description("{not json")


def test_estimate_from_observed_line_masks():
    fam = _family("lines_random", hermitian=False, shape=(16, 200))
    masks = fam.sample(40, generator=seeded_generator(4))
    est = estimate_family(masks)
    p, q = est.keep_probability()[0], fam.keep_probability()[0]
    start, stop = (200 - 16 + 1) // 2, (200 - 16 + 1) // 2 + 16
    assert torch.equal(p[start:stop], torch.ones(16))  # the fully sampled centre
    outer = torch.ones(200, dtype=torch.bool)
    outer[start:stop] = False
    assert abs(float(p[outer][0]) - float(q[outer][0])) < 0.02  # the uniform rate outside
    assert torch.equal(p[outer], p[outer][0].expand(int(outer.sum())))
    est2d = estimate_family(_family("exp", True, shape=(48, 48)).sample(200, generator=seeded_generator(4)))
    d = est2d.keep_probability()
    assert d[24, 24] == 1 and d[0, 0] < 0.1 and (d > 0).all()
