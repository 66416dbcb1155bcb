"""Bad input -> one clear line naming the file (and field), non-zero exit, no output directory; missing optional
modules are not errors; release detection; the CLI through typer's CliRunner."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from medmodal.cli import app
from medmodal.cohort import build_cohort, tasks_for
from medmodal.common import MedmodalError

FIXTURE = Path(__file__).resolve().parent / "data" / "mimic_iv_fixture"
runner = CliRunner()


@pytest.fixture()
def raw(tmp_path) -> Path:
    """A private copy of the fixture that a test may break."""
    dst = tmp_path / "raw"
    shutil.copytree(FIXTURE, dst, ignore=shutil.ignore_patterns("expected", "SUBJECTS.md"))
    return dst


def _build_fails(raw: Path, out: Path, task: str = "readmission_30d") -> MedmodalError:
    with pytest.raises(MedmodalError) as info:
        build_cohort("mimic_iv", raw, task, out)
    msg = str(info.value)
    assert "\n" not in msg
    assert not out.exists(), "a failed build must leave no output directory"
    assert not list(out.parent.glob(f".{out.name}*")), "no temporary directory left behind"
    assert not list(out.parent.glob(".medmodal-work-*"))
    return info.value


def test_missing_required_file(raw, tmp_path):
    (raw / "hosp" / "labevents.csv").unlink()
    err = _build_fails(raw, tmp_path / "out")
    assert "labevents" in str(err) and "required file missing" in str(err)


def test_truncated_gzip(raw, tmp_path):
    data = gzip.compress((raw / "icu" / "chartevents.csv").read_bytes() * 50)
    (raw / "icu" / "chartevents.csv").unlink()
    (raw / "icu" / "chartevents.csv.gz").write_bytes(data[: len(data) // 2])
    err = _build_fails(raw, tmp_path / "out")
    assert err.path is not None and err.path.endswith("chartevents.csv.gz")
    assert "gzip" in str(err)


def test_not_gzip_at_all(raw, tmp_path):
    (raw / "hosp" / "patients.csv").unlink()
    (raw / "hosp" / "patients.csv.gz").write_bytes(b"this is not gzip")
    err = _build_fails(raw, tmp_path / "out")
    assert err.path.endswith("patients.csv.gz") and "gzip" in str(err)


def test_renamed_column(raw, tmp_path):
    path = raw / "hosp" / "admissions.csv"
    path.write_text(path.read_text().replace("hospital_expire_flag", "expire_flag", 1))
    err = _build_fails(raw, tmp_path / "out")
    assert err.path.endswith("admissions.csv") and err.field == "hospital_expire_flag"
    assert "admissions.csv: field 'hospital_expire_flag'" in str(err)


def test_bad_value_names_file_field_and_line(raw, tmp_path):
    path = raw / "icu" / "icustays.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace("2150-06-01 12:00:00", "yesterday noon")
    path.write_text("\n".join(lines) + "\n")
    err = _build_fails(raw, tmp_path / "out")
    assert err.path.endswith("icustays.csv") and err.field == "intime"
    assert "data line 3" in str(err)


def test_note_text_never_in_errors(raw, tmp_path):
    secret = "PATIENT SECRET NARRATIVE"
    path = raw / "note" / "radiology.csv"
    path.write_text(path.read_text() + f'10000007-RR-9,10000007,not-a-number,RR,9,2150-09-02 10:00:00,,"{secret}"\n')
    err = _build_fails(raw, tmp_path / "out")
    assert err.path.endswith("radiology.csv") and err.field == "hadm_id"
    assert secret not in str(err)


def test_missing_optional_modules_are_reported_not_errors(raw, tmp_path, capsys):
    shutil.rmtree(raw / "note")
    shutil.rmtree(raw / "cxr")
    out = build_cohort("mimic_iv", raw, "readmission_30d", tmp_path / "out")
    mods = pl.read_parquet(out / "modalities.parquet")
    for m in ("discharge_note", "radiology_note", "cxr"):
        assert not mods[f"has_{m}"].any()
    man = json.loads((out / "manifest.json").read_text())
    assert man["unavailable_modalities"] == ["discharge_note", "radiology_note", "cxr"]
    assert man["raw_files"]["discharge"] is None
    assert pl.read_parquet(out / "notes.parquet").height == 0
    err = capsys.readouterr().err
    assert "discharge.csv" in err and "mimic-cxr-2.0.0-metadata" in err


def test_note_and_cxr_roots_elsewhere(raw, tmp_path):
    """--note-root / --cxr-root: modules downloaded apart (MIMIC-IV-Note keeps its files in note/)."""
    apart = tmp_path / "mimic-iv-note" / "2.2"
    shutil.move(str(raw / "note"), str(apart / "note"))
    cxr = shutil.move(str(raw / "cxr"), str(tmp_path / "mimic-cxr-jpg"))
    out = build_cohort("mimic_iv", raw, "readmission_30d", tmp_path / "out", roots={"note": apart, "cxr": cxr})
    assert pl.read_parquet(out / "notes.parquet").height == 5
    images = pl.read_parquet(out / "images.parquet")
    assert images.height == 3 and all(p.startswith(str(Path(cxr).resolve())) for p in images["path"])


def test_explicit_root_that_does_not_exist_is_an_error(raw, tmp_path):
    with pytest.raises(MedmodalError, match="--cxr-root not found"):
        build_cohort("mimic_iv", raw, "readmission_30d", tmp_path / "out", roots={"cxr": tmp_path / "typo"})
    assert not (tmp_path / "out").exists()


def test_version_from_folder_name_and_from_data(raw, tmp_path):
    named = raw.rename(raw.parent / "3.1")
    out = build_cohort("mimic_iv", named, "in_hospital_mortality_24h", tmp_path / "a")
    assert json.loads((out / "manifest.json").read_text())["dataset_version"] == "3.1"
    plain = named.rename(named.parent / "raw")
    path = plain / "hosp" / "patients.csv"
    path.write_text(path.read_text().replace("2017 - 2019", "2020 - 2022"))
    out = build_cohort("mimic_iv", plain, "in_hospital_mortality_24h", tmp_path / "b")
    man = json.loads((out / "manifest.json").read_text())
    assert man["dataset_version"] == "3.1" and "2020 - 2022" in man["dataset_version_evidence"]
    out = build_cohort("mimic_iv", plain, "in_hospital_mortality_24h", tmp_path / "c", dataset_version="2.2")
    assert json.loads((out / "manifest.json").read_text())["dataset_version"] == "2.2"


def test_unknown_task_and_source(raw, tmp_path):
    with pytest.raises(MedmodalError, match="unknown task 'nope'"):
        build_cohort("mimic_iv", raw, "nope", tmp_path / "out")
    with pytest.raises(MedmodalError, match="unknown source 'nope'"):
        build_cohort("nope", raw, "readmission_30d", tmp_path / "out")


def test_overwrite_false_keeps_existing(raw, tmp_path):
    out = build_cohort("mimic_iv", raw, "in_hospital_mortality_48h", tmp_path / "out")
    before = (out / "manifest.json").read_text()
    with pytest.raises(MedmodalError, match="already exists"):
        build_cohort("mimic_iv", raw, "in_hospital_mortality_48h", out, overwrite=False)
    assert (out / "manifest.json").read_text() == before


def test_bad_memory_limit(raw, tmp_path):
    with pytest.raises(MedmodalError, match="memory_limit"):
        build_cohort("mimic_iv", raw, "in_hospital_mortality_24h", tmp_path / "out", memory_limit="lots")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------- CLI


def test_cli_build_report_tasks(tmp_path):
    out = tmp_path / "cohorts"
    res = runner.invoke(
        app,
        [
            "cohort",
            "build",
            "mimic_iv",
            "--raw",
            str(FIXTURE),
            "--task",
            "all",
            "--out",
            str(out),
            "--threads",
            "1",
            "--memory-limit",
            "1GB",
            "--seed",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    assert str(out) in res.output
    assert json.loads((out / "readmission_30d" / "manifest.json").read_text())["split_seed"] == 3
    res = runner.invoke(app, ["cohort", "report", str(out / "readmission_30d")])
    assert res.exit_code == 0, res.output
    assert "Attrition" in res.output and "alive_at_discharge" in res.output
    assert "Missingness patterns" in res.output
    rows = [line for line in res.output.splitlines() if line.startswith("│")]
    assert any(line.split("│")[1].strip() == "31" and "42.9%" not in line for line in rows)  # all five modalities
    assert any(line.split("│")[1].strip() == "1" and "42.9%" in line for line in rows)  # structured only: 3 of 7
    res = runner.invoke(app, ["cohort", "report", str(out)])  # a folder of cohorts, as --task all writes
    assert res.exit_code == 0 and res.output.count("Attrition") == len(tasks_for("mimic_iv"))
    res = runner.invoke(app, ["cohort", "tasks"])
    assert res.exit_code == 0 and "mimic_iv" in res.output and "readmission_30d" in res.output


def test_cli_bad_input_exits_nonzero_with_one_line(raw, tmp_path):
    path = raw / "hosp" / "admissions.csv"
    path.write_text(path.read_text().replace("dischtime", "discharge_time", 1))
    out = tmp_path / "out"
    res = runner.invoke(
        app, ["cohort", "build", "mimic_iv", "--raw", str(raw), "--task", "readmission_30d", "--out", str(out)]
    )
    assert res.exit_code == 1
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "admissions.csv" in errors[0] and "dischtime" in errors[0]
    assert not out.exists()


def test_cli_report_on_non_cohort(tmp_path):
    res = runner.invoke(app, ["cohort", "report", str(tmp_path)])
    assert res.exit_code == 1 and "manifest.json" in res.output
