"""``mri-n2n evaluate`` (and ``python -m mri_n2n.evaluate``): zero-filling, CS-TV and checkpoints
on the same validation slices and masks (see :mod:`mri_n2n.evaluation`)."""

from __future__ import annotations

import argparse
import sys

from ..checkpoint import CheckpointError
from ..evaluation import evaluate_mri, evaluation_markdown, write_evaluation
from ..noncartesian import FAMILIES
from .common import add_adapt_argument, fail, parse_and_run, register

__all__ = ["build_parser", "run", "main"]


def build_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``evaluate`` parser: standalone, or registered as ``mri-n2n evaluate``."""
    p = register(
        subparsers,
        "evaluate",
        "compare checkpoints, zero-filling and CS-TV on the validation slices",
        "Compare MRI reconstructions (zero-filled, CS-TV, checkpoints) on the same validation "
        "slices and masks, in the paper's and fastMRI's metric conventions.",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="MRI checkpoint (e.g. runs/n2n/checkpoints/best.pt), a shipped model's name, or `default`: the "
        "shipped model made for the data (multi-coil or single-coil k-space files with --dataset kspace, "
        "else the magnitude model)",
    )
    p.add_argument("--compare", nargs="*", default=[], help="more checkpoints to compare (e.g. an N2C run)")
    p.add_argument("--dataset", help="override the checkpoint's dataset")
    p.add_argument("--data-dir", help="override the checkpoint's data folder")
    p.add_argument("--size", type=int, help="override the slice size")
    p.add_argument("--limit", type=int, help="evaluate at most this many validation slices")
    p.add_argument(
        "--trajectory", choices=FAMILIES,
        help="a non-Cartesian checkpoint: acquire along this trajectory instead of the checkpoint's "
        "(e.g. one protocol of a --trajectory mixed model)",
    )
    p.add_argument("--acceleration", type=float, help="override the checkpoint's acceleration (line masks, "
                   "trajectories)")
    p.add_argument("--synth-coils", help="--dataset synth: override the synthetic coil count (e.g. 8:8)")
    p.add_argument("--density", help="override the checkpoint's sampling law "
                   "(e.g. mixed: a law per slice, for a model whose last steps trained on mixed-equispaced)")
    p.add_argument("--no-cs", action="store_true", help="skip CS-TV (multi-coil: CG-, TV-SENSE)")
    p.add_argument("--tv-lam", type=float, help="CS-TV / TV-SENSE weight (default: the tuned value)")
    p.add_argument("--sense-lam", type=float, help="multi-coil: CG-SENSE's Tikhonov weight (default 1e-3)")
    p.add_argument("--tv-iters", type=int, default=100, help="CS-TV iterations (default 100)")
    p.add_argument(
        "--multicoil-output",
        choices=("rss", "sense"),
        default="rss",
        help="multi-coil: score images as `reconstruct --multicoil-output` writes them (default rss)",
    )
    p.add_argument(
        "--ensemble",
        action="store_true",
        help="also score each checkpoint's geometric self-ensemble (mean over flips and transposes)",
    )
    add_adapt_argument(p, "scores each checkpoint also adapted to the evaluated slices")
    p.add_argument("--batch-size", type=int, default=8, help="slices per batch (default 8)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--no-figures", action="store_true", help="skip figures/comparison.png and psnr_hist.png")
    p.add_argument("--quiet", action="store_true", help="no progress bar or table")
    p.add_argument("--out", required=True, help="output folder (metrics.md, metrics.csv, summary.json)")
    p.set_defaults(func=run)
    return p


def run(a: argparse.Namespace) -> int:
    """Evaluate as ``a`` says: 0 on success, 1 on an error."""
    try:
        res = evaluate_mri(
            [a.checkpoint, *a.compare],
            dataset=a.dataset,
            data_dir=a.data_dir,
            size=a.size,
            cs_tv=not a.no_cs,
            tv_lam=a.tv_lam,
            tv_iters=a.tv_iters,
            sense_lam=a.sense_lam,
            output=a.multicoil_output,
            ensemble=a.ensemble,
            adapt=a.adapt,
            limit=a.limit,
            batch_size=a.batch_size,
            device=a.device,
            progress=not a.quiet,
            acquisition={k: v for k, v in (("trajectory", a.trajectory), ("acceleration", a.acceleration),
                                           ("synth_coils", a.synth_coils), ("density", a.density))
                         if v is not None},
        )
        if (d := res["settings"].get("default_checkpoint")) and not a.quiet:
            print(f"--checkpoint default: {d['name']} ({d['why']})", file=sys.stderr)
        write_evaluation(res, a.out, figures=not a.no_figures)
    except (CheckpointError, ValueError, OSError, ImportError) as e:
        return fail(e, 1)
    if not a.quiet:
        print(evaluation_markdown(res))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m mri_n2n.evaluate --checkpoint CKPT [--compare CKPT2 ...] --out DIR``."""
    return parse_and_run(build_parser(), argv)
