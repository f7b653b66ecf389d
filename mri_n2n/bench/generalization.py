"""Generalisation: MRI models trained on MNI152, evaluated on real scans they never saw.

The volumes are the ``evaluation`` sources of :mod:`mri_n2n.data.sources` (real scans that
install offline with the project's own dependencies; their licences and lineage are recorded
there, and no training or tuning source shares pixels with them):

==================  =========================================  ======================  ==============
name                source                                     contrast                matrix
==================  =========================================  ======================  ==============
``epi-bold``        nibabel test data ``example4d.nii.gz``     T2* EPI                 128 x 96 x 24
``t1-small``        nibabel test data ``anatomical.nii``       T1                      33 x 41 x 25
``mr-dicom``        pydicom test file ``MR_small.dcm``         T2 SE                   64 x 64 x 1
``abdomen-mr``      pydicom test file ``examples_overlay.dcm`` abdomen (Siemens)       300 x 484 x 1
``phantom-epi``     nibabel test data ``phantom_EPI_asc_...``  EPI of a phantom        64 x 64 x 9
==================  =========================================  ======================  ==============

Every volume is studied retrospectively, as ``mri-n2n reconstruct --simulate`` does: each slice
along axis 2 is undersampled with the checkpoint's density at ``fraction`` (seeded per slice),
reconstructed, and compared with the volume in the fastMRI volume convention (PSNR and SSIM with
the volume's maximum as the range). Zero-filling and CS-TV use the *same* masks; CS-TV's weight is
tuned per volume against the reference (an oracle choice: the best CS-TV can do on that volume)
over :data:`CS_TV_LAMS`, a grid wide enough that the chosen weight is interior (the table says
when it is not).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..baselines import cs_tv, tv_sense
from ..coils import rss
from ..data import volume_scale
from ..data.generators.coil_arrays import correlated_noise, random_coil_array
from ..data.generators.phase import with_random_phase
from ..data.sources import get_source, sources
from ..fft import fft2c, ifft2c
from ..io.multicoil import MultiCoilKSpace
from ..io.noncartesian import NonCartesianKSpace
from ..masks import is_line_family, make_family
from ..metrics import volume_metrics
from ..noncartesian import NonCartesianAcquisition, trajectory_law
from ..physics import Acquisition, SpectralSampling
from ..reconstruction import Reconstructor
from ..reconstruction.engine import simulated_masks, slice_seed
from ..reconstruction.multicoil import inference_maps
from ..reconstruction.noncartesian import inference_maps as nc_inference_maps
from ..seeding import SALT_NOISE, SALT_PHASE, seeded_generator, stable_ident

__all__ = [
    "RealVolume",
    "real_volumes",
    "load_real_volume",
    "bench_generalization",
    "generalization_markdown",
    "inference_seconds",
    "complex_lines_volume",
    "multicoil_lines_volume",
    "multicoil_lines_file",
]


@dataclass(frozen=True)
class RealVolume:
    """A real scan shipped inside an installed package (an ``evaluation`` data source)."""

    name: str
    source: str
    contrast: str
    lineage: str = ""


def real_volumes() -> list[RealVolume]:
    """The real scans available offline (the ``evaluation`` sources); unreadable ones are skipped."""
    out = []
    for src in sources("evaluation"):
        try:
            src.load()
        except Exception:  # pragma: no cover - a package without its test files
            continue
        out.append(RealVolume(src.name, src.licence, src.description, src.lineage))
    return out


def load_real_volume(vol: RealVolume | str) -> np.ndarray:
    """The volume's float32 ``(rows, cols, slices)`` array."""
    return np.asarray(get_source(vol if isinstance(vol, str) else vol.name).load(), dtype=np.float32)


