"""Does the input pipeline keep the network busy at fastMRI scale? (``mri-n2n bench scale``)

**Data** (:func:`write_scale_data`, written once and reused while its manifest matches): a
fastMRI-shaped multi-coil brain set, ``train/`` with :data:`VOLUMES` volumes of :data:`SLICES`
slices (512 slices) and ``val/`` with :data:`VALID_VOLUMES`, each a fastMRI multi-coil HDF5 file
(:func:`~mri_n2n.data.synthetic_raw.write_fastmri_multicoil_h5`: ``kspace`` complex64
``(16, 16, 640, 320)``, 2x readout oversampling of a 320 x 320 image, the ISMRMRD header,
``reconstruction_rss``). Anatomy: slabs of the embedded MNI152 template, each volume its own
slab, slice spacing, in-plane rotation, scale, shift and left-right flip; a seeded smooth phase
per slice; birdcage coil maps with a per-volume coil radius; complex k-space noise
:data:`NOISE` of the image peak. ``--quick``: 2 + 1 volumes of 4 slices, 4 coils, 128 x 64
k-space (64 x 64 images).
The ``val/`` volumes are slabs of the same template as ``train/``: not held out by pixels, so
they serve speed and in-distribution comparisons, never quality claims about unseen anatomy.

**Measurements** (on the device at hand):

- *stages* of one item (median over slices, one process): reading the slice, the readout crop
  with its FFTs, the map estimation and reading the maps back from the disk cache;
- *loader*: slices/s of a :class:`torch.utils.data.DataLoader` over the training set as
  ``--dataset kspace`` builds it, with 0, 1 and 2 workers, the coil-maps cache **cold** (an empty
  disk cache: every item estimates its maps) and **warm** (the cache the cold pass filled; new
  dataset objects, so no process holds maps in memory). Blocks are interleaved (repetition, then
  workers, cold then warm) and the median block and the spread (min-max) are reported. The
  slices are read once before timing, so every block sees the files in the OS page cache;
- *steps*: slices/s of :meth:`~mri_n2n.training.Trainer.train_step` (multi-coil corruption,
  unrolled network with ``--dc prox``, k-space loss, backward, Adam) of the ``multicoil`` and
  ``multicoil-gpu`` presets on a batch already in memory, blocks interleaved, median; on a CPU
  the GPU preset runs with batch 1 (the rate per slice hardly depends on the batch there), and
  *peak memory* of one step: on CUDA ``torch.cuda.max_memory_allocated``; on a CPU the peak
  resident set (``VmHWM`` of ``/proc/self/status``, reset through ``/proc/self/clear_refs``
  after ``malloc_trim``) above the resident set before the step (``ru_maxrss`` where that is
  missing: then an upper bound);
- *ratio* per preset: the warm loader rate with the preset's workers (more workers than
  measured: extrapolated as that many times the 1-worker rate, i.e. one free core per worker,
  which a 2-core machine cannot show) over the step rate: above 1 the network is the
  bottleneck, below 1 the loader.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..coils import birdcage_maps
from ..config import Config, resolve_config
from ..corruptions.mri import smooth_phase
from ..data import collate
from ..data.kspace import build_kspace_datasets
from ..data.mni152 import mni152_slices
from ..data.multicoil import MultiCoilSliceDataset, crop_coil_kspace
from ..data.synthetic_raw import write_fastmri_multicoil_h5
from ..devices import resolve_device
from ..io import atomic_write_json
from ..physics import Acquisition
from ..seeding import seeded_generator
from ..training import Trainer

__all__ = [
    "VOLUMES",
    "SLICES",
    "COILS",
    "SIZE",
    "NOISE",
    "scale_settings",
    "scale_volume",
    "write_scale_data",
    "stage_times",
    "loader_rates",
    "step_rates",
    "bench_scale",
    "scale_markdown",
]

#: Training volumes, slices per volume, coils and image side of the full data set.
VOLUMES, SLICES, COILS, SIZE = 32, 16, 16, 320
#: Validation volumes (``val/``).
VALID_VOLUMES = 2
#: Readout oversampling (k-space rows = OVERSAMPLE x SIZE).
OVERSAMPLE = 2
#: Complex k-space noise per coil, relative to the image peak.
NOISE = 0.01
#: The multi-coil presets the steps are timed for.
PRESETS = ("multicoil", "multicoil-gpu")
MANIFEST = "scale_data.json"


def scale_settings(quick: bool = False) -> dict[str, int]:
    """The data set's shape: ``volumes``, ``valid_volumes``, ``slices``, ``coils``, ``size``."""
    if quick:
        return {"volumes": 2, "valid_volumes": 1, "slices": 4, "coils": 4, "size": 64}
    return {
        "volumes": VOLUMES,
        "valid_volumes": VALID_VOLUMES,
        "slices": SLICES,
        "coils": COILS,
        "size": SIZE,
    }


