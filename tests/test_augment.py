"""Training augmentation: every dihedral orientation, bounded intensities, seeded, and pairs of
the same augmented slice."""

from __future__ import annotations

import pytest
import torch

from mri_n2n.corruptions import MRIUndersampling, seeded_generator
from mri_n2n.corruptions.augment import augment_batch
from mri_n2n.sampling import exp_decay_density


def _orientations(h: int, w: int, n: int = 400) -> dict[tuple[int, int], int]:
    x = torch.zeros(n, 1, h, w)
    x[:, 0, 1, 2] = 1.0  # one bright pixel off every symmetry axis
    out = augment_batch(x, seeded_generator(0))
    counts: dict[tuple[int, int], int] = {}
    for img in out[:, 0]:
        idx = divmod(int(img.argmax()), w)
        counts[idx] = counts.get(idx, 0) + 1
    return counts


def test_square_images_take_all_eight_orientations_evenly():
    counts = _orientations(8, 8)
    assert len(counts) == 8
    assert all(abs(c / 400 - 1 / 8) < 0.06 for c in counts.values())  # 4 binomial std


def test_non_square_images_are_only_flipped():
    counts = _orientations(8, 10)
    assert set(counts) == {(1, 2), (6, 2), (1, 7), (6, 7)}


def test_intensities_stay_normalised_and_draws_are_seeded():
    x = torch.rand(16, 1, 32, 32)
    a = augment_batch(x, seeded_generator(3))
    b = augment_batch(x, seeded_generator(3))
    assert torch.equal(a, b) and a.shape == x.shape
    assert a.min() >= 0 and a.flatten(1).amax(1).max() <= 1.0 + 1e-6
    peaks = a.flatten(1).amax(1)
    assert peaks.min() < 0.8 and peaks.max() > 0.9  # scaled in [0.7, 1]
    assert not torch.equal(a, augment_batch(x, seeded_generator(4)))


def test_complex_images_get_a_smooth_phase_and_keep_their_support():
    mag = torch.zeros(4, 1, 32, 32)
    mag[:, :, 8:24, 8:24] = 1.0
    x = torch.cat([mag, torch.zeros_like(mag)], dim=1)  # real-valued complex images
    out = augment_batch(x, seeded_generator(1))
    z = torch.complex(out[:, 0], out[:, 1])
    assert torch.equal(z.abs() > 0, mag[:, 0] > 0)  # the centred square maps onto itself
    assert z.abs().max() <= 1.0 + 1e-6
    inner = z[:, 8:24, 8:24]
    assert torch.angle(inner).std() > 0.1  # a phase was added
    step = torch.angle(inner[:, 1:] * inner[:, :-1].conj())  # neighbour phase differences, unwrapped
    assert step.abs().mean() < 0.2  # and it is smooth (i.i.d. phases would average pi/2)


def test_pairs_are_two_observations_of_the_same_augmented_slice():
    clean = torch.rand(3, 1, 32, 32)
    corr = MRIUndersampling(exp_decay_density((32, 32), fraction=0.3), augment=True)
    n2c = corr.pair(clean, generator=seeded_generator(7), target="clean")
    assert torch.equal(n2c.target, augment_batch(clean, seeded_generator(7)))
    # the data consistency target: the input's measurements come from the augmented slice
    plain = MRIUndersampling(exp_decay_density((32, 32), fraction=0.3))
    unaugmented = plain.pair(clean, generator=seeded_generator(7), target="clean").target
    assert torch.equal(unaugmented, clean) and not torch.equal(unaugmented, n2c.target)


