"""Training augmentation for generalisation: the network should learn how to undo
undersampling, not the one template it saw.

:func:`augment_batch` applies, per sample and drawn from an explicit generator: a random flip
of each axis and a random multiple of 90 degrees (square images), a smooth multiplicative bias
field (a random low-order field, up to about +-30 %), a gamma change of the contrast (real
images, exponent in [0.7, 1.4]) and an intensity scale in [0.7, 1.0] (the peak stays at most 1,
as normalised volumes are). Complex (two-channel) images get a random smooth phase instead of
the gamma change, as real scans have. With ``deform=True`` each sample is first warped by a
random affine map (rotation up to 15 degrees, scale 0.85-1.15 per axis, shear up to 0.1,
translation up to 5 % of the field of view) and a smooth elastic displacement (a 5 x 5 grid of
random offsets up to 2 % of the field of view, bicubic upsampled), bilinear, zero outside: one
template brain then shows the network many anatomies. The clean image is augmented before both
observations are drawn, so Noise2Noise pairs stay pairs of the same (augmented) slice.

:func:`random_crop` cuts every sample of a batch to one random matrix size (the batch's), at a
position drawn per sample around its content: real scans come in every matrix size, often as
crops that fill the field of view with tissue and end in non-periodic edges, where the template
slices are a whole brain in a black field of view.

:func:`random_rescale` resamples every sample of a batch to one random coarser matrix (the
batch's) by truncating its k-space: what a lower-resolution scan of the same field of view
measures, with its sharp pixel-scale edges and Gibbs ringing. Real scans come at every
resolution (a 64 x 64 spin echo, a 33 x 41 T1), while an image shrunk by interpolation is
smoother than any scan of that matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..coils import normalize_maps, rss
from ..devices import reads_sync
from ..fft import fft2c, ifft2c
from ..physics import CartesianAcquisition

__all__ = [
    "augment_batch", "random_crop", "random_deformation", "random_rescale", "resize_acquisition",
    "truncate_spectrum",
]

#: Ranges of :func:`random_deformation` (radians, scale factor, shear, fraction of the half-width).
MAX_ROTATION = 0.26
SCALE_RANGE = (0.85, 1.15)
MAX_SHEAR = 0.1
MAX_TRANSLATION = 0.1
#: :func:`random_crop`: the smallest side and the probability of keeping the whole slice.
CROP_MIN_SIZE = 32
CROP_KEEP_WHOLE = 0.5
#: :func:`random_rescale`: the smallest side and the probability of keeping the full resolution.
RESCALE_MIN_SIZE = 32
RESCALE_KEEP_WHOLE = 0.5
#: Elastic displacement: control grid and largest offset (fraction of the half-width: 2 % of the FOV).
ELASTIC_GRID = 5
ELASTIC_AMPLITUDE = 0.04


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=g.device).to(like.device, like.dtype)


def _smooth_field(n: int, h: int, w: int, g: torch.Generator, like: torch.Tensor, amp: float) -> torch.Tensor:
    """``(n, 1, h, w)`` smooth random fields in ``[-amp, amp]`` (a 4x4 grid, bicubic upsampled)."""
    coarse = (torch.rand(n, 1, 4, 4, generator=g, device=g.device) * 2 - 1).to(like.device, like.dtype)
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    return amp * field.clamp(-1, 1)


def random_deformation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Warp each image of ``(B, C, H, W)`` by its own random affine map and smooth elastic
    displacement (module docstring); every channel of a sample moves together (real and
    imaginary parts alike), and the identity map reproduces the input exactly."""
    b, _, h, w = x.shape
    g = generator
    ang = _uniform(b, -MAX_ROTATION, MAX_ROTATION, g, x)
    sx, sy = _uniform(b, *SCALE_RANGE, g, x), _uniform(b, *SCALE_RANGE, g, x)
    shear = _uniform(b, -MAX_SHEAR, MAX_SHEAR, g, x)
    tx = _uniform(b, -MAX_TRANSLATION, MAX_TRANSLATION, g, x)
    ty = _uniform(b, -MAX_TRANSLATION, MAX_TRANSLATION, g, x)
    cos, sin = torch.cos(ang), torch.sin(ang)
    # output -> input coordinates (normalised [-1, 1]): rotation @ shear @ scale^-1
    a00, a01 = cos / sx, (cos * shear - sin) / sy
    a10, a11 = sin / sx, (sin * shear + cos) / sy
    theta = torch.stack([torch.stack([a00, a01, tx], 1), torch.stack([a10, a11, ty], 1)], 1)
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    coarse = torch.rand(b, 2, ELASTIC_GRID, ELASTIC_GRID, generator=g, device=g.device)
    coarse = ((coarse * 2 - 1) * ELASTIC_AMPLITUDE).to(x.device, x.dtype)
    grid = grid + F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_crop(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    min_size: int = CROP_MIN_SIZE,
    keep_whole: float = CROP_KEEP_WHOLE,
) -> torch.Tensor:
    """Cut ``(B, C, H, W)`` to one random matrix ``(h, w)`` for the whole batch, or keep it whole
    with probability ``keep_whole``.

    ``h`` and ``w`` are drawn independently and uniformly in ``[min(min_size, H), H]`` (and
    likewise for ``W``); each sample's window is centred on a pixel drawn with probability
    proportional to its magnitude (so crops hold tissue, not air), then moved inside the image.
    The crop is plain (no resampling): pixel size and noise stay as they were.
    """
    b, c, h, w = x.shape
    g = generator
    size = _draw_size(h, w, g, min_size, keep_whole)
    if size is None:
        return x
    mag = x.abs().sum(1).flatten(1).float() if c == 1 else x.square().sum(1).sqrt().flatten(1).float()
    return _windows(x, mag, size, g)


