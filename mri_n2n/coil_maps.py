"""Coil-sensitivity estimation from the fully sampled k-space centre (the calibration region).

:func:`espirit_maps` (ESPIRiT, Uecker et al. 2014: calibration matrix, SVD, signal-subspace
kernels to image space, per-pixel eigen-decomposition), :func:`walsh_maps` (adaptive combine,
Walsh et al. 2000, on low-resolution coil images, its eigenproblems on a coarse grid: a fast
fallback) and :func:`estimate_maps`, which finds the calibration region itself
(:func:`find_calibration`). They take and return numpy or torch ``(C, H, W)`` or
``(B, C, H, W)``; estimated maps satisfy ``sum_c |S_c|^2 = 1`` where there is signal and are
zero elsewhere (the conventions of :mod:`mri_n2n.coils`, which re-exports everything here).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from .fft import ifft2c, promote_complex

__all__ = [
    "rss", "find_calibration", "espirit_maps", "walsh_maps", "estimate_maps", "INFERENCE_MAPS",
    "MAPS_MIN_CALIBRATION",
]

PhaseRef = Literal["first", "virtual"]
Array = torch.Tensor | np.ndarray

#: How ``reconstruct`` estimates each slice's coil maps from its fully sampled centre (and how
#: ``--train-maps estimated`` trains with them): the :func:`estimate_maps` method and its
#: keywords. ESPIRiT with 4 x 4 kernels and no support crop was the best estimator on the
#: tuning sources (``data_prep/tune_maps.py``: the
#: shipped multi-coil model's mean PSNR 28.02 dB against Walsh's 26.52 over 33 x 41 to 256 x 256
#: matrices; docs/results.md, "Coil maps"). Its eigenproblems are solved on a 64 x 64 grid and
#: refined at full resolution (``grid=64``; exact up to 64 pixels a side): 0.10 dB below the
#: per-pixel eigenproblems on the tuning sources (on the 256 x 256 photographs only), 8x faster
#: on a 16-coil 320 x 320 slice (0.44 s against 3.7 s on one thread). ``{"method": "walsh"}``
#: is the fast estimator (``--coil-maps walsh``).
INFERENCE_MAPS: dict[str, Any] = {"method": "espirit", "kernel": 4, "crop": 0.0, "grid": 64}
#: Smallest side of the fully sampled centre from which maps are estimated at inference (8x line
#: masks keep 4 % of the lines: 5 at 128 columns).
MAPS_MIN_CALIBRATION = 4


def rss(coil_images: Array, dim: int = -3) -> Array:
    """Root-sum-of-squares ``sqrt(sum_c |x_c|^2)`` over the coil dim ``dim`` (default ``-3`` of
    ``(B, C, H, W)`` / ``(C, H, W)``); numpy in, numpy out; torch in, torch out (differentiable)."""
    if isinstance(coil_images, np.ndarray):
        return np.sqrt((np.abs(coil_images) ** 2).sum(axis=dim))
    return coil_images.abs().pow(2).sum(dim=dim).sqrt()

# --------------------------------------------------------------------------- calibration region


def _sampled(k: torch.Tensor) -> torch.Tensor:
    """Bins ``(H, W)`` measured in at least one coil of every batch item of k-space
    ``(C, H, W)`` / ``(B, C, H, W)``, or kept by every mask of a bool ``(H, W)`` / ``(B, H, W)``."""
    if k.dtype == torch.bool:
        return k.reshape(-1, *k.shape[-2:]).all(dim=0)
    if k.ndim < 3:
        raise ValueError(f"multi-coil k-space must be (C, H, W) or (B, C, H, W), got shape {tuple(k.shape)}")
    return (k != 0).any(dim=-3).reshape(-1, *k.shape[-2:]).all(dim=0)


def _centred(n: int, size: int) -> slice:
    start = n // 2 - size // 2
    return slice(start, start + size)


def find_calibration(kspace_or_mask: Array) -> tuple[int, int]:
    """Size ``(h, w)`` of the largest fully sampled block centred on DC.

    A block of size ``(h, w)`` covers rows ``H // 2 - h // 2 ... + h`` and columns alike (the
    layout of the fully sampled centre of :mod:`mri_n2n.masks` and fastMRI). It is grown greedily,
    a row and a column at a time: for line masks it is ``(H, number of centre lines)``, for 2-D
    masks the fully sampled centre square.

    Args:
        kspace_or_mask: multi-coil k-space ``(C, H, W)`` or ``(B, C, H, W)`` (a bin counts as
            sampled when it is nonzero in some coil of every batch item) or a bool mask
            ``(H, W)`` / ``(B, H, W)`` (kept by every mask); numpy or torch.

    Raises:
        ValueError: a non-bool input with fewer than 3 dims.

    Returns:
        ``(h, w)``; ``(0, 0)`` when DC itself is not sampled.
    """
    s = _sampled(torch.as_tensor(kspace_or_mask)).cpu()
    H, W = s.shape
    if not s[H // 2, W // 2]:
        return 0, 0
    h = w = 1
    grew = True
    while grew:
        grew = False
        if h < H and bool(s[_centred(H, h + 1), _centred(W, w)].all()):
            h, grew = h + 1, True
        if w < W and bool(s[_centred(H, h), _centred(W, w + 1)].all()):
            w, grew = w + 1, True
    return h, w


def _calib_size(calib: int | tuple[int, int], hw: tuple[int, int]) -> tuple[int, int]:
    ch, cw = (calib, calib) if isinstance(calib, int) else tuple(calib)
    ch, cw = min(int(ch), hw[0]), min(int(cw), hw[1])
    if ch < 1 or cw < 1:
        raise ValueError(f"calib must be positive, got {calib}")
    return ch, cw


def _calib_block(k: torch.Tensor, calib: tuple[int, int]) -> torch.Tensor:
    """The centred calibration block ``(C, h, w)`` of ``k`` ``(C, H, W)``; it must be fully sampled."""
    block = k[..., _centred(k.shape[-2], calib[0]), _centred(k.shape[-1], calib[1])]
    missing = int((~_sampled(block)).sum())
    if missing:
        raise ValueError(
            f"the centred {calib[0]}x{calib[1]} calibration block of the k-space is not fully sampled "
            f"({missing} bins are zero in every coil); use a smaller calib or estimate_maps(calib=None)"
        )
    return block


# --------------------------------------------------------------------------- estimation


def _as_work(kspace: Array) -> tuple[torch.Tensor, bool, torch.dtype | np.dtype]:
    """Multi-coil k-space as complex128 torch on its device; whether it came from numpy; its dtype."""
    was_numpy = isinstance(kspace, np.ndarray)
    k = torch.from_numpy(np.asarray(kspace)) if was_numpy else kspace.detach()
    if k.ndim not in (3, 4):
        raise ValueError(f"k-space must be (C, H, W) or (B, C, H, W), got shape {tuple(k.shape)}")
    out_dtype = kspace.dtype if k.is_complex() else (np.complex128 if was_numpy else torch.complex128)
    return promote_complex(k).to(torch.complex128), was_numpy, out_dtype


def _back(maps: torch.Tensor, was_numpy: bool, dtype: torch.dtype | np.dtype) -> Array:
    if was_numpy:
        return maps.cpu().numpy().astype(dtype)
    return maps.to(dtype)


def _phase_unit(maps: torch.Tensor, block: torch.Tensor, phase_ref: PhaseRef) -> torch.Tensor:
    """Unit complex ``(H, W)`` that :func:`_align_phase` multiplies maps ``(C, H, W)`` by (1 where
    the reference vanishes)."""
    if phase_ref == "first":
        ref = maps[0]
    elif phase_ref == "virtual":
        flat = block.reshape(block.shape[0], -1)
        w = torch.linalg.eigh(flat @ flat.conj().T)[1][:, -1]
        ref = (w.conj()[:, None, None] * maps).sum(0)
    else:
        raise ValueError(f"phase_ref must be 'first' or 'virtual', got {phase_ref!r}")
    mag = ref.abs()
    return torch.where(mag > 0, ref.conj() / torch.where(mag > 0, mag, torch.ones_like(mag)), 1)


def _align_phase(maps: torch.Tensor, block: torch.Tensor, phase_ref: PhaseRef) -> torch.Tensor:
    """Remove the per-pixel phase ambiguity of unit eigenvector maps ``(C, H, W)``.

    ``"first"``: coil 0 gets zero phase (sigpy and BART's ESPIRiT convention). ``"virtual"``:
    the virtual body coil ``w^H S`` has zero phase, ``w`` the first principal component of the
    calibration data across coils (Buehrer et al. 2007).
    """
    return maps * _phase_unit(maps, block, phase_ref)


def _top_eig(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest eigenvalue ``(H, W)`` and its unit eigenvector ``(C, H, W)`` of Hermitian
    matrices ``(H, W, C, C)``."""
    g = 0.5 * (g + g.conj().transpose(-1, -2))
    vals, vecs = torch.linalg.eigh(g)
    return vals[..., -1], vecs[..., -1].permute(2, 0, 1)


def _espirit_kernel(block: torch.Tensor, kernel: int, thresh: float) -> torch.Tensor:
    """ESPIRiT's k-space convolution kernel ``h`` ``(C, C, 2 kh - 1, 2 kw - 1)`` of a calibration
    block ``(C, h, w)``."""
    C, ch, cw = block.shape
    kh, kw = min(kernel, ch), min(kernel, cw)
    if kh < 2 or kw < 2:
        raise ValueError(f"ESPIRiT needs a calibration region of at least 2x2, got {ch}x{cw}")
    # Calibration matrix: one row per kh x kw patch position, all coils stacked.
    patches = block.unfold(1, kh, 1).unfold(2, kw, 1)  # (C, nh, nw, kh, kw)
    x = patches.permute(1, 2, 0, 3, 4).reshape(-1, C * kh * kw)
    gram = x.T @ x.conj()  # sum over patches of x x^H; eigenvalues = squared singular values
    vals, vecs = torch.linalg.eigh(gram)
    keep = vals.clamp_min(0).sqrt() > thresh * vals.clamp_min(0).max().sqrt()
    basis = vecs[:, keep]  # orthonormal basis of the signal subspace of patches
    proj = (basis @ basis.conj().T).reshape(C, kh, kw, C, kh, kw)
    # Every patch equals its projection; averaging that identity over the patch positions of a
    # target bin makes it a k-space convolution y_c = sum_c' h_cc' * y_c' whose kernel
    # h_cc'(d) sums proj[c, a, c', a'] over a - a' = d (the caller divides by the kh kw positions).
    h = torch.zeros(C, C, 2 * kh - 1, 2 * kw - 1, dtype=block.dtype, device=block.device)
    for a in range(kh):
        for b in range(kw):
            rows, cols = slice(kh - 1 - a, 2 * kh - 1 - a), slice(kw - 1 - b, 2 * kw - 1 - b)
            h[:, :, rows, cols] += proj[..., a, b].permute(0, 3, 1, 2)
    return h


def _espirit_one(
    k: torch.Tensor, calib: tuple[int, int], kernel: int, thresh: float, crop: float, phase_ref: PhaseRef,
    grid: int | None = None, power_iters: int = 3,
) -> torch.Tensor:
    C, H, W = k.shape
    block = _calib_block(k, calib)
    h = _espirit_kernel(block, kernel, thresh)
    dh, dw = h.shape[-2:]
    positions = ((dh + 1) // 2) * ((dw + 1) // 2)  # kh kw: the patch positions averaged over
    if grid is None:
        big = torch.zeros(C, C, H, W, dtype=k.dtype, device=k.device)
        big[:, :, _centred(H, dh), _centred(W, dw)] = h
        # Convolution in k-space = per-pixel C x C matrix in image space (orthonormal FFT: sqrt(HW)).
        g = ifft2c(big) * (math.sqrt(H * W) / positions)
        lam, vec = _top_eig(g.permute(2, 3, 0, 1))
        return _align_phase(vec, block, phase_ref) * (lam > crop)
    # The per-pixel matrices are a trigonometric polynomial of degree kernel - 1. Their top
    # eigenvectors are found on a coarse centred grid (exact samples), aligned to the smooth
    # virtual body coil, interpolated linearly to full resolution, and refined there by power
    # iterations with the exact full-resolution matrices (built a block of rows at a time).
    gh, gw = min(H, grid), min(W, grid)

    def dft(n: int, d: int) -> torch.Tensor:  # (n, d): frequencies -(d // 2).. at n centred pixels
        f = torch.arange(d, dtype=torch.float64) - d // 2
        q = (torch.arange(n, dtype=torch.float64) - n // 2) / n
        return torch.polar(torch.ones(n, d, dtype=torch.float64), 2 * math.pi * q[:, None] * f[None]).to(k)

    h = h / positions
    g = dft(gh, dh) @ h @ dft(gw, dw).T  # (C, C, gh, gw)
    _, vec = _top_eig(g.permute(2, 3, 0, 1))
    vec = _align_phase(vec, block, "virtual")
    # full resolution in single precision (the maps are returned in the input's precision anyway)
    work = torch.complex64
    v = _lerp(_lerp(vec, W, -1), H, -2).permute(1, 2, 0).unsqueeze(-1).to(work)  # (H, W, C, 1)
    eh = dft(H, dh).to(work)
    hw = h.to(work) @ dft(W, dw).to(work).T  # (C, C, dh, W)
    lam = torch.empty(H, W, dtype=torch.float32, device=k.device)
    rows = max(1, 2**20 // (C * C * W))  # rows per block of full-resolution matrices
    for r in range(0, H, rows):
        block_g = (eh[r : r + rows] @ hw).permute(2, 3, 0, 1)  # (rows, W, C, C)
        x = v[r : r + rows]
        for _ in range(power_iters):
            x = block_g @ x
            x = x / x.abs().square().sum(-2, keepdim=True).sqrt().clamp_min(1e-30)
        v[r : r + rows] = x
        lam[r : r + rows] = (x.conj().transpose(-1, -2) @ block_g @ x)[..., 0, 0].real
    maps = v[..., 0].permute(2, 0, 1).to(k.dtype)
    return _align_phase(maps, block, phase_ref) * (lam > crop)


def _per_item(kspace: Array, fn) -> Array:
    k, was_numpy, dtype = _as_work(kspace)
    maps = torch.stack([fn(item) for item in k]) if k.ndim == 4 else fn(k)
    return _back(maps, was_numpy, dtype)


def espirit_maps(
    kspace: Array,
    calib: int | tuple[int, int] = 24,
    kernel: int = 6,
    thresh: float = 0.02,
    crop: float = 0.95,
    *,
    phase_ref: PhaseRef = "first",
    grid: int | None = None,
    power_iters: int = 3,
) -> Array:
    """ESPIRiT coil sensitivities from the fully sampled centre of multi-coil k-space.

    Builds the calibration matrix of all ``kernel x kernel`` multi-coil patches of the centred
    ``calib`` block, keeps the right singular vectors with singular value above ``thresh``
    times the largest (the signal subspace), turns the resulting k-space convolution into a
    ``C x C`` matrix per pixel, and takes its top eigenvector where its eigenvalue exceeds
    ``crop`` (zero elsewhere). Computed in complex128 on the input's device.

    Args:
        kspace: complex multi-coil k-space ``(C, H, W)`` or ``(B, C, H, W)``, numpy or torch;
            only the calibration block is used.
        calib: size of the centred calibration block, ``n`` or ``(h, w)`` (clipped to the image).
        kernel: patch size (clipped to the block).
        thresh: relative singular-value threshold of the signal subspace.
        crop: eigenvalue threshold of the support (ESPIRiT's ``c``).
        phase_ref: ``"first"`` (coil 0 has zero phase; sigpy/BART) or ``"virtual"`` (the virtual
            body coil, the calibration data's principal coil combination, has zero phase).
        grid: ``None`` (default): every pixel's own ``C x C`` eigenproblem. A number: the
            per-pixel matrices (a trigonometric polynomial of degree ``kernel - 1``) are
            evaluated exactly on a coarse ``min(grid, H) x min(grid, W)`` grid, their top
            eigenvectors (aligned to the virtual body coil) interpolated linearly to full
            resolution and refined there by ``power_iters`` power iterations with the exact
            matrices: ``(H W) / grid^2`` times fewer eigenproblems.
        power_iters: power iterations at full resolution after the coarse grid (with ``grid``).

    Returns:
        Maps of the input's shape, kind (numpy/torch), device and complex dtype, with
        ``sum_c |S_c|^2 = 1`` on the support and 0 outside it.

    Raises:
        ValueError: bad shapes, or the calibration block is not fully sampled.
    """
    k = kspace if isinstance(kspace, np.ndarray | torch.Tensor) else np.asarray(kspace)
    cal = _calib_size(calib, tuple(k.shape[-2:]))
    if grid is not None and grid < 1:
        raise ValueError(f"grid must be a positive number of pixels or None, got {grid}")
    return _per_item(k, lambda x: _espirit_one(x, cal, kernel, thresh, crop, phase_ref, grid, power_iters))


def _walsh_one(
    k: torch.Tensor, calib: tuple[int, int], window: int, thresh: float, phase_ref: PhaseRef
) -> torch.Tensor:
    C, H, W = k.shape
    block = _calib_block(k, calib)
    # Low-resolution coil images: the calibration block, Hann-tapered against ringing, zero-padded.
    taper = torch.outer(
        torch.hann_window(calib[0] + 2, periodic=False, dtype=torch.float64)[1:-1],
        torch.hann_window(calib[1] + 2, periodic=False, dtype=torch.float64)[1:-1],
    ).to(k.device)
    low = torch.zeros_like(k)
    low[:, _centred(H, calib[0]), _centred(W, calib[1])] = block * taper
    img = ifft2c(low)  # (C, H, W): estimation of the maps, below the operator that uses them
    # Local coil covariance, box-smoothed over window x window pixels.
    cov = (img[:, None] * img[None].conj()).reshape(C * C, H, W)
    pad = window // 2
    parts = torch.stack([cov.real, cov.imag])  # (2, C*C, H, W)
    smooth = F.avg_pool2d(parts, window, stride=1, padding=pad, count_include_pad=False)[..., :H, :W]
    cov = torch.complex(smooth[0], smooth[1]).reshape(C, C, H, W).permute(2, 3, 0, 1)
    _, vec = _top_eig(cov)
    energy = rss(img, dim=0)
    maps = _align_phase(vec, block, phase_ref)
    return maps * (energy > thresh * energy.max())


def _box_response(n: int, g: int, window: int) -> torch.Tensor:
    """Frequency response ``(g,)`` at the centred frequencies ``-g // 2 ... g - g // 2 - 1`` (cycles
    per field of view) of a circular ``window``-pixel moving average on an ``n``-pixel grid."""
    f = torch.arange(g, dtype=torch.float64) - g // 2
    den = window * torch.sin(math.pi * f / n)
    return torch.where(f == 0, 1.0, torch.sin(math.pi * f * window / n) / torch.where(f == 0, 1.0, den))


def _lerp(x: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """Periodic linear interpolation of ``x``, sampled on a centred ``g``-point grid along ``dim``,
    onto the centred ``n``-point grid of the same field of view (pixel ``i`` sits at
    ``(i - n // 2) / n`` of it, as for :func:`mri_n2n.fft.ifft2c` images)."""
    g = x.shape[dim]
    u = (torch.arange(n, dtype=torch.float64) - n // 2) * (g / n) + g // 2
    i0 = torch.floor(u)
    shape = [1] * x.ndim
    shape[dim] = n
    w = (u - i0).to(x.dtype).reshape(shape).to(x.device)
    i0 = i0.long() % g
    i0, i1 = i0.to(x.device), ((i0 + 1) % g).to(x.device)
    return torch.lerp(x.index_select(dim, i0), x.index_select(dim, i1), w)


def _dft_eval(n_freq: int, g: int, device: torch.device) -> torch.Tensor:
    """``(g, n_freq)`` matrix evaluating an ``n_freq``-point spectrum in :func:`torch.fft.fft`'s
    order (the inverse DFT, up to scale) at the centred ``g`` pixel positions ``(j - g // 2) / g``
    of the field of view: exact samples of the band-limited image on the coarser grid."""
    f = torch.fft.fftfreq(n_freq, 1 / n_freq, dtype=torch.float64)
    q = (torch.arange(g, dtype=torch.float64) - g // 2) / g
    angle = 2 * math.pi * q[:, None] * f[None]
    return torch.polar(torch.ones_like(angle), angle).to(device)


def _walsh_lowres(
    k: torch.Tensor,
    calib: tuple[int, int],
    window: int,
    thresh: float,
    phase_ref: PhaseRef,
    grid: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Walsh maps ``(B, C, H, W)`` of ``dtype`` for a batch ``(B, C, H, W)``, with the
    eigenproblems on a coarse ``min(grid, H) x min(grid, W)`` grid.

    The low-resolution coil images have bandwidth ``calib``, so their covariance has bandwidth
    ``2 calib - 1``: its spectrum is computed exactly on a ``2 calib`` grid, multiplied by the
    frequency response of the full-resolution box smoothing (circular; the full-resolution path
    excludes the zero padding at the border) and evaluated exactly at the coarse grid's pixels.
    The top eigenvectors there, phase-aligned to the virtual body coil (smooth), are interpolated
    linearly to full resolution, renormalised and aligned to ``phase_ref``; the support is the
    full-resolution RSS of the low-resolution coil images (upsampled exactly by zero-padding).
    """
    B, C, H, W = k.shape
    block = promote_complex(_calib_block(k, calib)).to(torch.complex128)  # (B, C, ch, cw)
    fh, fw = min(H, 2 * calib[0]), min(W, 2 * calib[1])  # covariance spectrum grid
    gh, gw = min(H, grid), min(W, grid)  # eigenproblem grid
    taper = torch.outer(
        torch.hann_window(calib[0] + 2, periodic=False, dtype=torch.float64)[1:-1],
        torch.hann_window(calib[1] + 2, periodic=False, dtype=torch.float64)[1:-1],
    ).to(k.device)
    low = torch.zeros(B, C, fh, fw, dtype=block.dtype, device=k.device)
    low[..., _centred(fh, calib[0]), _centred(fw, calib[1])] = block * taper
    # uncentred FFTs (pixel j at j / f of the field of view, periodic): no shifts of the big arrays
    img = torch.fft.ifft2(torch.fft.ifftshift(low, dim=(-2, -1)))  # exact samples of the low-pass images
    resp = _box_response(H, fh, window)[:, None] * _box_response(W, fw, window)[None]
    resp = torch.fft.ifftshift(resp, dim=(-2, -1)).to(k.device)
    lo, hi = torch.tril_indices(C, C)  # eigh reads the lower triangle of the Hermitian covariance
    spec = torch.fft.fft2(img[:, lo] * img[:, hi].conj()) * resp  # (B, C (C + 1) / 2, fh, fw)
    eh, ew = _dft_eval(fh, gh, k.device).to(dtype), _dft_eval(fw, gw, k.device).to(dtype)
    cov = torch.zeros(B, gh, gw, C, C, dtype=dtype, device=k.device)
    cov[..., lo, hi] = (eh @ spec.to(dtype) @ ew.T).permute(0, 2, 3, 1)
    vec = torch.linalg.eigh(cov)[1][..., -1].permute(0, 3, 1, 2)  # (B, C, gh, gw), unit
    vec = torch.stack([_align_phase(v, b.to(dtype), "virtual") for v, b in zip(vec, block)])
    maps = _lerp(_lerp(vec, W, -1), H, -2)
    # one pass over the maps: renormalise, align the phase to phase_ref, zero outside the support
    norm = torch.view_as_real(maps).square().sum(-1).sum(-3).sqrt().clamp_min(1e-30)
    unit = torch.stack([_phase_unit(m, b.to(dtype), phase_ref) for m, b in zip(maps, block)])  # of m / norm
    # RSS^2 of the low-resolution images has bandwidth 2 calib - 1: zero-padding is exact
    e2 = torch.fft.fftshift(torch.fft.fft2(img.abs().square().sum(1)), dim=(-2, -1))
    big = torch.zeros(B, H, W, dtype=e2.dtype, device=e2.device)
    big[:, _centred(H, fh), _centred(W, fw)] = e2
    energy = ifft2c(big).real.clamp_min(0).sqrt()
    keep = energy > thresh * energy.amax(dim=(-2, -1), keepdim=True)
    return maps * (unit * keep / norm).unsqueeze(1)


def walsh_maps(
    kspace: Array,
    calib: int | tuple[int, int] = 24,
    window: int = 5,
    thresh: float = 0.05,
    *,
    phase_ref: PhaseRef = "first",
    grid: int | None = 48,
) -> Array:
    """Adaptive-combine (Walsh) coil sensitivities from low-resolution coil images: the fast fallback.

    The centred ``calib`` block (Hann-tapered, zero-padded) gives smooth coil images; each pixel's
    map is the top eigenvector of their coil covariance averaged over a ``window x window``
    neighbourhood. Pixels whose low-resolution RSS is below ``thresh`` times its maximum are
    set to 0. Less accurate than ESPIRiT at object edges, but needs only FFTs and ``C x C``
    eigen-decompositions.

    With ``grid`` (default) the covariance and its eigenvectors are computed on a coarse grid of
    ``min(grid, H) x min(grid, W)`` points (the covariance of the low-resolution images is band
    limited, so it is evaluated there exactly) and the maps are interpolated linearly: about
    ``(H W) / grid^2`` times fewer eigenproblems (25x at 320 x 320), within a fraction of a
    percent of the full-resolution maps on the support (tests/test_multicoil.py). The batch's
    eigenproblems are solved together. ``grid=None``: every pixel's own eigenproblem, one item
    at a time.

    Args:
        kspace: complex multi-coil k-space ``(C, H, W)`` or ``(B, C, H, W)``, numpy or torch.
        calib: size of the centred calibration block, ``n`` or ``(h, w)`` (clipped to the image).
        window: odd smoothing window of the covariance, in pixels.
        thresh: relative RSS threshold of the support.
        phase_ref: ``"first"`` or ``"virtual"``, as in :func:`espirit_maps`.
        grid: smallest side of the coarse grid of the eigenproblems, or ``None`` for full
            resolution.

    Returns:
        Maps like :func:`espirit_maps`: same shape/kind/dtype, ``sum_c |S_c|^2 = 1`` on the support.

    Raises:
        ValueError: bad shapes, an even ``window``, a ``grid < 1``, or the calibration block is
            not fully sampled.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    if grid is not None and grid < 1:
        raise ValueError(f"grid must be a positive number of pixels or None, got {grid}")
    k = kspace if isinstance(kspace, np.ndarray | torch.Tensor) else np.asarray(kspace)
    cal = _calib_size(calib, tuple(k.shape[-2:]))
    if grid is None:
        return _per_item(k, lambda x: _walsh_one(x, cal, window, thresh, phase_ref))
    was_numpy = isinstance(k, np.ndarray)
    work = torch.from_numpy(k) if was_numpy else k.detach()
    if work.ndim not in (3, 4):
        raise ValueError(f"k-space must be (C, H, W) or (B, C, H, W), got shape {tuple(work.shape)}")
    out = work.dtype if work.is_complex() else torch.complex128  # as _as_work
    dtype = torch.complex64 if out == torch.complex64 else torch.complex128
    maps = _walsh_lowres(work if work.ndim == 4 else work[None], cal, window, thresh, phase_ref, grid, dtype)
    maps = (maps if work.ndim == 4 else maps[0]).to(out)
    return maps.cpu().numpy() if was_numpy else maps


def estimate_maps(
    kspace: Array,
    method: Literal["espirit", "walsh"] = "espirit",
    calib: int | tuple[int, int] | None = None,
    *,
    max_calib: int | None = 48,
    min_calib: int = 8,
    **kwargs,
) -> Array:
    """Coil sensitivities from multi-coil k-space, finding the calibration region if needed.

    Args:
        kspace: complex multi-coil k-space ``(C, H, W)`` or ``(B, C, H, W)`` (numpy or torch),
            zero where not sampled.
        method: ``"espirit"`` (:func:`espirit_maps`) or ``"walsh"`` (:func:`walsh_maps`).
        calib: calibration block size; ``None`` detects the largest fully sampled centred block
            (:func:`find_calibration`, over all batch items) and crops each side to ``max_calib``
            (``None``: no cap), which bounds the cost for fully sampled data.
        min_calib: smallest usable side of a detected block.
        **kwargs: passed to the method (``kernel``, ``thresh``, ``crop``, ``window``, ``grid``,
            ``phase_ref``).

    Returns:
        Maps of the input's shape, kind and dtype, ``sum_c |S_c|^2 = 1`` on the support.

    Raises:
        ValueError: an unknown method, or no usable calibration region (one line, with the size
            found).
    """
    fns = {"espirit": espirit_maps, "walsh": walsh_maps}
    if method not in fns:
        raise ValueError(f"method must be one of {sorted(fns)}, got {method!r}")
    if calib is None:
        h, w = find_calibration(kspace)
        if min(h, w) < min_calib:
            raise ValueError(
                f"no usable calibration region: the largest fully sampled block at the k-space centre "
                f"is {h}x{w}, at least {min_calib}x{min_calib} is needed to estimate coil maps "
                f"(acquire a fully sampled centre, or pass precomputed maps)"
            )
        if max_calib is not None:
            h, w = min(h, max_calib), min(w, max_calib)
        calib = (h, w)
    return fns[method](kspace, calib, **kwargs)
