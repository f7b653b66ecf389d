"""Compare MRI reconstructions on the validation slices (the library of ``mri-n2n evaluate``).

Methods: zero-filled (density compensated, the network's input), the compressed-sensing
baseline (CS-TV, :mod:`mri_n2n.baselines`) and every checkpoint given, all on the *same*
fixed masks (seeded from each slice's identity, as validation during training).

Two metric conventions are reported:

- **paper** (Lehtinen et al.): per slice, outputs clipped to [0, 1], peak 1.0 (images are
  normalised to a volume maximum of 1), PSNR and SSIM (7x7 uniform window) averaged over slices;
  NMSE per slice.
- **fastMRI**: per volume (slices grouped by source volume), ``data_range`` = the reference
  volume's maximum, no clipping; PSNR, SSIM and NMSE over the volume, averaged over volumes.

Outputs in ``--out``: ``metrics.md``, ``metrics.csv`` (per slice), ``summary.json`` (means and
standard deviations), ``figures/comparison.png`` and ``figures/psnr_hist.png``.
"""

from __future__ import annotations

import csv
import io
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .baselines import DEFAULT_SENSE_TV_LAM, DEFAULT_TV_LAM, tikhonov
from .baselines import cs_tv as cs_tv_solve
from .checkpoint import (
    DEFAULT_NAME,
    checkpoint_acquisition,
    default_pretrained,
    load_checkpoint,
    model_from_checkpoint,
    tuned_adaptation,
)
from .config import Config
from .corruptions import Corruption, MRIUndersampling
from .data.datasets import mri_datasets_from_config
from .data.multicoil import is_multicoil
from .devices import Stopwatch, resolve_device
from .fft import to_channels
from .io import atomic_write_json, atomic_write_text
from .io.kspace import find_kspace_files
from .losses import adaptation_weighting
from .metrics import nmse, psnr, ssim, volume_metrics
from .models import apply_model, ends_with_dc
from .models.ensemble import ensemble_forward
from .physics import Acquisition
from .plots import comparison_grid, provenance_view, psnr_histogram
from .reconstruction.adapt import ADAPT_LR
from .reconstruction.adapt import adapt as adapt_to_scan
from .reconstruction.engine import consistent
from .reconstruction.multicoil import MULTICOIL_OUTPUTS, multicoil_output

__all__ = ["evaluate_mri", "default_for_data", "write_evaluation", "evaluation_markdown"]

METRICS = ("psnr", "ssim", "nmse")
#: Multi-coil studies also score the object alone: the pixels where the reference exceeds this
#: share of its slice's maximum (``psnr_object``: the measured noise that a coil-wise data
#: consistency puts back in the background dominates a whole-image score against a noise-free
#: reference).
OBJECT_LEVEL = 0.05


def object_psnr(image: torch.Tensor, ref: torch.Tensor, level: float = OBJECT_LEVEL) -> torch.Tensor:
    """PSNR (peak 1) per slice ``(B,)`` over the pixels where ``ref`` exceeds ``level`` times its
    slice's maximum; images ``(B, 1, H, W)``, clipped to ``[0, 1]`` like :func:`~mri_n2n.metrics.psnr`."""
    obj = ref > level * ref.flatten(1).amax(1)[:, None, None, None]
    err = ((image.clamp(0, 1) - ref) ** 2 * obj).flatten(1).sum(1) / obj.flatten(1).sum(1).clamp_min(1)
    return 10 * torch.log10(1.0 / err.clamp_min(1e-20))
#: Multi-coil baseline: CG-SENSE with this Tikhonov weight (images normalised to peak 1) and
#: these iterations (the classic parallel-imaging reconstruction; no sparsity prior).
SENSE_LAM = 1e-3
SENSE_ITERS = 30
#: The method name of the uncompensated zero-filled image (``plain_zero_filled=True``).
PLAIN = "zero-filled (no 1/p)"


