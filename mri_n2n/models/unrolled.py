"""An unrolled reconstruction network (MoDL / E2E-VarNet family) for MRI of any acquisition kind.

``K`` cascades, each a small residual CNN (or a small U-Net) followed by *exact* data
consistency with the measured k-space::

    x_0 = network input (density-compensated zero-filled image)
    x_k = DC(x_{k-1} + CNN_k(x_{k-1})),   k = 1..K
    DC(x) = F^-1 ((1 - M) F x + M y)       (real part for real 1-channel images)

This is MoDL's data-consistency solve in the limit ``lambda -> 0`` (the paper's spectral
projection), applied after every cascade instead of only once at the end. The formula is the
Cartesian kind's; every kind gives its own exact projection
(:meth:`~mri_n2n.physics.Acquisition.data_consistency`: conjugate gradients with ``lambda = 0``
where it has no replacement). The input itself is
not projected: its sampled values are ``y / p`` (density compensation), which the first CNN sees
as they are.

With ``dc="prox"`` every cascade ends instead with MoDL's proximal step (Aggarwal et al. 2019)
with a learned weight ``lam_k > 0`` per cascade::

    DC_k(z) = argmin_x ||A x - y||^2 + lam_k ||x - z||^2

in closed form for single-coil data (``(y + lam F z) / (1 + lam)`` on the sampled set) and by
``cg_iters`` conjugate-gradient iterations for multi-coil data (CG-SENSE warm-started at ``z``).
The multi-coil step's output is zero outside the maps' support (where no coil sees the image).
It does not force noisy measurements into the output: with several coils ``A x = y`` is
overdetermined and its exact solution keeps all the measurement noise (CG-SENSE), which the
learned weight can trade against the network's prior. The output of such a model is final
(:attr:`Unrolled.ends_with_dc`): callers do not project it again.

Real images are ``(B, 1, H, W)``; complex images are ``(B, 2, H, W)`` real/imag channels.
Called as ``model(x, acq)`` with the batch's :class:`~mri_n2n.physics.Acquisition` (mask,
measurements, maps), every cascade ends with that operator's projection or proximal step; called
as ``model(x)`` every cascade is applied without DC: a plain denoiser, so call sites written for
the U-Nets keep working. :attr:`Unrolled.uses_measurements` tells the trainer and the
reconstruction code to pass the acquisition.

Real 1-channel data whose k-space is not Hermitian (e.g. a phase-corrected complex slice at
inference) carry a unit complex ``phase`` map ``(B, H, W)`` in their acquisition (``image = real
* phase``); DC then works on ``real * phase`` and returns the real part of ``DC(...) * conj(phase)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..physics import Acquisition
from .registry import register_model
from .unet import UNet

__all__ = ["Unrolled", "data_consistency", "DC_MODES"]

LEAKY_SLOPE = 0.1
#: Data consistency of each cascade: exact replacement, or MoDL's learned proximal step.
DC_MODES = ("replace", "prox")


def data_consistency(
    x: torch.Tensor, acq: Acquisition, lam: torch.Tensor | float | None = None, cg_iters: int = 6
) -> torch.Tensor:
    """One cascade's data consistency of model channels ``x`` ``(B, 1 or 2, H, W)`` by the
    acquisition (:meth:`Acquisition.data_consistency`): ``lam=None`` the exact projection (the
    replacement of the measured samples where the kind has one, else conjugate gradients with
    ``lam = 0``), else the proximal step ``argmin_z ||A z - y||^2 + lam ||z - x||^2`` (closed form
    for one Cartesian coil, ``cg_iters`` conjugate-gradient iterations otherwise). Returns float32
    channels of ``x``'s shape."""
    z = acq.data_consistency(acq.image_of(x.float()), lam, cg_iters)
    return acq.channels_of(z, x.shape[1]).float()


