"""Evaluation CLI and benchmark plumbing (tiny budgets: structure, not speed or quality)."""

import csv
import json
import math
import statistics

import pytest
import torch

from mri_n2n.bench import markdown_table, write_results
from mri_n2n.bench.__main__ import main as bench_main
from mri_n2n.checkpoint import load_checkpoint, save_checkpoint
from mri_n2n.config import Config, resolve_config
from mri_n2n.corruptions import MRIUndersampling, seeded_generator
from mri_n2n.evaluate import main as eval_main
from mri_n2n.evaluation import evaluate_mri
from mri_n2n.fft import fft2c, ifft2c
from mri_n2n.metrics import nmse, psnr, ssim
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
    # a network that outputs zeros: after data consistency, the plain adjoint F^-1 M y
    ck = load_checkpoint(out["noisy"], task="mri")
    out["zeros"] = root / "zeros" / "checkpoints" / "last.pt"
    weights = {k: torch.zeros_like(v) for k, v in ck["model"].items()}
    save_checkpoint(
        out["zeros"],
        {"task": "mri", "model_spec": ck["model_spec"], "model": weights, "config": ck["config"]},
    )
    return out


def test_evaluate_methods_share_masks_and_report_recomputable_metrics(tiny_ckpts):
    ck = [tiny_ckpts[k] for k in ("noisy", "clean", "zeros")]
    res = evaluate_mri(ck, limit=6, tv_iters=30, progress=False)
    zeros = "N2N (zeros)"  # named after its run folder: the first "N2N" is taken
    methods = ["zero-filled", "CS-TV", "N2N", "N2C", zeros]
    assert res["methods"] == methods
    rows, s = res["per_slice"], res["summary"]
    assert len(rows) == 6 and res["settings"]["size"] == 32 and res["settings"]["slices"] == 6
    assert [r["index"] for r in rows] == list(range(6)) and len({r["ident"] for r in rows}) == 6
    # the summary is the mean and population std of the per-slice rows
    for k in methods:
        for m in ("psnr", "ssim", "nmse"):
            vals = [r[f"{k}/{m}"] for r in rows]
            assert s[k][f"{m}_mean"] == pytest.approx(statistics.fmean(vals), rel=1e-12)
            assert s[k][f"{m}_std"] == pytest.approx(statistics.pstdev(vals), rel=1e-12)
    # fastMRI convention, one volume here: every method shares its data range and ||ref||^2, so
    # PSNR differences are -10 log10 of NMSE ratios
    assert res["settings"]["volumes"] == 1
    zf = s["zero-filled"]
    for k in methods:
        assert s[k]["fastmri_psnr_std"] == 0.0
        ratio = s[k]["fastmri_nmse_mean"] / zf["fastmri_nmse_mean"]
        diff = s[k]["fastmri_psnr_mean"] - zf["fastmri_psnr_mean"]
        assert diff == pytest.approx(-10 * math.log10(ratio), abs=1e-6)

    # the example slice: its mask is the one seeded from the slice identity, shared by all methods
    ex = res["examples"]
    corr = MRIUndersampling.from_config(Config.from_dict(load_checkpoint(ck[0])["config"]), (32, 32))
    mask = corr.draw_masks(1, seeded_generator(rows[0]["ident"]))[0]
    assert torch.equal(torch.from_numpy(ex["mask"]), mask)
    ref = torch.from_numpy(ex["reference"]).double()
    y = fft2c(ref) * mask
    # zero-filled: the 1/p-compensated adjoint; the zeros network: the plain adjoint
    expect_zf = ifft2c(y / corr.keep_prob.double()).real
    assert torch.allclose(torch.from_numpy(ex["zero-filled"]).double(), expect_zf, atol=1e-5)
    assert torch.allclose(torch.from_numpy(ex[zeros]).double(), ifft2c(y).real, atol=1e-5)
    # CS-TV and the networks are exact on the measured frequencies
    for k in ("CS-TV", "N2N", "N2C", zeros):
        k_rec = fft2c(torch.from_numpy(ex[k]).double())
        assert torch.allclose(k_rec[mask], y[mask], atol=1e-4), k
    # the per-slice metrics, recomputed from the returned images (paper convention: clipped, peak 1)
    r = ref.float()[None, None]
    for k in methods:
        img = torch.from_numpy(ex[k]).float()[None, None]
        assert rows[0][f"{k}/psnr"] == pytest.approx(
            float(psnr(img.clamp(0, 1), r, data_range=1.0)), rel=1e-5
        )
        assert rows[0][f"{k}/ssim"] == pytest.approx(
            float(ssim(img.clamp(0, 1), r, data_range=1.0)), rel=1e-5
        )
        assert rows[0][f"{k}/nmse"] == pytest.approx(float(nmse(img, r)), rel=1e-5)
    # data consistency alone beats the compensated zero-filling, so that is no baseline; CS-TV has
    # to beat the zeros network (plain adjoint), by a clear margin
    assert s[zeros]["psnr_mean"] > zf["psnr_mean"] + 1
    assert s["CS-TV"]["psnr_mean"] > s[zeros]["psnr_mean"] + 3


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
    assert "fastMRI" in md
    # the CSV rows, the JSON summary and the Markdown table agree
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((out / "summary.json").read_text())
    assert len(rows) == 4 and summary["methods"] == ["zero-filled", "CS-TV", "N2N", "N2C"]
    for k in summary["methods"]:
        sk = summary["summary"][k]
        vals = [float(r[f"{k}/psnr"]) for r in rows]
        assert sk["psnr_mean"] == pytest.approx(statistics.fmean(vals), rel=1e-9)
        line = next(li for li in md.splitlines() if li.startswith(f"| {k} |"))
        assert line.startswith(
            f"| {k} | {sk['psnr_mean']:.2f} ± {sk['psnr_std']:.2f} | {sk['ssim_mean']:.4f} ± "
        )
        assert f"| {sk['fastmri_psnr_mean']:.2f} | {sk['fastmri_ssim_mean']:.4f} |" in line
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


