"""The paper's MRI claim at small scale: zero-filled vs CS-TV vs Noise2Noise vs Noise2Clean.

Both networks train on the embedded MNI152 slices with the same budget, seed and model; all
methods are then evaluated on the same validation slices and fixed masks by
:func:`mri_n2n.evaluation.evaluate_mri`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config, resolve_config
from ..evaluation import evaluate_mri, evaluation_markdown, write_evaluation
from .generalization import bench_generalization, generalization_markdown
from .runs import train_or_reuse

#: The training runs of the study: method name -> ``--target``. SSDU and Noisier2Noise learn from
#: one acquisition per slice (no pairs, no augmentation), the others as the paper does.
TARGETS = (("N2N", "noisy"), ("N2C", "clean"), ("SSDU", "ssdu"), ("Noisier2Noise", "noisier2noise"))

__all__ = ["bench_mri_quality", "mri_quality_markdown"]


def bench_mri_quality(
    *,
    quick: bool = False,
    out_dir: str | Path = "results",
    device: str = "auto",
    steps: int | None = None,
    size: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Train N2N and N2C on mni152 with one budget, then evaluate them with zero-filling and CS-TV.

    ``quick``: 64x64 slices and 500 steps (a few minutes on 2 CPU cores); otherwise the CPU
    default preset (128x128, its step budget). Then the generalisation table
    (:mod:`mri_n2n.bench.generalization`) for both models on real scans. Run folders of a
    ``seed`` other than 0 get a ``_seed<seed>`` suffix.
    """
    size = size or (64 if quick else 128)
    steps = steps or (500 if quick else int(resolve_config(Config(preset="cpu"))[0].max_steps))
    runs = Path(out_dir) / (
        ("mri_quality_quick_runs" if quick else "mri_quality_runs") + (f"_seed{seed}" if seed else "")
    )
    base = Config(
        dataset="mni152",
        preset="cpu",
        size=size,
        max_steps=steps,
        steps_per_epoch=max(steps // 5, 1),
        seed=seed,
        device=device,
        quiet=True,
        tensorboard=False,
    )
    summaries: dict[str, Any] = {}
    for name, target in TARGETS:
        summaries[name] = train_or_reuse(base.replace(target=target, out=str(runs / name)))
    ckpts = [runs / name / "checkpoints" / "last.pt" for name, _ in TARGETS]
    ev = evaluate_mri(ckpts, device=device, progress=False)
    write_evaluation(ev, runs / "evaluation")
    gen = bench_generalization(dict(zip([n for n, _ in TARGETS], ckpts)), device=device)
    s = ev["summary"]
    goals = {
        "n2n_within_0.2dB_of_n2c": abs(s["N2N"]["psnr_mean"] - s["N2C"]["psnr_mean"]) <= 0.2,
        "n2n_at_or_above_cs_tv": s["N2N"]["psnr_mean"] >= s["CS-TV"]["psnr_mean"],
        "gain_over_zero_filled_at_least_10dB": s["N2N"]["psnr_mean"] - s["zero-filled"]["psnr_mean"] >= 10.0,
        "real_volumes_n2n_at_or_above_cs_tv": gen["mean"]["N2N"]["psnr"] >= gen["mean"]["CS-TV"]["psnr"],
        "ssdu_within_1dB_of_n2c": s["N2C"]["psnr_mean"] - s["SSDU"]["psnr_mean"] <= 1.0,
        "noisier2noise_within_1dB_of_n2c": s["N2C"]["psnr_mean"] - s["Noisier2Noise"]["psnr_mean"] <= 1.0,
    }
    return {
        "settings": {
            "size": size,
            "steps": steps,
            "batch_size": summaries["N2N"].get("batch_size", 8),
            "model": summaries["N2N"]["model"],
            "seed": seed,
            "quick": quick,
        },
        "train": {
            k: {kk: v[kk] for kk in ("val_psnr", "val_ssim", "train_seconds", "steps")}
            for k, v in summaries.items()
        },
        "evaluation": {"methods": ev["methods"], "summary": ev["summary"], "settings": ev["settings"]},
        "evaluation_markdown": evaluation_markdown(ev),
        "generalization": gen,
        "goals": goals,
    }


def mri_quality_markdown(result: dict[str, Any]) -> str:
    """The MRI quality table with the paper's reference values and the goal checks."""
    st = result["settings"]
    tr = result["train"]
    lines = [
        f"MRI, embedded MNI152, {st['size']}x{st['size']}, 10 % sampling, {st['steps']} steps, "
        f"model `{st['model']}`, seed {st['seed']}. Training time: "
        + ", ".join(f"{k} {v['train_seconds']:.0f} s" for k, v in tr.items())
        + ".",
        "",
        result["evaluation_markdown"],
        "",
        "Paper (IXI, 256x256, 300 epochs on a GPU): zero-filled 20.03 dB, N2C 31.77 dB, N2N 31.74 dB.",
        "",
        "Real volumes never seen in training (PSNR dB / SSIM, fastMRI volume convention, the same "
        "masks for every method, CS-TV weight tuned per volume):",
        "",
        generalization_markdown(result["generalization"]),
        "",
        "| goal | met |",
        "|---|---|",
    ]
    lines += [f"| {k} | {'yes' if v else 'NO'} |" for k, v in result["goals"].items()]
    return "\n".join(lines)
