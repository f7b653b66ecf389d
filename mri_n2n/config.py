"""Run configuration: one typed dataclass is the single source of defaults.

Precedence, lowest first: the dataclass default < the preset < a YAML file < the flags the user
typed. Every field that a preset sets defaults to ``None`` ("the preset decides"), so a value
given in YAML or on the command line always wins over the preset. On ``--resume`` the run's
saved config replaces the first three layers (:func:`resume_config`).

Values from YAML and flags are checked and converted by :meth:`Config.from_dict` (``lr: 1e-3``,
a string to PyYAML, becomes a float); a bad value raises :class:`ConfigError` naming the key
and the expected type. The resolved config is written to ``config.yaml`` in every run folder
and stored in every checkpoint, so a checkpoint alone is enough for inference.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from .data.datasets import DATASET_NAMES, dataset_names
from .data.generators.multicoil_synth import parse_coil_range
from .data.slices import check_normalize, parse_slice_range
from .images.datasets import DATASETS as IMAGE_DATASETS
from .images.datasets import image_dataset_names
from .io import atomic_write_text
from .losses import loss_entry, loss_names
from .masks import family_names
from .models import model_names
from .noncartesian import TRAJECTORIES
from .physics import acquisition_kind, kind_names
from .splits import SPLIT_TARGETS

__all__ = [
    "Config",
    "with_fallbacks",
    "ConfigError",
    "PRESETS",
    "MRI_PRESETS",
    "MULTICOIL_PRESETS",
    "MRI_DATASETS",
    "IMAGE_DATASETS",
    "RESUME_FIXED",
    "load_yaml",
    "save_yaml",
    "resolve_config",
    "resume_config",
]

#: The built-in MRI dataset names; the image ones are :data:`IMAGE_DATASETS`. The ``--dataset``
#: choices are the registries' (:func:`~mri_n2n.data.datasets.dataset_names`,
#: :func:`~mri_n2n.images.datasets.image_dataset_names`), asked when needed.
MRI_DATASETS = DATASET_NAMES


def _dataset_names() -> tuple[str, ...]:
    return (*dataset_names(), *image_dataset_names())


class ConfigError(ValueError):
    """A config value or key is not valid; the message names the key and what was expected."""


def _f(
    default: Any, help: str, choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None  # noqa: A002
) -> Any:
    meta: dict[str, Any] = {"help": help}
    if choices is not None:
        meta["choices"] = choices
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


def field_choices(key: str) -> tuple[str, ...] | None:
    """The allowed values of a string field (``None``: any); the mask families, models, losses
    and datasets are looked up when asked, so one registered after import counts."""
    choices = _FIELDS[key].metadata.get("choices")
    return choices() if callable(choices) else choices


@dataclass
class Config:
    """Every setting of a training run (each field's ``metadata["help"]`` is its flag's help).

    MRI fields apply when ``task == "mri"``; image fields when ``task == "image"``. ``None``
    means "chosen by the preset" (or, for ``task``/``dataset``, derived from the other).
    """

    # what to learn
    task: str | None = _f(None, "mri (k-space undersampling) or image (photographic noise); "
                          "default: image for the image datasets, else mri", ("mri", "image"))
    target: str = _f("noisy", "noisy: Noise2Noise (a second corrupted observation); clean: Noise2Clean; "
                     "MRI with one acquisition per slice: ssdu (Yaman 2020) or noisier2noise (Millard "
                     "and Chiew 2023), which split each acquisition into input and held-out k-space",
                     ("noisy", "clean", *SPLIT_TARGETS))
    split: float = _f(0.4, "ssdu/noisier2noise: expected share of each acquisition held out for the loss "
                      "(SSDU paper: 0.4)")
    preset: str = _f("auto", "auto (paper on a GPU, cpu otherwise), cpu, paper, unrolled (GPU), tiny, or for "
                     "multi-coil k-space (--dataset kspace on fastMRI-style multi-coil files, 320x320): "
                     "multicoil (CPU) and multicoil-gpu (CUDA: AMP and channels-last), the unrolled "
                     "network with the proximal CG-SENSE data consistency (--dc prox) and the k-space loss",
                     ("auto", "cpu", "paper", "unrolled", "tiny", "multicoil", "multicoil-gpu"))
    # data
    dataset: str | None = _f(None, "mri: mni152 (embedded, default), ixi, nifti, dicom, kspace, synth "
                             "(contrast-randomised images from the MNI152 tissue maps, validated on "
                             "the mni152 validation slices); "
                             "image: images (default for --task image), folder, pairs, montecarlo; "
                             "or any registered dataset", _dataset_names)
    data_dir: str | None = _f(None, "folder of the dataset (prepared IXI, NIfTI/DICOM folder, k-space files)")
    size: int | None = _f(None, "slice size (MRI) or crop size (images), in pixels; preset default")
    slices: str | None = _f(None, "slice range START:STOP along --axis (IXI default 25:125)")
    axis: int = _f(2, "slicing axis of the volumes (2: axial for IXI and MNI152)")
    normalize: str = _f("max", "per-volume normalisation: max, none or pNN (e.g. p99.5)")
    num_workers: int | None = _f(None, "DataLoader worker processes, persistent for the whole run; "
                                 "preset default (0; 1 in multicoil, 8 in multicoil-gpu)")
    maps_cache: str = _f("auto", "multi-coil k-space: folder of the on-disk cache of the coil maps "
                         "estimated per slice (keyed by file path, mtime, size and settings; inputs "
                         "are only read); auto: $MRI_N2N_CACHE/maps, else ~/.cache/mri_n2n/maps; "
                         "none: no disk cache (maps kept in each process's memory)")
    virtual_coils: int | None = _f(None, "multi-coil k-space: compress each slice's coils to N virtual "
                                   "coils (SVD) at load time; maps and multi-coil data consistency "
                                   "cost scales with the coils (default: no compression)")
    synth_photos: float = _f(0.0, "--dataset synth: share of the training items that are grayscale "
                             "scikit-image photographs instead of synthetic brains (texture variety; "
                             "0 = none, at most 0.9)")
    synth_template: float = _f(0.0, "--dataset synth: share of the other training items that are the "
                               "MNI152 T1 template slice itself (0 = none, at most 0.9)")
    synth_coils: str | None = _f(None, "MRI image datasets: train on multi-coil data: every slice becomes "
                                 "the fully sampled coil k-space of a random loop array of N or LO:HI "
                                 "coils (padded to HI), with the phase model and correlated coil noise "
                                 "(mri_n2n.data.generators); default: single-coil images")
    synth_coil_noise: float = _f(0.0, "with --synth-coils: thermal noise std, correlated between the "
                                 "coils, relative to the image maximum")
    train_maps: str = _f("true", "multi-coil training: the coil maps the network is given: true (the "
                         "data's own) or estimated (from each input's fully sampled centre, as "
                         "reconstruct estimates them from a file)", ("true", "estimated"))
    phase_model: str = _f("smooth", "MRI --complex on magnitude data: the random phase given to each "
                          "slice: smooth (a 4x4 bicubic field and a constant) or realistic (ramps, "
                          "quadratic terms, off-resonance at air boundaries, flow; "
                          "mri_n2n.data.generators.phase)", ("smooth", "realistic"))
    # MRI corruption (paper: exp-decay density, 10 % of k-space, Hermitian masks)
    acquisition: str = _f("cartesian", "MRI: the acquisition kind (cartesian: masks on the k-space "
                          "grid; or any kind registered by an Acquisition subclass)", kind_names)
    density: str = _f("exp", "k-space mask family: exp (paper), gaussian, uniform (2-D Bernoulli); "
                      "lines_random, lines_equispaced (fastMRI equispaced_fraction), lines_lattice "
                      "(fastMRI equispaced), lines_gaussian (1-D Cartesian lines), or any family "
                      "registered by a MaskFamily subclass", family_names)
    fraction: float = _f(0.1, "mean sampling density (0.1 = 10 % of k-space); 0 uses --edge")
    edge: float = _f(0.025, "exp density at the edge of the axis (paper: 0.025), used with --fraction 0")
    acceleration: float = _f(4.0, "line masks: acceleration (keep 1 line in R); --trajectory: keep "
                             "Nyquist / R readouts (radial Nyquist: N pi / 2 spokes)")
    center_fraction: float = _f(0.08, "line masks: fraction of fully sampled central lines")
    trajectory: str | None = _f(None, "MRI: non-Cartesian k-space (implies --acquisition noncartesian): "
                                "radial (uniform spokes at a random rotation), golden-radial "
                                "(consecutive golden-angle spokes from a random start) or spiral "
                                "(variable-density interleaves at a random rotation), or mixed (all three "
                                "at 2, 3, 4, 6 and 8x, one protocol per batch: a model for any of "
                                "them); default radial for --acquisition noncartesian", TRAJECTORIES)
    spokes: int | None = _f(None, "--trajectory: readouts (spokes or spiral interleaves) per acquisition, "
                            "instead of --acceleration")
    shift: int | None = _f(None, "max random circular shift in px (default size/4; 0 disables)")
    complex: bool | None = _f(None, "MRI: complex images as two channels (real, imaginary) and masks as "
                              "drawn; magnitude data get a random smooth phase; default: on for "
                              "--dataset kspace, off otherwise")
    kspace_noise: float = _f(0.0, "MRI: std of complex Gaussian noise added to each slice's k-space, "
                             "relative to the normalised image peak (0.02: peak SNR 50); one noisy "
                             "acquisition per slice feeds both observations of a pair")
    augment: bool | None = _f(None, "MRI: random flips, 90-degree rotations, bias fields, gamma and "
                              "intensity scaling (and a smooth phase for --complex) of the training "
                              "slices; default: on in the cpu preset, off otherwise")
    deform: bool | None = _f(None, "MRI, with --augment: also warp each training slice by a random affine "
                             "(rotation, scale, shear, shift) and smooth elastic deformation")
    crop: bool | None = _f(None, "MRI, with --augment: cut half of the training batches to a random "
                           "matrix size (32 to the full size per side, one per batch) around the "
                           "slices' content, with masks of the same law at that size")
    rescale: bool | None = _f(None, "MRI, with --augment: resample half of the training batches to a random "
                              "coarser matrix (32 to the full size per side, one per batch) by "
                              "truncating their k-space, as a lower-resolution scan of the same field "
                              "of view measures them, with masks of the same law at that size")
    # image corruption
    noise: str = _f("gaussian", "image noise: gaussian, poisson, bernoulli, text, impulse, montecarlo, pairs")
    noise_options: dict[str, Any] = _f({}, "image noise: constructor options (YAML only), "
                                       "e.g. {train_range: [0, 50], test_level: 25}")
    loss: str | None = _f(None, "l2, l1, l0 (annealed), hdr; MRI also kspace (1/p-weighted L2 on the "
                          "target's samples) and its variants (kspace_density: also weighted by the "
                          "trajectory's density compensation, the presets' choice off the grid), or "
                          "any registered loss; default: l2 for MRI, the noise's own", loss_names)
    # model
    model: str | None = _f(None, "unet (plain, fast), unet_paper (paper Table 2), unrolled (CNN cascades "
                           "with data consistency), red30, or any registered model; preset default",
                           model_names)
    width: float = _f(1.0, "unet_paper: channel width multiplier")
    base: int | None = _f(None, "unet: channels of the first level (preset default 16)")
    depth: int | None = _f(None, "unet: number of 2x poolings (preset default 3)")
    cascades: int | None = _f(None, "unrolled: number of cascades (a CNN, then data consistency); "
                              "preset default (5)")
    cascade_width: int | None = _f(None, "unrolled: channels of each cascade's CNN; preset default (16)")
    cascade_depth: int | None = _f(None, "unrolled: convolution layers per cascade (cnn), or the U-Net's "
                                   "poolings (unet); preset default (5)")
    cascade_block: str | None = _f(None, "unrolled: each cascade's network: cnn (a residual CNN, receptive "
                                   "field 2*depth+1 pixels), unet (a residual U-Net, --cascade-width "
                                   "channels at the top, --cascade-depth poolings: it sees across the "
                                   "aliasing of line masks) or hybrid (the CNN plus a 4-pooling U-Net "
                                   "branch of half its width, starting at zero: a CNN checkpoint's "
                                   "weights load into it with --init-from); preset default (cnn)",
                                   ("cnn", "unet", "hybrid"))
    share_weights: bool = _f(False, "unrolled: one CNN for every cascade (MoDL), else one per cascade")
    dc: str | None = _f(None, "unrolled: data consistency of each cascade: replace (exact; per coil for "
                        "multi-coil data) or prox (MoDL: a learned-weight proximal step, CG-SENSE for "
                        "multi-coil data; the output is not projected again); preset default (replace; "
                        "prox in the multicoil presets)", ("replace", "prox"))
    cg_iters: int | None = _f(None, "unrolled, --dc prox, multi-coil data: conjugate-gradient iterations "
                              "per cascade; preset default (6)")
    # optimisation (paper: Adam 0.9/0.99/1e-8, lr 1e-3, ramp-up and ramp-down)
    batch_size: int | None = _f(None, "training batch size; preset default")
    lr: float = _f(1e-3, "peak learning rate (Adam)")
    rampup: float = _f(0.1, "fraction of the steps with the sigmoid learning-rate ramp-up")
    rampdown: float = _f(0.3, "fraction of the steps with the cosine learning-rate ramp-down")
    schedule: str | None = _f(None, "optimiser schedule: cosine (ramps over --rampup/--rampdown) or paper "
                              "(the reference code's, per epoch: 10-epoch ramp-up, 30-epoch Gaussian "
                              "ramp-down during which Adam beta1 goes 0.9 -> 0.5); default: paper in "
                              "the paper preset for MRI, else cosine", ("cosine", "paper"))
    epochs: int | None = _f(None, "training budget in epochs (see --steps-per-epoch)")
    max_steps: int | None = _f(None, "total optimisation steps (the learning-rate schedule spans them)")
    steps_per_epoch: int | None = _f(None, "steps between validations (default: one pass over the data)")
    stop_after: int | None = _f(None, "stop this invocation after N steps (resumable with --resume)")
    grad_clip: float | None = _f(None, "clip the gradient norm to this value")
    seed: int = _f(0, "random seed (weights, masks, noise, data order)")
    init_from: str | None = _f(None, "fine-tune: start the network from the weights of this checkpoint "
                               "(a path or a shipped name) instead of random ones; its network must "
                               "be this run's (same model, layout and channels); the optimiser and "
                               "schedule start afresh")
    # hardware
    device: str = _f("auto", "auto, cpu, cuda or cuda:N")
    amp: bool | None = _f(None, "mixed precision: bf16 on GPUs of compute capability 8.0 or newer, fp16 with "
                          "a gradient scaler on 7.x, off below; --amp on a CPU trains with bf16 autocast "
                          "(default: on for CUDA, off on a CPU)")
    channels_last: bool | None = _f(
        None, "channels-last memory format (default: on for CUDA and for the unrolled network)"
    )
    compile: bool = _f(False, "torch.compile the network")
    threads: int | None = _f(None, "CPU threads for torch (default: torch's choice)")
    # validation and output
    val_every: int = _f(1, "validate every N epochs")
    val_limit: int | None = _f(None, "validate on at most this many slices or images")
    val_batch_size: int | None = _f(None, "validation batch size (default: the training batch size)")
    out: str = _f("runs/latest", "run folder (checkpoints, metrics.csv, figures, summary.json)")
    figures: bool = _f(True, "write the validation figure every validation")
    tensorboard: bool = _f(True, "write TensorBoard logs when tensorboard is installed")
    quiet: bool = _f(False, "no progress bar or per-epoch lines")

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML/JSON/checkpoint safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "config") -> Config:
        """Build from a mapping, checking and converting every value to its field's type.

        Checkpoints written before the typed config stored ``extra: {complex: ...,
        noise_kwargs: ...}``; those keys are read into :attr:`complex` and :attr:`noise_options`.

        Raises:
            ConfigError: an unknown key, or a value that does not fit (names ``where`` and the key).
        """
        return cls(**check_values(d, where=where))

    def replace(self, **kw: Any) -> Config:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **kw)


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_TYPES = typing.get_type_hints(Config)

#: Values each preset fills in for fields left at ``None``. Every key here defaults to ``None``
#: in :class:`Config`, so YAML values and flags always win over the preset.
PRESETS: dict[str, dict[str, Any]] = {
    # the paper's MRI setting: full U-Net of Table 2, 256x256, batch 16, 300 epochs
    # (4 loader workers: a GPU step outruns the main process's data loading)
    "paper": {"model": "unet_paper", "size": 256, "batch_size": 16, "epochs": 300, "num_workers": 4},
    # CPU default: chosen by measured time-to-quality on 2 cores (see docs/results.md; MRI in MRI_PRESETS)
    "cpu": {
        "model": "unet",
        "size": 128,
        "batch_size": 8,
        "max_steps": 1500,
        "steps_per_epoch": 100,
        "base": 16,
        "depth": 3,
    },
    # the unrolled network on a GPU: 256x256, batch 16, 100 epochs
    "unrolled": {"model": "unrolled", "size": 256, "batch_size": 16, "epochs": 100, "loss": "kspace",
                 "num_workers": 4},
    # tests and smoke runs
    "tiny": {"model": "unet", "size": 32, "batch_size": 4, "max_steps": 20, "base": 8, "depth": 2},
    # multi-coil k-space (fastMRI brain/knee matrices, 320x320) on a CPU: the unrolled network with
    # MoDL's proximal CG-SENSE step, 4 cascades and 3 CG iterations (the CG-SENSE steps dominate
    # the cost: 5 cascades x 6 iterations ran 2.4x slower per slice than 5 x 3), batch 2, one
    # loader worker; `bench scale` (16 coils, 2 cores shared at load 2.4-3.6): 0.15-0.7 slices/s
    # per step, the warm loader 6-7 slices/s per worker: the network is the bottleneck by 9-46x
    "multicoil": {
        "model": "unrolled", "size": 320, "batch_size": 2, "max_steps": 600, "steps_per_epoch": 100,
        "loss": "kspace", "dc": "prox", "cascades": 4, "cascade_width": 16, "cascade_depth": 5,
        "cg_iters": 3, "augment": False, "num_workers": 1,
    },
    # the same on a CUDA GPU: wider and deeper (8 cascades, 32 channels, 6 CG iterations), batch 8,
    # AMP and channels-last (the trainer's CUDA defaults); 8 loader workers: at 6-7 warm slices/s
    # per worker (maps cache filled; a cold first epoch about 2.5) they supply about 50 slices/s
    "multicoil-gpu": {
        "model": "unrolled", "size": 320, "batch_size": 8, "epochs": 50, "loss": "kspace", "dc": "prox",
        "cascades": 8, "cascade_width": 32, "cascade_depth": 5, "cg_iters": 6, "augment": False,
        "num_workers": 8,
    },
}
#: Presets made for multi-coil k-space files (refused for other data).
MULTICOIL_PRESETS = ("multicoil", "multicoil-gpu")
#: What a preset sets differently for the MRI task: on a CPU the unrolled network (5 cascades of
#: a 5-layer, 16-wide CNN with data consistency after each, 36k parameters), the k-space loss and
#: augmentation: 4 dB above the U-Net on MNI152 validation in less time, and 2.5 dB better on
#: real scans with augmentation than without (``docs/results.md``).
MRI_PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"model": "unrolled", "max_steps": 600, "loss": "kspace", "augment": True},
    # the reference MRI code's per-epoch schedule (its photographic code ramps down only)
    "paper": {"schedule": "paper"},
}
#: Values for fields that are still ``None`` after the preset (the plain U-Net's layout, no
#: augmentation, the cosine schedule).
_FALLBACK = {"base": 16, "depth": 3, "augment": False, "deform": False, "crop": False, "rescale": False,
             "schedule": "cosine",
             "cascades": 5, "cascade_width": 16, "cascade_depth": 5, "cascade_block": "cnn", "dc": "replace",
             "cg_iters": 6,
             "num_workers": 0}


def with_fallbacks(cfg: Config) -> Config:
    """``cfg`` with the fields still ``None`` that have a fallback (the U-Net's and the unrolled
    network's layout, ``dc``, ``cg_iters``, ...) set to it: what :func:`resolve_config` fills in
    after the preset, for code that builds from an unresolved config."""
    return cfg.replace(**{k: v for k, v in _FALLBACK.items() if getattr(cfg, k) is None})

#: Fields a resumed run cannot change: they define the model, the data or the corruption.
RESUME_FIXED = (
    "task", "target", "split", "dataset", "data_dir", "size", "slices", "axis", "normalize", "synth_photos",
    "synth_template", "virtual_coils", "synth_coils", "synth_coil_noise", "phase_model", "acquisition",
    "density",
    "fraction", "edge", "acceleration", "center_fraction", "trajectory", "spokes", "complex",
    "kspace_noise", "augment", "deform",
    "crop", "rescale", "train_maps", "noise", "noise_options",
    "loss", "model", "width", "base", "depth", "cascades", "cascade_width", "cascade_depth",
    "cascade_block", "share_weights", "dc", "cg_iters", "seed", "init_from",
)  # fmt: skip


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if typing.get_origin(tp) is dict:
        return "a mapping"
    args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    base = typing.get_origin(args[0]) or args[0]
    return names.get(base, "a mapping" if base is dict else str(base))


def _convert(key: str, value: Any, tp: Any, where: str) -> Any:
    args = typing.get_args(tp)
    optional = type(None) in args
    base = tp
    if args and typing.get_origin(tp) is not dict:
        base = next(a for a in args if a is not type(None))
    origin = typing.get_origin(base) or base
    bad = ConfigError(f"{where}: {key}: expected {_type_name(tp)}, got {value!r}")
    if value is None:
        if optional:
            return None
        raise bad
    if origin is bool:
        if isinstance(value, bool):
            return value
        text = value.strip().lower() if isinstance(value, str) else None
        if text in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return text in ("true", "yes", "on", "1")
        raise bad
    if origin is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise bad from None
        raise bad
    if origin is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise bad from None
        raise bad
    if origin is str:
        if key == "slices" and isinstance(value, (list, tuple)) and len(value) == 2:
            value = f"{_convert(key, value[0], int, where)}:{_convert(key, value[1], int, where)}"
        if not isinstance(value, str):
            raise bad
        choices = field_choices(key)
        if choices is not None and value not in choices:
            raise ConfigError(f"{where}: {key}: unknown value {value!r} (choose from {', '.join(choices)})")
        return value
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise bad
        return dict(value)
    raise bad  # pragma: no cover - every field type is handled above


def check_values(d: Mapping[str, Any], *, where: str = "config") -> dict[str, Any]:
    """Check and convert a mapping of config values (see :meth:`Config.from_dict`)."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where}: a config must be a mapping of keys to values")
    d = dict(d)
    extra = d.pop("extra", None)  # checkpoints before the typed config
    if isinstance(extra, Mapping):
        if "complex" in extra:
            d.setdefault("complex", extra["complex"])
        if extra.get("noise_kwargs"):
            d.setdefault("noise_options", extra["noise_kwargs"])
    unknown = sorted(set(d) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown config key(s): {', '.join(unknown)}")
    out = {k: _convert(k, v, _TYPES[k], where) for k, v in d.items()}
    if out.get("slices"):
        try:
            parse_slice_range(out["slices"])
        except ValueError as e:
            raise ConfigError(f"{where}: slices: {e}") from None
    if "normalize" in out:
        try:
            check_normalize(out["normalize"])
        except ValueError as e:
            raise ConfigError(f"{where}: normalize: {e}") from None
    return out


def resolve_config(cfg: Config) -> tuple[Config, str]:
    """Fill what the user left to the preset; returns the config and why the preset was chosen.

    ``task`` and ``dataset`` are derived from each other when one is unset (an image dataset
    implies ``--task image``; ``--task image`` defaults to the ``images`` dataset), the preset
    (``auto``: ``paper`` on a GPU, ``cpu`` otherwise) fills the fields left at ``None``.

    Raises:
        ConfigError: contradictory or out-of-range settings (the message names the setting).
    """
    task, dataset = cfg.task, cfg.dataset
    if task is None:
        task = "image" if dataset in image_dataset_names() else "mri"
    if dataset is None:
        dataset = "images" if task == "image" else "mni152"
    known = dataset_names() if task == "mri" else image_dataset_names()
    if dataset not in known:
        raise ConfigError(f"--dataset: '{dataset}' is not a {task} dataset (choose from {', '.join(known)})")
    preset = cfg.preset
    if preset == "auto":
        if torch.cuda.is_available() and cfg.device != "cpu":
            preset, why = "paper", "a CUDA GPU is present"
        else:
            preset, why = "cpu", "no GPU: the CPU default trains in minutes on 2 cores"
    else:
        why = "asked for with --preset"
    if preset not in PRESETS:
        raise ConfigError(f"--preset: unknown preset '{preset}' (choose from auto, {', '.join(PRESETS)})")
    if preset in MULTICOIL_PRESETS and (task != "mri" or dataset != "kspace"):
        raise ConfigError(f"--preset {preset} is for multi-coil k-space files (--dataset kspace), not "
                          f"--dataset {dataset}")
    vals = {**PRESETS[preset], **(MRI_PRESETS.get(preset, {}) if task == "mri" else {})}
    vals.update({k: v for k, v in _FALLBACK.items() if k not in vals})
    upd: dict[str, Any] = {"preset": preset, "task": task, "dataset": dataset}
    if cfg.trajectory is not None:  # a trajectory is non-Cartesian k-space
        if task != "mri":
            raise ConfigError(f"--trajectory {cfg.trajectory} is an MRI acquisition, not for --task {task}")
        upd["acquisition"] = "noncartesian"
    if cfg.spokes is not None and cfg.spokes < 1:
        raise ConfigError(f"--spokes must be >= 1, got {cfg.spokes}")
    if cfg.spokes is not None and cfg.trajectory is None and cfg.acquisition != "noncartesian":
        raise ConfigError("--spokes counts the readouts of a trajectory: add --trajectory")
    if cfg.complex is None:  # measured k-space keeps its phase; magnitude datasets are real
        upd["complex"] = task == "mri" and (dataset == "kspace" or cfg.synth_coils is not None)
    if cfg.target in SPLIT_TARGETS:
        if cfg.trajectory == "mixed":
            raise ConfigError(f"--target {cfg.target}: --trajectory mixed changes protocol between batches, "
                              "which one acquisition per slice cannot; choose one trajectory")
        if task != "mri":
            raise ConfigError(f"--target {cfg.target} is an MRI target (it splits k-space acquisitions)")
        if cfg.augment:
            raise ConfigError(
                f"--augment: with --target {cfg.target} each slice is acquired once, and augmentation "
                "would transform the image before acquiring it (only circular shifts, --shift, apply)"
            )
        if cfg.loss is not None and not loss_entry(cfg.loss).split:
            raise ConfigError(
                f"--loss {cfg.loss}: --target {cfg.target} learns on held-out k-space; choose from "
                f"{', '.join(loss_names(split=True))}"
            )
        if not 0.0 < cfg.split < 1.0:
            raise ConfigError(f"--split must lie in (0, 1), got {cfg.split}")
        # the papers' weightings: SSDU's loss is unweighted, Noisier2Noise's weighted by 1/(1-K)
        vals = {**vals, "augment": False, "deform": False, "crop": False, "rescale": False,
                "loss": "kspace_flat" if cfg.target == "ssdu" else "kspace"}
    kind = acquisition_kind(upd.get("acquisition", cfg.acquisition))
    if kind.compensated and vals.get("loss") == "kspace":
        # off the grid 1/p alone counts each frequency as often as the trajectory visits it (radial:
        # the centre many times over the edge); the density-compensated weights make it the image L2
        vals = {**vals, "loss": "kspace_density"}
    for k, v in vals.items():
        if getattr(cfg, k) is None:
            upd[k] = v
    if cfg.dc is None and not kind.replaces:
        upd["dc"] = "prox"  # no exact replacement (off the grid): the unrolled nets' proximal step
    # an explicit step or epoch budget wins over the preset's other budget
    if cfg.epochs is not None and cfg.max_steps is None and "max_steps" in vals:
        upd["max_steps"] = None
    if cfg.max_steps is not None and cfg.epochs is None and "epochs" in vals:
        upd["epochs"] = None
    cfg = cfg.replace(**upd)
    if cfg.task == "image" and cfg.loss is not None and loss_entry(cfg.loss).kspace:
        raise ConfigError(f"--loss {cfg.loss} is an MRI loss (it reads the target's k-space acquisition), "
                          "not one for --task image")
    if cfg.deform and not cfg.augment:
        raise ConfigError("--deform warps the slices as part of the augmentation: add --augment")
    if cfg.crop and not cfg.augment:
        raise ConfigError("--crop cuts the slices as part of the augmentation: add --augment")
    if cfg.rescale and not cfg.augment:
        raise ConfigError("--rescale resamples the slices as part of the augmentation: add --augment")
    if not 0.0 <= cfg.synth_photos <= 0.9:
        raise ConfigError(f"--synth-photos must lie in [0, 0.9], got {cfg.synth_photos}")
    if not 0.0 <= cfg.synth_template <= 0.9:
        raise ConfigError(f"--synth-template must lie in [0, 0.9], got {cfg.synth_template}")
    if cfg.synth_template and cfg.dataset != "synth":
        raise ConfigError(f"--synth-template mixes the template into --dataset synth, not '{cfg.dataset}'")
    if cfg.synth_photos and cfg.dataset != "synth":
        raise ConfigError(f"--synth-photos mixes photographs into --dataset synth, not '{cfg.dataset}'")
    if cfg.synth_coils is not None:
        try:
            parse_coil_range(cfg.synth_coils)
        except ValueError as e:
            raise ConfigError(f"--synth-coils: {e}") from None
        if cfg.dataset in ("kspace",) or cfg.task == "image":
            raise ConfigError(
                f"--synth-coils synthesises coil data from MRI images, not --dataset {cfg.dataset}"
            )
    if not cfg.synth_coil_noise >= 0:
        raise ConfigError(f"--synth-coil-noise must be >= 0, got {cfg.synth_coil_noise}")
    if cfg.dataset == "synth" and cfg.normalize != "max":
        raise ConfigError("--dataset synth draws max-normalised images: drop --normalize (or use max)")
    if cfg.size is not None and cfg.size < 8:
        raise ConfigError(f"--size must be at least 8, got {cfg.size}")
    return cfg, f"preset '{preset}' ({why})"


def resume_config(saved: Config, typed: Mapping[str, Any], *, where: str = "--resume") -> Config:
    """The config of a resumed run: the run's saved config, then the values the user typed.

    Values that would change the model, the data or the corruption (:data:`RESUME_FIXED`) are
    refused; the budget (``max_steps``, ``epochs``), the device and the output options may
    change. ``stop_after`` applies to one invocation only: it is not carried over.

    Raises:
        ConfigError: a typed value that a resumed run cannot change (names the key).
    """
    typed = check_values(typed, where=where)
    for k in RESUME_FIXED:
        if k in typed and typed[k] != getattr(saved, k):
            raise ConfigError(
                f"{where}: --{k.replace('_', '-')} {typed[k]!r} differs from the run's "
                f"{getattr(saved, k)!r} "
                "(a resumed run keeps its model, data and corruption; start a new run with another --out)"
            )
    cfg = saved.replace(**{"stop_after": None, **typed})  # stop_after is per invocation
    if "max_steps" in typed and "epochs" not in typed:
        cfg = cfg.replace(epochs=None)
    if "epochs" in typed and "max_steps" not in typed:
        cfg = cfg.replace(max_steps=None)
    return cfg


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping of config values, checked and converted (see :meth:`Config.from_dict`).

    Raises:
        ConfigError: unreadable file, not a mapping, unknown key or bad value (names the file).
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read config ({' '.join(str(e).split())[:200]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: config must be a YAML mapping of keys to values")
    return check_values(data, where=str(path))


def save_yaml(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config atomically as YAML."""
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
