"""Choose the settings of scan-specific adaptation (``--adapt``) on a tuning set that shares no
pixels with any evaluation volume.

Tuning volumes: the ``tuning`` sources of :mod:`mri_n2n.data.sources` (contrast-randomised
brains synthesised from the MNI152 tissue maps on the template's validation slices, the
Shepp-Logan phantom and a photograph; nothing from a real scan). Before anything is scored the
script checks, pixel by pixel (:func:`mri_n2n.data.sources.check_disjoint`), that no tuning
volume shares a run of voxels with any evaluation volume (the generalisation table's real scans),
and stops if one does. Each tuning volume is studied retrospectively at 10 % like the table
(seed 0) with the shipped model, adapted with each setting of the grid; the printed line per
setting is the fastMRI volume PSNR of each volume, their mean and the mean gain over the trained
weights. The project's defaults (``mri_n2n.reconstruction.adapt``) are the best mean of this grid.

    python data_prep/tune_adaptation.py [--checkpoint NAME_OR_PATH] [--json out.json]

``--study complex-lines`` / ``multicoil-lines`` tune the scanner-data models the same way, on the
studies of ``bench generalization`` (the phase model's phase, 4x equispaced lines, 8 % centre;
for coils one random 8-coil array with correlated noise), with the model made for those data
(``synth-complex-n2n``, ``synth-multicoil-n2n``) and the grid ``scanner``; ``--study
multicoil-radial`` the non-Cartesian model (``synth-noncartesian-n2n``) on that study's
trajectory files (8 coils, golden-angle radial 4x, the central slices), grid ``trajectory``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from mri_n2n.bench.generalization import (
    complex_lines_volume,
    multicoil_lines_file,
    multicoil_lines_volume,
    multicoil_radial_volume,
)
from mri_n2n.data.sources import check_disjoint, sources
from mri_n2n.fft import fft2c
from mri_n2n.metrics import volume_metrics
from mri_n2n.reconstruction import Reconstructor

#: ``(max shift, steps, learning rate, validation share, slices per step)`` per setting.
#: ``default``: the grid that chose the 200-step default for ``mni152-n2n``; ``fast``: short
#: adaptations for the 20-second budget of a 128² x 24 volume (issue 23), trading steps for slices.
GRIDS = {
    "default": [(shift, steps, 3e-4, 0.0, 8) for shift in (None, 0) for steps in (50, 100, 200)],
    "fast": [
        *[(0, steps, lr, 0.0, batch) for steps, batch in ((20, 8), (40, 4)) for lr in (3e-4, 1e-3, 3e-3)],
        *[(0, 60, lr, 0.1, 4) for lr in (1e-3, 3e-3)],
    ],
    # within 20 s on the 128² x 24 tuning-synth volume: fewer steps or fewer slices per step
    "budget": [(0, 30, 3e-4, 0.0, 4), (0, 30, 5e-4, 0.0, 4), (0, 40, 3e-4, 0.0, 2), (0, 40, 1e-3, 0.0, 2)],
    # the scanner-data models (issue 30): the magnitude default's setting against larger steps
    # and rates at the same cost, and twice the steps
    "scanner": [(0, 40, 3e-4, 0.0, 2), (0, 40, 1e-3, 0.0, 2), (0, 40, 3e-3, 0.0, 2), (0, 80, 3e-4, 0.0, 2)],
    # the grid's lower edge won for the multi-coil model once its maps were ESPIRiT's: one step lower
    "scanner-low": [(0, 40, 1e-4, 0.0, 2), (0, 40, 3e-4, 0.0, 2)],
    # the non-Cartesian model (issue 33): the library's default rate against smaller ones, and
    # with self-validated early stopping
    "trajectory": [(0, 40, 3e-5, 0.0, 2), (0, 40, 1e-4, 0.0, 2), (0, 40, 3e-4, 0.0, 2), (0, 40, 3e-4, 0.1, 2),
                   (0, 40, 1e-3, 0.0, 2)],
    # its short form: the three rates that did not hurt
    "trajectory-rates": [(0, 40, 3e-5, 0.0, 2), (0, 40, 1e-4, 0.0, 2), (0, 40, 3e-4, 0.0, 2)],
}
#: the shipped model each study tunes by default
STUDY_MODELS = {
    "magnitude": "default",
    "complex-lines": "synth-complex-n2n",
    "multicoil-lines": "synth-multicoil-n2n",
    "multicoil-radial": "synth-noncartesian-n2n",
}


def study_runner(study: str, vol: np.ndarray, name: str):
    """``run(rec) -> PSNR`` of one tuning volume ``(rows, cols, slices)`` in ``study``: the
    magnitude default's retrospective 10 % study, or the scanner studies of ``bench
    generalization`` at 4x (seed 0), scored like the table."""
    if study == "magnitude":
        return lambda rec: rec.simulate(vol, 0.1, seed=0, axis=2).metrics["psnr"]

    def psnr(out, ref) -> float:
        img = np.asarray(out.image, np.float64)
        return volume_metrics(img if img.shape == ref.shape else np.moveaxis(img, -1, 0), ref)["psnr"]

    if study == "complex-lines":
        z, masks, law = complex_lines_volume(vol, 0.25, 0)
        y, ref = (fft2c(z) * masks).numpy(), z.abs().numpy()
        return lambda rec: psnr(rec.kspace(y, masks.numpy(), law=law), ref)
    if study == "multicoil-radial":
        scan = multicoil_radial_volume(vol, 0.25, 0, name)
        return lambda rec: psnr(rec.noncartesian(scan), scan.meta["reference"])
    y, masks, ref, _ = multicoil_lines_volume(vol, 0.25, 0)
    mc = multicoil_lines_file(y, masks, ref, name)
    return lambda rec: psnr(rec.multicoil(mc, output="sense"), ref)


def tuning_volumes() -> dict[str, np.ndarray]:
    """The tuning volumes as float32 ``(rows, cols, slices)`` arrays, after the overlap check."""
    pairs = check_disjoint(sources("tuning"), sources("evaluation"))
    worst = max(pairs.items(), key=lambda kv: kv[1])
    print(f"pixel overlap with the evaluation volumes: at most {worst[1]:.2%} ({worst[0][0]}, {worst[0][1]})")
    return {s.name: np.asarray(s.load(), np.float32) for s in sources("tuning")}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", default="magnitude", choices=sorted(STUDY_MODELS), help="the data to tune for")
    ap.add_argument("--checkpoint", default=None, help="shipped name or path (default: the study's model)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--grid", default="default", choices=sorted(GRIDS), help="the settings to try")
    args = ap.parse_args(argv)
    ckpt = args.checkpoint or STUDY_MODELS[args.study]

    def load(**kw) -> Reconstructor:
        return Reconstructor.from_checkpoint(ckpt, device="cpu", **kw)

    vols = tuning_volumes()
    runs = {k: study_runner(args.study, v, k) for k, v in vols.items()}
    base = load()
    ref = {k: run(base) for k, run in runs.items()}
    weights = " ".join(f"{k} {p:.2f}" for k, p in ref.items())
    print(f"{args.study}, {ckpt}; trained weights: {weights}", flush=True)
    rows = []
    for shift, steps, lr, val, batch in GRIDS[args.grid]:
        rec = load(adapt=steps)
        rec.adapt_max_shift, rec.adapt_lr, rec.adapt_validation = shift, lr, val
        rec.adapt_check_every, rec.adapt_batch_size = max(1, steps // 8), batch
        t0 = time.perf_counter()
        ps, adapt_s = [], []
        for run in runs.values():
            ps.append(run(rec))
            adapt_s.append(rec.last_adaptation.seconds)
        gain = float(np.mean(ps) - np.mean(list(ref.values())))
        secs = time.perf_counter() - t0
        rows.append({"shift": shift, "steps": steps, "lr": lr, "validation": val, "batch": batch, "psnr": ps,
                     "gain": gain, "seconds": secs, "adapt_seconds": adapt_s})  # fmt: skip
        print(
            f"shift={'quarter' if shift is None else shift} steps={steps} lr={lr:g} validation={val:g} "
            f"batch={batch}: "
            + " ".join(f"{p:.2f}" for p in ps)
            + f" mean {np.mean(ps):.2f} gain {gain:+.2f} ({secs:.0f} s; adaptation "
            + " ".join(f"{t:.1f}" for t in adapt_s)
            + " s)",
            flush=True,
        )
    best = max(rows, key=lambda r: r["gain"])
    print(f"best: {best}")
    if args.json:
        with open(args.json, "w") as f:
            out = {"study": args.study, "checkpoint": ckpt, "volumes": list(vols), "trained": ref}
            json.dump({**out, "rows": rows, "best": best}, f, indent=1)


if __name__ == "__main__":
    main()
