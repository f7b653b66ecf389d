"""The checkpoint-bound reconstruction API: :class:`Reconstructor`."""

from __future__ import annotations

import os

import numpy as np
import torch

from ..checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    pretrained,
    resolve_checkpoint,
)
from ..config import Config
from ..corruptions import MRIUndersampling
from ..devices import resolve_device
from ..io.kspace import as_kspace
from .engine import (
    Reconstruction,
    ReconstructionError,
    check_batch,
    kspace_normalize,
    model_channels,
    reconstruct_kspace,
    reconstruct_volume,
    simulate_kspace,
)

__all__ = ["Reconstructor"]


class Reconstructor:
    """A trained MRI checkpoint ready for reconstruction (the API behind the CLI).

    Example::

        rec = Reconstructor.from_checkpoint("runs/mni152/checkpoints/best.pt")
        out = rec.kspace(kspace, mask)                      # k-space -> magnitude volume
        study = rec.simulate(volume.array, fraction=0.1)    # retrospective, with metrics

    Args:
        model: the network (moved to ``device``, eval mode).
        config: the run's :class:`~mri_n2n.config.Config` (density, fraction, edge, normalize,
            axis, ...), or its dict as stored in a checkpoint.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or a :class:`torch.device`.
        amp: autocast on CUDA (default: on for CUDA).
        batch_size: slices per network call.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: Config | dict,
        *,
        device: str | torch.device = "auto",
        amp: bool | None = None,
        batch_size: int = 8,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        if not isinstance(config, Config):
            config = Config.from_dict(config, where="checkpoint config")
        self.config = config
        self.amp = amp
        self.batch_size = check_batch(batch_size)
        self.checkpoint: str | None = None
        self._densities: dict[tuple[int, int], torch.Tensor] = {}

    @classmethod
    def from_pretrained(
        cls,
        name: str = "mni152-n2n",
        *,
        device: str | torch.device = "auto",
        amp: bool | None = None,
        batch_size: int = 8,
    ) -> Reconstructor:
        """A shipped checkpoint by name (:func:`mri_n2n.checkpoint.pretrained` lists them).

        Raises:
            CheckpointError: no shipped checkpoint of that name.
        """
        if name not in pretrained():
            names = ", ".join(pretrained()) or "none"
            raise CheckpointError(f"{name}: no shipped checkpoint of that name (have: {names})")
        return cls.from_checkpoint(name, device=device, amp=amp, batch_size=batch_size)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "auto",
        amp: bool | None = None,
        batch_size: int = 8,
    ) -> Reconstructor:
        """Load an MRI checkpoint (``weights_only=True``).

        Raises:
            CheckpointError: not a checkpoint, a pickle that would run code, another task's
                checkpoint, or an unusable model/config.
            ValueError: a bad device.
        """
        dev = resolve_device(device)
        ckpt = load_checkpoint(path, map_location="cpu", task="mri")
        if not isinstance(ckpt.get("config"), dict):
            raise CheckpointError(f"{path}: checkpoint has no run configuration")
        try:
            config = Config.from_dict(ckpt["config"], where="config")
            model = model_from_checkpoint(ckpt, device=dev)
            MRIUndersampling.from_config(config, (32, 32))
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            msg = " ".join(str(e).split())[:200]
            raise CheckpointError(f"{path}: cannot build the model or its corruption ({msg})") from None
        channels = model_channels(model)
        if channels not in (1, 2):
            raise CheckpointError(
                f"{path}: an MRI model must take 1 or 2 channels, this one takes {channels}"
            )
        rec = cls(model, config, device=dev, amp=amp, batch_size=batch_size)
        rec.checkpoint = str(resolve_checkpoint(path))
        return rec

    @property
    def complex_model(self) -> bool:
        """True for two-channel (real, imaginary) models."""
        return model_channels(self.model) == 2

    @property
    def normalize(self) -> str:
        """The checkpoint's per-volume normalisation."""
        return self.config.normalize

    @property
    def axis(self) -> int:
        """The checkpoint's slicing axis."""
        return self.config.axis

    def density(self, shape: tuple[int, int]) -> torch.Tensor:
        """The checkpoint's sampling density recomputed for k-space of ``shape`` (cached)."""
        key = (int(shape[0]), int(shape[1]))
        if key not in self._densities:
            self._densities[key] = MRIUndersampling.from_config(self.config, key).density
        return self._densities[key]

    def corruption(self, shape: tuple[int, int], fraction: float | None = None) -> MRIUndersampling:
        """The checkpoint's corruption for ``shape``, at mean density ``fraction`` when given."""
        return MRIUndersampling.from_config(self.config, shape, fraction=fraction)

    def kspace(
        self, kspace: np.ndarray, mask: np.ndarray | None = None, *, keep_complex: bool = False
    ) -> Reconstruction:
        """Reconstruct undersampled k-space (see :func:`reconstruct_kspace`)."""
        k = as_kspace(kspace, "kspace")
        return reconstruct_kspace(
            self.model,
            k,
            mask,
            self.density(k.shape[1:]),
            normalize=kspace_normalize(self.normalize),
            batch_size=self.batch_size,
            amp=self.amp,
            keep_complex=keep_complex,
        )

    def simulate(
        self,
        array: np.ndarray,
        fraction: float,
        *,
        seed: int = 0,
        axis: int | None = None,
        keep_complex: bool = False,
    ) -> Reconstruction:
        """Retrospective study of an image volume (see :func:`reconstruct_volume`)."""
        ax = self.axis if axis is None else axis
        arr = np.asarray(array)
        if arr.ndim != 3:
            raise ReconstructionError(f"expected a 3-D image volume, got shape {arr.shape}")
        shape = tuple(s for a, s in enumerate(arr.shape) if a != ax)
        return reconstruct_volume(
            self.model,
            self.corruption(shape, fraction),  # type: ignore[arg-type]
            arr,
            axis=ax,
            seed=seed,
            normalize=self.normalize,
            batch_size=self.batch_size,
            amp=self.amp,
            keep_complex=keep_complex,
        )

    def simulate_kspace(self, kspace: np.ndarray, fraction: float, *, seed: int = 0) -> Reconstruction:
        """Retrospective study of fully sampled k-space (see :func:`simulate_kspace`)."""
        k = as_kspace(kspace, "kspace")
        return simulate_kspace(
            self.model,
            self.corruption(k.shape[1:], fraction),
            k,
            seed=seed,
            normalize=self.normalize,
            batch_size=self.batch_size,
            amp=self.amp,
        )