def test_deformations_warp_every_channel_alike_and_keep_their_range():
    """random_deformation: seeded, one map per sample for all its channels (real and imaginary
    parts stay one complex image), the identity reproduces the input, areas change by the drawn
    scales only (a disc keeps 0.85^2..1.15^2 of its area), and --deform reaches the pairs."""
    from mri_n2n.config import Config, ConfigError, resolve_config
    from mri_n2n.corruptions import augment as aug

    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    disc = (((yy - 23.5) ** 2 + (xx - 23.5) ** 2) < 12**2).float()
    x = torch.stack([disc, 0.5 * disc], 0)[None].repeat(32, 1, 1, 1)
    a = aug.random_deformation(x, seeded_generator(5))
    assert torch.equal(a, aug.random_deformation(x, seeded_generator(5))) and a.shape == x.shape
    assert torch.allclose(a[:, 1], 0.5 * a[:, 0], atol=1e-6)  # both channels moved together
    ratio = a[:, 0].sum((1, 2)) / disc.sum()
    assert 0.85**2 * 0.95 < ratio.min() and ratio.max() < 1.15**2 * 1.05 and ratio.std() > 0.02
    moved = (a[:, 0] - disc).abs().sum((1, 2)) / disc.sum()
    assert moved.min() > 0.01  # every sample is warped

    saved = (aug.MAX_ROTATION, aug.SCALE_RANGE, aug.MAX_SHEAR, aug.MAX_TRANSLATION, aug.ELASTIC_AMPLITUDE)
    try:
        aug.MAX_ROTATION, aug.SCALE_RANGE, aug.MAX_SHEAR, aug.MAX_TRANSLATION = 0.0, (1.0, 1.0), 0.0, 0.0
        aug.ELASTIC_AMPLITUDE = 0.0
        assert torch.allclose(aug.random_deformation(x, seeded_generator(5)), x, atol=1e-5)
    finally:
        (aug.MAX_ROTATION, aug.SCALE_RANGE, aug.MAX_SHEAR, aug.MAX_TRANSLATION, aug.ELASTIC_AMPLITUDE) = saved

    clean = torch.rand(3, 1, 32, 32)
    corr = MRIUndersampling(exp_decay_density((32, 32), fraction=0.3), augment=True, deform=True)
    pair = corr.pair(clean, generator=seeded_generator(7), target="clean")
    assert torch.equal(pair.target, augment_batch(clean, seeded_generator(7), deform=True))
    assert corr.config()["deform"] is True
    cfg, _ = resolve_config(Config(task="mri", preset="cpu", deform=True))
    assert cfg.augment and cfg.deform
    try:
        resolve_config(Config(task="mri", preset="tiny", deform=True))
    except ConfigError as e:
        assert "--augment" in str(e)
    else:
        raise AssertionError("--deform without --augment was accepted")


def _resized_draws(fn, x: torch.Tensor, n: int = 12):
    """``fn(x)`` (a crop or rescale, never kept whole, sides of at least 8) for seeds ``0..n-1``,
    each checked to be seeded (the same output twice) and within ``[8, full]`` per side."""
    for seed in range(n):
        a = fn(x, seeded_generator(seed), min_size=8, keep_whole=0.0)
        assert torch.equal(a, fn(x, seeded_generator(seed), min_size=8, keep_whole=0.0))
        h, w = a.shape[-2:]
        assert 8 <= h <= x.shape[-2] and 8 <= w <= x.shape[-1] and a.shape[:2] == x.shape[:2]
        yield a


def test_random_crops_are_windows_on_content_one_size_per_batch():
    """random_crop: seeded; every sample of a batch gets the same matrix, within
    [min_size, full]; each output is an exact window of its input (no resampling); windows are
    centred on content, so a slice that is empty but for a small blob keeps the blob in every
    crop; ``keep_whole=1`` is the identity; both real/imaginary channels are cut alike."""
    from mri_n2n.corruptions.augment import random_crop

    x = torch.zeros(16, 2, 64, 48)
    x[:, 0, 40:44, 5:9] = torch.rand(16, 4, 4) + 0.5  # the only content, off-centre
    x[:, 1] = 0.5 * x[:, 0]
    sizes = set()
    for a in _resized_draws(random_crop, x):
        h, w = a.shape[-2:]
        sizes.add((h, w))
        assert (a[:, 0].flatten(1).sum(1) > 0).all()  # the blob is in every window
        assert torch.allclose(a[:, 1], 0.5 * a[:, 0])
        for i in range(0, 16, 5):  # an exact window of the input
            windows = [(r, q) for r in range(64 - h + 1) for q in range(48 - w + 1)]
            assert any(torch.equal(a[i], x[i, :, r : r + h, q : q + w]) for r, q in windows)
    assert len(sizes) >= 10  # the size is drawn, not fixed
    assert torch.equal(random_crop(x, seeded_generator(0), keep_whole=1.0), x)


def _first_resized_pair(corr: MRIUndersampling, clean: torch.Tensor):
    """The first Noise2Noise pair (seeds 0, 1, ...) whose batch was cut or resampled."""
    for seed in range(40):
        pair = corr.pair(clean, generator=seeded_generator(seed), target="noisy")
        if pair.input.shape[-2:] != clean.shape[-2:]:
            return pair
    raise AssertionError("no batch was resized in 40 draws")


