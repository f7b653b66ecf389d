"""Training runs of the benchmarks: reused when finished, resumed when interrupted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import Config, load_yaml, resolve_config
from ..training import resume, train

__all__ = ["train_or_reuse"]


def train_or_reuse(cfg: Config) -> dict[str, Any]:
    """Train a run, or reuse it when its folder holds a finished run of the same config
    (an unfinished one is resumed). Returns the run's summary."""
    run = Path(cfg.out)
    summary, saved, last = run / "summary.json", run / "config.yaml", run / "checkpoints" / "last.pt"
    if saved.is_file() and last.is_file():
        want = resolve_config(cfg)[0].to_dict()
        have = resolve_config(Config.from_dict(load_yaml(saved)))[0].to_dict()  # fields added since: defaults
        free = ("quiet", "device", "threads", "stop_after", "out")  # how and where it ran
        same = all(have.get(k) == want[k] for k in want if k not in free)
        if same and summary.is_file() and json.loads(summary.read_text()).get("finished"):
            return json.loads(summary.read_text())
        if same:
            return resume(run)
    return train(cfg)
