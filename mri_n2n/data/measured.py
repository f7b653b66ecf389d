"""Measured (prospectively undersampled) k-space: what a file says about itself.

- :func:`check_centred` refuses k-space whose energy peak is clearly away from the centre
  (an array written without ``fftshift`` gives garbage silently otherwise).
- :func:`file_mask_law` gives the law the file's mask was drawn from: the one the file records
  (:data:`~mri_n2n.masks.MASK_LAW_ATTR`), else an estimate from the masks themselves
  (:func:`~mri_n2n.mask_estimation.estimate_family`: fastMRI's equispaced masks exactly, a fully sampled
  centre plus the uniform rate outside it for random lines, a radial density for 2-D masks,
  Hermitian when they are symmetric), whose source says when the masks do not identify a law.
- :func:`crop_readout` removes readout oversampling the way fastMRI does (crop in image space
  along the readout, back to k-space), which keeps a line mask exact.
- :func:`law_mismatch` says when a checkpoint was trained on another mask family or rate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..io.kspace import ismrmrd_recon_shape
from ..mask_estimation import estimate_family
from ..masks import MaskFamily, family_from_description
from ._acquire import image_of, kspace_of, sampled

__all__ = [
    "check_centred", "file_mask_law", "unidentified_note", "UNIDENTIFIED", "crop_readout", "law_mismatch",
    "file_recon_shape", "CenteringError",
]


#: How :func:`file_mask_law`'s source begins for an estimate that the masks do not identify.
UNIDENTIFIED = "estimated (unidentified: "


class CenteringError(ValueError):
    """The k-space is not centred (DC away from ``(ky // 2, kx // 2)``)."""


def _profile_peak(profile: np.ndarray) -> tuple[int, bool]:
    """Index of the maximum and whether it stands clearly above the typical level (8x median)."""
    i = int(np.argmax(profile))
    med = float(np.median(profile))
    return i, bool(profile[i] > 8 * med) if med > 0 else bool(profile[i] > 0)


def check_centred(kspace: np.ndarray, mask: np.ndarray | None = None, *, where: str = "kspace") -> None:
    """Refuse k-space ``(S, H, W)`` whose energy peak is clearly away from ``(H // 2, W // 2)``.

    The energy of the sampled values, summed over slices, is projected on each axis; when an
    axis has a clear peak (8 times its median) it must lie within ``max(2, n // 8)`` bins of the
    centre. Flat spectra (noise) pass: there is nothing to locate.

    Raises:
        CenteringError: one line naming ``where``, the peak and the centre.
    """
    k = np.asarray(kspace)
    e = np.abs(k).astype(np.float64) ** 2
    if mask is not None:
        e = e * np.asarray(mask, bool)
    e = e.reshape(-1, *k.shape[-2:]).sum(0)
    h, w = e.shape
    for axis, n, name in ((1, h, "ky"), (0, w, "kx")):
        peak, clear = _profile_peak(e.sum(axis))
        if clear and abs(peak - n // 2) > max(2, n // 8):
            raise CenteringError(
                f"{where}: k-space is not centred: the energy peak along {name} is at bin {peak}, "
                f"the centre is {n // 2} (apply np.fft.fftshift over the last two axes)"
            )


def file_mask_law(
    kspace: np.ndarray, mask: np.ndarray | None, law: str | None, *, where: str = "kspace"
) -> tuple[MaskFamily | None, str]:
    """The law of the file's mask and where it comes from.

    Returns:
        ``(family, source)``: ``(None, "fully sampled")`` when nothing is missing; the recorded
        law (``source="recorded"``); else :func:`~mri_n2n.mask_estimation.estimate_family` of the masks of
        the slices with signal (all of them: per-slice offsets of an equispaced mask identify its
        centre), ``"estimated"``, or ``"estimated (unidentified: <why>)"`` when the masks do not
        identify the law (:data:`UNIDENTIFIED`; the estimate is still the best guess).

    Raises:
        ValueError: a recorded law that cannot be read or does not match the k-space grid.
    """
    k = np.asarray(kspace)
    m = np.asarray(mask, bool) if mask is not None else k != 0
    active = np.abs(k).reshape(len(k), -1).max(1) > 0
    if mask is not None and bool(m.all()):
        return None, "fully sampled"
    if law is not None:
        try:
            fam = family_from_description(law)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        if fam.shape != tuple(k.shape[1:]):
            raise ValueError(
                f"{where}: the recorded mask law is for {fam.shape}, the k-space is {k.shape[1:]}"
            )
        return fam, "recorded"
    sel = m[active] if active.any() else m
    if bool(sel.all()):
        return None, "fully sampled"
    # a mask shared by every slice (fastMRI's 1-D mask) is one observation, not S
    first = sel[0]
    obs = first[None] if bool((sel == first).all()) else sel
    fam = estimate_family(torch.from_numpy(np.ascontiguousarray(obs)))
    return fam, f"{UNIDENTIFIED}{fam.unidentified})" if fam.unidentified else "estimated"


def unidentified_note(source: str) -> str | None:
    """The warning line for a law :func:`file_mask_law` could not identify, else None."""
    if not source.startswith(UNIDENTIFIED):
        return None
    why = source[len(UNIDENTIFIED) : -1]
    return f"the mask law is estimated but not identified ({why}): its 1/p compensation is a guess"


def crop_readout(
    kspace: np.ndarray, mask: np.ndarray | None, rows: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Crop the readout (``ky``, the first in-plane axis) to ``rows`` in image space.

    The transform along the readout commutes with the crop, so column ``j`` of the result
    depends on column ``j`` of the input only: a mask of whole columns stays exact (unsampled
    columns stay zero). Returns the cropped k-space and mask; unchanged when ``rows`` is not
    smaller than the readout.
    """
    s, h, w = kspace.shape
    if rows >= h:
        return kspace, mask
    if mask is not None and not bool((np.asarray(mask) == np.asarray(mask)[:, :1, :]).all()):
        raise ValueError("readout cropping needs a mask of whole columns (a 1-D Cartesian mask)")
    img = image_of(np.ascontiguousarray(kspace))
    top = (h - rows) // 2
    out = kspace_of(img[:, top : top + rows, :]).numpy().astype(np.complex64)
    if mask is None:
        return out, None
    m = np.ascontiguousarray(np.asarray(mask, bool)[:, :rows, :])
    return sampled(out, m), m


def law_mismatch(trained: MaskFamily, measured: MaskFamily, *, tolerance: float = 1.25) -> str | None:
    """A one-line warning when ``measured`` differs from the ``trained`` law in kind (2-D versus
    lines) or in rate (more than ``tolerance`` outside the rates it was trained on); else ``None``.
    The trained law answers for what it covers (:meth:`~mri_n2n.laws.SampleLaw.serves`,
    :meth:`~mri_n2n.laws.SampleLaw.fraction_range`): one law its own kind and rate, a law drawn
    per item (e.g. ``--density mixed``) the kinds and rates of its items, not its marginal."""
    kind_m = "1-D lines" if measured.lines else "2-D"
    fm = measured.fraction
    notes = []
    if not trained.serves(measured.lines):
        served = "1-D lines" if trained.serves(True) else "2-D"
        notes.append(f"{served} masks ({trained.name}), the file has {kind_m}")
    lo, hi = trained.fraction_range()
    if fm > 0 and not lo / tolerance <= fm <= hi * tolerance:
        span = f"{lo:.3f}" if lo == hi else f"{lo:.3f} to {hi:.3f}"
        rates = f"a sampled fraction of {span}" if lo == hi else f"sampled fractions of {span}"
        notes.append(f"{rates}, the file {fm:.3f}")
    if not notes:
        return None
    return "the checkpoint was trained on " + "; ".join(notes) + ": expect a worse reconstruction"


def file_recon_shape(f: Any, kshape: tuple[int, int]) -> tuple[int, int] | None:
    """An open k-space HDF5 file's reconstruction matrix: its reference's in-plane shape, else
    the ISMRMRD header's ``reconSpace`` (``None`` when it records neither)."""
    for name in ("reconstruction_esc", "reconstruction_rss"):
        if name in f and len(f[name].shape) >= 2:
            return tuple(int(v) for v in f[name].shape[-2:])  # type: ignore[return-value]
    if "ismrmrd_header" in f:
        return ismrmrd_recon_shape(f["ismrmrd_header"][()], kshape)
    return None
