"""The eICU-CRD source: the hand-made fixture (tests/data/eicu_fixture, see its SUBJECTS.md) against hand-written
expected CSVs, the manifest contract and splits, the open demo (lab / vitalPeriodic absent) against counts computed
here independently from its raw files, bad input, and the simulator's eICU output."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from goldens import read_expected  # tests/goldens.py
from polars.testing import assert_frame_equal

from medmodal.cohort import TASKS, audit_cohort_dir, build_cohort, tasks_for
from medmodal.cohort.splits import split_of
from medmodal.common import MedmodalError
from medmodal.contracts import compute_cohort_id, sample_ids_digest

FIXTURE = Path(__file__).resolve().parent / "data" / "eicu_fixture"
EXPECTED = FIXTURE / "expected"
EICU_TASKS = ["icu_mortality_24h", "icu_readmission_15d"]
MODALITIES = ["demographics", "labs", "vitals", "apache", "codes"]
NOT_ICU = ["ICU", "Other ICU", "Other ICU (CABG)", "Step-Down Unit (SDU)"]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eicu_fixture_cohorts")
    build_cohort("eicu", FIXTURE, "all", out, threads=1)
    return out


# ------------------------------------------------------------------------------------------- hand-made fixture


def test_every_eicu_task_is_registered_and_builds(built):
    assert sorted(tasks_for("eicu")) == sorted([*EICU_TASKS, "unit_los_7d_48h"])  # + the template task
    for task in EICU_TASKS:
        assert (built / task / "manifest.json").is_file()


@pytest.mark.parametrize("task", EICU_TASKS)
@pytest.mark.parametrize("name", ["cohort", "attrition", "modalities", "timeseries", "structured"])
def test_fixture_matches_expected_csv(built, task, name):
    actual = pl.read_parquet(built / task / f"{name}.parquet")
    exp = read_expected(EXPECTED / task / f"{name}.csv", actual)
    assert_frame_equal(actual.select(exp.columns), exp, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize("task", EICU_TASKS)
def test_manifest_contract(built, task):
    d = built / task
    man = json.loads((d / "manifest.json").read_text())
    cohort = pl.read_parquet(d / "cohort.parquet")
    spec = TASKS.get(task)
    assert man["source"] == "eicu" and man["task"] == task
    if task == "icu_mortality_24h":  # known only at unit discharge, after the 24 h prediction time
        assert "unit_los_hours" not in cohort.columns
    assert man["cohort_id"] == compute_cohort_id(man["cohort_identity"]) and man["cohort_id"].startswith(
        f"eicu__{task}__"
    )
    assert man["cohort_identity"]["sample_ids_sha256"] == sample_ids_digest(cohort["sample_id"].to_list())
    assert man["modalities"] == MODALITIES
    assert man["modality_kinds"] == {
        "demographics": "structured",
        "labs": "structured",
        "vitals": "timeseries",
        "apache": "structured",
        "codes": "structured",
    }
    assert [lab["name"] for lab in man["labels"]] == [task] and man["labels"][0]["kind"] == "binary"
    assert man["subgroups"] == ["gender", "ethnicity", "age_group", "unit_type"]
    assert set(man["subgroups"]) <= set(cohort.columns)
    assert man["absent_files"] == [] and man["unavailable_modalities"] == []
    assert man["dataset_version"] == "2.0"  # not the demo's size, no version in the folder name
    assert cohort.schema["subject_id"] == pl.Utf8 and cohort.schema[task] == pl.Int8
    assert cohort.schema["index_time"] == pl.Datetime("us") and cohort.schema["prediction_time"] == pl.Datetime("us")
    assert not any(c.startswith(("_", "incl_")) for c in cohort.columns)
    assert {
        "split_overlap",
        "mask_consistency",
        "measurements_after_prediction",
        "vitals_time_after_cutoff",
        "codes_time_after_cutoff",
    } <= set(man["audits_passed"])
    assert man["row_counts"]["notes"] == 0 and man["row_counts"]["images"] == 0
    assert spec.modalities.keys() == set(MODALITIES)


def test_structured_schema_is_fixed_by_definition(built):
    man = json.loads((built / "icu_mortality_24h" / "manifest.json").read_text())
    groups = man["feature_groups"]
    order = ["demographics", "labs", "apache", "codes"]  # structured modalities, in column (position) order
    assert set(groups) == set(order)
    # 31 demographic columns, 23 lab variables x 5 statistics, 24 APACHE physiology columns, 15 + 15 + 13 codes.
    assert [len(groups[g]) for g in order] == [31, 23 * 5, 24, 43]
    df = pl.read_parquet(built / "icu_mortality_24h" / "structured.parquet")
    assert df.columns == ["sample_id"] + [c for g in order for c in groups[g]]
    assert all(dt == pl.Float64 for dt in df.drop("sample_id").dtypes)
    other = pl.read_parquet(built / "icu_readmission_15d" / "structured.parquet")
    assert other.columns == df.columns
    assert not any("activeupondischarge" in c or "actual" in c for c in df.columns)


def test_splits_are_by_uniquepid_and_agree_across_tasks(built):
    by_subject: dict[str, str] = {}
    for task in EICU_TASKS:
        cohort = pl.read_parquet(built / task / "cohort.parquet")
        for sid, split in cohort.select("subject_id", "split").iter_rows():
            assert split == split_of(sid, 0)
            assert by_subject.setdefault(sid, split) == split


def test_rebuild_is_identical_and_audits_rerun(built, tmp_path):
    again = build_cohort("eicu", FIXTURE, "icu_readmission_15d", tmp_path / "again", threads=2)
    for name in ("cohort", "modalities", "structured", "timeseries", "attrition"):
        assert_frame_equal(
            pl.read_parquet(again / f"{name}.parquet"),
            pl.read_parquet(built / "icu_readmission_15d" / f"{name}.parquet"),
        )
    assert "mask_consistency" in audit_cohort_dir(again)


def test_audit_catches_a_late_measurement(built, tmp_path):
    """A vitals value placed after prediction time in the written outputs fails the re-run audit."""
    d = tmp_path / "tampered"
    shutil.copytree(built / "icu_mortality_24h", d)
    ts = pl.read_parquet(d / "timeseries.parquet")
    late = ts.head(1).with_columns(pl.lit(31, dtype=pl.Int32).alias("hour"))  # window is hours 0..30
    pl.concat([ts, late]).write_parquet(d / "timeseries.parquet")
    with pytest.raises(MedmodalError, match="measurements_after_prediction"):
        audit_cohort_dir(d)


# ------------------------------------------------------------------------------------------- the open demo


def _demo_first_stays(demo: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(every unit stay, the first unit stay per uniquepid), following docs/tasks.md literally (not the SQL)."""
    p = pl.read_csv(demo / "patient.csv.gz", infer_schema_length=0)
    p = p.with_columns(
        pl.col(
            "patientunitstayid",
            "patienthealthsystemstayid",
            "hospitaladmitoffset",
            "hospitaldischargeyear",
            "hospitaldischargeoffset",
            "unitvisitnumber",
            "unitdischargeoffset",
        ).cast(pl.Int64),
        pl.when(pl.col("age") == "> 89")
        .then(pl.lit("90"))
        .otherwise(pl.col("age"))
        .cast(pl.Int64, strict=False)
        .alias("age_years"),
        (-pl.col("hospitaladmitoffset").cast(pl.Int64)).alias("unit_admit_minute"),
    )
    return p, (
        p.sort(
            [
                "uniquepid",
                "hospitaldischargeyear",
                "patienthealthsystemstayid",
                "unit_admit_minute",
                "unitvisitnumber",
                "patientunitstayid",
            ],
            nulls_last=True,
        )
        .group_by("uniquepid", maintain_order=True)
        .first()
    )