def _method_name(path: Path, ckpt: dict[str, Any], taken: set[str]) -> str:
    cfg = ckpt.get("config", {})
    base = {"noisy": "N2N", "clean": "N2C", "ssdu": "SSDU", "noisier2noise": "Noisier2Noise"}.get(
        cfg.get("target"), "model"
    )
    name = base if base not in taken else f"{base} ({path.parent.parent.name or path.stem})"
    while name in taken:
        name += "'"
    return name


def default_for_data(dataset: str | None, data_dir: str | os.PathLike | None) -> tuple[str, str]:
    """What ``--checkpoint default`` means for an evaluation on ``dataset`` (``data_dir``):
    ``(shipped name, why)``. A folder of k-space files (``--dataset kspace``) gets the model made
    for its files (multi-coil files: the multi-coil model; single-coil files: the complex one,
    :func:`~mri_n2n.checkpoint.default_pretrained`); every other data set, whose slices the
    checkpoint's own settings simulate, the magnitude default."""
    data = "magnitude"
    if dataset == "kspace" and data_dir is not None and Path(data_dir).exists():
        files = find_kspace_files(Path(data_dir))
        if files:
            data = "multicoil" if any(is_multicoil(f) for f in files) else "complex"
    source = "k-space files" if dataset == "kspace" else "simulated"
    return default_pretrained(data), f"{data} data ({source})"


