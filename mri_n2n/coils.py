"""Multi-coil (parallel imaging) physics and coil-sensitivity estimation.

**Model.** A receive array of ``C`` coils sees the image ``x`` weighted by each coil's
sensitivity ``S_c``; each coil's k-space is sampled on the same mask ``M``::

    y_c = M F (S_c x),        A = M F S,        A^H y = sum_c conj(S_c) F^-1 (M y_c)

with ``F`` the centred orthonormal FFT of :mod:`mri_n2n.fft`. :class:`SenseOperator` implements
``A``, its adjoint, the normal operator, coil combination, zero-filling, two kinds of data
consistency for a network output (per-coil replacement, :meth:`SenseOperator.project`, and the
exact proximal/CG-SENSE step, :meth:`SenseOperator.cg_dc`) and fastMRI's output image, the
root-sum-of-squares of the per-coil data-consistent coil images (:meth:`SenseOperator.coil_rss`).

**Conventions.** Images ``(B, H, W)`` complex; multi-coil k-space and coil images
``(B, C, H, W)`` complex; maps ``(C, H, W)`` (shared by the batch) or ``(B, C, H, W)``; masks
``(H, W)`` or ``(B, H, W)`` (bool or 0/1), shared by all coils, phase-encode lines along the last
dim as in :mod:`mri_n2n.masks`. Estimated maps are normalised so that ``sum_c |S_c|^2 = 1`` where
there is signal and are zero elsewhere; then ``S^H S = 1`` on the support, the SENSE-1
combination ``sum_c conj(S_c) x_c`` is the least-squares coil combination, and a full mask gives
``A^H A x = x`` on the support.

**Estimation** from the fully sampled k-space centre (the calibration region, "ACS"):
:func:`espirit_maps` (ESPIRiT, Uecker et al. 2014: calibration matrix, SVD, signal-subspace
kernels to image space, per-pixel eigen-decomposition), :func:`walsh_maps` (adaptive combine,
Walsh et al. 2000, on low-resolution coil images, its eigenproblems on a coarse grid: a fast
fallback) and :func:`estimate_maps`, which finds the calibration region itself
(:func:`find_calibration`). They take and return numpy or torch ``(C, H, W)`` or ``(B, C, H, W)``.
:func:`birdcage_maps` makes analytic sensitivities for tests and synthetic data.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from .coil_maps import (  # noqa: F401  (re-exported: the estimation API lives in coil_maps)
    espirit_maps,
    estimate_maps,
    find_calibration,
    rss,
    walsh_maps,
)
from .fft import promote_complex
from .physics import CG_CHUNK_ELEMENTS, Acquisition, CartesianAcquisition  # noqa: F401  (re-exported)

__all__ = [
    "SenseOperator",
    "rss",
    "normalize_maps",
    "birdcage_maps",
    "find_calibration",
    "espirit_maps",
    "walsh_maps",
    "estimate_maps",
    "compress_coils",
]

Array = torch.Tensor | np.ndarray


class SenseOperator(CartesianAcquisition):
    """The historical name of the multi-coil Cartesian acquisition ``A = M F S`` (SENSE), with its
    historical argument order ``SenseOperator(maps, mask)``. Deprecated: every operator is built
    as ``Acquisition(mask, maps, y, keep_prob=...)`` (one argument order, :mod:`mri_n2n.physics`);
    this constructor warns and builds the same operator.

    Args:
        maps: complex coil sensitivities ``(C, H, W)`` (shared by the batch) or ``(B, C, H, W)``.
            The identities that say "normalised maps" need ``sum_c |S_c|^2 = 1`` on the support
            (what the estimators return; see :func:`normalize_maps`).
        mask: bool or 0/1 mask ``(H, W)`` or ``(B, H, W)``, shared by all coils.
        y: the measured coil k-space ``(B, C, H, W)``, if any.
        keep_prob: the law's keep probability of every bin, if any.

    Raises:
        ValueError: maps not 3-D/4-D, mask not 2-D/3-D, or their ``(H, W)`` differ.
    """

    def __init__(
        self,
        maps: torch.Tensor,
        mask: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        keep_prob: torch.Tensor | None = None,
    ) -> None:
        warnings.warn(
            "SenseOperator(maps, mask, ...) is deprecated: build Acquisition(mask, maps, ...) "
            "(mri_n2n.physics; the same operator, one argument order)",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(mask, maps, y, keep_prob=keep_prob)


def normalize_maps(maps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale maps ``(..., C, H, W)`` so that ``sum_c |S_c|^2 = 1`` at every pixel whose RSS exceeds
    ``eps`` times the largest; the other pixels are set to zero."""
    norm = rss(maps, dim=-3).unsqueeze(-3)
    ok = norm > eps * norm.amax(dim=(-2, -1), keepdim=True)
    return torch.where(ok, maps / torch.where(ok, norm, torch.ones_like(norm)), torch.zeros_like(maps))


