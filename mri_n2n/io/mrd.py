"""ISMRMRD (MRD) HDF5 raw data: Cartesian 2-D multi-slice acquisitions to :class:`MultiCoilKSpace`.

The acquisitions are read with h5py in the HDF5 layout the ``ismrmrd`` package writes (group
``dataset`` with ``xml`` and ``data``: a compound of ``head``, ``traj`` and ``data``), so reading
needs no optional package; the header is parsed with ElementTree (tolerant of vendor
extensions the strict schema parser rejects).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import VolumeError, describe
from .mrd_format import (
    ISMRMRD_FLAGS,
    ISMRMRD_SKIP,
    ReadoutKinds,
    check_single_image,
    coil_count,
    ismrmrd_encoding,
    ismrmrd_header_xml,
    ismrmrd_xml_text,
    read_acquisitions,
    readout_kinds,
    slice_meta,
)
from .multicoil import MultiCoilKSpace, ReadoutGrid, validate_multicoil
from .noncartesian import NonCartesianKSpace, noncartesian_from_acquisitions

# the format's names, read from here by the readers' older users
__all__ = [
    "ISMRMRD_FLAGS",
    "ISMRMRD_SKIP",
    "read_ismrmrd",
    "ismrmrd_xml_text",
    "ismrmrd_encoding",
    "ismrmrd_header_xml",
    "read_acquisitions",
    "ReadoutKinds",
    "readout_kinds",
    "check_single_image",
    "coil_count",
    "slice_meta",
]


def read_ismrmrd(path: str | os.PathLike, dataset: str = "dataset") -> MultiCoilKSpace | NonCartesianKSpace:
    """Read a 2-D (multi-slice) ISMRMRD / MRD HDF5 file (group ``dataset``).

    Files whose image readouts carry trajectories (radial, spiral) come back as
    :class:`~mri_n2n.io.noncartesian.NonCartesianKSpace`
    (:func:`~mri_n2n.io.noncartesian.read_ismrmrd_noncartesian` says how); Cartesian files as
    :class:`~mri_n2n.io.multicoil.MultiCoilKSpace`, as follows.

    The XML header gives the encoded matrix ``(x: readout, y: phase)`` and fields of view, the
    reconstruction matrix (``recon_shape``: readout oversampling is kept in ``kspace``) and the
    encoding limits. Each image readout lands in column ``ky_cols // 2 - centre +
    idx.kspace_encode_step_1`` (``centre``: ``encodingLimits.kspace_encoding_step_1.center``), so
    partial-Fourier data are zero-filled with the mask 0 there; its samples are placed so that
    ``center_sample`` lands on row ``rows // 2`` (asymmetric echoes), ``discard_pre``/``_post``
    samples dropped. Slices by ``idx.slice`` (``meta["slice_indices"]``), repeated averages
    averaged. Noise readouts go to ``meta["noise"]``; navigator, phase-correction, feedback,
    dummy and phase-stabilisation readouts are skipped (``meta["skipped"]``);
    calibration-only readouts (``ACQ_IS_PARALLEL_CALIBRATION``) go to ``calibration``, while
    ``ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING`` ones are image data (and calibration).

    Raises:
        VolumeError: unreadable file, no such group / header / acquisitions, a non-Cartesian
            header whose readouts carry no trajectory, 3-D, multi-contrast/phase/repetition/set
            or EPI (reversed) readouts, readouts that do not fit the encoded matrix, varying coil
            counts, non-finite data; for files with trajectories, what
            :func:`~mri_n2n.io.noncartesian.read_ismrmrd_noncartesian` refuses.
    """
    p = Path(path)
    where = str(p)
    xml, rows = read_acquisitions(p, dataset)
    enc = ismrmrd_encoding(xml, where)
    head, payload = rows["head"], rows["data"]
    idx = head["idx"]
    kinds = readout_kinds(head)
    flag, noise, calib, imaging = kinds.flag, kinds.noise, kinds.calibration, kinds.imaging
    if not imaging.any():
        raise VolumeError(f"{where}: no image readouts among {len(rows)} ISMRMRD acquisitions")
    if (head["trajectory_dimensions"][imaging] > 0).any():

        return noncartesian_from_acquisitions(where, enc, rows, kinds)
    if enc.get("trajectory", "cartesian") != "cartesian":
        raise VolumeError(
            f"{where}: {enc['trajectory']} trajectory in the header, but no readout carries its coordinates; "
            "Cartesian readouts or readouts with trajectories are read"
        )
    if flag("reverse")[imaging].any():
        raise VolumeError(f"{where}: reversed (EPI) readouts need phase correction; not supported")
    used = imaging | calib
    check_single_image(where, idx, used)
    n_coils = coil_count(where, head, used)

    rows_enc, cols_enc = int(enc["encoded"][0]), int(enc["encoded"][1])
    e1 = idx["kspace_encode_step_1"].astype(np.int64)
    lim = enc["limits"].get("kspace_encoding_step_1")
    centre = lim[2] if lim is not None else cols_enc // 2
    col = cols_enc // 2 - centre + e1
    if ((col[used] < 0) | (col[used] >= cols_enc)).any() and centre == 0:
        col = e1  # a header that leaves the centre at 0: lines counted over the full matrix
    bad = used & ((col < 0) | (col >= cols_enc))
    if bad.any():
        raise VolumeError(
            f"{where}: encode step 1 values {int(e1[used].min())}..{int(e1[used].max())} (centre {centre}) "
            f"do not fit the encoded matrix of {cols_enc} phase-encoding lines"
        )
    n_samp = head["number_of_samples"].astype(np.int64)
    c_samp = head["center_sample"].astype(np.int64)
    c_samp = np.where((c_samp == 0) & (n_samp == rows_enc), n_samp // 2, c_samp)  # centre left unset
    pre = head["discard_pre"].astype(np.int64)
    post = head["discard_post"].astype(np.int64)
    start = rows_enc // 2 - c_samp + pre
    bad = used & ((start < 0) | (start + n_samp - pre - post > rows_enc) | (n_samp - pre - post < 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise VolumeError(
            f"{where}: readout {i} ({int(n_samp[i])} samples, centre {int(c_samp[i])}) does not fit the "
            f"encoded matrix of {rows_enc} readout samples"
        )
    slice_ids = np.unique(idx["slice"][used])
    slot = {int(v): n for n, v in enumerate(slice_ids)}
    grids = {"image": ReadoutGrid(len(slice_ids), n_coils, rows_enc, cols_enc)}
    if calib.any():
        grids["calibration"] = ReadoutGrid(len(slice_ids), n_coils, rows_enc, cols_enc)
    is_cal = flag("calibration") | flag("calibration_and_imaging")
    try:
        for i in np.flatnonzero(used):
            data = np.asarray(payload[i], np.float32).view(np.complex64).reshape(n_coils, n_samp[i])
            data = data[:, pre[i] : n_samp[i] - post[i]]
            s, c, r = slot[int(idx["slice"][i])], int(col[i]), int(start[i])
            if imaging[i]:
                grids["image"].add(s, c, r, data)
            if "calibration" in grids and is_cal[i]:
                grids["calibration"].add(s, c, r, data)
        noise_data = [
            np.asarray(payload[i], np.float32).view(np.complex64).reshape(-1, n_samp[i])
            for i in np.flatnonzero(noise)
        ]
    except (ValueError, TypeError) as exc:
        raise VolumeError(
            f"{where}: an ISMRMRD readout does not hold its samples ({describe(exc)})"
        ) from None
    k, mask = grids["image"].result()
    cal = grids["calibration"].result()[0] if "calibration" in grids else None

    meta = slice_meta(head, imaging, slice_ids, kinds.skipped, enc)
    if noise_data and all(d.shape[0] == n_coils for d in noise_data):
        meta["noise"] = np.concatenate(noise_data, axis=1)
    recon = enc.get("recon", enc["encoded"])
    fov, rfov = enc.get("encoded_fov"), enc.get("recon_fov")
    meta["readout_oversampling"] = (
        fov[0] / rfov[0] if fov is not None and rfov is not None and rfov[0] > 0 else rows_enc / recon[0]
    )
    voxel = None
    if fov is not None:
        voxel = (fov[0] / rows_enc, fov[1] / cols_enc, fov[2] / max(enc["encoded"][2], 1.0))
    return validate_multicoil(
        MultiCoilKSpace(
            kspace=k,
            mask=mask,
            reference=None,
            recon_shape=(int(recon[0]), int(recon[1])),
            voxel_size=voxel,
            encoded_fov=fov,
            max_value=None,
            source="ismrmrd",
            path=where,
            meta=meta,
            calibration=cal,
        )
    )
