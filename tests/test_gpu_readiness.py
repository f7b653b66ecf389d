"""GPU readiness without a GPU (issue 32): the CUDA-specific choices, tested on a CPU.

- the AMP dtype from the model's device capability, and inference in float32 unless asked;
- resuming a run whose generator and CUDA RNG states came from another device kind and count;
- host reads (device syncs) per training step and per unrolled forward, counted with the
  sync-free device paths switched on (``reads_sync`` patched), which give the same numbers;
- one timing helper that waits for the device; CPU autocast (bf16) with ``--amp``;
- DDP (gloo on CPU): a failing or non-finite process ends every process with one clear line;
- ``--device cuda:N`` under torchrun, cuDNN's autotuner, the GPU presets' loader workers.
"""

import collections
import math
import os
import socket
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch

import mri_n2n.corruptions.augment as augment_mod
import mri_n2n.corruptions.mri as mri_mod
import mri_n2n.devices as devices
from mri_n2n.checkpoint import load_checkpoint, save_checkpoint
from mri_n2n.config import Config, resolve_config
from mri_n2n.devices import (
    Stopwatch,
    amp_dtype,
    autocast_dtype,
    configure_backend,
    resident,
    resolve_device,
)
from mri_n2n.physics import Acquisition, cg_chunk_elements
from mri_n2n.reconstruction.engine import inference_dtype
from mri_n2n.seeding import restore_cuda_rng, restore_generator
from mri_n2n.training import Trainer, resume, train

pytest.importorskip("nilearn")

ROOT = Path(__file__).parent.parent
TINY = dict(
    preset="tiny", dataset="mni152", size=32, quiet=True, tensorboard=False, val_limit=4, figures=False,
    device="cpu",  # also on a GPU machine (bench gpu runs this file's CUDA tests there)
)
READS = ("__bool__", "item", "tolist", "__int__", "__float__", "__index__")
#: Functions whose reads are of tensors that live on the host on every device (the data order,
#: drawn from a CPU generator).
HOST_ONLY = {"_epoch_batches"}


def _cfg(tmp_path, **kw):
    return resolve_config(Config(**{**TINY, "out": str(tmp_path / "run"), **kw}))[0]


# -- 1. the AMP dtype --------------------------------------------------------------------------


def test_amp_dtype_follows_the_capability_of_the_device_asked(monkeypatch):
    caps = {0: (7, 5), 1: (8, 0), 2: (6, 1), 3: (9, 0)}  # T4, A100, P100-class, H100
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: caps[torch.device(d).index])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)  # the current device is not the model's
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulation says yes
    assert amp_dtype(torch.device("cuda", 0)) == torch.float16  # T4: no bf16 convolutions
    assert amp_dtype(torch.device("cuda", 1)) == torch.bfloat16
    assert amp_dtype(torch.device("cuda", 2)) is None  # fp16 unsafe/slow: full precision
    assert amp_dtype(torch.device("cuda", 3)) == torch.bfloat16
    assert amp_dtype("cpu") == torch.bfloat16  # CPU autocast's only dtype
    # training: on by default on CUDA, off on a CPU unless asked; inference: off unless asked
    assert autocast_dtype(None, torch.device("cuda", 0), default=True) == torch.float16
    assert autocast_dtype(None, "cpu", default=False) is None
    assert autocast_dtype(True, "cpu", default=False) == torch.bfloat16
    assert inference_dtype(None, torch.device("cuda", 1)) is None  # float32, as evaluate
    assert inference_dtype(True, torch.device("cuda", 0)) == torch.float16
    assert inference_dtype(False, torch.device("cuda", 1)) is None


