"""DICOM output fit for viewers: a written series stores 12-bit integers proportional to the
values (no RescaleSlope, which the classic MR Image IOD does not define), records the factor in a
Real World Value Mapping, and reads back through our reader, pydicom and nibabel."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest

from mri_n2n.data.synthetic import OBLIQUE_GEOMETRY, phantom_volume, write_enhanced_dicom
from mri_n2n.io import load_volume
from mri_n2n.io.dicom import write_dicom_series

# k runs along the slice normal, so our reader keeps the array's slice order
AFFINE = np.array([[0.9, 0, 0, 40.0], [0, 1.1, 0, -20.0], [0, 0, 2.5, 7.0], [0, 0, 0, 1]])
NIB_APPLIES_RWV = tuple(int(x) for x in nib.__version__.split(".")[:2]) >= (5, 3)  # nipy/nibabel#1342


def _recon(peak: float, shape=(20, 16, 5)) -> np.ndarray:
    """A magnitude 'reconstruction' with non-integer values, ``peak`` its maximum."""
    vol = phantom_volume(shape, content=(0, shape[2]), seed=3, peak=1000.0).astype(np.float64)
    vol = vol * 0.913 + np.random.default_rng(0).random(shape) * 7.0
    return (vol * (peak / vol.max())).astype(np.float32)


def _bound(info, arr) -> float:
    """Half a quantisation step, plus the reader's float32 rounding."""
    return info.slope / 2 + 2.0**-23 * float(np.abs(arr).max())


@pytest.mark.parametrize("peak", [0.0123, 3000.0, 2.5e6])
def test_stored_pixels_are_the_image_and_the_factor_is_a_real_world_value_mapping(tmp_path, peak):
    arr = _recon(peak)
    info = write_dicom_series(tmp_path / "s", arr, AFFINE)
    assert info.pixel_representation == 0
    assert info.slope == float(arr.max()) / 4095  # the series peak maps to 4095 (FD: exact)
    stored_max = 0
    for k, f in enumerate(info.files):
        d = pydicom.dcmread(f)
        assert d.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"  # classic MR Image Storage
        assert (d.BitsAllocated, d.BitsStored, d.HighBit, d.PixelRepresentation) == (16, 12, 11, 0)
        for kw in ("RescaleSlope", "RescaleIntercept", "RescaleType"):  # no Modality LUT module
            assert kw not in d, kw
        px = d.pixel_array
        assert px.dtype == np.uint16 and 0 <= px.min() and px.max() <= 4095
        stored_max = max(stored_max, int(px.max()))
        # a viewer that ignores every mapping sees the image itself, correctly proportioned
        assert np.abs(px - arr[:, :, k].T.astype(np.float64) / info.slope).max() <= 0.5 + 1e-9
        (item,) = d.RealWorldValueMappingSequence
        assert item.RealWorldValueSlope == info.slope and item.RealWorldValueIntercept == 0.0
        assert (item.RealWorldValueFirstValueMapped, item.RealWorldValueLastValueMapped) == (0, 4095)
        assert item["RealWorldValueFirstValueMapped"].VR == "US"
        assert item.LUTLabel and item.LUTExplanation
        (units,) = item.MeasurementUnitsCodeSequence
        assert (units.CodeValue, units.CodingSchemeDesignator, units.CodeMeaning) == (
            "[arb'U]",
            "UCUM",
            "arbitrary unit",
        )
        # the window is in stored values (VOI LUT after an identity Modality LUT)
        centre, width = float(d.WindowCenter), float(d.WindowWidth)
        assert 0 < centre < 4095 and 1 <= width <= 4096
    assert stored_max == 4095

    back = load_volume(tmp_path / "s")
    assert back.meta["value_mapping"] == "real world value"
    np.testing.assert_array_equal(back.meta["rescale"], [[info.slope, 0.0]] * arr.shape[2])
    assert np.abs(back.array.astype(np.float64) - arr).max() <= _bound(info, arr)
    assert info.slope / 2 <= float(arr.max()) / 8190 * (1 + 1e-12)  # the stated bound: peak / 8190


def test_nibabel_reads_the_series_proportional_to_ours(tmp_path):
    arr = _recon(812.5)
    info = write_dicom_series(tmp_path / "s", arr, AFFINE)
    ours = load_volume(tmp_path / "s").array
    with warnings.catch_warnings():  # nibabel calls its DICOM readers experimental
        warnings.simplefilter("ignore")
        import nibabel.nicom.dicomwrappers as dw

        for k, f in enumerate(info.files):
            w = dw.wrapper_from_file(str(f))
            data = np.asarray(w.get_data(), dtype=np.float64)
            stored = pydicom.dcmread(f).pixel_array.astype(np.float64)
            if NIB_APPLIES_RWV:  # nibabel >= 5.3 applies a mapping with defined units
                np.testing.assert_array_equal(np.asarray(w.scale_factors, float), [[info.slope, 0.0]])
                np.testing.assert_allclose(data, stored * info.slope, rtol=1e-12)
            else:  # older nibabel: the stored integers, proportional to ours
                np.testing.assert_array_equal(data, stored)
                data = data * info.slope
            np.testing.assert_allclose(data, ours[:, :, k].T, rtol=1e-6, atol=1e-6 * arr.max())


