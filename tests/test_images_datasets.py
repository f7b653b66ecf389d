"""Image datasets: folders, benchmark layouts, real noisy pairs, HDR renderings, scikit-image."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mri_n2n.images import build_image_datasets
from mri_n2n.images.datasets import load_image
from mri_n2n.seeding import stable_ident as stable_id


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def test_stable_id():
    assert stable_id("a/b.png") == stable_id("a/b.png") != stable_id("a/c.png")
    assert 0 <= stable_id("x") < 2**62


def test_folder_split_crops_padding_and_validation(tmp_path):
    for i in range(12):
        _save(tmp_path / f"img{i:02d}.png", _rgb(40 + i, 50, i))
    _save(tmp_path / "sub" / "small.jpg", _rgb(10, 12, 99))
    _save(tmp_path / "grey.tif", np.full((48, 48), 7, dtype=np.uint8))
    (tmp_path / ".hidden.png").write_bytes(b"junk")
    (tmp_path / "notes.txt").write_text("not an image")
    train, valid = build_image_datasets("folder", data_dir=str(tmp_path), crop=32)
    assert train.channels == valid.channels == 3
    assert valid.variable_size is True and not getattr(train, "variable_size", False)
    assert len(train.names) + len(valid.names) == 14 and not set(train.names) & set(valid.names)
    assert 1 <= len(valid.names) <= 2
    # deterministic split by name
    train2, valid2 = build_image_datasets("folder", data_dir=tmp_path, crop=32)
    assert valid2.names == valid.names and train2.names == train.names
    # training items: random crops, reproducible from the global seed
    torch.manual_seed(3)
    items = [train[i] for i in range(len(train.names))]
    torch.manual_seed(3)
    again = [train[i] for i in range(len(train.names))]
    for (x, ident), (y, ident2) in zip(items, again):
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and torch.equal(x, y) and ident == ident2
        assert 0 <= x.min() and x.max() <= 1
    assert len(train) >= len(train.names)
    # small image: reflect-padded to the crop size
    k = train.names.index("sub/small.jpg")
    x, _ = train[k]
    full = train.image(k).float() / 255
    assert x.shape == (3, 32, 32)
    torch.testing.assert_close(x[:, 11:21, 10:22], full)  # centred
    torch.testing.assert_close(x[:, 10, 10:22], full[:, 1])  # reflected
    # grey image replicated to RGB
    g = (train.names + valid.names).index("grey.tif")
    ds, j = (train, g) if g < len(train.names) else (valid, g - len(train.names))
    img = ds.image(j)
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
    # validation: whole images, ident from the name
    for j in range(len(valid)):
        x, ident = valid[j]
        assert x.shape[1:] == valid.image(j).shape[1:] and ident == stable_id(valid.names[j])


def test_folder_all_grey_is_single_channel_and_16_bit(tmp_path):
    for i in range(3):
        _save(tmp_path / f"g{i}.png", np.full((20, 20), 40 * i, dtype=np.uint8))
    Image.fromarray(np.full((20, 20), 65535, dtype=np.uint16)).save(tmp_path / "deep.png")
    train, valid = build_image_datasets("folder", data_dir=tmp_path, crop=16)
    assert train.channels == valid.channels == 1
    names = train.names + valid.names
    assert len(names) == 4
    deep = load_image(tmp_path / "deep.png", 1)
    assert deep.dtype == torch.float32 and deep.max().item() == pytest.approx(1.0)


def test_folder_subfolder_and_benchmark_layouts(tmp_path):
    _save(tmp_path / "train" / "a.png", _rgb(32, 32, 1))
    _save(tmp_path / "train" / "b.png", _rgb(32, 32, 2))
    _save(tmp_path / "valid" / "c.png", _rgb(32, 32, 3))
    train, valid = build_image_datasets("folder", data_dir=tmp_path, crop=16)
    assert train.names == ["train/a.png", "train/b.png"] and valid.names == ["valid/c.png"]

    kodak = tmp_path / "k"
    _save(kodak / "photos" / "p.png", _rgb(32, 32, 4))
    for i in (1, 2):
        _save(kodak / "Kodak" / f"kodim{i:02d}.png", _rgb(24, 36, i))
    train, valid = build_image_datasets("folder", data_dir=kodak, crop=16)
    assert train.names == ["photos/p.png"] and valid.names == ["Kodak/kodim01.png", "Kodak/kodim02.png"]

    bsd = tmp_path / "bsd"
    _save(bsd / "BSDS300" / "images" / "train" / "1.jpg", _rgb(32, 48, 5))
    _save(bsd / "BSDS300" / "images" / "test" / "2.jpg", _rgb(32, 48, 6))
    train, valid = build_image_datasets("folder", data_dir=bsd, crop=16)
    assert train.names == ["BSDS300/images/train/1.jpg"] and valid.names == ["BSDS300/images/test/2.jpg"]

    s14 = tmp_path / "s14"
    _save(s14 / "train" / "t.png", _rgb(32, 32, 7))
    for srf in (2, 3):
        _save(s14 / "Set14" / f"image_SRF_{srf}" / f"img_001_SRF_{srf}_HR.png", _rgb(30, 30, 8))
        _save(s14 / "Set14" / f"image_SRF_{srf}" / f"img_001_SRF_{srf}_LR.png", _rgb(15, 15, 9))
    train, valid = build_image_datasets("folder", data_dir=s14, crop=16)
    assert valid.names == ["Set14/image_SRF_2/img_001_SRF_2_HR.png"]


def test_folder_errors_are_one_line_and_name_the_place(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for bad, where in [(empty, "empty"), (tmp_path / "missing", "missing")]:
        with pytest.raises(ValueError) as e:
            build_image_datasets("folder", data_dir=bad, crop=16)
        assert where in str(e.value) and "\n" not in str(e.value)
    broken = tmp_path / "broken"
    _save(broken / "ok.png", _rgb(8, 8, 0))
    (broken / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="bad.png") as e:
        build_image_datasets("folder", data_dir=broken, crop=16)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="data"):
        build_image_datasets("folder", crop=16)
    with pytest.raises(ValueError, match="unknown image dataset"):
        build_image_datasets("imagenet", data_dir=broken)
    with pytest.raises(ValueError, match="pairs"):
        build_image_datasets("folder", data_dir=broken, noise="pairs")


def test_pairs_same_crop_place_and_clean_validation(tmp_path):
    names = [f"s{i}.png" for i in range(5)]
    for i, n in enumerate(names):
        a = _rgb(40, 44, i)
        _save(tmp_path / "a" / n, a)
        _save(tmp_path / "b" / n, 255 - a)  # b is a function of a: same place <=> b == 1 - a
        _save(tmp_path / "clean" / n, a // 2)
    _save(tmp_path / "a" / "orphan.png", _rgb(40, 44, 9))
    with pytest.warns(UserWarning, match="partner"):
        train, valid = build_image_datasets("pairs", data_dir=tmp_path, crop=24, noise="pairs")
    assert train.channels == 3 and valid.variable_size
    assert len(train.names) == 4 and len(valid.names) == 1
    for i in range(len(train.names)):
        x, _ = train[i]
        assert x.shape == (9, 24, 24)  # [a, b, clean]: every training name has a clean image
        torch.testing.assert_close(x[3:6], 1 - x[:3])
        torch.testing.assert_close(x[6:9], torch.floor(x[:3] * 255 / 2) / 255)
    v, ident = valid[0]
    assert v.shape == (6, 40, 44) and ident == stable_id(valid.names[0])
    a = load_image(tmp_path / "a" / valid.names[0]).float() / 255
    torch.testing.assert_close(v[:3], a)
    torch.testing.assert_close(v[3:], torch.floor(a * 255 / 2) / 255)  # [a, clean]
    with pytest.raises(ValueError, match="noise 'pairs'"):
        build_image_datasets("pairs", data_dir=tmp_path, crop=24, noise="gaussian")


def test_pairs_without_clean_and_size_mismatch(tmp_path):
    for i in range(3):
        _save(tmp_path / "a" / f"{i}.png", _rgb(20, 20, i))
        _save(tmp_path / "b" / f"{i}.png", _rgb(20, 20, i + 10))
    train, valid = build_image_datasets("pairs", data_dir=tmp_path, crop=8, noise="pairs")
    assert train[0][0].shape == (6, 8, 8) and valid[0][0].shape == (6, 20, 20)
    assert valid.reference is False
    _save(tmp_path / "b" / "0.png", _rgb(21, 20, 0))
    with pytest.raises(ValueError, match="differ in size"):
        build_image_datasets("pairs", data_dir=tmp_path, crop=8, noise="pairs")
    with pytest.raises(ValueError, match="'a' and 'b'"):
        build_image_datasets("pairs", data_dir=tmp_path / "a", crop=8, noise="pairs")


def test_montecarlo_npy_pairs_keep_hdr_values(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        clean = rng.random((20, 24, 3)).astype(np.float32) * 10
        for k in ("a", "b"):
            (tmp_path / k).mkdir(exist_ok=True)
            np.save(tmp_path / k / f"r{i}.npy", clean * rng.exponential(1.0, clean.shape).astype(np.float32))
        if i == 0:
            (tmp_path / "clean").mkdir()
            np.save(tmp_path / "clean" / f"r{i}.npy", clean)
    train, valid = build_image_datasets("montecarlo", data_dir=tmp_path, crop=16, noise="montecarlo")
    assert train.channels == 3 and valid.names == ["r0.npy"] and valid.reference
    x, _ = train[0]
    assert x.shape == (6, 16, 16) and x.max() > 1  # linear HDR, not clipped
    v, _ = valid[0]
    np.testing.assert_allclose(v[3:].numpy().transpose(1, 2, 0), np.load(tmp_path / "clean" / "r0.npy"))
    with pytest.raises(ValueError, match="montecarlo"):
        build_image_datasets("montecarlo", data_dir=tmp_path, crop=16, noise="gaussian")


def test_skimage_default_dataset():
    pytest.importorskip("skimage")
    train, valid = build_image_datasets("images", crop=48)
    assert train.channels == valid.channels == 3
    assert valid.names == ["skimage/chelsea", "skimage/coffee", "skimage/camera"]
    assert len(train.names) >= 8 and not set(train.names) & set(valid.names)
    x, ident = train[0]
    assert x.shape == (3, 48, 48) and isinstance(ident, int)
    v, _ = valid[2]
    assert v.shape == (3, 512, 512) and torch.equal(v[0], v[1])  # camera: grey -> RGB


def test_missing_scikit_image_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(ImportError, match=r"mri-n2n\[demo\]"):
        build_image_datasets("images")


def test_datasets_pickle_for_spawned_workers(tmp_path):
    """DataLoader workers started with 'spawn' receive the dataset pickled."""
    import pickle

    for i in range(2):
        _save(tmp_path / "img" / f"{i}.png", _rgb(20, 20, i))
        _save(tmp_path / "pairs" / "a" / f"{i}.png", _rgb(20, 20, i))
        _save(tmp_path / "pairs" / "b" / f"{i}.png", _rgb(20, 20, i + 5))
        (tmp_path / "mc" / "a").mkdir(parents=True, exist_ok=True)
        (tmp_path / "mc" / "b").mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / "mc" / "a" / f"{i}.npy", np.ones((9, 9, 3), np.float32))
        np.save(tmp_path / "mc" / "b" / f"{i}.npy", np.ones((9, 9), np.float32))  # grey: replicated
    for name, sub in [("folder", "img"), ("pairs", "pairs"), ("montecarlo", "mc")]:
        noise = name if name != "folder" else "gaussian"
        train, valid = build_image_datasets(name, data_dir=tmp_path / sub, crop=8, noise=noise)
        for ds in (train, valid):
            clone = pickle.loads(pickle.dumps(ds))
            assert torch.equal(clone.sources[0].load(), ds.sources[0].load())
            assert clone.channels == ds.channels
