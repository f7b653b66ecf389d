"""Writers of reconstructed volumes: NIfTI (affine, header, scale) and new DICOM series (UIDs,
copied tags, geometry, values), read back with this package's readers, pydicom and nibabel.
(tests/test_dicom_output.py checks the DICOM pixel values in detail.)"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from mri_n2n.data.synthetic import (
    OBLIQUE_GEOMETRY,
    phantom_volume,
    write_dicom_series,
    write_enhanced_dicom,
)
from mri_n2n.io import RAS_TO_LPS, load_volume, write_nifti
from mri_n2n.io.dicom import dicom_geometry_from_affine
from mri_n2n.io.dicom import write_dicom_series as write_recon_series

OBLIQUE = OBLIQUE_GEOMETRY  # exact-decimal direction cosines (3-4-5 triangles)


def _nib_wrapper(path):
    with warnings.catch_warnings():  # nibabel calls its DICOM readers experimental
        warnings.simplefilter("ignore")
        import nibabel.nicom.dicomwrappers as dw

        return dw.wrapper_from_file(str(path))


#: nibabel 5.3 (nipy/nibabel#1342) applies a Real World Value Mapping with defined units; older
#: versions return our series' stored integers.
NIB_APPLIES_RWV = tuple(int(x) for x in nib.__version__.split(".")[:2]) >= (5, 3)


def _nib_values(w, slope: float) -> np.ndarray:
    """nibabel's data of one of our files, in our units."""
    data = np.asarray(w.get_data(), dtype=np.float64)
    return data if NIB_APPLIES_RWV else data * slope


def _hidden_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------------------
# NIfTI


def test_nifti_keeps_affine_header_and_scale(tmp_path):
    rng = np.random.default_rng(0)
    aff = np.array([[0, 0, 1.2, -10], [-0.9, 0, 0, 5], [0, 1.1, 0, 2], [0, 0, 0, 1.0]])
    src = nib.Nifti1Image(np.round(rng.random((6, 7, 5)) * 900).astype(np.int16), aff)
    src.header.set_xyzt_units("mm", "msec")
    src.header.set_dim_info(freq=1, phase=0, slice=2)
    src.set_sform(aff, code=2)
    src.set_qform(aff, code=1)
    nib.save(src, tmp_path / "in.nii.gz")
    vol = load_volume(tmp_path / "in.nii.gz")
    recon = (vol.array * 0.73 + 0.31).astype(np.float32)  # non-integer values in input units

    out = write_nifti(
        tmp_path / "out" / "r.nii.gz", recon, vol.affine, header=vol.meta["header"], description="recon"
    )
    img = nib.load(out)
    assert img.get_data_dtype() == np.int16  # the input's on-disk type
    np.testing.assert_allclose(img.affine, aff)
    assert int(img.header["sform_code"]) == 2 and int(img.header["qform_code"]) == 1
    assert img.header.get_xyzt_units() == ("mm", "msec")
    assert img.header.get_dim_info() == (1, 0, 2)
    np.testing.assert_allclose(img.header.get_zooms(), src.header.get_zooms())
    assert img.header["descrip"].tobytes().startswith(b"recon")
    slope = float(img.dataobj.slope)
    back = np.asarray(img.dataobj, dtype=np.float64)
    assert np.abs(back - recon).max() <= slope / 2 + 1e-4  # within half a quantisation step
    # and our reader gives the same volume
    again = load_volume(out)
    np.testing.assert_allclose(again.affine, vol.affine)
    assert np.abs(again.array - recon).max() <= slope / 2 + 1e-4

    # float32 keeps values exactly; no header: float32, scanner codes, same affine
    src32 = nib.Nifti1Image(recon, aff)
    out32 = write_nifti(tmp_path / "f.nii", recon, aff, header=src32.header)
    np.testing.assert_array_equal(np.asarray(nib.load(out32).dataobj), recon)
    out_plain = write_nifti(tmp_path / "p.nii.gz", recon, aff)
    plain = nib.load(out_plain)
    assert plain.get_data_dtype() == np.float32 and int(plain.header["sform_code"]) == 1
    np.testing.assert_allclose(plain.affine, aff)
    assert _hidden_leftovers(tmp_path) == [] and _hidden_leftovers(tmp_path / "out") == []


