"""Deterministic randomness: explicit generators and stable integer identities.

Every random draw in the package takes an explicit :class:`torch.Generator`; fixed
validation draws are seeded from each sample's identity, a hash of its provenance that is
the same in every run, process and machine (never Python's salted ``hash()``).
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["seeded_generator", "stable_ident"]

_IDENT_MASK = (1 << 62) - 1


def seeded_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A :class:`torch.Generator` on ``device`` seeded with ``seed`` (a non-negative int)."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
    return g


def stable_ident(*parts: object) -> int:
    """A 62-bit non-negative integer from ``parts``, identical across runs and processes.

    ``stable_ident("IXI002-Guys-0828", 60)`` hashes ``"IXI002-Guys-0828/60"`` with SHA-256.
    Used as the seed of fixed validation masks and noise, and as a slice's identity.
    """
    text = "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") & _IDENT_MASK
