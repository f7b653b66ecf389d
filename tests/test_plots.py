"""Figures: the radiological orientation of volume slices."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mri_n2n.plots import radiological_view

SHAPE = (4, 5, 6)


def _affines() -> list[np.ndarray]:
    """Scanner-aligned voxel-to-RAS affines: RAS, LPS (DICOM-like), LAS, and permuted axes."""
    out = []
    for perm in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        for signs in ((1, 1, 1), (-1, -1, 1), (-1, 1, 1), (1, -1, -1)):
            a = np.eye(4)
            a[:3, :3] = np.eye(3)[:, perm] * np.array(signs) * np.array([0.9, 1.0, 1.2])
            a[:3, 3] = [-10.0, 20.0, 5.0]
            out.append(a)
    return out


def _corner(affine: np.ndarray, want: np.ndarray) -> tuple[int, int, int]:
    """The voxel corner of the volume that lies furthest in the world direction ``want``."""
    corners = list(itertools.product(*[(0, n - 1) for n in SHAPE]))
    world = [affine[:3, :3] @ np.array(c) + affine[:3, 3] for c in corners]
    return corners[int(np.argmax([w @ want for w in world]))]


@pytest.mark.parametrize("affine", _affines())
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_radiological_view_puts_right_anterior_superior_top_left(affine, axis):
    # top-left of every view is the patient's right (axial, coronal) or anterior (sagittal), and
    # anterior (axial) or superior (coronal, sagittal): the corner furthest towards +R +A +S
    vol = np.zeros(SHAPE, np.float32)
    c = _corner(affine, np.array([1.0, 1.0, 1.0]))
    vol[c] = 1.0
    view = radiological_view(np.take(vol, c[axis], axis=axis), affine, axis)
    assert view[0, 0] == 1.0
    # and the opposite in-plane corner (left/posterior/inferior) ends bottom-right
    vol[:] = 0
    want = -np.ones(3)
    want[int(np.argmax(np.abs(affine[:3, axis])))] = 0.0  # the through-plane direction does not matter
    d = _corner(affine, want)
    vol[d] = 1.0
    view = radiological_view(np.take(vol, d[axis], axis=axis), affine, axis)
    assert view[-1, -1] == 1.0


def test_radiological_view_axial_ras_layout():
    # a RAS volume's axial slice is shown transposed: anterior up, the patient's right on the left
    img = np.arange(12, dtype=np.float32).reshape(3, 4)  # rows: x (i), columns: y (j)
    view = radiological_view(img, np.eye(4), axis=2)
    assert view.shape == (4, 3)  # y is vertical
    assert view[0, 0] == img[2, 3]  # most right (max x), most anterior (max y)
    assert view[-1, -1] == img[0, 0]


def test_radiological_view_without_geometry_keeps_array_order():
    img = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(radiological_view(img, np.zeros((4, 4)), axis=2), img)
    with pytest.raises(ValueError, match="axis"):
        radiological_view(img, np.eye(4), axis=3)
