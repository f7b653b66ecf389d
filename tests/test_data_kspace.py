"""fastMRI-style single-coil k-space files: reader, dataset items, errors, DataLoader workers."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from mri_n2n.data import build_mri_datasets
from mri_n2n.data.kspace import kspace_to_image
from mri_n2n.data.slices import center_pad_crop
from mri_n2n.data.synthetic import phantom_volume, write_fastmri_h5
from mri_n2n.io import VolumeError, read_kspace_h5, read_kspace_reference


def _images(seed: int, n_slices: int = 6, shape=(40, 36)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mag = phantom_volume(shape + (n_slices,), content=(0, n_slices), seed=seed, peak=50 + seed).transpose(
        2, 0, 1
    )
    return (mag * np.exp(1j * rng.uniform(-0.5, 0.5, mag.shape))).astype(np.complex64)


@pytest.fixture(scope="module")
def kdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("kspace")
    imgs = {}
    for n in range(5):
        imgs[f"file{n}.h5"] = _images(n)
        write_fastmri_h5(root / f"file{n}.h5", imgs[f"file{n}.h5"])
    return root, imgs


def test_reader(kdir):
    root, imgs = kdir
    k, mask, attrs = read_kspace_h5(root / "file1.h5")
    assert k.shape == (6, 40, 36) and k.dtype == np.complex64 and mask is None
    assert (
        attrs["max"] == pytest.approx(np.abs(imgs["file1.h5"]).max()) and attrs["acquisition"] == "CORPD_FBK"
    )
    np.testing.assert_allclose(kspace_to_image(k, complex_output=True), imgs["file1.h5"], atol=1e-4)
    ref = read_kspace_reference(root / "file1.h5")
    np.testing.assert_allclose(ref, np.abs(imgs["file1.h5"]), rtol=1e-6)


def test_dataset_items(kdir):
    root, imgs = kdir
    tr, va = build_mri_datasets("kspace", data_dir=str(root), size=32)
    assert len(tr) + len(va) == 30 and len(va) == 6
    files_tr = {tr.provenance(i)["source"] for i in range(len(tr))}
    files_va = {va.provenance(i)["source"] for i in range(len(va))}
    assert not files_tr & files_va
    for ds in (tr, va):
        for i in (0, len(ds) - 1):
            x, ident = ds[i]
            p = ds.provenance(i)
            assert x.shape == (1, 32, 32) and x.dtype == torch.float32 and isinstance(ident, int)
            mag = np.abs(imgs[p["source"]])
            expect = center_pad_crop(mag[p["slice"]], 32) / center_pad_crop(mag, 32).max()
            np.testing.assert_allclose(x[0].numpy(), expect, atol=1e-5)
    ctr, _ = build_mri_datasets("kspace", data_dir=str(root), size=48, complex_kspace=True)
    z, _ = ctr[3]
    assert z.shape == (2, 48, 48)
    p = ctr.provenance(3)
    img = imgs[p["source"]]
    expect = center_pad_crop(img[p["slice"]], 48) / np.abs(center_pad_crop(img, 48)).max()
    np.testing.assert_allclose(z[0].numpy() + 1j * z[1].numpy(), expect, atol=1e-5)


def test_single_file_split_and_slices(tmp_path):
    write_fastmri_h5(tmp_path / "one.h5", _images(9, n_slices=30))
    tr, va = build_mri_datasets("kspace", data_dir=str(tmp_path), size=32)
    ktr = np.array([tr.provenance(i)["slice"] for i in range(len(tr))])
    kva = np.array([va.provenance(i)["slice"] for i in range(len(va))])
    assert len(ktr) and len(kva) and np.abs(ktr[:, None] - kva[None]).min() > 5
    tr2, va2 = build_mri_datasets("kspace", data_dir=str(tmp_path / "one.h5"), size=32, slices=(0, 12))
    assert all(va2.provenance(i)["slice"] < 12 for i in range(len(va2)))


def test_dataloader_workers(kdir):
    root, _ = kdir
    tr, _ = build_mri_datasets("kspace", data_dir=str(root), size=32)
    _ = tr[0]  # a handle open in the parent must not leak into the workers
    loader = torch.utils.data.DataLoader(tr, batch_size=8, num_workers=2)
    got = torch.cat([x for x, _ in loader])
    assert got.shape == (len(tr), 1, 32, 32)
    np.testing.assert_array_equal(got[5].numpy(), tr[5][0].numpy())


def test_errors(tmp_path):
    (tmp_path / "junk.h5").write_bytes(b"not hdf5" * 10)
    with pytest.raises(VolumeError, match="junk.h5: not a readable HDF5"):
        read_kspace_h5(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "nok.h5", "w") as f:
        f["image"] = np.zeros((2, 4, 4))
    with pytest.raises(VolumeError, match="nok.h5: no 'kspace' dataset"):
        read_kspace_h5(tmp_path / "nok.h5")
    with h5py.File(tmp_path / "mc.h5", "w") as f:
        f["kspace"] = np.zeros((2, 4, 8, 8), np.complex64)
    with pytest.raises(VolumeError, match="multi-coil"):
        read_kspace_h5(tmp_path / "mc.h5")
    with h5py.File(tmp_path / "real.h5", "w") as f:
        f["kspace"] = np.zeros((2, 8, 8), np.float32)
    with pytest.raises(VolumeError, match="must be complex"):
        read_kspace_h5(tmp_path / "real.h5")
    mask = np.zeros(36, np.float32)
    mask[::4] = 1
    (tmp_path / "us").mkdir()
    write_fastmri_h5(tmp_path / "us" / "under.h5", _images(1), mask=mask)
    k, m, _ = read_kspace_h5(tmp_path / "us" / "under.h5")
    np.testing.assert_array_equal(m, mask)
    with pytest.raises(VolumeError, match="under.h5: undersampled"):
        build_mri_datasets("kspace", data_dir=str(tmp_path / "us"))
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="no k-space files"):
        build_mri_datasets("kspace", data_dir=str(tmp_path / "none"))


def _oversampled_file(path, seed=0, n=4):
    """A fastMRI-like file: k-space of a (40, 36) complex image whose readout (rows) is 2x
    oversampled; reconstruction_esc is its (20, 20) centre crop, as fastMRI's 640x368 -> 320x320."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, 40, 36), np.complex64)
    imgs[:, 10:30, 8:28] = (rng.random((n, 20, 20)) + 0.5) * np.exp(1j * rng.uniform(-1, 1, (n, 1, 1)))
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(imgs, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    esc = np.abs(imgs[:, 10:30, 8:28]).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=k.astype(np.complex64))
        f.create_dataset("reconstruction_esc", data=esc)
        f.attrs["max"] = float(esc.max())
    return imgs, esc


