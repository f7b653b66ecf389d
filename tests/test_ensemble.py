"""Geometric self-ensemble: the transforms commute with the centred FFT, the ensemble of an
unrolled network keeps every measurement exactly, it equals the plain network for an
equivariant one, and it reaches the Reconstructor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mri_n2n.corruptions import MRIUndersampling
from mri_n2n.fft import fft2c
from mri_n2n.masks import make_family
from mri_n2n.models import Unrolled, apply_model, ends_with_dc, uses_measurements
from mri_n2n.models.ensemble import SelfEnsemble, circular_flip, dihedral_transforms, ensemble_forward
from mri_n2n.physics import Acquisition


@pytest.mark.parametrize("shape", [(16, 16), (15, 16), (16, 13), (9, 9)])
def test_circular_flips_and_transposes_commute_with_the_centred_fft(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.complex(torch.randn(3, *shape, generator=g), torch.randn(3, *shape, generator=g))
    for dim in (-2, -1):
        assert torch.allclose(fft2c(circular_flip(x, dim)), circular_flip(fft2c(x), dim), atol=1e-5)
        assert torch.equal(circular_flip(circular_flip(x, dim), dim), x)  # an involution
    if shape[0] == shape[1]:
        assert torch.allclose(fft2c(x.transpose(-2, -1)), fft2c(x).transpose(-2, -1), atol=1e-5)
    assert len(dihedral_transforms(shape)) == (8 if shape[0] == shape[1] else 4)
    assert len(dihedral_transforms(shape, transpose=False)) == 4


class _Counting(torch.nn.Module):
    """A pixelwise (hence exactly equivariant) map that records the masks it is given."""

    uses_measurements = True

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.masks: list[torch.Tensor] = []
        self.w = torch.nn.Parameter(torch.tensor(0.7))

    uses_measurements = True

    def forward(self, x, acq=None):
        self.calls += 1
        self.masks.append(None if acq is None else acq.mask)
        return self.w * x + x.square()


def test_the_ensemble_of_an_equivariant_map_is_the_map_and_lines_are_not_transposed():
    x = torch.rand(2, 1, 12, 12)
    net = _Counting()
    mask = torch.rand(2, 12, 12) < 0.3
    out = ensemble_forward(net, x, Acquisition(mask, None, fft2c(x) * mask[:, None]))
    assert net.calls == 8 and torch.allclose(out, net(x), atol=1e-6)
    lines = (torch.rand(2, 1, 12) < 0.3).expand(2, 12, 12)
    net.calls, net.masks = 0, []
    ensemble_forward(net, x, Acquisition(lines, None, fft2c(x) * lines[:, None]))
    assert net.calls == 4  # a transpose would turn columns into rows the network never saw
    assert all(torch.equal(m, m[:, :1].expand_as(m)) for m in net.masks)


class _CountingUNet(torch.nn.Module):
    """A pixelwise map that takes no measurements (as a U-Net), counting its passes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.w = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x):
        self.calls += 1
        return self.w * x


def test_a_unet_ensemble_does_not_transpose_line_masks():
    """A U-Net receives no mask, but its self-ensemble still gets the mask's geometry (through
    apply_model, the engine and evaluate) and never transposes lines: a line-trained
    U-Net would see rows of aliasing it never saw."""
    net = _CountingUNet()
    ens = SelfEnsemble(net)
    x = torch.rand(2, 1, 16, 16)
    lines = (torch.rand(2, 1, 16) < 0.4).expand(2, 16, 16)
    acq = Acquisition(lines, None, fft2c(x) * lines[:, None])
    assert torch.equal(apply_model(net, x, acq), net(x)) and net.calls == 2  # a U-Net gets no acquisition
    net.calls = 0
    apply_model(ens, x, acq)
    assert net.calls == 4
    net.calls = 0
    apply_model(ens, x, Acquisition(torch.rand(2, 16, 16) < 0.3))  # the geometry alone
    assert net.calls == 8  # 2-D masks: the dihedral group


