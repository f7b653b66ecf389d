"""A single-coil Cartesian study: 1-D line masks on complex images made from real anatomy.

Data: the embedded MNI152 slices, each given a random smooth phase (:func:`~mri_n2n.corruptions.
mri.smooth_phase`, seeded per slice for evaluation) and complex Gaussian k-space noise of standard
deviation :data:`NOISE` relative to the normalised peak (peak SNR 50): one noisy acquisition per
slice, as a scanner gives. Masks: fastMRI's ``equispaced`` (``lines_lattice``: every R-th line
from a random offset, plus the centre) and ``random`` lines at 4x (8 % centre) and 8x (4 %
centre), whole phase-encode columns.

Methods on the same validation slices, masks and noise: zero-filled (``1/p`` compensated, the
network's input, and without compensation, the usual baseline; the goal uses the better),
CS-TV (complex, its weight tuned on training slices), Noise2Noise and Noise2Clean with the
default CPU model (the unrolled network, k-space loss, augmentation) trained with the same
budget and seed for each mask (Noise2Clean for the 4x masks only, to keep the CPU budget).
Finished runs are reused, so the study can be resumed or its runs trained in parallel.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..baselines import DEFAULT_LAM_GRID, tune_tv_lambda, tv_reconstruct
from ..config import Config, resolve_config
from ..corruptions import MRIUndersampling, seeded_generator
from ..corruptions.mri import smooth_phase
from ..data import center_pad_crop
from ..data.datasets import mri_datasets_from_config
from ..data.measured import crop_readout
from ..data.synthetic import write_fastmri_h5
from ..evaluation import PLAIN, evaluate_mri, evaluation_markdown, write_evaluation
from ..io import read_kspace_input
from ..masks import make_family
from ..metrics import volume_metrics
from ..reconstruction import Reconstructor
from ..seeding import stable_ident
from .generalization import load_real_volume, real_volumes
from .runs import train_or_reuse

__all__ = [
    "MASKS",
    "NOISE",
    "cartesian_configs",
    "bench_cartesian",
    "cartesian_markdown",
    "write_fastmri_style",
    "bench_fastmri_style",
    "fastmri_style_markdown",
]

#: (label, family, acceleration, centre fraction, train Noise2Clean too)
MASKS = (
    ("equispaced 4x", "lines_lattice", 4.0, 0.08, True),
    ("random 4x", "lines_random", 4.0, 0.08, True),
    ("equispaced 8x", "lines_lattice", 8.0, 0.04, False),
    ("random 8x", "lines_random", 8.0, 0.04, False),
)
#: Runs per mask: method -> ``--target`` (N2N and N2C at 4x, SSDU and Noisier2Noise at
#: :data:`SPLIT_MASKS`, Noise2Noise only at 8x). SSDU and Noisier2Noise learn from one
#: acquisition per slice.
TARGETS = (("N2N", "noisy"), ("N2C", "clean"), ("SSDU", "ssdu"), ("Noisier2Noise", "noisier2noise"))
#: Masks with the single-acquisition runs (the study's main mask; each run is another 6 to 10
#: minutes on 2 cores).
SPLIT_MASKS = ("equispaced 4x",)
#: k-space noise standard deviation relative to the normalised image peak (peak SNR 50).
NOISE = 0.02
#: CS-TV weights tried (noisy line-masked data want stronger weights than the 2-D study's grid).
LAM_GRID = (*DEFAULT_LAM_GRID, 3e-2, 1e-1)


def _slug(label: str) -> str:
    return label.replace(" ", "_")


def cartesian_configs(
    *,
    quick: bool = False,
    out_dir: str | Path = "results",
    device: str = "auto",
    steps: int | None = None,
    size: int | None = None,
    seed: int = 0,
) -> dict[str, Config]:
    """The study's training runs: ``"<mask>/<N2N|N2C>"`` -> config (its ``out`` is the run folder)."""
    size = size or (64 if quick else 128)
    steps = steps or (300 if quick else int(resolve_config(Config(preset="cpu"))[0].max_steps))
    name = ("cartesian_quick_runs" if quick else "cartesian_runs") + (f"_seed{seed}" if seed else "")
    runs = Path(out_dir) / name
    out: dict[str, Config] = {}
    for label, family, accel, center, with_n2c in MASKS:
        base = Config(
            dataset="mni152",
            preset="cpu",
            size=size,
            max_steps=steps,
            steps_per_epoch=max(steps // 4, 1),
            seed=seed,
            device=device,
            quiet=True,
            tensorboard=False,
            complex=True,
            density=family,
            acceleration=accel,
            center_fraction=center,
            kspace_noise=NOISE,
        )
        for name, target in TARGETS:
            if target != "noisy" and not with_n2c:
                continue
            if target in ("ssdu", "noisier2noise") and label not in SPLIT_MASKS:
                continue
            out[f"{label}/{name}"] = base.replace(target=target, out=str(runs / _slug(label) / name))
    return out


def bench_cartesian(
    *,
    quick: bool = False,
    out_dir: str | Path = "results",
    device: str = "auto",
    steps: int | None = None,
    size: int | None = None,
    seed: int = 0,
    tune_slices: int = 24,
) -> dict[str, Any]:
    """Train (or reuse) the study's runs and evaluate every mask (see the module docstring).

    Returns ``{"settings", "rows": {mask: {...}}, "goals"}``; each mask's row holds the
    evaluation summary (paper and fastMRI conventions), the sampled fraction, the tuned CS-TV
    weight and the training times.
    """
    cfgs = cartesian_configs(quick=quick, out_dir=out_dir, device=device, steps=steps, size=size, seed=seed)
    summaries = {key: train_or_reuse(cfg) for key, cfg in cfgs.items()}
    rows: dict[str, Any] = {}
    for label, *_ in MASKS:
        keys = [k for k in cfgs if k.startswith(label + "/")]
        cfg = resolve_config(cfgs[keys[0]])[0]
        train_set, _ = mri_datasets_from_config(cfg)
        n = min(tune_slices, len(train_set))
        step = max(len(train_set) // n, 1)
        items = [train_set[i] for i in range(0, step * n, step)]
        clean = torch.stack([it[0] for it in items]).float()
        corruption = MRIUndersampling.from_config(cfg, (cfg.size, cfg.size))
        seeds = torch.tensor([it[1] for it in items])
        lam, _ = tune_tv_lambda(clean, corruption, LAM_GRID, seeds=seeds)
        ckpts = [Path(cfgs[k].out) / "checkpoints" / "last.pt" for k in keys]
        ev = evaluate_mri(ckpts, tv_lam=lam, device=device, progress=False, plain_zero_filled=True)
        write_evaluation(ev, Path(cfgs[keys[0]].out).parent / "evaluation")
        rows[label] = {
            "family": cfg.density,
            "acceleration": cfg.acceleration,
            "center_fraction": cfg.center_fraction,
            "sampled_fraction": corruption.family.fraction,
            "tv_lam": lam,
            "summary": ev["summary"],
            "methods": ev["methods"],
            "markdown": evaluation_markdown(ev),
            "train_seconds": {k.split("/")[1]: summaries[k].get("train_seconds") for k in keys},
        }
    eq = {k: v["psnr_mean"] for k, v in rows["equispaced 4x"]["summary"].items()}
    goals = {
        "equispaced_4x_n2n_3dB_over_zero_filled": eq["N2N"] - max(eq["zero-filled"], eq[PLAIN]) >= 3.0,
        "equispaced_4x_n2n_at_or_above_cs_tv": eq["N2N"] >= eq["CS-TV"],
        "equispaced_4x_n2n_within_0.3dB_of_n2c": abs(eq["N2N"] - eq["N2C"]) <= 0.3,
    }
    for label in ("equispaced 4x", "random 4x"):
        got = {k: v["psnr_mean"] for k, v in rows[label]["summary"].items()}
        for method in ("SSDU", "Noisier2Noise"):
            if method in got:
                key = f"{label.replace(' ', '_')}_{method.lower()}_within_1.5dB_of_n2c"
                goals[key] = got["N2C"] - got[method] <= 1.5
    eq_key = "equispaced 4x"
    files = write_fastmri_style(Path(cfgs[f"{eq_key}/N2N"].out).parent.parent / "fastmri_style")
    fastmri = bench_fastmri_style(
        Path(cfgs[f"{eq_key}/N2N"].out) / "checkpoints" / "last.pt",
        files,
        tv_lam=rows[eq_key]["tv_lam"],
        device=device,
    )
    first = resolve_config(next(iter(cfgs.values())))[0]
    return {
        "fastmri_style": fastmri,
        "settings": {
            "size": first.size,
            "steps": first.max_steps,
            "model": first.model,
            "loss": first.loss,
            "noise_std": NOISE,
            "seed": seed,
            "quick": quick,
        },
        "rows": rows,
        "goals": goals,
    }


def cartesian_markdown(result: dict[str, Any]) -> str:
    """One table: a row per mask, PSNR / SSIM (paper convention, mean over slices) per method."""
    st = result["settings"]
    methods = ["zero-filled", PLAIN, "CS-TV", "N2N", "N2C", "SSDU", "Noisier2Noise"]
    lines = [
        f"Single-coil Cartesian study: complex MNI152 slices (smooth random phase, k-space noise "
        f"{st['noise_std']} of the peak), {st['size']}x{st['size']}, model `{st['model']}`, loss "
        f"`{st['loss']}`, {st['steps']} steps, seed {st['seed']}. PSNR dB / SSIM of the magnitude "
        "(peak 1, per slice, mean); fastMRI volume PSNR in the JSON.",
        "",
        "| mask | sampled | " + " | ".join(methods) + " | CS-TV weight | training s (N2N) |",
        "|---|---|" + "---|" * len(methods) + "---|---|",
    ]
    for label, row in result["rows"].items():
        s = row["summary"]
        cells = [f"{s[m]['psnr_mean']:.2f} / {s[m]['ssim_mean']:.3f}" if m in s else "-" for m in methods]
        secs = row["train_seconds"].get("N2N")
        lines.append(
            f"| {label} ({row['family']}) | {row['sampled_fraction'] * 100:.1f} % | "
            + " | ".join(cells)
            + f" | {row['tv_lam']:g} | {secs:.0f} |"
        )
    fm = result.get("fastmri_style")
    if fm:
        lines += [
            "",
            "`mri-n2n reconstruct` on prospectively undersampled fastMRI-style files made from real "
            "scans never seen in training (equispaced 4x mask stored in the file, 2x readout "
            "oversampling, the same noise), with the equispaced 4x N2N model; fastMRI volume "
            "PSNR dB / SSIM against `reconstruction_esc`:",
            "",
            fastmri_style_markdown(fm),
        ]
    lines += ["", "| goal | met |", "|---|---|"]
    lines += [f"| {k} | {'yes' if v else 'NO'} |" for k, v in result["goals"].items()]
    return "\n".join(lines)


def write_fastmri_style(
    out_dir: str | Path,
    *,
    family: str = "lines_lattice",
    acceleration: float = 4.0,
    center_fraction: float = 0.08,
) -> list[Path]:
    """Prospectively undersampled fastMRI-style single-coil files made from the real scans of
    :func:`~mri_n2n.bench.generalization.real_volumes` (never seen in training): each volume is
    normalised to peak 1, given a seeded smooth phase, its readout oversampled 2x (zero-padded
    rows, an ISMRMRD header with 2H x W encoded and H x W reconstruction matrices), k-space noise
    :data:`NOISE` added, and one mask of ``family`` over the columns stored as the ``mask``
    attribute, as fastMRI's test files have it; ``reconstruction_esc`` is the noise-free magnitude.
    """
    paths = []
    for vol in real_volumes():
        arr = load_real_volume(vol)
        slices = np.moveaxis(arr, 2, 0)
        slices = slices[np.abs(slices).reshape(len(slices), -1).max(1) > 0] / float(np.abs(arr).max())
        g = seeded_generator(stable_ident("fastmri-style", vol.name))
        z = smooth_phase(torch.from_numpy(np.ascontiguousarray(slices, np.float32))[:, None], g)
        images = (z[:, 0] + 1j * z[:, 1]).numpy()
        h, w = images.shape[1:]
        fam = make_family(family, (2 * h, w), acceleration=acceleration, center_fraction=center_fraction)
        cols = fam.sample(generator=g)[0].numpy()
        path = Path(out_dir) / f"{vol.name}.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = stable_ident("fastmri-style-noise", vol.name)
        write_fastmri_h5(
            path,
            images,
            mask=cols.astype(np.float32),
            mask_attribute=True,
            oversample=2,
            noise_std=NOISE,
            seed=seed,
        )
        paths.append(path)
    return paths


def _tv_best(y: torch.Tensor, mask: torch.Tensor, kin, lams: tuple[float, ...], iters: int):
    """CS-TV (complex) on readout-cropped measurements: metrics and weight of the best weight in
    ``lams``, the grid extended by half decades past an edge winner."""
    scores: dict[float, dict[str, float]] = {}

    def run(lam: float) -> None:
        tv = tv_reconstruct(y, mask, lam=lam, iters=iters, real=False).abs().numpy()
        tv = center_pad_crop(tv, kin.recon_shape)
        scores[lam] = volume_metrics(tv, kin.reference, data_range=kin.max_value)

    for lam in lams:
        run(float(lam))
    for _ in range(4):
        order = sorted(scores)
        best = max(order, key=lambda v: scores[v]["psnr"])
        if best not in (order[0], order[-1]):
            break
        run(best / np.sqrt(10.0) if best == order[0] else best * np.sqrt(10.0))
    best = max(scores, key=lambda v: scores[v]["psnr"])
    return scores[best], best


def bench_fastmri_style(
    checkpoint: str | Path,
    files: list[Path],
    *,
    tv_lam: float | None = None,
    device: str = "cpu",
    tv_iters: int = 100,
    ensemble: bool = False,
    adapt: int = 0,
) -> dict[str, Any]:
    """``reconstruct`` on fastMRI-style files (the path ``mri-n2n reconstruct`` takes): fastMRI
    volume PSNR/SSIM against ``reconstruction_esc`` with the file's ``max``, for zero-filling
    (with and without ``1/p``), CS-TV (complex; weight ``tv_lam``, or ``None``: the best of
    :data:`~mri_n2n.bench.generalization.CS_TV_LAMS` per file against the reference, an oracle)
    on the same readout-cropped measurements, and the checkpoint (``N2N``; with ``ensemble`` also
    ``N2N ens``, with ``adapt`` steps also ``N2N adapted`` and, with both, ``N2N adapted ens``;
    each with its seconds and the law the file's mask was read as)."""
    from .generalization import CS_TV_LAMS

    variants = [("N2N", False, 0)] + ([("N2N ens", True, 0)] if ensemble else [])
    if adapt:
        variants += [("N2N adapted", False, adapt)] + ([("N2N adapted ens", True, adapt)] if ensemble else [])
    recs = {
        name: Reconstructor.from_checkpoint(checkpoint, device=device, ensemble=ens, adapt=steps)
        for name, ens, steps in variants
    }
    rows = []
    for path in files:
        kin = read_kspace_input(path)
        row: dict[str, Any] = {"file": path.name, "shape": list(kin.kspace.shape)}
        for i, (name, rec) in enumerate(recs.items()):
            t0 = time.perf_counter()
            r = rec.kspace_input(kin)
            row[f"{name}/seconds"] = time.perf_counter() - t0
            row[f"{name}/psnr"], row[f"{name}/ssim"] = r.metrics["psnr"], r.metrics["ssim"]
            if rec.adapt_steps and rec.last_adaptation is not None:
                row[f"{name}/adapt_steps"] = rec.last_adaptation.steps
            if i == 0:
                row["sampled_fraction"] = r.sampled_fraction
                row["mask_law"] = r.mask_law
                row["zero-filled/psnr"], row["zero-filled/ssim"] = (
                    r.metrics["psnr_zero_filled"], r.metrics["ssim_zero_filled"]
                )
                row[f"{PLAIN}/psnr"] = r.metrics["psnr_zero_filled_plain"]
                row[f"{PLAIN}/ssim"] = r.metrics["ssim_zero_filled_plain"]
        k, m = crop_readout(kin.kspace, kin.mask, kin.recon_shape[0])
        y = torch.from_numpy(np.ascontiguousarray(k))
        mask = torch.from_numpy(np.ascontiguousarray(m))
        if tv_lam is None:
            tv_m, lam = _tv_best(y, mask, kin, CS_TV_LAMS, tv_iters)
        else:
            lam = float(tv_lam)
            tv = tv_reconstruct(y, mask, lam=lam, iters=tv_iters, real=False).abs().numpy()
            tv = center_pad_crop(tv, kin.recon_shape)
            tv_m = volume_metrics(tv, kin.reference, data_range=kin.max_value)
        row.update({"CS-TV/psnr": tv_m["psnr"], "CS-TV/ssim": tv_m["ssim"], "CS-TV/lam": lam})
        rows.append(row)
    methods = ["zero-filled", PLAIN, "CS-TV", *recs]
    mean = {m: {k: float(np.mean([r[f"{m}/{k}"] for r in rows])) for k in ("psnr", "ssim")} for m in methods}
    return {"checkpoint": str(checkpoint), "rows": rows, "methods": methods, "mean": mean,
            "tv_lam": "per file (oracle)" if tv_lam is None else tv_lam}


def fastmri_style_markdown(res: dict[str, Any]) -> str:
    """The measured-file table: a row per file (PSNR dB / SSIM per method), the mean, the CS-TV
    weights and the law each file's mask was read as."""
    methods = res.get("methods") or ["zero-filled", PLAIN, "CS-TV", "N2N"]
    lines = ["| file | sampled | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for row in res["rows"]:
        cells = [f"{row[f'{c}/psnr']:.2f} / {row[f'{c}/ssim']:.3f}" for c in methods]
        lines.append(f"| {row['file']} | {row['sampled_fraction'] * 100:.1f} % | " + " | ".join(cells) + " |")
    if "mean" in res:
        cells = [f"**{res['mean'][m]['psnr']:.2f} / {res['mean'][m]['ssim']:.3f}**" for m in methods]
        lines.append("| mean | | " + " | ".join(cells) + " |")
    lams = ", ".join(f"{r['file']} {r['CS-TV/lam']:g}" for r in res["rows"] if "CS-TV/lam" in r)
    laws = ", ".join(f"{r['file']} {r['mask_law'].get('source', '?')}" for r in res["rows"])
    lines += ["", f"CS-TV weights: {lams}. Mask laws: {laws}."]
    timed = [m for m in methods if all(f"{m}/seconds" in r for r in res["rows"])]
    if timed:
        lines += ["", "| seconds | " + " | ".join(timed) + " |", "|---|" + "---|" * len(timed)]
        for r in res["rows"]:
            lines.append(f"| {r['file']} | " + " | ".join(f"{r[f'{m}/seconds']:.1f}" for m in timed) + " |")
    return "\n".join(lines)


