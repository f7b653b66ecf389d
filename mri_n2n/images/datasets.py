"""Image datasets for the photographic experiments: clean images, real noisy pairs, HDR renderings.

:func:`build_image_datasets` returns ``(train, valid)`` datasets whose items are
``(image, ident)``: ``image`` a float32 ``(channels, H, W)`` tensor (``[a, b]`` or
``[a, b, clean]`` stacked on channels for ``pairs`` / ``montecarlo``) and ``ident`` a stable
62-bit integer derived from the image's name (:func:`~mri_n2n.seeding.stable_ident`), used to
seed validation noise.

Datasets (``name``):

- ``"images"``: scikit-image's bundled natural photographs (no download; needs
  ``pip install "mri-n2n[demo]"``), split by image: :data:`SKIMAGE_VALID` validate, the rest
  (:data:`SKIMAGE_TRAIN`) train. Every image is converted to RGB (grey photos replicated), so
  ``channels == 3``.
- ``"folder"``: PNG / JPEG / TIFF files under ``data_dir`` (searched recursively; hidden files
  skipped). The split, in order of precedence:

  1. a BSDS300 layout (``images/train`` and ``images/test``, directly or under a ``BSDS300``
     folder): train on ``images/train``, validate on the 100 ``images/test`` images;
  2. ``data_dir/train`` plus one of ``valid``, ``val``, ``validation``, ``test`` or a benchmark
     folder (below); without one, ``train`` is split as in 4;
  3. benchmark folders inside ``data_dir`` -- ``kodak`` / ``kodak24`` (``kodim01.png``...),
     ``set14`` (for the super-resolution layout ``image_SRF_*/*_HR.png`` only the HR images
     of the first ``image_SRF_*`` folder), ``bsd300`` / ``bsds300`` (its ``images/test``):
     validate on them, train on every other image;
  4. otherwise a deterministic split by sorted relative path: about 10 % of the images (at
     least 1, at most 100), evenly spaced through the sorted list, validate. A folder with a
     single image uses it for both.

  Images are grey (``channels == 1``) when every file is grey, else RGB (grey files
  replicated, alpha dropped, palettes expanded). 16-bit files are scaled by 1/65535.
- ``"pairs"``: real noisy pairs, ``data_dir/a/NAME`` and ``data_dir/b/NAME`` (same relative
  name, same size), optional ``data_dir/clean/NAME``. Training items are ``[a, b]`` cropped at
  the same place (``[a, b, clean]`` when every training name has a clean image, for
  Noise2Clean comparisons); the corruption ``pairs`` swaps ``a``/``b`` at random. Validation
  names are chosen as in 4 above, among the names that have a clean image if any do, and their
  items are ``[a, clean]`` (or ``[a, b]`` without clean images: the metric is then measured
  against a noisy capture and is only a pessimistic proxy).
- ``"montecarlo"``: the same ``a`` / ``b`` / ``clean`` layout with linear HDR renderings
  (``.npy`` ``(H, W, 3)`` float, or ``.exr`` when an EXR reader is installed, see
  :mod:`.hdr`); values are not scaled or clipped.

Images are decoded once, with Pillow, and cached in memory (8-bit images as uint8, others as
float32) up to :data:`CACHE_BYTES`; images beyond that budget are decoded at each access.

**Training items** are random ``crop x crop`` crops; an image smaller than ``crop`` is first
reflect-padded (symmetrically). Crop positions come from torch's *global* generator
(``torch.randint`` without a generator), so they are reproducible given the process seed and,
in DataLoader workers, the worker seed. An epoch has ``max(#images, samples_per_epoch)``
items (default :data:`MIN_SAMPLES_PER_EPOCH`; index ``i`` uses image ``i % #images``) so that
small image sets still give epochs of a useful length.

**Validation items** are whole images of varying size (``variable_size = True``: validate with
batch size 1), centre-cropped to at most :data:`MAX_VALID_SIDE` pixels per side.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ..errors import one_line
from ..registry import Registry
from ..seeding import stable_ident
from .hdr import HDR_SUFFIXES, read_hdr

__all__ = [
    "DATASETS",
    "IMAGE_SUFFIXES",
    "SKIMAGE_TRAIN",
    "SKIMAGE_VALID",
    "ImageDataset",
    "build_image_datasets",
    "register_image_dataset",
    "image_dataset_names",
    "load_image",
    "list_images",
]

#: The built-in dataset names of :func:`build_image_datasets`; :func:`image_dataset_names` adds
#: the ones registered with :func:`register_image_dataset`.
DATASETS = ("images", "folder", "pairs", "montecarlo")
#: ``(data_dir, crop, noise, seed, samples_per_epoch) -> (train, valid)``.
ImageDatasetBuilder = Callable[..., "tuple[ImageDataset, ImageDataset]"]
#: Registered image datasets (beyond the built-in :data:`DATASETS`).
_REGISTRY: Registry[ImageDatasetBuilder] = Registry("image dataset")


def register_image_dataset(name: str) -> Callable[[ImageDatasetBuilder], ImageDatasetBuilder]:
    """Decorator: register an image dataset builder, called by :func:`build_image_datasets` as
    ``build(data_dir=..., crop=..., noise=..., seed=..., samples_per_epoch=...)`` and returning
    ``(train, valid)`` datasets with a ``channels`` attribute; its name becomes a ``--dataset``
    choice of ``--task image``. The function is returned unchanged.

    Raises:
        ValueError: ``name`` is a built-in dataset or registered already by another function.
    """

    def add(build: ImageDatasetBuilder) -> ImageDatasetBuilder:
        if name in DATASETS:
            raise ValueError(f"image dataset {name!r} is already registered (built in)")
        _REGISTRY.add(name, build, build)
        return build

    return add


def image_dataset_names() -> tuple[str, ...]:
    """Every image dataset name (the ``--dataset`` choices of ``--task image``)."""
    return (*DATASETS, *_REGISTRY.names())
#: File suffixes read as images (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: scikit-image photographs used by ``"images"`` (all bundled with scikit-image, no download).
SKIMAGE_TRAIN = (
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
    "stereo_motorcycle",
)
SKIMAGE_VALID = ("chelsea", "coffee", "camera")
#: Decoded images are kept in memory up to this many bytes.
CACHE_BYTES = 4 * 2**30
#: Validation images are centre-cropped to at most this many pixels per side.
MAX_VALID_SIDE = 1024
#: Default minimum number of training items per epoch.
MIN_SAMPLES_PER_EPOCH = 512

_VALID_DIRS = ("valid", "val", "validation", "test")
_BENCHMARK_DIRS = ("kodak", "kodak24", "set14", "bsd300", "bsds300")
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_DEMO_HINT = 'the "images" dataset needs scikit-image: pip install "mri-n2n[demo]"'


def list_images(folder: str | os.PathLike, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Files under ``folder`` (recursively) with one of ``suffixes``, sorted; hidden entries skipped."""
    folder = Path(folder)
    out = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() in suffixes and p.is_file():
            out.append(p)
    return sorted(out, key=lambda p: p.relative_to(folder).as_posix())


