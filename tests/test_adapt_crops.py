"""Adaptation of large line-sampled slices learns from exact readout windows: the windows'
measurements are exactly the acquisition of the cropped images, their law is the scan's law
narrowed, and the plan keeps a step's pixels bounded whatever the matrix."""

from __future__ import annotations

import torch

from mri_n2n.fft import fft2c
from mri_n2n.laws import CroppedLaw
from mri_n2n.masks import make_family
from mri_n2n.models import build_model
from mri_n2n.physics import Acquisition
from mri_n2n.reconstruction.adapt import ADAPT_MIN_CROP, AdaptPlan, AdaptReport, adapt, adapt_plan


def _lines(h: int, w: int, n: int, seed: int = 0):
    law = make_family("lines_equispaced", (h, w), acceleration=4, center_fraction=0.08)
    return law, law.sample(n, generator=torch.Generator().manual_seed(seed))


def test_readout_windows_are_exact_acquisitions_of_the_cropped_images() -> None:
    g = torch.Generator().manual_seed(0)
    h, w, n, length = 40, 24, 3, 12
    law, masks = _lines(h, w, n)
    x = torch.randn(n, h, w, dtype=torch.complex64, generator=g)
    maps = torch.randn(n, 4, h, w, dtype=torch.complex64, generator=g)
    starts = torch.tensor([0, 17, 35])  # the last window wraps around
    crop = torch.stack([torch.roll(x[i], -int(s), 0)[:length] for i, s in enumerate(starts)])
    single = Acquisition(masks, keep_prob=law.keep_probability()).with_data(fft2c(x)[:, None])
    multi = Acquisition(masks, maps, keep_prob=law.keep_probability())
    multi = multi.with_data(multi.forward(x))
    for acq in (single, multi):
        assert acq.crop_axis() == -2
        c = acq.cropped(starts, length)
        assert c.image_shape == (length, w) and c.keep_prob.shape[-2:] == (length, w)
        image = crop if acq.multicoil else crop[:, None]
        torch.testing.assert_close(c.y, c.forward(image), atol=2e-6, rtol=0)
        assert torch.equal(c.mask, masks[:, :length])
    two_d = make_family("exp", (h, w), fraction=0.3).sample(n, generator=g)
    assert Acquisition(two_d).with_data(fft2c(x)[:, None]).crop_axis() is None  # no exact windows


def test_the_cropped_law_is_the_law_narrowed_and_splits_like_it() -> None:
    law, _ = _lines(64, 32, 1)
    c = CroppedLaw(law, 16)
    assert c.shape == (16, 32) and c.lines
    torch.testing.assert_close(c.keep_probability(), law.keep_probability()[:16])
    draws = c.sample(400, generator=torch.Generator().manual_seed(1)).float()
    assert draws.shape == (400, 16, 32) and bool((draws == draws[:, :1]).all())  # still whole lines
    torch.testing.assert_close(draws.mean(0), c.keep_probability(), atol=0.08, rtol=0)
    p = c.keep_probability()
    second = c.second_law(p, 0.4)
    assert second.shape == (16, 32)
    torch.testing.assert_close(second.keep_probability(), law.second_law(law.keep_probability(), 0.4)
                               .keep_probability()[:16])  # fmt: skip


def test_the_plan_bounds_a_step_and_the_adaptation_learns_from_windows() -> None:
    h, w = 256, 48
    law, masks = _lines(h, w, 2)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, h, w, dtype=torch.complex64, generator=g) * 0.1
    acq = Acquisition(masks, keep_prob=law.keep_probability()).with_data(fft2c(x)[:, None])
    assert adapt_plan(acq, 2, 2, 40, None) == AdaptPlan(None, 2, 40)
    assert adapt_plan(acq, 2, 2, 40, 2 * h * w) == AdaptPlan(None, 2, 40)  # small enough: whole slices
    assert adapt_plan(acq, 2, 2, 40, 64 * w * 2, visits=0) == AdaptPlan(64, 2, 40)
    assert adapt_plan(acq, 2, 2, 40, 10 * w, visits=0) == AdaptPlan(ADAPT_MIN_CROP, 1, 40)  # never thinner
    # a larger scan: the budget grows with it (visits pixel-steps per scan pixel), the windows too
    assert adapt_plan(acq, 80, 2, 40, 4096, visits=0.5) == AdaptPlan(128, 2, 40)
    # 2-D masks have no exact windows: whole slices, fewer steps, the same pixel-steps
    two_d = make_family("exp", (h, w), fraction=0.3).sample(2, generator=g)
    acq2 = Acquisition(two_d, keep_prob=None).with_data(acq.y)
    assert acq2.crop_axis() is None
    assert adapt_plan(acq2, 2, 2, 40, h * w // 2, visits=0) == AdaptPlan(None, 1, 20)
    torch.manual_seed(0)
    net = build_model("unrolled", in_channels=2, out_channels=2, cascades=1, width=4, depth=2)
    rep = AdaptReport()
    adapted, rep = adapt(net, acq, law, steps=2, pixels=64 * w * 2, visits=0, report=rep)
    assert rep.crop == 64 and rep.steps == 2
    pairs = zip(adapted.state_dict().values(), net.state_dict().values())
    assert any(not torch.equal(a, b) for a, b in pairs)  # it learned, from the windows


def test_reconstruct_adapt_whole_turns_the_plan_off(tmp_path, monkeypatch):
    """``--adapt-whole`` adapts whole slices for every asked step (``pixels=None``); the default
    passes the plan's budget."""
    import numpy as np

    import mri_n2n.reconstruction.api as api
    from mri_n2n.cli.reconstruct import main
    from mri_n2n.data.synthetic import phantom_volume
    from mri_n2n.io import write_nifti
    from mri_n2n.reconstruction.adapt import ADAPT_PIXELS

    seen = []

    def spy(model, acq, law, **kw):
        seen.append(kw["pixels"])
        return model, AdaptReport()

    monkeypatch.setattr(api, "adapt_to_scan", spy)
    vol = phantom_volume((32, 32, 2), content=(0, 2), seed=1).astype(np.float32)
    src = write_nifti(tmp_path / "v.nii.gz", vol, np.eye(4))
    base = [str(src), "--checkpoint", "mni152-n2n", "--simulate", "0.3", "--adapt", "1", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--adapt-whole", "--out", str(tmp_path / "b")]) == 0
    assert seen == [ADAPT_PIXELS, None]
    # without --adapt there is nothing to adapt: one line, exit 2, nothing written
    plain = [str(src), "--checkpoint", "mni152-n2n", "--simulate", "0.3", "--adapt-whole", "--quiet"]
    assert main([*plain, "--out", str(tmp_path / "c")]) == 2 and not (tmp_path / "c").exists()
