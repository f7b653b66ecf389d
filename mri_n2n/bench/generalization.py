"""Generalisation: MRI models trained on MNI152, evaluated on real scans they never saw.

Real volumes that install offline with the project's own dependencies (no download):

==================  =====================================  ==========  ===============  ==============
name                source                                 contrast    matrix           voxel (mm)
==================  =====================================  ==========  ===============  ==============
``epi-bold``        nibabel test data ``example4d.nii.gz``  T2* EPI     128 x 96 x 24    2 x 2 x 2.2
``t1-small``        nibabel test data ``anatomical.nii``    T1          33 x 41 x 25     2 x 2 x 2
``mr-dicom``        pydicom test file ``MR_small.dcm``      T2 SE       64 x 64 x 1      0.31 x 0.31
==================  =====================================  ==========  ===============  ==============

nibabel's and pydicom's test data are distributed with those packages under their MIT licences.
Every volume is studied retrospectively, as ``mri-n2n reconstruct --simulate`` does: each slice
along axis 2 is undersampled with the checkpoint's density at ``fraction`` (seeded per slice),
reconstructed, and compared with the volume in the fastMRI volume convention (PSNR and SSIM with
the volume's maximum as the range). Zero-filling and CS-TV use the *same* masks; CS-TV's weight is
tuned per volume against the reference (an oracle choice: the best CS-TV can do on that volume).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel
import numpy as np
import pydicom.data
import torch

from ..baselines import DEFAULT_LAM_GRID, tv_reconstruct
from ..data import volume_scale
from ..fft import fft2c
from ..io import load_volume
from ..metrics import volume_metrics
from ..reconstruction import Reconstructor
from ..reconstruction.engine import simulated_masks

__all__ = [
    "RealVolume",
    "real_volumes",
    "load_real_volume",
    "bench_generalization",
    "generalization_markdown",
]


@dataclass(frozen=True)
class RealVolume:
    """A real scan shipped inside an installed package."""

    name: str
    path: str
    source: str
    contrast: str
    frame: int | None = None  # 4-D files: the volume to take


def real_volumes() -> list[RealVolume]:
    """The real scans available offline (see the module docstring); missing files are skipped."""
    nib_data = Path(nibabel.__file__).parent / "tests" / "data"
    out = [
        RealVolume("epi-bold", str(nib_data / "example4d.nii.gz"), "nibabel test data", "T2* EPI", frame=0),
        RealVolume("t1-small", str(nib_data / "anatomical.nii"), "nibabel test data", "T1"),
    ]
    try:
        dcm = pydicom.data.get_testdata_file("MR_small.dcm")
        out.append(RealVolume("mr-dicom", dcm, "pydicom test file", "T2 SE"))
    except Exception:  # pragma: no cover - a pydicom without its test files
        pass
    return [v for v in out if v.path and os.path.isfile(v.path)]


def load_real_volume(vol: RealVolume) -> np.ndarray:
    """The volume's float32 array (the chosen frame of a 4-D file)."""
    if vol.frame is not None:
        img = nibabel.load(vol.path)
        return np.asarray(img.dataobj[..., vol.frame], dtype=np.float32)
    return np.asarray(load_volume(vol.path).array, dtype=np.float32)


def _cs_tv(
    arr: np.ndarray, rec: Reconstructor, fraction: float, seed: int, lams: Sequence[float], iters: int
) -> tuple[dict[str, float], float, float]:
    """CS-TV on the study's masks with the best weight for this volume: metrics, weight, seconds."""
    scale = volume_scale(arr, rec.normalize)
    slices = torch.from_numpy(np.ascontiguousarray(np.moveaxis(arr, 2, 0))) / scale
    n, h, w = slices.shape
    masks = simulated_masks(rec.corruption((h, w), fraction), range(n), seed)
    y = fft2c(slices) * masks
    best: tuple[dict[str, float], float] | None = None
    t0 = time.perf_counter()
    for lam in lams:
        out = tv_reconstruct(y, masks, lam=float(lam), iters=iters, rho=30.0 * lam)
        m = volume_metrics(out.abs().reshape(n, h, w) * scale, np.moveaxis(arr, 2, 0))
        if best is None or m["psnr"] > best[0]["psnr"]:
            best = (m, float(lam))
    assert best is not None
    return best[0], best[1], time.perf_counter() - t0


