"""``python -m mri_n2n.reconstruct``: k-space reconstruction with exact data consistency,
retrospective studies (--simulate) and their metrics, input conventions, output naming,
a mixed batch with bad files, refusals (checkpoints, --out), and the benchmark."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from mri_n2n.bench.reconstruct import bench_reconstruct
from mri_n2n.checkpoint import save_checkpoint
from mri_n2n.config import Config
from mri_n2n.corruptions import seeded_generator
from mri_n2n.data import volume_scale
from mri_n2n.data.synthetic import DicomGeometry, phantom_volume, write_dicom_series, write_fastmri_h5
from mri_n2n.fft import fft2c, ifft2c
from mri_n2n.io import load_volume, read_kspace_input
from mri_n2n.masks import (
    MASK_LAW_ATTR,
    IndependentLines,
    MaskFamily,
    family_from_description,
    make_family,
)
from mri_n2n.metrics import volume_metrics
from mri_n2n.models import build_model
from mri_n2n.physics import phase_factors
from mri_n2n.reconstruct import main
from mri_n2n.reconstruction import Reconstructor, slice_seed
from mri_n2n.reconstruction.engine import kspace_normalize
from mri_n2n.sampling import bernoulli_mask, exp_decay_density
from mri_n2n.training import train

# --------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A real (5-step) MRI checkpoint from the trainer."""
    out = tmp_path_factory.mktemp("run")
    train(
        Config(
            preset="tiny",
            dataset="mni152",
            size=32,
            max_steps=5,
            out=str(out),
            quiet=True,
            figures=False,
            tensorboard=False,
            device="cpu",
        )
    )
    return out / "checkpoints" / "last.pt"


@pytest.fixture(scope="module")
def complex_ckpt(tmp_path_factory) -> Path:
    """An (untrained) two-channel (real, imaginary) MRI checkpoint."""
    torch.manual_seed(1)
    model = build_model("unet", in_channels=2, out_channels=2, base=4, depth=1)
    cfg = Config(preset="tiny", size=32, complex=True).to_dict()
    path = tmp_path_factory.mktemp("cplx") / "complex.pt"
    save_checkpoint(
        path, {"task": "mri", "model_spec": model.spec, "model": model.state_dict(), "config": cfg}
    )
    return path


def _sha_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _cli(capsys, *args) -> tuple[int, str, list[str]]:
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, [line for line in cap.err.splitlines() if line.strip()]


def _hermitian_masks(shape, fraction, n, seed=0) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    dens = exp_decay_density(shape, fraction=fraction)
    return bernoulli_mask(dens, generator=g, batch_size=n, hermitian=True).numpy()


def _images(n=4, h=24, w=28, seed=0, peak=600.0) -> np.ndarray:
    vol = phantom_volume((h, w, n), content=(0, n), seed=seed, peak=peak)
    return np.ascontiguousarray(np.moveaxis(vol, 2, 0))  # (slices, H, W)


def _nifti(path: Path, shape=(22, 26, 5), seed=0, peak=900.0) -> np.ndarray:
    vol = np.round(phantom_volume(shape, content=(1, shape[2]), seed=seed, peak=peak)).astype(np.int16)
    aff = np.diag([0.9, 0.95, 1.3, 1.0])
    aff[:3, 3] = [-10.0, -12.0, -3.0]
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(vol, aff), path)
    return vol.astype(np.float32)


def _assert_dc_exact(recon_k: np.ndarray, measured: np.ndarray, mask: np.ndarray) -> None:
    scale = float(np.abs(measured).max())
    np.testing.assert_allclose(recon_k[mask], measured[mask], rtol=0, atol=2e-6 * scale)