def test_crop_pairs_use_the_mask_law_at_the_crop_size():
    """--crop: a pair of a cropped batch is observed through the family rebuilt at the crop's
    size (same name and parameters), its keep rates equal that law's density (Monte Carlo), the
    input is the compensated zero-filled image of exactly those measurements, and the flag needs
    --augment and a named family."""
    from mri_n2n.config import Config, ConfigError, resolve_config
    from mri_n2n.masks import hermitian_complete, make_family
    from mri_n2n.physics import SpectralSampling

    fam = make_family("gaussian", (64, 64), fraction=0.2, hermitian=True)
    corr = MRIUndersampling(fam, augment=True, crop=True)
    assert corr.config()["crop"] is True
    law, dens = corr.law_at((40, 24))
    assert law.shape == (40, 24) and law.name == "gaussian"
    direct = make_family("gaussian", (40, 24), fraction=0.2, hermitian=True)
    assert torch.allclose(dens, direct.real_keep_probability())
    assert corr.law_at((64, 64))[1] is corr.keep_prob
    rate = hermitian_complete(law.sample(4000, generator=seeded_generator(1))).float().mean(0)
    assert (rate - dens).abs().max() < 0.035  # 4000 draws: 4.5 standard errors at p = 0.5

    clean = torch.rand(4, 1, 64, 64)
    cut = _first_resized_pair(corr, clean)
    shape = tuple(cut.input.shape[-2:])
    _, d = corr.law_at(shape)
    assert torch.equal(cut.target_acq.keep_prob, d)
    assert cut.acq.mask.shape[-2:] == shape and cut.target.shape[-2:] == shape
    zf = SpectralSampling(cut.acq.mask).zero_filled(cut.acq.y, d).real
    assert torch.allclose(cut.input, zf, atol=1e-6)

    cfg, _ = resolve_config(Config(task="mri", preset="cpu", crop=True))
    assert cfg.augment and cfg.crop
    with pytest.raises(ConfigError, match="--augment"):
        resolve_config(Config(task="mri", preset="tiny", crop=True))
    with pytest.raises(ValueError, match="named mask family"):
        MRIUndersampling(exp_decay_density((32, 32), fraction=0.3), augment=True, crop=True)


