"""Shipped weights: load by name with weights_only=True and reproduce their recorded validation PSNR."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mri_n2n import Reconstructor
from mri_n2n.checkpoint import (
    PRETRAINED_DIR,
    CheckpointError,
    default_pretrained,
    load_checkpoint,
    pretrained,
    resolve_checkpoint,
)
from mri_n2n.cli.reconstruct import main as reconstruct_main
from mri_n2n.data.synthetic import phantom_volume
from mri_n2n.evaluation import evaluate_mri
from mri_n2n.io import load_volume, write_nifti

pytest.importorskip("nilearn")


def test_the_default_weights_are_shipped_small_and_safe():
    reg = pretrained()
    assert "mni152-n2n" in reg
    for name, entry in reg.items():
        path = PRETRAINED_DIR / entry["file"]
        assert path.stat().st_size < 5 * 2**20, name
        raw = torch.load(path, weights_only=True, map_location="cpu")
        assert raw["task"] == "mri" and "optimizer" not in raw
        assert entry["command"] and entry["seed"] == raw["config"]["seed"]


@pytest.mark.parametrize("name", sorted(pretrained()))
def test_shipped_weights_reproduce_their_validation_psnr(name):
    entry = pretrained()[name]
    ev = evaluate_mri([name], cs_tv=False, device="cpu", progress=False)
    got = ev["summary"][ev["methods"][-1]]["psnr_mean"]
    assert len(ev["per_slice"]) == entry["val_slices"]
    assert abs(got - entry["val_psnr"]) <= 0.05, (got, entry["val_psnr"])


def test_load_by_name_everywhere(tmp_path):
    rec = Reconstructor.from_pretrained("mni152-n2n", device="cpu")
    assert rec.config.model == pretrained()["mni152-n2n"]["model"]
    assert load_checkpoint("mni152-n2n")["task"] == "mri"
    with pytest.raises(CheckpointError, match="no shipped checkpoint"):
        Reconstructor.from_pretrained("no-such-weights")
    # exactly one default, which from_pretrained() and the name "default" load
    defaults = [k for k, v in pretrained().items() if v.get("default")]
    assert len(defaults) == 1 and default_pretrained() == defaults[0]
    assert resolve_checkpoint("default") == PRETRAINED_DIR / pretrained()[defaults[0]]["file"]
    rec_default = Reconstructor.from_pretrained(device="cpu")
    want = load_checkpoint(defaults[0])["model"]
    assert all(torch.equal(v, want[k]) for k, v in rec_default.model.state_dict().items())
    assert Reconstructor.from_pretrained("mni152-n2n", device="cpu").config.dataset == "mni152"
    vol = phantom_volume((64, 64, 6), content=(1, 5), seed=2)
    write_nifti(tmp_path / "p.nii.gz", vol, np.diag([1.0, 1.0, 1.0, 1.0]))
    out = tmp_path / "out"
    args = ["--checkpoint", "default", str(tmp_path / "p.nii.gz"), "--simulate", "0.1", "--out", str(out)]
    assert reconstruct_main([*args, "--quiet"]) == 0
    assert load_volume(out / "p_recon.nii.gz").array.shape == (64, 64, 6)


def test_checkpoint_default_chooses_the_shipped_model_made_for_each_input(tmp_path, capsys):
    """``--checkpoint default``: a magnitude volume (``--simulate``) gets the magnitude default, a
    single-coil complex k-space file the model made for complex data (the magnitude default when
    none is shipped), and the log line and the report name the model and why."""
    import json

    from mri_n2n.checkpoint import DEFAULT_INPUTS
    from mri_n2n.data.synthetic import write_fastmri_h5

    reg = pretrained()
    for data in DEFAULT_INPUTS:
        made = [k for k, v in reg.items() if data in v.get("default_for", ())]
        assert default_pretrained(data) == (made[0] if made else default_pretrained())
        assert len(made) <= 1  # one model per kind of data
    with pytest.raises(ValueError, match="data must be one of"):
        default_pretrained("radial")
    rec = Reconstructor.from_pretrained(data="complex", device="cpu")
    assert rec.complex_model == ("complex" in reg[default_pretrained("complex")].get("default_for", ()))
    vol = phantom_volume((48, 48, 3), content=(1, 4), seed=3)
    write_nifti(tmp_path / "v.nii.gz", vol, np.eye(4))
    z = vol.transpose(2, 0, 1) * np.exp(0.3j * np.linspace(-1, 1, 48))[None, None]
    write_fastmri_h5(tmp_path / "k.h5", z.astype(np.complex64))
    out = tmp_path / "out"
    args = [str(tmp_path / "v.nii.gz"), str(tmp_path / "k.h5"), "--simulate", "0.25", "--out", str(out)]
    assert reconstruct_main(["--checkpoint", "default", *args]) == 0
    rows = {r["input"].split("/")[-1]: r for r in json.loads((out / "report.json").read_text())["inputs"]}
    assert rows["v.nii.gz"]["checkpoint"] == default_pretrained("magnitude")
    assert rows["k.h5"]["checkpoint"] == default_pretrained("complex")
    log = capsys.readouterr().out
    assert f"--checkpoint default -> {default_pretrained('complex')} (complex data" in log


def test_evaluate_checkpoint_default_chooses_the_model_made_for_the_files(tmp_path, capsys):
    """``evaluate --checkpoint default``: a folder of multi-coil files gets the multi-coil model,
    of single-coil files the complex model, every simulated data set the magnitude default; the
    evaluation records the choice and says it."""
    from mri_n2n.cli.evaluate import main as evaluate_main
    from mri_n2n.coils import birdcage_maps
    from mri_n2n.data.synthetic import write_fastmri_h5
    from mri_n2n.data.synthetic_raw import write_fastmri_multicoil_h5
    from mri_n2n.evaluation import default_for_data

    single, multi = tmp_path / "single", tmp_path / "multi"
    single.mkdir(), multi.mkdir()
    maps = birdcage_maps((32, 32), 4).numpy()
    for i in range(3):
        vol = phantom_volume((32, 32, 3), content=(0, 3), seed=5 + i).transpose(2, 0, 1).astype(np.float32)
        write_fastmri_h5(single / f"a{i}.h5", vol.astype(np.complex64))
        write_fastmri_multicoil_h5(multi / f"b{i}.h5", vol / vol.max(), maps, noise_std=0.001, seed=i)
    assert default_for_data("kspace", multi)[0] == default_pretrained("multicoil")
    assert default_for_data("kspace", single)[0] == default_pretrained("complex")
    assert default_for_data("synth", None)[0] == default_pretrained("magnitude")
    out = tmp_path / "ev"
    args = ["--checkpoint", "default", "--dataset", "kspace", "--data-dir", str(multi), "--size", "32",
            "--limit", "1", "--no-cs", "--no-figures", "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert evaluate_main(args) == 0
    captured = capsys.readouterr()
    assert f"--checkpoint default: {default_pretrained('multicoil')} (multicoil data" in captured.err
    assert f"`{default_pretrained('multicoil')}`" in captured.out


def test_evaluate_density_overrides_the_checkpoints_law(tmp_path, capsys):
    """``evaluate --density``: the shipped complex model (last trained on ``mixed-equispaced``)
    is scored on the full mixture when asked, the settings say so, and the masks differ from its
    own law's; an unknown law is refused in one line that lists the laws."""
    import json

    from mri_n2n.cli.evaluate import main as evaluate_main

    base = ["--checkpoint", "synth-complex-n2n", "--limit", "2", "--no-cs", "--no-figures", "--device", "cpu",
            "--quiet"]  # fmt: skip
    fractions = {}
    for law in ("mixed", None):
        out = tmp_path / f"ev-{law}"
        assert evaluate_main([*base, "--out", str(out), *(["--density", law] if law else [])]) == 0
        settings = json.loads((out / "summary.json").read_text())["settings"]
        assert settings["density"] == (law or "mixed-equispaced")
        fractions[law] = settings["sampled_fraction"]
    assert fractions["mixed"] != fractions[None]
    assert evaluate_main([*base, "--out", str(tmp_path / "bad"), "--density", "wild"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert "unknown density 'wild'" in err[-1] and "mixed-equispaced" in err[-1]
    assert not (tmp_path / "bad" / "summary.json").exists()


def test_a_shipped_model_adapts_with_the_settings_tuned_for_it():
    """A registry entry's ``adapt`` settings (chosen on the tuning sources for that model) are what
    ``Reconstructor`` and ``--adapt`` use; models without them keep the library's defaults."""
    from mri_n2n.reconstruction.adapt import ADAPT_LR

    for name, entry in pretrained().items():
        rec = Reconstructor.from_pretrained(name, device="cpu", adapt=5)
        assert rec.adapt_lr == (entry.get("adapt") or {}).get("lr", ADAPT_LR)
    assert any("adapt" in e for e in pretrained().values())
