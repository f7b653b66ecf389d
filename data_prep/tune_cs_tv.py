#!/usr/bin/env python
"""Tune the CS-TV weight on MNI152 training slices and compare with zero-filling on validation.

Runs :func:`mri_n2n.baselines.tune_tv_lambda` on the embedded MNI152 template's *training*
slices with the paper's 10 % exp-decay density (Hermitian Bernoulli masks seeded by each
slice's identity, as the trainer's validation does), then reports, on the validation slices,
the PSNR (peak 1.0, output clipped to [0, 1]) of the zero-filled input (with and without the
1/p density compensation) and of CS-TV at the best weight. The result backs
:data:`mri_n2n.baselines.DEFAULT_TV_LAM` and the tables of ``docs/results.md`` ("The CS-TV weight").

    python data_prep/tune_cs_tv.py --size 128 [--iters 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

try:
    import mri_n2n  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _stack(ds: torch.utils.data.Dataset, step: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    items = [ds[i] for i in range(0, len(ds), step)]
    return torch.stack([im for im, _ in items]), torch.tensor([int(k) for _, k in items])


def _default_grid() -> list[float]:
    from mri_n2n.baselines import DEFAULT_LAM_GRID

    return list(DEFAULT_LAM_GRID)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--fraction", type=float, default=0.1, help="mean sampling density")
    ap.add_argument(
        "--lams", type=float, nargs="+", default=None, help="candidate weights (default: the library grid)"
    )
    ap.add_argument("--train-step", type=int, default=1, help="use every n-th training slice")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    from mri_n2n.baselines import tune_tv_lambda, tv_reconstruct
    from mri_n2n.corruptions import MRIUndersampling
    from mri_n2n.data import build_mri_datasets
    from mri_n2n.metrics import psnr
    from mri_n2n.physics import SpectralSampling
    from mri_n2n.sampling import exp_decay_density

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    train, valid = build_mri_datasets("mni152", size=args.size)
    corruption = MRIUndersampling(exp_decay_density((args.size, args.size), fraction=args.fraction))
    clean, seeds = _stack(train, args.train_step)
    clean = clean.to(args.device)
    lams = args.lams or _default_grid()
    best, table = tune_tv_lambda(clean, corruption, lams, seeds=seeds, iters=args.iters)
    print(
        f"# CS-TV weight on {len(seeds)} MNI152 training slices, {args.size}x{args.size}, "
        f"{args.fraction:.0%} exp-decay, {args.iters} iterations\n"
    )
    print("| lam | mean PSNR (dB) | std | median | s/slice |\n|---|---|---|---|---|")
    for row in table:
        mark = " **best**" if row["lam"] == best else ""
        print(
            f"| {row['lam']:g}{mark} | {row['psnr']:.2f} | {row['psnr_std']:.2f} | "
            f"{row['psnr_median']:.2f} | {row['seconds_per_slice']:.4f} |"
        )

    vclean, vseeds = _stack(valid)
    vclean = vclean.to(args.device)
    pair = corruption.validation_pair(vclean, vseeds)
    y, mask = pair.acq.y, pair.acq.mask
    zf_plain = SpectralSampling(mask).adjoint(y).real
    start = time.perf_counter()
    rec = tv_reconstruct(y, mask, lam=best, iters=args.iters)
    if vclean.device.type == "cuda":
        torch.cuda.synchronize(vclean.device)
    seconds = (time.perf_counter() - start) / len(vseeds)

    def score(x: torch.Tensor) -> tuple[float, float]:
        v = psnr(x.clamp(0, 1), vclean, data_range=1.0, reduction="none").double()
        return v.mean().item(), v.std().item()

    results = {
        "zero_filled_1/p": score(pair.input),
        "zero_filled": score(zf_plain),
        f"cs_tv(lam={best:g})": score(rec),
    }
    print(f"\n# {len(vseeds)} MNI152 validation slices (PSNR dB, peak 1.0, mean +- std)\n")
    print("| method | PSNR | std |\n|---|---|---|")
    for name, (m, s) in results.items():
        print(f"| {name} | {m:.2f} | {s:.2f} |")
    print(
        f"\nCS-TV: {seconds:.4f} s per slice ({args.iters} iterations, batch of {len(vseeds)}, "
        f"{args.device}, {torch.get_num_threads()} threads)"
    )
    out = {
        "size": args.size,
        "iters": args.iters,
        "fraction": args.fraction,
        "best_lam": best,
        "train_table": table,
        "valid": {k: {"psnr": m, "std": s} for k, (m, s) in results.items()},
        "valid_seconds_per_slice": seconds,
        "n_train": len(seeds),
        "n_valid": len(vseeds),
    }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return out


if __name__ == "__main__":
    main()
