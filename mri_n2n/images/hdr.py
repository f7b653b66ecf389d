"""HDR helpers for the Monte Carlo rendering experiment: tone mapping and file reading.

Renderings are linear radiance, ``(H, W, 3)`` float, non-negative and unbounded. The network
sees them tone-mapped with the paper's ``(v / (1 + v))^(1 / 2.2)`` (a Reinhard curve followed by
a 2.2 gamma, into [0, 1)) and predicts *linear* values, trained with the relative HDR loss
(:func:`mri_n2n.losses.hdr_loss`).

Files: ``.npy`` (read with ``numpy.load(allow_pickle=False)``) always; OpenEXR ``.exr`` only
when a reader is already installed (the ``OpenEXR`` bindings, or an ``imageio`` EXR plugin);
this package adds no dependency for EXR. Convert EXR to ``.npy`` otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import one_line

__all__ = ["tonemap", "tonemap_np", "read_hdr", "HDR_SUFFIXES"]

#: File suffixes read by :func:`read_hdr`.
HDR_SUFFIXES = (".npy", ".exr")

_GAMMA = 1.0 / 2.2


def tonemap(v: torch.Tensor) -> torch.Tensor:
    """The paper's tone mapping ``(v / (1 + v))^(1/2.2)``; negative values are clamped to 0."""
    v = v.clamp_min(0)
    return (v / (1 + v)) ** _GAMMA


def tonemap_np(v: np.ndarray) -> np.ndarray:
    """:func:`tonemap` for numpy arrays."""
    v = np.maximum(np.asarray(v, dtype=np.float32), 0)
    return (v / (1 + v)) ** _GAMMA


def read_hdr(path: str | os.PathLike) -> np.ndarray:
    """Read a linear HDR image as float32 ``(H, W, C)`` (``C`` is 1 or 3).

    Accepts ``.npy`` arrays shaped ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` with ``C`` in
    {1, 3, 4} (a fourth, alpha channel is dropped), and ``.exr`` when a reader is installed.

    Raises:
        ValueError: unreadable file, wrong shape, or no EXR reader (the message names the file).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: cannot read .npy ({one_line(e)})") from None
    elif suffix == ".exr":
        arr = _read_exr(path)
    else:
        raise ValueError(f"{path}: not an HDR file (expected one of {', '.join(HDR_SUFFIXES)})")
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{path}: HDR array has non-numeric dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4) and arr.shape[0] in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{path}: expected an (H, W, 3) image, got shape {tuple(arr.shape)}")
    arr = arr[..., :3].astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: HDR image contains NaN or infinite values")
    return np.ascontiguousarray(arr)


def _read_exr(path: Path) -> np.ndarray:
    try:  # the official bindings (OpenEXR >= 3.3 has a numpy interface)
        import OpenEXR  # type: ignore[import-not-found]

        with OpenEXR.File(str(path)) as f:  # pragma: no cover - optional dependency
            channels = f.channels()
            if "RGB" in channels:
                return np.asarray(channels["RGB"].pixels, dtype=np.float32)
            names = [n for n in ("R", "G", "B") if n in channels] or sorted(channels)[:1]
            return np.stack([np.asarray(channels[n].pixels, dtype=np.float32) for n in names], -1)
    except ImportError:
        pass
    except Exception as e:  # pragma: no cover - optional dependency
        raise ValueError(f"{path}: cannot read EXR ({one_line(e)})") from None
    try:
        import imageio.v3 as iio  # type: ignore[import-not-found]
    except ImportError:
        iio = None
    if iio is not None:
        try:
            return np.asarray(iio.imread(path), dtype=np.float32)
        except Exception:  # no EXR-capable imageio plugin
            pass
    raise ValueError(
        f"{path}: no EXR reader installed (install the OpenEXR Python bindings, or convert to .npy)"
    )
