"""``--dataset synth``: a training set of contrast-randomised brain slices (the generative model
is :mod:`mri_n2n.data.synth_model`, re-exported here).

:class:`SynthDataset` serves these images for training: item ``i`` uses training slice
``i % n_train`` and a generator seeded with ``stable_ident("synth", seed, i)``, so every item
is a fresh contrast yet a run is reproducible. :func:`build_synth_datasets` pairs it with the
plain MNI152 validation slices (the split of ``--dataset mni152``, every training slice more
than 5 mm from every validation slice), so the validation numbers stay comparable with the
template-trained networks'. Optionally a share of the training items are grayscale
scikit-image photographs (texture variety; never ``camera``, ``coffee`` or ``chelsea``, the
image datasets' validation photos, and no MRI-like image).

``python -m mri_n2n.data.synth --figure out.png`` draws a grid of slices x contrasts
(:func:`synth_figure`); ``--speed`` prints the synthesis rate on one CPU thread.
"""
from __future__ import annotations

import argparse
import functools
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..seeding import seeded_generator, stable_ident
from .base import SliceDataset
from .mni152 import MNI152_NAME, build_mni152_datasets, load_mni152_volume
from .synth_model import (
    CONTRASTS,
    MAP_CHANNELS,
    ORDERINGS,
    SHELL_MM,
    TISSUES,
    Contrast,
    SynthParams,
    SynthSample,
    Uniforms,
    draw_contrast,
    synth_image,
    synthesize,
    tissue_maps,
)

__all__ = [
    "SYNTH_NAME",
    "MAP_CHANNELS",
    "TISSUES",
    "CONTRASTS",
    "ORDERINGS",
    "SHELL_MM",
    "PHOTO_NAMES",
    "DEFAULT_VARIETY",
    "SynthParams",
    "Contrast",
    "SynthSample",
    "tissue_maps",
    "draw_contrast",
    "synthesize",
    "synth_image",
    "load_photos",
    "photo_image",
    "SynthDataset",
    "build_synth_datasets",
    "tuning_volume",
    "synth_figure",
]

#: Dataset name used in provenance and identities.
SYNTH_NAME = "synth"
#: scikit-image photographs that ``photo_fraction`` may use (those bundled with the package are
#: loaded; ``camera``, ``coffee`` and ``chelsea`` are the image datasets' validation photos, and
#: the MRI-like ``brain`` and ``shepp_logan_phantom`` are left out on purpose).
PHOTO_NAMES = (
    "astronaut",
    "rocket",
    "coins",
    "moon",
    "clock",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "brick",
    "grass",
    "gravel",
    "text",
    "page",
    "cell",
    "stereo_motorcycle",
)
#: Default virtual length of the training set in passes over the training slices (with the
#: default split about 90 slices, so an epoch is about 2900 items).
DEFAULT_VARIETY = 32

_EXCLUDED_PHOTOS = frozenset({"camera", "coffee", "chelsea", "brain", "shepp_logan_phantom"})




@functools.lru_cache(maxsize=1)
def load_photos() -> tuple[tuple[str, np.ndarray], ...]:
    """The grayscale float32 ``[0, 1]`` photos of :data:`PHOTO_NAMES` bundled with scikit-image.

    Photos that this scikit-image does not ship (or that need a download) are skipped.

    Raises:
        ImportError: scikit-image is missing, or ships none of the photos.
    """
    try:
        import skimage.data as skdata
    except ImportError as exc:
        raise ImportError('photo_fraction needs scikit-image: pip install "mri-n2n[demo]"') from exc
    out = []
    for name in PHOTO_NAMES:
        if name in _EXCLUDED_PHOTOS:  # pragma: no cover - guarded by the list itself
            continue
        try:
            img = getattr(skdata, name)()
        except Exception:  # not bundled (pooch download) or removed in this version
            continue
        if isinstance(img, tuple):
            img = img[0]
        arr = np.asarray(img)
        if arr.ndim == 3:
            arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        arr = arr.astype(np.float32)
        arr = arr / max(float(arr.max()), 1e-12)
        out.append((name, np.ascontiguousarray(arr)))
    if not out:
        raise ImportError("scikit-image ships none of the photos in PHOTO_NAMES")
    return tuple(out)


