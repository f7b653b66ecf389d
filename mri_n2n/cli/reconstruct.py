"""``mri-n2n reconstruct`` (and ``python -m mri_n2n.reconstruct``): batch reconstruction of
k-space files and retrospective studies of image volumes; ``docs/guide/reconstruction.md`` is the
manual."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..checkpoint import CheckpointError
from ..errors import one_line
from ..noncartesian import FAMILIES
from ..reconstruction import Reconstructor
from ..reconstruction.batch import check_out, run_batch
from .common import add_adapt_argument, fail, parse_and_run, register

__all__ = ["build_parser", "run", "main"]


def build_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``reconstruct`` parser: standalone, or registered as ``mri-n2n reconstruct``."""
    p = register(
        subparsers,
        "reconstruct",
        "reconstruct k-space files, or run retrospective studies on NIfTI/DICOM volumes",
        "Reconstruct undersampled k-space (single- and multi-coil fastMRI HDF5, ISMRMRD, Siemens twix, "
        ".npy/.npz) with a trained mri_n2n MRI checkpoint or a shipped model (--checkpoint default: the "
        "one made for each input), or run a retrospective study on image volumes (NIfTI, DICOM) with "
        "--simulate.",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="an MRI checkpoint (.pt) written by the trainer, a shipped model's name (see "
        "mri_n2n/weights/registry.json), or 'default': for each input the shipped model made for its "
        "data (magnitude volumes with --simulate, single-coil complex k-space, multi-coil k-space; "
        "the log line and the report say which and why). What a checkpoint records (acquisition "
        "kind, complex or magnitude, single or multi-coil, law) decides how inputs are reconstructed; "
        "a model given data it was not trained for warns",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        help="files and folders (walked): .nii(.gz), DICOM, single- and multi-coil .h5/.hdf5 "
        "(fastMRI, ISMRMRD), Siemens twix .dat, .mrd, .npy, .npz",
    )
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument(
        "--format",
        choices=("same", "nifti", "dicom"),
        default="same",
        help="output format: same (DICOM for DICOM inputs, NIfTI otherwise), nifti or dicom",
    )
    p.add_argument(
        "--simulate",
        type=float,
        metavar="DENSITY",
        help="retrospective study: undersample each slice at this mean density (e.g. 0.1) and report metrics",
    )
    p.add_argument(
        "--trajectory",
        choices=FAMILIES,
        default=None,
        help="--simulate with a non-Cartesian model: acquire along this trajectory (radial, "
        "golden-radial, spiral) instead of the checkpoint's; DENSITY is the share of the Nyquist "
        "readout count (0.25: 4x)",
    )
    p.add_argument("--seed", type=int, default=None, help="mask seed of --simulate (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=8, help="slices per network call (default 8)")
    p.add_argument(
        "--virtual-coils",
        type=int,
        default=None,
        metavar="N",
        help="multi-coil files: SVD-compress each slice's coils to N virtual coils first (default: all)",
    )
    p.add_argument(
        "--cg-iters",
        type=int,
        default=None,
        metavar="N",
        help="multi-coil files, --dc prox networks: CG iterations of each cascade's data consistency "
        "(default: the trained count; fewer are faster at a quality cost, see the speed results)",
    )
    p.add_argument(
        "--multicoil-output",
        choices=("rss", "sense"),
        default="rss",
        help="multi-coil files: rss (default; fastMRI's: the root-sum-of-squares of the coil images "
        "with the measured k-space kept, exactly the data's RSS when fully sampled) or sense (the "
        "network's coil-combined image where the maps see the object, rss outside); both in the "
        "input's units",
    )
    p.add_argument(
        "--coil-maps",
        choices=("espirit", "walsh"),
        default=None,
        help="multi-coil files: how each slice's coil maps are estimated from its fully sampled "
        "centre: espirit (default; ESPIRiT, 4x4 kernels, no support crop: the best on the tuning "
        "data, about 0.4 s per 16-coil 320x320 slice and thread) or walsh (adaptive combination, "
        "about 6x faster, 1.5 dB lower for the shipped multi-coil model on the tuning data); "
        "trajectory files: from their gridded centre, ESPIRiT with 6x6 kernels by default",
    )
    p.add_argument(
        "--amp", action=argparse.BooleanOptionalAction, default=None,
        help="mixed precision for the network: bf16 on GPUs of compute capability 8.0 or newer and on "
        "CPUs, fp16 on 7.x, none below (default off: float32, the precision evaluate and training's "
        "validation use, so GPU and CPU numbers agree)",
    )
    p.add_argument("--figures", action="store_true", help="write figures/<output>.png per volume")
    p.add_argument(
        "--ensemble",
        action="store_true",
        help="geometric self-ensemble: average the network over flips (and transposes where the "
        "masks allow); 4 to 8 times the network time, measurements still exact",
    )
    add_adapt_argument(p, "before reconstructing; seconds per volume on a CPU; single- and multi-coil")
    p.add_argument(
        "--adapt-whole",
        action="store_true",
        help="with --adapt: learn from whole slices for every step asked, however large the scan (the "
        "default plan bounds each step's pixels: readout windows of large line-sampled slices, fewer "
        "steps for large 2-D-masked ones; whole slices gain more on single large slices and cost more)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace existing outputs; allow --out inside an input folder",
    )
    p.add_argument("--quiet", action="store_true", help="print errors and the summary only")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Reconstruct as ``args`` say: 0 all done, 1 some failed, 2 bad arguments, 130 interrupted."""
    if args.batch_size < 1:
        return fail(f"--batch-size must be at least 1, got {args.batch_size}", 2)
    if args.seed is not None and args.simulate is None:
        return fail("--seed only applies to --simulate", 2)
    if getattr(args, "trajectory", None) is not None and args.simulate is None:
        return fail("--trajectory only applies to --simulate", 2)
    if args.adapt < 0:
        return fail(f"--adapt STEPS must be at least 0, got {args.adapt}", 2)
    if getattr(args, "adapt_whole", False) and not args.adapt:
        return fail("--adapt-whole only applies to --adapt", 2)
    if args.virtual_coils is not None and args.virtual_coils < 1:
        return fail(f"--virtual-coils must be at least 1, got {args.virtual_coils}", 2)
    if args.cg_iters is not None and args.cg_iters < 1:
        return fail(f"--cg-iters must be at least 1, got {args.cg_iters}", 2)
    if args.simulate is not None and not (0.0 < args.simulate <= 1.0):
        return fail(f"--simulate DENSITY must lie in (0, 1], got {args.simulate:g}", 2)
    out = Path(args.out)
    why = check_out(out, args.inputs, args.force)
    if why:
        return fail(why, 2)
    try:
        rec = Reconstructor.from_checkpoint(
            args.checkpoint,
            device=args.device,
            amp=args.amp,
            batch_size=args.batch_size,
            ensemble=args.ensemble,
            adapt=args.adapt,
        )
    except CheckpointError as e:
        hint = (
            " (reconstruct takes MRI checkpoints; use mri-n2n denoise for photos)"
            if "'image'" in str(e)
            else ""
        )
        return fail(f"--checkpoint: {one_line(e)}{hint}", 2)
    except ValueError as e:
        return fail(one_line(e), 2)
    rec.multicoil_output = getattr(args, "multicoil_output", "rss")
    if getattr(args, "coil_maps", None) == "walsh":
        rec.maps = {"method": "walsh"}
    if getattr(args, "adapt_whole", False):  # whole slices for the asked steps, whatever the cost
        rec.adapt_pixels = None
    if getattr(args, "trajectory", None) is not None:
        if not rec.kind.law(rec.config, (32, 32)).describe().get("trajectory"):
            return fail(
                f"--trajectory {args.trajectory}: the checkpoint's model was trained for "
                f"{rec.acquisition['kind']} acquisitions, not trajectories", 2
            )
        rec.config = rec.config.replace(trajectory=args.trajectory, spokes=None)
    if args.simulate is not None:
        try:
            rec.law((256, 256), args.simulate)  # the checkpoint's kind and law at that density
        except ValueError as e:
            return fail(f"--simulate {args.simulate:g}: {one_line(e)}", 2)

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return fail(f"--out {out}: cannot create the folder ({one_line(e)})", 2)
    try:
        res = run_batch(rec, args)
    except OSError as e:
        return fail(e, 1)
    if not args.quiet:
        done = len(res.rows) - res.failures
        print(f"{done} reconstructed, {res.failures} failed; report: {out / 'report.csv'}", flush=True)
    if res.interrupted:
        return 130
    return 1 if res.failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mri_n2n.reconstruct``: 0 all inputs done, 1 some failed, 2 bad arguments."""
    return parse_and_run(build_parser(), argv)
