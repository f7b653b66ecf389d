"""Splitting one acquisition into a network input and a held-out loss set (single-acquisition
self-supervision: SSDU and Noisier2Noise).

Noise2Noise needs two independent acquisitions of a slice. With one acquisition ``Omega``
(the sampled set, drawn with keep probability ``p`` over the kind's samples: grid bins for
Cartesian data, spokes or readouts for a trajectory), the methods below draw a *split* ``keep``
independent of ``Omega`` at every training step: the network sees ``Omega & keep`` (and keeps it
in its data consistency) and the loss is computed on the held-out set ``Omega & ~keep``. The
laws of the splits are asked of the acquisition's law itself
(:meth:`~mri_n2n.masks.SampleLaw.ssdu_law`, :meth:`~mri_n2n.masks.SampleLaw.second_law`), so a
newly registered mask family or acquisition kind is one class for both targets; what follows
describes the Cartesian families' answers (:class:`~mri_n2n.masks.MaskFamily`).

- ``ssdu`` (Yaman et al., MRM 2020): each acquired bin is held out independently with a
  probability ``s(k)`` shaped like a centred Gaussian (standard deviation ``N / 4`` along each
  axis, as the paper's code selects its loss points), scaled so that the expected held-out
  share of the acquired bins is ``rho`` (paper: 0.4); a central 5 x 5 block always stays in
  the input (the paper's small 4 x 4 ACS block, made symmetric about DC). The split is
  point-wise for every mask family.
- ``noisier2noise`` (Millard and Chiew, IEEE TCI 2023): the kept set is a second mask ``Lambda``
  drawn from a family of the acquisition's own kind (2-D families: the same density at another
  mean, for an estimated radial density ``d`` its power ``d ** gamma``; line families: random
  lines with the same fully sampled centre, since two independent equispaced lattices rarely
  intersect, for an estimated law the columns it always keeps), whose mean is solved so that
  the expected held-out share is again ``rho``.

Both give, for every bin, the exact laws the corruption and the loss need (``q`` is the
probability that an acquired bin stays in the input, the split being independent of ``Omega``):

- input keep probability ``P(k in Omega & keep) = p q``: the input's ``1 / p`` compensation;
- ``P(k held out | k not in the input) = p (1 - q) / (1 - p q)``: with ``1 /`` this as the weight
  of a k-space L2 on the held-out set, its expectation given the input is the L2 against the
  *fully sampled* k-space on every bin the input lacks (plus the measurement noise). This is
  Millard and Chiew's weighted SSDU, their ``(1 - K)^{-1}`` with ``1 - K = p (1 - q) / (1 - p q)``:
  the Noisier2Noise correction folded into the loss, so the network estimates the full spectrum
  directly and inference needs no correction. With a flat weight the per-bin minimiser is the
  same, only the balance between frequencies changes (SSDU's unweighted loss).

Real images (Hermitian-completed acquisitions) get conjugate-symmetric splits, so the input and
the held-out set stay Hermitian.
"""

from __future__ import annotations

from typing import Any

import torch

from .laws import SampleLaw
from .masks import SSDU_ACS, SSDU_STD_SCALE

__all__ = ["SPLIT_TARGETS", "SplitLaw", "make_split", "split_loss_density", "SSDU_ACS", "SSDU_STD_SCALE"]

#: Training targets that learn from one acquisition per slice.
SPLIT_TARGETS = ("ssdu", "noisier2noise")


