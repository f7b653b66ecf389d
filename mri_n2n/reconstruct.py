"""Batch reconstruction of k-space data and retrospective studies: ``python -m mri_n2n.reconstruct``.

Usage::

    python -m mri_n2n.reconstruct --checkpoint runs/mni152/checkpoints/best.pt \\
        scans/ extra.h5 --out recon/ [--format same|nifti|dicom] \\
        [--simulate DENSITY --seed S] [--device auto|cpu|cuda] [--batch-size 8] [--figures] [--force]

Inputs (files and folders; folders are walked recursively, hidden entries skipped):

- **k-space** (undersampled data, reconstructed directly):

  - fastMRI-style single-coil HDF5 (``.h5``/``.hdf5``): dataset ``kspace`` ``(slices, ky, kx)``
    with DC at ``(ky // 2, kx // 2)``; the sampling mask is the dataset ``mask`` or else the
    attribute ``mask`` (fastMRI: 1-D over ``kx``; ``(ky, kx)`` and ``(slices, ky, kx)`` are
    accepted too); voxel sizes come from the ``ismrmrd_header`` dataset (encoded field of view
    / matrix) or a ``voxel_size`` attribute when present;
  - ``x.npy``: complex k-space ``(slices, ky, kx)`` or ``(ky, kx)`` (or real with a trailing
    ``(real, imag)`` axis), with its mask in the sidecar ``x_mask.npy`` beside it (the sidecar is
    not an input of its own);
  - ``x.npz``: arrays ``kspace``, optional ``mask`` and optional ``voxel_size``.

  Without a mask, the sampled set is the non-zero pattern of k-space. Arrays are read with
  ``allow_pickle=False``.

- **image volumes** (NIfTI ``.nii``/``.nii.gz``; DICOM series: a folder, a mixed folder grouped
  by SeriesInstanceUID, or an enhanced multi-frame file): an image has no undersampling to
  undo, so they need ``--simulate DENSITY``. Each slice along the checkpoint's axis (default 2,
  axial) is undersampled retrospectively with a mask drawn from the checkpoint's density kind
  at mean density DENSITY (``lines_*`` densities: acceleration ``1 / DENSITY``); the mask of
  slice ``k`` is seeded with ``stable_ident("mri_n2n.reconstruct", S, k)``, so it depends on the
  seed and the slice only (not on batching or device). Fully sampled k-space files are studied
  the same way under ``--simulate`` (reference ``|ifft2c(kspace)|``); undersampled ones are
  refused there. Without ``--simulate`` an image input fails with a one-line explanation.

Reconstruction of one slice (training's pipeline, in the network's normalised units):

1. measured k-space ``y`` (``M * kspace``) and mask ``M``;
2. zero-filled image ``z = ifft2c(M y / p)`` with the density compensation ``1 / p`` of the
   checkpoint's density recomputed for the slice shape;
3. normalisation: training volumes were divided by their maximum (or the checkpoint's
   percentile), so an image volume is divided by its own ``volume_scale`` and a k-space
   volume by a robust scale of its zero-filled magnitude (:func:`kspace_normalize`: the
   99.5th percentile for ``max`` checkpoints); outputs are multiplied back, so every output
   is in the input's units;
4. the network: one-channel models see the real image (for k-space whose data are not
   Hermitian, i.e. a complex image, the real part after removing a smooth low-resolution
   phase estimated from the k-space centre, which is put back after the network);
   two-channel (``--complex``) models see (real, imaginary);
5. data consistency with the file's own measurements (:meth:`SpectralSampling.project` on the
   complex estimate): the output's k-space equals ``y`` exactly on every sampled frequency;
6. the magnitude is written. A slice with no measured signal (all ``y`` zero) is written as 0.

Slices stream through the network ``--batch-size`` at a time (on CPU at most
:data:`CPU_MAX_PIXELS` pixels per call, i.e. 4 slices of 512x512): besides the input and output
volumes only one batch is held. Measured on CPU: reconstructing 512x512 k-space with the
default checkpoint peaked about 0.9 GB above the process's baseline plus the two volumes; one
call of the paper's wider network holds about 1.6 GB (400 MB per 512x512 slice). The
normalisation's percentile briefly needs two float32 copies of the output volume (0.6 GB for
512x512x300), before the network runs.

Outputs in ``--out`` (created): ``<stem>_recon.nii.gz`` (NIfTI; k-space inputs and
``--format nifti``) or ``<series name>_recon/`` (a new DICOM series; DICOM inputs and
``--format dicom``); see :mod:`mri_n2n.writers`. Names that collide within a run get ``_2``,
``_3``...; an existing output is refused unless ``--force``. ``report.csv`` and ``report.json``
hold one row per input (input, output, status, error, seconds, metrics); with ``--simulate``
the metrics are fastMRI volume metrics (PSNR, SSIM, NMSE with ``data_range`` = the reference
volume's maximum) of the zero-filled image and of the reconstruction, in the input's units.
``--figures`` writes ``figures/<output name>.png`` (mask, zero-filled, reconstruction, and
with a reference: reference and error) of the middle slice with content; slices of NIfTI and
DICOM volumes are shown in the radiological convention (anterior or superior up, the patient's
right on the viewer's left), k-space slices in their own row/column order.

Safety: inputs are only read (never opened for writing); ``--out`` inside a folder input, or
equal to the folder of a file input, is refused unless ``--force``; an output that would
replace an input is always refused; every file is written atomically; a bad input gets one
``error:`` line and the others go on. Checkpoints load with ``weights_only=True``
(:func:`mri_n2n.checkpoint.load_checkpoint`); non-checkpoints, pickles that would run code and
checkpoints of another task (photo denoisers) are refused.

Exit status: 0 all inputs reconstructed, 1 some failed, 2 bad arguments (including a refused
checkpoint).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from .corruptions import MRIUndersampling, seeded_generator
from .devices import resolve_device
from .fft import fft2c, ifft2c
from .physics import SpectralSampling

__all__ = [
    "ReconstructionError",
    "Reconstruction",
    "Reconstructor",
    "KSpaceInput",
    "read_kspace_input",
    "kspace_affine",
    "simulation_corruption",
    "kspace_normalize",
    "reconstruct_kspace",
    "reconstruct_volume",
    "simulate_kspace",
    "slice_seed",
    "resolve_device",
    "CPU_MAX_PIXELS",
    "bench_reconstruct",
    "build_parser",
    "main",
]

KSPACE_SUFFIXES = (".h5", ".hdf5", ".npy", ".npz")
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
_MASK_SIDECAR = "_mask.npy"
#: On CPU one network call holds at most this many pixels (4 slices of 512x512, 16 of 256x256):
#: measured activation memory per 512x512 slice is about 190 MB for the plain U-Net and 400 MB
#: for the paper's, so a call stays under about 1.6 GB whatever ``--batch-size`` says.
CPU_MAX_PIXELS = 1 << 20
#: Squared relative Hermitian defect below which k-space counts as data of a real image.
_HERMITIAN_TOL = 1e-6


class ReconstructionError(ValueError):
    """An input cannot be reconstructed; the message names the input and why."""


# --------------------------------------------------------------------------------------
# results


@dataclass
class Reconstruction:
    """The result of reconstructing one volume.

    Attributes:
        image: float32 magnitude volume in the input's units, in the input's layout (an image
            volume's ``(I, J, K)``; k-space ``(ky, kx, slices)``).
        scale: the normalisation divisor (input units per network unit).
        sampled_fraction: mean fraction of sampled k-space over the slices with signal.
        metrics: with a reference: ``psnr``, ``ssim``, ``nmse`` of the reconstruction and
            ``psnr_zero_filled``, ``ssim_zero_filled``, ``nmse_zero_filled`` (fastMRI volume
            convention) and ``data_range``; empty otherwise.
        preview: the middle slice with content, in network units: ``mask``, ``zero_filled``,
            ``reconstruction`` and, with a reference, ``reference``; ``slice`` is its index.
        complex_image: the complex data-consistent volume (input units, same layout as
            ``image``) when asked for (``keep_complex=True``), else ``None``.
    """

    image: np.ndarray
    scale: float
    sampled_fraction: float
    metrics: dict[str, float] = field(default_factory=dict)
    preview: dict[str, Any] = field(default_factory=dict)
    complex_image: np.ndarray | None = None


# --------------------------------------------------------------------------------------
# the streaming engine


def _amp_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _model_channels(model: torch.nn.Module) -> int:
    spec = getattr(model, "spec", None) or {}
    kw = spec.get("kwargs", {}) if isinstance(spec, dict) else {}
    if "in_channels" in kw:
        return int(kw["in_channels"])
    for p in model.parameters():
        if p.ndim == 4:
            return int(p.shape[1])
    return 1


def _phase_factors(y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Unit phase ``exp(i phi)`` per pixel for a batch ``(B, H, W)`` of measured k-space.

    Slices whose measurements are Hermitian (the k-space of a real image, on the pairs of
    frequencies that are both sampled) get ``phi = 0``: the paper's real pipeline exactly.
    Others get the phase of a low-resolution image (Gaussian window of width ``min(H, W) / 32``
    bins around DC), so the network sees a nearly real image.
    """
    from .sampling import hermitian_partner, radius_grid

    h, w = y.shape[-2:]
    pi = hermitian_partner(h, y.device)
    pj = hermitian_partner(w, y.device)
    yp = y[:, pi][:, :, pj].conj()
    both = (m & m[:, pi][:, :, pj]).to(y.real.dtype)
    num = ((y - yp).abs().square() * both).flatten(1).sum(1)
    den = (y.abs().square() * both).flatten(1).sum(1)
    real_like = (den > 0) & (num <= _HERMITIAN_TOL * den)
    ones = torch.ones_like(y)
    if bool(real_like.all()):
        return ones
    sigma = max(min(h, w) / 32.0, 2.0)
    win = torch.exp(-0.5 * radius_grid((h, w)).square() / sigma**2).to(device=y.device, dtype=y.real.dtype)
    low = ifft2c(y * win)
    mag = low.abs()
    ph = torch.where(mag > 0, low / mag.clamp_min(torch.finfo(mag.dtype).tiny), ones)
    return torch.where(real_like[:, None, None], ones, ph)


BatchFn = Callable[[list[int]], tuple[torch.Tensor, torch.Tensor, np.ndarray | None]]


@dataclass
class _Accum:
    """Running sums for fastMRI volume metrics and the sampled fraction."""

    data_range: float | None
    sse_zf: float = 0.0
    sse_rec: float = 0.0
    ref2: float = 0.0
    ssim_zf: float = 0.0
    ssim_rec: float = 0.0
    n_vox: int = 0
    n_slices: int = 0
    frac_sum: float = 0.0
    frac_n: int = 0

    def add(self, zf: np.ndarray, rec: np.ndarray, ref: np.ndarray) -> None:
        from .metrics import ssim

        r = self.data_range
        zf64, rec64, ref64 = (torch.from_numpy(np.asarray(a, np.float64)) for a in (zf, rec, ref))
        self.sse_zf += float((zf64 - ref64).square().sum())
        self.sse_rec += float((rec64 - ref64).square().sum())
        self.ref2 += float(ref64.square().sum())
        self.n_vox += ref64.numel()
        self.n_slices += ref64.shape[0]
        if r and ref64.shape[-1] >= 7 and ref64.shape[-2] >= 7:
            self.ssim_zf += float(ssim(zf64[:, None], ref64[:, None], data_range=r, reduction="sum"))
            self.ssim_rec += float(ssim(rec64[:, None], ref64[:, None], data_range=r, reduction="sum"))
        else:
            self.ssim_zf = self.ssim_rec = math.nan

    def result(self) -> dict[str, float]:
        r = self.data_range
        if r is None or self.n_vox == 0:
            return {}

        def _psnr(sse: float) -> float:
            mse = sse / self.n_vox
            return math.inf if mse == 0 else 20 * math.log10(r) - 10 * math.log10(mse)

        def _nmse(sse: float) -> float:
            return sse / self.ref2 if self.ref2 > 0 else math.nan

        return {
            "psnr_zero_filled": _psnr(self.sse_zf),
            "ssim_zero_filled": self.ssim_zf / self.n_slices,
            "nmse_zero_filled": _nmse(self.sse_zf),
            "psnr": _psnr(self.sse_rec),
            "ssim": self.ssim_rec / self.n_slices,
            "nmse": _nmse(self.sse_rec),
            "data_range": float(r),
        }


def _run(
    model: torch.nn.Module,
    *,
    n: int,
    batch_fn: BatchFn,
    density: torch.Tensor,
    scale: float,
    out_view: np.ndarray,
    batch_size: int,
    amp: bool | None,
    data_range: float | None,
    preview_index: int,
    complex_view: np.ndarray | None = None,
) -> tuple[_Accum, dict[str, Any]]:
    """Stream ``n`` slices through zero-filling, the network and data consistency.

    ``batch_fn(indices)`` returns the measured k-space ``y`` (complex, input units), the bool
    mask and the reference magnitude (input units) or ``None``, all ``(B, H, W)``. Magnitudes
    (input units) go to ``out_view[indices]`` (a ``(n, H, W)`` view of the output volume).
    """
    device = _model_device(model)
    if device.type == "cpu":  # bound host memory: at most CPU_MAX_PIXELS per network call
        h, w = out_view.shape[-2:]
        batch_size = min(batch_size, max(1, CPU_MAX_PIXELS // max(h * w, 1)))
    use_amp = (device.type == "cuda") if amp is None else (bool(amp) and device.type == "cuda")
    amp_dtype = _amp_dtype(device)
    complex_model = _model_channels(model) == 2
    dens = density.to(device=device, dtype=torch.float32)
    acc = _Accum(data_range)
    preview: dict[str, Any] = {}
    inv = 1.0 / scale
    model.eval()
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            idx = list(range(start, min(n, start + batch_size)))
            y_cpu, m_cpu, ref = batch_fn(idx)
            m = m_cpu.to(device=device, dtype=torch.bool)
            y = y_cpu.to(device=device, dtype=torch.complex64) * inv
            y = torch.where(m, y, torch.zeros_like(y))
            active = y.abs().flatten(1).amax(1) > 0
            msum = m.flatten(1).float().mean(1)
            for b in range(len(idx)):
                if bool(active[b]):
                    acc.frac_sum += float(msum[b])
                    acc.frac_n += 1
            op = SpectralSampling(m)
            z = op.zero_filled(y, dens)
            x = torch.zeros_like(z)
            if bool(active.any()):
                sel = active.nonzero().flatten()
                ya, za, ma = y[sel], z[sel], m[sel]
                if complex_model:
                    inp = torch.stack([za.real, za.imag], dim=1)
                    phase = None
                else:
                    phase = _phase_factors(ya, ma)
                    inp = (za * phase.conj()).real[:, None]
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    out = model(inp.float())
                out = out.float()
                if complex_model:
                    est = torch.complex(out[:, 0], out[:, 1])
                else:
                    est = out[:, 0].to(torch.complex64) * phase
                x[sel] = SpectralSampling(ma).project(est, ya)
            z = torch.where(active[:, None, None], z, torch.zeros_like(z))
            rec = (x.abs() * scale).float().cpu().numpy()
            zf = (z.abs() * scale).float().cpu().numpy()
            out_view[idx] = rec
            if complex_view is not None:
                complex_view[idx] = (x * scale).cpu().numpy()
            if ref is not None:
                acc.add(zf, rec, ref)
            if preview_index in idx:
                b = idx.index(preview_index)
                preview = {
                    "slice": preview_index,
                    "mask": m[b].cpu().numpy(),
                    "zero_filled": zf[b] * inv,
                    "reconstruction": rec[b] * inv,
                }
                if ref is not None:
                    preview["reference"] = np.asarray(ref[b], np.float32) * inv
    return acc, preview


def _middle_active(energy: np.ndarray) -> int:
    """Index of the slice with signal nearest the middle (the middle when none has signal)."""
    n = len(energy)
    nz = np.nonzero(energy > 0)[0]
    if nz.size == 0:
        return n // 2
    return int(nz[np.argmin(np.abs(nz - (n - 1) / 2))])


def _check_batch(batch_size: int) -> int:
    if int(batch_size) < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    return int(batch_size)


# --------------------------------------------------------------------------------------
# k-space


def _as_kspace(arr: np.ndarray, where: str) -> np.ndarray:
    """Validate and convert to complex64 ``(S, H, W)``."""
    a = np.asarray(arr)
    if a.dtype == object or a.dtype.fields is not None and len(a.dtype.fields) != 2:
        raise ReconstructionError(f"{where}: k-space must be a complex array, got dtype {a.dtype}")
    if a.dtype.fields is not None:  # compound (real, imag)
        re_, im_ = a.dtype.names
        a = a[re_] + 1j * a[im_]
    elif not np.iscomplexobj(a):
        if a.ndim >= 3 and a.shape[-1] == 2 and a.dtype.kind == "f":
            a = a[..., 0] + 1j * a[..., 1]
        else:
            raise ReconstructionError(
                f"{where}: k-space must be complex (slices, ky, kx) or (ky, kx); got a real "
                f"{a.dtype} array of shape {tuple(a.shape)}"
            )
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ReconstructionError(
            f"{where}: k-space must be 2-D (ky, kx) or 3-D (slices, ky, kx), got shape {tuple(a.shape)}"
        )
    if a.size == 0 or min(a.shape) < 1:
        raise ReconstructionError(f"{where}: empty k-space (shape {tuple(a.shape)})")
    if a.shape[1] < 2 or a.shape[2] < 2:
        raise ReconstructionError(f"{where}: k-space slices of shape {a.shape[1:]} are too small")
    a = np.ascontiguousarray(a, dtype=np.complex64)
    if not np.isfinite(a).all():
        raise ReconstructionError(f"{where}: k-space contains NaN or infinite values")
    return a


def _expand_mask(mask: Any, shape: tuple[int, int, int], where: str) -> np.ndarray:
    """A bool mask broadcast (as a view) to ``(S, H, W)``: 1-D masks run over ``kx``."""
    m = np.asarray(mask)
    if m.dtype == object or m.dtype.kind not in "biuf":
        raise ReconstructionError(f"{where}: the mask must be numeric, got dtype {m.dtype}")
    m = m > 0
    s, h, w = shape
    if m.ndim == 1:
        if m.shape[0] != w:
            raise ReconstructionError(
                f"{where}: a 1-D mask must have one entry per kx column ({w}), got {m.shape[0]}"
            )
        m = m[None, None, :]
    elif m.ndim == 2:
        if m.shape != (h, w):
            raise ReconstructionError(
                f"{where}: a 2-D mask must have shape (ky, kx) = {(h, w)}, got {m.shape}"
            )
        m = m[None]
    elif m.ndim != 3:
        raise ReconstructionError(f"{where}: mask of shape {m.shape} does not match k-space {shape}")
    try:
        out = np.broadcast_to(m, shape)
    except ValueError:
        raise ReconstructionError(
            f"{where}: mask of shape {m.shape} does not match k-space {shape}"
        ) from None
    if not out.any():
        raise ReconstructionError(f"{where}: the mask samples nothing")
    return out


def kspace_affine(shape: tuple[int, int, int], voxel_size: Sequence[float] | None = None) -> np.ndarray:
    """The affine of a reconstructed k-space volume laid out ``(ky, kx, slices)``.

    Axis-aligned (RAS), voxel sizes ``voxel_size`` (default 1 mm), centred on the origin.
    """
    vs = np.ones(3) if voxel_size is None else np.asarray(list(voxel_size)[:3] + [1.0] * 3, float)[:3]
    if not (np.isfinite(vs).all() and (vs > 0).all()):
        vs = np.ones(3)
    aff = np.diag([vs[0], vs[1], vs[2], 1.0])
    aff[:3, 3] = -(np.asarray(shape, float) - 1) / 2 * vs
    return aff


def _ismrmrd_voxel_size(xml: Any, hw: tuple[int, int]) -> tuple[float, float, float] | None:
    """Voxel sizes for image axes ``(ky, kx)`` and slices from an ISMRMRD XML header."""
    import xml.etree.ElementTree as ET

    if isinstance(xml, np.ndarray):
        xml = xml.item() if xml.shape == () else bytes(xml.tobytes())
    if isinstance(xml, bytes):
        xml = xml.decode("utf-8", "replace")
    try:
        root = ET.fromstring(str(xml))
    except ET.ParseError:
        return None

    def child(node: Any, name: str) -> Any:
        for c in list(node) if node is not None else []:
            if c.tag.rsplit("}", 1)[-1] == name:
                return c
        return None

    def xyz(node: Any) -> tuple[float, float, float] | None:
        try:
            return tuple(float(child(node, a).text) for a in ("x", "y", "z"))  # type: ignore[return-value]
        except (AttributeError, TypeError, ValueError):
            return None

    space = child(child(root, "encoding"), "encodedSpace")
    matrix, fov = xyz(child(space, "matrixSize")), xyz(child(space, "fieldOfView_mm"))
    if matrix is None or fov is None or min(matrix[:2]) <= 0:
        return None
    sx, sy, sz = fov[0] / matrix[0], fov[1] / matrix[1], fov[2] / max(matrix[2], 1.0)
    if (int(matrix[0]), int(matrix[1])) == hw:
        return sx, sy, sz
    if (int(matrix[1]), int(matrix[0])) == hw:
        return sy, sx, sz
    return None


@dataclass
class KSpaceInput:
    """A k-space file as read by :func:`read_kspace_input`.

    Attributes:
        kspace: complex64 ``(slices, ky, kx)``, DC at ``(ky // 2, kx // 2)``.
        mask: bool mask broadcast to ``kspace.shape`` (a view), or ``None`` (use the non-zero
            pattern of ``kspace``).
        mask_source: ``"dataset"``, ``"attribute"``, ``"sidecar"``, ``"npz"`` or ``"nonzero"``.
        voxel_size: ``(ky, kx, slice)`` mm when the file says, else ``None``.
        path: the file.
    """

    kspace: np.ndarray
    mask: np.ndarray | None
    mask_source: str
    voxel_size: tuple[float, float, float] | None
    path: str

    @property
    def affine(self) -> np.ndarray:
        """Affine of the reconstruction laid out ``(ky, kx, slices)`` (see :func:`kspace_affine`)."""
        s, h, w = self.kspace.shape
        return kspace_affine((h, w, s), self.voxel_size)

    def fully_sampled(self) -> bool:
        """True when the mask keeps everything, or (no mask) at least half of k-space is non-zero."""
        if self.mask is not None:
            return bool(self.mask.all())
        return np.count_nonzero(self.kspace) >= 0.5 * self.kspace.size


def _npy_load(path: Path) -> Any:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise ReconstructionError(f"{path}: holds pickled Python objects (refused)") from None
        raise ReconstructionError(f"{path}: not a readable NumPy file ({e})") from None
    except (OSError, EOFError) as e:
        raise ReconstructionError(f"{path}: not a readable NumPy file ({type(e).__name__}: {e})") from None


def read_kspace_input(path: str | os.PathLike) -> KSpaceInput:
    """Read a k-space input (``.h5``/``.hdf5``, ``.npy`` with an optional ``_mask.npy`` sidecar,
    or ``.npz`` with ``kspace`` and optional ``mask``/``voxel_size``); see the module docstring.

    Raises:
        ReconstructionError: unreadable file, missing ``kspace``, real or wrongly shaped data,
            a mask that does not match, non-finite values (the message names the file).
    """
    from .data import VolumeError, read_kspace_h5

    p = Path(path)
    where = str(p)
    low = p.name.lower()
    voxel: tuple[float, float, float] | None = None
    if low.endswith((".h5", ".hdf5")):
        try:
            k, mask, attrs = read_kspace_h5(p)
        except VolumeError as e:
            raise ReconstructionError(str(e)) from None
        k = _as_kspace(k, where)
        source = "dataset"
        if mask is None and attrs.get("mask") is not None:
            mask, source = np.asarray(attrs["mask"]), "attribute"
        header = None
        with contextlib.suppress(Exception):
            import h5py

            with h5py.File(p, "r") as f:
                if "ismrmrd_header" in f:
                    header = f["ismrmrd_header"][()]
        if header is not None:
            voxel = _ismrmrd_voxel_size(header, k.shape[1:])
        if voxel is None and attrs.get("voxel_size") is not None:
            with contextlib.suppress(TypeError, ValueError):
                vs = [float(v) for v in np.ravel(attrs["voxel_size"])]
                voxel = tuple((vs + [1.0, 1.0, 1.0])[:3])  # type: ignore[assignment]
    elif low.endswith(".npz"):
        data = _npy_load(p)
        with data:
            if "kspace" not in data.files:
                raise ReconstructionError(
                    f"{where}: no 'kspace' array (have: {', '.join(data.files) or 'nothing'})"
                )
            k = _as_kspace(data["kspace"], where)
            mask = data["mask"] if "mask" in data.files else None
            if "voxel_size" in data.files:
                vs = [float(v) for v in np.ravel(data["voxel_size"])]
                voxel = tuple((vs + [1.0, 1.0, 1.0])[:3])  # type: ignore[assignment]
        source = "npz"
    elif low.endswith(".npy"):
        arr = _npy_load(p)
        if not isinstance(arr, np.ndarray):
            raise ReconstructionError(f"{where}: not a single NumPy array")
        k = _as_kspace(arr, where)
        side = p.with_name(p.name[: -len(".npy")] + _MASK_SIDECAR)
        mask = _npy_load(side) if side.is_file() else None
        source = "sidecar"
    else:
        raise ReconstructionError(f"{where}: not a k-space file (expected {', '.join(KSPACE_SUFFIXES)})")
    if mask is None:
        return KSpaceInput(k, None, "nonzero", voxel, where)
    return KSpaceInput(k, _expand_mask(mask, k.shape, where), source, voxel, where)


def _kspace_batches(kspace: np.ndarray, mask: np.ndarray | None) -> BatchFn:
    def fn(idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, None]:
        k = torch.from_numpy(np.ascontiguousarray(kspace[idx]))
        m = torch.from_numpy(np.ascontiguousarray(mask[idx])) if mask is not None else k != 0
        return k, m, None

    return fn


def reconstruct_kspace(
    model: torch.nn.Module,
    kspace: np.ndarray,
    mask: np.ndarray | None = None,
    density: torch.Tensor | np.ndarray | None = None,
    *,
    normalize: str = "p99.5",
    batch_size: int = 8,
    amp: bool | None = None,
    keep_complex: bool = False,
) -> Reconstruction:
    """Reconstruct undersampled k-space directly (zero-filled -> network -> data consistency).

    Args:
        model: a trained MRI network (one channel: real images; two: real/imaginary), on the
            device to use (CPU or CUDA).
        kspace: complex ``(slices, ky, kx)`` or ``(ky, kx)``, DC at ``(ky // 2, kx // 2)``.
        mask: sampled frequencies, broadcastable to ``kspace`` (1-D masks run over ``kx``);
            ``None``: the non-zero pattern of ``kspace``. Values outside the mask are ignored.
        density: keep probabilities ``(ky, kx)`` for the ``1 / p`` compensation (e.g.
            :meth:`Reconstructor.density`); ``None``: no compensation.
        normalize: how the zero-filled magnitude volume is normalised
            (:func:`mri_n2n.data.volume_scale`); see :func:`kspace_normalize`.
        batch_size: slices per network call.
        amp: autocast on CUDA (default: on for CUDA).
        keep_complex: also return the complex data-consistent volume.

    Returns:
        A :class:`Reconstruction` with ``image`` laid out ``(ky, kx, slices)``; its k-space
        equals the measured one on every sampled frequency (exactly, up to float32 round-off,
        for ``complex_image``; for ``image`` too where the complex image is real and non-negative).
    """
    from .data import volume_scale

    k = _as_kspace(kspace, "kspace")
    s, h, w = k.shape
    m = None if mask is None else _expand_mask(mask, k.shape, "mask")
    dens = torch.ones(h, w) if density is None else torch.as_tensor(np.asarray(density), dtype=torch.float32)
    if tuple(dens.shape) != (h, w):
        raise ReconstructionError(
            f"density of shape {tuple(dens.shape)} does not match k-space slices {(h, w)}"
        )
    bs = _check_batch(batch_size)
    out = np.zeros((h, w, s), np.float32)
    view = np.moveaxis(out, 2, 0)
    cview = None
    cplx = None
    if keep_complex:
        cplx = np.zeros((h, w, s), np.complex64)
        cview = np.moveaxis(cplx, 2, 0)
    # pass 1: the zero-filled magnitude volume (in the output buffer) gives the normalisation
    batches = _kspace_batches(k, m)
    energy = np.zeros(s)
    dev = _model_device(model)
    dens_dev = dens.to(dev)
    for start in range(0, s, bs):
        idx = list(range(start, min(s, start + bs)))
        y, mm, _ = batches(idx)
        y, mm = y.to(dev), mm.to(dev)
        y = torch.where(mm, y, torch.zeros_like(y))
        view[idx] = SpectralSampling(mm).zero_filled(y, dens_dev).abs().cpu().numpy()
        energy[idx] = y.abs().flatten(1).amax(1).cpu().numpy()
    if not energy.any():
        raise ReconstructionError("no sampled k-space value is non-zero: nothing to reconstruct")
    scale = volume_scale(out, normalize)
    acc, preview = _run(
        model,
        n=s,
        batch_fn=batches,
        density=dens,
        scale=scale,
        out_view=view,
        batch_size=bs,
        amp=amp,
        data_range=None,
        preview_index=_middle_active(energy),
        complex_view=cview,
    )
    frac = acc.frac_sum / acc.frac_n if acc.frac_n else 0.0
    return Reconstruction(out, scale, frac, {}, preview, cplx)


def kspace_normalize(normalize: str) -> str:
    """The normalisation of a zero-filled k-space volume for a checkpoint trained with ``normalize``.

    Training divided each *clean* volume by its maximum (``"max"``, the paper) or a percentile.
    Undersampled k-space has no clean volume, and the maximum of the density-compensated
    zero-filled magnitude overshoots the clean maximum (compensation noise peaks: 1.47x on the
    MNI152 template at 10 % sampling), so ``"max"`` is replaced by the 99.5th percentile of the
    non-zero zero-filled magnitudes (1.13x there; the reconstruction PSNR was within 0.05 dB of
    using the true maximum). Percentile modes are kept as they are.
    """
    return "p99.5" if normalize == "max" else normalize


# --------------------------------------------------------------------------------------
# retrospective studies


def slice_seed(seed: int, index: int) -> int:
    """The mask seed of slice ``index`` in a retrospective study with ``--seed seed``."""
    from .data import stable_ident

    return stable_ident("mri_n2n.reconstruct", int(seed), int(index))


def simulation_corruption(
    config: dict[str, Any], shape: tuple[int, int], fraction: float | None = None
) -> MRIUndersampling:
    """The checkpoint's corruption for slices of ``shape``, optionally at another mean density.

    Args:
        config: the checkpoint's ``config`` (a :class:`mri_n2n.config.Config` dict).
        shape: slice shape ``(H, W)``.
        fraction: mean sampling density (``lines_*`` densities: acceleration ``1 / fraction``);
            ``None`` keeps the checkpoint's.

    Raises:
        ValueError: the density cannot be built (e.g. a fraction outside ``(0, 1]``).
    """
    from .train import build_mri_corruption

    cfg = dict(config)
    complex_data = bool((cfg.get("extra") or {}).get("complex", False))
    if fraction is not None:
        if not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f"sampling density must lie in (0, 1], got {fraction}")
        if str(cfg.get("density", "exp")).startswith("lines"):
            cfg["acceleration"] = 1.0 / float(fraction)
        else:
            cfg["fraction"] = float(fraction)
    return build_mri_corruption(cfg, (int(shape[0]), int(shape[1])), complex_data=complex_data)


def _simulated_masks(corruption: MRIUndersampling, idx: Sequence[int], seed: int) -> torch.Tensor:
    # drawn on the CPU so that masks do not depend on the device
    return torch.cat([corruption.draw_masks(1, seeded_generator(slice_seed(seed, k))) for k in idx]).bool()


def reconstruct_volume(
    model: torch.nn.Module,
    corruption: MRIUndersampling,
    array: np.ndarray,
    *,
    axis: int = 2,
    seed: int = 0,
    normalize: str = "max",
    batch_size: int = 8,
    amp: bool | None = None,
    keep_complex: bool = False,
) -> Reconstruction:
    """Retrospective study of an image volume: undersample each slice, reconstruct, compare.

    The slices along ``axis`` are normalised like training (divided by ``volume_scale(array,
    normalize)``), undersampled with masks from ``corruption`` seeded per slice
    (:func:`slice_seed`), zero-filled with its density compensation, passed through the network
    and projected onto their measurements; outputs are mapped back to the array's units.

    Args:
        model: the MRI network (on its device).
        corruption: an :class:`MRIUndersampling` whose density matches the slice shape (see
            :func:`simulation_corruption`).
        array: real image volume, e.g. :attr:`mri_n2n.data.Volume.array`.
        axis: slicing axis (the checkpoint's ``axis``).
        seed: study seed.
        normalize: the checkpoint's normalisation.
        batch_size: slices per network call.
        amp: autocast on CUDA (default: on for CUDA).
        keep_complex: also return the complex data-consistent volume.

    Returns:
        A :class:`Reconstruction` in ``array``'s layout, with fastMRI volume metrics of the
        zero-filled image and of the reconstruction against ``array``.
    """
    from .data import volume_scale

    arr = np.asarray(array)
    if arr.ndim != 3 or np.iscomplexobj(arr):
        raise ReconstructionError(f"expected a real 3-D image volume, got shape {arr.shape} ({arr.dtype})")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    view_in = np.moveaxis(arr, axis, 0)
    n, h, w = view_in.shape
    if tuple(corruption.density.shape) != (h, w):
        raise ReconstructionError(
            f"the corruption's density {tuple(corruption.density.shape)} does not match slices {(h, w)}"
        )
    if h < 2 or w < 2:
        raise ReconstructionError(f"slices of shape {(h, w)} along axis {axis} are too small")
    scale = volume_scale(arr, normalize)
    out = np.zeros(arr.shape, np.float32)
    view = np.moveaxis(out, axis, 0)
    cplx = np.zeros(arr.shape, np.complex64) if keep_complex else None
    cview = np.moveaxis(cplx, axis, 0) if cplx is not None else None
    other = tuple(a for a in range(3) if a != axis)
    energy = np.maximum(arr.max(axis=other), -arr.min(axis=other))  # max |value| per slice, no copy
    data_range = float(arr.max())
    if not data_range > 0:
        raise ReconstructionError("the image volume is empty (maximum <= 0)")

    def batches(idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        ref = np.ascontiguousarray(view_in[idx], dtype=np.float32)
        m = _simulated_masks(corruption, idx, seed)
        y = fft2c(torch.from_numpy(ref)) * m
        return y, m, ref

    acc, preview = _run(
        model,
        n=n,
        batch_fn=batches,
        density=corruption.density,
        scale=scale,
        out_view=view,
        batch_size=_check_batch(batch_size),
        amp=amp,
        data_range=data_range,
        preview_index=_middle_active(energy),
        complex_view=cview,
    )
    frac = acc.frac_sum / acc.frac_n if acc.frac_n else 0.0
    return Reconstruction(out, scale, frac, acc.result(), preview, cplx)


def simulate_kspace(
    model: torch.nn.Module,
    corruption: MRIUndersampling,
    kspace: np.ndarray,
    *,
    seed: int = 0,
    normalize: str = "max",
    batch_size: int = 8,
    amp: bool | None = None,
) -> Reconstruction:
    """Retrospective study of fully sampled k-space ``(slices, ky, kx)``: the reference is
    ``|ifft2c(kspace)|``, each slice is undersampled with seeded masks from ``corruption``
    (:func:`slice_seed`), reconstructed and compared (fastMRI volume metrics). The output is
    laid out ``(ky, kx, slices)``."""
    from .data import volume_scale

    k = _as_kspace(kspace, "kspace")
    s, h, w = k.shape
    if tuple(corruption.density.shape) != (h, w):
        raise ReconstructionError(
            f"the corruption's density {tuple(corruption.density.shape)} does not match k-space {(h, w)}"
        )
    bs = _check_batch(batch_size)
    out = np.zeros((h, w, s), np.float32)
    view = np.moveaxis(out, 2, 0)
    energy = np.zeros(s)
    for start in range(0, s, bs):  # the reference volume (in the output buffer) gives the scale
        idx = list(range(start, min(s, start + bs)))
        view[idx] = ifft2c(torch.from_numpy(k[idx])).abs().numpy()
        energy[idx] = view[idx].reshape(len(idx), -1).max(1)
    scale = volume_scale(out, normalize)
    data_range = float(out.max())
    if not data_range > 0:
        raise ReconstructionError("the k-space is all zero")

    def batches(idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        kk = torch.from_numpy(np.ascontiguousarray(k[idx]))
        ref = ifft2c(kk).abs().numpy()
        m = _simulated_masks(corruption, idx, seed)
        return kk * m, m, ref

    acc, preview = _run(
        model,
        n=s,
        batch_fn=batches,
        density=corruption.density,
        scale=scale,
        out_view=view,
        batch_size=bs,
        amp=amp,
        data_range=data_range,
        preview_index=_middle_active(energy),
    )
    frac = acc.frac_sum / acc.frac_n if acc.frac_n else 0.0
    return Reconstruction(out, scale, frac, acc.result(), preview, None)


# --------------------------------------------------------------------------------------
# the checkpoint-bound API


class Reconstructor:
    """A trained MRI checkpoint ready for reconstruction (the API behind the CLI).

    Example::

        rec = Reconstructor.from_checkpoint("runs/mni152/checkpoints/best.pt")
        out = rec.kspace(kspace, mask)                      # k-space -> magnitude volume
        study = rec.simulate(volume.array, fraction=0.1)    # retrospective, with metrics

    Args:
        model: the network (moved to ``device``, eval mode).
        config: the checkpoint's config dict (density, fraction, edge, normalize, axis, ...).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or a :class:`torch.device`.
        amp: autocast on CUDA (default: on for CUDA).
        batch_size: slices per network call.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: dict[str, Any],
        *,
        device: str | torch.device = "auto",
        amp: bool | None = None,
        batch_size: int = 8,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.config = dict(config)
        self.amp = amp
        self.batch_size = _check_batch(batch_size)
        self.checkpoint: str | None = None
        self._densities: dict[tuple[int, int], torch.Tensor] = {}

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "auto",
        amp: bool | None = None,
        batch_size: int = 8,
    ) -> Reconstructor:
        """Load an MRI checkpoint (``weights_only=True``).

        Raises:
            CheckpointError: not a checkpoint, a pickle that would run code, another task's
                checkpoint, or an unusable model/config.
            ValueError: a bad device.
        """
        dev = resolve_device(device)
        ckpt = load_checkpoint(path, map_location="cpu", task="mri")
        config = ckpt.get("config")
        if not isinstance(config, dict):
            raise CheckpointError(f"{path}: checkpoint has no run configuration")
        try:
            model = model_from_checkpoint(ckpt, device=dev)
            simulation_corruption(config, (32, 32))
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            msg = " ".join(str(e).split())[:200]
            raise CheckpointError(f"{path}: cannot build the model or its corruption ({msg})") from None
        channels = _model_channels(model)
        if channels not in (1, 2):
            raise CheckpointError(
                f"{path}: an MRI model must take 1 or 2 channels, this one takes {channels}"
            )
        rec = cls(model, config, device=dev, amp=amp, batch_size=batch_size)
        rec.checkpoint = str(path)
        return rec

    @property
    def complex_model(self) -> bool:
        """True for two-channel (real, imaginary) models."""
        return _model_channels(self.model) == 2

    @property
    def normalize(self) -> str:
        """The checkpoint's per-volume normalisation."""
        return str(self.config.get("normalize") or "max")

    @property
    def axis(self) -> int:
        """The checkpoint's slicing axis."""
        return int(self.config.get("axis", 2))

    def density(self, shape: tuple[int, int]) -> torch.Tensor:
        """The checkpoint's sampling density recomputed for k-space of ``shape`` (cached)."""
        key = (int(shape[0]), int(shape[1]))
        if key not in self._densities:
            self._densities[key] = simulation_corruption(self.config, key).density
        return self._densities[key]

    def corruption(self, shape: tuple[int, int], fraction: float | None = None) -> MRIUndersampling:
        """The checkpoint's corruption for ``shape``, at mean density ``fraction`` when given."""
        return simulation_corruption(self.config, shape, fraction)

    def kspace(
        self, kspace: np.ndarray, mask: np.ndarray | None = None, *, keep_complex: bool = False
    ) -> Reconstruction:
        """Reconstruct undersampled k-space (see :func:`reconstruct_kspace`)."""
        k = _as_kspace(kspace, "kspace")
        return reconstruct_kspace(
            self.model,
            k,
            mask,
            self.density(k.shape[1:]),
            normalize=kspace_normalize(self.normalize),
            batch_size=self.batch_size,
            amp=self.amp,
            keep_complex=keep_complex,
        )

    def simulate(
        self,
        array: np.ndarray,
        fraction: float,
        *,
        seed: int = 0,
        axis: int | None = None,
        keep_complex: bool = False,
    ) -> Reconstruction:
        """Retrospective study of an image volume (see :func:`reconstruct_volume`)."""
        ax = self.axis if axis is None else axis
        arr = np.asarray(array)
        if arr.ndim != 3:
            raise ReconstructionError(f"expected a 3-D image volume, got shape {arr.shape}")
        shape = tuple(s for a, s in enumerate(arr.shape) if a != ax)
        return reconstruct_volume(
            self.model,
            self.corruption(shape, fraction),  # type: ignore[arg-type]
            arr,
            axis=ax,
            seed=seed,
            normalize=self.normalize,
            batch_size=self.batch_size,
            amp=self.amp,
            keep_complex=keep_complex,
        )

    def simulate_kspace(self, kspace: np.ndarray, fraction: float, *, seed: int = 0) -> Reconstruction:
        """Retrospective study of fully sampled k-space (see :func:`simulate_kspace`)."""
        k = _as_kspace(kspace, "kspace")
        return simulate_kspace(
            self.model,
            self.corruption(k.shape[1:], fraction),
            k,
            seed=seed,
            normalize=self.normalize,
            batch_size=self.batch_size,
            amp=self.amp,
        )


# --------------------------------------------------------------------------------------
# inputs


@dataclass
class _Item:
    """One input of a batch (a file, or a DICOM series found in a folder)."""

    label: str
    kind: str  # "nifti", "dicom", "kspace" or "bad"
    paths: tuple[str, ...] = ()
    series_uid: str | None = None
    name: str = ""
    error: str | None = None
    output: Path | None = None


def _is_nifti(name: str) -> bool:
    return name.lower().endswith((".nii", ".nii.gz"))


def _stem(name: str) -> str:
    low = name.lower()
    for suf in (".nii.gz", ".nii", *KSPACE_SUFFIXES, *_DICOM_SUFFIXES):
        if low.endswith(suf):
            return name[: -len(suf)]
    return name


def _is_sidecar(path: Path) -> bool:
    return (
        path.name.lower().endswith(_MASK_SIDECAR)
        and path.with_name(path.name[: -len(_MASK_SIDECAR)] + ".npy").is_file()
    )


def _classify_file(path: Path, *, walked: bool) -> _Item | None:
    """The item for one file, or ``None`` for a file a folder walk skips quietly."""
    from .data.volumes import is_dicom_file

    name = path.name
    low = name.lower()
    if _is_nifti(name):
        return _Item(str(path), "nifti", (str(path),), name=_stem(name))
    if low.endswith(KSPACE_SUFFIXES):
        if walked and _is_sidecar(path):
            return None
        return _Item(str(path), "kspace", (str(path),), name=_stem(name))
    if is_dicom_file(path):
        return _Item(str(path), "dicom", (str(path),), name=_stem(name))
    if low.endswith(_DICOM_SUFFIXES):
        return _Item(
            str(path),
            "bad",
            error=f"{path}: not a DICOM file (no 'DICM' marker at byte 128: truncated, or not DICOM)",
        )
    if walked:
        return None
    return _Item(
        str(path),
        "bad",
        error=f"{path}: unknown input type (expected .nii, .nii.gz, DICOM, .h5, .hdf5, .npy or .npz)",
    )


def _dicom_series_items(files: list[Path]) -> list[_Item]:
    """Group DICOM files by SeriesInstanceUID; unreadable files become bad items."""
    import pydicom

    items: list[_Item] = []
    series: dict[str, list[tuple[Path, Any]]] = {}
    for f in files:
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        except Exception as e:
            msg = " ".join(str(e).split())[:160] or type(e).__name__
            items.append(
                _Item(str(f), "bad", error=f"{f}: cannot read DICOM header (truncated or corrupt?) ({msg})")
            )
            continue
        sop_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
        if sop_class == "1.2.840.10008.1.3.10" or ds.get("Rows") is None:
            continue  # DICOMDIR, reports and other non-image objects
        series.setdefault(str(ds.get("SeriesInstanceUID", "") or ""), []).append((f, ds))
    by_parent: dict[Path, int] = {}
    for members in series.values():
        parent = members[0][0].parent
        by_parent[parent] = by_parent.get(parent, 0) + 1
    from .writers import output_name_safe

    for uid, members in sorted(series.items()):
        paths = tuple(sorted(str(f) for f, _ in members))
        parent = members[0][0].parent
        name = parent.name or "series"
        ds = members[0][1]
        label = str(parent)
        if by_parent[parent] > 1:
            number = ds.get("SeriesNumber")
            tail = str(number) if number not in (None, "") else (uid[-8:] or "series")
            name = f"{name}_{tail}"
            label = f"{parent} [series {uid}]"
        items.append(_Item(label, "dicom", paths, series_uid=uid or None, name=output_name_safe(name)))
    return items


def _collect(inputs: Sequence[str]) -> list[_Item]:
    """Expand files and folders into items (sorted within each folder)."""
    items: list[_Item] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            items.append(_Item(str(p), "bad", error=f"{p}: not found"))
        elif p.is_dir():
            dicoms: list[Path] = []
            found: list[_Item] = []
            from .data.volumes import is_dicom_file

            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for fn in sorted(files):
                    if fn.startswith("."):
                        continue
                    f = Path(root) / fn
                    if not _is_nifti(fn) and not fn.lower().endswith(KSPACE_SUFFIXES) and is_dicom_file(f):
                        dicoms.append(f)
                        continue
                    item = _classify_file(f, walked=True)
                    if item is not None:
                        found.append(item)
            found += _dicom_series_items(dicoms)
            if not found:
                found.append(_Item(str(p), "bad", error=f"{p}: no NIfTI, DICOM or k-space files found"))
            items += found
        else:
            item = _classify_file(p, walked=False)
            if item is not None:
                items.append(item)
    return items


def _output_format(item: _Item, fmt: str) -> str:
    if fmt != "same":
        return fmt
    return "dicom" if item.kind == "dicom" else "nifti"


def _plan_outputs(items: list[_Item], out: Path, fmt: str) -> None:
    """Assign each item its output path; names that collide within the run get ``_2``, ``_3``..."""
    from .writers import output_name_safe

    used: set[str] = set()
    for item in items:
        if item.kind == "bad":
            continue
        base = output_name_safe(item.name) + "_recon"
        kind = _output_format(item, fmt)
        name, n = base, 1
        while name.lower() in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name.lower())
        item.output = out / (name + (".nii.gz" if kind == "nifti" else ""))


# --------------------------------------------------------------------------------------
# the CLI


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors are one line (``error: ...``) with exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mri_n2n.reconstruct`` argument parser."""
    p = _OneLineParser(
        prog="python -m mri_n2n.reconstruct",
        description=(
            "Reconstruct undersampled k-space (fastMRI HDF5, .npy/.npz) with a trained mri_n2n MRI "
            "checkpoint, or run a retrospective study on image volumes (NIfTI, DICOM) with --simulate."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="an MRI checkpoint (.pt) written by the trainer")
    p.add_argument(
        "inputs", nargs="+", help="files and folders (walked): .nii(.gz), DICOM, .h5/.hdf5, .npy, .npz"
    )
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument(
        "--format",
        choices=("same", "nifti", "dicom"),
        default="same",
        help="output format: same (DICOM for DICOM inputs, NIfTI otherwise), nifti or dicom",
    )
    p.add_argument(
        "--simulate",
        type=float,
        metavar="DENSITY",
        help="retrospective study: undersample each slice at this mean density (e.g. 0.1) and report metrics",
    )
    p.add_argument("--seed", type=int, default=None, help="mask seed of --simulate (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=8, help="slices per network call (default 8)")
    p.add_argument(
        "--amp", action=argparse.BooleanOptionalAction, default=None, help="autocast on CUDA (default on)"
    )
    p.add_argument("--figures", action="store_true", help="write figures/<output>.png per volume")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace existing outputs; allow --out inside an input folder",
    )
    p.add_argument("--quiet", action="store_true", help="print errors and the summary only")
    return p


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:600]


def _check_out(out: Path, inputs: Sequence[str], force: bool) -> str | None:
    """Why ``--out`` is refused, or ``None``."""
    if out.exists() and not out.is_dir():
        return f"--out {out} exists and is not a folder"
    if force:
        return None
    o = out.resolve()
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            continue
        r = p.resolve()
        if p.is_dir() and (o == r or r in o.parents):
            return f"--out {out} is inside the input folder {p}; choose another folder (or --force)"
        if p.is_file() and o == r.parent:
            return f"--out {out} is the folder of the input {p}; choose another folder (or --force)"
    return None


_CSV_FIELDS = [
    "input",
    "kind",
    "mode",
    "output",
    "status",
    "error",
    "seconds",
    "shape",
    "sampled_fraction",
    "psnr_zero_filled",
    "ssim_zero_filled",
    "nmse_zero_filled",
    "psnr",
    "ssim",
    "nmse",
    "data_range",
]


def _write_reports(out: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    from .io import atomic_write_json, atomic_write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        flat = {k: v for k, v in r.items() if k != "metrics"}
        flat.update(r.get("metrics") or {})
        flat["shape"] = "x".join(str(s) for s in r["shape"]) if r.get("shape") else ""
        w.writerow(
            {k: (f"{v:.6g}" if isinstance(v, float) else ("" if v is None else v)) for k, v in flat.items()}
        )
    atomic_write_text(out / "report.csv", buf.getvalue())
    atomic_write_json(out / "report.json", {**meta, "inputs": rows})


def _json_safe(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def _process(item: _Item, rec: Reconstructor, args: argparse.Namespace, inputs: set[Path]) -> dict[str, Any]:
    """Reconstruct one item and write its output; returns the report row (raises on failure)."""
    from .data import load_dicom_series, load_volume
    from .writers import write_dicom_series, write_nifti

    assert item.output is not None
    fmt = _output_format(item, args.format)
    dest = item.output
    if dest.resolve() in inputs or (fmt == "dicom" and any(dest.resolve() in p.parents for p in inputs)):
        raise ReconstructionError(f"{item.label}: output {dest} would replace an input; refusing")
    if dest.exists() and not args.force:
        raise ReconstructionError(f"{item.label}: output {dest} exists (pass --force to replace it)")
    simulate = args.simulate
    row: dict[str, Any] = {"kind": item.kind}
    template = None
    positions = None
    header = None
    if item.kind in ("nifti", "dicom"):
        if simulate is None:
            raise ReconstructionError(
                f"{item.label}: an image volume has no undersampling to undo; pass --simulate DENSITY "
                "for a retrospective study, or give k-space data (.h5, .npy, .npz)"
            )
        if item.kind == "dicom":
            vol = load_dicom_series(list(item.paths), series_uid=item.series_uid)
        else:
            vol = load_volume(item.paths[0])
        ax = rec.axis
        if vol.array.shape[ax] < 1 or min(s for a, s in enumerate(vol.array.shape) if a != ax) < 2:
            raise ReconstructionError(
                f"{item.label}: volume of shape {vol.array.shape} has no 2-D slices along axis {ax}"
            )
        result = rec.simulate(vol.array, simulate, seed=args.seed or 0)
        affine = vol.affine
        view_axis = ax
        row["mode"] = "simulate"
        if vol.meta.get("format") == "nifti":
            header = vol.meta.get("header")
        if vol.meta.get("format") == "dicom":
            template = vol.meta.get("dataset")
            positions = vol.meta.get("positions")
        description = f"N2N recon (simulated {simulate:g})"
    else:
        kin = read_kspace_input(item.paths[0])
        affine = kin.affine
        view_axis = None  # k-space slices are shown in their own (row, column) order
        if simulate is not None:
            if not kin.fully_sampled():
                frac = (
                    float(kin.mask.mean())
                    if kin.mask is not None
                    else np.count_nonzero(kin.kspace) / kin.kspace.size
                )
                raise ReconstructionError(
                    f"{item.label}: undersampled k-space (keeps {frac:.0%}): --simulate needs fully sampled "
                    "data; run without --simulate to reconstruct it"
                )
            result = rec.simulate_kspace(kin.kspace, simulate, seed=args.seed or 0)
            row["mode"] = "simulate"
            description = f"N2N recon (simulated {simulate:g})"
        else:
            result = rec.kspace(kin.kspace, kin.mask)
            row["mode"] = "kspace"
            description = "N2N recon"
    comments = (
        f"mri_n2n Noise2Noise reconstruction of {item.label}; checkpoint {Path(str(rec.checkpoint)).name}"
    )
    if fmt == "nifti":
        write_nifti(dest, result.image, affine, header=header, description=description, overwrite=args.force)
    else:
        orig = str(template.get("SeriesDescription", "") or "") if template is not None else ""
        write_dicom_series(
            dest,
            result.image,
            affine,
            template=template,
            positions=positions,
            series_description=f"{orig} {description}".strip(),
            comments=comments,
            overwrite=args.force,
        )
    if args.figures and result.preview:
        from .plots import radiological_view, reconstruction_panel

        pv = result.preview
        if view_axis is not None:  # image volumes: show the slice as a radiologist would
            pv = {k: v if k == "slice" else radiological_view(v, affine, view_axis) for k, v in pv.items()}
        m = result.metrics
        psnrs = {"zero-filled": m["psnr_zero_filled"], "reconstruction": m["psnr"]} if m else None
        reconstruction_panel(
            Path(args.out) / "figures" / f"{dest.name.replace('.nii.gz', '')}.png",
            mask=pv["mask"],
            zero_filled=pv["zero_filled"],
            reconstruction=pv["reconstruction"],
            reference=pv.get("reference"),
            psnrs=psnrs,
            title=f"{Path(item.label).name} slice {pv['slice']}" + (" (volume PSNR)" if m else ""),
        )
    row.update(
        shape=list(result.image.shape),
        sampled_fraction=result.sampled_fraction,
        metrics=_json_safe(result.metrics),
    )
    return row


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: 0 all inputs done, 1 some failed, 2 bad arguments."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)

    def fail(msg: str) -> int:
        print(f"error: {msg}", file=sys.stderr)
        return 2

    if args.batch_size < 1:
        return fail(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.seed is not None and args.simulate is None:
        return fail("--seed only applies to --simulate")
    if args.simulate is not None and not (0.0 < args.simulate <= 1.0):
        return fail(f"--simulate DENSITY must lie in (0, 1], got {args.simulate:g}")
    out = Path(args.out)
    why = _check_out(out, args.inputs, args.force)
    if why:
        return fail(why)
    try:
        rec = Reconstructor.from_checkpoint(
            args.checkpoint, device=args.device, amp=args.amp, batch_size=args.batch_size
        )
    except CheckpointError as e:
        hint = (
            " (reconstruct takes MRI checkpoints; use mri_n2n.denoise for photos)"
            if "'image'" in str(e)
            else ""
        )
        return fail(f"--checkpoint: {_one_line(e)}{hint}")
    except ValueError as e:
        return fail(_one_line(e))
    if args.simulate is not None:
        try:
            rec.corruption((256, 256), args.simulate)
        except ValueError as e:
            return fail(f"--simulate {args.simulate:g}: {_one_line(e)}")

    items = _collect(args.inputs)
    _plan_outputs(items, out, args.format)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return fail(f"--out {out}: cannot create the folder ({_one_line(e)})")
    input_files = {Path(p).resolve() for it in items for p in it.paths}
    rows: list[dict[str, Any]] = []
    failures = 0
    interrupted = False
    try:
        for n, item in enumerate(items, 1):
            t0 = time.perf_counter()
            row: dict[str, Any] = {
                "input": item.label,
                "kind": item.kind,
                "mode": None,
                "output": str(item.output) if item.output else None,
                "status": "ok",
                "error": None,
                "seconds": 0.0,
                "shape": None,
                "sampled_fraction": None,
                "metrics": {},
            }
            try:
                if item.kind == "bad":
                    raise ReconstructionError(item.error or f"{item.label}: unusable input")
                row.update(_process(item, rec, args, input_files))
            except Exception as e:  # one bad input must not stop the batch
                failures += 1
                msg = _one_line(e)
                if item.label not in msg:
                    msg = f"{item.label}: {msg}"
                if not isinstance(e, (ValueError, OSError)):
                    msg = f"{msg} ({type(e).__name__})"
                row.update(status="failed", error=msg, output=None)
                print(f"error: {msg}", file=sys.stderr, flush=True)
            row["seconds"] = round(time.perf_counter() - t0, 3)
            rows.append(row)
            if row["status"] == "ok" and not args.quiet:
                m = row.get("metrics") or {}
                extra = ""
                if m.get("psnr") is not None and m.get("psnr_zero_filled") is not None:
                    extra = f"; PSNR zero-filled {m['psnr_zero_filled']:.2f} -> {m['psnr']:.2f} dB"
                print(
                    f"[{n}/{len(items)}] {item.label} -> {row['output']} ({row['seconds']:.1f} s{extra})",
                    flush=True,
                )
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: the report lists the inputs done so far", file=sys.stderr, flush=True)
    meta = {
        "checkpoint": str(args.checkpoint),
        "device": str(rec.device),
        "format": args.format,
        "simulate": args.simulate,
        "seed": (args.seed or 0) if args.simulate is not None else None,
        "batch_size": args.batch_size,
        "failed": failures,
        "interrupted": interrupted,
    }
    try:
        _write_reports(out, rows, meta)
    except OSError as e:
        print(f"error: cannot write the report in {out}: {_one_line(e)}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(
            f"{len(rows) - failures} reconstructed, {failures} failed; report: {out / 'report.csv'}",
            flush=True,
        )
    if interrupted:
        return 130
    return 1 if failures else 0


# --------------------------------------------------------------------------------------
# benchmark


def _default_checkpoint() -> Path | None:
    """The README's quick-start run (``runs/mni152``), else the trainer's default ``runs/latest``."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        for run in ("mni152", "latest"):
            p = base / "runs" / run / "checkpoints" / "best.pt"
            if p.is_file():
                return p
    return None


def bench_reconstruct(
    checkpoint: str | os.PathLike | None = None,
    *,
    size: int = 256,
    slices: int = 32,
    batch_size: int = 8,
    device: str = "cpu",
    fraction: float = 0.1,
    threads: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Reconstruction speed: slices per second for a ``size x size x slices`` k-space volume.

    The volume is a synthetic phantom undersampled with the checkpoint's density at
    ``fraction``; the timed call is :meth:`Reconstructor.kspace` (zero-filling, normalisation,
    network, data consistency, magnitude), after one warm-up batch.

    Args:
        checkpoint: an MRI checkpoint; default ``runs/mni152/checkpoints/best.pt`` (or
            ``runs/latest/...``) when present, else an untrained model of the CPU preset (the same
            speed).
        size: slice side.
        slices: number of slices.
        batch_size: slices per network call.
        device: ``cpu``, ``cuda`` or ``auto``.
        fraction: sampling density of the test data.
        threads: ``torch.set_num_threads`` during the run (default: unchanged).
        seed: mask seed.

    Returns:
        ``{"name", "slices_per_s", "seconds", "slices", "shape", "batch_size", "device",
        "threads", "checkpoint", "model"}``.
    """
    from .data.synthetic import phantom_volume

    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        ck = Path(checkpoint) if checkpoint is not None else _default_checkpoint()
        if ck is not None:
            rec = Reconstructor.from_checkpoint(ck, device=device, batch_size=batch_size)
            label = str(ck)
        else:
            from .config import Config
            from .models import build_model

            cfg = Config(preset="cpu", model="unet", size=128)
            model = build_model("unet", in_channels=1, out_channels=1, base=cfg.base, depth=cfg.depth)
            rec = Reconstructor(model, cfg.to_dict(), device=device, batch_size=batch_size)
            label = "untrained cpu-preset model (speed only)"
        vol = phantom_volume((size, size, slices), content=(0, slices), seed=seed, peak=1000.0)
        images = np.moveaxis(vol, 2, 0)
        corruption = rec.corruption((size, size), fraction)
        masks = _simulated_masks(corruption, range(slices), seed).numpy()
        kspace = (fft2c(torch.from_numpy(np.ascontiguousarray(images))).numpy() * masks).astype(np.complex64)
        rec.kspace(kspace[: min(batch_size, slices)], masks[: min(batch_size, slices)])  # warm-up
        if rec.device.type == "cuda":
            torch.cuda.synchronize(rec.device)
        t0 = time.perf_counter()
        rec.kspace(kspace, masks)
        if rec.device.type == "cuda":
            torch.cuda.synchronize(rec.device)
        seconds = time.perf_counter() - t0
        spec = getattr(rec.model, "spec", {})
        return {
            "name": "reconstruct",
            "slices_per_s": slices / seconds,
            "seconds": seconds,
            "slices": slices,
            "shape": [size, size, slices],
            "batch_size": batch_size,
            "device": str(rec.device),
            "threads": torch.get_num_threads(),
            "checkpoint": label,
            "model": spec.get("name") if isinstance(spec, dict) else None,
        }
    finally:
        torch.set_num_threads(old_threads)


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
