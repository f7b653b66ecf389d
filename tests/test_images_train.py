"""Short Noise2Noise training runs, one per noise, with the noise's default loss: the loss decreases.

A tiny hand-written loop (the trainer has its own tests): a small U-Net, 32x32 crops of smooth
synthetic images, a few dozen Adam steps, the loss measured on a fixed held-out pair before and
after training.
"""

import pytest
import torch
import torch.nn.functional as F

from mri_n2n.corruptions import NOISES, default_loss, make_corruption
from mri_n2n.losses import get_loss
from mri_n2n.models import build_model

STEPS = 40
SIZE = 32


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny convolutions run fastest on one thread (and do not suffer from busy shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _smooth(b: int, c: int, g: torch.Generator) -> torch.Tensor:
    """Smooth random images in [0, 1]: bilinear upsampling of 4x4 noise."""
    return F.interpolate(torch.rand(b, c, 4, 4, generator=g), size=(SIZE, SIZE), mode="bilinear")


def _batch(noise: str, b: int, g: torch.Generator) -> torch.Tensor:
    """A clean batch, or stacked noisy observations for ``pairs`` / ``montecarlo``."""
    clean = _smooth(b, 3, g)
    if noise == "pairs":  # two real captures: independent noise on the same scene
        return torch.cat([clean + 0.1 * torch.randn(clean.shape, generator=g) for _ in range(2)], 1)
    if noise == "montecarlo":  # HDR radiance with multiplicative, mean-one render noise
        radiance = 4 * clean**2 + 0.05
        return torch.cat([radiance * 2 * torch.rand(clean.shape, generator=g) for _ in range(2)], 1)
    return clean


@pytest.mark.parametrize("noise", NOISES)
def test_short_training_decreases_loss(noise):
    torch.manual_seed(0)
    corruption = make_corruption(noise)
    loss_fn = get_loss(default_loss(noise))
    model = build_model("unet", in_channels=3, out_channels=3, base=8, depth=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.99), eps=1e-8)
    g = torch.Generator().manual_seed(1)
    held_out = corruption.pair(
        _batch(noise, 8, torch.Generator().manual_seed(99)), generator=g, target="noisy"
    )

    def held_out_loss() -> float:
        with torch.no_grad():
            out = corruption.project(model(held_out.input), held_out.acq)
            return loss_fn(out, held_out.target, held_out, 0.5).item()

    before = held_out_loss()
    for step in range(STEPS):
        pair = corruption.pair(_batch(noise, 4, g), generator=g, target="noisy")
        out = corruption.project(model(pair.input), pair.acq)
        loss = loss_fn(out, pair.target, pair, 0.5 * step / STEPS)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    after = held_out_loss()
    print(f"{noise}: held-out loss {before:.4g} -> {after:.4g}")
    assert after < 0.8 * before, (noise, before, after)
