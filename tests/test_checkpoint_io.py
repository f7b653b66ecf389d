"""Checkpoint safety and atomic writes."""

import os
import stat

import pytest
import torch

from mri_n2n.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from mri_n2n.io import atomic_path, atomic_write_text
from mri_n2n.models import build_model


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_roundtrip_and_task_check(tmp_path):
    model = build_model("unet", in_channels=1, out_channels=1, base=4, depth=1)
    p = tmp_path / "c.pt"
    save_checkpoint(p, {"task": "mri", "model_spec": model.spec, "model": model.state_dict(), "config": {}})
    ck = load_checkpoint(p, task="mri")
    m2 = model_from_checkpoint(ck)
    x = torch.rand(1, 1, 16, 16)
    assert torch.equal(model.eval()(x), m2(x))
    with pytest.raises(CheckpointError, match="task 'mri'.*needs task 'image'"):
        load_checkpoint(p, task="image")


def test_refuses_non_checkpoints_and_code(tmp_path):
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(png)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "mri_n2n-checkpoint", "x": _Evil(marker)}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    assert not marker.exists()
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not an mri_n2n checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pt")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "good")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no temporary left behind
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode & 0o044  # readable by others as usual, not mkstemp's 0600
