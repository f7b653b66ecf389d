"""A figure of the generators: ``python -m mri_n2n.data.generators.figure --out generators.png``.

One row per example (an MNI152 slice when nilearn is installed, else a synthetic phantom): the
magnitude, the phase of :func:`~mri_n2n.data.generators.phase.with_random_phase` on the object,
the magnitudes of four coil images ``|S_c x|`` of a random coil array, the array (the RSS of its
sensitivities, 1 at its peak on the object, whose outline is white; the coils' centres as dots,
hollow for those above or below the slice) and the two
masks of a Noise2Noise pair from one drawn line law.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np
import torch

from ...coils import rss
from ...seeding import seeded_generator, stable_ident
from .coil_arrays import random_coil_array
from .line_laws import draw_line_law
from .phase import support_edges, with_random_phase

__all__ = ["example_images", "generators_figure", "main"]


def example_images(n: int, size: int) -> np.ndarray:
    """``n`` float32 magnitude images ``(n, size, size)`` in ``[0, 1]``: MNI152 axial slices
    spread through the brain (nilearn), else slices of :func:`mri_n2n.data.synthetic.phantom_volume`."""
    try:
        from ..mni152 import mni152_slices

        stack, _, _ = mni152_slices(size)
        picks = np.linspace(0.3, 0.75, n) * (len(stack) - 1)
        imgs = [np.flipud(stack[int(round(k))].T) for k in picks]  # anterior up
    except ImportError:
        from ..synthetic import phantom_volume

        vol = phantom_volume((size, size, n + 2), content=(1, n + 1), seed=0)
        imgs = [vol[:, :, k + 1] for k in range(n)]
    out = np.stack(imgs).astype(np.float32)
    return out / out.reshape(n, -1).max(1)[:, None, None]


def _tile(stack: np.ndarray, cols: int) -> np.ndarray:
    """``(N, h, w)`` -> one ``(rows h, cols w)`` mosaic (blank tiles at the end)."""
    n, h, w = stack.shape
    rows = math.ceil(n / cols)
    out = np.zeros((rows * h, cols * w), dtype=stack.dtype)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * h : (r + 1) * h, c * w : (c + 1) * w] = stack[i]
    return out


def generators_figure(
    path: str | os.PathLike, *, size: int = 128, n_examples: int = 3, seed: int = 0
) -> Path:
    """Draw ``n_examples`` rows (module docstring) at ``size`` x ``size`` and save a PNG to ``path``.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imgs = torch.from_numpy(example_images(n_examples, size))
    n_coils = [4, 8, 16, 32, 12][:n_examples] + [8] * max(0, n_examples - 5)
    fig, axes = plt.subplots(n_examples, 6, figsize=(9.6, 1.75 * n_examples), squeeze=False)
    for r in range(n_examples):
        g = seeded_generator(stable_ident("generators-figure", seed, r))
        mag = imgs[r][None, None]
        z = with_random_phase(mag, g)[0, 0]
        support, _ = support_edges(mag)
        support = support[0]
        arr = random_coil_array((size, size), n_coils[r], g, support=support)
        coil_imgs = (arr.maps * z).abs()
        law = draw_line_law(g, (size, size))
        masks = law.family.sample(2, generator=g)
        desc = law.description
        shown = np.ma.masked_where(~support.numpy(), torch.angle(z).numpy())
        panels = [
            (imgs[r].numpy(), "gray", "magnitude"),
            (shown, "twilight", "phase (rad)"),
            (
                _tile(coil_imgs[:4].numpy(), 2),
                "gray",
                f"|S_c x|, {min(4, arr.n_coils)} of {arr.n_coils} coils",
            ),
            (rss(arr.maps, dim=0).numpy(), "magma", "array: RSS of S_c"),
            (masks[0].numpy(), "gray", _law_title(desc)),
            (masks[1].numpy(), "gray", "its pair's second mask"),
        ]
        for c, (img, cmap, title) in enumerate(panels):
            ax = axes[r, c]
            kw = {"vmin": -math.pi, "vmax": math.pi} if cmap == "twilight" else {}
            if c == 3:
                kw = {"vmin": 0, "vmax": 1}
            im = ax.imshow(img, cmap=cmap, interpolation="nearest", **kw)
            if c == 1:
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, ticks=[-3, 0, 3]).ax.tick_params(
                    labelsize=6
                )
            if c == 3:  # the coils: pixel coordinates of their centres (half-FOV units -> pixels)
                xy = arr.centres[:, :2].numpy() * (size / 2) + size / 2
                in_plane = np.abs(arr.centres[:, 2].numpy()) < 0.5 * arr.radii.numpy().clip(min=1e-3)
                ax.contour(support.numpy(), levels=[0.5], colors="white", linewidths=0.5)
                ax.scatter(*xy[in_plane].T, s=6, c="cyan")
                ax.scatter(*xy[~in_plane].T, s=6, facecolors="none", edgecolors="cyan", linewidths=0.6)
                lim = max(size, float(np.abs(xy - size / 2).max()) + size / 2 + 2)
                ax.set_xlim(size / 2 - lim / 2 - 1, size / 2 + lim / 2 + 1)
                ax.set_ylim(size / 2 + lim / 2 + 1, size / 2 - lim / 2 - 1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=7)
    fig.tight_layout(pad=0.3)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, format="png")
    plt.close(fig)
    return out


def _law_title(desc: dict) -> str:
    if "acceleration" in desc and str(desc["family"]).startswith("lines"):
        return f"{desc['family']} R={desc['acceleration']:g} c={100 * desc['center_fraction']:.0f}%"
    return f"{desc['family']} 2-D, {100 * desc.get('fraction', 0):.0f}%"


def main(argv: list[str] | None = None) -> int:
    """``python -m mri_n2n.data.generators.figure --out PNG [--size 128] [--examples 3] [--seed 0]``."""
    ap = argparse.ArgumentParser(
        prog="python -m mri_n2n.data.generators.figure", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--out", required=True, metavar="PNG", help="where to write the figure")
    ap.add_argument("--size", type=int, default=128, help="image side (default 128)")
    ap.add_argument("--examples", type=int, default=3, help="rows (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = generators_figure(args.out, size=args.size, n_examples=args.examples, seed=args.seed)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
