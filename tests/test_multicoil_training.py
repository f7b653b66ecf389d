"""Noise2Noise on multi-coil k-space: the dataset (coil k-space + estimated maps), the corruption
(SENSE-1 inputs, per-coil data consistency), the multi-coil k-space loss, and training from
fastMRI multi-coil files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mri_n2n.coils import birdcage_maps
from mri_n2n.config import Config, resolve_config
from mri_n2n.corruptions import Pair
from mri_n2n.corruptions.multicoil import MultiCoilUndersampling
from mri_n2n.data import collate
from mri_n2n.data.kspace import build_kspace_datasets
from mri_n2n.data.synthetic import phantom_volume, write_fastmri_h5
from mri_n2n.data.synthetic_raw import write_fastmri_multicoil_h5
from mri_n2n.fft import ifft2c
from mri_n2n.io import VolumeError
from mri_n2n.losses import kspace_loss
from mri_n2n.physics import Acquisition

SIZE = 32


def _folder(root: Path, n_files: int = 3, coils: int = 6) -> Path:
    root.mkdir(parents=True)
    maps = birdcage_maps((SIZE, SIZE), coils).numpy()
    for i in range(n_files):
        vol = phantom_volume((SIZE, SIZE, 5), seed=i).astype(np.float32)
        imgs = np.moveaxis(vol, 2, 0) / vol.max()
        write_fastmri_multicoil_h5(root / f"mc{i}.h5", imgs, maps, noise_std=0.001, seed=i, oversample=2)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return _folder(tmp_path_factory.mktemp("mc") / "data")


def _corruption(coils: int) -> MultiCoilUndersampling:
    cfg, _ = resolve_config(
        Config(dataset="kspace", density="lines_random", acceleration=3, center_fraction=0.15, shift=0)
    )
    return MultiCoilUndersampling.from_config(cfg, (SIZE, SIZE), coils=coils)


def test_dataset_yields_coil_kspace_and_normalised_maps(folder):
    train, valid = build_kspace_datasets(folder, size=SIZE)
    item = train[0][0]  # a fully sampled acquisition of one slice: full mask, maps, coil k-space
    assert item.multicoil and item.n_coils == 6 and item.keep_prob is None and bool(item.sampled.all())
    assert item.y.shape == item.maps.shape == (1, 6, SIZE, SIZE)
    k, maps = item.y, item.maps
    power = (maps.abs() ** 2).sum(1)
    support = power > 0.5
    torch.testing.assert_close(power[support], torch.ones_like(power[support]), atol=1e-4, rtol=0)
    rss = torch.from_numpy(train.reference(0))[None]
    assert float(support[rss > 0.1 * rss.max()].float().mean()) > 0.95  # the maps cover the object
    # the SENSE-1 combination of the coils reproduces their root-sum-of-squares on the support
    combined = Acquisition(torch.ones(SIZE, SIZE, dtype=torch.bool), maps).combine(k).abs()
    inside = support & (rss > 0.1 * rss.max())
    assert float(((combined - rss).abs()[inside] / rss[inside]).max()) < 0.05


def test_input_is_the_sense1_zero_filled_image_and_dc_never_increases_the_residual(folder):
    train, _ = build_kspace_datasets(folder, size=SIZE)
    c = _corruption(train.coils)
    batch, ids = collate([train[i] for i in range(3)])
    assert batch.batch_size == 3 and torch.equal(ids, torch.tensor([train.ident(i) for i in range(3)]))
    pair = c.pair(batch, generator=torch.Generator().manual_seed(0))
    k, maps = batch.y, batch.maps
    m = pair.acq.sampled
    want = (maps.conj() * ifft2c(k * m[:, None] / c.keep_prob)).sum(1)
    torch.testing.assert_close(torch.complex(pair.input[:, 0], pair.input[:, 1]), want, atol=1e-5, rtol=1e-4)
    op = Acquisition(m, maps)
    x = torch.randn(3, 2, SIZE, SIZE)
    out = c.data_consistency(x, pair.acq)
    before = (op(torch.complex(x[:, 0], x[:, 1])) - pair.acq.y).norm()
    after = (op(torch.complex(out[:, 0], out[:, 1])) - pair.acq.y).norm()
    assert float(after) < float(before)
    clean = c.pair(batch, generator=torch.Generator().manual_seed(0), target="clean")
    torch.testing.assert_close(clean.target, torch.stack([(maps.conj() * ifft2c(k)).sum(1).real,
                                                          (maps.conj() * ifft2c(k)).sum(1).imag], 1))


def test_multicoil_kspace_loss_is_unbiased_over_target_masks():
    """E over target masks of the 1/p-weighted per-coil loss = the image L2 on the maps' support."""
    torch.manual_seed(0)
    coils, n = 4, 3000
    maps = birdcage_maps((16, 16), coils)
    c = MultiCoilUndersampling(
        __import__("mri_n2n.masks", fromlist=["make_family"]).make_family("exp", (16, 16), fraction=0.3),
        coils=coils,
    )
    x = torch.randn(1, 16, 16, dtype=torch.complex64)
    f = x + 0.3 * torch.randn(1, 16, 16, dtype=torch.complex64)
    k = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(maps * x[:, None], dim=(-2, -1)), norm="ortho"),
                           dim=(-2, -1))
    masks = c.draw_masks(n, torch.Generator().manual_seed(1))
    target_acq = Acquisition(masks, maps.expand(n, -1, -1, -1), keep_prob=c.keep_prob).with_data(k)
    out = torch.stack([f.real, f.imag], 1).expand(n, -1, -1, -1)
    loss = kspace_loss(out, out, Pair(out, out, target_acq=target_acq))
    assert float(kspace_loss(out, out, target_acq)) == float(loss)  # the target acquisition alone
    full = (((f - x).abs() ** 2) * (maps.abs() ** 2).sum(0)).sum() / (2 * 16 * 16)
    assert float(loss) == pytest.approx(float(full), rel=0.05)


