"""ISMRMRD files whose readouts carry trajectories (issue 33 item 4): round trips through
:func:`write_ismrmrd_noncartesian` (golden-angle radial and spiral, one or many coils and
slices, trajectories in k-space points, cycles per pixel or radians all read as the same
normalised trajectory), and one clear line for each hostile file, the file left as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from mri_n2n.io import (
    MultiCoilKSpace,
    NonCartesianKSpace,
    VolumeError,
    read_ismrmrd,
    read_ismrmrd_noncartesian,
    read_raw,
    write_ismrmrd_noncartesian,
)
from mri_n2n.io.noncartesian import normalize_trajectory

pytest.importorskip("ismrmrd")

GOLDEN = np.pi * (np.sqrt(5) - 1) / 2  # 111.25 degrees between successive spokes


def _radial(spokes: int, samples: int, *, golden: bool = True) -> np.ndarray:
    """Spokes through the centre, ``(spokes, samples, 2)`` in cycles per pixel, largest radius 0.5
    (the first sample of every spoke)."""
    angle = np.arange(spokes) * (GOLDEN if golden else np.pi / spokes)
    r = (np.arange(samples) - samples / 2) / samples
    return np.stack([r * np.cos(angle)[:, None], r * np.sin(angle)[:, None]], axis=-1)


def _spiral(interleaves: int, samples: int, turns: float = 4.0, alpha: float = 1.5) -> np.ndarray:
    """A variable-density spiral (denser at the centre for ``alpha > 1``), radius 0.5 at the end."""
    t = np.linspace(0.0, 1.0, samples)
    phi = 2 * np.pi * (turns * t[None] + np.arange(interleaves)[:, None] / interleaves)
    rad = 0.5 * t**alpha
    return np.stack([rad * np.cos(phi), rad * np.sin(phi)], axis=-1)


def _kspace(slices: int, coils: int, readouts: int, samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((2, slices, coils, readouts, samples)).astype(np.float32)
    return (z[0] + 1j * z[1]).astype(np.complex64)


def _one_line(exc: pytest.ExceptionInfo, name: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and name in msg, msg
    return msg


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


UNITS = {  # file coordinates from cycles per pixel t on an N x N matrix
    "points": lambda t, n: t * n,
    "cycles": lambda t, n: t,
    "radians": lambda t, n: t * 2 * np.pi,
}


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_radial_round_trip_in_any_unit(tmp_path, unit):
    s, c, r, n, m = 3, 4, 13, 32, 32
    traj, k = _radial(r, n), _kspace(s, c, r, n)
    path = tmp_path / f"radial_{unit}.h5"
    write_ismrmrd_noncartesian(
        path, k, UNITS[unit](traj, m), (m, m), recon_matrix=(m // 2, m // 2), voxel_size=(0.5, 0.5, 3.0),
        trajectory_type="goldenangle", noise_readouts=1, navigators=True,
    )
    nc = read_ismrmrd(path)
    assert isinstance(nc, NonCartesianKSpace) and nc.source == "ismrmrd"
    assert nc.trajectory_type == "goldenangle"
    assert nc.shape == (s, c, r, n) and nc.kspace.dtype == np.complex64
    np.testing.assert_array_equal(nc.kspace, k)
    assert nc.trajectory.dtype == np.float32 and nc.trajectory.shape == (r, n, 2)
    np.testing.assert_allclose(nc.trajectory, traj, atol=2e-7)
    assert nc.matrix == (m, m) and nc.recon_shape == (m // 2, m // 2)
    assert nc.voxel_size == pytest.approx((0.5, 0.5, 3.0)) and nc.encoded_fov == pytest.approx((16, 16, 3))
    # the scale recorded takes the file's coordinates to the trajectory
    scale = np.asarray(nc.meta["trajectory_scale"])
    np.testing.assert_allclose(UNITS[unit](traj, m) * scale, nc.trajectory, atol=2e-7)
    assert nc.meta["trajectory_normalization"] == "radius" and nc.meta["trajectory_dimensions"] == 2
    # the largest radius is the matrix edge; no golden-angle spoke of 13 lies along the second
    # axis, and that axis is not stretched to the edge (as a per-axis rule would)
    radius = np.sqrt((nc.trajectory.astype(np.float64) ** 2).sum(-1))
    assert radius.max() == pytest.approx(0.5, abs=1e-7)
    widest = 0.5 * np.abs(np.sin(np.arange(r) * GOLDEN)).max()
    assert np.abs(nc.trajectory[..., 1]).max() == pytest.approx(widest)
    assert np.abs(nc.trajectory[..., 1]).max() < 0.499
    # geometry and the readouts that are not image data
    np.testing.assert_allclose(nc.meta["slice_positions"][:, 2], [-3.0, 0.0, 3.0])
    np.testing.assert_allclose(nc.meta["read_dir"], np.tile([1.0, 0, 0], (s, 1)))
    assert nc.meta["slice_indices"] == [0, 1, 2]
    assert nc.meta["skipped"] == {"noise": 1, "navigation": s} and nc.meta["noise"].shape == (c, n)
    assert isinstance(read_raw(path), NonCartesianKSpace)
    np.testing.assert_array_equal(read_ismrmrd_noncartesian(path).trajectory, nc.trajectory)


def test_spiral_one_coil_one_slice_and_many(tmp_path):
    traj = _spiral(6, 64)
    for s, c in ((1, 1), (2, 8)):
        k = _kspace(s, c, 6, 64, seed=s)
        path = tmp_path / f"spiral_{s}_{c}.mrd"
        write_ismrmrd_noncartesian(path, k, traj * 48, (48, 48), trajectory_type="spiral")
        nc = read_raw(path)
        assert isinstance(nc, NonCartesianKSpace) and nc.trajectory_type == "spiral"
        assert nc.shape == (s, c, 6, 64)
        np.testing.assert_array_equal(nc.kspace, k)
        np.testing.assert_allclose(nc.trajectory, traj, atol=2e-7)
        assert nc.meta["skipped"] == {} and "noise" not in nc.meta


def test_non_square_matrix_scales_each_axis(tmp_path):
    """A 32 x 24 matrix with the file in k-space points: each axis reaches its own edge (mrpro's
    per-axis rule), so uniform spokes (0 and 90 degrees among them) come back in cycles per pixel."""
    traj = _radial(16, 32, golden=False)
    write_ismrmrd_noncartesian(tmp_path / "rect.h5", _kspace(1, 2, 16, 32), traj * [32, 24], (32, 24))
    nc = read_ismrmrd(tmp_path / "rect.h5")
    assert nc.matrix == (32, 24) and nc.meta["trajectory_normalization"] == "per-axis"
    np.testing.assert_allclose(nc.trajectory, traj, atol=2e-7)
    np.testing.assert_allclose(nc.meta["trajectory_scale"], [1 / 32, 1 / 24])


def test_a_zero_third_coordinate_is_read_as_2d(tmp_path):
    traj = _radial(8, 16)
    padded = np.concatenate([traj * 16, np.zeros((8, 16, 1))], axis=-1)
    write_ismrmrd_noncartesian(tmp_path / "z0.h5", _kspace(1, 1, 8, 16), padded, (16, 16))
    nc = read_ismrmrd(tmp_path / "z0.h5")
    assert nc.meta["trajectory_dimensions"] == 3
    np.testing.assert_allclose(nc.trajectory, traj, atol=2e-7)


def test_normalize_trajectory_rules():
    t = _radial(5, 8)
    out, scale = normalize_trajectory(t * np.pi, (8, 8))
    np.testing.assert_allclose(out, t, atol=1e-7)
    assert scale == pytest.approx((0.5 / (0.5 * np.pi),) * 2)
    with pytest.raises(VolumeError, match="zero along axis 1"):
        normalize_trajectory(np.stack([t[..., 0], 0 * t[..., 1]], -1), (8, 6), "f.h5")
    bad = t.copy()
    bad[0, 0] = [np.nan, np.inf]
    with pytest.raises(VolumeError, match="f.h5: the trajectory holds 1 NaN and 1 infinite coordinates$"):
        normalize_trajectory(bad, (8, 8), "f.h5")


def test_cartesian_files_read_as_before(tmp_path):
    from mri_n2n.data.synthetic_raw import write_ismrmrd_file

    imgs = np.ones((1, 8, 8), np.complex64)
    write_ismrmrd_file(tmp_path / "cart.h5", imgs, np.ones((2, 8, 8), np.complex64))
    assert isinstance(read_ismrmrd(tmp_path / "cart.h5"), MultiCoilKSpace)
    with pytest.raises(VolumeError) as e:
        read_ismrmrd_noncartesian(tmp_path / "cart.h5")
    assert "no image readout carries a trajectory" in _one_line(e, "cart.h5")


def test_inputs_with_trajectories_are_told_apart_from_headers_alone(tmp_path):
    """``--checkpoint default`` asks what each input is: trajectory files are ``noncartesian``
    (read from the acquisition headers only), Cartesian ISMRMRD files ``multicoil``; files that
    are not ISMRMRD are not trajectory files (their reader says why)."""
    from mri_n2n.data.synthetic_raw import write_ismrmrd_file
    from mri_n2n.io.mrd_format import has_trajectories
    from mri_n2n.reconstruction.batch import InputItem, input_data

    ones = np.ones((2, 8, 8), np.complex64)
    write_ismrmrd_file(tmp_path / "cart.h5", ones[:1], ones)
    write_ismrmrd_noncartesian(tmp_path / "rad.h5", _kspace(1, 2, 8, 16), _radial(8, 16) * 8, (8, 8))
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    assert has_trajectories(tmp_path / "rad.h5") and not has_trajectories(tmp_path / "cart.h5")
    assert not has_trajectories(tmp_path / "junk.h5") and not has_trajectories(tmp_path / "none.h5")

    def kind(name: str) -> str:
        return input_data(InputItem(str(tmp_path / name), "kspace", (str(tmp_path / name),), name=name))

    assert kind("rad.h5") == "noncartesian" and kind("cart.h5") == "multicoil"


# ----------------------------------------------------------------------------- hostile files


def _rewrite(path: Path, edit) -> None:
    """Change the acquisitions (``edit(rows)`` mutates the compound rows) or the header of a file
    in place, with h5py (files the ismrmrd package cannot write)."""
    with h5py.File(path, "r+") as f:
        g = f["dataset"]
        rows = g["data"][...]
        xml = g["xml"][0]
        new_xml = edit(rows, xml)
        dtype = g["data"].dtype
        del g["data"]
        g.create_dataset("data", data=rows, dtype=dtype, maxshape=(None,), chunks=True)
        if new_xml is not None:
            xdt = g["xml"].dtype
            del g["xml"]
            g.create_dataset("xml", data=[new_xml], dtype=xdt, maxshape=(None,), chunks=True)


def _set_traj(rows, i, values, dims=None):
    rows["traj"][i] = np.asarray(values, np.float32)
    if dims is not None:
        rows["head"]["trajectory_dimensions"][i] = dims


def _nan(rows, xml):
    t = rows["traj"][3].copy()
    t[5] = np.nan
    _set_traj(rows, 3, t)


def _inf(rows, xml):
    t = rows["traj"][2].copy()
    t[0] = np.inf
    _set_traj(rows, 2, t)


def _some_only(rows, xml):
    for i in (1, 4):
        _set_traj(rows, i, [], dims=0)


def _sample_count(rows, xml):
    _set_traj(rows, 2, rows["traj"][2][:-4])


def _zero_length(rows, xml):
    _set_traj(rows, 5, [])


def _no_coordinates(rows, xml):
    for i in range(len(rows)):
        _set_traj(rows, i, [], dims=0)


def _depth(rows, xml):
    text = xml.decode() if isinstance(xml, bytes) else str(xml)
    return text.replace("<z>1</z></matrixSize>", "<z>4</z></matrixSize>")


S, C, R, N = 2, 2, 8, 16

HOSTILE = {
    # name: (trajectory written, edit, what the line says)
    "one_d": (lambda t: t[..., :1], None, "1-D trajectory for a 2-D encoding"),
    "three_d": (lambda t: np.concatenate([t, t[..., :1]], -1), None, "3-D trajectory"),
    "nan": (lambda t: t, _nan, "1 NaN coordinate (first: readout 3 of slice 0)"),
    "inf": (lambda t: t, _inf, "1 infinite coordinate (first: readout 2 of slice 0)"),
    "some_readouts": (lambda t: t, _some_only, f"a trajectory on {S * R - 2} of {S * R} image readouts"),
    "sample_count": (lambda t: t, _sample_count, "the trajectory does not match the data"),
    "zero_length": (lambda t: t, _zero_length, "zero-length trajectory"),
    "all_zero": (lambda t: 0 * t, None, "zero everywhere; it cannot be normalised"),
    "slices_differ": (
        lambda t: np.stack([t, t[..., ::-1]]),
        None,
        "slice 1 has another trajectory than slice 0",
    ),
    "three_d_encoding": (lambda t: t, _depth, "a 3-D encoding (encoded matrix z = 4)"),
    "header_only": (lambda t: t, _no_coordinates, "radial trajectory in the header, but no readout carries"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_files_give_one_line_and_stay_untouched(tmp_path, case):
    shape, edit, expect = HOSTILE[case]
    path = tmp_path / f"{case}.h5"
    write_ismrmrd_noncartesian(path, _kspace(S, C, R, N), shape(_radial(R, N) * N), (N, N))
    if edit is not None:
        _rewrite(path, edit)
    before, listing = _digest(path), sorted(p.name for p in tmp_path.iterdir())
    for reader in (read_raw, read_ismrmrd):
        with pytest.raises(VolumeError) as e:
            reader(path)
        assert expect in _one_line(e, f"{case}.h5")
    assert _digest(path) == before and sorted(p.name for p in tmp_path.iterdir()) == listing


# ----------------------------------------------------------------------------- the writer


def test_writer_is_atomic_and_checks_shapes(tmp_path, monkeypatch):
    import ismrmrd

    path = tmp_path / "out.h5"
    k, t = _kspace(1, 2, R, N), _radial(R, N)
    with pytest.raises(ValueError, match="does not fit kspace"):
        write_ismrmrd_noncartesian(path, k, t[:, :-1], (N, N))
    with pytest.raises(ValueError, match="trajectory_type"):
        write_ismrmrd_noncartesian(path, k, t, (N, N), trajectory_type="rosette")
    assert not path.exists()
    write_ismrmrd_noncartesian(path, k, t, (N, N))
    good = _digest(path)
    calls = {"n": 0}
    real = ismrmrd.Dataset.append_acquisition

    def failing(self, acq):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("disk full")
        return real(self, acq)

    monkeypatch.setattr(ismrmrd.Dataset, "append_acquisition", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        write_ismrmrd_noncartesian(path, 2 * k, t, (N, N))
    assert _digest(path) == good and [p.name for p in tmp_path.iterdir()] == ["out.h5"]


# ----------------------------------------------------------------------------- reconstruct


def test_reconstruct_refuses_a_cartesian_checkpoint_in_one_line(tmp_path, capsys):
    """``reconstruct`` reads such a file and, given a checkpoint of another kind, says in one line
    what it needs (a checkpoint trained with ``--trajectory``); the input stays as it was."""
    import torch

    from mri_n2n.checkpoint import save_checkpoint
    from mri_n2n.config import Config
    from mri_n2n.models import build_model
    from mri_n2n.reconstruct import main
    from mri_n2n.reconstruction import Reconstructor
    from mri_n2n.reconstruction.engine import ReconstructionError

    torch.manual_seed(0)
    model = build_model("unet", in_channels=2, out_channels=2, base=4, depth=1)
    ckpt = tmp_path / "complex.pt"
    cfg = Config(preset="tiny", size=32, complex=True).to_dict()
    state = {"task": "mri", "model_spec": model.spec, "model": model.state_dict(), "config": cfg}
    save_checkpoint(ckpt, state)
    data = tmp_path / "data"
    data.mkdir()
    path = data / "radial.h5"
    write_ismrmrd_noncartesian(path, _kspace(2, 4, R, N), _radial(R, N) * N, (N, N))
    before = _digest(path)
    out = tmp_path / "out"
    rc = main([str(path), "--checkpoint", str(ckpt), "--out", str(out), "--device", "cpu"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 1 and len(err) == 1, err
    assert "radial.h5: non-Cartesian k-space (radial trajectory, 8 readouts x 16 samples, 4 coils" in err[0]
    assert "needs a checkpoint trained on the non-Cartesian kind" in err[0]
    assert _digest(path) == before and [p.name for p in data.iterdir()] == ["radial.h5"]
    assert not list(out.glob("*.nii*")) and not list(out.rglob(".*"))
    rec = Reconstructor.from_checkpoint(ckpt, device="cpu")
    with pytest.raises(ReconstructionError, match="non-Cartesian k-space"):
        rec.multicoil(read_raw(path))


def test_multicoil_training_sets_refuse_them_in_one_line(tmp_path):
    from mri_n2n.data.multicoil import MultiCoilSliceDataset

    path = tmp_path / "spiral.h5"
    write_ismrmrd_noncartesian(path, _kspace(1, 2, 4, 32), _spiral(4, 32), (16, 16), trajectory_type="spiral")
    with pytest.raises(VolumeError) as e:
        MultiCoilSliceDataset([path], size=16)
    assert "non-Cartesian k-space (spiral trajectory)" in _one_line(e, "spiral.h5")
