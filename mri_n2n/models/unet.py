"""U-Nets: the Noise2Noise paper's network (Table 2) and a conventional, faster U-Net.

Both come from one configurable class, :class:`UNet`:

- :meth:`UNet.paper` -- exactly the network of Lehtinen et al. (2018), Table 2, used for every
  experiment except the RED30 Gaussian row (5 max-pools, inputs padded to a multiple of 32);
- :meth:`UNet.plain` -- a conventional U-Net (two convs per level, channels ``base * 2**level``),
  the default on CPU.

Common to both: 3x3 convolutions with padding 1, LeakyReLU(0.1) after every convolution except the
last (linear) one, 2x2 max-pooling, nearest-neighbour 2x upsampling followed by concatenation with
the skip tensor, no batch normalisation, no residual connection (the network predicts the image,
not the noise). Any ``H x W`` is accepted: the input is padded to a multiple of ``2**n_pools`` and
the output cropped back (see :meth:`UNet.forward`).

Initialisation follows the authors' reference code (``network.py`` of NVlabs/noise2noise): He
*normal* weights, ``std = gain / sqrt(fan_in)`` with ``gain = sqrt(2)`` for every convolution that
is followed by a LeakyReLU and ``gain = 1`` for the final linear convolution; all biases zero.
(PyTorch's ``kaiming_normal_(a=0.1)`` would use ``gain = sqrt(2 / 1.01)``, 0.5 % smaller.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model

__all__ = ["UNet", "pad_to_multiple", "LEAKY_SLOPE"]

LEAKY_SLOPE = 0.1
"""Negative slope of every LeakyReLU (paper: 0.1)."""


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad the last two dims of ``x`` up to a multiple of ``multiple``, split evenly on both sides.

    Reflect padding is used when every pad is smaller than the corresponding side (the condition
    under which reflection is defined); otherwise (tiny inputs) zero padding. Reflection avoids an
    artificial edge that the network would otherwise have to "denoise".

    Args:
        x: tensor ``(..., H, W)`` with at least 3 dims (``(N, C, H, W)`` for the models).
        multiple: the required divisor of ``H`` and ``W`` (``2**n_pools``).

    Returns:
        ``(padded, (top, bottom, left, right))``; crop back with
        ``out[..., top:top + H, left:left + W]``. ``padded`` is ``x`` itself when nothing is needed.
    """
    h, w = x.shape[-2], x.shape[-1]
    # Ceil-division rather than ``(-h) % multiple``: Python's modulo on symbolic sizes breaks
    # torch.compile with dynamic shapes (inductor has no handler for it in torch 2.13).
    ph = (h + multiple - 1) // multiple * multiple - h
    pw = (w + multiple - 1) // multiple * multiple - w
    if ph == 0 and pw == 0:
        return x, (0, 0, 0, 0)
    top, left = ph // 2, pw // 2
    bottom, right = ph - top, pw - left
    mode = "reflect" if (bottom < h and right < w) else "constant"
    return F.pad(x, (left, right, top, bottom), mode=mode), (top, bottom, left, right)


