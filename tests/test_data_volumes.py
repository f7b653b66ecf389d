"""Volume readers: NIfTI, DICOM series (order, rescale, oblique affine), enhanced multi-frame,
clear errors, folder discovery and the nifti/dicom datasets."""

from __future__ import annotations

import os
import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest

from mri_n2n.data import DataDirError, build_mri_datasets
from mri_n2n.data.synthetic import (
    OBLIQUE_GEOMETRY,
    DicomGeometry,
    phantom_volume,
    write_dicom_series,
    write_enhanced_dicom,
)
from mri_n2n.io import VolumeError, find_volumes, load_volume

OBLIQUE = OBLIQUE_GEOMETRY  # exact-decimal direction cosines (3-4-5 triangles)


def _phantom(shape=(20, 24, 9), seed=0, peak=3000.0):
    return phantom_volume(shape, content=(0, shape[2]), seed=seed, peak=peak)


def test_nifti_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.random((6, 7, 5)).astype(np.float32)
    aff = np.array([[0, 0, 1.2, -10], [-0.9, 0, 0, 5], [0, 1.1, 0, 2], [0, 0, 0, 1.0]])
    img = nib.Nifti1Image(arr, aff)
    nib.save(img, tmp_path / "v.nii.gz")
    vol = load_volume(tmp_path / "v.nii.gz")
    assert vol.array.dtype == np.float32 and vol.shape == (6, 7, 5)
    np.testing.assert_array_equal(vol.array, arr)
    np.testing.assert_allclose(vol.affine, aff)
    assert vol.meta["format"] == "nifti" and isinstance(vol.meta["header"], nib.Nifti1Header)
    assert vol.name == "v"
    # scaled integer data come back scaled; a 4-D file with one volume is squeezed
    img16 = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4, 1), np.eye(4))
    img16.header.set_slope_inter(0.5, 10.0)
    nib.save(img16, tmp_path / "s.nii")
    v16 = load_volume(tmp_path / "s.nii")
    assert v16.shape == (2, 3, 4)
    np.testing.assert_allclose(v16.array.ravel(), np.arange(24) * 0.5 + 10.0)


def test_dicom_series_shuffled_rescaled_oblique(tmp_path):
    vol = _phantom()
    # files in random order with random names; InstanceNumber deliberately reversed, so only
    # ImagePositionPatient gives the right order
    info = write_dicom_series(
        tmp_path / "series",
        vol,
        OBLIQUE,
        slope=2.5,
        intercept=-100.0,
        instance_order="reversed",
        shuffle_seed=3,
    )
    assert sorted(os.listdir(tmp_path / "series")) != [p.name for p in info["files"]]
    v = load_volume(tmp_path / "series")
    assert v.shape == vol.shape and v.array.dtype == np.float32
    np.testing.assert_array_equal(v.array, info["quantised"])  # order and rescale exact
    assert np.abs(v.array - vol).max() <= 2.5 / 2 + 1e-3  # within half a quantisation step
    # the affine equals the one built independently from the written geometry
    np.testing.assert_allclose(v.affine, OBLIQUE.ras_affine(), atol=1e-6)
    # and maps voxels to the patient positions written in the files (LPS -> RAS)
    for i, j, k in [(0, 0, 0), (19, 0, 3), (0, 23, 8), (7, 11, 5)]:
        lps = OBLIQUE.position(k) + i * 1.1 * OBLIQUE.row_cosine + j * 0.9 * OBLIQUE.col_cosine
        ras = v.affine @ [i, j, k, 1]
        np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-6)
    assert [os.path.basename(f) for f in v.meta["files"]] == [p.name for p in info["files"]]
    np.testing.assert_allclose(v.meta["rescale"], [[2.5, -100.0]] * 9)
    assert v.meta["slice_spacing"] == pytest.approx(2.5)
    assert v.meta["pixel_spacing"] == (0.9, 1.1)
    assert v.meta["series_uid"] == info["series_uid"] == v.name
    assert isinstance(v.meta["dataset"], pydicom.Dataset) and v.meta["dataset"].PatientID == "SYNTH0001"
    assert "PixelData" not in v.meta["dataset"]


