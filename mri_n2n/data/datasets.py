"""The MRI dataset registry and :func:`build_mri_datasets`, which dispatches to each source.

**Adding a dataset** is one registered function (:func:`register_dataset`) that builds the
``(train, valid)`` datasets from the checked :class:`DataOptions` (``options.config`` is the run
config when built from one, for settings of its own): its name becomes a ``--dataset`` choice
and the trainer and evaluation build it from a config::

    @register_dataset("phantoms")
    def phantoms(options):
        ...
        return train_set, valid_set
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from torch.utils.data import Dataset

from ..registry import NameView, Registry
from ..splits import SPLIT_TARGETS
from .base import check_data_dir
from .folders import build_folder_datasets
from .generators.multicoil_synth import SynthCoilDataset, parse_coil_range
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

__all__ = [
    "DATASET_NAMES",
    "DataOptions",
    "DatasetEntry",
    "register_dataset",
    "dataset_names",
    "build_mri_datasets",
    "mri_datasets_from_config",
]

@dataclass(frozen=True)
class DataOptions:
    """What a registered dataset builder receives: the checked arguments of
    :func:`build_mri_datasets` (see there), and ``config``, the run config when the datasets are
    built from one (:func:`mri_datasets_from_config`), else ``None``."""

    data_dir: str | None
    size: int
    slices: tuple[int, int] | None
    axis: int
    normalize: str
    complex_kspace: bool
    valid_fraction: float
    seed: int
    undersampled: bool
    synth_photos: float
    synth_template: float
    maps_cache: str | None
    virtual_coils: int | None
    config: Any = None


#: ``(options) -> (train, valid)``.
DatasetBuilder = Callable[[DataOptions], tuple[Dataset, Dataset]]


@dataclass(frozen=True)
class DatasetEntry:
    """A registered MRI dataset.

    Attributes:
        name: its ``--dataset`` name.
        build: ``build(options) -> (train, valid)``.
        seeded: a config's ``seed`` reaches ``options.seed`` (its draws depend on the training
            seed); otherwise configs build it with seed 0 (a split that never depends on it).
    """

    name: str
    build: DatasetBuilder
    seeded: bool = False


_REGISTRY: Registry[DatasetEntry] = Registry("MRI dataset")


def register_dataset(name: str, *, seeded: bool = False) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Decorator: register an MRI dataset builder ``build(options: DataOptions) -> (train, valid)``
    under ``name``; it becomes a ``--dataset`` choice (for ``--task mri``). The function is
    returned unchanged.

    Args:
        name: the ``--dataset`` name.
        seeded: a run config's ``seed`` is passed as ``options.seed`` (see :class:`DatasetEntry`).

    Raises:
        ValueError: ``name`` is registered already by another function.
    """

    def add(build: DatasetBuilder) -> DatasetBuilder:
        _REGISTRY.add(name, DatasetEntry(name, build, seeded), build)
        return build

    return add


def dataset_names() -> tuple[str, ...]:
    """Every registered MRI dataset name (the ``--dataset`` choices of ``--task mri``)."""
    return _REGISTRY.names()


#: Every registered MRI dataset name, always current: a :class:`~mri_n2n.registry.NameView` of
#: :func:`dataset_names` (the built-in ones and those registered since).
DATASET_NAMES = NameView(dataset_names)


@register_dataset("mni152")
def _mni152(o: DataOptions) -> tuple[Dataset, Dataset]:
    return build_mni152_datasets(
        size=o.size, slices=o.slices, axis=o.axis, normalize=o.normalize, valid_fraction=o.valid_fraction
    )


@register_dataset("ixi")
def _ixi(o: DataOptions) -> tuple[Dataset, Dataset]:
    return build_ixi_datasets(
        check_data_dir(o.data_dir, "ixi", allow_file=True),
        size=o.size,
        slices=o.slices,
        axis=o.axis,
        normalize=o.normalize,
    )


def _folder(name: str) -> DatasetBuilder:
    def build(o: DataOptions) -> tuple[Dataset, Dataset]:
        return build_folder_datasets(
            name,
            check_data_dir(o.data_dir, name, allow_file=True),
            size=o.size,
            slices=o.slices,
            axis=o.axis,
            normalize=o.normalize,
            valid_fraction=o.valid_fraction,
            seed=o.seed,
        )

    build.__name__ = f"_{name}"
    return build