def photo_image(photo: np.ndarray, size: int, generator: torch.Generator) -> torch.Tensor:
    """A random square crop (25 % to 100 % of the photo's short side) of a grayscale photo,
    resized (antialiased) to ``(size, size)``, randomly flipped/transposed, maximum 1."""
    ph, pw = photo.shape
    side = max(8, round(min(ph, pw) * Uniforms(generator)(0.25, 1.0)))
    y0 = int(torch.randint(0, ph - side + 1, (1,), generator=generator))
    x0 = int(torch.randint(0, pw - side + 1, (1,), generator=generator))
    crop = torch.from_numpy(np.ascontiguousarray(photo[y0 : y0 + side, x0 : x0 + side]))[None, None]
    x = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0, 0]
    d = int(torch.randint(0, 8, (1,), generator=generator))
    x = x.transpose(0, 1) if d & 4 else x
    x = x.flip(-1) if d & 1 else x
    x = x.flip(-2) if d & 2 else x
    x = x.clamp_min(0.0)
    return (x / x.max().clamp_min(1e-12)).contiguous()


# ----------------------------------------------------------------------------- datasets


class SynthDataset(Dataset):
    """Fresh synthetic images from the training slices' maps (the :class:`SliceDataset` interface).

    Item ``i`` draws from slice ``slice_index[i % n]`` with a generator seeded by
    ``stable_ident("synth", seed, i)`` (also the item's identity), so that the same ``(i, seed)``
    always gives the same image and consecutive passes over the slices see new contrasts.

    Args:
        maps: ``(n, 5, H, W)`` :data:`MAP_CHANNELS` of the training slices.
        slice_index: the ``n`` slice indices (along ``axis``) the maps come from.
        seed: seeds every draw.
        variety: the dataset's length is ``variety * n`` (an epoch of the trainer's sampler).
        params: the generative model's ranges.
        photo_fraction: share of the items that are scikit-image photographs instead
            (:func:`photo_image`); which ones depends only on ``(seed, i)``.
        template_fraction: share of the other items that are the T1 template slice itself (the
            ``mni152`` training image, so the template's contrast keeps its weight); which ones
            depends only on ``(seed, i)``.
        axis, spacing_mm, affine: the template's geometry, for provenance.
    """

    def __init__(
        self,
        maps: np.ndarray,
        slice_index: Sequence[int],
        *,
        seed: int = 0,
        variety: int = DEFAULT_VARIETY,
        params: SynthParams | None = None,
        photo_fraction: float = 0.0,
        template_fraction: float = 0.0,
        axis: int = 2,
        spacing_mm: float = 1.0,
        affine: list[list[float]] | None = None,
    ) -> None:
        if maps.ndim != 4 or maps.shape[1] != len(MAP_CHANNELS):
            raise ValueError(f"maps must be (n, {len(MAP_CHANNELS)}, H, W), got {maps.shape}")
        if len(slice_index) != len(maps) or len(maps) == 0:
            raise ValueError(f"need one slice index per map row and at least one row, got {len(slice_index)}")
        if int(variety) < 1:
            raise ValueError(f"variety must be at least 1, got {variety}")
        if not 0.0 <= photo_fraction < 1.0:
            raise ValueError(f"photo_fraction must lie in [0, 1), got {photo_fraction}")
        if not 0.0 <= template_fraction < 1.0:
            raise ValueError(f"template_fraction must lie in [0, 1), got {template_fraction}")
        self.template_fraction = float(template_fraction)
        self._maps = maps
        self.slice_index = tuple(int(k) for k in slice_index)
        self.seed = int(seed)
        self.variety = int(variety)
        self.params = params or SynthParams()
        self.photo_fraction = float(photo_fraction)
        self.axis = int(axis)
        self.spacing_mm = float(spacing_mm)
        self.affine = affine
        if self.photo_fraction > 0:
            load_photos()  # fail now, not in the first photo item

    def __len__(self) -> int:
        return self.variety * len(self.slice_index)

    def _check(self, i: int) -> int:
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} items")
        return i

    def ident(self, i: int) -> int:
        """The stable identity of item ``i`` (its generator's seed)."""
        return stable_ident(SYNTH_NAME, self.seed, self._check(i))

    def _photo(self, i: int) -> str | None:
        """The photo that item ``i`` is, or ``None`` for a synthetic brain (a hash of ``(seed, i)``)."""
        if self.photo_fraction <= 0:
            return None
        h = stable_ident(SYNTH_NAME, "photo", self.seed, i)
        if (h >> 30) / float(1 << 32) >= self.photo_fraction:
            return None
        photos = load_photos()
        return photos[(h & ((1 << 30) - 1)) % len(photos)][0]

    def _template(self, i: int) -> bool:
        """Whether item ``i`` is the template slice itself (a hash of ``(seed, i)``)."""
        if self.template_fraction <= 0:
            return False
        h = stable_ident(SYNTH_NAME, "template", self.seed, i)
        return (h >> 30) / float(1 << 32) < self.template_fraction

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        i = self._check(i)
        ident = stable_ident(SYNTH_NAME, self.seed, i)
        g = seeded_generator(ident)
        photo = self._photo(i)
        if photo is not None:
            arr = dict(load_photos())[photo]
            image = photo_image(arr, int(self._maps.shape[-1]), g)
        elif self._template(i):
            t1 = self._maps[i % len(self.slice_index), MAP_CHANNELS.index("t1")]
            image = torch.from_numpy(np.asarray(t1, np.float32))
        else:
            image = synth_image(self._maps[i % len(self.slice_index)], g, self.params)
        return image[None], ident

    def provenance(self, i: int) -> dict[str, Any]:
        """``dataset`` ("synth"), ``source`` (the template, or ``skimage:<photo>``), ``slice`` (the
        template slice, ``None`` for a photo), ``axis``, ``offset_mm``, ``affine``, ``draw`` (``i``)
        and ``seed``."""
        i = self._check(i)
        photo = self._photo(i)
        k = self.slice_index[i % len(self.slice_index)]
        if photo is not None:
            return {
                "dataset": SYNTH_NAME,
                "source": f"skimage:{photo}",
                "slice": None,
                "draw": i,
                "seed": self.seed,
            }
        return {
            "dataset": SYNTH_NAME,
            "source": MNI152_NAME,
            "slice": k,
            "axis": self.axis,
            "offset_mm": k * self.spacing_mm,
            "affine": self.affine,
            "draw": i,
            "seed": self.seed,
            "template": self._template(i),
        }

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every item."""
        return (1, int(self._maps.shape[-2]), int(self._maps.shape[-1]))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, slices={len(self.slice_index)}, shape={self.image_shape}, "
            f"seed={self.seed}, photo_fraction={self.photo_fraction})"
        )


def build_synth_datasets(
    *,
    size: int = 256,
    slices: tuple[int, int] | None = None,
    axis: int = 2,
    normalize: str = "max",
    valid_fraction: float = 0.2,
    seed: int = 0,
    variety: int = DEFAULT_VARIETY,
    photo_fraction: float = 0.0,
    template_fraction: float = 0.0,
    params: SynthParams | None = None,
) -> tuple[SynthDataset, SliceDataset]:
    """``(train, valid)``: synthetic images from the MNI152 *training* slices, and the plain MNI152
    *validation* slices (identical to ``build_mni152_datasets``' validation set).

    Args:
        size, slices, axis, valid_fraction: as for :func:`~mri_n2n.data.mni152.build_mni152_datasets`
            (they define the split).
        normalize: must be ``"max"``: the synthetic images are max-normalised, and the validation
            slices have to be normalised the same way.
        seed: seeds the synthetic draws (not the split, which is fixed).
        variety: the training set's length in passes over the training slices.
        photo_fraction: share of training items that are scikit-image photographs (0: none).
        template_fraction: share of the other training items that are the T1 template slice itself.
        params: the generative model's ranges (default :class:`SynthParams`).

    Raises:
        ValueError: bad options, or no training slice.
    """
    if normalize != "max":
        raise ValueError(
            f"the synth dataset draws max-normalised images; use normalize='max', not {normalize!r}"
        )
    train_t1, valid = build_mni152_datasets(
        size=size, slices=slices, axis=axis, normalize="max", valid_fraction=valid_fraction
    )
    if len(train_t1) == 0:
        raise ValueError("no MNI152 training slices to synthesise from")
    maps, idx, spacing = tissue_maps(int(size), int(axis), slices)
    pos = {k: n for n, k in enumerate(idx)}
    train_idx = [int(train_t1.provenance(n)["slice"]) for n in range(len(train_t1))]
    train_maps = maps[[pos[k] for k in train_idx]]
    train_maps.setflags(write=False)
    train = SynthDataset(
        train_maps,
        train_idx,
        seed=seed,
        variety=variety,
        params=params,
        photo_fraction=photo_fraction,
        template_fraction=template_fraction,
        axis=axis,
        spacing_mm=spacing,
        affine=load_mni152_volume()[1].tolist(),
    )
    return train, valid


# ----------------------------------------------------------------------------- figure and speed


#: Slices and seed of :func:`tuning_volume`.
TUNING_SLICES = 24
TUNING_SEED = 20261202


def tuning_volume(size: int = 128, n: int = TUNING_SLICES, seed: int = TUNING_SEED) -> np.ndarray:
    """A tuning volume of ``n`` contrast-randomised slices ``(size, size, n)`` (float32, max 1)
    drawn from the MNI152 *validation* slices (never trained on), one seeded contrast per slice:
    for choosing settings (``data_prep/tune_adaptation.py``) on images that are neither training
    data nor any real scan (:data:`mri_n2n.data.sources.SOURCES` registers it as ``tuning-synth``)."""
    _, valid = build_mni152_datasets(size=size)
    maps, idx, _ = tissue_maps(int(size))
    pos = {k: j for j, k in enumerate(idx)}
    chosen = np.linspace(0, len(valid) - 1, min(n, len(valid))).round().astype(int)
    out = []
    for j, v in enumerate(chosen):
        k = int(valid.provenance(int(v))["slice"])
        g = seeded_generator(stable_ident("synth-tuning", seed, j))
        m = torch.from_numpy(maps[pos[k]].astype(np.float32))
        out.append(synth_image(m, g).numpy())
    return np.stack(out, axis=-1).astype(np.float32)


def synth_figure(
    path: str | os.PathLike,
    *,
    size: int = 128,
    n_slices: int = 4,
    n_contrasts: int = 6,
    seed: int = 0,
    params: SynthParams | None = None,
) -> None:
    """Save a grid of ``n_slices`` training slices (rows) x the template and ``n_contrasts``
    random draws (columns) as a PNG. Each column reuses one generator seed for every row, so
    a column shows one contrast, texture and geometry on different slices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_path
    from ..plots import radiological_view

    train, _ = build_synth_datasets(size=size, seed=seed, params=params)
    affine = np.asarray(train.affine, dtype=np.float64)
    rows = np.linspace(0.15, 0.85, n_slices) * (len(train.slice_index) - 1)
    rows = [int(round(r)) for r in rows]
    fig, axes = plt.subplots(n_slices, n_contrasts + 1, figsize=(1.35 * (n_contrasts + 1), 1.45 * n_slices),
                             squeeze=False)  # fmt: skip
    for c in range(n_contrasts + 1):
        for r, row in enumerate(rows):
            ax = axes[r, c]
            maps = train._maps[row]
            if c == 0:
                img, title = torch.from_numpy(maps[4].astype(np.float32)), "MNI152 T1"
            else:
                g = seeded_generator(stable_ident(SYNTH_NAME, "figure", seed, c))
                s = synthesize(maps, g, train.params)
                img, title = s.image, f"{s.contrast.name} x{s.zoom:.2f}"
            ax.imshow(radiological_view(img, affine, train.axis), cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
            if c == 0:
                ax.set_ylabel(f"slice {train.slice_index[row]}", fontsize=7)
    fig.tight_layout(pad=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _speed(size: int, n: int = 40) -> float:
    """Images per second of :func:`synth_image` at ``size`` on the current torch threads."""
    maps, _, _ = tissue_maps(size)
    g = seeded_generator(0)
    synth_image(maps[len(maps) // 2], g)  # warm-up
    t0 = time.perf_counter()
    for k in range(n):
        synth_image(maps[(k * 7) % len(maps)], g)
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    """``python -m mri_n2n.data.synth --figure out.png [--size 128] [--seed 0] [--speed]``."""
    ap = argparse.ArgumentParser(prog="python -m mri_n2n.data.synth", description=__doc__.split("\n")[0])
    ap.add_argument("--figure", metavar="PNG", help="write a grid of slices x random contrasts")
    ap.add_argument("--size", type=int, default=128, help="matrix side of the figure (default 128)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the figure's draws (default 0)")
    ap.add_argument("--speed", action="store_true", help="print images/s at 128 and 256 on one CPU thread")
    args = ap.parse_args(argv)
    if not args.figure and not args.speed:
        ap.error("nothing to do: give --figure PNG and/or --speed")
    if args.figure:
        synth_figure(args.figure, size=args.size, seed=args.seed)
        print(f"wrote {args.figure}")
    if args.speed:
        torch.set_num_threads(1)
        for size in (128, 256):
            print(f"{size}x{size}: {_speed(size):.1f} images/s on 1 thread")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
