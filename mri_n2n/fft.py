"""Centred, orthonormal 2-D Fourier transforms.

Both functions act on the last two dimensions and accept any number of leading
dimensions. The DC component sits at index ``(H // 2, W // 2)`` of the spectrum,
which is the convention of fastMRI and of most MRI software, for odd and even sizes
alike. With ``norm="ortho"`` the transforms are unitary, so Parseval holds:
``||fft2c(x)|| == ||x||``.
"""

from __future__ import annotations

import torch

__all__ = ["fft2c", "ifft2c"]

_DIMS = (-2, -1)


def _as_complex(x: torch.Tensor) -> torch.Tensor:
    if x.is_complex():
        return x
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return torch.complex(x, torch.zeros_like(x))


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT over the last two dims.

    Args:
        x: image tensor ``(..., H, W)``, complex or real (real is promoted to complex).

    Returns:
        Complex k-space ``(..., H, W)`` with DC at ``(H // 2, W // 2)``.
    """
    x = _as_complex(x)
    x = torch.fft.ifftshift(x, dim=_DIMS)
    k = torch.fft.fft2(x, dim=_DIMS, norm="ortho")
    return torch.fft.fftshift(k, dim=_DIMS)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal inverse 2-D FFT over the last two dims (inverse of :func:`fft2c`).

    Args:
        k: k-space tensor ``(..., H, W)`` with DC at ``(H // 2, W // 2)``; real is promoted.

    Returns:
        Complex image ``(..., H, W)``.
    """
    k = _as_complex(k)
    k = torch.fft.ifftshift(k, dim=_DIMS)
    x = torch.fft.ifft2(k, dim=_DIMS, norm="ortho")
    return torch.fft.fftshift(x, dim=_DIMS)