def test_training_on_multicoil_files_and_refusals(folder, tmp_path):
    from mri_n2n.training import train

    out = tmp_path / "run"
    cfg = Config(dataset="kspace", data_dir=str(folder), size=SIZE, preset="tiny", model="unrolled",
                 cascades=2, loss="kspace", density="lines_random", acceleration=3, center_fraction=0.15,
                 max_steps=4, steps_per_epoch=2, val_limit=3, quiet=True, tensorboard=False, out=str(out))
    summary = train(cfg)
    assert summary["val_psnr"] > 0 and (out / "checkpoints" / "last.pt").is_file()
    saved = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert saved["corruption"]["name"] == "MultiCoilUndersampling" and saved["corruption"]["coils"] == 6
    sig = saved["acquisition"]  # what the model was trained for
    assert sig["kind"] == "cartesian" and sig["coils"] == "multi" and sig["complex"] and sig["channels"] == 2
    assert sig["law"]["family"] == "lines_random" and sig["measured_law"] is False
    # one kind of file per folder, one coil count per dataset
    mixed = tmp_path / "mixed"
    _folder(mixed, n_files=1)
    write_fastmri_h5(mixed / "single.h5", np.ones((2, SIZE, SIZE), np.float32))
    with pytest.raises(Exception, match="multi-coil and 1 single-coil"):
        build_kspace_datasets(mixed, size=SIZE)
    other = tmp_path / "coils"
    _folder(other, n_files=1, coils=6)
    write_fastmri_multicoil_h5(other / "eight.h5", np.ones((2, SIZE, SIZE), np.float32),
                               birdcage_maps((SIZE, SIZE), 8).numpy())
    with pytest.raises(VolumeError, match="coils"):
        build_kspace_datasets(other, size=SIZE, valid_fraction=0.0)


