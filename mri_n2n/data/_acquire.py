"""The acquisition operator (:class:`~mri_n2n.physics.Acquisition`) on the data side's arrays:
fully sampled k-space to images and back, and the mask applied to k-space. numpy in, torch or
numpy out; no transform or masking of its own."""

from __future__ import annotations

import numpy as np
import torch

from ..physics import Acquisition, SpectralSampling


def fully_sampled(shape: tuple[int, ...]) -> Acquisition:
    """The single-coil acquisition of a full mask on the last two dims of ``shape``: its
    :meth:`~mri_n2n.physics.Acquisition.full` is ``F x`` and its
    :meth:`~mri_n2n.physics.Acquisition.combine` is ``F^-1 k``, per channel of any leading dims."""
    return Acquisition.fully_sampled(shape)


def image_of(kspace: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``F^-1 k`` of fully sampled (coil) k-space ``(..., ky, kx)``: the complex (coil) images."""
    k = torch.from_numpy(kspace) if isinstance(kspace, np.ndarray) else kspace
    return fully_sampled(k.shape).combine(k)


def kspace_of(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``F x`` of (coil) images ``(..., H, W)``: their fully sampled k-space (complex)."""
    x = torch.from_numpy(image) if isinstance(image, np.ndarray) else image
    return fully_sampled(x.shape).full(x)


def sampled(kspace: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``M k``: ``kspace`` ``(..., ky, kx)`` with the bins off the bool ``mask`` (at least 2-D,
    broadcastable to it) set to 0, complex64."""
    m = torch.tensor(np.asarray(mask, bool))  # a copy: the mask may be a read-only view
    k = torch.from_numpy(np.ascontiguousarray(kspace))
    return SpectralSampling(m).sample(k).numpy().astype(np.complex64, copy=False)
