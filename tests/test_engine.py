"""One reconstruction engine: single-coil k-space, image volumes and multi-coil files all run
through :func:`mri_n2n.reconstruction.engine.stream_reconstruction`, and each gives what its
pipeline written out by hand gives (zero-filling with ``1 / p``, normalisation, the network,
data consistency, the output image convention), in the memory format training uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mri_n2n.reconstruction.engine as engine
from mri_n2n.coils import birdcage_maps
from mri_n2n.config import Config
from mri_n2n.data import volume_scale
from mri_n2n.data.synthetic import phantom_volume
from mri_n2n.data.synthetic_raw import write_fastmri_multicoil_h5
from mri_n2n.fft import fft2c, ifft2c, to_channels, to_complex
from mri_n2n.io.raw import read_raw
from mri_n2n.masks import complete_measurements, make_family
from mri_n2n.models import build_model
from mri_n2n.physics import Acquisition
from mri_n2n.reconstruction import Reconstructor, reconstruct_kspace, reconstruct_volume
from mri_n2n.reconstruction.engine import default_channels_last, simulated_masks

SIZE = 24


def _images(n: int = 3) -> np.ndarray:
    vol = phantom_volume((SIZE, SIZE, n), seed=3).astype(np.float32)
    return np.moveaxis(vol / vol.max(), 2, 0)


def _unrolled(channels: int) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model("unrolled", in_channels=channels, out_channels=channels, cascades=2, width=8, depth=3)
    return net.eval()


@pytest.fixture
def one_loop(monkeypatch):
    """Counts the calls of the one loop (every input path must go through it once)."""
    calls: list[dict] = []
    real = engine.stream_reconstruction

    def spy(model, **kw):
        calls.append(kw)
        return real(model, **kw)

    import mri_n2n.reconstruction.inputs as inputs
    import mri_n2n.reconstruction.multicoil as multicoil

    monkeypatch.setattr(inputs, "stream_reconstruction", spy)
    monkeypatch.setattr(multicoil, "stream_reconstruction", spy)
    return calls


def test_single_coil_kspace_is_the_pipeline_written_out(one_loop):
    """Complex network on measured k-space: the p99.5 scale of the compensated zero-filled
    magnitudes, the network on the compensated zero-filled image, the centred replacement of the
    measured bins, the magnitude in the input's units."""
    model = _unrolled(2)
    fam = make_family("lines_random", (SIZE, SIZE), acceleration=3, center_fraction=0.2)
    m = fam.sample(3, generator=torch.Generator().manual_seed(1))
    phase = torch.exp(1j * torch.linspace(0, 2, SIZE))[None, None, :]
    k = (fft2c(torch.from_numpy(_images()) * phase) * 7.0).to(torch.complex64)
    out = reconstruct_kspace(model, (k * m).numpy(), m.numpy(), fam.keep_probability(), keep_complex=True)
    assert len(one_loop) == 1 and one_loop[0]["channels"] == 2

    p = fam.keep_probability()
    y = k * m
    zf = ifft2c(y * m / p)
    scale = volume_scale(zf.abs().numpy(), "p99.5")
    assert out.scale == scale
    y = y * (1.0 / scale)
    z = ifft2c(y * m / p)
    acq = Acquisition(m, None, y[:, None], keep_prob=p)
    with torch.inference_mode():
        est = to_complex(model(to_channels(z), acq))
    x = ifft2c(torch.where(m, y, fft2c(est)))
    want = np.moveaxis((x.abs() * scale).numpy(), 0, -1)
    np.testing.assert_allclose(out.image, want, rtol=0, atol=1e-5 * want.max())
    got_k = fft2c(torch.from_numpy(np.moveaxis(out.complex_image, -1, 0)))
    assert torch.allclose(got_k[m], k[m], atol=1e-4 * float(k.abs().max()))  # the measurements kept
    assert out.sampled_fraction == pytest.approx(float(m.float().mean()), abs=1e-6)


