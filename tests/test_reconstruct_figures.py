"""``reconstruct --figures``: every PSNR in a panel's title belongs to the image drawn under it.

The batch writes one panel per volume (mask, zero-filled, reconstruction, reference) titled with
the volume metrics of the report. On a one-slice volume the volume PSNRs are the drawn slice's,
so the gap between the zero-filled and the reconstruction titles must be the gap between the
two drawn images (a difference of PSNRs needs neither the data range nor the units)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mri_n2n.reconstruction.batch as batch
from mri_n2n.cli.reconstruct import build_parser
from mri_n2n.coils import birdcage_maps
from mri_n2n.config import Config
from mri_n2n.data.synthetic import phantom_volume
from mri_n2n.data.synthetic_raw import write_fastmri_multicoil_h5
from mri_n2n.io import write_nifti
from mri_n2n.models import build_model
from mri_n2n.reconstruction import Reconstructor

SIZE = 32


def _slice() -> np.ndarray:
    vol = phantom_volume((SIZE, SIZE, 1), seed=4).astype(np.float32)
    return vol / vol.max()


def _panel(monkeypatch, rec: Reconstructor, src, out) -> dict:
    """The keyword arguments of the one panel ``reconstruct --simulate 0.3 --figures`` draws."""
    seen: list[dict] = []
    monkeypatch.setattr(batch, "reconstruction_panel", lambda path, **kw: seen.append(kw))
    argv = ["--checkpoint", "in-memory", str(src), "--out", str(out), "--simulate", "0.3", "--figures"]
    args = build_parser().parse_args([*argv, "--quiet"])
    res = batch.run_batch(rec, args)
    assert res.failures == 0, res.rows
    assert len(seen) == 1
    return seen[0]


def _title_gap_is_the_drawn_gap(kw: dict) -> None:
    def mse(a) -> float:
        return float(np.mean((np.asarray(a, np.float64) - np.asarray(kw["reference"], np.float64)) ** 2))

    drawn = 10 * math.log10(mse(kw["reconstruction"]) / mse(kw["zero_filled"]))
    titled = kw["psnrs"]["zero-filled"] - kw["psnrs"]["reconstruction"]
    assert titled == pytest.approx(drawn, abs=1e-3), (
        f"the zero-filled title is {titled - drawn:+.3f} dB off the image drawn under it"
    )


def test_single_coil_figure_titles_the_images_it_draws(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = build_model("unet", in_channels=1, out_channels=1, base=4, depth=1)
    rec = Reconstructor(model, Config(preset="tiny", size=SIZE), device="cpu")
    src = write_nifti(tmp_path / "head.nii.gz", _slice(), np.eye(4))
    _title_gap_is_the_drawn_gap(_panel(monkeypatch, rec, src, tmp_path / "out"))


def test_multicoil_figure_titles_the_images_it_draws(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = build_model("unrolled", in_channels=2, out_channels=2, cascades=2, width=8, depth=3, dc="replace")
    cfg = Config(dataset="kspace", density="lines_random", acceleration=3, center_fraction=0.2)
    rec = Reconstructor(model, cfg, device="cpu")
    maps = birdcage_maps((SIZE, SIZE), 4).numpy()
    src = tmp_path / "mc.h5"
    images = np.moveaxis(_slice(), 2, 0)  # (1, H, W)
    write_fastmri_multicoil_h5(src, images, maps, noise_std=0.005, seed=1, reference=False)
    _title_gap_is_the_drawn_gap(_panel(monkeypatch, rec, src, tmp_path / "out"))
