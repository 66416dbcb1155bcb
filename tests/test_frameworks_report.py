"""`medmodal report RUN_DIR`: the t-SNE figure of causal vs biased features and its decodability numbers, from a
truth file or a cohort column, through the library and the CLI; clear one-line errors on bad input. The shift
benchmark end to end at a tiny size is marked slow."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from medmodal.cli import app
from medmodal.common import MedmodalError
from medmodal.models.report import report
from medmodal.models.toy import write_toy_cohort
from medmodal.models.train import train

FAST = {
    "batch_size": 64,
    "lr": 3e-3,
    "n_boot": 0,
    "progress": False,
    "backbone_config": {"hidden": 16},
    "epochs": 2,
    "seed": 0,
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    cohort, store = write_toy_cohort(root / "cohort", root / "store", n=300, seed=1), root / "store"
    dfd = train(cohort, store, root / "dfd", backbone="late_fusion", framework="dfd", **FAST)
    erm = train(cohort, store, root / "erm", backbone="late_fusion", framework="erm", **FAST)
    # a truth table in the simulator's shape: one row per admission, the confounder C, plus rows of other subjects
    hadm = pl.read_parquet(cohort / "cohort.parquet")["hadm_id"]
    c = (np.arange(len(hadm)) % 3 == 0).astype(np.int8)
    truth = pl.DataFrame(
        {
            "hadm_id": pl.concat([hadm, pl.Series([1, 2], dtype=pl.Int64)]),
            "C": np.concatenate([c, [0, 1]]).astype(np.int8),
        }
    )
    truth.write_parquet(root / "truth.parquet")
    return {"dfd": dfd, "erm": erm, "truth": root / "truth.parquet", "root": root}


def test_report_from_truth_writes_figure_and_decodability(runs):
    out = report(runs["dfd"], truth=runs["truth"], split="all", max_points=120, iterations=250)
    assert (out / "tsne_causal_biased.png").stat().st_size > 10_000
    rep = json.loads((out / "report.json").read_text())
    assert rep["n_points"] == 120 and rep["color"]["source"].endswith("joined on hadm_id")
    for stream in ("causal", "biased"):
        assert 0.0 <= rep["confounder_decodability_auroc"][stream] <= 1.0


def test_report_from_cohort_column_via_cli(runs):
    res = CliRunner().invoke(
        app,
        [
            "report",
            str(runs["dfd"]),
            "--color-by",
            "gender",
            "--split",
            "all",
            "--max-points",
            "100",
            "--iterations",
            "250",
            "--overwrite",  # the module's first test wrote this run's report
        ],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((runs["dfd"] / "report" / "report.json").read_text())
    assert rep["color"]["name"] == "gender" and rep["n_points"] == 100


def test_report_errors_are_one_line(runs, tmp_path):
    with pytest.raises(MedmodalError, match="no causal / biased streams"):
        report(runs["erm"], color_by="gender", split="all")
    with pytest.raises(MedmodalError, match="exactly one of"):
        report(runs["dfd"])
    with pytest.raises(MedmodalError, match="already exists"):
        report(runs["dfd"], truth=runs["truth"])  # an earlier test's report is kept without --overwrite
    with pytest.raises(MedmodalError, match="field 'nope'"):
        report(runs["dfd"], truth=runs["truth"], confounder="nope", overwrite=True)
    partial = tmp_path / "partial.parquet"
    pl.read_parquet(runs["truth"]).head(20).write_parquet(partial)
    with pytest.raises(MedmodalError, match="have no truth row"):
        report(runs["dfd"], truth=partial, overwrite=True)
    res = CliRunner().invoke(app, ["report", str(runs["dfd"]), "--color-by", "nope", "--overwrite"])
    assert res.exit_code == 1 and "field 'nope'" in res.output
    assert not (runs["erm"] / "report").exists()  # nothing half-written on failure


@pytest.mark.slow
def test_shift_benchmark_quick_profile_end_to_end_and_resumable(tmp_path):
    """The --quick profile runs every stage of the protocol: selection on the training environment with three
    candidates per method on its own world and seed, reporting runs, ablations, target-domain selection apart,
    paired intervals; a second call trains nothing."""
    import dataclasses

    from medmodal.benchmarks.shift import QUICK, candidates, run_benchmark

    cfg = dataclasses.replace(QUICK, jobs=1)
    out = run_benchmark(tmp_path / "shift", cfg)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["selection"]) == set(cfg.methods)
    for m, sel in summary["selection"].items():
        assert len(sel["candidates"]) == len(candidates()[m]) == 3  # the same budget, erm included
    cells = out / "work" / "cells"
    for p in cells.rglob("*.npz"):  # selection and reporting never share a world or a seed
        in_selection_world = f"world{cfg.select_world}" in str(p.parent)
        assert in_selection_world == (f"seed{cfg.select_seed}" in p.name), p
    rows = summary["cells"]
    scorings = {"id", *cfg.mechanisms}
    for m in cfg.methods:
        for c in cfg.c_outcome:
            got = {
                r["scoring"] for r in rows if r["method"] == m and r["c_outcome"] == c and r["variant"] == "selected"
            }
            assert got == scorings, (m, c)
    for r in rows:
        for metric in ("auroc", "auprc"):
            d = r["vs_erm"][metric]
            if r["method"] != "erm":
                assert d["ci_low"] <= d["delta"] <= d["ci_high"], r
    variants = {(r["method"], r["variant"]) for r in rows}
    assert {
        ("dfd", "no_mi"),
        ("cdmm", "no_adjustment"),
        ("mmnar", "no_rectifier"),
        ("erm", "target_selected"),
    } <= variants
    md = (out / "benchmark.md").read_text()
    assert "## Detail: outcome_shift" in md and "Confounder strength sweep" in md and (out / "shift.png").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in cells.rglob("*.npz")}
    run_benchmark(tmp_path / "shift", cfg)  # resumes: every cell is skipped
    assert {p: p.stat().st_mtime_ns for p in cells.rglob("*.npz")} == stamps


@pytest.mark.slow
def test_every_method_beats_chance_on_the_simulated_pipeline(tmp_path):
    """simulate -> build_cohort -> featurize_all -> train, every method: better than chance in distribution and
    on the shifted environment (the benchmark's pipeline at a small size)."""
    from medmodal.benchmarks.shift import ShiftConfig, run_benchmark

    cfg = ShiftConfig(
        subjects=1200, worlds=(1,), seeds=(0,), c_outcome=(0.9,), mechanisms=("shifted",), epochs=5, ablations=False
    )
    summary = json.loads((run_benchmark(tmp_path / "shift", cfg) / "summary.json").read_text())
    selected = [r for r in summary["cells"] if r["variant"] == "selected"]
    assert {r["method"] for r in selected} == set(cfg.methods)
    for r in selected:
        floor = 0.6 if r["scoring"] == "id" else 0.55
        assert r["vs_erm"]["auroc"]["a"] > floor, r
