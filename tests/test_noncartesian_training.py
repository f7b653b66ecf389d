"""Non-Cartesian runs end to end through the public API and the CLI (issue 33 item 3): a
``--trajectory`` run trains Noise2Noise pairs, Noise2Clean and the single-acquisition targets;
evaluation puts the density-compensated adjoint, CG-SENSE and CS-TV beside the network; a
retrospective study takes ``--trajectory``. Tiny runs (32 x 32, a few steps): they check the
plumbing, not the quality."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mri_n2n.config import Config, ConfigError, resolve_config
from mri_n2n.evaluation import evaluate_mri
from mri_n2n.noncartesian import NonCartesianAcquisition
from mri_n2n.training import train

pytest.importorskip("pytorch_finufft")
pytest.importorskip("mrinufft")

N = 32


def _cfg(tmp_path, name: str, **kw) -> Config:
    base = dict(dataset="synth", size=N, preset="tiny", model="unrolled", cascades=2, max_steps=2,
                batch_size=2, val_limit=2, figures=False, tensorboard=False, quiet=True, threads=1,
                out=str(tmp_path / name))
    return Config(**{**base, **kw})


def test_a_trajectory_is_noncartesian_with_the_proximal_step():
    cfg, _ = resolve_config(Config(dataset="synth", trajectory="spiral"))
    assert cfg.acquisition == "noncartesian" and cfg.dc == "prox"
    cart, _ = resolve_config(Config(dataset="synth"))
    assert cart.acquisition == "cartesian" and cart.dc == "replace"  # Cartesian runs unchanged
    law = NonCartesianAcquisition.law(cfg, (N, N))
    assert law.name == "spiral" and law.describe()["trajectory"] == "spiral"
    for bad, msg in (({"spokes": 8}, "add --trajectory"), ({"trajectory": "radial", "spokes": 0}, ">= 1"),
                     ({"trajectory": "rosette"}, "unknown value")):
        with pytest.raises(ConfigError, match=msg):
            resolve_config(Config.from_dict({"dataset": "synth", **bad}))


def test_off_the_grid_the_presets_train_with_the_density_weighted_kspace_loss():
    """The presets' ``kspace`` loss becomes ``kspace_density`` for a trajectory (Noise2Noise and
    Noisier2Noise); an explicit ``--loss`` wins, SSDU keeps its unweighted loss, and Cartesian
    runs keep ``kspace``."""
    radial = dict(dataset="synth", trajectory="golden-radial", preset="cpu")
    for target in ("noisy", "noisier2noise"):
        cfg, _ = resolve_config(Config(**radial, target=target))
        assert cfg.loss == "kspace_density", target
    ssdu, _ = resolve_config(Config(**radial, target="ssdu"))
    assert ssdu.loss == "kspace_flat"
    mine, _ = resolve_config(Config(dataset="synth", trajectory="radial", preset="cpu", loss="kspace"))
    assert mine.loss == "kspace"
    cart, _ = resolve_config(Config(dataset="synth", preset="cpu"))
    assert cart.loss == "kspace"


def test_trajectory_runs_train_and_evaluate(tmp_path, monkeypatch):
    runs = {
        "n2n": _cfg(tmp_path, "n2n", trajectory="golden-radial", acceleration=4.0),
        "n2c": _cfg(tmp_path, "n2c", trajectory="radial", target="clean"),
        "ssdu": _cfg(tmp_path, "ssdu", trajectory="radial", target="ssdu"),
        "n2": _cfg(tmp_path, "n2", trajectory="spiral", target="noisier2noise", complex=True),
    }
    for cfg in runs.values():
        s = train(cfg)
        assert math.isfinite(s["best_val_psnr"])
    ckpt = tmp_path / "n2n" / "checkpoints" / "best.pt"
    res = evaluate_mri([ckpt], limit=2, tv_iters=5, progress=False, device="cpu")
    assert res["methods"] == ["zero-filled", "CG-SENSE", "CS-TV", "N2N"]
    assert "golden-radial" in res["settings"]["sampling"]
    summ = res["summary"]
    # the baselines start from the density-compensated adjoint and improve on it
    assert summ["CG-SENSE"]["psnr_mean"] > summ["zero-filled"]["psnr_mean"]
    # evaluate --adapt adapts each model with the weighting it trained with: the Noisier2Noise run
    # (the presets' kspace_density off the grid) with d/p, the l2 one with 1/p
    import mri_n2n.evaluation as evaluation

    seen, real_adapt = [], evaluation.adapt_to_scan

    def spy(*args, **kw):
        seen.append(kw["weighting"])
        return real_adapt(*args, **kw)

    monkeypatch.setattr(evaluation, "adapt_to_scan", spy)
    n2 = tmp_path / "n2" / "checkpoints" / "best.pt"
    for path in (n2, ckpt):
        res = evaluate_mri([path], limit=1, tv_iters=2, adapt=1, progress=False, device="cpu")
        assert all(math.isfinite(v["psnr_mean"]) for v in res["summary"].values())
    assert seen == ["density", "inverse"]


def test_synthetic_coil_data_are_reacquired_along_the_trajectory(tmp_path):
    """Fully sampled Cartesian coil data (--synth-coils) train a trajectory run: each slice's
    coil-combined image and maps are acquired by the run's kind; evaluation gets CG-SENSE and
    TV-SENSE, its reference the data's own image."""
    cfg = _cfg(tmp_path, "coils", trajectory="golden-radial", synth_coils="3:4")
    assert math.isfinite(train(cfg)["best_val_psnr"])
    assert math.isfinite(train(cfg.replace(target="ssdu", out=str(tmp_path / "c2")))["best_val_psnr"])
    res = evaluate_mri([tmp_path / "coils" / "checkpoints" / "best.pt"], limit=2, tv_iters=3,
                       progress=False, device="cpu")
    assert res["methods"] == ["zero-filled", "CG-SENSE", "TV-SENSE", "N2N"]
    s = res["summary"]
    assert s["CG-SENSE"]["psnr_mean"] > s["zero-filled"]["psnr_mean"] + 3