def scale_volume(index: int, *, slices: int, size: int, seed: int = 0) -> np.ndarray:
    """Volume ``index``'s complex images ``(slices, size, size)``, peak magnitude 1: a slab of the
    MNI152 template (its own start and spacing), rotated, scaled, shifted and maybe flipped in
    plane, with a seeded smooth phase per slice."""
    stack = mni152_slices(size)[0]
    rng = np.random.default_rng([seed, index])
    stride = int(min(rng.integers(2, 6), max((len(stack) - 1) // max(slices - 1, 1), 1)))
    start = int(rng.integers(0, max(len(stack) - stride * (slices - 1), 1)))
    rows = np.clip(start + stride * np.arange(slices), 0, len(stack) - 1)
    x = torch.from_numpy(np.ascontiguousarray(stack[rows], np.float32))[:, None]
    angle = np.deg2rad(rng.uniform(-12, 12))
    zoom = rng.uniform(0.9, 1.12)
    flip = -1.0 if rng.random() < 0.5 else 1.0
    c, s = np.cos(angle) / zoom, np.sin(angle) / zoom
    theta = torch.tensor(
        [[c * flip, -s, rng.uniform(-0.05, 0.05)], [s * flip, c, rng.uniform(-0.05, 0.05)]],
        dtype=torch.float32,
    )
    grid = F.affine_grid(theta.expand(slices, 2, 3), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp_min(0)
    x = x / x.amax().clamp_min(1e-8)
    z = smooth_phase(x, seeded_generator(seed * 1_000_003 + index))
    return (z[:, 0] + 1j * z[:, 1]).numpy().astype(np.complex64)


def _files(folder: Path, settings: dict[str, int]) -> list[Path]:
    tr = [folder / "train" / f"file_brain_scale{v:03d}.h5" for v in range(settings["volumes"])]
    first = settings["volumes"]
    va = [folder / "val" / f"file_brain_scale{first + v:03d}.h5" for v in range(settings["valid_volumes"])]
    return tr + va


def write_scale_data(
    folder: str | os.PathLike,
    *,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    shape: dict[str, int] | None = None,
) -> Path:
    """Write the data set (module docstring) under ``folder`` (``train/``, ``val/``), or reuse it:
    every file is written atomically and the manifest (settings and file sizes) last, so a
    folder whose manifest matches is complete. ``shape``: other ``volumes``, ``valid_volumes``,
    ``slices``, ``coils`` and ``size`` than :func:`scale_settings` (``bench gpu``'s smaller
    set). Returns ``folder``."""
    folder = Path(folder)
    base = scale_settings(quick) if shape is None else {**scale_settings(quick), **shape}
    settings = {**base, "oversample": OVERSAMPLE, "noise": NOISE, "seed": seed}
    files = _files(folder, settings)
    manifest = folder / MANIFEST
    with contextlib.suppress(OSError, ValueError):
        old = json.loads(manifest.read_text())
        if old.get("settings") == settings and all(
            p.is_file() and p.stat().st_size == old["bytes"].get(p.relative_to(folder).as_posix())
            for p in files
        ):
            return folder
    size, coils = settings["size"], settings["coils"]
    for v, path in enumerate(tqdm(files, desc="scale data", unit="volume", disable=not progress)):
        rng = np.random.default_rng([seed, v, 1])
        maps = birdcage_maps((size, size), coils, r=float(rng.uniform(1.2, 1.8))).numpy()
        imgs = scale_volume(v, slices=settings["slices"], size=size, seed=seed)
        write_fastmri_multicoil_h5(
            path, imgs, maps, noise_std=NOISE, seed=seed * 10_007 + v, oversample=OVERSAMPLE
        )
    sizes = {p.relative_to(folder).as_posix(): p.stat().st_size for p in files}
    atomic_write_json(manifest, {"settings": settings, "bytes": sizes})
    return folder


def _median(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def stage_times(ds: MultiCoilSliceDataset, items: list[int], cache_dir: Path) -> dict[str, Any]:
    """Median seconds per item of each stage of :meth:`MultiCoilSliceDataset.__getitem__`, one
    process: ``read`` (the slice from its file), ``crop_fft`` (readout crop and FFTs),
    ``maps_estimate`` (one thread, as the dataset runs it), ``maps_cache_read`` and ``item_cold``
    / ``item_warm`` (the whole item, maps cache empty / filled)."""
    out: dict[str, list[float]] = {
        k: [] for k in ("read", "crop_fft", "maps_estimate", "maps_cache_read", "item_cold", "item_warm")
    }
    ds = MultiCoilSliceDataset(ds.files, keys=ds.keys, size=ds.size, maps_cache=cache_dir)
    cache = ds.maps_cache
    for i in items:
        fi, k = ds._rows[i]
        scale, _, _, rows = ds._info[fi]
        t0 = time.perf_counter()
        raw = ds._raw_slice(ds.files[fi], k)
        t1 = time.perf_counter()
        ksp = crop_coil_kspace(raw, rows, ds.size) / np.float32(scale)
        t2 = time.perf_counter()
        ds._estimate_maps(i, ksp)
        t3 = time.perf_counter()
        ds[i]
        t4 = time.perf_counter()
        entry = cache.entry(ds.files[fi], k, ds.maps_settings(fi))
        cache.load(entry, (ds.coils, ds.size, ds.size))
        t5 = time.perf_counter()
        ds[i]
        t6 = time.perf_counter()
        for key, dt in zip(out, (t1 - t0, t2 - t1, t3 - t2, t5 - t4, t4 - t3, t6 - t5)):
            out[key].append(dt)
    return {k: statistics.median(v) for k, v in out.items()}


def _loader_pass(ds: MultiCoilSliceDataset, order: list[int], batch: int, workers: int) -> float:
    batches = [order[i : i + batch] for i in range(0, len(order), batch)]
    t0 = time.perf_counter()
    loader = DataLoader(ds, batch_sampler=batches, num_workers=workers, collate_fn=collate)
    n = sum(int(x.batch_size) for x, _ in loader)  # collated coil acquisitions
    return n / (time.perf_counter() - t0)


def loader_rates(
    data: Path,
    *,
    work: Path,
    items: int,
    batch: int,
    repeats: int,
    workers: tuple[int, ...] = (0, 1, 2),
    size: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Loader slices/s per worker count, maps cache cold and warm (module docstring); the
    DataLoader's start (worker processes) is included, as a run's first batches pay it too."""
    train, _ = build_kspace_datasets(data, size=size, complex_kspace=True)
    order = torch.randperm(len(train), generator=seeded_generator(7))[: min(items, len(train))].tolist()
    for i in order:  # the files' slices into the OS page cache: every block then starts alike
        fi, k = train._rows[i]
        train._raw_slice(train.files[fi], k)
    rates: dict[str, dict[str, list[float]]] = {f"{w}": {"cold": [], "warm": []} for w in workers}
    bar = tqdm(total=repeats * len(workers) * 2, desc="loader", unit="block", disable=not progress)
    for r in range(repeats):
        for w in workers:
            cache = work / f"maps_cache_r{r}_w{w}"
            shutil.rmtree(cache, ignore_errors=True)
            for state in ("cold", "warm"):
                ds = MultiCoilSliceDataset(train.files, keys=train.keys, size=size, maps_cache=cache)
                rates[f"{w}"][state].append(_loader_pass(ds, order, batch, w))
                bar.update(1)
            shutil.rmtree(cache, ignore_errors=True)
    bar.close()
    table = {}
    for w in workers:
        row = {state: _median(v) for state, v in rates[f"{w}"].items()}
        for state in ("cold", "warm"):
            row[f"{state}_per_worker"] = row[state]["median"] / max(w, 1)
        table[f"{w}"] = row
    return {
        "items": len(order),
        "batch": batch,
        "repeats": repeats,
        "workers": table,
        "coils": train.coils,
        "train_slices": len(train),
    }


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _status_kb(field: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _peak_step_memory(trainer: Trainer, batch: Acquisition) -> dict[str, Any]:
    """Peak memory of one training step (module docstring); bytes and the method."""
    dev = trainer.device
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        trainer.train_step(batch)
        torch.cuda.synchronize(dev)
        peak = torch.cuda.max_memory_allocated(dev)
        return {"bytes": peak - base, "method": "torch.cuda.max_memory_allocated above the allocated before"}
    import resource

    _malloc_trim()
    rss = _status_kb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")
        resettable = _status_kb("VmHWM") is not None and rss is not None
    except OSError:
        resettable = False
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    trainer.train_step(batch)
    if resettable:
        return {
            "bytes": (_status_kb("VmHWM") - rss) * 1024,
            "method": "peak RSS (VmHWM, reset via /proc/self/clear_refs after malloc_trim) above RSS before",
        }
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "bytes": max(after - (rss or before), 0) * 1024,
        "method": "ru_maxrss above RSS before (upper bound)",
    }


def step_rates(
    data: Path, *, work: Path, device: str, blocks: int, steps: int, quick: bool, progress: bool = True
) -> dict[str, Any]:
    """Slices/s and peak memory of the presets' training steps on a preloaded batch."""
    trainers, batches, out = {}, {}, {}
    for name in PRESETS:
        kw: dict[str, Any] = {
            "dataset": "kspace",
            "data_dir": str(data),
            "preset": name,
            "device": device,
            "out": str(work / f"run_{name}"),
            "quiet": True,
            "tensorboard": False,
            "figures": False,
            "maps_cache": str(work / "maps_cache_steps"),
        }
        cfg = resolve_config(Config(**kw))[0]
        on_cpu = resolve_device(cfg.device).type == "cpu"
        if quick:
            cfg = cfg.replace(
                size=scale_settings(True)["size"],
                batch_size=1 if "gpu" in name else 2,
                cascades=2,
                cascade_width=8,
                max_steps=100,
            )
        elif on_cpu and name == "multicoil-gpu":
            cfg = cfg.replace(batch_size=1)  # the reference CPU run of the GPU preset
        tr = Trainer(cfg)
        ds = tr.exp.train_set
        batch, _ = collate([ds[i] for i in range(min(cfg.batch_size, len(ds)))])
        trainers[name], batches[name] = tr, batch
        out[name] = {
            "batch_size": int(batch.batch_size),
            "preset_batch_size": int(resolve_config(Config(**kw))[0].batch_size),
            "size": cfg.size,
            "coils": int(ds.coils),
            "cascades": cfg.cascades,
            "cascade_width": cfg.cascade_width,
            "cascade_depth": cfg.cascade_depth,
            "cg_iters": cfg.cg_iters,
            "dc": cfg.dc,
            "num_workers": cfg.num_workers,
            "amp": tr.amp,
            "channels_last": tr.channels_last,
            "device": str(tr.device),
            "parameters": sum(p.numel() for p in tr.model.parameters()),
        }
        out[name]["peak_memory"] = _peak_step_memory(tr, batch)  # also the warm-up step
    rates: dict[str, list[float]] = {n: [] for n in PRESETS}
    bar = tqdm(total=blocks * len(PRESETS), desc="steps", unit="block", disable=not progress)
    for _ in range(blocks):
        for name in PRESETS:
            tr, batch = trainers[name], batches[name]
            if tr.device.type == "cuda":
                torch.cuda.synchronize(tr.device)
            t0 = time.perf_counter()
            for _ in range(steps):
                tr.train_step(batch)
            if tr.device.type == "cuda":
                torch.cuda.synchronize(tr.device)
            rates[name].append(steps * batch.batch_size / (time.perf_counter() - t0))
            bar.update(1)
    bar.close()
    for name in PRESETS:
        out[name]["slices_per_s"] = _median(rates[name])
    return out


def bench_scale(
    *,
    quick: bool = False,
    out_dir: str | os.PathLike = "results",
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Write (or reuse) the data set, then measure stages, loader and steps (module docstring)."""
    out = Path(out_dir)
    name = "scale_quick" if quick else "scale"
    data = out / f"{name}_data"
    work = out / f"{name}_work"
    t0 = time.perf_counter()
    write_scale_data(data, quick=quick, seed=seed, progress=progress)
    t_data = time.perf_counter() - t0
    settings = {
        **scale_settings(quick),
        "oversample": OVERSAMPLE,
        "noise": NOISE,
        "seed": seed,
        "quick": quick,
    }
    size = settings["size"]
    t0 = time.perf_counter()
    train, _ = build_kspace_datasets(data, size=size, complex_kspace=True)
    t_build = time.perf_counter() - t0
    idx = torch.randperm(len(train), generator=seeded_generator(3))[: 3 if quick else 5].tolist()
    stages = stage_times(train, idx, work / "maps_cache_stages")
    shutil.rmtree(work / "maps_cache_stages", ignore_errors=True)
    loader = loader_rates(
        data,
        work=work,
        items=8 if quick else 24,
        batch=2,
        repeats=2 if quick else 3,
        size=size,
        progress=progress,
    )
    steps = step_rates(
        data, work=work, device=device, blocks=2 if quick else 3, steps=1, quick=quick, progress=progress
    )
    shutil.rmtree(work / "maps_cache_steps", ignore_errors=True)
    ratios = {}
    for name_, st in steps.items():
        w = int(st["num_workers"])
        if str(w) in loader["workers"]:
            rate = loader["workers"][str(w)]["warm"]["median"]
        else:  # more workers than measured: the 1-worker rate per worker, one core each
            rate = loader["workers"]["1"]["warm_per_worker"] * w
        step = st["slices_per_s"]["median"]
        ratios[name_] = {
            "workers": w,
            "loader_slices_per_s": rate,
            "extrapolated": str(w) not in loader["workers"],
            "step_slices_per_s": step,
            "ratio": rate / step,
            "bottleneck": "network" if rate > step else "loader",
        }
    return {
        "settings": settings,
        "data_seconds": t_data,
        "dataset_build_seconds": t_build,
        "stages": stages,
        "loader": loader,
        "steps": steps,
        "ratios": ratios,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def scale_markdown(res: dict[str, Any]) -> str:
    """Stage, loader, step and ratio tables of a :func:`bench_scale` result."""
    st = res["settings"]
    rows = OVERSAMPLE * st["size"]
    lines = [
        f"Data: {st['volumes']} training volumes x {st['slices']} slices "
        f"(+{st['valid_volumes']} validation), "
        f"{st['coils']} coils, k-space {rows} x {st['size']} (2x readout oversampling), fastMRI multi-coil "
        f"HDF5 with the ISMRMRD header; written or checked in {res['data_seconds']:.0f} s; the training "
        f"dataset built in {res['dataset_build_seconds']:.1f} s. Load average at the end: "
        + ", ".join(f"{v:.2f}" for v in (res.get("load_average") or ()))
        + ".",
        "",
        "Stages of one item (median s, one process):",
        "",
        "| read slice | readout crop + FFTs | maps estimate | maps from disk cache | item, cache cold | "
        "item, cache warm |",
        "|---|---|---|---|---|---|",
        "| "
        + " | ".join(
            f"{res['stages'][k]:.4f}"
            for k in ("read", "crop_fft", "maps_estimate", "maps_cache_read", "item_cold", "item_warm")
        )
        + " |",
        "",
        f"Loader (DataLoader over the training set, batch {res['loader']['batch']}, {res['loader']['items']} "
        f"slices per block, {res['loader']['repeats']} interleaved repetitions; median slices/s, min-max):",
        "",
        "| workers | cold | warm | cold per worker | warm per worker |",
        "|---|---|---|---|---|",
    ]
    for w, row in res["loader"]["workers"].items():
        c, h = row["cold"], row["warm"]
        lines.append(
            f"| {w} | {c['median']:.2f} ({c['min']:.2f}-{c['max']:.2f}) | {h['median']:.2f} "
            f"({h['min']:.2f}-{h['max']:.2f}) | {row['cold_per_worker']:.2f} | {row['warm_per_worker']:.2f} |"
        )
    lines += [
        "",
        "Training steps on a preloaded batch (`Trainer.train_step`: multi-coil corruption, unrolled network, "
        "k-space loss, backward, Adam); median slices/s (min-max); peak memory of one step:",
        "",
        "| preset | device | batch (preset's) | cascades x width, CG iters | parameters | slices/s | "
        "peak memory (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in res["steps"].items():
        r = s["slices_per_s"]
        lines.append(
            f"| {name} | {s['device']} | {s['batch_size']} ({s['preset_batch_size']}) | {s['cascades']} x "
            f"{s['cascade_width']}, {s['cg_iters']} | {s['parameters']} | {r['median']:.3f} "
            f"({r['min']:.3f}-{r['max']:.3f}) | {s['peak_memory']['bytes'] / 2**20:.0f} |"
        )
    method = next(iter(res["steps"].values()))["peak_memory"]["method"]
    lines += [
        "",
        f"Peak memory: {method}.",
        "",
        "| preset | loader workers | loader slices/s (warm) | step slices/s | loader / step | bottleneck |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in res["ratios"].items():
        ext = " (extrapolated: workers x the 1-worker rate)" if r["extrapolated"] else ""
        lines.append(
            f"| {name} | {r['workers']} | {r['loader_slices_per_s']:.2f}{ext} | "
            f"{r['step_slices_per_s']:.3f} | {r['ratio']:.1f} | {r['bottleneck']} |"
        )
    return "\n".join(lines)