register_dataset("nifti")(_folder("nifti"))
register_dataset("dicom")(_folder("dicom"))


@register_dataset("kspace")
def _kspace(o: DataOptions) -> tuple[Dataset, Dataset]:
    return build_kspace_datasets(
        check_data_dir(o.data_dir, "kspace", allow_file=True),
        size=o.size,
        slices=o.slices,
        normalize=o.normalize,
        complex_kspace=o.complex_kspace,
        valid_fraction=o.valid_fraction,
        seed=o.seed,
        undersampled=o.undersampled,
        maps_cache=o.maps_cache,
        virtual_coils=o.virtual_coils,
    )


@register_dataset("synth", seeded=True)
def _synth(o: DataOptions) -> tuple[Dataset, Dataset]:
    # imported here so that ``python -m mri_n2n.data.synth`` runs a module not yet imported
    from .synth import build_synth_datasets

    return build_synth_datasets(
        size=o.size,
        slices=o.slices,
        axis=o.axis,
        normalize=o.normalize,
        valid_fraction=o.valid_fraction,
        seed=o.seed,
        photo_fraction=o.synth_photos,
        template_fraction=o.synth_template,
    )


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
    config: Any = None,
) -> tuple[Dataset, Dataset]:
    """Build the (train, valid) datasets of an MRI data source (a registered dataset,
    :func:`register_dataset`).

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
        config: the run config, passed on as ``options.config`` (for registered datasets with
            settings of their own).

    Returns:
        ``(train, valid)`` datasets yielding ``(image, ident)``.

    Raises:
        ValueError: unknown name (the message lists the names), bad options.
        DataDirError: missing or empty data dir, or no usable file in it.
        VolumeError: an unreadable volume (names the file).
    """
    entry = _REGISTRY.get(name)
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
    options = DataOptions(
        data_dir=data_dir,
        size=size,
        slices=slices,
        axis=axis,
        normalize=normalize,
        complex_kspace=complex_kspace,
        valid_fraction=valid_fraction,
        seed=seed,
        undersampled=undersampled,
        synth_photos=synth_photos,
        synth_template=synth_template,
        maps_cache=maps_cache,
        virtual_coils=virtual_coils,
        config=config,
    )
    return entry.build(options)


def mri_datasets_from_config(cfg: DataSettings) -> tuple[Dataset, Dataset]:
    """The ``(train, valid)`` datasets a resolved run config describes (training and evaluation
    alike; the split never depends on the training seed, the draws of a ``seeded`` dataset such
    as ``synth`` do); ``cfg`` reaches the builder as ``options.config``."""
    slices = parse_slice_range(cfg.slices) if cfg.slices else None
    train, valid = build_mri_datasets(
        cfg.dataset,
        data_dir=cfg.data_dir,
        size=cfg.size,
        slices=slices,
        axis=cfg.axis,
        normalize=cfg.normalize,
        complex_kspace=bool(cfg.complex),
        seed=int(getattr(cfg, "seed", 0)) if _REGISTRY.get(cfg.dataset).seeded else 0,
        undersampled=getattr(cfg, "target", "noisy") in SPLIT_TARGETS,
        synth_photos=float(getattr(cfg, "synth_photos", 0.0) or 0.0),
        synth_template=float(getattr(cfg, "synth_template", 0.0) or 0.0),
        maps_cache=getattr(cfg, "maps_cache", None),
        virtual_coils=getattr(cfg, "virtual_coils", None),
        config=cfg,
    )
    coils = getattr(cfg, "synth_coils", None)
    if coils is not None:  # coil k-space of random arrays (validation: fixed draws, seed 0)
        lo_hi = parse_coil_range(coils)
        noise = float(getattr(cfg, "synth_coil_noise", 0.0) or 0.0)
        train = SynthCoilDataset(train, lo_hi, noise=noise, seed=int(getattr(cfg, "seed", 0)))
        valid = SynthCoilDataset(valid, lo_hi, noise=noise, seed=0)
    return train, valid
