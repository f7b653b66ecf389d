"""IXI: synthetic volumes under real IXI names (folder and tarball) -> prepare -> load."""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

from mri_n2n.data import DataDirError, build_mri_datasets, prepare_ixi, split_subjects
from mri_n2n.data.ixi import IXI_T1_PATTERN, build_ixi_datasets, find_ixi_subjects, paper_subject_ids
from mri_n2n.data.synthetic import write_ixi_tar, write_synthetic_ixi
from mri_n2n.seeding import stable_ident

REPO = Path(__file__).resolve().parents[1]
SHAPE = (40, 48, 130)  # content in slices 10..119, so 25..124 holds 95 content + 5 black slices


@pytest.fixture(scope="module")
def ixi(tmp_path_factory):
    root = tmp_path_factory.mktemp("ixi")
    files = write_synthetic_ixi(root / "raw", 6, shape=SHAPE, seed=7)
    tar = write_ixi_tar(sorted(files.values()), root / "IXI-T1.tar")
    (root / "raw" / "README.txt").write_text("not a volume")
    return {"root": root, "files": files, "tar": tar, "subjects": sorted(files)}


@pytest.fixture(scope="module")
def prepared(ixi):
    out = ixi["root"] / "prep64"
    manifest = prepare_ixi(ixi["root"] / "raw", out, size=64, split="sorted", progress=False)
    return out, manifest


def test_split_rule():
    subjects = [f"s{i:02d}" for i in range(70)]
    tr, va, un = split_subjects(subjects)
    assert tr == subjects[:50] and va == subjects[50:60] and un == subjects[60:]
    assert split_subjects(subjects[:6]) == (subjects[:5], subjects[5:6], [])
    tr, va, _ = split_subjects(subjects[:59])
    assert len(va) == 10 and len(tr) == 49
    assert split_subjects(subjects[:2]) == (subjects[:1], subjects[1:2], [])
    with pytest.raises(ValueError, match="at least 2"):
        split_subjects(subjects[:1])
    assert split_subjects(subjects[:6], 3, 2) == (subjects[:3], subjects[3:5], subjects[5:6])


def test_find_subjects_folder_and_tar(ixi):
    from_dir = find_ixi_subjects(ixi["root"] / "raw")
    from_tar = find_ixi_subjects(ixi["tar"])
    assert [s.subject for s in from_dir] == [s.subject for s in from_tar] == ixi["subjects"]
    assert all(s.member is None for s in from_dir) and all(s.member for s in from_tar)


def test_prepare_folder(ixi, prepared):
    out, manifest = prepared
    assert {p.name for p in out.iterdir()} == {"train.h5", "valid.h5", "manifest.json"}
    assert json.loads((out / "manifest.json").read_text()) == json.loads(json.dumps(manifest))
    # 6 subjects: 5 train, 1 validation (the last in sorted order); disjoint
    train_subjects = [r["subject"] for r in manifest["train"]["subjects"]]
    valid_subjects = [r["subject"] for r in manifest["valid"]["subjects"]]
    assert train_subjects == ixi["subjects"][:5] and valid_subjects == ixi["subjects"][5:]
    for split, n_sub in (("train", 5), ("valid", 1)):
        with h5py.File(out / f"{split}.h5", "r") as f:
            x = f["slices"]
            assert x.shape == (95 * n_sub, 64, 64) and x.dtype == np.float32
            subj = f["subject"].asstr()[...]
            idx = f["slice_index"][...]
            assert sorted(set(idx)) == list(range(25, 120))  # 120..124 are black: skipped
            assert f.attrs["size"] == 64 and f.attrs["slice_start"] == 25 and f.attrs["slice_stop"] == 125
            np.testing.assert_array_equal(
                f["ident"][...], [stable_ident("ixi", s, k) for s, k in zip(subj, idx)]
            )
            for s in set(subj):
                rows = np.nonzero(subj == s)[0]
                raw = nib.load(ixi["files"][s]).get_fdata().astype(np.float32)
                expect = raw / raw.max()  # each volume divided by its own maximum
                for r in rows[[0, 40, -1]]:
                    k = idx[r]
                    img = x[r]
                    # 40x48 slice centre-padded into 64x64: offsets (12, 8), zeros around
                    np.testing.assert_allclose(img[12:52, 8:56], expect[:, :, k], rtol=1e-6)
                    assert not img[:12].any() and not img[52:].any()
                    assert not img[:, :8].any() and not img[:, 56:].any()
                assert x[rows].max() <= 1.0
    for rec in manifest["train"]["subjects"]:
        assert rec["n_slices"] == 95 and rec["skipped_black"] == 5


