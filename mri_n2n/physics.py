"""The spectral sampling operator of the MRI experiment.

``A = M F``: the centred orthonormal 2-D FFT ``F`` followed by a 0/1 mask ``M``. Because
``F`` is unitary and ``M`` is a real projection, the adjoint is ``A* = F^-1 M`` and
``A A* = M``. The *data-consistency projection* of an image ``x`` onto the measurements
``y = A x_true`` replaces the sampled frequencies of ``x`` by ``y``::

    project(x, y) = F^-1 ((1 - M) F x + M y)

It is exact on the sampled frequencies, leaves the unsampled ones untouched and is
idempotent. The paper puts it inside the network graph, in training and at test time.

Shapes: images ``(..., H, W)`` real or complex (models use ``(B, C, H, W)``); masks ``(H, W)``,
``(B, H, W)`` or anything that broadcasts against the images after a channel dim is
inserted (a ``(B, H, W)`` mask applies to every channel of a ``(B, C, H, W)`` batch).
"""

from __future__ import annotations

import torch

from .fft import fft2c, ifft2c

__all__ = ["SpectralSampling"]


class SpectralSampling:
    """Masked centred k-space sampling for one batch of masks.

    Args:
        mask: bool or 0/1 float mask ``(H, W)`` or ``(B, H, W)`` (or already ``(B, 1, H, W)``).

    All methods are differentiable, batched and run on the mask's device (CPU or CUDA).
    """

    def __init__(self, mask: torch.Tensor) -> None:
        if mask.ndim < 2:
            raise ValueError(f"mask must have at least 2 dims (H, W), got shape {tuple(mask.shape)}")
        self.mask = mask.bool()

    @staticmethod
    def _per_channel(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """A per-sample ``(B, H, W)`` map as ``(B, 1, H, W)`` for ``(B, C, H, W)`` data."""
        return t.unsqueeze(-3) if like.ndim == t.ndim + 1 and t.ndim >= 3 else t

    def _m(self, like: torch.Tensor) -> torch.Tensor:
        return self._per_channel(self.mask, like)

    def sample(self, k: torch.Tensor) -> torch.Tensor:
        """``M k``: centred k-space ``(..., H, W)`` (complex) with its unsampled bins zeroed, e.g.
        the measurements of a spectrum that is already in k-space (:meth:`forward` is
        ``sample(F x)``). A ``(B, H, W)`` mask applies to every channel of ``(B, C, H, W)`` data."""
        return k * self._m(k).to(k.real.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``(..., H, W)`` (real or complex) -> masked centred k-space (complex)."""
        return self.sample(fft2c(x))

    __call__ = forward

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """k-space -> image: ``F^-1 M y`` (complex). For a Hermitian mask and Hermitian data it is real."""
        return ifft2c(self.sample(y))

    def zero_filled(self, y: torch.Tensor, density: torch.Tensor | None = None) -> torch.Tensor:
        """Zero-filled reconstruction ``F^-1 (M y / p)`` (complex).

        With ``density`` (the sampling density ``p``, broadcastable to ``y``, or per sample
        ``(B, H, W)`` for ``(B, C, H, W)`` data, like the mask) every sampled value
        is divided by its keep probability: the paper's "Russian roulette" compensation, which
        makes the reconstruction an unbiased estimate of the image over random masks.
        Without it this equals :meth:`adjoint`.
        """
        m = self._m(y).to(y.real.dtype)
        if density is not None:
            p = self._per_channel(density.to(device=y.device, dtype=y.real.dtype), y)
            m = m / p.clamp_min(torch.finfo(p.dtype).tiny)
        return ifft2c(y * m)

    def project(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Data consistency: replace the sampled frequencies of ``x`` by the measured ``y``.

        Args:
            x: image estimate ``(..., H, W)`` (e.g. the network output), real or complex.
            y: measured masked k-space (unscaled: ``forward(x_true)``), complex.

        Returns:
            The projected image; real (the real part) when ``x`` is real, complex otherwise.
            For a Hermitian mask and a real ``x_true`` the discarded imaginary part is
            round-off only.
        """
        k = fft2c(x)
        m = self._m(k)
        k = torch.where(m, y.to(k.dtype), k)
        out = ifft2c(k)
        return out if x.is_complex() else out.real
