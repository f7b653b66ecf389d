"""Non-Cartesian quality (``python -m mri_n2n.bench trajectories``): networks trained on
trajectories against the density-compensated adjoint, CG-SENSE and TV at an oracle weight, per
protocol and coil count (issue 33 item 6).

Every study is one protocol (a trajectory family at an acceleration) and a coil count, on the
held-out validation slices of the first checkpoint's data (``--dataset synth``: pixel-disjoint
from its training slices), each slice seen through that many coils of the synthetic loop array
with its correlated noise, with the **true** coil maps (single coil: one coil, a phase-only map).
Every method sees the same draws (:func:`~mri_n2n.evaluation.evaluate_mri` with the study's
acquisition settings). TV (TV-SENSE: :func:`~mri_n2n.baselines.cs_tv` on the coil acquisition,
its data term solved by CG on the Toeplitz normal operator) runs at every weight of a grid
and the table reports the best mean (an oracle weight chosen on the evaluated slices
themselves: TV's best case), with a flag when the best weight sits at an edge of the grid.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..bench import markdown_table
from ..evaluation import evaluate_mri

__all__ = ["STUDIES", "TV_GRID", "bench_trajectories", "trajectories_markdown"]

#: ``(trajectory, acceleration, coils)`` of the full run
STUDIES: tuple[tuple[str, float, int], ...] = (
    ("golden-radial", 4.0, 1),
    ("golden-radial", 8.0, 1),
    ("spiral", 4.0, 1),
    ("golden-radial", 4.0, 8),
    ("golden-radial", 8.0, 8),
    ("spiral", 4.0, 8),
)

#: TV weights tried per study (the oracle picks the best mean)
TV_GRID: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2)

#: the quick run (the test's): two studies, a small grid, few slices and iterations
QUICK = {"studies": (("golden-radial", 4.0, 1), ("spiral", 8.0, 2)), "lams": (3e-3, 1e-2), "limit": 2,
         "tv_iters": 10}


def bench_trajectories(
    checkpoints: Sequence[tuple[str, str]],
    *,
    studies: Sequence[tuple[str, float, int]] = STUDIES,
    lams: Sequence[float] = TV_GRID,
    limit: int = 12,
    tv_iters: int = 100,
    device: str = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Score ``checkpoints`` (``(name, path or shipped name)``, all trained on the non-Cartesian
    kind; the first one's data are evaluated) and the baselines on every study (module docstring).

    Returns:
        ``{"studies": [row per study], "lams": [...], "limit": ..., "tv_iters": ...}``; a row holds
        the protocol, the coil count, the PSNR/SSIM of each method (``zero-filled`` is the
        density-compensated adjoint), ``TV`` at its best weight ``tv_lam`` (``tv_edge``: the
        best weight is an end of the grid), TV's PSNR at every weight, and the seconds.

    Raises:
        ValueError: no checkpoint, or a checkpoint not trained on trajectories.
    """
    if not checkpoints:
        raise ValueError("give at least one --checkpoint")
    if not lams:
        raise ValueError("give at least one TV weight")
    names = [n for n, _ in checkpoints]
    paths = [p for _, p in checkpoints]
    rows: list[dict[str, Any]] = []
    for traj, acc, coils in studies:
        acq = {"trajectory": traj, "acceleration": float(acc), "synth_coils": f"{int(coils)}:{int(coils)}"}
        t0 = time.perf_counter()
        row: dict[str, Any] = {"trajectory": traj, "acceleration": float(acc), "coils": int(coils)}
        tv_psnr: dict[float, float] = {}
        tv_ssim: dict[float, float] = {}
        for i, lam in enumerate(lams):
            res = evaluate_mri(
                paths if i == 0 else paths[:1], acquisition=acq, tv_lam=float(lam), tv_iters=tv_iters,
                limit=limit, device=device, progress=progress,
            )
            summ, methods = res["summary"], res["methods"]
            tv_name = next(m for m in methods if m in ("CS-TV", "TV-SENSE"))
            tv_psnr[float(lam)] = float(summ[tv_name]["psnr_mean"])
            tv_ssim[float(lam)] = float(summ[tv_name]["ssim_mean"])
            if i == 0:
                row["sampling"] = res["settings"].get("sampling")
                row["slices"] = len(res["per_slice"])
                nets = methods[-len(paths):]
                for label, m in (("zero-filled", "zero-filled"), ("CG-SENSE", "CG-SENSE"), *zip(names, nets)):
                    if m in summ:
                        row[label] = float(summ[m]["psnr_mean"])
                        row[f"{label} SSIM"] = float(summ[m]["ssim_mean"])
        best = max(tv_psnr, key=lambda k: tv_psnr[k])
        row.update(
            TV=tv_psnr[best], **{"TV SSIM": tv_ssim[best]}, tv_lam=best,
            tv_edge=len(lams) > 1 and best in (min(lams), max(lams)),
            tv_by_lam={f"{k:g}": v for k, v in tv_psnr.items()}, seconds=time.perf_counter() - t0,
        )
        rows.append(row)
    return {"studies": rows, "checkpoints": dict(checkpoints), "lams": [float(v) for v in lams],
            "limit": limit, "tv_iters": tv_iters}


def trajectories_markdown(res: dict[str, Any]) -> str:
    """The table: one row per study, PSNR (dB) of every method, the network's margin over TV."""
    names = list(res["checkpoints"])
    first = names[0]
    rows = []
    for r in res["studies"]:
        row = {
            "protocol": f"{r['trajectory']} {r['acceleration']:g}x",
            "coils": r["coils"],
            "slices": r.get("slices"),
            "DC adjoint": r.get("zero-filled"),
            "CG-SENSE": r.get("CG-SENSE"),
            "TV (oracle weight)": f"{r['TV']:.2f} (λ {r['tv_lam']:g}{', edge' if r['tv_edge'] else ''})",
            **{n: r.get(n) for n in names},
            f"{first} − TV": None if r.get(first) is None else r[first] - r["TV"],
            "s": round(r["seconds"]),
        }
        if len(names) > 1:
            row[f"{first} − {names[1]}"] = None if r.get(names[1]) is None else r[first] - r[names[1]]
        rows.append(row)
    cols = list(rows[0]) if rows else []
    grid = ", ".join(f"{v:g}" for v in res["lams"])
    return (
        markdown_table(rows, cols)
        + f"\n\nPSNR (dB), mean over the held-out validation slices (paper convention). DC adjoint: the "
        f"density-compensated adjoint (the networks' input). TV: TV-SENSE, {res['tv_iters']} iterations, the "
        f"best mean over the weights {grid} (chosen on the evaluated slices: TV's best case). True coil "
        "maps; one coil is a phase-only map.\n"
    )
