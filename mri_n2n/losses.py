"""Losses matched to the corruption's statistics (paper, section 3).

Every loss has the signature ``loss(output, target, pair, progress) -> scalar``: ``pair`` is the
batch's :class:`~mri_n2n.corruptions.Pair` (its ``valid`` mask, its target's acquisition
``target_acq``) or ``None``, and ``progress`` in [0, 1] is the fraction of training done (used by
annealed losses).

The minimiser of each loss over a constant is a statistic of the targets, which is what makes
Noise2Noise work when the target's corruption leaves that statistic unchanged:

========  ==============================================  ====================================
name      per-pixel value                                 minimiser (targets' ...)
========  ==============================================  ====================================
``l2``    ``(f - y)^2``                                   mean
``l1``    ``|f - y|``                                     median
``l0``    ``(|f - y| + 1e-8)^gamma``, gamma = 2 (1 - t)   mode (annealed, t = progress)
``hdr``   ``(f - y)^2 / (f.detach() + 0.01)^2``           mean (relative L2 for HDR images)
========  ==============================================  ====================================

MRI also has ``kspace`` (and its variants ``kspace_clipped``, ``kspace_flat``,
``kspace_normalized``, ``kspace_density``, ``kspace_mix``): a Noise2Noise L2 in k-space on the
target's sampled set, weighted by ``1 / p`` (see :func:`kspace_loss`).

**Adding a loss** is one registered function (:func:`register_loss`): it becomes a ``--loss``
choice and :func:`get_loss` returns it; ``kspace=True`` marks an MRI loss that reads the
target's acquisition, ``split=True`` one that the single-acquisition targets accept.

**Masking.** When the pair holds a ``valid`` mask (bool or float, ``(B, 1 | C, H, W)``,
broadcast over channels), every loss is the mean over valid pixels only: invalid pixels
contribute neither to the value nor to the gradient. This is the Bernoulli experiment's rule: only pixels that
are valid in the *target* count. A mask with no valid pixel gives a loss of 0 (with a graph).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch

from .corruptions.base import Pair
from .fft import to_complex
from .physics import Acquisition
from .registry import Registry

__all__ = [
    "l2_loss",
    "l1_loss",
    "l0_loss",
    "hdr_loss",
    "kspace_loss",
    "kspace_mix_loss",
    "adaptation_weighting",
    "l0_gamma",
    "masked_mean",
    "LOSSES",
    "MRI_LOSSES",
    "LossEntry",
    "register_loss",
    "loss_names",
    "loss_entry",
    "get_loss",
]

#: What a loss reads besides the output and the target: the batch's pair (or, for the k-space
#: losses, the target's acquisition alone), or nothing.
LossContext = Pair | Acquisition | None
LossFn = Callable[[torch.Tensor, torch.Tensor, LossContext, float], torch.Tensor]

#: Added to ``|f - y|`` by the annealed L0 loss (paper: 1e-8) so that a zero residual stays finite.
L0_EPS = 1e-8
#: Added to the (detached) output in the HDR loss's denominator (paper: 0.01).
HDR_EPS = 0.01


def _pair(pair: LossContext) -> Pair | None:
    """``pair`` as a :class:`Pair`: a target acquisition becomes the pair's ``target_acq``."""
    if isinstance(pair, Acquisition):
        return Pair(None, None, target_acq=pair)  # type: ignore[arg-type]
    return pair


def masked_mean(values: torch.Tensor, pair: LossContext) -> torch.Tensor:
    """Mean of per-pixel ``values``, over the pixels where the pair's ``valid`` mask is set.

    Args:
        values: per-pixel loss values ``(B, C, H, W)`` (any shape the mask broadcasts to).
        pair: the batch's pair; without a ``valid`` mask this is the plain mean.

    Returns:
        A scalar: ``sum(values * valid) / sum(valid)`` with the mask broadcast over
        channels; ``0`` (still attached to the graph) when no pixel is valid.
    """
    pair = _pair(pair)
    valid = None if pair is None else pair.valid
    if valid is None:
        return values.mean()
    valid = valid.to(device=values.device)
    keep = (valid != 0).expand_as(values)
    weight = valid.to(values.dtype).expand_as(values)
    # sums in float32 (a float16 sum of weights overflows at 65504 pixels)
    summed = (torch.where(keep, values, torch.zeros_like(values)) * weight).sum(dtype=torch.float32)
    # no valid pixel: summed is 0 and so is the result (no host sync needed to test for it)
    return summed / weight.sum(dtype=torch.float32).clamp_min(torch.finfo(torch.float32).tiny)


