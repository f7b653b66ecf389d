"""The MRI corruption: pair statistics, independence, data consistency, determinism."""

import pytest
import torch

from mri_n2n.config import Config
from mri_n2n.corruptions import MRIUndersampling, random_shift, seeded_generator
from mri_n2n.fft import fft2c
from mri_n2n.losses import kspace_loss
from mri_n2n.sampling import exp_decay_density, hermitian_partner


def _phantom(n=32, b=1):
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    img = ((xx**2 / 0.6 + yy**2 / 0.8) < 1).float() * 0.6 + ((xx - 0.2) ** 2 + yy**2 < 0.05).float() * 0.4
    return img.expand(b, 1, n, n).clone()


def test_n2n_targets_average_to_clean():
    clean = _phantom(32)
    corr = MRIUndersampling(exp_decay_density(32, fraction=0.3), max_shift=0)
    g = seeded_generator(0)
    acc = torch.zeros_like(clean)
    n = 1500
    first = None
    for _ in range(n // 50):
        p = corr.pair(clean.expand(50, 1, 32, 32), generator=g, target="noisy")
        acc += p.target.sum(0, keepdim=True)
        first = p.target[:1] if first is None else first
    mean = acc / n
    err_mean = (mean - clean).norm() / clean.norm()
    err_single = (first - clean).norm() / clean.norm()
    assert err_mean < 0.05
    assert err_mean < err_single / 5


def test_n2c_target_is_clean():
    clean = _phantom(32, b=4)
    corr = MRIUndersampling(exp_decay_density(32), max_shift=0)
    p = corr.pair(clean, generator=seeded_generator(1), target="clean")
    assert torch.equal(p.target, clean)
    with pytest.raises(ValueError, match="target"):
        corr.pair(clean, generator=seeded_generator(1), target="mean")


def _observed_masks(x: torch.Tensor, density: torch.Tensor, n: int) -> torch.Tensor:
    """The sampled frequencies of a zero-filled image of a centred delta: its compensated spectrum
    is ``1 / (n p)`` on the mask and 0 elsewhere (the delta's spectrum is ``1 / n`` everywhere)."""
    return (fft2c(x)[:, 0].abs() * n * density) > 0.5


def test_pair_masks_are_independent_with_the_density():
    """The Noise2Noise input and target see independent masks: over many pairs each frequency is in
    both with probability p^2 (p: its Hermitian-symmetrised density), not p as for a shared mask,
    and each mask alone keeps it with probability p. Tolerances: 5 binomial standard errors."""
    n_side, batch, calls = 32, 500, 4
    density = exp_decay_density(n_side, fraction=0.3)
    pi, pj = hermitian_partner(n_side), hermitian_partner(n_side)
    p = (0.5 * (density + density[pi][:, pj])).double()  # each partner pair is one draw
    clean = torch.zeros(batch, 1, n_side, n_side)
    clean[:, :, n_side // 2, n_side // 2] = 1.0  # flat spectrum: every mask is visible in the output
    corr = MRIUndersampling(density, max_shift=8)  # the shift moves the delta: only phases change
    g = seeded_generator(11)
    kept_in = torch.zeros(n_side, n_side, dtype=torch.float64)
    kept_t = torch.zeros_like(kept_in)
    both = torch.zeros_like(kept_in)
    for _ in range(calls):
        pair = corr.pair(clean, generator=g, target="noisy")
        m_in = _observed_masks(pair.input, density, n_side)
        m_t = _observed_masks(pair.target, density, n_side)
        assert torch.equal(m_in, pair.acq.mask)  # the read-out is exact
        assert len(torch.unique(m_in.flatten(1), dim=0)) == batch  # a mask of its own per sample
        kept_in += m_in.sum(0)
        kept_t += m_t.sum(0)
        both += (m_in & m_t).sum(0)
    n = batch * calls
    # one term per independent draw: the canonical bin of every Hermitian pair
    lin = torch.arange(n_side * n_side).reshape(n_side, n_side)
    canonical = lin <= lin[pi][:, pj]
    for counts in (kept_in, kept_t):  # each mask keeps a frequency with probability p
        sd = (n * p * (1 - p)).sqrt()
        assert ((counts - n * p).abs() <= 5 * sd + 1e-9)[canonical].all()
    q = p * p
    sd = (n * q * (1 - q)).sqrt()
    z = (both - n * q) / sd.clamp_min(1e-12)
    # per frequency (where the binomial is near normal): P(both kept) = p^2
    testable = canonical & (n * q * (1 - q) >= 10)
    assert testable.sum() > 100
    assert z[testable].abs().max() < 5, z[testable].abs().max()
    # pooled over all frequencies: the total overlap is that of independent masks...
    total, expect = both[canonical].sum(), (n * q)[canonical].sum()
    pooled_sd = (n * q * (1 - q))[canonical].sum().sqrt()
    assert abs(total - expect) < 5 * pooled_sd, (total, expect, pooled_sd)
    # ...far from that of a shared mask (n p), which this test would have caught
    shared = (n * p)[canonical].sum()
    assert shared - expect > 50 * pooled_sd


def test_projection_restores_measured_frequencies():
    clean = _phantom(32, b=2)
    corr = MRIUndersampling(exp_decay_density(32), max_shift=8)
    p = corr.pair(clean, generator=seeded_generator(2))
    out = corr.project(torch.randn(2, 1, 32, 32), p.acq)
    k = fft2c(out)[:, 0]
    m = p.acq.mask
    assert torch.allclose(k[m], p.acq.y[:, 0][m], atol=1e-5)
    assert not out.is_complex() and out.dtype == torch.float32


def test_input_is_real_density_compensated_zero_fill():
    clean = _phantom(32, b=2)
    d = exp_decay_density(32)
    corr = MRIUndersampling(d, max_shift=0)
    p = corr.pair(clean, generator=seeded_generator(3))
    # the input's spectrum is y / p on the mask and 0 elsewhere
    k = fft2c(p.input)[:, 0]
    m = p.acq.mask
    expect = torch.where(m, p.acq.y[:, 0] / d, torch.zeros_like(k))
    assert torch.allclose(k, expect, atol=1e-4)


def test_validation_pairs_are_fixed_per_identity():
    clean = _phantom(32, b=3)
    corr = MRIUndersampling(exp_decay_density(32), max_shift=8)
    a = corr.validation_pair(clean, torch.tensor([5, 6, 7]))
    b = corr.validation_pair(clean, torch.tensor([5, 6, 7]))
    c = corr.validation_pair(clean, torch.tensor([5, 6, 8]))
    assert torch.equal(a.input, b.input) and torch.equal(a.target, clean)
    assert torch.equal(a.input[:2], c.input[:2]) and not torch.equal(a.input[2], c.input[2])


def test_random_shift_is_circular_and_bounded():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).expand(6, 1, 4, 4)
    y = random_shift(x, 1, seeded_generator(4))
    for i in range(6):
        found = any(
            torch.equal(torch.roll(x[i], (dy, dx), (-2, -1)), y[i]) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
        )
        assert found
    assert torch.equal(random_shift(x, 0, seeded_generator(4)), x)


def test_complex_data_and_line_masks_from_config():
    cfg = Config(density="lines_random", acceleration=4, center_fraction=0.1, shift=0)
    corr = MRIUndersampling.from_config(cfg.replace(complex=True), (32, 32))
    clean = torch.randn(2, 2, 32, 32)
    p = corr.pair(clean, generator=seeded_generator(5))
    assert p.input.shape == (2, 2, 32, 32)
    m = p.acq.mask
    assert torch.equal(m, m[:, :1].expand_as(m))  # whole lines
    out = corr.project(torch.randn(2, 2, 32, 32), p.acq)
    k = fft2c(torch.complex(out[:, 0], out[:, 1]))
    assert torch.allclose(k[m], p.acq.y[:, 0][m], atol=1e-5)
    default = MRIUndersampling.from_config(Config(), (64, 64))
    assert default.max_shift == 16 and abs(default.keep_prob.mean().item() - 0.1) < 1e-4


def test_complex_training_on_magnitude_data_gets_a_smooth_phase():
    """``--complex`` on a magnitude dataset used to reach the FFT with an empty second channel."""
    from mri_n2n.corruptions.mri import smooth_phase

    cfg = Config(density="lines_equispaced", acceleration=4, complex=True, shift=0)
    corr = MRIUndersampling.from_config(cfg, (32, 32))
    mag = _phantom(32, b=3)
    pair = corr.pair(mag, generator=seeded_generator(0), target="clean")
    assert pair.input.shape == (3, 2, 32, 32) and pair.target.shape == (3, 2, 32, 32)
    # the target keeps the magnitude; its phase varies smoothly and differs between samples
    assert torch.allclose(pair.target.square().sum(1, keepdim=True).sqrt(), mag, atol=1e-5)
    z = smooth_phase(torch.ones(2, 1, 32, 32), seeded_generator(1))
    phase = torch.atan2(z[:, 1], z[:, 0])
    assert torch.allclose(z.square().sum(1), torch.ones(2, 32, 32), atol=1e-5)
    assert phase.diff(dim=-1).abs().max() < 0.5 and (phase[0] - phase[1]).abs().max() > 0.1
    # validation: the phase is seeded per sample, so the same seed gives the same pair
    a = corr.validation_pair(mag, torch.tensor([5, 6, 7]))
    b = corr.validation_pair(mag, torch.tensor([5, 6, 7]))
    assert torch.equal(a.input, b.input) and torch.equal(a.target, b.target)


def test_validation_masks_are_drawn_on_the_cpu(monkeypatch):
    """CPU and CUDA runs validate on the same masks: they come from CPU generators whatever the
    data's device (a 'meta' batch stands in for CUDA; the old code asked for a generator there)."""
    import mri_n2n.corruptions.mri as mri_mod

    devices = []
    real = mri_mod.seeded_generator

    def recording(seed, device="cpu"):
        devices.append(torch.device(device).type)
        return real(seed, device)

    monkeypatch.setattr(mri_mod, "seeded_generator", recording)
    corr = MRIUndersampling.from_config(Config(density="lines_random"), (32, 32))
    pair = corr.validation_pair(torch.zeros(2, 1, 32, 32, device="meta"), torch.tensor([11, 12]))
    assert pair.acq.mask.device.type == "meta" and devices and set(devices) == {"cpu"}
    cpu = corr.validation_pair(_phantom(32, b=2), torch.tensor([11, 12]))
    expect = torch.cat([corr.family.sample(1, generator=real(s)) for s in (11, 12)])
    assert torch.equal(cpu.acq.mask, expect)  # Hermitian draws: already complete


def test_kspace_noise_is_one_acquisition_shared_by_both_observations():
    cfg = Config(density="uniform", fraction=0.5, complex=True, shift=0, kspace_noise=0.1)
    corr = MRIUndersampling.from_config(cfg, (32, 32))
    clean = torch.cat([_phantom(32, b=64), torch.zeros(64, 1, 32, 32)], 1)
    pair = corr.pair(clean, generator=seeded_generator(3))
    k = fft2c(torch.complex(clean[:, :1], clean[:, 1:]))
    m1, m2 = pair.acq.mask[:, None], pair.target_acq.mask[:, None]
    n1 = pair.acq.y - k * m1
    n2 = pair.target_acq.y - k * m2
    both = m1 & m2
    assert torch.allclose(n1[both], n2[both])  # the same noisy acquisition
    noise = n1[m1]
    assert abs(noise.abs().square().mean().sqrt().item() - 0.1) < 0.005  # std 0.1 (complex)
    assert abs(noise.real.std().item() - 0.1 / 2**0.5) < 0.005
    assert pair.target.shape == clean.shape  # N2N target: the second observation, not clean
    n2c = corr.pair(clean, generator=seeded_generator(3), target="clean")
    assert torch.equal(n2c.target, clean)  # N2C: the clean image, no noise


def test_pair_carries_both_acquisitions():
    """A Noise2Noise pair holds the input's acquisition (compensation p) and the target's (its own
    mask, measurements and the loss's p); the k-space loss reads the target's acquisition, given
    the pair or that acquisition alone."""
    cfg = Config(density="uniform", fraction=0.5, complex=True, shift=0)
    corr = MRIUndersampling.from_config(cfg, (32, 32))
    clean = torch.cat([_phantom(32, b=2), torch.zeros(2, 1, 32, 32)], 1)
    pair = corr.pair(clean, generator=seeded_generator(4))
    assert torch.equal(pair.acq.keep_prob, corr.keep_prob)
    assert torch.equal(pair.target_acq.keep_prob, corr.keep_prob)
    assert not torch.equal(pair.acq.mask, pair.target_acq.mask)  # independent masks
    # the input is the zero-filled image of its own acquisition
    z = pair.acq.zero_filled()
    torch.testing.assert_close(pair.input, torch.cat([z.real, z.imag], 1))
    out = torch.randn(2, 2, 32, 32)
    assert torch.equal(corr.project(out, pair), corr.project(out, pair.acq))
    loss = float(kspace_loss(out, pair.target, pair))
    assert loss == float(kspace_loss(out, pair.target, pair.target_acq))
    residual = pair.target_acq.forward(torch.complex(out[:, :1], out[:, 1:])) - pair.target_acq.y
    weights = pair.target_acq.mask[:, None] / pair.target_acq.keep_prob
    want = (residual.abs().square() * weights).sum() / out.numel()
    assert abs(loss - float(want)) <= 1e-5 * float(want)
    # a clean target has no target acquisition: the k-space loss is the image L2 (Parseval)
    n2c = corr.pair(clean, generator=seeded_generator(4), target="clean")
    assert n2c.target_acq is None
    torch.testing.assert_close(kspace_loss(out, n2c.target, n2c), ((out - n2c.target) ** 2).mean())
