"""The unrolled network (cascades + exact data consistency) and the k-space Noise2Noise loss."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mri_n2n.config import Config, resolve_config
from mri_n2n.corruptions import MRIUndersampling, seeded_generator
from mri_n2n.fft import fft2c
from mri_n2n.losses import get_loss, kspace_loss, l2_loss
from mri_n2n.models import Unrolled, build_model, uses_measurements
from mri_n2n.sampling import exp_decay_density


def _smooth_images(b: int, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    """Blobby non-negative test images (B, 1, H, W) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    imgs = []
    for _ in range(b):
        c = torch.rand(3, 2, generator=g) - 0.5
        s = 0.2 + 0.3 * torch.rand(3, generator=g)
        img = sum(torch.exp(-((yy - c[i, 0]) ** 2 + (xx - c[i, 1]) ** 2) / s[i] ** 2) for i in range(3))
        imgs.append(img / img.max())
    return torch.stack(imgs)[:, None]


def _corruption(size: int = 32, complex_data: bool = False) -> MRIUndersampling:
    return MRIUndersampling(exp_decay_density((size, size), fraction=0.2), complex_data=complex_data)


# --------------------------------------------------------------------------------------
# the network


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("share", [False, True])
def test_shapes_and_spec_round_trip(channels, share):
    m = build_model(
        "unrolled",
        in_channels=channels,
        out_channels=channels,
        cascades=3,
        width=8,
        depth=3,
        share_weights=share,
    )
    assert m.spec["name"] == "unrolled" and uses_measurements(m)
    x = torch.randn(2, channels, 20, 24)
    assert m(x).shape == x.shape  # no measurements: a plain denoiser
    clone = build_model(m.spec["name"], **m.spec["kwargs"])
    clone.load_state_dict(m.state_dict())  # same architecture
    assert json.loads(json.dumps(clone.spec)) == m.spec
    torch.testing.assert_close(clone(x), m(x))
    n_params = sum(p.numel() for p in m.parameters())
    one = sum(p.numel() for p in m.blocks[0].parameters())
    assert n_params == (one if share else 3 * one)


def test_unet_block_and_bad_arguments():
    m = Unrolled(cascades=2, width=4, depth=2, block="unet")
    assert m(torch.randn(1, 1, 18, 22)).shape == (1, 1, 18, 22)
    for kw in ({"in_channels": 1, "out_channels": 2}, {"cascades": 0}, {"depth": 1}, {"block": "x"}):
        with pytest.raises(ValueError):
            Unrolled(**kw)
    with pytest.raises(TypeError):  # the acquisition is one object, not loose pieces
        Unrolled(cascades=1)(torch.zeros(1, 1, 8, 8), mask=torch.ones(1, 8, 8, dtype=torch.bool))


def test_hybrid_block_starts_as_the_cnn_and_sees_across_the_slice():
    """The hybrid cascade is the CNN under the same parameter names plus a U-Net branch whose
    output starts at zero: a CNN model's weights make it the same function; once its branch is
    trained, one cascade's output at a pixel depends on input pixels far beyond the CNN's
    receptive field (``2 * depth + 1`` pixels), which line-mask aliases need."""
    torch.manual_seed(0)
    cnn = Unrolled(2, 2, cascades=2, width=8, depth=3, dc="prox")
    hyb = Unrolled(2, 2, cascades=2, width=8, depth=3, dc="prox", block="hybrid")
    assert hyb.spec["kwargs"]["block"] == "hybrid" and hyb.multiple == 16
    missing, unexpected = hyb.load_state_dict(cnn.state_dict(), strict=False)
    assert not unexpected and missing and all(".glob." in k for k in missing)
    x = torch.randn(2, 2, 33, 41)  # not a multiple of the branch's 16: padded inside
    torch.testing.assert_close(hyb(x), cnn(x), rtol=0, atol=0)
    clone = build_model("unrolled", **hyb.spec["kwargs"])
    assert clone.state_dict().keys() == hyb.state_dict().keys()

    def reach(model: Unrolled) -> float:
        """|d out[0, 0, 0, 0] / d in| summed beyond the CNN's reach, one cascade, no DC."""
        z = torch.randn(1, 2, 32, 32, requires_grad=True)
        model.block(0)(z)[0, 0, 0, 0].backward()
        return float(z.grad[..., 8:, 8:].abs().sum())

    for p in hyb.block(0).glob.out_conv.parameters():
        torch.nn.init.normal_(p, std=0.1)  # as after training
    assert reach(cnn) == 0.0 and reach(hyb) > 0.0
    assert Unrolled(cascades=1, block="hybrid", depth=3).multiple == 16
    with pytest.raises(ValueError, match="depth >= 2"):
        Unrolled(block="hybrid", depth=1)


