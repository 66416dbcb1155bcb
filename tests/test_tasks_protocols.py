"""The seed papers' and benchmarks' tasks on the vendored MIMIC-IV demo, each against an independent polars
computation over the raw CSVs that follows docs/tasks.md literally (never the SQL): MUSE's 15-day readmission
and 90-day post-discharge mortality, ICU length of stay > 7 days at 48 h, MEDS-DEV's in-ICU mortality after
24 h; the sample unit (one per subject or one per admission / stay) with splits by subject either way; task
parameters from the library; MUSE's sample-level split as a named protocol."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from medmodal.cohort import TASKS, audit_cohort_dir, build_cohort, format_report
from medmodal.cohort.splits import split_of
from medmodal.common import MedmodalError

DEMO = Path(__file__).resolve().parents[1] / "data" / "mimic-iv-demo-2.2"


def _read(name: str) -> pl.DataFrame:
    return pl.read_csv(DEMO / f"{name}.csv.gz", try_parse_dates=True, infer_schema_length=100_000)


ADM, PAT, ICU = _read("hosp/admissions"), _read("hosp/patients"), _read("icu/icustays")


def _age(time_col: str) -> pl.Expr:
    return pl.col("anchor_age") + pl.col(time_col).dt.year() - pl.col("anchor_year")


def _index_admissions(every: bool) -> pl.DataFrame:
    adm = ADM.sort(["subject_id", "admittime", "hadm_id"])
    if not every:
        adm = adm.group_by("subject_id", maintain_order=True).first()
    return adm.join(PAT, on="subject_id").filter((_age("admittime") >= 18) & (pl.col("hospital_expire_flag") != 1))


def expected_readmission(days: int, every: bool = False) -> pl.DataFrame:
    idx = _index_admissions(every)
    hit = (
        idx.select("subject_id", "hadm_id", "dischtime")
        .join(ADM.select("subject_id", pl.col("hadm_id").alias("other"), "admittime"), on="subject_id")
        .filter(
            (pl.col("other") != pl.col("hadm_id"))
            & (pl.col("admittime") > pl.col("dischtime"))
            & (pl.col("admittime") <= pl.col("dischtime") + dt.timedelta(days=days))
        )["hadm_id"]
        .unique()
    )
    return idx.select(
        pl.col("hadm_id").cast(pl.Utf8).alias("sample_id"),
        pl.col("hadm_id").is_in(hit.implode()).cast(pl.Int8).alias(f"readmission_{days}d"),
    ).sort("sample_id")


def expected_mortality(days: int) -> pl.DataFrame:
    # dod is a date: a death from the discharge day to the day dischtime + days falls on counts
    idx = _index_admissions(False).filter(pl.col("dod").is_null() | (pl.col("dod") >= pl.col("dischtime").dt.date()))
    end = (pl.col("dischtime") + dt.timedelta(days=days)).dt.date()
    died = pl.col("dod").is_not_null() & (pl.col("dod") >= pl.col("dischtime").dt.date()) & (pl.col("dod") <= end)
    return idx.select(
        pl.col("hadm_id").cast(pl.Utf8).alias("sample_id"), died.cast(pl.Int8).alias(f"mortality_{days}d")
    ).sort("sample_id")


def _index_stays(every: bool) -> pl.DataFrame:
    icu = ICU.sort(["subject_id", "intime", "stay_id"])
    if not every:
        icu = icu.group_by("subject_id", maintain_order=True).first()
    return icu.join(PAT, on="subject_id").join(ADM.select("hadm_id", "deathtime"), on="hadm_id", how="left")


def expected_los(days: int, hours: int, every: bool = False) -> pl.DataFrame:
    h = dt.timedelta(hours=hours)
    df = _index_stays(every).filter(
        (_age("intime") >= 18)
        & (pl.col("outtime") >= pl.col("intime") + h)
        & (pl.col("deathtime").is_null() | (pl.col("deathtime") > pl.col("intime") + h))
    )
    return df.select(
        pl.col("stay_id").cast(pl.Utf8).alias("sample_id"),
        (pl.col("outtime") - pl.col("intime") > dt.timedelta(days=days)).cast(pl.Int8).alias(f"los_{days}d_{hours}h"),
    ).sort("sample_id")


def expected_in_icu_mortality(every: bool = False) -> pl.DataFrame:
    gap = dt.timedelta(hours=48)
    df = _index_stays(every)
    others = df.select("subject_id", "stay_id", "intime").join(
        ICU.select("subject_id", pl.col("stay_id").alias("o_stay"), pl.col("intime").alias("o_in")), on="subject_id"
    )
    admitted = others.filter(
        (pl.col("o_stay") != pl.col("stay_id"))
        & (pl.col("o_in") > pl.col("intime"))
        & (pl.col("o_in") <= pl.col("intime") + gap)
    )["stay_id"]
    df = df.filter(
        (_age("intime") >= 18)
        & (pl.col("outtime") > pl.col("intime") + gap)
        & (pl.col("deathtime").is_null() | (pl.col("deathtime") > pl.col("intime") + gap))
        & ~pl.col("stay_id").is_in(admitted.implode())
    )
    died = pl.col("deathtime").is_not_null() & (pl.col("deathtime") <= pl.col("outtime"))
    return df.select(
        pl.col("stay_id").cast(pl.Utf8).alias("sample_id"), died.cast(pl.Int8).alias("in_icu_mortality_24h")
    ).sort("sample_id")


def _build(tmp_path: Path, task, **kw) -> tuple[pl.DataFrame, dict]:
    out = tmp_path / (task if isinstance(task, str) else task.name)
    build_cohort("mimic_iv", DEMO, task, out, threads=2, **kw)
    return pl.read_parquet(out / "cohort.parquet"), json.loads((out / "manifest.json").read_text())


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("readmission_15d", lambda: expected_readmission(15)),
        ("mortality_90d", lambda: expected_mortality(90)),
        ("los_7d_48h", lambda: expected_los(7, 48)),
        ("in_icu_mortality_24h", expected_in_icu_mortality),
    ],
)
def test_new_task_matches_independent_computation(tmp_path, task, expected):
    got, man = _build(tmp_path, task)
    exp = expected()
    assert got.select(exp.columns).equals(exp)
    label = exp.columns[1]
    assert exp.height >= 40 and 3 <= exp[label].sum() < exp.height  # a real cohort with both classes
    assert man["audits_passed"] and man["audit_warnings"] == []
    assert man["split_protocol"]["name"] == "subject"


def test_template_tasks_have_no_sql_of_their_own():
    for name in ("readmission_15d", "mortality_90d", "los_7d_48h"):
        spec = TASKS.get(name)
        assert spec.template is not None and spec.sql_file("mimic_iv").parent.name == "templates"
    assert TASKS.get("unit_los_7d_48h").sql_file("eicu").parent.name == "templates"


def test_param_renames_labels_and_changes_identity(tmp_path):
    """--param readmission_days=15 icu_days=30 on readmission_30d: columns named from the values, labels equal
    to the independent 15-day computation, the values in the manifest and a different cohort_id."""
    base, base_man = _build(tmp_path / "a", "readmission_30d")
    got, man = _build(tmp_path / "b", "readmission_30d", params={"readmission_days": "15", "icu_days": 30})
    assert "readmission_15d" in got.columns and "icu_admission_30d" in got.columns
    assert "readmission_30d" not in got.columns
    exp = expected_readmission(15)
    assert got.select(exp.columns).equals(exp)
    assert man["task_definition"]["params"]["readmission_days"] == 15
    assert man["sql_params"]["icu_days"] == 30
    assert [lab["name"] for lab in man["labels"]] == ["readmission_15d", "icu_admission_30d"]
    assert "15 days" in man["labels"][0]["definition"]
    assert man["cohort_id"] != base_man["cohort_id"]
    assert base["readmission_30d"].equals(expected_readmission(30)["readmission_30d"])  # default unchanged


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"readmision_days": 15}, "has no option 'readmision_days' (its options: readmission_days, icu_days"),
        ({"readmission_days": "fifteen"}, "readmission_days: expected int"),
        ({"sample_unit": "visit"}, "sample_unit: expected subject | admission"),
    ],
)
def test_bad_param_is_one_line_naming_the_valid_ones(tmp_path, params, message):
    with pytest.raises(MedmodalError, match=message.replace("(", r"\(").replace("|", r"\|")):
        build_cohort("mimic_iv", DEMO, "readmission_30d", tmp_path / "x", params=params)
    assert not (tmp_path / "x").exists()


def test_sample_unit_admission_keeps_splits_by_subject(tmp_path):
    got, man = _build(tmp_path, "readmission_15d", params={"sample_unit": "admission"})
    exp = expected_readmission(15, every=True)
    assert got.select(exp.columns).equals(exp)
    assert got.height > got["subject_id"].n_unique()  # several admissions per subject
    assert got.group_by("subject_id").agg(pl.col("split").n_unique())["split"].max() == 1
    assert all(s == split_of(subj, 0) for subj, s in got.select("subject_id", "split").iter_rows())
    assert "split_overlap" in man["audits_passed"]


@pytest.mark.parametrize(("task", "expected"), [("los_7d_48h", lambda: expected_los(7, 48, every=True))])
def test_sample_unit_stay(tmp_path, task, expected):
    got, _ = _build(tmp_path, task, params={"sample_unit": "stay"})
    exp = expected()
    assert got.select(exp.columns).equals(exp)
    assert got.height > got["subject_id"].n_unique()


def test_in_icu_mortality_every_stay(tmp_path):
    got, _ = _build(tmp_path, "in_icu_mortality_24h", params={"sample_unit": "stay"})
    exp = expected_in_icu_mortality(every=True)
    assert got.select(exp.columns).equals(exp)


def test_muse_split_protocol_is_named_recorded_and_warned(tmp_path):
    got, man = _build(tmp_path, "readmission_15d", params={"sample_unit": "admission"}, split_protocol_name="muse")
    assert man["split_protocol"]["name"] == "muse" and man["split_protocol"]["subject_level"] is False
    assert "split_overlap" not in man["audits_passed"]
    crossing = got.group_by("subject_id").agg(pl.col("split").n_unique()).filter(pl.col("split") > 1).height
    assert crossing > 0 and man["audit_warnings"] == [
        f"split_overlap: {crossing} subjects in more than one split: split protocol 'muse' is not subject-level "
        "(asked for; metrics are not patient-disjoint)"
    ]
    assert all(s == split_of(f"sample:{sid}", 0) for sid, s in got.select("sample_id", "split").iter_rows())
    console = Console(record=True, width=200)
    console.print(format_report(tmp_path / "readmission_15d"))
    assert "split protocol muse: NOT subject-level" in console.export_text()
    assert audit_cohort_dir(tmp_path / "readmission_15d")  # a re-audit warns again, does not fail
    _, subject_man = _build(tmp_path / "subj", "readmission_15d", params={"sample_unit": "admission"})
    assert subject_man["cohort_id"] != man["cohort_id"]  # the protocol enters the identity
    with pytest.raises(MedmodalError, match="unknown split protocol 'random' \\(known: subject, muse\\)"):
        build_cohort("mimic_iv", DEMO, "readmission_15d", tmp_path / "r", split_protocol_name="random")


def test_with_params_renders_every_text_and_the_audited_grace():
    spec = TASKS.get("readmission_30d").with_params({"note_grace_hours": "6", "icu_days": 45}, text=True)
    assert spec.grace_hours("discharge_note") == 6.0  # the audit's allowance follows the SQL's note cut-off
    assert "dischtime + 6 h" in spec.modalities["discharge_note"].rule
    assert [lab.name for lab in spec.labels] == ["readmission_30d", "icu_admission_45d"]
    assert "45 days" in spec.description and TASKS.get("readmission_30d").params["icu_days"] == 90  # registry kept
    los = TASKS.get("los_7d_48h").with_params({"threshold_days": 3, "horizon_hours": 24})
    assert los.labels[0].name == "los_3d_24h" and los.prediction_time == "intime + 24 h"
    half = TASKS.get("los_7d_48h").with_params({"threshold_days": "3.5"}, text=True)
    assert half.labels[0].name == "los_3p5d_48h" and "> 3.5 days" in half.labels[0].definition  # a column name
    with pytest.raises(MedmodalError, match="sample_unit: expected one of subject, stay; got 'admission'"):
        TASKS.get("los_7d_48h").with_params({"sample_unit": "admission"})
