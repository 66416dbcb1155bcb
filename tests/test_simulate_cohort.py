"""The cohort builder runs unchanged on simulated MIMIC-IV for every task, its labels are the SCM's draws, and
the missingness pattern it derives is informative about the outcome."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from medmodal.cohort import build_cohort, tasks_for
from medmodal.simulate import simulate

# (task, label column, truth column, join key, minimum samples, minimum positives) at 500 subjects; a few
# thousand subjects give every task hundreds of positives (docs/simulator.md).
TASKS = [
    ("readmission_30d", "readmission_30d", "y_readmission_30d", "hadm_id", 400, 50),
    ("readmission_30d", "icu_admission_90d", "y_icu_admission_90d", "hadm_id", 400, 25),
    ("in_hospital_mortality_24h", "in_hospital_mortality_24h", "y_in_hospital_mortality", "stay_id", 200, 20),
    ("in_hospital_mortality_48h", "in_hospital_mortality_48h", "y_in_hospital_mortality", "stay_id", 120, 12),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("simcohort")
    raw = simulate("mimic_iv", root / "raw", subjects=500, seed=21, image_size=32)
    out = build_cohort("mimic_iv", raw, "all", root / "cohorts")
    return raw, out


def test_every_mimic_task_builds(built):
    _raw, out = built
    assert set(tasks_for("mimic_iv")) >= {t[0] for t in TASKS}
    for task in tasks_for("mimic_iv"):
        assert (out / task / "cohort.parquet").exists(), task


@pytest.mark.parametrize("task,label,truth_col,key,min_n,min_pos", TASKS)
def test_cohort_labels_are_the_scm_draws(built, task, label, truth_col, key, min_n, min_pos):
    raw, out = built
    cohort = pl.read_parquet(out / task / "cohort.parquet")
    assert cohort.height >= min_n and cohort[label].sum() >= min_pos, (task, cohort.height, cohort[label].sum())
    truth = pl.read_parquet(raw / "truth.parquet").filter(pl.col(key).is_not_null())
    joined = cohort.join(truth.select(key, truth_col), on=key)
    assert joined.height == cohort.height
    assert (joined[label] == joined[truth_col]).all()


def test_missingness_pattern_is_informative(built):
    """The label rate differs across missingness patterns of the built cohort (MNAR through U and C)."""
    _raw, out = built
    df = pl.read_parquet(out / "readmission_30d" / "cohort.parquet").join(
        pl.read_parquet(out / "readmission_30d" / "modalities.parquet"), on="sample_id"
    )
    by_cxr = df.group_by("has_cxr").agg(pl.col("readmission_30d").mean()).sort("has_cxr")["readmission_30d"]
    assert by_cxr[1] - by_cxr[0] > 0.08, by_cxr.to_list()
    many = df.filter(pl.col("n_observed") >= 5)["readmission_30d"].mean()
    few = df.filter(pl.col("n_observed") <= 3)["readmission_30d"].mean()
    assert many - few > 0.1, (many, few)
    icu = pl.read_parquet(out / "in_hospital_mortality_24h" / "cohort.parquet").join(
        pl.read_parquet(out / "in_hospital_mortality_24h" / "modalities.parquet"), on="sample_id"
    )
    rate = (
        icu.group_by("has_cxr")
        .agg(pl.col("in_hospital_mortality_24h").mean())
        .sort("has_cxr")["in_hospital_mortality_24h"]
    )
    assert rate[1] - rate[0] > 0.05, rate.to_list()
