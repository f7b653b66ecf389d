"""The generative model of ``--dataset synth``: contrast-randomised brain slices drawn from the
MNI152 tissue maps.

A network trained on the one T1 template of ``--dataset mni152`` learns that template's
contrast, texture, head size and matrix, and does not carry over to scans of other contrasts
or anatomies. Following the domain-randomisation idea of SynthSeg and SynthMorph, this module
draws a new image from the template's tissue maps at every call, with a random contrast,
texture, bias field, resolution and field of view, so that the network has to learn the
reconstruction rather than one image.

Tissue maps (nilearn, offline, 1 mm, the grid of the T1 template; :func:`tissue_maps`):

- ``wm``, ``gm``: the ICBM152 white and grey matter probability maps;
- ``csf``: the brain mask's remainder, ``clip(mask - gm - wm, 0, 1)``;
- ``head``: a ramp coding the 3-D distance ``d`` (mm) outside the brain mask,
  ``clip(1 - d / SHELL_MM, 0, 1)``, from which each draw cuts a skull and a scalp shell of
  random thickness (so that images are not only a brain on black);
- ``t1``: the template itself, as in ``--dataset mni152``.

They are sliced, resampled and padded exactly like :func:`~mri_n2n.data.mni152.mni152_slices`
(the same content slices, the same antialiased in-plane resampling below 256 and centre
padding), and cached per process as float16 ``(N, 5, size, size)``.

Generative model (:func:`synthesize`, one ``torch.Generator`` for every draw; the ranges are the
defaults of :class:`SynthParams`):

1. contrast (:func:`draw_contrast`): a tissue ordering chosen with :data:`CONTRASTS`'s
   probabilities, T1-like ``wm > gm > csf`` 0.25, T2-like ``csf > gm > wm`` 0.25, PD-like
   ``gm > csf > wm`` (CSF in the middle) 0.15, FLAIR-like ``gm > wm > csf`` (dark CSF) 0.15,
   fully random levels 0.10 (each tissue ``U(0.02, 1)``), and the T1 template's own intensities
   0.10. Ordered levels are ``1 > m > d`` with ``m ~ U(0.3, 0.8)`` and ``d = m U(0.1, 0.75)``,
   so neighbouring tissues differ by at least 20 %. Skull ``U(0, 0.4)`` and scalp
   ``U(0.1, 1.2)``, both 0 (a skull-stripped image) with probability 0.25; skull outer radius
   ``U(2, 7)`` mm and scalp thickness ``U(2, 10)`` mm beyond the brain mask; background 0;
2. partial volume: the image is the probability-weighted sum of the tissue levels, after the
   brain tissues' probabilities are sharpened (raised to a power log-uniform in ``[1, 4]`` and
   renormalised: the atlas's soft boundaries, somewhere between as-is and nearly hard);
3. texture: each tissue's level is multiplied by ``exp(sum_s a_s n_s)``, smooth Gaussian
   fields ``n_s`` of unit variance at 3 scales (2 %, 6 % and 20 % of the matrix; bicubic
   upsampling of white noise on a coarse grid) with amplitudes ``a_s ~ U(0, 0.15)``;
4. bias field: ``exp(b n)`` for a smooth field ``n`` on a 4 x 4 grid, ``b ~ U(0, 0.3)`` (the
   texture and bias fields are summed as one coarse-to-fine pyramid of knot grids, with a single
   bicubic upsampling to the matrix: about 10 ms per 128 x 128 image on one CPU thread);
5. geometry: zoom log-uniform in ``[0.7, 1.5]`` (magnification about the centre, with crop or
   zero padding to the matrix, so that the head's size relative to the matrix varies), aspect ratio
   ``exp(U(-0.1, 0.1))``, rotation ``U(-15, 15)`` degrees, shift ``U(-8, 8)`` % of the field of
   view, then one of the 8 flips/transpositions of the square;
6. resolution: with probability 0.3 a Gaussian blur, ``sigma ~ U(0.3, 1.2)`` px per axis, and
   with probability 0.3 down-then-up resampling by ``U(1.2, 2.5)`` (both axes, or one axis two
   times in three, as a low phase-encoding resolution);
7. gamma ``exp(U(-0.3, 0.3))`` after max normalisation, and a final max normalisation to 1.

:mod:`mri_n2n.data.synth` serves these images as a training set (``--dataset synth``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .mni152 import mni152_slices
from .slices import center_pad_crop, resample_inplane

__all__ = [
    "MAP_CHANNELS",
    "TISSUES",
    "CONTRASTS",
    "ORDERINGS",
    "SHELL_MM",
    "SynthParams",
    "Contrast",
    "SynthSample",
    "tissue_maps",
    "draw_contrast",
    "synthesize",
    "synth_image",
    "Uniforms",
]

#: Channels of the per-slice maps (:func:`tissue_maps`).
MAP_CHANNELS = ("wm", "gm", "csf", "head", "t1")
#: Tissue classes of a synthetic image (the background is the remainder).
TISSUES = ("wm", "gm", "csf", "skull", "scalp")
#: The ``head`` map codes distances outside the brain mask up to this many mm.
SHELL_MM = 24.0
#: Contrast families and their default probabilities (see the module docstring).
CONTRASTS: dict[str, float] = {
    "t1": 0.25,
    "t2": 0.25,
    "pd": 0.15,
    "flair": 0.15,
    "random": 0.10,
    "template": 0.10,
}
#: Brain tissues from brightest to darkest for the ordered contrast families.
ORDERINGS: dict[str, tuple[str, str, str]] = {
    "t1": ("wm", "gm", "csf"),
    "t2": ("csf", "gm", "wm"),
    "pd": ("gm", "csf", "wm"),
    "flair": ("gm", "wm", "csf"),
}
_EDGE_MM = 1.0  # softness of the skull and scalp boundaries


# ----------------------------------------------------------------------------- tissue maps


def _load_tissue_volumes() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(wm, gm, csf, head)`` float32 volumes on the template's 1 mm grid (not cached)."""
    try:
        from nilearn.datasets import load_mni152_brain_mask, load_mni152_gm_template, load_mni152_wm_template
    except ImportError as exc:
        raise ImportError(
            'the synth dataset needs nilearn: pip install "mri-n2n[demo]" (or pip install nilearn)'
        ) from exc
    gm = np.clip(load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32), 0.0, 1.0)
    wm = np.clip(load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32), 0.0, 1.0)
    mask = load_mni152_brain_mask(resolution=1).get_fdata(dtype=np.float32) > 0.5
    csf = np.clip(mask.astype(np.float32) - gm - wm, 0.0, 1.0)
    return wm, gm, csf, _head_ramp(mask)


