"""The prepared device check: ``python -m mri_n2n.bench gpu`` (issue 32), for the day a GPU is lent.

Without CUDA it exits 1 with one line. On one GPU it measures, in under 8 minutes:

- **tests**: the CUDA-only tests (``pytest -k cuda`` over :data:`CUDA_TEST_FILES`, when the
  ``tests/`` folder is beside the package): passed, failed, skipped;
- **paper step rate**: slices/s of the ``paper`` preset's training step (the paper's U-Net,
  256 x 256, batch 16, MNI152 slices through its loader with 4 workers) with AMP on (the
  device's dtype, :func:`~mri_n2n.devices.amp_dtype`) and off, interleaved blocks, median;
- **time to quality**: a short ``paper``-preset run (AMP on) validated every
  :data:`TTQ_EVERY` steps: validation PSNR against wall-clock seconds;
- **precision**: that run's model validated in float32 and under autocast in the AMP dtype:
  the PSNR difference is what ``--amp`` costs at inference;
- **multicoil-gpu**: slices/s of the ``multicoil-gpu`` preset's step (16 coils, 320 x 320,
  batch 8, 8 cascades, CG data consistency) on a batch in GPU memory, AMP on and off, with its
  peak GPU memory, beside the loader's slices/s with the preset's 8 workers (coil maps cache
  cold, then warm) on a small fastMRI-shaped set (:func:`~mri_n2n.bench.scale.write_scale_data`):
  loader / step above 1 means the GPU is the bottleneck.

Every timing waits for the device at both ends (:class:`~mri_n2n.devices.Stopwatch`).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..config import Config, resolve_config
from ..data import collate
from ..devices import Stopwatch, amp_dtype, resolve_device
from ..training import Trainer
from .scale import write_scale_data

__all__ = ["NoCudaError", "bench_gpu", "gpu_markdown", "CUDA_TEST_FILES", "TTQ_STEPS", "TTQ_EVERY"]

#: Test files whose CUDA-only tests (names containing ``cuda``) the check runs.
CUDA_TEST_FILES = ("test_gpu_readiness.py", "test_baselines.py", "test_metrics.py", "test_multicoil.py")
#: The time-to-quality run's steps and validation interval (``--quick``: a fifth).
TTQ_STEPS, TTQ_EVERY = 600, 100
#: The multi-coil set: 3 + 1 volumes of 8 slices, 16 coils, 320 x 320 images (640 k-space rows).
MC_SHAPE = {"volumes": 3, "valid_volumes": 1, "slices": 8, "coils": 16, "size": 320}


class NoCudaError(RuntimeError):
    """No CUDA device is visible: the check cannot run."""


def _median(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def cuda_tests(timeout: float = 180.0) -> dict[str, Any]:
    """Run the CUDA-only tests in a subprocess; counts, seconds and the summary line."""
    tests = Path(__file__).resolve().parents[2] / "tests"
    files = [str(tests / f) for f in CUDA_TEST_FILES if (tests / f).is_file()]
    if not files:
        return {"status": "no tests folder beside the package"}
    t0 = time.perf_counter()
    try:
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", "cuda", *files],
            capture_output=True, text=True, timeout=timeout, cwd=tests.parent,
        )
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {timeout:.0f} s", "seconds": time.perf_counter() - t0}
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    return {"status": "passed" if r.returncode == 0 else f"exit {r.returncode}",
            "summary": lines[-1] if lines else "", "seconds": time.perf_counter() - t0,
            "tail": "\n".join(lines[-15:]) if r.returncode else ""}


def _trainer(device: torch.device, out: Path, **kw: Any) -> Trainer:
    cfg = Config(**{"device": str(device), "quiet": True, "tensorboard": False, "figures": False,
                    "out": str(out), "max_steps": 100_000, **kw})
    return Trainer(resolve_config(cfg)[0])


def _rate(tr: Trainer, batches, steps: int, slices: int) -> float:
    """Slices/s of ``steps`` training steps (``batches``: an iterator of (batch, ident))."""
    with Stopwatch(tr.device) as sw:
        for _ in range(steps):
            clean, ident = next(batches)
            tr._step(clean, ident, check=False)
    return steps * slices / sw.seconds


def paper_rates(device: torch.device, work: Path, *, blocks: int, steps: int) -> dict[str, Any]:
    """The paper preset's step rate through its loader, AMP on and off (interleaved blocks)."""
    trainers = {amp: _trainer(device, work / f"paper_amp_{amp}", preset="paper", amp=amp)
                for amp in (True, False)}
    streams = {amp: tr._batches() for amp, tr in trainers.items()}
    b = trainers[True].cfg.batch_size
    rates: dict[bool, list[float]] = {True: [], False: []}
    for amp, tr in trainers.items():
        _rate(tr, streams[amp], 5, b)  # warm-up: workers, cuDNN autotuning, allocator
    for _ in range(blocks):
        for amp, tr in trainers.items():
            rates[amp].append(_rate(tr, streams[amp], steps, b))
    for s in streams.values():
        s.close()
    cfg = trainers[True].cfg
    return {
        "model": cfg.model, "size": cfg.size, "batch_size": b, "num_workers": cfg.num_workers,
        "amp_dtype": str(trainers[True].amp_dtype).replace("torch.", ""),
        "amp_slices_per_s": _median(rates[True]), "fp32_slices_per_s": _median(rates[False]),
    }


