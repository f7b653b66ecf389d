"""One batch type for every MRI dataset: a loader's items become clean images or an
:class:`~mri_n2n.physics.Acquisition`.

Datasets yield ``(item, ident)``: ``item`` is a clean image tensor ``(C, H, W)`` (magnitude or
two-channel complex slices), or a batch-of-one acquisition of the slice's kind (fully sampled
coil data: a full mask, the maps and the coil k-space; measured data: the sampled set, the
measurements and the law's keep probability). :func:`collate` is the ``collate_fn`` of every
MRI data loader: it stacks clean images as torch's default does and concatenates acquisitions
with their kind's :meth:`~mri_n2n.physics.Acquisition.collate`, so a consumer dispatches on the
batch's type (``isinstance(batch, Acquisition)``, ``acq.multicoil``, ``acq.kind``), never on
channel counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import default_collate

from ..physics import Acquisition

__all__ = ["collate", "to_device", "Batch"]

#: A batch of an MRI loader: clean images ``(B, C, H, W)`` or an acquisition.
Batch = torch.Tensor | Acquisition


def collate(items: Sequence[tuple[Any, Any]]) -> tuple[Batch, torch.Tensor]:
    """``(batch, idents)`` of a loader's ``(item, ident)`` pairs: acquisitions collated into one
    (:meth:`~mri_n2n.physics.Acquisition.collate`), image tensors stacked (torch's
    :func:`~torch.utils.data.default_collate`, which also takes any other items as it does);
    ``idents`` an integer tensor."""
    first = items[0][0] if isinstance(items[0], (tuple, list)) else None
    if isinstance(first, Acquisition):
        acqs = [it[0] for it in items]
        return type(first).collate(acqs), default_collate([it[1] for it in items])
    return default_collate(list(items))


def to_device(batch: Batch, device: torch.device | str, *, non_blocking: bool = False) -> Batch:
    """A batch on ``device``: images as float32, acquisitions with their own dtypes."""
    if isinstance(batch, Acquisition):
        return batch.to(device)
    return batch.to(device, non_blocking=non_blocking).float()