def _width(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


class _ConvAct(nn.Sequential):
    """3x3 convolution (padding 1) followed by LeakyReLU(0.1)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(LEAKY_SLOPE, inplace=True))


def _stack(cin: int, widths: Sequence[int]) -> tuple[nn.Sequential, int]:
    layers = []
    for c in widths:
        layers.append(_ConvAct(cin, c))
        cin = c
    return nn.Sequential(*layers), cin


class UNet(nn.Module):
    """Configurable U-Net; build it with :meth:`paper` (paper Table 2) or :meth:`plain` (fast).

    Structure, for ``n = len(enc)`` pooling levels: encoder level ``l`` (``l = 0..n-1``) applies the
    convs ``enc[l]`` and a 2x2 max-pool; the bottleneck applies ``bottleneck`` at ``1/2**n``
    resolution; decoder level ``l`` (``l = n-1..0``) upsamples 2x (nearest), concatenates the skip
    tensor of level ``l`` and applies the convs ``dec[l]``; a final linear conv (``out_kernel``)
    maps to ``out_channels``. Every conv but the last is followed by LeakyReLU(0.1).

    ``skip="input"`` takes the skip of level ``l`` from the tensor *entering* encoder level ``l``
    (the network input at ``l = 0``, ``pool_l`` below), as the paper does; ``skip="output"`` takes
    it from the output of encoder level ``l``'s convs, before pooling (the conventional U-Net).

    Parameter counts (weights + biases):

    ===========================================  ===========  ===========
    variant                                      1 -> 1       3 -> 3
    ===========================================  ===========  ===========
    ``UNet.paper()`` (Table 2, width 1.0)        988,609      991,203
    ``UNet.paper(width=0.5)``                    247,777      249,075
    ``UNet.plain()`` (base 16, depth 4)          1,962,337    1,962,659
    ``UNet.plain(base=16, depth=3)``             487,009      487,331
    ===========================================  ===========  ===========

    Attributes:
        spec: ``{"name": ..., "kwargs": {...}}`` (JSON-serialisable) such that
            ``mri_n2n.models.build_model(spec["name"], **spec["kwargs"])`` rebuilds this architecture.
        multiple: inputs are padded to a multiple of this (``2**len(enc)``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        enc: Sequence[Sequence[int]] = ((48, 48), (48,), (48,), (48,), (48,)),
        bottleneck: Sequence[int] = (48,),
        dec: Sequence[Sequence[int]] = ((64, 32), (96, 96), (96, 96), (96, 96), (96, 96)),
        skip: str = "input",
        out_kernel: int = 3,
    ) -> None:
        """Build a U-Net from an explicit layout (the defaults are the paper's Table 2).

        Args:
            in_channels: input channels.
            out_channels: output channels.
            enc: conv widths of each encoder level, top (full resolution) first; one 2x2
                max-pool follows each level. ``len(enc) >= 1``.
            bottleneck: conv widths at the coarsest resolution (may be empty).
            dec: conv widths of each decoder level, top first (``len(dec) == len(enc)``,
                each non-empty).
            skip: ``"input"`` (paper) or ``"output"`` (conventional), see the class docstring.
            out_kernel: kernel size of the final linear conv (odd: 1 or 3).
        """
        super().__init__()
        enc = [tuple(int(c) for c in level) for level in enc]
        dec = [tuple(int(c) for c in level) for level in dec]
        bottleneck = tuple(int(c) for c in bottleneck)
        if len(enc) < 1 or len(dec) != len(enc):
            raise ValueError(f"need len(dec) == len(enc) >= 1, got {len(enc)} and {len(dec)}")
        if any(len(level) == 0 for level in dec):
            raise ValueError("every decoder level needs at least one conv")
        if skip not in ("input", "output"):
            raise ValueError(f"skip must be 'input' or 'output', got {skip!r}")
        if out_kernel < 1 or out_kernel % 2 == 0:
            raise ValueError(f"out_kernel must be odd and positive, got {out_kernel}")
        if any(c < 1 for c in [in_channels, out_channels, *bottleneck, *sum(enc, ()), *sum(dec, ())]):
            raise ValueError("channel counts must be positive")

        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.skip = skip
        self.multiple = 2 ** len(enc)

        cin = self.in_channels
        skip_ch: list[int] = []
        self.encoder = nn.ModuleList()
        for widths in enc:
            if skip == "input":
                skip_ch.append(cin)
            block, cin = _stack(cin, widths)
            if skip == "output":
                skip_ch.append(cin)
            self.encoder.append(block)
        self.bottleneck, cin = _stack(cin, bottleneck)
        # Decoder modules are stored top level first (index l = resolution level l), run bottom-up.
        dec_blocks: list[nn.Module] = [nn.Identity()] * len(enc)
        for lvl in reversed(range(len(enc))):
            dec_blocks[lvl], cin = _stack(cin + skip_ch[lvl], dec[lvl])
        self.decoder = nn.ModuleList(dec_blocks)
        self.out_conv = nn.Conv2d(cin, self.out_channels, out_kernel, padding=out_kernel // 2)

        self.spec: dict[str, Any] = {
            "name": "unet_custom",
            "kwargs": {
                "in_channels": self.in_channels,
                "out_channels": self.out_channels,
                "enc": [list(level) for level in enc],
                "bottleneck": list(bottleneck),
                "dec": [list(level) for level in dec],
                "skip": skip,
                "out_kernel": int(out_kernel),
            },
        }
        self.reset_parameters()

    # ------------------------------------------------------------------ constructors
    @classmethod
    def paper(cls, in_channels: int = 1, out_channels: int = 1, width: float = 1.0) -> UNet:
        """The network of the paper's Table 2 (exactly, at ``width=1.0``).

        Layers (names of the authors' code), ``c`` = 48 and ``d`` = 96 scaled by ``width``::

            enc_conv0 c, enc_conv1 c, pool1          (encoder[0]; skip 0 = the network input)
            enc_conv2 c, pool2                       (encoder[1]; skip 1 = pool1)
            enc_conv3 c, pool3                       (encoder[2]; skip 2 = pool2)
            enc_conv4 c, pool4                       (encoder[3]; skip 3 = pool3)
            enc_conv5 c, pool5                       (encoder[4]; skip 4 = pool4)
            enc_conv6 c                              (bottleneck)
            up, concat pool4, dec_conv5 d, dec_conv5b d   (decoder[4])
            up, concat pool3, dec_conv4 d, dec_conv4b d   (decoder[3])
            up, concat pool2, dec_conv3 d, dec_conv3b d   (decoder[2])
            up, concat pool1, dec_conv2 d, dec_conv2b d   (decoder[1])
            up, concat input, dec_conv1a 64w, dec_conv1b 32w  (decoder[0])
            dec_conv1 out_channels, 3x3, linear      (out_conv)

        Channel counts are ``max(1, round(c * width))``. Inputs are padded to a multiple of 32.
        Parameter count: 988,609 for 1 -> 1 channels, 991,203 for 3 -> 3 (width 1.0).

        Args:
            in_channels: input channels (1 for magnitude MRI, 3 for RGB).
            out_channels: output channels.
            width: channel multiplier (1.0 = paper); e.g. 0.5 is about 4x cheaper.
        """
        w = float(width)
        if not w > 0:
            raise ValueError(f"width must be positive, got {width}")
        c, d = _width(48, w), _width(96, w)
        model = cls(
            in_channels,
            out_channels,
            enc=[(c, c), (c,), (c,), (c,), (c,)],
            bottleneck=(c,),
            dec=[(_width(64, w), _width(32, w)), (d, d), (d, d), (d, d), (d, d)],
            skip="input",
            out_kernel=3,
        )
        model.spec = {
            "name": "unet_paper",
            "kwargs": {"in_channels": int(in_channels), "out_channels": int(out_channels), "width": w},
        }
        return model

    @classmethod
    def plain(cls, in_channels: int = 1, out_channels: int = 1, base: int = 16, depth: int = 4) -> UNet:
        """A conventional U-Net: the fast CPU default.

        Level ``l = 0..depth`` has ``base * 2**l`` channels; each encoder level applies two 3x3
        convs + LeakyReLU(0.1) and a 2x2 max-pool, the bottleneck (level ``depth``) two convs,
        each decoder level upsamples (nearest), concatenates the encoder level's conv output and
        applies two convs; a final linear 1x1 conv maps to ``out_channels``. No batch norm.
        Inputs are padded to a multiple of ``2**depth``.

        Parameter count for 1 -> 1 channels: 1,962,337 (base 16, depth 4); 487,009 (base 16,
        depth 3). For 3 -> 3: 1,962,659 and 487,331.

        Args:
            in_channels: input channels.
            out_channels: output channels.
            base: channels of the top level.
            depth: number of 2x2 max-pools (levels below the top), at least 1.
        """
        base, depth = int(base), int(depth)
        if base < 1 or depth < 1:
            raise ValueError(f"base and depth must be >= 1, got base={base}, depth={depth}")
        ch = [base * 2**lvl for lvl in range(depth + 1)]
        model = cls(
            in_channels,
            out_channels,
            enc=[(ch[lvl], ch[lvl]) for lvl in range(depth)],
            bottleneck=(ch[depth], ch[depth]),
            dec=[(ch[lvl], ch[lvl]) for lvl in range(depth)],
            skip="output",
            out_kernel=1,
        )
        model.spec = {
            "name": "unet",
            "kwargs": {
                "in_channels": int(in_channels),
                "out_channels": int(out_channels),
                "base": base,
                "depth": depth,
            },
        }
        return model

    # ------------------------------------------------------------------ init / forward
    def reset_parameters(self) -> None:
        """He-normal init as in the authors' code: ``std = gain / sqrt(fan_in)``, zero biases.

        ``gain = sqrt(2)`` for convs followed by LeakyReLU, ``gain = 1`` for the final conv.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
                gain = 1.0 if m is self.out_conv else math.sqrt(2.0)
                with torch.no_grad():
                    m.weight.normal_(0.0, gain / math.sqrt(fan_in))
                    if m.bias is not None:
                        m.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the network to ``x`` ``(N, in_channels, H, W)``; returns ``(N, out_channels, H, W)``.

        ``H`` and ``W`` may be anything: the input is padded to a multiple of :attr:`multiple`
        (``2**n_pools``, 32 for the paper network), evenly on both sides, by reflection when every
        pad is smaller than the side and with zeros otherwise (:func:`pad_to_multiple`), and the
        output is cropped back to ``H x W``. Inputs that are already multiples are not padded.
        """
        if x.dim() != 4:
            raise ValueError(f"expected (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {x.shape[1]}")
        h, w = x.shape[-2], x.shape[-1]
        x, (top, _, left, _) = pad_to_multiple(x, self.multiple)

        skips: list[torch.Tensor] = []
        n = x
        for block in self.encoder:
            if self.skip == "input":
                skips.append(n)
            n = block(n)
            if self.skip == "output":
                skips.append(n)
            n = F.max_pool2d(n, 2)
        n = self.bottleneck(n)
        for lvl in reversed(range(len(self.decoder))):
            s = skips[lvl]
            n = F.interpolate(n, size=(s.shape[-2], s.shape[-1]), mode="nearest")  # exactly 2x
            if s.dtype != n.dtype:  # autocast: skips may be fp32 (the input) while n is half/bf16
                s = s.to(n.dtype)
            n = self.decoder[lvl](torch.cat([n, s], dim=1))
        n = self.out_conv(n)
        if n.shape[-2] != h or n.shape[-1] != w:
            n = n[..., top : top + h, left : left + w]
        return n

    def extra_repr(self) -> str:
        """Short summary shown by ``print(model)``."""
        return f"spec={self.spec['name']}, multiple={self.multiple}"


def _paper_from_config(cfg: Any, channels: int) -> UNet:
    return UNet.paper(in_channels=channels, out_channels=channels, width=cfg.width)


def _plain_from_config(cfg: Any, channels: int) -> UNet:
    return UNet.plain(in_channels=channels, out_channels=channels, base=cfg.base, depth=cfg.depth)


register_model("unet_paper", UNet.paper, from_config=_paper_from_config)
register_model("unet", UNet.plain, from_config=_plain_from_config)
register_model("unet_custom", UNet)  # a directly built UNet's spec; from a config: UNet(channels, channels)