def test_readout_oversampling_is_removed_and_the_reference_kept(tmp_path):
    imgs, esc = _oversampled_file(tmp_path / "a.h5")
    _oversampled_file(tmp_path / "b.h5", seed=1)
    for size in (20, 32):  # the reconstruction matrix, and a larger size: padded, not the oversampling
        tr, va = build_mri_datasets("kspace", data_dir=str(tmp_path), size=size, complex_kspace=True)
        ds = tr if tr.provenance(0)["source"] == "a.h5" else va
        z, _ = ds[1]
        crop = imgs[:, 10:30, 8:28]
        expect = center_pad_crop(crop[1], size) / np.abs(crop).max()
        np.testing.assert_allclose(z[0].numpy() + 1j * z[1].numpy(), expect, atol=1e-5)
        ref = center_pad_crop(esc[1], size) / np.abs(crop).max()
        np.testing.assert_allclose(ds.reference(1), ref, atol=1e-6)
    with pytest.warns(UserWarning, match="up to 20x20 are centre-cropped to 16x16"):
        build_mri_datasets("kspace", data_dir=str(tmp_path), size=16)


def test_kspace_training_keeps_the_measured_phase_by_default(tmp_path):
    from mri_n2n.config import Config, resolve_config
    from mri_n2n.corruptions import MRIUndersampling, seeded_generator
    from mri_n2n.fft import fft2c

    assert resolve_config(Config(dataset="kspace"))[0].complex is True
    assert resolve_config(Config(dataset="mni152"))[0].complex is False
    assert resolve_config(Config(dataset="kspace", complex=False))[0].complex is False
    _oversampled_file(tmp_path / "a.h5")
    cfg = resolve_config(Config(dataset="kspace", data_dir=str(tmp_path), size=20, density="lines_random"))[0]
    tr, _ = build_mri_datasets(
        "kspace", data_dir=str(tmp_path), size=20, complex_kspace=cfg.complex, valid_fraction=0
    )
    x = torch.stack([tr[i][0] for i in range(2)])
    corr = MRIUndersampling.from_config(cfg.replace(shift=0, augment=False), (20, 20))
    pair = corr.pair(x, generator=seeded_generator(0))
    spectrum = fft2c(torch.complex(x[:, :1], x[:, 1:]))  # the measured complex spectrum (cropped)
    for acq in (pair.acq, pair.target_acq):
        m = acq.sampled[:, None]
        assert torch.allclose(acq.y[m], spectrum[m], atol=1e-5)
