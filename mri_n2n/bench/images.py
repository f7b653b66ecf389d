"""The paper's photographic table at small scale: ``bench_image_quality`` (part of ``bench quality``).

Every row trains the same plain U-Net with the same budget (steps, crop, batch, learning-rate
schedule; impulse rows train longer, see below) and the same seed on the embedded scikit-image
photographs (``--dataset images``, split by image), then validates once, at the end, on the whole
validation photographs at each noise's test level (PSNR on [0, 1]-clipped outputs, peak 1.0, per
image, averaged: the trainer's protocol). The rows, as in the paper (Lehtinen et al. 2018, section 3):

=============  =======================================  =========================================
noise          rows                                     goal (issue 6, "Quality")
=============  =======================================  =========================================
``gaussian``   Noise2Clean vs Noise2Noise (L2)          N2N within 0.5 dB of N2C
``poisson``    Noise2Clean vs Noise2Noise (L2)          N2N within 0.5 dB of N2C
``bernoulli``  Noise2Clean vs Noise2Noise (masked L2)   N2N within 0.5 dB of N2C
``text``       N2N L2 vs N2N L1 (+ N2C L1, full mode)   L1 beats L2 by at least 2 dB
``impulse``    N2N L1 vs N2N annealed L0                L0 beats L1 by at least 2 dB
               (+ N2N L2 and N2C L0, full mode)
=============  =======================================  =========================================

On CPU the rows run in parallel worker processes (one thread each: small convolutions scale
poorly across threads, and very badly on a busy machine); on CUDA they run one after another in
this process. Worker count and threads change the floating-point summation order only. Workers
are *spawned*, so a script that calls :func:`bench_image_quality` with more than one worker must
guard its entry point with ``if __name__ == "__main__":`` (as ``python -m mri_n2n.bench`` does).

The rows compared by a goal always share their budget. In the full mode the ``impulse`` rows train
four times longer than the others (6000 steps instead of 1500): the annealed L0 loss only finds the
mode of the targets once the network is precise enough to tell the surviving pixels from the
replaced ones, and it does most of its work while gamma < 1, in the second half of training.
Measured on two CPU cores (validation PSNR, L0 vs L1, seed 0): after 1500 steps 17.22 vs
17.25 dB; after 6000 steps 21.26 vs 18.18 dB (the benchmark's rows). A run validated every 1500
steps passed 17.3, 19.6 and 20.8 dB at gamma = 1, 0.5 and 0, while L1 stayed near its median's
bias (17.5, 17.7, 18.2 dB). ``--steps N`` gives every row, impulse included, the same N steps.

Budgets (chosen by measurement, see :data:`BUDGETS`): ``quick`` takes about 4-5 minutes on two
otherwise idle CPU cores, the full mode about 46 minutes.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..devices import resolve_device
from ..training import train
from . import machine_info, markdown_table

__all__ = [
    "BUDGETS",
    "PAPER_KODAK",
    "ImageRow",
    "image_quality_rows",
    "row_steps",
    "bench_image_quality",
    "image_quality_markdown",
]

#: Training budget of every row, per mode (plain U-Net ``base``/``depth``, crop ``size``);
#: ``noise_steps`` overrides ``steps`` for the rows of one noise (see the module docstring).
#: Measured on one core (CPU time): a 64x64, batch-8 step of the base-16, depth-3 U-Net takes about
#: 0.15 s, data and corruption included (text about 25 % more). Quick: 10 rows x 300 steps on two
#: workers, about 4 minutes. Full: 9 rows x 1500 steps and 4 impulse rows x 6000 steps, 46 minutes
#: (longest rows first). Small crops win at a fixed time: Gaussian N2C reached 28.8 dB after 1500
#: steps of 64x64 crops but 26.9 dB after 667 steps of 96x96 crops, for the same CPU time (the
#: validation photographs, test level 25).
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"steps": 300, "size": 64, "batch_size": 8, "base": 16, "depth": 3, "lr": 1e-3},
    "full": {
        "steps": 1500,
        "noise_steps": {"impulse": 6000},
        "size": 64,
        "batch_size": 8,
        "base": 16,
        "depth": 3,
        "lr": 1e-3,
    },
}

#: The paper's PSNRs (dB) for each (noise, method, loss): Kodak for gaussian/poisson/bernoulli
#: (RED30 network for gaussian), the paper's text and impulse experiments otherwise
#: (see ``PAPER.md``); ``("noise", "input", None)`` is the corrupted input.
PAPER_KODAK: dict[tuple[str, str, str | None], float] = {
    ("gaussian", "N2C", "l2"): 32.50,
    ("gaussian", "N2N", "l2"): 32.48,
    ("poisson", "N2C", "l2"): 31.52,
    ("poisson", "N2N", "l2"): 31.50,
    ("bernoulli", "N2C", "l2"): 33.01,
    ("bernoulli", "N2N", "l2"): 33.17,
    ("text", "input", None): 17.12,
    ("text", "N2N", "l2"): 26.89,
    ("text", "N2N", "l1"): 35.75,
    ("text", "N2C", "l1"): 35.82,
    ("impulse", "input", None): 8.89,
    ("impulse", "N2N", "l2"): 13.02,
    ("impulse", "N2N", "l1"): 16.36,
    ("impulse", "N2N", "l0"): 28.43,
    ("impulse", "N2C", "l0"): 28.86,
}

#: The noises of the table, in the paper's order.
NOISE_ORDER = ("gaussian", "poisson", "bernoulli", "text", "impulse")


@dataclass(frozen=True)
class ImageRow:
    """One training run of the table: a noise, Noise2Noise (``N2N``) or Noise2Clean (``N2C``), a loss."""

    noise: str
    method: str  # "N2N" or "N2C"
    loss: str  # "l2", "l1", "l0"

    @property
    def target(self) -> str:
        """The trainer's ``target``: ``noisy`` for N2N, ``clean`` for N2C."""
        return "noisy" if self.method == "N2N" else "clean"

    @property
    def name(self) -> str:
        """A file-system friendly run name, e.g. ``text_n2n_l1``."""
        return f"{self.noise}_{self.method.lower()}_{self.loss}"


