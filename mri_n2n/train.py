"""The Noise2Noise trainer and ``python -m mri_n2n.train``.

One loop serves the MRI and the photographic experiments (see :mod:`mri_n2n.corruptions`)::

    clean batch -> corruption.pair -> model -> corruption.project -> loss

Paper settings: Adam (beta1 0.9, beta2 0.99, eps 1e-8), learning rate 1e-3 with a
sigmoid ramp-up and a smooth cosine ramp-down; for MRI a fresh Hermitian Bernoulli mask
per sample and call, density-compensated zero-filled input, data consistency inside the
graph, L2 loss and random circular shifts.

A run folder holds ``config.yaml``, ``metrics.csv``, ``checkpoints/{last,best}.pt``,
``summary.json`` and ``figures/``. ``--resume`` continues bit-exactly on CPU: the data
order, the corruption generator, the global RNG, the optimiser and the step are all
restored from ``last.pt`` (written at every epoch end and when interrupted).

Distributed: ``torchrun --nproc_per_node=N -m mri_n2n.train ...`` uses DDP (NCCL on GPU,
gloo on CPU); every rank draws its own shard of each epoch and its own masks; only rank 0
writes.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import hashlib
import io
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import PRESETS, Config, load_yaml, save_yaml
from .corruptions import Corruption, MRIUndersampling, seeded_generator
from .devices import resolve_device
from .io import atomic_write_json, atomic_write_text
from .losses import get_loss

__all__ = [
    "TrainingError",
    "resolve_config",
    "learning_rate",
    "build_mri_corruption",
    "Experiment",
    "build_experiment",
    "Trainer",
    "train",
    "main",
]


class TrainingError(RuntimeError):
    """A run cannot go on (bad data, non-finite loss, ...); the message says why."""


# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------


MRI_DATASETS = ("mni152", "ixi", "nifti", "dicom", "kspace")
IMAGE_DATASETS = ("images", "folder", "pairs", "montecarlo")


def _cuda_available() -> bool:
    return torch.cuda.is_available()


def resolve_config(cfg: Config) -> tuple[Config, str]:
    """Fill preset-dependent fields left at ``None``; returns the config and why the preset was chosen."""
    preset = cfg.preset
    if preset == "auto":
        if _cuda_available() and cfg.device != "cpu":
            preset, why = "paper", "a CUDA GPU is present"
        else:
            preset, why = "cpu", "no GPU: the CPU default trains in minutes on 2 cores"
    else:
        why = "asked for with --preset"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset '{preset}' (choose from auto, {', '.join(PRESETS)})")
    vals = PRESETS[preset]
    upd: dict[str, Any] = {"preset": preset}
    for k, v in vals.items():
        if k in ("base", "depth"):
            # knobs with non-None defaults: the preset applies unless changed from the default
            if getattr(cfg, k) == getattr(Config(), k):
                upd[k] = v
        elif getattr(cfg, k) is None:
            upd[k] = v
    # an explicit step or epoch budget wins over the preset's other budget
    if cfg.epochs is not None and cfg.max_steps is None and "max_steps" in vals:
        upd["max_steps"] = None
    if cfg.max_steps is not None and cfg.epochs is None and "epochs" in vals:
        upd["epochs"] = None
    if cfg.task == "image" and cfg.dataset == "mni152":
        upd["dataset"] = "images"
    cfg = cfg.replace(**upd)
    known = MRI_DATASETS if cfg.task == "mri" else IMAGE_DATASETS
    if cfg.dataset not in known:
        raise ValueError(
            f"--dataset: unknown {cfg.task} dataset '{cfg.dataset}' (choose from {', '.join(known)})"
        )
    if cfg.target not in ("noisy", "clean"):
        raise ValueError(
            f"--target must be 'noisy' (Noise2Noise) or 'clean' (Noise2Clean), got '{cfg.target}'"
        )
    if cfg.task not in ("mri", "image"):
        raise ValueError(f"--task must be 'mri' or 'image', got '{cfg.task}'")
    if cfg.size is not None and cfg.size < 8:
        raise ValueError(f"--size must be at least 8, got {cfg.size}")
    return cfg, f"preset '{preset}' ({why})"


def learning_rate(step: int, total: int, cfg: Config) -> float:
    """The paper's schedule: sigmoid ramp-up ``exp(-5 (1 - t)^2)`` over the first ``rampup``
    fraction of steps, then constant, then the smooth ramp-down ``(0.5 + 0.5 cos(pi t))^2``
    over the last ``rampdown`` fraction."""
    total = max(total, 1)
    frac = step / total
    lr = cfg.lr
    if cfg.rampup > 0 and frac < cfg.rampup:
        t = frac / cfg.rampup
        lr *= math.exp(-5.0 * (1.0 - t) ** 2)
    if cfg.rampdown > 0 and frac > 1.0 - cfg.rampdown:
        t = (frac - (1.0 - cfg.rampdown)) / cfg.rampdown
        lr *= (0.5 + 0.5 * math.cos(math.pi * min(t, 1.0))) ** 2
    return lr


def _parse_slices(s: str | None) -> tuple[int, int] | None:
    if not s:
        return None
    try:
        a, b = s.split(":")
        return int(a), int(b)
    except ValueError:
        raise ValueError(f"--slices must look like START:STOP (e.g. 25:125), got '{s}'") from None


def build_mri_corruption(
    cfg: Config | dict, shape: tuple[int, int], *, complex_data: bool = False
) -> MRIUndersampling:
    """The MRI corruption a config describes, for k-space of ``shape`` (also used at inference)."""
    from .sampling import make_density

    c = cfg if isinstance(cfg, Config) else Config.from_dict(cfg)
    density = make_density(
        c.density,
        shape,
        fraction=c.fraction if c.fraction else None,
        edge=c.edge,
        acceleration=c.acceleration,
        center_fraction=c.center_fraction,
    )
    lines = {"lines_random": "random", "lines_equispaced": "equispaced"}.get(c.density)
    shift = min(shape) // 4 if c.shift is None else c.shift
    return MRIUndersampling(
        density,
        max_shift=shift,
        complex_data=complex_data,
        lines=lines,
        acceleration=c.acceleration,
        center_fraction=c.center_fraction,
    )


@dataclass
class Experiment:
    """What a run trains: data, corruption, loss, and the model's channel count."""

    train_set: Dataset
    valid_set: Dataset
    corruption: Corruption
    loss_name: str
    channels: int


