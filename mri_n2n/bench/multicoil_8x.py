"""What closes the gap to TV-SENSE at 8x (``mri-n2n bench quality --only multicoil8x``).

The multi-coil study's data and its equispaced 8x mask with a 4 % centre
(:mod:`mri_n2n.bench.multicoil`): Noise2Noise runs of the CPU preset's unrolled network with the
proximal data consistency, each changing one thing from the study's quick run (training budget,
cascades, CG iterations, width; :data:`VARIANTS`), trained with one seed, then scored with the
same held-out slices and masks as the study against zero-filling, CG-SENSE and TV-SENSE with
weights tuned on training slices for this mask. Each row states its training seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config
from ..evaluation import evaluate_mri, write_evaluation
from .multicoil import TV_ITERS, tune_baselines, write_multicoil_study_data
from .runs import train_or_reuse

__all__ = ["VARIANTS", "bench_multicoil_8x", "multicoil_8x_markdown"]

#: Runs at 8x, by name: fields changed from the study's quick run (150 steps, 5 cascades, 6 CG
#: iterations, width 16).
VARIANTS: dict[str, dict[str, Any]] = {
    "study quick run (150 steps)": {},
    "600 steps": {"max_steps": 600},
    "600 steps, 10 CG iterations": {"max_steps": 600, "cg_iters": 10},
    "600 steps, 8 cascades": {"max_steps": 600, "cascades": 8},
    "600 steps, width 32": {"max_steps": 600, "cascade_width": 32},
}


def bench_multicoil_8x(
    *,
    out_dir: str | Path = "results",
    device: str = "cpu",
    variants: dict[str, dict[str, Any]] | None = None,
    size: int = 64,
    seed: int = 0,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train (or reuse) each variant and score it with the baselines (module docstring).

    Returns:
        ``{"settings", "tuned", "rows": [{"run", "changes", "train_seconds", "psnr", "ssim",
        "psnr_object"}], "baselines": {method: {"psnr", "ssim", "psnr_object"}}}``.
    """
    root = Path(out_dir) / "multicoil_8x_runs"
    data = write_multicoil_study_data(root / "data", size)
    base = Config(
        dataset="kspace", data_dir=str(data), preset="cpu", size=size, max_steps=150, steps_per_epoch=37,
        seed=seed, device=device, quiet=True, tensorboard=False, density="lines_lattice",
        acceleration=8.0, center_fraction=0.04, augment=False, dc="prox", threads=threads,
    )
    tuned = tune_baselines(base)
    runs = {}
    for name, changes in (variants or VARIANTS).items():
        cfg = base.replace(**changes, out=str(root / name.replace(" ", "_").replace(",", "")))
        if "max_steps" in changes:
            cfg = cfg.replace(steps_per_epoch=max(changes["max_steps"] // 4, 1))
        runs[name] = (cfg, changes, train_or_reuse(cfg))
    ckpts = [Path(cfg.out) / "checkpoints" / "last.pt" for cfg, _, _ in runs.values()]
    ev = evaluate_mri(ckpts, device=device, progress=False, plain_zero_filled=True, tv_lam=tuned["tv_lam"],
                      sense_lam=tuned["sense_lam"], tv_iters=TV_ITERS, output="rss")
    write_evaluation(ev, root / "evaluation")
    summary = ev["summary"]
    methods = list(ev["methods"])
    nets = methods[-len(ckpts):]  # the checkpoints come last, in order

    def cell(s: dict[str, float]) -> dict[str, float]:
        return {"psnr": s["psnr_mean"], "ssim": s["ssim_mean"], "psnr_object": s.get("psnr_object_mean")}

    rows = []
    for (name, (_, changes, summ)), method in zip(runs.items(), nets):
        rows.append({"run": name, "changes": changes, "train_seconds": summ.get("train_seconds"),
                     **cell(summary[method])})
    return {
        "settings": {"size": size, "seed": seed, "acceleration": 8.0, "center_fraction": 0.04},
        "tuned": {k: tuned[k] for k in ("tv_lam", "sense_lam")},
        "rows": rows,
        "baselines": {m: cell(summary[m]) for m in methods if m not in nets},
    }


def multicoil_8x_markdown(res: dict[str, Any]) -> str:
    """The rows and the baselines as a Markdown table: PSNR / SSIM (object PSNR) and the
    distance to TV-SENSE."""
    tv = res["baselines"]["TV-SENSE"]["psnr"]
    lines = ["| method | training seconds | PSNR / SSIM (object) | vs TV-SENSE (dB) |", "|---|---|---|---|"]

    def fmt(s: dict[str, Any]) -> str:
        obj = f" ({s['psnr_object']:.2f})" if s.get("psnr_object") is not None else ""
        return f"{s['psnr']:.2f} / {s['ssim']:.3f}{obj}"

    for name, s in res["baselines"].items():
        lines.append(f"| {name} | - | {fmt(s)} | {s['psnr'] - tv:+.2f} |")
    for r in res["rows"]:
        secs = f"{r['train_seconds']:.0f}" if r.get("train_seconds") else "-"
        lines.append(f"| N2N, {r['run']} | {secs} | {fmt(r)} | {r['psnr'] - tv:+.2f} |")
    return "\n".join(lines)
