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
its pixels), and ``tuning-photos`` (which fill their field of view) at 256² and resampled to
64² and 33 x 41. For each estimator it prints, per case, the
SENSE model's mismatch (the share of the noise-free coil images' energy that ``S S^H`` does not
keep) and the PSNR of the shipped multi-coil model's reconstruction (fastMRI volume PSNR, the
``sense`` output), then the means. The project's default (``MAPS``) is the best mean PSNR.
``--study multicoil-radial`` does the same for trajectory files (that study of ``bench
generalization``: the same coil arrays, golden-angle spokes at 4x, the central slices, the maps
estimated from the gridded centre; the shipped non-Cartesian model; ``NONCARTESIAN_MAPS``).

    python data_prep/tune_maps.py [--study multicoil-lines|multicoil-radial] [--checkpoint NAME_OR_PATH]
        [--only NAME,...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy.ndimage import zoom

from mri_n2n.acquisition import acquisition_kind
from mri_n2n.bench.generalization import (
    MULTICOIL_CENTER_LINES,
    MULTICOIL_COILS,
    complex_lines_volume,
    multicoil_lines_file,
    multicoil_lines_volume,
    multicoil_radial_volume,
    random_coil_array,
)
from mri_n2n.coils import normalize_maps
from mri_n2n.data.sources import check_disjoint, sources
from mri_n2n.metrics import volume_metrics
from mri_n2n.reconstruction import Reconstructor
from mri_n2n.reconstruction.multicoil import inference_maps
from mri_n2n.reconstruction.noncartesian import NONCARTESIAN_KIND
from mri_n2n.reconstruction.noncartesian import inference_maps as noncartesian_maps
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
    "default": {},  # the library's MAPS (reconstruction.multicoil) or NONCARTESIAN_MAPS
    "espirit-k4-c0-g64": {"method": "espirit", "kernel": 4, "crop": 0.0, "grid": 64},
    "espirit-k4-c0-g128": {"method": "espirit", "kernel": 4, "crop": 0.0, "grid": 128},
    "espirit-k4-c0-virtual": {"method": "espirit", "kernel": 4, "crop": 0.0, "phase_ref": "virtual"},
    "walsh-virtual": {"method": "walsh", "phase_ref": "virtual"},
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
        "photos 64x64x2": zoom(photos, (0.25, 0.25, 1), order=1),
        "photos 33x41x2": zoom(photos, (33 / photos.shape[0], 41 / photos.shape[1], 1), order=1),
    }


def true_maps(vol: np.ndarray, seed: int = 0, centre: int = MULTICOIL_CENTER_LINES):
    """The study's normalised true maps ``(C, H, W)`` of a volume (as the bench draws them) and
    its noise-free coil images ``(N, C, H, W)``."""
    z, _, _ = complex_lines_volume(vol, 0.25, seed, centre)
    support = z.abs().amax(0) > 0.1 * float(z.abs().max())
    array = random_coil_array(tuple(z.shape[-2:]), MULTICOIL_COILS,
                              seeded_generator(stable_ident("generalization-coils", seed)), support=support)
    return normalize_maps(array.maps).to(torch.complex64), array.maps[None] * z[:, None]


def mismatch(coils: torch.Tensor, maps: torch.Tensor) -> float:
    """Share of the energy of coil images ``(N, C, H, W)`` outside ``S S^H``'s range."""
    x = (maps.conj() * coils).sum(1, keepdim=True)
    return float((coils - maps * x).abs().square().sum() / coils.abs().square().sum())


def study_case(study: str, vol: np.ndarray, name: str):
    """``(file, reference (N, H, W), noise-free coil images (N, C, H, W), maps(settings))`` of a
    tuning volume in ``study``."""
    if study == "multicoil-radial":
        scan = multicoil_radial_volume(vol, 0.25, 0, name)
        coils = true_maps(vol, centre=0)[1][scan.meta["slices"]]
        kind = acquisition_kind(NONCARTESIAN_KIND)
        return scan, scan.meta["reference"], coils, lambda settings: noncartesian_maps(kind, scan, settings)
    y, masks, ref, _ = multicoil_lines_volume(vol, 0.25, 0)
    return multicoil_lines_file(y, masks, ref, name), ref, true_maps(vol)[1], lambda s: inference_maps(y, s)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", choices=("multicoil-lines", "multicoil-radial"), default="multicoil-lines")
    ap.add_argument("--checkpoint", default=None, help="default: the shipped model for the study's data")
    ap.add_argument("--only", default=None, help="comma-separated candidate names")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    names = args.only.split(",") if args.only else list(CANDIDATES)
    data = {case: study_case(args.study, vol, case) for case, vol in cases().items()}
    kind = "noncartesian" if args.study == "multicoil-radial" else "multicoil"
    results: dict[str, dict] = {}
    for name in names:
        settings = CANDIDATES[name]
        rec = (Reconstructor.from_checkpoint(args.checkpoint, device="cpu") if args.checkpoint
               else Reconstructor.from_pretrained(data=kind, device="cpu"))
        rec.maps = settings or None
        row: dict[str, float] = {}
        t0 = time.perf_counter()
        for case, (mc, ref, coils, maps) in data.items():
            out = rec.multicoil(mc, output="sense")
            image = np.moveaxis(np.asarray(out.image), -1, 0)  # written (H, W, N)
            row[f"{case}/psnr"] = volume_metrics(image, ref)["psnr"]
            row[f"{case}/mismatch"] = mismatch(coils, maps(rec.maps).to(coils.dtype))
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