def image_quality_rows(
    *, quick: bool = False, noises: tuple[str, ...] | list[str] | None = None
) -> list[ImageRow]:
    """The rows of the table: 10 in ``quick`` mode, 13 in full mode (text N2C, impulse L2 and N2C added).

    Args:
        quick: leave out the optional rows.
        noises: restrict to these noises (default: all five, in the paper's order).

    Raises:
        ValueError: an unknown noise name.
    """
    chosen = tuple(noises) if noises else NOISE_ORDER
    unknown = [n for n in chosen if n not in NOISE_ORDER]
    if unknown:
        raise ValueError(f"unknown noise {', '.join(unknown)} (choose from {', '.join(NOISE_ORDER)})")
    rows: list[ImageRow] = []
    for noise in NOISE_ORDER:
        if noise not in chosen:
            continue
        if noise in ("gaussian", "poisson", "bernoulli"):
            rows += [ImageRow(noise, "N2C", "l2"), ImageRow(noise, "N2N", "l2")]
        elif noise == "text":
            rows += [ImageRow(noise, "N2N", "l2"), ImageRow(noise, "N2N", "l1")]
            if not quick:
                rows.append(ImageRow(noise, "N2C", "l1"))
        else:
            if not quick:
                rows.append(ImageRow(noise, "N2N", "l2"))
            rows += [ImageRow(noise, "N2N", "l1"), ImageRow(noise, "N2N", "l0")]
            if not quick:
                rows.append(ImageRow(noise, "N2C", "l0"))
    return rows


def row_steps(row: ImageRow, settings: dict[str, Any]) -> int:
    """Training steps of ``row``: ``settings["noise_steps"][row.noise]``, else ``settings["steps"]``."""
    return int((settings.get("noise_steps") or {}).get(row.noise, settings["steps"]))


def _row_config(
    row: ImageRow, settings: dict[str, Any], out: Path, device: str, threads: int | None
) -> Config:
    """The trainer config of one row: one validation, at the end of training."""
    steps = row_steps(row, settings)
    return Config(
        task="image",
        preset="cpu",
        dataset="images",
        noise=row.noise,
        loss=row.loss,
        target=row.target,
        size=int(settings["size"]),
        batch_size=int(settings["batch_size"]),
        max_steps=steps,
        steps_per_epoch=steps,  # validate once, after the last step
        model="unet",
        base=int(settings["base"]),
        depth=int(settings["depth"]),
        lr=float(settings["lr"]),
        seed=int(settings["seed"]),
        val_limit=settings["val_limit"],
        device=device,
        threads=threads,
        quiet=True,
        tensorboard=False,
        figures=False,
        out=str(out / row.name),
    )