@pytest.mark.parametrize("complex_data", [False, True])
def test_data_consistency_is_exact_after_every_cascade(complex_data):
    corr = _corruption(complex_data=complex_data)
    clean = _smooth_images(3)
    if complex_data:  # a smooth phase
        ph = torch.linspace(0, 2, 32)
        clean = torch.cat([clean * torch.cos(ph), clean * torch.sin(ph)], dim=1)
    pair = corr.pair(clean, generator=seeded_generator(1))
    ch = clean.shape[1]
    m = Unrolled(ch, ch, cascades=4, width=8, depth=3)
    for blk in m.blocks:  # a non-trivial residual so that DC has something to undo
        torch.nn.init.normal_(blk.out.weight, std=0.3)
    with torch.no_grad():
        outs = m(pair.input, pair.acq, return_all=True)
    assert len(outs) == 4
    mask, y = pair.acq.mask, pair.acq.y[:, 0]  # context k-space is (B, 1, H, W)
    scale = float(y.abs().max())
    for out in outs:
        z = torch.complex(out[:, 0], out[:, 1]) if complex_data else out[:, 0]
        k = fft2c(z)
        err = (k - y).abs()[mask].max()
        assert float(err) < 1e-5 * scale
        # the unsampled frequencies are the network's (DC did not just copy the input)
        assert (
            float(
                (
                    k
                    - fft2c(
                        torch.complex(pair.input[:, 0], pair.input[:, 1])
                        if complex_data
                        else pair.input[:, 0]
                    )
                )
                .abs()[~mask]
                .max()
            )
            > 1e-3 * scale
        )
    # the corruption's own projection afterwards is a no-op (idempotent)
    torch.testing.assert_close(corr.project(outs[-1], pair.acq), outs[-1], atol=1e-5, rtol=0)


def test_gradients_reach_every_cascade():
    corr = _corruption()
    clean = _smooth_images(2)
    pair = corr.pair(clean, generator=seeded_generator(2))
    m = Unrolled(cascades=3, width=8, depth=3, share_weights=False)
    out = corr.project(m(pair.input, pair.acq), pair.acq)
    l2_loss(out, pair.target).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, name


# --------------------------------------------------------------------------------------
# the k-space loss


def test_kspace_loss_is_unbiased_over_masks():
    """Monte Carlo over target masks: E[kspace loss] == ||F f - F x||^2 / (B C H W) == L2(f, x).

    The image-domain Noise2Noise L2 has the same expectation plus a constant (the target's
    variance), which this also checks is positive and independent of ``f``.
    """
    torch.manual_seed(0)
    corr = _corruption()
    x = _smooth_images(1, seed=3)
    f1 = x + 0.1 * torch.randn_like(x)  # any estimate, e.g. a network output
    f2 = 0.5 * x
    n_chunks, chunk = 100, 64
    gen = seeded_generator(123)
    vals = {("k", 1): [], ("k", 2): [], ("i", 1): [], ("i", 2): []}
    for _ in range(n_chunks):
        pair = corr.pair(x.expand(chunk, -1, -1, -1), generator=gen, target="noisy")
        for tag, f in ((1, f1), (2, f2)):
            fb = f.expand(chunk, -1, -1, -1)
            vals[("k", tag)].append(float(kspace_loss(fb, pair.target, pair)))
            vals[("i", tag)].append(float(l2_loss(fb, pair.target)))
    for tag, f in ((1, f1), (2, f2)):
        truth = float(l2_loss(f, x))
        # Parseval: the clean-target k-space loss (full spectrum, weight 1) is the image L2
        assert float(kspace_loss(f, x, None)) == pytest.approx(truth, rel=1e-5)
        v = np.asarray(vals[("k", tag)])
        se = v.std(ddof=1) / math.sqrt(len(v))
        assert abs(v.mean() - truth) < 4 * se, (v.mean(), truth, se)
    # image-domain loss: the same up to a constant independent of f
    c1 = np.mean(vals[("i", 1)]) - float(l2_loss(f1, x))
    c2 = np.mean(vals[("i", 2)]) - float(l2_loss(f2, x))
    diff = np.asarray(vals[("i", 1)]) - np.asarray(vals[("i", 2)])
    assert c1 > 0 and abs(c1 - c2) < 4 * diff.std(ddof=1) / math.sqrt(len(diff))


