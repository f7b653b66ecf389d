"""Adaptation cost against the matrix: seconds and PSNR gain of ``--adapt`` per shape.

Every case is a tuning volume (``tuning-synth``, 24 contrast-randomised 128² brains; the
``tuning-photos`` at 256²; the photos resampled to 512² and 1024², and ``tuning-synth``
resampled to 64², all pixel-disjoint from the evaluation volumes), given a phase by the phase
model and sampled with 4x equispaced lines (8 % centre) as the ``complex-lines`` study does,
reconstructed by the shipped complex model, then adapted with the default settings, once with
whole slices (``Reconstructor.adapt_pixels = None``, the behaviour before the plan) and once with
the default plan (:func:`mri_n2n.reconstruction.adapt.adapt_plan`: readout windows of large
line-sampled slices). ``--study magnitude``: the magnitude default's ``--simulate 0.1`` with its
2-D masks instead (no exact windows: fewer steps on large scans). Each line: shape, window,
steps, adaptation seconds, seconds per million pixels, PSNR of the weights alone and adapted
(fastMRI volume convention, magnitude).

    python data_prep/time_adaptation.py [--study complex-lines|magnitude] [--checkpoint NAME]
        [--cases 512x512x1 ...] [--json out.json] [--whole-max 300000]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy.ndimage import zoom

from mri_n2n.data.generators.phase import with_random_phase
from mri_n2n.data.sources import check_disjoint, sources
from mri_n2n.fft import fft2c
from mri_n2n.masks import make_family
from mri_n2n.metrics import volume_metrics
from mri_n2n.reconstruction import Reconstructor
from mri_n2n.seeding import SALT_PHASE, seeded_generator


def cases() -> dict[str, np.ndarray]:
    """The tuning volumes at the shapes of the table, ``(N, H, W)`` float32, peak 1."""
    check_disjoint(sources("tuning"), sources("evaluation"))
    vols = {s.name: np.moveaxis(np.asarray(s.load(), np.float32), 2, 0) for s in sources("tuning")}
    synth, photos = vols["tuning-synth"], vols["tuning-photos"]
    out = {
        "64x64x24": np.stack([zoom(v, 0.5, order=1) for v in synth]),
        "128x128x24": synth,
        "256x256x2": photos,
        "512x512x1": zoom(photos[1], 2.0, order=3)[None],
        "1024x1024x1": zoom(photos[1], 4.0, order=3)[None],
    }
    return {k: np.clip(v / v.max(), 0, None).astype(np.float32) for k, v in out.items()}


def study(mag: np.ndarray, seed: int = 0) -> tuple[torch.Tensor, np.ndarray, np.ndarray, object]:
    """``(complex slices, k-space, masks, law)``: the phase model's phase, 4x equispaced lines."""
    ref = torch.from_numpy(mag)
    n, h, w = ref.shape
    law = make_family("lines_equispaced", (h, w), acceleration=4.0, center_fraction=0.08)
    z = torch.cat([with_random_phase(ref[i][None, None], seeded_generator((seed + i) ^ SALT_PHASE))[:, 0]
                   for i in range(n)])  # fmt: skip
    masks = torch.cat([law.sample(1, generator=seeded_generator(seed + 1000 + i)) for i in range(n)])
    y = fft2c(z) * masks
    return z, y.numpy(), masks.numpy(), law


def _psnr(out: object, ref: np.ndarray) -> float:
    img = np.asarray(out.image, np.float64)
    img = img if img.shape == ref.shape else np.moveaxis(img, -1, 0)
    return volume_metrics(img, ref)["psnr"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", default="complex-lines", choices=("complex-lines", "magnitude"),
                    help="complex-lines: the complex model, 4x lines; magnitude: the magnitude default, "
                    "--simulate 0.1 with its 2-D masks")  # fmt: skip
    ap.add_argument("--checkpoint", default=None, help="default: the shipped model for the study")
    ap.add_argument("--json", default=None)
    ap.add_argument("--cases", nargs="*", default=None, help="the cases to run (default all)")
    ap.add_argument("--whole-max", type=int, default=300_000,
                    help="adapt whole slices only up to this many pixels per slice (1024² takes minutes)")
    args = ap.parse_args(argv)
    ckpt = args.checkpoint or ("synth-complex-n2n" if args.study == "complex-lines" else "synth-n2n")
    torch.manual_seed(0)
    base = Reconstructor.from_checkpoint(ckpt, device="cpu")
    rows = []
    for name, mag in cases().items():
        if args.cases and name not in args.cases:
            continue
        if args.study == "complex-lines":
            z, y, m, law = study(mag)
            ref = z.abs().numpy()

            def run(rec: Reconstructor, y=y, m=m, law=law) -> object:
                return rec.kspace(y, m, law=law)
        else:
            ref = mag

            def run(rec: Reconstructor, mag=mag) -> object:
                return rec.simulate(np.moveaxis(mag, 0, -1), 0.1, seed=0, axis=2)
        n, h, w = ref.shape
        row = {"case": name, "pixels": int(n * h * w), "weights": _psnr(run(base), ref)}
        for tag, whole in (("whole", True), ("plan", False)):
            if whole and h * w > args.whole_max:
                continue
            rec = Reconstructor.from_checkpoint(ckpt, device="cpu", adapt=40)
            if whole:
                rec.adapt_pixels = None
            t0 = time.perf_counter()
            p = _psnr(run(rec), ref)
            rep = rec.last_adaptation
            per_mpx = rep.seconds / (row["pixels"] / 1e6)
            row[tag] = {"psnr": p, "gain": p - row["weights"], "adapt_seconds": rep.seconds, "crop": rep.crop,
                        "steps": rep.steps, "s_per_mpx": per_mpx, "total_seconds": time.perf_counter() - t0}
            print(f"{name:12s} {tag:6s} crop {rep.crop} steps {rep.steps:3d} {rep.seconds:6.1f} s "
                  f"{per_mpx:7.1f} s/Mpx  weights {row['weights']:.2f}  adapted {p:.2f} "
                  f"({p - row['weights']:+.2f})",
                  flush=True)  # fmt: skip
        rows.append(row)
    if args.json:
        out = {"study": args.study, "checkpoint": ckpt, "threads": torch.get_num_threads(), "rows": rows}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
