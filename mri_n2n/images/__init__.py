"""Photographs for the generic Noise2Noise experiments: datasets and HDR images.

The image experiments use the same trainer as MRI; the noises are corruptions
(:mod:`mri_n2n.corruptions.noise`), the datasets live here:

- :func:`build_image_datasets` -- ``(train, valid)`` datasets (:data:`DATASETS`), see
  :mod:`mri_n2n.images.datasets`;
- :func:`read_hdr`, :func:`tonemap` -- HDR images for the Monte Carlo experiment;
- :mod:`mri_n2n.images.denoise` -- denoising image files with a trained network.

Example::

    from mri_n2n.corruptions import make_corruption, default_loss
    from mri_n2n.images import build_image_datasets
    train_ds, valid_ds = build_image_datasets("images", crop=64)
    corruption = make_corruption("text")
    pair = corruption.pair(batch, generator=g)           # independent input and target
"""

from .datasets import (
    DATASETS,
    ImageDataset,
    build_image_datasets,
    image_dataset_names,
    list_images,
    load_image,
    register_image_dataset,
)
from .hdr import read_hdr, tonemap

__all__ = [
    "DATASETS",
    "build_image_datasets",
    "register_image_dataset",
    "image_dataset_names",
    "ImageDataset",
    "list_images",
    "load_image",
    "read_hdr",
    "tonemap",
]