def test_volume_study_of_a_real_model_is_the_pipeline_written_out(one_loop):
    """A one-channel model in a retrospective study: seeded Hermitian masks of the checkpoint's
    family, the volume's own scale, the Hermitian completion of a real image's measurements with
    the completion's keep probability, the centred projection, metrics against the volume."""
    model = _unrolled(1)
    vol = np.moveaxis(_images(), 0, -1) * 3.0
    fam = make_family("exp", (SIZE, SIZE), fraction=0.3, hermitian=True)
    res = reconstruct_volume(model, fam, vol, seed=4, normalize="max")
    assert len(one_loop) == 1 and one_loop[0]["channels"] == 1

    scale = volume_scale(vol, "max")
    ref = torch.from_numpy(np.moveaxis(vol, -1, 0).copy())
    m = simulated_masks(fam, range(3), 4)
    y = fft2c(ref[:, None]) * m[:, None] * (1.0 / scale)
    yc, mc = complete_measurements(y[:, 0], m)
    p = fam.real_keep_probability()
    acq = Acquisition(mc, None, yc[:, None], keep_prob=p)
    z = ifft2c(yc * mc / p)
    with torch.inference_mode():
        est = to_complex(model(z.real[:, None], acq), keepdim=True)[:, 0]
    x = ifft2c(torch.where(mc, yc, fft2c(est)))
    want = np.moveaxis((x.abs() * scale).numpy(), 0, -1)
    np.testing.assert_allclose(res.image, want, rtol=0, atol=1e-5 * want.max())
    assert res.metrics["psnr"] > res.metrics["psnr_zero_filled_plain"] - 10
    assert res.preview["zero_filled"].shape == (SIZE, SIZE) and res.preview["mask"].shape == (SIZE, SIZE)


def test_multicoil_file_runs_the_one_loop_and_its_preview_shows_what_its_metric_scores(tmp_path, one_loop):
    """A multi-coil file goes through the same loop; the preview's zero-filled image is the
    compensated SENSE-1 image in the output convention, the image ``psnr_zero_filled`` scores
    (one slice: the volume PSNR is the slice's)."""
    model = _unrolled(2)
    maps = birdcage_maps((SIZE, SIZE), 4).numpy()
    fam = make_family("lines_random", (SIZE, SIZE), acceleration=3, center_fraction=0.25)
    cols = fam.sample(generator=torch.Generator().manual_seed(0))[0].numpy().astype(np.float32)
    images = _images(1)
    write_fastmri_multicoil_h5(tmp_path / "mc.h5", images, maps, mask=cols, noise_std=0.005, seed=1)
    cfg = Config(dataset="kspace", density="lines_random", acceleration=3, center_fraction=0.25)
    rec = Reconstructor(model, cfg, device="cpu")
    out = rec.multicoil(read_raw(tmp_path / "mc.h5"))
    assert len(one_loop) == 1 and one_loop[0]["channels"] == 2
    pv, m = out.preview, out.metrics
    ref = pv["reference"].astype(np.float64)
    data_range = m["data_range"] / out.scale  # the preview is in network units

    def psnr(a: np.ndarray) -> float:
        return 20 * np.log10(data_range) - 10 * np.log10(np.mean((a.astype(np.float64) - ref) ** 2))

    assert psnr(pv["zero_filled"]) == pytest.approx(m["psnr_zero_filled"], abs=1e-3)
    assert psnr(pv["reconstruction"]) == pytest.approx(m["psnr"], abs=1e-3)


def test_inference_runs_in_the_memory_format_training_uses(monkeypatch):
    """The unrolled network (which the trainer runs channels-last on a CPU) sees channels-last
    inputs; the model's layout is restored afterwards; a U-Net stays contiguous; the outputs agree
    with the contiguous layout to float round-off."""
    cpu = torch.device("cpu")
    net = _unrolled(2)
    unet = build_model("unet", base=4, depth=1)
    assert default_channels_last(net, cpu) and not default_channels_last(unet, cpu)
    seen: list[bool] = []
    cl = torch.channels_last
    net.register_forward_pre_hook(lambda mod, args: seen.append(args[0].is_contiguous(memory_format=cl)))
    fam = make_family("lines_random", (SIZE, SIZE), acceleration=3, center_fraction=0.2)
    m = fam.sample(2, generator=torch.Generator().manual_seed(1))
    k = (fft2c(torch.from_numpy(_images(2)).to(torch.complex64)) * m).numpy()
    a = reconstruct_kspace(net, k, m.numpy(), fam.keep_probability())
    assert seen and all(seen)
    assert all(p.is_contiguous() for p in net.parameters())  # the default layout again
    seen.clear()
    b = reconstruct_kspace(net, k, m.numpy(), fam.keep_probability(), channels_last=False)
    assert seen and not any(seen)
    np.testing.assert_allclose(a.image, b.image, rtol=0, atol=1e-5 * b.image.max())
    net.to(memory_format=cl)  # a model already channels-last (the trainer's) stays so
    reconstruct_kspace(net, k, m.numpy(), fam.keep_probability(), channels_last=False)
    assert all(p.is_contiguous(memory_format=cl) for p in net.parameters() if p.ndim == 4)
