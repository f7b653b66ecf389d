"""Generators of training data that looks like real acquisitions: complex, line-sampled,
multi-coil.

- :mod:`~mri_n2n.data.generators.phase` -- :func:`random_phase`, :func:`with_random_phase`: a
  smooth random phase (constant, k-space-shift ramps, quadratic, off-resonance bumps at the
  boundary with air, flow patches) that turns magnitude images into complex ones.
- :mod:`~mri_n2n.data.generators.coil_arrays` -- :func:`random_coil_array`,
  :func:`random_coil_maps`: random loop arrays around the object (Biot--Savart sensitivities),
  :func:`coil_images`, :func:`correlated_noise` (a random coil noise covariance) and
  :func:`oversample_readout` (fastMRI's 2x readout oversampling).
- :mod:`~mri_n2n.data.generators.line_laws` -- :func:`draw_line_law`: a mask family, acceleration
  and centre fraction drawn per item; :func:`sample_masks` for a batch.
- :mod:`~mri_n2n.data.generators.figure` -- ``python -m mri_n2n.data.generators.figure --out x.png``.

Every draw takes an explicit :class:`torch.Generator`. This package sits with the data layer:
it imports the physics below it (:mod:`mri_n2n.coils`, :mod:`mri_n2n.masks`), never the
corruptions or the trainer that use it.
"""

from .coil_arrays import (
    CoilArray,
    CoilArrayParams,
    coil_images,
    correlated_noise,
    element_maps,
    noise_covariance,
    oversample_readout,
    random_coil_array,
    random_coil_maps,
)
from .line_laws import (
    LINE_LAW_FAMILIES,
    TWO_D_FAMILIES,
    DrawnLaw,
    draw_line_law,
    draw_line_laws,
    sample_masks,
)
from .phase import PhaseParams, random_phase, support_edges, with_random_phase

__all__ = [
    "CoilArray",
    "CoilArrayParams",
    "DrawnLaw",
    "LINE_LAW_FAMILIES",
    "PhaseParams",
    "TWO_D_FAMILIES",
    "coil_images",
    "correlated_noise",
    "draw_line_law",
    "draw_line_laws",
    "element_maps",
    "noise_covariance",
    "oversample_readout",
    "random_coil_array",
    "random_coil_maps",
    "random_phase",
    "sample_masks",
    "support_edges",
    "with_random_phase",
]
