"""Measured undersampled k-space: the network input is compensated by the file's own mask law,
readout oversampling is removed exactly, references give fastMRI metrics, uncentred k-space is
refused in one line."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from mri_n2n.checkpoint import save_checkpoint
from mri_n2n.config import Config
from mri_n2n.data.measured import check_centred, crop_readout
from mri_n2n.io import read_kspace_input
from mri_n2n.reconstruct import main
from mri_n2n.reconstruction import ReconstructionError, Reconstructor

ENC = (32, 20)  # readout x phase encode, the readout oversampled 2x (fastMRI: 640 x 368)
RECON = (16, 16)  # the reconstruction matrix (fastMRI: 320 x 320)
_HEADER = """<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding>
<encodedSpace><matrixSize><x>32</x><y>20</y><z>1</z></matrixSize>
<fieldOfView_mm><x>320</x><y>100</y><z>4</z></fieldOfView_mm></encodedSpace>
<reconSpace><matrixSize><x>16</x><y>16</y><z>1</z></matrixSize>
<fieldOfView_mm><x>160</x><y>80</y><z>4</z></fieldOfView_mm></reconSpace>
</encoding></ismrmrdHeader>"""


def _cfg() -> Config:
    return Config(complex=True)


class Recorder(nn.Module):
    """A two-channel 'network' that records what it is given and returns zeros."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return torch.zeros_like(x)


def _fft_c(x, axes):
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho"), axes=axes)


def _ifft_c(k, axes):
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(k, axes=axes), axes=axes, norm="ortho"), axes=axes)


