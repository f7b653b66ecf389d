"""k-space files: fastMRI-style HDF5 (``.h5``/``.hdf5``), NumPy ``.npy`` (with a ``_mask.npy``
sidecar) and ``.npz``.

fastMRI single-coil layout: dataset ``kspace`` complex ``(slices, ky, kx)`` (a single 2-D
slice is accepted) with DC at ``(ky // 2, kx // 2)`` (so :func:`mri_n2n.fft.ifft2c` gives the
image); optional ``mask`` (dataset or attribute; fastMRI: 1-D over ``kx``); optional
``reconstruction_esc``/``reconstruction_rss`` references, attribute ``max``, and an
``ismrmrd_header`` (voxel sizes). Every failure raises :class:`~mri_n2n.io.base.VolumeError`
naming the file.
"""

from __future__ import annotations

import contextlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..masks import MASK_LAW_ATTR
from .base import VolumeError

__all__ = [
    "KSPACE_SUFFIXES",
    "MASK_LAW_ATTR",
    "HDF5_SUFFIXES",
    "as_kspace",
    "as_complex",
    "expand_mask",
    "read_kspace_h5",
    "read_kspace_reference",
    "read_kspace_input",
    "KSpaceInput",
    "ismrmrd_recon_shape",
    "kspace_affine",
    "find_kspace_files",
    "open_h5",
    "KSPACE_AXES",
    "parse_layout",
    "to_multicoil",
    "h5_attr_value",
    "ismrmrd_spaces",
    "ismrmrd_voxel_size",
    "load_npy",
]

#: File endings read as k-space (``reconstruct`` inputs).
KSPACE_SUFFIXES = (".h5", ".hdf5", ".npy", ".npz")
#: The HDF5 subset: the files ``--dataset kspace`` trains on.
HDF5_SUFFIXES = (".h5", ".hdf5")
MASK_SIDECAR = "_mask.npy"


