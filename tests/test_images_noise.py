"""Statistics of the photographic corruptions (tolerances are 5 standard errors unless noted)."""

import math

import pytest
import torch

from mri_n2n.corruptions import NOISES, Corruption, default_loss, make_corruption
from mri_n2n.corruptions.noise import ImageCorruption, PoissonNoise
from mri_n2n.images import tonemap

SYNTHETIC = ("gaussian", "poisson", "bernoulli", "text", "impulse")


def _ramp(b: int = 8, c: int = 3, h: int = 32, w: int = 32) -> torch.Tensor:
    """Clean batch with values from exactly 0 to exactly 1 (clipping would bias both ends)."""
    x = torch.linspace(0, 1, h * w).reshape(1, 1, h, w)
    return x.expand(b, c, h, w).clone()


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_and_defaults():
    assert NOISES == ("gaussian", "poisson", "bernoulli", "text", "impulse", "montecarlo", "pairs")
    assert {n: default_loss(n) for n in NOISES} == {
        "gaussian": "l2",
        "poisson": "l2",
        "bernoulli": "l2",
        "text": "l1",
        "impulse": "l0",
        "montecarlo": "hdr",
        "pairs": "l2",
    }
    for n in NOISES:
        c = make_corruption(n)
        assert isinstance(c, ImageCorruption) and isinstance(c, Corruption) and c.task == "image"
        assert c.config()["name"] == n
    with pytest.raises(ValueError, match="gaussian, poisson"):
        make_corruption("speckle")
    with pytest.raises(ValueError, match="speckle"):
        default_loss("speckle")
    with pytest.raises(ValueError):
        make_corruption("gaussian", nonsense=1)
    with pytest.raises(ValueError):
        make_corruption("bernoulli", train_range=(0, 1.2))


def test_gaussian_unbiased_unclipped_unquantised_and_in_range():
    clean = _ramp(b=64)
    c = make_corruption("gaussian")
    pair = c.pair(clean, generator=_gen(), target="noisy")
    noise_in, noise_t = pair.input - clean, pair.target - clean
    n = noise_in.numel()
    for noise in (noise_in, noise_t):
        s = noise.std().item()
        assert abs(noise.mean().item()) < 5 * s / math.sqrt(n)
        # not clipped: below 0 and above 1 occur, and the ends are unbiased too
        ends = noise[..., :4], noise[..., -4:]
        for e in ends:
            assert abs(e.mean().item()) < 5 * s / math.sqrt(e.numel())
    assert pair.input.min() < 0 and pair.input.max() > 1
    # not quantised to 8 bits
    assert ((pair.input * 255 - (pair.input * 255).round()).abs() > 1e-3).float().mean() > 0.9
    # per-example sigma within [0, 50]/255 and spread over the range
    sig = noise_in.flatten(1).std(dim=1) * 255
    assert sig.max() < 50 * 1.05 and sig.min() < 10 and sig.max() > 40
    # test level: sigma 25/255
    v = c.validation_pair(clean, torch.arange(64))
    assert (v.input - clean).std().item() * 255 == pytest.approx(25, rel=0.02)
    assert torch.equal(v.target, clean)


@pytest.mark.parametrize("lam", [0.5, 5.0, 30.0, 50.0])
def test_poisson_unbiased_at_fixed_levels(lam):
    values = torch.tensor([0.0, 0.05, 0.2, 0.5, 1.0])
    clean = values.reshape(1, 1, 1, 5).expand(400, 3, 10, 5).contiguous()
    c = PoissonNoise(train_range=(lam, lam), test_level=lam)
    x = c.pair(clean, generator=_gen(), target="clean").input
    per_value = x.transpose(0, 3).reshape(5, -1)
    n = per_value.shape[1]
    for v, draws in zip(values.tolist(), per_value):
        sd = math.sqrt(v / lam / n)  # Poisson(lam v)/lam has variance v/lam
        assert abs(draws.mean().item() - v) <= 5 * sd + 1e-7, (lam, v)
        if v > 0:
            assert draws.var().item() == pytest.approx(v / lam, rel=0.15)
    # values are multiples of 1/lam (counts), never negative: the x + Poisson(x) defect is absent
    assert torch.allclose(x * lam, (x * lam).round(), atol=1e-3) and x.min() >= 0


def test_poisson_training_levels_and_validation_level():
    clean = torch.full((2000, 1, 4, 4), 0.5)
    c = make_corruption("poisson")
    x = c.pair(clean, generator=_gen(3), target="clean").input
    # training lambda in (0, 50]: the per-example variance x/lambda >= 0.5/50
    var = x.flatten(1).var(dim=1)
    assert (var > 0.5 / 50 * 0.2).float().mean() > 0.95
    v = c.validation_pair(torch.full((64, 3, 16, 16), 0.5), torch.arange(64)).input
    assert v.mean().item() == pytest.approx(0.5, abs=5 * math.sqrt(0.5 / 30 / v.numel()))
    assert v.var().item() == pytest.approx(0.5 / 30, rel=0.05)


