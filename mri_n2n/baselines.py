"""Compressed-sensing baseline: total-variation regularised reconstruction (CS-TV).

The classic comparison for learned MRI reconstruction (Lustig et al. 2007). The solver takes
the acquisition as its argument: :func:`cs_tv` reconstructs the measurements of any
:class:`~mri_n2n.physics.Acquisition` ``A = M F S`` (single coil: ``S = 1``; multi-coil:
TV-SENSE), :func:`cs_tv_objective` is its objective; :func:`tv_reconstruct` /
:func:`tv_objective` (k-space and mask) and :func:`tv_sense` / :func:`tv_sense_objective`
(coil k-space, maps and mask) are thin wrappers that build the operator. The zero-filled and
CG-SENSE baselines are the operator's own :meth:`~mri_n2n.physics.Acquisition.zero_filled` and
:meth:`~mri_n2n.physics.Acquisition.sense`. For measured single-coil k-space
``y = M F x_true`` (``F`` the centred orthonormal FFT of :mod:`mri_n2n.fft`, ``M`` the 0/1
sampling mask) the problem is::

    min_x  0.5 ||M F x - y||^2 + lam * TV(x)          (x real for real=True)

with the isotropic total variation ``TV(x) = sum_ij sqrt(|dx_ij|^2 + |dy_ij|^2)`` of forward
differences with **circular** boundary conditions (the last row/column differs with the
first), then applies the exact data-consistency projection
(:meth:`mri_n2n.physics.Acquisition.project`), as the network pipeline does, so the
measured frequencies are reproduced exactly. Circular boundaries suit MRI: the FFT model is
periodic anyway and the images have an empty background at the border. They also make the
finite-difference Laplacian diagonal in Fourier space, which is what makes the solver fast.

**Scale of lam.** ``lam`` is relative to images normalised to a maximum of 1 (the paper's
normalisation: each volume divided by its maximum). The data term scales with the square of
the intensity and TV linearly, so for data on another scale ``s`` use ``lam * s``.

**Solver.** ADMM (split Bregman, Goldstein & Osher 2009) on the splitting ``z = grad x``,
with over-relaxation 1.6 and penalty ``rho = 30 * lam``. Because ``F`` is unitary, ``M`` a
projection and the circular Laplacian ``grad^T grad`` diagonal in Fourier space, the
``x``-step ``(A^T A + rho grad^T grad) x = A^T y + rho grad^T (z - w)`` is solved *exactly* by
one FFT pair (a division by ``M + rho |L(k)|``, ``|L(k)| = 4 sin^2(pi k_y / H) + 4 sin^2(pi k_x
/ W)``); the ``z``-step is the closed-form isotropic shrinkage. One iteration costs two FFTs
plus a few elementwise passes, like one Chambolle-Pock (PDHG) iteration, but ADMM uses the
exact inverse of the whole quadratic part where PDHG only takes a gradient-size step on
``grad`` (``tau sigma ||grad||^2 <= 1`` with ``||grad||^2 <= 8``) and FISTA needs an inner
iterative TV prox. Measured on 4 MNI152 slices at 128x128, 10 % exp-decay masks, relative
objective gap after 100 iterations (lam = 1e-3 / 1e-2): ADMM 3e-4 / 4e-4; PDHG with the
best step ratio (``tau = 30 / sqrt(8)``, ``sigma = 1 / (30 sqrt(8))``) 5e-2 / 2e-1; FISTA
(step 1 = ``1 / ||A||^2``, 10 inner FGP iterations with step 1/8, warm-started) 2e-2 at
lam = 1e-3 (8 slices) for about 3x the cost per iteration. PDHG is kept as
``method="pdhg"`` (dual step ``sigma = rho``, primal step ``tau = 1 / (8 rho)``) for reference.
For ``real=True`` the iteration runs on real images with real FFTs (half the work).

Implementation: the iterations run on ``ifftshift(x)``, whose plain (unshifted) FFT is
``ifftshift(fft2c(x))``; circular TV is shift-invariant, so the problem is unchanged and
``torch.fft.rfft2`` / ``fft2`` apply directly (this diagonalisation of the single-coil
``x``-step is the one place the baselines transform by themselves; everything else is the
operator's). Batched, pure torch, on the device of the inputs, in float32 (float64 when ``y``
is complex128). For ``real=True`` the data term is restricted to real images exactly: its
normal operator is ``F^-1 M_s F`` with the Hermitian-symmetrised mask
``M_s = (M(k) + M(-k)) / 2`` (equal to ``M`` for the Hermitian masks of
:class:`~mri_n2n.corruptions.MRIUndersampling`).

**Tuned weight.** :data:`DEFAULT_TV_LAM` was chosen by :func:`tune_tv_lambda` (mean PSNR,
peak 1.0, output clipped to [0, 1]) on the MNI152 *training* slices at 128x128 and 256x256 with
the paper's 10 % exp-decay density, Hermitian masks seeded by slice identity, 100 iterations
(``python data_prep/tune_cs_tv.py``). With noise-free simulated undersampling (the paper's
setting) the best weight is tiny: the solution approaches ``min TV(x) s.t. M F x = y``. For
*measured* (noisy) k-space, re-tune with :func:`tune_tv_lambda`; a larger weight then also
denoises.

Tuning and validation tables, and the solver's speed: ``docs/results.md``, "The CS-TV weight".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch

from .corruptions import MRIUndersampling
from .metrics import psnr
from .physics import Acquisition, CartesianAcquisition, SpectralSampling
from .sampling import exp_decay_density, symmetric_density
from .solvers import conjugate_gradient

__all__ = [
    "DEFAULT_TV_LAM",
    "DEFAULT_LAM_GRID",
    "TV_METHODS",
    "total_variation",
    "cs_tv",
    "cs_tv_objective",
    "tv_objective",
    "tv_reconstruct",
    "tune_tv_lambda",
    "tv_sense",
    "tv_sense_objective",
    "tikhonov",
    "tune_sense_lambda",
    "DEFAULT_SENSE_TV_LAM",
    "SENSE_METHODS",
]

#: Tuned TV weight for images normalised to max 1 (see the module docstring).
DEFAULT_TV_LAM = 3e-6
#: The grid searched by :func:`tune_tv_lambda` by default.
DEFAULT_LAM_GRID = (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
#: TV weight of :func:`tv_sense` when none is tuned (images normalised to peak 1); chosen by
#: :func:`tune_sense_lambda` on the training slices of the multi-coil study
#: (``python -m mri_n2n.bench quality --only multicoil``, ``docs/results.md``).
DEFAULT_SENSE_TV_LAM = 1e-3
#: Multi-coil baselines of :func:`tune_sense_lambda`: Tikhonov CG-SENSE and TV-SENSE.
SENSE_METHODS = ("tikhonov", "tv")
#: Solvers of :func:`tv_reconstruct`.
TV_METHODS = ("admm", "pdhg")

#: ADMM penalty relative to lam (rho = _RHO_PER_LAM * lam), and over-relaxation factor.
_RHO_PER_LAM = 30.0
_RELAX = 1.6
#: With tol, the stopping test runs every this many iterations (each test syncs with the device).
_TOL_EVERY = 10

_DIMS = (-2, -1)


# --------------------------------------------------------------------------------------
# Total variation (circular forward differences)
# --------------------------------------------------------------------------------------


def _grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Circular forward differences along W (dx) and H (dy)."""
    return torch.roll(x, -1, -1) - x, torch.roll(x, -1, -2) - x


