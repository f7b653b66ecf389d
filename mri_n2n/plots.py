"""Figures a person would rather look at than read (matplotlib, headless Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .io import atomic_path

__all__ = [
    "radiological_view",
    "provenance_view",
    "image_panel",
    "reconstruction_panel",
    "comparison_grid",
    "psnr_histogram",
    "training_curves",
]


def _np(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x)
    while x.ndim > 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 3 and x.shape[0] in (2, 3):  # (C,H,W): magnitude of real/imag, or RGB
        x = np.sqrt((x**2).sum(0)) if x.shape[0] == 2 else np.moveaxis(x, 0, -1)
    return x


def radiological_view(image: torch.Tensor | np.ndarray, affine: np.ndarray, axis: int) -> np.ndarray:
    """Reorient one slice of a volume for display in the radiological convention.

    ``image`` is ``volume.take(k, axis)`` of a volume whose ``affine`` maps voxel ``(i, j, k)`` to
    RAS+ millimetres (NIfTI/nibabel convention; :class:`mri_n2n.data.Volume`). The slice is
    transposed and flipped (never resampled) so that the top of the picture is anterior for an
    axial slice and superior otherwise, and the viewer's left is the patient's right (axial,
    coronal) or anterior (sagittal). Each in-plane voxel axis is matched to the world axis it
    is closest to, which is exact for scanner-aligned volumes and the nearest view for oblique
    ones.

    Args:
        image: the 2-D slice (leading singleton axes are dropped; a ``(2, H, W)`` real/imaginary
            slice becomes its magnitude).
        affine: ``(4, 4)`` voxel-to-RAS+ matrix of the volume.
        axis: the volume axis the slice was taken along (0, 1 or 2).

    Returns:
        A view (transposed/flipped) of ``image``; rows run top to bottom, columns left to right.
    """
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    if not np.all(np.isfinite(a)) or abs(np.linalg.det(a)) < 1e-12:
        return _np(image)  # no usable geometry: array order
    rows_ax, cols_ax = (d for d in range(3) if d != axis)
    world = np.argmax(np.abs(a), axis=0)  # the world axis (0 R, 1 A, 2 S) each voxel axis runs along
    up = 1 if world[axis] == 2 else 2  # axial: anterior up; coronal and sagittal: superior up
    out = _np(image)
    if world[cols_ax] == up and world[rows_ax] != up:
        out = np.swapaxes(out, 0, 1)
        rows_ax, cols_ax = cols_ax, rows_ax
    # both display axes run towards decreasing world coordinates: top = anterior/superior,
    # left = patient's right (x) or anterior (sagittal, y)
    if a[world[rows_ax], rows_ax] > 0:
        out = out[::-1]
    if a[world[cols_ax], cols_ax] > 0:
        out = out[:, ::-1]
    return out


def provenance_view(image: torch.Tensor | np.ndarray, provenance: dict | None) -> np.ndarray:
    """:func:`radiological_view` of a dataset slice when its ``provenance`` has ``affine`` and
    ``axis`` (slices cut from image volumes); otherwise the slice in array order."""
    prov = provenance or {}
    if prov.get("affine") is None or prov.get("axis") is None:
        return _np(image)
    return radiological_view(image, np.asarray(prov["affine"], dtype=np.float64), int(prov["axis"]))


def image_panel(
    images: Sequence[torch.Tensor | np.ndarray],
    titles: Sequence[str],
    path: str | os.PathLike,
    *,
    vmax: float | None = 1.0,
    cmaps: Sequence[str | None] | None = None,
    vmaxes: Sequence[float | None] | None = None,
    suptitle: str | None = None,
) -> None:
    """Save a row of images with titles as a PNG (written atomically).

    Grey images are shown on ``[0, vmax]`` (per image ``vmaxes`` override it; ``None``
    autoscales); RGB images are clipped to [0, 1].
    """
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 3.3), squeeze=False)
    for i, (img, title) in enumerate(zip(images, titles)):
        ax = axes[0, i]
        arr = _np(img)
        cmap = (cmaps[i] if cmaps else None) or "gray"
        top = vmaxes[i] if vmaxes is not None else vmax
        if arr.ndim == 3:
            ax.imshow(np.clip(arr, 0, 1), interpolation="nearest")
        else:
            ax.imshow(arr, interpolation="nearest", cmap=cmap, vmin=0.0, vmax=top)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def reconstruction_panel(
    path: str | os.PathLike,
    *,
    mask: torch.Tensor | np.ndarray | None,
    zero_filled: torch.Tensor | np.ndarray,
    reconstruction: torch.Tensor | np.ndarray,
    reference: torch.Tensor | np.ndarray | None = None,
    extra: dict[str, torch.Tensor | np.ndarray] | None = None,
    psnrs: dict[str, float] | None = None,
    title: str | None = None,
) -> None:
    """The standard MRI panel: mask, zero-filled, (extra methods), reconstruction, reference, error map.

    ``psnrs`` maps panel names (``"zero-filled"``, ``"reconstruction"``, extra names) to PSNR values
    shown in the titles. The error map is ``|reconstruction - reference|`` scaled to 1/4 of the peak.
    """
    psnrs = psnrs or {}

    def t(name: str) -> str:
        return f"{name}\n{psnrs[name]:.2f} dB" if name in psnrs else name

    peak = float(np.max(_np(reference if reference is not None else zero_filled))) or 1.0
    panels: list[tuple[object, str, str, float | None]] = []
    if mask is not None:
        m = _np(mask).astype(np.float32)
        panels.append((m, f"mask ({m.mean() * 100:.1f} %)", "gray", 1.0))
    panels.append((zero_filled, t("zero-filled"), "gray", peak))
    for name, img in (extra or {}).items():
        panels.append((img, t(name), "gray", peak))
    panels.append((reconstruction, t("reconstruction"), "gray", peak))
    if reference is not None:
        panels.append((reference, "reference", "gray", peak))
        err = np.abs(_np(reconstruction) - _np(reference))
        panels.append((err, "|error| (x4)", "magma", peak / 4))
    images, titles, cmaps, vmaxes = zip(*panels)
    image_panel(images, titles, path, cmaps=cmaps, vmaxes=vmaxes, suptitle=title)


def comparison_grid(
    path: str | os.PathLike,
    *,
    reference: torch.Tensor | np.ndarray,
    methods: dict[str, torch.Tensor | np.ndarray],
    psnrs: dict[str, float] | None = None,
    mask: torch.Tensor | np.ndarray | None = None,
    error_scale: float = 4.0,
) -> None:
    """Two rows: the reference and each method (top), the mask and each method's error map (bottom)."""
    psnrs = psnrs or {}
    ref = _np(reference)
    peak = float(ref.max()) or 1.0
    n = len(methods) + 1
    fig, axes = plt.subplots(2, n, figsize=(2.8 * n, 5.8), squeeze=False)
    axes[0, 0].imshow(ref, cmap="gray", vmin=0, vmax=peak)
    axes[0, 0].set_title("reference", fontsize=9)
    if mask is not None:
        m = _np(mask).astype(np.float32)
        axes[1, 0].imshow(m, cmap="gray", vmin=0, vmax=1)
        axes[1, 0].set_title(f"mask ({m.mean() * 100:.1f} %)", fontsize=9)
    for i, (name, img) in enumerate(methods.items(), start=1):
        arr = _np(img)
        title = f"{name}\n{psnrs[name]:.2f} dB" if name in psnrs else name
        axes[0, i].imshow(arr, cmap="gray", vmin=0, vmax=peak)
        axes[0, i].set_title(title, fontsize=9)
        axes[1, i].imshow(np.abs(arr - ref), cmap="magma", vmin=0, vmax=peak / error_scale)
        axes[1, i].set_title(f"|error| (x{error_scale:g})", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def psnr_histogram(path: str | os.PathLike, values: dict[str, Sequence[float]], *, bins: int = 20) -> None:
    """Overlaid histograms of per-slice PSNR, one per method."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    allv = np.concatenate([np.asarray(v, dtype=float) for v in values.values()])
    edges = np.linspace(np.floor(allv.min()), np.ceil(allv.max()) + 1e-9, bins + 1)
    for name, v in values.items():
        ax.hist(v, bins=edges, alpha=0.5, label=f"{name} ({np.mean(v):.2f} dB)")
    ax.set_xlabel("PSNR per slice (dB)")
    ax.set_ylabel("slices")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def training_curves(
    path: str | os.PathLike, runs: dict[str, Sequence[dict]], *, key: str = "val_psnr"
) -> None:
    """Validation curves (``key`` against step) of several runs' ``metrics.csv`` rows."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, rows in runs.items():
        pts = [(float(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(key.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