def _adult_in_unit_alive_at(hours: int) -> pl.Expr:
    """Adult, still in the unit at `hours` and not known dead by then (unit or hospital death): the inclusions every
    unit-stay task shares, computed here apart from sql/eicu/unit_stay_samples.sql."""
    h = hours * 60
    return (
        (pl.col("age_years") >= 18)
        & (pl.col("unitdischargeoffset") >= h)
        & ~((pl.col("unitdischargestatus") == "Expired") & (pl.col("unitdischargeoffset") <= h)).fill_null(False)
        & ~((pl.col("hospitaldischargestatus") == "Expired") & (pl.col("hospitaldischargeoffset") <= h)).fill_null(
            False
        )
    )


def expected_demo_mortality(demo: Path) -> pl.DataFrame:
    _, first = _demo_first_stays(demo)
    kept = first.filter(_adult_in_unit_alive_at(24) & pl.col("unitdischargestatus").is_in(["Alive", "Expired"]))
    return kept.select(
        pl.col("patientunitstayid").cast(pl.Utf8).alias("sample_id"),
        (pl.col("unitdischargestatus") == "Expired").cast(pl.Int8).alias("icu_mortality_24h"),
    ).sort("sample_id")


def expected_demo_readmission(demo: Path) -> pl.DataFrame:
    stays, first = _demo_first_stays(demo)
    kept = first.filter(
        (pl.col("age_years") >= 18)
        & (pl.col("unitdischargestatus") == "Alive")
        & (~pl.col("unitdischargelocation").is_in(NOT_ICU)).fill_null(True)
    )
    discharge = pl.col("unit_admit_minute") + pl.col("unitdischargeoffset")
    pairs = (
        kept.select("patientunitstayid", "patienthealthsystemstayid", discharge.alias("out"))
        .join(
            stays.select(
                pl.col("patientunitstayid").alias("other"),
                "patienthealthsystemstayid",
                pl.col("unit_admit_minute").alias("other_in"),
            ),
            on="patienthealthsystemstayid",
        )
        .filter(
            (pl.col("other") != pl.col("patientunitstayid"))
            & (pl.col("other_in") > pl.col("out"))
            & (pl.col("other_in") <= pl.col("out") + 15 * 1440)
        )
    )
    readmitted = pairs["patientunitstayid"].unique().implode()
    return kept.select(
        pl.col("patientunitstayid").cast(pl.Utf8).alias("sample_id"),
        pl.col("patientunitstayid").is_in(readmitted).cast(pl.Int8).alias("icu_readmission_15d"),
    ).sort("sample_id")


