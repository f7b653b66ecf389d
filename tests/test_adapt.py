"""Scan-specific self-supervised adaptation: a seeded copy that leaves the trained weights alone,
learns from the scan's measurements only (no reference), improves a network on data it was not
trained on, and reaches the Reconstructor with the study's own masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mri_n2n.fft import fft2c, ifft2c
from mri_n2n.masks import make_family
from mri_n2n.metrics import psnr
from mri_n2n.models import Unrolled
from mri_n2n.models.ensemble import SelfEnsemble
from mri_n2n.physics import Acquisition
from mri_n2n.reconstruction.adapt import ADAPT_BATCH_SIZE, adapt_model


def _blocks(n: int, size: int, seed: int) -> torch.Tensor:
    """Piecewise-constant slices (random rectangles): far from anything a fresh net knows."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, size, size)
    for i in range(n):
        for _ in range(6):
            r0, c0 = torch.randint(0, size - 8, (2,), generator=g).tolist()
            h, w = torch.randint(4, size // 2, (2,), generator=g).tolist()
            x[i, r0 : r0 + h, c0 : c0 + w] += torch.rand((), generator=g)
    return x / x.amax()


def _scan(n: int = 12, size: int = 32):
    fam = make_family("gaussian", (size, size), fraction=0.3, hermitian=True)
    x = _blocks(n, size, 1)
    mask = fam.sample(n, generator=torch.Generator().manual_seed(2))
    return fam, x, mask, fft2c(x) * mask


def _predict(net, fam, mask, y):
    """Zero-filled (1/p) -> net with exact DC, as inference does."""
    p = fam.real_keep_probability()
    z = ifft2c(y / p)
    with torch.no_grad():
        return net(z.real[:, None].float(), Acquisition(mask, None, y[:, None]))


def _checkpoint(tmp_path, net):
    """``(net, config, path)``: ``net`` saved as a 32x32 MNI152 unrolled checkpoint."""
    from mri_n2n.checkpoint import save_checkpoint
    from mri_n2n.config import Config

    cfg = Config(task="mri", model="unrolled", size=32, dataset="mni152")
    path = tmp_path / "u.pt"
    state = {"task": "mri", "model_spec": net.spec, "model": net.state_dict(), "config": cfg.to_dict()}
    save_checkpoint(path, state)
    return net, cfg, path


def test_adaptation_is_a_seeded_copy_and_leaves_the_model_alone():
    torch.manual_seed(0)
    net = Unrolled(1, 1, cascades=2, width=8, depth=3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fam, _, mask, y = _scan()
    assert adapt_model(net, fam, mask, y, complex_data=False, steps=0) is net
    a = adapt_model(net, fam, mask, y, complex_data=False, steps=3, seed=4)
    b = adapt_model(net, fam, mask, y, complex_data=False, steps=3, seed=4)
    assert a is not net and not a.training
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert any(not torch.equal(v, before[k]) for k, v in a.state_dict().items())
    wrapped = adapt_model(SelfEnsemble(net), fam, mask, y, complex_data=False, steps=2)
    assert isinstance(wrapped, SelfEnsemble) and wrapped.module is not net


def test_adaptation_learns_from_the_measurements_alone():
    """A network trained on nothing (fresh weights) adapted to a scan of piecewise-constant
    slices with only its undersampled k-space reconstructs that scan better, by a clear margin."""
    torch.manual_seed(0)
    net = Unrolled(1, 1, cascades=3, width=16, depth=4)
    fam, x, mask, y = _scan()
    before = psnr(_predict(net, fam, mask, y).clamp(0, 1), x[:, None], data_range=1.0)
    tuned = adapt_model(net, fam, mask, y, complex_data=False, steps=60, lr=2e-3, seed=0)
    after = psnr(_predict(tuned, fam, mask, y).clamp(0, 1), x[:, None], data_range=1.0)
    assert after > before + 1.0, (float(before), float(after))


def test_bad_scans_are_refused_in_one_line():
    net = Unrolled(1, 1, cascades=1, width=4, depth=2)
    fam, _, mask, y = _scan(n=2, size=16)
    with pytest.raises(ValueError, match="no slice with measurements"):
        adapt_model(net, fam, mask, torch.zeros_like(y), complex_data=False, steps=1)
    with pytest.raises(ValueError, match=r"must both be \(N, H, W\)"):
        adapt_model(net, fam, mask[:, :8], y[:, :8], complex_data=False, steps=1)
    with pytest.raises(ValueError, match="lr > 0"):
        adapt_model(net, fam, mask, y, complex_data=False, steps=1, lr=0.0)


def test_the_reconstructor_adapts_per_study_on_the_study_masks(tmp_path):
    from mri_n2n.reconstruction import Reconstructor

    torch.manual_seed(0)
    net, cfg, path = _checkpoint(tmp_path, Unrolled(1, 1, cascades=2, width=8, depth=3))
    vol = _blocks(4, 32, 3).permute(1, 2, 0).numpy().astype(np.float32)
    plain = Reconstructor.from_checkpoint(path, device="cpu")
    rec = Reconstructor.from_checkpoint(path, device="cpu", adapt=20)
    a = plain.simulate(vol, 0.3, seed=1, axis=2)
    b = rec.simulate(vol, 0.3, seed=1, axis=2)
    assert np.isclose(a.metrics["psnr_zero_filled"], b.metrics["psnr_zero_filled"])  # same masks
    assert b.metrics["psnr"] != a.metrics["psnr"]
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in rec.model.state_dict().items())
    with pytest.raises(ValueError, match="adaptation steps"):
        Reconstructor(net, cfg, device="cpu", adapt=-1)


def test_adaptation_sees_only_the_studys_measurements_masks_and_law(tmp_path, monkeypatch):
    """What reaches adapt (the one adaptation call of every kind): the
    study's own law (the checkpoint's family for --simulate, the given law for k-space), its
    seeded masks, and k-space that is zero off the mask and equals the normalised measurements on
    it; never the reference image."""
    from mri_n2n.config import Config
    from mri_n2n.data import volume_scale
    from mri_n2n.reconstruction import Reconstructor
    from mri_n2n.reconstruction import api as api_mod
    from mri_n2n.reconstruction.engine import simulated_masks

    seen: list[tuple] = []

    def spy(model, acq, law, **kw):  # the one adaptation call, as the Reconstructor makes it
        seen.append((law, acq.sampled.clone(), acq.y.reshape(-1, *acq.y.shape[-2:]).clone(), kw))
        return model, None

    monkeypatch.setattr(api_mod, "adapt_to_scan", spy)
    torch.manual_seed(0)
    _, _, path = _checkpoint(tmp_path, Unrolled(1, 1, cascades=1, width=4, depth=2))
    vol = _blocks(4, 32, 3).permute(1, 2, 0).numpy().astype(np.float32) * 7.0
    rec = Reconstructor.from_checkpoint(path, device="cpu", adapt=9)
    rec.simulate(vol, 0.3, seed=5, axis=2)
    family, mask, k, kw = seen[-1]
    corruption = rec.corruption((32, 32), 0.3)
    assert family == corruption.family and kw["steps"] == 9 and kw["seed"] == 5
    assert kw["batch_size"] == ADAPT_BATCH_SIZE and kw["lr"] == rec.adapt_lr
    rec.adapt_batch_size, rec.adapt_lr = 3, 2e-3  # the Reconstructor's settings reach the adaptation
    rec.simulate(vol, 0.3, seed=5, axis=2)
    assert seen[-1][3]["batch_size"] == 3 and seen[-1][3]["lr"] == 2e-3
    assert torch.equal(mask, simulated_masks(corruption, range(4), 5))
    ref = torch.from_numpy(np.ascontiguousarray(np.moveaxis(vol, 2, 0)))
    want = fft2c(ref / volume_scale(vol, rec.normalize)) * mask
    assert bool((k[~mask] == 0).all()) and torch.allclose(k, want.to(k.dtype), atol=1e-5)

    # k-space input: the file's law and mask as given, the measurements only
    fam, x, m, y = _scan(n=3, size=32)
    cfg = Config(task="mri", model="unrolled", size=32, dataset="mni152")
    krec = Reconstructor(Unrolled(1, 1, cascades=1, width=4, depth=2), cfg, device="cpu", adapt=4)
    noisy = (y + 0.5 * (~m)).numpy()  # junk off the mask must not reach the adaptation
    krec.kspace(noisy, m.numpy(), law=fam.describe())
    family, mask, k, _ = seen[-1]
    assert family == fam and torch.equal(mask, m)
    assert bool((k[~m] == 0).all()) and float(k.abs().max()) > 0
    scale = float(k[m].abs().max() / y[m].abs().max())
    assert torch.allclose(k[m], (y[m] * scale).to(k.dtype), atol=1e-5 * float(k.abs().max()))


def test_kspace_inputs_adapt_too_and_complex_data_need_a_complex_model(tmp_path):
    """Measured k-space: a two-channel model adapts to it (the output still matches every
    measurement); a one-channel model refuses complex data in one line instead of learning
    from measurements it cannot fit."""
    from mri_n2n.config import Config
    from mri_n2n.reconstruction import Reconstructor
    from mri_n2n.reconstruction.engine import ReconstructionError

    torch.manual_seed(0)
    fam, x, mask, _ = _scan(n=3, size=32)
    phase = torch.exp(1j * torch.linspace(0, 2, 32))[None, None, :]
    y = (fft2c(x * phase) * mask).numpy()
    law = fam.describe()
    cfg = Config(task="mri", model="unrolled", size=32, dataset="mni152", complex=True)
    rec = Reconstructor(Unrolled(2, 2, cascades=2, width=8, depth=3), cfg, device="cpu", adapt=5)
    out = rec.kspace(y, mask.numpy(), law=law, keep_complex=True)
    k = fft2c(torch.from_numpy(np.moveaxis(out.complex_image, 2, 0)))
    assert torch.allclose(k[mask], torch.from_numpy(y)[mask], atol=1e-3 * float(np.abs(y).max()))
    real = Reconstructor(Unrolled(1, 1, cascades=1, width=4, depth=2), cfg.replace(complex=False), adapt=5)
    with pytest.raises(ReconstructionError, match="one-channel"):
        real.kspace(y, mask.numpy(), law=law, where="scan.h5")


def test_reconstruct_cli_adapts_and_records_it(tmp_path):
    """`mri-n2n reconstruct --simulate 0.3 --adapt 3 --ensemble` on a NIfTI: one output, the
    report records both options, and a negative step count is a one-line usage error."""
    import json

    import nibabel as nib

    from mri_n2n.cli.reconstruct import main

    torch.manual_seed(0)
    _, _, ckpt = _checkpoint(tmp_path, Unrolled(1, 1, cascades=1, width=4, depth=2))
    vol = _blocks(3, 32, 5).permute(1, 2, 0).numpy().astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "v.nii.gz")
    out = tmp_path / "out"
    args = ["--checkpoint", str(ckpt), str(tmp_path / "v.nii.gz"), "--simulate", "0.3", "--out", str(out)]
    assert main([*args, "--adapt", "3", "--ensemble", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["adapt_steps"] == 3 and report["ensemble"] is True
    assert report["inputs"][0]["status"] == "ok" and (out / "v_recon.nii.gz").exists()
    assert main([*args, "--adapt", "-1", "--force"]) == 2


def test_self_validated_early_stopping_holds_out_measurements_and_keeps_the_best_weights(monkeypatch):
    """With validation, a fixed share of the measured bins never reaches the training pairs, the
    kept weights are those of the lowest validation loss, and the report says what happened."""
    from mri_n2n.corruptions import MRIUndersampling
    from mri_n2n.reconstruction.adapt import AdaptReport

    torch.manual_seed(0)
    net = Unrolled(1, 1, cascades=2, width=8, depth=3)
    fam, x, mask, y = _scan(n=8, size=32)
    seen: list[torch.Tensor] = []
    real = MRIUndersampling.single_pair

    def spy(self, batch, **kw):
        seen.append(batch.sampled)
        return real(self, batch, **kw)

    monkeypatch.setattr(MRIUndersampling, "single_pair", spy)
    rep = AdaptReport()
    tuned = adapt_model(net, fam, mask, y, complex_data=False, steps=40, lr=2e-3, seed=0, validation=0.2,
                        check_every=4, patience=2, report=rep)
    kept = torch.stack([m.float().mean() for m in seen]).mean()
    assert float(kept) == pytest.approx(0.8 * float(mask.float().mean()), rel=0.1)
    assert rep.val_losses[0][0] == 0 and rep.steps <= 40 and len(seen) == rep.steps
    losses = dict(rep.val_losses)
    assert rep.best_step in losses and losses[rep.best_step] == min(losses.values())
    assert losses[rep.best_step] < losses[0]  # adapting helped on the held-out measurements
    if rep.stopped_early:
        assert rep.steps < 40 and [s for s, _ in rep.val_losses][-1] - rep.best_step >= 2 * 4
    assert rep.seconds > 0 and tuned is not net
    # without validation: exactly the step budget, and the report says so
    rep2 = AdaptReport()
    adapt_model(net, fam, mask, y, complex_data=False, steps=3, seed=0, report=rep2)
    assert rep2.steps == rep2.best_step == 3 and rep2.val_losses == [] and not rep2.stopped_early
    with pytest.raises(ValueError, match="validation < 0.5"):
        adapt_model(net, fam, mask, y, complex_data=False, steps=3, validation=0.6)


def test_adaptation_holds_out_less_when_the_line_law_cannot_hold_out_the_asked_share():
    """A small matrix with a large fully sampled centre (an EPI: 4x lines, 12 central lines of
    80) leaves too few lines for the second mask to hold out 40 %: the adaptation uses the largest
    share of FALLBACK_SPLITS it can and says so, instead of failing."""
    from mri_n2n.checkpoint import load_checkpoint, model_from_checkpoint
    from mri_n2n.reconstruction.adapt import FALLBACK_SPLITS, adapt
    from mri_n2n.splits import make_split

    law = make_family("lines_equispaced", (80, 80), acceleration=4, center_fraction=12 / 80)
    p = law.keep_probability()
    with pytest.raises(ValueError, match="cannot hold out"):
        make_split("noisier2noise", law, p, 0.4)
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(2, 1, 80, 80, generator=g), 5, 1, 2)[:, 0]
    x = x.to(torch.complex64)
    m = law.sample(2, generator=g)
    acq = Acquisition(m, None, (fft2c(x) * m)[:, None])
    model = model_from_checkpoint(load_checkpoint("synth-complex-n2n", map_location="cpu"))
    net, rep = adapt(model, acq, law, steps=2, split=0.4)
    assert rep.steps == 2 and rep.split in FALLBACK_SPLITS and rep.split < 0.4
    assert all(torch.isfinite(v).all() for v in net.state_dict().values())