def _volume(n=3, seed=0) -> np.ndarray:
    """Complex images (n, 32, 20): an ellipse with texture inside the central 16 readout rows."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: ENC[0], : ENC[1]]
    ell = ((yy - 15.5) / 7.0) ** 2 + ((xx - 9.5) / 8.0) ** 2 < 1
    out = []
    for i in range(n):
        tex = 0.6 + 0.4 * rng.random(ENC)
        phase = np.exp(1j * (0.2 * xx / ENC[1] + 0.3 * i + 0.1 * yy / ENC[0]))
        out.append(500.0 * ell * tex * phase)
    return np.asarray(out, np.complex64)


def _cols() -> np.ndarray:
    cols = np.zeros(ENC[1], bool)
    cols[8:12] = True  # the fully sampled centre (fastMRI: (W - n + 1) // 2 = 8 for n = 4)
    cols[[0, 3, 6, 13, 16, 19]] = True  # equispaced outside it
    return cols


def _write(path, imgs, cols) -> np.ndarray:
    k = _fft_c(imgs, (-2, -1)).astype(np.complex64)
    ref = np.abs(_ifft_c(k, (-2, -1)))[:, 8:24, 2:18].astype(np.float32)  # fastMRI's centre crop
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=k * cols)
        f.create_dataset("reconstruction_esc", data=ref)
        f.create_dataset("ismrmrd_header", data=np.bytes_(_HEADER))
        f.attrs["mask"] = cols.astype(np.float32)  # fastMRI test files: a 1-D mask over kx
        f.attrs["max"] = float(ref.max())
        f.attrs["acquisition"] = "CORPD_FBK"
    return k


def test_network_input_is_compensated_by_the_files_own_mask_law(tmp_path):
    imgs, cols = _volume(), _cols()
    k = _write(tmp_path / "file.h5", imgs, cols)
    kin = read_kspace_input(tmp_path / "file.h5")
    assert kin.mask_source == "attribute" and kin.recon_shape == RECON and kin.reference.shape == (3, 16, 16)
    model = Recorder()
    rec = Reconstructor(model, Config(complex=True), device="cpu", batch_size=8)
    r = rec.kspace_input(kin, keep_complex=True)
    (inp,) = model.inputs
    assert inp.shape == (3, 2, 16, 20)  # the readout is cropped to 16 rows; the 20 columns stay

    # independently: crop the readout in image space, back to k-space, keep the measured columns
    img_ro = _ifft_c(k * cols, (-2,))[:, 8:24, :]
    y = _fft_c(img_ro, (-2,)) * cols
    # the file's law: its centre run is always kept, the other columns at their uniform rate
    p = np.where((np.arange(20) >= 8) & (np.arange(20) < 12), 1.0, 6 / 16)
    expected = _ifft_c(y / p, (-2, -1))
    got = (inp[:, 0] + 1j * inp[:, 1]).numpy() * r.scale
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-4 * np.abs(expected).max())
    # the checkpoint's own (10 % 2-D) density would give a different input
    assert r.mask_law == {
        "source": "estimated",
        "family": "lines",
        "fraction": pytest.approx(0.5),
        "hermitian": False,
    }
    assert any("1-D lines" in w for w in r.warnings)

    # outputs: 16 x 16, exact on the measured columns of the cropped grid, fastMRI metrics
    assert r.image.shape == (16, 16, 3)
    assert set(r.metrics) >= {"psnr", "ssim", "nmse", "psnr_zero_filled"}
    assert r.metrics["data_range"] == pytest.approx(float(kin.max_value))
    # a zero network: the output is the data-consistent zero-filled image without compensation
    plain = np.abs(_ifft_c(y, (-2, -1)))[:, :, 2:18]
    np.testing.assert_allclose(np.moveaxis(r.image, 2, 0), plain, rtol=0, atol=1e-4 * plain.max())


def test_crop_readout_keeps_a_line_mask_exact():
    imgs, cols = _volume(2, seed=1), _cols()
    k = _fft_c(imgs, (-2, -1)).astype(np.complex64)
    mask = np.broadcast_to(cols, k.shape)
    kc, mc = crop_readout(k * cols, mask, 16)
    assert kc.shape == (2, 16, 20) and mc.shape == (2, 16, 20)
    full = _fft_c(_ifft_c(k, (-2, -1))[:, 8:24, :], (-2, -1))  # the fully sampled crop
    np.testing.assert_allclose(kc[mc], full[mc], atol=1e-3)
    assert np.all(kc[~mc] == 0)
    with pytest.raises(ValueError, match="whole columns"):
        crop_readout(k, np.random.default_rng(0).random(k.shape) < 0.5, 16)


def test_uncentred_kspace_is_refused_in_one_line(tmp_path, capsys):
    imgs = _volume(2)
    k = np.fft.fft2(np.fft.ifftshift(imgs, axes=(-2, -1)), norm="ortho").astype(np.complex64)  # DC at [0, 0]
    with pytest.raises(Exception, match="not centred"):
        check_centred(k)
    check_centred(_fft_c(imgs, (-2, -1)))  # centred: fine
    check_centred(np.random.default_rng(0).standard_normal((2, 16, 16)).astype(np.complex64))  # flat: fine
    model = Recorder()
    rec = Reconstructor(model, Config(complex=True), device="cpu")
    with pytest.raises(ReconstructionError, match="not centred"):
        rec.kspace(k * _cols(), _cols())
    assert model.inputs == []  # refused before anything ran

    np.save(tmp_path / "uncentred.npy", k * _cols())
    torch.manual_seed(0)
    ckpt = tmp_path / "m.pt"
    from mri_n2n.models import build_model

    net = build_model("unet", in_channels=2, out_channels=2, base=4, depth=1)
    save_checkpoint(
        ckpt,
        {"task": "mri", "model_spec": net.spec, "model": net.state_dict(), "config": _cfg().to_dict()},
    )
    args = ["--checkpoint", ckpt, tmp_path / "uncentred.npy", "--out", tmp_path / "out", "--device", "cpu"]
    rc = main([str(a) for a in args])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 1 and len(err) == 1 and "not centred" in err[0] and "uncentred.npy" in err[0]
    assert not (tmp_path / "out" / "uncentred_recon.nii.gz").exists()


def test_recorded_law_drives_the_compensation(tmp_path):
    from mri_n2n.masks import MASK_LAW_ATTR, make_family

    imgs = _volume(2, seed=3)
    fam = make_family("lines_equispaced", ENC, acceleration=3, center_fraction=0.2)
    cols = fam.sample(generator=torch.Generator().manual_seed(2))[0].numpy()
    _write(tmp_path / "rec.h5", imgs, cols)
    with h5py.File(tmp_path / "rec.h5", "a") as f:
        f.attrs[MASK_LAW_ATTR] = json.dumps(fam.describe())
    model = Recorder()
    r = Reconstructor(model, _cfg(), device="cpu").kspace_input(read_kspace_input(tmp_path / "rec.h5"))
    assert r.mask_law["source"] == "recorded" and r.mask_law["family"] == "lines_equispaced"
    assert r.mask_law["shape"] == [16, 20]  # the law follows the readout crop
    with h5py.File(tmp_path / "rec.h5", "a") as f:
        f.attrs[MASK_LAW_ATTR] = "{broken"
    with pytest.raises(ReconstructionError, match="rec.h5.*JSON"):
        Reconstructor(model, _cfg(), device="cpu").kspace_input(read_kspace_input(tmp_path / "rec.h5"))


def test_fastmri_style_writer_round_trip(tmp_path):
    from mri_n2n.data.synthetic import write_fastmri_h5

    imgs = _volume(2)[:, 8:24, :]  # (2, 16, 20): the reconstruction matrix
    cols = _cols()
    k = write_fastmri_h5(
        tmp_path / "f.h5", imgs, mask=cols.astype(np.float32), mask_attribute=True, oversample=2,
        noise_std=0.5,
    )  # fmt: skip
    kin = read_kspace_input(tmp_path / "f.h5")
    assert kin.kspace.shape == (2, 32, 20) and kin.mask_source == "attribute" and kin.recon_shape == (16, 20)
    np.testing.assert_array_equal(kin.kspace, k)
    assert np.all(k[:, :, ~cols] == 0)  # pre-masked, as fastMRI's test files
    np.testing.assert_allclose(kin.reference, np.abs(imgs), rtol=1e-6)
    assert kin.max_value == pytest.approx(float(np.abs(imgs).max()))
    clean = _fft_c(np.pad(imgs, ((0, 0), (8, 8), (0, 0))), (-2, -1))
    noise = (k - clean)[:, :, cols]
    assert abs(float(np.sqrt(np.mean(np.abs(noise) ** 2))) - 0.5) < 0.05  # the stated noise level


def _measured(masks: np.ndarray, seed: int = 0) -> np.ndarray:
    """Complex k-space (S, H, W) nonzero exactly on ``masks``."""
    rng = np.random.default_rng(seed)
    k = rng.standard_normal(masks.shape) + 1j * rng.standard_normal(masks.shape) + 0.5
    return (k * masks).astype(np.complex64)


def test_file_mask_law_of_hermitian_2d_and_lattice_masks(tmp_path):
    from mri_n2n.data.measured import file_mask_law
    from mri_n2n.masks import make_family

    # 2-D masks of real images (one uniform per partner pair), one per slice: a Hermitian law,
    # so the real keep probability is p (an independent estimate gave about 2p - p^2)
    fam = make_family("exp", (64, 64), fraction=0.1, hermitian=True)
    m = fam.sample(6, generator=torch.Generator().manual_seed(0)).numpy()
    np.savez(tmp_path / "herm.npz", kspace=_measured(m), mask=m)
    kin = read_kspace_input(tmp_path / "herm.npz")
    est, source = file_mask_law(kin.kspace, kin.mask, kin.mask_law)
    assert source == "estimated" and est.hermitian
    ratio = est.real_keep_probability().double().mean() / fam.real_keep_probability().double().mean()
    assert float(ratio) == pytest.approx(1.0, abs=0.05)

    # fastMRI's single-coil files: one equispaced (lattice) mask over kx for every slice
    lat = make_family("lines_lattice", (32, 368), acceleration=4, center_fraction=0.08)
    for offset in range(4):
        cols = lat.table[offset].numpy()
        with h5py.File(tmp_path / "lat.h5", "w") as f:
            f.create_dataset("kspace", data=_measured(np.broadcast_to(cols, (3, 32, 368))))
            f.attrs["mask"] = cols.astype(np.float32)
        kin = read_kspace_input(tmp_path / "lat.h5")
        est, source = file_mask_law(kin.kspace, kin.mask, kin.mask_law)
        assert source == "estimated" and est == lat  # the exact law: same description, same p
        assert torch.equal(est.real_keep_probability(), lat.real_keep_probability())

    # per-slice offsets of one law: every slice's mask is used, and together they fix a centre
    # (6 % at 4x) that one mask leaves open
    lat6 = make_family("lines_lattice", (32, 368), acceleration=4, center_fraction=0.06)
    m = lat6.table[[1, 3, 0, 1]][:, None, :].expand(4, 32, 368).numpy()
    np.savez(tmp_path / "slices.npz", kspace=_measured(m), mask=m)
    kin = read_kspace_input(tmp_path / "slices.npz")
    est, source = file_mask_law(kin.kspace, kin.mask, kin.mask_law)
    assert source == "estimated" and est == lat6
    one = np.broadcast_to(lat6.table[1].numpy(), (2, 32, 368))
    est, source = file_mask_law(_measured(one), one, None)
    assert source.startswith("estimated (unidentified: the fully sampled centre is 21 to 22 lines")


def test_an_unidentified_mask_law_is_reported_and_warned(tmp_path, capsys):
    yy, xx = np.mgrid[: ENC[0], : ENC[1]]
    grid = np.broadcast_to((yy + xx) % 2 == 0, (2, *ENC))  # a checkerboard: no random law gives it
    k = (_fft_c(_volume(2), (-2, -1)) * grid).astype(np.complex64)
    r = Reconstructor(Recorder(), _cfg(), device="cpu").kspace(k, grid)
    assert r.mask_law["source"].startswith("estimated (unidentified: neighbouring bins")
    assert any("not identified" in w for w in r.warnings)

    np.savez(tmp_path / "grid.npz", kspace=k, mask=grid)
    torch.manual_seed(0)
    from mri_n2n.models import build_model

    net = build_model("unet", in_channels=2, out_channels=2, base=4, depth=1)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(
        ckpt, {"task": "mri", "model_spec": net.spec, "model": net.state_dict(), "config": _cfg().to_dict()}
    )
    rc = main([str(a) for a in ["--checkpoint", ckpt, tmp_path / "grid.npz", "--out", tmp_path / "out"]])
    assert rc == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "not identified" in err and "grid.npz" in err
    row = json.loads((tmp_path / "out" / "report.json").read_text())["inputs"][0]
    assert row["mask_law"]["source"].startswith("estimated (unidentified: ")
    assert any("not identified" in w for w in row["warnings"])


def test_measured_file_bench_scores_every_variant_and_gives_cs_tv_its_best_weight(tmp_path):
    """`bench measured`'s table: each method on the same files, the adapted variant records its
    steps, CS-TV's per-file weight is the best of the weights it tried, and the Markdown agrees."""
    from mri_n2n.bench.cartesian import bench_fastmri_style, fastmri_style_markdown
    from mri_n2n.checkpoint import save_checkpoint
    from mri_n2n.config import Config
    from mri_n2n.data.synthetic import write_fastmri_h5
    from mri_n2n.models import Unrolled

    net = Unrolled(2, 2, cascades=1, width=4, depth=2)
    cfg = Config(task="mri", model="unrolled", size=32, dataset="kspace", complex=True,
                 density="lines_lattice", acceleration=4, center_fraction=0.08)
    ckpt = tmp_path / "c.pt"
    save_checkpoint(ckpt, {"task": "mri", "model_spec": net.spec, "model": net.state_dict(),
                           "config": cfg.to_dict()})
    files = []
    for i in range(2):
        imgs = _volume(2, seed=i)[:, 8:24, :].astype(np.complex64)
        write_fastmri_h5(tmp_path / f"f{i}.h5", imgs, mask=_cols().astype(np.float32), mask_attribute=True,
                         oversample=2, noise_std=0.01, seed=i)
        files.append(tmp_path / f"f{i}.h5")
    res = bench_fastmri_style(ckpt, files, tv_iters=5, ensemble=True, adapt=2)
    assert res["methods"][-4:] == ["N2N", "N2N ens", "N2N adapted", "N2N adapted ens"]
    for row in res["rows"]:
        assert row["N2N adapted/adapt_steps"] == 2 and row["mask_law"]["source"].startswith("estimated")
        assert row["zero-filled/psnr"] < row["N2N/psnr"] + 50
    for m in res["methods"]:
        assert res["mean"][m]["psnr"] == pytest.approx(np.mean([r[f"{m}/psnr"] for r in res["rows"]]))
    fixed = bench_fastmri_style(ckpt, files, tv_iters=5, tv_lam=res["rows"][0]["CS-TV/lam"] * 10)
    assert res["rows"][0]["CS-TV/psnr"] >= fixed["rows"][0]["CS-TV/psnr"] - 1e-9
    md = fastmri_style_markdown(res)
    assert "| f0.h5 |" in md and "N2N adapted ens" in md and "CS-TV weights:" in md
