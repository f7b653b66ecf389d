"""Adding a model, a loss or an MRI dataset is one registered definition each: the model, loss
and dataset defined in this file become config values and ``--model`` / ``--loss`` /
``--dataset`` choices, are built through the normal path (the trainer's
``build_model_for``, ``get_loss``, ``mri_datasets_from_config``), and a short training run uses
all three together, with no other module edited."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mri_n2n.checkpoint import load_checkpoint, model_from_checkpoint
from mri_n2n.cli.train import build_parser
from mri_n2n.config import Config, ConfigError, check_values, field_choices, resolve_config
from mri_n2n.data.base import SliceDataset
from mri_n2n.data.datasets import DataOptions, dataset_names, mri_datasets_from_config, register_dataset
from mri_n2n.data.synthetic import phantom_volume
from mri_n2n.losses import get_loss, loss_entry, loss_names, masked_mean, register_loss
from mri_n2n.models import build_model, model_names, register_model
from mri_n2n.training import build_experiment, build_model_for, train


# --- the new model: 17 lines ---------------------------------------------------------------------
@register_model("tiny_res")
class TinyRes(nn.Module):
    """``x + CNN(x)``: two 3x3 convolutions, ``width`` channels between them."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(width, out_channels, 3, padding=1))
        self.spec = {"name": "tiny_res",
                     "kwargs": {"in_channels": in_channels, "out_channels": out_channels, "width": width}}

    @classmethod
    def from_config(cls, cfg, channels: int) -> TinyRes:
        return cls(channels, channels, width=cfg.cascade_width)  # reuses an existing width field

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


# --- the new loss: 4 lines ------------------------------------------------------------------------
@register_loss("charbonnier")
def charbonnier_loss(output, target, pair=None, progress=0.0):
    """``sqrt((f - y)^2 + eps^2)``, eps = 1e-3: a smooth L1 (the pair's ``valid`` mask honoured)."""
    return masked_mean(((output - target).square() + 1e-6).sqrt(), pair)


# --- the new MRI dataset: 11 lines ---------------------------------------------------------------
@register_dataset("phantoms")
def phantom_slices(options: DataOptions):
    """Axial slices of seeded phantom heads: phantom 0 trains, phantom 1 validates."""

    def head(seed: int) -> SliceDataset:
        vol = phantom_volume((options.size, options.size, 4), content=(0, 4), seed=seed)
        images = np.moveaxis(vol, 2, 0) / vol.max()
        return SliceDataset(images, [{"dataset": "phantoms", "source": f"phantom{seed}", "slice": k}
                                     for k in range(len(images))])

    return head(0), head(1)
# -------------------------------------------------------------------------------------------------

NEW = {"model": "tiny_res", "loss": "charbonnier", "dataset": "phantoms"}
RUN = dict(preset="tiny", size=32, cascade_width=6, quiet=True, tensorboard=False, figures=False)


def test_each_is_a_registered_choice_of_the_config_and_the_cli():
    assert "tiny_res" in model_names() and "charbonnier" in loss_names() and "phantoms" in dataset_names()
    for key, name in NEW.items():
        assert name in field_choices(key)
        assert check_values({key: name})[key] == name
        with pytest.raises(ConfigError, match=f"{key}: unknown value 'not_registered'"):
            check_values({key: "not_registered"})
    argv = ["--model", "tiny_res", "--loss", "charbonnier", "--dataset", "phantoms"]
    args = build_parser().parse_args(argv)
    assert (args.model, args.loss, args.dataset) == ("tiny_res", "charbonnier", "phantoms")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--model", "not_registered"])


def test_each_is_built_through_the_normal_path():
    cfg, _ = resolve_config(Config(**NEW, **RUN))
    assert cfg.task == "mri"  # a registered MRI dataset implies the MRI task
    net = build_model_for(cfg, 1)
    assert isinstance(net, TinyRes) and net.net[0].out_channels == 6  # from_config read cascade_width
    clone = build_model(net.spec["name"], **net.spec["kwargs"])  # what a checkpoint does
    assert isinstance(clone, TinyRes) and clone.spec == net.spec
    fn = get_loss("charbonnier")
    assert fn is charbonnier_loss and not loss_entry("charbonnier").kspace
    y = torch.zeros(1, 1, 4, 4)
    assert float(fn(y, y)) == pytest.approx(1e-3)  # eps at a zero residual
    assert float(fn(y + 2.0, y)) == pytest.approx(2.0, rel=1e-6)  # |f - y| far from it
    train_set, valid_set = mri_datasets_from_config(cfg)
    assert (len(train_set), len(valid_set)) == (4, 4)
    assert train_set[0][0].shape == (1, 32, 32) and float(train_set[0][0].max()) <= 1.0
    assert not torch.equal(train_set[2][0], valid_set[2][0])  # two different heads
    exp = build_experiment(cfg)
    assert exp.loss_name == "charbonnier" and exp.channels == 1 and len(exp.train_set) == 4


