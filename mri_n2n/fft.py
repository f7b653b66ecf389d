"""Centred, orthonormal 2-D Fourier transforms.

Both functions act on the last two dimensions and accept any number of leading
dimensions. The DC component sits at index ``(H // 2, W // 2)`` of the spectrum,
which is the convention of fastMRI and of most MRI software, for odd and even sizes
alike. With ``norm="ortho"`` the transforms are unitary, so Parseval holds:
``||fft2c(x)|| == ||x||``.

Models see complex images as two real channels (real, imaginary) along dim 1:
:func:`to_complex` and :func:`to_channels` convert between the two layouts (the one pair of
conversions of the package). :func:`promote_complex` makes a complex tensor of any tensor, in
the dtype and on the device of another (what the operators apply to images, maps and data).
"""

from __future__ import annotations

import torch

__all__ = ["fft2c", "ifft2c", "fftc", "ifftc", "to_complex", "to_channels", "promote_complex"]

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


def fftc(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Centred orthonormal 1-D FFT along ``dim`` (DC at index ``n // 2``, as :func:`fft2c`)."""
    x = torch.fft.ifftshift(_as_complex(x), dim=dim)
    return torch.fft.fftshift(torch.fft.fft(x, dim=dim, norm="ortho"), dim=dim)


def ifftc(k: torch.Tensor, dim: int) -> torch.Tensor:
    """Centred orthonormal inverse 1-D FFT along ``dim`` (inverse of :func:`fftc`)."""
    k = torch.fft.ifftshift(_as_complex(k), dim=dim)
    return torch.fft.fftshift(torch.fft.ifft(k, dim=dim, norm="ortho"), dim=dim)


def to_complex(x: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
    """Real/imaginary channels -> complex: ``(B, 2, ...)`` -> ``x[:, 0] + i x[:, 1]``, ``(B, ...)``.

    A one-channel (real) ``(B, 1, ...)`` tensor becomes complex with a zero imaginary part. The
    complex dtype is that of ``x``'s floating dtype (float32 -> complex64); cast ``x`` first
    (e.g. ``x.float()``) for another.

    Args:
        x: real tensor ``(B, 2, ...)`` or ``(B, 1, ...)``, channels along dim 1.
        keepdim: keep a singleton channel dim: ``(B, 1, ...)`` complex.

    Raises:
        ValueError: ``x`` has neither 1 nor 2 channels.
    """
    if x.ndim < 2 or x.shape[1] not in (1, 2):
        shape = tuple(x.shape)
        raise ValueError(f"complex data need 2 channels (real, imaginary) or 1 (real), got shape {shape}")
    re, im = (x[:, 0:1], x[:, 1:]) if keepdim else (x[:, 0], x[:, -1])
    return torch.complex(re, im if x.shape[1] == 2 else torch.zeros_like(re))


def to_channels(z: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
    """Complex -> real/imaginary channels: ``(B, ...)`` -> ``(B, 2, ...)`` (inverse of :func:`to_complex`).

    Args:
        z: complex tensor ``(B, ...)``; with ``keepdim`` ``(B, 1, ...)`` (its singleton channel
            dim becomes the two channels).

    Returns:
        A new contiguous real tensor ``(B, 2, ...)`` of ``z``'s real dtype.
    """
    if keepdim:
        return torch.cat([z.real, z.imag], dim=1)
    return torch.stack([z.real, z.imag], dim=1)


def promote_complex(x: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` as a complex tensor, promoted with ``like``'s dtype and moved to its device.

    A real ``x`` gets a zero imaginary part (integer and half-precision tensors become the
    default float dtype first); with ``like``, the result has the promoted dtype of the two
    (complex64 with a complex128 ``like`` becomes complex128) on ``like``'s device.
    """
    if not x.is_complex():
        if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16):
            x = x.to(torch.get_default_dtype())
        x = torch.complex(x, torch.zeros_like(x))
    if like is not None:
        dtype = torch.promote_types(x.dtype, like.dtype)
        x = x.to(device=like.device, dtype=dtype)
    return x