def _expected_kspace_recon(
    rec: Reconstructor, kspace: np.ndarray, mask: np.ndarray, family: MaskFamily
) -> tuple[np.ndarray, float]:
    """The k-space pipeline written out step by step, for slices ``(S, H, W)`` and a full mask:
    1/p-compensated zero-filling, normalisation by the p99.5 of its magnitudes, the network (on the
    phase-corrected real part, or on real/imaginary channels), data consistency with the measured
    k-space, and back to the input's units. Returns the complex volume ``(S, H, W)`` and the scale."""
    m = torch.from_numpy(np.ascontiguousarray(mask)).bool()
    y = torch.where(m, torch.from_numpy(np.ascontiguousarray(kspace)).to(torch.complex64), 0)
    p = family.keep_probability()
    zf = ifft2c(y * m / p)
    scale = volume_scale(zf.abs().numpy(), kspace_normalize(rec.normalize))
    y, zf = y / scale, zf / scale
    with torch.no_grad():
        if rec.complex_model:
            out = rec.model(torch.stack([zf.real, zf.imag], dim=1))
            est = torch.complex(out[:, 0], out[:, 1])
        else:
            phase = phase_factors(y, m)
            est = rec.model((zf * phase.conj()).real[:, None])[:, 0] * phase
    x = ifft2c(torch.where(m, y, fft2c(est)))  # measured where sampled, the network elsewhere
    return (x * scale).numpy(), scale


_ISMRMRD = """<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding><encodedSpace>
<matrixSize><x>24</x><y>28</y><z>1</z></matrixSize>
<fieldOfView_mm><x>120</x><y>70</y><z>3.5</z></fieldOfView_mm>
</encodedSpace></encoding></ismrmrdHeader>"""


# --------------------------------------------------------------------------------------
# k-space


def test_h5_kspace_reconstruction_is_exact_on_sampled_frequencies(ckpt, tmp_path, capsys):
    imgs = _images()
    family = make_family("exp", imgs.shape[1:], fraction=0.3, hermitian=True)
    masks = family.sample(len(imgs), generator=torch.Generator().manual_seed(0)).numpy()
    path = tmp_path / "in" / "knee.h5"
    path.parent.mkdir()
    k = write_fastmri_h5(path, imgs, mask=masks.astype(np.float32))
    with h5py.File(path, "a") as f:
        f.create_dataset("ismrmrd_header", data=np.bytes_(_ISMRMRD))
        f.attrs[MASK_LAW_ATTR] = json.dumps(family.describe())  # the law the masks came from
    kin = read_kspace_input(path)
    assert kin.mask_source == "dataset" and kin.voxel_size == pytest.approx((5.0, 2.5, 3.5))
    assert family_from_description(kin.mask_law) == family

    rec = Reconstructor.from_checkpoint(ckpt, device="cpu")
    r = rec.kspace(kin.kspace, kin.mask, law=family, keep_complex=True)
    assert r.image.shape == (24, 28, 4) and r.image.dtype == np.float32
    recon_k = fft2c(torch.from_numpy(np.ascontiguousarray(np.moveaxis(r.complex_image, 2, 0)))).numpy()
    _assert_dc_exact(recon_k, k, masks)  # data consistency: the file's own measurements, exactly
    # the unsampled frequencies are the network's, fed the compensated, normalised zero-filling
    expect, scale = _expected_kspace_recon(rec, k * masks, masks, family)
    assert r.scale == pytest.approx(scale, rel=1e-6)
    got = np.moveaxis(r.complex_image, 2, 0)
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-4 * np.abs(expect).max())
    np.testing.assert_allclose(r.image, np.abs(r.complex_image), rtol=1e-6)
    # real data + Hermitian mask: the paper's real pipeline, the estimate is real
    assert np.abs(r.complex_image.imag).max() <= 1e-4 * np.abs(r.complex_image).max()
    assert r.sampled_fraction == pytest.approx(masks.mean(), rel=1e-6)
    # the mask from the non-zero pattern of the measured k-space gives the same result
    r0 = rec.kspace(k * masks, law=family)
    np.testing.assert_allclose(r0.image, r.image, rtol=1e-5, atol=1e-6 * r.image.max())
    assert r0.mask_law["source"] == "given" and r0.mask_law["family"] == "exp"

    rc, out, err = _cli(capsys, "--checkpoint", ckpt, path, "--out", tmp_path / "out", "--device", "cpu")
    assert rc == 0 and len(err) == 1  # the checkpoint's 10 % masks are not the file's 30 %: said once
    assert err[0].startswith("warning: ") and "sampled fraction of 0.100, the file 0.300" in err[0]
    img = nib.load(tmp_path / "out" / "knee_recon.nii.gz")
    np.testing.assert_allclose(np.asarray(img.dataobj), r.image, rtol=1e-5, atol=1e-6 * r.image.max())
    np.testing.assert_allclose(img.header.get_zooms(), (5.0, 2.5, 3.5))
    row = json.loads((tmp_path / "out" / "report.json").read_text())["inputs"][0]
    assert row["status"] == "ok" and row["mode"] == "kspace" and row["shape"] == [24, 28, 4]
    assert row["mask_law"]["source"] == "recorded" and row["mask_law"]["family"] == "exp"


