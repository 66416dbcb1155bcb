"""Audits trip on leaky inputs (a task whose SQL lets notes past its declared time rule, and hand-tampered
outputs), splits are subject-level and seeded, masks and pattern codes follow the contract."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from medmodal.cohort import TASKS, audit_cohort_dir, build_cohort
from medmodal.cohort.splits import assign_splits, split_of
from medmodal.common import MedmodalError
from medmodal.contracts import pattern_code, pattern_modalities

FIXTURE = Path(__file__).resolve().parent / "data" / "mimic_iv_fixture"


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("audit_cohorts")
    build_cohort("mimic_iv", FIXTURE, "readmission_30d", out / "readmission_30d", threads=1)
    build_cohort("mimic_iv", FIXTURE, "in_hospital_mortality_24h", out / "in_hospital_mortality_24h", threads=1)
    return out


def test_leaky_task_sql_fails_the_build(tmp_path):
    """The task SQL keeps notes until dischtime + 10 days while the task declares a 24 h grace: the build fails
    on the written outputs and leaves nothing behind."""
    spec = TASKS.get("readmission_30d")
    leaky = dataclasses.replace(spec, name="leaky_readmission", params={**spec.params, "note_grace_hours": 240})
    out = tmp_path / "leaky"
    with pytest.raises(MedmodalError, match="audit 'notes_after_cutoff' failed") as info:
        build_cohort("mimic_iv", FIXTURE, leaky, out)
    assert "10000007-" in str(info.value)  # names the note id (never its text)
    # names the output that was not written, not the temporary folder that is already gone
    assert info.value.path == str(out / "notes.parquet") and "nothing written" in str(info.value)
    assert not out.exists() and not list(tmp_path.glob(".leaky*"))


def _tamper(src: Path, dst: Path, name: str, fn: Callable[[pl.DataFrame], pl.DataFrame]) -> Path:
    shutil.copytree(src, dst)
    df = pl.read_parquet(dst / f"{name}.parquet")
    fn(df).write_parquet(dst / f"{name}.parquet")
    return dst


def _late_note(df: pl.DataFrame) -> pl.DataFrame:
    row = df.head(1).with_columns(pl.lit("late-note").alias("note_id"), pl.col("charttime") + dt.timedelta(days=30))
    return pl.concat([df, row]).sort("sample_id")


def _late_image(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(pl.col("study_time") + dt.timedelta(days=30))


def _second_split(df: pl.DataFrame) -> pl.DataFrame:
    row = df.head(1).with_columns(
        (pl.col("sample_id") + "b").alias("sample_id"),
        pl.when(pl.col("split") == "test").then(pl.lit("train")).otherwise(pl.lit("test")).alias("split"),
    )
    return pl.concat([df, row]).sort("sample_id")


def _unsorted(df: pl.DataFrame) -> pl.DataFrame:
    return df.reverse()


def _late_structured(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(pl.col("structured_time") + dt.timedelta(days=30))


def _wrong_pattern(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(pl.col("has_timeseries").not_())


def _late_bin(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(pl.col("hour") + 1000)


@pytest.mark.parametrize(
    "task, name, fn, check",
    [
        ("readmission_30d", "notes", _late_note, "notes_after_cutoff"),
        ("readmission_30d", "images", _late_image, "images_after_cutoff"),
        ("readmission_30d", "cohort", _second_split, "split_overlap"),
        ("readmission_30d", "cohort", _unsorted, "sorted_sample_id"),
        ("in_hospital_mortality_24h", "modalities", _late_structured, "structured_time_after_cutoff"),
        ("in_hospital_mortality_24h", "modalities", _wrong_pattern, "mask_consistency"),
        ("in_hospital_mortality_24h", "timeseries", _late_bin, "measurements_after_prediction"),
    ],
)
def test_tampered_outputs_trip_the_audits(cohorts, tmp_path, task, name, fn, check):
    assert audit_cohort_dir(cohorts / task)  # the untouched build passes
    bad = _tamper(cohorts / task, tmp_path / "bad", name, fn)
    with pytest.raises(MedmodalError, match=f"audit '{check}' failed"):
        audit_cohort_dir(bad)


def test_discharge_note_in_a_mortality_cohort_is_a_leak(cohorts, tmp_path):
    """Mortality tasks never allow discharge summaries, even one charted inside the window."""

    def add_discharge(df: pl.DataFrame) -> pl.DataFrame:
        row = df.head(1).with_columns(pl.lit("discharge").alias("note_type"), pl.lit("ds-x").alias("note_id"))
        return pl.concat([df, row]).sort("sample_id")

    bad = _tamper(cohorts / "in_hospital_mortality_24h", tmp_path / "bad", "notes", add_discharge)
    with pytest.raises(MedmodalError, match="audit 'notes_after_cutoff' failed: 1 notes"):
        audit_cohort_dir(bad)


def test_split_fractions_and_determinism():
    ids = range(10_000_000, 10_020_000)
    splits = assign_splits(ids, seed=0)
    share = splits["split"].value_counts(normalize=True).sort("split")
    got = dict(zip(share["split"], share["proportion"]))
    assert abs(got["train"] - 0.7) < 0.015 and abs(got["val"] - 0.1) < 0.01 and abs(got["test"] - 0.2) < 0.015
    assert assign_splits(ids, seed=0).equals(splits)
    other = assign_splits(ids, seed=1)
    changed = (other["split"] != splits["split"]).mean()
    assert 0.3 < changed < 0.6  # a new seed reshuffles roughly as independent draws would (1 - .7²-.1²-.2² = .46)
    assert split_of(10_000_001, 0) == split_of("10000001", 0)  # integer and text ids agree (eICU uses text)


def test_pattern_code_bit_order():
    mods = ["structured", "timeseries", "discharge_note", "radiology_note", "cxr"]
    assert pattern_code([True, False, False, False, True]) == 17
    assert pattern_modalities(17, mods) == ["structured", "cxr"]
    assert all(pattern_code([m in pattern_modalities(p, mods) for m in mods]) == p for p in range(32))