def test_kspace_variants_and_clean_targets():
    corr = _corruption()
    x = _smooth_images(2)
    pair = corr.pair(x, generator=seeded_generator(5), target="noisy")
    assert pair.target_acq.y is not None and pair.target_acq.keep_prob is not None
    f = corr.project(pair.input, pair.acq)
    variants = ("kspace_clipped", "kspace_flat", "kspace_normalized", "kspace_density", "kspace_mix")
    for name in ("kspace", *variants):
        v = get_loss(name)(f, pair.target, pair, 0.0)
        assert torch.isfinite(v) and float(v) > 0, name
    clean = corr.pair(x, generator=seeded_generator(5), target="clean")
    assert clean.target_acq is None
    torch.testing.assert_close(kspace_loss(f, clean.target, clean), l2_loss(f, clean.target))
    with pytest.raises(ValueError):
        kspace_loss(f, x, pair, weighting="bogus")


# --------------------------------------------------------------------------------------
# trainer, checkpoint and reconstruction


pytest.importorskip("nilearn")


@pytest.mark.parametrize("loss", ["l2", "kspace"])
def test_tiny_training_run_and_reconstruction(tmp_path, loss):
    from mri_n2n.reconstruction import Reconstructor
    from mri_n2n.sampling import bernoulli_mask
    from mri_n2n.train import main

    out = tmp_path / "run"
    rc = main(
        [
            "--preset",
            "tiny",
            "--model",
            "unrolled",
            "--cascades",
            "2",
            "--cascade-width",
            "8",
            "--cascade-depth",
            "3",
            "--share-weights",
            "--loss",
            loss,
            "--max-steps",
            "6",
            "--val-limit",
            "4",
            "--out",
            str(out),
            "--quiet",
            "--no-figures",
            "--no-tensorboard",
            "--device",
            "cpu",
            "--threads",
            "1",
        ]
    )
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "unrolled" and math.isfinite(summary["val_psnr"])
    rec = Reconstructor.from_checkpoint(out / "checkpoints" / "last.pt", device="cpu", batch_size=2)
    assert isinstance(rec.model, Unrolled) and rec.model.spec["kwargs"]["share_weights"]
    # real image k-space with a Hermitian mask: exact DC at the end, finite output
    img = _smooth_images(2).numpy()[:, 0].astype(np.complex64)
    k = fft2c(torch.from_numpy(img)).numpy()
    dens = exp_decay_density((32, 32), fraction=0.2)
    mask = bernoulli_mask(
        dens, generator=torch.Generator().manual_seed(0), batch_size=2, hermitian=True
    ).numpy()
    r = rec.kspace(k * mask, mask, keep_complex=True)
    rk = fft2c(torch.from_numpy(np.ascontiguousarray(np.moveaxis(r.complex_image, 2, 0)))).numpy()
    np.testing.assert_allclose(rk[mask], k[mask], rtol=0, atol=2e-6 * np.abs(k).max())
    assert np.isfinite(r.image).all()


def test_config_fields_reach_the_model():
    from mri_n2n.training import build_model_for

    cfg = Config(model="unrolled", cascades=2, cascade_width=6, cascade_depth=4, share_weights=True)
    m = build_model_for(cfg, 2)
    assert m.spec["kwargs"] == {
        "in_channels": 2,
        "out_channels": 2,
        "cascades": 2,
        "width": 6,
        "depth": 4,
        "share_weights": True,
        "block": "cnn",
    }
    prox = build_model_for(cfg.replace(dc="prox", cg_iters=4), 2)
    assert prox.spec["kwargs"]["dc"] == "prox" and prox.cg_iters == 4
    for block in ("unet", "hybrid"):
        assert build_model_for(cfg.replace(cascade_block=block), 2).spec["kwargs"]["block"] == block


