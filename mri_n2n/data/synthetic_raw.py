"""Synthetic multi-coil raw k-space files in real on-disk layouts, for tests and benchmarks.

- :func:`write_fastmri_multicoil_h5`: a fastMRI multi-coil HDF5 file;
- :func:`write_ismrmrd_file`: an ISMRMRD HDF5 file, one acquisition per phase-encoding line
  per slice (needs the ``ismrmrd`` package: ``pip install mri-n2n[raw]``);
- :func:`write_twix_file`: a Siemens twix ``.dat`` file, VD/VE (written by
  ``twixtools.write_twix``) or VB (written here; twixtools cannot) (needs ``twixtools``).

All take ``images`` ``(slices, H, W)`` (real or complex; rows ``H`` run along the readout, as
fastMRI stores k-space) and coil sensitivity ``maps`` ``(coils, H, W)``: the coil images
``images[:, None] * maps[None]`` are zero-padded along the readout to ``oversample * H`` rows
(the object lies inside the reconstructed field of view), transformed with
:func:`mri_n2n.fft.fft2c` and given complex Gaussian noise of standard deviation ``noise_std``
(seeded). ``mask`` (1-D over the ``W`` phase-encoding lines) selects the lines written.
:func:`mri_n2n.io.read_raw` reads every file back.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..io import atomic_path
from ..io.mrd_format import ismrmrd_header_xml, place_readout
from ._acquire import kspace_of, sampled

__all__ = [
    "coil_kspace",
    "ismrmrd_header_xml",
    "write_fastmri_multicoil_h5",
    "write_ismrmrd_file",
    "write_twix_file",
]


def coil_kspace(
    images: np.ndarray, maps: np.ndarray, *, oversample: int = 1, noise_std: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(kspace, coil_images)``: complex64 ``(S, C, oversample * H, W)`` k-space (noise added)
    and the noise-free coil images ``(S, C, H, W)``."""
    imgs = np.asarray(images)
    smaps = np.asarray(maps)
    if imgs.ndim != 3 or smaps.ndim != 3 or imgs.shape[1:] != smaps.shape[1:]:
        raise ValueError(f"images (S, H, W) {imgs.shape} and maps (C, H, W) {smaps.shape} do not match")
    coil = (imgs[:, None] * smaps[None]).astype(np.complex64)
    s, c, h, w = coil.shape
    padded = coil
    if oversample > 1:
        padded = np.zeros((s, c, oversample * h, w), np.complex64)
        top = (oversample * h - h) // 2
        padded[:, :, top : top + h] = coil
    k = kspace_of(padded).numpy().astype(np.complex64)
    if noise_std > 0:
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal((2, *k.shape)).astype(np.float32) * (noise_std / np.sqrt(2))
        k = (k + noise[0] + 1j * noise[1]).astype(np.complex64)
    return k, coil


def write_fastmri_multicoil_h5(
    path: str | os.PathLike,
    images: np.ndarray,
    maps: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    noise_std: float = 0.0,
    seed: int = 0,
    oversample: int = 1,
    reference: bool = True,
    voxel_size: Sequence[float] = (0.5, 0.5, 3.0),
    attrs: dict[str, Any] | None = None,
) -> dict[str, np.ndarray | None]:
    """Write a fastMRI multi-coil file: ``kspace`` complex64 ``(S, C, oversample * H, W)``,
    ``reconstruction_rss`` (the root sum of squares of the noise-free coil images, ``(S, H, W)``)
    when ``reference``, ``ismrmrd_header`` (encoded and reconstruction matrices and fields of
    view from ``voxel_size``), ``mask`` (dataset, 1-D over ``W``; k-space zeroed outside it) and
    attributes ``max``, ``norm``, ``acquisition``, ``patient_id`` (plus ``attrs``).

    Returns:
        ``{"kspace": as written, "reference": the RSS image or None}``.
    """
    k, coil = coil_kspace(images, maps, oversample=oversample, noise_std=noise_std, seed=seed)
    s, c, rows, w = k.shape
    if mask is not None:
        k = sampled(k, np.asarray(mask)[None, None, None, :] > 0)
    rss = np.sqrt((np.abs(coil) ** 2).sum(axis=1)).astype(np.float32)
    header = ismrmrd_header_xml((rows, w), (coil.shape[2], w), voxel_size, coils=c, slices=s)
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("kspace", data=k)
            if reference:
                f.create_dataset("reconstruction_rss", data=rss)
            if mask is not None:
                f.create_dataset("mask", data=np.asarray(mask))
            f.create_dataset("ismrmrd_header", data=np.bytes_(header))
            f.attrs["max"] = float(rss.max())
            f.attrs["norm"] = float(np.linalg.norm(rss))
            f.attrs["acquisition"] = "AXT2"
            f.attrs["patient_id"] = path.stem
            for key, v in (attrs or {}).items():
                f.attrs[key] = v
    return {"kspace": k, "reference": rss if reference else None}