def build_experiment(cfg: Config) -> Experiment:
    """Datasets, corruption and loss for a resolved config."""
    if cfg.task == "mri":
        from .data import build_mri_datasets

        complex_data = bool(cfg.extra.get("complex", False))
        train_set, valid_set = build_mri_datasets(
            cfg.dataset,
            data_dir=cfg.data_dir,
            size=cfg.size,
            slices=_parse_slices(cfg.slices),
            axis=cfg.axis,
            normalize=cfg.normalize,
            complex_kspace=complex_data,
            seed=0,  # the train/validation split must not change with the training seed
        )
        corruption = build_mri_corruption(cfg, (cfg.size, cfg.size), complex_data=complex_data)
        return Experiment(train_set, valid_set, corruption, cfg.loss or "l2", 2 if complex_data else 1)
    from .images import build_image_datasets, default_loss, make_corruption

    train_set, valid_set = build_image_datasets(
        cfg.dataset, data_dir=cfg.data_dir, crop=cfg.size, noise=cfg.noise, seed=cfg.seed
    )
    corruption = make_corruption(cfg.noise, **cfg.extra.get("noise_kwargs", {}))
    channels = int(getattr(train_set, "channels", 3))
    return Experiment(train_set, valid_set, corruption, cfg.loss or default_loss(cfg.noise), channels)


def build_model_for(cfg: Config, channels: int) -> nn.Module:
    """The network a config names, for ``channels`` in and out."""
    from .models import build_model

    if cfg.model == "unet_paper":
        return build_model("unet_paper", in_channels=channels, out_channels=channels, width=cfg.width)
    if cfg.model == "unet":
        return build_model(
            "unet", in_channels=channels, out_channels=channels, base=cfg.base, depth=cfg.depth
        )
    return build_model(cfg.model, in_channels=channels, out_channels=channels)


