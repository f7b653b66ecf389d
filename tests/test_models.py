"""Tests for mri_n2n.models: the paper's U-Net (Table 2), the plain U-Net, RED30, the registry."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mri_n2n.models import MODEL_NAMES, RED30, UNet, build_model
from mri_n2n.models.unet import pad_to_multiple


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def convs(m: nn.Module) -> list[nn.Conv2d]:
    return [c for c in m.modules() if isinstance(c, nn.Conv2d)]


# ---------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize(
    "factory, expected",
    [
        (lambda: UNet.paper(), 988_609),
        (lambda: UNet.paper(3, 3), 991_203),
        (lambda: UNet.paper(width=0.5), 247_777),
        (lambda: UNet.plain(), 1_962_337),
        (lambda: UNet.plain(3, 3), 1_962_659),
        (lambda: UNet.plain(depth=3), 487_009),
        (lambda: RED30(), 4_134_785),
        (lambda: RED30(3, 3), 4_139_395),
    ],
)
def test_parameter_counts(factory, expected):
    assert n_params(factory()) == expected


def test_paper_parameter_count_by_hand():
    # Table 2 layer by layer: (in, out) of every 3x3 conv, weights + biases.
    layers = [(1, 48), (48, 48)] + [(48, 48)] * 5  # enc_conv0..enc_conv6
    layers += [(96, 96), (96, 96)] + [(144, 96), (96, 96)] * 3  # dec_conv5..dec_conv2b
    layers += [(97, 64), (64, 32), (32, 1)]  # dec_conv1a, dec_conv1b, dec_conv1
    assert n_params(UNet.paper()) == sum(9 * i * o + o for i, o in layers) == 988_609


# ---------------------------------------------------------------------------- Table 2 structure


def test_paper_layer_list_matches_table2():
    m = UNet.paper()
    got = [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs(m)]
    enc = [(1, 48), (48, 48), (48, 48), (48, 48), (48, 48), (48, 48), (48, 48)]
    dec = [(97, 64), (64, 32)] + [(144, 96), (96, 96)] * 3 + [(96, 96), (96, 96)]
    expected = [(i, o, (3, 3), (1, 1)) for i, o in enc + dec + [(32, 1)]]
    assert got == expected
    assert m.multiple == 32
    assert not any(isinstance(x, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) for x in m.modules())
    assert not any(isinstance(x, nn.ConvTranspose2d) for x in m.modules())


def test_leaky_relu_after_every_conv_but_last():
    for m in (UNet.paper(), UNet.plain()):
        acts = [x for x in m.modules() if isinstance(x, nn.LeakyReLU)]
        assert len(acts) == len(convs(m)) - 1
        assert all(a.negative_slope == pytest.approx(0.1) for a in acts)
        assert not any(isinstance(x, nn.ReLU) for x in m.modules())
        # the last conv is linear: its output is the model output (negative values survive)
        torch.manual_seed(0)
        x = torch.randn(1, 1, 32, 32)
        seen = {}
        h = m.out_conv.register_forward_hook(lambda mod, i, o, seen=seen: seen.setdefault("out", o))
        y = m(x)
        h.remove()
        assert torch.equal(y, seen["out"])
        assert (y < 0).any() and (y > 0).any()


def _reference_table2(m: UNet, x: torch.Tensor) -> torch.Tensor:
    """Independent functional re-statement of Table 2 using the model's weights (input % 32 == 0)."""
    w = [(c.weight, c.bias) for c in convs(m)]

    def conv(n, i, act=True):
        n = F.conv2d(n, w[i][0], w[i][1], padding=1)
        return F.leaky_relu(n, 0.1) if act else n

    def up(n):
        return n.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    skips = [x]
    n = conv(conv(x, 0), 1)
    n = F.max_pool2d(n, 2)
    skips.append(n)  # pool1
    for i in (2, 3, 4):  # enc_conv2..4, pool2..4
        n = F.max_pool2d(conv(n, i), 2)
        skips.append(n)
    n = F.max_pool2d(conv(n, 5), 2)  # enc_conv5, pool5
    n = conv(n, 6)  # enc_conv6
    # decoder convs in module order: [dec1a, dec1b, dec2, dec2b, dec3, dec3b, dec4, dec4b, dec5, dec5b]
    for a in (15, 13, 11, 9):  # dec_conv5, 4, 3, 2
        n = torch.cat([up(n), skips.pop()], dim=1)
        n = conv(conv(n, a), a + 1)
    n = torch.cat([up(n), skips.pop()], dim=1)  # concat with the network input
    n = conv(conv(n, 7), 8)  # dec_conv1a 64, dec_conv1b 32
    return conv(n, 17, act=False)


