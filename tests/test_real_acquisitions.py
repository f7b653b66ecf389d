"""Training data for the acquisitions scanners write: a law per item (``--density mixed``), the
realistic phase model (``--phase-model realistic``) and coil arrays (``--synth-coils``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mri_n2n.config import Config, ConfigError, resolve_config
from mri_n2n.corruptions import MRIUndersampling
from mri_n2n.data.datasets import mri_datasets_from_config
from mri_n2n.data.generators.multicoil_synth import SynthCoilDataset, parse_coil_range
from mri_n2n.data.mni152 import build_mni152_datasets
from mri_n2n.masks import make_family
from mri_n2n.seeding import seeded_generator

SHAPE = (24, 40)


def _images(b: int, seed: int) -> torch.Tensor:
    g = seeded_generator(seed)
    x = torch.nn.functional.avg_pool2d(torch.rand(b, 1, *SHAPE, generator=g), 5, 1, 2)
    return x / x.amax()


@pytest.mark.parametrize("complex_data", [False, True])
def test_a_law_per_item_compensates_each_item_by_its_own_law(complex_data) -> None:
    fam = make_family("mixed", SHAPE, hermitian=not complex_data)
    sets, p = fam.draw_items(6, 2, generator=seeded_generator(1), real=not complex_data)
    assert sets.shape == (2, 6, *SHAPE) and p.shape == (6, *SHAPE)
    assert len({tuple(q[0].tolist()) for q in p}) > 1  # the items' laws differ
    corr = MRIUndersampling(fam, complex_data=complex_data)
    clean = _images(6, 2)
    pair = corr.pair(clean, generator=seeded_generator(3))
    # every item's input is compensated by its own law's keep probability, shared by its pair
    assert pair.acq.keep_prob.shape == (6, *SHAPE) and pair.target_acq.keep_prob.shape == (6, *SHAPE)
    assert torch.equal(pair.acq.keep_prob, pair.target_acq.keep_prob)  # a pair shares its law
    # each item's sets follow its own law: samples of keep probability 0 are never drawn and those
    # of probability 1 (the law's fully sampled centre) always, in the input and the target
    for a in (pair.acq, pair.target_acq):
        assert not bool(a.sampled[a.keep_prob == 0].any())
        assert bool(a.sampled[a.keep_prob >= 1].all())
    # validation draws are fixed per sample and carry their own laws too
    v1 = corr.validation_pair(clean, torch.arange(6))
    v2 = corr.validation_pair(clean, torch.arange(6))
    assert torch.equal(v1.acq.sampled, v2.acq.sampled) and v1.acq.keep_prob.shape == (6, *SHAPE)


def test_mixed_items_are_unbiased_for_their_own_law() -> None:
    """Per item, masks of the item's law average (with 1/p) to an all-ones sampling operator."""
    fam = make_family("mixed", SHAPE, hermitian=False)
    g = seeded_generator(4)
    for _ in range(3):
        law = fam.draw_law(g)
        masks = law.sample(4000, generator=g).double()
        p = law.keep_probability().double()
        ok = (p > 0.02) & (p < 1)
        assert bool((masks[:, p >= 1] == 1).all())  # the always-kept centre: always
        mean = (masks / p.clamp_min(1e-12)).mean(0)[ok]
        se = torch.sqrt((1 - p[ok]) / (p[ok] * 4000))
        assert float(((mean - 1).abs() / se).max()) < 5.5


def test_mixed_equispaced_draws_only_equispaced_laws_across_the_range() -> None:
    """``--density mixed-equispaced``: every item's law is equispaced lines at 2-8x with a 4-12 %
    centre, each item compensated by its own law, and the family rebuilds from its description."""
    from mri_n2n.masks import family_from_description

    shape = (64, 128)
    fam = make_family("mixed-equispaced", shape, hermitian=False)
    assert fam.name == "mixed-equispaced" and fam.lines and fam.per_item
    assert family_from_description(fam.describe()).name == "mixed-equispaced"
    g = seeded_generator(7)
    accs, centres = [], []
    for _ in range(40):
        d = fam.draw_law(g).describe()
        assert d["family"] == "lines_equispaced"
        accs.append(d["acceleration"])
        centres.append(d["center_fraction"])
    assert 2.0 <= min(accs) < 3.0 and 5.0 < max(accs) <= 8.0  # the range, not one protocol
    assert min(centres) >= 0.04 - 1e-9 and max(centres) <= 0.12 + 1e-9
    sets, p = fam.draw_items(5, 2, generator=seeded_generator(2))
    assert sets.shape == (2, 5, *shape) and p.shape == (5, *shape)
    for i in range(5):  # whole lines, the centre always kept, nothing of probability 0 drawn
        assert torch.equal(sets[:, i], sets[:, i, :1].expand_as(sets[:, i]))
        assert bool(sets[:, i][:, p[i] >= 1].all()) and not bool(sets[:, i][:, p[i] == 0].any())
    # the full mixture still draws its 2-D share and every line family
    mixed = make_family("mixed", shape, hermitian=False)
    names = {mixed.draw_law(g).describe()["family"] for _ in range(80)}
    assert {"lines_random", "lines_equispaced", "lines_lattice", "lines_gaussian"} <= names
    assert names - {"lines_random", "lines_equispaced", "lines_lattice", "lines_gaussian"}
    cfg, _ = resolve_config(Config(task="mri", preset="cpu", density="mixed-equispaced", complex=True))
    assert cfg.density == "mixed-equispaced"


