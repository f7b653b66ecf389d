"""Image quality metrics on batched tensors: PSNR, SSIM, NMSE, with an explicit data range.

All functions take ``x`` (the estimate) and ``ref`` (the reference) of the same shape
``(B, C, H, W)``; ``(C, H, W)`` and ``(H, W)`` are read as one image (``B = 1``). Each image gets
one value (channels are averaged for SSIM and pooled for PSNR/NMSE); ``reduction="none"`` returns
these per-image values, shape ``(B,)``, ``"mean"`` (default) their mean, ``"sum"`` their sum.
``data_range`` is a number or a tensor of shape ``(B,)`` (one range per image). Everything is
differentiable and runs on any device in float32 or float64 (half precision is computed in
float32).

Two conventions are in common use, and they give different numbers:

**The Noise2Noise paper** (Lehtinen et al. 2018): images in ``[0, 1]`` (an MRI volume divided by
its own maximum), peak 1.0, the network output clipped to the valid range, PSNR computed per
image (per slice) and averaged::

    psnr(out.clamp(0, 1), ref, data_range=1.0)   # mean over the batch of per-slice PSNR
    psnr(out.clamp(0, 1), ref, data_range=1.0, reduction="none")  # per-slice values

(for 8-bit photographs: ``data_range=255.0`` on ``[0, 255]`` values.)

**fastMRI** (Zbontar et al. 2018, ``fastmri/evaluate.py``): metrics per *volume*; the data range
is the maximum of the reference *volume* (``ref.max()`` over all its slices), PSNR uses the MSE
over the whole volume, SSIM is the mean over slices of the 2-D SSIM (7x7 uniform window, i.e. the
scikit-image defaults) with that volume-wide range, and NMSE is
``||recon - ref||^2 / ||ref||^2`` over the volume. For one volume ``recon, ref`` of shape
``(D, H, W)``, :func:`volume_metrics` returns all three; by hand::

    R = ref.max()
    psnr(recon[None], ref[None], data_range=R)                  # the volume as one image
    ssim(recon[:, None], ref[:, None], data_range=R)            # slices as a batch, mean
    nmse(recon[None], ref[None])                                # the volume as one image

SSIM constants (Wang et al. 2004): ``K1 = 0.01``, ``K2 = 0.03``, ``C1 = (K1 R)^2``,
``C2 = (K2 R)^2``. The default window is scikit-image's: 7x7 uniform with the sample
covariance (``N / (N - 1)``); ``gaussian_weights=True`` gives Wang et al.'s 11-tap Gaussian,
sigma 1.5, population covariance. The SSIM map is averaged over the *valid* region only (the
border of ``(win_size - 1) // 2`` pixels on each side is dropped, as scikit-image does), so
:func:`ssim` agrees with ``skimage.metrics.structural_similarity`` set the same way.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim", "nmse", "volume_metrics"]

_REDUCTIONS = ("mean", "sum", "none")


def _as_batch(x: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes and dtypes; return ``(B, C, H, W)`` views in a float working dtype."""
    if not isinstance(x, torch.Tensor) or not isinstance(ref, torch.Tensor):
        raise TypeError("x and ref must be torch tensors")
    if x.shape != ref.shape:
        raise ValueError(f"x and ref must have the same shape, got {tuple(x.shape)} and {tuple(ref.shape)}")
    if x.is_complex() or ref.is_complex():
        raise TypeError("metrics are defined on real images; take .abs() of complex images first")
    if x.dim() == 2:
        x, ref = x[None, None], ref[None, None]
    elif x.dim() == 3:
        x, ref = x[None], ref[None]
    elif x.dim() != 4:
        raise ValueError(f"expected (H, W), (C, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")
    dtype = torch.promote_types(x.dtype, ref.dtype)
    if not dtype.is_floating_point or dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    return x.to(dtype), ref.to(dtype)