def test_dicom_affine_agrees_with_nibabel(tmp_path):
    """nibabel's DICOM wrapper indexes (row, column); ours (column, row) and RAS: compare."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel warns that its DICOM readers are experimental
        from nibabel.nicom import dicomwrappers

    info = write_dicom_series(tmp_path / "s", _phantom((12, 10, 3)), OBLIQUE, shuffle_seed=None)
    v = load_volume(tmp_path / "s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = dicomwrappers.wrapper_from_file(str(info["files"][0]))
        nib_lps = np.asarray(w.affine)
    ras = np.diag([-1.0, -1, 1, 1]) @ nib_lps
    np.testing.assert_allclose(v.affine[:3, 0], ras[:3, 1], atol=1e-6)  # our i = nibabel's column axis
    np.testing.assert_allclose(v.affine[:3, 1], ras[:3, 0], atol=1e-6)
    np.testing.assert_allclose(v.affine[:3, 3], ras[:3, 3], atol=1e-6)
    # our in-plane array is nibabel's transposed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_allclose(v.array[:, :, 0], np.asarray(w.get_data()).T)


def test_dicom_instance_number_fallback(tmp_path):
    vol = _phantom((8, 6, 5))
    info = write_dicom_series(tmp_path / "s", vol, DicomGeometry(), with_position=False, shuffle_seed=1)
    with pytest.warns(UserWarning, match="InstanceNumber"):
        v = load_volume(tmp_path / "s")
    np.testing.assert_array_equal(v.array, info["quantised"])


def test_enhanced_multiframe(tmp_path):
    vol = _phantom((16, 12, 7), seed=2)
    slopes = [1.0, 1.5, 2.0, 0.5, 3.0, 1.25, 2.5]
    info = write_enhanced_dicom(
        tmp_path / "mf" / "enhanced.dcm", vol, OBLIQUE, slopes=slopes, intercept=-20.0, shuffle_seed=5
    )
    assert info["frame_of_slice"] != list(range(7))  # frames really are stored out of order
    for path in (info["path"], tmp_path / "mf"):  # the file itself, or its folder
        v = load_volume(path)
        assert v.shape == vol.shape
        np.testing.assert_allclose(v.array, info["quantised"], rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(v.affine, OBLIQUE.ras_affine(), atol=1e-6)
        assert v.meta["multiframe"] and v.meta["frames"] == info["frame_of_slice"]
        np.testing.assert_allclose(v.meta["rescale"][:, 0], slopes)


def test_find_volumes_groups_series(tmp_path):
    g = DicomGeometry()
    a = write_dicom_series(tmp_path / "study" / "a", _phantom((8, 6, 4)), g)
    b = write_dicom_series(tmp_path / "study" / "b", _phantom((8, 6, 3)), g)
    # a third series split across two folders still forms one volume
    c = write_dicom_series(tmp_path / "study" / "c1", _phantom((8, 6, 2)), g, series_uid="1.2.3.99")
    write_dicom_series(
        tmp_path / "study" / "c2", _phantom((8, 6, 2)), DicomGeometry(origin=(0, 0, 2)), series_uid="1.2.3.99"
    )
    nib.save(nib.Nifti1Image(np.ones((3, 3, 3), np.float32), np.eye(4)), tmp_path / "x.nii.gz")
    (tmp_path / "notes.txt").write_text("not an image")
    # a non-image DICOM (no Rows/Columns, no pixels) in a series folder is skipped
    sr = pydicom.dcmread(a["files"][0])
    for tag in ("PixelData", "Rows", "Columns"):
        delattr(sr, tag)
    sr.SeriesInstanceUID = "1.2.3.4.5.6"
    sr.save_as(tmp_path / "study" / "a" / "report.dcm")
    found = find_volumes(tmp_path)
    kinds = [s.kind for s in found]
    assert kinds == ["nifti", "dicom", "dicom", "dicom"]
    by_key = {s.key: s for s in found}
    assert set(by_key) == {"x.nii.gz", a["series_uid"], b["series_uid"], c["series_uid"]}
    assert len(by_key["1.2.3.99"].paths) == 4
    assert by_key["1.2.3.99"].load().shape == (8, 6, 4)
    assert by_key[a["series_uid"]].load().shape == (8, 6, 4)
    with pytest.raises(VolumeError, match="series found"):
        load_volume(tmp_path / "study")
    assert load_volume(tmp_path / "study", series_uid=b["series_uid"]).shape == (8, 6, 3)


# ----------------------------------------------------------------------------- errors


def _msg(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg  # one line
    return msg


def test_truncated_nifti(tmp_path):
    nib.save(nib.Nifti1Image(_phantom((20, 20, 20)), np.eye(4)), tmp_path / "full.nii.gz")
    data = (tmp_path / "full.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(VolumeError) as e:
        load_volume(tmp_path / "cut.nii.gz")
    assert "cut.nii.gz" in _msg(e) and "truncated" in _msg(e)
    assert e.value.__cause__ is None and e.value.__suppress_context__  # no chained traceback
    (tmp_path / "junk.nii").write_bytes(b"not a nifti" * 50)
    with pytest.raises(VolumeError, match="junk.nii"):
        load_volume(tmp_path / "junk.nii")
    with pytest.raises(VolumeError, match="not found"):
        load_volume(tmp_path / "absent.nii.gz")


def test_nan_nifti(tmp_path):
    arr = np.ones((4, 4, 4), np.float32)
    arr[1, 2, 3] = np.nan
    arr[0, 0, 0] = np.inf
    nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / "nan.nii")
    with pytest.raises(VolumeError) as e:
        load_volume(tmp_path / "nan.nii")
    assert "nan.nii" in _msg(e) and "1 NaN" in _msg(e) and "1 infinite" in _msg(e)


def test_non_image_dicom(tmp_path):
    info = write_dicom_series(tmp_path / "s", _phantom((6, 5, 2)), DicomGeometry())
    ds = pydicom.dcmread(info["files"][0])
    del ds.PixelData
    ds.save_as(tmp_path / "nopixels.dcm")
    with pytest.raises(VolumeError) as e:
        load_volume(tmp_path / "nopixels.dcm")
    assert "nopixels.dcm" in _msg(e) and "no PixelData" in _msg(e)
    # a folder with only non-image objects
    (tmp_path / "reports").mkdir()
    del ds.Rows
    del ds.Columns
    ds.save_as(tmp_path / "reports" / "sr.dcm")
    with pytest.raises(VolumeError, match="no image DICOM"):
        load_volume(tmp_path / "reports")
    # truncated inside the pixel data, and truncated before it
    big = write_dicom_series(tmp_path / "big", _phantom((40, 30, 1)), DicomGeometry())
    raw = big["files"][0].read_bytes()
    (tmp_path / "cut.dcm").write_bytes(raw[:-1000])
    with pytest.raises(VolumeError) as e:
        load_volume(tmp_path / "cut.dcm")
    assert "cut.dcm" in _msg(e) and "pixel data" in _msg(e)
    (tmp_path / "cut2.dcm").write_bytes(raw[: len(raw) - 40 * 30 * 2 - 12])
    with pytest.raises(VolumeError) as e:
        load_volume(tmp_path / "cut2.dcm")
    assert "cut2.dcm" in _msg(e) and "truncated" in _msg(e)


def test_mixed_matrix_sizes(tmp_path):
    write_dicom_series(tmp_path / "s", _phantom((10, 8, 3)), DicomGeometry(), series_uid="1.2.840.99.1")
    write_dicom_series(
        tmp_path / "s" / "more",
        _phantom((12, 8, 2)),
        DicomGeometry(origin=(0, 0, 5)),
        series_uid="1.2.840.99.1",
    )
    with pytest.raises(VolumeError) as e:
        load_volume(tmp_path / "s")
    assert "mixed matrix sizes in series 1.2.840.99.1" in _msg(e) and "8x10" in _msg(e) and "8x12" in _msg(e)


def test_duplicate_positions_and_orientation(tmp_path):
    write_dicom_series(tmp_path / "d", _phantom((6, 6, 3)), DicomGeometry(), series_uid="1.2.3.7")
    write_dicom_series(tmp_path / "d" / "echo2", _phantom((6, 6, 3)), DicomGeometry(), series_uid="1.2.3.7")
    with pytest.raises(VolumeError, match="distinct positions"):
        load_volume(tmp_path / "d")
    write_dicom_series(tmp_path / "o", _phantom((6, 6, 3)), DicomGeometry(), series_uid="1.2.3.8")
    write_dicom_series(tmp_path / "o" / "b", _phantom((6, 6, 3)), OBLIQUE, series_uid="1.2.3.8")
    with pytest.raises(VolumeError, match="inconsistent ImageOrientationPatient"):
        load_volume(tmp_path / "o")


# ----------------------------------------------------------------------------- folder datasets


def test_nifti_folder_dataset_split_by_file(tmp_path):
    for n in range(5):
        nib.save(
            nib.Nifti1Image(phantom_volume((20, 24, 16), seed=n, peak=100 + n), np.eye(4)),
            tmp_path / f"sub{n}.nii.gz",
        )
    tr, va = build_mri_datasets("nifti", data_dir=str(tmp_path), size=32, valid_fraction=0.2, seed=0)
    src_tr = {tr.provenance(i)["source"] for i in range(len(tr))}
    src_va = {va.provenance(i)["source"] for i in range(len(va))}
    assert len(src_va) == 1 and len(src_tr) == 4 and not src_tr & src_va
    x, ident = tr[0]
    assert x.shape == (1, 32, 32) and x.dtype.is_floating_point and isinstance(ident, int)
    # deterministic: same split and identities when built again
    tr2, va2 = build_mri_datasets("nifti", data_dir=str(tmp_path), size=32, valid_fraction=0.2, seed=0)
    assert [va2.ident(i) for i in range(len(va2))] == [va.ident(i) for i in range(len(va))]
    # each volume normalised by its own maximum
    for ds in (tr, va):
        peaks = {}
        for i in range(len(ds)):
            s = ds.provenance(i)["source"]
            peaks[s] = max(peaks.get(s, 0.0), float(ds[i][0].max()))
        assert all(p == pytest.approx(1.0) for p in peaks.values())
    # each slice knows its volume's geometry (figures show it in the radiological convention)
    p = va.provenance(0)
    assert p["axis"] == 2 and np.asarray(p["affine"]).tolist() == np.eye(4).tolist()


def test_single_volume_and_dicom_dataset(tmp_path):
    g = DicomGeometry(pixel_spacing=(1.0, 1.0), slice_step=1.0)
    write_dicom_series(tmp_path / "d", phantom_volume((20, 16, 60), content=(0, 60), peak=2000), g)
    tr, va = build_mri_datasets("dicom", data_dir=str(tmp_path), size=24)
    ktr = np.array([tr.provenance(i)["slice"] for i in range(len(tr))])
    kva = np.array([va.provenance(i)["slice"] for i in range(len(va))])
    assert len(kva) and len(ktr) and np.abs(ktr[:, None] - kva[None]).min() > 5  # > 5 mm apart
    vol = load_volume(tmp_path / "d")
    np.testing.assert_allclose(np.asarray(tr.provenance(0)["affine"]), vol.affine)
    assert tr[0][0].shape == (1, 24, 24)


def test_folder_dataset_errors(tmp_path):
    with pytest.raises(DataDirError, match="does not exist"):
        build_mri_datasets("nifti", data_dir=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataDirError, match="is empty"):
        build_mri_datasets("dicom", data_dir=str(tmp_path / "empty"))
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("x")
    with pytest.raises(DataDirError, match="no NIfTI"):
        build_mri_datasets("nifti", data_dir=str(tmp_path / "txt"))
    with pytest.raises(DataDirError, match="needs a data directory"):
        build_mri_datasets("dicom")
    with pytest.raises(ValueError, match="mni152, ixi, nifti, dicom, kspace"):
        build_mri_datasets("imagenet")
