"""Patient-coordinate conventions shared by the NIfTI and DICOM readers and writers.

NIfTI (and nibabel) affines map voxels to RAS+ millimetres; DICOM geometry is in LPS. The two
frames differ by the signs of x and y, so one diagonal matrix converts either way.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LPS_TO_RAS", "RAS_TO_LPS", "lps_to_ras", "ras_to_lps"]

#: Multiply a DICOM (LPS) affine on the left by this matrix to get a RAS+ affine (and back:
#: the matrix is its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: The same matrix, named for the other direction.
RAS_TO_LPS = LPS_TO_RAS


def lps_to_ras(affine: np.ndarray) -> np.ndarray:
    """A DICOM (LPS) ``(4, 4)`` affine as a RAS+ affine (float64)."""
    return LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)


def ras_to_lps(affine: np.ndarray) -> np.ndarray:
    """A RAS+ ``(4, 4)`` affine as a DICOM (LPS) affine (float64)."""
    return RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)