def time_to_quality(device: torch.device, work: Path, *, steps: int, every: int) -> dict[str, Any]:
    """A short paper-preset run (AMP on): validation PSNR per ``every`` steps against seconds, then
    the final model validated in float32 and in the AMP dtype."""
    cfg = Config(preset="paper", device=str(device), amp=True, quiet=True, tensorboard=False, figures=False,
                 out=str(work / "ttq"), max_steps=steps, steps_per_epoch=every, val_limit=64)
    cfg = resolve_config(cfg)[0]
    tr = Trainer(cfg)
    summary = tr.fit()
    curve = [{"step": r["step"], "seconds": r["seconds"], "val_psnr": r.get("val_psnr")} for r in tr.history]
    psnr: dict[str, float] = {}
    for name, amp in (("fp32", False), ("amp", tr.amp)):  # no AMP dtype on this card: both fp32
        tr.amp = amp
        psnr[name] = tr.validate()["val_psnr"]
    return {"steps": steps, "every": every, "curve": curve, "train_seconds": summary["train_seconds"],
            "val_psnr_input": summary["val_psnr_input"], "precision_psnr": psnr,
            "amp_dtype": str(tr.amp_dtype).replace("torch.", "")}


def multicoil_rates(
    device: torch.device, work: Path, *, blocks: int, steps: int, quick: bool
) -> dict[str, Any]:
    """The multicoil-gpu preset's step rate (batch in GPU memory; AMP on and off) and peak memory,
    beside its loader's rate with the preset's workers, cold and warm."""
    shape = {**MC_SHAPE, "volumes": 2, "slices": 4} if quick else MC_SHAPE
    data = write_scale_data(work / "mc_data", shape=shape, progress=False)
    cache = work / "mc_maps_cache"
    kw = {"preset": "multicoil-gpu", "dataset": "kspace", "data_dir": str(data), "maps_cache": str(cache)}
    out: dict[str, Any] = {}
    trainers = {amp: _trainer(device, work / f"mc_amp_{amp}", amp=amp, **kw) for amp in (True, False)}
    tr = trainers[True]
    ds = tr.exp.train_set
    workers = tr.cfg.num_workers
    for label in ("cold", "warm"):  # the cold pass estimates every slice's maps and fills the cache
        # batches of 2 over the preset's workers, their start-up included
        loader = DataLoader(ds, batch_size=2, num_workers=workers, collate_fn=collate)
        t0 = time.perf_counter()
        n = sum(int(b.batch_size) for b, _ in loader)
        out[f"loader_{label}_slices_per_s"] = n / (time.perf_counter() - t0)
    batch, _ = collate([ds[i] for i in range(min(tr.cfg.batch_size, len(ds)))])
    batch = batch.to(device)
    b = int(batch.batch_size)
    rates: dict[bool, list[float]] = {True: [], False: []}
    for amp, t in trainers.items():
        torch.cuda.reset_peak_memory_stats(device)
        _rate(t, iter(lambda: (batch, None), None), 2, b)
        out[f"peak_gib_{'amp' if amp else 'fp32'}"] = torch.cuda.max_memory_allocated(device) / 2**30
    for _ in range(blocks):
        for amp, t in trainers.items():
            rates[amp].append(_rate(t, iter(lambda: (batch, None), None), steps, b))
    out.update({
        "batch_size": b, "coils": int(ds.coils), "size": tr.cfg.size, "cascades": tr.cfg.cascades,
        "cg_iters": tr.cfg.cg_iters, "num_workers": workers, "train_slices": len(ds),
        "amp_dtype": str(tr.amp_dtype).replace("torch.", ""),
        "amp_slices_per_s": _median(rates[True]), "fp32_slices_per_s": _median(rates[False]),
    })
    out["loader_over_step"] = out["loader_warm_slices_per_s"] / out["amp_slices_per_s"]["median"]
    return out