#: CS-TV weights tried per volume (images normalised to peak 1); the grid is extended by half
#: decades past either end until the best weight is interior (at most :data:`CS_TV_EXTEND` times).
CS_TV_LAMS = (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
CS_TV_EXTEND = 4


def _cs_tv(
    arr: np.ndarray, rec: Reconstructor, fraction: float, seed: int, lams: Sequence[float], iters: int
) -> tuple[dict[str, float], float, float, bool]:
    """CS-TV on the study's masks with the best weight for this volume: metrics, weight, seconds,
    and whether the weight is interior to the weights tried (the grid grows past an edge winner)."""
    scale = volume_scale(arr, rec.normalize)
    ref = np.moveaxis(arr, 2, 0)
    slices = torch.from_numpy(np.ascontiguousarray(ref)) / scale
    n, h, w = slices.shape
    masks = simulated_masks(rec.corruption((h, w), fraction), range(n), seed)
    sampling = SpectralSampling(masks)
    acq = sampling.with_data(sampling.forward(slices))
    t0 = time.perf_counter()
    scores: dict[float, dict[str, float]] = {}

    def run(lam: float) -> None:
        if lam not in scores:
            out = cs_tv(acq, lam=lam, iters=iters, rho=30.0 * lam, real=True)
            scores[lam] = volume_metrics(out.abs().reshape(n, h, w) * scale, ref)

    best = _grid_search(run, scores, lams)
    order = sorted(scores)
    interior = order[0] < best < order[-1]
    return {**scores[best], "tried": order}, float(best), time.perf_counter() - t0, interior


#: The studies of :func:`bench_generalization`: ``magnitude`` (the paper's setting: real images,
#: each checkpoint's own mask law at ``fraction``) and ``complex-lines`` (what a single-coil
#: scanner writes: every slice given a phase by the phase model, whole phase-encode lines of
#: fastMRI's equispaced protocol at acceleration ``1 / fraction`` with 8 % central lines, the
#: same masks and data for every method, reconstructed from k-space).
STUDIES = ("magnitude", "complex-lines", "multicoil-lines", "multicoil-radial")
#: The ``complex-lines`` study's line law: fastMRI's equispaced protocol, 8 % central lines.
COMPLEX_LINES_FAMILY, COMPLEX_LINES_CENTER = "lines_equispaced", 0.08
#: The ``multicoil-lines`` study: the complex slices of ``complex-lines`` seen by one random loop
#: array of this many coils per volume (:func:`~mri_n2n.data.generators.coil_arrays.random_coil_array`
#: around the volume's object), with thermal noise correlated between the coils of this standard
#: deviation (a share of the volume's peak), the same line masks for every coil, with at least
#: :data:`MULTICOIL_CENTER_LINES` central lines (a parallel-imaging protocol's calibration: 8 % of
#: a 41-line matrix is 3 lines, too few to estimate coil maps from).
MULTICOIL_COILS, MULTICOIL_NOISE, MULTICOIL_CENTER_LINES = 8, 0.01, 8
#: The ``multicoil-radial`` study (non-Cartesian): the coil data of ``multicoil-lines`` (the same
#: phase, array and noise level) for the volume's :data:`RADIAL_SLICES` central slices, acquired
#: along golden-angle spokes at acceleration ``1 / fraction`` (one draw per volume: a scanner
#: repeats the spokes for every slice), and reconstructed as ``reconstruct`` reads a trajectory
#: file (maps estimated from the data). TV-SENSE uses the same estimated maps, over
#: :data:`RADIAL_TV_LAMS` (extended past an edge winner).
RADIAL_SLICES, RADIAL_TRAJECTORY = 4, "golden-radial"
RADIAL_TV_LAMS = (1e-3, 3e-3, 1e-2, 3e-2)


def complex_lines_volume(
    arr: np.ndarray, fraction: float, seed: int, center_lines: int = 0, family: str | None = None
) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """``(complex slices (N, H, W), masks (N, H, W), law)`` of the ``complex-lines`` study of a
    volume normalised to peak 1: the phase model's phase seeded per slice, equispaced lines
    (8 % central lines, at least ``center_lines``). ``family`` draws another registered family
    instead (a line family at acceleration ``1 / fraction``, a 2-D one at density ``fraction``),
    for scoring other laws on the same slices."""
    ref = torch.from_numpy(np.ascontiguousarray(np.moveaxis(arr, 2, 0))).float()
    ref = ref / float(ref.max())
    n, h, w = ref.shape
    # the protocol's centre, or at least ``center_lines`` lines (a fraction of whole lines)
    center = max(COMPLEX_LINES_CENTER, int(center_lines) / w)
    name = COMPLEX_LINES_FAMILY if family is None else family
    extra = {} if is_line_family(name) else {"fraction": fraction}
    law = make_family(name, (h, w), acceleration=1.0 / fraction, center_fraction=center, **extra)
    gens = [seeded_generator(slice_seed(seed, i) ^ SALT_PHASE) for i in range(n)]
    z = torch.cat([with_random_phase(ref[i][None, None], g)[:, 0] for i, g in enumerate(gens)])
    masks = torch.cat([law.sample(1, generator=seeded_generator(slice_seed(seed, i))) for i in range(n)])
    return z, masks, law


def _complex_lines_row(
    arr: np.ndarray, recs: dict[str, Reconstructor], fraction: float, seed: int, lams: Sequence[float],
    iters: int,
) -> dict[str, Any]:
    """One volume of the ``complex-lines`` study: zero-filled (``1/p``), every network from the
    k-space (:meth:`~mri_n2n.reconstruction.Reconstructor.kspace` with the law given) and CS-TV
    (complex) at this volume's best weight, all scored on the magnitude in the fastMRI volume
    convention."""
    z, masks, law = complex_lines_volume(arr, fraction, seed)
    n, h, w = z.shape
    ref = z.abs().numpy()
    acq = Acquisition(masks, keep_prob=law.keep_probability()).with_data(fft2c(z)[:, None])
    y = acq.y[:, 0].numpy()
    row: dict[str, Any] = {}
    zf = acq.zero_filled().abs()[:, 0].numpy()
    m = volume_metrics(zf, ref)
    row.update({"zero-filled/psnr": m["psnr"], "zero-filled/ssim": m["ssim"]})
    for name, rec in recs.items():
        t0 = time.perf_counter()
        out = rec.kspace(y, masks.numpy(), law=law)
        row[f"{name}/seconds"] = time.perf_counter() - t0
        m = volume_metrics(_as_slices(out.image, n, (h, w)), ref)
        row.update({f"{name}/psnr": m["psnr"], f"{name}/ssim": m["ssim"]})
        _record_adaptation(row, name, rec)
    def solve(lam: float) -> np.ndarray:
        return cs_tv(acq, lam=lam, iters=iters, rho=30.0 * lam, real=False).abs().reshape(n, h, w).numpy()

    row.update(_tv_oracle("CS-TV", solve, ref, lams))
    return row


def multicoil_lines_volume(
    arr: np.ndarray, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, Any]:
    """``(measured coil k-space (N, C, H, W), masks (N, H, W), reference (N, H, W), law)`` of the
    ``multicoil-lines`` study of a volume: the ``complex-lines`` slices and masks, one random
    array of :data:`MULTICOIL_COILS` coils around the volume's object (seeded by ``seed``),
    correlated noise :data:`MULTICOIL_NOISE` of the peak per slice (seeded per slice), and the
    fastMRI reference: the root-sum-of-squares of the noise-free coil images."""
    z, masks, law = complex_lines_volume(arr, fraction, seed, MULTICOIL_CENTER_LINES)
    n, h, w = z.shape
    support = z.abs().amax(0) > 0.1 * float(z.abs().max())
    g = seeded_generator(stable_ident("generalization-coils", seed))
    array = random_coil_array((h, w), MULTICOIL_COILS, g, support=support)
    coils = array.maps[None] * z[:, None]  # (N, C, H, W) noise-free coil images
    k = fft2c(coils)
    for i in range(n):
        g = seeded_generator(slice_seed(seed, i) ^ SALT_NOISE)
        noise, _ = correlated_noise((h, w), MULTICOIL_COILS, g, std=MULTICOIL_NOISE, positions=array.centres)
        k[i] += noise.to(k.dtype)
    ref = coils.abs().square().sum(1).sqrt().numpy()
    return k * masks[:, None], masks, ref, law


def multicoil_lines_file(y: torch.Tensor, masks: torch.Tensor, ref: np.ndarray, name: str) -> MultiCoilKSpace:
    """The coil k-space of :func:`multicoil_lines_volume` as ``reconstruct`` reads a file (its
    mask, its RSS reference, named ``name``)."""
    h, w = (int(v) for v in y.shape[-2:])
    return MultiCoilKSpace(
        kspace=y.numpy().astype(np.complex64), mask=masks.numpy(), reference=ref.astype(np.float32),
        recon_shape=(h, w), voxel_size=None, encoded_fov=None, max_value=None, source="npy", path=name,
    )


def _multicoil_lines_row(
    arr: np.ndarray, name: str, recs: dict[str, Reconstructor], fraction: float, seed: int,
    lams: Sequence[float], iters: int,
) -> dict[str, Any]:
    """One volume of the ``multicoil-lines`` study: the root-sum-of-squares of the zero-filled
    coil images, every network from the coil k-space as ``reconstruct`` reads a file
    (:meth:`~mri_n2n.reconstruction.Reconstructor.multicoil`: maps estimated from the centre),
    and TV-SENSE with the same maps at this volume's best weight, all scored against the
    noise-free RSS reference in the fastMRI volume convention. The networks are scored in the
    ``sense`` output convention, TV-SENSE's (the coil combination, no measured noise put back),
    and, as ``psnr_rss``, in fastMRI's ``rss`` one (the default of ``reconstruct``)."""
    y, masks, ref, law = multicoil_lines_volume(arr, fraction, seed)
    n, c, h, w = y.shape
    mc = multicoil_lines_file(y, masks, ref, name)
    row: dict[str, Any] = {"coils": c}
    m = volume_metrics(rss(ifft2c(y), dim=1).numpy(), ref)
    row.update({"zero-filled/psnr": m["psnr"], "zero-filled/ssim": m["ssim"]})
    for label, rec in recs.items():
        t0 = time.perf_counter()
        out = rec.multicoil(mc, output="sense")
        row[f"{label}/seconds"] = time.perf_counter() - t0
        m = volume_metrics(_as_slices(out.image, n, (h, w)), ref)
        row.update({f"{label}/psnr": m["psnr"], f"{label}/ssim": m["ssim"]})
        _record_adaptation(row, label, rec)
        if not rec.adapt_steps:  # fastMRI's RSS output, which puts the measured noise back
            m = volume_metrics(_as_slices(rec.multicoil(mc, output="rss").image, n, (h, w)), ref)
            row.update({f"{label}/psnr_rss": m["psnr"], f"{label}/ssim_rss": m["ssim"]})
    t0 = time.perf_counter()
    maps = inference_maps(y, _maps_settings(recs), name)

    def solve(lam: float) -> np.ndarray:
        return tv_sense(y, maps, masks, lam=lam, iters=iters).abs().numpy()

    row.update(_tv_oracle("TV-SENSE", solve, ref, lams, t0))
    return row


def multicoil_radial_volume(arr: np.ndarray, fraction: float, seed: int, name: str) -> NonCartesianKSpace:
    """The ``multicoil-radial`` study's trajectory file of a volume (:data:`RADIAL_SLICES`), its
    reference (the root-sum-of-squares of the noise-free coil images) in ``meta["reference"]``."""
    z, _, _ = complex_lines_volume(arr, fraction, seed)
    n, h, w = z.shape
    keep = sorted({int(v) for v in np.linspace(n // 2 - RADIAL_SLICES // 2, n // 2 + (RADIAL_SLICES - 1) // 2,
                                                RADIAL_SLICES).clip(0, n - 1)})
    support = z.abs().amax(0) > 0.1 * float(z.abs().max())
    z = z[keep]
    g = seeded_generator(stable_ident("generalization-coils", seed))
    array = random_coil_array((h, w), MULTICOIL_COILS, g, support=support)
    law = trajectory_law(RADIAL_TRAJECTORY, (h, w), acceleration=1.0 / fraction)
    traj = law.trajectory[law.sample(generator=seeded_generator(stable_ident("generalization-radial", seed)))]
    full = NonCartesianAcquisition(torch.ones(traj.shape[0], dtype=torch.bool), traj, (h, w), array.maps)
    k = full.forward(z)  # (N, C, readouts, samples)
    for i in range(len(keep)):
        g = seeded_generator(slice_seed(seed, keep[i]) ^ SALT_NOISE)
        noise, _ = correlated_noise(tuple(k.shape[-2:]), MULTICOIL_COILS, g, std=MULTICOIL_NOISE,
                                    positions=array.centres)
        k[i] += noise.to(k.dtype)
    ref = (array.maps[None] * z[:, None]).abs().square().sum(1).sqrt().numpy()
    return NonCartesianKSpace(
        kspace=k.numpy().astype(np.complex64), trajectory=traj.numpy(), matrix=(h, w), recon_shape=(h, w),
        voxel_size=None, encoded_fov=None, trajectory_type="goldenangle", source="npy", path=name,
        meta={"reference": ref.astype(np.float32), "slices": keep},
    )


def _multicoil_radial_row(
    arr: np.ndarray, name: str, recs: dict[str, Reconstructor], fraction: float, seed: int,
    lams: Sequence[float], iters: int,
) -> dict[str, Any]:
    """One volume of the ``multicoil-radial`` study: the density-compensated SENSE-1 adjoint,
    CG-SENSE, every network from the trajectory file (:meth:`Reconstructor.noncartesian`) and
    TV-SENSE at this volume's best weight, all with the maps estimated from the data and scored
    against the RSS reference in the fastMRI volume convention."""
    scan = multicoil_radial_volume(arr, fraction, seed, name)
    ref = scan.meta["reference"]
    n, c, _, _ = scan.shape
    h, w = scan.matrix
    kind = NonCartesianAcquisition
    maps = nc_inference_maps(kind, scan, _maps_settings(recs))
    acq = kind.from_arrays(scan.kspace, scan.trajectory, scan.matrix, maps)
    zf = acq.zero_filled()
    scale = float(zf.abs().max()) or 1.0
    row: dict[str, Any] = {"coils": c, "slices": scan.meta["slices"], "spokes": int(scan.shape[2])}
    for label, img in (("zero-filled", zf), ("CG-SENSE", acq.sense())):
        m = volume_metrics(img.abs().numpy(), ref)
        row.update({f"{label}/psnr": m["psnr"], f"{label}/ssim": m["ssim"]})
    for label, rec in recs.items():
        t0 = time.perf_counter()
        out = rec.noncartesian(scan)
        row[f"{label}/seconds"] = time.perf_counter() - t0
        m = volume_metrics(_as_slices(out.image, n, (h, w)), ref)
        row.update({f"{label}/psnr": m["psnr"], f"{label}/ssim": m["ssim"]})
        _record_adaptation(row, label, rec)
    unit = acq.with_data(acq.y / scale)

    def solve(lam: float) -> np.ndarray:
        return cs_tv(unit, lam=lam, iters=iters).abs().numpy() * scale

    row.update(_tv_oracle("TV-SENSE", solve, ref, lams))
    return row


def _tv_oracle(
    label: str, solve: Callable[[float], np.ndarray], ref: np.ndarray, lams: Sequence[float],
    t0: float | None = None,
) -> dict[str, Any]:
    """A TV baseline at this volume's best weight: ``solve(lam)`` gives its magnitude images, run
    over ``lams`` (extended past an edge winner, :func:`_grid_search`) and scored against ``ref``;
    the row's entries under ``label`` (metrics, weight, whether it is interior, the weights tried,
    seconds since ``t0``, default now)."""
    t0 = time.perf_counter() if t0 is None else t0
    scores: dict[float, dict[str, float]] = {}

    def run(lam: float) -> None:
        if lam not in scores:
            scores[lam] = volume_metrics(solve(lam), ref)

    best = _grid_search(run, scores, lams)
    order = sorted(scores)
    return {
        f"{label}/psnr": scores[best]["psnr"], f"{label}/ssim": scores[best]["ssim"], f"{label}/lam": best,
        f"{label}/interior": order[0] < best < order[-1], f"{label}/lams": [float(v) for v in order],
        f"{label}/seconds": time.perf_counter() - t0,
    }


def _maps_settings(recs: dict[str, Reconstructor]) -> dict | None:
    """The coil-map settings the baselines share with the networks: the first network's that
    sets them, else the library's (``None``)."""
    return next((r.maps for r in recs.values() if r.maps is not None), None)


def _record_adaptation(row: dict[str, Any], label: str, rec: Reconstructor) -> None:
    """The adaptation's steps taken, kept, seconds and readout window, when ``rec`` adapts."""
    if rec.adapt_steps and rec.last_adaptation is not None:
        rep = rec.last_adaptation
        row[f"{label}/adapt"] = {
            "steps": rep.steps, "best_step": rep.best_step, "seconds": rep.seconds,
            "stopped_early": rep.stopped_early, "crop": rep.crop,
        }


def _as_slices(image: np.ndarray, n: int, hw: tuple[int, int]) -> np.ndarray:
    """A reconstruction of k-space ``(N, H, W)`` (written ``(H, W, N)``) as ``(N, H, W)``."""
    a = np.asarray(image, np.float64)
    return a if a.shape == (n, *hw) else np.moveaxis(a, -1, 0)


def _grid_search(run: Any, scores: dict[float, dict[str, float]], lams: Sequence[float]) -> float:
    """Run ``run(lam)`` over the grid, extended by half decades past an edge winner; the best."""
    for lam in lams:
        run(float(lam))
    for _ in range(CS_TV_EXTEND):
        order = sorted(scores)
        best = max(order, key=lambda v: scores[v]["psnr"])
        if best == order[0]:
            run(best / np.sqrt(10.0))
        elif best == order[-1]:
            run(best * np.sqrt(10.0))
        else:
            break
    return max(sorted(scores), key=lambda v: scores[v]["psnr"])


def bench_generalization(
    checkpoints: dict[str, str | os.PathLike],
    *,
    fraction: float = 0.1,
    study: str = "magnitude",
    seed: int = 0,
    tv_iters: int = 100,
    lams: Sequence[float] | None = None,
    device: str = "cpu",
    volumes: Sequence[RealVolume] | None = None,
    ensemble: bool = False,
    adapt: int = 0,
) -> dict[str, Any]:
    """Evaluate checkpoints, zero-filling and per-volume-tuned CS-TV on the real volumes.

    Args:
        checkpoints: method name -> MRI checkpoint (e.g. ``{"N2N unrolled": "runs/x/best.pt"}``).
        fraction: mean sampling density of the study (``complex-lines``: acceleration ``1 / fraction``).
        study: ``magnitude`` or ``complex-lines`` (:data:`STUDIES`).
        seed: mask seed (masks depend on the seed and the slice only).
        tv_iters: CS-TV solver iterations.
        lams: CS-TV weights tried per volume (default :data:`CS_TV_LAMS`; ``multicoil-radial``
            :data:`RADIAL_TV_LAMS`).
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
    if study not in STUDIES:
        raise ValueError(f"study must be one of {STUDIES}, got {study!r}")
    if lams is None:
        lams = RADIAL_TV_LAMS if study == "multicoil-radial" else CS_TV_LAMS
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
        if study == "complex-lines":
            row.update(_complex_lines_row(arr, recs, fraction, seed, lams, tv_iters))
            rows.append(row)
            continue
        if study == "multicoil-lines":
            row.update(_multicoil_lines_row(arr, vol.name, recs, fraction, seed, lams, tv_iters))
            rows.append(row)
            continue
        if study == "multicoil-radial":
            row.update(_multicoil_radial_row(arr, vol.name, recs, fraction, seed, lams, tv_iters))
            rows.append(row)
            continue
        for i, (name, rec) in enumerate(recs.items()):
            t0 = time.perf_counter()
            result = rec.simulate(arr, fraction, seed=seed, axis=2)
            row[f"{name}/seconds"] = time.perf_counter() - t0
            if i == 0:
                row["zero-filled/psnr"] = result.metrics["psnr_zero_filled"]
                row["zero-filled/ssim"] = result.metrics["ssim_zero_filled"]
            row[f"{name}/psnr"] = result.metrics["psnr"]
            row[f"{name}/ssim"] = result.metrics["ssim"]
            _record_adaptation(row, name, rec)  # steps taken, kept, and their seconds
        m, lam, seconds, interior = _cs_tv(arr, first, fraction, seed, lams, tv_iters)
        row.update({"CS-TV/psnr": m["psnr"], "CS-TV/ssim": m["ssim"], "CS-TV/lam": lam})
        row.update({"CS-TV/interior": interior, "CS-TV/lams": [float(v) for v in m["tried"]]})
        row["CS-TV/seconds"] = seconds
        rows.append(row)
    multicoil = study in ("multicoil-lines", "multicoil-radial")
    methods = ["zero-filled", *(["CG-SENSE"] if study == "multicoil-radial" else []),
               "TV-SENSE" if multicoil else "CS-TV", *recs]
    mean = {k: {s: float(np.mean([r[f"{k}/{s}"] for r in rows])) for s in ("psnr", "ssim")} for k in methods}
    plain = {name: recs[name] for name in checkpoints}
    return {
        "rows": rows,
        "methods": methods,
        "mean": mean,
        "fraction": fraction,
        "study": study,
        "seed": seed,
        "lams": [float(v) for v in lams],
        # single-coil inference (multi-coil: the seconds per volume above)
        "inference_s_per_slice": {} if multicoil else inference_seconds(plain, fraction=fraction),
    }


def inference_seconds(
    recs: dict[str, Reconstructor],
    *,
    size: int = 256,
    slices: int = 8,
    blocks: int = 3,
    fraction: float = 0.1,
) -> dict[str, float]:
    """Seconds per ``size``-square slice of each reconstructor's plain inference (masks, zero-filling,
    network, data consistency; ``Reconstructor.simulate`` on a ``size x size x slices`` volume),
    the median of ``blocks`` interleaved blocks so that a changing load hits every model alike."""
    vol = np.zeros((size, size, slices), np.float32)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    vol[...] = ((xx**2 + yy**2) < 0.16)[..., None] * (1.0 + 0.2 * np.arange(slices))
    times: dict[str, list[float]] = {name: [] for name in recs}
    for _ in range(blocks):
        for name, rec in recs.items():
            t0 = time.perf_counter()
            rec.simulate(vol, fraction, seed=0, axis=2)
            times[name].append((time.perf_counter() - t0) / slices)
    return {name: float(np.median(t)) for name, t in times.items()}


def generalization_markdown(res: dict[str, Any]) -> str:
    """The table: one row per real volume (PSNR dB / SSIM per method), then the means; below it
    each volume's CS-TV weight (and whether it is interior to the grid) and the seconds per method."""
    methods = res["methods"]
    head = "| volume | contrast | shape | " + " | ".join(methods) + " |"
    lines = [head, "|" + "---|" * (3 + len(methods))]
    for r in res["rows"]:
        cells = [f"{r[f'{m}/psnr']:.2f} / {r[f'{m}/ssim']:.3f}" for m in methods]
        shape = "x".join(str(s) for s in r["shape"])
        lines.append(f"| {r['volume']} | {r['contrast']} | {shape} | " + " | ".join(cells) + " |")
    cells = [f"**{res['mean'][m]['psnr']:.2f} / {res['mean'][m]['ssim']:.3f}**" for m in methods]
    lines.append("| mean | | | " + " | ".join(cells) + " |")
    tv = "TV-SENSE" if "TV-SENSE" in methods else "CS-TV"
    lams = ", ".join(
        f"{r['volume']} {r[f'{tv}/lam']:g}" + ("" if r.get(f"{tv}/interior", True) else " (edge of the grid)")
        for r in res["rows"]
    )
    grid = ", ".join(f"{v:g}" for v in res.get("lams", CS_TV_LAMS))
    lines += [
        "",
        f"{tv} weight per volume (grid {grid}, extended by half decades past an edge winner): {lams}.",
    ]
    if res.get("study") == "multicoil-radial":
        spokes = ", ".join(f"{r['volume']} {r['spokes']}" for r in res["rows"])
        lines += ["", f"Golden-angle radial at {1 / res['fraction']:g}x, {MULTICOIL_COILS} coils, the "
                  f"central {RADIAL_SLICES} slices of each volume (fewer where it has fewer); spokes: "
                  f"{spokes}. Every method with the coil maps estimated from the data (ESPIRiT on the "
                  "gridded centre)."]
    for m in (m for m in methods if all(f"{m}/psnr_rss" in r for r in res["rows"])):
        vals = [r[f"{m}/psnr_rss"] for r in res["rows"]]
        cells = ", ".join(f"{r['volume']} {v:.2f}" for r, v in zip(res["rows"], vals))
        lines += ["", f"{m} in fastMRI's `rss` output (the measured noise put back), PSNR: {cells}; "
                  f"mean {np.mean(vals):.2f}."]  # fmt: skip
    timed = [m for m in methods if all(f"{m}/seconds" in r for r in res["rows"])]
    if timed:
        lines += ["", "| seconds | " + " | ".join(timed) + " |", "|---|" + "---|" * len(timed)]
        for r in res["rows"]:
            lines.append(f"| {r['volume']} | " + " | ".join(f"{r[f'{m}/seconds']:.1f}" for m in timed) + " |")
    adapted = [m for m in methods if all(f"{m}/adapt" in r for r in res["rows"])]
    if adapted:
        lines += [
            "",
            "Adaptation per volume (Adam steps taken / step kept / seconds of the adaptation alone):",
            "",
        ]
        lines += ["| volume | " + " | ".join(adapted) + " |", "|---|" + "---|" * len(adapted)]
        for r in res["rows"]:
            cells = [
                f"{r[f'{m}/adapt']['steps']} / {r[f'{m}/adapt']['best_step']} / "
                f"{r[f'{m}/adapt']['seconds']:.1f}"
                for m in adapted
            ]
            lines.append(f"| {r['volume']} | " + " | ".join(cells) + " |")
    if res.get("inference_s_per_slice"):
        cells = ", ".join(f"{k} {v:.3f} s" for k, v in res["inference_s_per_slice"].items())
        lines += ["", f"Plain inference per 256² slice (median of interleaved blocks of 8 slices): {cells}."]
    return "\n".join(lines)
