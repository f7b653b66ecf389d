"""Losses: each recovers its statistic of the targets; masks and the HDR denominator behave."""

import pytest
import torch

from mri_n2n.corruptions import Pair
from mri_n2n.losses import LOSSES, get_loss, hdr_loss, l0_gamma, l0_loss, l1_loss, l2_loss, masked_mean

MODE = 0.2


def _skewed_multimodal(n: int = 20000, seed: int = 0) -> torch.Tensor:
    """25 % a narrow spike at 0.2 (the mode), 55 % U[0, 1], 20 % a far bump N(2.5, 0.3).

    Mean about 0.83, median about 0.45, mode 0.2: three well separated statistics.
    """
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(torch.tensor([0.25, 0.55, 0.2]), n, replacement=True, generator=g)
    spike = MODE + 0.01 * torch.randn(n, generator=g)
    uniform = torch.rand(n, generator=g)
    bump = 2.5 + 0.3 * torch.randn(n, generator=g)
    return torch.where(k == 0, spike, torch.where(k == 1, uniform, bump))


def _minimise(name: str, x: torch.Tensor, steps: int = 400, start: float = 1.5) -> float:
    """Adam on a constant prediction, with progress going 0 -> 1 and a linear lr ramp-down."""
    c = torch.tensor([start], requires_grad=True)
    opt = torch.optim.Adam([c], lr=0.02, betas=(0.9, 0.99), eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    loss_fn = get_loss(name)
    for s in range(steps):
        opt.zero_grad()
        loss_fn(c.expand_as(x), x, None, s / steps).backward()
        opt.step()
        sched.step()
    return c.item()


def test_statistics_are_well_separated():
    x = _skewed_multimodal()
    mean, median = x.mean().item(), x.median().item()
    assert abs(mean - 0.83) < 0.03 and abs(median - 0.45) < 0.03
    assert min(abs(mean - median), abs(median - MODE)) > 0.2


@pytest.mark.parametrize(
    "name, statistic",
    [
        ("l2", lambda x: x.mean().item()),
        ("l1", lambda x: x.median().item()),
        ("l0", lambda x: MODE),
        ("hdr", lambda x: x.mean().item()),  # detached denominator: the fixed point is the mean
    ],
)
def test_minimiser_recovers_statistic(name, statistic):
    x = _skewed_multimodal()
    c = _minimise(name, x)
    assert c == pytest.approx(statistic(x), abs=0.02), (name, c)


def test_l0_held_at_gamma_one_gives_the_median():
    """Sanity check of the test itself: without annealing past gamma = 1 the result is the median."""
    x = _skewed_multimodal()
    c = torch.tensor([1.5], requires_grad=True)
    opt = torch.optim.Adam([c], lr=0.01)
    for _ in range(400):
        opt.zero_grad()
        l0_loss(c.expand_as(x), x, None, 0.5).backward()
        opt.step()
    assert abs(c.item() - x.median().item()) < 0.03


def test_l0_gamma_schedule_and_limits():
    assert l0_gamma(0.0) == 2.0 and l0_gamma(0.5) == 1.0 and l0_gamma(1.0) == 0.0
    assert l0_gamma(-1.0) == 2.0 and l0_gamma(2.0) == 0.0
    f, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert l0_loss(f, y, None, 0.0).item() == pytest.approx(l2_loss(f, y).item(), rel=1e-5)
    assert l0_loss(f, y, None, 0.5).item() == pytest.approx(l1_loss(f, y).item(), rel=1e-5)
    assert l0_loss(f, y, None, 1.0).item() == pytest.approx(1.0)


def test_hdr_denominator_is_detached():
    g = torch.Generator().manual_seed(1)
    f = (torch.rand(2, 3, 5, 5, generator=g) * 4).requires_grad_()
    y = torch.rand(2, 3, 5, 5, generator=g) * 4
    hdr_loss(f, y, None, 0.0).backward()
    fd = f.detach()
    expected = 2 * (fd - y) / (fd + 0.01) ** 2 / f.numel()
    torch.testing.assert_close(f.grad, expected)
    # the non-detached gradient would differ (and pull outputs upwards)
    f2 = fd.clone().requires_grad_()
    torch.mean((f2 - y) ** 2 / (f2 + 0.01) ** 2).backward()
    assert not torch.allclose(f2.grad, expected)
    assert hdr_loss(fd, y).item() == pytest.approx(torch.mean((fd - y) ** 2 / (fd + 0.01) ** 2).item())


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("kind", ["float", "bool"])
def test_masked_loss_ignores_invalid_pixels(name, kind):
    g = torch.Generator().manual_seed(2)
    f = torch.rand(2, 3, 6, 6, generator=g) + 0.1
    y = torch.rand(2, 3, 6, 6, generator=g) + 0.1
    valid = torch.rand(2, 1, 6, 6, generator=g) < 0.5
    ctx = Pair(f, y, valid=valid if kind == "bool" else valid.float())
    loss_fn = get_loss(name)
    base = loss_fn(f, y, ctx, 0.3)
    f_changed = torch.where(valid, f, f + 5.0)  # change the output only where the target is invalid
    y_changed = torch.where(valid, y, torch.zeros_like(y))
    assert loss_fn(f_changed, y_changed, ctx, 0.3).item() == pytest.approx(base.item(), rel=1e-6)
    # equals the plain loss over the valid pixels only
    sel = valid.expand_as(f)
    per_pixel = {
        "l2": (f - y) ** 2,
        "l1": (f - y).abs(),
        "l0": ((f - y).abs() + 1e-8) ** l0_gamma(0.3),
        "hdr": (f - y) ** 2 / (f + 0.01) ** 2,
    }[name]
    assert base.item() == pytest.approx(per_pixel[sel].mean().item(), rel=1e-5)
    # no gradient reaches invalid pixels
    fg = f.clone().requires_grad_()
    loss_fn(fg, y, ctx, 0.3).backward()
    assert torch.all(fg.grad[~sel] == 0) and torch.any(fg.grad[sel] != 0)


def test_masked_mean_edge_cases():
    v = torch.arange(8.0).reshape(1, 2, 2, 2)
    assert masked_mean(v, None).item() == pytest.approx(3.5)
    assert masked_mean(v, Pair(v, v)).item() == pytest.approx(3.5)
    empty = masked_mean(v.requires_grad_(), Pair(v, v, valid=torch.zeros(1, 1, 2, 2)))
    assert empty.item() == 0.0 and empty.requires_grad
    per_channel = torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1).expand(1, 2, 2, 2)
    assert masked_mean(v, Pair(v, v, valid=per_channel)).item() == pytest.approx(1.5)


def test_registry():
    assert {"l2", "l1", "l0", "hdr"} <= set(LOSSES)  # and any loss registered since (a live view)
    assert get_loss("l2") is l2_loss
    with pytest.raises(ValueError, match="unknown loss 'l3'") as err:
        get_loss("l3")
    assert all(name in str(err.value) for name in ("l2", "l1", "l0", "hdr", "kspace"))


def test_registration_flags_of_the_built_in_losses():
    """``kspace``: reads the target's acquisition; ``split``: accepted by the single-acquisition
    targets (the k-space L2 variants, not ``kspace_mix``, whose image half needs the whole target)."""
    from mri_n2n.losses import MRI_LOSSES, loss_entry, loss_names

    assert {"l2", "l1", "l0", "hdr"} <= set(loss_names(kspace=False))
    assert set(MRI_LOSSES) <= set(loss_names(kspace=True))
    assert set(loss_names(split=True)) >= {
        "kspace", "kspace_flat", "kspace_clipped", "kspace_normalized", "kspace_density"
    }
    assert not loss_entry("kspace_mix").split and loss_entry("kspace_mix").kspace
    assert all(get_loss(n) is f for n, f in {**LOSSES, **MRI_LOSSES}.items())
