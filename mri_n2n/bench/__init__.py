"""Speed and quality benchmarks: ``python -m mri_n2n.bench {speed,quality,reconstruct,...,gpu} [--quick]``.

Results go to ``<results>/<name>.json`` and ``<results>/<name>.md`` (a Markdown table with
the machine and the command). Benchmarks measure; tests never assert wall-clock times.
"""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_write_json, atomic_write_text

__all__ = ["machine_info", "write_results", "markdown_table"]


def machine_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on."""
    dev = torch.device(device)
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(dev),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m mri_n2n.bench " + " ".join(sys.argv[1:]),
    }
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


def markdown_table(rows: list[dict[str, Any]], columns: list[str], *, floatfmt: str = ".2f") -> str:
    """A Markdown table of ``rows`` restricted to ``columns`` (missing cells are blank)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return format(v, floatfmt)
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_results(out_dir: str | os.PathLike, name: str, result: dict[str, Any], markdown: str) -> Path:
    """Write ``name.json`` and ``name.md`` atomically; returns the JSON path."""
    out = Path(out_dir)
    atomic_write_json(out / f"{name}.json", result)
    info = result.get("machine", {})
    header = (
        f"# {name}\n\nMachine: {info.get('processor', '?')}, {info.get('cpu_count', '?')} cores, "
        f"torch {info.get('torch', '?')}, device {info.get('device', '?')}"
        + (f" ({info['gpu']})" if info.get("gpu") else "")
        + f"; {info.get('date', '')}\n\nCommand: `{info.get('command', '')}`\n\n"
    )
    atomic_write_text(out / f"{name}.md", header + markdown + "\n")
    return out / f"{name}.json"