def test_nifti_refuses_overwrite_and_bad_data_atomically(tmp_path):
    aff = np.eye(4)
    path = write_nifti(tmp_path / "r.nii.gz", np.ones((4, 4, 3), np.float32), aff)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="exists"):
        write_nifti(path, np.zeros((4, 4, 3), np.float32), aff)
    bad = np.ones((4, 4, 3), np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        write_nifti(path, bad, aff, overwrite=True)
    assert path.read_bytes() == before  # the good file is untouched
    write_nifti(path, np.full((4, 4, 3), 2.0, np.float32), aff, overwrite=True)
    assert np.asarray(nib.load(path).dataobj).max() == 2.0
    assert _hidden_leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------
# DICOM


def _dicom_input(tmp_path, shape=(20, 24, 7)):
    vol = phantom_volume(shape, content=(0, shape[2]), seed=1, peak=3000.0)
    write_dicom_series(tmp_path / "in", vol, OBLIQUE, slope=2.5, intercept=-100.0, shuffle_seed=2)
    for f in (tmp_path / "in").iterdir():  # add tags a real scanner writes
        ds = pydicom.dcmread(f)
        ds.PatientBirthDate = "19700101"
        ds.StudyDate = "20240102"
        ds.AccessionNumber = "ACC123"
        ds.FrameOfReferenceUID = "1.2.3.4.5"
        ds.SeriesNumber = 7
        ds.EchoTime = "4.5"
        ds.save_as(f, enforce_file_format=True)
    return load_volume(tmp_path / "in")


def test_dicom_series_round_trip(tmp_path):
    src = _dicom_input(tmp_path)
    recon = (src.array * 0.61 + 3.3).astype(np.float32)
    info = write_recon_series(
        tmp_path / "out" / "s_recon",
        recon,
        src.affine,
        template=src.meta["dataset"],
        positions=src.meta["positions"],
        series_description="synthetic T1 N2N recon",
    )
    assert info.pixel_representation == 0 and len(info.files) == src.shape[2]
    assert sorted(p.name for p in (tmp_path / "out" / "s_recon").iterdir()) == sorted(
        p.name for p in info.files
    )
    assert _hidden_leftovers(tmp_path / "out") == []

    # our reader: same geometry, values within the rescale quantisation
    back = load_volume(tmp_path / "out" / "s_recon")
    np.testing.assert_allclose(back.affine, src.affine, atol=1e-5)
    np.testing.assert_allclose(back.meta["positions"], src.meta["positions"], atol=1e-5)
    assert np.abs(back.array - recon).max() <= info.slope / 2 + 1e-3

    # pydicom: new UIDs, copied patient/study/frame tags, marked description, consistent rescale
    in_files = [pydicom.dcmread(f, stop_before_pixels=True) for f in src.meta["files"]]
    in_sops = {str(d.SOPInstanceUID) for d in in_files}
    ref = in_files[0]
    out_ds = [pydicom.dcmread(f) for f in info.files]
    sops = {str(d.SOPInstanceUID) for d in out_ds}
    assert len(sops) == len(out_ds) and not sops & in_sops
    assert {str(d.SeriesInstanceUID) for d in out_ds} == {info.series_uid}
    assert info.series_uid != src.meta["series_uid"]
    for d in out_ds:
        for kw in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "StudyDate"):
            assert str(d[kw].value) == str(ref[kw].value), kw
        assert d.AccessionNumber == "ACC123" and d.FrameOfReferenceUID == "1.2.3.4.5"
        assert float(d.EchoTime) == 4.5 and int(d.SeriesNumber) == 1007
        assert "recon" in d.SeriesDescription and "DERIVED" in d.ImageType
        assert d.PixelRepresentation == 0 and d.BitsStored == 12 and d.pixel_array.dtype == np.uint16
        assert "RescaleSlope" not in d and "RescaleIntercept" not in d  # no Modality LUT in MR Image
        assert d.RealWorldValueMappingSequence[0].RealWorldValueSlope == info.slope
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
    # InstanceNumber follows the slice normal
    normal = np.cross(OBLIQUE.row_cosine, OBLIQUE.col_cosine)
    along = [float(np.asarray(d.ImagePositionPatient, float) @ normal) for d in out_ds]
    numbers = [int(d.InstanceNumber) for d in out_ds]
    assert [n for _, n in sorted(zip(along, numbers))] == sorted(numbers)

    # nibabel's DICOM reader: per-file geometry and scaled data
    for k, f in enumerate(info.files):
        w = _nib_wrapper(f)
        np.testing.assert_allclose(_nib_values(w, info.slope), recon[:, :, k].T, atol=info.slope / 2 + 1e-3)
        aff = w.affine  # (row, column, slice) index -> LPS
        np.testing.assert_allclose(aff[:3, 3], src.meta["positions"][k], atol=1e-5)
        np.testing.assert_allclose(aff[:3, 0], np.asarray(OBLIQUE.col_cosine) * 0.9, atol=1e-6)
        np.testing.assert_allclose(aff[:3, 1], np.asarray(OBLIQUE.row_cosine) * 1.1, atol=1e-6)


