"""MEDS interchange on the vendored MIMIC-IV demo: export validates against the ``meds`` schemas, export -> import
gives back the same cohort, bad label files are one-line errors, and (where installed) ACES labels import and
meds-evaluation scores a run's exported predictions like medmodal does."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import meds
import polars as pl
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from medmodal.cli import app
from medmodal.cohort import build_cohort
from medmodal.cohort.meds import export_meds, read_export_provenance
from medmodal.cohort.meds_import import build_from_labels
from medmodal.common import MedmodalError, sha256_file

DEMO = Path(__file__).resolve().parents[1] / "data" / "mimic-iv-demo-2.2"
ACES_CONFIGS = Path(__file__).resolve().parent / "data" / "aces"
TASK = "in_hospital_mortality_48h"
# The native task's window is [intime - 6 h, intime + 48 h] and it allows no discharge note: the same rule on
# imported labels whose prediction_time is intime + 48 h.
SAME_RULE = {"window_hours": 54, "modalities": ["structured", "timeseries", "radiology_note", "cxr"]}


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("meds") / "native"
    return build_cohort("mimic_iv", DEMO, TASK, out, threads=2)


@pytest.fixture(scope="module")
def exported(native) -> Path:
    return export_meds(native, native.parent / "export")


@pytest.fixture(scope="module")
def imported(exported) -> Path:
    labels = exported / "labels" / f"{TASK}.parquet"
    return build_from_labels("mimic_iv", DEMO, labels, exported.parent / "imported", threads=2, **SAME_RULE)


def _keyed(cohort_dir: Path, name: str) -> pl.DataFrame:
    """``name``.parquet with sample_id replaced by (subject_id, prediction_time), sorted: comparable across ids."""
    keys = pl.read_parquet(cohort_dir / "cohort.parquet", columns=["sample_id", "subject_id", "prediction_time"])
    df = pl.read_parquet(cohort_dir / f"{name}.parquet").join(keys, on="sample_id").drop("sample_id")
    return df.sort([c for c in ("subject_id", "prediction_time", "hour", "variable", "note_id") if c in df.columns])


def test_export_validates_against_the_meds_schemas(native, exported):
    cohort = pl.read_parquet(native / "cohort.parquet")
    labels = pq.read_table(exported / "labels" / f"{TASK}.parquet")
    meds.LabelSchema.validate(labels)  # raises on any schema violation
    assert labels.column_names == ["subject_id", "prediction_time", "boolean_value"]
    got = pl.from_arrow(labels).sort("subject_id")
    want = cohort.select("subject_id", "prediction_time", (pl.col(TASK) == 1).alias("boolean_value")).sort("subject_id")
    assert got.equals(want)

    splits = pq.read_table(exported / meds.subject_splits_filepath)
    meds.SubjectSplitSchema.validate(splits)
    mapping = {"train": "train", "val": "tuning", "test": "held_out"}
    want_splits = cohort.select("subject_id", pl.col("split").replace_strict(mapping)).unique().sort("subject_id")
    assert pl.from_arrow(splits).sort("subject_id").equals(want_splits)
    assert set(want_splits["split"]) <= {meds.train_split, meds.tuning_split, meds.held_out_split}

    dataset = json.loads((exported / meds.dataset_metadata_filepath).read_text())
    meds.DatasetMetadataSchema.validate(dataset)
    assert dataset["etl_name"] == "medmodal" and dataset["meds_version"] == meds.__version__
    prov = read_export_provenance(exported)
    manifest = json.loads((native / "manifest.json").read_text())
    assert prov["cohort_id"] == manifest["cohort_id"] and prov["manifest_sha256"] == sha256_file(
        native / "manifest.json"
    )
    assert prov["labels"][0]["value_column"] == "boolean_value" and prov["labels"][0]["rows"] == cohort.height


def test_round_trip_gives_the_same_samples_labels_masks_and_features(native, exported, imported):
    a, b = _keyed(native, "cohort"), _keyed(imported, "cohort")
    assert a.height == b.height == 53
    for col in ("subject_id", "prediction_time", TASK, "split", "hadm_id", "stay_id", "window_start_time"):
        assert a[col].equals(b[col]), col
    assert _keyed(native, "modalities").equals(_keyed(imported, "modalities"))  # has_*, *_time, pattern
    for name in ("timeseries", "notes", "images"):
        assert _keyed(native, name).equals(_keyed(imported, name)), name
    sa, sb = _keyed(native, "structured"), _keyed(imported, "structured")
    assert sa.columns == sb.columns
    for col in sa.columns:
        if col == "age":  # native: age at ICU admission; imported: at the prediction time, 48 h later
            assert ((sa[col] - sb[col]).abs() <= 1).all()
        else:
            assert sa[col].equals(sb[col]), col
    man = json.loads((imported / "manifest.json").read_text())
    labels_file = exported / "labels" / f"{TASK}.parquet"
    assert man["imported_labels"]["sha256"] == sha256_file(labels_file)
    assert man["task_definition"]["params"]["labels_sha256"] == sha256_file(labels_file)
    assert "notes_after_cutoff" in man["audits_passed"] and man["modalities"] == SAME_RULE["modalities"]


def test_round_trip_on_a_simulated_world_with_notes_and_images(tmp_path):
    """The demo has no notes or CXR; the simulator writes both, so the time rule of each is compared too."""
    from medmodal.simulate import simulate

    raw = simulate("mimic_iv", tmp_path / "sim", subjects=200, seed=3, images=False)
    native = build_cohort("mimic_iv", raw, TASK, tmp_path / "native", threads=2)
    labels = export_meds(native, tmp_path / "export") / "labels" / f"{TASK}.parquet"
    back = build_from_labels("mimic_iv", raw, labels, tmp_path / "imported", threads=2, **SAME_RULE)
    assert (
        _keyed(native, "cohort")
        .select("subject_id", "prediction_time", TASK, "split")
        .equals(_keyed(back, "cohort").select("subject_id", "prediction_time", TASK, "split"))
    )
    masks = _keyed(native, "modalities")
    assert masks["has_radiology_note"].sum() > 0 and masks["has_cxr"].sum() > 0
    assert masks.equals(_keyed(back, "modalities"))
    for name in ("notes", "images", "timeseries"):
        assert _keyed(native, name).equals(_keyed(back, name)), name


def test_meds_splits_file_is_followed(exported, tmp_path):
    splits = pl.read_parquet(exported / meds.subject_splits_filepath)
    flipped = splits.with_columns(
        pl.when(pl.col("split") == "held_out").then(pl.lit("train")).otherwise(pl.lit("held_out")).alias("split")
    )
    path = tmp_path / "subject_splits.parquet"
    flipped.write_parquet(path)
    labels = exported / "labels" / f"{TASK}.parquet"
    out = build_from_labels("mimic_iv", DEMO, labels, tmp_path / "c", splits=path, threads=2, **SAME_RULE)
    got = pl.read_parquet(out / "cohort.parquet", columns=["subject_id", "split"]).unique().sort("subject_id")
    want = flipped.select("subject_id", pl.col("split").replace_strict({"train": "train", "held_out": "test"}))
    assert got.equals(want.sort("subject_id"))


def _labels(rows: list[tuple], column: str = "boolean_value", dtype=None) -> pl.DataFrame:
    schema = {"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"), column: dtype or pl.Boolean}
    return pl.DataFrame(rows, schema=schema, orient="row")


T0 = dt.datetime(2180, 5, 7, 12, 0)  # inside subject 10000032's first admission (2180-05-06 22:23 .. 05-07 17:15)
T1 = dt.datetime(2180, 5, 7, 13, 0)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (_labels([(10000032, T0, True), (10000032, T0, False)]), "1 (subject_id, prediction_time) pairs appear more"),
        (_labels([(10000032, T0, 1)], "boolean_value", pl.Utf8), "type large_string, expected bool"),
        (_labels([(10000032, T0, True), (10000032, T1, None)]), "1 rows have a null boolean_value (e.g. data row 1)"),
        (_labels([(10000032, T0, 2)], "boolean_value", pl.Int64), "neither 0 nor 1"),
        (pl.DataFrame({"subject_id": [10000032], "prediction_time": [T0]}), "no label value column"),
        (pl.DataFrame({"subject_id": [10000032], "boolean_value": [True]}), "field 'prediction_time'"),
        (_labels([(10000032, T0, 0.5)], "float_value", pl.Float32), "regression"),
        (_labels([(10000032, T0, 1)], "integer_value", pl.Int64), "at least two classes"),
    ],
)
def test_bad_label_files_are_one_line_errors_before_any_build(tmp_path, frame, message):
    path = tmp_path / "labels.parquet"
    frame.write_parquet(path)
    with pytest.raises(MedmodalError, match=re.escape(message)) as err:
        build_from_labels("mimic_iv", DEMO, path, tmp_path / "out", threads=2)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([(10000032, T0, True), (1, T0, False), (2, T0, False)], "2 label rows name a subject not in the raw data"),
        ([(10000032, T0, True), (10000032, dt.datetime(1900, 1, 1), False)], "1 label rows have a prediction_time"),
    ],
)
def test_labels_that_do_not_fit_the_raw_data_are_errors(tmp_path, rows, message):
    path = tmp_path / "labels.parquet"
    _labels(rows).write_parquet(path)
    with pytest.raises(MedmodalError, match=re.escape(message)) as err:
        build_from_labels("mimic_iv", DEMO, path, tmp_path / "out", threads=2)
    assert "(e.g. subject" in str(err.value) and not (tmp_path / "out").exists()


def test_multiclass_labels_and_the_default_window(tmp_path):
    """integer_value -> a multiclass label over the sorted values; no --window-hours -> window from admittime."""
    rows = [(10000032, T0, 2), (10000032, dt.datetime(2180, 6, 27, 12, 0), 0), (10001217, None, 1)]
    adm = pl.read_csv(DEMO / "hosp" / "admissions.csv.gz", try_parse_dates=True)
    first = adm.filter(pl.col("subject_id") == 10001217).sort("admittime")
    rows[2] = (10001217, first["dischtime"][0], 1)  # exactly at discharge: still inside the record
    path = tmp_path / "dx.parquet"
    _labels(rows, "integer_value", pl.Int64).write_parquet(path)
    out = build_from_labels("mimic_iv", DEMO, path, tmp_path / "c", threads=2)
    man = json.loads((out / "manifest.json").read_text())
    assert man["labels"][0] == {
        "name": "dx",
        "kind": "multiclass",
        "classes": [0, 1, 2],
        "definition": "integer_value of dx.parquet (MEDS label file)",
    }
    assert "discharge_note" not in man["modalities"]
    cohort = pl.read_parquet(out / "cohort.parquet").sort("subject_id", "prediction_time")
    assert cohort["dx"].to_list() == [2, 0, 1]
    assert cohort["window_start_time"].to_list() == cohort["index_time"].to_list()
    assert cohort["window_start_time"][2] == first["admittime"][0]
    assert cohort["hadm_id"][2] == first["hadm_id"][0]


def test_cli_both_directions(exported, tmp_path):
    runner = CliRunner()
    labels = exported / "labels" / f"{TASK}.parquet"
    res = runner.invoke(
        app,
        [
            *("cohort", "build", "mimic_iv", "--raw", str(DEMO), "--labels", str(labels)),
            *("--out", str(tmp_path / "c"), "--window-hours", "54", "--threads", "2", "--task", "mortality_from_meds"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "mortality_from_meds" in pl.read_parquet(tmp_path / "c" / "cohort.parquet").columns
    res = runner.invoke(app, ["export", "meds", str(tmp_path / "c"), "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    back = pl.read_parquet(tmp_path / "m" / "labels" / "mortality_from_meds.parquet")
    assert back.sort("subject_id").equals(pl.read_parquet(labels).sort("subject_id"))
    res = runner.invoke(app, ["export", "meds", str(tmp_path / "c"), "--out", str(tmp_path / "m")])
    assert res.exit_code == 1 and "--overwrite" in res.output
    (tmp_path / "foreign").mkdir()
    res = runner.invoke(app, ["export", "meds", str(tmp_path / "c"), "--out", str(tmp_path / "foreign")])
    assert res.exit_code == 1 and "not a MEDS export written by medmodal" in res.output
    res = runner.invoke(app, ["export", "meds", str(tmp_path / "c"), "--out", str(tmp_path / "c" / "x")])
    assert res.exit_code == 1 and "outside the input" in res.output
    res = runner.invoke(app, ["cohort", "build", "mimic_iv", "--raw", str(DEMO), "--out", str(tmp_path / "d")])
    assert res.exit_code == 1 and "--labels" in res.output


def test_multiclass_cohort_exports_class_names(tmp_path):
    from medmodal.models.toy import write_toy_cohort

    cohort_dir = write_toy_cohort(tmp_path / "toy", tmp_path / "store", n=40, multiclass=True)
    out = export_meds(cohort_dir, tmp_path / "m")
    prov = read_export_provenance(out)
    dx = next(lab for lab in prov["labels"] if lab["kind"] == "multiclass")
    table = pq.read_table(out / dx["file"])
    meds.LabelSchema.validate(table)
    assert dx["value_column"] == "categorical_value" and table.column_names[-1] == "categorical_value"
    cohort = pl.read_parquet(cohort_dir / "cohort.parquet").sort("subject_id", "prediction_time")
    names = [dx["classes"][i] for i in cohort[dx["name"]].to_list()]
    assert pl.from_arrow(table).sort("subject_id", "prediction_time")["categorical_value"].to_list() == names
    readm = next(lab for lab in prov["labels"] if lab["name"] == "readmission_30d")  # undefined for some
    assert readm["undefined_left_out"] == cohort["readmission_30d"].null_count() > 0


def _aces_cli() -> str:
    cli = os.environ.get("MEDMODAL_ACES_CLI") or shutil.which("aces-cli")
    if not cli:
        pytest.skip(
            "ACES not installed (es_aces pins polars < 2, so it lives in its own venv): "
            "python -m venv V && V/bin/pip install es_aces && MEDMODAL_ACES_CLI=V/bin/aces-cli pytest ..."
        )
    return cli


def test_aces_labels_from_a_meds_copy_import_into_the_same_cohort(native, tmp_path):
    """ACES on a MEDS copy of the demo finds the same 53 samples and prediction times as medmodal's task; the
    labels differ exactly where MIMIC records a deathtime after dischtime (hospital_expire_flag = 1, but the
    death event falls after the discharge event that closes ACES's target window)."""
    from meds_events import write_meds_dataset

    cli = _aces_cli()
    data = write_meds_dataset(DEMO, tmp_path / "meds")
    labels = tmp_path / "aces" / f"{TASK}.parquet"
    cmd = [cli, "data.standard=meds", "data=single_file", f"data.path={data / 'data' / '0.parquet'}"]
    cmd += [f"cohort_dir={tmp_path / 'aces'}", f"cohort_name={TASK}", f"config_path={ACES_CONFIGS / (TASK + '.yaml')}"]
    subprocess.run([*cmd, f"output_filepath={labels}"], check=True, capture_output=True, timeout=300)

    out = build_from_labels("mimic_iv", DEMO, labels, tmp_path / "c", threads=2, **SAME_RULE)
    a, b = _keyed(native, "cohort"), _keyed(out, "cohort")
    assert a["subject_id"].equals(b["subject_id"]) and a["prediction_time"].equals(b["prediction_time"])
    assert _keyed(native, "modalities").equals(_keyed(out, "modalities"))
    adm = pl.read_csv(DEMO / "hosp" / "admissions.csv.gz", try_parse_dates=True)
    late = adm.filter(pl.col("deathtime") > pl.col("dischtime"))["hadm_id"]
    differs = a.filter(pl.col(TASK) != b[TASK])
    assert differs.height == 3 and differs["hadm_id"].is_in(late.implode()).all()


def test_predictions_export_is_scored_by_meds_evaluation(toy, tmp_path, one_torch_thread):
    evaluation = pytest.importorskip("meds_evaluation.evaluate", reason="meds-evaluation not installed")
    from meds_evaluation.schema import PredictionSchema

    from medmodal.models.train import train

    run = train(*toy, tmp_path / "run", backbone="late_fusion", epochs=2, n_boot=0, progress=False)
    res = CliRunner().invoke(app, ["export", "predictions", str(run)])
    assert res.exit_code == 0, res.output
    held_out = pl.read_parquet(run / "meds" / "mortality" / "held_out.parquet")
    PredictionSchema.validate(held_out.to_arrow())
    scored = evaluation.evaluate_binary_classification(held_out)["samples_equally_weighted"]
    ours = json.loads((run / "metrics.json").read_text())["tasks"]["mortality"]["test"]["overall"]
    assert scored["roc_auc_score"] == pytest.approx(ours["auroc"]["value"], abs=1e-6)
    assert held_out.height == ours["n"]
    marker = json.loads((run / "meds" / "medmodal_predictions.json").read_text())
    assert marker["labels"]["mortality"]["rows"]["held_out"] == held_out.height
    assert set(marker["labels"]) == {"mortality", "readmission_30d"}  # the toy's two binary labels

    res = CliRunner().invoke(app, ["export", "predictions", str(run)])
    assert res.exit_code == 1 and "--overwrite" in res.output
    res = CliRunner().invoke(
        app, ["evaluate", str(run), "--n-boot", "0", "--out", str(tmp_path / "ev"), "--export", "meds"]
    )
    assert res.exit_code == 0, res.output
    again = pl.read_parquet(tmp_path / "ev" / "meds" / "mortality" / "held_out.parquet")
    assert again.equals(held_out)  # evaluate reloads the run: the same predictions
