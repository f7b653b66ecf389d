"""The offline default: MNI152 template slices, sizes and a split with a > 5 mm gap."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from mri_n2n.data import build_mri_datasets, mni152
from mri_n2n.plots import provenance_view

pytest.importorskip("nilearn")


def _slices(ds):
    return np.array([ds.provenance(i)["slice"] for i in range(len(ds))])


@pytest.mark.parametrize("size", [256, 128, 64])
def test_shapes_split_and_gap(size):
    tr, va = build_mri_datasets("mni152", size=size)
    assert len(tr) > 80 and len(va) > 15
    x, ident = tr[0]
    assert x.shape == (1, size, size) and x.dtype == torch.float32 and isinstance(ident, int)
    ktr, kva = _slices(tr), _slices(va)
    assert not set(ktr) & set(kva)  # disjoint
    spacing = mni152.mni152_slices(size)[2]
    assert spacing == pytest.approx(1.0)
    assert np.abs(ktr[:, None] - kva[None, :]).min() * spacing > 5.0  # every pair more than 5 mm apart
    assert 0.12 <= len(va) / (len(tr) + len(va)) <= 0.3
    stack = np.concatenate([np.stack([d[i][0].numpy() for i in range(len(d))]) for d in (tr, va)])
    # normalised by the volume max (which may lie in a gap slice that neither split uses)
    assert stack.min() >= 0 and 0.95 < stack.max() <= 1.0
    assert mni152.mni152_slices(size)[0].max() == pytest.approx(1.0, abs=1e-6)
    assert all(s.any() for s in stack)  # only slices with brain content
    assert len({tr.ident(i) for i in range(len(tr))} | {va.ident(i) for i in range(len(va))}) == len(stack)


def test_256_is_padding_and_small_sizes_keep_the_whole_head():
    arr, _ = mni152.load_mni152_volume()
    assert arr.shape == (197, 233, 189)
    tr, _ = build_mri_datasets("mni152", size=256)
    k = tr.provenance(40)["slice"]
    img = tr[40][0][0].numpy()
    # 197 x 233 centred in 256 x 256: offsets (29, 11), no resampling
    np.testing.assert_allclose(img[29:226, 11:244], arr[:, :, k] / arr.max(), rtol=1e-6)
    # the template is RAS with 1 mm voxels: its axial slices are shown transposed and flipped
    # (anterior up, the patient's right on the left)
    p = tr.provenance(40)
    np.testing.assert_allclose(np.asarray(p["affine"]), mni152.load_mni152_volume()[1])
    np.testing.assert_array_equal(provenance_view(img, p), img.T[::-1, ::-1])
    assert not img[:29].any() and not img[226:].any()
    for size in (128, 64):
        small, _ = build_mri_datasets("mni152", size=size)
        rows = {small.provenance(i)["slice"]: i for i in range(len(small))}
        if k not in rows:
            continue
        s = small[rows[k]][0][0].numpy()
        # the head's extent scales with size / 256 and stays centred, with a zero border
        assert not s[0].any() and not s[-1].any() and not s[:, 0].any() and not s[:, -1].any()
        ys, xs = np.nonzero(img > 0.05)
        ys2, xs2 = np.nonzero(s > 0.05)
        f = size / 256
        assert (ys2.max() - ys2.min()) == pytest.approx((ys.max() - ys.min()) * f, abs=3)
        assert ys2.mean() == pytest.approx((ys.mean() + 0.5) * f - 0.5, abs=1.5)
        assert xs2.mean() == pytest.approx((xs.mean() + 0.5) * f - 0.5, abs=1.5)


def test_deterministic_and_slice_option():
    a_tr, a_va = build_mri_datasets("mni152", size=64)
    b_tr, b_va = build_mri_datasets("mni152", size=64)
    assert [a_va.ident(i) for i in range(len(a_va))] == [b_va.ident(i) for i in range(len(b_va))]
    tr, va = build_mri_datasets("mni152", size=64, slices=(60, 120))
    ks = np.concatenate([_slices(tr), _slices(va)])
    assert ks.min() >= 60 and ks.max() < 120


def test_missing_nilearn_message(monkeypatch):
    mni152.load_mni152_volume.cache_clear()
    mni152.mni152_slices.cache_clear()
    monkeypatch.setitem(sys.modules, "nilearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "mri-n2n\[demo\]"'):
        build_mri_datasets("mni152", size=64)
    monkeypatch.undo()
    mni152.load_mni152_volume.cache_clear()
