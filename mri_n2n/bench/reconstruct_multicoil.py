"""Multi-coil reconstruction speed and the quality cost of each speed option
(``mri-n2n bench reconstruct --multicoil``).

The volume: a fastMRI-style multi-coil HDF5 file of ``slices`` phantom slices
(:func:`~mri_n2n.data.synthetic.phantom_volume`, peak 1) with a seeded smooth phase, seen by
``coils`` birdcage coils (:func:`mri_n2n.coils.birdcage_maps`), complex k-space noise of
:data:`NOISE` per coil, undersampled by an equispaced 4x line mask with an 8 % fully sampled
centre (the multi-coil study's 4x mask), no reference inside the file (so the timed call does
not compute metrics); the noise-free root-sum-of-squares image is kept beside it
(``<name>_reference.npy``) for the quality columns.

Timed: :meth:`Reconstructor.multicoil` on the file as :func:`~mri_n2n.io.raw.read_raw` returns it
(maps, zero-filled input, the network with its data consistency, the output image), once per
option of :data:`OPTIONS`, in order, after one untimed warm-up call of the full computation on
two slices. Quality: PSNR (dB, fastMRI's volume convention, range the reference's max) of each
option's image against the noise-free reference, and of each option's image against the full
computation's (how much the option changes the output). The network: ``checkpoint``, else the
multi-coil study's 4x Noise2Noise run when ``bench quality --only multicoil --quick`` has left
it under ``results/``, else an untrained network of the CPU preset with the proximal data
consistency (the same speed; its quality columns then only compare the options).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..coils import birdcage_maps
from ..config import Config, resolve_config
from ..corruptions import seeded_generator
from ..corruptions.mri import smooth_phase
from ..data.synthetic import phantom_volume
from ..data.synthetic_raw import write_fastmri_multicoil_h5
from ..io import atomic_path
from ..io.raw import read_raw
from ..metrics import volume_metrics
from ..models import build_model
from ..reconstruction import Reconstructor

__all__ = ["OPTIONS", "NOISE", "write_multicoil_speed_file", "bench_reconstruct_multicoil",
           "reconstruct_multicoil_markdown"]

#: Complex k-space noise per coil, relative to the image peak (as the multi-coil study).
NOISE = 0.01
#: The speed options timed, by name: keyword arguments of :meth:`Reconstructor.multicoil`.
OPTIONS: dict[str, dict[str, Any]] = {
    "full": {},
    "coil_maps=walsh": {"maps": {"method": "walsh"}},
    "cg_iters=4": {"cg_iters": 4},
    "cg_iters=3": {"cg_iters": 3},
    "virtual_coils=8": {"virtual_coils": 8},
    "virtual_coils=8, cg_iters=3": {"virtual_coils": 8, "cg_iters": 3},
}
#: The study's 4x run, used when no checkpoint is given and it exists.
STUDY_CHECKPOINT = Path("multicoil_quick_runs/equispaced_4x/N2N/checkpoints/last.pt")


def write_multicoil_speed_file(
    path: str | Path, *, slices: int = 30, coils: int = 16, size: int = 320, seed: int = 0
) -> tuple[Path, np.ndarray]:
    """Write (or reuse) the module docstring's volume; returns its path and the noise-free
    reference ``(slices, size, size)``."""
    path = Path(path)
    ref_path = path.with_name(path.stem + "_reference.npy")
    if path.is_file() and ref_path.is_file():
        return path, np.load(ref_path)
    mag = np.moveaxis(phantom_volume((size, size, slices), content=(0, slices), seed=seed, peak=1.0), 2, 0)
    x = smooth_phase(torch.from_numpy(np.ascontiguousarray(mag, np.float32))[:, None], seeded_generator(seed))
    images = torch.complex(x[:, 0], x[:, 1]).numpy()
    cols = np.zeros(size, np.float32)
    cols[::4] = 1
    centre = max(1, round(0.08 * size))
    cols[size // 2 - centre // 2 : size // 2 - centre // 2 + centre] = 1
    maps = birdcage_maps((size, size), coils).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_fastmri_multicoil_h5(path, images, maps, mask=cols, noise_std=NOISE, seed=seed, reference=False)
    ref = np.sqrt((np.abs(images[:, None] * maps[None]) ** 2).sum(1)).astype(np.float32)
    with atomic_path(ref_path) as tmp, open(tmp, "wb") as f:  # the reuse test trusts complete files
        np.save(f, ref)
    return path, ref


def _reconstructor(checkpoint: str | Path | None, results: Path, device: str, batch_size: int):
    ck = Path(checkpoint) if checkpoint is not None else results / STUDY_CHECKPOINT
    if ck.is_file():
        return Reconstructor.from_checkpoint(ck, device=device, batch_size=batch_size), str(ck)
    if checkpoint is not None:
        raise ValueError(f"{ck}: no such checkpoint")
    cfg, _ = resolve_config(Config(preset="cpu", dataset="kspace", dc="prox", density="lines_lattice",
                                   acceleration=4.0, center_fraction=0.08, complex=True))
    torch.manual_seed(0)
    model = build_model("unrolled", in_channels=2, out_channels=2, cascades=cfg.cascades,
                        width=cfg.cascade_width, depth=cfg.cascade_depth, dc="prox", cg_iters=cfg.cg_iters)
    rec = Reconstructor(model, cfg, device=device, batch_size=batch_size)
    return rec, "untrained cpu-preset network, --dc prox (speed only)"


def bench_reconstruct_multicoil(
    checkpoint: str | Path | None = None,
    *,
    results: str | Path = "results",
    slices: int = 30,
    coils: int = 16,
    size: int = 320,
    batch_size: int = 8,
    device: str = "cpu",
    options: dict[str, dict[str, Any]] | None = None,
    repeats: int = 3,
) -> dict[str, Any]:
    """Time ``reconstruct`` of the module docstring's volume with each speed option, ``repeats``
    rounds over the options; each option's time is the median of its rounds.

    Returns:
        ``{"shape", "coils", "checkpoint", "threads", "device", "batch_size", "read_seconds",
        "rows": [{"option", "seconds" (median), "seconds_all",
        "psnr", "ssim", "psnr_vs_full"}]}`` (PSNR in dB).
    """
    results = Path(results)
    path, ref = write_multicoil_speed_file(
        results / f"speed_{coils}coil_{size}x{slices}.h5", slices=slices, coils=coils, size=size
    )
    rec, label = _reconstructor(checkpoint, results, device, batch_size)
    t0 = time.perf_counter()
    mc = read_raw(path)
    read_seconds = time.perf_counter() - t0
    mask = mc.mask if mc.mask is None or mc.mask.shape[0] == 1 else mc.mask[:2]
    rec.multicoil(dataclasses.replace(mc, kspace=mc.kspace[:2], mask=mask))  # warm-up, untimed
    options = options or OPTIONS
    seconds: dict[str, list[float]] = {name: [] for name in options}
    images: dict[str, np.ndarray] = {}
    for _ in range(repeats):  # rounds over the options: a drift of the machine hits them alike
        for name, kw in options.items():
            t0 = time.perf_counter()
            image = rec.multicoil(mc, **kw).image
            seconds[name].append(time.perf_counter() - t0)
            images.setdefault(name, np.moveaxis(image, -1, 0))
    full = next(iter(images.values()))
    rows = []
    for name, vol in images.items():
        m = volume_metrics(vol, ref)
        rows.append({"option": name, "seconds": statistics.median(seconds[name]),
                     "seconds_all": seconds[name], "psnr": m["psnr"], "ssim": m["ssim"],
                     "psnr_vs_full": volume_metrics(vol, full, data_range=float(ref.max()))["psnr"]})
    return {
        "shape": [slices, coils, size, size],
        "coils": coils,
        "checkpoint": label,
        "threads": torch.get_num_threads(),
        "device": str(rec.device),
        "batch_size": batch_size,
        "read_seconds": read_seconds,
        "rows": rows,
    }


def reconstruct_multicoil_markdown(res: dict[str, Any]) -> str:
    """The result as a Markdown table and a note."""
    s, c, h, w = res["shape"]
    lines = [
        "| option | seconds (median; all rounds) | PSNR / SSIM vs noise-free RSS | PSNR vs the full "
        "computation |",
        "|---|---|---|---|",
    ]
    for r in res["rows"]:
        vs = "(reference)" if r["option"] == "full" else f"{r['psnr_vs_full']:.2f}"
        rounds = ", ".join(f"{t:.1f}" for t in r.get("seconds_all", [r["seconds"]]))
        cells = f"{r['seconds']:.1f} ({rounds}) | {r['psnr']:.2f} / {r['ssim']:.3f} | {vs}"
        lines.append(f"| {r['option']} | {cells} |")
    lines.append(
        f"\n`reconstruct` of a {c}-coil {h} x {w} x {s} fastMRI-style volume (equispaced 4x), "
        f"{res['threads']} threads on {res['device']}, batch {res['batch_size']}; "
        f"network: {res['checkpoint']}. Reading the file (`read_raw`, not in the times above): "
        f"{res.get('read_seconds', float('nan')):.1f} s."
    )
    return "\n".join(lines)