def _grad_adj(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`_grad` (minus the divergence)."""
    return (torch.roll(px, 1, -1) - px) + (torch.roll(py, 1, -2) - py)


def _magnitude(px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    if px.is_complex():
        return torch.sqrt(px.real.square() + px.imag.square() + py.real.square() + py.imag.square())
    return torch.sqrt(px.square() + py.square())


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Isotropic TV with circular forward differences, summed over the last two dims.

    Args:
        x: images ``(..., H, W)``, real or complex (the modulus of complex differences is used).

    Returns:
        ``TV(x)`` of shape ``x.shape[:-2]``.
    """
    return _magnitude(*_grad(x)).sum(dim=_DIMS)


def cs_tv_objective(acq: Acquisition, x: torch.Tensor, lam: float) -> torch.Tensor:
    """The CS-TV objective ``0.5 ||A x - y||^2 + lam TV(x)`` per image, ``y`` the acquisition's
    measurements (entries off its mask ignored).

    Args:
        acq: the acquisition with its measurements (single coil: images and k-space share a
            layout; multi-coil: images ``(B, H, W)``, k-space ``(B, C, H, W)``).
        x: images, real or complex.
        lam: TV weight.

    Returns:
        Objective values of shape ``x.shape[:-2]``.
    """
    r = acq.forward(x) - acq.sample(_measurements(acq))
    dims = (-3, -2, -1) if acq.multicoil else _DIMS
    return 0.5 * r.abs().square().sum(dim=dims) + lam * total_variation(x)


def tv_objective(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, lam: float) -> torch.Tensor:
    """The CS-TV objective ``0.5 ||M F x - y||^2 + lam TV(x)`` per image (:func:`cs_tv_objective`
    of the single-coil acquisition of ``mask`` and ``y``).

    Args:
        x: images ``(B, 1, H, W)`` or ``(B, H, W)``, real or complex.
        y: measured k-space, same layout as ``x``.
        mask: sampling mask ``(H, W)``, ``(B, H, W)`` or the layout of ``x``.
        lam: TV weight.

    Returns:
        Objective values of shape ``x.shape[:-2]``.
    """
    return cs_tv_objective(SpectralSampling(_mask_like(mask, x), y), x, lam)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _mask_like(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A bool mask with as many dims as ``like`` (channel dim inserted for (B, H, W) masks)."""
    m = mask.to(device=like.device).bool()
    if m.ndim == 2:
        return m.reshape((1,) * (like.ndim - 2) + tuple(m.shape))
    if m.ndim == like.ndim - 1:
        return m.unsqueeze(-3)
    if m.ndim != like.ndim:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit data of shape {tuple(like.shape)}")
    return m


def _measurements(acq: Acquisition) -> torch.Tensor:
    if acq.y is None:
        raise ValueError("the baselines reconstruct an acquisition's measurements: it holds none")
    return acq.y


def _fft_diagonal(acq: Acquisition) -> bool:
    """Whether CS-TV's ``x``-step is diagonal in Fourier space: single-coil Cartesian data
    (``A^H A = F^-1 M F``); coils and other kinds solve it by conjugate gradients."""
    return isinstance(acq, CartesianAcquisition) and not acq.multicoil


def tikhonov(acq: Acquisition, lam: float | torch.Tensor = 1e-3, iters: int = 30) -> torch.Tensor:
    """Tikhonov-regularised least squares ``argmin_x ||A x - y||^2 + lam ||x||^2`` by ``iters``
    conjugate-gradient iterations, for any acquisition kind: CG-SENSE for Cartesian coil data
    (:meth:`~mri_n2n.physics.CartesianAcquisition.sense`, from ``x = 0``); a kind with an exact
    replacement, the proximal step from a zero image (:meth:`~mri_n2n.physics.Acquisition.prox`);
    other kinds (a trajectory) start from their compensated adjoint
    (:meth:`~mri_n2n.physics.Acquisition.zero_filled`: density compensated), the same solution
    in fewer iterations."""
    y = _measurements(acq)
    if isinstance(acq, CartesianAcquisition) and acq.multicoil:
        return acq.sense(y, lam, iters)
    if acq.replaces:
        return acq.prox(torch.zeros_like(acq.adjoint()), lam, iters)
    x0 = acq.zero_filled()
    lam_t = torch.as_tensor(lam, device=x0.device, dtype=x0.real.dtype)
    if lam_t.ndim:
        lam_t = lam_t.reshape(-1, *([1] * (x0.ndim - 1)))
    r = acq.adjoint(y) - acq.normal(x0) - lam_t * x0  # b - (A^H A + lam) x0

    def normal(v: torch.Tensor) -> torch.Tensor:
        return acq.normal(v) + lam_t * v

    return conjugate_gradient(normal, x0, r, iters)


def _shrink(px: torch.Tensor, py: torch.Tensor, thresh: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Isotropic soft thresholding of the vector field ``(px, py)``."""
    n = _magnitude(px, py)
    s = (1.0 - thresh / n.clamp_min(1e-30)).clamp_min(0.0)
    return px * s, py * s


def _project_ball(px: torch.Tensor, py: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pointwise projection of ``(px, py)`` onto the ball of the given radius."""
    s = (_magnitude(px, py) / radius).clamp_min(1.0)
    return px / s, py / s


def _laplacian_symbol(
    h: int, w: int, *, half: bool, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Eigenvalues of ``grad^T grad`` on the unshifted FFT grid, ``(H, W)`` or ``(H, W // 2 + 1)``."""
    ky = torch.arange(h, dtype=torch.float64, device=device)
    kx = torch.arange(w // 2 + 1 if half else w, dtype=torch.float64, device=device)
    lap = 4 * torch.sin(math.pi * ky / h)[:, None] ** 2 + 4 * torch.sin(math.pi * kx / w)[None, :] ** 2
    return lap.to(dtype)


# --------------------------------------------------------------------------------------
# Reconstruction
# --------------------------------------------------------------------------------------


def cs_tv(
    acq: Acquisition,
    *,
    lam: float = DEFAULT_TV_LAM,
    iters: int = 100,
    real: bool = False,
    x0: torch.Tensor | None = None,
    tol: float | None = None,
    rho: float | None = None,
    method: str = "admm",
    inner: int = 4,
) -> torch.Tensor:
    """CS-TV reconstruction of an acquisition's measurements,
    ``argmin_x 0.5 ||A x - y||^2 + lam TV(x)``, by ADMM on ``z = grad x`` (:func:`_admm_tv`).

    **Single coil** (``acq`` without maps): the ``x``-step is solved exactly by one FFT pair
    (module docstring), then the data-consistency projection
    (:meth:`~mri_n2n.physics.Acquisition.project`) reproduces the measured frequencies exactly.
    Images and k-space share the layout of the measurements (e.g. ``(B, 1, H, W)``).

    **Multi-coil** (TV-SENSE, complex ``x`` ``(B, H, W)``, coil k-space ``(B, C, H, W)``): the
    coil maps make the ``x``-step ``(A^H A + rho grad^H grad) x = A^H y + rho grad^H (z - w)`` a
    non-diagonal system, solved approximately by ``inner`` conjugate-gradient iterations
    (:func:`~mri_n2n.solvers.conjugate_gradient` on :meth:`~mri_n2n.physics.Acquisition.normal`)
    warm-started at the current ``x`` (inexact ADMM; each outer iteration costs ``2 (inner + 1)``
    FFTs per coil), without over-relaxation. The start is CG-SENSE (:func:`tikhonov`,
    ``lam = 1e-3``, 30 iterations) unless ``x0`` is given. No projection follows: noisy
    multi-coil measurements overdetermine the image, and forcing them exactly would undo the
    regularisation.

    **Other kinds** (no FFT-diagonal normal operator, e.g. a trajectory): the same ADMM with the
    ``x``-step by ``inner`` conjugate-gradient iterations on the kind's
    :meth:`~mri_n2n.physics.Acquisition.normal` (its real part for ``real`` images), started
    from :func:`tikhonov`; a kind with an exact replacement (``replaces``) ends with its data
    consistency, others are returned as solved.

    Args:
        acq: the acquisition with its measurements ``y`` (entries off its mask ignored).
        lam: TV weight (``>= 0``; images normalised to max 1, module docstring). ``lam = 0``
            returns the start (single coil: projected).
        iters: ADMM (or PDHG) iterations.
        real: single coil: constrain the image to be real (magnitude images with Hermitian
            masks, as in the paper); multi-coil images are complex.
        x0: starting image (single coil: default the zero-filled image ``A^H y`` without density
            compensation; multi-coil: CG-SENSE).
        tol: stop early once the relative change of every image of the batch is below ``tol``
            (tested every 10 iterations); ``None`` runs all ``iters`` iterations.
        rho: ADMM penalty / PDHG dual step; default ``30 * lam``.
        method: single coil: ``"admm"`` (default, fastest) or ``"pdhg"`` (Chambolle-Pock, for
            reference); multi-coil: ``"admm"``.
        inner: multi-coil: CG iterations of each ``x``-step.

    Returns:
        Single coil: the reconstruction in the layout of the measurements, real float
        (``real=True``) or complex; multi-coil: complex images ``(B, H, W)``.
    """
    if method not in TV_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(TV_METHODS)}")
    if not lam >= 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    y = _measurements(acq)
    if not y.is_complex():
        raise TypeError("the measurements must be complex k-space")
    if not _fft_diagonal(acq):
        if inner < 1 or (real and acq.multicoil) or method != "admm":
            raise ValueError(
                f"{'multi-coil' if acq.multicoil else acq.kind} CS-TV: ADMM with inner >= 1 "
                f"(complex images for coil data), got real={real}, method={method!r}, inner={inner}"
            )
        x = _tv_cg(acq, lam=lam, iters=iters, inner=inner, rho=rho, x0=x0, tol=tol, real=real)
        return acq.data_consistency(x) if acq.replaces and not acq.multicoil else x
    cdtype = torch.complex128 if y.dtype == torch.complex128 else torch.complex64
    rdtype = torch.float64 if cdtype == torch.complex128 else torch.float32
    acq = acq.with_data(y.to(cdtype))
    y = acq.y
    if x0 is None:
        x = acq.adjoint()
    else:
        x = x0.to(device=y.device)
        x = torch.broadcast_to(x.unsqueeze(1) if x.ndim == y.ndim - 1 else x, y.shape)
    x = x.real.to(rdtype) if real else x.to(cdtype)

    if lam > 0 and iters > 0:
        rho = _RHO_PER_LAM * lam if rho is None else float(rho)
        if not rho > 0:
            raise ValueError(f"rho must be > 0, got {rho}")
        x = _solve(x, acq, lam=lam, rho=rho, iters=iters, real=real, tol=tol, method=method)
    # the centred projection (acq.project(x) takes the uncentred path: equal up to round-off)
    return acq.project(x, y)


def tv_reconstruct(
    y: torch.Tensor,
    mask: torch.Tensor,
    *,
    lam: float = DEFAULT_TV_LAM,
    iters: int = 100,
    real: bool = True,
    x0: torch.Tensor | None = None,
    tol: float | None = None,
    rho: float | None = None,
    method: str = "admm",
) -> torch.Tensor:
    """CS-TV reconstruction ``argmin_x 0.5 ||M F x - y||^2 + lam TV(x)``, then data consistency:
    :func:`cs_tv` of the single-coil acquisition of ``mask`` and ``y``.

    See the module docstring for the model (isotropic TV, circular boundaries), the scale of
    ``lam`` (images normalised to max 1) and the choice of solver.

    Args:
        y: measured centred k-space, complex, ``(B, 1, H, W)`` or ``(B, H, W)`` (values
            outside the mask are ignored).
        mask: bool sampling mask ``(B, H, W)``, ``(H, W)`` (shared) or ``(B, 1, H, W)``.
        lam: TV weight (>= 0). ``lam = 0`` has every data-consistent image as a minimiser;
            the projection of the starting image is returned.
        iters: solver iterations (ADMM: two FFTs each).
        real: constrain the image to be real (magnitude images with Hermitian masks, as in
            the paper); ``False`` reconstructs a complex image.
        x0: starting image, layout of ``y``; default the zero-filled image ``F^-1 M y``
            (without density compensation).
        tol: stop early once the relative change ``||x_k - x_{k-1}|| / ||x_k||`` of every
            image of the batch is below ``tol`` (tested every 10 iterations). ``None`` runs
            all ``iters`` iterations (then batched and per-image results are identical).
        rho: ADMM penalty / PDHG dual step; default ``30 * lam``.
        method: ``"admm"`` (default, fastest) or ``"pdhg"`` (Chambolle-Pock, for reference).

    Returns:
        The reconstruction in the layout of ``y``: real float (``real=True``) or complex.
    """
    if not y.is_complex():
        raise TypeError("y must be complex k-space")
    squeeze = y.ndim == 3
    if squeeze:
        y = y.unsqueeze(1)
    if y.ndim != 4 or y.shape[1] != 1:
        raise ValueError(f"y must be (B, 1, H, W) or (B, H, W), got shape {tuple(y.shape)}")
    if x0 is not None and x0.ndim == 3:
        x0 = x0.unsqueeze(1)
    acq = SpectralSampling(_mask_like(mask, y), y)
    out = cs_tv(acq, lam=lam, iters=iters, real=real, x0=x0, tol=tol, rho=rho, method=method)
    return out.squeeze(1) if squeeze else out


def _solve(
    x: torch.Tensor,
    acq: Acquisition,
    *,
    lam: float,
    rho: float,
    iters: int,
    real: bool,
    tol: float | None,
    method: str,
) -> torch.Tensor:
    """Single-coil CS-TV: the iterations on ``u = ifftshift(x)`` with plain FFTs, which
    diagonalise the ``x``-step (module docstring); returns the image ``x``."""
    h, w = x.shape[-2:]
    rdtype = x.real.dtype
    m = _mask_like(acq.mask, acq.y)
    u = torch.fft.ifftshift(x, dim=_DIMS)
    if real:
        # Real images: normal operator F^-1 M_s F with the Hermitian-symmetrised mask, rhs Re(A^T y).
        ms = torch.fft.ifftshift(symmetric_density(m.to(rdtype)), dim=_DIMS)
        ms = ms[..., : w // 2 + 1]
        rhs = torch.fft.rfft2(torch.fft.ifftshift(acq.adjoint(), dim=_DIMS).real, norm="ortho")

        def fwd(v: torch.Tensor) -> torch.Tensor:
            return torch.fft.rfft2(v, norm="ortho")

        def inv(k: torch.Tensor) -> torch.Tensor:
            return torch.fft.irfft2(k, s=(h, w), norm="ortho")

    else:
        ms = torch.fft.ifftshift(m, dim=_DIMS).to(rdtype)
        rhs = torch.fft.ifftshift(acq.y, dim=_DIMS)  # unshifted: fft2(u) == ifftshift(fft2c(x))

        def fwd(v: torch.Tensor) -> torch.Tensor:
            return torch.fft.fft2(v, norm="ortho")

        def inv(k: torch.Tensor) -> torch.Tensor:
            return torch.fft.ifft2(k, norm="ortho")

    lap = _laplacian_symbol(h, w, half=real, dtype=rdtype, device=x.device)
    if method == "admm":
        # Exact x-step: (M_s + rho L) u = A^T y + rho grad^T (z - w). An unsampled DC bin
        # (M_s = L = 0 there) gets 0 / tiny = 0: the mean stays zero.
        inv_den = 1.0 / (ms + rho * lap).clamp_min(torch.finfo(rdtype).tiny)

        def x_step(_: torch.Tensor, vx: torch.Tensor, vy: torch.Tensor) -> torch.Tensor:
            return inv((rhs + rho * fwd(_grad_adj(vx, vy))) * inv_den)

        u = _admm_tv(u, x_step, lam=lam, rho=rho, iters=iters, relax=_RELAX, tol=tol)
    else:
        # Chambolle-Pock: dual step sigma = rho, primal tau = 1 / (8 rho), tau sigma ||grad||^2 <= 1.
        sigma = rho
        tau = 1.0 / (8.0 * rho)
        inv_den = 1.0 / (1.0 + tau * ms)
        px, py = torch.zeros_like(u), torch.zeros_like(u)
        ubar = u
        for it in range(iters):
            prev = u
            gx, gy = _grad(ubar)
            px, py = _project_ball(px + sigma * gx, py + sigma * gy, lam)
            v = u - tau * _grad_adj(px, py)
            u = inv((fwd(v) + tau * rhs) * inv_den)
            ubar = 2 * u - prev
            if tol is not None and (it + 1) % _TOL_EVERY == 0 and _converged(u, prev, tol):
                break
    return torch.fft.fftshift(u, dim=_DIMS)


def _admm_tv(
    x: torch.Tensor,
    x_step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    lam: float,
    rho: float,
    iters: int,
    relax: float = 1.0,
    tol: float | None = None,
) -> torch.Tensor:
    """ADMM for ``min_x f(x) + lam TV(x)`` on the splitting ``z = grad x`` (scaled dual ``w``).

    ``x_step(x, vx, vy)`` returns the ``x``-update ``argmin_x f(x) + rho / 2 ||grad x - v||^2``
    for ``v = z - w`` (exact or approximate, started from the current ``x``): the only part that
    depends on the data term. Then over-relaxation by ``relax`` (1: none), the isotropic
    shrinkage of ``grad x + w`` by ``lam / rho`` and the dual update; with ``tol``, a stop once
    every image's relative change is below it (tested every :data:`_TOL_EVERY` iterations).
    """
    zx, zy = _grad(x)
    wx, wy = torch.zeros_like(zx), torch.zeros_like(zy)
    thresh = lam / rho
    for it in range(iters):
        prev = x
        x = x_step(x, zx - wx, zy - wy)
        gx, gy = _grad(x)
        if relax != 1.0:
            gx = relax * gx + (1.0 - relax) * zx
            gy = relax * gy + (1.0 - relax) * zy
        zx, zy = _shrink(gx + wx, gy + wy, thresh)
        wx = wx + gx - zx
        wy = wy + gy - zy
        if tol is not None and (it + 1) % _TOL_EVERY == 0 and _converged(x, prev, tol):
            break
    return x


def _converged(u: torch.Tensor, prev: torch.Tensor, tol: float) -> bool:
    num = (u - prev).abs().square().sum(dim=_DIMS)
    den = u.abs().square().sum(dim=_DIMS).clamp_min(1e-30)
    return bool((num / den).sqrt().max() < tol)


# --------------------------------------------------------------------------------------
# Tuning
# --------------------------------------------------------------------------------------


def tune_tv_lambda(
    clean: torch.Tensor,
    corruption: MRIUndersampling | None = None,
    lams: Sequence[float] = DEFAULT_LAM_GRID,
    *,
    seeds: torch.Tensor | None = None,
    iters: int = 100,
    batch_size: int = 16,
    rho_per_lam: float = _RHO_PER_LAM,
) -> tuple[float, list[dict[str, float]]]:
    """Pick the TV weight with the best mean PSNR on (training) slices.

    Each slice is undersampled by ``corruption.validation_pair`` with its seed (fixed masks),
    reconstructed by :func:`tv_reconstruct` for every ``lam``, clipped to [0, 1] and scored by
    PSNR with peak 1.0 against the clean slice (the paper's convention).

    Args:
        clean: clean slices ``(N, 1, H, W)`` normalised to max 1 (or complex ``(N, 2, H, W)``), on
            the device to compute on. With a complex corruption the reconstruction is complex
            and its magnitude is scored against the target's.
        corruption: the MRI corruption; default the paper's 10 % exp-decay density
            (``exp_decay_density((H, W), fraction=0.1)``) with Hermitian masks.
        lams: candidate weights.
        seeds: ``(N,)`` integer mask seeds (e.g. the slice identities); default ``0..N-1``.
        iters: solver iterations, as used afterwards (the best ``lam`` depends on it).
        batch_size: slices per solver call.
        rho_per_lam: ADMM penalty as a multiple of ``lam``.

    Returns:
        ``(best_lam, table)``; ``table`` has one row per ``lam``: ``lam``, ``psnr`` (mean, the
        selection criterion), ``psnr_std``, ``psnr_median``, ``seconds_per_slice``.
    """
    if clean.ndim != 4 or clean.shape[1] not in (1, 2):
        raise ValueError(f"clean must be (N, 1, H, W) or (N, 2, H, W), got shape {tuple(clean.shape)}")
    if len(lams) == 0:
        raise ValueError("lams is empty")
    n = clean.shape[0]
    if corruption is None:
        corruption = MRIUndersampling(exp_decay_density(tuple(clean.shape[-2:]), fraction=0.1))
    seeds = torch.arange(n) if seeds is None else torch.as_tensor(seeds)
    complex_data = bool(getattr(corruption, "complex_data", False))
    pairs = [
        corruption.validation_pair(clean[i : i + batch_size], seeds[i : i + batch_size])
        for i in range(0, n, batch_size)
    ]
    table: list[dict[str, float]] = []
    for lam in lams:
        values = []
        start = time.perf_counter()
        for p in pairs:
            rec = cs_tv(
                p.acq,
                lam=float(lam),
                iters=iters,
                rho=rho_per_lam * lam if lam > 0 else None,
                real=not complex_data,
            )
            if complex_data:  # magnitudes: a complex reconstruction against the complex target
                rec, target = rec.abs(), p.target.square().sum(1, keepdim=True).sqrt()
            else:
                target = p.target
            values.append(psnr(rec.clamp(0, 1), target, data_range=1.0, reduction="none"))
        if clean.device.type == "cuda":
            torch.cuda.synchronize(clean.device)
        seconds = time.perf_counter() - start
        v = torch.cat(values).double()
        table.append(
            {
                "lam": float(lam),
                "psnr": v.mean().item(),
                "psnr_std": v.std().item() if v.numel() > 1 else 0.0,
                "psnr_median": v.median().item(),
                "seconds_per_slice": seconds / n,
            }
        )
    best = max(table, key=lambda row: row["psnr"])
    return best["lam"], table


# --------------------------------------------------------------------------------------
# Multi-coil: TV-regularised SENSE
# --------------------------------------------------------------------------------------


def tv_sense_objective(
    x: torch.Tensor, y: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float
) -> torch.Tensor:
    """``0.5 ||A x - y||^2 + lam TV(x)`` per image, ``A = M F S``: :func:`cs_tv_objective` of
    ``Acquisition(mask, maps, y)``.

    Args:
        x: complex images ``(B, H, W)``.
        y: measured coil k-space ``(B, C, H, W)``.
        maps: sensitivities ``(B, C, H, W)`` or ``(C, H, W)``.
        mask: sampled set ``(B, H, W)`` or ``(H, W)``.
        lam: TV weight.
    """
    return cs_tv_objective(Acquisition(mask, maps, y), x, lam)


def _tv_cg(
    acq: Acquisition,
    *,
    lam: float,
    iters: int,
    inner: int,
    rho: float | None,
    x0: torch.Tensor | None,
    tol: float | None,
    real: bool = False,
) -> torch.Tensor:
    """CS-TV with a CG ``x``-step (:func:`cs_tv` of coil data, TV-SENSE, or of a kind without an
    FFT-diagonal normal operator): ADMM on ``z = grad x``; ``real`` keeps a real image (the real
    part of the normal operator and of ``A^H y``)."""
    y = _measurements(acq)
    if acq.multicoil and y.ndim != 4:
        raise ValueError(f"multi-coil CS-TV: measurements must be (B, C, H, W), got {tuple(y.shape)}")
    acq = acq.with_data(y)
    x = tikhonov(acq, 1e-3, 30) if x0 is None else x0.to(acq.y.dtype)
    if real:
        x = x.real
    if lam == 0 or iters == 0:
        return x
    rho = _RHO_PER_LAM * lam if rho is None else float(rho)
    aty = acq.adjoint().real if real else acq.adjoint()

    def normal(v: torch.Tensor) -> torch.Tensor:
        nv = acq.normal(v).real if real else acq.normal(v)
        return nv + rho * _grad_adj(*_grad(v))

    def x_step(x: torch.Tensor, vx: torch.Tensor, vy: torch.Tensor) -> torch.Tensor:
        return conjugate_gradient(normal, x, aty + rho * _grad_adj(vx, vy) - normal(x), inner)

    return _admm_tv(x, x_step, lam=lam, rho=rho, iters=iters, tol=tol)


def tv_sense(
    y: torch.Tensor,
    maps: torch.Tensor,
    mask: torch.Tensor,
    *,
    lam: float,
    iters: int = 100,
    inner: int = 4,
    rho: float | None = None,
    x0: torch.Tensor | None = None,
) -> torch.Tensor:
    """CS-TV for multi-coil data: ``argmin_x 0.5 ||M F S x - y||^2 + lam TV(x)`` (complex ``x``),
    :func:`cs_tv` of ``Acquisition(mask, maps, y)``.

    The multi-coil counterpart of :func:`tv_reconstruct` (same isotropic circular TV, scale of
    ``lam`` and ADMM loop, penalty ``rho`` default ``30 lam``), its ``x``-step by ``inner``
    conjugate-gradient iterations, started from CG-SENSE unless ``x0`` is given, with no final
    projection (:func:`cs_tv`).

    Args:
        y: measured coil k-space ``(B, C, H, W)``, complex (unsampled entries ignored).
        maps: sensitivities ``(B, C, H, W)`` or ``(C, H, W)``, ``sum_c |S_c|^2 = 1`` on the support.
        mask: sampled set ``(B, H, W)`` or ``(H, W)``.
        lam: TV weight (``>= 0``; 0 returns the start).
        iters: ADMM iterations.
        inner: CG iterations of each ``x``-step.
        rho: ADMM penalty.
        x0: starting image ``(B, H, W)``.

    Returns:
        Complex images ``(B, H, W)``.
    """
    if not lam >= 0 or iters < 0 or inner < 1:
        raise ValueError(
            f"tv_sense: lam >= 0, iters >= 0 and inner >= 1 required, got {lam}, {iters}, {inner}"
        )
    if not y.is_complex() or y.ndim != 4:
        raise ValueError(f"tv_sense: y must be complex (B, C, H, W), got {tuple(y.shape)} {y.dtype}")
    return cs_tv(Acquisition(mask, maps, y), lam=lam, iters=iters, inner=inner, rho=rho, x0=x0)


def tune_sense_lambda(
    batches: Sequence[tuple[Acquisition, torch.Tensor]],
    lams: Sequence[float],
    *,
    method: str = "tv",
    iters: int = 100,
) -> tuple[float, list[dict[str, float]]]:
    """Pick the weight of a multi-coil baseline with the best mean PSNR on (training) slices.

    Args:
        batches: ``(acquisition, reference)`` pairs: the slices' multi-coil acquisitions (mask,
            maps and measured coil k-space ``(B, C, H, W)``) and reference magnitudes
            ``(B, H, W)`` normalised to peak about 1 (PSNR peak 1.0, output clipped).
        lams: candidate weights.
        method: ``"tv"`` (:func:`tv_sense`, ``iters`` ADMM iterations) or ``"tikhonov"``
            (CG-SENSE, :meth:`~mri_n2n.physics.CartesianAcquisition.sense`, ``iters`` CG iterations).
        iters: solver iterations, as used afterwards.

    Returns:
        ``(best_lam, table)``, a row per weight: ``lam``, ``psnr`` (mean), ``seconds_per_slice``.
    """
    if method not in SENSE_METHODS:
        raise ValueError(f"method must be one of {SENSE_METHODS}, got {method!r}")
    if not lams or not batches:
        raise ValueError("tune_sense_lambda needs weights and slices")
    table: list[dict[str, float]] = []
    for lam in lams:
        vals: list[torch.Tensor] = []
        t0 = time.perf_counter()
        for acq, ref in batches:
            if method == "tv":
                x = cs_tv(acq, lam=float(lam), iters=iters)
            else:
                x = acq.sense(None, float(lam), iters)
            vals.append(psnr(x.abs()[:, None].clamp(0, 1), ref[:, None].to(x.real.dtype), data_range=1.0,
                             reduction="none"))
        v = torch.cat(vals)
        table.append({"lam": float(lam), "psnr": float(v.mean()),
                      "seconds_per_slice": (time.perf_counter() - t0) / len(v)})
    best = max(table, key=lambda r: r["psnr"])["lam"]
    return best, table