def test_complex_kspace_one_and_two_channel_models(ckpt, complex_ckpt):
    # a complex image (smooth phase), a 1-D line mask over kx as in fastMRI
    imgs = _images(n=3, seed=2)
    yy, xx = np.mgrid[:24, :28]
    cimgs = (imgs * np.exp(1j * (0.08 * xx + 0.05 * yy))[None]).astype(np.complex64)
    k = fft2c(torch.from_numpy(cimgs)).numpy()
    cols = np.zeros(28, bool)
    cols[[0, 3, 7, 11, 12, 13, 14, 15, 16, 20, 25]] = True
    mask = np.broadcast_to(cols, k.shape)
    for path in (ckpt, complex_ckpt):
        rec = Reconstructor.from_checkpoint(path, device="cpu", batch_size=2)
        r = rec.kspace(k * mask, cols, keep_complex=True)
        got = np.moveaxis(r.complex_image, 2, 0)
        recon_k = fft2c(torch.from_numpy(np.ascontiguousarray(got))).numpy()
        _assert_dc_exact(recon_k, k, mask)
        # one channel: the network sees the phase-corrected real part and its output gets the phase
        # back; two channels: real and imaginary parts. Either way, the complex output is the
        # step-by-step pipeline's, and the image is its magnitude
        # no recorded law: the centre run 11..16 is always kept, the rest at its uniform rate
        p_cols = np.where((np.arange(28) >= 11) & (np.arange(28) <= 16), 1.0, 5 / 22)
        law = IndependentLines(24, torch.from_numpy(p_cols))
        assert r.mask_law["source"] == "estimated"
        expect, scale = _expected_kspace_recon(rec, k * mask, mask, law)
        assert r.scale == pytest.approx(scale, rel=1e-6)
        np.testing.assert_allclose(got, expect, rtol=0, atol=1e-4 * np.abs(expect).max())
        np.testing.assert_allclose(r.image, np.abs(r.complex_image), rtol=1e-6)
        assert r.sampled_fraction == pytest.approx(cols.mean(), rel=1e-6)
    assert Reconstructor.from_checkpoint(complex_ckpt, device="cpu").complex_model
    # fully sampled k-space: data consistency leaves nothing to the network, output = |image|
    rec = Reconstructor.from_checkpoint(ckpt, device="cpu")
    full = rec.kspace(k, np.ones(28))
    np.testing.assert_allclose(np.moveaxis(full.image, 2, 0), np.abs(cimgs), atol=1e-4 * np.abs(cimgs).max())
    assert full.sampled_fraction == 1.0


