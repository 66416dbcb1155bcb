"""The hand-made MIMIC-IV fixture (tests/data/mimic_iv_fixture, see its SUBJECTS.md) against hand-written
expected CSVs, for every task: cohort rows and labels, attrition, masks and pattern codes, which notes and
images pass the time rules, structured aggregates and hourly bins."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from goldens import read_expected  # tests/goldens.py
from polars.testing import assert_frame_equal

from medmodal.cohort import TASKS, build_cohort, tasks_for
from medmodal.cohort.splits import split_of
from medmodal.contracts import compute_cohort_id, sample_ids_digest

FIXTURE = Path(__file__).resolve().parent / "data" / "mimic_iv_fixture"
EXPECTED = FIXTURE / "expected"
MIMIC_TASKS = ["readmission_30d", "in_hospital_mortality_24h", "in_hospital_mortality_48h"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fixture_cohorts")
    build_cohort("mimic_iv", FIXTURE, "all", out, threads=1)
    return out


def _compare(built: Path, task: str, name: str) -> None:
    actual = pl.read_parquet(built / task / f"{name}.parquet")
    exp = read_expected(EXPECTED / task / f"{name}.csv", actual)
    if name == "images":
        exp = exp.with_columns((str(FIXTURE.resolve() / "cxr") + "/" + pl.col("path")).alias("path"))
    assert_frame_equal(actual.select(exp.columns), exp, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


def test_fixture_builds_every_mimic_task(built):
    # the seed papers' tasks are checked against independent computations in test_tasks_protocols.py
    protocols = ["readmission_15d", "mortality_90d", "los_7d_48h", "in_icu_mortality_24h"]
    assert sorted(tasks_for("mimic_iv")) == sorted([*MIMIC_TASKS, *protocols])
    for task in [*MIMIC_TASKS, *protocols]:
        assert (built / task / "manifest.json").is_file()


@pytest.mark.parametrize("task", MIMIC_TASKS)
@pytest.mark.parametrize("name", ["cohort", "attrition", "modalities", "notes", "images"])
def test_fixture_matches_expected_csv(built, task, name):
    _compare(built, task, name)


def test_fixture_structured_aggregates(built):
    """min/max/mean/last/count over the window: NULL-hadm lab kept, HR 400 dropped, °F -> °C, never-measured = 0."""
    _compare(built, "readmission_30d", "structured")


def test_fixture_hourly_bins(built):
    """hour 0 = window start (intime - 6 h); the HR one minute after prediction time is not binned."""
    _compare(built, "in_hospital_mortality_24h", "timeseries")


def test_structured_schema_is_fixed_and_numeric(built):
    man = json.loads((built / "readmission_30d" / "manifest.json").read_text())
    df = pl.read_parquet(built / "readmission_30d" / "structured.parquet")
    assert df.columns == ["sample_id", *man["feature_groups"]["structured"]]
    assert all(dt == pl.Float64 for dt in df.drop("sample_id").dtypes)
    # 19 demographic one-hots/age + 31 variables x 5 statistics, independent of which items the data contain.
    assert len(man["feature_groups"]["structured"]) == 19 + 31 * 5
    other = pl.read_parquet(built / "in_hospital_mortality_24h" / "structured.parquet")
    assert other.columns == df.columns


def test_notes_keep_text_and_images_have_absolute_paths(built):
    notes = pl.read_parquet(built / "readmission_30d" / "notes.parquet")
    assert notes["text"].str.strip_chars().str.len_chars().min() > 0
    first = notes.filter(pl.col("note_id") == "10000001-DS-1")["text"].item()
    assert '"chest pain"' in first and "\n" in first  # quoted newlines and doubled quotes parsed
    images = pl.read_parquet(built / "readmission_30d" / "images.parquet")
    assert all(Path(p).is_absolute() for p in images["path"])
    on_disk = [Path(p).exists() for p in images["path"]]
    assert on_disk.count(False) == 1  # aa5e0005 has no file (SUBJECTS.md)
    man = json.loads((built / "readmission_30d" / "manifest.json").read_text())
    assert man["images_missing_file"] == 1


@pytest.mark.parametrize("task", MIMIC_TASKS)
def test_manifest_contract(built, task):
    d = built / task
    man = json.loads((d / "manifest.json").read_text())
    cohort = pl.read_parquet(d / "cohort.parquet")
    spec = TASKS.get(task)
    assert man["source"] == "mimic_iv" and man["task"] == task
    assert man["cohort_id"] == compute_cohort_id(man["cohort_identity"]) and man["cohort_id"].startswith(
        f"mimic_iv__{task}__"
    )
    assert man["cohort_identity"]["sample_ids_sha256"] == sample_ids_digest(cohort["sample_id"].to_list())
    assert man["modalities"] == [
        m for m in ("structured", "timeseries", "discharge_note", "radiology_note", "cxr") if m in spec.modalities
    ]
    assert set(man["modality_kinds"]) == set(man["modalities"])
    assert [lab["name"] for lab in man["labels"]] == [lab.name for lab in spec.labels]
    assert man["subgroups"] == ["gender", "race_group", "insurance", "age_group"]
    assert set(man["subgroups"]) <= set(cohort.columns)
    assert man["dataset_version"] == "2.2"  # no anchor_year_group 2020 - 2022 in the fixture
    assert man["row_counts"]["cohort"] == cohort.height
    for key in ("prediction_time_rule", "split_seed", "raw_files", "sql_hashes", "created_at", "medmodal_version"):
        assert key in man
    assert man["raw_files"]["admissions"]["hash_kind"] == "sha256"
    assert "mask_consistency" in man["audits_passed"] and "split_overlap" in man["audits_passed"]
    assert cohort.schema["sample_id"] == pl.Utf8
    assert cohort["sample_id"].to_list() == sorted(cohort["sample_id"].to_list())
    for lab in spec.labels:
        assert cohort.schema[lab.name] == pl.Int8


def test_readmission_labels_primary_first(built):
    man = json.loads((built / "readmission_30d" / "manifest.json").read_text())
    assert [lab["name"] for lab in man["labels"]] == ["readmission_30d", "icu_admission_90d"]


def test_splits_follow_the_seeded_hash_and_agree_across_tasks(built):
    by_subject: dict[int, str] = {}
    for task in MIMIC_TASKS:
        cohort = pl.read_parquet(built / task / "cohort.parquet")
        for sid, split in cohort.select("subject_id", "split").iter_rows():
            assert split == split_of(sid, 0)
            assert by_subject.setdefault(sid, split) == split


def test_rebuild_is_identical(built, tmp_path):
    again = build_cohort("mimic_iv", FIXTURE, "readmission_30d", tmp_path / "again", threads=2)
    for name in ("cohort", "modalities", "structured", "timeseries", "notes", "images", "attrition"):
        assert_frame_equal(
            pl.read_parquet(again / f"{name}.parquet"), pl.read_parquet(built / "readmission_30d" / f"{name}.parquet")
        )


def test_other_seed_changes_only_splits(built, tmp_path):
    other = build_cohort("mimic_iv", FIXTURE, "readmission_30d", tmp_path / "seed7", seed=7)
    a = pl.read_parquet(built / "readmission_30d" / "cohort.parquet")
    b = pl.read_parquet(other / "cohort.parquet")
    assert_frame_equal(a.drop("split"), b.drop("split"))
    assert b["split"].to_list() == [split_of(s, 7) for s in b["subject_id"]]
    assert json.loads((other / "manifest.json").read_text())["split_seed"] == 7
