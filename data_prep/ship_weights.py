#!/usr/bin/env python
"""Ship a trained MRI checkpoint as package data, loadable by name (``--checkpoint NAME``,
``Reconstructor.from_pretrained(NAME)``).

Keeps what inference needs (task, model spec and weights, config), drops the optimiser and RNG
state, writes ``mri_n2n/weights/NAME.pt`` and records in ``registry.json`` the validation PSNR
that :func:`mri_n2n.evaluation.evaluate_mri` measures for it (paper convention, the trainer's
fixed validation masks; a test reproduces it within 0.05 dB), with the command that trained it.

    python data_prep/ship_weights.py runs/mni152/checkpoints/last.pt mni152-n2n \\
        --command "python -m mri_n2n.train --dataset mni152 --out runs/mni152"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    import mri_n2n  # noqa: F401
except ImportError:  # running from a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mri_n2n.checkpoint import (  # noqa: E402
    DEFAULT_INPUTS,
    PRETRAINED_DIR,
    checkpoint_acquisition,
    load_checkpoint,
    save_checkpoint,
)
from mri_n2n.evaluation import evaluate_mri  # noqa: E402
from mri_n2n.io import atomic_write_text  # noqa: E402

KEEP = (
    "format", "version", "task", "model_spec", "model", "config", "corruption", "acquisition",
    "step", "epoch",
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a trained MRI checkpoint")
    p.add_argument("name", help="the name to ship it under, e.g. mni152-n2n")
    p.add_argument("--command", required=True, help="the command that trained it (recorded)")
    p.add_argument("--machine", default="", help="where it trained (recorded)")
    p.add_argument("--train-seconds", type=float, default=None, help="training wall time (recorded)")
    p.add_argument("--data", default="", help="the training data and its sources (recorded)")
    p.add_argument("--steps", type=int, default=None,
                   help="the optimisation steps in all, when the run continued another's weights "
                   "(--init-from restarts the step count; default: the checkpoint's step)")
    p.add_argument("--default", action="store_true", help="mark it as the default shipped model")
    p.add_argument(
        "--default-for",
        nargs="+",
        default=[],
        choices=DEFAULT_INPUTS,
        help="the data `--checkpoint default` gives it (magnitude, complex, multicoil)",
    )
    p.add_argument("--adapt-lr", type=float, default=None,
                   help="the adaptation learning rate chosen for this model on the tuning sources (recorded; "
                   "Reconstructor and --adapt use it)")  # fmt: skip
    p.add_argument("--adapt-tuned", default="", help="how --adapt-lr was chosen (the tuning command)")
    a = p.parse_args(argv)
    ck = load_checkpoint(a.checkpoint, task="mri")
    slim = {k: ck[k] for k in KEEP if k in ck}
    dest = PRETRAINED_DIR / f"{a.name}.pt"
    save_checkpoint(dest, slim)
    ev = evaluate_mri([dest], cs_tv=False, device="cpu", progress=False)
    method = ev["methods"][-1]
    registry_path = PRETRAINED_DIR / "registry.json"
    registry = json.loads(registry_path.read_text()) if registry_path.is_file() else {}
    cfg = slim["config"]
    registry[a.name] = {
        "file": dest.name,
        "val_psnr": ev["summary"][method]["psnr_mean"],
        "val_ssim": ev["summary"][method]["ssim_mean"],
        "val_slices": len(ev["per_slice"]),
        "dataset": cfg["dataset"],
        "target": cfg["target"],
        "model": cfg["model"],
        "acquisition": checkpoint_acquisition(slim),
        "steps": int(slim.get("step", 0)) if a.steps is None else a.steps,
        "seed": cfg["seed"],
        "command": a.command,
        "machine": a.machine,
        "train_seconds": a.train_seconds,
        "data": a.data,
        "bytes": dest.stat().st_size,
    }
    if a.adapt_lr is not None:  # the adaptation settings tuned for this model
        registry[a.name]["adapt"] = {"lr": a.adapt_lr, "tuned": a.adapt_tuned}
    if a.default_for:  # --checkpoint default gives it these data (one model per kind of data)
        for rec in registry.values():
            rec["default_for"] = [d for d in rec.get("default_for", []) if d not in a.default_for]
            if not rec["default_for"]:
                rec.pop("default_for")
        registry[a.name]["default_for"] = list(a.default_for)
    if a.default:  # one default: Reconstructor.from_pretrained() and --checkpoint default load it
        for rec in registry.values():
            rec.pop("default", None)
        registry[a.name]["default"] = True
    atomic_write_text(registry_path, json.dumps(registry, indent=2) + "\n")
    print(json.dumps(registry[a.name], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