def bench_gpu(*, device: str = "cuda", quick: bool = False, run_tests: bool = True) -> dict[str, Any]:
    """Run the device check (module docstring) in a temporary folder (runs, the multi-coil set);
    returns its figures (the caller writes them).

    Raises:
        NoCudaError: no CUDA device is visible.
        ValueError: ``device`` is not a CUDA device.
    """
    if not torch.cuda.is_available():
        raise NoCudaError("bench gpu needs a CUDA GPU, and none is visible here")
    dev = resolve_device("cuda" if device == "auto" else device)
    if dev.type != "cuda":
        raise ValueError(f"bench gpu runs on CUDA: --device must be cuda or cuda:N, got {device!r}")
    work = Path(tempfile.mkdtemp(prefix="mri_n2n_bench_gpu_"))  # runs and data: not the results
    try:
        return _check(dev, work, quick=quick, run_tests=run_tests)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check(dev: torch.device, work: Path, *, quick: bool, run_tests: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    res: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(dev), "capability": list(torch.cuda.get_device_capability(dev)),
        "amp_dtype": str(amp_dtype(dev)).replace("torch.", ""), "quick": quick,
    }
    res["tests"] = cuda_tests() if run_tests else {"status": "not run"}
    blocks, steps = (3, 5) if quick else (5, 20)
    res["paper"] = paper_rates(dev, work, blocks=blocks, steps=steps)
    res["time_to_quality"] = time_to_quality(
        dev, work, steps=TTQ_STEPS // (5 if quick else 1), every=TTQ_EVERY // (5 if quick else 1)
    )
    res["multicoil_gpu"] = multicoil_rates(dev, work, blocks=blocks, steps=max(steps // 4, 3), quick=quick)
    res["seconds"] = time.perf_counter() - t0
    return res


def gpu_markdown(res: dict[str, Any]) -> str:
    """The check's figures as Markdown."""
    p, t, m = res["paper"], res["time_to_quality"], res["multicoil_gpu"]
    lines = [
        f"GPU: {res['gpu']} (compute capability {'.'.join(map(str, res['capability']))}), AMP dtype "
        f"{res['amp_dtype']}; CUDA-only tests: {res['tests'].get('status')} "
        f"({res['tests'].get('summary', '')}); whole check {res['seconds']:.0f} s.",
        "",
        "| preset | batch | loader workers | AMP slices/s | fp32 slices/s | AMP / fp32 |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in (("paper (U-Net, 256², through the loader)", p),
                    (f"multicoil-gpu ({m['coils']} coils, {m['size']}², batch in memory)", m)):
        a, f = r["amp_slices_per_s"]["median"], r["fp32_slices_per_s"]["median"]
        lines.append(f"| {name} | {r['batch_size']} | {r['num_workers']} | {a:.1f} | {f:.1f} | {a / f:.2f} |")
    lines += [
        "",
        f"multicoil-gpu loader ({m['num_workers']} workers): {m['loader_cold_slices_per_s']:.1f} "
        f"slices/s cold (maps estimated), {m['loader_warm_slices_per_s']:.1f} warm; loader / step "
        f"{m['loader_over_step']:.2f} "
        "(above 1: the GPU is the bottleneck); peak GPU memory per step "
        f"{m['peak_gib_amp']:.1f} GiB (AMP), {m['peak_gib_fp32']:.1f} GiB (fp32).",
        "",
        f"Time to quality (paper preset, AMP, {t['steps']} steps; zero-filled {t['val_psnr_input']:.2f} dB):",
        "",
        "| step | seconds | validation PSNR (dB) |",
        "|---|---|---|",
    ]
    lines += [f"| {r['step']} | {r['seconds']:.1f} | {r['val_psnr']:.2f} |"
              for r in t["curve"] if r["val_psnr"] is not None]
    pp = t["precision_psnr"]
    lines += ["", f"Precision: the final model validated in fp32 {pp['fp32']:.3f} dB, in {t['amp_dtype']} "
              f"{pp['amp']:.3f} dB (difference {pp['amp'] - pp['fp32']:+.3f} dB)."]
    return "\n".join(lines)