def test_bernoulli_keep_rate_masks_and_valid_context():
    clean = _ramp(b=32) * 0.9 + 0.1  # strictly positive: kept pixels are non-zero
    c = make_corruption("bernoulli")
    v = c.validation_pair(clean, torch.arange(32))
    kept = (v.input != 0).float()
    n = kept[:, :1].numel()
    assert abs(kept.mean().item() - 0.5) < 5 * math.sqrt(0.25 / n)
    assert torch.equal(kept[:, :1].expand_as(kept), kept)  # whole pixels dropped
    assert torch.equal(v.input, clean * kept) and v.valid is None and v.acq is None
    pair = c.pair(clean, generator=_gen(), target="noisy")
    valid = pair.valid
    assert valid.shape == (32, 1, 32, 32)
    assert torch.equal(valid.expand_as(clean).bool(), pair.target != 0)  # the TARGET's mask
    per_example = valid.flatten(1).mean(1)
    # drop levels spread over [0, 0.95]: keep rates from near 0.05 up to near 1
    assert per_example.min() > 0.05 - 0.03 and per_example.min() < 0.2 and per_example.max() > 0.9
    # mean keep rate over training levels: 1 - E[p] = 1 - 0.475
    assert per_example.mean().item() == pytest.approx(0.525, abs=0.15)
    assert c.pair(clean, generator=_gen(), target="clean").valid is None


def test_impulse_fraction_and_colours():
    clean = torch.full((32, 3, 32, 32), 0.123)
    c = make_corruption("impulse")
    v = c.validation_pair(clean, torch.arange(32))
    hit = (v.input != clean).any(dim=1, keepdim=True)
    n = hit.numel()
    assert abs(hit.float().mean().item() - 0.70) < 5 * math.sqrt(0.21 / n)
    # whole pixels replaced by uniform colours: all channels differ, mean 1/2, variance 1/12
    assert torch.equal((v.input != clean).all(dim=1, keepdim=True), hit)
    colours = v.input[hit.expand_as(v.input)]
    assert colours.mean().item() == pytest.approx(0.5, abs=5 * math.sqrt(1 / 12 / colours.numel()))
    assert colours.var().item() == pytest.approx(1 / 12, rel=0.05)
    assert colours.min() >= 0 and colours.max() <= 1


def test_text_coverage_at_test_level():
    clean = torch.full((8, 3, 128, 128), 0.5)
    c = make_corruption("text")
    v = c.validation_pair(clean, torch.arange(8))
    covered = (v.input != clean).any(dim=1).float().flatten(1).mean(1)
    assert covered.mean().item() == pytest.approx(0.25, abs=0.01)
    assert covered.min() > 0.2 and covered.max() < 0.3
    assert v.input.min() >= 0 and v.input.max() <= 1
    # training coverage spreads over [0, 0.5]
    cov = (c.pair(clean, generator=_gen(), target="clean").input != clean).any(1).float().flatten(1).mean(1)
    assert cov.max() < 0.52 and cov.min() < 0.3


def test_text_glyph_size_does_not_depend_on_the_image_size():
    """A training crop and a whole photograph get glyphs of the same size distribution, so a network
    trained on crops sees at test time the corruption it was trained on."""
    from mri_n2n.corruptions.text import render_text_overlay

    def mean_string_area(side: int) -> float:
        areas = []
        for seed in range(6):
            mask, colours = render_text_overlay(side, side, 3, 0.25, seed)
            # every string has its own random colour: distinct colours count the visible strings
            n = len(torch.from_numpy(colours[mask]).unique(dim=0))
            areas.append(mask.sum() / n)
        return float(sum(areas) / len(areas))

    small, large = mean_string_area(64), mean_string_area(512)
    # strings clipped by the 64-px border lose part of their area, hence the tolerance; glyphs that
    # scaled with the image would make the 512-px strings about (512 / 64)^2 = 64 times larger
    assert 0.5 < large / small < 4.0


@pytest.mark.parametrize("name", SYNTHETIC)
def test_input_and_target_are_independent(name):
    clean = torch.full((16, 3, 32, 32), 0.5)
    level = make_corruption(name).test_level
    # a fixed level: with per-example levels the pooled correlation would carry the sampling
    # noise of only 16 level pairs
    c = make_corruption(name, train_range=(level, level))
    pair = c.pair(clean, generator=_gen(5), target="noisy")
    a = (pair.input - clean).flatten()
    b = (pair.target - clean).flatten()
    if name in ("bernoulli", "impulse", "text"):  # compare where the observations are corrupted
        a, b = (a != 0).float(), (b != 0).float()
    r = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    limit = 0.1 if name == "text" else 5 / math.sqrt(a.numel())  # text masks are spatially correlated
    assert abs(r) < limit, r
    assert not torch.equal(pair.input, pair.target)


