"""The ``python -m mri_n2n.denoise`` command: round trip, error handling, input safety."""

import numpy as np
import pytest
import torch
from PIL import Image

from mri_n2n.checkpoint import save_checkpoint
from mri_n2n.config import Config
from mri_n2n.denoise import main
from mri_n2n.models import build_model


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _checkpoint(path, task="image", noise="gaussian", channels=3):
    model = build_model("unet", in_channels=channels, out_channels=channels, base=8, depth=2)
    save_checkpoint(
        path,
        {
            "task": task,
            "model_spec": model.spec,
            "model": model.state_dict(),
            "config": Config(task=task, noise=noise).to_dict(),
        },
    )
    return path


def _png(path, shape, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def test_round_trip_sizes_and_inputs_untouched(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "model.pt")
    rgb = _png(tmp_path / "in" / "photo.png", (37, 50, 3))
    grey = _png(tmp_path / "in" / "sub" / "scan.png", (33, 29), seed=1)
    jpg = _png(tmp_path / "other" / "x.v2.png", (20, 21, 3), seed=2)
    before = {p: p.read_bytes() for p in (rgb, grey, jpg)}
    out = tmp_path / "out"
    code = main(
        ["--checkpoint", str(ckpt), str(tmp_path / "in"), str(jpg), "--out", str(out), "--device", "cpu"]
    )
    assert code == 0, capsys.readouterr().err
    for src, dest in [(rgb, out / "photo.png"), (grey, out / "sub" / "scan.png"), (jpg, out / "x.v2.png")]:
        with Image.open(src) as a, Image.open(dest) as b:
            assert b.size == a.size and b.mode == "RGB"
    assert {p: p.read_bytes() for p in before} == before
    assert not list(out.rglob(".*"))  # no temporary files left behind


def test_bad_file_is_reported_and_the_rest_carry_on(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "model.pt")
    good = _png(tmp_path / "in" / "good.png", (16, 16, 3))
    bad = tmp_path / "in" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code = main(
        [
            "--checkpoint",
            str(ckpt),
            str(good.parent),
            str(tmp_path / "nope.png"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 2
    assert any("broken.png" in ln for ln in lines) and any("nope.png" in ln for ln in lines)
    assert (tmp_path / "o" / "good.png").is_file() and not (tmp_path / "o" / "broken.png").exists()


def test_mri_checkpoint_and_bad_arguments_are_refused(tmp_path, capsys):
    img = _png(tmp_path / "a.png", (8, 8, 3))
    mri = _checkpoint(tmp_path / "mri.pt", task="mri", channels=1)
    assert main(["--checkpoint", str(mri), str(img), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "mri" in err and "image" in err and len(err.strip().splitlines()) == 1
    assert main(["--checkpoint", str(tmp_path / "missing.pt"), str(img), "--out", str(tmp_path / "o")]) == 2
    assert main([str(img), "--out", str(tmp_path / "o")]) == 2  # no --checkpoint
    ckpt = _checkpoint(tmp_path / "model.pt")
    assert main(["--checkpoint", str(ckpt), str(img), "--out", str(tmp_path / "o"), "--device", "tpu"]) == 2
    assert not (tmp_path / "o").exists()


def test_never_overwrites_inputs(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "model.pt")
    folder = tmp_path / "photos"
    img = _png(folder / "a.png", (16, 16, 3))
    other = _png(folder / "b.jpg", (16, 16, 3), seed=3)
    before = img.read_bytes()
    # --out is the inputs' folder: refused unless --force
    assert main(["--checkpoint", str(ckpt), str(img), "--out", str(folder)]) == 2
    assert "--force" in capsys.readouterr().err
    # with --force, an output that would replace an input is still refused; the others are written
    code = main(["--checkpoint", str(ckpt), str(img), str(other), "--out", str(folder), "--force"])
    err = capsys.readouterr().err
    assert code == 1 and "a.png" in err and "input" in err
    assert img.read_bytes() == before and (folder / "b.png").is_file()


def test_grey_model_and_montecarlo_checkpoint(tmp_path, capsys):
    grey_ckpt = _checkpoint(tmp_path / "grey.pt", channels=1)
    img = _png(tmp_path / "in" / "c.png", (24, 30, 3))
    assert main(["--checkpoint", str(grey_ckpt), str(img), "--out", str(tmp_path / "g")]) == 0
    with Image.open(tmp_path / "g" / "c.png") as im:
        assert im.mode == "L" and im.size == (30, 24)

    mc = _checkpoint(tmp_path / "mc.pt", noise="montecarlo")
    render = tmp_path / "renders" / "frame.npy"
    render.parent.mkdir()
    np.save(render, (np.random.default_rng(0).random((20, 26, 3)) * 8).astype(np.float32))
    assert main(["--checkpoint", str(mc), str(render.parent), "--out", str(tmp_path / "m")]) == 0, (
        capsys.readouterr()
    )
    linear = np.load(tmp_path / "m" / "frame.npy")
    assert linear.shape == (20, 26, 3) and linear.dtype == np.float32
    with Image.open(tmp_path / "m" / "frame.png") as im:
        assert im.size == (26, 20)