@pytest.fixture(scope="module")
def demo(shared_data, tmp_path_factory) -> tuple[Path, Path, str]:
    """(raw demo folder, built cohorts, what the build printed on stderr)."""
    raw = shared_data / "eicu-crd-demo-2.0.1"
    out = tmp_path_factory.mktemp("eicu_demo")
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):
        build_cohort("eicu", raw, "all", out, threads=2)
    return raw, out, " ".join(printed.getvalue().split())


def test_demo_cohorts_match_independent_computation(demo):
    raw, out, _ = demo
    for task, expected in (
        ("icu_mortality_24h", expected_demo_mortality(raw)),
        ("icu_readmission_15d", expected_demo_readmission(raw)),
    ):
        got = pl.read_parquet(out / task / "cohort.parquet")
        assert got.select(expected.columns).equals(expected), task
        # a real cohort of the demo's 1,841 patients with both classes, not an empty match
        assert expected.height > 1000 and 30 < expected[task].sum() < expected.height / 5, task


def test_demo_unit_los_matches_independent_computation(demo):
    """unit_los_7d_48h (docs/tasks.md): first stay, adult, in the unit >= 48 h and not known dead by then; label
    unitdischargeoffset > 7 days."""
    raw, out, _ = demo
    _, first = _demo_first_stays(raw)
    kept = first.filter(_adult_in_unit_alive_at(48))
    exp = kept.select(
        pl.col("patientunitstayid").cast(pl.Utf8).alias("sample_id"),
        (pl.col("unitdischargeoffset") > 7 * 1440).cast(pl.Int8).alias("unit_los_7d_48h"),
    ).sort("sample_id")
    got = pl.read_parquet(out / "unit_los_7d_48h" / "cohort.parquet")
    assert got.select(exp.columns).equals(exp)
    assert exp.height > 500 and 50 < exp["unit_los_7d_48h"].sum() < exp.height / 2
    assert "unit_los_hours" not in got.columns  # it would be the label