# --------------------------------------------------------------------------------------
# distributed helpers
# --------------------------------------------------------------------------------------


def _dist_env() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _init_distributed(device: torch.device) -> tuple[int, int]:
    rank, world = _dist_env()
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return rank, world


def _param_checksum(model: nn.Module) -> str:
    h = hashlib.sha256()
    for p in model.state_dict().values():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------------------

_CSV_FIELDS = [
    "epoch",
    "step",
    "lr",
    "train_loss",
    "val_psnr_input",
    "val_psnr",
    "val_ssim_input",
    "val_ssim",
    "seconds",
    "slices_per_s",
]


class Trainer:
    """Trains one experiment described by a resolved :class:`Config`.

    Use :func:`train` for the whole thing; the class exposes the pieces for notebooks
    (``trainer.model``, ``trainer.validate()``, ``trainer.fit()``).
    """

    def __init__(self, cfg: Config, *, resume: bool = False) -> None:
        self.device = resolve_device(cfg.device)
        self.rank, self.world = _init_distributed(self.device)
        self.is_main = self.rank == 0
        self.out = Path(cfg.out)
        self.ckpt_dir = self.out / "checkpoints"
        ckpt = None
        if resume:
            last = self.ckpt_dir / "last.pt"
            if not last.is_file():
                raise TrainingError(f"--resume: no checkpoint at {last}")
            ckpt = load_checkpoint(last, map_location="cpu")
            saved = Config.from_dict(ckpt["config"])
            # the budget may be extended on resume; everything else comes from the run
            cfg = saved.replace(
                max_steps=cfg.max_steps if cfg.max_steps is not None else saved.max_steps,
                epochs=cfg.epochs if cfg.epochs is not None else saved.epochs,
                stop_after=cfg.stop_after,
                quiet=cfg.quiet,
                device=cfg.device,
                out=str(self.out),
            )
        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        cuda = self.device.type == "cuda"
        self.amp = cuda if cfg.amp is None else (cfg.amp and cuda)
        self.amp_dtype = torch.bfloat16 if (cuda and torch.cuda.is_bf16_supported()) else torch.float16
        self.channels_last = cuda if cfg.channels_last is None else cfg.channels_last

        self.exp = build_experiment(cfg)
        if len(self.exp.train_set) == 0:
            raise TrainingError(f"dataset '{cfg.dataset}' has no training samples")
        if len(self.exp.valid_set) == 0:
            raise TrainingError(f"dataset '{cfg.dataset}' has no validation samples")
        self.corruption = self.exp.corruption
        self.loss_fn = get_loss(self.exp.loss_name)

        torch.manual_seed(cfg.seed)
        self.model = build_model_for(cfg, self.exp.channels).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), eps=1e-8)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)

        n = len(self.exp.train_set)
        per_rank = n // self.world
        self.batches_per_epoch = max(per_rank // cfg.batch_size, 1)
        self.steps_per_epoch = cfg.steps_per_epoch or self.batches_per_epoch
        if cfg.max_steps is not None:
            self.total_steps = cfg.max_steps
        elif cfg.epochs is not None:
            self.total_steps = cfg.epochs * self.steps_per_epoch
        else:
            raise ValueError("give a training budget: --max-steps or --epochs")
        self.step = 0
        self.epoch = 0
        self.best = -math.inf
        self.history: list[dict[str, Any]] = []
        self.gen = seeded_generator(cfg.seed * 1000 + 17 + self.rank, self.device)
        if ckpt is not None:
            self._restore(ckpt)
        self.net: nn.Module = self.model
        if self.world > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if cuda else None
            )
        if cfg.compile:
            self.net = torch.compile(self.net)
        self._tb = None

    # -- state ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "task": self.corruption.task,
            "model_spec": self.model.spec,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "config": self.cfg.to_dict(),
            "corruption": self.corruption.config(),
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "best_metric": self.best,
            "rng": {
                "torch": torch.get_rng_state(),
                "corruption": self.gen.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            },
            "history": self.history,
        }

    def _restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        self.epoch = int(ckpt["epoch"])
        self.best = float(ckpt.get("best_metric", -math.inf))
        self.history = list(ckpt.get("history", []))
        rng = ckpt.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "corruption" in rng and self.world == 1:
            self.gen.set_state(rng["corruption"].to(self.gen.get_state().device))
        if rng.get("cuda") and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])

    def save(self, name: str) -> None:
        """Write ``checkpoints/<name>.pt`` atomically (rank 0 only)."""
        if self.is_main:
            save_checkpoint(self.ckpt_dir / f"{name}.pt", self._state())

    # -- data -------------------------------------------------------------------------
    def _epoch_batches(self, data_epoch: int) -> list[list[int]]:
        """This rank's batches of one pass over the data: a permutation seeded by (seed, pass)."""
        n = len(self.exp.train_set)
        perm = torch.randperm(n, generator=seeded_generator(self.cfg.seed * 100_003 + data_epoch)).tolist()
        mine = perm[self.rank :: self.world][: self.batches_per_epoch * self.cfg.batch_size]
        bs = self.cfg.batch_size
        return [mine[i : i + bs] for i in range(0, len(mine), bs)]

    def _batches(self):
        """Endless stream of training batches, starting at ``self.step`` (so resume is exact)."""
        data_epoch, skip = divmod(self.step, self.batches_per_epoch)
        while True:
            batches = self._epoch_batches(data_epoch)[skip:]
            skip = 0
            loader = DataLoader(
                self.exp.train_set,
                batch_sampler=batches,
                num_workers=self.cfg.num_workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=False,
            )
            yield from loader
            data_epoch += 1

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True).float()
        return x

    def _forward(self, net: nn.Module, inp: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            inp = inp.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            out = net(inp)
        return out.float()

    # -- one step ---------------------------------------------------------------------
    def train_step(self, clean: torch.Tensor) -> float:
        """One optimisation step on a clean batch; returns the loss."""
        lr = learning_rate(self.step, self.total_steps, self.cfg)
        for group in self.opt.param_groups:
            group["lr"] = lr
        clean = self._to_device(clean)
        pair = self.corruption.pair(clean, generator=self.gen, target=self.cfg.target)
        out = self.corruption.project(self._forward(self.net, pair.input), pair.context)
        progress = self.step / max(self.total_steps, 1)
        loss = self.loss_fn(out, pair.target, pair.context, progress)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"non-finite loss ({loss.item()}) at step {self.step}; stopping "
                f"(the last good checkpoint is kept in {self.ckpt_dir}); try a lower --lr"
            )
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.step += 1
        return float(loss.detach())

    # -- validation -------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, *, figure: str | os.PathLike | None = None) -> dict[str, float]:
        """PSNR (peak 1.0) and SSIM of the input and of the projected output against the clean
        reference, on fixed validation corruptions seeded from each sample's identity."""
        from .metrics import psnr, ssim

        self.model.eval()
        vs = self.exp.valid_set
        n = len(vs) if self.cfg.val_limit is None else min(len(vs), self.cfg.val_limit)
        idx = list(range(n))
        bs = self.cfg.val_batch_size or (1 if getattr(vs, "variable_size", False) else self.cfg.batch_size)
        loader = DataLoader(torch.utils.data.Subset(vs, idx), batch_size=bs, num_workers=self.cfg.num_workers)
        sums = {"val_psnr_input": 0.0, "val_psnr": 0.0, "val_ssim_input": 0.0, "val_ssim": 0.0}
        count = 0
        first = None
        for clean, ident in loader:
            clean = self._to_device(clean)
            pair = self.corruption.validation_pair(clean, torch.as_tensor(ident))
            out = self.corruption.project(self._forward(self.model, pair.input), pair.context)
            ref, inp, rec = (_display(t) for t in (pair.target, pair.input, out))
            for key, img in (("input", inp), ("", rec)):
                suffix = f"_{key}" if key else ""
                sums[f"val_psnr{suffix}"] += psnr(img, ref, data_range=1.0, reduction="none").sum().item()
                sums[f"val_ssim{suffix}"] += ssim(img, ref, data_range=1.0, reduction="none").sum().item()
            count += clean.shape[0]
            if first is None:
                first = (pair, ref[0], inp[0], rec[0])
        self.model.train()
        res = {k: v / max(count, 1) for k, v in sums.items()}
        if figure is not None and first is not None and self.is_main:
            self._figure(figure, first, res)
        return res

    def _figure(self, path, first, res) -> None:
        from .plots import image_panel, provenance_view, reconstruction_panel

        pair, ref, inp, rec = first
        title = f"{self.cfg.task} {self.cfg.dataset}, step {self.step}"
        if "mask" in pair.context:
            vs = self.exp.valid_set
            prov = vs.provenance(0) if hasattr(vs, "provenance") else None

            def view(x):  # volume slices in the radiological convention
                return provenance_view(x, prov)

            reconstruction_panel(
                path,
                mask=view(pair.context["mask"][0]),
                zero_filled=view(inp),
                reconstruction=view(rec),
                reference=view(ref),
                psnrs={"zero-filled": res["val_psnr_input"], "reconstruction": res["val_psnr"]},
                title=title + " (PSNR: validation means)",
            )
        else:
            image_panel(
                [inp, rec, ref],
                [f"input {res['val_psnr_input']:.2f} dB", f"output {res['val_psnr']:.2f} dB", "reference"],
                path,
                suptitle=title,
            )

    # -- logging ----------------------------------------------------------------------
    def _log(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if not self.is_main:
            return
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=_CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in self.history:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        atomic_write_text(self.out / "metrics.csv", buf.getvalue())
        if self._tb is not None:
            for k, v in row.items():
                if k not in ("epoch", "step") and isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, row["step"])

    def _open_tensorboard(self) -> None:
        if not (self.cfg.tensorboard and self.is_main):
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard is an optional extra
            return
        self._tb = SummaryWriter(str(self.out / "tensorboard"))

    def _print(self, msg: str) -> None:
        if self.is_main and not self.cfg.quiet:
            print(msg, flush=True)

    # -- the loop ---------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train until the budget (or ``stop_after`` steps of this invocation); returns the summary."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_yaml(cfg, self.out / "config.yaml")
        self._open_tensorboard()
        self.model.train()
        stop_at = self.total_steps
        if cfg.stop_after is not None:
            stop_at = min(stop_at, self.step + cfg.stop_after)
        t_start = time.perf_counter()
        seconds_before = float(self.history[-1]["seconds"]) if self.history else 0.0
        interrupted = False
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=cfg.quiet or not self.is_main,
            desc="train",
            unit="step",
            dynamic_ncols=True,
        )
        loss_sum, loss_n, t_epoch, seen = 0.0, 0, time.perf_counter(), 0
        stream = self._batches()
        old_handler = None
        if self.is_main and threading_is_main():
            old_handler = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            while self.step < stop_at:
                clean, _ = next(stream)
                loss = self.train_step(clean)
                loss_sum += loss
                loss_n += 1
                seen += clean.shape[0] * self.world
                bar.update(1)
                if self.step % 10 == 0 or self.step == stop_at:
                    rate = seen / max(time.perf_counter() - t_epoch, 1e-9)
                    bar.set_postfix(loss=f"{loss_sum / loss_n:.4g}", slices_s=f"{rate:.1f}")
                if self.step % self.steps_per_epoch == 0 or self.step == self.total_steps:
                    self._end_epoch(loss_sum / max(loss_n, 1), seen, t_epoch, t_start, seconds_before)
                    loss_sum, loss_n, t_epoch, seen = 0.0, 0, time.perf_counter(), 0
        except KeyboardInterrupt:
            interrupted = True
            self._print(
                f"\ninterrupted at step {self.step}: saving {self.ckpt_dir / 'last.pt'} (--resume continues)"
            )
        finally:
            bar.close()
            if old_handler is not None:
                signal.signal(signal.SIGTERM, old_handler)
        if self.step % self.steps_per_epoch != 0 or interrupted:
            self.save("last")  # a mid-epoch stop: resumable from here
        summary = self._summary(time.perf_counter() - t_start + seconds_before, interrupted)
        if self._tb is not None:
            self._tb.close()
        return summary

    def _end_epoch(self, train_loss: float, seen: int, t_epoch: float, t_start: float, before: float) -> None:
        self.epoch += 1
        elapsed = time.perf_counter() - t_epoch
        res: dict[str, float] = {}
        if self.is_main and (self.epoch % self.cfg.val_every == 0 or self.step == self.total_steps):
            fig = self.out / "figures" / "validation.png" if self.cfg.figures else None
            res = self.validate(figure=fig)
        row = {
            "epoch": self.epoch,
            "step": self.step,
            "lr": learning_rate(self.step - 1, self.total_steps, self.cfg),
            "train_loss": train_loss,
            **res,
            "seconds": time.perf_counter() - t_start + before,
            "slices_per_s": seen / max(elapsed, 1e-9),
        }
        self._log(row)
        if res:
            self._print(
                f"epoch {self.epoch:4d} step {self.step:6d}  loss {train_loss:.5f}  "
                f"val PSNR {res['val_psnr_input']:.2f} -> {res['val_psnr']:.2f} dB  "
                f"SSIM {res['val_ssim_input']:.3f} -> {res['val_ssim']:.3f}"
            )
            if res["val_psnr"] > self.best:
                self.best = res["val_psnr"]
                self.save("best")
        self.save("last")

    def _summary(self, seconds: float, interrupted: bool) -> dict[str, Any]:
        rows = [r for r in self.history if "val_psnr" in r]
        last = rows[-1] if rows else {}
        summary: dict[str, Any] = {
            "task": self.cfg.task,
            "dataset": self.cfg.dataset,
            "target": self.cfg.target,
            "preset": self.cfg.preset,
            "model": self.cfg.model,
            "val_psnr": last.get("val_psnr"),
            "val_ssim": last.get("val_ssim"),
            "val_psnr_input": last.get("val_psnr_input"),
            "val_ssim_input": last.get("val_ssim_input"),
            "best_val_psnr": self.best if rows else None,
            "epochs": self.epoch,
            "steps": self.step,
            "total_steps": self.total_steps,
            "train_seconds": seconds,
            "finished": self.step >= self.total_steps and not interrupted,
            "device": str(self.device),
            "world_size": self.world,
        }
        if self.world > 1:
            sums = [None] * self.world
            dist.all_gather_object(sums, _param_checksum(self.model))
            summary["rank_param_checksums"] = sums
        if self.is_main:
            atomic_write_json(self.out / "summary.json", summary)
        return summary


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _raise_keyboard_interrupt(signum, frame):  # pragma: no cover - signal path
    raise KeyboardInterrupt


