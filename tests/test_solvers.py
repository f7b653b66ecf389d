"""The shared solvers: batched CG with per-sample step sizes, and bisection."""

import math

import torch

from mri_n2n.solvers import bisect, conjugate_gradient


def _spd(b: int, n: int, dtype=torch.complex128) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(b, n, n, dtype=dtype, generator=g)
    return a @ a.mH + 0.5 * torch.eye(n, dtype=dtype)


def test_cg_solves_each_sample_of_a_batch_with_its_own_matrix():
    mats = _spd(3, 6)
    mats[1] *= 100.0  # another scale: one step size for the batch would not converge
    b = torch.randn(3, 6, dtype=torch.complex128, generator=torch.Generator().manual_seed(1))

    def normal(v):
        return (mats @ v[..., None])[..., 0]

    x0 = torch.zeros_like(b)
    x = conjugate_gradient(normal, x0, b - normal(x0), iters=6)  # n iterations: exact
    assert torch.allclose(x, torch.linalg.solve(mats, b), atol=1e-8)


def test_cg_tol_stops_early_and_a_solved_sample_stays_put():
    mats = _spd(2, 8)
    truth = torch.randn(2, 8, dtype=torch.complex128, generator=torch.Generator().manual_seed(2))
    calls = []

    def normal(v):
        calls.append(1)
        return (mats @ v[..., None])[..., 0]

    b = normal(truth)
    start = truth.clone()
    start[1] = 0  # sample 0 starts at its solution: zero residual, zero steps, no NaN
    calls.clear()
    x = conjugate_gradient(normal, start, b - normal(start), iters=50, tol=1e-6)
    assert len(calls) - 1 < 50 and torch.isfinite(x).all()
    assert torch.equal(x[0], truth[0])
    assert torch.allclose(x[1], truth[1], atol=1e-4)


def test_bisect_finds_the_root_of_monotone_functions():
    assert math.isclose(bisect(lambda t: math.exp(-t), 0.1, 0.0, 10.0), math.log(10.0), rel_tol=1e-12)
    assert math.isclose(bisect(lambda t: t**3, 8.0, 0.0, 5.0, increasing=True), 2.0, rel_tol=1e-12)
    assert bisect(lambda t: t, 0.3, 0.0, 1.0, increasing=True, iters=2) == 0.375  # [0.25, 0.5] after two