def _probe(path: Path) -> tuple[bool, tuple[int, int]]:
    """``(is_grey, (width, height))`` from the file header, or ``ValueError`` naming the file."""
    try:
        with Image.open(path) as im:
            return im.mode in _GREY_MODES, im.size
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise ValueError(f"{path}: cannot read image ({one_line(e)})") from None


def _array_to_chw(arr: np.ndarray, channels: int, where: str) -> torch.Tensor:
    """``(H, W[, C])`` array -> ``(channels, H, W)`` tensor: uint8 kept, others float32 in [0, 1]."""
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"{where}: unsupported image shape {arr.shape}")
    if arr.shape[2] in (2, 4):  # drop alpha
        arr = arr[:, :, : arr.shape[2] - 1]
    if arr.dtype != np.uint8:
        if arr.dtype == np.uint16 or (arr.dtype.kind in "iu" and arr.max(initial=0) > 255):
            arr = arr.astype(np.float32) / 65535.0
        elif arr.dtype.kind in "iu":
            arr = arr.astype(np.float32) / 255.0
        else:
            arr = arr.astype(np.float32)
        arr = np.clip(arr, 0.0, 1.0)
    c = arr.shape[2]
    if c == channels:
        pass
    elif c == 1 and channels == 3:
        arr = np.repeat(arr, 3, axis=2)
    elif c == 3 and channels == 1:  # luminance (ITU-R BT.601), e.g. a colour image for a grey model
        grey = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        arr = (np.clip(np.rint(grey), 0, 255).astype(np.uint8) if arr.dtype == np.uint8 else grey)[:, :, None]
    else:
        raise ValueError(f"{where}: cannot convert {c} channels to {channels}")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def load_image(path: str | os.PathLike, channels: int = 3) -> torch.Tensor:
    """Decode an image file with Pillow into a ``(channels, H, W)`` tensor.

    8-bit images stay uint8 (0..255); 16-bit, 32-bit and float images become float32 in [0, 1].
    Palette and CMYK images are converted to RGB; alpha is dropped. Grey images are replicated
    for ``channels=3``; colour images become their luminance for ``channels=1``.

    Raises:
        ValueError: the file cannot be decoded (the message names it).
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"):
                im = im.convert("RGBA" if "A" in mode or "a" in mode else "RGB")
            elif mode in ("1", "La"):
                im = im.convert("L")
            arr = np.array(im)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise ValueError(f"{path}: cannot read image ({one_line(e)})") from None
    return _array_to_chw(arr, channels, str(path))


@dataclass
class _Source:
    """One dataset item: a name and one loader per stacked block."""

    name: str
    loaders: tuple[Callable[[], torch.Tensor], ...]
    nbytes: int  # estimated decoded size

    def load(self) -> torch.Tensor:
        blocks = [f() for f in self.loaders]
        if len(blocks) == 1:
            return blocks[0]
        shapes = {tuple(b.shape[-2:]) for b in blocks}
        if len(shapes) != 1:
            raise ValueError(f"{self.name}: stacked images differ in size {sorted(shapes)}")
        if len({b.dtype for b in blocks}) != 1:
            blocks = [_to_float(b) for b in blocks]
        return torch.cat(blocks, dim=0)


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def _load_hdr(path: Path, channels: int) -> torch.Tensor:
    """An HDR rendering as float32 ``(channels, H, W)`` (grey replicated to RGB)."""
    arr = read_hdr(path)
    if arr.shape[2] != channels:
        if arr.shape[2] != 1:
            raise ValueError(f"{path}: {arr.shape[2]} channels where {channels} are expected")
        arr = np.repeat(arr, channels, axis=2)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


class ImageDataset(torch.utils.data.Dataset):
    """Images decoded once and cached; random crops (training) or whole images (validation).

    Items are ``(image float32 (channels * blocks, H, W), ident int)``; see the module docstring.

    Attributes:
        channels: channels ``C`` of one image (3 for RGB, 1 for grey).
        blocks: images stacked per item (1; 2 or 3 for ``pairs``/``montecarlo``).
        variable_size: ``True`` for validation datasets (items differ in size).
        reference: ``False`` when validation targets are noisy captures (``pairs`` /
            ``montecarlo`` without ``clean`` images), so the metric is only a proxy; for
            training datasets, whether items carry a clean block (Noise2Clean possible).
        names: item names; ``idents``: their :func:`~mri_n2n.seeding.stable_ident`.
    """

    def __init__(
        self,
        sources: Sequence[_Source],
        *,
        channels: int,
        crop: int | None,
        train: bool,
        samples_per_epoch: int | None = None,
        max_side: int | None = MAX_VALID_SIDE,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        if not sources:
            raise ValueError("an image dataset needs at least one image")
        if train and (crop is None or crop < 1):
            raise ValueError(f"training crops must be >= 1 pixel, got {crop}")
        self.sources = list(sources)
        self.channels = int(channels)
        self.blocks = len(self.sources[0].loaders)
        self.crop = crop
        self.train = train
        self.variable_size = not train
        self.reference = True
        self.max_side = max_side
        self.names = [s.name for s in self.sources]
        self.idents = [stable_ident(n) for n in self.names]
        n = len(self.sources)
        self.length = max(n, samples_per_epoch or MIN_SAMPLES_PER_EPOCH) if train else n
        self._cache: list[torch.Tensor | None] = [None] * n
        used = 0
        for i, s in enumerate(self.sources):  # decode once, eagerly, within the memory budget
            if used + s.nbytes > cache_bytes:
                warnings.warn(
                    f"image cache full ({cache_bytes / 2**30:.1f} GiB): {n - i} images will be decoded "
                    "at every access",
                    stacklevel=2,
                )
                break
            self._cache[i] = s.load()
            used += s.nbytes

    def __len__(self) -> int:
        return self.length

    def image(self, index: int) -> torch.Tensor:
        """The whole decoded image ``index`` (uint8 or float32, not cropped)."""
        cached = self._cache[index]
        return cached if cached is not None else self.sources[index].load()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        i = index % len(self.sources)
        img = self.image(i)
        if self.train:
            out = _random_crop(img, self.crop)
        else:
            out = _to_float(_centre_crop(img, self.max_side))
        return out.contiguous(), self.idents[i]


def _centre_crop(x: torch.Tensor, side: int | None) -> torch.Tensor:
    if side is None:
        return x
    h, w = x.shape[-2:]
    th, tw = min(h, side), min(w, side)
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top : top + th, left : left + tw]


def _reflect_pad(x: torch.Tensor, th: int, tw: int) -> torch.Tensor:
    """Pad a float ``(C, H, W)`` image to at least ``th x tw``, centred (reflect, repeated if needed).

    A side of a single pixel is replicated instead (reflection needs two).
    """
    h, w = x.shape[-2:]
    top, left = max(th - h, 0) // 2, max(tw - w, 0) // 2
    bottom, right = max(th - h, 0) - top, max(tw - w, 0) - left
    while top or bottom or left or right:
        h, w = x.shape[-2:]
        if (h == 1 and (top or bottom)) or (w == 1 and (left or right)):
            pads, mode = (left, right, top, bottom), "replicate"
        else:
            pads, mode = (min(left, w - 1), min(right, w - 1), min(top, h - 1), min(bottom, h - 1)), "reflect"
        x = F.pad(x[None], pads, mode=mode)[0]
        left, right, top, bottom = left - pads[0], right - pads[1], top - pads[2], bottom - pads[3]
    return x


def _random_crop(x: torch.Tensor, crop: int) -> torch.Tensor:
    """A random ``crop x crop`` window (global torch RNG) as float32, reflect-padding small images."""
    h, w = x.shape[-2:]
    if h < crop or w < crop:
        # crop the large side first (cheap on uint8), then pad the float result
        top = int(torch.randint(0, h - crop + 1, ()).item()) if h > crop else 0
        left = int(torch.randint(0, w - crop + 1, ()).item()) if w > crop else 0
        x = _to_float(x[..., top : top + min(h, crop), left : left + min(w, crop)])
        return _reflect_pad(x, crop, crop)
    top = int(torch.randint(0, h - crop + 1, ()).item())
    left = int(torch.randint(0, w - crop + 1, ()).item())
    return _to_float(x[..., top : top + crop, left : left + crop])


def _even_split(n: int) -> list[int]:
    """Indices of about 10 % (1..100) of ``n`` items, evenly spaced: the validation part."""
    if n <= 1:
        return list(range(n))
    k = max(1, min(round(0.1 * n), 100))
    return sorted({min(n - 1, int((j + 0.5) * n / k)) for j in range(k)})


def _split(items: list, preferred: list | None = None) -> tuple[list, list]:
    """Deterministic (train, valid) split; validation drawn from ``preferred`` when given."""
    pool = preferred if preferred else items
    valid = [pool[i] for i in _even_split(len(pool))]
    chosen = set(valid)
    train = [x for x in items if x not in chosen]
    return (train or list(items)), valid


# ----------------------------------------------------------------------------- folders


def _ci_child(folder: Path, names: Sequence[str]) -> list[Path]:
    """Sub-folders of ``folder`` whose lower-cased name is in ``names`` (in ``names`` order)."""
    if not folder.is_dir():
        return []
    children = {
        p.name.lower(): p for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")
    }
    return [children[n] for n in names if n in children]


def _bsds_root(folder: Path) -> Path | None:
    """The folder holding ``images/train`` and ``images/test`` (itself or a BSDS300 child)."""
    for cand in [folder, *_ci_child(folder, ("bsds300", "bsd300"))]:
        if (cand / "images" / "train").is_dir() and (cand / "images" / "test").is_dir():
            return cand
    return None


def _benchmark_images(folder: Path) -> list[Path]:
    """Validation images of a Kodak / Set14 / BSD300 benchmark folder."""
    bsds = _bsds_root(folder)
    if bsds is not None:
        return list_images(bsds / "images" / "test")
    srf = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.lower().startswith("image_srf"))
    files = list_images(srf[0]) if srf else list_images(folder)
    if not srf and not any(p.stem.upper().endswith("_LR") for p in files):
        return files
    hr = [p for p in files if p.stem.upper().endswith("_HR")]  # super-resolution layout: HR only
    return hr or files


def _resolve_folder(root: Path) -> tuple[list[Path], list[Path]]:
    """(train files, valid files) of an image folder; see the module docstring."""
    bsds = _bsds_root(root)
    if bsds is not None:
        return list_images(bsds / "images" / "train"), list_images(bsds / "images" / "test")
    train_dirs = _ci_child(root, ("train",))
    if train_dirs:
        train = list_images(train_dirs[0])
        valid_dirs = _ci_child(root, _VALID_DIRS) or _ci_child(root, _BENCHMARK_DIRS)
        if valid_dirs:
            return train, _benchmark_images(valid_dirs[0])
        return _split(train) if train else ([], [])
    bench = _ci_child(root, _BENCHMARK_DIRS)
    if bench:
        valid = [p for d in bench for p in _benchmark_images(d)]
        excluded = tuple(bench)
        train = [p for p in list_images(root) if not any(d in p.parents for d in excluded)]
        return train, valid
    return _split(list_images(root))


def _name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _image_source(
    name: str, paths: Sequence[Path], channels: int, sizes: Sequence[tuple[int, int]]
) -> _Source:
    loaders = tuple(functools.partial(load_image, p, channels) for p in paths)
    nbytes = sum(w * h * channels for (w, h) in sizes)
    return _Source(name, loaders, nbytes)


def _folder_datasets(root: Path, crop: int, samples: int | None) -> tuple[ImageDataset, ImageDataset]:
    train, valid = _resolve_folder(root)
    if not train or not valid:
        what = "training" if not train else "validation"
        raise ValueError(f"{root}: no {what} images found (PNG, JPEG or TIFF)")
    probes = {p: _probe(p) for p in {*train, *valid}}
    channels = 1 if all(g for g, _ in probes.values()) else 3

    def sources(files: list[Path]) -> list[_Source]:
        return [_image_source(_name(p, root), [p], channels, [probes[p][1]]) for p in files]

    return (
        ImageDataset(sources(train), channels=channels, crop=crop, train=True, samples_per_epoch=samples),
        ImageDataset(sources(valid), channels=channels, crop=None, train=False),
    )


# ----------------------------------------------------------------------------- pairs / montecarlo


def _pair_datasets(
    root: Path, crop: int, samples: int | None, *, hdr: bool
) -> tuple[ImageDataset, ImageDataset]:
    suffixes = HDR_SUFFIXES if hdr else IMAGE_SUFFIXES
    kinds = "HDR renderings (.npy/.exr)" if hdr else "images (PNG, JPEG or TIFF)"
    if not (root / "a").is_dir() or not (root / "b").is_dir():
        raise ValueError(f"{root}: expected sub-folders 'a' and 'b' holding pairs of noisy {kinds}")
    files = {k: {_name(p, root / k): p for p in list_images(root / k, suffixes)} for k in ("a", "b", "clean")}
    names = sorted(set(files["a"]) & set(files["b"]))
    if not names:
        raise ValueError(f"{root}: no {kinds} with the same name in 'a' and 'b'")
    unpaired = len(set(files["a"]) ^ set(files["b"]))
    if unpaired:
        warnings.warn(f"{root}: {unpaired} files in 'a' or 'b' have no partner and are ignored", stacklevel=3)
    with_clean = [n for n in names if n in files["clean"]]
    train_names, valid_names = _split(names, preferred=with_clean)
    train_clean = bool(with_clean) and all(n in files["clean"] for n in train_names)

    if hdr:
        shapes = {}
        for n in {*train_names, *valid_names}:
            shapes[n] = read_hdr(files["a"][n]).shape  # validates the files early
        channels = 3 if any(s[2] == 3 for s in shapes.values()) else 1

        def source(n: str, keys: Sequence[str]) -> _Source:
            h, w, _ = shapes[n]
            loaders = tuple(functools.partial(_load_hdr, files[k][n], channels) for k in keys)
            return _Source(n, loaders, 4 * h * w * channels * len(keys))
    else:
        probes = {}
        for n in {*train_names, *valid_names}:
            for k in ("a", "b", "clean"):
                if n in files[k]:
                    probes[(k, n)] = _probe(files[k][n])
        channels = 1 if all(g for g, _ in probes.values()) else 3

        def source(n: str, keys: Sequence[str]) -> _Source:
            return _image_source(n, [files[k][n] for k in keys], channels, [probes[(k, n)][1] for k in keys])

    train_keys = ("a", "b", "clean") if train_clean else ("a", "b")
    train_ds = ImageDataset(
        [source(n, train_keys) for n in train_names],
        channels=channels,
        crop=crop,
        train=True,
        samples_per_epoch=samples,
    )
    valid_ds = ImageDataset(
        [source(n, ("a", "clean") if n in files["clean"] else ("a", "b")) for n in valid_names],
        channels=channels,
        crop=None,
        train=False,
    )
    valid_ds.reference = all(n in files["clean"] for n in valid_names)
    train_ds.reference = train_clean
    return train_ds, valid_ds


# ----------------------------------------------------------------------------- scikit-image


def _skimage_array(name: str) -> np.ndarray:
    import skimage.data as skdata

    arr = getattr(skdata, name)()
    if name == "stereo_motorcycle":
        arr = arr[0]  # (left, right, disparity): the left view
    return np.asarray(arr)


def _skimage_datasets(crop: int, samples: int | None) -> tuple[ImageDataset, ImageDataset]:
    try:
        import skimage.data  # noqa: F401
    except ImportError:
        raise ImportError(_DEMO_HINT) from None

    def sources(names: Sequence[str]) -> list[_Source]:
        out = []
        for n in names:
            tensor = _array_to_chw(_skimage_array(n), 3, f"skimage.data.{n}")
            out.append(
                _Source(
                    f"skimage/{n}",
                    (functools.partial(_same, tensor),),
                    tensor.numel() * tensor.element_size(),
                )
            )
        return out

    return (
        ImageDataset(sources(SKIMAGE_TRAIN), channels=3, crop=crop, train=True, samples_per_epoch=samples),
        ImageDataset(sources(SKIMAGE_VALID), channels=3, crop=None, train=False),
    )


# ----------------------------------------------------------------------------- entry point


def build_image_datasets(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    crop: int = 256,
    noise: str = "gaussian",
    seed: int = 0,
    samples_per_epoch: int | None = None,
) -> tuple[ImageDataset, ImageDataset]:
    """Build the ``(train, valid)`` datasets of an image experiment.

    Args:
        name: one of :func:`image_dataset_names`: the built-in :data:`DATASETS` (see the module
            docstring) or a dataset registered with :func:`register_image_dataset`.
        data_dir: the folder (required for everything but ``"images"``).
        crop: training crop size in pixels.
        noise: the corruption that will be used; ``pairs`` and ``montecarlo`` data go only
            with the corruption of the same name (stacked observations), the synthetic noises
            only with clean-image datasets.
        seed: accepted for interface symmetry; splits are by name and do not depend on it,
            and training crops use torch's global generator (see the module docstring).
        samples_per_epoch: minimum training items per epoch (default
            :data:`MIN_SAMPLES_PER_EPOCH`).

    Returns:
        ``(train_ds, valid_ds)``, both with attribute ``channels``; ``valid_ds.variable_size``
        is ``True``.

    Raises:
        ValueError: unknown name, a noise that does not fit the data, a missing, empty or
            unreadable folder or file (one line naming it).
        ImportError: ``"images"`` without scikit-image (the message says what to install).
    """
    if name in _REGISTRY:
        return _REGISTRY.get(name)(
            data_dir=data_dir, crop=crop, noise=noise, seed=seed, samples_per_epoch=samples_per_epoch
        )
    del seed  # documented: the split and crops of the built-in datasets do not depend on it
    if name not in DATASETS:
        raise ValueError(f"unknown image dataset '{name}' (choose from {', '.join(image_dataset_names())})")
    if not isinstance(crop, int) or crop < 1:
        raise ValueError(f"crop must be a positive integer, got {crop!r}")
    stacked = ("pairs", "montecarlo")
    if name in stacked and noise != name:
        raise ValueError(
            f"dataset '{name}' holds noisy observations: use it with noise '{name}', not '{noise}'"
        )
    if noise in stacked and name != noise:
        raise ValueError(f"noise '{noise}' needs dataset '{noise}' (stacked observations), not '{name}'")
    if name == "images":
        return _skimage_datasets(crop, samples_per_epoch)
    if data_dir is None:
        raise ValueError(f"dataset '{name}' needs a data folder (--data-dir)")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder")
    if name == "folder":
        return _folder_datasets(root, crop, samples_per_epoch)
    return _pair_datasets(root, crop, samples_per_epoch, hdr=(name == "montecarlo"))
