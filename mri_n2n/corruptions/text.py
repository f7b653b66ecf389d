"""Random text overlays (the paper's text-removal experiment), rendered with Pillow on the CPU.

Strings of random length (ASCII letters, digits, punctuation, spaces), random font size
(:data:`FONT_SIZES` pixels, the same for a training crop and a whole photograph), colour and
position are drawn one over the other until the requested fraction of pixels (the *coverage*)
is covered. Later strings occlude earlier ones; each string is opaque and
drawn without anti-aliasing, so every pixel is either the clean value or the colour of one
string, and the coverage is exact. A string that would overshoot the target coverage is kept
only when it brings the coverage closer to the target than leaving it out.

Fonts: Pillow's bundled default font (``ImageFont.load_default(size=...)``, a scalable FreeType
font since Pillow 10.1); no font file or network access is needed. With an older Pillow the
fixed-size bitmap default font is scaled with nearest-neighbour interpolation instead.
Glyphs are rasterised once per (size, character) and cached; strings are composed from the
cached glyphs with each character's advance width (no kerning), which is several times faster
than asking FreeType to render every string.

All randomness comes from one integer ``seed`` (drawn by the caller from its
:class:`torch.Generator`), so an overlay is a pure function of ``(height, width, channels,
coverage, seed)``.
"""

from __future__ import annotations

import functools
import string

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["render_text_overlay", "FONT_SIZES", "ALPHABET"]

#: Characters the random strings are drawn from.
ALPHABET = string.ascii_letters + string.digits + string.punctuation + " "
#: Safety bound on the number of strings in one overlay.
MAX_STRINGS = 20000
_BITMAP_SIZE = 11  # nominal pixel size of Pillow's legacy bitmap default font


#: Default font sizes in pixels (inclusive). They do not depend on the image size, so the random
#: 64- or 256-pixel training crops and the whole photographs of validation or inference carry glyphs
#: of the same distribution (sizes that scaled with the image made validation glyphs several times
#: larger than anything seen in training).
FONT_SIZES = (8, 24)


@functools.lru_cache(maxsize=256)
def _font(size: int) -> ImageFont.FreeTypeFont | None:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: scalable bundled font
    except TypeError:  # pragma: no cover - old Pillow
        return None


@functools.lru_cache(maxsize=8192)
def _glyph(size: int, ch: str) -> tuple[np.ndarray, int, int, int]:
    """``(mask, dx, dy, advance)``: a character's bool mask, its offset from the pen, its advance."""
    font = _font(size)
    scale = 1.0
    if font is None:  # pragma: no cover - old Pillow: scale the bitmap font
        font, scale = ImageFont.load_default(), size / _BITMAP_SIZE
    left, top, right, bottom = font.getbbox(ch)
    advance = max(1, round(font.getlength(ch) * scale))
    if right <= left or bottom <= top:
        return np.zeros((0, 0), dtype=bool), 0, 0, advance
    im = Image.new("L", (right - left, bottom - top), 0)
    draw = ImageDraw.Draw(im)
    draw.fontmode = "1"  # no anti-aliasing: a pixel is covered or not
    draw.text((-left, -top), ch, font=font, fill=255)
    if scale != 1.0:  # pragma: no cover - old Pillow
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.NEAREST)
    mask = np.asarray(im) > 127
    return mask, round(left * scale), round(top * scale), advance


def _string_mask(text: str, size: int) -> tuple[np.ndarray, int, int]:
    """The bool mask of a whole string and its offset ``(dx, dy)`` from the pen position."""
    glyphs = []
    pen = 0
    for ch in text:
        mask, dx, dy, advance = _glyph(size, ch)
        if mask.size:
            glyphs.append((mask, pen + dx, dy))
        pen += advance
    if not glyphs:
        return np.zeros((0, 0), dtype=bool), 0, 0
    x0 = min(g[1] for g in glyphs)
    y0 = min(g[2] for g in glyphs)
    x1 = max(g[1] + g[0].shape[1] for g in glyphs)
    y1 = max(g[2] + g[0].shape[0] for g in glyphs)
    out = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for mask, gx, gy in glyphs:
        out[gy - y0 : gy - y0 + mask.shape[0], gx - x0 : gx - x0 + mask.shape[1]] |= mask
    return out, x0, y0


def render_text_overlay(
    height: int,
    width: int,
    channels: int,
    coverage: float,
    seed: int,
    *,
    sizes: tuple[int, int] | None = None,
    length: tuple[int, int] = (3, 20),
) -> tuple[np.ndarray, np.ndarray]:
    """Render a random text overlay covering about ``coverage`` of an image.

    Args:
        height, width: image size in pixels.
        channels: colour channels (1 grey, 3 RGB); each string has one uniform random colour.
        coverage: target fraction of covered pixels in [0, 1).
        seed: seeds every random choice (strings, sizes, positions, colours).
        sizes: inclusive font size range in pixels (default :data:`FONT_SIZES`, whatever the
            image size).
        length: inclusive string length range.

    Returns:
        ``(mask, colours)``: ``mask`` is a bool ``(H, W)`` array of covered pixels and
        ``colours`` a float32 ``(H, W, channels)`` array in [0, 1] (zero where not covered).
    """
    rng = np.random.default_rng(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)
    lo, hi = sizes if sizes is not None else FONT_SIZES
    target = float(coverage) * height * width
    labels = np.zeros((height, width), dtype=np.int32)  # which string covers each pixel (0: none)
    covered = 0
    label = 0
    while covered < target and label < MAX_STRINGS:
        size = int(rng.integers(lo, hi + 1))
        n = int(rng.integers(length[0], length[1] + 1))
        text = "".join(ALPHABET[i] for i in rng.integers(0, len(ALPHABET), n))
        mask, dx, dy = _string_mask(text, size)
        h, w = mask.shape
        # the pen position lets a string start left of / above the image, so edges get covered too
        x = int(rng.integers(-w // 2, width)) + dx
        y = int(rng.integers(-h // 2, height)) + dy
        xa, xb, ya, yb = max(x, 0), min(x + w, width), max(y, 0), min(y + h, height)
        if xb <= xa or yb <= ya:
            continue
        m = mask[ya - y : yb - y, xa - x : xb - x]
        region = labels[ya:yb, xa:xb]
        now = covered + int(np.count_nonzero(m & (region == 0)))
        if now >= target and (now - target) > (target - covered):
            break  # overshoots more than stopping short: leave it out and stop
        label += 1
        region[m] = label
        covered = now
    palette = np.zeros((label + 1, channels), dtype=np.float32)
    palette[1:] = rng.random((label, channels), dtype=np.float32)
    return labels > 0, palette[labels]