def test_a_mixture_warns_only_for_files_outside_what_its_items_cover() -> None:
    """``law_mismatch`` checks a per-item mixture against the kinds and rates its items draw, not
    against its marginal: the shipped complex model once warned "trained on 2-D masks" for every
    line file and "a sampled fraction of 0.273" for 8x lines, both inside its training laws."""
    from mri_n2n.data.measured import law_mismatch

    shape = (64, 64)
    mixed, equi = make_family("mixed", shape), make_family("mixed-equispaced", shape)
    inside = [make_family("lines_equispaced", shape, acceleration=a, center_fraction=c)
              for a, c in ((2, 0.08), (4, 0.08), (8, 0.04))]  # fmt: skip
    for fam in inside:
        assert law_mismatch(mixed, fam) is None and law_mismatch(equi, fam) is None
    two_d = make_family("gaussian", shape, fraction=0.25)
    assert law_mismatch(mixed, two_d) is None  # the mixture draws 2-D laws in 10 % of its items
    note = law_mismatch(equi, two_d)
    assert note is not None and "1-D lines masks (mixed-equispaced), the file has 2-D" in note
    sparse = make_family("lines_random", shape, acceleration=16, center_fraction=0.04)
    note = law_mismatch(mixed, sparse)
    assert note is not None and "sampled fractions of 0.125 to 0.620" in note
    # a single law is still compared with its own kind and rate
    lines4 = make_family("lines_random", shape, acceleration=4, center_fraction=0.08)
    assert law_mismatch(lines4, inside[1]) is None
    assert "1-D lines masks (lines_random), the file has 2-D" in (law_mismatch(lines4, two_d) or "")
    assert "2-D masks (gaussian), the file has 1-D lines" in (law_mismatch(two_d, lines4) or "")
    assert "a sampled fraction of 0.250, the file 0.124" in (law_mismatch(lines4, inside[2]) or "")


def test_realistic_phase_keeps_the_magnitude() -> None:
    corr = MRIUndersampling(make_family("lines_random", SHAPE), complex_data=True, phase_model="realistic")
    clean = _images(3, 5)
    pair = corr.validation_pair(clean, torch.arange(3))
    z = torch.complex(pair.target[:, 0], pair.target[:, 1])
    assert torch.allclose(z.abs(), clean[:, 0], atol=1e-5)
    assert float(torch.angle(z)[clean[:, 0] > 0.2].std()) > 0.05  # a phase, not a constant
    with pytest.raises(ValueError, match="phase_model"):
        MRIUndersampling(make_family("lines_random", SHAPE), complex_data=True, phase_model="wild")


def test_synth_coils_are_seeded_padded_and_combine_to_the_image() -> None:
    _, valid = build_mni152_datasets(size=32)
    ds = SynthCoilDataset(valid, (2, 5), noise=0.0)
    coils = []
    for i in range(6):
        acq, ident = ds[i]
        assert ident == valid.ident(i) and acq.y.shape == (1, 5, 32, 32) and acq.keep_prob is None
        live = (acq.maps[0].abs().flatten(1).amax(1) > 0)
        coils.append(int(live.sum()))
        assert torch.equal(acq.y[0][~live], torch.zeros_like(acq.y[0][~live]))  # silent padding
        # noise-free, the coil data lie in the range of the normalised maps: the coil combination
        # (the image times the array's RSS) measured again gives the data back
        x = acq.adjoint(acq.y)
        err = (acq.full(x) - acq.y).abs().max() / acq.y.abs().max()
        assert float(err) < 1e-4
        # the reference is fastMRI's: the RSS of the noise-free coil images, the magnitude of the
        # coil combination by the normalised maps
        assert np.allclose(ds.reference(i), acq.adjoint(acq.y)[0].abs().numpy(), atol=1e-5)
    assert min(coils) >= 2 and max(coils) <= 5 and len(set(coils)) > 1
    a1, _ = ds[3]
    a2, _ = SynthCoilDataset(valid, (2, 5), noise=0.0)[3]
    assert torch.equal(a1.y, a2.y)  # seeded by the item's identity


def test_synth_coils_config() -> None:
    assert parse_coil_range("8") == (8, 8) and parse_coil_range("2:16") == (2, 16)
    for bad in ("0", "9:2", "x", "1:2:3"):
        with pytest.raises(ValueError):
            parse_coil_range(bad)
    cfg, _ = resolve_config(Config(dataset="mni152", size=32, synth_coils="2:3", preset="tiny"))
    assert cfg.complex  # coil data are complex
    train, valid = mri_datasets_from_config(cfg)
    assert isinstance(train, SynthCoilDataset) and train[0][0].n_coils == 3
    with pytest.raises(ConfigError, match="synth-coils"):
        resolve_config(Config(dataset="mni152", size=32, synth_coils="0", preset="tiny"))
