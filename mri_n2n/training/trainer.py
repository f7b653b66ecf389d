"""The Noise2Noise trainer.

One loop serves the MRI and the photographic experiments (see :mod:`mri_n2n.corruptions`)::

    batch -> corruption.pair -> model -> corruption.data_consistency -> loss

A batch is what :func:`mri_n2n.data.collate` makes of the loader's items: clean images, or an
:class:`~mri_n2n.physics.Acquisition` (fully sampled coil data, measured acquisitions); the
corruption dispatches on it.

Paper settings: Adam (beta1 0.9, beta2 0.99, eps 1e-8), learning rate 1e-3 with a ramp-up and
a smooth ramp-down (:mod:`~mri_n2n.training.schedule`: ``--schedule paper``, the reference's
per-epoch ramps with beta1 going to 0.5, or the step-wise ``cosine`` one); for MRI a fresh
Hermitian Bernoulli mask per sample and call, density-compensated zero-filled input, data
consistency inside the graph, L2 loss and random circular shifts.

A run folder holds ``config.yaml``, ``metrics.csv``, ``checkpoints/{last,best}.pt``,
``summary.json`` and ``figures/``. ``--resume`` continues bit-exactly on CPU: the data
order, the corruption generator, the global RNG, the optimiser and the step are all
restored from ``last.pt`` (written at every epoch end and when interrupted).

Distributed: ``torchrun --nproc_per_node=N -m mri_n2n.train ...`` uses DDP (NCCL on GPU,
gloo on CPU); every rank draws its own shard of each epoch and its own masks, validates its
share of the validation slices (the sums are all-reduced); only rank 0 writes. A non-finite
loss on any rank stops every rank at the same check; a rank that fails otherwise posts its error,
and its peers end with one line naming it (:mod:`~mri_n2n.training.distributed`).

Device work is queued without host reads: the loss is summed on the device and checked for
non-finite values every :data:`CHECK_EVERY` steps (the step that went wrong is recorded exactly);
mixed precision follows the device (:func:`~mri_n2n.devices.amp_dtype`: bf16 from compute
capability 8.0, fp16 with a gradient scaler on 7.x, none below; ``--amp`` on a CPU: bf16).
A run saved on another kind or number of devices resumes (the corruption generator is then
reseeded from the seed and the step: not bit-exact, and said).
"""

from __future__ import annotations

import csv
import io
import math
import os
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import Config, resolve_config, resume_config, save_yaml
from ..corruptions.base import AcquisitionLike, Pair, as_acquisition
from ..data.loader import Batch, collate, to_device
from ..devices import autocast_dtype, configure_backend, resolve_device
from ..io import atomic_write_json, atomic_write_text
from ..losses import get_loss
from ..metrics import psnr, ssim
from ..models import apply_model, ends_with_dc
from ..physics import Acquisition
from ..plots import image_panel, provenance_view, reconstruction_panel
from ..seeding import restore_cuda_rng, restore_generator, seeded_generator
from ..splits import SPLIT_TARGETS
from .distributed import (
    all_sum,
    collective_device,
    init_distributed,
    leave_together,
    param_checksum,
    peer_failure,
)
from .experiment import acquisition_signature, build_experiment, build_model_for, init_weights
from .schedule import learning_rate, optimizer_schedule

__all__ = ["TrainingError", "Trainer", "train", "resume"]


#: Steps between the training loop's reads of the device (the non-finite-loss check, the
#: progress bar's loss): the steps in between queue their work without waiting.
CHECK_EVERY = 10


class TrainingError(RuntimeError):
    """A run cannot go on (bad data, non-finite loss, ...); the message says why."""


class _StoppedTogether(TrainingError):
    """An error every process of a DDP run raises at the same step (a non-finite loss on any)."""


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
    "val_heldout_loss_input",
    "val_heldout_loss",
    "seconds",
    "slices_per_s",
]