def test_reconstruct_multicoil_files_end_to_end(folder, tmp_path):
    """`mri-n2n reconstruct` on fastMRI multi-coil and ISMRMRD files: undersampled files are
    reconstructed with their estimated mask law, a fully sampled file with every sample measured
    gives back its coil combination (the data consistency keeps all of it), and --simulate scores
    a retrospective study against the file's reference."""
    import importlib.util
    import json
    import subprocess
    import sys

    from mri_n2n.data.synthetic_raw import write_ismrmrd_file, write_twix_file
    from mri_n2n.masks import make_family
    from mri_n2n.training import train

    run = tmp_path / "run"
    train(Config(dataset="kspace", data_dir=str(folder), size=SIZE, preset="tiny", model="unrolled",
                 cascades=2, density="lines_random", acceleration=3, center_fraction=0.2, max_steps=2,
                 steps_per_epoch=2, val_limit=2, quiet=True, tensorboard=False, out=str(run)))
    ckpt = run / "checkpoints" / "last.pt"
    maps = birdcage_maps((SIZE, SIZE), 6).numpy()
    imgs = np.moveaxis(phantom_volume((SIZE, SIZE, 3), seed=9).astype(np.float32), 2, 0)
    imgs = imgs / imgs.max()
    cols = make_family("lines_random", (2 * SIZE, SIZE), acceleration=3, center_fraction=0.25).sample(
        generator=torch.Generator().manual_seed(0))[0].numpy().astype(np.float32)
    data = tmp_path / "in"
    data.mkdir()
    write_fastmri_multicoil_h5(data / "under.h5", imgs, maps, mask=cols, oversample=2)
    write_fastmri_multicoil_h5(data / "full.h5", imgs, maps, oversample=2)
    write_ismrmrd_file(data / "raw.mrd", imgs, maps, mask=cols, oversample=2)
    twix = importlib.util.find_spec("twixtools") is not None
    if twix:  # the raw extra: a Siemens VE file through the same path
        write_twix_file(data / "meas.dat", imgs, maps, mask=cols, oversample=2)

    def rec(out, *extra):
        cmd = [sys.executable, "-m", "mri_n2n", "reconstruct", "--checkpoint", str(ckpt), "--out", str(out)]
        r = subprocess.run([*cmd, *extra, "--quiet"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return {Path(x["input"]).name: x for x in json.loads((out / "report.json").read_text())["inputs"]}

    raw = [str(data / "meas.dat")] if twix else []
    rows = rec(tmp_path / "o1", str(data / "under.h5"), str(data / "raw.mrd"), str(data / "full.h5"), *raw)
    assert all(r["status"] == "ok" and r["coils"] == 6 for r in rows.values()) and len(rows) == 3 + len(raw)
    assert rows["under.h5"]["mask_law"]["source"] == "estimated"
    assert rows["raw.mrd"]["shape"] == [SIZE, SIZE, 3]
    assert rows["full.h5"]["metrics"]["psnr"] > 40  # nothing to fill in: the data's own combination
    assert rows["under.h5"]["metrics"]["psnr_zero_filled_plain"] < 35
    sim = rec(tmp_path / "o2", str(data / "full.h5"), "--simulate", "0.34")
    assert sim["full.h5"]["mode"] == "simulate" and sim["full.h5"]["sampled_fraction"] < 0.5
    assert sim["full.h5"]["metrics"]["psnr_zero_filled_plain"] < rows["full.h5"]["metrics"]["psnr"]
    # the coil-compression option: lossless with all coils, still the data's combination with 3
    from mri_n2n.io.raw import read_raw
    from mri_n2n.reconstruction import Reconstructor

    r = Reconstructor.from_checkpoint(ckpt, device="cpu")
    mc = read_raw(data / "full.h5")
    plain, same = r.multicoil(mc), r.multicoil(mc, virtual_coils=6)
    assert np.allclose(same.image, plain.image, atol=1e-4 * plain.image.max())
    assert r.multicoil(mc, virtual_coils=3).metrics["psnr"] > 35
    cc = rec(tmp_path / "o3", str(data / "full.h5"), "--virtual-coils", "6")
    assert cc["full.h5"]["metrics"]["psnr"] == pytest.approx(rows["full.h5"]["metrics"]["psnr"], abs=0.05)


@pytest.mark.parametrize("target", ["ssdu", "noisier2noise"])
def test_single_acquisition_targets_on_multicoil_data(folder, tmp_path, target):
    train_set, _ = build_kspace_datasets(folder, size=SIZE, undersampled=True)
    cfg, _ = resolve_config(Config(dataset="kspace", density="lines_random", acceleration=3,
                                   center_fraction=0.15, target=target))
    c = MultiCoilUndersampling.from_config(cfg, (SIZE, SIZE), coils=train_set.coils)
    batch, _ = collate([train_set[i] for i in range(2)])
    seeds = torch.tensor([5, 6])
    a = c.pair(batch, generator=torch.Generator().manual_seed(0), target=target, seeds=seeds)
    b = c.pair(batch, generator=torch.Generator().manual_seed(1), target=target, seeds=seeds)
    inp, held = a.acq.sampled, a.target_acq.sampled
    assert not bool((inp & held).any())
    assert torch.equal(inp | held, b.acq.sampled | b.target_acq.sampled)  # one acquisition
    assert not torch.equal(inp, b.acq.sampled)  # split afresh
    # the input is the SENSE-1 image of the kept samples, compensated by p q
    maps = a.acq.maps  # shifted with the coil images
    assert torch.equal(a.target_acq.maps, maps)  # the held-out samples see the same coils
    pq = c.keep_prob * c.split.keep_probability()
    y = a.acq.y
    assert torch.equal(y != 0, (y != 0) & inp[:, None])
    want = (maps.conj() * ifft2c(y / pq.clamp_min(1e-12))).sum(1)
    torch.testing.assert_close(torch.complex(a.input[:, 0], a.input[:, 1]), want, atol=1e-5, rtol=1e-4)
    from mri_n2n.training import train

    out = tmp_path / "run"
    summary = train(cfg.replace(data_dir=str(folder), size=SIZE, preset="tiny", model="unrolled", cascades=2,
                                max_steps=2, steps_per_epoch=2, val_limit=2, quiet=True, tensorboard=False,
                                out=str(out)))
    assert summary["val_psnr"] > 0
    saved = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert saved["corruption"]["split"]["kind"] == target and saved["corruption"]["coils"] == 6


def test_prox_network_trains_evaluates_and_reconstructs_multicoil(folder, tmp_path):
    """--dc prox on multi-coil files: the run trains, evaluate scores it next to CG-SENSE and
    TV-SENSE (the given weights recorded), and reconstruct returns the network's own output (no
    second projection) for a fully sampled slice set."""
    from mri_n2n.evaluation import evaluate_mri
    from mri_n2n.training import train

    run = tmp_path / "prox"
    train(Config(dataset="kspace", data_dir=str(folder), size=SIZE, preset="tiny", model="unrolled",
                 cascades=2, dc="prox", cg_iters=3, loss="kspace", density="lines_lattice", acceleration=3,
                 center_fraction=0.2, max_steps=2, steps_per_epoch=2, val_limit=2, quiet=True,
                 tensorboard=False, out=str(run)))
    ckpt = run / "checkpoints" / "last.pt"
    saved = torch.load(ckpt, weights_only=True)
    assert saved["model_spec"]["kwargs"]["dc"] == "prox" and "log_lam" in saved["model"]
    ev = evaluate_mri([ckpt], limit=3, progress=False, tv_lam=2e-3, sense_lam=0.02, tv_iters=20, device="cpu")
    assert ev["methods"] == ["zero-filled", "CG-SENSE", "TV-SENSE", "N2N"]
    assert ev["settings"]["tv_lam"] == 2e-3 and ev["settings"]["sense_lam"] == 0.02
    s = ev["summary"]
    assert s["TV-SENSE"]["psnr_mean"] > s["zero-filled"]["psnr_mean"]
    # --adapt on multi-coil data: the copy adapted to the evaluated slices' coil measurements
    ev = evaluate_mri([ckpt], limit=3, progress=False, tv_lam=2e-3, sense_lam=0.02, tv_iters=5, device="cpu",
                      adapt=3)  # fmt: skip
    assert ev["methods"][-2:] == ["N2N", "N2N adapted"]
    a, b = ev["summary"]["N2N adapted"]["psnr_mean"], ev["summary"]["N2N"]["psnr_mean"]
    assert np.isfinite(a) and a != b

    from mri_n2n.io.raw import read_raw
    from mri_n2n.models import ends_with_dc
    from mri_n2n.reconstruction import Reconstructor
    from mri_n2n.reconstruction.multicoil import reconstruct_multicoil

    def no_projection(output, context):
        raise AssertionError("a --dc prox network's output is projected again")

    rec = Reconstructor.from_checkpoint(ckpt, device="cpu")
    assert ends_with_dc(rec.model)
    out = reconstruct_multicoil(rec.model, no_projection, read_raw(folder / "mc0.h5"))
    assert out.image.shape[-1] == 5 and np.isfinite(out.image).all()


def test_multicoil_bench_tunes_its_baselines_on_training_slices(folder):
    from mri_n2n.bench.multicoil import TIKHONOV_LAMS, TV_LAMS, multicoil_markdown, tune_baselines

    cfg = Config(dataset="kspace", data_dir=str(folder), size=SIZE, density="lines_lattice", acceleration=3,
                 center_fraction=0.2)
    tuned = tune_baselines(cfg, slices=3)
    assert tuned["tv_lam"] in TV_LAMS and tuned["sense_lam"] in TIKHONOV_LAMS and tuned["slices"] == 3
    assert [r["lam"] for r in tuned["tv_table"]] == list(TV_LAMS)
    best = max(tuned["tv_table"], key=lambda r: r["psnr"])
    assert best["lam"] == tuned["tv_lam"]
    row = {"summary": {m: {"psnr_mean": 30.0 + i, "ssim_mean": 0.9} for i, m in
                       enumerate(["zero-filled", "CG-SENSE", "TV-SENSE", "N2N"])},
           "train_seconds": {"N2N": 12.0}, "tuned": tuned}
    md = multicoil_markdown({"settings": {"coils": 6, "noise_std": 0.01, "size": SIZE, "steps": 2, "seed": 0,
                                          "dc": "prox"},
                             "rows": {"equispaced 3x": row}, "speed": {"seconds": 1.5},
                             "goals": {"g": True}})
    assert "| equispaced 3x | 30.00 / 0.900 | - | 31.00 / 0.900 | 32.00 / 0.900 | 33.00 / 0.900 | - |" in md
    assert "--dc prox" in md


def test_explicit_train_val_subfolders_split_the_folder(tmp_path):
    """fastMRI's layout (``multicoil_train/`` and ``multicoil_val/``) decides the split, whatever
    the seeded file split would have chosen; files elsewhere are not used (with a warning)."""
    maps = birdcage_maps((SIZE, SIZE), 4).numpy()
    root = tmp_path / "fastmri"
    for sub, n in (("multicoil_train", 3), ("multicoil_val", 1), ("other", 1)):
        (root / sub).mkdir(parents=True)
        for i in range(n):
            vol = phantom_volume((SIZE, SIZE, 3), seed=i).astype(np.float32)
            imgs = np.moveaxis(vol, 2, 0) / vol.max()
            write_fastmri_multicoil_h5(root / sub / f"{sub}{i}.h5", imgs, maps, seed=i)
    with pytest.warns(UserWarning, match="1 other k-space file"):
        train, valid = build_kspace_datasets(root, size=SIZE)
    assert [Path(f).parent.name for f in valid.files] == ["multicoil_val"]
    assert sorted(Path(f).parent.name for f in train.files) == ["multicoil_train"] * 3
    (root / "val").mkdir()
    with pytest.raises(Exception, match="several training or validation subfolders"):
        build_kspace_datasets(root, size=SIZE)


def test_multicoil_study_holds_out_the_mni152_validation_slices(tmp_path):
    """The study's validation file is the MNI152 validation slices, more than 5 mm from every
    training slice, and it is the file ``--dataset kspace`` holds out (a seeded file split once
    held out a file of training slices)."""
    pytest.importorskip("nilearn")
    import h5py

    from mri_n2n.bench.multicoil import SLICES_ATTR, write_multicoil_study_data
    from mri_n2n.data.datasets import mri_datasets_from_config
    from mri_n2n.data.mni152 import GAP_MM, build_mni152_datasets, mni152_slices

    data = write_multicoil_study_data(tmp_path / "data", SIZE, files=3)
    cfg, _ = resolve_config(Config(dataset="kspace", data_dir=str(data), size=SIZE, density="lines_lattice",
                                   acceleration=4, center_fraction=0.08))
    train, valid = mri_datasets_from_config(cfg)

    def slices(ds) -> list[int]:
        out = []
        for f in ds.files:
            with h5py.File(f, "r") as h:
                out += [int(v) for v in h.attrs[SLICES_ATTR]]
        return out

    tr, va = slices(train), slices(valid)
    assert [Path(f).name for f in valid.files] == ["valid.h5"] and len(va) == len(valid)
    _, mni_valid = build_mni152_datasets(size=SIZE)
    assert sorted(va) == sorted(int(mni_valid.provenance(i)["slice"]) for i in range(len(mni_valid)))
    spacing = mni152_slices(SIZE)[2]
    gap = min(abs(a - b) for a in tr for b in va) * spacing
    assert gap > GAP_MM
    assert not set(tr) & set(va)


def test_train_maps_estimated_gives_the_network_the_maps_reconstruct_would_estimate():
    """--train-maps estimated: every item's input and target acquisitions carry the maps that
    estimate_maps (the inference settings) gives from that input's own measurements; padded
    silent coils stay silent; an item whose centre is too small keeps its true maps; the clean
    reference stays the true coil combination; --train-maps true (the default) keeps the data's
    maps."""
    from mri_n2n.coil_maps import INFERENCE_MAPS, MAPS_MIN_CALIBRATION, estimate_maps
    from mri_n2n.fft import fft2c
    from mri_n2n.masks import make_family
    from mri_n2n.seeding import seeded_generator

    h, w, c = 48, 40, 6
    maps = birdcage_maps((h, w), c)
    maps = torch.cat([maps, torch.zeros(2, h, w, dtype=maps.dtype)])  # two silent (padded) coils
    x = torch.zeros(3, h, w, dtype=torch.complex64)
    x[:, 10:38, 8:32] = 1.0
    x[:, 18:24, 12:20] = 0.4 + 0.2j
    full = torch.ones(3, h, w, dtype=torch.bool)
    data = Acquisition(full, maps[None].expand(3, -1, -1, -1), None).with_data(fft2c(maps * x[:, None]))
    fam = make_family("lines_equispaced", (h, w), acceleration=4.0, center_fraction=0.25)
    est = MultiCoilUndersampling(fam, coils=c + 2, estimate_maps=INFERENCE_MAPS)
    assert est.config()["estimate_maps"] == INFERENCE_MAPS
    pair = est.pair(data, generator=seeded_generator(0), target="noisy")
    for i in range(3):
        y = pair.acq.y[i]
        want = estimate_maps(y[:c], INFERENCE_MAPS["method"], min_calib=MAPS_MIN_CALIBRATION,
                             **{k: v for k, v in INFERENCE_MAPS.items() if k != "method"})
        assert torch.allclose(pair.acq.maps[i, :c], want.to(pair.acq.maps.dtype), atol=1e-5)
        assert not pair.acq.maps[i, c:].abs().any()
    assert torch.equal(pair.target_acq.maps, pair.acq.maps)
    assert not torch.allclose(pair.acq.maps[:, :c], maps[:c].expand(3, -1, -1, -1), atol=1e-2)
    clean = est.pair(data, generator=seeded_generator(0), target="clean")
    assert torch.allclose(clean.target, torch.stack([x.real, x.imag], 1), atol=1e-4)
    # measure() with one mask shared by the batch: every item's maps from that mask's samples
    shared = fam.sample(1, generator=seeded_generator(2))[0]
    one = est.measure(data, shared)
    for i in range(3):
        want = estimate_maps(one.acq.y[i, :c], INFERENCE_MAPS["method"], min_calib=MAPS_MIN_CALIBRATION,
                             **{k: v for k, v in INFERENCE_MAPS.items() if k != "method"})
        assert torch.allclose(one.acq.maps[i, :c], want.to(one.acq.maps.dtype), atol=1e-5)

    narrow = make_family("lines_equispaced", (h, w), acceleration=4.0, center_fraction=0.04)  # 2 lines
    kept = MultiCoilUndersampling(narrow, coils=c + 2, estimate_maps=INFERENCE_MAPS)
    pair = kept.pair(data, generator=seeded_generator(1), target="noisy")
    assert torch.equal(pair.acq.maps, data.maps.to(pair.acq.maps.dtype))

    cfg, _ = resolve_config(Config(task="mri", preset="cpu", density="mixed"))
    assert cfg.train_maps == "true"
    assert MultiCoilUndersampling.from_config(cfg, (h, w), coils=c).estimate_maps is None
    on = MultiCoilUndersampling.from_config(cfg.replace(train_maps="estimated"), (h, w), coils=c)
    assert on.estimate_maps == INFERENCE_MAPS
