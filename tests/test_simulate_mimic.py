"""Simulated MIMIC-IV: the files look like the real ones (schemas, types, dates, gzip, itemids), leakage traps
exist, outputs are byte-reproducible, and bad arguments fail with one line."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pydicom
import pytest
from PIL import Image
from typer.testing import CliRunner

from medmodal.common import MedmodalError
from medmodal.simulate import simulate

DEMO_TABLES = [
    "hosp/patients",
    "hosp/admissions",
    "hosp/transfers",
    "hosp/services",
    "hosp/diagnoses_icd",
    "hosp/labevents",
    "hosp/d_labitems",
    "icu/icustays",
    "icu/chartevents",
    "icu/d_items",
]
# The demo's chartevents is rebuilt from numeric values only; the real file holds text values (GCS) too.
TYPE_OVERRIDES = {"icu/chartevents": {"value": "VARCHAR"}}
# MIMIC-IV-Note and MIMIC-CXR-JPG have no open demo: their headers as published on PhysioNet.
NOTE_HEADER = ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"]
CXR_HEADERS = {
    "cxr/mimic-cxr-2.0.0-metadata.csv.gz": [
        "dicom_id",
        "subject_id",
        "study_id",
        "PerformedProcedureStepDescription",
        "ViewPosition",
        "Rows",
        "Columns",
        "StudyDate",
        "StudyTime",
        "ProcedureCodeSequence_CodeMeaning",
        "ViewCodeSequence_CodeMeaning",
        "PatientOrientationCodeSequence_CodeMeaning",
    ],
    "cxr/mimic-cxr-2.0.0-split.csv.gz": ["dicom_id", "study_id", "subject_id", "split"],
    "cxr/mimic-cxr-2.0.0-chexpert.csv.gz": [
        "subject_id",
        "study_id",
        "Atelectasis",
        "Cardiomegaly",
        "Consolidation",
        "Edema",
        "Enlarged Cardiomediastinum",
        "Fracture",
        "Lung Lesion",
        "Lung Opacity",
        "No Finding",
        "Pleural Effusion",
        "Pleural Other",
        "Pneumonia",
        "Pneumothorax",
        "Support Devices",
    ],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return simulate("mimic_iv", tmp_path_factory.mktemp("sim") / "mimic", subjects=250, seed=11, image_size=48)


def _header(path: Path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        return fh.readline().rstrip("\n").split(",")


def _demo_types(path: Path) -> dict[str, str]:
    rel = duckdb.sql(f"select * from read_csv_auto('{path}', sample_size=50000)")
    return dict(zip(rel.columns, map(str, rel.types)))


@pytest.mark.parametrize("table", DEMO_TABLES)
def test_schema_matches_demo(world, mimic_demo, table):
    ours, demo = world / f"{table}.csv.gz", mimic_demo / f"{table}.csv.gz"
    assert _header(ours) == _header(demo)
    raw = ours.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\x00\x00\x00\x00"  # gzip, mtime 0
    # Every value must parse under the types DuckDB infers from the real file (dates, timestamps, numbers).
    types = {**_demo_types(demo), **TYPE_OVERRIDES.get(table, {})}
    spec = "{" + ", ".join(f"'{c}': '{t}'" for c, t in types.items()) + "}"
    n = duckdb.sql(
        f"select count(*) from read_csv('{ours}', header=true, columns={spec}, auto_detect=false)"
    ).fetchall()[0][0]
    assert n == len(pl.read_csv(ours, infer_schema_length=0))


def test_dictionaries_are_real_rows(world, mimic_demo):
    """The itemids we use are the real MIMIC-IV v2.2 items, with the demo's labels."""
    for table, _key in (("hosp/d_labitems", "itemid"), ("icu/d_items", "itemid")):
        ours = pl.read_csv(world / f"{table}.csv.gz", infer_schema_length=0)
        demo = pl.read_csv(mimic_demo / f"{table}.csv.gz", infer_schema_length=0)
        assert ours.join(demo, on=ours.columns, how="anti", nulls_equal=True).height == 0, table
        assert ours.height >= 15
    labs = pl.read_csv(world / "hosp/labevents.csv.gz", infer_schema_length=0)
    charts = pl.read_csv(world / "icu/chartevents.csv.gz", infer_schema_length=0)
    assert {"50912", "50983", "51301", "51222", "50813", "51265"} <= set(labs["itemid"])
    assert {"220045", "220179", "220210", "220277", "223761", "223762", "220739", "226512"} <= set(charts["itemid"])
    gcs = charts.filter(pl.col("itemid") == "220739")
    assert (
        set(gcs["value"]) <= {"None", "To Pain", "To Speech", "Spontaneously"}
        and gcs["valuenum"].cast(int).is_between(1, 4).all()
    )


