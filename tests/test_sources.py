"""The data-source registry: roles, lineage, and a pixel-overlap check that finds a crop under
another file name (nibabel's example_nifti2 is a crop of the table's EPI) and keeps every tuning
source apart from every evaluation volume."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mri_n2n.bench.generalization import real_volumes
from mri_n2n.data.sources import (
    ROLES,
    SOURCES,
    SourceOverlapError,
    _nifti,
    check_disjoint,
    get_source,
    pixel_overlap,
    sources,
)


def test_registry_has_every_role_with_licence_and_lineage():
    assert {s.role for s in SOURCES.values()} == set(ROLES)
    for s in SOURCES.values():
        assert s.licence and s.lineage and s.description
    assert [v.name for v in real_volumes()] == [s.name for s in sources("evaluation")]
    with pytest.raises(KeyError, match="no data source 'nope'"):
        get_source("nope")
    with pytest.raises(ValueError, match="role must be one of"):
        sources("testing")


def test_a_crop_of_a_table_volume_is_found_whatever_its_name_scale_or_orientation():
    epi = get_source("epi-bold").load()
    crop = _nifti("example_nifti2.nii.gz", 0)()  # the old adaptation tuning volume
    assert np.array_equal(crop, epi[48:80, 38:58, 6:18])
    assert pixel_overlap(crop, epi) > 0.99
    assert pixel_overlap(np.flip(crop, 0).transpose(1, 0, 2) * 3.7 + 5.0, epi) > 0.99
    assert pixel_overlap(epi[:, :, 3], epi[:, :, 4:]) < 0.01  # neighbouring slices share no pixels
    other_frame = _nifti("example_nifti2.nii.gz", 1)()
    assert pixel_overlap(other_frame, epi) < 0.01  # the same anatomy, another acquisition
    flat = np.tile(np.linspace(0, 1, 40), (40, 1))
    assert pixel_overlap(flat, epi) == 0.0  # ramps are in every image: not distinctive


def test_unrelated_noise_does_not_overlap_and_a_pasted_patch_does():
    rng = np.random.default_rng(0)
    a, b = rng.random((48, 48)), rng.random((48, 48))
    assert pixel_overlap(a, b) < 0.001
    b[10:30, 5:25] = a[0:20, 20:40] * 2 + 1
    frac = pixel_overlap(b, a)
    assert 0.1 < frac < 0.3  # the pasted 20x20 patch: about its share of b's runs


def test_every_tuning_source_is_pixel_disjoint_from_every_evaluation_volume():
    pairs = check_disjoint(sources("tuning"), sources("evaluation"))
    assert len(pairs) == len(sources("tuning")) * len(sources("evaluation"))
    assert max(pairs.values()) < 0.01


def test_check_disjoint_names_the_pair_that_shares_pixels(monkeypatch):
    from mri_n2n.data import sources as mod

    crop = mod.DataSource("nifti2-crop", "tuning", "a crop", "MIT", "example_nifti2.nii.gz",
                          _nifti("example_nifti2.nii.gz", 0))
    monkeypatch.setitem(mod.SOURCES, crop.name, crop)
    with pytest.raises(SourceOverlapError, match="'nifti2-crop' and 'epi-bold' share pixels"):
        check_disjoint(["nifti2-crop"], ["t1-small", "epi-bold"])


def test_integer_background_noise_is_not_a_shared_pixel(monkeypatch):
    """Two independent integer-valued scans whose backgrounds hold noise of a few counts share no
    pixels; without the quantisation rule their z-scored background runs "match" (the false
    4 % overlap of the abdomen with MNI152), and a crop of such a scan is still found."""
    import mri_n2n.data.sources as src

    rng = np.random.default_rng(3)

    def rician(shape):  # magnitude-image background: noise of a few integer counts
        return np.round(np.abs(rng.normal(0, 2.5, shape) + 1j * rng.normal(0, 2.5, shape)))

    a = rician((200, 240))
    a[60:140, 60:180] += np.round(rng.normal(300, 40, (80, 120)))  # an object with texture
    b = rician((96, 96, 40))
    assert pixel_overlap(a, b) < 0.01 and pixel_overlap(b, a) < 0.01
    assert pixel_overlap(a[50:150, 50:190], a) > 0.9
    monkeypatch.setattr(src, "_MIN_STEPS", 0.0)
    assert pixel_overlap(a, b) > 0.02  # the rule is what keeps the background noise out


@pytest.mark.skipif(os.environ.get("MRI_N2N_SLOW_TESTS") != "1", reason="set MRI_N2N_SLOW_TESTS=1 (5 min)")
def test_every_training_source_is_pixel_disjoint_from_every_evaluation_volume():
    pairs = check_disjoint(sources("training"), sources("evaluation"))
    assert len(pairs) == len(sources("training")) * len(sources("evaluation"))
    assert max(pairs.values()) < 0.01
