"""Multi-coil and raw scanner k-space readers (fastMRI multi-coil, ISMRMRD, Siemens twix):
round trips through the synthetic writers, centre placement checked by reconstructing the
known coil images, explicit layouts, and one-line errors for unusable files."""

from __future__ import annotations

import importlib.util
import types

import h5py
import numpy as np
import pytest
import torch

from mri_n2n.data.synthetic import phantom_volume, write_fastmri_h5
from mri_n2n.data.synthetic_raw import coil_kspace, write_fastmri_multicoil_h5
from mri_n2n.fft import ifft2c
from mri_n2n.io import (
    VolumeError,
    read_fastmri_multicoil,
    read_ismrmrd,
    read_kspace_h5,
    read_kspace_input,
    read_raw,
    read_twix,
)
from mri_n2n.io.mrd import ISMRMRD_FLAGS
from mri_n2n.io.twix import _assemble_twix

S, C, H, W = 2, 4, 24, 32
VOXEL = (0.5, 0.75, 3.0)


def _maps(c: int = C, h: int = H, w: int = W) -> np.ndarray:
    """Smooth complex coil maps: Gaussian around points on a ring, linear phase, sum |S|^2 = 1."""
    y, x = np.mgrid[:h, :w].astype(np.float64)
    out = []
    for i in range(c):
        a = 2 * np.pi * i / c
        cy, cx = h / 2 + 0.6 * h * np.sin(a), w / 2 + 0.6 * w * np.cos(a)
        g = np.exp(-(((y - cy) / h) ** 2 + ((x - cx) / w) ** 2))
        out.append(
            g * np.exp(1j * (0.4 * i + 0.08 * np.cos(a) * (y - h / 2) + 0.08 * np.sin(a) * (x - w / 2)))
        )
    m = np.array(out)
    return (m / np.sqrt((np.abs(m) ** 2).sum(0, keepdims=True))).astype(np.complex64)


def _images(seed: int = 0, s: int = S, h: int = H, w: int = W) -> np.ndarray:
    mag = phantom_volume((h, w, s), content=(0, s), seed=seed, peak=1.0).transpose(2, 0, 1)
    y = np.linspace(-1, 1, h)[:, None]
    return (mag * np.exp(1j * (0.5 * y + 0.2 * seed))).astype(np.complex64)


def _coil_images(k: np.ndarray) -> np.ndarray:
    """``ifft2c`` of ``(S, C, rows, W)`` k-space, readout centre-cropped to ``H`` rows."""
    im = ifft2c(torch.from_numpy(np.ascontiguousarray(k))).numpy()
    top = (im.shape[2] - H) // 2
    return im[:, :, top : top + H]


