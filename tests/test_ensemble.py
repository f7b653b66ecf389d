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
from mri_n2n.models import Unrolled, ends_with_dc, uses_measurements
from mri_n2n.models.ensemble import SelfEnsemble, circular_flip, dihedral_transforms, ensemble_forward


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

    def forward(self, x, mask=None, kspace=None):
        self.calls += 1
        self.masks.append(mask)
        return self.w * x + x.square()


def test_the_ensemble_of_an_equivariant_map_is_the_map_and_lines_are_not_transposed():
    x = torch.rand(2, 1, 12, 12)
    net = _Counting()
    mask = torch.rand(2, 12, 12) < 0.3
    out = ensemble_forward(net, x, mask=mask, kspace=fft2c(x[:, 0]) * mask)
    assert net.calls == 8 and torch.allclose(out, net(x), atol=1e-6)
    lines = (torch.rand(2, 1, 12) < 0.3).expand(2, 12, 12)
    net.calls, net.masks = 0, []
    ensemble_forward(net, x, mask=lines, kspace=fft2c(x[:, 0]) * lines)
    assert net.calls == 4  # a transpose would turn columns into rows the network never saw
    assert all(torch.equal(m, m[:, :1].expand_as(m)) for m in net.masks)


@pytest.mark.parametrize("complex_data", [False, True])
def test_the_ensemble_of_an_unrolled_network_keeps_the_measurements_exact(complex_data):
    """Every transformed pass ends in exact data consistency with the transformed measurements,
    so the mapped-back mean agrees with the original ones on the mask; and the mean differs
    from the plain pass (the untrained network is not equivariant)."""
    torch.manual_seed(0)
    ch = 2 if complex_data else 1
    fam = make_family("gaussian", (24, 24), fraction=0.25, hermitian=not complex_data)
    corr = MRIUndersampling(fam, complex_data=complex_data)
    clean = torch.rand(3, 1, 24, 24)
    pair = corr.validation_pair(clean, torch.arange(3))
    net = Unrolled(ch, ch, cascades=2, width=8, depth=3).eval()
    ctx = pair.context
    with torch.no_grad():
        plain = net(pair.input, mask=ctx["mask"], kspace=ctx["kspace"])
        ens = SelfEnsemble(net)(pair.input, mask=ctx["mask"], kspace=ctx["kspace"])
    assert uses_measurements(SelfEnsemble(net)) and ends_with_dc(SelfEnsemble(net)) == ends_with_dc(net)
    z = torch.complex(ens[:, 0], ens[:, 1]) if complex_data else ens[:, 0].to(torch.complex64)
    k = fft2c(z)
    m, y = ctx["mask"], ctx["kspace"].reshape(k.shape)
    assert m.any() and torch.allclose(k[m], y[m], atol=2e-4)
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
