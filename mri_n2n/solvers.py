"""Small numerical solvers shared by the physics and the baselines.

- :func:`conjugate_gradient`: batched CG for a Hermitian positive semi-definite operator, in
  lock-step with one step size per sample (the CG of CG-SENSE / MoDL's data consistency,
  :meth:`mri_n2n.physics.CartesianAcquisition.cg_dc`, and of the TV-SENSE ``x``-step,
  :func:`mri_n2n.baselines.tv_sense`).
- :func:`bisect`: bisection for a monotone scalar function (the densities of
  :mod:`mri_n2n.sampling` and :mod:`mri_n2n.masks` solved for a mean, the split laws of
  :mod:`mri_n2n.splits` for a held-out share).

Only torch: this module sits at the bottom of the package with :mod:`mri_n2n.fft`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["conjugate_gradient", "bisect"]


def _bdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real part of the per-sample inner product ``<a, b>`` over all dims but the first, kept
    as ``(B, 1, ..., 1)`` for broadcasting."""
    if not (a.is_complex() and b.is_complex()):
        dims = tuple(range(1, a.ndim))
        return (a.conj() * b).real.sum(dim=dims, keepdim=True)
    n = a.shape[0]
    ar = torch.view_as_real(a.resolve_conj()).reshape(n, 1, -1)  # Re<a, b> = a_re b_re + a_im b_im
    br = torch.view_as_real(b.resolve_conj()).reshape(n, -1, 1)
    return torch.bmm(ar, br).reshape(n, *([1] * (a.ndim - 1)))  # one BLAS dot, no temporary


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``, else 0, with finite gradients in both branches."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def conjugate_gradient(
    normal: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    r: torch.Tensor,
    iters: int,
    *,
    tol: float = 0.0,
) -> torch.Tensor:
    """Batched conjugate gradients for ``normal(x) = b`` from ``x`` with residual ``r = b - normal(x)``.

    ``normal`` is a Hermitian positive semi-definite operator acting on each sample of the
    batch (the first dim) separately; every sample gets its own step sizes (the batch runs in
    lock-step), and a zero curvature or residual gives a zero step instead of a division by zero.
    The caller passes the initial residual rather than ``b``, as it often has it cheaper (a term
    of ``normal`` that cancels against ``b``). The iterations are differentiable.

    Args:
        normal: the operator, ``(B, ...) -> (B, ...)``.
        x: the start ``(B, ...)``.
        r: ``b - normal(x)``, same shape.
        iters: most iterations (``>= 0``).
        tol: if ``> 0``, stop once every sample's residual norm is below ``tol`` times its
            initial one (one device sync per iteration).

    Returns:
        The iterate after ``iters`` iterations (or the first that meets ``tol``).
    """
    p = r
    rs = _bdot(r, r)
    rs0 = rs
    for _ in range(iters):
        ap = normal(p)
        alpha = _safe_div(rs, _bdot(p, ap))
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = _bdot(r, r)
        if tol > 0 and bool((rs_new <= tol**2 * rs0).all()):
            break
        p = r + _safe_div(rs_new, rs) * p
        rs = rs_new
    return x


def bisect(
    fn: Callable[[float], float],
    target: float,
    lo: float,
    hi: float,
    *,
    increasing: bool = False,
    iters: int = 100,
) -> float:
    """``x`` in ``[lo, hi]`` with ``fn(x) ~= target`` for a monotone ``fn``, by ``iters`` halvings.

    ``fn`` is decreasing (``fn(lo) >= target >= fn(hi)``) or, with ``increasing``, increasing;
    the bracket moves to the upper half while ``fn(mid)`` is strictly on ``fn(lo)``'s side of
    ``target``. Returns the midpoint of the last bracket.
    """
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        v = fn(mid)
        if (v < target) if increasing else (v > target):
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