def test_random_rescale_is_a_truncated_spectrum_of_the_same_field_of_view():
    """random_rescale: seeded, one coarser matrix per batch within [min_size, full]; each output
    is exactly the central block of its input's centred spectrum (the orthonormal factor undone),
    so a band-limited image keeps its values at the coarse grid's points and its mean; a real
    one-channel image stays real; ``keep_whole=1`` is the identity; --rescale needs --augment."""
    from mri_n2n.config import Config, ConfigError, resolve_config
    from mri_n2n.corruptions.augment import random_rescale
    from mri_n2n.fft import fft2c

    g = seeded_generator(3)
    x = torch.randn(4, 2, 64, 48, generator=g)
    sizes = set()
    for a in _resized_draws(random_rescale, x):
        h, w = a.shape[-2:]
        sizes.add((h, w))
        k = fft2c(torch.complex(x[:, 0], x[:, 1]))
        ks = fft2c(torch.complex(a[:, 0], a[:, 1])) * ((64 * 48) / (h * w)) ** 0.5
        top, left = 32 - h // 2, 24 - w // 2
        assert torch.allclose(ks, k[..., top : top + h, left : left + w], atol=1e-4)
    assert len(sizes) >= 10
    assert torch.equal(random_rescale(x, seeded_generator(0), keep_whole=1.0), x)

    # a smooth (band-limited) image sampled on the coarse grid: the same function, same scale
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    smooth = 1 + 0.5 * torch.cos(2 * torch.pi * 2 * yy / 64) * torch.sin(2 * torch.pi * 3 * xx / 64)
    small = random_rescale(smooth[None, None], seeded_generator(5), min_size=16, keep_whole=0.0)
    h, w = small.shape[-2:]
    assert small.shape[1] == 1
    # coarse pixel j sits at 32 + (j - n // 2) * 64 / n of the fine grid (the centres coincide)
    ys, xs = torch.meshgrid(32 + (torch.arange(h) - h // 2) * 64.0 / h,
                            32 + (torch.arange(w) - w // 2) * 64.0 / w, indexing="ij")
    expect = 1 + 0.5 * torch.cos(2 * torch.pi * 2 * ys / 64) * torch.sin(2 * torch.pi * 3 * xs / 64)
    assert torch.allclose(small[0, 0], expect, atol=1e-4)
    with pytest.raises(ConfigError, match="--augment"):
        resolve_config(Config(task="mri", preset="tiny", rescale=True))


def test_rescale_pairs_use_the_mask_law_at_the_coarse_size():
    """--rescale: a pair of a resampled batch is observed through the family rebuilt at that
    size, and its input is the compensated zero-filled image of exactly those measurements."""
    from mri_n2n.masks import make_family
    from mri_n2n.physics import Acquisition

    fam = make_family("lines_equispaced", (64, 64), acceleration=4.0, center_fraction=0.08)
    corr = MRIUndersampling(fam, augment=True, rescale=True, complex_data=True)
    assert corr.config()["rescale"] is True
    clean = torch.rand(2, 2, 64, 64)
    cut = _first_resized_pair(corr, clean)
    shape = tuple(cut.input.shape[-2:])
    law, d = corr.law_at(shape)
    assert law.name == "lines_equispaced" and torch.equal(cut.target_acq.keep_prob, d)
    zf = Acquisition(cut.acq.mask, keep_prob=d).with_data(cut.acq.y).zero_filled()
    assert torch.allclose(cut.input, torch.cat([zf.real, zf.imag], 1), atol=1e-5)


def _coil_batch(b: int = 3, shape: tuple[int, int] = (64, 48), coils: int = 6):
    from mri_n2n.coils import birdcage_maps
    from mri_n2n.fft import fft2c
    from mri_n2n.physics import CartesianAcquisition

    maps = birdcage_maps(shape, coils)[None].expand(b, -1, -1, -1)
    x = torch.zeros(b, *shape, dtype=torch.complex64)
    x[:, 20:40, 10:30] = 1 + 0.5j
    x[:, 25:30, 15:20] = 0.3
    full = torch.ones(b, *shape, dtype=torch.bool)
    return CartesianAcquisition(full, maps, None).with_data(fft2c(maps * x[:, None])), x


def test_coil_data_are_cut_and_resampled_with_their_maps():
    """resize_acquisition (multi-coil --crop / --rescale): a crop is an exact window of the coil
    images and of the maps alike (the SENSE model stays exact, the maps keep sum |S|^2 = 1);
    a rescale truncates the coil images' spectra and renormalises the resampled maps (the
    model's mismatch stays small); the new acquisition is fully sampled at the new matrix."""
    from mri_n2n.corruptions.augment import resize_acquisition, truncate_spectrum

    acq, _ = _coil_batch()
    u0 = acq.coil_images()
    for seed in range(6):
        cut = resize_acquisition(acq, seeded_generator(seed), crop=True, keep_whole=0.0, min_size=16)
        u, m = cut.coil_images(), cut.maps
        h, w = u.shape[-2:]
        assert (h, w) != (64, 48) and cut.mask.all() and cut.mask.shape == (3, h, w)
        for i in range(3):  # one window for the coil images and the maps
            hits = [(r, q) for r in range(64 - h + 1) for q in range(48 - w + 1)
                    if torch.allclose(u[i], u0[i, :, r : r + h, q : q + w], atol=1e-5)]
            assert hits and any(torch.allclose(m[i], acq.maps[i, :, r : r + h, q : q + w]) for r, q in hits)
        x = (m.conj() * u).sum(1, keepdim=True)
        assert (u - m * x).abs().square().sum() < 1e-10 * u.abs().square().sum()

        small = resize_acquisition(acq, seeded_generator(seed), rescale=True, keep_whole=0.0, min_size=16)
        u, m = small.coil_images(), small.maps
        assert torch.allclose(u, truncate_spectrum(u0, tuple(u.shape[-2:])), atol=1e-5)
        assert torch.allclose(m.abs().square().sum(1), torch.ones(()), atol=1e-5)
        x = (m.conj() * u).sum(1, keepdim=True)
        assert (u - m * x).abs().square().sum() < 2e-3 * u.abs().square().sum()
    assert resize_acquisition(acq, seeded_generator(0), crop=True, rescale=True, keep_whole=1.0) is acq


def test_multicoil_pairs_with_crop_and_rescale_use_the_law_at_the_new_size():
    """A multi-coil corruption built from a config with --augment --crop --rescale cuts and
    resamples its fully sampled coil batches, and observes them through the law rebuilt at the
    new matrix (keep probabilities and masks of that size)."""
    from mri_n2n.config import Config, resolve_config
    from mri_n2n.corruptions.mri import MultiCoilUndersampling

    cfg = Config(task="mri", preset="cpu", density="mixed", augment=True, crop=True, rescale=True)
    cfg, _ = resolve_config(cfg)
    corr = MRIUndersampling.from_config(cfg, (64, 48), coils=6)
    assert isinstance(corr, MultiCoilUndersampling) and corr.crop and corr.rescale
    acq, _ = _coil_batch()
    shapes = set()
    for seed in range(12):
        pair = corr.pair(acq, generator=seeded_generator(seed), target="noisy")
        shape = tuple(pair.input.shape[-2:])
        shapes.add(shape)
        assert pair.acq.mask.shape[-2:] == shape and pair.acq.maps.shape[-2:] == shape
        # "mixed" draws a protocol per item: each item's keep probability is its own, at that size
        assert pair.target_acq.keep_prob.shape == (3, *shape)
        assert ((pair.acq.mask.float().mean(0) > 0) <= (pair.target_acq.keep_prob.amax(0) > 0)).all()
    assert (64, 48) in shapes and len(shapes) >= 4
    plain = MRIUndersampling.from_config(cfg.replace(crop=False, rescale=False), (64, 48), coils=6)
    assert not (plain.crop or plain.rescale)