def l2_loss(
    output: torch.Tensor, target: torch.Tensor, pair: LossContext = None, progress: float = 0.0
) -> torch.Tensor:
    """Mean squared error: its minimiser is the conditional mean of the targets."""
    return masked_mean((output - target) ** 2, pair)


def l1_loss(
    output: torch.Tensor, target: torch.Tensor, pair: LossContext = None, progress: float = 0.0
) -> torch.Tensor:
    """Mean absolute error: its minimiser is the conditional median (text overlay experiment)."""
    return masked_mean((output - target).abs(), pair)


def l0_gamma(progress: float) -> float:
    """The annealed L0 exponent: ``2 * (1 - progress)``, linear from 2 at the start to 0 at the end.

    ``progress`` is clamped to [0, 1].
    """
    t = min(max(float(progress), 0.0), 1.0)
    return 2.0 * (1.0 - t)


def l0_loss(
    output: torch.Tensor, target: torch.Tensor, pair: LossContext = None, progress: float = 0.0
) -> torch.Tensor:
    """Annealed "L0" loss ``(|f - y| + 1e-8)^gamma``, gamma from 2 to 0 over training.

    Its minimiser moves from the mean (gamma 2) through the median (gamma 1) towards the mode
    (gamma -> 0), which survives random-valued impulse noise. At ``progress == 1`` the loss is
    constant (gamma 0) and has no gradient.
    """
    gamma = l0_gamma(progress)
    return masked_mean(((output - target).abs() + L0_EPS) ** gamma, pair)


def hdr_loss(
    output: torch.Tensor, target: torch.Tensor, pair: LossContext = None, progress: float = 0.0
) -> torch.Tensor:
    """Relative L2 for HDR images: ``(f - y)^2 / (f + 0.01)^2`` with the denominator *detached*.

    Detaching keeps the minimiser at the mean of the targets (a non-detached denominator would
    push outputs up to shrink the relative error, a known defect of earlier reimplementations).
    """
    denom = (output.detach() + HDR_EPS) ** 2
    return masked_mean((output - target) ** 2 / denom, pair)


# --------------------------------------------------------------------------------------
# MRI: Noise2Noise loss in k-space
# --------------------------------------------------------------------------------------

#: Weightings of :func:`kspace_loss` on the target's sampled set (``p`` = keep probability).
KSPACE_WEIGHTINGS = ("inverse", "clipped", "flat", "normalized", "density")
#: ``clipped``: ``1 / max(p, KSPACE_P_FLOOR)`` (weights at most 10 instead of up to 1/p_min).
KSPACE_P_FLOOR = 0.1