def _display(x: torch.Tensor) -> torch.Tensor:
    """Images as compared and shown: magnitude for (real, imag) channels; clipped to [0, 1]."""
    if x.shape[1] == 2:
        x = torch.sqrt(x[:, :1] ** 2 + x[:, 1:] ** 2)
    return x.float().clamp(0.0, 1.0)


def train(cfg: Config, *, resume: bool = False) -> dict[str, Any]:
    """Resolve the config, train, and return the summary (also written to ``summary.json``)."""
    cfg, why = resolve_config(cfg)
    trainer = Trainer(cfg, resume=resume)
    if trainer.is_main and not cfg.quiet:
        c = trainer.cfg
        print(
            f"mri_n2n: {why}; model {c.model}, size {c.size}, batch {c.batch_size}, "
            f"{trainer.total_steps} steps, device {trainer.device}"
            + (f", AMP {str(trainer.amp_dtype).replace('torch.', '')}" if trainer.amp else "")
            + (f", {trainer.world} processes" if trainer.world > 1 else ""),
            flush=True,
        )
    try:
        summary = trainer.fit()
    finally:
        if trainer.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    if trainer.is_main and not cfg.quiet:
        print(_final_table(summary), flush=True)
    return summary


def _final_table(s: dict[str, Any]) -> str:
    if s.get("val_psnr") is None:
        return "no validation was run"
    return (
        "\n|            | PSNR (dB) | SSIM   |\n|------------|-----------|--------|\n"
        f"| input      | {s['val_psnr_input']:9.2f} | {s['val_ssim_input']:.4f} |\n"
        f"| output     | {s['val_psnr']:9.2f} | {s['val_ssim']:.4f} |\n"
        f"gain {s['val_psnr'] - s['val_psnr_input']:+.2f} dB after {s['steps']} steps "
        f"({s['train_seconds']:.0f} s)"
    )


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------

