"""The units of multi-coil outputs: ``reconstruct`` writes fastMRI's image (the root-sum-of-squares
of the coil images of the per-coil data-consistent k-space), which is the data's own
root-sum-of-squares on a fully sampled file, outside the maps' support too; ``evaluate`` scores
what ``reconstruct`` writes, its baselines under the same convention."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mri_n2n.coils import birdcage_maps, rss
from mri_n2n.config import Config
from mri_n2n.data.measured import crop_readout
from mri_n2n.data.synthetic import phantom_volume
from mri_n2n.data.synthetic_raw import write_fastmri_multicoil_h5
from mri_n2n.fft import fft2c, ifft2c
from mri_n2n.io import VolumeError
from mri_n2n.io.multicoil import MultiCoilKSpace
from mri_n2n.io.raw import read_raw
from mri_n2n.masks import MASK_LAW_ATTR
from mri_n2n.models import build_model
from mri_n2n.physics import Acquisition
from mri_n2n.reconstruction import Reconstructor

SIZE = 32
CONFIG = Config(dataset="kspace", density="lines_random", acceleration=3, center_fraction=0.2)


def _images(slices: int = 3, size: int = SIZE) -> np.ndarray:
    vol = phantom_volume((size, size, slices), seed=4).astype(np.float32)
    return np.moveaxis(vol, 2, 0) / vol.max()


def _perturbed(model: torch.nn.Module, seed: int, lam: float | None = None) -> torch.nn.Module:
    """``model`` with strongly perturbed weights (biases kept at zero: the network stays
    positively homogeneous) and, for ``--dc prox``, the proximal weight ``lam`` (a large one
    lets the network's own image dominate its data consistency)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif name != "log_lam":
                p.add_(torch.randn(p.shape, generator=g) * p.std().clamp_min(1e-3))
        if lam is not None and getattr(model, "log_lam", None) is not None:
            model.log_lam.fill_(float(np.log(lam)))
    return model


def _unrolled(dc: str) -> torch.nn.Module:
    return build_model(
        "unrolled", in_channels=2, out_channels=2, cascades=2, width=8, depth=3, dc=dc, cg_iters=4
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A multi-coil ``--dc prox`` checkpoint after a few training steps (6 coils, oversampled files)."""
    from mri_n2n.training import train

    root = tmp_path_factory.mktemp("mcunits")
    data = root / "data"
    data.mkdir()
    maps = birdcage_maps((SIZE, SIZE), 6).numpy()
    for i in range(3):
        vol = phantom_volume((SIZE, SIZE, 4), seed=i).astype(np.float32)
        imgs = np.moveaxis(vol, 2, 0) / vol.max()
        write_fastmri_multicoil_h5(data / f"mc{i}.h5", imgs, maps, noise_std=0.01, seed=i, oversample=2)
    run = root / "run"
    train(Config(dataset="kspace", data_dir=str(data), size=SIZE, preset="tiny", model="unrolled", cascades=2,
                 dc="prox", cg_iters=3, loss="kspace", density="lines_lattice", acceleration=3,
                 center_fraction=0.2, max_steps=4, steps_per_epoch=4, val_limit=2, quiet=True,
                 tensorboard=False, out=str(run)))
    return run / "checkpoints" / "last.pt"


def _networks(kind: str, trained: Path) -> Reconstructor:
    if kind == "trained":
        return Reconstructor.from_checkpoint(trained, device="cpu")
    dc, _, how = kind.partition("-")
    model = _unrolled(dc)
    if how == "perturbed":
        _perturbed(model, seed=3, lam=20.0)
    return Reconstructor(model, CONFIG, device="cpu")


def _write(path: Path, fmt: str, coils: int, *, mask: np.ndarray | None = None) -> Path:
    """A file with 2x readout oversampling and k-space noise (the background's RSS is not zero)."""
    maps = birdcage_maps((SIZE, SIZE), coils).numpy()
    if fmt == "twix":
        pytest.importorskip("twixtools")
        from mri_n2n.data.synthetic_raw import write_twix_file

        write_twix_file(path, _images(), maps, mask=mask, noise_std=0.005, seed=1, oversample=2)
    else:  # no reference: the report compares with the file's own root-sum-of-squares
        write_fastmri_multicoil_h5(path, _images(), maps, mask=mask, noise_std=0.005, seed=1, oversample=2,
                                   reference=False)
    return path


def _data_rss(mc: MultiCoilKSpace) -> np.ndarray:
    """The file's root-sum-of-squares ``(rows, cols, slices)``, float64, cropped to its matrix."""
    img = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(mc.kspace.astype(np.complex128), axes=(-2, -1)),
                                       norm="ortho"), axes=(-2, -1))
    r = np.sqrt((np.abs(img) ** 2).sum(1))
    rows, cols = mc.recon_shape
    top, left = (r.shape[1] - rows) // 2, (r.shape[2] - cols) // 2
    return np.moveaxis(r[:, top : top + rows, left : left + cols], 0, -1)


class _MapsSpy:
    """Records the maps ``reconstruct_multicoil`` estimates (for their support)."""

    def __init__(self, monkeypatch) -> None:
        import mri_n2n.reconstruction.multicoil as mcmod

        self.maps: list[torch.Tensor] = []
        real = mcmod.inference_maps

        def spy(k, settings=None, where="k-space"):
            out = real(k, settings, where)
            self.maps.append(out)
            return out

        monkeypatch.setattr(mcmod, "inference_maps", spy)


@pytest.mark.parametrize("fmt", ["h5", "twix"])
@pytest.mark.parametrize("coils", [2, 8])
@pytest.mark.parametrize("net", ["replace", "prox", "prox-perturbed", "trained"])
def test_fully_sampled_file_gives_its_rss_outside_the_support_too(
    tmp_path, monkeypatch, trained, fmt, coils, net
):
    path = _write(tmp_path / ("full.dat" if fmt == "twix" else "full.h5"), fmt, coils)
    mc = read_raw(path)
    assert mc.kspace.shape[2] == 2 * SIZE and mc.recon_shape == (SIZE, SIZE)  # readout oversampled
    spy = _MapsSpy(monkeypatch)
    rec = _networks(net, trained)
    rec.maps = {"method": "walsh"}  # maps with a support (the default ESPIRiT maps have none)
    out = rec.multicoil(mc)
    want = _data_rss(mc)
    support = np.moveaxis((rss(spy.maps[0], dim=1) > 0).numpy(), 0, -1)
    outside = ~support & (want > 0)
    assert outside.mean() > 0.1  # the maps leave part of the image out, where noise is measured
    assert np.linalg.norm(out.image - want) / np.linalg.norm(want) < 1e-5
    assert np.abs(out.image - want).max() / want.max() < 1e-5
    assert np.abs(out.image[outside] - want[outside]).max() / want[outside].max() < 1e-5
    assert out.metrics["psnr"] > 100  # against the file's own RSS: round-off only


def _capture(rec: Reconstructor) -> tuple[list[tuple[torch.Tensor, dict]], object]:
    """``(seen, project)``: ``seen`` collects the final SENSE images ``x`` (normalised) and the
    contexts of every batch that ``reconstruct_multicoil(rec.model, project, ...)`` runs (``--dc
    prox``: the network's output; otherwise the corruption's projection of it)."""
    from mri_n2n.corruptions.multicoil import MultiCoilUndersampling

    seen: list[tuple[torch.Tensor, dict]] = []
    if rec.model.ends_with_dc:
        def hook(module, args, kwargs, output):
            acq = kwargs["acq"] if "acq" in kwargs else args[1]  # model(x, acq)
            seen.append((output.detach().clone(), {"mask": acq.mask, "kspace": acq.y, "maps": acq.maps}))

        rec.model._forward_hooks.clear()
        rec.model.register_forward_hook(hook, with_kwargs=True)

        def project(output, acq):
            raise AssertionError("a --dc prox network's output is projected again")

        return seen, project
    corruption = MultiCoilUndersampling.from_config(CONFIG, (SIZE, SIZE), coils=1)

    def wrapped(output, acq):
        x = corruption.project(output, acq)
        seen.append((x.detach().clone(), {"mask": acq.mask, "kspace": acq.y, "maps": acq.maps}))
        return x

    return seen, wrapped


def _expected(seen: list[tuple[torch.Tensor, dict]], scale: float) -> np.ndarray:
    """fastMRI's image from the captured ``x`` and contexts: the root-sum-of-squares of the coil
    images whose k-space is the measurements on the mask and ``F S_c x`` elsewhere."""
    parts = []
    for x, ctx in seen:
        z = torch.complex(x[:, 0].double(), x[:, 1].double())
        k = fft2c(ctx["maps"].to(torch.complex128) * z[:, None])
        k = torch.where(ctx["mask"][:, None].bool(), ctx["kspace"].to(torch.complex128), k)
        parts.append(ifft2c(k).abs().square().sum(1).sqrt() * scale)
    return np.moveaxis(torch.cat(parts).numpy(), 0, -1)


@pytest.mark.parametrize("net", ["replace-perturbed", "prox-perturbed"])
def test_undersampled_output_is_the_rss_of_data_consistent_coils_in_the_input_units(tmp_path, net):
    from mri_n2n.masks import make_family
    from mri_n2n.reconstruction.multicoil import reconstruct_multicoil

    cols = make_family("lines_random", (2 * SIZE, SIZE), acceleration=3, center_fraction=0.25).sample(
        generator=torch.Generator().manual_seed(0))[0].numpy().astype(np.float32)
    mc = read_raw(_write(tmp_path / "under.h5", "h5", 8, mask=cols))
    assert not mc.sampled().all()
    rec = _networks(net, Path("unused"))
    outs = {}
    for c in (1.0, 1e3, 1e-3):
        scaled = dataclasses.replace(mc, kspace=mc.kspace * np.float32(c))
        seen, project = _capture(rec)
        out = reconstruct_multicoil(rec.model, project, scaled, batch_size=2)
        # the measurements the network's DC saw are the file's own (readout cropped), scaled back
        k, m = crop_readout(scaled.kspace.reshape(-1, 2 * SIZE, SIZE), None, SIZE)
        y = torch.cat([ctx["kspace"] for _, ctx in seen]).numpy() * out.scale
        mask = torch.cat([ctx["mask"] for _, ctx in seen]).numpy()[:, None]
        k = k.reshape(y.shape)
        assert np.abs(np.where(mask, y - k, 0)).max() <= 1e-5 * np.abs(k).max()
        want = _expected(seen, out.scale)
        assert np.abs(out.image - want).max() / want.max() < 1e-5, c
        outs[c] = out.image
    for c in (1e3, 1e-3):  # units follow the input: c times the k-space, c times the image
        assert np.abs(outs[c] / c - outs[1.0]).max() / outs[1.0].max() < 1e-5


def test_sense_output_option_keeps_the_network_image_on_the_support(tmp_path, monkeypatch):
    """``output="sense"`` (CLI ``--multicoil-output sense``): ``|x| sqrt(sum_c |S_c|^2)`` on the maps'
    support, fastMRI's image outside it; still exact on a fully sampled file outside the support."""
    from mri_n2n.cli.reconstruct import build_parser

    mc = read_raw(_write(tmp_path / "full.h5", "h5", 8))
    rec = _networks("prox-perturbed", Path("unused"))
    rec.maps = {"method": "walsh"}  # maps with a support (the default ESPIRiT maps have none)
    spy = _MapsSpy(monkeypatch)
    seen, _ = _capture(rec)
    out = rec.multicoil(mc, output="sense")
    x = torch.cat([s[0] for s in seen])
    maps = spy.maps[0]
    norm = rss(maps, dim=1)
    inside = np.moveaxis((norm > 0).numpy(), 0, -1)
    want_in = np.moveaxis((torch.complex(x[:, 0], x[:, 1]).abs() * norm).numpy(), 0, -1) * out.scale
    assert np.abs(out.image - want_in)[inside].max() < 1e-5 * want_in.max()
    full = _data_rss(mc)
    assert np.abs(out.image - full)[~inside].max() < 1e-5 * full.max()
    assert np.abs(out.image - full)[inside].max() > 1e-2 * full.max()  # the network's image, not the data
    assert rec.multicoil(mc).metrics["psnr"] > 100  # the default is fastMRI's
    assert build_parser().parse_args(["--checkpoint", "c", "--out", "o", "x.h5", "--multicoil-output",
                                      "sense"]).multicoil_output == "sense"
    with pytest.raises(Exception, match="output must be one of"):
        rec.multicoil(mc, output="magnitude")


@pytest.mark.parametrize("output", ["rss", "sense"])
def test_evaluate_scores_what_reconstruct_writes(tmp_path, monkeypatch, trained, output):
    """For the same slices, masks and maps, evaluate's network rows are the metrics of the
    images reconstruct writes; its SENSE-1, CG-SENSE and TV-SENSE rows use the same convention;
    the RSS of the zero-filled coils stays as it was."""
    import mri_n2n.reconstruction.multicoil as mcmod
    from mri_n2n.baselines import tv_sense
    from mri_n2n.corruptions.multicoil import MultiCoilUndersampling
    from mri_n2n.data import collate
    from mri_n2n.data.datasets import mri_datasets_from_config
    from mri_n2n.evaluation import PLAIN, SENSE_ITERS, evaluate_mri
    from mri_n2n.metrics import psnr, ssim
    from mri_n2n.reconstruction.multicoil import multicoil_output

    saved = torch.load(trained, weights_only=True)
    g = torch.Generator().manual_seed(1)
    for name, p in saved["model"].items():  # positively homogeneous: no biases
        if name.endswith("bias"):
            p.zero_()
        elif name != "log_lam":
            p.add_(torch.randn(p.shape, generator=g) * p.float().std() * 0.5)
    ckpt = tmp_path / "homogeneous.pt"
    torch.save(saved, ckpt)
    n = 3
    ev = evaluate_mri([ckpt], limit=n, progress=False, tv_lam=2e-3, sense_lam=0.02, tv_iters=10,
                      device="cpu", plain_zero_filled=True, output=output, batch_size=n)
    assert ev["settings"]["multicoil_output"] == output

    cfg = Config.from_dict(saved["config"])
    _, valid = mri_datasets_from_config(cfg)
    corr = MultiCoilUndersampling.from_config(cfg, (cfg.size, cfg.size), coils=valid.coils)
    items = [valid[i] for i in range(n)]
    pair = corr.validation_pair(*collate(items))
    acq = pair.acq
    ctx = {"mask": acq.sampled, "kspace": acq.y, "maps": acq.maps}
    ref = torch.from_numpy(np.stack([valid.reference(i) for i in range(n)]))[:, None]

    def rows(name: str) -> np.ndarray:
        return np.array([r[f"{name}/psnr"] for r in ev["per_slice"]])

    def scores(img: torch.Tensor) -> np.ndarray:
        return psnr(img.clamp(0, 1), ref, data_range=1.0, reduction="none").numpy()

    # reconstruct on the same measurements, masks (their law recorded) and maps
    monkeypatch.setattr(mcmod, "inference_maps", lambda k, settings=None, where="": ctx["maps"].clone())
    mc = MultiCoilKSpace(kspace=ctx["kspace"].numpy().astype(np.complex64), mask=ctx["mask"].numpy(),
                         reference=None, recon_shape=(cfg.size, cfg.size), voxel_size=None, encoded_fov=None,
                         max_value=None, source="npy", path="eval-slices",
                         meta={"attrs": {MASK_LAW_ATTR: json.dumps(corr.family.describe())}})
    out = Reconstructor.from_checkpoint(ckpt, device="cpu").multicoil(mc, output=output)
    img = torch.from_numpy(np.moveaxis(out.image, -1, 0))[:, None]
    assert out.mask_law["source"] == "recorded"
    np.testing.assert_allclose(rows("N2N"), scores(img), atol=1e-3)
    np.testing.assert_allclose(ev["examples"]["N2N"], img[0, 0].numpy(), atol=1e-5 * float(img.max()))
    s = ssim(img.clamp(0, 1), ref, data_range=1.0, reduction="none").numpy()
    np.testing.assert_allclose([r["N2N/ssim"] for r in ev["per_slice"]], s, atol=1e-5)
    # the baselines in the same convention
    x = Acquisition(ctx["mask"], ctx["maps"]).sense(ctx["kspace"], 0.02, SENSE_ITERS)
    np.testing.assert_allclose(rows("CG-SENSE"), scores(multicoil_output(x, acq, output)[:, None]), atol=1e-3)
    x = tv_sense(ctx["kspace"], ctx["maps"], ctx["mask"], lam=2e-3, iters=10)
    np.testing.assert_allclose(rows("TV-SENSE"), scores(multicoil_output(x, acq, output)[:, None]), atol=1e-3)
    z = multicoil_output(pair.input, acq, output)[:, None]
    np.testing.assert_allclose(rows("zero-filled"), scores(z), atol=1e-3)
    plain = ifft2c(ctx["kspace"]).abs().square().sum(1).sqrt()[:, None]
    np.testing.assert_allclose(rows(PLAIN), scores(plain), atol=1e-3)


def test_unmarked_4d_kspace_error_says_what_is_missing(tmp_path):
    import h5py

    path = tmp_path / "bare.h5"
    with h5py.File(path, "w") as f:
        f["kspace"] = np.ones((2, 4, 32, 32), np.complex64)
    with pytest.raises(VolumeError) as e:
        read_raw(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg
    assert "no fastMRI marker" in msg and "ismrmrd_header" in msg and "reconstruction_rss" in msg
    assert "layout='slices,coils,ky,kx'" in msg and "read_fastmri_multicoil" in msg
    assert "a fastMRI multi-coil file holds" not in msg
    assert read_raw(path, layout="slices,coils,ky,kx").kspace.shape == (2, 4, 32, 32)  # the advice works
    with h5py.File(path, "a") as f:
        f["kspace"].attrs["layout"] = "coils,slices,ky,kx"
    assert read_raw(path).kspace.shape == (4, 2, 32, 32)
    with h5py.File(tmp_path / "five.h5", "w") as f:
        f["kspace"] = np.ones((1, 2, 2, 8, 8), np.complex64)
    with pytest.raises(VolumeError, match=r"5-D 'kspace' \(1, 2, 2, 8, 8\): expected"):
        read_raw(tmp_path / "five.h5")


def test_object_psnr_scores_only_the_object():
    """The multi-coil study's object PSNR ignores the background: noise where the reference is 0
    changes the whole-image PSNR, not the object's."""
    from mri_n2n.evaluation import object_psnr
    from mri_n2n.metrics import psnr

    ref = torch.zeros(2, 1, 16, 16)
    ref[:, :, 4:12, 4:12] = 0.8
    rec = ref.clone()
    rec[:, :, 4:12, 4:12] += 0.01
    noisy = rec.clone()
    noisy[:, :, :2] += 0.2  # background only
    assert torch.allclose(object_psnr(rec, ref), torch.full((2,), 40.0), atol=1e-3)
    assert torch.allclose(object_psnr(noisy, ref), object_psnr(rec, ref))
    assert float(psnr(noisy, ref, data_range=1.0)) < float(psnr(rec, ref, data_range=1.0)) - 10


def test_coil_maps_option_reaches_the_estimator(tmp_path, monkeypatch):
    """``reconstruct --coil-maps walsh`` estimates the maps with Walsh's method; without it the
    library's default (:data:`~mri_n2n.reconstruction.multicoil.MAPS`, ESPIRiT) is used; through
    ``--checkpoint default`` too (the shipped multi-coil model)."""
    import mri_n2n.reconstruction.multicoil as mcmod
    from mri_n2n.cli.reconstruct import main as reconstruct_main

    path = _write(tmp_path / "full.h5", "h5", 4)
    seen: list = []
    real = mcmod.inference_maps

    def spy(k, settings=None, where="k-space"):
        seen.append(settings)
        return real(k, settings, where)

    monkeypatch.setattr(mcmod, "inference_maps", spy)
    for flag, want in (([], None), (["--coil-maps", "walsh"], {"method": "walsh"})):
        seen.clear()
        out = tmp_path / f"out{len(flag)}"
        assert reconstruct_main(["--checkpoint", "default", str(path), "--out", str(out), *flag]) == 0
        assert seen == [want], flag
    assert mcmod.MAPS["method"] == "espirit"
