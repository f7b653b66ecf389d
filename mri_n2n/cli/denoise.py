"""``mri-n2n denoise`` (and ``python -m mri_n2n.denoise``): denoise image files with a trained
image checkpoint; see :mod:`mri_n2n.images.denoise`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from ..checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from ..corruptions import NOISES, make_corruption
from ..devices import resolve_device
from ..errors import one_line
from ..images.datasets import IMAGE_SUFFIXES
from ..images.denoise import (
    checkpoint_channels,
    collect_images,
    denoise_tensor,
    read_observation,
    write_npy,
    write_png,
)
from ..images.hdr import HDR_SUFFIXES, tonemap
from .common import fail, parse_and_run, register

__all__ = ["build_parser", "run", "main"]


def build_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``denoise`` parser: standalone, or registered as ``mri-n2n denoise``."""
    p = register(
        subparsers,
        "denoise",
        "denoise image files with a trained image checkpoint",
        "Denoise images with a trained mri_n2n image checkpoint; writes PNGs to --out.",
    )
    p.add_argument("--checkpoint", required=True, help="an image checkpoint (.pt) written by the trainer")
    p.add_argument("images", nargs="+", help="image files and/or folders (walked recursively)")
    p.add_argument("--out", required=True, help="output folder (created if needed)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--force", action="store_true", help="allow --out to be the folder of an input")
    p.set_defaults(func=run)
    return p


def _error_line(path: Path, e: BaseException) -> str:
    msg = one_line(e)
    return msg if msg.startswith(str(path)) else f"{path}: {msg}"


def run(args: argparse.Namespace) -> int:
    """Denoise as ``args`` say: 0 ok, 1 some files failed, 2 bad arguments."""
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        return fail(e, 2)
    try:
        ckpt = load_checkpoint(args.checkpoint, map_location="cpu", task="image")
        channels = checkpoint_channels(ckpt)
        model = model_from_checkpoint(ckpt, device=device)
    except CheckpointError as e:
        hint = (
            " (denoise takes image checkpoints; use mri-n2n reconstruct for MRI)" if "'mri'" in str(e) else ""
        )
        return fail(f"{e}{hint}", 2)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        return fail(f"{args.checkpoint}: cannot build the model ({_error_line(Path(args.checkpoint), e)})", 2)

    config = ckpt.get("config") or {}
    noise = config.get("noise")
    corruption = make_corruption(noise) if noise in NOISES else None
    hdr = noise == "montecarlo"

    out = Path(args.out)
    suffixes = IMAGE_SUFFIXES + HDR_SUFFIXES if hdr else IMAGE_SUFFIXES
    jobs, errors = collect_images(args.images, suffixes, out)
    out_resolved = out.resolve()
    if not args.force:
        folders = {p.resolve().parent for p, _ in jobs} | {
            Path(a).resolve() for a in args.images if Path(a).is_dir()
        }
        if out_resolved in folders:
            return fail(f"--out {out} is the folder of an input; choose another folder (or --force)", 2)
    if out.exists() and not out.is_dir():
        return fail(f"--out {out} exists and is not a folder", 2)
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    failures = len(errors)
    inputs = {p.resolve() for p, _ in jobs}
    written: dict[Path, Path] = {}

    for path, rel in tqdm(jobs, desc="denoise", unit="img", disable=None, file=sys.stderr):
        dests = [out / rel.parent / f"{rel.stem}{ext}" for ext in ((".png", ".npy") if hdr else (".png",))]
        try:
            for dest in dests:
                if dest.resolve() in inputs:
                    raise ValueError(f"output {dest} is an input file; refusing to overwrite it")
                if dest.resolve() in written:
                    raise ValueError(f"output {dest} would overwrite the output of {written[dest.resolve()]}")
            observed = read_observation(path, channels, hdr).to(device)
            output = denoise_tensor(model, corruption, observed)[0]
            if hdr:
                write_npy(dests[1], output)
                write_png(dests[0], tonemap(output))
            else:
                write_png(dests[0], output)
            for dest in dests:
                written[dest.resolve()] = path
        except (ValueError, OSError, RuntimeError) as e:
            tqdm.write(f"error: {_error_line(path, e)}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mri_n2n.denoise``: 0 ok, 1 some files failed, 2 bad arguments."""
    return parse_and_run(build_parser(), argv)
