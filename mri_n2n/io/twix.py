"""Siemens twix ``.dat`` raw data (VB and VD/VE) to :class:`MultiCoilKSpace`, via ``twixtools``
(optional: ``pip install mri-n2n[raw]``).

The file's structure is walked first (twixtools can loop forever on a garbled file and
silently drops what follows a bad block); then twixtools parses the protocol and sorts the
readouts (``map_twix``), and :func:`_assemble_twix` places the image readouts on the grid.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import VolumeError, describe
from .multicoil import (
    RAW_INSTALL,
    MultiCoilKSpace,
    ReadoutGrid,
    fit_matrix,
    positive_float,
    validate_multicoil,
)

__all__ = ["read_twix"]


def _twixtools(where: str) -> Any:
    try:
        import twixtools
    except ImportError:
        raise VolumeError(f"{where}: {RAW_INSTALL} to read Siemens twix files (twixtools)") from None
    return twixtools


_VE_HEAD, _VE_CHAN, _VB_HEAD = 192, 32, 128


def _check_twix_file(path: Path, where: str) -> str:
    """Walk the file's structure before twixtools does, which can loop forever on a garbled
    file; returns ``"VB"`` or ``"VD/VE"``. Refuses files that end before their ACQEND block."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(10240)
        if len(head) < 32:
            raise VolumeError(f"{where}: not a Siemens twix file (only {size} bytes)")
        first, second = struct.unpack("<II", head[:8])
        ve = first < 10000 and second <= 64  # twixtools' test
        scans: list[tuple[int, int]] = []
        if ve:
            for n in range(second):
                off, length = struct.unpack("<QQ", head[8 + 152 * n + 8 : 8 + 152 * n + 24])
                scans.append((off, length or (size - off if second == 1 else 0)))
        else:
            scans.append((0, size))
        if not scans:
            raise VolumeError(f"{where}: not a Siemens twix file (no measurement)")
        for off, length in scans:
            if ve and off >= 10240 and length >= 16 and off + length > size:
                raise VolumeError(
                    f"{where}: truncated twix file ({size} bytes, the measurement ends at {off + length})"
                )
            if off < (10240 if ve else 0) or length < 16 or off + length > size:
                raise VolumeError(
                    f"{where}: not a Siemens twix file (measurement at {off}+{length} of {size})"
                )
            fh.seek(off)
            hdr_len, n_buf = struct.unpack("<II", fh.read(8))
            name = fh.read(12)
            if not (16 <= hdr_len < length and 0 < n_buf <= 64 and name[:4].isalpha()):
                raise VolumeError(f"{where}: not a Siemens twix file (no protocol header)")
            pos, end = off + hdr_len, off + length
            while True:
                if pos + (_VE_HEAD if ve else _VB_HEAD) > end:
                    raise VolumeError(f"{where}: truncated twix file (measurement data end at byte {pos})")
                fh.seek(pos)
                block = fh.read(_VE_HEAD if ve else _VB_HEAD)
                dma = struct.unpack_from("<I", block, 0)[0] % 2**25
                mask_at, samp_at = (40, 48) if ve else (20, 28)
                info = struct.unpack_from("<Q", block, mask_at)[0]
                samples, channels = struct.unpack_from("<HH", block, samp_at)
                if info & 1:  # ACQEND
                    break
                if not info & 32:  # not SYNCDATA: twixtools' own length
                    dma = channels * (8 * samples + (_VE_CHAN if ve else _VB_HEAD)) + (_VE_HEAD if ve else 0)
                if dma <= 0:
                    raise VolumeError(f"{where}: garbled twix file (empty data block at byte {pos})")
                pos += dma
    return "VD/VE" if ve else "VB"


def _dig(hdr: dict[str, Any], *keys: Any) -> Any:
    node: Any = hdr
    for key in keys:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _hdr_number(hdr: dict[str, Any], name: str) -> float | None:
    for buf in ("Meas", "Config"):
        v = positive_float(_dig(hdr, buf, name))
        if v is not None:
            return v
    return None