class _ResCNN(nn.Module):
    """``depth`` 3x3 convs (``width`` wide, LeakyReLU(0.1) between, the last linear); ``x + f(x)``."""

    def __init__(self, channels: int, width: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = channels
        for _ in range(depth - 1):
            # in place: the same values, one activation tensor less per layer (a faster CPU step)
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.LeakyReLU(LEAKY_SLOPE, inplace=True)]
            c = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(c, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out(self.body(x))


class _ResUNet(nn.Module):
    """A small plain U-Net (:meth:`UNet.plain`) used as a residual cascade: ``x + unet(x)``.

    Its receptive field spans the image (``depth`` poolings), where the CNN's is ``2*depth+1``
    pixels: line masks alias a pixel onto copies ``H/R`` rows away, which one CNN cascade cannot
    see together. The final 1x1 conv starts 10x smaller than PyTorch's default, so the untrained
    net is close to the identity plus DC, as the CNN's is."""

    def __init__(self, channels: int, width: int, depth: int) -> None:
        super().__init__()
        self.net = UNet.plain(channels, channels, base=width, depth=depth)
        with torch.no_grad():
            self.net.out_conv.weight.mul_(0.1)
            self.net.out_conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class _ResHybrid(_ResCNN):
    """The residual CNN plus a global branch: ``x + cnn(x) + unet(x)``.

    The CNN is :class:`_ResCNN` under the same parameter names, so a CNN model's weights load
    into it (``--init-from``). The U-Net branch (``glob``) has ``max(4, width // 2)`` channels at
    the top, doubling per level up to :data:`HYBRID_MAX_WIDTH`, and :data:`HYBRID_POOLS`
    poolings; it starts with a zero output layer, so the loaded model starts exactly where the
    CNN model ended and fine-tuning adds what the CNN cannot see: the aliases of line masks
    ``H/R`` rows away, objects that fill the field of view.
    """

    def __init__(self, channels: int, width: int, depth: int) -> None:
        super().__init__(channels, width, depth)
        ch = [min(max(4, width // 2) * 2**lvl, HYBRID_MAX_WIDTH) for lvl in range(HYBRID_POOLS + 1)]
        self.glob = UNet(
            channels,
            channels,
            enc=[(c, c) for c in ch[:-1]],
            bottleneck=(ch[-1], ch[-1]),
            dec=[(c, c) for c in ch[:-1]],
            skip="output",
            out_kernel=1,
        )
        self.zero_global()

    def zero_global(self) -> None:
        """Zero the U-Net branch's output layer (the block is then the CNN alone)."""
        with torch.no_grad():
            self.glob.out_conv.weight.zero_()
            self.glob.out_conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out(self.body(x)) + self.glob(x)


#: Poolings of the hybrid block's U-Net branch (a 16x coarser bottom: 8x8 for a 128x128 slice).
HYBRID_POOLS = 4
#: The hybrid branch's channels double per level up to this (its coarse levels see the whole
#: slice; wider ones would add parameters, not reach).
HYBRID_MAX_WIDTH = 32
#: The cascade networks by ``block`` name.
BLOCKS = {"cnn": _ResCNN, "unet": _ResUNet, "hybrid": _ResHybrid}


@register_model("unrolled")
class Unrolled(nn.Module):
    """``cascades`` x (residual CNN -> exact data consistency).

    Args:
        in_channels: 1 (real) or 2 (real/imag).
        out_channels: must equal ``in_channels`` (residual cascades).
        cascades: number of cascades ``K`` (>= 1).
        width: CNN width (``block="cnn"`` or ``"hybrid"``) or the U-Net's base channels
            (``block="unet"``).
        depth: conv layers per CNN cascade (>= 2), or the U-Net's number of poolings.
        share_weights: one CNN applied in every cascade (MoDL) instead of one per cascade.
        block: ``"cnn"`` (plain residual CNN), ``"unet"`` (small plain U-Net) or ``"hybrid"``
            (the CNN plus a U-Net branch whose output starts at zero: :class:`_ResHybrid`).
        dc: ``"replace"`` (exact data consistency) or ``"prox"`` (MoDL's proximal step with a
            learned weight per cascade, initialised to ``lam_init``; module docstring).
        cg_iters: conjugate-gradient iterations of the multi-coil proximal step.
        lam_init: initial proximal weight of ``dc="prox"``.

    Attributes:
        spec: ``{"name": "unrolled", "kwargs": {...}}`` for ``build_model``.
        uses_measurements: ``True``: call as ``model(x, acq)`` for DC.
        multiple: 1 for the CNN (any size), ``2**depth`` for the U-Net block and
            ``2**HYBRID_POOLS`` for the hybrid's branch (padded inside).
        ends_with_dc: ``True`` for ``dc="prox"``: the output is final, callers do not project it
            again (:func:`mri_n2n.models.ends_with_dc`).
    """

    uses_measurements = True
    #: The trainer's default memory format for it (its CPU training step measured 1.3x faster).
    prefers_channels_last = True

    @classmethod
    def from_config(cls, cfg: Any, channels: int) -> Unrolled:
        """The network of a run config (``--cascades``, ``--cascade-width``, ``--cascade-depth``,
        ``--share-weights``, ``--dc``, ``--cg-iters``) for ``channels`` in and out."""
        return cls(
            in_channels=channels,
            out_channels=channels,
            cascades=cfg.cascades,
            width=cfg.cascade_width,
            depth=cfg.cascade_depth,
            block=getattr(cfg, "cascade_block", None) or "cnn",
            share_weights=cfg.share_weights,
            dc=cfg.dc,
            cg_iters=cfg.cg_iters,
        )

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        cascades: int = 5,
        width: int = 32,
        depth: int = 5,
        share_weights: bool = False,
        block: str = "cnn",
        dc: str = "replace",
        cg_iters: int = 6,
        lam_init: float = 0.05,
    ) -> None:
        super().__init__()
        if in_channels != out_channels or in_channels not in (1, 2):
            raise ValueError(
                "unrolled: in_channels == out_channels in (1, 2) required, "
                f"got {in_channels} -> {out_channels}"
            )
        if cascades < 1 or width < 1:
            raise ValueError(f"unrolled: cascades and width must be >= 1, got {cascades}, {width}")
        if block in ("cnn", "hybrid") and depth < 2:
            raise ValueError(f"unrolled: a CNN cascade needs depth >= 2 conv layers, got {depth}")
        if block == "unet" and depth < 1:
            raise ValueError(f"unrolled: a U-Net cascade needs depth >= 1, got {depth}")
        if block not in BLOCKS:
            raise ValueError(f"unrolled: block must be one of {tuple(BLOCKS)}, got {block!r}")
        if dc not in DC_MODES:
            raise ValueError(f"unrolled: dc must be one of {DC_MODES}, got {dc!r}")
        if cg_iters < 1 or not lam_init > 0:
            raise ValueError(f"unrolled: cg_iters >= 1 and lam_init > 0 required, got {cg_iters}, {lam_init}")
        self.cascades = int(cascades)
        self.dc = dc
        self.cg_iters = int(cg_iters)
        self.ends_with_dc = dc == "prox"
        self.share_weights = bool(share_weights)
        make = BLOCKS[block]
        n_blocks = 1 if share_weights else self.cascades
        self.blocks = nn.ModuleList(make(in_channels, int(width), int(depth)) for _ in range(n_blocks))
        self.multiple = {"cnn": 1, "unet": 2 ** int(depth), "hybrid": 2**HYBRID_POOLS}[block]
        # log of the proximal weights, one per cascade (learned; only for dc="prox")
        self.log_lam = (
            nn.Parameter(torch.full((self.cascades,), math.log(lam_init))) if dc == "prox" else None
        )
        self.spec: dict[str, Any] = {
            "name": "unrolled",
            "kwargs": {
                "in_channels": int(in_channels),
                "out_channels": int(out_channels),
                "cascades": self.cascades,
                "width": int(width),
                "depth": int(depth),
                "share_weights": self.share_weights,
                "block": block,
            },
        }
        if dc != "replace":  # older checkpoints' specs stay valid: replace is the default
            self.spec["kwargs"].update(dc=dc, cg_iters=self.cg_iters, lam_init=float(lam_init))
        if block != "unet":
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal init for the CNN's LeakyReLU convs; the last conv of each cascade starts small
        (std ``0.1 / sqrt(fan_in)``), so the untrained net is close to the identity plus DC (a
        hybrid's U-Net branch keeps PyTorch's init, its output zeroed)."""
        for blk in self.blocks:
            for m in (*blk.body, blk.out):
                if isinstance(m, nn.Conv2d):
                    fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                    gain = 0.1 if m is blk.out else math.sqrt(2.0 / (1.0 + LEAKY_SLOPE**2))
                    with torch.no_grad():
                        m.weight.normal_(0.0, gain / math.sqrt(fan_in))
                        m.bias.zero_()

    def block(self, k: int) -> nn.Module:
        """The CNN of cascade ``k`` (0-based)."""
        return self.blocks[0 if self.share_weights else k]

    def forward(
        self,
        x: torch.Tensor,
        acq: Acquisition | None = None,
        *,
        return_all: bool = False,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Run the cascades.

        Args:
            x: network input ``(B, C, H, W)``.
            acq: the batch's :class:`~mri_n2n.physics.Acquisition` (mask, measurements, maps for
                coil data, phase for real images whose data are not Hermitian), or ``None`` for
                no DC (plain denoiser).
            return_all: return the list of every cascade's output (for tests and diagnostics).

        Returns:
            ``(B, C, H, W)``: the last cascade's output (float32 when DC is applied), or the list.
        """
        outs = []
        for k in range(self.cascades):
            x = self.block(k)(x)
            if acq is not None:
                lam = None if self.log_lam is None else self.log_lam[k].exp()
                with torch.autocast(x.device.type, enabled=False):
                    x = data_consistency(x, acq, lam, self.cg_iters)
            outs.append(x)
        return outs if return_all else x

    def extra_repr(self) -> str:
        kw = self.spec["kwargs"]
        keys = ("cascades", "width", "depth", "share_weights", "block")
        return ", ".join(f"{k}={kw[k]}" for k in keys) + f", dc={self.dc}"
