"""`cohort validate` and the checks `cohort build` runs first, on the vendored MIMIC-IV demo (PhysioNet's bytes),
on copies of it broken one way each, on the shared eICU demo and on simulated v2.2 / v3.1 worlds.

A broken copy mirrors the demo with symlinks and replaces only the file under test, so the demo itself is never
touched and each test pays for one changed file."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from medmodal.cli import app
from medmodal.cohort import build_cohort
from medmodal.cohort.release_data import load_releases
from medmodal.cohort.validate import validate_raw

DEMO = Path(__file__).resolve().parents[1] / "data" / "mimic-iv-demo-2.2"


def _mirror(tmp_path: Path) -> Path:
    """A copy of the demo made of symlinks, under the demo's own folder name (the release is detected from it)."""
    root = tmp_path / DEMO.name
    for src in DEMO.rglob("*"):
        dst = root / src.relative_to(DEMO)
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src)
    return root


def _read_rows(path: Path) -> tuple[str, list[str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        lines = fh.read().splitlines(keepends=True)
    return lines[0], lines[1:]


def _write(path: Path, text: str) -> None:
    path.unlink()  # a symlink into the demo: replace it, never write through it
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        fh.write(text)


def _problems(report, file: str) -> list[tuple[str, str]]:
    return report.table(file).problems


# ------------------------------------------------------------------------------------------------ the demo


@pytest.fixture(scope="module")
def demo_report():
    return validate_raw("mimic_iv", DEMO, checksums=True)


def test_vendored_demo_is_the_published_demo(demo_report):
    r = demo_report
    assert not r.failed, r.errors
    assert r.release == "demo-2.2"
    release = load_releases("mimic_iv").projects["mimic-iv"].releases["demo-2.2"]
    assert len(r.tables) == len(release.tables) == 31
    for t in r.tables:
        if t.file == "icu/chartevents.csv.gz":
            continue
        assert t.rows == t.published and t.problems == [] and t.checksum == "ok", t
    # The vendored chartevents is medmodal's reconstruction: accepted by its exact hash only, and said so.
    ce = r.table("icu/chartevents.csv.gz")
    assert (ce.rows, ce.published, ce.checksum) == (668_679, 668_862, "known variant")
    assert ce.problems[0][0] == "note" and "known variant" in ce.problems[0][1]
    assert not any(s in ("error", "warning") for s, _ in r.messages), r.messages
    # Every mapped itemid is in the demo's d_labitems / d_items with the map's label (and unit).
    assert len(r.map_findings) == 37 and {f.status for f in r.map_findings} == {"ok"}


def test_demo_counts_agree_with_the_shared_manifest(shared_data):
    """The stored demo counts (from mimic-code) against ../shared/data/MANIFEST.md, counted on the files."""
    counted = {}
    for m in re.finditer(
        r"^\| mimic-iv-demo-2\.2/(\w+/\w+)\.csv\.gz[^|]*\| [\d,]+ \| (\d+) \|", _manifest(shared_data), flags=re.M
    ):
        counted[m.group(1)] = int(m.group(2))
    release = load_releases("mimic_iv").projects["mimic-iv"].releases["demo-2.2"]
    assert len(counted) == 31
    for t in release.tables:
        if t.key == "icu/chartevents":  # MANIFEST counts the reconstructed file
            assert counted[t.key] == release.known_variants[t.key].rows
        else:
            assert counted[t.key] == t.rows, t.key


def _manifest(shared_data: Path) -> str:
    return (shared_data / "MANIFEST.md").read_text()


def test_cli_prints_the_table_and_exits_zero_on_the_demo():
    res = CliRunner().invoke(app, ["cohort", "validate", "mimic_iv", "--raw", str(DEMO)])
    assert res.exit_code == 0, res.output
    assert "hosp/labevents.csv.gz" in res.output and "107,727" in res.output
    assert "every file the tasks need is as published" in res.output


# ------------------------------------------------------------------------------------------------ broken copies


def test_missing_needed_file_fails_missing_other_file_warns(tmp_path):
    root = _mirror(tmp_path)
    (root / "hosp" / "omr.csv.gz").unlink()
    r = validate_raw("mimic_iv", root)
    assert not r.failed and _problems(r, "hosp/omr.csv.gz") == [("warning", "missing (not read by medmodal)")]
    (root / "icu" / "icustays.csv.gz").unlink()
    res = CliRunner().invoke(app, ["cohort", "validate", "mimic_iv", "--raw", str(root)])
    assert res.exit_code == 1, res.output
    assert "missing (every task reads it)" in res.output and "1 problem(s) in files the tasks need" in res.output


def test_truncated_gzip_fails(tmp_path):
    root = _mirror(tmp_path)
    path = root / "icu" / "chartevents.csv.gz"
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data[: len(data) // 2])  # the header still reads; the stream ends early
    r = validate_raw("mimic_iv", root)
    assert r.failed
    (severity, text), *_ = _problems(r, "icu/chartevents.csv.gz")
    assert severity == "error" and "truncated or corrupt gzip" in text


def test_extra_column_and_extra_file_are_flagged(tmp_path):
    root = _mirror(tmp_path)
    header, rows = _read_rows(root / "hosp" / "admissions.csv.gz")
    _write(
        root / "hosp" / "admissions.csv.gz",
        header.rstrip("\n") + ",extra\n" + "".join(r.rstrip("\n") + ",1\n" for r in rows),
    )
    (root / "hosp" / "labevents (1).csv.gz").symlink_to(DEMO / "hosp" / "labevents.csv.gz")
    r = validate_raw("mimic_iv", root)
    assert r.failed
    assert _problems(r, "hosp/admissions.csv.gz") == [("error", "header has extra extra (vs the release's columns)")]
    assert ("warning", "hosp/labevents (1).csv.gz: extra file, not in the release") in r.messages
    assert r.table("hosp/admissions.csv.gz").rows == 275  # counted all the same


def test_malformed_row_and_renamed_column_fail(tmp_path):
    root = _mirror(tmp_path)
    header, rows = _read_rows(root / "hosp" / "patients.csv.gz")
    rows[3] = rows[3].rstrip("\n") + ",surplus\n"
    _write(root / "hosp" / "patients.csv.gz", header + "".join(rows))
    header, rows = _read_rows(root / "icu" / "icustays.csv.gz")
    _write(root / "icu" / "icustays.csv.gz", header.replace(",intime,", ",in_time,") + "".join(rows))
    r = validate_raw("mimic_iv", root)
    assert _problems(r, "hosp/patients.csv.gz") == [
        ("error", "malformed CSV row (data line 4): wrong number of fields or bad quoting")
    ]
    assert _problems(r, "icu/icustays.csv.gz") == [
        ("error", "lacks column intime, which medmodal reads"),
        ("error", "header lacks intime and has extra in_time (vs the release's columns)"),
    ]


def test_wrong_row_count_fails_for_needed_tables_only(tmp_path):
    root = _mirror(tmp_path)
    header, rows = _read_rows(root / "hosp" / "labevents.csv.gz")
    _write(root / "hosp" / "labevents.csv.gz", header + "".join(rows[:-5]))
    header, rows = _read_rows(root / "hosp" / "omr.csv.gz")
    _write(root / "hosp" / "omr.csv.gz", header + "".join(rows[:-1]))
    r = validate_raw("mimic_iv", root)
    assert r.errors == ["hosp/labevents.csv.gz: 107,722 rows, the release has 107,727 (-5); truncated?"]
    assert _problems(r, "hosp/omr.csv.gz") == [("warning", "2,963 rows, the release has 2,964 (-1); truncated?")]


def test_bad_checksum_named_and_fatal_for_needed_tables(tmp_path):
    root = _mirror(tmp_path)
    for name in ("hosp/patients", "hosp/d_hcpcs"):  # same rows, new gzip bytes: only the checksum can tell
        header, rows = _read_rows(root / f"{name}.csv.gz")
        _write(root / f"{name}.csv.gz", header + "".join(rows))
    assert not validate_raw("mimic_iv", root).failed
    r = validate_raw("mimic_iv", root, checksums=True)
    assert r.table("hosp/patients.csv.gz").checksum == "mismatch"
    assert r.errors and r.errors[0].startswith("hosp/patients.csv.gz: sha256 ") and len(r.errors) == 1
    assert r.table("hosp/d_hcpcs.csv.gz").problems[0][0] == "warning"
    assert ("note", "MIMIC-IV: 31 of 34 files match SHA256SUMS.txt, 1 known variant(s)") in r.messages


def test_wrong_dictionary_label_leaves_the_item_out(tmp_path):
    """A d_labitems that calls 50912 something else: a warning naming the itemid and both labels, recorded in the
    manifest, and creatinine is left unobserved rather than filled from that item."""
    root = _mirror(tmp_path)
    header, rows = _read_rows(root / "hosp" / "d_labitems.csv.gz")
    rows = [r.replace("50912,Creatinine,", "50912,Creatinine Clearance,") for r in rows]
    _write(root / "hosp" / "d_labitems.csv.gz", header + "".join(rows))
    r = validate_raw("mimic_iv", root)
    bad = [f for f in r.map_findings if f.status != "ok"]
    assert [(f.item, f.status, f.expected, f.found) for f in bad] == [
        ("50912", "label_mismatch", "Creatinine", "Creatinine Clearance")
    ]
    assert "left out" in bad[0].message() and not r.failed  # a map problem, not a broken download

    out = build_cohort("mimic_iv", root, "in_hospital_mortality_24h", tmp_path / "cohort", threads=2)
    pre = json.loads((out / "manifest.json").read_text())["preflight"]
    assert pre["variable_map"]["excluded"] == ["labevents:50912"]
    assert pre["variable_map"]["findings"][0]["found"] == "Creatinine Clearance"
    structured = pl.read_parquet(out / "structured.parquet")
    assert "creatinine_mean" in structured.columns  # the schema stays; the values are unobserved
    assert structured["creatinine_mean"].null_count() == structured.height
    assert structured["bun_mean"].null_count() < structured.height  # its panel neighbour still has values


def test_build_on_the_demo_records_a_clean_preflight(tmp_path):
    out = build_cohort("mimic_iv", DEMO, "in_hospital_mortality_24h", tmp_path / "c", threads=2)
    pre = json.loads((out / "manifest.json").read_text())["preflight"]
    assert pre["release"] == "MIMIC-IV demo-2.2" and pre["header_issues"] == []
    assert pre["variable_map"] == {"rows": 37, "ok": 37, "excluded": [], "findings": [], "unchecked": []}


# ------------------------------------------------------------------------------------------------ eICU


def test_shared_eicu_demo(shared_data):
    r = validate_raw("eicu", shared_data / "eicu-crd-demo-2.0.1")
    assert not r.failed, r.errors
    assert r.release == "demo-2.0.1"
    present = [t for t in r.tables if t.path is not None]
    assert len(present) == 28 and all(t.rows == t.published and not t.confirmed for t in present)
    # lab and vitalPeriodic are read when present: their absence is a note (the modality is marked missing).
    assert _problems(r, "vitalPeriodic.csv.gz") == [("note", "absent (optional: its modality is marked missing)")]
    by_status = {(f.source_table, f.status) for f in r.map_findings}
    assert ("vitalaperiodic", "ok") in by_status and ("lab", "unchecked") in by_status


# ------------------------------------------------------------------------------------------------ simulated worlds


def test_simulated_v31_world_is_detected_and_checked(tmp_path):
    from medmodal.simulate import simulate

    raw22 = simulate("mimic_iv", tmp_path / "v22", subjects=150, seed=4, images=False)
    raw31 = simulate("mimic_iv", tmp_path / "v31", subjects=150, seed=4, images=False, release="3.1")
    assert json.loads((raw31 / "simulation.json").read_text())["release"] == "3.1"
    # Same seed: only the year groups and what follows from them (ICD-9 vs -10) differ.
    differ = [
        p.relative_to(raw22).as_posix()
        for p in sorted(raw22.rglob("*.csv.gz"))
        if p.read_bytes() != (raw31 / p.relative_to(raw22)).read_bytes()
    ]
    assert differ == ["hosp/diagnoses_icd.csv.gz", "hosp/patients.csv.gz"]

    out = build_cohort("mimic_iv", raw31, "in_hospital_mortality_24h", tmp_path / "c31", threads=2)
    man = json.loads((out / "manifest.json").read_text())
    assert man["dataset_version"] == "3.1" and "2020 - 2022" in man["dataset_version_evidence"]
    assert man["preflight"]["release"] == "MIMIC-IV 3.1"
    assert man["preflight"]["variable_map"]["ok"] == 37 and man["preflight"]["variable_map"]["excluded"] == []
    assert man["sql_params"]["dataset_major"] == 3
    structured = pl.read_parquet(out / "structured.parquet")
    assert structured["heart_rate_mean"].null_count() < structured.height
    assert structured["creatinine_mean"].null_count() < structured.height

    r = validate_raw("mimic_iv", raw31)
    assert not r.failed, r.errors
    assert r.release == "3.1" and r.simulated and {f.status for f in r.map_findings} == {"ok"}
    assert validate_raw("mimic_iv", raw22).release == "2.2"


# ------------------------------------------------------------------------------------------------ the data


def test_release_data_is_complete():
    """Every stored table has a column set, and the facts the issue quotes are the stored ones."""
    for source in ("mimic_iv", "eicu"):
        rel = load_releases(source)
        for project in rel.projects.values():
            for release in project.releases.values():
                assert release.counts_source, (source, release.version)
                for t in release.tables:
                    assert t.columns, (source, release.version, t.key)
                    assert t.module in project.modules
    mimic = load_releases("mimic_iv").projects["mimic-iv"].releases
    assert (mimic["2.2"].table("icu/chartevents").rows, mimic["3.1"].table("icu/chartevents").rows) == (
        313_645_063,
        432_997_491,
    )
    assert (mimic["2.2"].table("hosp/patients").rows, mimic["3.1"].table("hosp/patients").rows) == (299_712, 364_627)
    assert load_releases("adni") is None