def _draw_size(
    h: int, w: int, g: torch.Generator, min_size: int, keep_whole: float
) -> tuple[int, int] | None:
    """A batch's random matrix ``(hh, ww)`` (each side uniform in ``[min(min_size, side), side]``),
    or ``None`` (keep the whole matrix) with probability ``keep_whole``."""
    if float(torch.rand((), generator=g, device=g.device)) < keep_whole:
        return None
    # the shape is read on the host (one read for both sides)
    hh, ww = (int(v) for v in torch.stack([
        torch.randint(min(min_size, h), h + 1, (), generator=g, device=g.device),
        torch.randint(min(min_size, w), w + 1, (), generator=g, device=g.device),
    ]).tolist())
    return hh, ww


def _windows(x: torch.Tensor, mag: torch.Tensor, size: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    """One ``size`` window of each sample of ``x`` ``(B, C, H, W)``, centred on a pixel drawn with
    probability proportional to ``mag`` ``(B, H * W)`` and moved inside the image."""
    b, c, h, w = x.shape
    hh, ww = size
    weights = mag + 1e-12  # an empty slice: uniform
    centre = torch.multinomial(weights.to(g.device), 1, generator=g)[:, 0]
    if reads_sync(centre.device):  # the windows gathered on the device, without host reads
        top = (centre // w - hh // 2).clamp(0, h - hh).to(x.device)
        left = (centre % w - ww // 2).clamp(0, w - ww).to(x.device)
        rows = (top[:, None] + torch.arange(hh, device=x.device)).view(b, 1, hh, 1).expand(b, c, hh, w)
        y = torch.gather(x, -2, rows)
        cols = (left[:, None] + torch.arange(ww, device=x.device)).view(b, 1, 1, ww).expand(b, c, hh, ww)
        return torch.gather(y, -1, cols)
    centre = centre.cpu()
    rows = (centre // w - hh // 2).clamp(0, h - hh).tolist()
    cols = (centre % w - ww // 2).clamp(0, w - ww).tolist()
    return torch.stack([x[i, :, r : r + hh, q : q + ww] for i, (r, q) in enumerate(zip(rows, cols))])


def random_rescale(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    min_size: int = RESCALE_MIN_SIZE,
    keep_whole: float = RESCALE_KEEP_WHOLE,
) -> torch.Tensor:
    """Resample ``(B, C, H, W)`` to one random coarser matrix ``(h, w)`` for the whole batch by
    keeping the central ``h x w`` of each image's centred k-space, or keep it whole with
    probability ``keep_whole``.

    ``h`` and ``w`` are drawn independently and uniformly in ``[min(min_size, H), H]`` (and
    likewise for ``W``). The field of view stays; the pixels grow by ``H / h`` and ``W / w``.
    Intensities keep their scale (the kept spectrum is scaled by ``sqrt(hw / HW)``, which the
    orthonormal transforms need for that), and the centre pixel ``(H // 2, W // 2)`` stays the
    centre ``(h // 2, w // 2)``. ``C = 2`` is one complex image (real, imaginary); ``C = 1`` a
    real image, of which the real part is kept (the truncated spectrum of a real image is
    Hermitian but for its Nyquist row and column).
    """
    b, c, h, w = x.shape
    size = _draw_size(h, w, generator, min_size, keep_whole)
    if size is None or size == (h, w):
        return x
    z = torch.complex(x[:, 0].float(), x[:, 1].float()) if c == 2 else x[:, 0].float().to(torch.complex64)
    small = truncate_spectrum(z, size)
    out = torch.stack([small.real, small.imag], 1) if c == 2 else small.real[:, None]
    return out.to(x.dtype)


def truncate_spectrum(z: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Complex images ``(..., H, W)`` resampled to ``size`` ``(h, w)`` by keeping the central
    ``h x w`` of their centred spectrum, scaled by ``sqrt(hw / HW)`` so that intensities keep
    their scale; the centre pixel ``(H // 2, W // 2)`` stays the centre ``(h // 2, w // 2)``."""
    h, w = z.shape[-2:]
    hh, ww = size
    top, left = h // 2 - hh // 2, w // 2 - ww // 2  # keeps the centre index (n // 2) at the centre
    return ifft2c(fft2c(z)[..., top : top + hh, left : left + ww]) * float(((hh * ww) / (h * w)) ** 0.5)


def resize_acquisition(
    acq: CartesianAcquisition,
    generator: torch.Generator,
    *,
    rescale: bool = False,
    crop: bool = False,
    min_size: int = CROP_MIN_SIZE,
    keep_whole: float = CROP_KEEP_WHOLE,
) -> CartesianAcquisition:
    """:func:`random_rescale` then :func:`random_crop` for a batch of fully sampled coil data
    (multi-coil training): the coil images and their maps are resampled (the maps renormalised,
    ``sum_c |S_c|^2 = 1``) and cut together, windows centred on the coil images' root-sum-of-
    squares, and acquired again on a full mask at the new matrix. Data consistent before are
    consistent after: the coil images stay ``S_c x`` up to the maps' own resampling."""
    g = generator
    u = acq.coil_images()
    b, c, h, w = u.shape
    maps = acq.maps.expand(b, -1, -1, -1)
    changed = False
    if rescale:
        size = _draw_size(h, w, g, min_size, keep_whole)
        if size is not None and size != (h, w):
            u, maps = truncate_spectrum(u, size), normalize_maps(truncate_spectrum(maps, size))
            changed, (h, w) = True, size
    if crop:
        size = _draw_size(h, w, g, min_size, keep_whole)
        if size is not None:
            both = torch.view_as_real(torch.cat([u, maps], 1)).permute(0, 1, 4, 2, 3).flatten(1, 2)
            cut = _windows(both, rss(u, dim=1).flatten(1).float(), size, g)
            cut = torch.view_as_complex(cut.unflatten(1, (2 * c, 2)).permute(0, 1, 3, 4, 2).contiguous())
            u, maps, changed = cut[:, :c], cut[:, c:], True
    if not changed:
        return acq
    full = torch.ones(b, *u.shape[-2:], dtype=torch.bool, device=u.device)
    return CartesianAcquisition(full, maps.to(acq.maps.dtype), None).with_data(fft2c(u))


def _dihedral(x: torch.Tensor, flips: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Sample ``i`` of ``x`` flipped along the dims ``(-2, -1)`` where ``flips[i]`` says, then
    turned by ``turns[i]`` quarter turns (square images), chosen on the device: the same values
    as flipping and turning each sample, without host reads."""
    sel = flips[:, :, None, None, None]
    x = torch.where(sel[:, 0], x.flip(-2), x)
    x = torch.where(sel[:, 1], x.flip(-1), x)
    if x.shape[-1] != x.shape[-2]:
        return x
    k = turns.view(-1, 1, 1, 1)
    out = x
    for q in (1, 2, 3):
        out = torch.where(k == q, torch.rot90(x, q, dims=(-2, -1)), out)
    return out


def augment_batch(x: torch.Tensor, generator: torch.Generator, *, deform: bool = False) -> torch.Tensor:
    """Augment a clean batch ``(B, C, H, W)`` (C = 1 real, C = 2 real/imaginary); see the module.
    ``deform``: first warp each sample (:func:`random_deformation`)."""
    b, c, h, w = x.shape
    g = generator
    if deform:
        x = random_deformation(x, g)
    flips = torch.rand(b, 2, generator=g, device=g.device) < 0.5
    turns = torch.randint(0, 4, (b,), generator=g, device=g.device)
    if h != w:  # a quarter turn would change the shape
        turns = torch.zeros_like(turns)
    if reads_sync(flips.device):
        x = _dihedral(x, flips.to(x.device), turns.to(x.device))
    else:
        out = []
        for i in range(b):
            xi = x[i]
            dims = [d for d, f in zip((-2, -1), flips[i].tolist()) if f]
            if dims:
                xi = torch.flip(xi, dims)
            if int(turns[i]):
                xi = torch.rot90(xi, int(turns[i]), dims=(-2, -1))
            out.append(xi)
        x = torch.stack(out)
    bias = torch.exp(_smooth_field(b, h, w, g, x, 0.3))
    if c == 1:
        gamma = _uniform(b, 0.7, 1.4, g, x)[:, None, None, None]
        x = x.clamp_min(0) ** gamma * bias
    else:
        phase = _smooth_field(b, h, w, g, x, torch.pi / 2)
        re, im = x[:, :1] * bias, x[:, 1:2] * bias
        cos, sin = torch.cos(phase), torch.sin(phase)
        x = torch.cat([re * cos - im * sin, re * sin + im * cos], dim=1)
    mag = x.abs() if c == 1 else x.square().sum(1, keepdim=True).sqrt()
    peak = mag.flatten(1).amax(1)[:, None, None, None]
    scale = _uniform(b, 0.7, 1.0, g, x)[:, None, None, None]
    return x / peak.clamp_min(1.0) * scale