def test_reconstruct_simulate_takes_a_trajectory(tmp_path):
    from mri_n2n.cli.reconstruct import main
    from mri_n2n.io import write_nifti

    train(_cfg(tmp_path, "run", trajectory="radial"))
    ckpt = str(tmp_path / "run" / "checkpoints" / "best.pt")
    i, j = np.mgrid[:N, :N] - N // 2
    vol = np.stack([np.clip(1 - np.hypot(i, j + k) / 12, 0, 1) for k in range(2)], -1).astype(np.float32)
    src = write_nifti(tmp_path / "vol.nii.gz", vol, np.eye(4))
    out = tmp_path / "rec"
    assert main([str(src), "--checkpoint", ckpt, "--simulate", "0.25", "--trajectory", "spiral",
                 "--out", str(out), "--quiet"]) == 0
    assert (out / "vol_recon.nii.gz").exists()
    assert main([str(src), "--checkpoint", ckpt, "--trajectory", "spiral", "--out",
                 str(tmp_path / "x")]) == 2  # --trajectory without --simulate: one line, exit 2


def test_reconstruct_reads_a_trajectory_file_with_a_trajectory_checkpoint(tmp_path):
    """A trajectory file (ISMRMRD, 4 coils, 2 slices, k-space points) reconstructs through the CLI
    with a checkpoint trained on the kind: images at the encoded matrix, finite, each slice its
    own object (a tiny run: it correlates with its disc, better than with the other slice's);
    the input is untouched."""
    pytest.importorskip("ismrmrd")
    import hashlib

    import torch

    from mri_n2n.cli.reconstruct import main
    from mri_n2n.coils import birdcage_maps
    from mri_n2n.io import load_volume
    from mri_n2n.io.noncartesian import write_ismrmrd_noncartesian
    from mri_n2n.noncartesian import trajectory_law

    train(_cfg(tmp_path, "run", trajectory="golden-radial", synth_coils="3:4", acceleration=2.0))
    ckpt = str(tmp_path / "run" / "checkpoints" / "best.pt")
    law = trajectory_law("golden-radial", (N, N), spokes=40)
    traj = law.trajectory[:40]
    i, j = torch.meshgrid(torch.arange(N) - N // 2, torch.arange(N) - N // 2, indexing="ij")
    img = torch.stack([(torch.hypot(i.float(), j.float() + s) < 10).float() for s in (0, 3)])
    img = img.to(torch.complex64)
    maps = birdcage_maps((N, N), 4)
    k = NonCartesianAcquisition(torch.ones(40, dtype=torch.bool), traj, (N, N), maps).forward(img)
    path = tmp_path / "radial.h5"
    write_ismrmrd_noncartesian(path, k.numpy(), traj.numpy() * N, (N, N), trajectory_type="goldenangle")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    out = tmp_path / "rec"
    assert main([str(path), "--checkpoint", ckpt, "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    vol = load_volume(out / "radial_recon.nii.gz").array
    assert vol.shape == (N, N, 2) and np.isfinite(vol).all()
    # each output slice is its own disc (matched against both: the right one correlates better)
    truth = img.abs().numpy()
    for i in range(2):
        r = [np.corrcoef(vol[..., i].ravel(), truth[j].ravel())[0, 1] for j in range(2)]
        assert r[i] > 0.8 and r[i] > r[1 - i], r
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    # --checkpoint default: the shipped model made for trajectory files reconstructs it, and the
    # report names it
    import json

    from mri_n2n.checkpoint import default_pretrained, pretrained

    name = default_pretrained("noncartesian")
    assert "noncartesian" in pretrained()[name].get("default_for", ())
    assert main([str(path), "--checkpoint", "default", "--out", str(tmp_path / "d"), "--quiet"]) == 0
    (row,) = json.loads((tmp_path / "d" / "report.json").read_text())["inputs"]
    assert row["checkpoint"] == name and row["status"] == "ok"
    assert load_volume(tmp_path / "d" / "radial_recon.nii.gz").array.shape == (N, N, 2)


def test_mixed_trajectories_train_and_adapt_to_a_trajectory_file(tmp_path):
    """``--trajectory mixed`` trains (coil counts from one, the protocols drawn per batch) and
    refuses the single-acquisition targets in one line; its checkpoint reconstructs a spiral file
    nobody drew from a law, and ``--adapt`` fine-tunes it on the file's own readouts (the certain
    law: every readout measured) for the steps asked, changing the images, the file untouched."""
    pytest.importorskip("ismrmrd")
    import torch

    from mri_n2n.coils import birdcage_maps
    from mri_n2n.io.noncartesian import write_ismrmrd_noncartesian
    from mri_n2n.io.raw import read_raw
    from mri_n2n.noncartesian import trajectory_law
    from mri_n2n.reconstruction import ReconstructionError, Reconstructor

    with pytest.raises(ConfigError, match="mixed"):
        resolve_config(Config(dataset="synth", trajectory="mixed", target="ssdu"))
    # evaluate's acquisition overrides: a trajectory for a Cartesian model is one clear error
    with pytest.raises(ValueError, match="trained for cartesian acquisitions, not trajectories"):
        evaluate_mri(["synth-n2n"], acquisition={"trajectory": "spiral"}, limit=1, progress=False,
                     device="cpu")
    assert math.isfinite(train(_cfg(tmp_path, "mix", trajectory="mixed", synth_coils="1:3"))["best_val_psnr"])
    ckpt = tmp_path / "mix" / "checkpoints" / "best.pt"
    law = trajectory_law("spiral", (N, N), acceleration=2.0)
    traj = law.trajectory[law.sample(generator=torch.Generator().manual_seed(0))]
    i, j = torch.meshgrid(torch.arange(N) - N // 2, torch.arange(N) - N // 2, indexing="ij")
    img = (torch.hypot(i.float(), j.float()) < 10).to(torch.complex64)[None]
    maps = birdcage_maps((N, N), 3)
    k = NonCartesianAcquisition(torch.ones(len(traj), dtype=torch.bool), traj, (N, N), maps).forward(img)
    path = tmp_path / "spiral.h5"
    write_ismrmrd_noncartesian(path, k.numpy(), traj.numpy() * N, (N, N), trajectory_type="spiral")
    before = path.read_bytes()
    scan = read_raw(path)
    plain = Reconstructor.from_checkpoint(ckpt, device="cpu").noncartesian(scan).image
    rec = Reconstructor.from_checkpoint(ckpt, device="cpu", adapt=3)
    rec.adapt_validation = 0.0  # exactly the steps asked
    adapted = rec.noncartesian(scan).image
    assert rec.last_adaptation is not None and rec.last_adaptation.steps == 3
    assert np.isfinite(adapted).all() and not np.allclose(adapted, plain)
    assert path.read_bytes() == before
    # a model adapts with the weighting it trained with: this one (l2) with 1/p, a kspace_density
    # one with the density-compensated weights, its self-validation weighted alike
    assert rec.adapt_weighting == "inverse"
    dens = Reconstructor(rec.model, rec.config.replace(loss="kspace_density"), device="cpu", adapt=4)
    assert dens.adapt_weighting == "density"
    dens.adapt_validation, dens.adapt_check_every = 0.25, 2
    out = dens.noncartesian(scan).image
    assert np.isfinite(out).all() and dens.last_adaptation.val_losses
    assert all(math.isfinite(v) for _, v in dens.last_adaptation.val_losses)
    dens.adapt_weighting = "bogus"
    with pytest.raises(ReconstructionError, match="weighting must be one of"):
        dens.noncartesian(scan)
    assert path.read_bytes() == before
    # the non-Cartesian quality bench: every method on each study, TV's best weight of the grid
    from mri_n2n.bench.trajectories import bench_trajectories, trajectories_markdown

    res = bench_trajectories([("N2N", str(ckpt))], studies=(("spiral", 8.0, 2),), lams=(1e-3, 1e-1),
                             limit=2, tv_iters=5)
    (row,) = res["studies"]
    assert row["coils"] == 2 and "spiral" in row["sampling"] and row["slices"] == 2
    assert row["TV"] == max(row["tv_by_lam"].values()) and row["tv_edge"]
    assert all(math.isfinite(row[m]) for m in ("zero-filled", "CG-SENSE", "N2N"))
    assert "| spiral 8x | 2 |" in trajectories_markdown(res)
    # the real-volume radial study: a volume's central slices as a trajectory file, read back as
    # reconstruct reads one (maps estimated), the RSS reference, TV-SENSE at its best weight
    from mri_n2n.bench.generalization import (
        MULTICOIL_COILS,
        bench_generalization,
        generalization_markdown,
        multicoil_radial_volume,
        real_volumes,
    )

    arr = np.random.default_rng(0).random((N, N, 7)).astype(np.float32)
    scan = multicoil_radial_volume(arr, 0.25, 0, "v")
    law = trajectory_law("golden-radial", (N, N), acceleration=4.0)
    assert scan.shape[:3] == (4, MULTICOIL_COILS, law.count) and scan.meta["slices"] == [1, 2, 3, 4]
    assert scan.meta["reference"].shape == (4, N, N)
    np.testing.assert_array_equal(scan.kspace, multicoil_radial_volume(arr, 0.25, 0, "v").kspace)  # seeded
    vols = [v for v in real_volumes() if v.name == "phantom-epi"]
    if vols:
        res = bench_generalization({"N2N": str(ckpt)}, fraction=0.25, study="multicoil-radial", volumes=vols,
                                   tv_iters=3, lams=(1e-2,))
        assert res["methods"] == ["zero-filled", "CG-SENSE", "TV-SENSE", "N2N"]
        assert all(math.isfinite(res["mean"][m]["psnr"]) for m in res["methods"])
        assert "Golden-angle radial at 4x" in generalization_markdown(res)


def test_the_nufft_bench_runs_and_reports(tmp_path):
    from mri_n2n.bench import write_results
    from mri_n2n.bench.nufft import bench_nufft, bench_step_rates, nufft_markdown

    res = bench_nufft(size=32, coils=2, repeats=1, threads=(1,), cg_iters=2)
    (row,) = res["rows"]
    assert row["threads"] == 1 and all(row[k] > 0 for k in ("forward_s", "forward_library_s", "network_s"))
    assert res["settings"]["spokes"] == 13  # ceil(32 pi / 2) = 51 Nyquist spokes / 4
    md = nufft_markdown(res)
    assert "| 1 |" in md and "finufft" in md
    write_results(tmp_path, "nufft", {**res, "machine": {}}, md)
    assert (tmp_path / "nufft.json").exists() and (tmp_path / "nufft.md").exists()
    steps = bench_step_rates(size=32, blocks=1, steps=1, out=str(tmp_path))
    assert steps["settings"]["noncartesian"]["dc"] == "prox" and steps["noncartesian_slices_per_s"] > 0
    assert "slices/s" in nufft_markdown({**res, "steps": steps})