def test_demo_marks_missing_files_absent_and_says_so(demo):
    _raw, out, printed = demo
    assert "lab.csv(.gz) (labs marked missing)" in printed
    assert "vitalPeriodic.csv(.gz) (vitals built from the other files only)" in printed
    for task in EICU_TASKS:
        man = json.loads((out / task / "manifest.json").read_text())
        assert man["dataset_version"] == "demo-2.0.1"
        assert man["unavailable_modalities"] == ["labs"]
        assert {a["view"]: a["effect"] for a in man["absent_files"]} == {
            "lab": "labs marked missing",
            "vitalperiodic": "vitals built from the other files only",
        }
        assert man["raw_files"]["lab"] is None and man["raw_files"]["vitalperiodic"] is None
        mods = pl.read_parquet(out / task / "modalities.parquet")
        assert not mods["has_labs"].any() and mods["has_demographics"].all()
        assert mods["has_vitals"].mean() > 0.9  # cuff pressures of vitalAperiodic still arrive
        ts = pl.read_parquet(out / task / "timeseries.parquet")
        assert set(ts["variable"].unique()) == {"sbp", "dbp", "mbp"}  # vitalAperiodic's variables only
        structured = pl.read_parquet(out / task / "structured.parquet")
        assert structured["sodium_count"].sum() == 0


def test_demo_apache_presence_follows_the_raw_table(demo):
    raw, out, _ = demo
    aps = pl.read_csv(raw / "apacheApsVar.csv.gz", columns=["patientunitstayid"])
    with_aps = aps["patientunitstayid"].cast(pl.Utf8).unique().implode()
    mods = pl.read_parquet(out / "icu_mortality_24h" / "modalities.parquet")
    expected = mods.select(pl.col("sample_id").is_in(with_aps))["sample_id"]
    assert mods["has_apache"].to_list() == expected.to_list()
    assert 0.5 < mods["has_apache"].mean() < 1.0


# ------------------------------------------------------------------------------------------- bad input


@pytest.fixture()
def raw(tmp_path) -> Path:
    dst = tmp_path / "raw"
    shutil.copytree(FIXTURE, dst, ignore=shutil.ignore_patterns("expected", "SUBJECTS.md"))
    return dst


def _build_fails(raw: Path, out: Path, task: str = "icu_mortality_24h") -> MedmodalError:
    with pytest.raises(MedmodalError) as info:
        build_cohort("eicu", raw, task, out)
    assert "\n" not in str(info.value)
    assert not out.exists(), "a failed build must leave no output directory"
    assert not list(out.parent.glob(f".{out.name}*")) and not list(out.parent.glob(".medmodal-work-*"))
    return info.value


def test_missing_required_file(raw, tmp_path):
    (raw / "patient.csv").unlink()
    err = _build_fails(raw, tmp_path / "out")
    assert "required file missing" in str(err) and "patient.csv" in str(err)


def test_renamed_column_names_file_and_field(raw, tmp_path):
    path = raw / "diagnosis.csv"
    path.write_text(path.read_text().replace("diagnosisoffset", "dxoffset", 1))
    err = _build_fails(raw, tmp_path / "out")
    assert err.path.endswith("diagnosis.csv") and err.field == "diagnosisoffset"


def test_bad_offset_names_file_field_and_line(raw, tmp_path):
    path = raw / "vitalAperiodic.csv"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(",-400,", ",soon,")
    path.write_text("\n".join(lines) + "\n")
    err = _build_fails(raw, tmp_path / "out")
    assert err.path.endswith("vitalAperiodic.csv") and err.field == "observationoffset"
    assert "data line 2" in str(err)


def test_unparseable_age_is_an_error(raw, tmp_path):
    path = raw / "patient.csv"
    path.write_text(path.read_text().replace(",16,Caucasian,", ",sixteen,Caucasian,", 1))
    err = _build_fails(raw, tmp_path / "out")
    assert err.path.endswith("patient.csv") and err.field == "age" and "3001" in str(err)


def test_optional_files_absent_are_reported(raw, tmp_path):
    (raw / "lab.csv").unlink()
    (raw / "vitalPeriodic.csv").unlink()
    out = build_cohort("eicu", raw, "icu_mortality_24h", tmp_path / "out")
    man = json.loads((out / "manifest.json").read_text())
    assert man["unavailable_modalities"] == ["labs"]
    ts = pl.read_parquet(out / "timeseries.parquet")
    assert ts["variable"].unique().sort().to_list() == ["dbp", "mbp", "sbp"]  # vitalAperiodic cuff pressures only