def test_the_reconstructor_ensemble_of_a_unet_keeps_lines_untransposed(tmp_path, monkeypatch):
    """End to end: a U-Net checkpoint trained on line masks, run as a self-ensemble by the
    Reconstructor, makes 4 passes per batch (flips only), not 8."""
    from mri_n2n.checkpoint import save_checkpoint
    from mri_n2n.config import Config
    from mri_n2n.models import UNet
    from mri_n2n.models import ensemble as ens_mod
    from mri_n2n.reconstruction import Reconstructor

    net = UNet.plain(1, 1, base=4, depth=2)
    cfg = Config(task="mri", model="unet", size=32, dataset="mni152", density="lines_random",
                 acceleration=3, center_fraction=0.1)
    path = tmp_path / "unet.pt"
    save_checkpoint(path, {"task": "mri", "model_spec": net.spec, "model": net.state_dict(),
                           "config": cfg.to_dict()})
    seen: list[int] = []
    real = ens_mod.dihedral_transforms

    def counting(shape, *, transpose=True):
        out = real(shape, transpose=transpose)
        seen.append(len(out))
        return out

    monkeypatch.setattr(ens_mod, "dihedral_transforms", counting)
    rec = Reconstructor.from_checkpoint(path, device="cpu", ensemble=True)
    vol = np.random.default_rng(0).random((32, 32, 2)).astype(np.float32)
    rec.simulate(vol, 1 / 3, seed=0, axis=2)
    assert seen and set(seen) == {4}


@pytest.mark.parametrize(
    "family,shape,complex_data",
    [
        ("gaussian", (24, 24), False),
        ("gaussian", (24, 24), True),
        ("exp", (64, 64), False),
        ("exp", (65, 65), True),
        ("gaussian", (48, 40), False),
        ("lines_lattice", (64, 64), True),
        ("lines_random", (96, 80), False),
        ("lines_random", (128, 128), True),
    ],
)
def test_the_ensemble_of_an_unrolled_network_keeps_the_measurements_exact(family, shape, complex_data):
    """Every transformed pass ends in exact data consistency with the transformed measurements,
    so the mapped-back mean agrees with the original ones on the mask (square, odd, non-square
    matrices; 2-D and line masks); and the mean differs from the plain pass (the untrained
    network is not equivariant)."""
    torch.manual_seed(0)
    ch = 2 if complex_data else 1
    herm = not complex_data and family != "lines_lattice"
    fam = make_family(family, shape, fraction=0.25, acceleration=3, center_fraction=0.1, hermitian=herm)
    corr = MRIUndersampling(fam, complex_data=complex_data)
    clean = torch.rand(3, 1, *shape)
    pair = corr.validation_pair(clean, torch.arange(3))
    net = Unrolled(ch, ch, cascades=2, width=8, depth=3).eval()
    acq = pair.acq
    with torch.no_grad():
        plain = net(pair.input, acq)
        ens = SelfEnsemble(net)(pair.input, acq)
    assert uses_measurements(SelfEnsemble(net)) and ends_with_dc(SelfEnsemble(net)) == ends_with_dc(net)
    z = torch.complex(ens[:, 0], ens[:, 1]) if complex_data else ens[:, 0].to(torch.complex64)
    k = fft2c(z)
    m, y = acq.mask, acq.y.reshape(k.shape)
    assert m.any() and float((k[m] - y[m]).abs().max()) <= 2e-4 * max(1.0, float(y.abs().max()))
    assert (ens - plain).abs().max() > 1e-3


def test_the_reconstructor_runs_the_ensemble_and_records_it(tmp_path):
    from mri_n2n.checkpoint import save_checkpoint
    from mri_n2n.config import Config
    from mri_n2n.reconstruction import Reconstructor

    net = Unrolled(1, 1, cascades=2, width=8, depth=3)
    cfg = Config(task="mri", model="unrolled", size=32, dataset="mni152")
    path = tmp_path / "u.pt"
    state = {"task": "mri", "model_spec": net.spec, "model": net.state_dict(), "config": cfg.to_dict()}
    save_checkpoint(path, state)
    vol = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    plain = Reconstructor.from_checkpoint(path, device="cpu")
    ens = Reconstructor.from_checkpoint(path, device="cpu", ensemble=True)
    assert ens.ensemble and isinstance(ens.model, SelfEnsemble) and not plain.ensemble
    a = plain.simulate(vol, 0.3, seed=1, axis=2)
    b = ens.simulate(vol, 0.3, seed=1, axis=2)
    assert a.image.shape == b.image.shape and not np.allclose(a.image, b.image)
    assert np.isclose(a.metrics["psnr_zero_filled"], b.metrics["psnr_zero_filled"])  # same masks
