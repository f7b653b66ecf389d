"""Geometric self-ensemble at inference: average a network over the symmetries of the problem.

A network trained with random flips and quarter turns (``--augment``) is close to, but not
exactly, equivariant to them. Running it on each transformed input and mapping each output back
before averaging (Lim et al. 2017, "EDSR"'s self-ensemble) removes the part of its error that
is not equivariant, at the cost of one network pass per transform.

The transforms act on the image and on centred k-space alike, so measurements stay exact:

- a *circular* flip of an axis about its centre index (``n -> (2c - n) mod N`` with
  ``c = N // 2``: a plain flip for odd ``N``, a flip then a one-pixel roll for even ``N``) maps
  an image to the same circular flip of its centred spectrum;
- a transpose of a square matrix maps its centred spectrum to the transposed spectrum.

So the transformed measurements are the transformed k-space under the transformed mask, and
every output that agrees with them agrees, mapped back, with the original measurements: the
average of exact data-consistent outputs is data-consistent (for networks that end with an exact
projection; a proximal data consistency, ``--dc prox``, is a weighted solve, so its passes and
their mean are near, not at, the measurements). Masks of whole phase-encode lines are not
transposed (the network never saw rows of lines); non-square matrices are not either. The
acquisition says which transforms it admits (:meth:`~mri_n2n.physics.Acquisition.admits`); for a
kind that admits no flips the ensemble is the plain network. Networks that take no measurements
(U-Nets) still need the acquisition for that choice: :func:`~mri_n2n.models.apply_model` passes
it to a :class:`SelfEnsemble`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..physics import Acquisition

__all__ = ["SelfEnsemble", "circular_flip", "dihedral_transforms", "ensemble_forward"]

#: A transform: ``(flip rows, flip columns, transpose)``, applied in that order.
Transform = tuple[bool, bool, bool]


def circular_flip(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Flip ``x`` along ``dim`` about its centre index ``N // 2`` (module docstring): the flip
    that commutes with the centred FFT."""
    out = torch.flip(x, [dim])
    return torch.roll(out, 1, dims=dim) if x.shape[dim] % 2 == 0 else out


def _apply(x: torch.Tensor, t: Transform) -> torch.Tensor:
    if t[0]:
        x = circular_flip(x, -2)
    if t[1]:
        x = circular_flip(x, -1)
    return x.transpose(-2, -1) if t[2] else x


def _invert(x: torch.Tensor, t: Transform) -> torch.Tensor:
    if t[2]:
        x = x.transpose(-2, -1)
    if t[1]:
        x = circular_flip(x, -1)
    return circular_flip(x, -2) if t[0] else x


def dihedral_transforms(shape: tuple[int, int], *, transpose: bool = True) -> list[Transform]:
    """The transforms of the ensemble for an ``(H, W)`` matrix: the four flips, and with
    ``transpose`` and a square matrix their transposes too (eight: the dihedral group)."""
    flips = [(a, b, False) for a in (False, True) for b in (False, True)]
    if transpose and shape[0] == shape[1]:
        flips += [(a, b, True) for a, b, _ in flips]
    return flips


def ensemble_forward(model: nn.Module, x: torch.Tensor, acq: Acquisition | None = None) -> torch.Tensor:
    """The mean over :func:`dihedral_transforms` of ``T^-1 model(T x, T acq)``.

    Args:
        model: the network (any of :mod:`mri_n2n.models`), called by
            :func:`~mri_n2n.models.apply_model` (networks that take no measurements get none).
        x: network input ``(B, C, H, W)``.
        acq: the batch's acquisition (its sampled set, measurements, maps and phase are
            transformed with the image), or ``None``. The transforms are those the acquisition
            admits (:meth:`~mri_n2n.physics.Acquisition.admits`): a Cartesian mask of whole lines
            turns the transposes off; a kind that admits no flips leaves the one plain pass.

    Returns:
        The averaged output, in the original orientation.
    """
    from . import apply_model  # the package's dispatcher (imports this module)

    if acq is not None and not acq.admits("flip"):
        return apply_model(model, x, acq).float()
    transpose = acq is None or acq.admits("transpose")
    ts = dihedral_transforms(tuple(x.shape[-2:]), transpose=transpose)
    total: torch.Tensor | None = None
    for t in ts:
        a = None if acq is None else acq.transformed(lambda v, t=t: _apply(v, t))
        out = _invert(apply_model(model, _apply(x, t), a), t).float()
        total = out if total is None else total + out
    assert total is not None
    return total / len(ts)


class SelfEnsemble(nn.Module):
    """A network wrapped so that every call is :func:`ensemble_forward`.

    The wrapped network is ``.module`` (so :func:`~mri_n2n.models.uses_measurements` and
    :func:`~mri_n2n.models.ends_with_dc` see through the wrapper, as they do through DDP); its
    parameters are the wrapper's, and callers such as :class:`~mri_n2n.reconstruction.Reconstructor`
    use it unchanged.
    """

    #: :func:`~mri_n2n.models.apply_model` passes the acquisition to the wrapper even when the
    #: network takes no measurements: its mask's geometry decides the transposes.
    needs_mask_geometry = True

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor, acq: Acquisition | None = None) -> torch.Tensor:
        return ensemble_forward(self.module, x, acq)
