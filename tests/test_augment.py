"""Training augmentation: every dihedral orientation, bounded intensities, seeded, and pairs of
the same augmented slice."""

from __future__ import annotations

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
