"""Choose how ``reconstruct`` estimates coil maps for multi-coil files, on tuning volumes only.

The multi-coil network and TV-SENSE see an acquisition through the SENSE model ``F S x``, so
maps that do not explain the coil images cost them directly (docs/results.md, "Multi-coil data on
whole lines": on the real scans the estimated maps cost the network 6.2 dB against the true ones,
most on small matrices). This script scores each candidate estimator on the ``multicoil-lines``
study of ``bench generalization`` (the phase model's phase, one random 8-coil loop array with
correlated noise, 4x equispaced lines with 8 % of the lines, at least 8, fully sampled), run on
the ``tuning`` sources (pixel-disjoint from every evaluation volume, checked first by
:func:`mri_n2n.data.sources.check_disjoint`) at the matrix sizes users have: ``tuning-synth``
at 128², resampled to 64² and to 33 x 41 (the smallest evaluation matrix's shape, nothing of
its pixels), and ``tuning-photos`` at 256². For each estimator it prints, per case, the
SENSE model's mismatch (the share of the noise-free coil images' energy that ``S S^H`` does not
keep) and the PSNR of the shipped multi-coil model's reconstruction (fastMRI volume PSNR, the
``sense`` output), then the means. The project's default (``MAPS``) is the best mean PSNR.

    python data_prep/tune_maps.py [--checkpoint NAME_OR_PATH] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy.ndimage import zoom

from mri_n2n.bench.generalization import (
    MULTICOIL_CENTER_LINES,
    MULTICOIL_COILS,
    complex_lines_volume,
    multicoil_lines_file,
    multicoil_lines_volume,
    random_coil_array,
)
from mri_n2n.coils import normalize_maps
from mri_n2n.data.sources import check_disjoint, sources
from mri_n2n.metrics import volume_metrics
from mri_n2n.reconstruction import Reconstructor
from mri_n2n.reconstruction.multicoil import inference_maps
from mri_n2n.seeding import seeded_generator, stable_ident

#: candidate estimators: name -> ``MapsSettings`` keywords
CANDIDATES: dict[str, dict] = {
    "walsh": {"method": "walsh"},
    "walsh-fullres": {"method": "walsh", "grid": None},
    "espirit-k6-c0.95": {"method": "espirit", "kernel": 6, "crop": 0.95},
    "espirit-k6-c0.8": {"method": "espirit", "kernel": 6, "crop": 0.8},
    "espirit-k6-c0.5": {"method": "espirit", "kernel": 6, "crop": 0.5},
    "espirit-k4-c0.5": {"method": "espirit", "kernel": 4, "crop": 0.5},
    "espirit-k6-c0": {"method": "espirit", "kernel": 6, "crop": 0.0},
    "espirit-k4-c0": {"method": "espirit", "kernel": 4, "crop": 0.0},
    "espirit-k4-c0.2": {"method": "espirit", "kernel": 4, "crop": 0.2},
    "espirit-k3-c0": {"method": "espirit", "kernel": 3, "crop": 0.0},
    "espirit-k5-c0": {"method": "espirit", "kernel": 5, "crop": 0.0},
    "espirit-k4-c0-g48": {"method": "espirit", "kernel": 4, "crop": 0.0, "grid": 48},
    "espirit-k4-c0-g48-p1": {"method": "espirit", "kernel": 4, "crop": 0.0, "grid": 48, "power_iters": 1},
    "espirit-k4-c0-g24": {"method": "espirit", "kernel": 4, "crop": 0.0, "grid": 24},
}


def cases() -> dict[str, np.ndarray]:
    """The tuning volumes as ``(rows, cols, slices)`` float32 arrays, after the overlap check."""
    check_disjoint(sources("tuning"), sources("evaluation"))
    vols = {s.name: np.asarray(s.load(), np.float32) for s in sources("tuning")}
    synth, photos = vols["tuning-synth"], vols["tuning-photos"]
    return {
        "synth 33x41x24": zoom(synth, (33 / synth.shape[0], 41 / synth.shape[1], 1), order=1),
        "synth 64x64x24": zoom(synth, (0.5, 0.5, 1), order=1),
        "synth 128x128x24": synth,
        "photos 256x256x2": photos,
    }


def true_maps(vol: np.ndarray, seed: int = 0) -> torch.Tensor:
    """The study's normalised true maps ``(C, H, W)`` of a volume (as the bench draws them)."""
    z, _, _ = complex_lines_volume(vol, 0.25, seed, MULTICOIL_CENTER_LINES)
    support = z.abs().amax(0) > 0.1 * float(z.abs().max())
    array = random_coil_array(tuple(z.shape[-2:]), MULTICOIL_COILS,
                              seeded_generator(stable_ident("generalization-coils", seed)), support=support)
    return normalize_maps(array.maps).to(torch.complex64), array.maps[None] * z[:, None]


def mismatch(coils: torch.Tensor, maps: torch.Tensor) -> float:
    """Share of the energy of coil images ``(N, C, H, W)`` outside ``S S^H``'s range."""
    x = (maps.conj() * coils).sum(1, keepdim=True)
    return float((coils - maps * x).abs().square().sum() / coils.abs().square().sum())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="synth-multicoil-n2n")
    ap.add_argument("--only", default=None, help="comma-separated candidate names")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    names = args.only.split(",") if args.only else list(CANDIDATES)
    data = {}
    for case, vol in cases().items():
        y, masks, ref, _ = multicoil_lines_volume(vol, 0.25, 0)
        _, coils = true_maps(vol)
        data[case] = (y, multicoil_lines_file(y, masks, ref, case), ref, coils)
    results: dict[str, dict] = {}
    for name in names:
        settings = CANDIDATES[name]
        rec = Reconstructor.from_pretrained(args.checkpoint, data="multicoil")
        rec.maps = settings
        row: dict[str, float] = {}
        t0 = time.perf_counter()
        for case, (y, mc, ref, coils) in data.items():
            out = rec.multicoil(mc, output="sense")
            image = np.moveaxis(np.asarray(out.image), -1, 0)  # written (H, W, N)
            row[f"{case}/psnr"] = volume_metrics(image, ref)["psnr"]
            row[f"{case}/mismatch"] = mismatch(coils, inference_maps(y, rec.maps))
        row["seconds"] = time.perf_counter() - t0
        row["mean psnr"] = float(np.mean([v for k, v in row.items() if k.endswith("/psnr")]))
        row["mean mismatch"] = float(np.mean([v for k, v in row.items() if k.endswith("/mismatch")]))
        results[name] = row
        print(name, " ".join(f"{k}={v:.4f}" for k, v in row.items()), flush=True)
    best = max(results, key=lambda k: results[k]["mean psnr"])
    print(f"best mean PSNR: {best} ({results[best]['mean psnr']:.2f} dB)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