def bench_generalization(
    checkpoints: dict[str, str | os.PathLike],
    *,
    fraction: float = 0.1,
    seed: int = 0,
    tv_iters: int = 100,
    lams: Sequence[float] = DEFAULT_LAM_GRID,
    device: str = "cpu",
    volumes: Sequence[RealVolume] | None = None,
    ensemble: bool = False,
    adapt: int = 0,
) -> dict[str, Any]:
    """Evaluate checkpoints, zero-filling and per-volume-tuned CS-TV on the real volumes.

    Args:
        checkpoints: method name -> MRI checkpoint (e.g. ``{"N2N unrolled": "runs/x/best.pt"}``).
        fraction: mean sampling density of the study.
        seed: mask seed (masks depend on the seed and the slice only).
        tv_iters: CS-TV solver iterations.
        lams: CS-TV weights tried per volume.
        device: where the networks run.
        volumes: the volumes (default :func:`real_volumes`).
        ensemble: also score each checkpoint's geometric self-ensemble, as ``"<name> ens"``
            (:class:`~mri_n2n.models.ensemble.SelfEnsemble`).
        adapt: also score each checkpoint adapted to every volume's own measurements by this
            many self-supervised steps, as ``"<name> adapted"`` (and ``"<name> adapted ens"``
            with ``ensemble``; :func:`~mri_n2n.reconstruction.adapt.adapt_model`).

    Returns:
        ``{"rows": [...], "methods": [...], "mean": {method: {"psnr", "ssim"}}, "fraction",
        "seed"}``; a row per volume holds its shape, source and each method's PSNR and SSIM.
    """
    if not checkpoints:
        raise ValueError("give at least one checkpoint")
    recs = {}
    for name, p in checkpoints.items():
        variants = [("", False, 0)] + ([(" ens", True, 0)] if ensemble else [])
        if adapt:
            variants += [(" adapted", False, adapt)] + ([(" adapted ens", True, adapt)] if ensemble else [])
        for tag, ens, steps in variants:
            recs[name + tag] = Reconstructor.from_checkpoint(p, device=device, ensemble=ens, adapt=steps)
    first = next(iter(recs.values()))
    rows: list[dict[str, Any]] = []
    for vol in volumes if volumes is not None else real_volumes():
        arr = load_real_volume(vol)
        row: dict[str, Any] = {"volume": vol.name, "source": vol.source, "contrast": vol.contrast}
        row["shape"] = list(arr.shape)
        for i, (name, rec) in enumerate(recs.items()):
            t0 = time.perf_counter()
            study = rec.simulate(arr, fraction, seed=seed, axis=2)
            row[f"{name}/seconds"] = time.perf_counter() - t0
            if i == 0:
                row["zero-filled/psnr"] = study.metrics["psnr_zero_filled"]
                row["zero-filled/ssim"] = study.metrics["ssim_zero_filled"]
            row[f"{name}/psnr"] = study.metrics["psnr"]
            row[f"{name}/ssim"] = study.metrics["ssim"]
        m, lam, seconds = _cs_tv(arr, first, fraction, seed, lams, tv_iters)
        row.update({"CS-TV/psnr": m["psnr"], "CS-TV/ssim": m["ssim"], "CS-TV/lam": lam})
        row["CS-TV/seconds"] = seconds
        rows.append(row)
    methods = ["zero-filled", "CS-TV", *recs]
    mean = {k: {s: float(np.mean([r[f"{k}/{s}"] for r in rows])) for s in ("psnr", "ssim")} for k in methods}
    return {"rows": rows, "methods": methods, "mean": mean, "fraction": fraction, "seed": seed}


def generalization_markdown(res: dict[str, Any]) -> str:
    """The table: one row per real volume (PSNR dB / SSIM per method), then the means."""
    methods = res["methods"]
    head = "| volume | contrast | shape | " + " | ".join(methods) + " |"
    lines = [head, "|" + "---|" * (3 + len(methods))]
    for r in res["rows"]:
        cells = [f"{r[f'{m}/psnr']:.2f} / {r[f'{m}/ssim']:.3f}" for m in methods]
        shape = "x".join(str(s) for s in r["shape"])
        lines.append(f"| {r['volume']} | {r['contrast']} | {shape} | " + " | ".join(cells) + " |")
    cells = [f"**{res['mean'][m]['psnr']:.2f} / {res['mean'][m]['ssim']:.3f}**" for m in methods]
    lines.append("| mean | | | " + " | ".join(cells) + " |")
    return "\n".join(lines)
