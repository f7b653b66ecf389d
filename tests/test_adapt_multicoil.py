"""Multi-coil scan-specific adaptation: a seeded copy that leaves the trained weights alone, learns
from the coils' measurements only (no reference), and reaches ``Reconstructor.multicoil``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_adapt import _blocks  # the same piecewise-constant slices as the single-coil tests

from mri_n2n.coils import birdcage_maps
from mri_n2n.config import Config
from mri_n2n.data.synthetic_raw import write_fastmri_multicoil_h5
from mri_n2n.fft import fft2c
from mri_n2n.io.raw import read_raw
from mri_n2n.masks import make_family
from mri_n2n.metrics import psnr
from mri_n2n.models import build_model
from mri_n2n.physics import Acquisition
from mri_n2n.reconstruction import Reconstructor
from mri_n2n.reconstruction.adapt import adapt_multicoil

SIZE, COILS = 32, 4


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("unrolled", in_channels=2, out_channels=2, cascades=3, width=16, depth=4, dc="replace")


def _scan(n: int = 12):
    """Piecewise-constant slices seen by ``COILS`` birdcage coils, 30 % Gaussian masks (complex law)."""
    x = _blocks(n, SIZE, 1).to(torch.complex64)
    maps = birdcage_maps((SIZE, SIZE), COILS).to(torch.complex64).expand(n, -1, -1, -1).clone()
    fam = make_family("gaussian", (SIZE, SIZE), fraction=0.3)
    mask = fam.sample(n, generator=torch.Generator().manual_seed(2)).bool()
    y = fft2c(maps * x[:, None]) * mask[:, None]
    return fam, x, maps, mask, y


def _predict(net, fam, maps, mask, y) -> torch.Tensor:
    """SENSE-1 zero-filled (1/p) -> net -> per-coil data consistency, as inference does."""
    op = Acquisition(mask, maps)
    z = op.zero_filled(y, fam.keep_probability())
    with torch.no_grad():
        out = net(torch.stack([z.real, z.imag], 1), Acquisition(mask, maps, y))
    return op.project(torch.complex(out[:, 0], out[:, 1]), y).abs()


def test_multicoil_adaptation_is_a_seeded_copy_and_learns_from_the_measurements_alone():
    net = _net()
    before_state = {k: v.clone() for k, v in net.state_dict().items()}
    fam, x, maps, mask, y = _scan()
    support = (maps.abs().square().sum(1) > 0).float()
    ref = (x.abs() * support)[:, None]
    before = psnr(_predict(net, fam, maps, mask, y)[:, None].clamp(0, 1), ref, data_range=1.0)
    a = adapt_multicoil(net, fam, mask, y, maps, steps=60, lr=2e-3, batch_size=4, seed=0)
    b = adapt_multicoil(net, fam, mask, y, maps, steps=60, lr=2e-3, batch_size=4, seed=0)
    assert a is not net and all(torch.equal(v, before_state[k]) for k, v in net.state_dict().items())
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())  # seeded
    after = psnr(_predict(a, fam, maps, mask, y)[:, None].clamp(0, 1), ref, data_range=1.0)
    assert after > before + 1.0, (float(before), float(after))
    # it never sees a bin off the mask: junk there changes nothing
    junk = y + 3.0 * (~mask[:, None])
    c = adapt_multicoil(net, fam, mask, junk, maps, steps=60, lr=2e-3, batch_size=4, seed=0)
    assert all(torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_multicoil_adaptation_refuses_bad_shapes_in_one_line():
    fam, _, maps, mask, y = _scan(n=2)
    with pytest.raises(ValueError, match="multi-coil adaptation"):
        adapt_multicoil(_net(), fam, mask, y, maps[:, :2], steps=2)
    with pytest.raises(ValueError, match="no slice with measurements"):
        adapt_multicoil(_net(), fam, mask, y * 0, maps, steps=2)


def test_reconstructor_adapts_multicoil_files(tmp_path):
    """``Reconstructor(adapt=N).multicoil`` adapts a copy to the file (no single-coil warning), reports
    it, and writes a different image from the trained weights'; the loaded model is unchanged."""
    vol = np.zeros((3, SIZE, SIZE), np.float32)
    vol[:, 8:24, 10:20] = 1.0
    vol[:, 12:16, 4:28] += 0.5
    maps = birdcage_maps((SIZE, SIZE), COILS).numpy()
    write_fastmri_multicoil_h5(tmp_path / "mc.h5", vol, maps, noise_std=0.002, seed=1, reference=False)
    mc = read_raw(tmp_path / "mc.h5")
    cfg = Config(dataset="kspace", density="lines_random", acceleration=3, center_fraction=0.2, size=SIZE)
    model = _net()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    plain = Reconstructor(model, cfg, device="cpu").multicoil(mc, simulate=0.35, seed=0)
    rec = Reconstructor(model, cfg, device="cpu", adapt=5)
    adapted = rec.multicoil(mc, simulate=0.35, seed=0)
    assert rec.last_adaptation is not None and rec.last_adaptation.steps == 5
    assert not any("single-coil" in w for w in adapted.warnings)
    assert np.isfinite(adapted.image).all() and not np.allclose(adapted.image, plain.image)
    assert all(torch.equal(v, state[k]) for k, v in rec.model.state_dict().items())
