"""Simulated eICU-CRD and ADNIMERGE: real schemas, the conventions readers trip on, and the SCM's labels."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import duckdb
import polars as pl
import pytest

from medmodal.simulate import simulate

EICU_DEMO_TABLES = [
    "patient",
    "hospital",
    "vitalAperiodic",
    "apachePatientResult",
    "apacheApsVar",
    "diagnosis",
    "treatment",
    "admissionDx",
]
# Not in the open demo; the published eICU-CRD v2.0 headers.
EICU_MISSING = {
    "lab": [
        "labid",
        "patientunitstayid",
        "labresultoffset",
        "labtypeid",
        "labname",
        "labresult",
        "labresulttext",
        "labmeasurenamesystem",
        "labmeasurenameinterface",
        "labresultrevisedoffset",
    ],
    "vitalPeriodic": [
        "vitalperiodicid",
        "patientunitstayid",
        "observationoffset",
        "temperature",
        "sao2",
        "heartrate",
        "respiration",
        "cvp",
        "etco2",
        "systemicsystolic",
        "systemicdiastolic",
        "systemicmean",
        "pasystolic",
        "padiastolic",
        "pamean",
        "st1",
        "st2",
        "st3",
        "icp",
    ],
}


@pytest.fixture(scope="module")
def eicu(tmp_path_factory) -> Path:
    return simulate("eicu", tmp_path_factory.mktemp("eicu") / "eicu", subjects=300, seed=4)


@pytest.fixture(scope="module")
def adni(tmp_path_factory) -> Path:
    return simulate("adni", tmp_path_factory.mktemp("adni") / "adni", subjects=400, seed=4)


def _header(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        return fh.readline().rstrip("\n").split(",")


@pytest.mark.parametrize("table", EICU_DEMO_TABLES)
def test_eicu_schema_matches_demo(eicu, shared_data, table):
    ours, demo = eicu / f"{table}.csv.gz", shared_data / "eicu-crd-demo-2.0.1" / f"{table}.csv.gz"
    assert _header(ours) == _header(demo)
    rel = duckdb.sql(f"select * from read_csv_auto('{demo}', sample_size=50000)")
    spec = "{" + ", ".join(f"'{c}': '{t}'" for c, t in zip(rel.columns, map(str, rel.types))) + "}"
    n = duckdb.sql(
        f"select count(*) from read_csv('{ours}', header=true, columns={spec}, auto_detect=false)"
    ).fetchall()[0][0]
    assert n > 0 and n == len(pl.read_csv(ours, infer_schema_length=0))


@pytest.mark.parametrize("table", sorted(EICU_MISSING))
def test_eicu_tables_missing_from_demo(eicu, table):
    path = eicu / f"{table}.csv.gz"
    assert _header(path) == EICU_MISSING[table]
    df = pl.read_csv(path)
    assert df[EICU_MISSING[table][2]].dtype == pl.Int64  # minute offsets are integers
    assert df.height > 1000


def test_eicu_conventions_and_labels(eicu):
    p = pl.read_csv(eicu / "patient.csv.gz", infer_schema_length=0)
    assert (p["age"] == "> 89").any() and p["age"].filter(p["age"] != "> 89").cast(pl.Int64).max() <= 89
    off = p.select(pl.col("hospitaladmitoffset", "unitdischargeoffset", "hospitaldischargeoffset").cast(pl.Int64))
    assert (off["hospitaladmitoffset"] <= 0).all() and (off["unitdischargeoffset"] > 0).all()
    assert (off["hospitaldischargeoffset"] >= off["unitdischargeoffset"]).all()
    assert p["unitadmittime24"].str.contains(r"^\d\d:\d\d:00$").all()
    readmits = p.filter(pl.col("unitvisitnumber") == "2")
    assert readmits.height > 10 and set(readmits["unitstaytype"]) == {"readmit"}
    assert (
        readmits["patienthealthsystemstayid"]
        .is_in(p.filter(pl.col("unitvisitnumber") == "1")["patienthealthsystemstayid"].implode())
        .all()
    )
    # unit and hospital discharge status differ for patients who die on the ward after the ICU
    assert (
        p.filter((pl.col("unitdischargestatus") == "Alive") & (pl.col("hospitaldischargestatus") == "Expired")).height
        > 0
    )
    died = p.filter(pl.col("unitdischargestatus") == "Expired")
    assert (died["hospitaldischargeoffset"] == died["unitdischargeoffset"]).all()  # a death in the unit ends the stay
    assert (died["hospitaldischargestatus"] == "Expired").all() and (died["unitdischargelocation"] == "Death").all()
    truth = pl.read_parquet(eicu / "truth.parquet")
    first = truth.filter(pl.col("unitvisitnumber") == 1)
    assert first["y_icu_mortality"].sum() >= 15 and first["y_icu_readmission_15d"].sum() >= 10
    joined = first.join(p.with_columns(pl.col("patientunitstayid").cast(pl.Int64)), on="patientunitstayid")
    assert ((joined["unitdischargestatus"] == "Expired").cast(pl.Int8) == joined["y_icu_mortality"]).all()
    second = p.filter(pl.col("unitvisitnumber") == "2")["patienthealthsystemstayid"].cast(pl.Int64)
    assert set(second) == set(first.filter(pl.col("y_icu_readmission_15d") == 1)["patienthealthsystemstayid"])


def test_adni_schema_and_conventions(adni, shared_data):
    columns = json.loads((shared_data / "adni-schema" / "ADNIMERGE_columns.json").read_text())["columns"]
    assert _header(adni / "ADNIMERGE.csv") == columns and len(columns) == 116
    df = pl.read_csv(adni / "ADNIMERGE.csv", infer_schema_length=0)
    assert df.select("RID", "VISCODE").is_unique().all()
    assert df.group_by("PTID").agg(pl.col("RID").n_unique())["RID"].max() == 1
    assert set(df["DX"].drop_nulls()) == {"CN", "MCI", "Dementia"}
    assert set(df["DX_bl"]) <= {"CN", "SMC", "EMCI", "LMCI", "AD"}
    assert df["VISCODE"].str.contains(r"^(bl|m\d\d)$").all()
    assert df["EXAMDATE"].str.to_date("%Y-%m-%d").null_count() == 0
    assert (df["ABETA"] == ">1700").any() and df["ABETA"].null_count() > df.height // 3  # censored text, MNAR block
    assert set(df["FLDSTRENG"].drop_nulls()) == {"1.5 Tesla MRI", "3 Tesla MRI"}
    bl = df.filter(pl.col("VISCODE") == "bl")
    assert (bl["MMSE"] == bl["MMSE_bl"]).fill_null(True).all() and (bl["Years_bl"].cast(float) == 0).all()


def test_adni_conversions_follow_the_scm(adni):
    df = pl.read_csv(adni / "ADNIMERGE.csv", infer_schema_length=0).with_columns(pl.col("RID", "M").cast(pl.Int64))
    truth = pl.read_parquet(adni / "truth.parquet").filter(pl.col("y_conversion_24m").is_not_null())
    assert truth.height > 100 and truth["y_conversion_24m"].sum() >= 25
    # within 24 months a converter's stage crosses into dementia, and a non-converter's never does
    stage = pl.read_parquet(adni / "truth.parquet").with_columns(
        pl.col("VISCODE").str.replace("bl", "m00").str.slice(1).cast(pl.Int64).alias("M")
    )
    worst = stage.filter(pl.col("M") <= 24).group_by("RID").agg(pl.col("stage").max())
    j = truth.select("RID", "y_conversion_24m").join(worst, on="RID")
    conv = j.filter(pl.col("y_conversion_24m") == 1)["stage"]
    stay = j.filter(pl.col("y_conversion_24m") == 0)["stage"]
    assert (stay < 1).all() and (conv >= 1).mean() > 0.6  # converters may drop out before the converting visit
    assert df.filter(pl.col("M") <= 24).height > 0
