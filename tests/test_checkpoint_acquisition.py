"""Models that say what they are: a checkpoint's ``acquisition`` block (kind, complex, coils,
channels, law), read by :func:`mri_n2n.checkpoint.checkpoint_acquisition` for new checkpoints and
derived from the config, corruption record and model spec for older ones; the weights registry
records it for every shipped model, and ``Reconstructor`` reads it instead of guessing from the
weights."""

from __future__ import annotations

import pytest
import torch

from mri_n2n import Reconstructor
from mri_n2n.checkpoint import (
    ACQUISITION_KEYS,
    CheckpointError,
    checkpoint_acquisition,
    load_checkpoint,
    pretrained,
    save_checkpoint,
)
from mri_n2n.config import Config
from mri_n2n.masks import family_for
from mri_n2n.models import build_model
from mri_n2n.physics import kind_names


def _old(tmp_path, name: str, *, channels: int, corruption: dict, **cfg) -> dict:
    """A checkpoint as the trainer wrote them before the acquisition block (saved and reloaded)."""
    torch.manual_seed(0)
    model = build_model("unrolled", in_channels=channels, out_channels=channels, cascades=1, width=4, depth=2)
    config = Config(task="mri", dataset="mni152", size=32, **cfg).to_dict()
    path = tmp_path / f"{name}.pt"
    save_checkpoint(path, {"task": "mri", "model_spec": model.spec, "model": model.state_dict(),
                           "config": config, "corruption": corruption})  # fmt: skip
    return load_checkpoint(path, task="mri")


def test_older_checkpoints_say_what_they_are_from_config_and_spec(tmp_path):
    real = checkpoint_acquisition(
        _old(tmp_path, "real", channels=1, corruption={"name": "MRIUndersampling", "complex_data": False},
             complex=False)  # fmt: skip
    )
    assert list(real) == list(ACQUISITION_KEYS)
    assert real["kind"] == "cartesian" and real["complex"] is False and real["coils"] == "single"
    assert real["channels"] == 1 and real["measured_law"] is None
    cfg = Config(task="mri", dataset="mni152", size=32, complex=False)
    assert real["law"] == family_for(cfg, (32, 32), hermitian=True).describe()

    cplx = checkpoint_acquisition(
        _old(tmp_path, "cplx", channels=2, corruption={"name": "MRIUndersampling"}, complex=True,
             density="lines_random", acceleration=4, center_fraction=0.08)  # fmt: skip
    )
    assert cplx["complex"] is True and cplx["channels"] == 2 and cplx["coils"] == "single"
    assert cplx["law"]["family"] == "lines_random" and cplx["law"]["hermitian"] is False

    # the multi-coil corruption's record says coils; a measured law replaces the config's family
    law = {"family": "lines_lattice", "shape": [32, 32], "hermitian": False, "acceleration": 4.0,
           "center_fraction": 0.08}  # fmt: skip
    mc = checkpoint_acquisition(
        _old(tmp_path, "mc", channels=2, complex=True,
             corruption={"name": "MultiCoilUndersampling", "coils": 4, "measured_law": law})  # fmt: skip
    )
    assert mc["coils"] == "multi" and mc["measured_law"] == law and mc["law"] == law

    # a config that left complex to the data: the model's channels decide
    unset = checkpoint_acquisition({"config": {"task": "mri"}, "model_spec": {"kwargs": {"in_channels": 2}}})
    assert unset["complex"] is True and unset["channels"] == 2


def test_new_checkpoints_are_read_as_recorded_and_checked(tmp_path):
    ck = _old(tmp_path, "new", channels=2, corruption={"name": "MRIUndersampling"}, complex=True)
    block = {"kind": "cartesian", "complex": True, "coils": "single", "channels": 2,
             "law": {"law": "recorded"}, "measured_law": None}  # fmt: skip
    ck["acquisition"] = block
    assert checkpoint_acquisition(ck) == block  # as recorded, nothing re-derived
    # the trainer records measured_law as a flag: the recorded law is then the measured files'
    ck["acquisition"] = {**block, "law": {"family": "lines_random"}, "measured_law": True}
    assert checkpoint_acquisition(ck)["measured_law"] == {"family": "lines_random"}
    ck["acquisition"] = {**block, "measured_law": False}
    assert checkpoint_acquisition(ck)["measured_law"] is None
    ck["acquisition"] = {"kind": "cartesian", "coils": "multi"}  # missing keys: the fallback fills them
    got = checkpoint_acquisition(ck)
    assert got["coils"] == "multi" and got["complex"] is True and got["channels"] == 2
    for bad in ({"complex": False}, {"channels": 3}, {"coils": "some"}):
        ck["acquisition"] = {**block, **bad}
        with pytest.raises(CheckpointError):
            checkpoint_acquisition(ck)
    ck["acquisition"] = "cartesian"
    with pytest.raises(CheckpointError, match="not a dict"):
        checkpoint_acquisition(ck)


def test_reconstructor_reads_the_record_not_the_weights(tmp_path):
    ck = _old(tmp_path, "r", channels=2, corruption={"name": "MRIUndersampling"}, complex=True)
    rec = Reconstructor.from_checkpoint(tmp_path / "r.pt", device="cpu")
    assert rec.acquisition == checkpoint_acquisition(ck) and rec.complex_model and rec.channels == 2
    assert rec.kind.kind == "cartesian"
    # a record naming a kind this installation does not know is refused in one line
    ck["acquisition"] = {**checkpoint_acquisition(ck), "kind": "no_such_kind"}
    save_checkpoint(tmp_path / "u.pt", ck)
    with pytest.raises(CheckpointError, match="acquisition kind"):
        Reconstructor.from_checkpoint(tmp_path / "u.pt", device="cpu")
    # a model built here says what it is through its config and spec
    net = build_model("unrolled", in_channels=1, out_channels=1, cascades=1, width=4, depth=2)
    here = Reconstructor(net, Config(task="mri", size=32, complex=False), device="cpu")
    assert here.acquisition["channels"] == 1 and not here.complex_model


@pytest.mark.parametrize("name", sorted(pretrained()))
def test_every_shipped_model_records_its_kind_and_its_file_agrees(name):
    entry = pretrained()[name]
    acq = entry.get("acquisition")
    assert isinstance(acq, dict) and set(acq) == set(ACQUISITION_KEYS), name
    assert acq["kind"] in kind_names() and acq["coils"] in ("single", "multi")
    ck = load_checkpoint(name, task="mri")
    assert checkpoint_acquisition(ck) == acq
    assert ck["model_spec"]["kwargs"]["in_channels"] == acq["channels"]
    assert Reconstructor.from_pretrained(name, device="cpu").acquisition == acq