def _one_line(exc: pytest.ExceptionInfo, name: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and name in msg, msg
    return msg


def _undersampling(w: int = W) -> np.ndarray:
    mask = np.zeros(w, bool)
    mask[::4] = True
    mask[w // 2 - 8 : w // 2 + 8] = True  # every 4th line + 16 centre lines
    return mask


# ----------------------------------------------------------------------------- fastMRI


def test_fastmri_multicoil_round_trip(tmp_path):
    imgs, maps = _images(), _maps()
    out = write_fastmri_multicoil_h5(tmp_path / "mc.h5", imgs, maps, oversample=2, voxel_size=VOXEL)
    r = read_fastmri_multicoil(tmp_path / "mc.h5")
    assert r.source == "fastmri" and r.shape == (S, C, 2 * H, W) and r.kspace.dtype == np.complex64
    np.testing.assert_array_equal(r.kspace, out["kspace"])
    assert r.mask is None and r.calibration is None and r.recon_shape == (H, W)
    assert r.voxel_size == pytest.approx(VOXEL) and r.encoded_fov == pytest.approx((2 * H * 0.5, W * 0.75, 3))
    assert r.meta["readout_oversampling"] == 2 and r.max_value == pytest.approx(out["reference"].max())
    np.testing.assert_allclose(_coil_images(r.kspace), imgs[:, None] * maps[None], atol=1e-5)
    np.testing.assert_allclose(r.reference, np.abs(imgs), rtol=1e-5, atol=1e-6)  # sum |S|^2 = 1
    via = read_raw(tmp_path / "mc.h5")
    assert via.source == "fastmri" and np.array_equal(via.kspace, r.kspace)

    mask = _undersampling()
    out = write_fastmri_multicoil_h5(tmp_path / "us.h5", imgs, maps, mask=mask, noise_std=0.01, seed=3)
    r = read_raw(tmp_path / "us.h5")
    assert r.mask.shape == (1, H, W) and (r.mask == mask).all()
    np.testing.assert_array_equal(r.kspace, out["kspace"])
    assert not r.kspace[..., ~mask].any() and r.sampled().shape == (S, H, W)


def test_single_coil_reader_points_4d_files_to_the_multicoil_reader(tmp_path):
    write_fastmri_multicoil_h5(tmp_path / "mc.h5", _images(), _maps())
    for reader in (read_kspace_h5, read_kspace_input):
        with pytest.raises(VolumeError) as e:
            reader(tmp_path / "mc.h5")
        assert "read_fastmri_multicoil" in _one_line(e, "mc.h5")
    np.save(tmp_path / "mc.npy", np.zeros((S, C, 8, 8), np.complex64))
    with pytest.raises(VolumeError) as e:
        read_kspace_input(tmp_path / "mc.npy")
    assert "read_raw" in _one_line(e, "mc.npy")
    # and the multi-coil reader sends single-coil files back
    write_fastmri_h5(tmp_path / "sc.h5", np.abs(_images()))
    with pytest.raises(VolumeError) as e:
        read_fastmri_multicoil(tmp_path / "sc.h5")
    assert "read_kspace_input" in _one_line(e, "sc.h5")
    sc = read_raw(tmp_path / "sc.h5")  # a fastMRI single-coil file: its layout is known
    assert sc.source == "fastmri-singlecoil" and sc.shape == (S, 1, H, W) and sc.reference.shape == (S, H, W)


# ----------------------------------------------------------------------------- layouts


def test_layout_is_explicit_for_arrays(tmp_path):
    k = np.asarray(coil_kspace(_images(), _maps())[0])  # (S, C, H, W)
    np.save(tmp_path / "three.npy", k[0])  # (C, H, W): one slice, or C slices?
    with pytest.raises(VolumeError) as e:
        read_raw(tmp_path / "three.npy")
    msg = _one_line(e, "three.npy")
    assert "(slices, ky, kx)" in msg and "(coils, ky, kx)" in msg and "layout=" in msg
    r = read_raw(tmp_path / "three.npy", layout="coils,ky,kx")
    assert r.shape == (1, C, H, W) and np.array_equal(r.kspace[0], k[0]) and r.source == "npy"
    assert read_raw(tmp_path / "three.npy", layout="slices,ky,kx").shape == (C, 1, H, W)

    np.save(tmp_path / "four.npy", k)
    with pytest.raises(VolumeError) as e:
        read_raw(tmp_path / "four.npy")
    assert "(coils, slices, ky, kx)" in _one_line(e, "four.npy")
    np.save(tmp_path / "cs.npy", k.transpose(1, 0, 2, 3))
    assert np.array_equal(read_raw(tmp_path / "cs.npy", layout="coils,slices,ky,kx").kspace, k)
    with pytest.raises(VolumeError) as e:
        read_raw(tmp_path / "four.npy", layout="coils,ky,kx")
    assert "names 3 axes" in _one_line(e, "four.npy")
    with pytest.raises(VolumeError) as e:
        read_raw(tmp_path / "four.npy", layout="slices,ky,ky,kx")
    _one_line(e, "four.npy")

    np.save(tmp_path / "one.npy", k[0, 0])  # (ky, kx) is unambiguous
    assert read_raw(tmp_path / "one.npy").shape == (1, 1, H, W)
    np.savez(tmp_path / "z.npz", kspace=k[:, 1], mask=_undersampling(), layout="slices,ky,kx")
    z = read_raw(tmp_path / "z.npz")
    assert z.shape == (S, 1, H, W) and z.mask.shape == (1, H, W) and z.source == "npz"

    # the single-coil reader: 3-D stays (slices, ky, kx) (unchanged); a coil layout is refused
    assert read_kspace_input(tmp_path / "three.npy").kspace.shape == (C, H, W)
    assert read_kspace_input(tmp_path / "three.npy", layout="slices,ky,kx").kspace.shape == (C, H, W)
    with pytest.raises(VolumeError) as e:
        read_kspace_input(tmp_path / "three.npy", layout="coils,ky,kx")
    assert "read_raw" in _one_line(e, "three.npy")

    with h5py.File(tmp_path / "bare.h5", "w") as f:  # no fastMRI marker: 3-D is ambiguous
        f["kspace"] = k[0]
    with pytest.raises(VolumeError) as e:
        read_raw(tmp_path / "bare.h5")
    assert "(coils, ky, kx)" in _one_line(e, "bare.h5")
    assert read_raw(tmp_path / "bare.h5", layout="coils,ky,kx").shape == (1, C, H, W)


# ----------------------------------------------------------------------------- ISMRMRD


def test_ismrmrd_round_trip_and_centre(tmp_path):
    pytest.importorskip("ismrmrd")
    from mri_n2n.data.synthetic_raw import write_ismrmrd_file

    imgs, maps = _images(1), _maps()
    out = write_ismrmrd_file(tmp_path / "raw.h5", imgs, maps, oversample=2, voxel_size=VOXEL)
    r = read_ismrmrd(tmp_path / "raw.h5")
    assert r.source == "ismrmrd" and r.shape == (S, C, 2 * H, W) and r.mask.all()
    np.testing.assert_array_equal(r.kspace, out["kspace"])
    # placement: DC at (rows // 2, W // 2), oversampled readout cropped back to the image
    np.testing.assert_allclose(_coil_images(r.kspace), imgs[:, None] * maps[None], atol=1e-5)
    assert r.recon_shape == (H, W) and r.meta["readout_oversampling"] == 2
    assert r.voxel_size == pytest.approx(VOXEL) and r.encoded_fov == pytest.approx((24, 24, 3))
    assert r.meta["skipped"] == {"noise": 1, "navigation": S} and r.meta["noise"].shape == (C, 2 * H)
    np.testing.assert_allclose(r.meta["slice_positions"][:, 2], [-1.5, 1.5])
    assert r.calibration is None and r.reference is None
    assert read_raw(tmp_path / "raw.h5").source == "ismrmrd"

    # averages are averaged; partial Fourier: the encoding centre is not at matrix / 2
    out = write_ismrmrd_file(
        tmp_path / "pf.h5", imgs, maps, partial_fourier=0.75, averages=2, noise_std=0.05, seed=2
    )
    r = read_raw(tmp_path / "pf.h5")
    first = W - round(0.75 * W)
    assert r.meta["encoding_limits"]["kspace_encoding_step_1"][2] == W // 2 - first
    assert not r.mask[..., :first].any() and r.mask[..., first:].all() and not r.kspace[..., :first].any()
    np.testing.assert_allclose(r.kspace, out["kspace"], atol=1e-6)
    truth = coil_kspace(imgs, maps, oversample=2)[0]  # noise-free: the averages halve the added noise
    err = np.abs(r.kspace[..., first:] - truth[..., first:]).std()
    assert 0.01 < err < 0.05
    dc = np.abs(r.kspace).sum(axis=(0, 1))
    assert np.unravel_index(dc.argmax(), dc.shape) == (H, W // 2)


def test_ismrmrd_undersampled_mask_and_calibration(tmp_path):
    pytest.importorskip("ismrmrd")
    from mri_n2n.data.synthetic_raw import write_ismrmrd_file

    mask = _undersampling()
    out = write_ismrmrd_file(tmp_path / "us.h5", _images(2), _maps(), mask=mask, acs_lines=16)
    r = read_raw(tmp_path / "us.h5")
    assert r.mask.shape == (S, 2 * H, W) and r.mask.all(axis=1).any()
    assert all(np.array_equal(r.mask[s, row], mask) for s in range(S) for row in (0, H))
    assert r.calibration is None  # the ACS lines are image lines (..._CALIBRATION_AND_IMAGING)
    np.testing.assert_array_equal(r.kspace, out["kspace"])
    assert out["readouts"] == S * mask.sum()

    every4 = np.arange(W) % 4 == 0  # ACS lines stored separately (ACQ_IS_PARALLEL_CALIBRATION)
    out = write_ismrmrd_file(tmp_path / "acs.h5", _images(2), _maps(), mask=every4, acs_lines=16)
    r = read_raw(tmp_path / "acs.h5")
    assert np.array_equal(r.mask[0, 0], every4) and not r.kspace[..., ~every4].any()
    acs = np.zeros(W, bool)
    acs[W // 2 - 8 : W // 2 + 8] = True
    assert r.calibration is not None and np.array_equal(np.abs(r.calibration).sum(axis=(0, 1, 2)) > 0, acs)
    np.testing.assert_array_equal(r.calibration, out["calibration"])


def test_ismrmrd_flags_match_the_ismrmrd_package():
    ismrmrd = pytest.importorskip("ismrmrd")
    names = {"noise": "NOISE_MEASUREMENT", "calibration": "PARALLEL_CALIBRATION", "reverse": "REVERSE"}
    names |= {"calibration_and_imaging": "PARALLEL_CALIBRATION_AND_IMAGING", "navigation": "NAVIGATION_DATA"}
    names |= {"phasecorr": "PHASECORR_DATA", "dummyscan": "DUMMYSCAN_DATA", "rtfeedback": "RTFEEDBACK_DATA"}
    names |= {"hpfeedback": "HPFEEDBACK_DATA", "surfacecoilcorrection": "SURFACECOILCORRECTIONSCAN_DATA"}
    names |= {"phase_stabilization": "PHASE_STABILIZATION"}
    names |= {"phase_stabilization_reference": "PHASE_STABILIZATION_REFERENCE"}
    assert {k: getattr(ismrmrd, f"ACQ_IS_{v}") for k, v in names.items()} == ISMRMRD_FLAGS


# ----------------------------------------------------------------------------- twix


@pytest.mark.parametrize("version", ["VE", "VB"])
def test_twix_round_trip(tmp_path, version):
    pytest.importorskip("twixtools")
    from mri_n2n.data.synthetic_raw import write_twix_file

    imgs, maps = _images(3), _maps()
    out = write_twix_file(tmp_path / "meas.dat", imgs, maps, voxel_size=VOXEL, version=version)
    r = read_raw(tmp_path / "meas.dat")
    assert r.source == "twix" and r.meta["software"] == ("VB" if version == "VB" else "VD/VE")
    assert r.shape == (S, C, 2 * H, W) and r.mask.all() and r.recon_shape == (H, W)
    np.testing.assert_array_equal(r.kspace, out["kspace"])
    np.testing.assert_allclose(_coil_images(r.kspace), imgs[:, None] * maps[None], atol=1e-5)
    assert r.voxel_size == pytest.approx(VOXEL) and r.meta["readout_oversampling"] == 2
    assert r.meta["skipped"] == {"noise": 1, "phasecorr": S} and r.meta["noise"].shape == (C, 2 * H)
    np.testing.assert_allclose(r.meta["slice_positions"][:, 2], [-1.5, 1.5])

    # undersampled, partial Fourier (lines counted from the first acquired), separate ACS lines
    every4 = np.arange(W) % 4 == 0
    out = write_twix_file(
        tmp_path / "pf.dat", imgs, maps, mask=every4, partial_fourier=0.75, acs_lines=8, version=version
    )
    r = read_twix(tmp_path / "pf.dat")
    first = W - round(0.75 * W)
    assert r.meta["center_line"] == W // 2 - first and r.shape == (S, C, 2 * H, W)
    np.testing.assert_array_equal(r.mask, out["mask"])
    assert np.array_equal(r.mask[0, 0], every4 & (np.arange(W) >= first))
    np.testing.assert_array_equal(r.kspace, out["kspace"])
    np.testing.assert_array_equal(r.calibration, out["calibration"])


def _mdb(lin, sli=0, data=None, flags=(), **counters):
    counter = types.SimpleNamespace(Lin=lin, Sli=sli, Par=0, Eco=0, Phs=0, Rep=0, Set=0, Ave=0)
    for key, v in counters.items():
        setattr(counter, key, v)
    pos = types.SimpleNamespace(Sag=0.0, Cor=0.0, Tra=float(sli))
    mdh = types.SimpleNamespace(
        Counter=counter,
        CenterCol=4,
        CenterLin=2,
        SliceData=types.SimpleNamespace(SlicePos=pos, Quaternion=[1, 0, 0, 0]),
    )
    data = np.arange(8, dtype=np.complex64)[None].repeat(2, 0) if data is None else data
    return types.SimpleNamespace(mdh=mdh, data=data, is_flag_set=lambda name: name in flags)


def test_twix_assembly_on_mocked_readouts():
    """The gridding rules on twixtools-like readouts: averages, REFLECT, centre, refusals."""
    hdr = {
        "Meas": {"flReadoutOSFactor": 2.0, "iRoFTLength": 8},
        "MeasYaps": {"sKSpace": {"lPhaseEncodingLines": 6}},
    }
    image = [
        _mdb(0),
        _mdb(1, flags=("REFLECT",)),
        _mdb(2),
        _mdb(2, data=np.zeros((2, 8), np.complex64), Ave=1),
    ]
    k, mask, cal, geo = _assemble_twix(image, [], hdr, "mock.dat")
    assert k.shape == (1, 2, 8, 6) and geo["readout_oversampling"] == 2 and cal is None
    assert np.array_equal(mask[0, 0], [False, True, True, True, False, False])  # Lin 0 at col 6 // 2 - 2
    np.testing.assert_array_equal(k[0, 0, :, 2], np.arange(8)[::-1])
    np.testing.assert_array_equal(k[0, 0, :, 3], np.arange(8) / 2)  # two averages
    with pytest.raises(VolumeError) as e:
        _assemble_twix([_mdb(0), _mdb(0, Eco=1)], [], hdr, "mock.dat")
    assert "2 echoes" in _one_line(e, "mock.dat")


# ----------------------------------------------------------------------------- errors


@pytest.mark.timeout(60)
def test_unreadable_files_give_one_line_errors(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5" * 40)
    (tmp_path / "junk.dat").write_bytes(rng.bytes(5000))
    (tmp_path / "zeros.dat").write_bytes(b"\x00" * 20000)
    (tmp_path / "notes.txt").write_text("x")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["image"] = np.zeros((2, 4, 4))
    with h5py.File(tmp_path / "noxml.h5", "w") as f:
        f.create_group("dataset").create_dataset("data", data=np.zeros(3))
    write_fastmri_multicoil_h5(tmp_path / "mc.h5", _images(), _maps())
    raw = (tmp_path / "mc.h5").read_bytes()
    (tmp_path / "trunc.h5").write_bytes(raw[: len(raw) // 2])
    nan = np.zeros((2, 8, 8), np.complex64)
    nan[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    cases = {
        "junk.h5": "not a readable HDF5",
        "junk.dat": "twix",
        "zeros.dat": "twix",
        "notes.txt": "not a raw k-space file",
        "other.h5": "neither fastMRI",
        "noxml.h5": "no XML header",
        "trunc.h5": "HDF5",
        "missing.h5": "file not found",
    }
    if importlib.util.find_spec("twixtools"):
        from mri_n2n.data.synthetic_raw import write_twix_file

        write_twix_file(tmp_path / "good.dat", _images(), _maps(), version="VB")
        raw = (tmp_path / "good.dat").read_bytes()
        (tmp_path / "cut.dat").write_bytes(raw[: len(raw) * 2 // 3])
        cases["cut.dat"] = "truncated"
    for name, expect in cases.items():
        with pytest.raises(VolumeError) as e:
            read_raw(tmp_path / name)
        assert expect in _one_line(e, name)
    with pytest.raises(VolumeError) as e:
        read_raw(tmp_path / "nan.npy", layout="slices,ky,kx")
    assert "NaN" in _one_line(e, "nan.npy")
    with pytest.raises(VolumeError) as e:
        read_ismrmrd(tmp_path / "mc.h5")
    assert "no ISMRMRD group 'dataset'" in _one_line(e, "mc.h5")
