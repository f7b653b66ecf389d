"""The non-Cartesian operator's cost (``python -m mri_n2n.bench nufft``).

Two questions of issue 33 item 6, on one multi-coil radial slice (default 256 x 256, 8
birdcage coils, golden-angle spokes at 4x: 101 spokes of 512 readout samples):

* **Overhead**: :class:`~mri_n2n.noncartesian.NonCartesianAcquisition`'s ``forward`` and
  ``adjoint`` against finufft called directly (``finufft.nufft2d2`` / ``nufft2d1`` on the same
  points, the coil images formed and combined by the same tensor products, the same accuracy
  and threads). Calls are interleaved; the overhead is ``ours / library - 1`` of the fastest of
  ``repeats`` calls of each (slower calls measure the machine's other load), and the medians
  are reported beside it.
* **Training step rate** (:func:`bench_step_rates`): the CPU preset's unrolled network trained
  on trajectory data against the same network on Cartesian masks.
* **Reconstruction time** of the slice from its measurements, with a new acquisition object
  each time (its Toeplitz kernel computed afresh; the trajectory's density compensation is
  cached per trajectory, computed once beforehand and timed separately): CG-SENSE
  (:func:`~mri_n2n.baselines.tikhonov` from the density-compensated adjoint) and the CPU
  preset's unrolled network (untrained: the same cost as a trained one) with its proximal data
  consistency, the compensated adjoint as its input.

Every measurement runs at each thread count of ``threads`` (torch's and finufft's).
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import numpy as np
import torch

from ..baselines import tikhonov
from ..coils import birdcage_maps
from ..config import Config, resolve_config
from ..models import apply_model, ends_with_dc
from ..models.registry import model_from_config
from ..noncartesian import NUFFT_EPS, NonCartesianAcquisition, density_compensation, trajectory_law
from ..reconstruction.engine import consistent

__all__ = ["bench_nufft", "bench_step_rates", "nufft_markdown"]


def _phantom(n: int) -> torch.Tensor:
    """A smooth complex test image ``(n, n)``: two ellipses with a linear phase."""
    i = (torch.arange(n, dtype=torch.float32)[:, None] - n / 2) / (n / 2)
    j = (torch.arange(n, dtype=torch.float32)[None] - n / 2) / (n / 2)
    img = torch.sigmoid((1 - (i / 0.8) ** 2 - (j / 0.6) ** 2) * 20) + 0.5 * torch.sigmoid(
        (1 - ((i - 0.2) / 0.2) ** 2 - ((j + 0.1) / 0.3) ** 2) * 20
    )
    return img * torch.exp(1j * math.pi * 0.3 * (i + j))


def _median_time(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_nufft(
    *,
    size: int = 256,
    coils: int = 8,
    trajectory: str = "golden-radial",
    acceleration: float = 4.0,
    threads: tuple[int, ...] = (1, 2),
    repeats: int = 7,
    cg_iters: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Time the operator against finufft and the slice's reconstructions (module docstring).

    Returns:
        ``{"settings", "dcf_seconds", "rows": [{"threads", "forward_s", "forward_library_s",
        "forward_overhead", "adjoint_s", "adjoint_library_s", "adjoint_overhead", "cg_sense_s",
        "network_s"}]}``.
    """
    import finufft  # the nufft extra; the kind's own import raises the one line without it

    torch.manual_seed(seed)
    law = trajectory_law(trajectory, (size, size), acceleration=acceleration)
    maps = birdcage_maps((size, size), coils)
    full = NonCartesianAcquisition.for_law(law, (size, size), maps)
    x = _phantom(size)[None].to(torch.complex64)
    sampled = law.sample(1, generator=torch.Generator().manual_seed(seed))
    kp = law.keep_probability()
    t0 = time.perf_counter()
    dcf = density_compensation(law.trajectory, (size, size))
    dcf_seconds = time.perf_counter() - t0

    def measured() -> NonCartesianAcquisition:
        acq = full.observe(full.full(x), sampled, kp)
        return NonCartesianAcquisition(acq.sampled, acq.trajectory, (size, size), maps, acq.y,
                                       keep_prob=kp, dcf=dcf)

    acq = measured()
    idx = torch.nonzero(sampled[0]).reshape(-1)
    pts = (law.trajectory[idx].reshape(-1, 2) * (2 * math.pi)).double().numpy()
    px = np.ascontiguousarray(pts[:, 0], dtype=np.float32)
    py = np.ascontiguousarray(pts[:, 1], dtype=np.float32)
    scale = 1.0 / math.sqrt(size * size)
    y = acq.y
    cfg, _ = resolve_config(Config(dataset="synth", preset="cpu", trajectory=trajectory, size=size,
                                   model="unrolled", complex=True))
    net = model_from_config(cfg, 2).eval()
    rows = []
    before = torch.get_num_threads()
    try:
        for t in threads:
            torch.set_num_threads(int(t))

            def ours_fwd() -> torch.Tensor:
                return acq.forward(x)

            def lib_fwd(t: int = int(t)) -> np.ndarray:
                u = (maps * x).numpy()
                return finufft.nufft2d2(px, py, u, eps=NUFFT_EPS,
                                        isign=-1, modeord=0, nthreads=int(t)) * scale

            def ours_adj() -> torch.Tensor:
                return acq.adjoint(y)

            def lib_adj(t: int = int(t)) -> torch.Tensor:
                c = y[0].index_select(-2, idx).reshape(coils, -1).numpy()
                u = finufft.nufft2d1(px, py, c, (size, size),
                                     eps=NUFFT_EPS, isign=1, modeord=0, nthreads=int(t))
                return (maps.conj() * torch.from_numpy(u)).sum(0) * scale

            for fn in (ours_fwd, lib_fwd, ours_adj, lib_adj):
                fn()  # warm-up
            # interleaved: a drift of the shared machine hits both alike
            fw, fl, aw, al = [], [], [], []
            for _ in range(repeats):
                fw.append(_median_time(ours_fwd, 1))
                fl.append(_median_time(lib_fwd, 1))
                aw.append(_median_time(ours_adj, 1))
                al.append(_median_time(lib_adj, 1))

            def cg() -> torch.Tensor:
                return tikhonov(measured(), 1e-3, cg_iters)

            def network() -> torch.Tensor:
                a = measured()
                with torch.no_grad():
                    inp = a.channels_of(a.zero_filled(), 2)
                    out = apply_model(net, inp, a)
                    return out if ends_with_dc(net) else consistent(a, a.image_of(out))

            cg()
            network()
            cg_s = _median_time(cg, max(3, repeats // 2))
            net_s = _median_time(network, max(3, repeats // 2))
            # the overhead from the fastest call of each (timeit's rule: slower calls measure the
            # machine's other load, not the code), the medians beside it
            rows.append({
                "threads": int(t),
                "forward_s": min(fw), "forward_library_s": min(fl), "forward_overhead": min(fw) / min(fl) - 1,
                "adjoint_s": min(aw), "adjoint_library_s": min(al), "adjoint_overhead": min(aw) / min(al) - 1,
                "forward_median_s": statistics.median(fw), "forward_library_median_s": statistics.median(fl),
                "adjoint_median_s": statistics.median(aw), "adjoint_library_median_s": statistics.median(al),
                "cg_sense_s": cg_s, "network_s": net_s,
            })
    finally:
        torch.set_num_threads(before)
    return {
        "settings": {
            "size": size, "coils": coils, "trajectory": trajectory, "acceleration": acceleration,
            "spokes": law.count, "samples_per_spoke": int(law.trajectory.shape[1]), "repeats": repeats,
            "cg_iters": cg_iters, "eps": NUFFT_EPS, "network": {
                "model": cfg.model, "cascades": cfg.cascades, "cascade_width": cfg.cascade_width,
                "dc": cfg.dc, "cg_iters": cfg.cg_iters,
            },
        },
        "dcf_seconds": dcf_seconds,
        "rows": rows,
    }


def bench_step_rates(
    *,
    size: int = 64,
    blocks: int = 5,
    steps: int = 4,
    trajectory: str = "golden-radial",
    out: str = "results",
) -> dict[str, Any]:
    """Noise2Noise training steps per second of the CPU preset's unrolled network on ``size``
    slices: Cartesian (its default mask family, exact replacement) against ``trajectory`` at 4x
    (the proximal step by CG), interleaved blocks of ``steps`` steps, the median block rate.

    Returns:
        ``{"size", "batch", "cartesian_slices_per_s", "noncartesian_slices_per_s", "ratio",
        "settings": {kind: {"dc", "cg_iters", "cascades"}}}``.
    """
    from ..training import Trainer

    trainers, batches = {}, {}
    for name, extra in (("cartesian", {}), ("noncartesian", {"trajectory": trajectory, "acceleration": 4.0})):
        cfg, _ = resolve_config(Config(dataset="synth", preset="cpu", model="unrolled", size=size, quiet=True,
                                       figures=False, tensorboard=False, device="cpu", max_steps=10_000,
                                       out=f"{out}/nufft_steps_{name}", **extra))
        trainers[name] = Trainer(cfg)
        batches[name] = trainers[name]._batches()
    for name, tr in trainers.items():  # warm-up
        for _ in range(2):
            tr.train_step(next(batches[name])[0])
    rates: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(blocks):
        for name, tr in trainers.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                tr.train_step(next(batches[name])[0])
            rates[name].append(steps * tr.cfg.batch_size / (time.perf_counter() - t0))
    cart, nc = statistics.median(rates["cartesian"]), statistics.median(rates["noncartesian"])
    return {
        "size": size, "batch": trainers["cartesian"].cfg.batch_size, "trajectory": trajectory,
        "threads": torch.get_num_threads(),
        "cartesian_slices_per_s": cart, "noncartesian_slices_per_s": nc, "ratio": nc / cart,
        "block_rates": rates,
        "settings": {n: {"dc": t.cfg.dc, "cg_iters": t.cfg.cg_iters, "cascades": t.cfg.cascades}
                     for n, t in trainers.items()},
    }


def nufft_markdown(res: dict[str, Any]) -> str:
    """The operator's overhead and the reconstruction times as a Markdown table."""
    st = res["settings"]
    net = st["network"]
    lines = [
        "| threads | forward: ours / finufft (ms) | overhead | adjoint: ours / finufft (ms) | overhead "
        f"| CG-SENSE, {st['cg_iters']} iterations (s) | unrolled network (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['threads']} | {r['forward_s'] * 1e3:.1f} / {r['forward_library_s'] * 1e3:.1f} | "
            f"{r['forward_overhead'] * 100:+.1f} % | {r['adjoint_s'] * 1e3:.1f} / "
            f"{r['adjoint_library_s'] * 1e3:.1f} | {r['adjoint_overhead'] * 100:+.1f} % | "
            f"{r['cg_sense_s']:.2f} | {r['network_s']:.2f} |"
        )
    lines += [
        "",
        f"One {st['size']}x{st['size']} slice, {st['coils']} coils, `{st['trajectory']}` at "
        f"{st['acceleration']:g}x ({st['spokes']} spokes of {st['samples_per_spoke']} samples), "
        f"NUFFT accuracy {st['eps']:g}; the fastest of {st['repeats']} interleaved calls (medians in "
        "the JSON). Reconstructions: the median of their runs; their times "
        "include the acquisition's Toeplitz kernel and the density-compensated adjoint; the "
        f"trajectory's Pipe-Menon weights (cached per trajectory) took {res['dcf_seconds']:.2f} s "
        f"once. Network: untrained `{net['model']}`, {net['cascades']} cascades of width "
        f"{net['cascade_width']}, `{net['dc']}` data consistency with {net['cg_iters']} CG iterations.",
    ]
    st = res.get("steps")
    if st:
        c, n = st["settings"]["cartesian"], st["settings"]["noncartesian"]
        lines += [
            "",
            f"Training (Noise2Noise, {st['size']}x{st['size']}, batch {st['batch']}, "
            f"{st.get('threads', '?')} threads, the CPU preset's "
            f"unrolled network, {c['cascades']} cascades): Cartesian ({c['dc']} data consistency) "
            f"{st['cartesian_slices_per_s']:.1f} slices/s, `{st['trajectory']}` 4x ({n['dc']}, "
            f"{n['cg_iters']} CG iterations) {st['noncartesian_slices_per_s']:.1f} slices/s "
            f"({st['ratio']:.2f}x; medians of {len(st['block_rates']['cartesian'])} interleaved blocks).",
        ]
    return "\n".join(lines)
