"""DDP plumbing of the trainer (``torchrun --nproc_per_node=N -m mri_n2n.train ...``).

- :func:`init_distributed`: the process group (NCCL on GPUs, gloo on CPUs) from torchrun's
  environment; :func:`collective_device`: where collectives take their tensors.
- :func:`all_sum`: numbers summed over the processes (validation shares).
- :func:`leave_together`: on success, no process tears the process group down before every
  process has come out of the last collective.
- :func:`peer_failure`: when one process fails, its error is posted to the run's store first, so
  that its peers, whose next collective then fails, end with one line naming the failed process
  and its error instead of a collective's traceback (or a hang).
"""

from __future__ import annotations

import datetime
import hashlib
import os

import torch
import torch.distributed as dist
from torch import nn

from ..errors import one_line

__all__ = [
    "dist_env", "init_distributed", "collective_device", "all_sum", "param_checksum", "leave_together",
    "peer_failure",
]

#: The store key a failed process posts its error under.
FAILED_KEY = "mri_n2n/failed"

#: The store keys of :func:`leave_together` (one per process) and how long a process waits there.
LEFT_KEY, LEAVE_TIMEOUT_S = "mri_n2n/left/", 60.0


def dist_env() -> tuple[int, int]:
    """``(rank, world size)`` from torchrun's environment (``(0, 1)`` outside it)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the run's process group when there are several processes; ``(rank, world size)``."""
    rank, world = dist_env()
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return rank, world


def collective_device(device: torch.device) -> torch.device:
    """Where collectives take their tensors: the GPU for NCCL, the CPU for gloo."""
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """``values`` summed over the processes (float64)."""
    t = torch.tensor(values, dtype=torch.float64).to(collective_device(device))
    dist.all_reduce(t)
    return t.cpu().tolist()


def param_checksum(model: nn.Module) -> str:
    """A short hash of a model's parameters and buffers (the processes must hold the same)."""
    h = hashlib.sha256()
    for p in model.state_dict().values():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def leave_together(rank: int, world: int) -> None:
    """After the run's last collective (a barrier), wait through the run's store until every
    process has come out of it, process 0 last (it hosts the store). gloo's barrier returns on
    one process while its last messages may still be in flight to a peer, and a process that
    tears its pairs down then makes the peer abort ("terminate called without an active
    exception", pytorch/gloo#155; seen under load). The store is not a gloo pair; a store that
    is already gone (process 0 left) or slow ends the wait quietly."""
    try:
        store = dist.distributed_c10d._get_default_store()
        keys = [f"{LEFT_KEY}{r}" for r in range(world)]
        timeout = datetime.timedelta(seconds=LEAVE_TIMEOUT_S)
        if rank == 0:
            store.wait(keys[1:], timeout)  # every peer is out of the barrier
            store.set(keys[0], "1")
        else:
            store.set(keys[rank], "1")
            store.wait(keys[:1], timeout)
    except Exception:  # process 0 left with its store, or the wait timed out: nothing to keep
        pass


def peer_failure(rank: int, exc: BaseException) -> str | None:
    """What process ``rank``, stopped by ``exc``, should say instead of ``exc``, or ``None`` to
    raise ``exc`` itself: a peer's error posted first (``exc`` is then the failed collective),
    else ``exc`` is posted for the peers; a failed collective with nothing posted (the store
    went away with process 0, which hosts it) is said as such."""
    try:
        store = dist.distributed_c10d._get_default_store()
    except Exception:  # no store: each process says what it saw
        store = None
    try:
        if store is not None and store.check([FAILED_KEY]):
            peer = store.get(FAILED_KEY).decode("utf-8", "replace")
            if not peer.startswith(f"process {rank} "):
                return f"process {rank} stopped because {peer}"
        if store is not None:
            store.set(FAILED_KEY, f"process {rank} failed: {one_line(exc)}")
    except Exception:  # the store went away with its host, process 0
        pass
    if isinstance(exc, getattr(dist, "DistError", ())) or "gloo" in str(exc) or "NCCL" in str(exc):
        return (f"process {rank} stopped: a collective failed, as another process of the run stopped "
                f"(its error is above): {one_line(exc, 200)}")
    return None
