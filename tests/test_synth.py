"""--dataset synth: contrast-randomised slices from the MNI152 tissue maps (mri_n2n.data.synth)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mri_n2n.config import Config, ConfigError, resolve_config
from mri_n2n.data import build_mri_datasets, mni152
from mri_n2n.data import synth as S
from mri_n2n.data.datasets import mri_datasets_from_config
from mri_n2n.seeding import seeded_generator

pytest.importorskip("nilearn")

SIZE = 64  # one size for the whole file: the maps are built once per process


@pytest.fixture(scope="module")
def maps():
    return S.tissue_maps(SIZE)


@pytest.fixture(scope="module")
def datasets():
    return S.build_synth_datasets(size=SIZE, variety=3)


def _row_with_ventricles(stack: np.ndarray) -> int:
    return int(np.argmax((stack[:, 2].astype(np.float32) > 0.8).sum(axis=(1, 2))))


def test_tissue_maps_are_the_mni152_slices(maps):
    stack, idx, spacing = maps
    t1, idx_t1, spacing_t1 = mni152.mni152_slices(SIZE)
    assert stack.shape == (len(idx_t1), len(S.MAP_CHANNELS), SIZE, SIZE) and stack.dtype == np.float16
    assert idx == idx_t1 and spacing == spacing_t1
    assert not stack.flags.writeable
    np.testing.assert_allclose(stack[:, 4].astype(np.float32), t1, atol=1e-3)  # the template channel
    m = stack.astype(np.float32)
    assert m.min() >= 0 and m.max() <= 1
    assert (m[:, :3].sum(1) <= 1.0 + 1e-2).all()  # wm + gm + csf is a partition of the brain
    brain = m[:, :3].sum(1) > 0.99
    assert (m[:, 3][brain] > 0.99).all()  # the head ramp is 1 inside the brain mask
    assert ((m[:, 3] > 0) & (m[:, 3] < 0.5)).any()  # and falls off outside (the skull and scalp shells)
    assert m[:, 3, 0, 0].max() == 0  # the padded corner is far from the head


def test_image_shape_dtype_range_and_seeding(maps):
    stack = maps[0]
    row = stack[len(stack) // 2]
    images = [S.synth_image(row, seeded_generator(seed)) for seed in range(12)]
    for x in images:
        assert x.shape == (SIZE, SIZE) and x.dtype == torch.float32
        assert x.min() >= 0 and x.max() == 1.0
    again = S.synth_image(row, seeded_generator(3))
    assert torch.equal(again, images[3])  # same seed: bit-identical
    assert all(not torch.equal(images[i], images[j]) for i in range(12) for j in range(i))
    # synthesize draws its contrast first, as draw_contrast does
    assert S.draw_contrast(seeded_generator(5)) == S.synthesize(row, seeded_generator(5)).contrast


def test_contrast_family_frequencies_and_level_orderings():
    p = S.SynthParams()
    g = seeded_generator(0)
    n = 4000
    drawn = [S.draw_contrast(g, p) for _ in range(n)]
    for name, prob in p.contrasts:
        freq = sum(c.name == name for c in drawn) / n
        assert abs(freq - prob) < 4 * math.sqrt(prob * (1 - prob) / n) + 1e-3, name
    for c in drawn:
        lv = dict(zip(S.TISSUES, c.levels))
        if c.name in S.ORDERINGS:
            hi, mid, lo = (lv[t] for t in S.ORDERINGS[c.name])
            assert hi == 1.0 and 0.8 * hi >= mid - 1e-12 and 0.75 * mid >= lo - 1e-12 and lo > 0
        assert 0 <= lv["skull"] <= 0.4 and (lv["scalp"] == 0 or 0.1 <= lv["scalp"] <= 1.2)
    stripped = sum(c.level("scalp") == 0 for c in drawn) / n
    assert abs(stripped - p.p_stripped) < 4 * math.sqrt(0.25 * 0.75 / n)


def test_tissue_intensity_orderings_in_the_images(maps):
    """Over many draws of the full model, the mean intensity inside the high-probability WM / GM /
    CSF pixels (of the maps after the geometric transform) is T1-like and T2-like as often as
    the contrast families say."""
    stack = maps[0]
    row = stack[_row_with_ventricles(stack)]
    p = S.SynthParams()
    prob = dict(p.contrasts)
    n, t1_like, t2_like, agree, ordered = 240, 0, 0, 0, 0
    for k in range(n):
        s = S.synthesize(row, seeded_generator(1000 + k), p, return_maps=True)
        means = {}
        for c, tissue in enumerate(("wm", "gm", "csf")):
            sel = s.maps[c] > 0.75
            assert sel.sum() >= 5
            means[tissue] = float(s.image[sel].mean())
        order = tuple(sorted(means, key=means.get, reverse=True))
        t1_like += order == S.ORDERINGS["t1"]
        t2_like += order == S.ORDERINGS["t2"]
        if s.contrast.name in S.ORDERINGS or s.contrast.name == "template":
            ordered += 1
            agree += order == S.ORDERINGS.get(s.contrast.name, S.ORDERINGS["t1"])
    # the template's own intensities are T1-like; the random family gives each of 6 orders 1/6
    expect_t1 = prob["t1"] + prob["template"] + prob["random"] / 6
    expect_t2 = prob["t2"] + prob["random"] / 6
    for count, expect in ((t1_like, expect_t1), (t2_like, expect_t2)):
        assert abs(count / n - expect) < 4 * math.sqrt(expect * (1 - expect) / n), (count, expect)
    assert t1_like > 0 and t2_like > 0
    assert agree / ordered > 0.95  # the drawn ordering is what the image shows


def test_zoom_varies_the_brains_extent(maps):
    stack = maps[0]
    row = stack[len(stack) // 2]
    zooms, areas = [], []
    for k in range(40):
        s = S.synthesize(row, seeded_generator(k), return_maps=True)
        zooms.append(s.zoom)
        areas.append(float((s.maps[:3].sum(0) > 0.5).sum()))
    zooms, areas = np.array(zooms), np.array(areas)
    assert zooms.min() >= 0.7 and zooms.max() <= 1.5 and zooms.max() / zooms.min() > 1.6
    assert areas.max() / areas.min() > 2.0
    ratio = areas / zooms**2  # the area scales with the square of the magnification
    assert ratio.std() / ratio.mean() < 0.15
    fixed = S.SynthParams(zoom=(1.0, 1.0), rotation_deg=0, shift=0, aspect=0, dihedral=False, sharpen=(1, 1))
    s = S.synthesize(row, seeded_generator(0), fixed, return_maps=True)
    assert s.zoom == 1.0
    brain = row[:3].astype(np.float32)
    np.testing.assert_allclose(s.maps[:3].numpy(), brain, atol=1e-5)
    # sharpening keeps the brain's fraction of each pixel and pushes the tissues towards 0 or 1
    sharp = S.synthesize(row, seeded_generator(0), S.SynthParams(**{**fixed.__dict__, "sharpen": (4, 4)}),
                         return_maps=True).maps[:3].numpy()  # fmt: skip
    np.testing.assert_allclose(sharp.sum(0), brain.sum(0), atol=1e-4)
    assert (sharp > 0.9).sum() > 1.2 * (brain > 0.9).sum()


def test_train_set_draws_from_training_slices_only(datasets):
    train, valid = datasets
    t1_train, t1_valid = build_mri_datasets("mni152", size=SIZE)
    n = len(train.slice_index)
    assert n == len(t1_train) and len(train) == 3 * n
    assert train.image_shape == (1, SIZE, SIZE)
    ktr = np.array([train.provenance(i)["slice"] for i in range(len(train))])
    kva = np.array([valid.provenance(i)["slice"] for i in range(len(valid))])
    assert set(ktr) == {t1_train.provenance(i)["slice"] for i in range(len(t1_train))}
    assert np.abs(ktr[:, None] - kva[None, :]).min() * 1.0 > mni152.GAP_MM  # > 5 mm from validation
    x, ident = train[7]
    assert x.shape == (1, SIZE, SIZE) and x.dtype == torch.float32 and isinstance(ident, int)
    assert ident == train.ident(7) and x.max() == 1.0 and x.min() >= 0
    assert torch.equal(train[7][0], x)  # reproducible
    y, ident_y = train[7 + n]  # the same slice, another draw
    assert train.provenance(7 + n)["slice"] == train.provenance(7)["slice"]
    assert not torch.equal(x, y) and ident_y != ident
    other = S.SynthDataset(train._maps, train.slice_index, seed=1, variety=3)
    assert not torch.equal(other[7][0], x)  # the seed changes the draws
    assert torch.equal(train[-1][0], train[len(train) - 1][0])
    with pytest.raises(IndexError):
        train[len(train)]
    assert train.provenance(0)["dataset"] == "synth" and train.provenance(0)["source"] == mni152.MNI152_NAME


def test_valid_set_is_the_mni152_validation_set(datasets):
    _, valid = datasets
    _, t1_valid = build_mri_datasets("mni152", size=SIZE)
    assert len(valid) == len(t1_valid) > 0
    for i in range(len(valid)):
        assert torch.equal(valid[i][0], t1_valid[i][0]) and valid[i][1] == t1_valid[i][1]
        assert valid.provenance(i) == t1_valid.provenance(i)


def test_wiring_build_mri_datasets_and_config(datasets):
    train, valid = build_mri_datasets("synth", size=SIZE)
    assert isinstance(train, S.SynthDataset) and len(valid) == len(datasets[1])
    assert len(train) == S.DEFAULT_VARIETY * len(train.slice_index)
    with pytest.raises(ValueError, match="max"):
        build_mri_datasets("synth", size=SIZE, normalize="p99")
    with pytest.raises(ValueError, match="synth"):
        build_mri_datasets("mni152", size=SIZE, synth_photos=0.2)
    cfg, _ = resolve_config(Config(dataset="synth", preset="tiny", size=SIZE, seed=4))
    assert (cfg.task, cfg.dataset, cfg.synth_photos) == ("mri", "synth", 0.0)
    tr, _ = mri_datasets_from_config(cfg)
    assert tr.seed == 4  # the synthetic draws follow the run's seed; the split does not
    assert Config.from_dict({"dataset": "synth", "synth_photos": "0.2"}).synth_photos == 0.2
    with pytest.raises(ConfigError, match="synth-photos"):
        resolve_config(Config(dataset="mni152", preset="tiny", synth_photos=0.2))
    with pytest.raises(ConfigError, match="synth-photos"):
        resolve_config(Config(dataset="synth", preset="tiny", synth_photos=1.5))
    with pytest.raises(ConfigError, match="normalize"):
        resolve_config(Config(dataset="synth", preset="tiny", normalize="p99"))


def test_photos_mix(datasets):
    pytest.importorskip("skimage")
    names = {name for name, _ in S.load_photos()}
    assert names and not names & {"camera", "coffee", "chelsea", "brain", "shepp_logan_phantom"}
    train = S.SynthDataset(datasets[0]._maps, datasets[0].slice_index, variety=2, photo_fraction=0.3)
    sources = [train.provenance(i)["source"] for i in range(len(train))]
    share = sum(s.startswith("skimage:") for s in sources) / len(train)
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / len(train))
    i = next(k for k, s in enumerate(sources) if s.startswith("skimage:"))
    assert train.provenance(i)["slice"] is None
    x, _ = train[i]
    assert x.shape == (1, SIZE, SIZE) and x.max() == 1.0 and x.min() >= 0
    assert torch.equal(train[i][0], x)


def test_params_are_checked():
    with pytest.raises(ValueError, match="sum to 1"):
        S.SynthParams(contrasts=(("t1", 0.5), ("t2", 0.4)))
    with pytest.raises(ValueError, match="unknown"):
        S.SynthParams(contrasts=(("t1", 0.5), ("dwi", 0.5)))
    with pytest.raises(ValueError, match="p_blur"):
        S.SynthParams(p_blur=1.5)
    with pytest.raises(ValueError, match="zoom"):
        S.SynthParams(zoom=(1.5, 0.7))
    with pytest.raises(ValueError, match="maps"):
        S.synth_image(torch.zeros(3, 8, 8), seeded_generator(0))


def test_figure(tmp_path):
    out = tmp_path / "synth.png"
    S.synth_figure(out, size=SIZE, n_slices=2, n_contrasts=2)
    assert out.stat().st_size > 1000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_template_fraction_mixes_the_template_slice_itself(maps):
    """--synth-template: about that share of the items are the training slice of the T1 template,
    exactly, chosen by (seed, item) alone."""
    stack, idx, _ = maps
    ds = S.SynthDataset(stack[:4], idx[:4], seed=1, variety=100, template_fraction=0.3)
    picks = [ds._template(i) for i in range(len(ds))]
    share = sum(picks) / len(picks)
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / len(picks))
    i = picks.index(True)
    t1 = stack[i % 4, S.MAP_CHANNELS.index("t1")].astype(np.float32)
    assert np.array_equal(ds[i][0][0].numpy(), t1) and ds.provenance(i)["template"]
    j = picks.index(False)
    t1j = stack[j % 4, S.MAP_CHANNELS.index("t1")].astype(np.float32)
    assert not np.array_equal(ds[j][0][0].numpy(), t1j)
    with pytest.raises(ConfigError, match="--synth-template"):
        resolve_config(Config(dataset="mni152", synth_template=0.2))
