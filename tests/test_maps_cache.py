"""The multi-coil input pipeline: the on-disk coil-maps cache (round trip bit for bit,
invalidation by file state and settings, corrupt entries recomputed, inputs untouched), the
readout crop with 1-D FFTs, load-time coil compression, and the trainer's one persistent loader."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mri_n2n.coils import birdcage_maps
from mri_n2n.config import Config, resolve_config
from mri_n2n.data.kspace import build_kspace_datasets
from mri_n2n.data.maps_cache import MapsCache, default_cache_dir, resolve_maps_cache
from mri_n2n.data.multicoil import MultiCoilSliceDataset, _coil_images, crop_coil_kspace
from mri_n2n.data.slices import center_pad_crop
from mri_n2n.data.synthetic import phantom_volume
from mri_n2n.data.synthetic_raw import write_fastmri_multicoil_h5
from mri_n2n.fft import fft2c, ifft2c
from mri_n2n.training import Trainer

SIZE, COILS = 32, 6


def _write(path: Path, seed: int = 0, coils: int = COILS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    vol = phantom_volume((SIZE, SIZE, 3), seed=seed).astype(np.float32)
    imgs = np.moveaxis(vol, 2, 0) / vol.max()
    maps = birdcage_maps((SIZE, SIZE), coils).numpy()
    write_fastmri_multicoil_h5(path, imgs, maps, noise_std=0.001, seed=seed, oversample=2)
    return path


@pytest.fixture()
def h5(tmp_path) -> Path:
    return _write(tmp_path / "data" / "vol.h5")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cached_maps_and_items_equal_fresh_ones_bit_for_bit_and_inputs_stay_untouched(h5, tmp_path):
    before = (_digest(h5), h5.stat().st_mtime_ns, sorted(os.listdir(h5.parent)))
    fresh = MultiCoilSliceDataset([h5], size=SIZE)
    cold = MultiCoilSliceDataset([h5], size=SIZE, maps_cache=tmp_path / "cache")
    warm = MultiCoilSliceDataset([h5], size=SIZE, maps_cache=tmp_path / "cache")
    def same(a, b) -> bool:  # two items (acquisitions): the same mask, maps and coil k-space
        return all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("sampled", "maps", "y"))

    for i in range(len(fresh)):
        want = fresh[i][0]
        assert same(cold[i][0], want)  # estimated, then stored
        assert same(warm[i][0], want)  # read back from disk
        np.testing.assert_array_equal(warm.maps(i), fresh.maps(i))
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == len(fresh)
    assert (_digest(h5), h5.stat().st_mtime_ns, sorted(os.listdir(h5.parent))) == before


def _plant(ds: MultiCoilSliceDataset, i: int, value: complex) -> Path:
    """Store constant maps as item ``i``'s cache entry for the dataset's current state."""
    fi, k = ds._rows[i]
    entry = ds.maps_cache.entry(ds.files[fi], k, ds.maps_settings(fi))
    ds.maps_cache.store(entry, np.full((ds.coils, SIZE, SIZE), value, np.complex64))
    return entry


def test_a_changed_file_or_method_misses_the_cache(h5, tmp_path):
    cache = tmp_path / "cache"
    ds = MultiCoilSliceDataset([h5], size=SIZE, maps_cache=cache)
    _plant(ds, 0, 7.0)
    assert np.all(ds.maps(0) == 7.0)  # the entry of this file state and these settings is used
    st = h5.stat()
    os.utime(h5, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same bytes, new mtime
    touched = MultiCoilSliceDataset([h5], size=SIZE, maps_cache=cache)
    fresh = MultiCoilSliceDataset([h5], size=SIZE).maps(0)
    np.testing.assert_array_equal(touched.maps(0), fresh)
    _plant(touched, 0, 7.0)
    other = MultiCoilSliceDataset([h5], size=SIZE, maps_cache=cache, maps_method="espirit")
    assert not np.any(other.maps(0) == 7.0)  # another method: another entry
    smaller = MultiCoilSliceDataset([h5], size=SIZE - 8, maps_cache=cache)
    assert smaller.maps(0).shape == (COILS, SIZE - 8, SIZE - 8)


def test_a_corrupt_entry_is_recomputed_and_rewritten(h5, tmp_path):
    ds = MultiCoilSliceDataset([h5], size=SIZE, maps_cache=tmp_path / "cache")
    want = MultiCoilSliceDataset([h5], size=SIZE).maps(1)
    entry = _plant(ds, 1, 1.0)
    entry.write_bytes(entry.read_bytes()[:100])  # truncated
    np.testing.assert_array_equal(ds.maps(1), want)
    np.testing.assert_array_equal(MapsCache.load(entry, want.shape), want)
    entry.write_bytes(b"not a numpy file")
    np.testing.assert_array_equal(ds.maps(1), want)
    np.save(entry, np.zeros((2, 3), np.complex64))  # readable, wrong shape
    np.testing.assert_array_equal(ds.maps(1), want)


def test_an_unwritable_cache_warns_once_and_the_items_are_unchanged(h5, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would go")
    ds = MultiCoilSliceDataset([h5], size=SIZE, maps_cache=blocker / "cache")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [ds[i][0] for i in range(len(ds))]
    assert sum("maps cache" in str(w.message) for w in caught) == 1
    fresh = MultiCoilSliceDataset([h5], size=SIZE)
    again = [fresh[i][0] for i in range(len(fresh))]
    assert all(torch.equal(x.y, z.y) and torch.equal(x.maps, z.maps) for x, z in zip(items, again))


def test_cache_folder_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("MRI_N2N_CACHE", str(tmp_path / "c"))
    assert resolve_maps_cache("auto") == default_cache_dir() == tmp_path / "c" / "maps"
    monkeypatch.delenv("MRI_N2N_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert resolve_maps_cache(None) == tmp_path / "x" / "mri_n2n" / "maps"
    assert resolve_maps_cache("none") is None and resolve_maps_cache("off") is None
    assert resolve_maps_cache(str(tmp_path / "mine")) == tmp_path / "mine"


@pytest.mark.parametrize("rows,size", [(32, 32), (32, 24), (32, 40), (64, 32), (20, 32)])
def test_readout_crop_with_1d_ffts_equals_the_2d_crop(h5, rows, size):
    from mri_n2n.io.kspace import as_complex, open_h5

    with open_h5(h5) as f:
        raw = as_complex(np.asarray(f["kspace"][1]), str(h5))
    img = ifft2c(torch.from_numpy(raw)).numpy()  # the plain 2-D definition
    img = center_pad_crop(center_pad_crop(img, (min(rows, img.shape[-2]), img.shape[-1])), size)
    want = fft2c(torch.from_numpy(img)).numpy()
    np.testing.assert_allclose(_coil_images(raw, rows, size), img, atol=1e-5 * np.abs(img).max())
    got = crop_coil_kspace(raw, rows, size)
    assert got.shape == want.shape and got.dtype == np.complex64
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())


def test_virtual_coils_compress_at_load_time(h5, tmp_path):
    ds = MultiCoilSliceDataset([h5], size=SIZE, virtual_coils=3, maps_cache=tmp_path / "cache")
    assert ds.coils == 3 and ds.image_shape == (3, SIZE, SIZE) and ds[0][0].y.shape == (1, 3, SIZE, SIZE)
    full = MultiCoilSliceDataset([h5], size=SIZE)
    # the compressed coils keep most of the energy, and their maps are normalised on the support
    k3, k6 = ds.coil_kspace(1), full.coil_kspace(1)
    assert (np.abs(k3) ** 2).sum() > 0.95 * (np.abs(k6) ** 2).sum()
    power = (np.abs(ds.maps(1)) ** 2).sum(0)
    np.testing.assert_allclose(power[power > 0], 1.0, atol=1e-4)
    assert MultiCoilSliceDataset([h5], size=SIZE, virtual_coils=COILS).coils == COILS  # nothing to do
    with pytest.raises(ValueError, match="virtual_coils"):
        MultiCoilSliceDataset([h5], size=SIZE, virtual_coils=0)


def test_config_options_reach_the_dataset(tmp_path):
    for i in range(3):
        _write(tmp_path / "data" / f"v{i}.h5", seed=i)
    train, valid = build_kspace_datasets(tmp_path / "data", size=SIZE, maps_cache=str(tmp_path / "c"),
                                         virtual_coils=4)
    assert train.maps_cache.root == tmp_path / "c" and train.coils == valid.coils == 4
    assert build_kspace_datasets(tmp_path / "data", size=SIZE, maps_cache="none")[0].maps_cache is None


def test_the_trainer_streams_every_epoch_through_one_loader(tmp_path):
    """Batches cross epoch ends in the order of the per-epoch permutations, with one worker
    process started once (persistent), as with none."""
    run = Config(dataset="mni152", preset="tiny", size=32, out=str(tmp_path / "run"), quiet=True,
                 tensorboard=False, figures=False, max_steps=100, num_workers=1)
    cfg, _ = resolve_config(run)
    tr = Trainer(cfg)
    n = tr.batches_per_epoch
    want = [b for e in range(2) for b in tr._epoch_batches(e)][: n + 3]
    ident = {int(tr.exp.train_set[i][1]): i for i in range(len(tr.exp.train_set))}
    stream = tr._batches()
    got = [[ident[int(j)] for j in next(stream)[1]] for _ in range(n + 3)]
    stream.close()
    assert got == want
