"""Every registered acquisition kind is a linear operator with the interface's identities: its
adjoint is the adjoint (<A x, y> = <x, A^H y>), ``normal`` is ``A^H A``, ``prox`` solves its
problem (the objective's gradient vanishes), and a batch survives ``batch`` and ``collate``. The
Cartesian kind runs single- and multi-coil; the toy kind of ``test_toy_kind.py`` is registered
here too, so a kind defined in a test file is checked like the built-in ones."""

from __future__ import annotations

import importlib

import pytest
import torch

from mri_n2n.coils import normalize_maps
from mri_n2n.config import Config
from mri_n2n.physics import Acquisition, acquisition_kind, kind_names

try:  # the toy non-Cartesian kind registers itself on import (pytest imports it by this name too)
    importlib.import_module("test_toy_kind")
except ImportError:  # pragma: no cover - run from elsewhere
    pass

SIZE, BATCH = 16, 3
CASES = [(name, coils) for name in kind_names() for coils in (1, 4)]


def _inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.conj() * b).sum()


def _case(name: str, coils: int, seed: int = 0) -> tuple[Acquisition, tuple[int, ...], torch.Generator]:
    """A batch of ``BATCH`` acquisitions of the kind, drawn from its law, with measurements of
    random complex images; and the image shape."""
    g = torch.Generator().manual_seed(seed)
    kind = acquisition_kind(name)
    maps = None
    if coils > 1:
        raw = torch.randn(BATCH, coils, SIZE, SIZE, dtype=torch.complex64, generator=g)
        maps = normalize_maps(raw)  # sum_c |S_c|^2 = 1 everywhere: no pixel outside the support
    shape = (BATCH, SIZE, SIZE) if maps is not None else (BATCH, 1, SIZE, SIZE)
    full = kind.fully_sampled(shape, maps)
    if coils > 1 and not full.multicoil:
        pytest.skip(f"{name} acquisitions have no coil maps")
    law = kind.law(Config(), (SIZE, SIZE))
    assert tuple(law.shape) == tuple(full.sample_shape)
    x = torch.randn(shape, dtype=torch.complex64, generator=g)
    try:
        acq = full.observe(full.full(x), law.sample(BATCH, generator=g), law.keep_probability())
    except ImportError as e:  # a kind whose optional libraries are not installed (nufft)
        pytest.skip(str(e))
    assert acq.kind == name and acq.multicoil == (coils > 1) and acq.batch_size == BATCH
    return acq, shape, g


@pytest.mark.parametrize("name,coils", CASES)
def test_the_adjoint_is_the_adjoint(name, coils):
    acq, shape, g = _case(name, coils)
    x = torch.randn(shape, dtype=torch.complex64, generator=g)
    y = torch.randn(acq.y.shape, dtype=torch.complex64, generator=g)
    ax, aty = acq.forward(x), acq.adjoint(y)
    assert ax.shape == acq.y.shape and aty.shape == shape
    lhs, rhs = _inner(ax, y), _inner(x, aty)
    assert float((lhs - rhs).abs()) <= 1e-5 * float(ax.norm() * y.norm())
    # the forward operator measures only the sampled set
    torch.testing.assert_close(acq.sample(ax), ax)
    torch.testing.assert_close(acq.residual(x), ax - acq.y)


@pytest.mark.parametrize("name,coils", CASES)
def test_normal_is_the_adjoint_of_the_forward(name, coils):
    acq, shape, g = _case(name, coils, seed=1)
    x = torch.randn(shape, dtype=torch.complex64, generator=g)
    want = acq.adjoint(acq.forward(x))
    got = acq.normal(x)
    assert float((got - want).norm()) <= 1e-5 * float(want.norm())


@pytest.mark.parametrize("name,coils", CASES)
def test_prox_solves_its_problem(name, coils):
    """``z = prox(x0, lam)`` minimises ``||A z - y||^2 + lam ||z - x0||^2``: its gradient
    ``A^H (A z - y) + lam (z - x0)`` vanishes (conjugate gradients run long enough)."""
    acq, shape, g = _case(name, coils, seed=2)
    x0 = torch.randn(shape, dtype=torch.complex64, generator=g)
    for lam in (0.05, 1.0):
        z = acq.prox(x0, lam, 60)
        grad = acq.adjoint(acq.forward(z) - acq.y) + lam * (z - x0)
        scale = float(acq.adjoint(acq.y).norm() + lam * x0.norm())
        assert float(grad.norm()) <= 1e-4 * scale, (lam, float(grad.norm()) / scale)


@pytest.mark.parametrize("name,coils", CASES)
def test_a_batch_survives_batch_and_collate(name, coils):
    acq, _, _ = _case(name, coils, seed=3)
    back = type(acq).collate([acq.batch(slice(i, i + 1)) for i in range(BATCH)])
    assert back.kind == acq.kind and back.batch_size == BATCH
    for a, b in ((acq.sampled, back.sampled), (acq.y, back.y), (acq.keep_prob, back.keep_prob)):
        assert torch.equal(torch.broadcast_to(a, b.shape), b)
    if acq.multicoil:
        assert torch.equal(acq.maps, back.maps)
    # a restriction keeps the measurements on the kept samples only
    keep = torch.ones_like(acq.sampled)
    keep[0] = False
    part = acq.restrict(keep)
    assert not bool(part.sampled[0].any()) and not bool(part.y[0].abs().any())
    torch.testing.assert_close(part.y[1:], acq.y[1:])
