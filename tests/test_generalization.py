"""The generalisation benchmark: real scans that ship with installed packages, the same masks
for every method, CS-TV tuned per volume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mri_n2n.baselines import tv_reconstruct
from mri_n2n.bench.generalization import (
    bench_generalization,
    generalization_markdown,
    load_real_volume,
    real_volumes,
)
from mri_n2n.cli.bench import main as bench_main
from mri_n2n.config import Config
from mri_n2n.data import volume_scale
from mri_n2n.fft import fft2c
from mri_n2n.metrics import volume_metrics
from mri_n2n.models import apply_model, ends_with_dc
from mri_n2n.physics import SpectralSampling
from mri_n2n.reconstruction import Reconstructor
from mri_n2n.reconstruction.engine import simulated_masks
from mri_n2n.training import train

pytest.importorskip("nilearn")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    train(Config(preset="tiny", dataset="mni152", max_steps=3, out=str(out), quiet=True, tensorboard=False,
                 figures=False, val_limit=4))  # fmt: skip
    return out / "checkpoints" / "last.pt"


def test_real_volumes_are_real_scans():
    vols = {v.name: v for v in real_volumes()}
    assert {"epi-bold", "t1-small", "mr-dicom", "abdomen-mr", "phantom-epi"} <= set(vols)
    epi = load_real_volume(vols["epi-bold"])
    assert epi.shape == (128, 96, 24) and epi.dtype == np.float32 and epi.max() > 0
    assert load_real_volume(vols["t1-small"]).shape == (33, 41, 25)


def test_every_method_sees_the_same_masks_and_cs_tv_is_tuned_per_volume(ckpt):
    vol = [v for v in real_volumes() if v.name == "t1-small"]
    lams = (1e-4, 3e-3)
    res = bench_generalization({"N2N": ckpt}, volumes=vol, lams=lams, tv_iters=10, seed=3)
    row = res["rows"][0]
    arr = load_real_volume(vol[0])
    rec = Reconstructor.from_checkpoint(ckpt, device="cpu")
    # zero-filled, recomputed independently from the seeded masks and the 1/p compensation
    ref = torch.from_numpy(np.ascontiguousarray(np.moveaxis(arr, 2, 0)))
    n, h, w = ref.shape
    corruption = rec.corruption((h, w), 0.1)
    masks = simulated_masks(corruption, range(n), 3)
    zf = SpectralSampling(masks).zero_filled(fft2c(ref) * masks, corruption.keep_prob).abs()
    assert row["zero-filled/psnr"] == pytest.approx(volume_metrics(zf, ref)["psnr"], abs=1e-4)
    # the network's row, recomputed without the engine: the volume normalised as in training,
    # the same masks and compensation, the network, the exact projection, back to the volume's units
    scale = volume_scale(arr, rec.normalize)
    y = fft2c(ref / scale) * masks
    inp = SpectralSampling(masks).zero_filled(y, corruption.keep_prob).real[:, None]
    with torch.no_grad():
        out = apply_model(rec.model, inp, SpectralSampling(masks, y[:, None]))[:, 0]
    out = out if ends_with_dc(rec.model) else SpectralSampling(masks).project(out.to(y.dtype), y)
    active = (y.abs().flatten(1).amax(1) > 0)[:, None, None]  # empty slices are written as 0
    mine = volume_metrics(torch.where(active, out.abs(), 0.0) * scale, ref)["psnr"]
    assert row["N2N/psnr"] == pytest.approx(mine, abs=1e-3)
    assert row["N2N/psnr"] > row["zero-filled/psnr"] + 1.0
    # CS-TV: the best of the weights tried (the given ones, and past an edge winner more), same masks
    tried = row["CS-TV/lams"]
    assert set(lams) <= set(tried) and len(tried) <= len(lams) + 4
    scale = volume_scale(arr, "max")
    per_lam = []
    for lam in tried:
        out = tv_reconstruct(fft2c(ref / scale) * masks, masks, lam=lam, iters=10, rho=30 * lam)
        per_lam.append(volume_metrics(out.abs() * scale, ref)["psnr"])
    assert row["CS-TV/psnr"] == pytest.approx(max(per_lam), abs=1e-6)
    assert row["CS-TV/lam"] == tried[int(np.argmax(per_lam))]
    assert row["CS-TV/interior"] == (min(tried) < row["CS-TV/lam"] < max(tried))
    given_best = max(lams, key=lambda v: per_lam[tried.index(v)])
    if len(tried) > len(lams):  # the grid only grows past an edge winner
        assert given_best in (min(lams), max(lams))
    assert res["mean"]["N2N"]["psnr"] == pytest.approx(row["N2N/psnr"])
    assert set(res["inference_s_per_slice"]) == {"N2N"} and res["inference_s_per_slice"]["N2N"] > 0


def test_adapted_rows_report_the_adaptation(ckpt):
    """With --adapt the row records what the adaptation did: steps taken, the step kept, seconds."""
    vol = [v for v in real_volumes() if v.name == "mr-dicom"]
    res = bench_generalization({"N2N": ckpt}, volumes=vol, lams=(1e-3,), tv_iters=5, adapt=3)
    row = res["rows"][0]
    assert res["methods"] == ["zero-filled", "CS-TV", "N2N", "N2N adapted"]
    rep = row["N2N adapted/adapt"]
    assert rep["steps"] == 3 and rep["best_step"] == 3 and not rep["stopped_early"]
    assert 0 < rep["seconds"] <= row["N2N adapted/seconds"]
    assert "N2N/adapt" not in row
    assert "| mr-dicom | 3 / 3 / " in generalization_markdown(res)


def test_cli_writes_json_and_markdown_that_agree(ckpt, tmp_path, capsys):
    rc = bench_main(["generalization", "--quick", "--checkpoint", f"tiny={ckpt}", "--results", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "generalization_quick.json").read_text())
    md = (tmp_path / "generalization_quick.md").read_text()
    assert res["methods"] == ["zero-filled", "CS-TV", "tiny"]
    for row in res["rows"]:
        assert f"| {row['volume']} |" in md and f"{row['tiny/psnr']:.2f} / {row['tiny/ssim']:.3f}" in md
    assert bench_main(["generalization", "--checkpoint", str(tmp_path / "missing.pt")]) == 2


@pytest.fixture(scope="module")
def complex_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("genc")
    train(Config(preset="tiny", dataset="mni152", max_steps=3, out=str(out), quiet=True, tensorboard=False,
                 figures=False, val_limit=4, complex=True, density="mixed", phase_model="realistic",
                 model="unrolled", cascades=2, dc="prox"))  # fmt: skip
    return out / "checkpoints" / "last.pt"


def test_complex_lines_study_scores_every_method_on_the_same_complex_kspace(complex_ckpt):
    """The scanner-like study: each slice given the phase model's phase, equispaced 4x lines; the
    zero-filled row recomputed from the same seeded data, the network and CS-TV scored against the
    magnitude, CS-TV complex at its best weight."""
    from mri_n2n.bench.generalization import complex_lines_volume

    vol = [v for v in real_volumes() if v.name == "t1-small"]
    res = bench_generalization({"N2N": complex_ckpt}, volumes=vol, lams=(1e-3, 1e-2), tv_iters=5, seed=2,
                               fraction=0.25, study="complex-lines")  # fmt: skip
    row = res["rows"][0]
    assert res["study"] == "complex-lines" and res["methods"] == ["zero-filled", "CS-TV", "N2N"]
    z, masks, law = complex_lines_volume(load_real_volume(vol[0]), 0.25, 2)
    assert law.name == "lines_equispaced" and bool((masks == masks[:, :1]).all())  # whole lines
    assert float(z.angle()[z.abs() > 0.2].std()) > 0.05  # complex, not a magnitude
    zf = SpectralSampling(masks).zero_filled(fft2c(z) * masks, law.keep_probability()).abs()
    assert row["zero-filled/psnr"] == pytest.approx(volume_metrics(zf, z.abs())["psnr"], abs=1e-4)
    # CS-TV: complex, on the same data, at the weight the row reports
    from mri_n2n.baselines import cs_tv
    from mri_n2n.physics import Acquisition

    lam = row["CS-TV/lam"]
    acq = Acquisition(masks, keep_prob=law.keep_probability()).with_data(fft2c(z)[:, None])
    x = cs_tv(acq, lam=lam, iters=5, rho=30.0 * lam, real=False).abs().reshape(z.shape)
    assert row["CS-TV/psnr"] == pytest.approx(volume_metrics(x, z.abs())["psnr"], abs=1e-4)
    # the network: the k-space reconstruction of the same measurements with the law given
    rec = Reconstructor.from_checkpoint(complex_ckpt, device="cpu")
    y = (fft2c(z) * masks).numpy()
    out = rec.kspace(y, masks.numpy(), law=law).image
    out = out if out.shape == tuple(z.shape) else np.moveaxis(out, -1, 0)
    assert row["N2N/psnr"] == pytest.approx(volume_metrics(out, z.abs())["psnr"], abs=1e-4)
    assert "| t1-small |" in generalization_markdown(res)


def test_a_mixed_law_studied_at_a_rate_is_one_protocol():
    from mri_n2n.masks import family_for, make_family

    fam = make_family("mixed", (32, 40))
    assert fam.per_item and fam.at_rate(0.25).name == "lines_equispaced"
    assert fam.at_rate(0.25).describe()["acceleration"] == pytest.approx(4.0)
    cfg = Config(density="mixed")
    assert family_for(cfg, (32, 40)).name == "mixed"  # training: the mixture
    assert family_for(cfg, (32, 40), fraction=0.125).describe()["acceleration"] == pytest.approx(8.0)


@pytest.fixture(scope="module")
def multicoil_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("genmc")
    train(Config(preset="tiny", dataset="mni152", max_steps=2, out=str(out), quiet=True, tensorboard=False,
                 figures=False, val_limit=2, synth_coils="4", synth_coil_noise=0.01, density="mixed",
                 phase_model="realistic", model="unrolled", cascades=2, dc="prox", cg_iters=2, loss="kspace",
                 size=32))  # fmt: skip
    return out / "checkpoints" / "last.pt"


def test_multicoil_lines_study_scores_the_networks_and_tv_sense_on_the_same_coil_data(multicoil_ckpt):
    """The multi-coil study: the complex-lines slices seen by one random 8-coil array with
    correlated noise; the reference is the RSS of the noise-free coil images; zero-filling is the
    RSS of the zero-filled coils; TV-SENSE (same estimated maps) at its best weight; the network
    scored as reconstruct reconstructs the coil k-space."""
    from mri_n2n.bench.generalization import (
        MULTICOIL_CENTER_LINES,
        MULTICOIL_COILS,
        complex_lines_volume,
        multicoil_lines_volume,
    )
    from mri_n2n.coils import rss
    from mri_n2n.fft import ifft2c

    vol = [v for v in real_volumes() if v.name == "mr-dicom"]
    res = bench_generalization({"N2N": multicoil_ckpt}, volumes=vol, lams=(1e-3, 1e-2), tv_iters=5, seed=1,
                               fraction=0.25, study="multicoil-lines")  # fmt: skip
    row = res["rows"][0]
    assert res["methods"] == ["zero-filled", "TV-SENSE", "N2N"] and row["coils"] == MULTICOIL_COILS
    y, masks, ref, law = multicoil_lines_volume(load_real_volume(vol[0]), 0.25, 1)
    z, masks_c, _ = complex_lines_volume(load_real_volume(vol[0]), 0.25, 1, MULTICOIL_CENTER_LINES)
    assert torch.equal(masks, masks_c) and y.shape[1] == MULTICOIL_COILS  # the complex study's masks
    assert int(masks[0, 0].sum()) >= MULTICOIL_CENTER_LINES + 64 // 8  # a calibration region
    assert bool((y[~masks[:, None].expand_as(y)] == 0).all())  # measured on the lines only
    # the reference is the RSS of noise-free coil images: |z| times the maps' RSS, not |z|
    assert ref.shape == tuple(z.shape) and not np.allclose(ref, z.abs().numpy())
    zf = rss(ifft2c(y), dim=1).numpy()
    assert row["zero-filled/psnr"] == pytest.approx(volume_metrics(zf, ref)["psnr"], abs=1e-4)
    # TV-SENSE: on the same data with the maps reconstruct estimates, at the weight the row reports
    from mri_n2n.baselines import tv_sense
    from mri_n2n.reconstruction.multicoil import inference_maps

    lam = row["TV-SENSE/lam"]
    assert lam in row["TV-SENSE/lams"] and {1e-3, 1e-2} <= set(row["TV-SENSE/lams"])
    maps = inference_maps(y)
    x = tv_sense(y, maps, masks, lam=lam, iters=5).abs().numpy()
    assert row["TV-SENSE/psnr"] == pytest.approx(volume_metrics(x, ref)["psnr"], abs=1e-4)
    assert np.isfinite(row["N2N/psnr"]) and np.isfinite(row["N2N/psnr_rss"])
    md = generalization_markdown(res)
    assert "TV-SENSE weight per volume" in md and "`rss` output" in md