def _run_row(row: ImageRow, settings: dict[str, Any], out: str, device: str, threads: int | None) -> dict:
    """Train and validate one row (in a worker process or in this one); returns its table row."""
    t0 = time.perf_counter()
    cfg = _row_config(row, settings, Path(out), device, threads)
    summary = train(cfg)
    return {
        "noise": row.noise,
        "method": row.method,
        "loss": row.loss,
        "target": row.target,
        "val_psnr_input": summary["val_psnr_input"],
        "val_psnr": summary["val_psnr"],
        "val_ssim": summary["val_ssim"],
        "steps": summary["steps"],
        "seconds": time.perf_counter() - t0,
    }


def _find(rows: list[dict[str, Any]], noise: str, method: str, loss: str) -> dict[str, Any] | None:
    for r in rows:
        if (r["noise"], r["method"], r["loss"]) == (noise, method, loss):
            return r
    return None


def _goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's goals, for the noises that were run: value (dB), threshold, pass/fail."""
    goals = []

    def add(name: str, a: dict | None, b: dict | None, threshold: float, desc: str) -> None:
        if a is None or b is None or a["val_psnr"] is None or b["val_psnr"] is None:
            return
        diff = float(a["val_psnr"] - b["val_psnr"])
        goals.append(
            {
                "goal": name,
                "description": desc,
                "value_db": diff,
                "threshold_db": threshold,
                "passed": diff >= threshold,
            }
        )

    for noise in ("gaussian", "poisson", "bernoulli"):
        add(
            f"{noise}: N2N - N2C >= -0.5 dB",
            _find(rows, noise, "N2N", "l2"),
            _find(rows, noise, "N2C", "l2"),
            -0.5,
            f"{noise}: Noise2Noise within 0.5 dB of Noise2Clean",
        )
    add(
        "text: L1 - L2 >= 2 dB",
        _find(rows, "text", "N2N", "l1"),
        _find(rows, "text", "N2N", "l2"),
        2.0,
        "text: L1 beats L2 by at least 2 dB",
    )
    add(
        "impulse: L0 - L1 >= 2 dB",
        _find(rows, "impulse", "N2N", "l0"),
        _find(rows, "impulse", "N2N", "l1"),
        2.0,
        "impulse: annealed L0 beats L1 by at least 2 dB",
    )
    return goals


def _workers(device: torch.device, n_rows: int, workers: int | None) -> int:
    if device.type != "cpu":
        return 1
    if workers is not None:
        return max(1, min(int(workers), n_rows))
    return max(1, min(os.cpu_count() or 1, n_rows))


