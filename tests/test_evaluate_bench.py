"""Evaluation CLI and benchmark plumbing (tiny budgets: structure, not speed or quality)."""

import json

import pytest
import torch

from mri_n2n.bench import markdown_table, write_results
from mri_n2n.bench.__main__ import main as bench_main
from mri_n2n.config import Config
from mri_n2n.evaluate import main as eval_main
from mri_n2n.evaluation import evaluate_mri
from mri_n2n.fft import fft2c
from mri_n2n.training import train

pytest.importorskip("nilearn")


@pytest.fixture(scope="module")
def tiny_ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for target in ("noisy", "clean"):
        cfg = Config(
            preset="tiny",
            dataset="mni152",
            size=32,
            max_steps=30,
            target=target,
            quiet=True,
            figures=False,
            tensorboard=False,
            out=str(root / target),
        )
        train(cfg)
        out[target] = root / target / "checkpoints" / "last.pt"
    return out


def test_evaluate_methods_share_masks_and_beat_zero_filling(tiny_ckpts, tmp_path):
    res = evaluate_mri([tiny_ckpts["noisy"], tiny_ckpts["clean"]], limit=6, tv_iters=30, progress=False)
    assert res["methods"] == ["zero-filled", "CS-TV", "N2N", "N2C"]
    s = res["summary"]
    assert s["CS-TV"]["psnr_mean"] > s["zero-filled"]["psnr_mean"] + 3
    assert s["N2N"]["psnr_mean"] > s["zero-filled"]["psnr_mean"]
    for k in res["methods"]:
        assert s[k]["psnr_std"] >= 0 and 0 < s[k]["fastmri_nmse_mean"] < 2
    assert len(res["per_slice"]) == 6 and res["settings"]["size"] == 32
    # the network outputs are data consistent with the zero-filled input's measurements
    ex = res["examples"]
    k_rec = fft2c(torch.from_numpy(ex["N2N"]).double())
    k_ref = fft2c(torch.from_numpy(ex["reference"]).double())
    m = torch.from_numpy(ex["mask"])
    assert torch.allclose(k_rec[m], k_ref[m], atol=1e-4)


def test_evaluate_cli_writes_tables_and_figures(tiny_ckpts, tmp_path, capsys):
    out = tmp_path / "ev"
    rc = eval_main(
        [
            "--checkpoint",
            str(tiny_ckpts["noisy"]),
            "--compare",
            str(tiny_ckpts["clean"]),
            "--limit",
            "4",
            "--tv-iters",
            "10",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0
    for f in ("metrics.md", "metrics.csv", "summary.json", "figures/comparison.png", "figures/psnr_hist.png"):
        assert (out / f).is_file(), f
    md = (out / "metrics.md").read_text()
    assert "| N2C |" in md and "fastMRI" in md
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    rc = eval_main(["--checkpoint", str(bad), "--out", str(tmp_path / "x"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "bad.pt" in err
    assert not (tmp_path / "x").exists()


def test_write_results_and_markdown(tmp_path):
    md = markdown_table([{"a": 1.234, "b": "x"}, {"a": 2.0}], ["a", "b"])
    assert md.splitlines()[2] == "| 1.23 | x |" and md.splitlines()[3] == "| 2.00 |  |"
    p = write_results(tmp_path, "r", {"machine": {"cpu_count": 2}, "v": 1}, md)
    assert json.loads(p.read_text())["v"] == 1 and "| a | b |" in (tmp_path / "r.md").read_text()


def test_bench_speed_smoke(tmp_path, monkeypatch):
    from mri_n2n.bench.speed import bench_speed

    res = bench_speed(
        device="cpu", size=32, batch_size=2, blocks=1, steps_per_block=1, out=str(tmp_path / "s")
    )
    for k in ("pipeline_slices_per_s", "bare_slices_per_s", "inference_slices_per_s"):
        assert res[k] > 0
    assert res["overhead"] > -1


def test_bench_cli_bad_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        bench_main(["fastest"])
    assert e.value.code == 2


def test_bench_quality_cli_mri_with_a_step_budget(tmp_path):
    argv = ["quality", "--quick", "--only", "mri", "--steps", "3", "--seed", "1", "--results", str(tmp_path)]
    assert bench_main(argv) == 0
    # another seed gets its own result files and run folders (the seed-0 ones are kept)
    res = json.loads((tmp_path / "quality_mri_seed1_quick.json").read_text())
    assert (tmp_path / "mri_quality_quick_runs_seed1" / "N2N" / "summary.json").is_file()
    mri = res["mri"]
    assert mri["settings"]["steps"] == 3 and mri["settings"]["size"] == 64 and mri["settings"]["seed"] == 1
    assert {k: v["steps"] for k, v in mri["train"].items()} == {"N2N": 3, "N2C": 3}
    assert mri["evaluation"]["methods"] == ["zero-filled", "CS-TV", "N2N", "N2C"]
    assert set(mri["goals"]) == {
        "n2n_within_0.5dB_of_n2c",
        "n2n_above_cs_tv",
        "gain_over_zero_filled_at_least_10dB",
    }
    assert "| goal | met |" in (tmp_path / "quality_mri_seed1_quick.md").read_text()


def test_bench_quality_cli_noise_selection_errors(tmp_path, capsys):
    r = str(tmp_path / "r")
    assert bench_main(["quality", "--quick", "--noise", "impulse", "--results", r]) == 2
    assert "use it with --only images" in capsys.readouterr().err
    assert bench_main(["quality", "--quick", "--only", "images", "--noise", "speckle", "--results", r]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown noise speckle") and "\n" not in err
    assert not (tmp_path / "r").exists()  # nothing written


def test_bench_cli_bad_checkpoint_and_device_are_one_line_errors(tmp_path, capsys):
    bogus = tmp_path / "not_a_checkpoint.pt"
    bogus.write_bytes(b"random bytes")
    argv = ["reconstruct", "--quick", "--checkpoint", str(bogus), "--results", str(tmp_path / "r")]
    assert bench_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(bogus) in err and "\n" not in err
    assert bench_main(["speed", "--quick", "--device", "tpu", "--results", str(tmp_path / "r")]) == 2
    assert "--device must be auto, cpu, cuda or cuda:N" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing written