def test_the_module_level_name_lists_are_live_views_of_the_registries():
    """``MODEL_NAMES`` and ``DATASET_NAMES`` are the registries' current names, wherever they were
    imported from (the package, its subpackage, the config's ``MRI_DATASETS``), not copies taken
    at import: the model and dataset this file registers are in them."""
    import mri_n2n
    from mri_n2n.config import MRI_DATASETS
    from mri_n2n.data import DATASET_NAMES
    from mri_n2n.models import MODEL_NAMES

    assert MODEL_NAMES == model_names() and mri_n2n.MODEL_NAMES == model_names()
    assert DATASET_NAMES == dataset_names() and MRI_DATASETS == dataset_names()
    assert "tiny_res" in MODEL_NAMES and "phantoms" in DATASET_NAMES and "phantoms" in MRI_DATASETS
    assert {"unet_paper", "unet", "unet_custom", "red30", "unrolled"} <= set(MODEL_NAMES)
    assert {"mni152", "ixi", "nifti", "dicom", "kspace", "synth"} <= set(DATASET_NAMES)
    assert len(MODEL_NAMES) == len(model_names()) and MODEL_NAMES[-1] == model_names()[-1]
    assert list(MODEL_NAMES) == list(model_names()) and repr(MODEL_NAMES) == repr(model_names())


def test_a_name_view_follows_its_lookup():
    from mri_n2n.registry import NameView, Registry

    reg: Registry[int] = Registry("thing")
    view = NameView(reg.names)
    assert view == () and len(view) == 0 and "a" not in view
    reg.add("a", 1, owner=1)
    reg.add("b", 2, owner=2)
    assert view == ("a", "b") and view[1] == "b" and view[:1] == ("a",) and "a" in view
    assert view != ["a", "b"]  # compares like a tuple
    with pytest.raises(TypeError):
        hash(view)


def test_the_loss_flags_drive_the_config_rules():
    """A loss registered without ``split=True`` is refused by the single-acquisition targets;
    one registered with ``kspace=True`` is refused by the image task."""
    with pytest.raises(ConfigError, match="--target ssdu learns on held-out k-space"):
        resolve_config(Config(target="ssdu", loss="charbonnier"))
    assert resolve_config(Config(target="ssdu", loss="kspace_flat"))[0].loss == "kspace_flat"
    with pytest.raises(ConfigError, match="is an MRI loss"):
        resolve_config(Config(task="image", loss="kspace"))
    assert resolve_config(Config(task="image", loss="charbonnier"))[0].loss == "charbonnier"


def test_a_name_cannot_be_registered_twice_by_another_definition():
    with pytest.raises(ValueError, match="already registered"):
        register_model("tiny_res")(nn.Identity)
    with pytest.raises(ValueError, match="already registered"):
        register_loss("l2")(charbonnier_loss)
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("mni152")(phantom_slices)
    register_loss("charbonnier")(charbonnier_loss)  # the same definition again is harmless


def test_a_short_run_trains_the_new_model_with_the_new_loss_on_the_new_dataset(tmp_path):
    torch.manual_seed(0)
    summary = train(Config(**NEW, **RUN, max_steps=2, steps_per_epoch=2, batch_size=2, out=str(tmp_path)))
    assert summary["dataset"] == "phantoms" and summary["model"] == "tiny_res"
    assert np.isfinite(summary["val_psnr"])
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ckpt["model_spec"]["name"] == "tiny_res" and ckpt["config"]["loss"] == "charbonnier"
    net = model_from_checkpoint(ckpt)  # rebuilt by name from the checkpoint's spec
    assert isinstance(net, TinyRes) and net.spec == ckpt["model_spec"]
    cfg, _ = resolve_config(Config(**NEW, **RUN))
    torch.manual_seed(cfg.seed)  # the trainer seeds the weights with the run's seed
    init = dict(build_model_for(cfg, 1).named_parameters())
    assert any(not torch.equal(p, init[k]) for k, p in net.named_parameters())  # two steps moved them