def test_notes_and_cxr_layout(world):
    for name in ("note/discharge.csv.gz", "note/radiology.csv.gz"):
        assert _header(world / name) == NOTE_HEADER
    for name, header in CXR_HEADERS.items():
        assert _header(world / name) == header
    ds = pl.read_csv(world / "note/discharge.csv.gz", try_parse_dates=True)
    rr = pl.read_csv(world / "note/radiology.csv.gz", try_parse_dates=True)
    assert ds["note_id"].str.contains(r"^\d+-DS-\d+$").all() and set(ds["note_type"]) == {"DS"}
    assert rr["note_id"].str.contains(r"^\d+-RR-\d+$").all() and set(rr["note_type"]) == {"RR"}
    assert ds["hadm_id"].null_count() == 0 and rr["hadm_id"].null_count() > 0  # outpatient radiology
    for section in (
        "Chief Complaint:",
        "History of Present Illness:",
        "Brief Hospital Course:",
        "Discharge Diagnosis:",
    ):
        assert ds["text"].str.contains(section, literal=True).all()
    assert rr["text"].str.contains("IMPRESSION:", literal=True).all()
    words = ds["text"].str.split(" ").list.len()
    assert words.min() > 200 and words.max() > 900  # a few hundred to thousands of tokens
    meta = pl.read_csv(world / "cxr/mimic-cxr-2.0.0-metadata.csv.gz")
    assert meta["StudyDate"].dtype == pl.Int64 and meta["StudyDate"].cast(pl.Utf8).str.contains(r"^2\d{7}$").all()
    assert meta["StudyTime"].dtype == pl.Float64 and (meta["StudyTime"] < 240000).all()
    assert meta["dicom_id"].str.contains(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$").all()
    chex = pl.read_csv(world / "cxr/mimic-cxr-2.0.0-chexpert.csv.gz")
    values = set(
        np.unique(
            chex.select(pl.exclude("subject_id", "study_id")).to_numpy()[
                ~np.isnan(chex.select(pl.exclude("subject_id", "study_id")).to_numpy().astype(float))
            ]
        )
    )
    assert values == {1.0, 0.0, -1.0}
    assert set(pl.read_csv(world / "cxr/mimic-cxr-2.0.0-split.csv.gz")["split"]) <= {"train", "validate", "test"}


def test_image_files(world):
    meta = pl.read_csv(world / "cxr/mimic-cxr-2.0.0-metadata.csv.gz")
    jpg = dcm = 0
    for row in meta.iter_rows(named=True):
        sid = str(row["subject_id"])
        folder = world / "cxr" / "files" / f"p{sid[:2]}" / f"p{sid}" / f"s{row['study_id']}"
        files = list(folder.glob(f"{row['dicom_id']}.*"))
        assert len(files) == 1, folder
        if files[0].suffix == ".jpg":
            jpg += 1
            im = Image.open(files[0])
            assert im.mode == "L" and im.size == (48, 48)
        else:
            dcm += 1
            ds = pydicom.dcmread(files[0])
            assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
            assert ds.PhotometricInterpretation in ("MONOCHROME1", "MONOCHROME2") and ds.BitsStored == 12
            assert "RescaleSlope" in ds and "WindowCenter" in ds and ds.pixel_array.shape == (48, 48)
            assert ds.pixel_array.max() < 4096
    assert jpg > 0 and dcm > 0 and dcm < jpg


def test_leakage_traps_exist(world):
    """Events after every task's prediction time, so the cohort builder's time rules are exercised."""
    adm = pl.read_csv(world / "hosp/admissions.csv.gz", try_parse_dates=True)
    icu = pl.read_csv(world / "icu/icustays.csv.gz", try_parse_dates=True)
    ds = pl.read_csv(world / "note/discharge.csv.gz", try_parse_dates=True).join(adm, on="hadm_id")
    late = ds.filter(pl.col("charttime") > pl.col("dischtime") + pl.duration(hours=24))
    assert late.height > 0 and late.height < 0.2 * ds.height
    labs = pl.read_csv(world / "hosp/labevents.csv.gz", try_parse_dates=True, infer_schema_length=0)
    assert 0.1 < labs["hadm_id"].is_null().mean() < 0.4
    labs = labs.with_columns(pl.col("subject_id").cast(pl.Int64), pl.col("charttime").str.to_datetime())
    after48 = labs.join(icu, on="subject_id").filter(
        (pl.col("charttime") > pl.col("intime") + pl.duration(hours=48)) & (pl.col("charttime") < pl.col("outtime"))
    )
    assert after48.height > 0
    meta = pl.read_csv(world / "cxr/mimic-cxr-2.0.0-metadata.csv.gz").with_columns(
        pl.col("StudyDate").cast(pl.Utf8).str.to_datetime("%Y%m%d").alias("day")
    )
    last = adm.group_by("subject_id").agg(pl.col("dischtime").max())
    assert meta.join(last, on="subject_id").filter(pl.col("day") > pl.col("dischtime")).height > 0


def _digest(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not str(p.relative_to(root)).startswith(skip)
    }


def test_same_seed_same_bytes(tmp_path):
    a = simulate("mimic_iv", tmp_path / "a", subjects=60, seed=5, image_size=32)
    b = simulate("mimic_iv", tmp_path / "b", subjects=60, seed=5, image_size=32)
    c = simulate("mimic_iv", tmp_path / "c", subjects=60, seed=6, image_size=32)
    d = simulate("mimic_iv", tmp_path / "d", subjects=60, seed=5, images=False)
    da, db = _digest(a), _digest(b)
    assert da == db and any(k.endswith(".dcm") for k in da)
    assert _digest(c)["hosp/patients.csv.gz"] != da["hosp/patients.csv.gz"]
    # switching pixels off leaves every table untouched (only Rows/Columns follow --image-size)
    dd = _digest(d, skip=("cxr/files", "simulation.json", "cxr/mimic-cxr-2.0.0-metadata"))
    assert dd == {k: v for k, v in da.items() if k in dd} and len(dd) == 17  # 16 tables + the output marker


def test_bad_arguments_fail_with_one_line(tmp_path):
    with pytest.raises(MedmodalError, match="unknown simulated source 'mimic'"):
        simulate("mimic", tmp_path / "x", subjects=5, seed=0)
    with pytest.raises(MedmodalError, match="unknown environment 'test'"):
        simulate("mimic_iv", tmp_path / "x", subjects=5, seed=0, environment="test")
    with pytest.raises(MedmodalError, match="unknown strength 'c_outcomes'"):
        simulate("mimic_iv", tmp_path / "x", subjects=5, seed=0, c_outcomes=1.0)
    with pytest.raises(MedmodalError, match="'p_c' must lie in"):
        simulate("mimic_iv", tmp_path / "x", subjects=5, seed=0, p_c=1.5)
    assert not (tmp_path / "x").exists()
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "mine.txt").write_text("not medmodal's")
    with pytest.raises(MedmodalError, match="not a medmodal output"):
        simulate("eicu", tmp_path / "exists", subjects=5, seed=0, overwrite=True)
    assert (tmp_path / "exists" / "mine.txt").is_file()
    done = simulate("eicu", tmp_path / "done", subjects=5, seed=0)
    with pytest.raises(MedmodalError, match="already exists"):
        simulate("eicu", done, subjects=5, seed=0)


def test_cli_simulate(tmp_path):
    from medmodal.cli import app

    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "simulate",
            "adni",
            "--out",
            str(tmp_path / "a"),
            "--subjects",
            "20",
            "--seed",
            "1",
            "--strength",
            "c_outcome=0",
            "--environment",
            "shifted",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a" / "ADNIMERGE.csv").exists() and (tmp_path / "a" / "truth.parquet").exists()
    bad = runner.invoke(
        app, ["simulate", "adni", "--out", str(tmp_path / "b"), "--subjects", "5", "--strength", "c_outcome"]
    )
    assert bad.exit_code == 1 and "KEY=VALUE" in bad.output and not (tmp_path / "b").exists()
    assert re.search(r"wrote .*a", res.output)
