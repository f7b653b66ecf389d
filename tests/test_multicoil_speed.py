"""The fast multi-coil paths give the results of the plain formulas: chunked CG, the in-place
normal operator, the coil RSS from shared zero-filled coil images, CG iterations at inference,
and the multi-coil reconstruction benchmark."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import mri_n2n.physics as physics
from mri_n2n.cli.bench import main as bench_main
from mri_n2n.coils import birdcage_maps, rss
from mri_n2n.fft import fft2c, ifft2c
from mri_n2n.models.unrolled import Unrolled
from mri_n2n.physics import Acquisition
from mri_n2n.reconstruction.engine import ReconstructionError
from mri_n2n.reconstruction.multicoil import reconstruct_multicoil


def _problem(b=3, c=4, h=32, w=24, lines=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    maps = birdcage_maps((h, w), c).to(torch.complex64)
    maps = maps / rss(maps, dim=0).clamp_min(1e-8)
    maps = maps[None].repeat(b, 1, 1, 1) * torch.exp(1j * torch.rand(b, 1, 1, 1, generator=g))
    if lines:
        mask = (torch.rand(b, 1, w, generator=g) < 0.4).expand(b, h, w).contiguous()
    else:
        mask = torch.rand(b, h, w, generator=g) < 0.4
    x = torch.randn(b, h, w, dtype=torch.complex64, generator=g)
    y = Acquisition(mask, maps).forward(torch.randn(b, h, w, dtype=torch.complex64, generator=g))
    return maps, mask, x, y


@pytest.mark.parametrize("lines", [True, False])
def test_normal_in_place_equals_the_adjoint_of_the_forward(lines):
    maps, mask, x, _ = _problem(lines=lines)
    op = Acquisition(mask, maps)
    ref = op.adjoint(op.forward(x))
    with torch.no_grad():  # the in-place path
        fast = op.normal(x)
    xg = x.clone().requires_grad_()
    graded = Acquisition(mask, maps).normal(xg)  # the autograd path
    assert torch.allclose(fast, ref, atol=1e-5)
    assert torch.allclose(graded.detach(), ref, atol=1e-5)
    graded.abs().sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


@pytest.mark.parametrize("lines", [True, False])
def test_coil_rss_from_shared_coil_images_is_the_per_coil_replacement(lines):
    maps, mask, x, y = _problem(lines=lines)
    op = Acquisition(mask, maps)
    k = fft2c(op.expand(x))
    ref = rss(ifft2c(torch.where(mask[:, None], y, k)), dim=-3)  # the definition
    assert torch.allclose(op.coil_rss(x, y), ref, atol=1e-5)
    assert torch.allclose(op.coil_rss(x, y, op.coil_images(y)), ref, atol=1e-5)
    full = torch.ones_like(mask)
    exact = Acquisition(full, maps).coil_rss(x, y)
    assert torch.equal(exact, rss(ifft2c(y), dim=-3))  # a full mask: the data's RSS, bit for bit


def test_cg_in_chunks_of_samples_gives_the_lock_step_iterates(monkeypatch):
    maps, mask, x, y = _problem(b=5)
    lam = torch.tensor([0.01, 0.1, 0.05, 0.2, 0.03])
    whole = Acquisition(mask, maps).cg_dc(x, y, lam, 6)
    monkeypatch.setattr(physics, "CG_CHUNK_ELEMENTS", y[0].numel() * 2)  # chunks of 2, 2, 1
    xg = x.clone().requires_grad_()
    chunked = Acquisition(mask, maps).cg_dc(xg, y, lam, 6)
    assert torch.allclose(chunked.detach(), whole, atol=1e-5, rtol=1e-5)
    chunked.abs().sum().backward()  # differentiable through the chunks
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0
    shared = Acquisition(mask[0], maps[:1]).cg_dc(x, y, 0.05, 4)  # shared maps and mask
    monkeypatch.setattr(physics, "CG_CHUNK_ELEMENTS", 10**9)
    assert torch.allclose(Acquisition(mask[0], maps[:1]).cg_dc(x, y, 0.05, 4), shared, atol=1e-5)
    with pytest.raises(ValueError, match="lam"):
        Acquisition(mask, maps).cg_dc(x, y, -1.0, 2)


def _file(tmp_path):
    from mri_n2n.data.synthetic_raw import write_fastmri_multicoil_h5
    from mri_n2n.io.raw import read_raw

    rng = np.random.default_rng(0)
    imgs = rng.random((3, 32, 32)).astype(np.float32)
    cols = np.zeros(32, np.float32)
    cols[::4] = 1
    cols[13:19] = 1
    write_fastmri_multicoil_h5(tmp_path / "a.h5", imgs, birdcage_maps((32, 32), 4).numpy(), mask=cols)
    return read_raw(tmp_path / "a.h5")


def test_cg_iters_at_inference_changes_the_solve_and_restores_the_model(tmp_path):
    mc = _file(tmp_path)
    torch.manual_seed(0)
    model = Unrolled(2, 2, cascades=2, width=4, depth=2, dc="prox", cg_iters=6)
    full = reconstruct_multicoil(model, None, mc).image
    fewer = reconstruct_multicoil(model, None, mc, cg_iters=2).image
    assert model.cg_iters == 6
    assert not np.allclose(full, fewer)
    assert np.array_equal(reconstruct_multicoil(model, None, mc, cg_iters=6).image, full)
    plain = Unrolled(2, 2, cascades=2, width=4, depth=2, dc="replace")
    with pytest.raises(ReconstructionError, match="a.h5: cg_iters needs"):
        reconstruct_multicoil(plain, lambda e, c: e, mc, cg_iters=2)
    with pytest.raises(ReconstructionError, match=">= 1"):
        reconstruct_multicoil(model, None, mc, cg_iters=0)


def test_multicoil_reconstruct_benchmark_writes_each_option(tmp_path):
    assert bench_main(["reconstruct", "--multicoil", "--quick", "--results", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "reconstruct_multicoil_quick.json").read_text())
    rows = {r["option"]: r for r in res["rows"]}
    assert list(rows)[0] == "full" and {"cg_iters=3", "virtual_coils=8"} <= set(rows)
    assert rows["full"]["psnr_vs_full"] == float("inf")
    assert np.isfinite(rows["cg_iters=3"]["psnr_vs_full"])  # fewer iterations change the image
    assert np.isfinite(rows["coil_maps=walsh"]["psnr_vs_full"])  # other maps, another image
    assert all(r["seconds"] > 0 and np.isfinite(r["psnr"]) for r in rows.values())
    assert res["shape"] == [4, 8, 64, 64]
    assert "| full |" in (tmp_path / "reconstruct_multicoil_quick.md").read_text()


def test_8x_gap_table_trains_each_variant_and_scores_it_with_the_baselines(tmp_path, monkeypatch):
    from test_multicoil_training import SIZE, _folder

    import mri_n2n.bench.multicoil_8x as b8

    data = _folder(tmp_path / "data")
    monkeypatch.setattr(b8, "write_multicoil_study_data", lambda root, size: data)
    monkeypatch.setattr(b8, "TV_ITERS", 5)
    variants = {"2 steps": {"max_steps": 2}, "2 steps, 2 CG": {"max_steps": 2, "cg_iters": 2}}
    res = b8.bench_multicoil_8x(out_dir=tmp_path, variants=variants, size=SIZE)
    assert [r["run"] for r in res["rows"]] == list(variants)
    assert {"TV-SENSE", "CG-SENSE"} <= set(res["baselines"])
    assert all(np.isfinite(r["psnr"]) and r["train_seconds"] > 0 for r in res["rows"])
    assert res["rows"][0]["psnr"] != res["rows"][1]["psnr"]  # two different runs
    md = b8.multicoil_8x_markdown(res)
    assert "| N2N, 2 steps, 2 CG |" in md and "| TV-SENSE | - |" in md and "+0.00 |" in md
