"""RED30 (Mao, Shen & Yang, NIPS 2016): the network of the Noise2Noise paper's Gaussian row.

A 30-layer encoder-decoder at full resolution: ``num_layers`` (15) 3x3 convolutions with
``features`` (128) channels, mirrored by 15 3x3 "deconvolutions" (stride-1 transposed
convolutions), with symmetric skip connections every two layers.

Layout used here (``L = num_layers``, conv/deconv layers numbered from 1):

- conv ``k`` (``k = 1..L``): 3x3, padding 1, ReLU; conv 1 maps ``in_channels -> features``;
- deconv ``j`` (``j = 1..L``): 3x3 transposed conv, padding 1; deconv ``L`` maps
  ``features -> out_channels``;
- deconv ``j`` mirrors conv ``L - j``: for odd ``j < L`` the output of conv ``L - j`` is added
  to the output of deconv ``j`` before its ReLU (skips from convs 14, 12, ..., 2);
- the outermost skip adds the network input to the output of deconv ``L`` (only when
  ``in_channels == out_channels``); the output is linear (no final ReLU), so it can be negative.

Padding 1 keeps every feature map at the input size, so any ``H x W`` works with no padding of
the input (``multiple = 1``). He-normal init (``std = sqrt(2 / fan_in)``, ``1 / sqrt(fan_in)``
for the last layer), zero biases. Parameter count: 4,134,785 for 1 -> 1 channels, 4,139,395 for
3 -> 3 (the defaults).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .registry import register_model

__all__ = ["RED30"]


@register_model("red30")
class RED30(nn.Module):
    """RED30 residual encoder-decoder (see the module docstring for the exact layout).

    Parameter count: 4,134,785 for 1 -> 1 channels, 4,139,395 for 3 -> 3 (128 features, 15 + 15
    layers).

    Attributes:
        spec: ``{"name": "red30", "kwargs": {...}}``, rebuilt by ``mri_n2n.models.build_model``.
        multiple: 1 (no input padding needed).
    """

    def __init__(
        self, in_channels: int = 1, out_channels: int = 1, features: int = 128, num_layers: int = 15
    ) -> None:
        """Build RED-Net with ``num_layers`` convs and as many deconvs (15 -> RED30).

        Args:
            in_channels: input channels.
            out_channels: output channels.
            features: channels of every hidden layer (128 in the paper).
            num_layers: convolutions in the encoder (= deconvolutions in the decoder), >= 1.
        """
        super().__init__()
        if min(in_channels, out_channels, features, num_layers) < 1:
            raise ValueError("in_channels, out_channels, features and num_layers must be >= 1")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.num_layers = L = int(num_layers)
        self.multiple = 1
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels if k == 0 else features, features, 3, padding=1) for k in range(L)
        )
        self.deconvs = nn.ModuleList(
            nn.ConvTranspose2d(features, out_channels if j == L - 1 else features, 3, padding=1)
            for j in range(L)
        )
        self.act = nn.ReLU(inplace=True)
        self.spec: dict[str, Any] = {
            "name": "red30",
            "kwargs": {
                "in_channels": self.in_channels,
                "out_channels": self.out_channels,
                "features": int(features),
                "num_layers": L,
            },
        }
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal weights (gain sqrt(2); 1 for the last layer) and zero biases."""
        last = self.deconvs[-1]
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                # Both are (stride 1) correlations summing over in_channels * k * k inputs.
                cin = m.in_channels
                fan_in = cin * m.kernel_size[0] * m.kernel_size[1]
                gain = 1.0 if m is last else math.sqrt(2.0)
                with torch.no_grad():
                    m.weight.normal_(0.0, gain / math.sqrt(fan_in))
                    m.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the network to ``(N, in_channels, H, W)``; returns ``(N, out_channels, H, W)``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (N, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        L = self.num_layers
        feats: dict[int, torch.Tensor] = {}
        n = x
        for k, conv in enumerate(self.convs, start=1):
            n = self.act(conv(n))
            if k % 2 == 0 and k < L:
                feats[k] = n
        for j, deconv in enumerate(self.deconvs, start=1):
            n = deconv(n)
            if j < L:
                mirror = L - j
                if mirror in feats:
                    n = n + feats[mirror]
                n = self.act(n)
        if self.in_channels == self.out_channels:
            n = n + x.to(n.dtype)
        return n
