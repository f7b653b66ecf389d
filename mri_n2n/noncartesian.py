"""The non-Cartesian acquisition kind: radial, golden-angle radial and spiral k-space by a NUFFT.

:class:`NonCartesianAcquisition` is ``A = M N S``: the coil sensitivities ``S`` (optional), the
non-uniform FFT ``N`` onto a trajectory (finufft through pytorch-finufft, differentiable) and
the selection ``M`` of the measured readouts (spokes or interleaves) among the trajectory's
candidates. The kind's samples are those readouts: a law (:class:`TrajectoryLaw`) draws which
of a fixed set of candidate readouts an acquisition keeps, so one trajectory serves the whole
batch, every draw is a subset of it, and the keep probability of every readout is exact (the
pair, SSDU and Noisier2Noise splits and the k-space loss weights need nothing else).

Conventions: the trajectory is ``(readouts, samples, 2)`` float32 in cycles per pixel
(``|k| <= 0.5``), coordinate 0 along the image rows ``H`` and 1 along the columns ``W``; the
image's pixel ``(i, j)`` sits at ``(i - H // 2, j - W // 2)`` (the centred FFT's convention of
:mod:`mri_n2n.fft`) and::

    (N x)_m = sum_p x_p exp(-2 pi i k_m . p) / sqrt(H W)

so a Cartesian trajectory on the grid gives the centred orthonormal FFT. ``A^H A`` is applied
as a Toeplitz convolution (the gridded point-spread function on a 2x oversampled grid: two FFTs
per coil, no NUFFT), and the adjoint image is density compensated (Pipe-Menon weights from
mri-nufft) in :meth:`NonCartesianAcquisition.zero_filled`.

The NUFFT libraries are an optional extra: ``pip install 'mri_n2n[nufft]'``. This module imports
without them; using the kind without them raises one line saying what to install.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .acquisition import Acquisition
from .fft import promote_complex
from .laws import SampleLaw
from .solvers import conjugate_gradient

__all__ = [
    "NonCartesianAcquisition", "TrajectoryLaw", "TRAJECTORIES", "NUFFT_MISSING", "nyquist_spokes",
    "radial_trajectory", "spiral_trajectory", "trajectory_law", "density_compensation",
    "nufft_available", "TrajectoryMixture", "MIXED_ACCELERATIONS", "FAMILIES",
]

#: the trajectory families
FAMILIES = ("radial", "golden-radial", "spiral")

#: the choices of ``--trajectory``: a family, or ``mixed`` (every family at every one of
#: :data:`MIXED_ACCELERATIONS`, one protocol per batch: :class:`TrajectoryMixture`)
TRAJECTORIES = (*FAMILIES, "mixed")

#: the accelerations of ``--trajectory mixed`` (against each family's Nyquist readout count)
MIXED_ACCELERATIONS = (2.0, 3.0, 4.0, 6.0, 8.0)

#: the protocol that stands for ``--trajectory mixed`` where one protocol is needed (a simulated
#: acquisition, a description): golden-angle radial at the asked acceleration
MIXED_BASE = "golden-radial"

#: what to install for the kind (the one line of every failure without the libraries)
NUFFT_MISSING = (
    "non-Cartesian acquisitions need the NUFFT libraries: pip install 'mri_n2n[nufft]' "
    "(finufft, pytorch-finufft, mri-nufft)"
)

#: the candidate rotations (uniform radial, spiral) or golden-angle windows per acquisition: a
#: draw keeps one readout in ``ROTATIONS`` of the candidates
ROTATIONS = 8

#: the golden angle between successive full spokes (pi / phi, 111.25 degrees)
GOLDEN_ANGLE = math.pi * (math.sqrt(5.0) - 1.0) / 2.0

#: the spiral's algebraic power: ``r ~ theta^2`` (variable density, denser at the centre)
SPIRAL_POWER = 2.0

#: the radius (cycles per pixel) of the disc on which the density compensation's scale is
#: calibrated (:func:`density_compensation`)
DCF_CALIBRATION_RADIUS = 0.05

#: the NUFFT's requested relative accuracy (single precision)
NUFFT_EPS = 1e-6


def nufft_available() -> bool:
    """Whether the NUFFT libraries (pytorch-finufft with finufft) are installed."""
    try:
        import pytorch_finufft  # noqa: F401
    except ImportError:
        return False
    return True


def _nufft() -> Any:
    try:
        from pytorch_finufft import functional
    except ImportError:
        raise ImportError(NUFFT_MISSING) from None
    return functional


def _opts(device: torch.device) -> dict[str, Any]:
    """finufft's options: the accuracy, and on the CPU torch's thread count (``--threads``)."""
    if device.type == "cuda":
        try:
            import cufinufft  # noqa: F401
        except ImportError:
            raise ImportError(
                "non-Cartesian acquisitions on CUDA need cufinufft: pip install 'mri_n2n[nufft-gpu]' "
                "(or run on the CPU)"
            ) from None
        return {"eps": NUFFT_EPS}
    return {"eps": NUFFT_EPS, "nthreads": max(1, int(torch.get_num_threads()))}


# -- trajectories ----------------------------------------------------------------------------
def nyquist_spokes(n: int) -> int:
    """The radial Nyquist spoke count of an ``n x n`` matrix, ``ceil(n pi / 2)``."""
    return int(math.ceil(int(n) * math.pi / 2))


def radial_trajectory(angles: torch.Tensor | Sequence[float], samples: int) -> torch.Tensor:
    """Full spokes through the centre at ``angles`` (radians): ``(spokes, samples, 2)`` float32 in
    cycles per pixel, ``samples`` readout points at ``(j - samples // 2) / samples``: the centre
    at ``j = samples // 2`` and the edge ``|k| = 0.5`` at ``j = 0``, as scanners sample a spoke
    (and as the trajectory reader's normalisation, largest ``|k|`` to 0.5, assumes)."""
    a = torch.as_tensor(angles, dtype=torch.float64).reshape(-1)
    r = (torch.arange(int(samples), dtype=torch.float64) - (int(samples) // 2)) / int(samples)
    k = torch.stack([r[None] * torch.cos(a)[:, None], r[None] * torch.sin(a)[:, None]], -1)
    return k.float()


def spiral_parameters(n: int) -> tuple[float, int, int]:
    """``(revolutions, Nyquist interleaves, samples per interleave)`` of the variable-density
    spiral (``r ~ theta^2``) of an ``n x n`` matrix: the interleaves whose arms are one pixel of
    k-space apart at the edge, and samples one pixel apart along the outermost turn."""
    turns = max(n / 32.0, 0.5)
    full = int(math.ceil(SPIRAL_POWER * n / (2.0 * turns)))
    samples = max(2 * n, int(math.ceil(math.pi * turns * n)))
    return turns, full, samples


def spiral_trajectory(interleaves: int, samples: int, revolutions: float) -> torch.Tensor:
    """``interleaves`` rotations (uniform tilt) of a variable-density spiral arm of ``samples``
    points and ``revolutions`` turns (mri-nufft's ``initialize_2D_spiral``, power 2),
    ``(interleaves, samples, 2)`` float32 in cycles per pixel, largest ``|k|`` 0.5."""
    try:
        from mrinufft.trajectories import initialize_2D_spiral
    except ImportError:
        raise ImportError(NUFFT_MISSING) from None
    k = initialize_2D_spiral(
        int(interleaves), int(samples), tilt="uniform", nb_revolutions=float(revolutions), spiral=SPIRAL_POWER
    )
    k = np.asarray(k, dtype=np.float64)
    k = 0.5 * k / max(float(np.abs(k).max()), 1e-12)
    return torch.from_numpy(np.clip(k, -0.5, 0.5)).float()


_DCF_CACHE: dict[tuple[Any, ...], torch.Tensor] = {}


def density_compensation(trajectory: torch.Tensor, matrix: tuple[int, int], iters: int = 30) -> torch.Tensor:
    """Pipe-Menon density compensation weights ``(readouts, samples)`` of a trajectory (mri-nufft's
    ``pipe`` with the finufft backend, on a grid four times the matrix), scaled so that the
    compensated adjoint ``A^H W A`` reproduces (in least squares) an image whose spectrum is flat
    on the disc ``|k| <`` :data:`DCF_CALIBRATION_RADIUS` (at least 2.5 grid samples). Cached per
    trajectory."""
    traj = trajectory.detach().float().cpu().contiguous()
    key = (tuple(traj.shape), tuple(matrix), int(iters), hash(traj.numpy().tobytes()))
    if key in _DCF_CACHE:
        return _DCF_CACHE[key]
    try:
        import warnings

        from mrinufft.density import pipe
    except ImportError:
        raise ImportError(NUFFT_MISSING) from None
    flat = traj.reshape(-1, 2).numpy().astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mri-nufft's note that it rescales [-0.5, 0.5) to radians
        # a grid 4x the matrix: the gridding kernel narrow enough to resolve the density near the
        # centre (on the matrix's own grid the weights there come out ~20 % high)
        grid = tuple(4 * int(v) for v in matrix)
        w = pipe(flat, grid, backend="finufft", max_iter=int(iters), normalize=False)
    w = torch.from_numpy(np.abs(np.asarray(w)).astype(np.float32)).reshape(traj.shape[:-1])
    # the scale: least squares of A^H W A g against an image g whose spectrum is flat on a small
    # disc, which any radial or spiral trajectory samples densely (on a wider one, a trajectory
    # undersampled at the edge had its scale biased by its aliasing: 24 % at 25 spokes, 64x64)
    h, wd = int(matrix[0]), int(matrix[1])
    acq = NonCartesianAcquisition(torch.ones(traj.shape[0], dtype=torch.bool), traj, (h, wd))
    noise = torch.randn(h, wd, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    ki = torch.fft.fftfreq(h)[:, None]
    kj = torch.fft.fftfreq(wd)[None]
    cut = max(DCF_CALIBRATION_RADIUS, 2.5 / min(h, wd))
    g = torch.fft.ifft2(torch.fft.fft2(noise) * ((ki.square() + kj.square()) < cut**2))[None, None]
    rec = acq.adjoint(acq.forward(g) * w)
    s = float((rec.conj() * g).sum().real / rec.abs().square().sum().clamp_min(1e-30))
    out = w * s
    _DCF_CACHE[key] = out
    return out


# -- laws ------------------------------------------------------------------------------------
class TrajectoryLaw(SampleLaw):
    """The law of the readouts an acquisition keeps among a trajectory's candidates.

    ``mode="rotation"``: the candidates are ``count * rotations`` readouts in rotation order, and
    a draw keeps every ``rotations``-th starting at a uniform offset (uniform radial or spiral at
    a random rotation). ``mode="window"``: the candidates are a golden-angle sequence, and a
    draw keeps ``count`` consecutive ones (cyclically) from a uniform start. Either way every
    candidate is kept with probability ``count / readouts``, exactly.

    Attributes:
        trajectory: the candidates ``(readouts, samples, 2)`` in cycles per pixel.
        matrix: the image matrix ``(H, W)``; count: readouts per acquisition.
    """

    def __init__(
        self, name: str, trajectory: torch.Tensor, matrix: tuple[int, int], count: int, mode: str,
        *, nyquist: int | None = None,
    ) -> None:
        if mode not in ("rotation", "window"):
            raise ValueError(f"mode must be 'rotation' or 'window', got {mode!r}")
        n = int(trajectory.shape[0])
        if not 1 <= int(count) <= n or (mode == "rotation" and n % int(count)):
            raise ValueError(f"{count} readouts per acquisition do not divide {n} candidates")
        self.name = name
        self.trajectory = trajectory.float()
        self.matrix = (int(matrix[0]), int(matrix[1]))
        self.count = int(count)
        self.mode = mode
        self.nyquist = nyquist
        self.shape = (n,)
        self.hermitian = False

    @property
    def rotations(self) -> int:
        """The number of distinct draws (rotations or window starts)."""
        return self.shape[0] // self.count if self.mode == "rotation" else self.shape[0]

    def keep_probability(self) -> torch.Tensor:
        return torch.full(self.shape, self.count / self.shape[0], dtype=torch.float32)

    def _draw(self, b: int, g: torch.Generator | None, device: torch.device) -> torch.Tensor:
        n = self.shape[0]
        gd = g.device if g is not None else device
        j = torch.arange(n, device=gd)
        if self.mode == "rotation":
            r = torch.randint(n // self.count, (b, 1), generator=g, device=gd)
            out = j[None] % (n // self.count) == r
        else:
            s = torch.randint(n, (b, 1), generator=g, device=gd)
            out = (j[None] - s) % n < self.count
        return out.to(device)

    @property
    def acceleration(self) -> float | None:
        """The acceleration against the Nyquist readout count (``None`` when unknown)."""
        return None if not self.nyquist else self.nyquist / self.count

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(), "trajectory": self.name, "matrix": list(self.matrix),
            "count": self.count, "mode": self.mode, "samples": int(self.trajectory.shape[1]),
            "acceleration": self.acceleration, "summary": self.summary(),
        }

    def summary(self) -> str:
        """One line for tables: the trajectory, the readouts per acquisition and the acceleration."""
        unit = "interleaves" if self.name == "spiral" else "spokes"
        acc = f" ({self.acceleration:.1f}x below Nyquist)" if self.acceleration else ""
        return f"`{self.name}` trajectory, {self.count} {unit} per acquisition{acc}"


class TrajectoryMixture(TrajectoryLaw):
    """Scan protocols mixed: every trajectory family at every acceleration of a list, one protocol
    per batch (a non-Cartesian batch shares one trajectory). A model trained on it serves radial,
    golden-angle and spiral data at any of those accelerations.

    The mixture is a :class:`TrajectoryLaw` itself, that of its ``base`` protocol: where a single
    protocol is needed (a simulated acquisition, ``reconstruct --simulate``, the fixed validation
    draws, which must not depend on how slices are batched) the base serves. The corruption asks
    :meth:`component` for each training batch's protocol and draws that batch's sets and keep
    probabilities from it, so every draw's law stays exact.

    Attributes:
        components: the protocols (families by accelerations); base: the stand-in protocol;
        accelerations: the nominal accelerations (each protocol's readout count is rounded).
    """

    def __init__(
        self, components: Sequence[TrajectoryLaw], base: TrajectoryLaw, accelerations: Sequence[float] = ()
    ) -> None:
        if not components:
            raise ValueError("a trajectory mixture needs at least one protocol")
        super().__init__(base.name, base.trajectory, base.matrix, base.count, base.mode, nyquist=base.nyquist)
        self.name = "mixed"
        self.components = tuple(components)
        self.base = base
        self.accelerations = tuple(float(a) for a in accelerations)

    def component(self, generator: torch.Generator | None = None) -> TrajectoryLaw:
        """One protocol: uniform over :attr:`components` from ``generator``; without one, the
        :attr:`base` (fixed draws)."""
        if generator is None:
            return self.base
        n = len(self.components)
        return self.components[int(torch.randint(n, (1,), generator=generator, device=generator.device))]

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(), "trajectory": "mixed", "base": self.base.summary(),
            "components": [c.summary() for c in self.components],
        }

    def summary(self) -> str:
        fams = sorted({c.name for c in self.components}, key=FAMILIES.index)
        accs = ", ".join(f"{a:g}" for a in self.accelerations)
        return (f"`mixed` trajectories ({', '.join(fams)}{f' at {accs}x' if accs else ''}; "
                "one protocol per batch)")


def trajectory_law(
    name: str,
    matrix: tuple[int, int],
    *,
    acceleration: float | None = None,
    spokes: int | None = None,
    rotations: int = ROTATIONS,
) -> TrajectoryLaw:
    """The law of a trajectory family for images of ``matrix``.

    Args:
        name: ``"radial"`` (uniform spokes at a random rotation), ``"golden-radial"``
            (consecutive golden-angle spokes from a random start), ``"spiral"`` (uniform
            interleaves of a variable-density spiral at a random rotation), or ``"mixed"``: every
            family at each of :data:`MIXED_ACCELERATIONS` (a :class:`TrajectoryMixture` whose
            base is golden-angle radial at ``acceleration`` or ``spokes``).
        matrix: the image matrix ``(H, W)``; the trajectory is for ``max(H, W)``.
        acceleration: readouts ``Nyquist / acceleration`` (radial Nyquist ``N pi / 2`` spokes;
            spiral: :func:`spiral_parameters`).
        spokes: the readouts per acquisition instead (wins over ``acceleration``).
        rotations: candidates per kept readout.

    Raises:
        ValueError: an unknown name, a non-positive acceleration or spoke count.
    """
    if name not in TRAJECTORIES:
        raise ValueError(f"unknown trajectory {name!r} (choose from {', '.join(TRAJECTORIES)})")
    if name == "mixed":
        base = trajectory_law(
            MIXED_BASE, matrix, acceleration=acceleration, spokes=spokes, rotations=rotations
        )
        parts = [trajectory_law(f, matrix, acceleration=a, rotations=rotations)
                 for f in FAMILIES for a in MIXED_ACCELERATIONS]
        return TrajectoryMixture(parts, base, MIXED_ACCELERATIONS)
    h, w = int(matrix[0]), int(matrix[1])
    n = max(h, w)
    if name == "spiral":
        turns, nyq, samples = spiral_parameters(n)
    else:
        nyq, samples = nyquist_spokes(n), 2 * n  # readouts oversampled 2x, as scanners do
    if spokes is not None:
        if int(spokes) < 1:
            raise ValueError(f"--spokes must be >= 1, got {spokes}")
        count = int(spokes)
    else:
        r = 4.0 if acceleration is None else float(acceleration)
        if not r > 0:
            raise ValueError(f"--acceleration must be > 0, got {acceleration}")
        count = max(1, int(round(nyq / r)))
    total = count * int(rotations)
    if name == "radial":
        traj = radial_trajectory(torch.arange(total, dtype=torch.float64) * math.pi / total, samples)
        return TrajectoryLaw(name, traj, (h, w), count, "rotation", nyquist=nyq)
    if name == "golden-radial":
        traj = radial_trajectory(torch.arange(total, dtype=torch.float64) * GOLDEN_ANGLE, samples)
        return TrajectoryLaw(name, traj, (h, w), count, "window", nyquist=nyq)
    # interleave j at the angle 2 pi j / total: those with j = r mod rotations are evenly spaced
    traj = spiral_trajectory(total, samples, turns)
    return TrajectoryLaw(name, traj, (h, w), count, "rotation", nyquist=nyq)


# -- the kind --------------------------------------------------------------------------------
class NonCartesianAcquisition(Acquisition):
    """The non-Cartesian kind ``A = M N S`` (module docstring): a NUFFT onto a trajectory's
    measured readouts, with the batch's measurements and law.

    Args:
        sampled: bool ``(readouts,)`` (shared) or ``(B, readouts)``: the measured candidates.
        trajectory: ``(readouts, samples, 2)`` in cycles per pixel, shared by the batch.
        matrix: the image matrix ``(H, W)``.
        maps: complex coil sensitivities ``(C, H, W)`` or ``(B, C, H, W)``; ``None`` single coil.
        y: measurements ``(B, C, readouts, samples)`` (single coil ``C = 1``: the channel of the
            ``(B, 1, H, W)`` images), zero off the sampled readouts.
        keep_prob: the law's keep probability per readout, ``(readouts,)`` or ``(B, readouts)``.
        dcf: density compensation weights ``(readouts, samples)`` (default: Pipe-Menon of the
            trajectory, :func:`density_compensation`).

    Raises:
        ValueError: a trajectory not ``(readouts, samples, 2)``, a sampled set of another length,
            maps of another matrix.
    """

    kind = "noncartesian"
    replaces = False
    compensated = True
    #: CS-TV's default weight: no exact projection follows the solve, so the Cartesian default
    #: (3e-6, which relies on it) leaves CS-TV near least squares. Mean PSNR on 16 synthetic
    #: training slices (64x64, 4x, 100 iterations) against the weight: golden-angle radial best
    #: at 1e-3 (42.7 dB; 42.1 at 3e-3), spiral at 1e-2 (34.6; 32.0 at 3e-3), uniform radial
    #: 41.4 at 1e-2 (1e-2 and up tried); 3e-3 is the compromise. Tables tune it (``--tv-lam``).
    tv_lam = 3e-3
    augmentations = frozenset()
    _dims = {"sampled": 1, "y": 3, "keep_prob": 1, "trajectory": 3, "maps": 3, "dcf": 2}

    def __init__(
        self,
        sampled: torch.Tensor,
        trajectory: torch.Tensor,
        matrix: tuple[int, int],
        maps: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        *,
        keep_prob: torch.Tensor | None = None,
        dcf: torch.Tensor | None = None,
    ) -> None:
        trajectory = torch.as_tensor(trajectory)
        if trajectory.ndim != 3 or trajectory.shape[-1] != 2:
            raise ValueError(
                f"trajectory must be (readouts, samples, 2), got shape {tuple(trajectory.shape)}"
            )
        if tuple(sampled.shape[-1:]) != tuple(trajectory.shape[:1]) or sampled.ndim > 2:
            raise ValueError(
                f"sampled {tuple(sampled.shape)} must be (readouts,) or (B, readouts) with "
                f"{trajectory.shape[0]} readouts"
            )
        h, w = int(matrix[0]), int(matrix[1])
        if maps is not None:
            if maps.ndim not in (3, 4) or tuple(maps.shape[-2:]) != (h, w):
                raise ValueError(f"maps must be (C, {h}, {w}) or (B, C, {h}, {w}), got {tuple(maps.shape)}")
            maps = promote_complex(maps)
            maps = maps if maps.ndim == 4 else maps.unsqueeze(0)
        dev = maps.device if maps is not None else sampled.device
        self._sampled = sampled.to(dev).bool()
        self.trajectory = trajectory.to(device=dev, dtype=torch.float32)
        self.matrix = (h, w)
        self.maps = maps
        self.y = y
        self.keep_prob = keep_prob
        self._dcf = dcf
        self._kernel: torch.Tensor | None = None  # the Toeplitz kernel's FFT, per sample
        self._act: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None
        self._aty: tuple[torch.Tensor, torch.Tensor] | None = None  # (y, A^H y) for prox

    # -- the kind's interface --------------------------------------------------------------
    @property
    def sampled(self) -> torch.Tensor:
        """The measured readouts ``(B, readouts)`` or ``(readouts,)``."""
        return self._sampled

    @property
    def sample_shape(self) -> tuple[int]:
        """``(readouts,)``: the trajectory's candidate spokes or interleaves."""
        return (int(self.trajectory.shape[0]),)

    @property
    def image_shape(self) -> tuple[int, int]:
        """The image matrix ``(H, W)``."""
        return self.matrix

    @property
    def dcf(self) -> torch.Tensor:
        """The density compensation weights ``(readouts, samples)`` of the whole trajectory."""
        if self._dcf is None:
            self._dcf = density_compensation(self.trajectory, self.matrix).to(self.trajectory.device)
        return self._dcf

    def density(self) -> torch.Tensor:
        """The Pipe-Menon weights of the whole candidate trajectory (:attr:`dcf`), ``(readouts,
        samples)``: the area of k-space each candidate sample stands for."""
        return self.dcf

    def _fields(self) -> dict[str, Any]:
        return {
            "sampled": self._sampled, "y": self.y, "keep_prob": self.keep_prob,
            "trajectory": self.trajectory, "matrix": self.matrix, "maps": self.maps, "dcf": self._dcf,
        }

    def expand_samples(self, t: torch.Tensor) -> torch.Tensor:
        """A per-readout ``(B, readouts)`` tensor as ``(B, 1, readouts, 1)``; ``(readouts,)`` as
        ``(readouts, 1)``."""
        return t[:, None, :, None] if t.ndim == 2 else t[..., None]

    @classmethod
    def fully_sampled(
        cls,
        shape: tuple[int, ...],
        maps: torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> NonCartesianAcquisition:
        """The acquisition of every candidate readout of the default settings' law (uniform
        radial at acceleration 4, :meth:`law`) for images of ``shape`` (last two dims)."""
        matrix = (int(shape[-2]), int(shape[-1]))
        return cls.for_law(trajectory_law("radial", matrix), shape, maps, device)

    @classmethod
    def for_law(
        cls,
        law: SampleLaw,
        shape: tuple[int, ...],
        maps: torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> NonCartesianAcquisition:
        """The acquisition of every candidate readout of ``law``'s trajectory (a
        :class:`TrajectoryLaw`) for images of ``shape`` (last two dims).

        Raises:
            ValueError: a law without a trajectory, or one for another matrix.
        """
        matrix = (int(shape[-2]), int(shape[-1]))
        traj = getattr(law, "trajectory", None)
        if traj is None:
            raise ValueError(f"the law {law.name!r} has no trajectory: not a non-Cartesian law")
        if tuple(getattr(law, "matrix", matrix)) != matrix:
            raise ValueError(f"the trajectory law is for {law.matrix} images, not {matrix}")
        if maps is not None and device is not None:
            maps = maps.to(device)
        sampled = torch.ones(traj.shape[0], dtype=torch.bool, device=device)
        return cls(sampled, traj.to(sampled.device), matrix, maps)

    @classmethod
    def law(
        cls, settings: Any, shape: tuple[int, int], *, fraction: float | None = None, hermitian: bool = False
    ) -> TrajectoryLaw:
        """The law of the settings' ``trajectory`` (default radial) with their ``spokes`` or
        ``acceleration``; ``fraction``: the readouts at that share of the Nyquist count instead.
        Non-Cartesian draws are not completed by symmetry (``hermitian`` is ignored)."""
        name = getattr(settings, "trajectory", None) or "radial"
        spokes = getattr(settings, "spokes", None)
        accel = getattr(settings, "acceleration", None)
        if fraction is not None:
            if not 0 < float(fraction) <= 1:
                raise ValueError(f"the sampling fraction must lie in (0, 1], got {fraction}")
            spokes, accel = None, 1.0 / float(fraction)
        return trajectory_law(name, shape, acceleration=accel, spokes=spokes)

    @classmethod
    def from_arrays(
        cls,
        kspace: torch.Tensor | np.ndarray,
        trajectory: torch.Tensor | np.ndarray,
        matrix: tuple[int, int],
        maps: torch.Tensor | np.ndarray | None = None,
    ) -> NonCartesianAcquisition:
        """The acquisition of measured non-Cartesian data (a trajectory file's): ``kspace``
        ``(slices, coils, readouts, samples)`` complex, ``trajectory`` ``(readouts, samples, 2)`` in
        cycles per pixel (largest ``|k|`` 0.5), the encoded ``matrix``; every readout measured,
        no law (``keep_prob`` None). ``maps`` ``(C, H, W)`` or ``(slices, C, H, W)`` for coil data;
        without maps the data must be one coil.

        Raises:
            ValueError: shapes that do not agree, or several coils without maps.
        """
        k = torch.as_tensor(np.asarray(kspace) if not torch.is_tensor(kspace) else kspace)
        t = torch.as_tensor(np.asarray(trajectory) if not torch.is_tensor(trajectory) else trajectory)
        if k.ndim != 4:
            raise ValueError(f"kspace must be (slices, coils, readouts, samples), got shape {tuple(k.shape)}")
        if tuple(k.shape[-2:]) != tuple(t.shape[:2]):
            raise ValueError(f"kspace readouts {tuple(k.shape[-2:])} and trajectory {tuple(t.shape)} differ")
        if not bool(torch.isfinite(t).all()):
            raise ValueError("the trajectory has non-finite coordinates")
        m = None if maps is None else promote_complex(torch.as_tensor(maps))
        if m is None and k.shape[1] != 1:
            raise ValueError(f"{k.shape[1]} coils need coil maps (or combine them first)")
        if m is not None and m.shape[-3] != k.shape[1]:
            raise ValueError(f"maps of {m.shape[-3]} coils for data of {k.shape[1]} coils")
        sampled = torch.ones(t.shape[0], dtype=torch.bool)
        return cls(sampled, t.float(), matrix, m, k.to(torch.complex64))

    @classmethod
    def estimate_maps(
        cls,
        kspace: torch.Tensor | np.ndarray,
        trajectory: torch.Tensor | np.ndarray,
        matrix: tuple[int, int],
        *,
        calib: int | None = None,
        method: str = "espirit",
        **kwargs,
    ) -> torch.Tensor:
        """Coil sensitivities ``(slices, C, H, W)`` from non-Cartesian coil data: every coil's
        density-compensated adjoint image back to the grid (:meth:`gridded_kspace`), whose centre
        a radial or spiral trajectory samples densely, then ESPIRiT (or Walsh) on its centred
        ``calib`` block (default ``min(24, max(16, N // 8))`` for the larger side ``N``;
        :func:`~mri_n2n.coil_maps.estimate_maps`, given ``kwargs``: ``kernel``, ``crop``, ...).

        Args:
            kspace: ``(slices, coils, readouts, samples)`` complex; trajectory
                ``(readouts, samples, 2)`` in cycles per pixel; matrix: the image matrix.
        """
        from .coil_maps import estimate_maps

        k = torch.as_tensor(np.asarray(kspace) if not torch.is_tensor(kspace) else kspace)
        t = torch.as_tensor(np.asarray(trajectory) if not torch.is_tensor(trajectory) else trajectory)
        if k.ndim != 4:
            raise ValueError(f"kspace must be (slices, coils, readouts, samples), got shape {tuple(k.shape)}")
        one = cls(torch.ones(t.shape[0], dtype=torch.bool), t.float(), matrix)
        n = max(int(matrix[0]), int(matrix[1]))
        size = calib if calib is not None else min(24, max(16, n // 8))
        # the disc around the block (its corners and a margin): outside it an undersampled
        # trajectory's aliasing would fold into the block
        grid = one.gridded_kspace(k.to(torch.complex64), radius=(size / math.sqrt(2) + 3) / n)
        return estimate_maps(grid, method=method, calib=size, **kwargs)  # type: ignore[arg-type]

    def gridded_kspace(self, y: torch.Tensor | None = None, radius: float | None = None) -> torch.Tensor:
        """Cartesian k-space of the coils' density-compensated adjoint images (``F`` of
        ``N_c^H W y_c`` per coil, no coil combination): ``(B, C, H, W)`` for measurements
        ``(B, C, readouts, samples)``; ``radius``: only the samples with ``|k| <= radius``
        (cycles per pixel). Close to the coils' own k-space inside a disc the trajectory samples
        densely (the centre of radial and spiral trajectories)."""
        from .fft import fft2c

        y = promote_complex(self._data(y)).to(torch.complex64)
        plain = NonCartesianAcquisition(self._sampled, self.trajectory, self.matrix, None,
                                        keep_prob=self.keep_prob, dcf=self._dcf)
        if radius is not None:
            y = y * (self.trajectory.norm(dim=-1) <= float(radius)).to(y.real.dtype)
        return fft2c(plain.zero_filled(y))

    # -- the operator --------------------------------------------------------------------
    def _active(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The readouts any sample measures, their points ``(2, n * samples)`` in radians, and
        each sample's mask over them ``(B, 1, n, 1)`` where the samples' sets differ (``None``
        where every sample measures them all). Computed once per acquisition."""
        if self._act is None:
            s = self._sampled
            union = s if s.ndim == 1 else s.any(0)
            idx = torch.nonzero(union).reshape(-1)
            pts = (self.trajectory.index_select(0, idx).reshape(-1, 2).T * (2 * math.pi)).contiguous()
            sub = None
            if s.ndim == 2 and not bool((s == union).all()):
                sub = s.index_select(1, idx)[:, None, :, None]
            self._act = (idx, pts, sub)
        return self._act

    def _s(self, like: torch.Tensor) -> torch.Tensor:
        s = self.maps
        if s.shape[0] == 1 or s.shape[0] == like.shape[0]:
            return s
        raise ValueError(f"maps for {s.shape[0]} samples, images for {like.shape[0]}")

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """Coil images ``S x``: multi-coil ``(B, H, W) -> (B, C, H, W)``; single coil ``x``."""
        if self.maps is None:
            return promote_complex(x).to(torch.complex64)
        x = promote_complex(x, self.maps)
        return self._s(x) * x.unsqueeze(-3)

    def reduce(self, u: torch.Tensor) -> torch.Tensor:
        """``S^H u``: coil images back to one image (single coil: ``u``)."""
        if self.maps is None:
            return u
        return (self._s(u).conj() * u).sum(-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``A x``: measurements ``(..., readouts, samples)`` (multi-coil ``(B, C, ...)``), zero
        off the sampled readouts. Only the measured readouts are transformed."""
        nufft = _nufft()
        u = self.expand(x)
        h, w = self.matrix
        if tuple(u.shape[-2:]) != (h, w):
            raise ValueError(f"images {tuple(u.shape[-2:])} for a {h} x {w} trajectory acquisition")
        idx, pts, sub = self._active()
        r = self.trajectory.shape[1]
        out = torch.zeros((*u.shape[:-2], self.sample_shape[0], r), dtype=u.dtype, device=u.device)
        if idx.numel():
            v = nufft.finufft_type2(pts, u.contiguous(), isign=-1, modeord=0, **_opts(u.device))
            v = v.reshape(*u.shape[:-2], idx.numel(), r) * (1.0 / math.sqrt(h * w))
            if sub is not None:  # the samples' own readouts among the batch's
                v = v * sub.to(v.real.dtype)
            out[..., idx, :] = v
        return out

    def adjoint(self, y: torch.Tensor | None = None) -> torch.Tensor:
        """``A^H y`` (default the acquisition's measurements; entries off the sampled readouts
        are ignored): single coil ``(..., H, W)``, multi-coil the coil combination ``(B, H, W)``."""
        nufft = _nufft()
        y = promote_complex(self._data(y)).to(torch.complex64)
        h, w = self.matrix
        idx, pts, sub = self._active()
        v = y.index_select(-2, idx)
        if sub is not None:
            v = v * sub.to(v.real.dtype)
        v = v.reshape(*y.shape[:-2], -1).contiguous()
        u = nufft.finufft_type1(pts, v, (h, w), isign=1, modeord=0, **_opts(v.device))
        return self.reduce(u * (1.0 / math.sqrt(h * w)))

    def toeplitz_kernel(self) -> torch.Tensor:
        """The FFT of the point-spread function of every sample's readouts on the 2x oversampled
        grid, ``(B or 1, 1, 2H, 2W)`` (computed once per acquisition)."""
        if self._kernel is None:
            nufft = _nufft()
            h, w = self.matrix
            s = self._sampled if self._sampled.ndim == 2 else self._sampled[None]
            idx, pts, _ = self._active()
            r = self.trajectory.shape[1]
            wts = s.index_select(1, idx)[..., None].expand(-1, -1, r).reshape(s.shape[0], -1)
            wts = wts.to(torch.complex64) / (h * w)
            psf = nufft.finufft_type1(
                pts, wts.contiguous(), (2 * h, 2 * w), isign=1, modeord=1, **_opts(wts.device)
            )
            self._kernel = torch.fft.fft2(psf)[:, None]
        return self._kernel

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x`` as a Toeplitz convolution (:meth:`toeplitz_kernel`): zero-pad to ``2H x 2W``,
        multiply in the Fourier domain, crop; no NUFFT (equal to ``adjoint(forward(x))`` up to the
        NUFFT's accuracy). The padded FFT skips the zero rows and the inverse the cropped ones
        (1-D FFTs along each axis: a quarter less work than full 2-D transforms)."""
        u = self.expand(x)
        h, w = self.matrix
        k = self.toeplitz_kernel().to(u.device)
        lead = u.shape[:-2]
        if u.ndim == 3:  # (B, H, W) single coil: the batch is the first dim
            u = u[:, None]
        f = torch.fft.fft(torch.fft.fft(u, n=2 * w, dim=-1), n=2 * h, dim=-2)
        v = torch.fft.ifft(f.mul_(k) if not f.requires_grad else f * k, dim=-2)[..., :h, :]
        v = torch.fft.ifft(v, dim=-1)[..., :w]
        return self.reduce(v.reshape(*lead, h, w))

    def prox(self, x: torch.Tensor, lam: float | torch.Tensor, iters: int = 6) -> torch.Tensor:
        """:meth:`Acquisition.prox` (conjugate gradients on the Toeplitz :meth:`normal`) with
        ``A^H y`` of the acquisition's measurements computed once (an unrolled network's
        cascades share it)."""
        y = self._data(None)
        if self._aty is None or self._aty[0] is not y:
            self._aty = (y, self.adjoint(y))
        aty = self._aty[1]
        z = promote_complex(x).to(aty.dtype)
        lam_t = torch.as_tensor(lam, device=z.device, dtype=z.real.dtype)
        if lam_t.ndim:
            lam_t = lam_t.reshape(-1, *([1] * (z.ndim - 1)))
        r = aty - self.normal(z)  # b - (A^H A + lam) z at z = x, b = A^H y + lam x
        return conjugate_gradient(lambda v: self.normal(v) + lam_t * v, z, r, iters)

    # -- reconstructions -----------------------------------------------------------------
    def zero_filled(
        self, y: torch.Tensor | None = None, keep_prob: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The density-compensated adjoint ``A^H (W y / p)``: the Pipe-Menon weights ``W`` of the
        whole candidate trajectory divided by each readout's keep probability (``keep_prob``, else
        the acquisition's; none: ``W`` alone), an unbiased estimate over the law's draws of the
        compensated adjoint of every candidate, which is close to the image."""
        y = promote_complex(self._data(y)).to(torch.complex64)
        wts = self.dcf.to(y.device)
        p = self.keep_prob if keep_prob is None else keep_prob
        if p is not None:
            p = self.expand_samples(p.to(device=y.device, dtype=wts.dtype))
            wts = wts / p.clamp_min(torch.finfo(p.dtype).tiny)
        return self.adjoint(y * wts)

    def sense(
        self,
        y: torch.Tensor | None = None,
        lam: float | torch.Tensor = 1e-4,
        iters: int = 30,
    ) -> torch.Tensor:
        """CG-SENSE (single coil: CG on the normal equations) ``argmin_z ||A z - y||^2 + lam
        ||z||^2`` from ``z = 0`` by :meth:`prox` on the Toeplitz normal operator."""
        acq = self if y is None else self.with_data(y)
        h, w = self.matrix
        b = acq.y.shape[0]
        shape = (b, h, w) if self.maps is not None else (b, *acq.y.shape[1:-2], h, w)
        x0 = torch.zeros(shape, dtype=torch.complex64, device=acq.y.device)
        return acq.prox(x0, lam, iters)