def test_raw_folder_must_exist(tmp_path):
    with pytest.raises(MedmodalError, match="raw data folder not found"):
        build_cohort("eicu", tmp_path / "nowhere", "icu_mortality_24h", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_task_of_another_source_is_refused(tmp_path):
    with pytest.raises(MedmodalError, match="not defined for source 'eicu'"):
        build_cohort("eicu", FIXTURE, "readmission_30d", tmp_path / "out")


# ------------------------------------------------------------------------------------------- simulated eICU


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> tuple[Path, Path]:
    from medmodal.simulate import simulate

    root = tmp_path_factory.mktemp("eicu_sim")
    raw = simulate("eicu", root / "raw", subjects=200, seed=3)
    return raw, build_cohort("eicu", raw, "all", root / "cohorts", threads=2)


@pytest.mark.parametrize(
    "task,truth_col", [("icu_mortality_24h", "y_icu_mortality"), ("icu_readmission_15d", "y_icu_readmission_15d")]
)
def test_simulated_labels_are_the_scm_draws(simulated, task, truth_col):
    """Every eICU task builds on the simulator's files (lab and vitalPeriodic included) and recovers its draws."""
    raw, out = simulated
    cohort = pl.read_parquet(out / task / "cohort.parquet")
    truth = pl.read_parquet(raw / "truth.parquet").select("patientunitstayid", truth_col)
    joined = cohort.join(truth, on="patientunitstayid", how="left")
    assert cohort.height >= 100 and cohort[task].sum() >= 5, (cohort.height, cohort[task].sum())
    assert joined[truth_col].null_count() == 0 and (joined[task] == joined[truth_col]).all()
    man = json.loads((out / task / "manifest.json").read_text())
    assert man["absent_files"] == [] and man["unavailable_modalities"] == []
    mods = pl.read_parquet(out / task / "modalities.parquet")
    assert mods["has_labs"].all() and mods["has_vitals"].all()  # the simulator writes lab and vitalPeriodic


def test_model_layer_runs_unchanged_on_simulated_eicu(simulated, tmp_path, one_torch_thread):
    """featurize_all -> train (a missingness-deconfounding framework) -> run directory, on an eICU cohort."""
    from medmodal.featurize import featurize_all
    from medmodal.models.train import train

    cohort_dir = simulated[1] / "icu_mortality_24h"
    store = tmp_path / "store"
    summaries = featurize_all(cohort_dir, store)
    assert set(summaries) == set(MODALITIES)
    run = train(
        cohort_dir,
        store,
        tmp_path / "run",
        backbone="late_fusion",
        framework="cdmm",
        epochs=2,
        batch_size=64,
        n_boot=20,
        progress=False,
        backbone_config={"hidden": 16},
    )
    preds = pl.read_parquet(run / "predictions.parquet")
    cohort = pl.read_parquet(cohort_dir / "cohort.parquet")
    assert preds["sample_id"].sort().to_list() == cohort["sample_id"].to_list()
    assert preds["icu_mortality_24h_prob"].is_between(0, 1).all()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tasks"]["icu_mortality_24h"]["test"]["overall"]["n"] == (cohort["split"] == "test").sum()


def test_cli_builds_and_reports_eicu_and_lists_the_new_tasks(tmp_path):
    from typer.testing import CliRunner

    from medmodal.cli import app

    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "cohort",
            "build",
            "eicu",
            "--raw",
            str(FIXTURE),
            "--task",
            "icu_readmission_15d",
            "--out",
            str(tmp_path / "c"),
            "--threads",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c" / "cohort.parquet").is_file() and "wrote" in res.output
    res = runner.invoke(app, ["cohort", "report", str(tmp_path / "c")])
    assert res.exit_code == 0 and "not_transferred" in res.output
    res = runner.invoke(app, ["cohort", "tasks"])
    for task in (*EICU_TASKS, "diagnosis_3class", "mci_conversion_24m"):
        assert task in res.output
    res = runner.invoke(
        app, ["cohort", "build", "eicu", "--raw", str(tmp_path / "none"), "--task", "all", "--out", str(tmp_path / "d")]
    )
    assert res.exit_code == 1 and "raw data folder not found" in res.output and not (tmp_path / "d").exists()