def test_amp_on_cpu_trains_two_bf16_steps_through_the_autocast_path(tmp_path):
    cfg = _cfg(tmp_path, model="unrolled", cascades=2, loss="kspace", amp=True, max_steps=2,
               steps_per_epoch=2)
    tr = Trainer(cfg)
    assert tr.amp and tr.amp_dtype == torch.bfloat16 and not tr.scaler.is_enabled()
    seen = []
    first = next(m for m in tr.model.modules() if isinstance(m, torch.nn.Conv2d))
    first.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    summary = tr.fit()
    assert summary["steps"] == 2 and summary["val_psnr"] is not None and torch.bfloat16 in seen
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())
    assert all(p.dtype == torch.float32 for p in tr.model.parameters())  # master weights stay fp32
    plain = Trainer(_cfg(tmp_path, max_steps=2))
    assert not plain.amp  # the CPU default is unchanged: no autocast


# -- 2. resume across device kinds and counts ---------------------------------------------------


def test_resume_from_a_cuda_shaped_checkpoint_on_a_cpu(tmp_path, capsys):
    cfg = _cfg(tmp_path, max_steps=4, steps_per_epoch=2, stop_after=2, quiet=False)
    train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    ck = load_checkpoint(last)
    assert ck["step"] == 2 and ck["rng"]["corruption"].numel() == 5056
    # as a CUDA run with two GPUs would have saved it: a 16-byte generator state, two CUDA states
    ck["rng"]["corruption"] = torch.zeros(16, dtype=torch.uint8)
    ck["rng"]["cuda"] = [torch.zeros(16, dtype=torch.uint8), torch.zeros(16, dtype=torch.uint8)]
    save_checkpoint(last, ck)
    capsys.readouterr()
    summary = resume(tmp_path / "run", {"quiet": False})
    assert summary["steps"] == 4 and summary["finished"]
    assert "saved on another kind of device" in capsys.readouterr().out


def test_generator_and_cuda_states_from_other_devices(monkeypatch):
    g = torch.Generator()
    before = g.get_state()
    assert not restore_generator(g, torch.zeros(16, dtype=torch.uint8))  # a CUDA generator's state
    assert torch.equal(g.get_state(), before)
    other = torch.Generator().manual_seed(5).get_state()
    assert restore_generator(g, other) and torch.equal(g.get_state(), other)
    set_states = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # saved with 2 GPUs, 1 visible now
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, i: set_states.append(i))
    assert restore_cuda_rng([torch.zeros(16, dtype=torch.uint8)] * 2) == 1 and set_states == [0]
    assert restore_cuda_rng([]) == 1 - 1  # saved on a CPU: nothing to restore


# -- 3 and 4. host reads per training step and per unrolled forward ----------------------------


@pytest.fixture
def device_paths(monkeypatch):
    """Take the sync-free paths a CUDA run takes (reads of device tensors wait for the device)."""
    for mod in (mri_mod, augment_mod):
        monkeypatch.setattr(mod, "reads_sync", lambda device: True)


class _Reads:
    """Counts host reads of tensors made from mri_n2n code (not torch's own CPU-side step
    counters) while active."""

    def __init__(self, monkeypatch):
        self.counts = collections.Counter()
        self.monkeypatch = monkeypatch

    def __enter__(self):
        for name in READS:
            orig = getattr(torch.Tensor, name)

            def counted(t, *a, _orig=orig, _name=name, **k):
                caller = traceback.extract_stack(limit=2)[0]
                ours = "mri_n2n" in caller.filename and "tests" not in caller.filename
                if ours and caller.name not in HOST_ONLY:
                    self.counts[f"{_name} {Path(caller.filename).name}:{caller.lineno}"] += 1
                return _orig(t, *a, **k)

            self.monkeypatch.setattr(torch.Tensor, name, counted)
        return self

    def __exit__(self, *exc):
        self.monkeypatch.undo()

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _weights_after_steps(cfg, steps: int, monkeypatch=None):
    tr = Trainer(cfg)
    stream = tr._batches()
    batches = [next(stream) for _ in range(steps)]
    stream.close()
    tr._step(*batches[0], check=False)  # warm-up: lazy set-up
    reads = None
    if monkeypatch is not None:
        with _Reads(monkeypatch) as reads:
            for clean, ident in batches[1:]:
                tr._step(clean, ident, check=False)
    else:
        for clean, ident in batches[1:]:
            tr._step(clean, ident, check=False)
    return [p.detach().clone() for p in tr.model.parameters()], reads