class SplitLaw:
    """A random split of acquired samples into an input set and a held-out set: a law
    (:class:`~mri_n2n.masks.SampleLaw`) over the kept sets, drawn independently of the
    acquisition, applied with :meth:`~mri_n2n.physics.Acquisition.restrict`.

    SSDU's law is the acquisition law's point-wise selection
    (:meth:`~mri_n2n.masks.SampleLaw.ssdu_law`); Noisier2Noise's is a second law of the
    acquisition's own kind (:meth:`~mri_n2n.masks.SampleLaw.second_law`). Both share the laws'
    draws, exact marginals and descriptions.

    Attributes:
        kind: ``"ssdu"`` or ``"noisier2noise"``.
        shape: the sample space (``(H, W)`` for Cartesian masks).
        rho: expected share of the acquired samples held out.
        hermitian: conjugate-symmetric splits (real images).
        law: the law of the kept sets (``family``: the same, its historical name).
    """

    def __init__(self, kind: str, law: SampleLaw, rho: float, *, hermitian: bool) -> None:
        if kind not in SPLIT_TARGETS:
            raise ValueError(f"split kind must be one of {SPLIT_TARGETS}, got {kind!r}")
        self.kind = kind
        self.law = law
        self.shape = tuple(law.shape)
        self.rho = float(rho)
        self.hermitian = bool(hermitian)

    @property
    def family(self) -> SampleLaw:
        """The law of the kept sets (:attr:`law`)."""
        return self.law

    def keep_probability(self) -> torch.Tensor:
        """``q``: probability (of :attr:`shape`) that an acquired sample stays in the input."""
        return self.law.keep_probability().float()

    def draw(self, batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """Kept sets ``(B, *shape)`` (bool), drawn independently of any acquisition on the
        generator's device (the same sets on CPU and CUDA) and moved to ``device``."""
        if device is None:
            device = generator.device if generator is not None else "cpu"
        return self.law.sample(batch, generator=generator).to(device)

    def split(
        self, sampled: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input set, held-out set)`` of acquired sets ``(B, *shape)``: disjoint, and their
        union is the acquired set."""
        sampled = sampled.bool()
        keep = self.draw(sampled.shape[0], generator, device=sampled.device)
        return sampled & keep, sampled & ~keep

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (recorded with the run)."""
        d: dict[str, Any] = {"kind": self.kind, "rho": self.rho, "hermitian": self.hermitian}
        if self.kind == "noisier2noise":
            d["second_mask"] = self.law.describe()
        else:
            d.update(self.law.selection or {"selection": self.law.describe()})
        return d

    def __repr__(self) -> str:
        return f"SplitLaw({self.describe()})"


def make_split(
    kind: str, acquisition: SampleLaw, p: torch.Tensor, rho: float = 0.4, *, hermitian: bool = False
) -> SplitLaw:
    """The split law of a single-acquisition target for acquisitions drawn from ``acquisition``.

    Args:
        kind: ``"ssdu"`` or ``"noisier2noise"`` (see the module docstring).
        acquisition: the acquisitions' law (a :class:`~mri_n2n.masks.SampleLaw`: a mask family for
            Cartesian data); it answers with its own split laws
            (:meth:`~mri_n2n.masks.SampleLaw.ssdu_law`, :meth:`~mri_n2n.masks.SampleLaw.second_law`).
        p: the acquired sets' keep probability over the samples (for real images, that of the
            Hermitian completion).
        rho: expected share of the acquired samples held out, in (0, 1).
        hermitian: conjugate-symmetric splits (real images).

    Raises:
        ValueError: unknown kind, ``rho`` outside (0, 1), or a share the law cannot reach.
    """
    if not 0.0 < float(rho) < 1.0:
        raise ValueError(f"the held-out share must lie in (0, 1), got {rho}")
    p = p.float().cpu()
    if kind == "ssdu":
        keep = acquisition.ssdu_law(p, float(rho), hermitian=hermitian)
        return SplitLaw(kind, keep, rho, hermitian=hermitian)
    if kind == "noisier2noise":
        keep = acquisition.second_law(p, float(rho), hermitian=hermitian)
        return SplitLaw(kind, keep, rho, hermitian=hermitian)
    raise ValueError(f"split kind must be one of {SPLIT_TARGETS}, got {kind!r}")


def split_loss_density(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``P(k held out | k not in the input) = p (1 - q) / (1 - p q)`` (1 where the input always
    has the sample: such samples are never held out, their weight is never used)."""
    p, q = p.float(), q.to(p.device).float()
    num = p * (1 - q)
    den = 1 - p * q
    out = num / den.clamp_min(1e-12)
    return torch.where(den > 1e-7, out, torch.ones_like(out)).clamp(0.0, 1.0)