def test_npy_and_npz_conventions(ckpt, tmp_path, capsys):
    imgs = _images(n=3, seed=3)
    masks = _hermitian_masks(imgs.shape[1:], 0.3, 3, seed=1)
    k = fft2c(torch.from_numpy(imgs)).numpy().astype(np.complex64)
    d = tmp_path / "in"
    d.mkdir()
    np.save(d / "x.npy", k * masks)
    np.save(d / "x_mask.npy", masks)  # the sidecar: not an input of its own
    np.savez(d / "z.npz", kspace=k * masks, mask=masks, voxel_size=np.array([0.5, 0.6, 2.0]))
    kin = read_kspace_input(d / "x.npy")
    assert kin.mask_source == "sidecar" and kin.mask.shape == k.shape and kin.voxel_size is None
    assert read_kspace_input(d / "z.npz").voxel_size == pytest.approx((0.5, 0.6, 2.0))

    rc, out, err = _cli(capsys, "--checkpoint", ckpt, d, "--out", tmp_path / "out", "--device", "cpu")
    assert rc == 0 and len(err) == 2 and all("the file 0.29" in e for e in err)  # 30 % vs trained 10 %
    rows = json.loads((tmp_path / "out" / "report.json").read_text())["inputs"]
    assert [Path(r["input"]).name for r in rows] == ["x.npy", "z.npz"]
    expected = Reconstructor.from_checkpoint(ckpt, device="cpu").kspace(k * masks, masks).image
    for name in ("x_recon.nii.gz", "z_recon.nii.gz"):
        got = np.asarray(nib.load(tmp_path / "out" / name).dataobj)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * expected.max())
    np.testing.assert_allclose(
        nib.load(tmp_path / "out" / "z_recon.nii.gz").header.get_zooms(), (0.5, 0.6, 2.0)
    )

    # clear one-line errors for unusable arrays; a pickled .npy is refused, not unpickled
    np.savez(d / "nokspace.npz", data=k)
    np.save(d / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(d / "w.npy", k[:, :, :5])
    np.save(d / "w_mask.npy", masks)  # wrong shape for w
    rc, out, err = _cli(
        capsys,
        "--checkpoint",
        ckpt,
        d / "nokspace.npz",
        d / "obj.npy",
        d / "w.npy",
        "--out",
        tmp_path / "out2",
        "--device",
        "cpu",
    )
    assert rc == 1 and len(err) == 3
    assert "no 'kspace' array" in err[0] and "pickled" in err[1] and "does not match" in err[2]


# --------------------------------------------------------------------------------------
# retrospective studies


def test_simulate_report_metrics_and_data_consistency(ckpt, tmp_path, capsys):
    src = tmp_path / "in" / "head.nii.gz"
    vol = _nifti(src)
    out = tmp_path / "out"
    rc, stdout, err = _cli(
        capsys,
        "--checkpoint",
        ckpt,
        src,
        "--out",
        out,
        "--simulate",
        0.3,
        "--seed",
        5,
        "--figures",
        "--device",
        "cpu",
    )
    assert rc == 0 and err == [] and "PSNR zero-filled" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["simulate"] == 0.3 and report["seed"] == 5
    row = report["inputs"][0]
    assert row["status"] == "ok" and row["mode"] == "simulate" and row["error"] is None
    m = row["metrics"]
    assert set(m) == {
        "psnr_zero_filled",
        "ssim_zero_filled",
        "nmse_zero_filled",
        "psnr_zero_filled_plain",
        "ssim_zero_filled_plain",
        "nmse_zero_filled_plain",
        "psnr",
        "ssim",
        "nmse",
        "data_range",
    }
    assert m["data_range"] == float(vol.max())  # fastMRI: the reference volume's maximum
    # one volume, one data range and one ||ref||^2: PSNR gains are -10 log10 of NMSE ratios
    gain = m["psnr"] - m["psnr_zero_filled"]
    assert gain == pytest.approx(-10 * np.log10(m["nmse"] / m["nmse_zero_filled"]), abs=1e-6)
    assert abs(row["sampled_fraction"] - 0.3) < 0.1
    csv_text = (out / "report.csv").read_text().splitlines()
    assert csv_text[0].startswith("input,kind,mode,output,status,error,seconds") and len(csv_text) == 2
    assert (out / "figures" / "head_recon.png").stat().st_size > 0

    # the output keeps the input's geometry, header type and units
    img = nib.load(out / "head_recon.nii.gz")
    src_img = nib.load(src)
    np.testing.assert_allclose(img.affine, src_img.affine)
    assert img.get_data_dtype() == np.int16 and img.shape == vol.shape

    # the library gives the same study; its output is exact on each slice's sampled k-space
    rec = Reconstructor.from_checkpoint(ckpt, device="cpu")
    r = rec.simulate(vol, 0.3, seed=5, keep_complex=True)
    for key, value in m.items():
        assert r.metrics[key] == pytest.approx(value, rel=1e-6)
    assert np.abs(np.asarray(img.dataobj) - r.image).max() <= float(img.dataobj.slope) / 2 + 1e-3
    corruption = rec.corruption(vol.shape[:2], 0.3)
    for kk in range(vol.shape[2]):
        mask = corruption.draw_masks(1, seeded_generator(slice_seed(5, kk)))[0].numpy()
        truth = fft2c(torch.from_numpy(vol[:, :, kk])).numpy()
        got = fft2c(torch.from_numpy(np.ascontiguousarray(r.complex_image[:, :, kk]))).numpy()
        if np.abs(truth[mask]).max() > 0:
            _assert_dc_exact(got, truth, mask)
    # the metrics are fastMRI's volume metrics, recomputed here from the returned image, and from
    # the zero-filled volume rebuilt from the same seeded masks (1/p compensation, magnitude)
    ref = np.moveaxis(vol, 2, 0)
    whole = volume_metrics(np.moveaxis(r.image, 2, 0), ref)
    for key in ("psnr", "ssim", "nmse", "data_range"):
        assert r.metrics[key] == pytest.approx(whole[key], rel=1e-6)
    masks = torch.cat(
        [corruption.draw_masks(1, seeded_generator(slice_seed(5, kk))) for kk in range(len(ref))]
    )
    y = fft2c(torch.from_numpy(np.ascontiguousarray(ref))) * masks
    zero_filled = ifft2c(y / corruption.keep_prob).abs().numpy()
    zf = volume_metrics(zero_filled, ref)
    plain = volume_metrics(ifft2c(y).abs().numpy(), ref)  # no compensation: the usual baseline
    for key in ("psnr", "ssim", "nmse"):
        assert r.metrics[f"{key}_zero_filled"] == pytest.approx(zf[key], rel=1e-5)
        assert r.metrics[f"{key}_zero_filled_plain"] == pytest.approx(plain[key], rel=1e-5)
    # the output is in the input's units: scaling the input scales the output, metrics unchanged
    assert r.scale == pytest.approx(float(vol.max()))  # the checkpoint's "max" normalisation
    r3 = rec.simulate(vol * 3.0, 0.3, seed=5)
    assert r3.scale == pytest.approx(3 * r.scale)
    np.testing.assert_allclose(r3.image, 3 * r.image, rtol=0, atol=1e-5 * 3 * vol.max())
    for key, value in r.metrics.items():
        assert r3.metrics[key] == pytest.approx(3 * value if key == "data_range" else value, rel=1e-5)
    # streaming: the batch size changes nothing; the seed changes the masks
    r1 = Reconstructor.from_checkpoint(ckpt, device="cpu", batch_size=1).simulate(vol, 0.3, seed=5)
    np.testing.assert_allclose(r1.image, r.image, rtol=1e-4, atol=1e-4 * vol.max())
    r2 = rec.simulate(vol, 0.3, seed=6)
    assert np.abs(r2.image - r.image).max() > 1e-2 * vol.max()


def test_mixed_batch_with_bad_files(ckpt, tmp_path, capsys):
    data = tmp_path / "data"
    _nifti(data / "good.nii.gz", seed=1)
    geo = DicomGeometry(pixel_spacing=(0.8, 0.9), slice_step=2.0, origin=(5.0, -3.0, 10.0))
    series = phantom_volume((20, 18, 4), content=(0, 4), seed=2, peak=700.0)
    write_dicom_series(data / "dicom", series, geo, slope=0.5, shuffle_seed=1)
    write_dicom_series(data / "dicom", series[:, :, :3] * 0.5, geo, slope=0.5, shuffle_seed=7)  # a 2nd series
    write_fastmri_h5(data / "full.h5", _images(n=3, seed=4))  # fully sampled: studied with --simulate
    raw = (data / "good.nii.gz").read_bytes()
    (data / "trunc.nii.gz").write_bytes(raw[: len(raw) // 2])
    (data / "junk.dcm").write_bytes(np.random.default_rng(0).bytes(700))
    np.save(data / "vec.npy", np.arange(50.0))
    (data / "notes.txt").write_text("not an input")  # skipped quietly
    before = _sha_tree(data)

    out = tmp_path / "out"
    rc, stdout, err = _cli(
        capsys, "--checkpoint", ckpt, data, "--out", out, "--simulate", 0.3, "--device", "cpu"
    )
    assert rc == 1
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    joined = "\n".join(err)
    assert "trunc.nii.gz: cannot read NIfTI" in joined
    assert "junk.dcm: not a DICOM file" in joined
    assert "vec.npy: k-space must be complex" in joined and "(50,)" in joined
    assert _sha_tree(data) == before  # inputs byte-identical, nothing added beside them

    report = json.loads((out / "report.json").read_text())
    status = {Path(r["input"].split(" [")[0]).name: r["status"] for r in report["inputs"]}
    assert sorted(r["status"] for r in report["inputs"]).count("ok") == 4
    assert status["good.nii.gz"] == status["full.h5"] == "ok"
    assert status["trunc.nii.gz"] == status["junk.dcm"] == status["vec.npy"] == "failed"
    assert (out / "good_recon.nii.gz").is_file() and (out / "full_recon.nii.gz").is_file()
    dicom_outs = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(dicom_outs) == 2 and all(p.name.startswith("dicom_") for p in dicom_outs)
    for folder in dicom_outs:
        back = load_volume(folder)
        assert back.shape[:2] == (20, 18)
        ds = pydicom.dcmread(next(folder.iterdir()))
        assert "N2N recon" in ds.SeriesDescription and ds.PatientID == "SYNTH0001"
    assert not [p for p in out.rglob(".*")]  # no temporary leftovers
    csv_rows = (out / "report.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 7


def test_image_input_without_simulate_and_output_naming(ckpt, tmp_path, capsys):
    _nifti(tmp_path / "a" / "v.nii.gz", shape=(16, 18, 3))
    _nifti(tmp_path / "b" / "v.nii.gz", shape=(16, 18, 3), seed=3)
    rc, _, err = _cli(
        capsys, "--checkpoint", ckpt, tmp_path / "a", "--out", tmp_path / "o1", "--device", "cpu"
    )
    assert rc == 1 and len(err) == 1 and "--simulate" in err[0] and "v.nii.gz" in err[0]
    # same stem twice: the second output gets _2; an existing output is refused without --force
    args = ["--checkpoint", ckpt, tmp_path / "a", tmp_path / "b", "--simulate", 0.5, "--device", "cpu"]
    rc, _, err = _cli(capsys, *args, "--out", tmp_path / "o2")
    assert rc == 0 and err == []
    assert sorted(p.name for p in (tmp_path / "o2").glob("*.nii.gz")) == [
        "v_recon.nii.gz",
        "v_recon_2.nii.gz",
    ]
    stamp = (tmp_path / "o2" / "v_recon.nii.gz").read_bytes()
    rc, _, err = _cli(capsys, *args, "--out", tmp_path / "o2")
    assert rc == 1 and len(err) == 2 and all("exists" in e and "--force" in e for e in err)
    assert (tmp_path / "o2" / "v_recon.nii.gz").read_bytes() == stamp
    rc, _, err = _cli(capsys, *args, "--out", tmp_path / "o2", "--force", "--format", "nifti")
    assert rc == 0 and err == []


# --------------------------------------------------------------------------------------
# refusals and arguments


class _RunsCode:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_non_checkpoints_code_pickles_and_photo_checkpoints(tmp_path, capsys):
    h5 = tmp_path / "k.h5"
    write_fastmri_h5(h5, _images(n=2))
    text = tmp_path / "notes.pt"
    text.write_text("this is not a checkpoint")
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "mri_n2n-checkpoint", "task": "mri", "payload": _RunsCode(marker)}, evil)
    model = build_model("unet", in_channels=3, out_channels=3, base=4, depth=1)
    photo = tmp_path / "photo.pt"
    save_checkpoint(
        photo, {"task": "image", "model_spec": model.spec, "model": model.state_dict(), "config": {}}
    )
    expect = {text: "not a PyTorch checkpoint", evil: "refused", photo: "'image'"}
    for path, words in expect.items():
        out = tmp_path / f"out_{path.stem}"
        rc, _, err = _cli(capsys, "--checkpoint", path, h5, "--out", out)
        assert rc == 2 and len(err) == 1 and err[0].startswith("error: --checkpoint") and words in err[0]
        assert not out.exists()
    assert not marker.exists()  # the pickle's command never ran


def test_out_inside_an_input_folder(ckpt, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    imgs = _images(n=2)
    k = write_fastmri_h5(data / "k.h5", imgs)
    masks = _hermitian_masks(imgs.shape[1:], 0.4, 2)
    np.save(data / "u.npy", k * masks)
    before = _sha_tree(data)
    for out in (data, data / "recon"):
        rc, _, err = _cli(capsys, "--checkpoint", ckpt, data, "--out", out)
        assert rc == 2 and len(err) == 1 and "inside the input folder" in err[0]
    rc, _, err = _cli(capsys, "--checkpoint", ckpt, data / "u.npy", "--out", data)  # beside a file input
    assert rc == 2 and "folder of the input" in err[0]
    assert _sha_tree(data) == before and not (data / "recon").exists()
    rc, _, err = _cli(
        capsys, "--checkpoint", ckpt, data, "--out", data / "recon", "--force", "--device", "cpu"
    )
    errors = [e for e in err if not e.startswith("warning: ")]  # u.npy keeps 40 %, trained 10 %
    assert rc == 0 and errors == [] and (data / "recon" / "u_recon.nii.gz").is_file()
    after = _sha_tree(data)
    assert {k: v for k, v in after.items() if not k.startswith("recon")} == before


def test_argument_errors_are_one_line(ckpt, tmp_path, capsys):
    h5 = tmp_path / "k.h5"
    write_fastmri_h5(h5, _images(n=2))
    cases = [
        ["--checkpoint", ckpt, h5],  # no --out
        ["--checkpoint", ckpt, h5, "--out", tmp_path / "o", "--simulate", 1.5],
        ["--checkpoint", ckpt, h5, "--out", tmp_path / "o", "--simulate", 0],
        ["--checkpoint", ckpt, h5, "--out", tmp_path / "o", "--seed", 3],
        ["--checkpoint", ckpt, h5, "--out", tmp_path / "o", "--batch-size", 0],
        ["--checkpoint", ckpt, h5, "--out", tmp_path / "o", "--format", "png"],
        ["--checkpoint", ckpt, h5, "--out", tmp_path / "o", "--device", "tpu"],
        ["--checkpoint", ckpt, h5, "--out", h5],  # --out is a file
    ]
    for args in cases:
        rc, _, err = _cli(capsys, *args)
        assert rc == 2 and len(err) == 1 and err[0].startswith("error:"), (args, err)
    assert not (tmp_path / "o").exists()


def test_bench_reconstruct(ckpt):
    threads = torch.get_num_threads()
    res = bench_reconstruct(ckpt, size=32, slices=4, batch_size=2, threads=threads + 1)
    assert res["slices"] == 4 and res["shape"] == [32, 32, 4] and res["batch_size"] == 2
    assert res["slices_per_s"] == pytest.approx(res["slices"] / res["seconds"], rel=1e-12)
    assert res["device"] == "cpu" and res["checkpoint"] == str(ckpt) and res["model"] == "unet"
    assert res["threads"] == threads + 1 and torch.get_num_threads() == threads  # set, then restored
    assert json.loads(json.dumps(res)) == res  # JSON-serialisable as it is


def test_phase_estimate_for_complex_images():
    imgs = _images(n=2, h=32, w=32, seed=5)
    yy, xx = np.mgrid[:32, :32]
    phase = 0.6 * np.sin(xx / 9.0) + 0.04 * yy  # smooth
    masks = torch.from_numpy(_hermitian_masks((32, 32), 0.4, 2, seed=2))
    real_k = fft2c(torch.from_numpy(imgs)) * masks
    assert torch.equal(phase_factors(real_k, masks), torch.ones_like(real_k))  # real data: the paper's path
    cplx_k = fft2c(torch.from_numpy((imgs * np.exp(1j * phase)[None]).astype(np.complex64))) * masks
    est = np.angle(phase_factors(cplx_k, masks).numpy())
    head = imgs > 0.3 * imgs.max()
    err = np.angle(np.exp(1j * (est - phase[None])))[head]
    assert np.abs(err).mean() < 0.15


def test_bench_cli_reconstruct_writes_json_and_markdown(ckpt, tmp_path):
    from mri_n2n.bench.__main__ import main as bench_main

    assert bench_main(["reconstruct", "--quick", "--checkpoint", str(ckpt), "--results", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "reconstruct_quick.json").read_text())
    assert res["shape"] == [256, 256, 16] and res["slices"] == 16
    assert res["slices_per_s"] == pytest.approx(res["slices"] / res["seconds"], rel=1e-12)
    assert res["machine"]["device"] == "cpu" and res["checkpoint"] == str(ckpt)
    md = (tmp_path / "reconstruct_quick.md").read_text()
    assert "Command: `python -m mri_n2n.bench" in md
    # the table shows the JSON's numbers
    lines = md.splitlines()
    head = lines.index("| volume | batch | device | threads | slices/s | checkpoint |")
    row = (
        f"| 256x256x16 | {res['batch_size']} | cpu | {res['threads']} | {res['slices_per_s']:.2f} | {ckpt} |"
    )
    assert lines[head + 2] == row


@pytest.mark.parametrize(
    "kw, fraction, complex_data",
    [
        ({}, None, None),
        ({}, 0.3, None),
        ({"complex": True, "density": "gaussian"}, 0.2, None),
        ({"density": "exp", "fraction": 0.0, "edge": 0.05}, None, None),
        ({"density": "lines_random", "acceleration": 3.0, "center_fraction": 0.2}, 0.25, True),
        ({"density": "lines_equispaced"}, None, True),
    ],
)
def test_reconstructor_mask_family_is_the_corruptions(kw, fraction, complex_data):
    """The Reconstructor builds its mask family from the config without a training corruption:
    the same law (description and keep probabilities) as the corruption the run trained with."""
    import dataclasses

    from mri_n2n.corruptions import MRIUndersampling
    from mri_n2n.reconstruction.api import _mask_family

    cfg = dataclasses.replace(Config(), **kw)
    ref_cfg = cfg if complex_data is None else dataclasses.replace(cfg, complex=complex_data)
    want = MRIUndersampling.from_config(ref_cfg, (40, 36), fraction=fraction)
    got = _mask_family(cfg, (40, 36), fraction, complex_data=complex_data)
    assert got.describe() == want.family.describe()
    assert torch.equal(got.keep_probability(), want.family.keep_probability())
    if fraction is None and complex_data is None:
        rec = Reconstructor(torch.nn.Conv2d(1, 1, 3, padding=1), cfg, device="cpu")
        assert torch.equal(rec.keep_prob((40, 36)), want.keep_prob)