def test_prepare_tarball_matches_folder(ixi, prepared, tmp_path):
    out_dir, _ = prepared
    manifest = prepare_ixi(
        ixi["tar"], tmp_path / "prep", size=64, split="sorted", train_subjects=4, valid_subjects=1,
        progress=False,
    )  # fmt: skip
    assert [r["subject"] for r in manifest["train"]["subjects"]] == ixi["subjects"][:4]
    assert manifest["unused_subjects"] == ixi["subjects"][5:]
    with h5py.File(tmp_path / "prep" / "train.h5", "r") as a, h5py.File(out_dir / "train.h5", "r") as b:
        np.testing.assert_array_equal(a["slices"][:380], b["slices"][:380])


def test_prepare_paper_defaults_256(ixi, tmp_path):
    manifest = prepare_ixi(ixi["tar"], tmp_path / "p256", split="sorted", progress=False)
    assert manifest["size"] == 256 and manifest["slices"] == [25, 125]
    assert manifest["min_peak"] == pytest.approx(1 / 255) and manifest["subject_split"] == "sorted"
    assert manifest["train"]["n_slices"] == 5 * 95 and manifest["valid"]["n_slices"] == 95
    tr, va = build_mri_datasets("ixi", data_dir=str(tmp_path / "p256"))
    x, ident = va[3]
    assert x.shape == (1, 256, 256) and x.dtype == torch.float32 and isinstance(ident, int)
    # 40x48 centred in 256: offsets (108, 104)
    assert x[0, 108:148, 104:152].abs().sum() > 0 and x[0, :108].abs().sum() == 0


def test_load_prepared(ixi, prepared):
    out, _ = prepared
    tr, va = build_mri_datasets("ixi", data_dir=str(out), size=64)
    assert (len(tr), len(va)) == (5 * 95, 95)
    p = tr.provenance(0)
    assert p["subject"] == ixi["subjects"][0] and p["slice"] == 25 and p["dataset"] == "ixi"
    assert {tr.provenance(i)["subject"] for i in range(len(tr))}.isdisjoint(
        {va.provenance(i)["subject"] for i in range(len(va))}
    )
    x, ident = tr[10]
    assert x.shape == (1, 64, 64) and ident == stable_ident("ixi", p["subject"], 35)
    # slice sub-range and on-the-fly padding
    tr2, va2 = build_mri_datasets("ixi", data_dir=str(out), size=80, slices=(30, 40))
    assert len(tr2) == 50 and {tr2.provenance(i)["slice"] for i in range(len(tr2))} == set(range(30, 40))
    big = tr2[0][0]
    assert big.shape == (1, 80, 80)
    np.testing.assert_array_equal(big[0, 8:72, 8:72].numpy(), tr[5][0][0].numpy())
    with pytest.raises(ValueError, match="not inside"):
        build_mri_datasets("ixi", data_dir=str(out), size=64, slices=(0, 150))
    with pytest.raises(ValueError, match="normalize"):
        build_mri_datasets("ixi", data_dir=str(out), size=64, normalize="percentile")