def evaluate_mri(
    checkpoints: Sequence[str | Path],
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    size: int | None = None,
    cs_tv: bool = True,
    tv_lam: float | None = None,
    tv_iters: int = 100,
    limit: int | None = None,
    batch_size: int = 8,
    device: str = "auto",
    progress: bool = True,
    plain_zero_filled: bool = False,
    sense_lam: float | None = None,
    ensemble: bool = False,
    adapt: int = 0,
    output: str = "rss",
    acquisition: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate zero-filling, CS-TV and checkpoints on the same validation slices and masks.

    The data set, slice size and sampling density come from the first checkpoint's config
    unless overridden (``acquisition``: config fields of the acquisition, e.g. ``{"trajectory":
    "spiral", "acceleration": 8.0, "synth_coils": "8:8"}``, one protocol of a model trained on
    ``--trajectory mixed`` at a coil count). Slices whose dataset has a reference
    (``--dataset kspace`` files with ``reconstruction_esc``,
    :meth:`~mri_n2n.data.kspace.KSpaceSliceDataset.reference`) are scored against it; others
    against the clean slice's magnitude. Multi-coil data get two baselines in place of CS-TV:
    CG-SENSE (Tikhonov weight ``sense_lam``, default
    :data:`SENSE_LAM`) and TV-SENSE (:func:`~mri_n2n.baselines.tv_sense`, weight ``tv_lam``,
    default :data:`~mri_n2n.baselines.DEFAULT_SENSE_TV_LAM`). Every multi-coil method (the SENSE-1
    zero-filled image, the baselines, the networks after their data consistency) is scored as
    ``mri-n2n reconstruct`` writes it, in the convention ``output``
    (:func:`~mri_n2n.reconstruction.multicoil.multicoil_output`: ``"rss"``, fastMRI's
    root-sum-of-squares of the data-consistent coil images, or ``"sense"``, the SENSE image
    on the maps' support), so a network's scores are those of its reconstructions and the
    baselines are treated alike. ``plain_zero_filled`` adds
    the uncompensated zero-filled image ``F^-1 M y`` (:data:`PLAIN`); ``ensemble`` adds, after
    each checkpoint, its geometric self-ensemble (:func:`~mri_n2n.models.ensemble.ensemble_forward`,
    named ``<name> x8`` or ``x4`` for line masks and non-square slices); ``adapt`` adds each
    checkpoint adapted by this many self-supervised steps to the evaluated slices' own
    measurements (:func:`~mri_n2n.reconstruction.adapt.adapt`, every acquisition kind;
    named ``<name> adapted``). The acquisition of the validation pairs decides the baselines
    (coil data: CG-SENSE and TV-SENSE; other kinds: CS-TV by :func:`~mri_n2n.baselines.cs_tv`'s
    generic path), never the dataset's attributes. Returns a dict with
    ``methods`` (names in order), ``per_slice`` (a list of rows: slice identity, source volume,
    and ``<method>/<metric>`` values),
    ``summary`` (per method: mean and std of each metric in both conventions), and
    ``examples`` (the first slice's images per method, as numpy arrays in array order, for
    figures) with ``example_provenance`` (that slice's dataset provenance: its volume's ``affine``
    and ``axis`` orient the figure, :func:`mri_n2n.plots.provenance_view`).
    """
    if not checkpoints:
        raise ValueError("give at least one --checkpoint")
    if output not in MULTICOIL_OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(MULTICOIL_OUTPUTS)}, got {output!r}")
    dev = resolve_device(device)
    chosen = None
    if any(str(p) == DEFAULT_NAME for p in checkpoints):  # the shipped model made for these data
        chosen = default_for_data(dataset, data_dir)
        checkpoints = [chosen[0] if str(p) == DEFAULT_NAME else p for p in checkpoints]
    ckpts = [(Path(p), load_checkpoint(p, task="mri", map_location="cpu")) for p in checkpoints]
    cfg = Config.from_dict(ckpts[0][1]["config"], where=f"{ckpts[0][0]}: config")
    cfg = cfg.replace(
        dataset=dataset or cfg.dataset, data_dir=data_dir or cfg.data_dir, size=size or cfg.size
    )
    if acquisition:
        try:
            cfg = cfg.replace(**dict(acquisition))
        except TypeError as e:
            raise ValueError(f"acquisition overrides: {e}") from None
        if "acceleration" in acquisition and "spokes" not in acquisition:
            cfg = cfg.replace(spokes=None)  # the asked acceleration, not the checkpoint's count
        if acquisition.get("trajectory") and cfg.acquisition != "noncartesian":
            raise ValueError(
                f"--trajectory {acquisition['trajectory']}: {ckpts[0][0]} was trained for {cfg.acquisition} "
                "acquisitions, not trajectories"
            )
    if cfg.dataset != "synth":  # the training data's own mixing settings do not apply to others
        cfg = cfg.replace(synth_photos=0.0, synth_template=0.0)
    if cfg.dataset == "kspace":  # k-space files bring their own coils
        cfg = cfg.replace(synth_coils=None)
    complex_data = cfg.complex
    _, valid = mri_datasets_from_config(cfg)
    if getattr(valid, "measured", False):
        raise ValueError(
            f"{cfg.data_dir}: undersampled files have no fully sampled slices to evaluate against; "
            "give fully sampled data (--dataset, --data-dir), or run `mri-n2n reconstruct` on files "
            "that store reconstruction_esc"
        )
    corruption = _corruption_for(cfg, valid)
    law = corruption.law
    # the acquisition decides: coil data get SENSE-1 inputs and CG-SENSE/TV-SENSE for CS-TV
    probe = _probe(valid, corruption, dev)
    multicoil = probe.multicoil
    # CG-SENSE (least squares by CG) for coil data and for kinds without an exact replacement
    # (a trajectory: there it is not the zero-filled image), then the TV baseline
    baselines = ["CG-SENSE", "TV-SENSE"] if multicoil else ["CS-TV"]
    if not multicoil and not probe.replaces:
        baselines = ["CG-SENSE", "CS-TV"]
    taken: set[str] = {"zero-filled", *baselines}
    models: list[tuple[str, torch.nn.Module]] = []
    complex_of: dict[str, bool] = {}
    adapt_lr: dict[str, float] = {}
    adapt_weighting: dict[str, str] = {}
    for path, ck in ckpts:
        name = _method_name(path, ck, taken)
        taken.add(name)
        models.append((name, model_from_checkpoint(ck, device=dev)))
        complex_of[name] = bool(checkpoint_acquisition(ck)["complex"])
        adapt_lr[name] = float(tuned_adaptation(path).get("lr", ADAPT_LR))  # a shipped model's tuned rate
        adapt_weighting[name] = adaptation_weighting(ck.get("config", {}).get("loss"))
    n = len(valid) if limit is None else min(limit, len(valid))
    if adapt:
        models += [
            (f"{name} adapted",
             _adapted(m, valid, corruption, n, adapt, dev, complex_of[name], adapt_lr[name],
                      adapt_weighting[name]))
            for name, m in models
        ]  # fmt: skip
    ens_names: set[str] = set()
    if ensemble:
        tag = " x4" if law.lines else " x8"
        models = [m for name, net in models for m in ((name, net), (name + tag, net))]
        ens_names = {n for n, _ in models[1::2]}
    methods = (
        ["zero-filled"]
        + ([PLAIN] if plain_zero_filled else [])
        + (baselines if cs_tv else [])
        + [n for n, _ in models]
    )
    single_lam = probe.tv_lam if probe.tv_lam is not None else DEFAULT_TV_LAM  # the kind's own, if any
    lam = (DEFAULT_SENSE_TV_LAM if multicoil else single_lam) if tv_lam is None else tv_lam
    sense_lam = SENSE_LAM if sense_lam is None else sense_lam

    rows: list[dict[str, Any]] = []
    vol_store: dict[str, dict[str, list[np.ndarray]]] = {}
    examples: dict[str, np.ndarray] = {}
    example_prov: dict[str, Any] = {}
    seconds = dict.fromkeys(methods, 0.0)
    bar = tqdm(total=n, desc="evaluate", unit="slice", disable=not progress)
    for start in range(0, n, batch_size):
        idx = list(range(start, min(start + batch_size, n)))
        clean, seeds = _batch(valid, idx, dev)
        pair = corruption.validation_pair(clean, seeds)
        acq = pair.acq  # the slices' masks, measurements (and maps)
        outs: dict[str, torch.Tensor] = {"zero-filled": pair.input}
        if plain_zero_filled and multicoil:  # the root-sum-of-squares of the zero-filled coils
            z = _zero_filled_rss(acq)
            outs[PLAIN] = torch.stack([z, torch.zeros_like(z)], dim=1)
        elif plain_zero_filled:  # A^H y: no 1/p compensation
            outs[PLAIN] = acq.channels_of(acq.adjoint(), pair.input.shape[1])
        if cs_tv and "CG-SENSE" in baselines:
            with Stopwatch(dev) as sw:
                z = tikhonov(acq, sense_lam, SENSE_ITERS)
                outs["CG-SENSE"] = to_channels(z) if multicoil else acq.channels_of(z, pair.input.shape[1])
            seconds["CG-SENSE"] += sw.seconds
        if cs_tv:  # one CS-TV on the acquisition: TV-SENSE for coils, CS-TV for one coil
            with Stopwatch(dev) as sw:
                z = cs_tv_solve(acq, lam=lam, iters=tv_iters, real=not (complex_data or multicoil))
                outs[baselines[-1]] = acq.channels_of(z, pair.input.shape[1])
            seconds[baselines[-1]] += sw.seconds
        for name, model in models:
            # a stopwatch that waits for the device at both ends: each method's GPU time is its own
            with Stopwatch(dev) as sw, torch.no_grad():  # unrolled nets: DC after every cascade
                if name in ens_names:
                    out = ensemble_forward(model, pair.input, acq)
                else:
                    out = apply_model(model, pair.input, acq)
                outs[name] = out if ends_with_dc(model) else _consistent_channels(acq, out)
            seconds[name] += sw.seconds
        ref = _magnitude(pair.target)
        refs = [valid.reference(i) for i in idx] if hasattr(valid, "reference") else []
        if refs and all(r is not None for r in refs):  # the file's own reference (fastMRI's esc)
            ref = torch.from_numpy(np.stack(refs))[:, None].to(ref.device, ref.dtype)
        if multicoil:  # as reconstruct writes them; the RSS of the zero-filled coils as it is
            mags = {
                k: _magnitude(v) if k == PLAIN else multicoil_output(v, pair.acq, output)[:, None]
                for k, v in outs.items()
            }
        else:
            mags = {k: _magnitude(v) for k, v in outs.items()}
        per = {
            k: {
                "psnr": psnr(v.clamp(0, 1), ref, data_range=1.0, reduction="none"),
                "ssim": ssim(v.clamp(0, 1), ref, data_range=1.0, reduction="none"),
                "nmse": nmse(v, ref, reduction="none"),
            }
            for k, v in mags.items()
        }
        if multicoil:
            for k, v in mags.items():
                per[k]["psnr_object"] = object_psnr(v, ref)
        for j, i in enumerate(idx):
            prov = valid.provenance(i) if hasattr(valid, "provenance") else {}
            source = str(prov.get("source", prov.get("file", "volume")))
            row: dict[str, Any] = {
                "index": i,
                "ident": int(seeds[j]),
                "source": source,
                "slice": prov.get("slice"),
            }
            for k in methods:
                for m in per[k]:
                    row[f"{k}/{m}"] = float(per[k][m][j])
            rows.append(row)
            store = vol_store.setdefault(source, {k: [] for k in ["reference", *methods]})
            store["reference"].append(ref[j, 0].cpu().numpy())
            for k in methods:
                store[k].append(mags[k][j, 0].cpu().numpy())
        if not examples:
            examples = {"reference": ref[0, 0].cpu().numpy()}
            sampled = acq.sampled
            if sampled.ndim == 3:  # a sampled set on the image grid (a mask) is shown
                examples["mask"] = sampled[0].cpu().numpy()
            examples.update({k: mags[k][0, 0].cpu().numpy() for k in methods})
            example_prov = valid.provenance(idx[0]) if hasattr(valid, "provenance") else {}
        bar.update(len(idx))
    bar.close()

    summary: dict[str, Any] = {}
    vol_metrics = _volume_metrics(vol_store, methods)
    for k in methods:
        s: dict[str, Any] = {}
        for m in METRICS:
            vals = [r[f"{k}/{m}"] for r in rows]
            s[f"{m}_mean"] = statistics.fmean(vals)
            s[f"{m}_std"] = statistics.pstdev(vals) if len(vals) > 1 else 0.0
            vv = [v[m] for v in vol_metrics[k]]
            s[f"fastmri_{m}_mean"] = statistics.fmean(vv)
            s[f"fastmri_{m}_std"] = statistics.pstdev(vv) if len(vv) > 1 else 0.0
        if rows and f"{k}/psnr_object" in rows[0]:
            s["psnr_object_mean"] = statistics.fmean(r[f"{k}/psnr_object"] for r in rows)
        s["seconds_per_slice"] = seconds[k] / max(n, 1) if k in seconds and k != "zero-filled" else None
        summary[k] = s
    return {
        "methods": methods,
        "per_slice": rows,
        "summary": summary,
        "examples": examples,
        "example_provenance": example_prov,
        "settings": {
            "dataset": cfg.dataset,
            "size": cfg.size,
            "density": cfg.density,
            "fraction": cfg.fraction,
            "acceleration": cfg.acceleration,
            "center_fraction": cfg.center_fraction,
            "sampled_fraction": law.fraction,
            "acquisition": cfg.acquisition,
            "sampling": law.describe().get("summary"),  # a law's own words (trajectories)
            "slices": n,
            "volumes": len(vol_store),
            "tv_lam": lam if cs_tv else None,
            "tv_iters": tv_iters if cs_tv else None,
            "sense_lam": sense_lam if cs_tv and multicoil else None,
            "multicoil_output": output if multicoil else None,
            "checkpoints": [str(p) for p, _ in ckpts],
            "default_checkpoint": None if chosen is None else {"name": chosen[0], "why": chosen[1]},
            "device": str(dev),
        },
    }


def _batch(valid: Any, idx: Sequence[int], dev: torch.device) -> tuple[Any, torch.Tensor]:
    """The validation items ``idx`` as one batch on ``dev`` (clean images stacked, acquisitions
    collated by their kind) and their identities."""
    items = [valid[i] for i in idx]
    first = items[0][0]
    if isinstance(first, Acquisition):
        batch: torch.Tensor | Acquisition = type(first).collate([it[0] for it in items]).to(dev)
    else:
        batch = torch.stack([it[0] for it in items]).to(dev).float()
    return batch, torch.tensor([it[1] for it in items])


def _corruption_for(cfg: Config, valid: Any) -> MRIUndersampling:
    """The corruption training validated with, for the validation data: coil acquisitions get the
    corruption of their coil count (:meth:`~mri_n2n.corruptions.MRIUndersampling.from_config`)."""
    first = valid[0][0] if len(valid) else None
    coils = first.n_coils if isinstance(first, Acquisition) and first.multicoil else None
    return MRIUndersampling.from_config(cfg, (cfg.size, cfg.size), coils=coils)


def _probe(valid: Any, corruption: Corruption, dev: torch.device) -> Acquisition:
    """The acquisition of the first validation slice (what the methods are chosen by)."""
    batch, idents = _batch(valid, [0], dev)
    return corruption.validation_pair(batch, idents).acq


def _consistent_channels(acq: Acquisition, out: torch.Tensor) -> torch.Tensor:
    """A network's output channels made consistent with the acquisition's measurements
    (:func:`~mri_n2n.reconstruction.engine.consistent`), as model channels again."""
    z = consistent(acq, acq.image_of(out.float()))
    return acq.channels_of(z, out.shape[1]).to(out.dtype)


def _zero_filled_rss(acq: Acquisition) -> torch.Tensor:
    """The root-sum-of-squares of the zero-filled coil images (the output image of ``A^H y``
    for a kind without coil images)."""
    coil_images = getattr(acq, "coil_images", None)
    if coil_images is None:
        return acq.output_image(acq.adjoint())
    return coil_images().abs().square().sum(1).sqrt()


def _adapted(
    model: torch.nn.Module,
    valid: Any,
    corruption: Corruption,
    n: int,
    steps: int,
    dev: torch.device,
    complex_data: bool,
    lr: float = ADAPT_LR,
    weighting: str = "inverse",
) -> torch.nn.Module:
    """``model`` adapted to the measurements of the first ``n`` validation slices (the sampled
    sets and measurements ``corruption.validation_pair`` gives them) by the one adaptation call
    of every kind (:func:`~mri_n2n.reconstruction.adapt.adapt`) at learning rate ``lr``, with
    the loss weighting ``weighting`` (:func:`~mri_n2n.losses.adaptation_weighting`)."""
    clean, seeds = _batch(valid, range(n), dev)
    acq = corruption.validation_pair(clean, seeds).acq
    net, _ = adapt_to_scan(
        model, acq, corruption.law, real=not complex_data, steps=steps, lr=lr, weighting=weighting
    )
    return net


def _magnitude(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 2:
        return torch.sqrt(x[:, :1] ** 2 + x[:, 1:] ** 2)
    return x.float()


def _volume_metrics(
    store: dict[str, dict[str, list[np.ndarray]]], methods: list[str]
) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {k: [] for k in methods}
    for vols in store.values():
        ref = torch.from_numpy(np.stack(vols["reference"]))
        for k in methods:
            rec = torch.from_numpy(np.stack(vols[k]))
            vm = volume_metrics(rec, ref)
            out[k].append({m: float(vm[m]) for m in METRICS})
    return out


def evaluation_markdown(result: dict[str, Any]) -> str:
    """The results table (both conventions) as Markdown."""
    st = result["settings"]
    lines = [
        f"Validation: {st['slices']} slices ({st['volumes']} volumes) of `{st['dataset']}` at "
        f"{st['size']}x{st['size']}, "
        + (f"{st['sampling']}, fixed draws seeded per slice." if st.get("sampling") else
           f"`{st['density']}` masks, "
           f"{st.get('sampled_fraction', st['fraction']) * 100:.1f} % of k-space sampled, "
           "fixed masks seeded per slice.")
        + (f" `--checkpoint default`: `{d['name']}` ({d['why']})." if (d := st.get("default_checkpoint"))
           else ""),
        "",
        "| method | PSNR (dB) | SSIM | NMSE | fastMRI PSNR | fastMRI SSIM | fastMRI NMSE | s/slice |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in result["methods"]:
        s = result["summary"][k]
        sec = s.get("seconds_per_slice")
        lines.append(
            f"| {k} | {s['psnr_mean']:.2f} ± {s['psnr_std']:.2f} "
            f"| {s['ssim_mean']:.4f} ± {s['ssim_std']:.4f} "
            f"| {s['nmse_mean']:.4f} ± {s['nmse_std']:.4f} | {s['fastmri_psnr_mean']:.2f} "
            f"| {s['fastmri_ssim_mean']:.4f} | {s['fastmri_nmse_mean']:.4f} "
            f"| {'' if sec is None else f'{sec:.4f}'} |"
        )
    lines += [
        "",
        "Paper convention: per slice, output clipped to [0, 1], peak 1.0, mean ± std over slices. "
        "fastMRI convention: per volume, data range = reference volume maximum, mean over volumes.",
    ]
    out = st.get("multicoil_output")
    if out:
        lines.append(
            "Multi-coil images as `mri-n2n reconstruct` writes them: "
            + (
                "the root-sum-of-squares of the data-consistent coil images (fastMRI's convention)."
                if out == "rss"
                else "the SENSE image on the maps' support, the data-consistent coils' root-sum-of-squares "
                "outside it (`--multicoil-output sense`)."
            )
        )
    return "\n".join(lines)


def write_evaluation(result: dict[str, Any], out: str | Path, *, figures: bool = True) -> None:
    """Write metrics.md, metrics.csv, summary.json and the figures into ``out`` (atomically)."""
    out = Path(out)
    atomic_write_text(out / "metrics.md", evaluation_markdown(result) + "\n")
    buf = io.StringIO()
    if result["per_slice"]:
        w = csv.DictWriter(buf, fieldnames=list(result["per_slice"][0]))
        w.writeheader()
        w.writerows(result["per_slice"])
    atomic_write_text(out / "metrics.csv", buf.getvalue())
    atomic_write_json(
        out / "summary.json",
        {"methods": result["methods"], "summary": result["summary"], "settings": result["settings"]},
    )
    if figures:
        # volume slices in the radiological convention (the examples stay in array order)
        prov = result.get("example_provenance")
        ex = {k: provenance_view(v, prov) for k, v in result["examples"].items()}
        ref = ex["reference"]
        psnrs = {k: result["per_slice"][0][f"{k}/psnr"] for k in result["methods"]}
        comparison_grid(
            out / "figures" / "comparison.png",
            reference=ref,
            methods={k: ex[k] for k in result["methods"]},
            psnrs=psnrs,
            mask=ex.get("mask"),
        )
        psnr_histogram(
            out / "figures" / "psnr_hist.png",
            {k: [r[f"{k}/psnr"] for r in result["per_slice"]] for k in result["methods"]},
        )

