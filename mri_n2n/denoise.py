"""Denoise images with a trained image checkpoint.

Usage::

    python -m mri_n2n.denoise --checkpoint runs/text/best.pt photos/ extra.jpg --out denoised/

- Inputs are image files (PNG, JPEG, TIFF, anything Pillow reads) and folders, which are
  walked recursively for PNG / JPEG / TIFF files (plus ``.npy`` / ``.exr`` renderings for a
  Monte Carlo checkpoint). A file found in folder ``D`` is written to the same relative path
  under ``--out``; a file named directly to ``--out/<stem>.png``.
- Each output is an 8-bit PNG of the model's output clipped to [0, 1], written atomically.
  Grey models write grey PNGs; a colour image given to a grey model is converted to its
  luminance, a grey image given to a colour model is replicated.
- Monte Carlo checkpoints (``noise: montecarlo``) read linear HDR renderings, feed the network
  their tone-mapped version (:meth:`~mri_n2n.images.ImageCorruption.inference_input`), and write
  the linear prediction as ``<stem>.npy`` (float32 ``(H, W, 3)``) next to a tone-mapped
  ``<stem>.png`` preview.
- Inputs are never overwritten: ``--out`` may not be the folder of an input (unless
  ``--force``), and an output path that is one of the inputs is always refused.
- A file that cannot be read or denoised gets one error line on stderr; the others carry on.

Exit status: 0 when every input was denoised, 1 when some failed, 2 for bad arguments
(including a missing or non-image checkpoint, e.g. an MRI one).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from .devices import resolve_device
from .io import atomic_path

__all__ = ["main", "denoise_tensor"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mri_n2n.denoise",
        description="Denoise images with a trained mri_n2n image checkpoint; writes PNGs to --out.",
    )
    p.add_argument("--checkpoint", required=True, help="an image checkpoint (.pt) written by the trainer")
    p.add_argument("images", nargs="+", help="image files and/or folders (walked recursively)")
    p.add_argument("--out", required=True, help="output folder (created if needed)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--force", action="store_true", help="allow --out to be the folder of an input")
    return p


def _in_channels(ckpt: dict) -> int:
    kwargs = ckpt.get("model_spec", {}).get("kwargs", {})
    if "in_channels" in kwargs:
        return int(kwargs["in_channels"])
    for value in ckpt["model"].values():  # the first convolution's weight: (out, in, kh, kw)
        if isinstance(value, torch.Tensor) and value.ndim == 4:
            return int(value.shape[1])
    raise CheckpointError("cannot tell the model's input channels from the checkpoint")


def _collect(
    args: Sequence[str], suffixes: tuple[str, ...], out: Path
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """``[(input file, its path relative to the folder argument, or its name)]`` and error lines."""
    from .images.datasets import list_images

    jobs: list[tuple[Path, Path]] = []
    errors: list[str] = []
    out_resolved = out.resolve()
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            files = [p for p in list_images(path, suffixes) if out_resolved not in p.resolve().parents]
            if not files:
                errors.append(f"{path}: no images found in this folder")
            jobs.extend((p, p.relative_to(path)) for p in files)
        elif path.is_file():
            jobs.append((path, Path(path.name)))
        else:
            errors.append(f"{path}: no such file or folder")
    return jobs, errors


def denoise_tensor(model: torch.nn.Module, corruption, observed: torch.Tensor) -> torch.Tensor:
    """Run the model on one observed image ``(1, C, H, W)``; returns the raw output (not clipped).

    ``corruption`` (an :class:`~mri_n2n.images.ImageCorruption` or ``None``) maps the observation
    to the network input. The model pads to its own multiple and crops back.
    """
    with torch.inference_mode():
        x = corruption.inference_input(observed) if corruption is not None else observed
        return model(x).float()


def _read(path: Path, channels: int, hdr: bool) -> torch.Tensor:
    from .images.datasets import load_image
    from .images.hdr import HDR_SUFFIXES, read_hdr

    if hdr and path.suffix.lower() in HDR_SUFFIXES:
        arr = read_hdr(path)
        if arr.shape[2] != channels:
            if arr.shape[2] == 1:
                arr = np.repeat(arr, channels, axis=2)
            else:
                raise ValueError(f"{path}: {arr.shape[2]} channels, the model takes {channels}")
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]
    img = load_image(path, channels)
    return (img.float() / 255.0 if img.dtype == torch.uint8 else img.float())[None]


def _write_png(dest: Path, image: torch.Tensor) -> None:
    """Write a ``(C, H, W)`` image in [0, 1] as an 8-bit PNG, atomically."""
    arr = (image.clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()
    pil = (
        Image.fromarray(arr[0])
        if arr.shape[0] == 1
        else Image.fromarray(np.ascontiguousarray(arr[:3].transpose(1, 2, 0)))
    )
    with atomic_path(dest, suffix=".png") as tmp:
        pil.save(tmp, format="PNG")
        _user_permissions(tmp)


def _write_npy(dest: Path, image: torch.Tensor) -> None:
    with atomic_path(dest, suffix=".npy") as tmp:
        np.save(tmp, image.cpu().numpy().transpose(1, 2, 0).astype(np.float32))
        _user_permissions(tmp)


def _user_permissions(path: Path) -> None:
    """Give a finished temporary file the usual ``0666 & ~umask`` mode (``mkstemp`` makes it 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _error_line(path: Path, e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg if msg.startswith(str(path)) else f"{path}: {msg}"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 1 some files failed, 2 bad arguments)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)

    def fail(msg: str) -> int:
        print(f"error: {msg}", file=sys.stderr)
        return 2

    try:
        device = resolve_device(args.device)
    except ValueError as e:
        return fail(str(e))
    try:
        ckpt = load_checkpoint(args.checkpoint, map_location="cpu", task="image")
        channels = _in_channels(ckpt)
        model = model_from_checkpoint(ckpt, device=device)
    except CheckpointError as e:
        hint = (
            " (denoise takes image checkpoints; use mri_n2n.reconstruct for MRI)" if "'mri'" in str(e) else ""
        )
        return fail(f"{e}{hint}")
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        return fail(f"{args.checkpoint}: cannot build the model ({_error_line(Path(args.checkpoint), e)})")

    from .images import NOISES, make_corruption
    from .images.datasets import IMAGE_SUFFIXES
    from .images.hdr import HDR_SUFFIXES

    config = ckpt.get("config") or {}
    noise = config.get("noise")
    corruption = make_corruption(noise) if noise in NOISES else None
    hdr = noise == "montecarlo"

    out = Path(args.out)
    suffixes = IMAGE_SUFFIXES + HDR_SUFFIXES if hdr else IMAGE_SUFFIXES
    jobs, errors = _collect(args.images, suffixes, out)
    out_resolved = out.resolve()
    if not args.force:
        folders = {p.resolve().parent for p, _ in jobs} | {
            Path(a).resolve() for a in args.images if Path(a).is_dir()
        }
        if out_resolved in folders:
            return fail(f"--out {out} is the folder of an input; choose another folder (or --force)")
    if out.exists() and not out.is_dir():
        return fail(f"--out {out} exists and is not a folder")
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    failures = len(errors)
    inputs = {p.resolve() for p, _ in jobs}
    written: dict[Path, Path] = {}

    from tqdm import tqdm

    for path, rel in tqdm(jobs, desc="denoise", unit="img", disable=None, file=sys.stderr):
        dests = [out / rel.parent / f"{rel.stem}{ext}" for ext in ((".png", ".npy") if hdr else (".png",))]
        try:
            for dest in dests:
                if dest.resolve() in inputs:
                    raise ValueError(f"output {dest} is an input file; refusing to overwrite it")
                if dest.resolve() in written:
                    raise ValueError(f"output {dest} would overwrite the output of {written[dest.resolve()]}")
            observed = _read(path, channels, hdr).to(device)
            output = denoise_tensor(model, corruption, observed)[0]
            if hdr:
                from .images.hdr import tonemap

                _write_npy(dests[1], output)
                _write_png(dests[0], tonemap(output))
            else:
                _write_png(dests[0], output)
            for dest in dests:
                written[dest.resolve()] = path
        except (ValueError, OSError, RuntimeError) as e:
            tqdm.write(f"error: {_error_line(path, e)}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