@pytest.mark.parametrize("name", ["gaussian", "bernoulli"])
def test_input_and_target_levels_are_drawn_independently(name):
    clean = torch.full((64, 1, 32, 32), 0.5)
    pair = make_corruption(name).pair(clean, generator=_gen(6), target="noisy")

    def level(x: torch.Tensor) -> torch.Tensor:  # per-example estimate of the corruption level
        d = (x - clean).flatten(1)
        return d.std(1) if name == "gaussian" else (d != 0).float().mean(1)

    li, lt = level(pair.input), level(pair.target)
    assert (li - lt).abs().max() > 0.2 * li.max()  # not one shared level
    assert abs(torch.corrcoef(torch.stack([li, lt]))[0, 1].item()) < 5 / math.sqrt(64)


def test_impulse_pairs_share_the_rate_but_not_the_pixels():
    clean = torch.full((64, 3, 32, 32), 0.5)
    pair = make_corruption("impulse").pair(clean, generator=_gen(6), target="noisy")
    hit_in = (pair.input != clean).any(1).float()
    hit_t = (pair.target != clean).any(1).float()
    li, lt = hit_in.flatten(1).mean(1), hit_t.flatten(1).mean(1)
    # one rate per pair, spread over the training range [0, 0.95]: per-example hit fractions agree
    # within binomial noise (sd <= 0.5 / 32 = 0.016 per observation)
    assert li.max() - li.min() > 0.5
    assert (li - lt).abs().max() < 0.08
    # ...while the hit pixels are independent: overlap = product of the rates, not the rate
    overlap = (hit_in * hit_t).flatten(1).mean(1)
    assert torch.allclose(overlap, li * lt, atol=0.06)
    assert (overlap < li - 0.1)[(li > 0.3) & (li < 0.7)].all()


@pytest.mark.parametrize("name", SYNTHETIC)
def test_validation_is_deterministic_per_image(name):
    clean = torch.rand(3, 3, 24, 24, generator=_gen(9))
    c = make_corruption(name)
    seeds = torch.tensor([11, 12, 2**61 + 5])
    v1 = c.validation_pair(clean, seeds)
    v2 = make_corruption(name).validation_pair(clean, seeds)
    assert torch.equal(v1.input, v2.input) and torch.equal(v1.target, clean)
    # per-image seeding: an image alone gives the same result as in a batch
    alone = c.validation_pair(clean[1:2], [12])
    assert torch.equal(alone.input[0], v1.input[1])
    other = c.validation_pair(clean, torch.tensor([13, 14, 15]))
    assert not torch.equal(other.input[0], v1.input[0])
    # and training draws are reproducible from the generator
    p1 = c.pair(clean, generator=_gen(4))
    p2 = c.pair(clean, generator=_gen(4))
    assert torch.equal(p1.input, p2.input) and torch.equal(p1.target, p2.target)


def test_bad_arguments():
    c = make_corruption("gaussian")
    with pytest.raises(ValueError, match="target"):
        c.pair(torch.zeros(1, 3, 4, 4), generator=_gen(), target="other")
    with pytest.raises(ValueError, match="batch"):
        c.pair(torch.zeros(3, 4, 4), generator=_gen())
    with pytest.raises(ValueError, match="seed"):
        c.validation_pair(torch.zeros(2, 3, 4, 4), [1])


def test_pairs_split_and_swap():
    a = torch.zeros(200, 3, 4, 4)
    b = torch.ones(200, 3, 4, 4)
    clean = torch.full((200, 3, 4, 4), 0.5)
    c = make_corruption("pairs")
    pair = c.pair(torch.cat([a, b], 1), generator=_gen())
    swapped = pair.input[:, 0, 0, 0] == 1
    assert torch.equal(pair.target[:, 0, 0, 0], 1 - pair.input[:, 0, 0, 0])
    assert abs(swapped.float().mean().item() - 0.5) < 5 * math.sqrt(0.25 / 200)
    n2c = c.pair(torch.cat([a, b, clean], 1), generator=_gen(), target="clean")
    assert torch.equal(n2c.target, clean)
    with pytest.raises(ValueError, match="clean"):
        c.pair(torch.cat([a, b], 1), generator=_gen(), target="clean")
    v = c.validation_pair(torch.cat([a, clean], 1), torch.arange(200))
    assert torch.equal(v.input, a) and torch.equal(v.target, clean)
    assert torch.equal(c.inference_input(b), b)
    grey = c.pair(torch.cat([a[:, :1], b[:, :1]], 1), generator=_gen())
    assert grey.input.shape == (200, 1, 4, 4)


def test_montecarlo_tonemaps_input_keeps_target_linear():
    g = _gen(2)
    a = torch.rand(4, 3, 8, 8, generator=g) * 20
    b = torch.rand(4, 3, 8, 8, generator=g) * 20
    c = make_corruption("montecarlo")
    pair = c.pair(torch.cat([a, b], 1), generator=_gen())
    for i in range(4):
        if torch.equal(pair.target[i], b[i]):
            torch.testing.assert_close(pair.input[i], (a[i] / (1 + a[i])) ** (1 / 2.2))
        else:
            assert torch.equal(pair.target[i], a[i])
            torch.testing.assert_close(pair.input[i], tonemap(b[i]))
    assert pair.input.max() < 1 and pair.target.max() > 1
    torch.testing.assert_close(c.inference_input(a), tonemap(a))
    assert default_loss("montecarlo") == "hdr"