def _plan(
    k: np.ndarray,
    mask: np.ndarray | None,
    partial_fourier: float,
    acs_lines: int,
    averages: int,
    noise_std: float,
    seed: int,
) -> dict[str, Any]:
    """The readouts of a raw file, format-neutral, and what a reader must return.

    Lines ``j >= first`` (partial Fourier: the first ``W - round(W * partial_fourier)`` lines
    are not acquired) that ``mask`` keeps are image readouts, numbered ``j - first`` (the
    encoding centre becomes ``W // 2 - first``); the ``acs_lines`` centre lines are
    calibration: also image readouts when the mask keeps them, else calibration-only ones.
    Repeated ``averages`` get fresh noise; the expected grid is their mean.
    """
    s_, c_, rows, w = k.shape
    first = w - int(round(w * partial_fourier))
    keep = np.ones(w, bool) if mask is None else np.asarray(mask) > 0
    keep[:first] = False
    acs = np.zeros(w, bool)
    if acs_lines:
        acs[w // 2 - acs_lines // 2 : w // 2 - acs_lines // 2 + acs_lines] = True
        acs[:first] = False
    rng = np.random.default_rng(seed + 1)
    readouts, expect = [], np.zeros_like(k)
    calib = np.zeros_like(k) if (acs & ~keep).any() else None
    for s in range(s_):
        for j in np.flatnonzero(keep | acs):
            reps = averages if keep[j] else 1
            acc = np.zeros((c_, rows), np.complex64)
            for a in range(reps):
                extra = 0
                if a and noise_std > 0:
                    z = rng.standard_normal((2, c_, rows)).astype(np.float32) * (noise_std / np.sqrt(2))
                    extra = z[0] + 1j * z[1]
                data = (k[s, :, :, j] + extra).astype(np.complex64)
                acc += data
                kind = "image" if keep[j] else "calibration"
                if keep[j] and acs[j]:
                    kind = "calibration_and_imaging"
                readouts.append(
                    {"slice": s, "line": int(j - first), "average": a, "data": data, "kind": kind}
                )
            if keep[j]:
                expect[s, :, :, j] = acc / reps
            if calib is not None and acs[j]:
                calib[s, :, :, j] = acc / reps
    m = np.zeros((s_, rows, w), bool)
    m[:, :, keep] = True
    return {
        "readouts": readouts,
        "first": first,
        "kspace": expect,
        "mask": m,
        "calibration": calib,
        "acquired": int(keep.sum()),
    }


def write_ismrmrd_file(
    path: str | os.PathLike,
    images: np.ndarray,
    maps: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    noise_std: float = 0.0,
    seed: int = 0,
    oversample: int = 2,
    voxel_size: Sequence[float] = (0.5, 0.5, 3.0),
    partial_fourier: float = 1.0,
    acs_lines: int = 0,
    averages: int = 1,
    noise_readouts: int = 1,
    navigators: bool = True,
) -> dict[str, Any]:
    """Write an ISMRMRD file (group ``dataset``) with the ``ismrmrd`` package.

    One acquisition per acquired phase-encoding line, slice and average, with ``idx``
    (``kspace_encode_step_1``, ``slice``, ``average``), ``center_sample = rows // 2``, slice
    position and directions, and flags (``ACQ_IS_PARALLEL_CALIBRATION[_AND_IMAGING]`` for the
    ``acs_lines`` centre lines); ``noise_readouts`` noise readouts first and (``navigators``) one
    navigator readout per slice of large junk that a reader must skip. Header: encoded matrix
    ``(oversample * H, W)``, reconstruction matrix ``(H, W)``, fields of view from
    ``voxel_size``, encoding limits (centre ``W // 2 - first`` with partial Fourier).

    Returns:
        ``{"kspace", "mask", "calibration"}``: what :func:`mri_n2n.io.read_ismrmrd` must return
        (zero-filled ``(S, C, rows, W)``, bool ``(S, rows, W)``, calibration grid or None), and
        ``"readouts"`` (the number of image readouts written).
    """
    import ismrmrd

    k, _ = coil_kspace(images, maps, oversample=oversample, noise_std=noise_std, seed=seed)
    s_, c_, rows, w = k.shape
    plan = _plan(k, mask, partial_fourier, acs_lines, averages, noise_std, seed)
    first = plan["first"]
    xml = ismrmrd_header_xml(
        (rows, w),
        (rows // oversample, w),
        voxel_size,
        coils=c_,
        slices=s_,
        step1_limits=(0, w - 1 - first, w // 2 - first),
    )
    ismrmrd.xsd.CreateFromDocument(xml)  # the header is valid against the schema
    flag = {
        "calibration": ismrmrd.ACQ_IS_PARALLEL_CALIBRATION,
        "calibration_and_imaging": ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING,
    }
    vs = float(voxel_size[2])
    rng = np.random.default_rng(seed + 2)

    def acquisition(data: np.ndarray, s: int, line: int, average: int, *flags: int) -> Any:
        acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data, np.complex64))
        acq.idx.average = average
        acq.center_sample = rows // 2
        return place_readout(
            acq, line=line, slice_index=s, slices=s_, slice_mm=vs, sample_time_us=5.0, flags=flags
        )

    path = Path(path)
    with atomic_path(path) as tmp:
        ds = ismrmrd.Dataset(str(tmp), "dataset", mode="w")
        try:
            ds.write_xml_header(xml)
            for _ in range(noise_readouts):
                z = rng.standard_normal((2, c_, rows)).astype(np.float32) * max(noise_std, 1e-3)
                ds.append_acquisition(
                    acquisition(z[0] + 1j * z[1], 0, 0, 0, ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
                )
            for s in range(s_) if navigators else ():
                junk = np.full((c_, rows), 1e3 + 1e3j, np.complex64)
                ds.append_acquisition(acquisition(junk, s, w // 2 - first, 0, ismrmrd.ACQ_IS_NAVIGATION_DATA))
            for r in plan["readouts"]:
                flags = [flag[r["kind"]]] if r["kind"] in flag else []
                ds.append_acquisition(acquisition(r["data"], r["slice"], r["line"], r["average"], *flags))
        finally:
            ds.close()
    return {
        "kspace": plan["kspace"],
        "mask": plan["mask"],
        "calibration": plan["calibration"],
        "readouts": sum(r["kind"] != "calibration" for r in plan["readouts"]),
    }


def _twix_header(buffers: Sequence[tuple[str, str]], min_len: int = 0) -> bytes:
    """A twix protocol header: length, buffer count, then ``name\\0 <u4 length> text\\0`` each."""
    body = b""
    for name, text in buffers:
        raw = text.encode("latin1") + b"\x00"
        body += name.encode() + b"\x00" + struct.pack("<I", len(raw)) + raw
    n = max(8 + len(body), min_len)
    n = (n + 31) // 32 * 32
    out = struct.pack("<II", n, len(buffers)) + body
    return out + b"\x00" * (n - len(out))


def _twix_protocol(shape: tuple[int, int, int, int], oversample: int, voxel_size: Sequence[float]) -> list:
    s_, c_, rows, w = shape
    vr, vp, vs = (float(v) for v in voxel_size)
    base = rows // oversample
    yaps = [
        "### ASCCONV BEGIN ###",
        f"sKSpace.lBaseResolution = {base}",
        f"sKSpace.lPhaseEncodingLines = {w}",
    ]
    yaps += ["sKSpace.ucDimension = 0x2", f"sSliceArray.lSize = {s_}"]
    for s in range(s_):
        a = f"sSliceArray.asSlice[{s}]"
        yaps += [f"{a}.dThickness = {vs}", f"{a}.dPhaseFOV = {w * vp}", f"{a}.dReadoutFOV = {base * vr}"]
        yaps += [f"{a}.sPosition.dTra = {(s - (s_ - 1) / 2) * vs}", f"{a}.sNormal.dTra = 1.0"]
    yaps += ["### ASCCONV END ###", ""]
    meas = (
        f'<ParamDouble."flReadoutOSFactor">  {{ <Precision> 6  {float(oversample):.6f}  }}\n'
        f'<ParamLong."iRoFTLength">  {{ {rows} }}\n<ParamLong."NImageLins">  {{ {w} }}\n'
    )
    return [
        ("Config", meas),
        ("Dicom", '<ParamString."SoftwareVersions">  { "syngo MR E11" }\n'),
        ("Meas", meas),
        ("MeasYaps", "\n".join(yaps)),
        ("Phoenix", "\n".join(yaps)),
    ]


def write_twix_file(
    path: str | os.PathLike,
    images: np.ndarray,
    maps: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    noise_std: float = 0.0,
    seed: int = 0,
    oversample: int = 2,
    voxel_size: Sequence[float] = (0.5, 0.5, 3.0),
    partial_fourier: float = 1.0,
    acs_lines: int = 0,
    averages: int = 1,
    version: str = "VE",
) -> dict[str, Any]:
    """Write a Siemens twix file (``version`` ``"VE"`` or ``"VB"``) with one image readout per
    acquired line, slice and average (``Counter.Lin = j - first``, ``CenterLin = W // 2 -
    first``, ``CenterCol = rows // 2``, ``SliceData`` position), PAT reference lines
    (``PATREFSCAN``, or ``PATREFANDIMASCAN`` where also image lines), one noise-adjust readout
    and one phase-correction readout of junk per slice; protocol with ``lBaseResolution``,
    ``lPhaseEncodingLines``, ``flReadoutOSFactor``, ``iRoFTLength`` and the slices' fields of
    view, thickness and positions.

    Returns:
        As :func:`write_ismrmrd_file`: ``{"kspace", "mask", "calibration", "readouts"}``.
    """
    from twixtools import write_twix
    from twixtools.mdb import Mdb_local

    if version not in ("VE", "VB"):
        raise ValueError(f"version must be 'VE' or 'VB', got {version!r}")
    ve = version == "VE"
    k, _ = coil_kspace(images, maps, oversample=oversample, noise_std=noise_std, seed=seed)
    s_, c_, rows, w = k.shape
    plan = _plan(k, mask, partial_fourier, acs_lines, averages, noise_std, seed)
    centre_lin = w // 2 - plan["first"]
    vs = float(voxel_size[2])
    flags = {"calibration": "PATREFSCAN", "calibration_and_imaging": "PATREFANDIMASCAN"}

    def mdb(data: np.ndarray, s: int, line: int, average: int, *names: str) -> Any:
        m = Mdb_local(version_is_ve=ve)
        m.data = np.ascontiguousarray(data, np.complex64)
        m.mdh.Counter.Lin, m.mdh.Counter.Sli, m.mdh.Counter.Ave = line, s, average
        m.mdh.CenterCol, m.mdh.CenterLin = rows // 2, centre_lin
        m.mdh.SliceData.SlicePos.Tra = (s - (s_ - 1) / 2) * vs
        m.mdh.SliceData.Quaternion[:] = (1.0, 0.0, 0.0, 0.0)
        for n in names:
            m.add_flag(n)
        return m

    rng = np.random.default_rng(seed + 2)
    z = rng.standard_normal((2, c_, rows)).astype(np.float32) * max(noise_std, 1e-3)
    mdbs = [mdb(z[0] + 1j * z[1], 0, 0, 0, "NOISEADJSCAN")]
    junk = np.full((c_, rows), 1e3 + 1e3j, np.complex64)
    mdbs += [mdb(junk, s, centre_lin, 0, "PHASCOR") for s in range(s_)]
    for r in plan["readouts"]:
        names = [flags[r["kind"]]] if r["kind"] in flags else []
        mdbs.append(mdb(r["data"], r["slice"], r["line"], r["average"], *names))
    header = _twix_header(_twix_protocol(k.shape, oversample, voxel_size), 0 if ve else 10240)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.unlink()
        if ve:
            end = Mdb_local(version_is_ve=True)
            end.add_flag("ACQEND")
            scan = {"hdr_str": np.frombuffer(header, "S1").copy(), "mdb": [*mdbs, end], "hdr": {}}
            write_twix(scan, str(tmp), version_is_ve=True)
        else:
            _write_twix_vb(tmp, header, mdbs)
    return {
        "kspace": plan["kspace"],
        "mask": plan["mask"],
        "calibration": plan["calibration"],
        "readouts": sum(r["kind"] != "calibration" for r in plan["readouts"]),
    }


def _write_twix_vb(path: Path, header: bytes, mdbs: Sequence[Any]) -> None:
    """VB layout: the header (>= 10 kB, so readers tell VB from VD/VE), then per readout and
    channel a 128-byte measurement data header followed by the channel's samples; ACQEND last."""
    from twixtools.mdb import Mdb_local

    with open(path, "wb") as fh:
        fh.write(header)
        for m in mdbs:
            data = np.atleast_2d(m.data)
            for ch in range(data.shape[0]):
                m.mdh.ChannelId = ch
                fh.write(bytes(m.mdh))
                fh.write(data[ch].astype(np.complex64).tobytes())
        end = Mdb_local(version_is_ve=False)
        end.add_flag("ACQEND")
        end.mdh.SamplesInScan = 16
        fh.write(bytes(end.mdh) + b"\x00" * 128)