def test_paper_forward_matches_functional_table2():
    torch.manual_seed(1)
    m = UNet.paper(width=0.25).eval()
    x = torch.randn(2, 1, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _reference_table2(m, x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- shapes and padding


@pytest.mark.parametrize("shape", [(2, 197, 233), (3, 31, 45), (1, 5, 7), (2, 64, 32)])
def test_odd_shapes_paper(shape):
    b, h, w = shape
    m = UNet.paper(width=0.25)
    with torch.no_grad():
        y = m(torch.randn(b, 1, h, w))
    assert y.shape == (b, 1, h, w)


@pytest.mark.parametrize("shape", [(2, 197, 233), (3, 31, 45), (1, 3, 3)])
def test_odd_shapes_plain_and_red(shape):
    b, h, w = shape
    with torch.no_grad():
        assert UNet.plain(2, 3, base=4, depth=3)(torch.randn(b, 2, h, w)).shape == (b, 3, h, w)
        assert RED30(1, 1, features=4, num_layers=3)(torch.randn(b, 1, h, w)).shape == (b, 1, h, w)


def test_padding_is_reflect_and_crop_back_exact():
    torch.manual_seed(2)
    m = UNet.paper(width=0.25).eval()
    x = torch.randn(2, 1, 45, 61)
    xp, (top, bottom, left, right) = pad_to_multiple(x, 32)
    assert xp.shape[-2:] == (64, 64) and (top, bottom, left, right) == (9, 10, 1, 2)
    torch.testing.assert_close(xp, F.pad(x, (1, 2, 9, 10), mode="reflect"))
    with torch.no_grad():
        y = m(x)
        y_full = m(xp)  # already a multiple of 32: no further padding
    torch.testing.assert_close(y, y_full[..., top : top + 45, left : left + 61], rtol=0, atol=0)
    # tiny inputs cannot be reflected: zero padding
    small = torch.randn(1, 1, 5, 7)
    sp, (t, _, l, _) = pad_to_multiple(small, 32)
    assert sp.shape[-2:] == (32, 32) and torch.count_nonzero(sp) == torch.count_nonzero(small)
    assert torch.equal(sp[..., t : t + 5, l : l + 7], small)


def test_no_padding_for_multiples_and_batch_independence():
    torch.manual_seed(3)
    x = torch.randn(3, 1, 32, 64)
    xp, pads = pad_to_multiple(x, 32)
    assert xp is x and pads == (0, 0, 0, 0)
    m = UNet.paper(width=0.25).eval()
    with torch.no_grad():
        y = m(x)
        for i in range(3):
            torch.testing.assert_close(y[i : i + 1], m(x[i : i + 1]), rtol=1e-4, atol=1e-5)


def test_wrong_input_raises():
    m = UNet.paper(width=0.25)
    with pytest.raises(ValueError):
        m(torch.randn(1, 2, 32, 32))
    with pytest.raises(ValueError):
        m(torch.randn(1, 32, 32))


def test_channels_last_autocast_and_grad():
    torch.manual_seed(4)
    m = UNet.paper(width=0.25).eval()
    x = torch.randn(2, 1, 37, 50)
    with torch.no_grad():
        ref = m(x)
        y_cl = m.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(y_cl, ref, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yb = m(x)
        assert yb.shape == ref.shape and torch.isfinite(yb).all()
        assert (yb.float() - ref).abs().max() < 0.1 * ref.abs().max()
    m = UNet.plain(base=4, depth=2)
    xg = torch.randn(1, 1, 13, 17, requires_grad=True)
    m(xg).square().sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0
    assert all(p.grad is not None for p in m.parameters())


@pytest.mark.skipif(not os.environ.get("MRI_N2N_SLOW_TESTS"), reason="set MRI_N2N_SLOW_TESTS=1 (compiles)")
def test_torch_compile():
    torch.manual_seed(5)
    m = UNet.paper(width=0.25).eval()
    mc = torch.compile(m)
    for shape in [(2, 1, 45, 61), (1, 1, 64, 96)]:
        x = torch.randn(shape)
        with torch.no_grad():
            torch.testing.assert_close(mc(x), m(x), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------- init


def test_he_init_statistics():
    torch.manual_seed(6)
    m = UNet.paper(3, 3)
    for c in convs(m):
        fan_in = c.in_channels * 9
        gain = 1.0 if c is m.out_conv else math.sqrt(2.0)
        std = c.weight.std().item()
        assert std == pytest.approx(gain / math.sqrt(fan_in), rel=0.15)
        assert abs(c.weight.mean().item()) < 0.2 * std
        assert torch.count_nonzero(c.bias) == 0
    # activations keep their scale through the (He-initialised) encoder
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        n = m.encoder[1](m.encoder[0](x))
    assert 0.3 < n.pow(2).mean().sqrt().item() < 3.0


# ---------------------------------------------------------------------------- widths and variants


def test_width_multiplier():
    m = UNet.paper(width=0.5)
    assert [c.out_channels for c in convs(m)][:3] == [24, 24, 24]
    assert {c.out_channels for c in convs(m)} == {24, 48, 32, 16, 1}
    tiny = UNet.paper(width=0.001)
    assert all(c.out_channels == 1 for c in convs(tiny))
    with pytest.raises(ValueError):
        UNet.paper(width=0)


def test_plain_structure():
    m = UNet.plain(1, 2, base=8, depth=3)
    assert m.multiple == 8
    outs = [c.out_channels for c in convs(m)]
    assert outs == [8, 8, 16, 16, 32, 32, 64, 64, 8, 8, 16, 16, 32, 32, 2]
    assert m.out_conv.kernel_size == (1, 1)
    assert m.decoder[0][0][0].in_channels == 16 + 8  # upsampled level 1 + skip of level 0


def test_red30_structure():
    m = RED30()
    assert len(m.convs) == 15 and len(m.deconvs) == 15
    assert all(c.out_channels == 128 and c.kernel_size == (3, 3) for c in m.convs)
    assert all(isinstance(d, nn.ConvTranspose2d) for d in m.deconvs)
    # with zero weights (and biases) everywhere the outermost skip makes it the identity
    small = RED30(features=4, num_layers=5)
    with torch.no_grad():
        for p in small.parameters():
            p.zero_()
        x = torch.randn(1, 1, 9, 11)
        assert torch.equal(small(x), x)


# ---------------------------------------------------------------------------- registry / spec


@pytest.mark.parametrize(
    "model",
    [
        UNet.paper(),
        UNet.paper(3, 3, width=0.5),
        UNet.plain(2, 1, base=8, depth=3),
        UNet(1, 1, enc=[(4,), (6,)], bottleneck=(), dec=[(5,), (7, 3)], skip="output", out_kernel=1),
        RED30(features=8, num_layers=4),
    ],
)
def test_spec_round_trip(model):
    spec = json.loads(json.dumps(model.spec))
    assert spec["name"] in MODEL_NAMES
    rebuilt = build_model(spec["name"], **spec["kwargs"])
    assert rebuilt.spec == model.spec
    sd, sd2 = model.state_dict(), rebuilt.state_dict()
    assert list(sd) == list(sd2)
    assert all(sd[k].shape == sd2[k].shape for k in sd)
    rebuilt.load_state_dict(sd)
    x = torch.randn(1, model.in_channels, 20, 24)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), rebuilt.eval()(x))


def test_build_model_names_and_errors():
    assert isinstance(build_model("unet_paper"), UNet)
    assert build_model("unet", base=4, depth=2).spec["kwargs"]["base"] == 4
    with pytest.raises(ValueError, match="unet_paper"):
        build_model("resnet")


@pytest.mark.parametrize("name", ["unet_paper", "unet", "unet_custom", "red30", "unrolled"])
def test_every_built_in_model_is_registered_and_built_from_a_config(name):
    """The trainer builds each built-in name through its registered ``from_config``; the spec it
    records names the architecture a checkpoint rebuilds."""
    from mri_n2n.config import Config
    from mri_n2n.models import model_names
    from mri_n2n.training import build_model_for

    assert name in MODEL_NAMES and MODEL_NAMES == model_names()
    cfg = Config(model=name, width=0.25, base=4, depth=2, cascades=2, cascade_width=4, cascade_depth=3)
    net = build_model_for(cfg, 2 if name == "unrolled" else 1)
    spec = net.spec
    assert spec["name"] == name
    assert type(build_model(spec["name"], **spec["kwargs"])) is type(net)
    if name == "unet":
        assert (spec["kwargs"]["base"], spec["kwargs"]["depth"]) == (4, 2)
    if name == "unrolled":
        assert (spec["kwargs"]["cascades"], spec["kwargs"]["width"], spec["kwargs"]["depth"]) == (2, 4, 3)