def test_bench_speed_cli_reports_consistent_rates(tmp_path, monkeypatch):
    import mri_n2n.cli.bench as cli_bench
    from mri_n2n.bench.speed import bench_speed

    returned = []

    def small(**kw):  # the CLI's call, with a budget of seconds
        kw.update(size=32, batch_size=2, blocks=3, steps_per_block=1, inference_size=32)
        returned.append(bench_speed(**kw))
        return returned[-1]

    monkeypatch.setattr(cli_bench, "bench_speed", small)
    assert bench_main(["speed", "--quick", "--device", "cpu", "--results", str(tmp_path)]) == 0
    res = returned[0]
    # the CPU device gets the CPU preset (explicit size and batch win over it)
    cpu, _ = resolve_config(Config(preset="cpu"))
    assert res["preset"] == "cpu" and res["device"] == "cpu"
    assert res["model"] == cpu.model == "unrolled"
    assert (res["cascades"], res["cascade_width"]) == (cpu.cascades, cpu.cascade_width)
    assert (res["size"], res["batch_size"], res["inference_size"]) == (32, 2, 32)
    # the reported rates are the medians of the block rates, the overhead is bare / pipeline - 1
    assert len(res["pipeline_block_rates"]) == len(res["bare_block_rates"]) == 3
    assert res["pipeline_slices_per_s"] == statistics.median(res["pipeline_block_rates"])
    assert res["bare_slices_per_s"] == statistics.median(res["bare_block_rates"])
    assert res["overhead"] == pytest.approx(
        res["bare_slices_per_s"] / res["pipeline_slices_per_s"] - 1, rel=1e-12
    )
    # the JSON written is the returned dict (with the machine), the Markdown shows its numbers
    written = json.loads((tmp_path / "speed_quick.json").read_text())
    assert written == json.loads(json.dumps(res)) and written["machine"]["device"] == "cpu"
    lines = (tmp_path / "speed_quick.md").read_text().splitlines()
    head = next(i for i, li in enumerate(lines) if li.startswith("| model |"))
    cols = [c.strip() for c in lines[head].strip("|").split("|")]
    cells = dict(zip(cols, (c.strip() for c in lines[head + 2].strip("|").split("|"))))
    assert cells == {
        "model": f"unrolled ({cpu.cascades} cascades, width {cpu.cascade_width})",
        "size": "32",
        "batch": "2",
        "N2N step (slices/s)": f"{res['pipeline_slices_per_s']:.2f}",
        "bare network step (slices/s)": f"{res['bare_slices_per_s']:.2f}",
        "plain cascade, contiguous / channels-last (slices/s)": (
            f"{res['reference_slices_per_s']:.2f} / {res['reference_channels_last_slices_per_s']:.2f}"
        ),
        "bare / plain (median of blocks)": f"{res['bare_over_reference']:.2f}",
        "overhead": f"{res['overhead'] * 100:.1f} %",
        "inference 256² (slices/s)": f"{res['inference_slices_per_s']:.2f}",
        "plain cascade inference (slices/s)": f"{res['reference_inference_slices_per_s']:.2f}",
        "inference / plain (median of blocks)": f"{res['inference_over_reference']:.2f}",
    }
    # the reference is interleaved with the other steps; the ratio pairs blocks
    assert len(res["reference_block_rates"]) == 3
    pairs = [b / r for b, r in zip(res["bare_block_rates"], res["reference_block_rates"])]
    assert res["bare_over_reference"] == pytest.approx(statistics.median(pairs))
    # inference (the one engine) is interleaved with the plain cascade's, paired by block
    assert len(res["inference_block_rates"]) == len(res["reference_inference_block_rates"]) == 3
    assert res["inference_slices_per_s"] == statistics.median(res["inference_block_rates"])
    pairs = [o / p for o, p in zip(res["inference_block_rates"], res["reference_inference_block_rates"])]
    assert res["inference_over_reference"] == pytest.approx(statistics.median(pairs))
    assert res["inference_channels_last"]  # the unrolled network runs as the trainer runs it on a CPU
    assert res["spread"]["bare"] == [min(res["bare_block_rates"]), max(res["bare_block_rates"])]