def test_load_raw_folder_and_tar_match_prepared(ixi, prepared):
    out, _ = prepared
    prep_tr, prep_va = build_mri_datasets("ixi", data_dir=str(out), size=64)
    for src in (ixi["root"] / "raw", ixi["tar"]):
        # 6 random IDs, none of the paper's 60: the sorted split, with a one-line warning
        with pytest.warns(UserWarning, match=r"lacks 60 of the paper's 60 subjects") as rec:
            tr, va = build_mri_datasets("ixi", data_dir=str(src), size=64)
        assert "\n" not in str(rec[0].message) and "by ID instead" in str(rec[0].message)
        assert (len(tr), len(va)) == (len(prep_tr), len(prep_va))
        for i in (0, 123, len(tr) - 1):
            x, ident = tr[i]
            y, ident2 = prep_tr[i]
            assert ident == ident2 and tr.provenance(i)["slice"] == prep_tr.provenance(i)["slice"]
            # both carry the volume's affine (figures orient the slice with it)
            assert tr.provenance(i)["affine"] == prep_tr.provenance(i)["affine"]
            assert np.asarray(tr.provenance(i)["affine"]).shape == (4, 4)
            np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_dataloader_workers_and_pickle(prepared):
    out, _ = prepared
    tr, va = build_mri_datasets("ixi", data_dir=str(out), size=64)
    first = va[0]  # opens the file in this process before the workers fork
    clone = pickle.loads(pickle.dumps(va))  # what spawn/forkserver workers receive
    assert clone._file is None
    np.testing.assert_array_equal(clone[0][0].numpy(), first[0].numpy())
    loader = torch.utils.data.DataLoader(
        va, batch_size=16, num_workers=2, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    seen, total = set(), 0
    for x, ident in loader:
        assert x.shape[1:] == (1, 64, 64) and x.dtype == torch.float32 and ident.dtype == torch.int64
        seen.update(ident.tolist())
        total += len(x)
    assert total == len(va) and seen == {va.ident(i) for i in range(len(va))}


def test_ixi_errors(ixi, tmp_path):
    with pytest.raises(DataDirError, match="no IXI"):
        prepare_ixi(tmp_path, tmp_path / "out", progress=False)
    (tmp_path / "one").mkdir()
    name = ixi["subjects"][0]
    (tmp_path / "one" / f"{name}-T1.nii.gz").write_bytes(ixi["files"][name].read_bytes())
    with pytest.raises(DataDirError, match="at least 2"), pytest.warns(UserWarning, match="lacks"):
        build_mri_datasets("ixi", data_dir=str(tmp_path / "one"))
    (tmp_path / "bad.tar").write_bytes(b"x" * 1000)
    with pytest.raises(DataDirError, match="tar"):
        build_mri_datasets("ixi", data_dir=str(tmp_path / "bad.tar"))


def _load_script():
    spec = importlib.util.spec_from_file_location("prepare_ixi_script", REPO / "data_prep" / "prepare_ixi.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cli(ixi, tmp_path, capsys):
    script = REPO / "data_prep" / "prepare_ixi.py"
    help_text = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, check=True
    ).stdout
    for needle in (
        "--slices",
        "--size",
        "--train-subjects",
        "--valid-subjects",
        "--normalize",
        "--split",
        "--min-peak",
        "IXI-T1.tar",
        "wget",
        "tar -xf",
        "brain-development.org/ixi-dataset",
        "manifest.json",
    ):
        assert needle in help_text
    main = _load_script().main
    args = [
        str(ixi["tar"]),
        str(tmp_path / "o"),
        "--size",
        "48",
        "--slices",
        "50:60",
        "--split",
        "sorted",
        "--train-subjects",
        "2",
        "--valid-subjects",
        "1",
        "--no-progress",
    ]
    assert main(args) == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert (
        manifest["train"]["n_slices"] == 20 and manifest["valid"]["n_slices"] == 10 and manifest["size"] == 48
    )
    capsys.readouterr()
    assert main([str(tmp_path / "missing"), str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and err.count("\n") == 1
    assert main([str(ixi["tar"]), str(tmp_path / "o3"), "--slices", "9"]) == 2
    assert "START:STOP" in capsys.readouterr().err
    # the default split is the paper's: these 6 random IDs are not its subjects
    assert main([str(ixi["tar"]), str(tmp_path / "o4"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lacks 60 of the paper's 60 subjects" in err and "--split sorted" in err
    assert main([str(ixi["tar"]), str(tmp_path / "o5"), "--train-subjects", "3"]) == 2
    assert "--split sorted" in capsys.readouterr().err


def test_prepared_file_without_affines_still_loads(prepared, tmp_path):
    # files prepared before the volume affines were stored: same slices, no "affine" in provenance
    from mri_n2n.data.base import H5SliceDataset

    out, _ = prepared
    old = tmp_path / "valid.h5"
    old.write_bytes((out / "valid.h5").read_bytes())
    with h5py.File(old, "a") as f:
        del f["affine"]
    ds, new = H5SliceDataset(old), H5SliceDataset(out / "valid.h5")
    assert "affine" not in ds.provenance(0) and np.asarray(new.provenance(0)["affine"]).shape == (4, 4)
    np.testing.assert_array_equal(ds[3][0].numpy(), new[3][0].numpy())


def test_paper_subject_lists_are_the_reference_ones():
    train, valid = paper_subject_ids()
    assert (len(train), len(valid)) == (50, 10) and not set(train) & set(valid)
    assert list(train) == sorted(train) and list(valid) == sorted(valid) and max(train) < min(valid)
    assert (train[0], train[-1], valid[0], valid[-1]) == (
        "IXI002-Guys-0828", "IXI063-Guys-0742", "IXI064-Guys-0743", "IXI073-Guys-0755"
    )  # fmt: skip
    numbers = {int(s[3:6]) for s in train}
    # the reference lists skip these IDs below IXI064
    assert set(range(2, 64)) - numbers == {3, 4, 5, 6, 7, 8, 9, 10, 11, 18, 32, 47}
    assert all(IXI_T1_PATTERN.match(f"{s}-T1.nii.gz") for s in train + valid)


@pytest.fixture(scope="module")
def paper_ixi(tmp_path_factory):
    """The paper's 60 subjects plus two decoys that sort among them, as small synthetic files."""
    root = tmp_path_factory.mktemp("paper_ixi")
    train, valid = paper_subject_ids()
    decoys = ["IXI003-Guys-0001", "IXI047-HH-0002"]  # IDs the reference does not list
    files = write_synthetic_ixi(root / "raw", subjects=[*train, *valid, *decoys], shape=(12, 12, 130))
    # one validation volume gets a faint slice: its maximum is 0.5/255 of the volume's
    faint = files[valid[0]]
    img = nib.load(faint)
    vol = np.asarray(img.dataobj).astype(np.float32)
    vol[:, :, 60] *= 0.5 / 255 * vol.max() / vol[:, :, 60].max()
    nib.save(nib.Nifti1Image(vol, img.affine), faint)
    return {"root": root, "files": files, "train": train, "valid": valid, "decoys": decoys}


def test_prepare_paper_split_uses_the_pinned_subjects(paper_ixi, tmp_path):
    raw = paper_ixi["root"] / "raw"
    manifest = prepare_ixi(raw, tmp_path / "paper", size=16, progress=False)  # the default split
    assert manifest["subject_split"] == "paper"
    assert [r["subject"] for r in manifest["train"]["subjects"]] == list(paper_ixi["train"])
    assert [r["subject"] for r in manifest["valid"]["subjects"]] == list(paper_ixi["valid"])
    assert manifest["unused_subjects"] == paper_ixi["decoys"]
    # the earlier rule (still available) takes the decoys because they sort among the first 60
    sorted_manifest = prepare_ixi(raw, tmp_path / "sorted", size=16, split="sorted", progress=False)
    assert "IXI003-Guys-0001" in [r["subject"] for r in sorted_manifest["train"]["subjects"]]
    # slice 60 of the faint volume is below 1/255 of its maximum: dropped; kept without the threshold
    rec = manifest["valid"]["subjects"][0]
    assert rec["n_slices"] == 94 and rec["skipped_black"] == 6
    with h5py.File(tmp_path / "paper" / "valid.h5", "r") as f:
        idx = f["slice_index"][: rec["n_slices"]]
        assert 60 not in idx and 59 in idx and f.attrs["min_peak"] == pytest.approx(1 / 255)
    loose = prepare_ixi(raw, tmp_path / "loose", size=16, min_peak=None, progress=False)
    assert loose["valid"]["subjects"][0]["n_slices"] == 95
    # the raw reader finds every listed subject: the paper split, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tr, va = build_mri_datasets("ixi", data_dir=str(raw), size=16)
    assert [va.provenance(i)["subject"] for i in range(0, len(va), 95)][:2] == list(paper_ixi["valid"][:2])
    assert {tr.provenance(i)["subject"] for i in range(len(tr))} == set(paper_ixi["train"])


def test_paper_split_names_a_missing_subject(paper_ixi, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    gone = paper_ixi["train"][7]
    for subject, path in paper_ixi["files"].items():
        if subject != gone:
            (partial / path.name).symlink_to(path)
    with pytest.raises(DataDirError) as e:
        prepare_ixi(partial, tmp_path / "out", size=16, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and f"lacks 1 of the paper's 60 subjects ({gone})" in msg
    assert "--split sorted" in msg
    with pytest.warns(UserWarning, match=f"lacks 1 of the paper's 60 subjects \\({gone}\\)"):
        tr, _ = build_ixi_datasets(partial, size=16, slices=(60, 61))
    assert tr.provenance(0)["subject"] == "IXI002-Guys-0828" and len(tr) == 50  # sorted: decoy IXI003 in
    with pytest.raises(DataDirError, match="lacks 1"):
        build_ixi_datasets(partial, size=16, split="paper")