_HELP = {
    "task": "mri (k-space undersampling) or image (photographic noise)",
    "target": "noisy: Noise2Noise (a second corrupted observation); clean: Noise2Clean",
    "preset": "auto (paper on GPU, cpu otherwise), cpu, paper, tiny",
    "dataset": "mri: mni152 (embedded), ixi, nifti, dicom, kspace; image: images, folder, pairs, montecarlo",
    "data_dir": "folder of the dataset (prepared IXI HDF5, NIfTI/DICOM folder, ...)",
    "size": "slice size (MRI) or crop size (images); preset default",
    "slices": "slice range START:STOP along --axis (IXI default 25:125)",
    "normalize": "per-volume normalisation: max or p99.5",
    "density": "k-space sampling density: exp (paper), gaussian, uniform, lines_random, lines_equispaced",
    "fraction": "mean sampling density (0.1 = 10 %% of k-space); 0 uses --edge",
    "edge": "exp density value at the edge of the axis (paper: 0.025)",
    "shift": "max random circular shift in px (default size/4; 0 disables)",
    "noise": "image noise: gaussian, poisson, bernoulli, text, impulse, montecarlo, pairs",
    "loss": "l2, l1, l0 (annealed), hdr; default from the task",
    "model": "unet (plain, fast) or unet_paper (paper Table 2)",
    "stop_after": "stop after this many steps of this invocation (resumable)",
    "max_steps": "total optimisation steps (the LR schedule spans them)",
    "steps_per_epoch": "steps between validations (default: one pass over the data)",
}


