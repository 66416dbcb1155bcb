"""Training end to end on a small learnable cohort: every backbone learns, every framework trains and reloads,
runs are reproducible, evaluation reloads without retraining (also on another cohort), the CLI and DDP work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

import medmodal.models.backbones
import medmodal.models.frameworks  # noqa: F401
from medmodal.cli import app
from medmodal.common import MedmodalError
from medmodal.models.base import BACKBONES, FRAMEWORKS
from medmodal.models.evaluate import evaluate
from medmodal.models.toy import write_toy_cohort
from medmodal.models.train import train

# max |p_ddp - p_single| over every predicted probability, dropout off (docs/models.md, "Several GPUs and nodes");
# measured 1.2e-7: the two runs differ by the order of float sums only
DDP_TOLERANCE = 1e-5
FAST = {"batch_size": 64, "lr": 3e-3, "n_boot": 200, "progress": False, "backbone_config": {"hidden": 32}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def runs(toy, tmp_path_factory):
    """One trained run per backbone (erm), shared by the tests below."""
    root = tmp_path_factory.mktemp("runs")
    return {b: train(*toy, root / b, backbone=b, epochs=12, seed=0, **FAST) for b in BACKBONES.names()}


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_every_backbone_learns_the_signal(runs, backbone):
    m = json.loads((runs[backbone] / "metrics.json").read_text())
    test = m["tasks"]["mortality"]["test"]
    auroc = test["overall"]["auroc"]
    assert auroc["value"] > 0.72, auroc  # chance is 0.5; the toy signal supports ~0.8
    assert auroc["ci_low"] < auroc["value"] < auroc["ci_high"]
    assert "none" in test["by_pattern"] and "F" in test["by_subgroup"]["gender"]  # all-missing rows scored too
    assert m["training"]["best_epoch"] >= 1 and m["training"]["history"][0]["val_auprc"] is not None


def test_run_directory_contract(runs, toy):
    run = runs["late_fusion"]
    for name in (
        "config.json",
        "model.safetensors",
        "metrics.json",
        "predictions.parquet",
        "training_curve.png",
        "normalization.safetensors",
        "framework_state.json",
    ):
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["backbone"] == {"name": "late_fusion", "config": {"hidden": 32, "dropout": 0.1}}
    assert cfg["data"]["feature_fingerprints"]["cxr"]["encoder_fingerprint"] == "toy-v1"
    pred = pl.read_parquet(run / "predictions.parquet")
    cohort = pl.read_parquet(toy[0] / "cohort.parquet")
    assert pred["sample_id"].to_list() == cohort["sample_id"].to_list()
    assert pred.columns == [
        "sample_id",
        "split",
        "pattern",
        "mortality_label",
        "mortality_prob",
        "readmission_30d_label",
        "readmission_30d_prob",
    ]
    assert pred["readmission_30d_label"].null_count() == cohort["readmission_30d"].null_count()
    assert pred["mortality_prob"].is_between(0, 1).all()


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_evaluate_reloads_with_identical_predictions(runs, backbone, tmp_path):
    run = runs[backbone]
    out = evaluate(run, out=tmp_path / "eval", n_boot=0)
    a = pl.read_parquet(run / "predictions.parquet")
    b = pl.read_parquet(out / "predictions.parquet")
    assert a.equals(b)
    m_train = json.loads((run / "metrics.json").read_text())["tasks"]["mortality"]["test"]["overall"]["auroc"]
    m_eval = json.loads((out / "metrics.json").read_text())["tasks"]["mortality"]["test"]["overall"]["auroc"]
    assert m_eval["value"] == m_train["value"] and m_eval["ci_low"] is None  # n_boot=0: no interval


def test_same_seed_same_run_different_seed_different_run(toy, tmp_path):
    kw = dict(backbone="attention_fusion", epochs=2, **(FAST | {"n_boot": 0}))
    a = train(*toy, tmp_path / "a", seed=3, **kw)
    b = train(*toy, tmp_path / "b", seed=3, **kw)
    c = train(*toy, tmp_path / "c", seed=4, **kw)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert pl.read_parquet(a / "predictions.parquet").equals(pl.read_parquet(b / "predictions.parquet"))
    assert not pl.read_parquet(a / "predictions.parquet").equals(pl.read_parquet(c / "predictions.parquet"))


@pytest.mark.parametrize("framework", FRAMEWORKS.names())
def test_every_framework_trains_and_reloads(toy, tmp_path, framework):
    run = train(
        *toy,
        tmp_path / framework,
        backbone="late_fusion",
        framework=framework,
        epochs=3,
        seed=0,
        tasks=["mortality"],
        **(FAST | {"n_boot": 0}),
    )
    pred = pl.read_parquet(run / "predictions.parquet")
    assert pred["mortality_prob"].is_finite().all()
    assert json.loads((run / "config.json").read_text())["framework"]["name"] == framework
    again = evaluate(run, out=tmp_path / "eval", n_boot=0)
    assert pl.read_parquet(again / "predictions.parquet").equals(pred)  # incl. post-hoc state from JSON


def test_multiclass_task(toy, tmp_path):
    root = tmp_path / "mc"
    write_toy_cohort(root / "cohort", root / "store", n=300, seed=1, multiclass=True)
    run = train(
        root / "cohort",
        root / "store",
        root / "run",
        backbone="late_fusion",
        epochs=4,
        seed=0,
        tasks=["diagnosis_3class"],
        **(FAST | {"n_boot": 50}),
    )
    pred = pl.read_parquet(run / "predictions.parquet")
    probs = np.array(pred["diagnosis_3class_prob"].to_list())
    assert probs.shape == (300, 3) and np.allclose(probs.sum(1), 1, atol=1e-6)
    m = json.loads((run / "metrics.json").read_text())["tasks"]["diagnosis_3class"]["test"]["overall"]
    assert m["auroc"]["value"] > 0.6 and sum(m["class_counts"]) == m["n"]


def test_evaluate_on_another_cohort_without_cxr(runs, tmp_path):
    """External validation: another site, different size, no chest X-rays; training normalisation is reused."""
    site = tmp_path / "site"
    write_toy_cohort(
        site / "cohort", site / "store", n=300, seed=11, modalities=("structured", "timeseries", "discharge_note")
    )
    out = evaluate(runs["late_fusion"], site / "cohort", site / "store", n_boot=100)
    assert (
        out == runs["late_fusion"] / "eval" / json.loads((site / "cohort" / "manifest.json").read_text())["cohort_id"]
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["cohort"]["external"] is True
    assert m["tasks"]["mortality"]["all"]["overall"]["n"] == 300
    assert m["tasks"]["mortality"]["all"]["overall"]["auroc"]["value"] > 0.65
    assert not any("cxr" in k for k in m["tasks"]["mortality"]["all"]["by_pattern"])


def test_evaluate_by_requested_subgroup_and_refuses_bad_runs(runs, tmp_path):
    out = evaluate(runs["late_fusion"], out=tmp_path / "by_split", subgroups=["split"], n_boot=0)
    by = json.loads((out / "metrics.json").read_text())["tasks"]["mortality"]["test"]["by_subgroup"]
    assert list(by) == ["split"] and list(by["split"]) == ["test"]
    with pytest.raises(MedmodalError, match="field 'insurance'"):
        evaluate(runs["late_fusion"], out=tmp_path / "x", subgroups=["insurance"])
    broken = tmp_path / "broken"
    shutil.copytree(runs["late_fusion"], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(MedmodalError, match="model.safetensors"):
        evaluate(broken, out=tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_errors_are_one_line_and_nothing_is_written(toy, tmp_path):
    with pytest.raises(MedmodalError, match="unknown backbone 'gru'"):
        train(*toy, tmp_path / "x", backbone="gru", epochs=1, progress=False)
    with pytest.raises(MedmodalError, match="framework 'erm' has no option 'bogus' .*head_dropout"):
        train(*toy, tmp_path / "x", backbone="late_fusion", epochs=1, progress=False, framework_config={"bogus": 1})
    with pytest.raises(MedmodalError, match="backbone 'late_fusion': --backbone-arg hidden: expected an integer"):
        train(*toy, tmp_path / "x", backbone="late_fusion", epochs=1, progress=False, backbone_config={"hidden": 1.5})
    with pytest.raises(MedmodalError, match="--epochs: must be >= 1"):
        train(*toy, tmp_path / "x", backbone="late_fusion", epochs=0, progress=False)
    assert not (tmp_path / "x").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary directory left behind either


def test_cli_train_and_evaluate(toy, tmp_path):
    cohort_dir, store = toy
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "train",
            str(cohort_dir),
            "--store",
            str(store),
            "--backbone",
            "late_fusion",
            "--out",
            str(tmp_path / "run"),
            "--task",
            "mortality",
            "--epochs",
            "2",
            "--batch-size",
            "128",
            "--n-boot",
            "50",
            "--backbone-arg",
            "hidden=16",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and (tmp_path / "run" / "model.safetensors").is_file()
    res = runner.invoke(
        app,
        [
            "train",
            str(cohort_dir),
            "--store",
            str(store),
            "--backbone",
            "late_fusion",
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "1",
        ],
    )
    assert res.exit_code == 1 and "already exists" in res.output
    res = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--n-boot", "0", "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ev" / "metrics.json").is_file()
    res = runner.invoke(app, ["evaluate", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "config.json missing" in res.output


def test_ddp_two_cpu_processes(toy, tmp_path):
    """torchrun with 2 gloo ranks: same outputs contract, world_size recorded, and a sane model."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed beside this Python")
    cohort_dir, store = toy
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "medmodal.cli",
        "train",
        str(cohort_dir),
        "--store",
        str(store),
        "--backbone",
        "late_fusion",
        "--out",
        str(tmp_path / "ddp"),
        "--task",
        "mortality",
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--lr",
        "3e-3",
        "--n-boot",
        "0",
        "--backbone-arg",
        "hidden=32",
        "--backbone-arg",
        "dropout=0",  # dropout draws differ by rank (by design): without it the runs differ by float order only
        "--framework-arg",
        "head_dropout=0",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert m["training"]["world_size"] == 2
    assert m["tasks"]["mortality"]["test"]["overall"]["auroc"]["value"] > 0.65
    assert res.stderr.count("wrote ") == 1  # only rank 0 writes and reports
    assert 0 <= m["training"]["throughput"]["data_wait_fraction"] < 1
    assert m["training"]["throughput"]["samples_per_second"] > 0

    # the same run in one process: the global batch and the permutation are the same, so the two differ only by
    # the order of float sums (each rank averages its half, DDP averages the two); docs/models.md states the bound
    one = train(
        cohort_dir, store, tmp_path / "one", backbone="late_fusion", tasks=["mortality"], epochs=3, batch_size=64,
        lr=3e-3, n_boot=0, progress=False, backbone_config={"hidden": 32, "dropout": 0.0},
        framework_config={"head_dropout": 0.0},
    )  # fmt: skip
    single = json.loads((one / "metrics.json").read_text())
    assert single["training"]["best_epoch"] == m["training"]["best_epoch"]
    p_ddp = pl.read_parquet(tmp_path / "ddp" / "predictions.parquet")
    p_one = pl.read_parquet(one / "predictions.parquet")
    assert p_ddp["sample_id"].to_list() == p_one["sample_id"].to_list()
    prob = [c for c in p_one.columns if c.endswith("_prob")]
    assert prob, p_one.columns
    diff = max(float((p_ddp[c] - p_one[c]).abs().max()) for c in prob)
    assert diff < DDP_TOLERANCE, diff
    auroc = lambda r: r["tasks"]["mortality"]["test"]["overall"]["auroc"]["value"]  # noqa: E731
    assert abs(auroc(m) - auroc(single)) < 1e-3