def _assemble_twix(
    image: Sequence[Any], refscan: Sequence[Any], hdr: dict[str, Any], where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Grid twix image readouts: ``(kspace, mask, calibration, geometry)``.

    ``image``/``refscan``: objects like twixtools' ``Mdb`` (``.mdh.Counter``, ``.mdh.CenterCol``,
    ``.mdh.CenterLin``, ``.mdh.SliceData``, ``.data`` ``(coils, samples)``, ``.is_flag_set``);
    ``hdr``: the parsed protocol (``MeasYaps``, ``Meas``, ``Config``).
    """
    if not image:
        raise VolumeError(f"{where}: the twix file holds no image readouts")
    many = []
    for key, what in (
        ("Par", "partitions"),
        ("Eco", "echoes"),
        ("Phs", "phases"),
        ("Rep", "repetitions"),
        ("Set", "sets"),
    ):
        n = len({int(getattr(m.mdh.Counter, key)) for m in image})
        if n > 1:
            many.append(f"{n} {what} ({key})")
    if many:
        raise VolumeError(f"{where}: {', '.join(many)}; only 2-D multi-slice single-image scans are read")
    data = [np.asarray(m.data, np.complex64) for m in image]
    coils = {d.shape[0] for d in data}
    if len(coils) != 1 or data[0].ndim != 2:
        raise VolumeError(f"{where}: the readouts have {sorted(coils)} coils; expected one count")
    ncol = np.array([d.shape[-1] for d in data] + [np.shape(m.data)[-1] for m in refscan])
    ccol = np.array([int(m.mdh.CenterCol) for m in [*image, *refscan]])
    lin = np.array([int(m.mdh.Counter.Lin) for m in image])
    ref_lin = np.array([int(m.mdh.Counter.Lin) for m in refscan], dtype=np.int64)
    centre_lin = int(image[0].mdh.CenterLin)
    os_factor = _hdr_number(hdr, "flReadoutOSFactor")
    base = positive_float(_dig(hdr, "MeasYaps", "sKSpace", "lBaseResolution"))
    rows_hdr = _hdr_number(hdr, "iRoFTLength") or (base * os_factor if base and os_factor else None)
    rows = fit_matrix(int(rows_hdr or 0), int(ccol.max()), int((ncol - ccol).max()))
    all_lin = np.concatenate([lin, ref_lin])
    lines_hdr = positive_float(_dig(hdr, "MeasYaps", "sKSpace", "lPhaseEncodingLines")) or _hdr_number(
        hdr, "NImageLins"
    )
    below, above = centre_lin - int(all_lin.min()), int(all_lin.max()) - centre_lin + 1
    cols = fit_matrix(int(lines_hdr or 0), below, above)
    if os_factor is None:
        os_factor = rows / base if base else 1.0
    slices = sorted({int(m.mdh.Counter.Sli) for m in image})
    slot = {v: n for n, v in enumerate(slices)}
    grid = ReadoutGrid(len(slices), data[0].shape[0], rows, cols)
    for m, d, c in zip(image, data, ccol):
        d = d[..., ::-1] if m.is_flag_set("REFLECT") else d
        grid.add(
            slot[int(m.mdh.Counter.Sli)], cols // 2 - centre_lin + int(m.mdh.Counter.Lin), rows // 2 - c, d
        )
    k, mask = grid.result()
    calibration = None
    if any(not m.is_flag_set("PATREFANDIMASCAN") for m in refscan):
        cg = ReadoutGrid(len(slices), data[0].shape[0], rows, cols)
        for m in refscan:
            d = np.asarray(m.data, np.complex64)
            s = int(m.mdh.Counter.Sli)
            if s not in slot or d.shape[0] != data[0].shape[0]:
                raise VolumeError(f"{where}: a calibration readout does not match the image readouts")
            d = d[..., ::-1] if m.is_flag_set("REFLECT") else d
            cg.add(
                slot[s], cols // 2 - centre_lin + int(m.mdh.Counter.Lin), rows // 2 - int(m.mdh.CenterCol), d
            )
        calibration = cg.result()[0]
    first = {int(m.mdh.Counter.Sli): m.mdh.SliceData for m in reversed(image)}
    geo = {
        "slice_indices": slices,
        "slice_positions": np.array(
            [[first[s].SlicePos.Sag, first[s].SlicePos.Cor, first[s].SlicePos.Tra] for s in slices],
            np.float64,
        ),
        "quaternions": np.array([list(first[s].Quaternion) for s in slices], np.float64),
        "readout_oversampling": float(os_factor),
        "center_line": centre_lin,
    }
    return k, mask, calibration, geo


def read_twix(path: str | os.PathLike) -> MultiCoilKSpace:
    """Read the image scan of a Siemens twix ``.dat`` file (VB or VD/VE) with ``twixtools``.

    The last measurement with image readouts is read (multi-raid files put adjustments first).
    Readouts (twixtools' ``image`` category: noise, phase-correction, PAT-reference-only,
    feedback and phase-stabilisation scans excluded) are placed by ``Counter.Lin``/``Sli`` so
    that ``CenterCol`` lands on row ``rows // 2`` and ``CenterLin`` on column ``cols // 2``
    (rows: ``iRoFTLength``, oversampled; cols: ``lPhaseEncodingLines``; each grown if readouts
    do not fit); repeated averages averaged, ``REFLECT`` readouts reversed. PAT reference scans
    stored separately go to ``calibration``; noise-adjust readouts to ``meta["noise"]``.
    ``voxel_size``/``encoded_fov`` come from the protocol's first slice (``dReadoutFOV``,
    ``dPhaseFOV``, ``dThickness``), ``recon_shape`` removes the readout oversampling.

    Raises:
        VolumeError: ``twixtools`` missing, unreadable/truncated/garbled file, no image scan,
            3-D/multi-echo/-phase/-repetition/-set data, varying coil counts.
    """
    p = Path(path)
    where = str(p)
    if not p.is_file():
        raise VolumeError(f"{where}: file not found")
    tw = _twixtools(where)
    version = _check_twix_file(p, where)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            scans = tw.read_twix(str(p), parse_pmu=False, parse_geometry=False, verbose=False)
            measurements = [m for m in tw.map_twix(scans, verbose=False) if "image" in m]
            if "WARNING" in log.getvalue():
                raise VolumeError(f"{where}: twixtools: {log.getvalue().strip().splitlines()[0]}")
            if not measurements:
                raise VolumeError(f"{where}: the twix file holds no image scan")
            meas = measurements[-1]
            refs = meas["refscan"].mdb_list if "refscan" in meas else []
            hdr = meas.get("hdr", {})
            k, mask, cal, geo = _assemble_twix(meas["image"].mdb_list, refs, hdr, where)
            noise = (
                [np.asarray(m.data, np.complex64) for m in meas["noise"].mdb_list] if "noise" in meas else []
            )
    except VolumeError:
        raise
    except Exception as exc:
        raise VolumeError(f"{where}: not a readable Siemens twix file ({describe(exc)})") from None
    rows, cols = k.shape[2:]
    meta: dict[str, Any] = {
        "software": version,
        **geo,
        "skipped": {
            c: len(meas[c].mdb_list)
            for c in meas
            if hasattr(meas[c], "mdb_list") and c not in ("image", "refscan")
        },
    }
    if noise and all(n.shape[0] == k.shape[1] for n in noise):
        meta["noise"] = np.concatenate(noise, axis=1)
    sl = _dig(hdr, "MeasYaps", "sSliceArray", "asSlice", 0) or {}
    ro_fov, pe_fov, thick = (positive_float(sl.get(k)) for k in ("dReadoutFOV", "dPhaseFOV", "dThickness"))
    osf = geo["readout_oversampling"]
    recon = (max(int(round(rows / osf)), 1), cols)
    voxel = fov = None
    if ro_fov and pe_fov:
        fov = (ro_fov * osf, pe_fov, thick or 1.0)
        voxel = (fov[0] / rows, pe_fov / cols, thick or 1.0)
    return validate_multicoil(
        MultiCoilKSpace(
            kspace=k,
            mask=mask,
            reference=None,
            recon_shape=recon,
            voxel_size=voxel,
            encoded_fov=fov,
            max_value=None,
            source="twix",
            path=where,
            meta=meta,
            calibration=cal,
        )
    )