def h5_attr_value(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value: bytes decoded (UTF-8), numpy scalars and
    arrays as Python numbers and lists (string arrays element by element)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [h5_attr_value(v) for v in value.tolist()] if value.dtype.kind in "SO" else value.tolist()
    return value


def as_complex(arr: np.ndarray, where: str) -> np.ndarray:
    """complex64 k-space from a complex array, a compound ``(real, imag)`` array or a float
    array with a trailing ``(real, imag)`` axis; raises :class:`VolumeError` otherwise."""
    a = np.asarray(arr)
    if np.iscomplexobj(a):
        return a.astype(np.complex64, copy=False)
    if a.dtype.names and len(a.dtype.names) == 2:  # compound (real, imag)
        re_, im_ = a.dtype.names
        return (a[re_] + 1j * a[im_]).astype(np.complex64)
    if a.ndim >= 3 and a.shape[-1] == 2 and a.dtype.kind == "f":  # trailing (real, imag)
        return (a[..., 0] + 1j * a[..., 1]).astype(np.complex64)
    raise VolumeError(
        f"{where}: k-space must be complex (slices, ky, kx) or (ky, kx); got a "
        f"{a.dtype} array of shape {tuple(a.shape)}"
    )


def as_kspace(arr: np.ndarray, where: str) -> np.ndarray:
    """Validate and convert to a contiguous complex64 volume ``(S, H, W)`` (2-D: one slice)."""
    a = as_complex(arr, where)
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 4:
        raise VolumeError(
            f"{where}: 4-D k-space {tuple(a.shape)} is multi-coil; this single-coil reader takes "
            "(slices, ky, kx): read it with mri_n2n.io.read_raw(path, layout='slices,coils,ky,kx')"
        )
    if a.ndim != 3:
        raise VolumeError(
            f"{where}: k-space must be 2-D (ky, kx) or 3-D (slices, ky, kx), got shape {tuple(a.shape)}"
        )
    if a.size == 0 or min(a.shape) < 1:
        raise VolumeError(f"{where}: empty k-space (shape {tuple(a.shape)})")
    if a.shape[1] < 2 or a.shape[2] < 2:
        raise VolumeError(f"{where}: k-space slices of shape {a.shape[1:]} are too small")
    a = np.ascontiguousarray(a, dtype=np.complex64)
    if not np.isfinite(a).all():
        raise VolumeError(f"{where}: k-space contains NaN or infinite values")
    return a


#: The axes of a multi-coil k-space array, in the order every multi-coil reader returns them.
KSPACE_AXES = ("slices", "coils", "ky", "kx")


def parse_layout(layout: str | Sequence[str], where: str) -> tuple[str, ...]:
    """The axis names of a k-space array: ``"coils,ky,kx"`` -> ``("coils", "ky", "kx")``.

    ``slices`` and ``coils`` (each at most once, in any order) followed by ``ky, kx``; raises
    :class:`VolumeError` (naming ``where``) for anything else.
    """
    parts = layout.split(",") if isinstance(layout, str) else list(layout)
    names = tuple(str(n).strip().lower() for n in parts)
    lead = names[:-2]
    if names[-2:] != ("ky", "kx") or len(set(lead)) != len(lead) or not set(lead) <= {"slices", "coils"}:
        raise VolumeError(
            f"{where}: layout {layout!r} is not understood (use 'ky,kx', 'slices,ky,kx', 'coils,ky,kx' "
            "or 'slices,coils,ky,kx')"
        )
    return names


def to_multicoil(arr: np.ndarray, layout: str | Sequence[str], where: str) -> np.ndarray:
    """``arr`` with axes named by ``layout`` as a ``(slices, coils, ky, kx)`` view (missing axes
    of length 1); raises :class:`VolumeError` when the number of axes does not match."""
    names = parse_layout(layout, where)
    a = np.asarray(arr)
    if a.ndim != len(names):
        raise VolumeError(
            f"{where}: layout {','.join(names)!r} names {len(names)} axes but the k-space has shape "
            f"{tuple(a.shape)}"
        )
    for axis in ("coils", "slices"):
        if axis not in names:
            a, names = a[None], (axis, *names)
    return np.transpose(a, [names.index(n) for n in KSPACE_AXES])


def _single_coil(arr: np.ndarray, layout: str | Sequence[str] | None, where: str) -> np.ndarray:
    """Apply an explicit ``layout`` for the single-coil reader: ``(slices, ky, kx)``; several coils
    are refused with a pointer to the multi-coil reader."""
    if layout is None:
        return arr
    k = to_multicoil(as_complex(arr, where), layout, where)
    if k.shape[1] != 1:
        raise VolumeError(
            f"{where}: {k.shape[1]} coils (layout {layout!r}); this single-coil reader does not combine "
            "coils: read it with mri_n2n.io.read_raw(path, layout=...)"
        )
    return k[:, 0]


def expand_mask(mask: Any, shape: tuple[int, int, int], where: str) -> np.ndarray:
    """A bool mask broadcast (as a view) to ``(S, H, W)``: 1-D masks run over ``kx``."""
    m = np.asarray(mask)
    if m.dtype == object or m.dtype.kind not in "biuf":
        raise VolumeError(f"{where}: the mask must be numeric, got dtype {m.dtype}")
    m = m > 0
    s, h, w = shape
    if m.ndim == 1:
        if m.shape[0] != w:
            raise VolumeError(
                f"{where}: a 1-D mask must have one entry per kx column ({w}), got {m.shape[0]}"
            )
        m = m[None, None, :]
    elif m.ndim == 2:
        if m.shape != (h, w):
            raise VolumeError(
                f"{where}: a 2-D mask must have shape (ky, kx) = {(h, w)}, got {m.shape}"
            )
        m = m[None]
    elif m.ndim != 3:
        raise VolumeError(f"{where}: mask of shape {m.shape} does not match k-space {shape}")
    try:
        out = np.broadcast_to(m, shape)
    except ValueError:
        raise VolumeError(
            f"{where}: mask of shape {m.shape} does not match k-space {shape}"
        ) from None
    if not out.any():
        raise VolumeError(f"{where}: the mask samples nothing")
    return out


def open_h5(path: str | os.PathLike) -> Any:
    p = Path(path)
    if not p.exists():
        raise VolumeError(f"{p}: file not found")
    try:
        return h5py.File(p, "r")
    except Exception as exc:
        raise VolumeError(f"{p}: not a readable HDF5 file ({type(exc).__name__}: {exc})") from None


def _check_layout(f: Any, where: str) -> Any:
    if "kspace" not in f:
        raise VolumeError(f"{where}: no 'kspace' dataset (have: {', '.join(sorted(f.keys())) or 'nothing'})")
    d = f["kspace"]
    shape = d.shape
    ndim = len(shape) - (1 if (d.dtype.kind == "f" and shape and shape[-1] == 2) else 0)
    if ndim == 4:
        raise VolumeError(
            f"{where}: multi-coil k-space {tuple(shape)} (slices, coils, ky, kx): this single-coil reader "
            "does not combine coils; read it with mri_n2n.io.read_fastmri_multicoil (or read_raw)"
        )
    if ndim not in (2, 3):
        raise VolumeError(f"{where}: 'kspace' has shape {tuple(shape)}; expected (slices, ky, kx)")
    return d


def read_kspace_h5(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Read a fastMRI-style single-coil file.

    Returns:
        ``(kspace, mask, attrs)``: complex64 ``(slices, ky, kx)``; the ``mask`` dataset as a
        float32 array (as stored, e.g. ``(kx,)``) or ``None``; the file attributes as Python
        values.

    Raises:
        VolumeError: missing/unreadable file, no ``kspace`` dataset, multi-coil or non-complex
            data, truncated data, non-finite values.
    """
    where = str(path)
    with open_h5(path) as f:
        d = _check_layout(f, where)
        try:
            k = as_complex(np.asarray(d[...]), where)
            mask = np.asarray(f["mask"][...], dtype=np.float32) if "mask" in f else None
            attrs = {str(key): h5_attr_value(v) for key, v in f.attrs.items()}
        except VolumeError:
            raise
        except Exception as exc:
            raise VolumeError(
                f"{where}: cannot read k-space (truncated file?) ({type(exc).__name__}: {exc})"
            ) from None
    if k.ndim == 2:
        k = k[None]
    if not np.isfinite(k).all():
        raise VolumeError(f"{where}: k-space contains NaN or infinite values")
    return k, mask, attrs


def read_kspace_reference(path: str | os.PathLike, name: str | None = None) -> np.ndarray | None:
    """The reference image: dataset ``name``, else ``reconstruction_esc``/``_rss``; None if absent."""
    where = str(path)
    with open_h5(path) as f:
        names = [name] if name else ["reconstruction_esc", "reconstruction_rss"]
        for n in names:
            if n in f:
                return np.asarray(f[n][...], dtype=np.float32)
    if name:
        raise VolumeError(f"{where}: no dataset {name!r}")
    return None


def find_kspace_files(folder: str | os.PathLike) -> list[Path]:
    """``.h5``/``.hdf5`` files under ``folder`` (recursive, sorted; a single file is accepted)."""
    p = Path(folder)
    if p.is_file():
        return [p]
    out = []
    for root, dirs, files in os.walk(p):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [
            Path(root) / fn
            for fn in sorted(files)
            if not fn.startswith(".") and fn.lower().endswith(HDF5_SUFFIXES)
        ]
    return sorted(out)


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


def ismrmrd_spaces(xml: Any) -> dict[str, tuple[float, float, float]]:
    """``encoded``/``recon`` matrix sizes and fields of view (``*_fov``, mm) from an ISMRMRD XML
    header (text, bytes or a numpy array holding either); the keys a header lacks are absent
    (empty for a header that does not parse)."""
    if isinstance(xml, np.ndarray):
        xml = xml.item() if xml.shape == () else bytes(xml.tobytes())
    if isinstance(xml, bytes):
        xml = xml.decode("utf-8", "replace")
    try:
        root = ET.fromstring(str(xml))
    except ET.ParseError:
        return {}

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

    out: dict[str, tuple[float, float, float]] = {}
    enc = child(root, "encoding")
    for key, tag in (("encoded", "encodedSpace"), ("recon", "reconSpace")):
        space = child(enc, tag)
        matrix, fov = xyz(child(space, "matrixSize")), xyz(child(space, "fieldOfView_mm"))
        if matrix is not None and min(matrix[:2]) > 0:
            out[key] = matrix
            if fov is not None:
                out[f"{key}_fov"] = fov
    return out


def ismrmrd_voxel_size(xml: Any, hw: tuple[int, int]) -> tuple[float, float, float] | None:
    """Voxel sizes (mm) for image axes ``(ky, kx)`` of k-space slices ``hw`` and for the slices,
    from an ISMRMRD XML header's encoded space; ``None`` when the header does not say or its
    matrix is not ``hw`` (either way round)."""
    spaces = ismrmrd_spaces(xml)
    matrix, fov = spaces.get("encoded"), spaces.get("encoded_fov")
    if matrix is None or fov is None:
        return None
    sx, sy, sz = fov[0] / matrix[0], fov[1] / matrix[1], fov[2] / max(matrix[2], 1.0)
    if (int(matrix[0]), int(matrix[1])) == hw:
        return sx, sy, sz
    if (int(matrix[1]), int(matrix[0])) == hw:
        return sy, sx, sz
    return None


def ismrmrd_recon_shape(xml: Any, hw: tuple[int, int]) -> tuple[int, int] | None:
    """The reconstruction matrix ``(rows, cols)`` for k-space slices ``hw`` laid out like the
    encoded matrix (fastMRI: encoded 640 x 368 readout-oversampled, reconstructed 320 x 320)."""
    spaces = ismrmrd_spaces(xml)
    enc, rec = spaces.get("encoded"), spaces.get("recon")
    if enc is None or rec is None:
        return None
    if (int(enc[0]), int(enc[1])) == hw:
        return int(rec[0]), int(rec[1])
    if (int(enc[1]), int(enc[0])) == hw:
        return int(rec[1]), int(rec[0])
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
        mask_law: the law the mask was drawn from, as the file records it (the JSON text of
            :meth:`mri_n2n.masks.MaskFamily.describe` in the attribute
            :data:`mri_n2n.masks.MASK_LAW_ATTR`), else ``None``.
        reference: the file's reference magnitude ``(slices, rows, cols)``
            (``reconstruction_esc``, else ``reconstruction_rss``), or ``None``.
        max_value: the file's ``max`` attribute (fastMRI's PSNR/SSIM data range), or ``None``.
        recon_shape: the reconstruction matrix ``(rows, cols)`` (the reference's shape, else the
            ISMRMRD header's ``reconSpace``) when it differs from the k-space grid, else ``None``.
    """

    kspace: np.ndarray
    mask: np.ndarray | None
    mask_source: str
    voxel_size: tuple[float, float, float] | None
    path: str
    mask_law: str | None = None
    reference: np.ndarray | None = None
    max_value: float | None = None
    recon_shape: tuple[int, int] | None = None

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

    @property
    def recorded_mask(self) -> np.ndarray | None:
        """The mask as the file records it (:attr:`mask`), ``None`` when it records none (then the
        non-zero pattern of the k-space is what was sampled, :meth:`sampled`)."""
        return self.mask

    def sampled(self) -> np.ndarray:
        """Bool ``(slices, ky, kx)``: the mask, or (none recorded) the non-zero pattern of the
        k-space (as :meth:`mri_n2n.io.multicoil.MultiCoilKSpace.sampled`)."""
        if self.mask is not None:
            return np.asarray(self.mask, bool)
        return self.kspace != 0


def load_npy(path: Path) -> Any:
    """``np.load`` of a ``.npy`` / ``.npz`` file without pickles (an ``.npz`` is returned open).

    Raises:
        VolumeError: the file holds pickled objects (refused) or is not a readable NumPy file.
    """
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise VolumeError(f"{path}: holds pickled Python objects (refused)") from None
        raise VolumeError(f"{path}: not a readable NumPy file ({e})") from None
    except (OSError, EOFError) as e:
        raise VolumeError(f"{path}: not a readable NumPy file ({type(e).__name__}: {e})") from None


def read_kspace_input(path: str | os.PathLike, layout: str | None = None) -> KSpaceInput:
    """Read a k-space input (``.h5``/``.hdf5``, ``.npy`` with an optional ``_mask.npy`` sidecar,
    or ``.npz`` with ``kspace`` and optional ``mask``/``voxel_size``/``layout``); see the module
    docstring.

    This reader is single-coil: without ``layout`` a 3-D array is ``(slices, ky, kx)`` (the
    fastMRI single-coil convention, unchanged) and a 4-D one is refused with a pointer to
    :func:`mri_n2n.io.read_raw`. ``layout`` (e.g. ``"coils,ky,kx"``, see :func:`parse_layout`)
    names the axes explicitly; a layout with more than one coil is refused the same way.

    Raises:
        VolumeError: unreadable file, missing ``kspace``, real or wrongly shaped data,
            a mask that does not match, non-finite values (the message names the file).
    """
    p = Path(path)
    where = str(p)
    low = p.name.lower()
    voxel: tuple[float, float, float] | None = None
    extra: dict[str, Any] = {}
    if low.endswith((".h5", ".hdf5")):
        k, mask, attrs = read_kspace_h5(p)
        k = as_kspace(_single_coil(k, layout, where), where)
        source = "dataset"
        if mask is None and attrs.get("mask") is not None:
            mask, source = np.asarray(attrs["mask"]), "attribute"
        header = None
        with contextlib.suppress(Exception), h5py.File(p, "r") as f:
            if "ismrmrd_header" in f:
                header = f["ismrmrd_header"][()]
        if header is not None:
            voxel = ismrmrd_voxel_size(header, k.shape[1:])
        if voxel is None and attrs.get("voxel_size") is not None:
            with contextlib.suppress(TypeError, ValueError):
                vs = [float(v) for v in np.ravel(attrs["voxel_size"])]
                voxel = tuple((vs + [1.0, 1.0, 1.0])[:3])  # type: ignore[assignment]
        law = attrs.get(MASK_LAW_ATTR)
        extra["mask_law"] = str(law) if law is not None else None
        ref = read_kspace_reference(p)
        if ref is not None:
            ref = ref[None] if ref.ndim == 2 else ref
            if ref.ndim != 3 or ref.shape[0] != k.shape[0]:
                raise VolumeError(
                    f"{where}: reference of shape {tuple(ref.shape)} does not match the "
                    f"{k.shape[0]} k-space slices"
                )
            extra["reference"] = ref
        with contextlib.suppress(TypeError, ValueError):
            mx = float(attrs["max"]) if attrs.get("max") is not None else None
            extra["max_value"] = mx if mx is not None and np.isfinite(mx) and mx > 0 else None
        rshape = tuple(ref.shape[1:]) if ref is not None else None
        if rshape is None and header is not None:
            rshape = ismrmrd_recon_shape(header, k.shape[1:])
        if rshape is not None and tuple(rshape) != tuple(k.shape[1:]):
            extra["recon_shape"] = (int(rshape[0]), int(rshape[1]))
    elif low.endswith(".npz"):
        data = load_npy(p)
        with data:
            if "kspace" not in data.files:
                raise VolumeError(
                    f"{where}: no 'kspace' array (have: {', '.join(data.files) or 'nothing'})"
                )
            if layout is None and "layout" in data.files:
                layout = str(data["layout"])
            k = as_kspace(_single_coil(data["kspace"], layout, where), where)
            mask = data["mask"] if "mask" in data.files else None
            if "voxel_size" in data.files:
                vs = [float(v) for v in np.ravel(data["voxel_size"])]
                voxel = tuple((vs + [1.0, 1.0, 1.0])[:3])  # type: ignore[assignment]
        source = "npz"
    elif low.endswith(".npy"):
        arr = load_npy(p)
        if not isinstance(arr, np.ndarray):
            raise VolumeError(f"{where}: not a single NumPy array")
        k = as_kspace(_single_coil(arr, layout, where), where)
        side = p.with_name(p.name[: -len(".npy")] + MASK_SIDECAR)
        mask = load_npy(side) if side.is_file() else None
        source = "sidecar"
    else:
        raise VolumeError(f"{where}: not a k-space file (expected {', '.join(KSPACE_SUFFIXES)})")
    if mask is None:
        return KSpaceInput(k, None, "nonzero", voxel, where, **extra)
    return KSpaceInput(k, expand_mask(mask, k.shape, where), source, voxel, where, **extra)