def _range(data_range: float | torch.Tensor, batch: int, like: torch.Tensor) -> torch.Tensor:
    """``data_range`` as a ``(B, 1, 1, 1)`` tensor on ``like``'s device and dtype."""
    r = torch.as_tensor(data_range, dtype=like.dtype, device=like.device)
    if r.dim() == 0:
        r = r.expand(batch)
    elif r.shape != (batch,):
        raise ValueError(f"data_range must be a number or have shape ({batch},), got {tuple(r.shape)}")
    return r.reshape(batch, 1, 1, 1)


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def psnr(
    x: torch.Tensor, ref: torch.Tensor, *, data_range: float | torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range^2 / MSE)``, per image.

    The MSE of each image is taken over all its channels and pixels (like
    ``skimage.metrics.peak_signal_noise_ratio`` on one image). Identical images give ``inf``.

    Paper convention: ``psnr(out.clamp(0, 1), ref, data_range=1.0)`` (per-slice PSNR, averaged).
    fastMRI convention (one volume ``(D, H, W)``): ``psnr(recon[None], ref[None],
    data_range=ref.max())``, or :func:`volume_metrics`. See the module docstring.

    Args:
        x: estimate, ``(B, C, H, W)``, ``(C, H, W)`` or ``(H, W)``.
        ref: reference, same shape.
        data_range: peak value (a number, or a ``(B,)`` tensor of per-image peaks); required,
            never guessed from the data.
        reduction: ``"mean"`` (of per-image PSNR), ``"sum"`` or ``"none"`` (shape ``(B,)``).

    Returns:
        A scalar tensor, or ``(B,)`` for ``reduction="none"``.
    """
    x, ref = _as_batch(x, ref)
    r = _range(data_range, x.shape[0], x).flatten()
    mse = (x - ref).pow(2).flatten(1).mean(dim=1)
    values = 20.0 * torch.log10(r) - 10.0 * torch.log10(mse)
    return _reduce(values, reduction)


def nmse(x: torch.Tensor, ref: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """Normalised mean squared error ``||x - ref||^2 / ||ref||^2``, per image (all channels, pixels).

    fastMRI computes it over a whole volume ``(D, H, W)``: ``nmse(recon[None], ref[None])``
    (the volume as one image), or :func:`volume_metrics`. Scale-independent: no data range.

    Args:
        x: estimate, ``(B, C, H, W)``, ``(C, H, W)`` or ``(H, W)``.
        ref: reference, same shape.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (shape ``(B,)``).

    Returns:
        A scalar tensor, or ``(B,)`` for ``reduction="none"``.
    """
    x, ref = _as_batch(x, ref)
    values = (x - ref).pow(2).flatten(1).sum(dim=1) / ref.pow(2).flatten(1).sum(dim=1)
    return _reduce(values, reduction)


def _window_1d(win_size: int, gaussian: bool, sigma: float, like: torch.Tensor) -> torch.Tensor:
    """Normalised 1-D window (Gaussian like scipy's ``gaussian_filter``, or uniform)."""
    if gaussian:
        t = torch.arange(win_size, dtype=torch.float64) - (win_size - 1) / 2
        w = torch.exp(-0.5 * (t / sigma) ** 2)
    else:
        w = torch.ones(win_size, dtype=torch.float64)
    return (w / w.sum()).to(device=like.device, dtype=like.dtype)


def ssim(
    x: torch.Tensor,
    ref: torch.Tensor,
    *,
    data_range: float | torch.Tensor,
    win_size: int | None = None,
    gaussian_weights: bool = False,
    sigma: float = 1.5,
    use_sample_covariance: bool | None = None,
    K1: float = 0.01,
    K2: float = 0.03,
    reduction: str = "mean",
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), per image, channels averaged.

    Defaults reproduce ``skimage.metrics.structural_similarity(x, ref, data_range=R)`` (its
    defaults: 7x7 uniform window, sample covariance, ``K1 = 0.01``, ``K2 = 0.03``), and
    ``gaussian_weights=True`` reproduces it with ``gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False`` (Wang et al.'s 11-tap Gaussian window). Local statistics are
    computed with "valid" filtering, i.e. the SSIM map is averaged over the pixels whose window
    lies inside the image -- exactly the region scikit-image keeps after cropping
    ``(win_size - 1) // 2`` pixels from each border. ``x`` is compared with ``ref`` symmetrically.

    Paper-style use: ``ssim(out.clamp(0, 1), ref, data_range=1.0)``. fastMRI convention for one
    volume ``(D, H, W)``: ``ssim(recon[:, None], ref[:, None], data_range=ref.max())`` (mean over
    slices with the volume's maximum as range), or :func:`volume_metrics`.

    Args:
        x: estimate, ``(B, C, H, W)``, ``(C, H, W)`` or ``(H, W)``; ``H, W >= win_size``.
        ref: reference, same shape.
        data_range: dynamic range ``R`` (a number, or a ``(B,)`` tensor); required.
        win_size: window side (odd). Default: 7 for the uniform window, 11 for the Gaussian
            (``2 * int(3.5 * sigma + 0.5) + 1``, scikit-image's truncation).
        gaussian_weights: Gaussian instead of uniform window.
        sigma: standard deviation of the Gaussian window.
        use_sample_covariance: normalise (co)variances by ``N - 1`` instead of ``N``
            (``N = win_size**2``). Default: ``True`` for the uniform window, ``False`` for the
            Gaussian one (pass it explicitly to deviate).
        K1: luminance constant.
        K2: contrast constant.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (shape ``(B,)``).

    Returns:
        A scalar tensor, or ``(B,)`` for ``reduction="none"``.
    """
    x, ref = _as_batch(x, ref)
    if win_size is None:
        win_size = 2 * int(3.5 * sigma + 0.5) + 1 if gaussian_weights else 7
    if win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"win_size must be odd and positive, got {win_size}")
    b, c, h, w = x.shape
    if h < win_size or w < win_size:
        raise ValueError(f"images ({h}x{w}) must be at least win_size ({win_size}) on each side")
    if use_sample_covariance is None:
        use_sample_covariance = not gaussian_weights
    n = win_size * win_size
    cov_norm = n / (n - 1) if (use_sample_covariance and n > 1) else 1.0

    r = _range(data_range, b, x)
    c1, c2 = (K1 * r) ** 2, (K2 * r) ** 2

    # Local means of x, y, x^2, y^2, xy via one separable "valid" filtering of 5B*C maps.
    maps = torch.stack([x, ref, x * x, ref * ref, x * ref], dim=0).reshape(5 * b * c, 1, h, w)
    if gaussian_weights:
        k = _window_1d(win_size, True, sigma, x)
        maps = F.conv2d(maps, k.reshape(1, 1, win_size, 1))
        maps = F.conv2d(maps, k.reshape(1, 1, 1, win_size))
    else:
        maps = F.avg_pool2d(maps, win_size, stride=1)  # uniform window, valid region
    ux, uy, uxx, uyy, uxy = maps.reshape(5, b, c, h - win_size + 1, w - win_size + 1).unbind(0)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    values = s.flatten(1).mean(dim=1)  # mean over channels and valid pixels
    return _reduce(values, reduction)


def volume_metrics(recon: Any, ref: Any, *, data_range: float | None = None) -> dict[str, float]:
    """fastMRI-convention PSNR, SSIM and NMSE of one volume.

    Matches ``fastmri.evaluate``: ``data_range`` defaults to ``ref.max()`` over the whole
    volume; PSNR from the MSE over the volume; SSIM the mean over slices of the 2-D SSIM
    (7x7 uniform window, sample covariance) with that range; NMSE ``||recon - ref||^2 / ||ref||^2``
    over the volume. Computed in float64.

    Args:
        recon: reconstruction, ``(D, H, W)`` (or ``(H, W)`` for a single slice); tensor or array.
        ref: reference volume, same shape.
        data_range: override of the range (e.g. a value stored with the data).

    Returns:
        ``{"psnr": dB, "ssim": ..., "nmse": ..., "data_range": R}`` as Python floats.
    """
    recon_t = torch.as_tensor(recon).to(torch.float64)
    ref_t = torch.as_tensor(ref).to(device=recon_t.device, dtype=torch.float64)
    if ref_t.dim() == 2:
        recon_t, ref_t = recon_t[None], ref_t[None]
    if ref_t.dim() != 3 or recon_t.shape != ref_t.shape:
        raise ValueError(
            f"expected two (D, H, W) volumes, got {tuple(recon_t.shape)} and {tuple(ref_t.shape)}"
        )
    r = float(ref_t.max()) if data_range is None else float(data_range)
    if not math.isfinite(r) or r <= 0:
        raise ValueError(f"data range must be positive and finite, got {r}")
    with torch.no_grad():
        return {
            "psnr": float(psnr(recon_t[None], ref_t[None], data_range=r)),
            "ssim": float(ssim(recon_t[:, None], ref_t[:, None], data_range=r)),
            "nmse": float(nmse(recon_t[None], ref_t[None])),
            "data_range": r,
        }
