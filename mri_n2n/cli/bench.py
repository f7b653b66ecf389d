"""``mri-n2n bench`` (and ``python -m mri_n2n.bench``): ``{speed,quality,reconstruct,scale,...}
[--quick] [--results DIR]`` (``scale``: also ``--out DIR``), writing ``<results>/<name>.json`` and
``.md``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..bench import machine_info, markdown_table, write_results
from ..bench.cartesian import bench_cartesian, cartesian_markdown
from ..bench.generalization import bench_generalization, generalization_markdown
from ..bench.gpu import NoCudaError, bench_gpu, gpu_markdown
from ..bench.images import bench_image_quality, image_quality_markdown
from ..bench.multicoil import bench_multicoil, multicoil_markdown
from ..bench.quality import bench_mri_quality, mri_quality_markdown
from ..bench.reconstruct import bench_reconstruct
from ..bench.scale import bench_scale, scale_markdown
from ..bench.speed import bench_speed
from ..bench.trajectories import QUICK, TV_GRID, bench_trajectories, trajectories_markdown
from .common import add_adapt_argument, fail, parse_and_run, register

__all__ = ["build_parser", "run", "main"]


def _speed(args) -> int:
    res = bench_speed(quick=args.quick, device=args.device, out=f"{args.results}/speed_run")
    res["machine"] = machine_info(res["device"])
    row = {
        "model": (
            f"{res['model']} ({res['cascades']} cascades, width {res['cascade_width']})"
            if res["model"] == "unrolled"
            else f"{res['model']} (base {res['base']}, depth {res['depth']})"
        ),
        "size": res["size"],
        "batch": res["batch_size"],
        "N2N step (slices/s)": res["pipeline_slices_per_s"],
        "bare network step (slices/s)": res["bare_slices_per_s"],
        "plain cascade, contiguous / channels-last (slices/s)": (
            f"{res['reference_slices_per_s']:.2f} / {res['reference_channels_last_slices_per_s']:.2f}"
        ),
        "bare / plain (median of blocks)": f"{res['bare_over_reference']:.2f}",
        "overhead": f"{res['overhead'] * 100:.1f} %",
        "inference 256² (slices/s)": res["inference_slices_per_s"],
        "plain cascade inference (slices/s)": res["reference_inference_slices_per_s"],
        "inference / plain (median of blocks)": f"{res['inference_over_reference']:.2f}",
    }
    md = markdown_table([row], list(row))
    spread = "; ".join(f"{k} {lo:.2f}-{hi:.2f}" for k, (lo, hi) in res["spread"].items())
    md += (
        "\n\nOverhead = bare / pipeline - 1: the cost of data, masks, FFTs, zero-filling and data "
        "consistency over the bare network step (target: at most 10 %). Plain cascade: the same-size "
        "DnCNN-style cascade with ReLUs and uncentred-FFT data consistency written in the benchmark "
        f"(the reference). {len(res['bare_block_rates'])} interleaved blocks; spread of the block "
        f"rates (slices/s): {spread}. Inference: the one reconstruction engine (zero-filling, the "
        f"network {'channels-last' if res['inference_channels_last'] else 'contiguous'} as training "
        "runs it, data consistency, output image) against the plain cascade (contiguous) on the same "
        f"slices, {len(res['inference_block_rates'])} interleaved blocks; block rates (slices/s): ours "
        f"{min(res['inference_block_rates']):.2f}-{max(res['inference_block_rates']):.2f}, plain "
        f"{min(res['reference_inference_block_rates']):.2f}-{max(res['reference_inference_block_rates']):.2f}."
    )
    name = "speed_quick" if args.quick else "speed"
    write_results(args.results, name, res, md)
    print(md)
    return 0


def _quality(args) -> int:
    if args.noise and args.only != "images":
        raise ValueError("--noise selects photographic noises: use it with --only images")
    name = (
        "quality"
        + (f"_{args.only}" if args.only else "")
        + "".join(f"_{n}" for n in args.noise or ())
        + (f"_seed{args.seed}" if args.seed else "")
        + ("_quick" if args.quick else "")
    )
    res: dict = {"machine": machine_info(args.device if args.device != "auto" else "cpu")}
    parts = []
    if args.only in (None, "mri"):
        res["mri"] = bench_mri_quality(
            quick=args.quick, out_dir=args.results, device=args.device, steps=args.steps, seed=args.seed
        )
        parts.append("## MRI\n\n" + mri_quality_markdown(res["mri"]))
    if args.only == "cartesian":
        res["cartesian"] = bench_cartesian(
            quick=args.quick, out_dir=args.results, device=args.device, steps=args.steps, seed=args.seed
        )
        parts.append("## Single-coil Cartesian study\n\n" + cartesian_markdown(res["cartesian"]))
    if args.only == "multicoil":
        res["multicoil"] = bench_multicoil(
            quick=args.quick, out_dir=args.results, device=args.device, steps=args.steps, seed=args.seed
        )
        parts.append("## Multi-coil study\n\n" + multicoil_markdown(res["multicoil"]))
    if args.only == "multicoil8x":
        from ..bench.multicoil_8x import bench_multicoil_8x, multicoil_8x_markdown

        if args.quick or args.steps:
            raise ValueError("--only multicoil8x has one budget per row: run it without --quick and --steps")
        device = "cpu" if args.device == "auto" else args.device
        res["multicoil8x"] = bench_multicoil_8x(out_dir=args.results, device=device, seed=args.seed)
        parts.append("## Multi-coil 8x: the gap to TV-SENSE\n\n" + multicoil_8x_markdown(res["multicoil8x"]))
    if args.only in (None, "images"):
        res["images"] = bench_image_quality(
            quick=args.quick,
            out_dir=args.results,
            device=args.device,
            steps=args.steps,
            noises=args.noise,
            seed=args.seed,
        )
        parts.append("## Photographs\n\n" + image_quality_markdown(res["images"]))
    md = "\n\n".join(parts)
    write_results(args.results, name, res, md)
    print(md)
    return 0


def _reconstruct(args) -> int:
    if args.multicoil:
        return _reconstruct_multicoil(args)
    slices = 16 if args.quick else 64
    res = bench_reconstruct(args.checkpoint, size=256, slices=slices, device=args.device)
    res["machine"] = machine_info(res["device"])
    row = {
        "volume": "x".join(str(v) for v in res["shape"]),
        "batch": res["batch_size"],
        "device": res["device"],
        "threads": res["threads"],
        "slices/s": res["slices_per_s"],
        "checkpoint": res["checkpoint"],
    }
    md = markdown_table([row], list(row))
    md += (
        "\n\nOne k-space volume through `Reconstructor.kspace`: zero-filling, normalisation, the "
        "network, data consistency and the magnitude, after one warm-up batch."
    )
    write_results(args.results, "reconstruct_quick" if args.quick else "reconstruct", res, md)
    print(md)
    return 0


def _reconstruct_multicoil(args) -> int:
    from ..bench.reconstruct_multicoil import bench_reconstruct_multicoil, reconstruct_multicoil_markdown

    size, slices, coils = (64, 4, 8) if args.quick else (320, 30, 16)
    device = "cpu" if args.device == "auto" else args.device
    res = bench_reconstruct_multicoil(
        args.checkpoint, results=args.results, slices=slices, coils=coils, size=size, device=device,
        repeats=1 if args.quick else 3,
    )
    res["machine"] = machine_info(res["device"])
    md = reconstruct_multicoil_markdown(res)
    name = "reconstruct_multicoil_quick" if args.quick else "reconstruct_multicoil"
    write_results(args.results, name, res, md)
    print(md)
    return 0


def _generalization(args) -> int:
    named = {}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        named[name if sep else f"model {len(named) + 1}"] = path if sep else item
    res = bench_generalization(
        named,
        fraction=args.fraction,
        study=args.study,
        seed=args.seed,
        device=args.device,
        tv_iters=20 if args.quick else 100,
        ensemble=args.ensemble,
        adapt=args.adapt,
    )
    res["machine"] = machine_info(args.device if args.device != "auto" else "cpu")
    md = generalization_markdown(res)
    name = "generalization" + ("" if args.study == "magnitude" else f"_{args.study.replace('-', '_')}")
    write_results(args.results, name + ("_quick" if args.quick else ""), res, md)
    print(md)
    return 0


def _measured(args) -> int:
    from ..bench.cartesian import bench_fastmri_style, fastmri_style_markdown, write_fastmri_style

    files = write_fastmri_style(Path(args.results) / "measured_files")
    res = bench_fastmri_style(
        args.checkpoint, files, device=args.device, tv_iters=20 if args.quick else 100,
        ensemble=args.ensemble, adapt=args.adapt,
    )
    res["machine"] = machine_info(args.device if args.device != "auto" else "cpu")
    md = fastmri_style_markdown(res)
    write_results(args.results, "measured_quick" if args.quick else "measured", res, md)
    print(md)
    return 0


def _nufft(args) -> int:
    from ..bench.nufft import bench_nufft, bench_step_rates, nufft_markdown

    threads = tuple(args.threads) if args.threads else (1, 2)
    if any(t < 1 for t in threads):
        raise ValueError(f"--threads must be >= 1, got {list(threads)}")
    res = bench_nufft(size=128 if args.quick else 256, repeats=3 if args.quick else 15, threads=threads)
    res["steps"] = bench_step_rates(blocks=3 if args.quick else 7, out=args.results)
    res["machine"] = machine_info("cpu")
    md = nufft_markdown(res)
    write_results(args.results, "nufft_quick" if args.quick else "nufft", res, md)
    print(md)
    return 0


def _trajectories(args) -> int:
    named = []
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        named.append((name if sep else f"model {len(named) + 1}", path if sep else item))
    opts: dict = dict(QUICK) if args.quick else {"lams": tuple(args.tv_lams or TV_GRID), "limit": args.limit}
    res = bench_trajectories(named, device="cpu" if args.device == "auto" else args.device, **opts)
    res["machine"] = machine_info("cpu")
    md = trajectories_markdown(res)
    write_results(args.results, "trajectories_quick" if args.quick else "trajectories", res, md)
    print(md)
    return 0


def _scale(args) -> int:
    res = bench_scale(quick=args.quick, out_dir=args.results, device=args.device, seed=args.seed)
    res["machine"] = machine_info(args.device if args.device != "auto" else "cpu")
    md = scale_markdown(res)
    write_results(args.results, "scale_quick" if args.quick else "scale", res, md)
    print(md)
    return 0


def _gpu(args) -> int:
    try:
        res = bench_gpu(device=args.device, quick=args.quick)
    except NoCudaError as e:  # the check needs a GPU: one line, exit 1
        return fail(e, 1)
    res["machine"] = machine_info(args.device if args.device != "auto" else "cuda")
    md = gpu_markdown(res)
    write_results(args.results, "gpu_quick" if args.quick else "gpu", res, md)
    print(md)
    return 0


def build_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``bench`` parser: standalone, or registered as ``mri-n2n bench``."""
    p = register(subparsers, "bench", "speed and quality benchmarks", "Speed and quality benchmarks.")
    sub = p.add_subparsers(
        dest="which", required=True,
        metavar="{speed,quality,reconstruct,generalization,measured,scale,nufft,trajectories,gpu}",
    )
    for name, help_ in (
        ("speed", "training-step and inference throughput"),
        ("quality", "the paper's tables"),
        ("reconstruct", "volume reconstruction throughput (slices/s, 256x256 k-space)"),
        ("generalization", "checkpoints vs zero-filling and CS-TV on real scans never seen in training"),
        ("measured", "reconstruct on prospectively undersampled fastMRI-style files made from real scans"),
        ("scale", "multi-coil input pipeline vs training step at fastMRI scale (16 coils, 640x320)"),
        ("nufft", "the non-Cartesian operator against finufft, and a 256x256 8-coil radial slice's "
         "reconstruction time"),
        ("trajectories", "non-Cartesian networks vs the compensated adjoint, CG-SENSE and TV at an "
         "oracle weight, radial and spiral at 4x and 8x, one and 8 coils"),
        ("gpu", "the prepared CUDA check: CUDA tests, step rates with AMP on and off, time to quality, "
         "fp32 vs AMP PSNR (under 8 min on one GPU; exits 1 without CUDA)"),
    ):
        s = sub.add_parser(name, help=help_)
        s.add_argument(
            "--quick", action="store_true", help="small budget (quality: within 10 min on 2 cores)"
        )
        s.add_argument("--device", default="auto", help="auto, cpu or cuda")
        outs = ("--results", "--out") if name == "scale" else ("--results",)
        s.add_argument(*outs, dest="results", default="results", help="folder for JSON and Markdown results")
        if name == "quality":
            s.add_argument(
                "--only",
                choices=("mri", "images", "cartesian", "multicoil", "multicoil8x"),
                help="run one part only; cartesian, multicoil and multicoil8x (not in the default "
                "run): the single-coil 1-D line-mask study on complex MNI152 slices, the 8-coil "
                "study, and what closes its 8x gap to TV-SENSE (budget, cascades, CG, width)",
            )
            s.add_argument(
                "--steps",
                type=int,
                help="training steps of every run (default: the mode's budget), e.g. more on a GPU",
            )
            s.add_argument("--seed", type=int, default=0, help="seed of every run (default 0)")
            s.add_argument(
                "--noise",
                nargs="+",
                metavar="NAME",
                help="with --only images: run these noises only (gaussian poisson bernoulli text impulse)",
            )
        if name == "nufft":
            s.add_argument("--threads", type=int, nargs="+", help="thread counts to time (default 1 2)")
        if name == "trajectories":
            s.add_argument("--checkpoint", nargs="+", required=True, metavar="[NAME=]CKPT",
                           help="non-Cartesian checkpoints (the first one's held-out data are evaluated), "
                           "e.g. N2N=synth-noncartesian-n2n N2C=runs/n2c/checkpoints/best.pt")
            s.add_argument("--limit", type=int, default=12, help="validation slices per study (default 12)")
            s.add_argument("--tv-lams", type=float, nargs="+", help=f"TV weights (default {list(TV_GRID)})")
        if name == "scale":
            s.add_argument("--seed", type=int, default=0, help="seed of the data set (default 0)")
        if name == "reconstruct":
            s.add_argument(
                "--checkpoint",
                help="MRI checkpoint (default: runs/mni152 or runs/latest best.pt, else an untrained "
                "CPU-preset model, which has the same speed; --multicoil: a two-channel --dc prox "
                "checkpoint, default the multi-coil study's 4x run under --results when present)",
            )
            s.add_argument(
                "--multicoil",
                action="store_true",
                help="time reconstruct of a 16-coil 320x320x30 fastMRI-style volume (equispaced 4x) "
                "with each speed option (CG iterations, virtual coils) and state each option's quality cost",
            )
        if name == "generalization":
            s.add_argument(
                "--checkpoint",
                nargs="+",
                required=True,
                metavar="[NAME=]CKPT",
                help="MRI checkpoints to evaluate, optionally named (e.g. N2N=runs/n2n/checkpoints/best.pt)",
            )
            s.add_argument("--fraction", type=float, default=0.1, help="mean sampling density (default 0.1)")
            s.add_argument(
                "--study",
                choices=("magnitude", "complex-lines", "multicoil-lines", "multicoil-radial"),
                default="magnitude",
                help="magnitude (real images, each checkpoint's mask law), complex-lines (each slice "
                "given a phase by the phase model, fastMRI equispaced lines at acceleration 1/fraction, "
                "8 %% centre, reconstructed from k-space; CS-TV complex) or multicoil-lines (those "
                "slices seen by a random 8-coil loop array with correlated noise; TV-SENSE, RSS reference) "
                "or multicoil-radial (those coil data of the central 4 slices along golden-angle spokes at "
                "1/fraction, read as a trajectory file; CG-SENSE and TV-SENSE with the estimated maps)",
            )
            s.add_argument("--seed", type=int, default=0, help="mask seed (default 0)")
            s.add_argument(
                "--ensemble",
                action="store_true",
                help="also score each checkpoint's geometric self-ensemble (a column 'NAME ens')",
            )
            add_adapt_argument(s, "scores each checkpoint also adapted to each volume ('NAME adapted')")
        if name == "measured":
            s.add_argument("--checkpoint", required=True, help="a --complex MRI checkpoint (line masks)")
            s.add_argument("--ensemble", action="store_true", help="also score the self-ensemble ('N2N ens')")
            add_adapt_argument(s, "scores the checkpoint also adapted to each file ('N2N adapted')")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the benchmark ``args.which``; 0 on success, 2 on a bad option or input."""
    bench = {
        "speed": _speed,
        "quality": _quality,
        "reconstruct": _reconstruct,
        "generalization": _generalization,
        "measured": _measured,
        "scale": _scale,
        "nufft": _nufft,
        "trajectories": _trajectories,
        "gpu": _gpu,
    }[args.which]
    try:
        return bench(args)
    except (ValueError, OSError, ImportError) as e:  # bad --device, --checkpoint, data, a missing
        # optional library (nufft): one line, no traceback
        return fail(e, 2)


def main(argv: list[str] | None = None) -> int:
    """``python -m mri_n2n.bench``: run a benchmark and write ``<results>/<name>.json`` and ``.md``."""
    return parse_and_run(build_parser(), argv)
