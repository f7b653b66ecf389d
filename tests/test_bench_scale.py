"""``mri-n2n bench scale --quick``: the fastMRI-shaped data set and the JSON/Markdown it writes."""

from __future__ import annotations

import json

import h5py
import numpy as np

from mri_n2n.bench.scale import scale_settings, write_scale_data
from mri_n2n.cli.bench import main


def test_quick_scale_data_is_fastmri_shaped_seeded_and_reused(tmp_path):
    st = scale_settings(quick=True)
    folder = write_scale_data(tmp_path / "d", quick=True, progress=False)
    files = sorted(folder.rglob("*.h5"))
    assert len(files) == st["volumes"] + st["valid_volumes"]
    assert len(list((folder / "train").glob("*.h5"))) == st["volumes"]
    with h5py.File(files[0], "r") as f:
        assert f["kspace"].shape == (st["slices"], st["coils"], 2 * st["size"], st["size"])
        assert f["kspace"].dtype == np.complex64
        assert b"reconSpace" in bytes(f["ismrmrd_header"][()])
        k0 = f["kspace"][0]
    with h5py.File(files[1], "r") as f:
        assert not np.allclose(f["kspace"][0], k0)  # the volumes differ
    stamps = [p.stat().st_mtime_ns for p in files]
    write_scale_data(tmp_path / "d", quick=True, progress=False)
    assert [p.stat().st_mtime_ns for p in files] == stamps  # complete: reused
    files[0].unlink()
    write_scale_data(tmp_path / "d", quick=True, progress=False)
    with h5py.File(files[0], "r") as f:  # rewritten, the same (seeded)
        np.testing.assert_array_equal(f["kspace"][0], k0)


def test_bench_scale_quick_writes_json_and_markdown(tmp_path):
    assert main(["scale", "--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "scale_quick.json").read_text())
    assert {"settings", "stages", "loader", "steps", "ratios", "machine"} <= set(res)
    assert set(res["loader"]["workers"]) == {"0", "1", "2"}
    for row in res["loader"]["workers"].values():
        assert row["cold"]["median"] > 0 and row["warm"]["median"] > 0 and row["warm_per_worker"] > 0
    assert set(res["steps"]) == set(res["ratios"]) == {"multicoil", "multicoil-gpu"}
    for name, s in res["steps"].items():
        assert s["dc"] == "prox" and s["slices_per_s"]["median"] > 0 and s["peak_memory"]["bytes"] >= 0
        r = res["ratios"][name]
        assert r["bottleneck"] == ("network" if r["ratio"] > 1 else "loader")
    assert set(res["stages"]) >= {"read", "crop_fft", "maps_estimate", "maps_cache_read"}
    md = (tmp_path / "scale_quick.md").read_text()
    assert "| workers | cold | warm" in md and "multicoil-gpu" in md and "bottleneck" in md