class _Endless:
    """An endless batch sampler: iterating it calls ``make()`` for a fresh stream of batches."""

    def __init__(self, make) -> None:
        self.make = make

    def __iter__(self):
        return self.make()


class Trainer:
    """Trains one experiment described by a resolved :class:`Config`.

    Use :func:`train` for the whole thing; the class exposes the pieces for notebooks
    (``trainer.model``, ``trainer.validate()``, ``trainer.fit()``).
    """

    def __init__(self, cfg: Config, *, resume: bool = False) -> None:
        """Set up a run from a resolved config (:func:`~mri_n2n.config.resolve_config`).

        With ``resume`` the model, optimiser, step and RNG states come from
        ``<cfg.out>/checkpoints/last.pt``; ``cfg`` must then be the run's config as
        :func:`~mri_n2n.config.resume_config` gives it (see :func:`resume`).
        """
        self.device = resolve_device(cfg.device)
        self.rank, self.world = init_distributed(self.device)
        self.is_main = self.rank == 0
        self.out = Path(cfg.out)
        self.ckpt_dir = self.out / "checkpoints"
        ckpt = None
        if resume:
            last = self.ckpt_dir / "last.pt"
            if not last.is_file():
                raise TrainingError(f"--resume: no checkpoint at {last}")
            ckpt = load_checkpoint(last, map_location="cpu")
        self.cfg = cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        cuda = self.device.type == "cuda"
        configure_backend(self.device)
        # mixed precision: on by default on CUDA, --amp on a CPU too (bf16 autocast); the dtype
        # from the device's capability (devices.amp_dtype: none on cards where fp16 is unsafe)
        amp_dtype = autocast_dtype(cfg.amp, self.device, default=cuda)
        self.amp = amp_dtype is not None
        self.amp_dtype = amp_dtype or torch.float32

        self.exp = build_experiment(cfg)
        if len(self.exp.train_set) == 0:
            raise TrainingError(f"dataset '{cfg.dataset}' has no training samples")
        if len(self.exp.valid_set) == 0:
            raise TrainingError(f"dataset '{cfg.dataset}' has no validation samples")
        self.corruption = self.exp.corruption
        self.loss_fn = get_loss(self.exp.loss_name)

        torch.manual_seed(cfg.seed)
        self.model = build_model_for(cfg, self.exp.channels).to(self.device)
        # CPU too for networks that prefer it (the unrolled CNN's training step measured 1.3x faster)
        default_cl = cuda or bool(getattr(self.model, "prefers_channels_last", False))
        self.channels_last = default_cl if cfg.channels_last is None else cfg.channels_last
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), eps=1e-8)
        fp16 = self.amp and self.amp_dtype == torch.float16
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16)

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
        self._bad: torch.Tensor | None = None  # [step, loss] of the first non-finite loss (on the device)
        if ckpt is not None:
            self._restore(ckpt)
        elif cfg.init_from:
            try:
                init_weights(self.model, cfg.init_from, self.corruption.task)
            except ValueError as e:
                raise TrainingError(str(e)) from None
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
        state = {
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
        if self.corruption.task == "mri":  # what the model was trained for (inference reads it)
            state["acquisition"] = acquisition_signature(self.cfg, self.corruption)
        return state

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
        if "corruption" in rng and self.world == 1 and not restore_generator(self.gen, rng["corruption"]):
            # saved on another device kind (a CPU generator's state is 5056 bytes, a CUDA one's
            # 16): the masks go on from a fresh stream, seeded by the run's seed and the step
            self.gen = seeded_generator((self.cfg.seed * 1000 + 17) ^ (self.step * 0x9E3779B1), self.device)
            self._print(f"note: the corruption generator was saved on another kind of device; "
                        f"step {self.step} goes on with masks from a fresh seeded stream (not bit-exact)")
        if self.device.type == "cuda":
            restore_cuda_rng(rng.get("cuda") or [])

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

    def _batch_indices(self):
        """Endless stream of this rank's batches of indices, from ``self.step`` on."""
        data_epoch, skip = divmod(self.step, self.batches_per_epoch)
        while True:
            yield from self._epoch_batches(data_epoch)[skip:]
            skip = 0
            data_epoch += 1

    def _batches(self):
        """Endless stream of training batches, starting at ``self.step`` (so resume is exact).

        One DataLoader serves the whole run (its batch sampler never ends), so worker processes
        (``--num-workers``) start once and keep their state (open files, caches) across epochs;
        batches go to pinned memory on CUDA."""
        workers = self.cfg.num_workers
        loader = DataLoader(
            self.exp.train_set,
            batch_sampler=_Endless(self._batch_indices),
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            collate_fn=collate,
        )
        yield from loader

    def _to_device(self, x: Batch) -> Batch:
        return to_device(x, self.device, non_blocking=True)

    def _forward(
        self, net: nn.Module, inp: torch.Tensor, acq: AcquisitionLike | None = None
    ) -> torch.Tensor:
        """The network on ``inp`` (:func:`~mri_n2n.models.apply_model`); unrolled nets also get
        the input's acquisition ``acq`` (or its pair) for their data consistency after every
        cascade."""
        if self.channels_last:
            inp = inp.contiguous(memory_format=torch.channels_last)
        acq = as_acquisition(acq)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            out = apply_model(net, inp, acq)  # looks through DDP and torch.compile wrappers
        return out.float()

    def _predict(self, net: nn.Module, pair: Pair) -> torch.Tensor:
        """The projected output on ``pair``: the corruption's data consistency after the network,
        unless the network ends with its own learned one (:func:`mri_n2n.models.ends_with_dc`)."""
        out = self._forward(net, pair.input, pair.acq)
        return out if ends_with_dc(self.model) else self.corruption.data_consistency(out, pair.acq)

    # -- one step ---------------------------------------------------------------------
    def train_step(self, clean: Batch, ident: torch.Tensor | None = None) -> float:
        """One optimisation step on a batch of clean images or acquisitions (fully sampled, or
        measured for the single-acquisition targets); returns the loss. ``ident``: the samples'
        identities, which seed each slice's one acquisition for ``--target ssdu|noisier2noise``.

        Raises:
            TrainingError: the loss is not finite (checked before the update; reading it waits
                for the device, which :meth:`fit` avoids by checking every few steps).
        """
        return float(self._step(clean, ident, check=True))

    def _step(self, clean: Batch, ident: torch.Tensor | None, *, check: bool) -> torch.Tensor:
        """One optimisation step; returns the detached loss on the device. Without ``check`` a
        non-finite loss is only recorded on the device (:meth:`_check_finite` reads it), so the
        step queues its work without waiting for the device."""
        lr, beta1 = optimizer_schedule(self.step, self.total_steps, self.cfg, self.steps_per_epoch)
        for group in self.opt.param_groups:  # from the step alone, so a resumed run agrees
            group["lr"] = lr
            group["betas"] = (beta1, group["betas"][1])
        clean = self._to_device(clean)
        if self.cfg.target in SPLIT_TARGETS:
            if ident is None:
                raise ValueError(f"--target {self.cfg.target} needs the batch's sample identities")
            pair = self.corruption.pair(
                clean, generator=self.gen, target=self.cfg.target, seeds=torch.as_tensor(ident)
            )
        else:
            pair = self.corruption.pair(clean, generator=self.gen, target=self.cfg.target)
        out = self._predict(self.net, pair)
        progress = self.step / max(self.total_steps, 1)
        loss = self.loss_fn(out, pair.target, pair, progress)
        if check:
            if not torch.isfinite(loss):
                raise TrainingError(self._non_finite_message(self.step, loss.item()))
        else:
            self._note_finite(loss.detach())
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.step += 1
        return loss.detach()

    def _non_finite_message(self, step: int, value: float, rank: int | None = None) -> str:
        where = f" on process {rank}" if rank is not None and self.world > 1 else ""
        return (
            f"non-finite loss ({value}) at step {step}{where}; stopping "
            f"(the last good checkpoint is kept in {self.ckpt_dir}); try a lower --lr"
        )

    def _note_finite(self, loss: torch.Tensor) -> None:
        """Record the first step with a non-finite loss, on the device (no host read)."""
        bad = ~torch.isfinite(loss)
        if self._bad is None:
            self._bad = torch.full((2,), -1.0, dtype=torch.float64, device=loss.device)
        first = bad & (self._bad[0] < 0)
        step = torch.zeros((), dtype=torch.float64, device=loss.device).add_(self.step)  # no copy
        self._bad = torch.where(first, torch.stack([step, loss.double()]), self._bad)

    def _check_finite(self, *, local: bool = False) -> None:
        """Raise :class:`TrainingError` if a step since the last check had a non-finite loss, on
        any process (all processes take part and stop together, so none waits for the others);
        one host read (and under DDP one all-gather). ``local``: this process's steps only (an
        interrupted process, whose peers may be gone)."""
        if self._bad is None and (self.world == 1 or local):
            return
        bad = self._bad if self._bad is not None else torch.full((2,), -1.0, dtype=torch.float64)
        if self.world > 1 and not local:  # [step, value, rank] of the first bad step of any process
            dev = collective_device(self.device)
            flag = torch.cat([bad.cpu(), torch.tensor([float(self.rank)], dtype=torch.float64)]).to(dev)
            flags = [torch.zeros(3, dtype=torch.float64, device=dev) for _ in range(self.world)]
            dist.all_gather(flags, flag)
            hits = [f.cpu().tolist() for f in flags if f[0] >= 0]
            if hits:
                step, value, rank = min(hits)
                raise _StoppedTogether(self._non_finite_message(int(step), value, int(rank)))
            return
        step, value = bad.tolist()
        if step >= 0:
            raise TrainingError(self._non_finite_message(int(step), value))

    # -- validation -------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, *, figure: str | os.PathLike | None = None) -> dict[str, float]:
        """PSNR (peak 1.0) and SSIM of the input and of the projected output against the clean
        reference, on fixed validation corruptions seeded from each sample's identity."""
        if self.exp.measured:
            return self._validate_heldout()
        self.model.eval()
        vs = self.exp.valid_set
        n = len(vs) if self.cfg.val_limit is None else min(len(vs), self.cfg.val_limit)
        idx = list(range(n))[self.rank :: self.world]  # this process's share
        bs = self.cfg.val_batch_size or (1 if getattr(vs, "variable_size", False) else self.cfg.batch_size)
        loader = DataLoader(
            torch.utils.data.Subset(vs, idx), batch_size=bs, num_workers=self.cfg.num_workers,
            collate_fn=collate,
        )
        sums = {"val_psnr_input": 0.0, "val_psnr": 0.0, "val_ssim_input": 0.0, "val_ssim": 0.0}
        count = 0
        shown = None  # the figure's slice: the one with the most signal (mid-brain for MRI)
        start = 0
        for clean, ident in loader:
            clean = self._to_device(clean)
            pair = self.corruption.validation_pair(clean, torch.as_tensor(ident))
            out = self._predict(self.model, pair)
            ref, inp, rec = (_display(t) for t in (pair.target, pair.input, out))
            for key, img in (("input", inp), ("", rec)):
                suffix = f"_{key}" if key else ""
                sums[f"val_psnr{suffix}"] += psnr(img, ref, data_range=1.0, reduction="none").sum().item()
                sums[f"val_ssim{suffix}"] += ssim(img, ref, data_range=1.0, reduction="none").sum().item()
            content = ref.flatten(1).sum(1)
            b = int(content.argmax())
            if shown is None or float(content[b]) > shown[0]:
                panel = None if pair.acq is None else _sampled_view(pair.acq, b)
                at = idx[start + b]  # the dataset's index (this process's share under DDP)
                shown = (float(content[b]), at, pair.acq is not None, panel, ref[b], inp[b], rec[b])
            count += _count(clean)
            start += _count(clean)
        self.model.train()
        count = self._all_sum(sums, count)
        res = {k: v / max(count, 1) for k, v in sums.items()}
        if figure is not None and shown is not None and self.is_main:
            self._figure(figure, shown[1:], res)
        return res

    @torch.no_grad()
    def _validate_heldout(self) -> dict[str, float]:
        """Validation without a reference (undersampled files): the training loss on held-out
        k-space, with splits seeded per sample, for the network and for its zero-filled input."""
        self.model.eval()
        vs = self.exp.valid_set
        n = len(vs) if self.cfg.val_limit is None else min(len(vs), self.cfg.val_limit)
        bs = self.cfg.val_batch_size or self.cfg.batch_size
        share = list(range(n))[self.rank :: self.world]
        loader = DataLoader(torch.utils.data.Subset(vs, share), batch_size=bs, collate_fn=collate)
        sums = {"val_heldout_loss": 0.0, "val_heldout_loss_input": 0.0}
        count = 0
        for batch, ident in loader:
            batch = self._to_device(batch)
            pair = self.corruption.validation_pair(batch, torch.as_tensor(ident))
            out = self._predict(self.model, pair)
            b = _count(batch)
            for key, img in (("val_heldout_loss", out), ("val_heldout_loss_input", pair.input)):
                sums[key] += float(self.loss_fn(img, pair.target, pair, 1.0)) * b
            count += b
        self.model.train()
        count = self._all_sum(sums, count)
        return {k: v / max(count, 1) for k, v in sums.items()}

    def _all_sum(self, sums: dict[str, float], count: int) -> int:
        """Under DDP: ``sums`` (in place) and ``count`` summed over the processes' validation
        shares; returns the total count. One process: unchanged."""
        if self.world == 1:
            return count
        keys = sorted(sums)
        vals = all_sum([sums[k] for k in keys] + [float(count)], self.device)
        sums.update(zip(keys, vals[:-1]))
        return int(vals[-1])

    def _figure(self, path, shown, res) -> None:
        index, mri, mask, ref, inp, rec = shown
        title = f"{self.cfg.task} {self.cfg.dataset}, step {self.step}"
        if mri:
            vs = self.exp.valid_set
            prov = vs.provenance(index) if hasattr(vs, "provenance") else None
            if prov is not None and "slice" in prov:
                title += f", validation slice {prov['slice']}"

            def view(x):  # volume slices in the radiological convention
                return provenance_view(x, prov)

            reconstruction_panel(
                path,
                mask=None if mask is None else view(mask),
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
            from torch.utils.tensorboard import SummaryWriter  # optional dependency
        except Exception:  # tensorboard is an optional extra
            return
        self._tb = SummaryWriter(str(self.out / "tensorboard"))

    def _print(self, msg: str) -> None:
        if self.is_main and not self.cfg.quiet:
            print(msg, flush=True)

    # -- the loop ---------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train until the budget (or ``stop_after`` steps of this invocation); returns the summary."""
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
        # the epoch's loss sum stays on the device (float64: the same sum as Python floats)
        loss_sum, loss_n, t_epoch, seen = None, 0, time.perf_counter(), 0
        stream = self._batches()
        old_handler = None
        if self.is_main and threading_is_main():
            old_handler = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            while self.step < stop_at:
                clean, ident = next(stream)
                loss = self._step(clean, ident, check=False).double()
                loss_sum = loss if loss_sum is None else loss_sum + loss
                loss_n += 1
                seen += _count(clean) * self.world
                bar.update(1)
                epoch_end = self.step % self.steps_per_epoch == 0 or self.step == self.total_steps
                if self.step % CHECK_EVERY == 0 or self.step == stop_at or epoch_end:
                    self._check_finite()  # the steps' only host read (every process at once)
                    if not bar.disable:
                        rate = seen / max(time.perf_counter() - t_epoch, 1e-9)
                        bar.set_postfix(loss=f"{float(loss_sum) / loss_n:.4g}", slices_s=f"{rate:.1f}")
                if epoch_end:
                    mean = float(loss_sum) / max(loss_n, 1) if loss_sum is not None else 0.0
                    self._end_epoch(mean, seen, t_epoch, t_start, seconds_before)
                    loss_sum, loss_n, t_epoch, seen = None, 0, time.perf_counter(), 0
        except KeyboardInterrupt:
            interrupted = True
            self._check_finite(local=True)  # a non-finite step since the last check: no checkpoint
            self._print(
                f"\ninterrupted at step {self.step}: saving {self.ckpt_dir / 'last.pt'} (--resume continues)"
            )
        finally:
            bar.close()
            stream.close()  # stops the DataLoader's worker processes
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
        # every process validates its share (a peer waiting in the next all-reduce while rank 0
        # validated alone could trip the NCCL watchdog); the sums are all-reduced
        if self.epoch % self.cfg.val_every == 0 or self.step == self.total_steps:
            fig = self.out / "figures" / "validation.png" if self.cfg.figures else None
            res = self.validate(figure=fig)
        row = {
            "epoch": self.epoch,
            "step": self.step,
            "lr": learning_rate(self.step - 1, self.total_steps, self.cfg, self.steps_per_epoch),
            "train_loss": train_loss,
            **res,
            "seconds": time.perf_counter() - t_start + before,
            "slices_per_s": seen / max(elapsed, 1e-9),
        }
        self._log(row)
        if res and "val_psnr" in res:
            self._print(
                f"epoch {self.epoch:4d} step {self.step:6d}  loss {train_loss:.5f}  "
                f"val PSNR {res['val_psnr_input']:.2f} -> {res['val_psnr']:.2f} dB  "
                f"SSIM {res['val_ssim_input']:.3f} -> {res['val_ssim']:.3f}"
            )
        elif res:
            self._print(
                f"epoch {self.epoch:4d} step {self.step:6d}  loss {train_loss:.5f}  val held-out k-space "
                f"loss {res['val_heldout_loss_input']:.5f} (zero-filled) -> {res['val_heldout_loss']:.5f}"
            )
        if res:
            score = res["val_psnr"] if "val_psnr" in res else -res["val_heldout_loss"]
            if score > self.best:
                self.best = score
                self.save("best")
        self.save("last")

    def _summary(self, seconds: float, interrupted: bool) -> dict[str, Any]:
        rows = [r for r in self.history if "val_psnr" in r or "val_heldout_loss" in r]
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
            "best_val_psnr": self.best if rows and "val_psnr" in last else None,
            "val_heldout_loss": last.get("val_heldout_loss"),
            "val_heldout_loss_input": last.get("val_heldout_loss_input"),
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
            dist.all_gather_object(sums, param_checksum(self.model))
            summary["rank_param_checksums"] = sums
        if self.is_main:
            atomic_write_json(self.out / "summary.json", summary)
        return summary


def threading_is_main() -> bool:
    """True in the main thread (where signal handlers may be installed)."""
    return threading.current_thread() is threading.main_thread()


def _raise_keyboard_interrupt(signum, frame):  # pragma: no cover - signal path
    raise KeyboardInterrupt


def _count(batch: Batch) -> int:
    """The number of samples of a batch (images or an acquisition)."""
    if isinstance(batch, Acquisition):
        return int(batch.batch_size or 1)
    return int(batch.shape[0])


def _sampled_view(acq: Acquisition, b: int) -> torch.Tensor | None:
    """Sample ``b``'s sampled set as an image (the validation figure's mask panel) when the kind
    samples the image grid (Cartesian bins); ``None`` for other sample spaces (trajectories)."""
    if tuple(acq.sample_shape) != tuple(acq.image_shape):
        return None
    s = acq.sampled
    return s[b] if s.ndim > len(acq.sample_shape) else s


def _display(x: torch.Tensor) -> torch.Tensor:
    """Images as compared and shown: magnitude for (real, imag) channels; clipped to [0, 1]."""
    if x.shape[1] == 2:
        x = torch.sqrt(x[:, :1] ** 2 + x[:, 1:] ** 2)
    return x.float().clamp(0.0, 1.0)


def train(cfg: Config, *, resume: bool = False) -> dict[str, Any]:
    """Resolve the config, train, and return the summary (also written to ``summary.json``).

    With ``resume``, ``cfg`` is the run's config (see :func:`resume`, which builds it).
    """
    cfg, why = resolve_config(cfg)
    if resume:
        why = f"resuming {Path(cfg.out) / 'checkpoints' / 'last.pt'}"
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
        if trainer.world > 1 and dist.is_initialized():
            # leave together (on success only: a failed rank must not wait for its peers): a rank
            # that tears gloo down while its peer is still mid-collective aborts the peer
            # ("terminate called without an active exception")
            dist.barrier()
            leave_together(trainer.rank, trainer.world)
    except Exception as e:
        if trainer.world > 1 and dist.is_initialized() and isinstance(e, _StoppedTogether):
            # every process stops after the same collective (the all-gather of the loss check):
            # leave together there too, or the first to tear gloo down aborts a peer whose last
            # messages are still in flight (seen once in CI under load: SIGABRT in process 1)
            leave_together(trainer.rank, trainer.world)
        elif trainer.world > 1 and dist.is_initialized():
            said = peer_failure(trainer.rank, e)  # a peer's failure, or this one's posted for them
            if said is not None:
                raise TrainingError(said) from e
        raise
    finally:
        if trainer.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    if trainer.is_main and not cfg.quiet:
        print(_final_table(summary), flush=True)
    return summary


def resume(out: str | os.PathLike, typed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Continue the run in ``out`` as it was configured, with the values in ``typed`` on top.

    The run's saved config (from ``checkpoints/last.pt``) replaces the defaults, the preset and
    any YAML file; ``typed`` holds what the user typed (e.g. ``{"max_steps": 3000}``), checked
    by :func:`~mri_n2n.config.resume_config`.

    Raises:
        TrainingError: no ``last.pt`` in ``out``.
        ConfigError: a typed value a resumed run cannot change.
    """
    last = Path(out) / "checkpoints" / "last.pt"
    if not last.is_file():
        raise TrainingError(f"--resume: no checkpoint at {last}")
    saved_dict = load_checkpoint(last, map_location="cpu")["config"]
    saved = Config.from_dict(saved_dict, where=str(last))
    if "schedule" not in saved_dict:  # saved before --schedule existed: it trained with cosine
        saved = saved.replace(schedule="cosine")
    cfg = resume_config(saved, {**dict(typed or {}), "out": str(out)})
    return train(cfg, resume=True)


def _final_table(s: dict[str, Any]) -> str:
    if s.get("val_psnr") is None and s.get("val_heldout_loss") is not None:
        return (
            f"\nheld-out k-space loss (no reference): zero-filled {s['val_heldout_loss_input']:.5f} -> "
            f"reconstruction {s['val_heldout_loss']:.5f} after {s['steps']} steps "
            f"({s['train_seconds']:.0f} s)"
        )
    if s.get("val_psnr") is None:
        return "no validation was run"
    return (
        "\n|            | PSNR (dB) | SSIM   |\n|------------|-----------|--------|\n"
        f"| input      | {s['val_psnr_input']:9.2f} | {s['val_ssim_input']:.4f} |\n"
        f"| output     | {s['val_psnr']:9.2f} | {s['val_ssim']:.4f} |\n"
        f"gain {s['val_psnr'] - s['val_psnr_input']:+.2f} dB after {s['steps']} steps "
        f"({s['train_seconds']:.0f} s)"
    )