def test_negative_values_are_stored_signed_not_clipped(tmp_path):
    arr = _recon(500.0) - 200.0  # e.g. a real part: values of either sign
    info = write_dicom_series(tmp_path / "s", arr, AFFINE)
    peak = float(np.abs(arr).max())
    assert info.pixel_representation == 1 and info.slope == peak / 2047
    lo = 0
    for k, f in enumerate(info.files):
        d = pydicom.dcmread(f)
        assert (d.BitsStored, d.HighBit, d.PixelRepresentation) == (12, 11, 1)
        px = d.pixel_array
        assert px.dtype == np.int16 and -2047 <= px.min() and px.max() <= 2047
        lo = min(lo, int(px.min()))
        assert np.abs(px - arr[:, :, k].T.astype(np.float64) / info.slope).max() <= 0.5 + 1e-9
        item = d.RealWorldValueMappingSequence[0]
        assert item["RealWorldValueFirstValueMapped"].VR == "SS"
        assert (item.RealWorldValueFirstValueMapped, item.RealWorldValueLastValueMapped) == (-2047, 2047)
    assert lo < -100  # the negative values survived
    back = load_volume(tmp_path / "s")
    assert np.abs(back.array.astype(np.float64) - arr).max() <= _bound(info, arr)


def test_an_all_zero_volume(tmp_path):
    info = write_dicom_series(tmp_path / "s", np.zeros((6, 5, 2), np.float32), AFFINE)
    assert info.slope == 1.0 and info.pixel_representation == 0
    assert not pydicom.dcmread(info.files[0]).pixel_array.any()
    assert not load_volume(tmp_path / "s").array.any()


def test_reader_mapping_precedence(tmp_path):
    """A Modality LUT rescale wins over a Real World Value Mapping (as before for other series);
    a mapping by LUT only (no slope) is not applied."""
    arr = _recon(900.0, shape=(8, 6, 2))
    info = write_dicom_series(tmp_path / "s", arr, AFFINE)
    stored = [pydicom.dcmread(f).pixel_array.astype(np.float64) for f in info.files]
    for f in info.files:
        d = pydicom.dcmread(f)
        d.RescaleSlope, d.RescaleIntercept = "2", "1"
        d.save_as(f, enforce_file_format=True)
    back = load_volume(tmp_path / "s")
    assert back.meta["value_mapping"] == "rescale"
    np.testing.assert_allclose(back.array, np.stack([s.T * 2 + 1 for s in stored], axis=-1))
    for f in info.files:
        d = pydicom.dcmread(f)
        del d.RescaleSlope, d.RescaleIntercept
        item = d.RealWorldValueMappingSequence[0]
        del item.RealWorldValueSlope, item.RealWorldValueIntercept
        item.RealWorldValueLUTData = [0.0, 1.0]
        d.save_as(f, enforce_file_format=True)
    back = load_volume(tmp_path / "s")
    assert back.meta["value_mapping"] == "none"
    np.testing.assert_array_equal(back.array, np.stack([s.T for s in stored], axis=-1))


def test_enhanced_frames_with_a_real_world_value_mapping(tmp_path):
    vol = phantom_volume((12, 10, 4), content=(0, 4), seed=5, peak=900.0)
    slopes = [1.0, 0.5, 2.0, 1.0]
    meta = write_enhanced_dicom(tmp_path / "mf.dcm", vol, OBLIQUE_GEOMETRY, slopes=slopes)
    d = pydicom.dcmread(meta["path"])
    for group in d.PerFrameFunctionalGroupsSequence:  # Pixel Value Transformation -> RWV
        slope = float(group.PixelValueTransformationSequence[0].RescaleSlope)
        del group.PixelValueTransformationSequence
        item = pydicom.Dataset()
        item.RealWorldValueSlope, item.RealWorldValueIntercept = slope, 0.0
        group.RealWorldValueMappingSequence = [item]
    d.save_as(meta["path"], enforce_file_format=True)
    back = load_volume(meta["path"])
    assert back.meta["value_mapping"] == "real world value"
    np.testing.assert_allclose(back.array, meta["quantised"], atol=1e-4)
