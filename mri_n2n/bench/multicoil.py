"""The multi-coil study: 8 coils, 1-D equispaced masks at 4x and 8x
(``python -m mri_n2n.bench quality --only multicoil``).

Data: the MNI152 template's slices (training and validation split as ``--dataset mni152``), each
given a seeded smooth phase, seen by 8 birdcage coils (:func:`mri_n2n.coils.birdcage_maps`) with
complex k-space noise :data:`NOISE` of the peak per coil, written as fully sampled fastMRI
multi-coil HDF5 files (blocks of slices), with the noise-free root-sum-of-squares image as each
file's ``reconstruction_rss`` and the MNI152 slice indices as the attribute :data:`SLICES_ATTR`,
in fastMRI's layout: the training slices under ``train/``, the MNI152 validation slices (more
than 5 mm from every training slice, :func:`~mri_n2n.data.slices.block_split`) in
``val/valid.h5``, which ``--dataset kspace`` holds out (its explicit split). Runs: Noise2Noise
and Noise2Clean at 4x (the CPU preset's unrolled network and k-space loss with MoDL's learned
proximal data consistency, ``--dc prox``; one budget and seed), Noise2Noise at 8x. The
baselines' weights are tuned on training slices (:func:`mri_n2n.baselines.tune_sense_lambda`:
CG-SENSE's Tikhonov weight, TV-SENSE's TV weight, best mean PSNR against the noise-free
reference), then every method is scored by :func:`mri_n2n.evaluation.evaluate_mri` on the
validation slices with the same fixed masks: zero-filling (and the root-sum-of-squares of the
zero-filled coils), CG-SENSE, TV-SENSE and the networks, against the noise-free reference, each
as ``reconstruct`` writes it in both output conventions
(:func:`mri_n2n.reconstruction.multicoil.multicoil_output`): ``rss`` (fastMRI's, the default: the
root-sum-of-squares of the data-consistent coil images, which puts the measured noise back on the
measured bins) and ``sense`` (the SENSE image on the maps' support). A speed row times
``reconstruct`` of a 16-coil 320 x 320 x 30 fastMRI-style volume.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..baselines import tune_sense_lambda
from ..coils import birdcage_maps
from ..config import Config, resolve_config
from ..corruptions import seeded_generator
from ..corruptions.mri import smooth_phase
from ..corruptions.multicoil import MultiCoilUndersampling
from ..data import collate
from ..data.datasets import mri_datasets_from_config
from ..data.mni152 import build_mni152_datasets
from ..data.synthetic_raw import write_fastmri_multicoil_h5
from ..evaluation import PLAIN, SENSE_ITERS, evaluate_mri, evaluation_markdown, write_evaluation
from ..io.raw import read_raw
from ..reconstruction import Reconstructor
from ..seeding import stable_ident
from .runs import train_or_reuse

__all__ = [
    "COILS", "NOISE", "SLICES_ATTR", "write_multicoil_study_data", "bench_multicoil", "multicoil_markdown"
]

#: Receive coils of the study.
COILS = 8
#: Complex k-space noise per coil, relative to the normalised image peak.
NOISE = 0.01
#: (label, acceleration, centre fraction, train Noise2Clean too)
MASKS = (("equispaced 4x", 4.0, 0.08, True), ("equispaced 8x", 8.0, 0.04, False))
#: HDF5 attribute of a study file: the MNI152 slice index (mm along the axis) of each of its slices.
SLICES_ATTR = "mni152_slices"
#: Weights searched for the baselines (images normalised to peak 1).
TV_LAMS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
TIKHONOV_LAMS = (1e-3, 1e-2, 3e-2, 1e-1, 3e-1)
#: Training slices the baselines are tuned on (evenly spread) and TV-SENSE's ADMM iterations.
TUNE_SLICES = 16
TV_ITERS = 100
#: The output conventions the study scores (``reconstruct --multicoil-output``; the first is the default).
OUTPUTS = ("rss", "sense")


def _write(path: Path, slices: np.ndarray, index: list[int], maps: np.ndarray, seed: int) -> Path:
    g = seeded_generator(stable_ident("multicoil-phase", path.stem))
    z = smooth_phase(torch.from_numpy(np.ascontiguousarray(slices, np.float32))[:, None], g)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_fastmri_multicoil_h5(
        path, (z[:, 0] + 1j * z[:, 1]).numpy(), maps, noise_std=NOISE, seed=seed,
        attrs={SLICES_ATTR: np.asarray(index, np.int64)},
    )
    return path


def write_multicoil_study_data(out_dir: str | Path, size: int, *, files: int = 6) -> Path:
    """Fully sampled 8-coil fastMRI-style files of the MNI152 slices (module docstring):
    ``train/train00.h5`` ... (the training slices in ``files`` blocks) and ``val/valid.h5`` (the
    validation slices). Reuses the folder when its files exist."""
    folder = Path(out_dir)
    expect = [folder / "train" / f"train{j:02d}.h5" for j in range(files)] + [folder / "val" / "valid.h5"]
    if all(p.is_file() for p in expect):
        return folder
    train, valid = build_mni152_datasets(size=size)
    maps = birdcage_maps((size, size), COILS).numpy()
    tr = np.stack([train[i][0][0].numpy() for i in range(len(train))])
    tr_idx = [int(train.provenance(i)["slice"]) for i in range(len(train))]
    for j, block in enumerate(np.array_split(np.arange(len(tr)), files)):
        _write(expect[j], tr[block], [tr_idx[i] for i in block], maps, seed=j)
    va = np.stack([valid[i][0][0].numpy() for i in range(len(valid))])
    _write(expect[-1], va, [int(valid.provenance(i)["slice"]) for i in range(len(valid))], maps, seed=99)
    return folder


def tune_baselines(cfg: Config, *, slices: int = TUNE_SLICES) -> dict[str, Any]:
    """Tune CG-SENSE's Tikhonov weight and TV-SENSE's TV weight on ``slices`` training slices of
    the run ``cfg`` describes (its masks, seeded per slice; the files' noise-free reference)."""
    train, _ = mri_datasets_from_config(cfg)
    idx = np.linspace(0, len(train) - 1, min(slices, len(train))).round().astype(int).tolist()
    corr = MultiCoilUndersampling.from_config(cfg, (cfg.size, cfg.size), coils=train.coils)
    batches = []
    for start in range(0, len(idx), 8):
        part = idx[start : start + 8]
        batch, seeds = collate([train[i] for i in part])  # fully sampled coil acquisitions
        pair = corr.validation_pair(batch, seeds)
        ref = torch.from_numpy(np.stack([train.reference(i) for i in part]))
        batches.append((pair.acq, ref))
    tv, tv_table = tune_sense_lambda(batches, TV_LAMS, method="tv", iters=TV_ITERS)
    tik, tik_table = tune_sense_lambda(batches, TIKHONOV_LAMS, method="tikhonov", iters=SENSE_ITERS)
    return {
        "tv_lam": tv, "sense_lam": tik, "tv_table": tv_table, "sense_table": tik_table, "slices": len(idx)
    }


def _speed(out_dir: Path) -> dict[str, Any]:
    """Seconds of ``Reconstructor.multicoil`` on a 16-coil 320 x 320 x 30 fastMRI-style file with
    an equispaced 4x mask (the untrained network: the cost does not depend on the weights)."""
    path = out_dir / "speed_16coil_320.h5"
    if not path.is_file():
        rng = np.random.default_rng(0)
        imgs = rng.random((30, 320, 320)).astype(np.float32)
        cols = np.zeros(320, np.float32)
        cols[::4] = 1
        cols[160 - 13 : 160 + 13] = 1
        maps = birdcage_maps((320, 320), 16).numpy()
        write_fastmri_multicoil_h5(path, imgs, maps, mask=cols, reference=False)
    return {"file": path.name, "shape": [30, 16, 320, 320]}


def bench_multicoil(
    *,
    quick: bool = False,
    out_dir: str | Path = "results",
    device: str = "auto",
    steps: int | None = None,
    seed: int = 0,
    dc: str = "prox",
) -> dict[str, Any]:
    """Write the data, train (or reuse) the runs, tune the baselines, evaluate, and time
    ``reconstruct`` (module docstring). ``quick``: 64 x 64 slices and 150 steps; ``dc``: the
    networks' data consistency (``"replace"`` for the exact per-coil replacement)."""
    size = 64 if quick else 128
    steps = steps or (150 if quick else int(resolve_config(Config(preset="cpu"))[0].max_steps))
    name = ("multicoil_quick_runs" if quick else "multicoil_runs") + (f"_seed{seed}" if seed else "")
    root = Path(out_dir) / name
    data = write_multicoil_study_data(root / "data", size)
    rows: dict[str, Any] = {}
    for label, accel, center, with_n2c in MASKS:
        base = Config(
            dataset="kspace", data_dir=str(data), preset="cpu", size=size, max_steps=steps,
            steps_per_epoch=max(steps // 4, 1), seed=seed, device=device, quiet=True, tensorboard=False,
            density="lines_lattice", acceleration=accel, center_fraction=center, augment=False, dc=dc,
        )
        tuned = tune_baselines(base)
        runs = {}
        for name, target in (("N2N", "noisy"), ("N2C", "clean")):
            if target == "clean" and not with_n2c:
                continue
            cfg = base.replace(target=target, out=str(root / label.replace(" ", "_") / name))
            runs[name] = (cfg, train_or_reuse(cfg))
        ckpts = [Path(c.out) / "checkpoints" / "last.pt" for c, _ in runs.values()]
        evs = {}
        for output in OUTPUTS:  # the same slices, masks and outputs in both conventions
            evs[output] = evaluate_mri(ckpts, device=device, progress=False, plain_zero_filled=True,
                                       tv_lam=tuned["tv_lam"], sense_lam=tuned["sense_lam"],
                                       tv_iters=TV_ITERS, output=output)
            folder = "evaluation" if output == "rss" else f"evaluation_{output}"
            write_evaluation(evs[output], root / label.replace(" ", "_") / folder)
        ev = evs["rss"]
        rows[label] = {
            "acceleration": accel,
            "summary": ev["summary"],
            "summary_sense": evs["sense"]["summary"],
            "markdown": evaluation_markdown(ev),
            "markdown_sense": evaluation_markdown(evs["sense"]),
            "train_seconds": {k: s.get("train_seconds") for k, (_, s) in runs.items()},
            "tuned": tuned,
        }
    speed = _speed(root)
    n2n_4x = root / "equispaced_4x" / "N2N" / "checkpoints" / "last.pt"
    rec = Reconstructor.from_checkpoint(n2n_4x, device=device)
    mc = read_raw(root / speed["file"])
    t0 = time.perf_counter()
    rec.multicoil(mc)
    speed["seconds"] = time.perf_counter() - t0
    s4 = {k: v["psnr_mean"] for k, v in rows["equispaced 4x"]["summary"].items()}
    sense4 = rows["equispaced 4x"]["summary_sense"]
    o4 = {k: v.get("psnr_object_mean", v["psnr_mean"]) for k, v in sense4.items()}
    goals = {
        "4x_n2n_2dB_above_best_sense_baseline": s4["N2N"] - max(s4["CG-SENSE"], s4["TV-SENSE"]) >= 2.0,
        "4x_n2n_above_best_sense_baseline_on_the_object": o4["N2N"] > max(o4["CG-SENSE"], o4["TV-SENSE"]),
        "4x_n2n_within_0.5dB_of_n2c": abs(s4["N2N"] - s4["N2C"]) <= 0.5,
        "reconstruct_16coil_320x320x30_under_30s": speed["seconds"] < 30.0,
    }
    settings = {"size": size, "steps": steps, "coils": COILS, "noise_std": NOISE, "seed": seed, "dc": dc}
    settings["quick"] = quick
    return {"settings": settings, "rows": rows, "speed": speed, "goals": goals}


def _cell(s: dict[str, float]) -> str:
    obj = f" ({s['psnr_object_mean']:.2f})" if "psnr_object_mean" in s else ""
    return f"{s['psnr_mean']:.2f} / {s['ssim_mean']:.3f}{obj}"


def multicoil_markdown(result: dict[str, Any]) -> str:
    """One table per output convention (a row per mask, PSNR / SSIM per method), the speed row
    and the goals (scored in the default convention, ``rss``)."""
    st = result["settings"]
    methods = ["zero-filled", PLAIN, "CG-SENSE", "TV-SENSE", "N2N", "N2C"]
    lines = [
        f"Multi-coil study: {st['coils']} birdcage coils, complex MNI152 slices (smooth random "
        f"phase, k-space noise {st['noise_std']} of the peak per coil), {st['size']}x{st['size']}, "
        f"{st['steps']} steps, seed {st['seed']}, networks with `--dc {st.get('dc', 'replace')}`. PSNR dB / "
        f"SSIM of the magnitude against the noise-free root-sum-of-squares image (per slice, mean); "
        f"`{PLAIN}` is the RSS of the zero-filled coils; the baselines' weights (Tikhonov / TV) were "
        f"tuned on training slices. Every other method is scored as `mri-n2n reconstruct` writes it. "
        f"In brackets: the PSNR over the object alone (reference above 5 % of its maximum), which the "
        f"measured background noise does not dominate.",
    ]
    titles = {
        "summary": "`--multicoil-output rss` (default; fastMRI's): the RSS of the coil images with the "
        "measurements kept on the measured bins",
        "summary_sense": "`--multicoil-output sense`: the SENSE image on the maps' support, the RSS of the "
        "data-consistent coils outside it",
    }
    for key, title in titles.items():
        if not any(key in row for row in result["rows"].values()):
            continue
        lines += [
            "",
            title + ":",
            "",
            "| mask | " + " | ".join(methods) + " | weights (Tikhonov / TV) | training s (N2N) |",
            "|---|" + "---|" * len(methods) + "---|---|",
        ]
        for label, row in result["rows"].items():
            s = row.get(key, {})
            cells = [_cell(s[m]) if m in s else "-" for m in methods]
            secs = row["train_seconds"].get("N2N") or 0
            t = row.get("tuned", {})
            lams = f"{t.get('sense_lam', 0):g} / {t.get('tv_lam', 0):g}"
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {lams} | {secs:.0f} |")
    sp = result["speed"]
    lines += ["", f"`reconstruct` of a 16-coil 320x320x30 volume: {sp['seconds']:.1f} s.", "",
              "| goal | met |", "|---|---|"]
    lines += [f"| {k} | {'yes' if v else 'NO'} |" for k, v in result["goals"].items()]
    return "\n".join(lines)