def test_plain_reference_cascade_keeps_the_measured_frequencies():
    from mri_n2n.bench.speed import PlainCascade
    from mri_n2n.fft import fft2c

    g = torch.Generator().manual_seed(0)
    for channels in (1, 2):
        net = PlainCascade(channels, cascades=2, width=4, depth=3)
        mask = torch.rand(2, 16, 16, generator=g) < 0.3
        k = torch.randn(2, 16, 16, dtype=torch.complex64, generator=g)
        out = net(torch.randn(2, channels, 16, 16, generator=g), mask, k)
        z = out[:, 0] if channels == 1 else torch.complex(out[:, 0], out[:, 1])
        if channels == 2:  # complex images: the measured bins are exactly the data
            assert torch.allclose(fft2c(z)[mask], k[mask], atol=1e-5)
        assert out.shape == (2, channels, 16, 16)


def test_bench_cli_bad_subcommand(capsys):
    assert bench_main(["fastest"]) == 2  # a status, not SystemExit: main() returns its exit code
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "invalid choice: 'fastest'" in err and "\n" not in err


def test_bench_quality_cli_mri_with_a_step_budget(tmp_path):
    argv = ["quality", "--quick", "--only", "mri", "--steps", "3", "--seed", "1", "--results", str(tmp_path)]
    assert bench_main(argv) == 0
    # another seed gets its own result files and run folders (the seed-0 ones are kept)
    res = json.loads((tmp_path / "quality_mri_seed1_quick.json").read_text())
    assert (tmp_path / "mri_quality_quick_runs_seed1" / "N2N" / "summary.json").is_file()
    mri = res["mri"]
    assert mri["settings"]["steps"] == 3 and mri["settings"]["size"] == 64 and mri["settings"]["seed"] == 1
    trained = ["N2N", "N2C", "SSDU", "Noisier2Noise"]
    assert {k: v["steps"] for k, v in mri["train"].items()} == dict.fromkeys(trained, 3)
    assert mri["evaluation"]["methods"] == ["zero-filled", "CS-TV", *trained]
    assert set(mri["goals"]) == {
        "n2n_within_0.2dB_of_n2c",
        "n2n_at_or_above_cs_tv",
        "gain_over_zero_filled_at_least_10dB",
        "real_volumes_n2n_at_or_above_cs_tv",
        "ssdu_within_1dB_of_n2c",
        "noisier2noise_within_1dB_of_n2c",
    }
    gen = mri["generalization"]
    assert gen["methods"] == ["zero-filled", "CS-TV", *trained] and len(gen["rows"]) >= 2
    assert mri["goals"]["real_volumes_n2n_at_or_above_cs_tv"] == (
        gen["mean"]["N2N"]["psnr"] >= gen["mean"]["CS-TV"]["psnr"]
    )
    md = (tmp_path / "quality_mri_seed1_quick.md").read_text()
    assert "| goal | met |" in md and "| epi-bold |" in md


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


def test_evaluate_adds_the_ensemble_and_the_adapted_network(tiny_ckpts):
    """--ensemble and --adapt: one row each per checkpoint, after it; every variant is still
    exact on the measured frequencies of the shared example slice, and each differs from the
    plain network (8 passes averaged; weights fine-tuned on the slices' measurements)."""
    res = evaluate_mri([tiny_ckpts["noisy"]], limit=4, cs_tv=False, ensemble=True, adapt=3, progress=False)
    assert res["methods"] == ["zero-filled", "N2N", "N2N x8", "N2N adapted", "N2N adapted x8"]
    ex = res["examples"]
    cfg = Config.from_dict(load_checkpoint(tiny_ckpts["noisy"])["config"])
    corr = MRIUndersampling.from_config(cfg, (32, 32))
    mask = corr.draw_masks(1, seeded_generator(res["per_slice"][0]["ident"]))[0]
    y = fft2c(torch.from_numpy(ex["reference"]).double()) * mask
    for k in res["methods"][1:]:
        assert torch.allclose(fft2c(torch.from_numpy(ex[k]).double())[mask], y[mask], atol=1e-4), k
        if k != "N2N":
            assert not torch.allclose(torch.from_numpy(ex[k]), torch.from_numpy(ex["N2N"]), atol=1e-5), k
