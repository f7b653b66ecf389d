"""Denoising image files with a trained image checkpoint (the library of ``mri-n2n denoise``;
its behaviour is described in ``docs/guide/photographs.md``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..checkpoint import CheckpointError
from ..io import atomic_path
from .datasets import list_images, load_image
from .hdr import HDR_SUFFIXES, read_hdr

__all__ = [
    "checkpoint_channels",
    "collect_images",
    "denoise_tensor",
    "read_observation",
    "write_png",
    "write_npy",
]


def checkpoint_channels(ckpt: dict) -> int:
    """The input channels of an image checkpoint's network (1 grey, 3 colour)."""
    kwargs = ckpt.get("model_spec", {}).get("kwargs", {})
    if "in_channels" in kwargs:
        return int(kwargs["in_channels"])
    for value in ckpt["model"].values():  # the first convolution's weight: (out, in, kh, kw)
        if isinstance(value, torch.Tensor) and value.ndim == 4:
            return int(value.shape[1])
    raise CheckpointError("cannot tell the model's input channels from the checkpoint")


def collect_images(
    args: Sequence[str], suffixes: tuple[str, ...], out: Path
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """``[(input file, its path relative to the folder argument, or its name)]`` and error lines."""
    jobs: list[tuple[Path, Path]] = []
    errors: list[str] = []
    out_resolved = out.resolve()
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            files = [p for p in list_images(path, suffixes) if out_resolved not in p.resolve().parents]
            if not files:
                errors.append(f"{path}: no images found in this folder")
            jobs.extend((p, p.relative_to(path)) for p in files)
        elif path.is_file():
            jobs.append((path, Path(path.name)))
        else:
            errors.append(f"{path}: no such file or folder")
    return jobs, errors


def denoise_tensor(model: torch.nn.Module, corruption, observed: torch.Tensor) -> torch.Tensor:
    """Run the model on one observed image ``(1, C, H, W)``; returns the raw output (not clipped).

    ``corruption`` (an :class:`~mri_n2n.corruptions.ImageCorruption` or ``None``) maps the observation
    to the network input. The model pads to its own multiple and crops back.
    """
    with torch.inference_mode():
        x = corruption.inference_input(observed) if corruption is not None else observed
        return model(x).float()


def read_observation(path: Path, channels: int, hdr: bool) -> torch.Tensor:
    """An image file as a ``(1, channels, H, W)`` float batch in [0, 1] (HDR files: linear values)."""
    if hdr and path.suffix.lower() in HDR_SUFFIXES:
        arr = read_hdr(path)
        if arr.shape[2] != channels:
            if arr.shape[2] == 1:
                arr = np.repeat(arr, channels, axis=2)
            else:
                raise ValueError(f"{path}: {arr.shape[2]} channels, the model takes {channels}")
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]
    img = load_image(path, channels)
    return (img.float() / 255.0 if img.dtype == torch.uint8 else img.float())[None]


def write_png(dest: Path, image: torch.Tensor) -> None:
    """Write a ``(C, H, W)`` image in [0, 1] as an 8-bit PNG, atomically."""
    arr = (image.clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()
    pil = (
        Image.fromarray(arr[0])
        if arr.shape[0] == 1
        else Image.fromarray(np.ascontiguousarray(arr[:3].transpose(1, 2, 0)))
    )
    with atomic_path(dest, suffix=".png") as tmp:
        pil.save(tmp, format="PNG")
        _user_permissions(tmp)


def write_npy(dest: Path, image: torch.Tensor) -> None:
    """Write a ``(C, H, W)`` float image as ``(H, W, C)`` float32 ``.npy``, atomically."""
    with atomic_path(dest, suffix=".npy") as tmp:
        np.save(tmp, image.cpu().numpy().transpose(1, 2, 0).astype(np.float32))
        _user_permissions(tmp)


def _user_permissions(path: Path) -> None:
    """Give a finished temporary file the usual ``0666 & ~umask`` mode (``mkstemp`` makes it 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