def _head_ramp(mask: np.ndarray) -> np.ndarray:
    """``clip(1 - d / SHELL_MM, 0, 1)`` of the 3-D distance ``d`` (mm, 1 mm voxels) outside ``mask``.

    The distance transform runs on every second voxel (10x faster than at 1 mm, at most 1.4 mm
    off, well under the shells' random thickness) and is interpolated back linearly.
    """
    coarse = mask[::2, ::2, ::2]
    dist = ndimage.distance_transform_edt(~coarse, sampling=2.0).astype(np.float32)
    for ax, n in enumerate(mask.shape):  # linear interpolation at the midpoints, axis by axis
        dist = _upsample2(dist, ax, n)
    dist[mask] = 0.0
    return np.clip(1.0 - dist / SHELL_MM, 0.0, 1.0)


def _upsample2(x: np.ndarray, axis: int, n: int) -> np.ndarray:
    """Linear 2x upsampling of ``x`` (sampled at fine indices 0, 2, 4, ...) along ``axis`` to ``n``
    samples: the midpoints are averaged, and for even ``n`` the last sample is repeated."""
    x = np.moveaxis(x, axis, 0)
    out = np.empty((2 * x.shape[0] - 1,) + x.shape[1:], dtype=x.dtype)
    out[::2] = x
    out[1::2] = 0.5 * (x[:-1] + x[1:])
    if n == out.shape[0] + 1:
        out = np.concatenate([out, out[-1:]])
    if out.shape[0] != n:  # pragma: no cover - mask[::2] has ceil(n / 2) samples
        raise ValueError(f"cannot upsample {x.shape[0]} samples to {n}")
    return np.moveaxis(out, 0, axis)