def _image(x: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` real or ``(B, 2, H, W)`` real/imag -> complex64 image ``(B, H, W)``."""
    return to_complex(x.float())


def kspace_loss(
    output: torch.Tensor,
    target: torch.Tensor,
    pair: LossContext = None,
    progress: float = 0.0,
    *,
    weighting: str = "inverse",
) -> torch.Tensor:
    """Noise2Noise L2 in k-space, on the *target's* sampled set only (MRI).

    The target's acquisition ``A2`` (``pair.target_acq``, or given alone; put there by
    :meth:`MRIUndersampling.pair` for noisy targets and by the splits of the single-acquisition
    targets) holds the target's sampled set ``M2`` (over the kind's samples), its measurements
    ``y2 = A2 x`` and the keep probabilities ``p`` that weigh the loss; the residual
    :meth:`~mri_n2n.physics.Acquisition.residual` and the weights spread over the measurements by
    :meth:`~mri_n2n.physics.Acquisition.expand_samples` make it the same for every kind::

        loss = sum_{b,c,k} w(k) |A2 f - y2|^2 / (B C H W)

    (Cartesian data: every coil's spectrum ``F S_c f`` for multi-coil data; ``A2 f`` is zero off
    ``M2``, as is ``w``; ``B C H W`` counts the output image's values).

    With ``w = 1 / p`` (``weighting="inverse"``) ``E_M2[loss] = ||F f - F x||^2 / (B C H W)``,
    i.e. exactly the image-domain L2 against the clean image (Parseval, per-pixel mean
    convention): unbiased, with no additive noise term. The other weightings keep the minimiser
    (for every frequency, ``E[M2 w |F f - y2|^2] = w p |F f - F x|^2``) but weigh frequencies by
    ``w p`` instead of 1: ``clipped`` (``1 / max(p, 0.1)``), ``flat`` (``1 / mean(p)``), and
    ``normalized`` (``1 / p`` rescaled per sample so its mean over the sampled set is
    ``1 / mean(p)``; a slightly biased, self-normalised estimate).

    ``density`` (``d / p``, with ``d`` the kind's density compensation of every candidate
    measurement, :meth:`~mri_n2n.physics.Acquisition.density`) makes the expectation the
    image-domain L2 for kinds whose candidates do not tile k-space: off the grid ``1 / p``
    alone gives ``||A_full (f - x)||^2``, which weighs each frequency by how densely the
    whole trajectory samples it (radial: about ``1 / |k|``, so the edges of k-space, which
    carry the detail, barely count); ``d / p`` gives ``sum_k d(k) |A_full (f - x)|^2 ~
    ||f - x||^2`` on the trajectory's disc. On a Cartesian grid ``d`` is 1 and it is
    ``inverse``.

    Without a target acquisition (clean targets), the target's full spectrum is used with
    weight 1, which equals the image-domain L2.
    """
    if weighting not in KSPACE_WEIGHTINGS:
        raise ValueError(f"kspace weighting must be one of {KSPACE_WEIGHTINGS}, got {weighting!r}")
    b, c, h, w = output.shape
    denom = float(b * c * h * w)
    pair = _pair(pair)
    a2 = None if pair is None else pair.target_acq
    if a2 is None or a2.y is None:
        f = _image(output)
        full = Acquisition.fully_sampled(f.shape)  # the clean target's whole spectrum
        return (full.full(f) - full.full(_image(target))).abs().square().sum() / denom
    if a2.keep_prob is None:
        raise ValueError("kspace_loss: the target's acquisition has no keep probability to weigh the loss")
    a2 = a2.to(output.device)
    # model channels as the operator's image: (B, 1, H, W) one coil, (B, H, W) multi-coil
    f = a2.image_of(to_complex(output.float(), keepdim=True) if output.shape[1] == 1 else output.float())
    resid = a2.residual(f)  # A2 f - y2: zero off the target's sampled set
    # the sampled set and the keep probabilities over the samples, spread over the measurements
    # (Cartesian: (B, 1, H, W), shared by the coils)
    m2 = a2.expand_samples(a2.sampled)
    p = a2.keep_prob.to(dtype=torch.float32)
    p = a2.expand_samples(p.clamp_min(torch.finfo(torch.float32).tiny))
    if weighting in ("inverse", "density"):
        wt = 1.0 / p
    elif weighting == "clipped":
        wt = 1.0 / p.clamp_min(KSPACE_P_FLOOR)
    else:  # flat, normalized
        wt = torch.full_like(p, 1.0 / float(p.mean()))
    full = torch.broadcast_shapes(m2.shape, p.shape)
    m2 = m2.expand(full)
    zero = torch.zeros((), device=resid.device)
    wt = torch.where(m2, wt.expand(full), zero)
    if weighting == "normalized":
        inv = torch.where(m2, (1.0 / p).expand(full), zero)
        cnt = m2.flatten(1).sum(1).clamp_min(1).float()
        scale = cnt / inv.flatten(1).sum(1).clamp_min(torch.finfo(torch.float32).tiny)
        wt = inv * scale.reshape(-1, *([1] * (inv.ndim - 1))) / float(p.mean())
    d = a2.density() if weighting == "density" else None
    if d is not None:  # each candidate measurement's share of k-space
        wt = wt * d.to(device=wt.device, dtype=wt.dtype)
    return (wt * resid.abs().square()).sum() / denom


def adaptation_weighting(loss: str | None) -> str:
    """The :func:`kspace_loss` weighting that scan-specific adaptation uses for a model trained
    with ``loss``: ``"density"`` for ``kspace_density`` (the objective it was trained on off the
    grid), else ``"inverse"`` (the weighting the adaptation settings were tuned with)."""
    return "density" if loss == "kspace_density" else "inverse"


def _kspace_variant(weighting: str) -> LossFn:
    def fn(output, target, pair=None, progress=0.0):
        return kspace_loss(output, target, pair, progress, weighting=weighting)

    fn.__name__ = f"kspace_{weighting}_loss"
    fn.__doc__ = f":func:`kspace_loss` with ``weighting={weighting!r}``."
    return fn


def kspace_mix_loss(
    output: torch.Tensor, target: torch.Tensor, pair: LossContext = None, progress: float = 0.0
) -> torch.Tensor:
    """Half image-domain L2, half unbiased k-space L2 (both estimate the same clean-image L2)."""
    image = l2_loss(output, target, None, progress)
    return 0.5 * image + 0.5 * kspace_loss(output, target, pair, progress)


@dataclass(frozen=True)
class LossEntry:
    """A registered loss.

    Attributes:
        name: its ``--loss`` name.
        fn: ``fn(output, target, pair, progress) -> scalar``.
        kspace: it reads the target's acquisition (``pair.target_acq``): an MRI loss.
        split: it learns on the target's k-space samples only, so the single-acquisition targets
            (``--target ssdu`` / ``noisier2noise``, whose target is the held-out set) accept it.
    """

    name: str
    fn: LossFn
    kspace: bool = False
    split: bool = False


_REGISTRY: Registry[LossEntry] = Registry("loss")


def register_loss(name: str, *, kspace: bool = False, split: bool = False) -> Callable[[LossFn], LossFn]:
    """Decorator: register a loss ``fn(output, target, pair, progress)`` under ``name``; it becomes
    a ``--loss`` choice and :func:`get_loss` returns it. The function is returned unchanged.

    Args:
        name: the ``--loss`` name.
        kspace: the loss reads the target's acquisition (an MRI loss; the image task refuses it).
        split: it learns on the target's k-space samples only (allowed with ``--target ssdu`` and
            ``noisier2noise``); implies ``kspace``.

    Raises:
        ValueError: ``name`` is registered already by another function.
    """

    def add(fn: LossFn) -> LossFn:
        _REGISTRY.add(name, LossEntry(name, fn, kspace=kspace or split, split=split), fn)
        return fn

    return add


for _name, _fn in (("l2", l2_loss), ("l1", l1_loss), ("l0", l0_loss), ("hdr", hdr_loss)):
    register_loss(_name)(_fn)
for _name, _weighting in (
    ("kspace", "inverse"),
    ("kspace_clipped", "clipped"),
    ("kspace_flat", "flat"),
    ("kspace_normalized", "normalized"),
    ("kspace_density", "density"),
):
    register_loss(_name, split=True)(_kspace_variant(_weighting))
register_loss("kspace_mix", kspace=True)(kspace_mix_loss)  # its image-domain half needs the whole target


def loss_names(*, kspace: bool | None = None, split: bool | None = None) -> tuple[str, ...]:
    """The registered loss names (the ``--loss`` choices), in registration order; ``kspace`` /
    ``split`` (when not ``None``) keep only the losses whose flag has that value."""
    return tuple(
        n for n, e in _REGISTRY.items()
        if (kspace is None or e.kspace == kspace) and (split is None or e.split == split)
    )


def loss_entry(name: str) -> LossEntry:
    """The registration of loss ``name``; raises ``ValueError`` listing the known names."""
    return _REGISTRY.get(name)


class _LossTable(Mapping[str, LossFn]):
    """A read-only, always current mapping name -> loss function of the registered losses whose
    ``kspace`` flag is ``kspace`` (a loss registered after the import is in it)."""

    def __init__(self, *, kspace: bool) -> None:
        self._kspace = kspace

    def __getitem__(self, name: str) -> LossFn:
        if name not in loss_names(kspace=self._kspace):
            raise KeyError(name)
        return _REGISTRY.get(name).fn

    def __iter__(self) -> Iterator[str]:
        return iter(loss_names(kspace=self._kspace))

    def __len__(self) -> int:
        return len(loss_names(kspace=self._kspace))


LOSSES: Mapping[str, LossFn] = _LossTable(kspace=False)
"""The registered per-pixel losses, always current (the built-in ``l2``, ``l1``, ``l0``, ``hdr``
and any registered since; they honour the pair's ``valid`` mask)."""

MRI_LOSSES: Mapping[str, LossFn] = _LossTable(kspace=True)
"""The registered k-space losses of the MRI task, always current (they read the target's
acquisition, ``pair.target_acq``)."""


def get_loss(name: str) -> LossFn:
    """Look a registered loss up by name; raises ``ValueError`` listing the known names."""
    return loss_entry(name).fn
