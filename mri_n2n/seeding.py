"""Deterministic randomness: explicit generators and stable integer identities.

Every random draw in the package takes an explicit :class:`torch.Generator`; fixed
validation draws are seeded from each sample's identity, a hash of its provenance that is
the same in every run, process and machine (never Python's salted ``hash()``).

**Salts.** One seed drives several independent draws of a sample by XOR-ing it with a named
salt per draw (``seeded_generator(seed ^ SALT_NOISE)``), so that the draws never share a stream.
The values are fixed: changing one changes every seeded validation set and single acquisition.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = [
    "seeded_generator", "stable_ident", "restore_generator", "restore_cuda_rng", "SALT_PHASE", "SALT_NOISE",
    "SALT_ACQUISITION",
]

_IDENT_MASK = (1 << 62) - 1

#: Salt of the smooth phase given to a magnitude slice trained as complex data
#: (:func:`~mri_n2n.corruptions.mri.smooth_phase`), per sample.
SALT_PHASE = 0x5EED
#: Salt of the k-space noise of a sample's acquisition, per sample (single- and multi-coil).
SALT_NOISE = 0x401CE
#: Salt of a slice's one acquisition for the single-acquisition targets (SSDU, Noisier2Noise):
#: its identity XOR this seeds its mask, and, salted again with :data:`SALT_NOISE` /
#: :data:`SALT_PHASE`, its noise and phase, so the slice keeps one acquisition for the whole run;
#: it also seeds the split of a measured validation slice.
SALT_ACQUISITION = 0xAC90


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


def restore_generator(gen: torch.Generator, state: torch.Tensor) -> bool:
    """Set ``gen`` to a saved ``state``; ``False`` (``gen`` untouched) when the state comes from
    a generator of another device kind (its size differs: a CPU generator's state is 5056
    bytes, a CUDA one's 16), as when a run saved on a laptop resumes on a GPU node."""
    state = torch.as_tensor(state, dtype=torch.uint8).cpu()
    if state.numel() != gen.get_state().numel():
        return False
    gen.set_state(state)
    return True


def restore_cuda_rng(states: list[torch.Tensor]) -> int:
    """Restore saved CUDA RNG states on the GPUs visible now: a run saved with more GPUs than
    are visible sets the first ones, one saved on a CPU has none; returns how many were set."""
    n = min(len(states), torch.cuda.device_count())
    for i in range(n):
        torch.cuda.set_rng_state(torch.as_tensor(states[i], dtype=torch.uint8).cpu(), i)
    return n
