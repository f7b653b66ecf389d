"""A new acquisition kind is one class: a toy non-Cartesian kind (a non-uniform DFT by an explicit
matrix on 16 x 16 images, samples on random radial spokes) defined and registered here trains
Noise2Noise and SSDU, reconstructs, adapts and evaluates through the public API, with no other
module edited."""

from __future__ import annotations

import math

import numpy as np
import torch

from mri_n2n import Reconstructor
from mri_n2n.config import Config
from mri_n2n.evaluation import evaluate_mri
from mri_n2n.masks import BernoulliLaw
from mri_n2n.physics import Acquisition
from mri_n2n.training import train

N, SPOKES, READ = 16, 12, 16


def _trajectory() -> torch.Tensor:
    """``(SPOKES * READ, 2)`` k-space points in cycles per pixel, golden-angle spokes."""
    ang = torch.arange(SPOKES, dtype=torch.float64) * math.pi * (math.sqrt(5) - 1) / 2
    r = (torch.arange(READ, dtype=torch.float64) - READ / 2) / READ
    return torch.stack([r[None] * ang.cos()[:, None], r[None] * ang.sin()[:, None]], -1).reshape(-1, 2)


_GRID = torch.stack(torch.meshgrid(torch.arange(N) - N // 2, torch.arange(N) - N // 2, indexing="ij"), -1)
#: the system matrix ``E[m, p] = exp(-2 pi i k_m . r_p) / N`` (an orthonormal DFT on the full grid)
_E = (torch.exp(-2j * math.pi * (_trajectory() @ _GRID.reshape(-1, 2).double().T)) / N).to(torch.complex64)


class ToySpokes(Acquisition):
    """``A x = M E x``: a non-uniform DFT on spokes, the sampled set a subset of the spokes."""

    kind = "toy_spokes"
    _dims = {"sampled": 1, "y": 3, "keep_prob": 1}

    def __init__(self, sampled, y=None, keep_prob=None, maps=None) -> None:
        self._sampled, self.y, self.keep_prob = sampled.bool(), y, keep_prob

    @property
    def sampled(self):
        return self._sampled

    sample_shape = property(lambda self: (SPOKES,))
    image_shape = property(lambda self: (N, N))

    def _fields(self):
        return {"sampled": self._sampled, "y": self.y, "keep_prob": self.keep_prob}

    def expand_samples(self, t):
        return t[..., None, :, None] if t.ndim == 2 else t[:, None]  # (B, 1, S, 1) or (S, 1)

    def forward(self, x):
        k = (_E.to(x.device) @ x.to(torch.complex64).reshape(*x.shape[:-2], N * N, 1))
        return self.sample(k.reshape(*x.shape[:-2], SPOKES, READ))

    def adjoint(self, y=None):
        y = self.sample(self._data(y))
        x = _E.to(y.device).conj().T @ y.reshape(*y.shape[:-2], SPOKES * READ, 1)
        return x.reshape(*y.shape[:-2], N, N)

    @classmethod
    def fully_sampled(cls, shape, maps=None, device=None):
        return cls(torch.ones(SPOKES, dtype=torch.bool, device=device))

    @classmethod
    def law(cls, settings, shape, *, fraction=None, hermitian=False):
        return BernoulliLaw(torch.full((SPOKES,), 0.5 if fraction is None else float(fraction)))


# ---------------------------------------------------------------------------------------------
def _cfg(tmp_path, name: str, **kw) -> Config:
    return Config(acquisition="toy_spokes", dataset="mni152", size=N, preset="tiny", model="unrolled",
                  cascades=2, max_steps=3, batch_size=2, val_limit=2, figures=False, tensorboard=False,
                  quiet=True, threads=1, out=str(tmp_path / name), **kw)


def test_toy_kind_trains_reconstructs_adapts_and_evaluates(tmp_path) -> None:
    n2n = train(_cfg(tmp_path, "n2n"))
    ssdu = train(_cfg(tmp_path, "ssdu", target="ssdu", loss="kspace", dc="prox"))
    for s in (n2n, ssdu):
        assert math.isfinite(s["best_val_psnr"])
    ckpt = tmp_path / "n2n" / "checkpoints" / "best.pt"
    vol = np.random.default_rng(0).random((N, N, 3)).astype(np.float32)
    rec = Reconstructor.from_checkpoint(ckpt)
    out = rec.simulate(vol, 0.5, seed=1)
    assert out.image.shape == vol.shape and np.isfinite(out.image).all()  # the input's layout
    assert out.metrics["psnr"] > out.metrics["psnr_zero_filled"] - 10  # a real reconstruction
    rec.adapt_steps = 2
    adapted = rec.simulate(vol, 0.5, seed=1)
    assert np.isfinite(adapted.image).all()
    res = evaluate_mri([ckpt], limit=2, tv_iters=5, progress=False, device="cpu")
    assert {"zero-filled", "N2N"} <= set(res["methods"]) and res["summary"]["N2N"]["psnr_mean"] > 0
