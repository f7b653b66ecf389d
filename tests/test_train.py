"""The trainer: learning happens, run folder contents, exact resume, DDP, clear errors."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mri_n2n.checkpoint import load_checkpoint, save_checkpoint
from mri_n2n.config import Config, resolve_config
from mri_n2n.train import main
from mri_n2n.training import (
    SCHEDULES,
    Trainer,
    TrainingError,
    learning_rate,
    optimizer_schedule,
    resume,
    train,
)

pytest.importorskip("nilearn")

TINY = dict(preset="tiny", dataset="mni152", size=32, quiet=True, tensorboard=False, val_limit=8)


def _cfg(tmp_path, **kw):
    return Config(**{**TINY, "out": str(tmp_path / "run"), **kw})


def test_schedule_ramps():
    cfg = Config(lr=1e-3, rampup=0.1, rampdown=0.3)
    lrs = [learning_rate(s, 1000, cfg) for s in range(1000)]
    assert lrs[0] < 1e-4 and lrs[99] < 1e-3 and lrs[150] == pytest.approx(1e-3)
    assert lrs[500] == pytest.approx(1e-3) and lrs[999] < 1e-6
    assert all(a <= b + 1e-15 for a, b in zip(lrs[:100], lrs[1:101]))  # monotone ramp-up
    assert all(a >= b - 1e-15 for a, b in zip(lrs[700:-1], lrs[701:]))  # monotone ramp-down


def _reference_schedule(epoch: int, num_epochs: int, lr_max: float) -> tuple[float, float]:
    """train_mri.py's per-epoch values, written out here: ramp-up exp(-5 (1 - e/10)^2) for e < 10;
    ramp-down exp(-(0.5 (e - E + 30))^2 / 30) for e >= E - 30; beta1 from 0.9 to 0.5 with it."""
    up = math.exp(-5 * (1 - epoch / 10) ** 2) if epoch < 10 else 1.0
    down = math.exp(-((0.5 * (epoch - (num_epochs - 30))) ** 2) / 30) if epoch >= num_epochs - 30 else 1.0
    return lr_max * up * down, 0.5 + 0.4 * down


def test_paper_schedule_is_the_reference_one():
    cfg = Config(lr=1e-3, schedule="paper")
    spe, epochs = 7, 300
    total = spe * epochs
    for step in range(total):
        lr, beta1 = optimizer_schedule(step, total, cfg, spe)
        want_lr, want_beta1 = _reference_schedule(step // spe, epochs, 1e-3)
        assert lr == pytest.approx(want_lr, rel=1e-12) and beta1 == pytest.approx(want_beta1, rel=1e-12)
    # anchors: epoch 0, the plateau, the last epoch (ramp-down at 14.5 half-epochs)
    assert learning_rate(0, total, cfg, spe) == pytest.approx(1e-3 * math.exp(-5))
    assert optimizer_schedule(150 * spe, total, cfg, spe) == (pytest.approx(1e-3), pytest.approx(0.9))
    lr, beta1 = optimizer_schedule(total - 1, total, cfg, spe)
    assert lr == pytest.approx(1e-3 * math.exp(-(14.5**2) / 30)) and 0.5 < beta1 < 0.5005
    # constant within an epoch; a step budget rounds the epoch count up
    assert len({optimizer_schedule(s, total, cfg, spe) for s in range(280 * spe, 281 * spe)}) == 1
    assert optimizer_schedule(5, 2095, cfg, spe) == optimizer_schedule(5, total, cfg, spe)
    # the cosine schedule keeps beta1; unresolved configs (schedule None) are cosine
    assert optimizer_schedule(999, 1000, Config(), 7)[1] == 0.9
    assert learning_rate(10, 1000, Config()) == learning_rate(10, 1000, Config(schedule="cosine"))
    with pytest.raises(ValueError, match="steps_per_epoch"):
        learning_rate(0, 10, cfg)
    assert SCHEDULES == Config.__dataclass_fields__["schedule"].metadata["choices"]


def test_paper_preset_uses_the_paper_schedule_for_mri_only():
    assert resolve_config(Config(preset="paper"))[0].schedule == "paper"
    assert resolve_config(Config(preset="paper", task="image"))[0].schedule == "cosine"
    assert resolve_config(Config(preset="paper", schedule="cosine"))[0].schedule == "cosine"
    assert resolve_config(Config(preset="cpu"))[0].schedule == "cosine"
    assert resolve_config(Config(preset="tiny", schedule="paper"))[0].schedule == "paper"


def test_presets_resolve():
    # the rule: auto -> "paper" iff a CUDA GPU is available and the device is not the CPU, else "cpu"
    gpu = torch.cuda.is_available()
    cfg, why = resolve_config(Config())
    assert cfg.preset == ("paper" if gpu else "cpu") and f"preset '{cfg.preset}'" in why
    cfg, why = resolve_config(Config(device="cpu"))
    assert cfg.preset == "cpu" and why.startswith("preset 'cpu'")
    cfg, why = resolve_config(Config(preset="cpu"))
    assert cfg.preset == "cpu" and "asked for" in why
    cfg, _ = resolve_config(Config(preset="paper"))
    assert cfg.model == "unet_paper" and cfg.size == 256 and cfg.epochs == 300
    # the preset fills only what was left unset; typed values win
    cfg, _ = resolve_config(Config(preset="cpu"))  # MRI on a CPU: the unrolled net, k-space loss
    assert (cfg.model, cfg.size, cfg.loss, cfg.max_steps, cfg.cascades, cfg.cascade_width) == (
        "unrolled", 128, "kspace", 600, 5, 16
    )
    assert cfg.augment is True
    cfg, _ = resolve_config(Config(preset="cpu", task="image"))  # photographs keep the U-Net
    assert (cfg.model, cfg.size, cfg.base, cfg.depth, cfg.max_steps) == ("unet", 128, 16, 3, 1500)
    assert cfg.loss is None and cfg.augment is False
    cfg, _ = resolve_config(Config(preset="cpu", model="unet", loss="l2"))
    assert (cfg.model, cfg.loss, cfg.base, cfg.max_steps) == ("unet", "l2", 16, 600)
    cfg, _ = resolve_config(Config(preset="cpu", epochs=3))
    assert cfg.epochs == 3 and cfg.max_steps is None
    cfg, _ = resolve_config(Config(preset="cpu", max_steps=240))
    assert cfg.max_steps == 240 and cfg.epochs is None
    cfg, _ = resolve_config(Config(preset="cpu", base=8, size=64))
    assert (cfg.base, cfg.size, cfg.depth) == (8, 64, 3)
    cfg, _ = resolve_config(Config(preset="paper", size=64, batch_size=2))
    assert (cfg.model, cfg.size, cfg.batch_size, cfg.epochs) == ("unet_paper", 64, 2, 300)


def test_auto_preset_follows_the_gpu_and_the_device(monkeypatch):
    # both branches of the rule, whatever this machine has
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_config(Config())[0].preset == "paper"
    assert resolve_config(Config(device="cuda"))[0].preset == "paper"
    assert resolve_config(Config(device="cpu"))[0].preset == "cpu"
    assert resolve_config(Config(preset="cpu"))[0].preset == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_config(Config())[0].preset == "cpu"
    assert resolve_config(Config(device="cuda"))[0].preset == "cpu"
    assert resolve_config(Config(preset="paper"))[0].preset == "paper"


def test_training_learns_and_writes_run_folder(tmp_path):
    # with clean targets the loss has no irreducible noise floor, so its decrease is clear
    cfg, _ = resolve_config(
        _cfg(tmp_path, target="clean", max_steps=80, steps_per_epoch=40, rampup=0.0, batch_size=8)
    )
    trainer = Trainer(cfg)
    losses = []
    batches = trainer._batches()
    for _ in range(60):
        clean, _ = next(batches)
        losses.append(trainer.train_step(clean))
    assert sum(losses[-15:]) / 15 < 0.7 * sum(losses[:15]) / 15
    summary = train(_cfg(tmp_path, max_steps=80, steps_per_epoch=40))
    run = tmp_path / "run"
    for f in (
        "config.yaml",
        "metrics.csv",
        "summary.json",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "figures/validation.png",
    ):
        assert (run / f).is_file(), f
    s = json.loads((run / "summary.json").read_text())
    for k in ("val_psnr", "val_ssim", "val_psnr_input", "val_ssim_input", "epochs", "train_seconds"):
        assert s[k] is not None, k
    assert s["epochs"] == 2 and summary["steps"] == 80
    # Data consistency alone beats the 1/p-compensated zero-filled input: a network that outputs
    # zeros gets the plain adjoint F^-1 M y. The trained network must beat that baseline, on the
    # same fixed validation masks (its input PSNR is the run's).
    zcfg, _ = resolve_config(_cfg(tmp_path / "zeros", max_steps=80, steps_per_epoch=40))
    zeros = Trainer(zcfg)
    with torch.no_grad():
        for p in zeros.model.parameters():
            p.zero_()
    base = zeros.validate()
    assert base["val_psnr_input"] == pytest.approx(s["val_psnr_input"], abs=1e-6)
    assert base["val_psnr"] > s["val_psnr_input"] + 1  # why zero-filling is no baseline
    assert s["val_psnr"] > base["val_psnr"] + 0.5, (s["val_psnr"], base["val_psnr"])
    rows = (run / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,step")
    ck = load_checkpoint(run / "checkpoints" / "last.pt", task="mri")
    assert ck["config"]["size"] == 32 and ck["step"] == 80
    torch.load(run / "checkpoints" / "best.pt", weights_only=True)


@pytest.mark.parametrize("schedule", ["cosine", "paper"])
def test_resume_is_bit_exact(tmp_path, schedule):
    kw = dict(max_steps=12, steps_per_epoch=5, batch_size=4, figures=False, schedule=schedule)
    if schedule == "paper":  # one step per epoch: lr and beta1 change at every step
        kw.update(steps_per_epoch=1, lr=1e-2)
    full = train(_cfg(tmp_path / "a", **kw))
    part = train(_cfg(tmp_path / "b", stop_after=7, **kw))
    assert part["steps"] == 7 and not part["finished"]
    resumed = train(_cfg(tmp_path / "b", **kw), resume=True)
    assert resumed["steps"] == 12 and resumed["finished"] and full["finished"]
    ck_a = load_checkpoint(tmp_path / "a" / "run" / "checkpoints" / "last.pt")
    ck_b = load_checkpoint(tmp_path / "b" / "run" / "checkpoints" / "last.pt")
    a, b = ck_a["model"], ck_b["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the Adam param groups carry the last step's beta1 (the paper's ramp-down: below 0.9)
    betas = [ck["optimizer"]["param_groups"][0]["betas"][0] for ck in (ck_a, ck_b)]
    want = _reference_schedule(11, 12, 1e-2)[1] if schedule == "paper" else 0.9
    assert betas == [pytest.approx(want), pytest.approx(want)] and (schedule == "cosine" or want < 0.51)


def test_runs_saved_before_the_schedule_option_resume_with_cosine(tmp_path):
    """A paper-preset run saved before ``schedule`` existed trained with the cosine schedule."""
    cfg = _cfg(tmp_path, max_steps=4, steps_per_epoch=2, figures=False)
    train(cfg.replace(stop_after=2))
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    del state["config"]["schedule"]
    state["config"]["preset"] = "paper"  # which would now resolve to the paper schedule
    save_checkpoint(last, state)
    assert resume(tmp_path / "run")["finished"]
    assert load_checkpoint(last)["config"]["schedule"] == "cosine"


def test_trainer_sets_lr_and_beta1_every_step(tmp_path):
    cfg, _ = resolve_config(_cfg(tmp_path, max_steps=40, steps_per_epoch=1, schedule="paper", figures=False))
    trainer = Trainer(cfg)
    batch = next(trainer._batches())[0]
    for step in (0, 9, 10, 39):
        trainer.step = step
        trainer.train_step(batch)
        want_lr, want_beta1 = _reference_schedule(step, 40, cfg.lr)
        for group in trainer.opt.param_groups:
            assert group["lr"] == pytest.approx(want_lr)
            assert group["betas"] == (pytest.approx(want_beta1), 0.99)


def test_non_finite_loss_stops_clearly_and_keeps_last_checkpoint(tmp_path):
    cfg, _ = resolve_config(_cfg(tmp_path, max_steps=20, steps_per_epoch=5, figures=False))
    trainer = Trainer(cfg)
    real_loss = trainer.loss_fn

    def poisoned(out, target, ctx, progress):
        loss = real_loss(out, target, ctx, progress)
        return loss * float("nan") if trainer.step >= 7 else loss

    trainer.loss_fn = poisoned
    with pytest.raises(TrainingError, match="non-finite loss"):
        trainer.fit()
    ck = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ck["step"] == 5 and all(torch.isfinite(v).all() for v in ck["model"].values())


def test_n2c_target_runs(tmp_path):
    s = train(_cfg(tmp_path, target="clean", max_steps=6, steps_per_epoch=6, figures=False))
    assert s["target"] == "clean" and s["val_psnr"] is not None


@pytest.mark.parametrize(
    "argv, code, text",
    [
        (["--dataset", "nope"], 2, "invalid choice: 'nope'"),
        (["--dataset", "nifti", "--data-dir", "/nonexistent/dir"], 1, "/nonexistent/dir"),
        (["--target", "mean"], 2, "--target"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, code, text):
    rc = main(argv + ["--preset", "tiny", "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == code
    assert err.startswith("error:") and len(err.splitlines()) == 1 and text in err


def test_cli_bad_flag_exits_2(capsys):
    assert main(["--no-such-flag"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--no-such-flag" in err


def test_ddp_gloo_two_processes_hold_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "mri_n2n.train",
        "--preset",
        "tiny",
        "--size",
        "32",
        "--max-steps",
        "4",
        "--steps-per-epoch",
        "4",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--quiet",
        "--no-figures",
        "--no-tensorboard",
        "--val-limit",
        "4",
    ]
    r = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent
    )
    assert r.returncode == 0, r.stderr[:4000]
    s = json.loads((out / "summary.json").read_text())
    assert s["world_size"] == 2
    sums = s["rank_param_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]


def test_cli_trains_on_prepared_synthetic_ixi(tmp_path, capsys):
    from mri_n2n.data.ixi import prepare_ixi
    from mri_n2n.data.synthetic import write_synthetic_ixi

    write_synthetic_ixi(tmp_path / "raw", n_subjects=4, shape=(24, 28, 130))
    prepare_ixi(tmp_path / "raw", tmp_path / "prepared", size=32, split="sorted", progress=False)
    out = tmp_path / "run"
    rc = main(
        [
            "--dataset",
            "ixi",
            "--data-dir",
            str(tmp_path / "prepared"),
            "--preset",
            "tiny",
            "--size",
            "32",
            "--max-steps",
            "6",
            "--steps-per-epoch",
            "3",
            "--val-limit",
            "8",
            "--out",
            str(out),
            "--no-tensorboard",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "preset 'tiny'" in printed and "| output" in printed  # the chosen preset and the final table
    s = json.loads((out / "summary.json").read_text())
    assert s["dataset"] == "ixi" and s["steps"] == 6 and s["val_psnr"] is not None


def test_complex_lines_on_magnitude_data_train_from_the_command_line(tmp_path, capsys):
    """The command that ended in an MKL FFT traceback: magnitude slices now get a smooth phase."""
    argv = ["--dataset", "mni152", "--complex", "--density", "lines_equispaced", "--acceleration", "4"]
    argv += ["--preset", "tiny", "--max-steps", "2", "--out", str(tmp_path / "r"), "--quiet", "--no-figures"]
    assert main(argv + ["--no-tensorboard", "--device", "cpu"]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["finished"] and summary["val_psnr"] > summary["val_psnr_input"] - 3


def test_init_from_starts_from_another_runs_weights_and_refuses_another_network(tmp_path):
    """--init-from: a new run's network starts as the given checkpoint's (bit for bit, before
    any step), its optimiser and step count start afresh, and the checkpoint records where it
    came from; a checkpoint of another layout, or no checkpoint, is refused in one line."""
    kw = dict(max_steps=3, steps_per_epoch=3, batch_size=4, figures=False)
    train(_cfg(tmp_path / "a", **kw))
    source = tmp_path / "a" / "run" / "checkpoints" / "last.pt"
    cfg, _ = resolve_config(_cfg(tmp_path / "b", init_from=str(source), **kw))
    trainer = Trainer(cfg)
    want = load_checkpoint(source)["model"]
    got = trainer.model.state_dict()
    assert all(torch.equal(got[k].cpu(), want[k]) for k in want)
    assert trainer.step == 0 and not trainer.opt.state_dict()["state"]
    cold, _ = resolve_config(_cfg(tmp_path / "c", **kw))
    assert not all(torch.equal(Trainer(cold).model.state_dict()[k].cpu(), want[k]) for k in want)
    out = train(cfg)
    assert out["finished"]
    saved = load_checkpoint(tmp_path / "b" / "run" / "checkpoints" / "last.pt")["config"]
    assert saved["init_from"] == str(source)

    other, _ = resolve_config(_cfg(tmp_path / "d", init_from=str(source), base=4, **kw))
    with pytest.raises(TrainingError, match="is not this run's") as e:
        Trainer(other)
    assert "\n" not in str(e.value)
    missing, _ = resolve_config(_cfg(tmp_path / "e", init_from=str(tmp_path / "nope.pt"), **kw))
    with pytest.raises(TrainingError, match="--init-from"):
        Trainer(missing)


def test_init_from_a_cnn_model_starts_a_hybrid_one_where_it_ended(tmp_path):
    """--cascade-block hybrid --init-from a CNN run: the CNN's weights load under their own
    names, the new U-Net branch starts with a zero output, so before any step the network
    reconstructs exactly as the source did; another CNN layout is still refused."""
    kw = dict(model="unrolled", cascades=2, cascade_width=4, cascade_depth=3, max_steps=2,
              steps_per_epoch=2, batch_size=2, figures=False)  # fmt: skip
    train(_cfg(tmp_path / "a", **kw))
    source = tmp_path / "a" / "run" / "checkpoints" / "last.pt"
    cfg, _ = resolve_config(_cfg(tmp_path / "b", init_from=str(source), cascade_block="hybrid", **kw))
    model = Trainer(cfg).model.cpu()
    want = load_checkpoint(source)["model"]
    got = model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    new = [k for k in got if k not in want]
    assert new and all(".glob." in k for k in new)
    assert all(not model.block(k).glob.out_conv.weight.any() for k in range(2))
    wider, _ = resolve_config(
        _cfg(tmp_path / "c", init_from=str(source), cascade_block="hybrid", **{**kw, "cascade_width": 6})
    )
    with pytest.raises(TrainingError, match="is not this run's"):
        Trainer(wider)