def _add_config_args(p: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(Config):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = None  # only flags given on the command line override the config
        typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        help_ = _HELP.get(f.name, "") + f" (default: {getattr(Config(), f.name)})"
        if "bool" in typ:
            p.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=help_
            )
        elif "int" in typ:
            p.add_argument(flag, dest=f.name, type=int, default=default, help=help_)
        elif "float" in typ:
            p.add_argument(flag, dest=f.name, type=float, default=default, help=help_)
        else:
            p.add_argument(flag, dest=f.name, type=str, default=default, help=help_)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``error: ...``) and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m mri_n2n.train`` argument parser (flags mirror :class:`Config`)."""
    p = OneLineParser(
        prog="python -m mri_n2n.train",
        description="Train a Noise2Noise (or Noise2Clean) restoration network.",
    )
    p.add_argument("--config", help="YAML file of config overrides (flags override it)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.pt")
    p.add_argument("--complex", action="store_true", help="MRI: train on complex k-space images (2 channels)")
    _add_config_args(p)
    return p


def config_from_args(args: argparse.Namespace) -> Config:
    """Defaults <- YAML (--config) <- flags."""
    d: dict[str, Any] = {}
    if args.config:
        d.update(load_yaml(args.config))
    for f in dataclasses.fields(Config):
        v = getattr(args, f.name, None)
        if v is not None and f.name != "extra":
            d[f.name] = v
    cfg = Config.from_dict(d)
    if args.complex:
        cfg = cfg.replace(extra={**cfg.extra, "complex": True})
    return cfg


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: returns 0 on success, 1 on a run error, 2 on bad arguments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        resolve_config(cfg)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        train(cfg, resume=args.resume)
    except (ValueError, OSError, TrainingError, CheckpointError, ImportError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    return 0


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:500]


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
