"""Multi-coil training data from any image dataset: every item becomes the fully sampled coil
k-space of a random receive array, as a scanner writes it (``--synth-coils``).

:class:`SynthCoilDataset` wraps a dataset of magnitude (or complex) slices. Item ``i`` draws,
from a generator seeded by the item's identity (so a run is reproducible and validation items
never change):

1. a complex image: the magnitude times the phase model's ``exp(i phi)``
   (:func:`~mri_n2n.data.generators.phase.with_random_phase`);
2. a random array of ``C`` coils, ``C`` uniform in ``coils``, fitted around the object's
   support (:func:`~mri_n2n.data.generators.coil_arrays.random_coil_array`);
3. the coil k-space ``F (S_c x)`` plus thermal noise correlated between the coils
   (:func:`~mri_n2n.data.generators.coil_arrays.correlated_noise`, standard deviation
   ``noise`` relative to the image maximum, one noisy acquisition per item);
4. the maps the acquisition carries: the true sensitivities normalised so that
   ``sum_c |S_c|^2 = 1`` on their support (:func:`~mri_n2n.coils.normalize_maps`, the
   convention of estimated maps).

Items are :class:`~mri_n2n.physics.CartesianAcquisition`\\ s of every bin (no keep probability:
fully sampled data; the corruption undersamples them), padded to ``max(coils)`` coils with
silent (zero) coils so that a loader can stack items of different arrays; a zero coil adds
nothing to any coil combination, data consistency or root-sum-of-squares.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ...coils import normalize_maps
from ...fft import fft2c
from ...physics import CartesianAcquisition
from ...seeding import seeded_generator, stable_ident
from .coil_arrays import CoilArrayParams, correlated_noise, random_coil_array
from .phase import PhaseParams, support_edges, with_random_phase

__all__ = ["SynthCoilDataset", "parse_coil_range"]


def parse_coil_range(text: str | int) -> tuple[int, int]:
    """``"8"`` -> ``(8, 8)``, ``"2:16"`` -> ``(2, 16)``.

    Raises:
        ValueError: not one or two whole numbers ``1 <= lo <= hi <= 64``.
    """
    parts = str(text).split(":")
    try:
        lo, hi = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (0, -1)
    except ValueError:
        lo, hi = 0, -1
    if not 1 <= lo <= hi <= 64:
        raise ValueError(f"coils must be N or LO:HI with 1 <= LO <= HI <= 64, got {text!r}")
    return lo, hi


class SynthCoilDataset(Dataset):
    """Fully sampled coil k-space synthesised from the slices of ``base`` (module docstring).

    Args:
        base: a dataset of ``(image (1 or 2, H, W), ident)`` items (magnitude, or real/imaginary).
        coils: ``(lo, hi)``: the number of coils of each item's array, uniform; items are padded
            to ``hi`` coils.
        noise: thermal noise standard deviation relative to the image maximum (``0``: none).
        seed: salts every item's generator (with the item's identity).
        phase: the phase model's ranges (default :class:`~mri_n2n.data.generators.phase.PhaseParams`).
        array: the coil arrays' ranges (default
            :class:`~mri_n2n.data.generators.coil_arrays.CoilArrayParams`).
    """

    def __init__(
        self,
        base: Dataset,
        coils: tuple[int, int] = (8, 8),
        *,
        noise: float = 0.0,
        seed: int = 0,
        phase: PhaseParams | None = None,
        array: CoilArrayParams | None = None,
    ) -> None:
        self.base = base
        self.coils = (int(coils[0]), int(coils[1]))
        if not 1 <= self.coils[0] <= self.coils[1]:
            raise ValueError(f"coils must be (lo, hi) with 1 <= lo <= hi, got {coils}")
        if not noise >= 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.noise = float(noise)
        self.seed = int(seed)
        self.phase = phase or PhaseParams()
        self.array = array or CoilArrayParams()

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def ident(self, i: int) -> int:
        """Item ``i``'s identity (its base item's)."""
        return int(self.base.ident(i))  # type: ignore[attr-defined]

    def _generator(self, ident: int) -> torch.Generator:
        return seeded_generator(stable_ident("synth-coils", self.seed, int(ident)))

    def _draw(self, i: int) -> tuple[torch.Tensor, Any, torch.Generator, int]:
        """Item ``i``'s complex image, its coil array and the generator after them."""
        image, ident = self.base[i]
        g = self._generator(ident)
        x = torch.as_tensor(image, dtype=torch.float32)
        if x.shape[0] == 1:
            z = with_random_phase(x[None].clamp_min(0), g, self.phase)[0, 0]
        else:
            z = torch.complex(x[0], x[1])
        h, w = z.shape
        lo, hi = self.coils
        n = lo + int(torch.randint(hi - lo + 1, (1,), generator=g))
        support = support_edges(z.abs()[None, None])[0][0]
        arr = random_coil_array((h, w), n, g, self.array, support=support)
        return z, arr, g, ident

    def __getitem__(self, i: int) -> tuple[CartesianAcquisition, int]:
        z, arr, g, ident = self._draw(i)
        h, w = z.shape
        n, hi = arr.n_coils, self.coils[1]
        k = fft2c(arr.maps * z)  # (n, H, W) coil k-space
        if self.noise > 0:
            scale = float(z.abs().max()) * self.noise
            noise, _ = correlated_noise((h, w), n, g, std=scale, positions=arr.centres)
            k = k + noise.to(k.dtype)
        maps = normalize_maps(arr.maps)
        if n < hi:  # silent coils: items of different arrays stack
            pad = torch.zeros(hi - n, h, w, dtype=k.dtype)
            k, maps = torch.cat([k, pad]), torch.cat([maps, pad.to(maps.dtype)])
        full = torch.ones(h, w, dtype=torch.bool)
        return CartesianAcquisition(full, maps[None].to(torch.complex64), k[None].to(torch.complex64)), ident

    def provenance(self, i: int) -> dict[str, Any]:
        """The base item's provenance and the synthesis settings."""
        base = getattr(self.base, "provenance", None)
        out = dict(base(i)) if callable(base) else {}
        return {**out, "coils": list(self.coils), "coil_noise": self.noise}

    def reference(self, i: int) -> np.ndarray:
        """Item ``i``'s reference in fastMRI's convention: the root-sum-of-squares of its
        noise-free coil images, ``|x| sqrt(sum_c |S_c|^2)`` (the magnitude of the coil
        combination by the normalised maps)."""
        z, arr, _, _ = self._draw(i)
        return (arr.maps * z).abs().square().sum(0).sqrt().numpy().astype(np.float32)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of an item's coil k-space (``C`` the padded coil count)."""
        _, h, w = self.base.image_shape  # type: ignore[attr-defined]
        return (self.coils[1], int(h), int(w))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base!r}, coils={self.coils}, noise={self.noise})"
