"""Multi-coil and raw scanner k-space: fastMRI multi-coil HDF5, ISMRMRD (MRD) HDF5 and Siemens
twix ``.dat``, each read to one :class:`MultiCoilKSpace`.

Every reader returns complex64 ``(slices, coils, ky, kx)`` laid out as fastMRI stores it: rows
(``ky`` in this package's names) run along the readout, columns (``kx``) are the
phase-encoding lines, DC sits at ``(ky // 2, kx // 2)`` so :func:`mri_n2n.fft.ifft2c` gives the
coil images. The readout oversampling is kept (fastMRI knee: 640 rows for a 320-row image):
``recon_shape`` is the matrix to centre-crop the images to. ``mask`` marks what was acquired
(from the file's mask, or from which readouts the raw file holds); lines not acquired (partial
Fourier, undersampling) are zero.

Layout is explicit: a 3-D array is never silently read as slices or as coils. fastMRI files
(HDF5 ``kspace`` with an ``ismrmrd_header`` or a ``reconstruction_*`` reference) are read by
their convention; an ``.npy``/``.npz`` array of more than two axes needs ``layout`` (see
:func:`~mri_n2n.io.kspace.parse_layout`).

ISMRMRD files whose image readouts carry trajectories (radial, spiral) are the exception: they
come back as :class:`~mri_n2n.io.noncartesian.NonCartesianKSpace` (readouts and their
trajectory, no grid).

Raw ISMRMRD acquisitions are read with h5py (the HDF5 layout of the ISMRMRD ``ismrmrd``
package); Siemens twix needs ``twixtools`` (``pip install mri-n2n[raw]``). Every failure
raises one :class:`~mri_n2n.io.base.VolumeError` line naming the file; nothing is half-read.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .base import VolumeError, describe
from .kspace import (
    MASK_SIDECAR,
    as_complex,
    h5_attr_value,
    ismrmrd_recon_shape,
    ismrmrd_spaces,
    ismrmrd_voxel_size,
    load_npy,
    open_h5,
    to_multicoil,
)
from .mrd import ISMRMRD_FLAGS, ismrmrd_xml_text, read_ismrmrd
from .multicoil import RAW_INSTALL, MultiCoilKSpace, h5_errors, mask3d, positive_float, validate_multicoil
from .noncartesian import NonCartesianKSpace
from .twix import read_twix

__all__ = [
    "MultiCoilKSpace",
    "NonCartesianKSpace",
    "RAW_SUFFIXES",
    "RAW_INSTALL",
    "ISMRMRD_FLAGS",
    "read_raw",
    "read_fastmri_multicoil",
    "read_ismrmrd",
    "read_twix",
]

#: File endings :func:`read_raw` reads (HDF5 is also recognised by its signature).
RAW_SUFFIXES = (".h5", ".hdf5", ".mrd", ".dat", ".npy", ".npz")

# ----------------------------------------------------------------------------- fastMRI


def _layout_attr(f: Any) -> str | None:
    for obj in (f["kspace"], f):
        if "layout" in obj.attrs:
            return str(h5_attr_value(obj.attrs["layout"]))
    return None


def _read_kspace_hdf5(path: Path, layout: str | None, *, multicoil: bool) -> MultiCoilKSpace:
    """A fastMRI-style HDF5 file (dataset ``kspace``) as :class:`MultiCoilKSpace`.

    ``multicoil``: a 4-D ``kspace`` is fastMRI multi-coil ``(slices, coils, ky, kx)`` even without
    fastMRI's other datasets (:func:`read_fastmri_multicoil`); otherwise (``read_raw``) that, or
    a 3-D single-coil ``(slices, ky, kx)``, needs a fastMRI marker (``ismrmrd_header``, a
    ``reconstruction_*`` reference) or a ``layout`` (argument or attribute).
    """
    where = str(path)
    with h5_errors(where), open_h5(path) as f:
        if "kspace" not in f:
            raise VolumeError(
                f"{where}: no 'kspace' dataset (have: {', '.join(sorted(f.keys())) or 'nothing'})"
            )
        d = f["kspace"]
        ndim = d.ndim - (1 if (d.dtype.kind == "f" and d.shape and d.shape[-1] == 2) else 0)
        marked = any(n in f for n in ("ismrmrd_header", "reconstruction_rss", "reconstruction_esc"))
        layout = layout or _layout_attr(f)
        if layout is None:
            if ndim == 4 and (multicoil or marked):
                layout = "slices,coils,ky,kx"
            elif multicoil:
                raise VolumeError(
                    f"{where}: 'kspace' {tuple(d.shape)} is not multi-coil (slices, coils, ky, kx); read a "
                    "single-coil file with read_kspace_input, or use read_raw(path, layout=...)"
                )
            elif ndim == 3 and marked:
                layout = "slices,ky,kx"
            elif ndim == 2:
                layout = "ky,kx"
            elif ndim == 3:
                raise VolumeError(
                    f"{where}: 3-D 'kspace' {tuple(d.shape)} is ambiguous: (slices, ky, kx) single-coil "
                    "or (coils, ky, kx) one slice; pass layout='slices,ky,kx' or layout='coils,ky,kx'"
                )
            elif ndim == 4:  # the shape fits, the reading is not certain: say what would settle it
                raise VolumeError(
                    f"{where}: 4-D 'kspace' {tuple(d.shape)} has no fastMRI marker (an 'ismrmrd_header' "
                    "dataset or a 'reconstruction_rss'/'reconstruction_esc' reference), so its axes are "
                    "not known; pass layout='slices,coils,ky,kx' (or 'coils,slices,ky,kx'), set a 'layout' "
                    "attribute, or read it with read_fastmri_multicoil"
                )
            else:
                raise VolumeError(
                    f"{where}: {ndim}-D 'kspace' {tuple(d.shape)}: expected (ky, kx), (slices, ky, kx) or "
                    "(slices, coils, ky, kx)"
                )
        try:
            k = to_multicoil(as_complex(np.asarray(d[...]), where), layout, where)
            mask = f["mask"][...] if "mask" in f else f.attrs.get("mask")
            ref = None
            for name in ("reconstruction_rss", "reconstruction_esc"):
                if name in f:
                    ref = np.asarray(f[name][...], dtype=np.float32)
                    break
            header = f["ismrmrd_header"][()] if "ismrmrd_header" in f else None
            attrs = {str(key): h5_attr_value(v) for key, v in f.attrs.items() if key != "mask"}
        except VolumeError:
            raise
        except Exception as exc:
            raise VolumeError(f"{where}: cannot read k-space (truncated file?) ({describe(exc)})") from None
    s, c, h, w = k.shape
    if ref is not None and ref.ndim == 2:
        ref = ref[None]
    if ref is not None and ref.ndim != 3:
        raise VolumeError(f"{where}: reference of shape {tuple(ref.shape)} is not (slices, rows, cols)")
    spaces = ismrmrd_spaces(header) if header is not None else {}
    rshape = tuple(ref.shape[1:]) if ref is not None else None
    if rshape is None and header is not None:
        rshape = ismrmrd_recon_shape(header, (h, w))
    voxel = ismrmrd_voxel_size(header, (h, w)) if header is not None else None
    if voxel is None and attrs.get("voxel_size") is not None:
        with contextlib.suppress(TypeError, ValueError):
            vs = [float(v) for v in np.ravel(attrs["voxel_size"])]
            voxel = tuple((vs + [1.0, 1.0, 1.0])[:3])  # type: ignore[assignment]
    recon = (int(rshape[0]), int(rshape[1])) if rshape is not None else (h, w)
    meta: dict[str, Any] = {"attrs": attrs, "readout_oversampling": h / recon[0], "layout": layout}
    if header is not None:
        meta["ismrmrd_header"] = ismrmrd_xml_text(header)
    return validate_multicoil(
        MultiCoilKSpace(
            kspace=k,
            mask=mask3d(mask, (s, h, w), where) if mask is not None else None,
            reference=ref,
            recon_shape=recon,
            voxel_size=voxel,
            encoded_fov=spaces.get("encoded_fov"),
            max_value=positive_float(attrs.get("max")),
            source="fastmri" if c > 1 or ndim == 4 else "fastmri-singlecoil",
            path=where,
            meta=meta,
        )
    )


def read_fastmri_multicoil(path: str | os.PathLike) -> MultiCoilKSpace:
    """Read a fastMRI multi-coil file.

    Datasets: ``kspace`` complex ``(slices, coils, ky, kx)`` (rows: readout), optional
    ``reconstruction_rss`` (the reference), ``ismrmrd_header`` (encoded/recon matrices and
    fields of view: ``recon_shape``, ``voxel_size``, ``encoded_fov``), ``mask`` (dataset or
    attribute, 1-D over ``kx``) and attribute ``max``.

    Raises:
        VolumeError: missing/unreadable file, no or non-4-D ``kspace`` (a 3-D single-coil file
            is pointed to :func:`~mri_n2n.io.kspace.read_kspace_input`), a mask or reference that
            does not match, non-finite values.
    """
    return _read_kspace_hdf5(Path(path), None, multicoil=True)


# ----------------------------------------------------------------------------- dispatch


def _read_array(path: Path, layout: str | None) -> MultiCoilKSpace:
    """``.npy`` (``_mask.npy`` sidecar) or ``.npz`` (``kspace``, ``mask``, ``voxel_size``,
    ``layout``): arrays of more than two axes need a layout."""
    where = str(path)
    voxel = None
    if path.name.lower().endswith(".npz"):
        data = load_npy(path)
        with data:
            if "kspace" not in data.files:
                raise VolumeError(f"{where}: no 'kspace' array (have: {', '.join(data.files) or 'nothing'})")
            arr = data["kspace"]
            mask = data["mask"] if "mask" in data.files else None
            if layout is None and "layout" in data.files:
                layout = str(data["layout"])
            if "voxel_size" in data.files:
                vs = [float(v) for v in np.ravel(data["voxel_size"])]
                voxel = tuple((vs + [1.0, 1.0, 1.0])[:3])
        source = "npz"
    else:
        arr = load_npy(path)
        side = path.with_name(path.name[: -len(".npy")] + MASK_SIDECAR)
        mask = load_npy(side) if side.is_file() else None
        source = "npy"
    if not isinstance(arr, np.ndarray):
        raise VolumeError(f"{where}: not a single NumPy array")
    k = as_complex(arr, where)
    if layout is None and k.ndim == 2:
        layout = "ky,kx"
    if layout is None:
        readings = (
            "(slices, ky, kx) single-coil or (coils, ky, kx) one slice; pass layout='slices,ky,kx' or "
            "layout='coils,ky,kx'"
            if k.ndim == 3
            else "(slices, coils, ky, kx) or (coils, slices, ky, kx); pass layout='slices,coils,ky,kx' or "
            "layout='coils,slices,ky,kx'"
        )
        raise VolumeError(f"{where}: {k.ndim}-D k-space {tuple(k.shape)} is ambiguous: {readings}")
    k = to_multicoil(k, layout, where)
    s, _, h, w = k.shape
    return validate_multicoil(
        MultiCoilKSpace(
            kspace=k,
            mask=mask3d(mask, (s, h, w), where) if mask is not None else None,
            reference=None,
            recon_shape=(h, w),
            voxel_size=voxel,  # type: ignore[arg-type]
            encoded_fov=None,
            max_value=None,
            source=source,
            path=where,
            meta={"layout": layout, "readout_oversampling": 1.0},
        )
    )


def read_raw(
    path: str | os.PathLike, layout: str | None = None, *, dataset: str = "dataset"
) -> MultiCoilKSpace | NonCartesianKSpace:
    """Read any multi-coil or raw k-space file, by content.

    - HDF5 with an ISMRMRD group ``dataset`` holding ``data`` -> :func:`read_ismrmrd`
      (a :class:`~mri_n2n.io.noncartesian.NonCartesianKSpace` when its image readouts carry
      trajectories, radial or spiral; every other format is Cartesian);
    - HDF5 with ``kspace``: 4-D -> :func:`read_fastmri_multicoil`; 3-D fastMRI single-coil
      (with ``ismrmrd_header`` or a ``reconstruction_*`` reference) -> one coil; a bare 3-D
      ``kspace`` needs ``layout``;
    - ``.dat`` -> :func:`read_twix`;
    - ``.npy``/``.npz``: ``(ky, kx)`` is one slice and one coil; more axes need ``layout``
      (``"slices,ky,kx"``, ``"coils,ky,kx"``, ``"slices,coils,ky,kx"``, ...) or an ``.npz``
      ``layout`` entry, else the array is refused naming both readings.

    ``layout`` is for arrays; ISMRMRD and twix files record theirs and refuse one.

    Raises:
        VolumeError: one line naming the file and the problem.
    """
    p = Path(path)
    where = str(p)
    if not p.exists():
        raise VolumeError(f"{where}: file not found")
    if p.is_dir():
        raise VolumeError(f"{where}: a folder, not a k-space file")
    low = p.name.lower()
    if low.endswith((".npy", ".npz")):
        return _read_array(p, layout)
    if low.endswith(".dat"):
        if layout is not None:
            raise VolumeError(f"{where}: a twix file records its layout; layout={layout!r} is refused")
        return read_twix(p)
    if low.endswith((".h5", ".hdf5", ".mrd")) or h5py.is_hdf5(p):
        with h5_errors(where), open_h5(p) as f:
            is_mrd = dataset in f and isinstance(f[dataset], h5py.Group) and "data" in f[dataset]
            has_kspace = "kspace" in f
            keys = ", ".join(sorted(f.keys())) or "nothing"
        if is_mrd:
            if layout is not None:
                raise VolumeError(
                    f"{where}: an ISMRMRD file records its layout; layout={layout!r} is refused"
                )
            return read_ismrmrd(p, dataset)
        if has_kspace:
            return _read_kspace_hdf5(p, layout, multicoil=False)
        raise VolumeError(f"{where}: neither fastMRI 'kspace' nor ISMRMRD '{dataset}/data' (have: {keys})")
    raise VolumeError(f"{where}: not a raw k-space file (expected {', '.join(RAW_SUFFIXES)})")