def tissue_maps(
    size: int = 256, axis: int = 2, slices: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, ...], float]:
    """The per-slice maps of the template's content slices; cached per process (read-only).

    Args:
        size: output side; below 256 the slices are resampled by ``size / 256`` first, as in
            :func:`~mri_n2n.data.mni152.mni152_slices`.
        axis: slicing axis (2: axial).
        slices: ``(start, stop)`` half-open range, ``None`` = all slices with content.

    Returns:
        ``(maps float16 (N, 5, size, size), slice indices, spacing in mm)``; the channels are
        :data:`MAP_CHANNELS` (``t1`` is the max-normalised ``mni152`` slice, in float16), and the
        slice indices those of ``mni152_slices(size, axis, "max", slices)``.
    """
    return _tissue_maps(int(size), int(axis), None if slices is None else (int(slices[0]), int(slices[1])))


@functools.lru_cache(maxsize=4)
def _tissue_maps(
    size: int, axis: int, slices: tuple[int, int] | None
) -> tuple[np.ndarray, tuple[int, ...], float]:
    t1, idx, spacing = mni152_slices(int(size), int(axis), "max", slices)
    zoom = min(1.0, size / 256.0)
    chans = []
    for vol in _load_tissue_volumes():
        stack = np.moveaxis(vol, axis, 0)[list(idx)]
        if zoom != 1.0:
            stack = resample_inplane(stack, zoom)
        chans.append(np.clip(center_pad_crop(stack, size), 0.0, 1.0))
    chans.append(t1)
    maps = np.stack(chans, axis=1).astype(np.float16)
    maps.setflags(write=False)
    return maps, tuple(idx), spacing


# ----------------------------------------------------------------------------- the generative model


