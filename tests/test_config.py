"""The typed config: checked YAML and flags, one precedence rule, and resume as configured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mri_n2n.checkpoint import load_checkpoint
from mri_n2n.cli.train import main
from mri_n2n.config import MRI_PRESETS, PRESETS, Config, ConfigError, load_yaml, resolve_config, resume_config


def test_every_preset_key_defaults_to_none():
    """So a YAML value or a typed flag always wins over the preset."""
    for name, values in [*PRESETS.items(), *MRI_PRESETS.items()]:
        for key in values:
            assert getattr(Config(), key) is None, (name, key)
    cfg, _ = resolve_config(Config(preset="cpu", augment=False))
    assert cfg.augment is False and cfg.model == "unrolled"


def test_yaml_values_are_converted(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lr: 1e-3\nslices: [25, 125]\namp: 'yes'\nmax_steps: '30'\nfraction: 1\n")
    d = load_yaml(f)
    assert d == {"lr": 0.001, "slices": "25:125", "amp": True, "max_steps": 30, "fraction": 1.0}
    assert isinstance(d["lr"], float) and isinstance(d["max_steps"], int)


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ("lr: fast", "lr", "a number"),
        ("max_steps: 2.5", "max_steps", "an integer"),
        ("figures: maybe", "figures", "true or false"),
        ("slices: [125, 25]", "slices", "START < STOP"),
        ("density: spiral", "density", "unknown value"),
        ("lr_typo: 1", "lr_typo", "unknown config key"),
        ("normalize: p200", "normalize", "normalize"),
        ("noise_options: 3", "noise_options", "a mapping"),
    ],
)
def test_bad_yaml_values_name_the_key(tmp_path, text, key, expected):
    f = tmp_path / "c.yaml"
    f.write_text(text + "\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(f)
    msg = str(e.value)
    assert str(f) in msg and key in msg and expected in msg and "\n" not in msg


def test_cli_bad_yaml_is_one_line_exit_2(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("lr: fast\n")
    assert main(["--config", str(f), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "lr" in err and "fast" in err
    assert not (tmp_path / "r").exists()


def test_precedence_default_preset_yaml_flags(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("max_steps: 50\nbatch_size: 2\nlr: 1e-3\n")
    cfg = Config.from_dict({**load_yaml(yaml_file), "batch_size": 3})  # flags typed win over YAML
    cfg, _ = resolve_config(cfg.replace(preset="cpu"))
    assert cfg.max_steps == 50  # YAML over the preset's 1500
    assert cfg.batch_size == 3  # the flag over YAML
    assert cfg.size == 128 and cfg.base == 16  # the preset over the dataclass default
    assert cfg.rampup == Config().rampup  # the dataclass default


def test_image_datasets_imply_the_image_task():
    for name in ("images", "folder", "pairs", "montecarlo"):
        cfg, _ = resolve_config(Config(dataset=name, preset="tiny"))
        assert cfg.task == "image"
    cfg, _ = resolve_config(Config(task="image", preset="tiny"))
    assert cfg.dataset == "images"
    cfg, _ = resolve_config(Config(preset="tiny"))
    assert (cfg.task, cfg.dataset) == ("mri", "mni152")
    with pytest.raises(ConfigError, match="not a mri dataset"):
        resolve_config(Config(task="mri", dataset="images"))


def test_old_checkpoint_configs_still_load():
    old = {"task": "mri", "base": 16, "depth": 3, "acceleration": 4, "extra": {"complex": True}}
    cfg = Config.from_dict(old)
    assert cfg.complex is True and cfg.acceleration == 4.0
    cfg = Config.from_dict({"extra": {"noise_kwargs": {"test_level": 25}}})
    assert cfg.noise_options == {"test_level": 25}


def test_resume_keeps_the_run_and_refuses_changes_to_its_model():
    saved = Config(preset="tiny", max_steps=240, size=32, model="unet", base=8, depth=2)
    cfg = resume_config(saved, {"out": "x"})
    assert cfg.max_steps == 240 and cfg.out == "x"
    assert resume_config(saved, {"max_steps": 300}).max_steps == 300
    with pytest.raises(ConfigError, match="--model"):
        resume_config(saved, {"model": "unet_paper"})


def test_yaml_lr_string_trains(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lr: 1e-3\nmax_steps: 4\nval_limit: 4\n")
    out = tmp_path / "run"
    rc = main(["--config", str(f), "--preset", "tiny", "--out", str(out), "--quiet", "--no-figures"])
    assert rc == 0
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ck["step"] == 4 and ck["config"]["lr"] == 0.001


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_run_resumes_as_configured(tmp_path):
    """A run killed with SIGKILL and continued with ``--resume --out D`` alone trains to its own
    budget (not the CPU preset's) and ends with the uninterrupted run's weights, bit for bit
    (every run in its own process, as a user runs them)."""
    pytest.importorskip("nilearn")
    flags = ["--dataset", "mni152", "--preset", "tiny", "--max-steps", "240", "--steps-per-epoch", "20",
             "--val-limit", "4", "--seed", "5", "--no-figures", "--no-tensorboard", "--quiet"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    killed = tmp_path / "killed"
    last = killed / "checkpoints" / "last.pt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mri_n2n.train", *flags, "--out", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 240
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    step = load_checkpoint(last)["step"]
    assert 0 < step < 240
    rc = subprocess.run(
        [sys.executable, "-m", "mri_n2n.train", "--resume", "--out", str(killed), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rc.returncode == 0, rc.stderr
    full = tmp_path / "full"
    subprocess.run([sys.executable, "-m", "mri_n2n.train", *flags, "--out", str(full)], env=env, check=True)
    a = load_checkpoint(last)
    b = load_checkpoint(full / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 240
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_multicoil_presets_resolve_to_the_unrolled_prox_network_at_320():
    cpu, why = resolve_config(Config(dataset="kspace", data_dir="d", preset="multicoil"))
    gpu, _ = resolve_config(Config(dataset="kspace", data_dir="d", preset="multicoil-gpu"))
    for cfg in (cpu, gpu):
        assert (cfg.task, cfg.model, cfg.dc, cfg.loss, cfg.size, cfg.complex) == (
            "mri", "unrolled", "prox", "kspace", 320, True
        )
        assert cfg.augment is False and cfg.amp is None and cfg.channels_last is None  # on for CUDA
    assert (cpu.cascades, cpu.cascade_width, cpu.cg_iters, cpu.batch_size, cpu.num_workers) == (
        PRESETS["multicoil"]["cascades"], 16, PRESETS["multicoil"]["cg_iters"], 2, 1
    )
    assert (gpu.cascades, gpu.cascade_width, gpu.cg_iters, gpu.batch_size, gpu.num_workers) == (
        8, 32, 6, 8, 8
    )
    assert cpu.max_steps and gpu.epochs and gpu.max_steps is None
    assert "multicoil" in why
    # typed values win; other presets keep the unrolled network's old defaults
    typed, _ = resolve_config(Config(dataset="kspace", preset="multicoil", cascades=2, dc="replace"))
    assert (typed.cascades, typed.dc) == (2, "replace")
    plain, _ = resolve_config(Config(preset="cpu"))
    assert (plain.cascades, plain.cascade_width, plain.cascade_depth, plain.dc, plain.cg_iters) == (
        5, 16, 5, "replace", 6
    )
    assert plain.num_workers == 0
    with pytest.raises(ConfigError, match="multi-coil"):
        resolve_config(Config(dataset="mni152", preset="multicoil"))
