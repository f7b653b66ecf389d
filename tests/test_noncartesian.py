"""The non-Cartesian kind (radial, golden-angle radial, spiral by finufft): the operator algebra
(adjoint, Toeplitz normal against the plain one, proximal step, autograd), the density-compensated
adjoint, the laws' exact keep rates and draws, batches, measured arrays, and the one line without
the NUFFT libraries. Skipped where the ``nufft`` extra is not installed."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from mri_n2n.coils import normalize_maps, rss
from mri_n2n.noncartesian import (
    FAMILIES,
    MIXED_ACCELERATIONS,
    NUFFT_MISSING,
    NonCartesianAcquisition,
    TrajectoryMixture,
    nyquist_spokes,
    trajectory_law,
)

pytest.importorskip("pytorch_finufft")
pytest.importorskip("mrinufft")

N = 32


def _acq(name: str, coils: int, seed: int = 0, batch: int = 2, accel: float = 4.0):
    g = torch.Generator().manual_seed(seed)
    law = trajectory_law(name, (N, N), acceleration=accel)
    maps = None
    if coils > 1:
        maps = normalize_maps(torch.randn(batch, coils, N, N, dtype=torch.complex64, generator=g))
    full = NonCartesianAcquisition.for_law(law, (N, N), maps)
    shape = (batch, N, N) if maps is not None else (batch, 1, N, N)
    x = torch.randn(shape, dtype=torch.complex64, generator=g)
    acq = full.observe(full.full(x), law.sample(batch, generator=g), law.keep_probability())
    return acq, law, shape, g


def _smooth(n: int = N) -> torch.Tensor:
    """A smooth test image ``(1, 1, n, n)``: a soft-edged disc and an off-centre blob."""
    i = torch.arange(n, dtype=torch.float32)[:, None] - n // 2
    j = torch.arange(n, dtype=torch.float32)[None] - n // 2
    disc = torch.sigmoid((n / 3 - torch.sqrt(i**2 + j**2)) / 1.5)
    blob = 0.5 * torch.exp(-((i - n / 8) ** 2 + (j + n / 6) ** 2) / (2 * (n / 16) ** 2))
    return (disc + blob).to(torch.complex64)[None, None]


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("coils", [1, 4])
def test_adjoint_and_toeplitz_normal(name, coils):
    acq, _, shape, g = _acq(name, coils)
    x = torch.randn(shape, dtype=torch.complex64, generator=g)
    y = torch.randn(acq.y.shape, dtype=torch.complex64, generator=g)
    ax, aty = acq.forward(x), acq.adjoint(y)
    lhs, rhs = (ax.conj() * y).sum(), (x.conj() * aty).sum()
    assert float((lhs - rhs).abs()) <= 1e-5 * float(ax.norm() * y.norm())
    # the Toeplitz normal operator (no NUFFT) is the plain A^H A to the NUFFT's accuracy
    plain = acq.adjoint(acq.forward(x))
    assert float((acq.normal(x) - plain).norm()) <= 1e-5 * float(plain.norm())
    # only the sampled readouts are measured, each sample its own
    assert torch.equal(ax.abs().sum(-1).gt(0).any(1), acq.sampled)


def test_a_cartesian_trajectory_is_the_centred_fft():
    from mri_n2n.fft import fft2c

    k = (torch.arange(N) - N // 2) / N
    traj = torch.stack(torch.meshgrid(k, k, indexing="ij"), -1).float()
    acq = NonCartesianAcquisition(torch.ones(N, dtype=torch.bool), traj, (N, N))
    x = torch.randn(1, 1, N, N, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(acq.forward(x), fft2c(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_density_compensated_adjoint_of_a_full_acquisition_is_the_image(name):
    """Every candidate readout of the Nyquist-rate law (8x Nyquist in all): the Pipe-Menon
    compensated adjoint of a smooth image is the image within 2 %; the plain adjoint is not."""
    img = _smooth()
    full = NonCartesianAcquisition.for_law(trajectory_law(name, (N, N), acceleration=1.0), (N, N))
    acq = full.with_data(full.full(img))
    err = float((acq.zero_filled() - img).norm() / img.norm())
    assert err < 0.02, err
    assert float((acq.adjoint() - img).norm() / img.norm()) > 1.0  # uncompensated: far off
    # one 4x acquisition, compensated by its keep probability: a streaky but unbiased estimate
    law = trajectory_law(name, (N, N), acceleration=4.0)
    full = NonCartesianAcquisition.for_law(law, (N, N))
    one = full.observe(full.full(img), law.sample(1, generator=torch.Generator().manual_seed(0)),
                       law.keep_probability())
    assert float((one.zero_filled() - img).norm() / img.norm()) < 0.15


@pytest.mark.parametrize("name", FAMILIES)
def test_laws_keep_their_probability(name):
    law = trajectory_law(name, (N, N), acceleration=4.0)
    nyq = nyquist_spokes(N) if name != "spiral" else None
    if nyq is not None:
        assert law.count == round(nyq / 4)
    p = law.keep_probability()
    assert torch.allclose(p, torch.full_like(p, law.count / law.shape[0]))
    draws = law.sample(4000, generator=torch.Generator().manual_seed(1))
    assert bool((draws.sum(1) == law.count).all())  # every draw keeps exactly count readouts
    rate = draws.float().mean(0)
    assert float((rate - p).abs().max()) < 0.03  # the empirical keep rate is the law's
    first = torch.nonzero(draws[0]).reshape(-1)
    if law.mode == "rotation":  # uniform rotations: evenly spaced candidates
        assert bool((first.diff() == law.shape[0] // law.count).all())
    else:  # golden angle: consecutive spokes (cyclically)
        assert int(((first - first[0]) % law.shape[0]).max()) == law.count - 1


def test_spokes_and_fraction_choose_the_count():
    assert trajectory_law("golden-radial", (N, N), spokes=10).count == 10
    cfg = type("S", (), {"trajectory": "radial", "spokes": None, "acceleration": 2.0})()
    assert NonCartesianAcquisition.law(cfg, (N, N)).count == round(nyquist_spokes(N) / 2)
    assert NonCartesianAcquisition.law(cfg, (N, N), fraction=0.125).count == round(nyquist_spokes(N) / 8)
    with pytest.raises(ValueError, match="unknown trajectory"):
        trajectory_law("rosette", (N, N))
    with pytest.raises(ValueError, match="acceleration"):
        trajectory_law("radial", (N, N), acceleration=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_batch_collate_and_restrict_round_trip(name):
    acq, _, _, _ = _acq(name, 3, batch=3)
    back = NonCartesianAcquisition.collate([acq.batch(slice(i, i + 1)) for i in range(3)])
    for a, b in ((acq.sampled, back.sampled), (acq.y, back.y), (acq.keep_prob, back.keep_prob),
                 (acq.maps, back.maps)):
        assert torch.equal(torch.broadcast_to(a, b.shape), b)
    assert torch.equal(back.trajectory, acq.trajectory) and back.image_shape == (N, N)
    half = acq.sampled & (torch.arange(acq.sample_shape[0]) % 2 == 0)
    part = acq.restrict(half)
    assert torch.equal(part.sampled, half)
    torch.testing.assert_close(part.y, acq.y * part.expand_samples(half).to(acq.y.real.dtype))


@pytest.mark.parametrize("coils", [1, 4])
def test_prox_and_sense_solve_their_problems(coils):
    acq, _, shape, g = _acq("golden-radial", coils, seed=3)
    x0 = torch.randn(shape, dtype=torch.complex64, generator=g)
    z = acq.prox(x0, 0.1, 60)
    grad = acq.adjoint(acq.forward(z) - acq.y) + 0.1 * (z - x0)
    assert float(grad.norm()) <= 1e-3 * float(acq.adjoint(acq.y).norm() + 0.1 * x0.norm())
    # data consistency without a replacement: the proximal step (lam = 0: the projection)
    assert not acq.replaces
    dc = acq.data_consistency(x0, iters=30)
    assert float(acq.residual(dc).norm()) < 0.5 * float(acq.residual(x0).norm())
    s = acq.sense(lam=1e-3, iters=30)
    assert s.shape == shape and bool(torch.isfinite(s).all())


def test_gradients_flow_through_the_operator():
    acq, _, shape, g = _acq("spiral", 4, seed=4)
    x = torch.randn(shape, dtype=torch.complex64, generator=g, requires_grad=True)
    loss = acq.residual(x).abs().square().sum() + acq.normal(x).abs().sum()
    loss.backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and float(x.grad.norm()) > 0


def test_measured_arrays_build_an_acquisition():
    law = trajectory_law("golden-radial", (N, N), spokes=20)
    traj = law.trajectory[:20]
    g = torch.Generator().manual_seed(5)
    maps = normalize_maps(torch.randn(4, N, N, dtype=torch.complex64, generator=g))
    img = _smooth()[0, 0]
    truth = NonCartesianAcquisition(torch.ones(20, dtype=torch.bool), traj, (N, N), maps)
    k = truth.forward(img[None])  # (1, 4, 20, 64)
    acq = NonCartesianAcquisition.from_arrays(k.numpy(), traj.numpy(), (N, N), maps)
    assert acq.keep_prob is None and acq.multicoil and acq.y.shape == (1, 4, 20, 2 * N)
    rec = acq.sense(lam=1e-4, iters=40)
    assert float((rec - img).norm() / img.norm()) < 0.1
    with pytest.raises(ValueError, match="coil maps"):
        NonCartesianAcquisition.from_arrays(k.numpy(), traj.numpy(), (N, N))
    with pytest.raises(ValueError, match="trajectory"):
        NonCartesianAcquisition.from_arrays(k.numpy(), traj[:10].numpy(), (N, N), maps)


def test_without_the_libraries_one_line_says_what_to_install(monkeypatch):
    acq, _, shape, _ = _acq("radial", 1)
    monkeypatch.setitem(sys.modules, "pytorch_finufft", None)
    with pytest.raises(ImportError) as e:
        acq.forward(torch.zeros(shape))
    assert str(e.value) == NUFFT_MISSING and "pip install" in NUFFT_MISSING
    assert math.isfinite(float(acq.keep_prob.sum()))


def test_coil_maps_estimated_from_the_trajectory_centre():
    """ESPIRiT on the gridded centre of 4x golden-angle coil data: CG-SENSE with the estimated
    maps is within 3 % of the image (0.2 % with the true maps)."""
    from mri_n2n.coils import birdcage_maps

    n = 64
    law = trajectory_law("golden-radial", (n, n), spokes=25)
    traj = law.trajectory[:25]
    maps = birdcage_maps((n, n), 6)
    i = torch.arange(n, dtype=torch.float32)[:, None] - n // 2
    j = torch.arange(n, dtype=torch.float32)[None] - n // 2
    img = torch.sigmoid(n / 2.5 - torch.sqrt(i**2 + (1.3 * j) ** 2)) * (1 + 0.3 * torch.cos(i / 5))
    img = img.to(torch.complex64)
    k = NonCartesianAcquisition(torch.ones(25, dtype=torch.bool), traj, (n, n), maps).forward(img[None])
    est = NonCartesianAcquisition.estimate_maps(k, traj, (n, n))
    assert est.shape == (1, 6, n, n)
    errs = []
    for m in (maps, est):
        rec = NonCartesianAcquisition.from_arrays(k, traj, (n, n), m).sense(lam=1e-4, iters=40)[0]
        errs.append(float((rec.abs() - img.abs()).norm() / img.abs().norm()))
    assert errs[0] < 0.01 and errs[1] < 0.03, errs


def test_density_compensation_scale_of_an_undersampled_trajectory():
    """A file's own trajectory, 4x below Nyquist at its edge: the compensated adjoint keeps the
    scale of the image's low frequencies (the weights are calibrated on the dense centre)."""
    from mri_n2n.fft import fft2c

    traj = trajectory_law("golden-radial", (N, N), spokes=13).trajectory[:13]
    img = _smooth()
    acq = NonCartesianAcquisition(torch.ones(13, dtype=torch.bool), traj, (N, N))
    z = acq.with_data(acq.forward(img)).zero_filled()
    c = slice(N // 2 - 2, N // 2 + 3)
    ratio = (fft2c(z)[..., c, c].abs().sum() / fft2c(img)[..., c, c].abs().sum()).item()
    assert abs(ratio - 1) < 0.05, ratio


def test_an_ismrmrd_trajectory_file_reconstructs_through_the_kind(tmp_path):
    """The reader's arrays plug into the kind: a file of 6-coil golden-angle spokes in k-space
    points (the reader normalises them to cycles per pixel), maps estimated from the data,
    CG-SENSE within 3 % of the image."""
    pytest.importorskip("ismrmrd")
    from mri_n2n.coils import birdcage_maps
    from mri_n2n.io.noncartesian import read_ismrmrd_noncartesian, write_ismrmrd_noncartesian

    n = 64
    traj = trajectory_law("golden-radial", (n, n), spokes=32).trajectory[:32]
    maps = birdcage_maps((n, n), 6)
    i = torch.arange(n, dtype=torch.float32)[:, None] - n // 2
    j = torch.arange(n, dtype=torch.float32)[None] - n // 2
    img = (torch.sigmoid(n / 2.5 - torch.sqrt(i**2 + (1.3 * j) ** 2)) * (1 + 0.3 * torch.cos(i / 5)))
    img = img.to(torch.complex64)
    k = NonCartesianAcquisition(torch.ones(32, dtype=torch.bool), traj, (n, n), maps).forward(img[None])
    path = tmp_path / "radial.h5"
    write_ismrmrd_noncartesian(path, k.numpy(), traj.numpy() * n, (n, n), trajectory_type="goldenangle")
    nc = read_ismrmrd_noncartesian(path)
    assert np.allclose(nc.trajectory, traj.numpy(), atol=1e-5)
    est = NonCartesianAcquisition.estimate_maps(nc.kspace, nc.trajectory, nc.matrix)
    acq = NonCartesianAcquisition.from_arrays(nc.kspace, nc.trajectory, nc.matrix, est)
    rec = acq.sense(lam=1e-4, iters=40)[0]
    assert float((rec.abs() - img.abs()).norm() / img.abs().norm()) < 0.03
    # reconstruct's maps: the kind's estimator with NONCARTESIAN_MAPS, or the settings given
    from mri_n2n.acquisition import acquisition_kind
    from mri_n2n.reconstruction.noncartesian import NONCARTESIAN_KIND, NONCARTESIAN_MAPS, inference_maps

    kind = acquisition_kind(NONCARTESIAN_KIND)
    assert NONCARTESIAN_MAPS["method"] == "espirit" and torch.equal(inference_maps(kind, nc), est)
    walsh = inference_maps(kind, nc, {"method": "walsh"})
    assert torch.equal(walsh, NonCartesianAcquisition.estimate_maps(nc.kspace, nc.trajectory, nc.matrix,
                                                                    method="walsh"))
    assert not torch.allclose(walsh, est, atol=1e-3)
    k4 = inference_maps(kind, nc, {"method": "espirit", "kernel": 4, "crop": 0.0})
    assert torch.allclose(rss(k4, 1), torch.ones(1))  # no support crop: every pixel has maps
    with pytest.raises(ValueError, match="coil-map settings .*'kernal'"):
        inference_maps(kind, nc, {"method": "espirit", "kernal": 4})


def test_a_mixture_holds_every_family_at_every_acceleration_and_draws_one_per_batch():
    """``--trajectory mixed``: every family at each of the accelerations, each protocol its own
    exact law; a batch draws one protocol (uniformly), a seed fixes one; the mixture stands in for
    its golden-angle base where one protocol is needed."""
    law = trajectory_law("mixed", (N, N), acceleration=4.0)
    assert isinstance(law, TrajectoryMixture) and law.name == "mixed"
    assert len(law.components) == len(FAMILIES) * len(MIXED_ACCELERATIONS)
    for part in law.components:  # each is the family's own law at its acceleration
        twin = trajectory_law(part.name, (N, N), acceleration=part.nyquist / part.count)
        assert part.count == twin.count and torch.equal(part.trajectory, twin.trajectory)
    assert {(c.name, c.count) for c in law.components} == {
        (f, trajectory_law(f, (N, N), acceleration=a).count) for f in FAMILIES for a in MIXED_ACCELERATIONS
    }
    base = trajectory_law("golden-radial", (N, N), acceleration=4.0)
    assert law.count == base.count and torch.equal(law.trajectory, base.trajectory)
    g = torch.Generator().manual_seed(0)
    picks = [law.component(generator=g) for _ in range(3000)]
    counts = torch.tensor([sum(p is c for p in picks) for c in law.components], dtype=torch.float32)
    assert float(counts.min()) > 0.6 * 3000 / len(law.components)  # uniform over the protocols
    assert law.component() is law.base  # fixed draws: the base protocol
    d = law.describe()
    assert d["trajectory"] == "mixed" and len(d["components"]) == len(law.components)
    assert "spiral" in law.summary() and "8x" in law.summary()


def test_a_mixed_corruption_pairs_a_batch_on_one_protocol_with_its_exact_law():
    from mri_n2n.corruptions.mri import MRIUndersampling

    law = trajectory_law("mixed", (N, N))
    corr = MRIUndersampling(law, kind="noncartesian", image_shape=(N, N), complex_data=True)
    x = _smooth().real.expand(3, 1, N, N).clone()
    seen = set()
    for step in range(6):
        pair = corr.pair(x, generator=torch.Generator().manual_seed(step), target="noisy")
        a, b = pair.acq, pair.target_acq
        part = next(c for c in law.components if c.trajectory.shape == a.trajectory.shape
                    and torch.equal(c.trajectory, a.trajectory))
        seen.add(id(part))
        assert torch.equal(b.trajectory, a.trajectory)  # both halves of the pair: one protocol
        assert bool((a.sampled.sum(-1) == part.count).all()) and bool((b.sampled.sum(-1) == part.count).all())
        torch.testing.assert_close(a.keep_prob, part.keep_probability())
    assert len(seen) > 1  # batches draw different protocols
    val = [corr.validation_pair(x, torch.tensor([5, 6, 7])) for _ in range(2)]
    assert torch.equal(val[0].acq.sampled, val[1].acq.sampled)  # fixed by the seeds
    # on the base protocol whatever the batching: a slice's draw does not depend on its batch
    assert torch.equal(val[0].acq.trajectory, law.base.trajectory)
    one = corr.validation_pair(x[1:2], torch.tensor([6]))
    assert torch.equal(one.acq.sampled[0], val[0].acq.sampled[1])


def _band_error(lo: float, hi: float, seed: int) -> torch.Tensor:
    """A random complex image error ``(1, 2, N, N)`` (real/imag channels) whose spectrum fills the
    ring ``lo <= |k| < hi`` (cycles per pixel)."""
    g = torch.Generator().manual_seed(seed)
    k = torch.fft.fftfreq(N)
    r = (k[:, None] ** 2 + k[None] ** 2).sqrt()
    white = torch.randn(N, N, dtype=torch.complex64, generator=g)
    e = torch.fft.ifft2(torch.fft.fft2(white) * ((r >= lo) & (r < hi)))
    return torch.stack([e.real, e.imag])[None]


@pytest.mark.parametrize("name", ["golden-radial", "spiral"])
def test_the_density_weighted_kspace_loss_estimates_the_image_l2(name):
    """``kspace_density`` (``d / p``) is, over the law's draws, the image-domain L2 of the error on
    the trajectory's disc at every frequency band; ``kspace`` (``1 / p``) weighs each band by the
    trajectory's density, so a band near the centre counts many times one near the edge."""
    from mri_n2n.losses import get_loss

    law = trajectory_law(name, (N, N), acceleration=4.0)
    full = NonCartesianAcquisition.for_law(law, (N, N))
    g = torch.Generator().manual_seed(5)
    draws = law.sample(48, generator=g)
    zero = torch.zeros(1, N, N, dtype=torch.complex64)
    ratios = {}
    for band, (lo, hi) in {"low": (0.0, 0.12), "high": (0.3, 0.45)}.items():
        err = _band_error(lo, hi, seed=7)
        image_l2 = float(err.square().sum()) / err.numel()
        for loss in ("kspace", "kspace_density"):
            vals = []
            for keep in draws:
                a2 = full.observe(full.full(zero[:, None]), keep[None], law.keep_probability())
                vals.append(float(get_loss(loss)(err, torch.zeros_like(err), a2)))
            ratios[band, loss] = float(np.mean(vals)) / image_l2
    for band in ("low", "high"):
        assert abs(ratios[band, "kspace_density"] - 1) < 0.15, ratios
    # the plain 1/p weighting overweights the centre against the edge several times over
    assert ratios["low", "kspace"] / ratios["high", "kspace"] > 3, ratios
    assert 0.8 < ratios["low", "kspace_density"] / ratios["high", "kspace_density"] < 1.25, ratios


def test_on_the_grid_the_density_weighting_is_the_inverse_one():
    from mri_n2n.losses import get_loss
    from mri_n2n.physics import Acquisition

    g = torch.Generator().manual_seed(2)
    keep = torch.rand(2, 1, N, N, generator=g) < 0.3
    p = torch.full((N, N), 0.3)
    full = Acquisition.fully_sampled((2, 1, N, N))
    x = torch.randn(2, 1, N, N, dtype=torch.complex64, generator=g)
    a2 = full.observe(full.full(x), keep, p)
    out = torch.randn(2, 2, N, N, generator=g)
    assert a2.density() is None
    torch.testing.assert_close(get_loss("kspace_density")(out, out, a2), get_loss("kspace")(out, out, a2))