@dataclass(frozen=True)
class SynthParams:
    """The ranges of the generative model (defaults: the module docstring's).

    Probabilities are in ``[0, 1]``; ``(lo, hi)`` pairs are uniform ranges. Setting ``p_blur``
    and ``p_lowres`` to 0, ``zoom=(1, 1)``, ``rotation_deg=0``, ``shift=0``, ``aspect=0`` and
    ``dihedral=False`` leaves only the intensity model.
    """

    #: ``(name, probability)`` of each contrast family (names from :data:`CONTRASTS`), summing to 1.
    contrasts: tuple[tuple[str, float], ...] = tuple(CONTRASTS.items())
    #: middle level of an ordered contrast, relative to the brightest tissue.
    middle: tuple[float, float] = (0.3, 0.8)
    #: darkest level relative to the middle one.
    darkest: tuple[float, float] = (0.1, 0.75)
    #: each level of the ``random`` family.
    random_level: tuple[float, float] = (0.02, 1.0)
    skull_level: tuple[float, float] = (0.0, 0.4)
    scalp_level: tuple[float, float] = (0.1, 1.2)
    #: probability of no skull and scalp (a skull-stripped image).
    p_stripped: float = 0.25
    #: skull's outer edge beyond the brain mask (mm).
    skull_mm: tuple[float, float] = (2.0, 7.0)
    #: scalp thickness beyond the skull (mm); ``skull_mm[1] + scalp_mm[1]`` must stay under SHELL_MM.
    scalp_mm: tuple[float, float] = (2.0, 10.0)
    #: exponent sharpening the atlas's soft tissue boundaries, log-uniform (1: as the atlas).
    sharpen: tuple[float, float] = (1.0, 4.0)
    #: correlation lengths of the texture fields, as fractions of the matrix side.
    texture_scales: tuple[float, ...] = (0.02, 0.06, 0.2)
    #: each tissue's and scale's log-texture amplitude is ``U(0, texture_amplitude)``.
    texture_amplitude: float = 0.15
    #: the bias field's log amplitude is ``U(0, bias_amplitude)``.
    bias_amplitude: float = 0.3
    #: coarse grid side of the bias field.
    bias_grid: int = 4
    #: magnification about the centre, log-uniform (>1: the head fills more of the matrix and may
    #: be cropped).
    zoom: tuple[float, float] = (0.7, 1.5)
    #: the aspect ratio is ``exp(U(-aspect, aspect))``.
    aspect: float = 0.1
    rotation_deg: float = 15.0
    #: shift, as a fraction of the field of view, per axis.
    shift: float = 0.08
    #: one of the 8 flips/transpositions of the square, uniformly.
    dihedral: bool = True
    p_blur: float = 0.3
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    p_lowres: float = 0.3
    lowres_factor: tuple[float, float] = (1.2, 2.5)
    #: the gamma is ``exp(U(-gamma, gamma))``.
    gamma: float = 0.3

    def __post_init__(self) -> None:
        names = [n for n, _ in self.contrasts]
        unknown = sorted(set(names) - set(CONTRASTS))
        if unknown or len(set(names)) != len(names):
            raise ValueError(
                f"contrasts: unknown or repeated names {names} (choose from {', '.join(CONTRASTS)})"
            )
        probs = [float(p) for _, p in self.contrasts]
        if any(p < 0 for p in probs) or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
            raise ValueError(f"contrast probabilities must be non-negative and sum to 1, got {probs}")
        for key in ("p_stripped", "p_blur", "p_lowres"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must lie in [0, 1], got {getattr(self, key)}")
        for key in ("middle", "darkest", "random_level", "skull_level", "scalp_level", "skull_mm",
                    "scalp_mm", "zoom", "sharpen", "blur_sigma", "lowres_factor"):  # fmt: skip
            lo, hi = getattr(self, key)
            if not 0.0 <= lo <= hi:
                raise ValueError(f"{key} must be a range 0 <= lo <= hi, got {(lo, hi)}")
        if self.zoom[0] <= 0 or self.sharpen[0] < 1.0 or self.lowres_factor[0] < 1.0:
            raise ValueError("zoom must be positive, sharpen and lowres_factor at least 1")
        if self.skull_mm[1] + self.scalp_mm[1] > SHELL_MM - 2 * _EDGE_MM:
            raise ValueError(f"skull_mm + scalp_mm must stay under {SHELL_MM - 2 * _EDGE_MM} mm")
        if not self.texture_scales or min(self.texture_scales) <= 0:
            raise ValueError("texture_scales must be positive fractions of the matrix")
        if self.bias_grid < 2:
            raise ValueError("bias_grid must be at least 2")


@dataclass(frozen=True)
class Contrast:
    """One drawn contrast: its family and the mean level of each of :data:`TISSUES`.

    For the ``template`` family the brain levels are 1 and multiply the T1 template's own
    intensities.
    """

    name: str
    levels: tuple[float, float, float, float, float]

    def level(self, tissue: str) -> float:
        """The level of one of :data:`TISSUES`."""
        return self.levels[TISSUES.index(tissue)]


@dataclass(frozen=True)
class SynthSample:
    """What :func:`synthesize` drew.

    Attributes:
        image: ``(H, W)`` float32 in ``[0, 1]``, maximum 1.
        maps: ``(5, H, W)`` probabilities of :data:`TISSUES` after the geometric transform (before
            blur and resampling), when asked for; else ``None``.
        contrast: the drawn contrast.
        zoom: the drawn magnification (geometric mean of the two axes').
    """

    image: torch.Tensor
    maps: torch.Tensor | None
    contrast: Contrast
    zoom: float


class Uniforms:
    """Seeded uniform draws handed out one by one: ``u(lo, hi)`` is one draw in ``[lo, hi)``,
    ``u.many(n, lo, hi)`` ``n`` of them. They come from ``generator`` in blocks of 48 float64
    draws (one ``torch.rand`` call per block instead of one per draw: the per-call cost
    dominates), so a sequence of draws depends on the generator's seed only."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator
        self._vals: list[float] = []
        self._next = 0

    def __call__(self, lo: float = 0.0, hi: float = 1.0) -> float:
        if self._next == len(self._vals):
            self._vals = torch.rand(_BLOCK, generator=self.generator, dtype=torch.float64).tolist()
            self._next = 0
        self._next += 1
        return lo + (hi - lo) * self._vals[self._next - 1]

    def many(self, n: int, lo: float = 0.0, hi: float = 1.0) -> list[float]:
        return [self(lo, hi) for _ in range(n)]


_BLOCK = 48  # more than one image's scalar draws


def _draw_contrast(u: Uniforms, p: SynthParams) -> Contrast:
    names = [n for n, _ in p.contrasts]
    cum = np.cumsum([w for _, w in p.contrasts])
    name = names[min(int(np.searchsorted(cum, u(), side="right")), len(names) - 1)]
    brain: dict[str, float]
    if name in ORDERINGS:
        middle = u(*p.middle)
        darkest = middle * u(*p.darkest)
        brain = dict(zip(ORDERINGS[name], (1.0, middle, darkest)))
    elif name == "random":
        lv = u.many(3, *p.random_level)
        brain = {"wm": lv[0], "gm": lv[1], "csf": lv[2]}
    else:  # template: the T1 template's intensities
        brain = {"wm": 1.0, "gm": 1.0, "csf": 1.0}
    stripped = u() < p.p_stripped
    skull, scalp = u(*p.skull_level), u(*p.scalp_level)
    if stripped:
        skull = scalp = 0.0
    return Contrast(name, (brain["wm"], brain["gm"], brain["csf"], skull, scalp))


def draw_contrast(generator: torch.Generator, params: SynthParams | None = None) -> Contrast:
    """Draw a contrast family (with :attr:`SynthParams.contrasts`' probabilities) and its levels.

    :func:`synthesize` draws its contrast first, the same way: from the same generator state
    both give the same contrast.
    """
    return _draw_contrast(Uniforms(generator), params or SynthParams())


#: Bicubic interpolation between independent knots keeps about 0.72 of their variance in 2-D
#: (averaged over the positions between knots); this restores unit variance.
_KNOT_GAIN = 1.18


def _knots(shape: tuple[int, int], length: float) -> tuple[int, int]:
    """Knot grid spanning ``shape`` with knots about ``length`` px apart (corners included)."""
    return max(2, math.ceil((shape[0] - 1) / length) + 1), max(2, math.ceil((shape[1] - 1) / length) + 1)


def _log_texture(
    u: Uniforms, generator: torch.Generator, shape: tuple[int, int], p: SynthParams
) -> tuple[torch.Tensor, float]:
    """``(len(TISSUES), H, W)`` log texture of each tissue plus the shared log bias field.

    A pyramid: the bias field's 4 x 4 knots are interpolated (bicubic, corners aligned) to the
    coarsest texture grid, white noise of each tissue's amplitude is added there, the sum is
    interpolated to the next finer grid, and so on; one bicubic upsampling to the image ends
    it (through half the matrix, then bilinearly, when the finest knots are 4 px or more apart).
    Returns the field and the drawn bias amplitude.
    """
    k = len(TISSUES)
    bias = u(0.0, p.bias_amplitude)
    field = bias * _KNOT_GAIN * torch.randn(1, 1, p.bias_grid, p.bias_grid, generator=generator)
    field = field.expand(1, k, p.bias_grid, p.bias_grid)
    side = max(shape)
    for length in sorted((max(2.0, s * side) for s in p.texture_scales), reverse=True):
        grid = _knots(shape, length)
        amp = torch.tensor(u.many(k, 0.0, p.texture_amplitude), dtype=torch.float32).view(1, k, 1, 1)
        field = F.interpolate(field, size=grid, mode="bicubic", align_corners=True)
        field = field + amp * _KNOT_GAIN * torch.randn(1, k, *grid, generator=generator)
    if length >= 4.0:  # smooth at 2 px: bicubic to half the matrix, then bilinear (4x cheaper)
        half = ((shape[0] + 1) // 2, (shape[1] + 1) // 2)
        field = F.interpolate(field, size=half, mode="bicubic", align_corners=True)
        return F.interpolate(field, size=shape, mode="bilinear", align_corners=True)[0], bias
    return F.interpolate(field, size=shape, mode="bicubic", align_corners=True)[0], bias


def _class_maps(maps: torch.Tensor, r_skull: float, r_scalp: float, sharpen: float = 1.0) -> torch.Tensor:
    """``(5, H, W)`` probabilities of :data:`TISSUES` from the :data:`MAP_CHANNELS` of one slice.

    ``sharpen > 1`` raises the brain tissues' probabilities to that power and renormalises them
    to the same brain fraction, which sharpens the population atlas's soft tissue boundaries
    towards a hard segmentation.
    """
    brain = maps[:3]
    total = brain.sum(0)
    if sharpen != 1.0:
        q = brain.pow(sharpen)
        qsum = q.sum(0)
        brain = torch.where(qsum > 0, q * (total / qsum.clamp_min(torch.finfo(qsum.dtype).tiny)), brain)
    wm, gm, csf, head = brain[0], brain[1], brain[2], maps[3]
    outside = (1.0 - total).clamp(0.0, 1.0)
    dist = SHELL_MM * (1.0 - head)
    in_skull = torch.sigmoid((r_skull - dist) / _EDGE_MM)
    in_scalp = torch.sigmoid((r_scalp - dist) / _EDGE_MM)
    return torch.stack([wm, gm, csf, outside * in_skull, outside * (in_scalp - in_skull)])


def _gaussian_blur(x: torch.Tensor, sigma_y: float, sigma_x: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(1, C, H, W)`` with reflected borders."""
    for sigma, dim in ((sigma_y, 2), (sigma_x, 3)):
        if sigma <= 0:
            continue
        radius = max(1, min(math.ceil(3.0 * sigma), x.shape[dim] - 1))
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)
        k = torch.exp(-0.5 * (t / sigma) ** 2)
        k = (k / k.sum()).to(x.dtype)
        c = x.shape[1]
        if dim == 2:
            pad, kernel = (0, 0, radius, radius), k.view(1, 1, -1, 1)
        else:
            pad, kernel = (radius, radius, 0, 0), k.view(1, 1, 1, -1)
        x = F.conv2d(F.pad(x, pad, mode="reflect"), kernel.repeat(c, 1, 1, 1), groups=c)
    return x


def synthesize(
    maps: torch.Tensor | np.ndarray,
    generator: torch.Generator,
    params: SynthParams | None = None,
    *,
    return_maps: bool = False,
) -> SynthSample:
    """Draw one synthetic image from one slice's maps (see the module docstring).

    Args:
        maps: ``(5, H, W)`` :data:`MAP_CHANNELS` of one slice (a row of :func:`tissue_maps`).
        generator: the source of every random draw; the same generator state gives a bit-identical
            image (on the same machine and torch version).
        params: the model's ranges (default :class:`SynthParams`).
        return_maps: also return the tissue probabilities after the geometric transform.

    Returns:
        A :class:`SynthSample`.
    """
    p = params or SynthParams()
    m = torch.as_tensor(np.asarray(maps, dtype=np.float32) if isinstance(maps, np.ndarray) else maps)
    m = m.float()
    if m.ndim != 3 or m.shape[0] != len(MAP_CHANNELS):
        raise ValueError(f"maps must be ({len(MAP_CHANNELS)}, H, W), got {tuple(m.shape)}")
    h, w = int(m.shape[1]), int(m.shape[2])
    g = generator
    u = Uniforms(g)
    # 1-2. contrast, shells and partial volume
    contrast = _draw_contrast(u, p)
    r_skull = u(*p.skull_mm)
    r_scalp = r_skull + u(*p.scalp_mm)
    sharpen = math.exp(u(math.log(p.sharpen[0]), math.log(p.sharpen[1])))
    classes = _class_maps(m, r_skull, r_scalp, sharpen)
    levels = torch.tensor(contrast.levels, dtype=torch.float32).view(-1, 1, 1)
    # 3-4. per-tissue multiplicative texture at several scales, times the bias field
    log_tex, _ = _log_texture(u, g, (h, w), p)
    weighted = classes * torch.exp(log_tex)
    if contrast.name == "template":
        image = weighted[:3].sum(0) * m[4] + (weighted[3:] * levels[3:]).sum(0)
    else:
        image = (weighted * levels).sum(0)
    # 5. geometry: zoom, aspect, rotation, shift (one bilinear resampling), then a dihedral map
    zoom = math.exp(u(math.log(p.zoom[0]), math.log(p.zoom[1])))
    aspect = math.exp(u(-p.aspect, p.aspect))
    angle = math.radians(u(-p.rotation_deg, p.rotation_deg))
    shift = (u(-p.shift, p.shift), u(-p.shift, p.shift))
    dihedral = int(u(0.0, 8.0)) if p.dihedral else 0
    zx, zy = zoom * aspect, zoom / aspect
    cos, sin = math.cos(angle), math.sin(angle)
    stack = (torch.cat([image[None], classes]) if return_maps else image[None])[None]
    if (zx, zy, angle, *shift) != (1.0, 1.0, 0.0, 0.0, 0.0):
        theta = torch.tensor(
            [[[cos / zx, -sin / zy, shift[0]], [sin / zx, cos / zy, shift[1]]]], dtype=torch.float32
        )
        grid = F.affine_grid(theta, list(stack.shape), align_corners=False)
        stack = F.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if dihedral & 4 and h == w:
        stack = stack.transpose(-2, -1)
    if dihedral & 1:
        stack = stack.flip(-1)
    if dihedral & 2:
        stack = stack.flip(-2)
    x, warped = stack[:, :1], (stack[0, 1:].contiguous() if return_maps else None)
    # 6. resolution
    if u() < p.p_blur:
        x = _gaussian_blur(x, u(*p.blur_sigma), u(*p.blur_sigma))
    if u() < p.p_lowres:
        f = u(*p.lowres_factor)
        which = int(u(0.0, 3.0))  # 0: both axes, 1: rows only, 2: columns only
        fy, fx = (f if which != 2 else 1.0), (f if which != 1 else 1.0)
        small = (max(4, round(h / fy)), max(4, round(w / fx)))
        x = F.interpolate(x, size=small, mode="bilinear", antialias=True, align_corners=False)
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    # 7. gamma and max normalisation
    x = x[0, 0].clamp_min(0.0)
    peak = float(x.max())
    if peak <= 0.0:  # nothing left in the field of view (not with the default ranges)
        return SynthSample(torch.zeros(h, w), warped, contrast, zoom)
    gamma = math.exp(u(-p.gamma, p.gamma))
    x = (x / peak).pow(gamma)
    x = (x / x.max()).clamp(0.0, 1.0).contiguous()
    return SynthSample(x, warped, contrast, zoom)


def synth_image(
    maps: torch.Tensor | np.ndarray, generator: torch.Generator, params: SynthParams | None = None
) -> torch.Tensor:
    """One synthetic ``(H, W)`` float32 image in ``[0, 1]`` (maximum 1); see :func:`synthesize`."""
    return synthesize(maps, generator, params).image


# ----------------------------------------------------------------------------- photographs