@pytest.mark.parametrize(
    "kw,bound",
    [
        ({}, 0),  # the tiny U-Net, shifts on
        ({"model": "unrolled", "cascades": 2, "loss": "kspace", "augment": True, "deform": True}, 0),
        ({"model": "unrolled", "cascades": 2, "loss": "kspace", "augment": True, "crop": True}, 2),
        ({"model": "unrolled", "cascades": 2, "loss": "kspace", "synth_coils": 4, "dc": "prox",
          "cg_iters": 2}, 1),
    ],
    ids=["unet", "unrolled-augment", "crop", "multicoil-prox"],
)
def test_training_step_reads_the_device_at_most_bound_times(tmp_path, monkeypatch, kw, bound):
    cfg = _cfg(tmp_path, max_steps=10, **kw)
    host, _ = _weights_after_steps(cfg, 3)
    mp = pytest.MonkeyPatch()
    for mod in (mri_mod, augment_mod):
        monkeypatch.setattr(mod, "reads_sync", lambda device: True)
    device, reads = _weights_after_steps(cfg, 3, mp)
    assert reads.total <= bound * 2, dict(reads.counts)  # two counted steps
    for a, b in zip(host, device):  # the device paths give the CPU paths' numbers exactly
        assert torch.equal(a, b)


def test_fit_reads_the_device_every_few_steps_only(tmp_path, monkeypatch, device_paths):
    tr = Trainer(_cfg(tmp_path, max_steps=20, steps_per_epoch=20))
    checks = []
    real = Trainer._check_finite

    def spy(self):
        checks.append(self.step)
        real(self)

    monkeypatch.setattr(Trainer, "_check_finite", spy)
    monkeypatch.setattr(Trainer, "validate", lambda self, figure=None: {})  # validation may read
    with _Reads(pytest.MonkeyPatch()) as reads:
        tr.fit()
    assert checks == [10, 20]  # every CHECK_EVERY steps and at the epoch's end
    assert reads.total <= 3, dict(reads.counts)  # two checks and the epoch's mean loss, in 20 steps