def test_dicom_signed_values_and_overwrite(tmp_path):
    rng = np.random.default_rng(3)
    arr = (rng.standard_normal((9, 8, 4)) * 50).astype(np.float32)  # negative values
    aff = np.diag([1.5, 1.5, 3.0, 1.0])
    info = write_recon_series(tmp_path / "s", arr, aff)
    assert info.pixel_representation == 1
    d = pydicom.dcmread(info.files[0])
    assert d.PixelRepresentation == 1 and d.pixel_array.dtype == np.int16 and d.BitsStored == 12
    back = load_volume(tmp_path / "s")
    assert np.abs(back.array - arr).max() <= info.slope / 2 + 1e-4
    assert info.slope == pytest.approx(np.abs(arr).max() / 2047, rel=1e-12)  # 12-bit signed: +-2047
    # a new study when there is no template
    assert d.PatientName == "" and d.StudyInstanceUID and d.FrameOfReferenceUID
    with pytest.raises(FileExistsError):
        write_recon_series(tmp_path / "s", arr, aff)
    old_uid = info.series_uid
    info2 = write_recon_series(tmp_path / "s", arr * 2, aff, overwrite=True)
    assert info2.series_uid != old_uid and len(list((tmp_path / "s").iterdir())) == 4
    assert _hidden_leftovers(tmp_path) == []


def test_nifti_affine_to_dicom_geometry(tmp_path):
    # a left-handed NIfTI grid (the usual radiological storage) with an oblique rotation
    theta = 0.3
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([-0.9, 1.1, 2.0])
    aff[:3, 3] = [12.0, -30.0, 5.5]
    vol = phantom_volume((16, 18, 6), content=(0, 6), seed=4, peak=700.0)
    geo = dicom_geometry_from_affine(aff, 6)
    lps = RAS_TO_LPS @ aff
    np.testing.assert_allclose(geo.positions[3], (lps @ [0, 0, 3, 1])[:3])
    assert geo.pixel_spacing == pytest.approx((1.1, 0.9)) and geo.slice_spacing == pytest.approx(2.0)

    info = write_recon_series(tmp_path / "s", vol, aff)
    back = load_volume(tmp_path / "s")
    # the same voxels at the same patient positions (the slice order may be reversed)
    a = nib.as_closest_canonical(nib.Nifti1Image(vol, aff))
    b = nib.as_closest_canonical(nib.Nifti1Image(back.array, back.affine))
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-5)
    assert np.abs(b.get_fdata() - a.get_fdata()).max() <= info.slope / 2 + 1e-3
    # nibabel's reader agrees slice by slice: voxel (0, 0) of each file sits where the NIfTI says
    for f in info.files:
        w = _nib_wrapper(f)
        k = int(round(float(np.linalg.solve(lps[:3, :3], w.affine[:3, 3] - lps[:3, 3])[2])))
        np.testing.assert_allclose(w.affine[:3, 3], (lps @ [0, 0, k, 1])[:3], atol=1e-5)
        np.testing.assert_allclose(_nib_values(w, info.slope), vol[:, :, k].T, atol=info.slope / 2 + 1e-3)


def test_sheared_affine_is_refused(tmp_path):
    aff = np.eye(4)
    aff[0, 1] = 0.5  # j axis not orthogonal to i
    with pytest.raises(ValueError, match="sheared"):
        write_recon_series(tmp_path / "s", np.ones((4, 4, 2), np.float32), aff)
    assert not (tmp_path / "s").exists() and os.listdir(tmp_path) == []


def test_enhanced_multiframe_input_as_template(tmp_path):
    vol = phantom_volume((12, 10, 5), content=(0, 5), seed=5, peak=900.0)
    write_enhanced_dicom(tmp_path / "mf.dcm", vol, OBLIQUE, slopes=[1.0, 0.5, 2.0, 1.0, 1.0])
    src = load_volume(tmp_path / "mf.dcm")
    info = write_recon_series(
        tmp_path / "s", src.array, src.affine, template=src.meta["dataset"], positions=src.meta["positions"]
    )
    back = load_volume(tmp_path / "s")
    np.testing.assert_allclose(back.affine, src.affine, atol=1e-5)
    assert np.abs(back.array - src.array).max() <= info.slope / 2 + 1e-3
    d = pydicom.dcmread(info.files[0])
    assert d.StudyInstanceUID == src.meta["dataset"].StudyInstanceUID
    assert d.SeriesInstanceUID != src.meta["series_uid"]