def _dense_prox(op, x: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """``(A^H A + lam I)^-1 (A^H y + lam x)`` by a dense solve (float64), for tiny images."""
    _, h, w = x.shape
    cols = []
    for i in range(h * w):
        e = torch.zeros(1, h, w, dtype=torch.complex64)
        e.view(-1)[i] = 1
        cols.append((op.normal(e) + lam * e).reshape(-1))
    a = torch.stack(cols, 1).to(torch.complex128)
    b = (op.adjoint(y) + lam * x).reshape(-1).to(torch.complex128)
    return torch.linalg.solve(a, b).reshape(1, h, w).to(torch.complex64)


@pytest.mark.parametrize("coils", [1, 4])
def test_proximal_dc_solves_its_least_squares_problem(coils):
    """--dc prox: single-coil closed form and multi-coil CG both equal the dense solution of
    argmin ||A z - y||^2 + lam ||z - x||^2; lam -> 0 gives the exact replacement (single coil)."""
    from mri_n2n.coils import birdcage_maps
    from mri_n2n.models.unrolled import data_consistency
    from mri_n2n.physics import Acquisition

    g = torch.Generator().manual_seed(3)
    h = w = 12
    mask = torch.rand(1, h, w, generator=g) < 0.4
    x = torch.randn(1, 2, h, w, generator=g)
    xc = torch.complex(x[:, 0], x[:, 1])
    lam = 0.3
    if coils == 1:
        y = torch.complex(torch.randn(1, h, w, generator=g), torch.randn(1, h, w, generator=g)) * mask
        op = Acquisition(mask, torch.ones(1, 1, h, w, dtype=torch.complex64))
        acq = Acquisition(mask, None, y[:, None])
        out = data_consistency(x, acq, lam=lam)
        ref = _dense_prox(op, xc, y[:, None], lam)
        exact = data_consistency(x, acq)
        near = data_consistency(x, acq, lam=1e-6)
        assert torch.allclose(near, exact, atol=1e-5)
    else:
        maps = birdcage_maps((h, w), coils)[None].to(torch.complex64)
        y = torch.complex(torch.randn(1, coils, h, w, generator=g), torch.randn(1, coils, h, w, generator=g))
        y = y * mask[:, None]
        op = Acquisition(mask, maps)
        maps[..., :2, :] = 0  # no coil sees the first rows: the output is zero there
        op = Acquisition(mask, maps)
        out = data_consistency(x, Acquisition(mask, maps, y), lam=lam, cg_iters=60)
        ref = _dense_prox(op, xc, y, lam)
        ref[..., :2, :] = 0
    got = torch.complex(out[:, 0], out[:, 1])
    assert (got - ref).abs().max() < 1e-4 * ref.abs().max()


def test_proximal_model_learns_its_weights_and_is_final():
    """dc="prox": one learned weight per cascade receives gradients, the spec rebuilds the model,
    the output is final (ends_with_dc), and a spec without ``dc`` (older checkpoints) is exact DC."""
    from mri_n2n.coils import birdcage_maps
    from mri_n2n.models import ends_with_dc
    from mri_n2n.physics import Acquisition

    torch.manual_seed(0)
    m = build_model("unrolled", in_channels=2, out_channels=2, cascades=3, width=6, depth=3, dc="prox")
    assert ends_with_dc(m) and m.log_lam.shape == (3,)
    assert torch.allclose(m.log_lam.exp(), torch.full((3,), 0.05))
    again = build_model("unrolled", **m.spec["kwargs"])
    again.load_state_dict(m.state_dict())
    maps = birdcage_maps((16, 16), 4)[None].expand(2, -1, -1, -1).to(torch.complex64)
    mask = torch.zeros(2, 16, 16, dtype=torch.bool)
    mask[:, :, ::3] = True
    k = torch.randn(2, 4, 16, 16, dtype=torch.complex64) * mask[:, None]
    x = torch.randn(2, 2, 16, 16)
    acq = Acquisition(mask, maps, k)
    out = m(x, acq)
    assert torch.equal(out, again(x, acq))
    out.square().mean().backward()
    assert m.log_lam.grad is not None and bool((m.log_lam.grad != 0).all())
    old = dict(m.spec["kwargs"])
    for key in ("dc", "cg_iters", "lam_init"):
        old.pop(key)
    plain = build_model("unrolled", **old)
    assert not ends_with_dc(plain) and plain.log_lam is None
    with pytest.raises(ValueError, match="dc must be one of"):
        build_model("unrolled", in_channels=2, out_channels=2, dc="cg")


def test_trainer_does_not_project_a_final_model(tmp_path):
    """A --dc prox run: the trainer's prediction is the network's output itself (no second
    projection); with exact DC the corruption's projection is applied."""
    from mri_n2n.training import Trainer

    for dc in ("prox", "replace"):
        cfg = Config(task="mri", dataset="mni152", size=32, preset="tiny", model="unrolled", cascades=2,
                     cascade_width=4, cascade_depth=2, dc=dc, complex=True, max_steps=1, quiet=True,
                     tensorboard=False, out=str(tmp_path / dc))
        tr = Trainer(resolve_config(cfg)[0])
        clean = torch.stack([tr.exp.valid_set[i][0] for i in range(2)])
        pair = tr.corruption.validation_pair(clean, torch.arange(2))
        with torch.no_grad():
            raw = tr._forward(tr.model, pair.input, pair.acq)
            pred = tr._predict(tr.model, pair)
            projected = tr.corruption.project(raw, pair.acq)
        assert torch.equal(pred, raw if dc == "prox" else projected)
