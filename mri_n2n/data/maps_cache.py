"""On-disk cache of the coil sensitivity maps that multi-coil training estimates per slice.

:class:`~mri_n2n.data.multicoil.MultiCoilSliceDataset` estimates each slice's maps from its own
k-space centre. The estimate depends only on the input file and the dataset's settings, so it is
computed once and kept in a cache folder *beside* the data (never inside an input file, which is
only read): one ``.npy`` file per slice, named by a SHA-256 of what the maps depend on

- the input file's resolved path, modification time (ns) and size in bytes,
- the slice index and the settings (method, calibration block, item size, readout rows,
  normalisation divisor, virtual coils),
- :data:`CACHE_VERSION` and the torch version (a change of either recomputes).

Touching or rewriting a file (new mtime or size) or changing a setting therefore misses the
cache; stale entries are never read, only left behind (delete the folder to reclaim the
space). Entries are written atomically (temporary name, then rename); an entry that cannot be
read or has the wrong shape or type (e.g. truncated) is recomputed and rewritten, and a cache
folder that cannot be written is reported once and then bypassed, so the cache never stops a
run. Worker processes share the cache through the file system (and the OS page cache).

The folder: ``--maps-cache`` (config ``maps_cache``): ``auto`` (default) is
``$MRI_N2N_CACHE/maps`` if that variable is set, else ``$XDG_CACHE_HOME/mri_n2n/maps``, else
``~/.cache/mri_n2n/maps``; ``none`` turns the disk cache off (maps are then kept in each
process's memory, as before); anything else is a folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_path

__all__ = ["CACHE_VERSION", "MapsCache", "default_cache_dir", "resolve_maps_cache"]

#: Bumped whenever the maps computed for the same inputs and settings change.
CACHE_VERSION = 1
#: Values of ``maps_cache`` that turn the disk cache off.
OFF = ("none", "off", "false", "no", "")


def default_cache_dir() -> Path:
    """``$MRI_N2N_CACHE/maps``, else ``$XDG_CACHE_HOME/mri_n2n/maps``, else ``~/.cache/mri_n2n/maps``."""
    if os.environ.get("MRI_N2N_CACHE"):
        return Path(os.environ["MRI_N2N_CACHE"]).expanduser() / "maps"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "mri_n2n" / "maps"


def resolve_maps_cache(setting: str | os.PathLike | None) -> Path | None:
    """The cache folder a ``maps_cache`` setting names: ``None``/``"auto"`` -> the default
    (:func:`default_cache_dir`), ``"none"``/``"off"`` -> ``None`` (no disk cache), else the path."""
    if setting is None or str(setting) == "auto":
        return default_cache_dir()
    if str(setting).strip().lower() in OFF:
        return None
    return Path(setting).expanduser()


class MapsCache:
    """Coil maps on disk, one entry per (input file state, slice, settings) (module docstring).

    Args:
        root: the cache folder (created on the first write).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._broken = False

    def entry(self, source: str | os.PathLike, index: int, settings: Mapping[str, Any]) -> Path:
        """The entry's path for slice ``index`` of ``source`` under ``settings`` (JSON values)."""
        st = os.stat(source)
        key = {
            "version": CACHE_VERSION,
            "torch": torch.__version__,
            "file": str(Path(source).resolve()),
            "mtime_ns": st.st_mtime_ns,
            "bytes": st.st_size,
            "index": int(index),
            "settings": dict(settings),
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        return self.root / digest[:2] / f"{digest}.npy"

    @staticmethod
    def load(entry: Path, shape: tuple[int, ...]) -> np.ndarray | None:
        """The maps stored at ``entry`` if it holds complex64 of ``shape``, else ``None``."""
        try:
            arr = np.load(entry, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if arr.dtype != np.complex64 or tuple(arr.shape) != tuple(shape):
            return None
        return arr

    def store(self, entry: Path, maps: np.ndarray) -> None:
        """Write ``maps`` to ``entry`` atomically; on an unwritable folder warn once and go on."""
        if self._broken:
            return
        try:
            with atomic_path(entry) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, np.ascontiguousarray(maps, np.complex64), allow_pickle=False)
        except OSError as e:
            self._broken = True
            warnings.warn(
                f"maps cache {self.root}: cannot write ({e}); estimating maps without it", stacklevel=2
            )

    def get(
        self,
        source: str | os.PathLike,
        index: int,
        settings: Mapping[str, Any],
        shape: tuple[int, ...],
        compute: Callable[[], np.ndarray],
    ) -> np.ndarray:
        """The cached maps of slice ``index`` of ``source``, else ``compute()`` (then stored)."""
        entry = self.entry(source, index, settings)
        maps = self.load(entry, shape)
        if maps is None:
            maps = np.asarray(compute(), np.complex64)
            self.store(entry, maps)
        return maps

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "_broken": False}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"
