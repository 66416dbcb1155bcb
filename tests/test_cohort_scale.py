"""Out-of-core behaviour (slow): a few million generated events rows built under a tight DuckDB memory limit
give exactly the outputs of an unconstrained build, so spilling changes nothing but speed; and every stage of
benchmarks/cohort_scale.py at its smallest size stays within its memory budget."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from medmodal.cohort import build_cohort

pytestmark = pytest.mark.slow


def _generate(root: Path, n_subjects: int = 6000) -> Path:
    """Raw files in the MIMIC-IV layout (hosp/, icu/) with ~3M chartevents and ~1M labevents rows."""
    for d in ("hosp", "icu"):
        (root / d).mkdir(parents=True)
    con = duckdb.connect()
    ts = "TIMESTAMPFORMAT '%Y-%m-%d %H:%M:%S'"
    con.execute(f"""CREATE TABLE pat AS SELECT 10000000 + i AS subject_id, CASE WHEN i % 2 = 0 THEN 'F' ELSE 'M' END
        AS gender, (15 + i % 76)::INT AS anchor_age, 2150 AS anchor_year, '2011 - 2013' AS anchor_year_group,
        NULL::DATE AS dod FROM range({n_subjects}) r(i)""")
    con.execute("""CREATE TABLE adm AS SELECT subject_id, 20000000 + subject_id * 3 + k AS hadm_id,
        TIMESTAMP '2150-01-01' + to_hours((k * 2000 + (subject_id * 37 + k * 11) % 1500)::BIGINT) AS admittime
        FROM pat, range(2) r(k)""")
    con.execute("""CREATE TABLE adm2 AS SELECT subject_id, hadm_id, admittime,
        admittime + to_hours((24 + hadm_id % 300)::BIGINT) AS dischtime,
        CASE WHEN hadm_id % 17 = 0 THEN admittime + to_hours((24 + hadm_id % 300)::BIGINT) END AS deathtime,
        'EW EMER.' AS admission_type, 'P0001' AS admit_provider_id, 'EMERGENCY ROOM' AS admission_location,
        'HOME' AS discharge_location, 'Medicare' AS insurance, 'ENGLISH' AS language, 'SINGLE' AS marital_status,
        'WHITE' AS race, NULL::TIMESTAMP AS edregtime, NULL::TIMESTAMP AS edouttime,
        CASE WHEN hadm_id % 17 = 0 THEN 1 ELSE 0 END AS hospital_expire_flag FROM adm""")
    con.execute("""CREATE TABLE icu AS SELECT subject_id, hadm_id, 30000000 + hadm_id AS stay_id,
        'MICU' AS first_careunit, 'MICU' AS last_careunit, admittime + INTERVAL 6 HOUR AS intime,
        least(dischtime, admittime + to_hours((30 + hadm_id % 200)::BIGINT)) AS outtime, 1.0 AS los
        FROM adm2 WHERE hadm_id % 2 = 0""")
    con.execute(f"COPY pat TO '{root}/hosp/patients.csv.gz' (HEADER)")
    con.execute(f"COPY adm2 TO '{root}/hosp/admissions.csv.gz' (HEADER, {ts})")
    con.execute(f"COPY icu TO '{root}/icu/icustays.csv.gz' (HEADER, {ts})")
    con.execute(f"""COPY (SELECT i.subject_id, i.hadm_id, i.stay_id, NULL AS caregiver_id,
        i.intime + to_minutes((k * 13)::BIGINT) AS charttime, NULL AS storetime, it.itemid, NULL AS value,
        (60 + (i.stay_id * 7 + k * 3 + it.itemid) % 60)::DOUBLE AS valuenum, NULL AS valueuom, NULL AS warning
        FROM icu i, range(100) r(k), (VALUES (220045), (220179), (220210), (220277), (223761), (226512)) it(itemid))
        TO '{root}/icu/chartevents.csv.gz' (HEADER, {ts})""")
    con.execute(f"""COPY (SELECT row_number() OVER () AS labevent_id, a.subject_id,
        CASE WHEN k % 3 = 0 THEN NULL ELSE a.hadm_id END AS hadm_id, 1 AS specimen_id, it.itemid,
        NULL AS order_provider_id, a.admittime + to_hours((k * 5)::BIGINT) AS charttime, NULL AS storetime,
        NULL AS value, (1 + (a.hadm_id + k * 7 + it.itemid) % 100)::DOUBLE AS valuenum, NULL AS valueuom,
        NULL AS ref_range_lower, NULL AS ref_range_upper, NULL AS flag, NULL AS priority, NULL AS comments
        FROM adm2 a, range(10) r(k), (VALUES (50912), (50983), (51222), (51301), (51277), (50813), (50931)) it(itemid))
        TO '{root}/hosp/labevents.csv.gz' (HEADER, {ts})""")
    con.close()
    return root


def test_tight_memory_limit_gives_identical_outputs(tmp_path):
    raw = _generate(tmp_path / "raw")
    tight = build_cohort("mimic_iv", raw, "readmission_30d", tmp_path / "tight", memory_limit="300MB", threads=2)
    loose = build_cohort("mimic_iv", raw, "readmission_30d", tmp_path / "loose", threads=1)
    n = pl.read_parquet(tight / "cohort.parquet").height
    assert n > 5000
    for name in ("cohort", "modalities", "structured", "timeseries", "attrition"):
        assert_frame_equal(pl.read_parquet(tight / f"{name}.parquet"), pl.read_parquet(loose / f"{name}.parquet"))
    assert pl.read_parquet(tight / "timeseries.parquet").height > 100_000


def test_every_stage_stays_within_its_memory_budget(tmp_path):
    """benchmarks/cohort_scale.py at its smallest size: each stage's peak RSS (whole process tree) within its
    budget on this machine: a cohort build within DuckDB's default limit + 1 GB, featurize and a training epoch
    within 4 GB."""
    from medmodal.benchmarks.cohort_scale import main

    report = tmp_path / "scale.json"
    main(["--subjects", "2000", "--tmp", str(tmp_path), "--json", str(report), "--stages", "tasks", "all", "epoch"])
    (world,) = json.loads(report.read_text())
    assert set(world["budgets"]) >= {"cohort readmission_30d", "cohort --task all", "featurize structured"}
    for stage, budget in world["budgets"].items():
        assert 0 < world["stages"][stage]["peak_mb"] <= budget, stage
    assert not list(tmp_path.glob("cohort-scale-*"))  # worlds and outputs removed
