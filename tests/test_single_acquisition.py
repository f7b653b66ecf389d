"""Single-acquisition self-supervision (SSDU, Noisier2Noise): the split laws, the weighted loss's
unbiasedness, one fixed acquisition per slice, and training on undersampled-only files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mri_n2n.config import Config, ConfigError, resolve_config
from mri_n2n.corruptions.mri import MRIUndersampling
from mri_n2n.data import collate
from mri_n2n.data.kspace import build_kspace_datasets
from mri_n2n.data.synthetic import phantom_volume, write_fastmri_h5
from mri_n2n.fft import fft2c, ifft2c
from mri_n2n.io import VolumeError
from mri_n2n.losses import kspace_loss
from mri_n2n.mask_estimation import estimate_family
from mri_n2n.masks import _mirror2, make_family
from mri_n2n.physics import Acquisition, CartesianAcquisition, SpectralSampling
from mri_n2n.splits import SPLIT_TARGETS, make_split, split_loss_density

CASES = [  # (acquisition family, complex data)
    ("exp", False),
    ("exp", True),
    ("lines_random", True),
    ("lines_random", False),
    ("lines_equispaced", True),
]


def _corruption(family: str, complex_data: bool, kind: str, shape=(24, 24), shift=0) -> MRIUndersampling:
    lines = family.startswith("lines")
    kw = {"acceleration": 3.0, "center_fraction": 0.1} if lines else {"fraction": 0.25}
    fam = make_family(family, shape, hermitian=not complex_data, **kw)
    p = fam.keep_probability() if complex_data else fam.real_keep_probability()
    split = make_split(kind, fam, p, 0.4, hermitian=not complex_data)
    return MRIUndersampling(fam, complex_data=complex_data, split=split, max_shift=shift)


@pytest.mark.parametrize("kind", SPLIT_TARGETS)
@pytest.mark.parametrize("family,complex_data", CASES)
def test_split_is_disjoint_covers_the_acquisition_and_holds_out_rho(kind, family, complex_data):
    c = _corruption(family, complex_data, kind)
    mask = c.draw_masks(64, torch.Generator().manual_seed(1))
    if not complex_data:
        mask = mask | _mirror2(mask)
    inp, held = c.split.split(mask, torch.Generator().manual_seed(2))
    assert not bool((inp & held).any())
    assert torch.equal(inp | held, mask)
    if not complex_data:  # real images: both sets stay conjugate-symmetric
        assert torch.equal(inp, _mirror2(inp)) and torch.equal(held, _mirror2(held))
    # the law holds out rho of the acquired bins in expectation (solved exactly)
    p, q = c.keep_prob.double(), c.split.keep_probability().double()
    assert float((p * (1 - q)).sum() / p.sum()) == pytest.approx(0.4, abs=1e-4)


@pytest.mark.parametrize("kind", SPLIT_TARGETS)
def test_split_keep_rate_equals_its_law(kind):
    c = _corruption("exp", True, kind)
    keep = c.split.draw(6000, torch.Generator().manual_seed(3))
    q = c.split.keep_probability()
    # binomial standard error at 6000 draws is at most 0.0065: allow 5 of them
    assert float((keep.float().mean(0) - q).abs().max()) < 0.033


#: Where the split's law is exact given the input: independent bins (2-D acquisitions), or whole
#: lines split by whole lines (Noisier2Noise). SSDU's point split of line acquisitions is not
#: (a column with a bin in the input is known to be acquired); its default loss is unweighted.
EXACT = [
    ("ssdu", "exp", True),
    ("ssdu", "exp", False),
    ("noisier2noise", "exp", True),
    ("noisier2noise", "exp", False),
    ("noisier2noise", "lines_random", True),
]


@pytest.mark.parametrize("kind,family,complex_data", EXACT)
def test_held_out_law_given_the_input_is_the_loss_density(kind, family, complex_data):
    """P(k held out | k not in the input) = p (1 - q) / (1 - p q): the frequency over draws."""
    c = _corruption(family, complex_data, kind)
    n = 6000
    mask = c.draw_masks(n, torch.Generator().manual_seed(4))
    if not complex_data:
        mask = mask | _mirror2(mask)
    inp, held = c.split.split(mask, torch.Generator().manual_seed(5))
    freq = held.double().sum(0) / (~inp).double().sum(0).clamp_min(1)
    want = split_loss_density(c.keep_prob, c.split.keep_probability()).double()
    outside = (~inp).double().sum(0) > 500
    assert float((freq - want)[outside].abs().max()) < 0.06
    # and the input keeps each bin with probability p q (its 1/p compensation)
    pq = (c.keep_prob * c.split.keep_probability()).double()
    assert float((inp.double().mean(0) - pq).abs().max()) < 0.03


@pytest.mark.parametrize("kind,family", [(k, f) for k, f, c in EXACT if c])
def test_weighted_heldout_loss_is_unbiased_for_the_fully_sampled_loss(kind, family):
    """For a fixed estimate, the mean over (acquisition, split) draws of the 1/P-weighted held-out
    k-space loss of the projected estimate equals the mean of its fully sampled loss."""
    torch.manual_seed(0)
    c = _corruption(family, True, kind, shape=(16, 16))
    x = torch.randn(1, 2, 16, 16)  # the truth, complex
    f = x + 0.5 * torch.randn(1, 2, 16, 16)  # a fixed estimate
    n = 4000
    xs = x.expand(n, -1, -1, -1)
    k = fft2c(torch.complex(xs[:, 0:1], xs[:, 1:2]))
    masks = c.draw_masks(n, torch.Generator().manual_seed(6))
    acq = Acquisition.fully_sampled(k.shape).observe(k, masks, c.keep_prob)
    pair = c.single_pair(acq, generator=torch.Generator().manual_seed(7), seeds=torch.arange(n))  # measured
    out = c.data_consistency(f.expand(n, -1, -1, -1), pair.acq)
    heldout = kspace_loss(out, pair.target, pair)  # the mean over the n draws
    full = ((out - xs) ** 2).mean()  # the fully sampled loss (Parseval: the same in k-space)
    assert float(heldout) == pytest.approx(float(full), rel=0.05)
    # a flat weight keeps the minimiser but not the value: it is biased for this estimate
    flat = kspace_loss(out, pair.target, pair, weighting="flat")
    assert abs(float(flat) / float(full) - 1) > 0.05


def test_one_acquisition_per_slice_fixed_by_its_identity():
    c = _corruption("exp", False, "ssdu", shape=(32, 32), shift=4)
    x = torch.rand(2, 1, 32, 32)
    seeds = torch.tensor([11, 12])
    a = c.pair(x, generator=torch.Generator().manual_seed(0), target="ssdu", seeds=seeds)
    b = c.pair(x, generator=torch.Generator().manual_seed(1), target="ssdu", seeds=seeds)
    acq_a = a.acq.sampled | a.target_acq.sampled
    acq_b = b.acq.sampled | b.target_acq.sampled
    assert torch.equal(acq_a, acq_b)  # the same acquisition whatever the step
    assert not torch.equal(a.acq.sampled, b.acq.sampled)  # a fresh split every step
    assert not torch.equal(acq_a[0], acq_a[1])  # each slice has its own
    with pytest.raises(ValueError, match="identity"):
        c.pair(x, generator=torch.Generator(), target="ssdu")


def test_measured_batch_input_is_the_split_zero_filled_image():
    c = _corruption("lines_random", True, "noisier2noise", shape=(16, 16))
    g = torch.Generator().manual_seed(0)
    k = torch.randn(2, 16, 16, dtype=torch.complex64)
    m = c.draw_masks(2, g)
    p = c.keep_prob.expand(2, -1, -1)
    # two measured items (as undersampled files yield them) collated into one batch
    one = [CartesianAcquisition(m[i : i + 1], None, None, keep_prob=p[i : i + 1]) for i in range(2)]
    items = [(a.with_data(k[i : i + 1, None]), i) for i, a in enumerate(one)]
    batch, ids = collate(items)
    assert isinstance(batch, Acquisition) and torch.equal(ids, torch.tensor([0, 1]))
    assert torch.equal(batch.sampled, m) and torch.equal(batch.keep_prob, p) and batch.batch_size == 2
    torch.testing.assert_close(batch.y[:, 0], k * m)
    g2 = torch.Generator().manual_seed(1)
    pair = c.pair(batch, generator=g2, target="noisier2noise", seeds=torch.tensor([1, 2]))
    inp, held = pair.acq.sampled, pair.target_acq.sampled
    assert torch.equal(inp | held, m) and not bool((inp & held).any())
    pq = c.keep_prob * c.split.keep_probability()
    want = ifft2c(torch.where(inp, k / pq.clamp_min(1e-12), 0))
    torch.testing.assert_close(pair.input, torch.stack([want.real, want.imag], 1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pair.target_acq.y[:, 0], k * held)
    torch.testing.assert_close(pair.acq.y[:, 0], k * inp)  # the input's own measurements
    torch.testing.assert_close(pair.target_acq.keep_prob, split_loss_density(p, c.split.keep_probability()))


def test_config_rules_for_single_acquisition_targets():
    cfg, _ = resolve_config(Config(target="ssdu", preset="cpu"))
    assert cfg.loss == "kspace_flat" and cfg.augment is False  # SSDU's unweighted loss
    cfg, _ = resolve_config(Config(target="noisier2noise", preset="paper"))
    assert cfg.loss == "kspace" and cfg.augment is False  # Millard and Chiew's weighting
    with pytest.raises(ConfigError, match="augment"):
        resolve_config(Config(target="ssdu", augment=True))
    with pytest.raises(ConfigError, match="held-out k-space"):
        resolve_config(Config(target="noisier2noise", loss="l2"))
    with pytest.raises(ConfigError, match="split"):
        resolve_config(Config(target="ssdu", split=1.0))


def _undersampled_folder(root: Path, n_files: int = 3) -> Path:
    root.mkdir()
    for i in range(n_files):
        vol = phantom_volume((32, 32, 6), seed=i).astype(np.float32)
        imgs = np.moveaxis(vol, 2, 0) / vol.max()
        fam = make_family("lines_random", (64, 32), acceleration=3, center_fraction=0.12)
        m = fam.sample(generator=torch.Generator().manual_seed(i))[0].numpy().astype(np.float32)
        write_fastmri_h5(
            root / f"u{i}.h5", imgs, mask=m, oversample=2, noise_std=0.005, seed=i, reference=False
        )
    return root


def test_undersampled_files_train_and_reconstruct_without_any_reference(tmp_path, monkeypatch):
    data = _undersampled_folder(tmp_path / "acq")
    for f in data.iterdir():  # the test's files hold no fully sampled reference
        with h5py.File(f) as h:
            assert not any(k.startswith("reconstruction") for k in h)
    import mri_n2n.data.kspace as kmod

    def no_reference(*a, **k):
        raise AssertionError("a fully sampled reference was read")

    monkeypatch.setattr(kmod, "kspace_to_image", no_reference)  # the fully sampled path
    train_set, valid_set = build_kspace_datasets(data, size=32, undersampled=True)
    item = train_set[0][0]
    assert isinstance(item, Acquisition) and item.keep_prob is not None  # a measured acquisition
    assert item.y.shape == (1, 1, 32, 32) and item.sampled.shape == item.keep_prob.shape == (1, 32, 32)
    assert not bool(item.y[:, 0][~item.sampled].abs().any())  # zero off the mask
    with pytest.raises(VolumeError, match="--target ssdu"):
        build_kspace_datasets(data, size=32)

    from mri_n2n.training import train

    out = tmp_path / "run"
    cfg = Config(dataset="kspace", data_dir=str(data), size=32, preset="tiny", target="noisier2noise",
                 max_steps=6, steps_per_epoch=3, val_limit=4, quiet=True, tensorboard=False, out=str(out))
    summary = train(cfg)
    assert summary["val_psnr"] is None and summary["val_heldout_loss"] > 0
    ckpt = out / "checkpoints" / "last.pt"
    saved = torch.load(ckpt, weights_only=True)
    assert saved["corruption"]["split"]["kind"] == "noisier2noise"
    assert saved["corruption"]["measured_law"]["family"] == "lines"
    rec = tmp_path / "rec"
    r = subprocess.run([sys.executable, "-m", "mri_n2n", "reconstruct", "--checkpoint", str(ckpt),
                        "--out", str(rec), str(data / "u0.h5"), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "trained on" not in r.stderr  # the checkpoint knows the files' own law
    report = json.loads((rec / "report.json").read_text())
    assert report["inputs"][0]["status"] == "ok"
    assert report["inputs"][0]["mask_law"]["source"] == "estimated"
    assert list(rec.glob("u0_recon*"))


def _conditional_held_out(inp0, omega, keep, n):
    """``n`` held-out sets drawn from their law given the input set ``inp0`` (H, W).

    ``omega``, ``keep``: many independent (acquisition, split) draws ``(P, H, W)``. Bins of
    different partner pairs are independent in both (2-D Bernoulli laws), so the held-out
    indicator of a bin ``k`` outside ``inp0`` given the whole input set has the law it has given
    only ``k`` outside the input: the ``j``-th sample takes, for every bin, the ``j``-th draw in
    which that bin is outside the draw's input (partners share their draws, so sets stay
    Hermitian). Bins in ``inp0`` are never held out."""
    avail = ~(omega & keep)
    rank = avail.long().cumsum(0) - 1
    take = avail & (rank < n)
    held = torch.zeros(n, *inp0.shape, dtype=torch.bool)
    j, a, b = take.nonzero(as_tuple=True)
    held[rank[j, a, b], a, b] = (omega & ~keep)[j, a, b]
    outside = ~inp0
    assert bool((avail.sum(0) >= n)[outside].all())  # enough draws for every bin the input lacks
    return held & outside


@pytest.mark.parametrize("law", ["given", "estimated"])
@pytest.mark.parametrize("kind", SPLIT_TARGETS)
def test_weighted_heldout_loss_given_the_input_is_the_fully_sampled_loss_on_what_it_lacks(kind, law):
    """The statement of docs/guide/single-acquisition.md ("The split laws"), conditionally: for one
    fixed input set (one acquisition and one split), the expectation over the held-out set given
    that input of the weighted held-out loss of the network's output (a fixed function of the input)
    is the fully sampled loss on the bins the input lacks, and nothing on the others, except the
    bins the split never holds out (SSDU's central block: missed by the acquisition, they get no
    loss at all). Real images with the paper's Hermitian 2-D masks; ``law="estimated"``: the
    compensation and weights use the law estimated from 400 of the acquisition's masks (the old
    estimate took them for independent masks: weights about half)."""
    shape = (16, 16)
    true = make_family("exp", shape, fraction=0.3, hermitian=True)
    g = torch.Generator().manual_seed(0)
    fam = true if law == "given" else estimate_family(true.sample(400, generator=g))
    split = make_split(kind, fam, fam.real_keep_probability(), 0.4, hermitian=True)
    c = MRIUndersampling(fam, complex_data=False, split=split)
    x = torch.rand(1, 1, *shape, generator=g)  # the truth, a real image
    k = fft2c(x)
    inp0 = (true.sample(1, generator=g) & split.draw(1, g))[0]
    pool, n = 40000, 2000
    held = _conditional_held_out(inp0, true.sample(pool, generator=g), split.draw(pool, g), n)
    inp = inp0.expand(n, -1, -1)
    mask = inp | held
    pair = c._split_pair(SpectralSampling(mask, k * mask[:, None], keep_prob=c.keep_prob), inp)
    f = x + 0.3 * torch.randn(1, 1, *shape, generator=g)  # the network's estimate from the input
    out = c.data_consistency(f.expand(n, -1, -1, -1), pair.acq)
    assert torch.equal(out, out[:1].expand_as(out))  # one input, one output
    err = (fft2c(out[0, 0]) - k[0, 0]).abs().square()
    # bins the split never holds out (q = 1: SSDU's 5 x 5 block) get no loss when the acquisition
    # missed them; every other bin the input lacks is held out with a positive probability
    never = split.keep_probability() >= 1
    missable = never & (true.real_keep_probability() < 1)
    assert bool(missable.any()) == (kind == "ssdu") and not bool(held[:, never].any())
    lacking = float(err[~inp0 & ~never].sum()) / inp0.numel()  # the fully sampled loss there
    assert float(err[inp0].max()) < 1e-10  # data consistency: nothing on the input's bins
    heldout = float(kspace_loss(out, pair.target, pair))  # the mean over the n held-out sets
    # over seeds the ratio's standard deviation is 1 % (the given law) and 1.2 to 2 % (estimated)
    assert heldout == pytest.approx(lacking, rel=0.08 if law == "estimated" else 0.06)


@pytest.mark.parametrize("acquisition", ["gaussian", "lines_lattice", "lines_random"])
def test_second_mask_of_an_estimated_law_keeps_the_acquisitions_kind(acquisition):
    """Noisier2Noise on files whose law is estimated: the second mask has the estimated density's
    own shape (2-D: ``d ** gamma``, not an ``exp`` density) or the file's own fully sampled centre
    (lines: not the 8 % default), and by Monte Carlo the split holds out ``rho`` of the acquired
    bins."""
    g = torch.Generator().manual_seed(0)
    lines = acquisition.startswith("lines")
    if lines:  # fastMRI's 8x lattice (4 % centre) and random lines with a 12 % centre, complex data
        cf = {"lines_lattice": 0.04, "lines_random": 0.12}[acquisition]
        acc = {"lines_lattice": 8, "lines_random": 4}[acquisition]
        true = make_family(acquisition, (16, 96), acceleration=acc, center_fraction=cf)
    else:  # a Gaussian density, real images (Hermitian masks)
        true = make_family("gaussian", (32, 32), fraction=0.25, hermitian=True)
    est = estimate_family(true.sample(24, generator=g))
    p = est.keep_probability() if lines else est.real_keep_probability()
    split = make_split("noisier2noise", est, p, 0.4, hermitian=not lines)
    second = split.family.keep_probability().double()
    n = 4000
    omega, lam = true.sample(n, generator=g), split.draw(n, g)
    assert float((omega & ~lam).sum() / omega.sum()) == pytest.approx(0.4, abs=0.015)
    if lines:
        centre = true.keep_probability()[0] == 1
        assert torch.equal(second[0] >= 1, centre)  # the file's centre, always kept
        assert bool(lam[:, 0, centre].all()) and not bool(lam[:, 0, ~centre].all(0).any())
    else:
        d = est.keep_probability().double()
        inner = (d < 0.999) & (d > 1e-3)
        gamma = second[inner].log() / d[inner].log()  # one power of the estimated density
        assert float(gamma.std() / gamma.mean()) < 1e-3
        rate = lam.double().mean(0)  # and the draws follow it
        se = (second * (1 - second) / n).sqrt().clamp_min(1e-12)
        assert float(((rate - second).abs() / se)[(second > 0) & (second < 1)].max()) < 5.5