def bench_image_quality(
    *,
    quick: bool = False,
    out_dir: str = "results",
    device: str = "auto",
    steps: int | None = None,
    size: int | None = None,
    batch_size: int | None = None,
    noises: tuple[str, ...] | list[str] | None = None,
    val_limit: int | None = None,
    workers: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Reproduce the paper's photographic table at small scale; same budget and seed for every row.

    Args:
        quick: the quick budget (``BUDGETS["quick"]``, 10 rows) instead of the full one (13 rows).
        out_dir: run folders go to ``<out_dir>/image_quality_runs/<mode>/<row name>``; the caller writes
            the JSON/Markdown results (``write_results(out_dir, ..., image_quality_markdown(r))``).
        device: ``auto``, ``cpu``, ``cuda``... (the trainer's ``--device``).
        steps, size, batch_size: override the mode's training steps (of every row, impulse
            included), crop size and batch size.
        noises: run only these noises (default: all five).
        val_limit: validate on at most this many of the (three) validation photographs.
        workers: parallel worker processes on CPU (default: one per CPU core, at most one per
            row; each uses one thread). ``1`` runs the rows in this process.
        seed: the seed of every row (weights, crops, noise draws); run folders of a seed other
            than 0 go to ``<mode>_seed<seed>``.

    Returns:
        ``{"rows": [...], "goals": [...], "settings": {...},
        "machine": machine_info(...), "seconds": total wall time, "paper_reference": [...]}``.
        Each row holds ``noise, method, loss, target, val_psnr_input, val_psnr, val_ssim, steps,
        seconds`` (wall time of the row: data, training and validation); each goal ``goal,
        description, value_db, threshold_db, passed``.
    """
    mode = "quick" if quick else "full"
    settings: dict[str, Any] = dict(BUDGETS[mode])
    settings["noise_steps"] = dict(settings.get("noise_steps") or {})
    for key, value in (("steps", steps), ("size", size), ("batch_size", batch_size)):
        if value is not None:
            settings[key] = int(value)
    if steps is not None:
        settings["noise_steps"] = {}  # an explicit budget is every row's
    settings.update(mode=mode, seed=int(seed), val_limit=val_limit, dataset="images", model="unet")
    rows_spec = image_quality_rows(quick=quick, noises=noises)
    dev = resolve_device(device)
    n_workers = _workers(dev, len(rows_spec), workers)
    settings["workers"] = n_workers
    settings["threads_per_worker"] = 1 if n_workers > 1 else torch.get_num_threads()
    runs = Path(out_dir) / "image_quality_runs" / (mode if int(seed) == 0 else f"{mode}_seed{int(seed)}")
    t0 = time.perf_counter()
    if n_workers == 1:
        threads_before = torch.get_num_threads()
        try:
            results = [_run_row(r, settings, str(runs), str(dev), None) for r in rows_spec]
        finally:
            torch.set_num_threads(threads_before)
    else:
        # spawn: a fresh interpreter per worker (fork after torch has started threads can hang)
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as pool:
            # longest rows first (shorter wall time); results keep the table's order
            order = sorted(range(len(rows_spec)), key=lambda i: -row_steps(rows_spec[i], settings))
            futures = {
                i: pool.submit(_run_row, rows_spec[i], settings, str(runs), str(dev), 1) for i in order
            }
            results = [futures[i].result() for i in range(len(rows_spec))]
    total = time.perf_counter() - t0
    settings["row_names"] = [r.name for r in rows_spec]
    return {
        "benchmark": "image_quality",
        "rows": results,
        "goals": _goals(results),
        "settings": settings,
        "machine": machine_info(dev),
        "seconds": total,
        "paper_reference": [
            {"noise": k[0], "method": k[1], "loss": k[2], "psnr": v} for k, v in PAPER_KODAK.items()
        ],
    }


def image_quality_markdown(result: dict[str, Any]) -> str:
    """The paper-style table (ours next to the paper's numbers) and the goal checks, in Markdown."""
    s = result.get("settings", {})
    table = []
    for r in result["rows"]:
        paper = PAPER_KODAK.get((r["noise"], r["method"], r["loss"]))
        paper_in = PAPER_KODAK.get((r["noise"], "input", None))
        table.append(
            {
                "noise": r["noise"],
                "method": r["method"],
                "loss": r["loss"].upper(),
                "target": r["target"],
                "input PSNR": r["val_psnr_input"],
                "PSNR": r["val_psnr"],
                "gain": (r["val_psnr"] - r["val_psnr_input"]) if r["val_psnr"] is not None else None,
                "paper input": paper_in,
                "paper PSNR": paper,
                "steps": r["steps"],
                "seconds": f"{r['seconds']:.0f}",
            }
        )
    cols = [
        "noise",
        "method",
        "loss",
        "target",
        "input PSNR",
        "PSNR",
        "gain",
        "paper input",
        "paper PSNR",
        "steps",
        "seconds",
    ]
    goal_rows = [
        {
            "goal": g["description"],
            "ours (dB)": g["value_db"],
            "threshold (dB)": g["threshold_db"],
            "passed": "yes" if g["passed"] else "**no**",
        }
        for g in result.get("goals", [])
    ]
    lines = [
        f"## Photographic noise ({s.get('mode', '?')} mode)",
        "",
        f"Plain U-Net (base {s.get('base')}, depth {s.get('depth')}), {s.get('steps')} steps"
        + "".join(f" ({n}: {k})" for n, k in (s.get("noise_steps") or {}).items())
        + f" of batch {s.get('batch_size')} x {s.get('size')}x{s.get('size')} crops, "
        f"lr {s.get('lr')}, seed {s.get('seed')}, "
        "the same for the rows of one noise; scikit-image photographs (split by image); "
        "validation on the whole validation photographs"
        + (f" (first {s['val_limit']})" if s.get("val_limit") else "")
        + " at each noise's test level; PSNR (dB) on [0, 1]-clipped outputs, peak 1.0, per image, "
        f"averaged. {s.get('workers', 1)} worker process(es); total {result.get('seconds', 0.0):.0f} s.",
        "",
        "Paper columns: Kodak (gaussian: RED30 network), and the paper's text and impulse experiments. "
        "Our numbers come from a tiny budget on other images and are not comparable in absolute terms; "
        "the comparisons between rows are what is checked.",
        "",
        markdown_table(table, cols),
        "",
        "### Goals",
        "",
        markdown_table(goal_rows, ["goal", "ours (dB)", "threshold (dB)", "passed"])
        if goal_rows
        else "(no goal applies to the noises that were run)",
    ]
    return "\n".join(lines)
