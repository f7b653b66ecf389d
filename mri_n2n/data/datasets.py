"""The MRI dataset names and :func:`build_mri_datasets`, which dispatches to each source."""

from __future__ import annotations

from typing import Protocol

from torch.utils.data import Dataset

from ..splits import SPLIT_TARGETS
from .base import check_data_dir
from .folders import build_folder_datasets
from .ixi import build_ixi_datasets
from .kspace import build_kspace_datasets
from .mni152 import build_mni152_datasets
from .slices import check_normalize, parse_slice_range


class DataSettings(Protocol):
    """The settings :func:`mri_datasets_from_config` reads (a :class:`mri_n2n.config.Config` has
    them; the config module sits above this layer, so it is not imported here)."""

    dataset: str
    data_dir: str | None
    size: int | None
    slices: str | None
    axis: int
    normalize: str
    complex: bool

__all__ = ["DATASET_NAMES", "build_mri_datasets", "mri_datasets_from_config"]

#: Names accepted by :func:`build_mri_datasets`.
DATASET_NAMES = ("mni152", "ixi", "nifti", "dicom", "kspace", "synth")


def build_mri_datasets(
    name: str,
    *,
    data_dir: str | None = None,
    size: int = 256,
    slices: tuple[int, int] | None = None,
    axis: int = 2,
    normalize: str = "max",
    complex_kspace: bool = False,
    valid_fraction: float = 0.2,
    seed: int = 0,
    undersampled: bool = False,
    synth_photos: float = 0.0,
    synth_template: float = 0.0,
    maps_cache: str | None = None,
    virtual_coils: int | None = None,
) -> tuple[Dataset, Dataset]:
    """Build the (train, valid) datasets of an MRI data source.

    Args:
        name: ``"mni152"`` (the template shipped with nilearn, offline; no data dir),
            ``"ixi"`` (prepared folder with ``train.h5``/``valid.h5``/``manifest.json``, the
            raw folder of ``IXI???-<site>-????-T1.nii.gz`` files, or ``IXI-T1.tar``),
            ``"nifti"`` / ``"dicom"`` (a folder of volumes / DICOM series, searched
            recursively), ``"kspace"`` (a folder of fastMRI-style single-coil ``.h5`` files),
            ``"synth"`` (contrast-randomised images drawn from the MNI152 tissue maps of the
            ``mni152`` training slices, validated on the ``mni152`` validation slices; offline,
            no data dir; see :mod:`mri_n2n.data.synth`).
        data_dir: the data folder (ignored for ``mni152`` and ``synth``).
        size: output side; slices are centre padded/cropped (``mni152`` below 256 is
            resampled instead, see :mod:`mri_n2n.data.mni152`).
        slices: ``(start, stop)`` half-open slice range along ``axis``; ``None`` = the
            dataset's default (IXI: the paper's 25..124; others: all slices with content).
        axis: slicing axis of the volumes (default 2, axial for IXI and MNI152).
        normalize: per-volume normalisation, see :func:`~mri_n2n.data.slices.volume_scale`
            (``synth``: ``"max"`` only, as its images are max-normalised).
        complex_kspace: ``kspace`` only: yield complex images as 2 channels.
        valid_fraction: validation share for ``mni152``/``synth`` (slices), ``nifti``/``dicom``/``kspace``
            (volumes). IXI uses the paper's subjects instead (see
            :func:`~mri_n2n.data.ixi.build_ixi_datasets`).
        seed: seeds the deterministic split by volume of ``nifti``/``dicom``/``kspace``, and the
            synthetic draws of ``synth`` (whose split is fixed).
        undersampled: ``kspace`` only: accept prospectively undersampled files (one acquisition
            per slice, for the single-acquisition targets); they yield measurements
            (:class:`~mri_n2n.data.undersampled.UndersampledKSpaceDataset`).
        synth_template: ``synth`` only: share of the other training items that are the T1 template slice.
        synth_photos: ``synth`` only: share of the training items that are grayscale scikit-image
            photographs instead of brains (0: none).
        maps_cache: ``kspace`` multi-coil files only: the coil maps' disk cache
            (:func:`~mri_n2n.data.maps_cache.resolve_maps_cache`: ``"auto"``, ``"none"`` or a
            folder); ``None`` (default): no disk cache.
        virtual_coils: ``kspace`` multi-coil files only: SVD coil compression at load time.

    Returns:
        ``(train, valid)`` datasets yielding ``(image, ident)``.

    Raises:
        ValueError: unknown name (the message lists the names), bad options.
        DataDirError: missing or empty data dir, or no usable file in it.
        VolumeError: an unreadable volume (names the file).
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown MRI dataset {name!r}; choose from {', '.join(DATASET_NAMES)}")
    if size is not None and int(size) < 1:
        raise ValueError(f"size must be positive, got {size}")
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    check_normalize(normalize)
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    if slices is not None:
        slices = (int(slices[0]), int(slices[1]))
        if slices[0] < 0 or slices[1] <= slices[0]:
            raise ValueError(f"bad slice range {slices[0]}:{slices[1]} (need 0 <= start < stop)")
    if (synth_photos or synth_template) and name != "synth":
        raise ValueError(f"synth_photos and synth_template apply to the synth dataset only, not {name!r}")
    if name == "synth":
        # imported here so that ``python -m mri_n2n.data.synth`` runs a module not yet imported
        from .synth import build_synth_datasets

        return build_synth_datasets(
            size=size,
            slices=slices,
            axis=axis,
            normalize=normalize,
            valid_fraction=valid_fraction,
            seed=seed,
            photo_fraction=synth_photos,
            template_fraction=synth_template,
        )
    if name == "mni152":
        return build_mni152_datasets(
            size=size, slices=slices, axis=axis, normalize=normalize, valid_fraction=valid_fraction
        )
    if name == "ixi":
        return build_ixi_datasets(
            check_data_dir(data_dir, name, allow_file=True),
            size=size,
            slices=slices,
            axis=axis,
            normalize=normalize,
        )
    if name == "kspace":
        return build_kspace_datasets(
            check_data_dir(data_dir, name, allow_file=True),
            size=size,
            slices=slices,
            normalize=normalize,
            complex_kspace=complex_kspace,
            valid_fraction=valid_fraction,
            seed=seed,
            undersampled=undersampled,
            maps_cache=maps_cache,
            virtual_coils=virtual_coils,
        )
    return build_folder_datasets(
        name,
        check_data_dir(data_dir, name, allow_file=True),
        size=size,
        slices=slices,
        axis=axis,
        normalize=normalize,
        valid_fraction=valid_fraction,
        seed=seed,
    )


def mri_datasets_from_config(cfg: DataSettings) -> tuple[Dataset, Dataset]:
    """The ``(train, valid)`` datasets a resolved run config describes (training and evaluation
    alike; the split never depends on the training seed, the synthetic draws of ``synth`` do)."""
    slices = parse_slice_range(cfg.slices) if cfg.slices else None
    return build_mri_datasets(
        cfg.dataset,
        data_dir=cfg.data_dir,
        size=cfg.size,
        slices=slices,
        axis=cfg.axis,
        normalize=cfg.normalize,
        complex_kspace=bool(cfg.complex),
        seed=int(getattr(cfg, "seed", 0)) if cfg.dataset == "synth" else 0,
        undersampled=getattr(cfg, "target", "noisy") in SPLIT_TARGETS,
        synth_photos=float(getattr(cfg, "synth_photos", 0.0) or 0.0),
        synth_template=float(getattr(cfg, "synth_template", 0.0) or 0.0),
        maps_cache=getattr(cfg, "maps_cache", None),
        virtual_coils=getattr(cfg, "virtual_coils", None),
    )
