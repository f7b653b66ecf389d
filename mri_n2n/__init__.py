"""mri_n2n: Noise2Noise image restoration and MRI reconstruction from corrupted data alone.

The package follows Lehtinen et al., "Noise2Noise: Learning Image Restoration without
Clean Data" (ICML 2018). Modules:

- :mod:`mri_n2n.fft` -- centred orthonormal 2-D FFTs.
- :mod:`mri_n2n.sampling` -- k-space sampling densities and Bernoulli masks.
- :mod:`mri_n2n.physics` -- the spectral sampling operator and data consistency.
- :mod:`mri_n2n.models` -- the paper's U-Net and faster variants.
- :mod:`mri_n2n.metrics` -- PSNR, SSIM, NMSE.
- :mod:`mri_n2n.data` -- volume readers, slice pipelines and datasets.
- :mod:`mri_n2n.corruptions` -- the corruption interface and the MRI undersampling corruption.
- :mod:`mri_n2n.train` -- the trainer and ``python -m mri_n2n.train``.
"""

__version__ = "0.1.0"