def birdcage_maps(
    shape: tuple[int, int],
    n_coils: int = 8,
    r: float = 1.5,
    *,
    normalize: bool = True,
    dtype: torch.dtype = torch.complex64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Analytic sensitivities ``(C, H, W)`` of ``C`` loop coils evenly spaced on a ring.

    Coil ``c`` sits at angle ``2 pi c / C`` on a circle of radius ``r`` in units of the half
    field of view (the image spans ``[-1, 1)`` in both axes, so ``r > 1`` puts the coils outside
    it). Its sensitivity at distance ``d`` is ``exp(i (phi - 2 pi c / C)) / d`` with ``phi`` the
    direction from the coil to the pixel, so all coils share one phase at the centre. With
    ``normalize`` (default) the maps satisfy ``sum_c |S_c|^2 = 1`` everywhere.

    Raises:
        ValueError: ``n_coils < 1`` or ``r <= 0``.
    """
    if n_coils < 1 or r <= 0:
        raise ValueError(f"need n_coils >= 1 and r > 0, got n_coils={n_coils}, r={r}")
    h, w = shape
    f64 = torch.float64
    v = (torch.arange(h, dtype=f64, device=device) - h / 2) / (h / 2)
    u = (torch.arange(w, dtype=f64, device=device) - w / 2) / (w / 2)
    theta = 2 * math.pi * torch.arange(n_coils, dtype=f64, device=device) / n_coils
    dx = u[None, None, :] - r * torch.cos(theta)[:, None, None]
    dy = v[None, :, None] - r * torch.sin(theta)[:, None, None]
    dist = torch.sqrt(dx**2 + dy**2).clamp_min(1e-6)
    phase = torch.atan2(dy, dx) - theta[:, None, None]
    maps = torch.polar(1.0 / dist, phase)
    if normalize:
        maps = maps / rss(maps, dim=0)
    return maps.to(dtype)


def compress_coils(kspace: Array, n_virtual: int) -> Array:
    """SVD coil compression (Huang et al. 2008; BART ``cc -S``): the ``n_virtual`` principal
    combinations of the coils of each item's k-space.

    Each item's coils are rotated by the eigenvectors of their ``C x C`` covariance over all its
    k-space bins, strongest first, and the first ``n_virtual`` kept: a unitary map for
    ``n_virtual = C`` (lossless: the root-sum-of-squares image and any coil combination are
    unchanged), otherwise the least-squares best ``n_virtual`` coils. Zeros (unsampled bins) stay
    zero, so masks are unchanged; maps must be estimated from the compressed data. Costs of
    maps and multi-coil data consistency scale with the number of coils.

    Args:
        kspace: complex multi-coil k-space ``(C, H, W)`` or ``(B, C, H, W)``, numpy or torch.
        n_virtual: number of virtual coils, ``1 <= n_virtual <= C``.

    Returns:
        ``(n_virtual, H, W)`` or ``(B, n_virtual, H, W)`` of the input's kind and dtype; raises
        ``ValueError`` for bad shapes or ``n_virtual`` out of range.
    """
    was_numpy = isinstance(kspace, np.ndarray)
    k = torch.from_numpy(kspace) if was_numpy else kspace.detach()
    if k.ndim not in (3, 4):
        raise ValueError(f"k-space must be (C, H, W) or (B, C, H, W), got shape {tuple(k.shape)}")
    C = k.shape[-3]
    if not 1 <= n_virtual <= C:
        raise ValueError(f"n_virtual must be in 1..{C}, got {n_virtual}")
    batch = promote_complex(k if k.ndim == 4 else k[None])
    flat = batch.reshape(batch.shape[0], C, -1)
    cov = (flat @ flat.conj().transpose(-1, -2)).to(torch.complex128)  # (B, C, C)
    vecs = torch.linalg.eigh(cov)[1].flip(-1)[..., :n_virtual]  # strongest first
    out = (vecs.conj().transpose(-1, -2).to(flat.dtype) @ flat).reshape(-1, n_virtual, *k.shape[-2:])
    out = out if k.ndim == 4 else out[0]
    return out.numpy() if was_numpy else out
