"""Smoke test of the photographic quality benchmark: a micro budget, the result's structure, and the
JSON / Markdown files written by ``write_results``. (Quality itself is measured by the benchmark,
not asserted here.)"""

import json

import pytest

from mri_n2n.bench import write_results
from mri_n2n.bench.images import (
    BUDGETS,
    PAPER_KODAK,
    bench_image_quality,
    image_quality_markdown,
    image_quality_rows,
    row_steps,
)


def test_rows_cover_the_paper_table():
    quick = image_quality_rows(quick=True)
    full = image_quality_rows(quick=False)
    assert len(quick) == 10 and len(full) == 13
    assert {(r.noise, r.method, r.loss) for r in quick} <= {(r.noise, r.method, r.loss) for r in full}
    for noise in ("gaussian", "poisson", "bernoulli"):
        assert {(r.method, r.target) for r in quick if r.noise == noise} == {
            ("N2C", "clean"),
            ("N2N", "noisy"),
        }
    assert {r.loss for r in quick if r.noise == "text"} == {"l1", "l2"}
    assert {r.loss for r in quick if r.noise == "impulse"} == {"l1", "l0"}
    # every row of the full table has the paper's number next to it
    assert all((r.noise, r.method, r.loss) in PAPER_KODAK for r in full)
    assert set(BUDGETS) == {"quick", "full"}
    with pytest.raises(ValueError, match="unknown noise"):
        image_quality_rows(noises=["speckle"])


def test_rows_compared_by_a_goal_share_their_budget():
    # impulse rows train longer in the full mode, all of them alike; the other noises keep "steps"
    full = BUDGETS["full"]
    steps = {(r.noise, r.method, r.loss): row_steps(r, full) for r in image_quality_rows()}
    assert {v for k, v in steps.items() if k[0] == "impulse"} == {full["noise_steps"]["impulse"]}
    assert {v for k, v in steps.items() if k[0] != "impulse"} == {full["steps"]}
    assert full["noise_steps"]["impulse"] > full["steps"]
    # the quick mode has one budget for every row
    quick = BUDGETS["quick"]
    assert {row_steps(r, quick) for r in image_quality_rows(quick=True)} == {quick["steps"]}


def test_explicit_steps_are_every_rows_budget(tmp_path):
    result = bench_image_quality(
        out_dir=str(tmp_path),
        device="cpu",
        steps=2,
        size=32,
        batch_size=2,
        noises=["impulse"],
        val_limit=1,
        seed=1,
    )
    assert [r["steps"] for r in result["rows"]] == [2, 2, 2, 2]
    assert result["settings"]["noise_steps"] == {} and result["settings"]["seed"] == 1
    # another seed does not overwrite the seed-0 run folders
    assert (tmp_path / "image_quality_runs" / "full_seed1" / "impulse_n2n_l0" / "summary.json").is_file()
    assert not (tmp_path / "image_quality_runs" / "full").exists()
    assert [(r["method"], r["loss"]) for r in result["rows"]] == [
        ("N2N", "l2"),
        ("N2N", "l1"),
        ("N2N", "l0"),
        ("N2C", "l0"),
    ]


def test_micro_benchmark_writes_json_and_markdown(tmp_path):
    result = bench_image_quality(
        quick=True,
        out_dir=str(tmp_path),
        device="cpu",
        steps=3,
        size=32,
        batch_size=2,
        noises=["gaussian"],
        val_limit=1,
        workers=1,
    )
    rows = result["rows"]
    assert [(r["noise"], r["method"], r["target"]) for r in rows] == [
        ("gaussian", "N2C", "clean"),
        ("gaussian", "N2N", "noisy"),
    ]
    for r in rows:
        assert set(r) >= {"noise", "method", "loss", "target", "val_psnr_input", "val_psnr", "seconds"}
        assert r["loss"] == "l2" and r["steps"] == 3
        assert isinstance(r["val_psnr"], float) and isinstance(r["val_psnr_input"], float)
        assert r["seconds"] > 0
    # same seed, same validation noise: both rows see the same input
    assert rows[0]["val_psnr_input"] == pytest.approx(rows[1]["val_psnr_input"])
    (goal,) = result["goals"]
    assert goal["threshold_db"] == -0.5 and isinstance(goal["passed"], bool)
    assert goal["value_db"] == pytest.approx(rows[1]["val_psnr"] - rows[0]["val_psnr"])
    s = result["settings"]
    assert (s["steps"], s["size"], s["batch_size"], s["seed"], s["val_limit"]) == (3, 32, 2, 0, 1)
    assert result["machine"]["device"] == "cpu"
    assert (tmp_path / "image_quality_runs" / "quick" / "gaussian_n2n_l2" / "summary.json").is_file()

    md = image_quality_markdown(result)
    assert "| noise |" in md and "32.48" in md and "within 0.5 dB" in md
    path = write_results(tmp_path, "image_quality", result, md)
    data = json.loads(path.read_text())
    assert data["rows"][1]["method"] == "N2N" and data["settings"]["mode"] == "quick"
    text = (tmp_path / "image_quality.md").read_text()
    assert text.startswith("# image_quality") and "| gaussian | N2N | L2 | noisy |" in text