def test_unrolled_forward_tests_the_mask_once_across_cg_chunks(monkeypatch):
    import mri_n2n.physics as physics

    g = torch.Generator().manual_seed(0)
    b, c, n = 4, 3, 16
    maps = torch.randn(b, c, n, n, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().square().sum(1, keepdim=True).sqrt()
    lines = torch.rand(b, 1, n, generator=g) < 0.4
    mask = lines.expand(b, n, n).clone()
    x = torch.randn(b, n, n, dtype=torch.complex64, generator=g)
    acq = Acquisition(mask, maps, Acquisition(mask, maps).forward(x))
    whole = Acquisition(mask, maps, acq.y).prox(x * 0.5, 0.1, 3)
    monkeypatch.setattr(physics, "CG_CHUNK_ELEMENTS", c * n * n)  # one sample per chunk
    mp = pytest.MonkeyPatch()
    with _Reads(mp) as reads:
        outs = [acq.prox(x * 0.5, 0.1, 3) for _ in range(3)]  # three cascades of MoDL DC
    assert reads.total <= 1, dict(reads.counts)
    for out in outs:
        torch.testing.assert_close(out, whole, rtol=1e-5, atol=1e-6)
    assert cg_chunk_elements(torch.device("cuda")) >= 8 * 16 * 320 * 320  # multicoil-gpu: one solve


def test_mask_tables_are_copied_to_a_device_once():
    class Owner:
        pass

    owner, t = Owner(), torch.rand(4, 4)
    a = resident(owner, "p", t, "meta")
    assert a.device.type == "meta" and resident(owner, "p", t, "meta") is a
    assert resident(owner, "p", t, "cpu") is t
    t2 = torch.rand(4, 4)
    assert resident(owner, "p", t2, "meta") is not a  # a new table: copied again


# -- 5. timing -----------------------------------------------------------------------------------


def test_stopwatch_waits_for_the_device_at_both_ends(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: calls.append(d))
    with Stopwatch(torch.device("cuda", 0)) as sw:
        assert len(calls) == 1
    assert len(calls) == 2 and sw.seconds >= 0
    with Stopwatch("cpu"):
        pass
    assert len(calls) == 2


def test_evaluate_times_each_method_between_two_device_waits(tmp_path, monkeypatch):
    from mri_n2n.evaluation import evaluate_mri

    train(_cfg(tmp_path, max_steps=2, steps_per_epoch=2))
    waits = []
    monkeypatch.setattr(devices, "synchronize", lambda device=None: waits.append(device))
    res = evaluate_mri([str(tmp_path / "run" / "checkpoints" / "last.pt")], limit=2, batch_size=2,
                       tv_iters=2, device="cpu", progress=False)
    timed = [m for m in res["methods"] if m not in ("zero-filled",)]  # CS-TV and the network
    assert len(timed) == 2 and len(waits) == 2 * len(timed)  # one batch: a wait at each end


# -- 7. DDP failure paths and the device under torchrun ---------------------------------------


_DRIVER = """
import os, sys
mode, bad = sys.argv[1], int(os.environ["BAD_RANK"])
rank = int(os.environ["RANK"])
import mri_n2n.training.trainer as T
if rank == bad and mode == "raise":
    orig = T.Trainer._step
    def failing(self, *a, **k):
        if self.step == 2:
            raise OSError("cannot read its batch")
        return orig(self, *a, **k)
    T.Trainer._step = failing
elif rank == bad and mode == "nan":
    orig_get = T.get_loss
    def get(name):
        f, n = orig_get(name), [0]
        def g(*a):
            n[0] += 1
            loss = f(*a)
            return loss * float("nan") if n[0] > 2 else loss
        return g
    T.get_loss = get
from mri_n2n.train import main
sys.exit(main(sys.argv[2:]))
"""


def _ddp_run(tmp_path, mode: str, bad: int) -> list[tuple[int, str]]:
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["--preset", "tiny", "--size", "32", "--max-steps", "4", "--steps-per-epoch", "4", "--device",
            "cpu", "--out", str(tmp_path / "run"), "--quiet", "--no-figures", "--no-tensorboard",
            "--val-limit", "2"]
    procs = []
    for r in range(2):
        env = {**os.environ, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
               "BAD_RANK": str(bad), "PYTHONPATH": str(ROOT)}
        procs.append(subprocess.Popen([sys.executable, str(driver), mode, *args], env=env, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:  # a hang is the failure this guards against
            for q in procs:
                q.kill()
            pytest.fail("a DDP process hung after its peer failed")
        results.append((p.returncode, err.strip()))
    return results


def test_ddp_a_failing_process_ends_every_process_with_one_line(tmp_path):
    (rc0, err0), (rc1, err1) = _ddp_run(tmp_path, "raise", bad=1)
    assert rc1 == 1 and err1 == "error: cannot read its batch"
    assert rc0 == 1 and err0 == "error: process 0 stopped because process 1 failed: cannot read its batch"


def test_ddp_a_non_finite_loss_on_one_process_stops_all_at_once(tmp_path):
    results = _ddp_run(tmp_path, "nan", bad=1)
    for rc, err in results:
        assert rc == 1 and len(err.splitlines()) == 1, err
        assert err.startswith("error: non-finite loss (nan) at step 2 on process 1")


def test_every_ddp_process_validates_its_share(tmp_path, monkeypatch):
    import mri_n2n.training.trainer as trainer_mod

    tr = Trainer(_cfg(tmp_path, max_steps=2, steps_per_epoch=2))
    full = tr.validate()
    summed = []

    def all_sum(values, device):  # the peer's share scores like this one's
        summed.append(values[-1])
        return [2 * v for v in values]

    monkeypatch.setattr(trainer_mod, "all_sum", all_sum)
    tr.rank, tr.world, tr.is_main = 1, 2, False
    tr._end_epoch(0.0, 0, 0.0, 0.0, 0.0)  # a non-main process validates at the epoch's end
    assert summed == [2.0]  # its share of the 4 validation slices: 2
    share = tr.history[-1]
    assert share["val_psnr"] != full["val_psnr"]  # slices 1 and 3 only, scored twice


def test_explicit_gpu_index_under_torchrun_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ValueError, match="every process on GPU 0"):
        resolve_device("cuda:0")
    assert resolve_device("cuda") == torch.device("cuda", 1)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # one process: as asked


# -- 8. presets and backend ------------------------------------------------------------------------


def test_gpu_presets_load_data_in_workers_and_cudnn_autotunes(monkeypatch):
    for preset in ("paper", "unrolled"):
        assert resolve_config(Config(preset=preset))[0].num_workers >= 4
    assert resolve_config(Config(preset="cpu"))[0].num_workers == 0
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    configure_backend("cpu")
    assert torch.backends.cudnn.benchmark is False
    configure_backend(torch.device("cuda", 0))
    assert torch.backends.cudnn.benchmark is True


def test_bench_gpu_refuses_cleanly_without_cuda(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "mri_n2n.bench", "gpu", "--results", str(tmp_path)],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}, cwd=ROOT,
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["error: bench gpu needs a CUDA GPU, and none is visible here"]
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_runs_with_amp_and_the_device_paths(tmp_path):
    cfg = _cfg(tmp_path, device="cuda", model="unrolled", cascades=2, loss="kspace", augment=True,
               max_steps=4, steps_per_epoch=2)
    summary = train(cfg)
    assert summary["finished"] and math.isfinite(summary["val_psnr"])
    tr = Trainer(cfg.replace(out=str(tmp_path / "again")))
    assert tr.amp == (amp_dtype(tr.device) is not None) and torch.backends.cudnn.benchmark
    assert tr.amp_dtype == (amp_dtype(tr.device) or torch.float32) and devices.reads_sync(tr.device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_resumes_on_the_cpu_and_back(tmp_path):
    train(_cfg(tmp_path, device="cuda", max_steps=6, steps_per_epoch=2, stop_after=2))
    assert resume(tmp_path / "run", {"device": "cpu", "stop_after": 2})["steps"] == 4
    summary = resume(tmp_path / "run", {"device": "cuda"})
    assert summary["steps"] == 6 and summary["finished"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device_paths_give_the_cpu_values():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 2, 16, 16, generator=g)
    off = torch.randint(-5, 6, (4, 2), generator=g)
    loop = torch.stack([torch.roll(x[i], (dy, dx), (-2, -1)) for i, (dy, dx) in enumerate(off.tolist())])
    assert torch.equal(mri_mod.roll_each(x.cuda(), off.cuda()).cpu(), loop)
    flips, turns = torch.rand(4, 2, generator=g) < 0.5, torch.randint(0, 4, (4,), generator=g)
    want = []
    for i in range(4):
        xi = x[i]
        dims = [d for d, f in zip((-2, -1), flips[i].tolist()) if f]
        xi = torch.flip(xi, dims) if dims else xi
        want.append(torch.rot90(xi, int(turns[i]), dims=(-2, -1)))
    got = augment_mod._dihedral(x.cuda(), flips.cuda(), turns.cuda()).cpu()
    assert torch.equal(got, torch.stack(want))
