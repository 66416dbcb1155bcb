"""Every MIMIC-IV task on the vendored demo (data/mimic-iv-demo-2.2): the samples and labels the builder picks
equal those computed independently here with polars from the raw files, following docs/tasks.md literally."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from medmodal.cohort import audit_cohort_dir, build_cohort

DEMO = Path(__file__).resolve().parents[1] / "data" / "mimic-iv-demo-2.2"


@pytest.fixture(scope="module")
def demo_cohorts(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo_cohorts")
    build_cohort("mimic_iv", DEMO, "all", out, threads=2)
    return out


def _read(name: str) -> pl.DataFrame:
    return pl.read_csv(DEMO / f"{name}.csv.gz", try_parse_dates=True, infer_schema_length=100_000)


def _age(df: pl.DataFrame, time_col: str) -> pl.Expr:
    return pl.col("anchor_age") + pl.col(time_col).dt.year() - pl.col("anchor_year")


def expected_readmission() -> pl.DataFrame:
    adm, pat, icu = _read("hosp/admissions"), _read("hosp/patients"), _read("icu/icustays")
    first = adm.sort(["subject_id", "admittime", "hadm_id"]).group_by("subject_id", maintain_order=True).first()
    first = first.join(pat, on="subject_id").filter(
        (_age(first, "admittime") >= 18) & (pl.col("hospital_expire_flag") != 1)
    )
    readm = (
        first.select("subject_id", "hadm_id", "dischtime")
        .join(adm.select("subject_id", pl.col("hadm_id").alias("other"), "admittime"), on="subject_id")
        .filter(
            (pl.col("other") != pl.col("hadm_id"))
            & (pl.col("admittime") > pl.col("dischtime"))
            & (pl.col("admittime") <= pl.col("dischtime") + dt.timedelta(days=30))
        )["hadm_id"]
        .unique()
    )
    icu90 = (
        first.select("subject_id", "hadm_id", "dischtime")
        .join(icu.select("subject_id", "intime"), on="subject_id")
        .filter(
            (pl.col("intime") > pl.col("dischtime")) & (pl.col("intime") <= pl.col("dischtime") + dt.timedelta(days=90))
        )["hadm_id"]
        .unique()
    )
    return first.select(
        pl.col("hadm_id").cast(pl.Utf8).alias("sample_id"),
        pl.col("hadm_id").is_in(readm.implode()).cast(pl.Int8).alias("readmission_30d"),
        pl.col("hadm_id").is_in(icu90.implode()).cast(pl.Int8).alias("icu_admission_90d"),
    ).sort("sample_id")


def expected_mortality(hours: int) -> pl.DataFrame:
    adm, pat, icu = _read("hosp/admissions"), _read("hosp/patients"), _read("icu/icustays")
    first = icu.sort(["subject_id", "intime", "stay_id"]).group_by("subject_id", maintain_order=True).first()
    h = dt.timedelta(hours=hours)
    df = (
        first.join(pat, on="subject_id")
        .join(adm.select("hadm_id", "deathtime", "hospital_expire_flag"), on="hadm_id", how="left")
        .filter(
            (_age(first, "intime") >= 18)
            & (pl.col("outtime") >= pl.col("intime") + h)
            & (pl.col("deathtime").is_null() | (pl.col("deathtime") > pl.col("intime") + h))
        )
    )
    return df.select(
        pl.col("stay_id").cast(pl.Utf8).alias("sample_id"),
        pl.col("hospital_expire_flag").cast(pl.Int8).alias(f"in_hospital_mortality_{hours}h"),
    ).sort("sample_id")


def test_demo_readmission_matches_independent_computation(demo_cohorts):
    got = pl.read_parquet(demo_cohorts / "readmission_30d" / "cohort.parquet")
    exp = expected_readmission()
    assert got.select(exp.columns).equals(exp)
    assert exp.height > 80 and exp["readmission_30d"].sum() > 5  # a real cohort, not an empty match


@pytest.mark.parametrize("hours", [24, 48])
def test_demo_mortality_matches_independent_computation(demo_cohorts, hours):
    got = pl.read_parquet(demo_cohorts / f"in_hospital_mortality_{hours}h" / "cohort.parquet")
    exp = expected_mortality(hours)
    assert got.select(exp.columns).equals(exp)
    assert exp.height > 40 and exp[f"in_hospital_mortality_{hours}h"].sum() >= 3


@pytest.mark.parametrize("task", ["readmission_30d", "in_hospital_mortality_24h", "in_hospital_mortality_48h"])
def test_demo_audits_pass_and_modalities_are_honest(demo_cohorts, task):
    d = demo_cohorts / task
    assert "notes_after_cutoff" in audit_cohort_dir(d)
    man = json.loads((d / "manifest.json").read_text())
    assert man["dataset_version"] == "2.2"
    mods = pl.read_parquet(d / "modalities.parquet")
    # The demo has no notes and no X-rays: those modalities are absent for everyone and said to be unavailable.
    for m in ("discharge_note", "radiology_note", "cxr"):
        if m in man["modalities"]:
            assert not mods[f"has_{m}"].any()
            assert m in man["unavailable_modalities"]
    assert mods["has_structured"].all()
    assert mods["has_timeseries"].mean() > 0.9  # labs / vitals exist for almost every demo sample
    att = pl.read_parquet(d / "attrition.parquet")
    assert att["n_samples"][-1] == man["row_counts"]["cohort"]
    assert att["n_subjects"][0] == 100  # the demo's 100 patients


def test_demo_structured_values_are_plausible(demo_cohorts):
    s = pl.read_parquet(demo_cohorts / "in_hospital_mortality_24h" / "structured.parquet")
    assert s["heart_rate_count"].min() >= 0
    hr = s["heart_rate_mean"].drop_nulls()
    assert hr.len() > 40 and 40 < hr.mean() < 140
    t = s["temperature_mean"].drop_nulls()
    assert 35 < t.mean() < 39  # Fahrenheit charted values were converted to Celsius
    ts = pl.read_parquet(demo_cohorts / "in_hospital_mortality_24h" / "timeseries.parquet")
    assert ts["hour"].min() >= 0 and ts["hour"].max() <= 30  # window = 6 h look-back + 24 h
