"""MEDS interchange for cohorts: export a cohort's labels and splits, and read MEDS label and split files.

The schemas are the ``meds`` package's (``meds.LabelSchema``, ``meds.SubjectSplitSchema``,
``meds.DatasetMetadataSchema``), never restated here; the MEDS version targeted is the installed ``meds``
release (0.4.x, see docs/ecosystem.md). ``export_meds`` writes::

    OUT/labels/<label>.parquet          meds.LabelSchema: subject_id, prediction_time, one typed value column
    OUT/metadata/subject_splits.parquet meds.SubjectSplitSchema, MEDS split names
    OUT/metadata/dataset.json           meds.DatasetMetadataSchema (etl_name "medmodal", meds_version, ...)
    OUT/metadata/medmodal_cohort.json   where the labels came from: cohort id, source, task definition, class
                                        order, the split mapping, the manifest's hash (also the export's marker)

``OUT/labels`` has ACES's output layout (``<cohort_dir>/<task>.parquet``), so any tool that reads ACES labels reads
these. The label value column follows the label's kind: binary -> ``boolean_value``, multiclass ->
``categorical_value`` holding the class name (the manifest's class order is recorded in medmodal_cohort.json).
Samples whose label is undefined (null) are left out: the MEDS value columns are not nullable.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import meds
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

import medmodal
from medmodal.common import MedmodalError, console, sha256_file, write_json
from medmodal.outputs import atomic_dir

MEDS_VERSION = meds.__version__
# medmodal's split names (cohort/splits.py) -> MEDS's sentinel names, and back.
SPLIT_TO_MEDS = {"train": meds.train_split, "val": meds.tuning_split, "test": meds.held_out_split}
SPLIT_FROM_MEDS = {v: k for k, v in SPLIT_TO_MEDS.items()}
VALUE_COLUMNS = (
    meds.LabelSchema.boolean_value_name,
    meds.LabelSchema.integer_value_name,
    meds.LabelSchema.float_value_name,
    meds.LabelSchema.categorical_value_name,
)
EXPORT_MARKER = Path("metadata") / "medmodal_cohort.json"
LABELS_DIR = "labels"


def _schema_error(err: Exception) -> str:
    """flexible_schema's message (column names and types only, never values) on one line."""
    return " ".join(str(err).split())


def subject_ids_int64(values: pl.Series, *, path: Path) -> pl.Series:
    """MEDS subject ids are int64; a text id (eICU's uniquepid) cannot be exported as is."""
    if values.dtype.is_integer():
        return values.cast(pl.Int64)
    cast = values.cast(pl.Int64, strict=False)
    bad = values.filter(cast.is_null() & values.is_not_null())
    if bad.len():
        raise MedmodalError(
            f"{bad.len()} subject ids are not integers (e.g. '{bad[0]}'); MEDS needs int64 subject ids",
            path=path,
            field="subject_id",
        )
    return cast


def _check_out(out: Path, inputs: list[Path], marker: Path, what: str, overwrite: bool) -> None:
    """Refuse an --out that is an input, lies inside / above one, or is a folder medmodal did not write."""
    res = out.resolve()
    for p in inputs:
        q = p.resolve()
        if res == q or res.is_relative_to(q) or q.is_relative_to(res):
            raise MedmodalError(f"--out must lie outside the input {q}", path=out)
    if out.exists():
        if not (out / marker).is_file():
            raise MedmodalError(f"exists and is not a {what} written by medmodal; refusing to replace it", path=out)
        if not overwrite:
            raise MedmodalError("already exists (pass --overwrite to replace it)", path=out)


def _label_table(cohort: pl.DataFrame, lab: dict[str, Any], subject_ids: pl.Series) -> tuple[pa.Table, str, int]:
    """(meds.LabelSchema table, value column, rows dropped for an undefined label) for one label."""
    name, kind = lab["name"], lab.get("kind", "binary")
    values = cohort[name]
    if kind == "binary":
        column, typed = meds.LabelSchema.boolean_value_name, values.cast(pl.Int64) == 1
    else:
        classes = [str(c) for c in lab.get("classes") or []]
        if not classes:
            raise MedmodalError("multiclass label without classes in the manifest", field=f"labels.{name}")
        column = meds.LabelSchema.categorical_value_name
        typed = values.cast(pl.Int64).replace_strict(list(range(len(classes))), classes, default=None)
    frame = pl.DataFrame(
        {
            meds.LabelSchema.subject_id_name: subject_ids,
            meds.LabelSchema.prediction_time_name: cohort["prediction_time"].cast(pl.Datetime("us")),
            column: typed,
        }
    )
    defined = frame.filter(pl.col(column).is_not_null())
    table = meds.LabelSchema.align(defined.sort(["subject_id", "prediction_time"]).to_arrow())
    return table, column, frame.height - defined.height


def export_meds(cohort_dir: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``cohort_dir``'s labels, splits and provenance as MEDS files under ``out``; return ``out``."""
    from medmodal.contracts import cohort_id_of, read_cohort_manifest

    d, out = Path(cohort_dir), Path(out)
    man = read_cohort_manifest(d)
    cohort_path = d / "cohort.parquet"
    if not cohort_path.is_file():
        raise MedmodalError("missing (not a complete cohort directory)", path=cohort_path)
    labels = man.get("labels") or []
    needed = ["subject_id", "prediction_time", "split", *(lab["name"] for lab in labels)]
    cohort = pl.read_parquet(cohort_path)
    missing = [c for c in needed if c not in cohort.columns]
    if missing:
        raise MedmodalError("required column missing", path=cohort_path, field=missing[0])
    unknown = sorted(set(cohort["split"].unique().to_list()) - set(SPLIT_TO_MEDS))
    if unknown:
        raise MedmodalError(f"split '{unknown[0]}' has no MEDS name", path=cohort_path, field="split")
    _check_out(out, [d], EXPORT_MARKER, "MEDS export", overwrite)

    subject_ids = subject_ids_int64(cohort["subject_id"], path=cohort_path)
    splits = (
        pl.DataFrame({"subject_id": subject_ids, "split": cohort["split"].replace_strict(SPLIT_TO_MEDS)})
        .unique()
        .sort("subject_id")
    )
    # cohort build's audit already forbids a subject in two splits; a hand-edited cohort must not slip through
    if splits["subject_id"].n_unique() != splits.height:
        raise MedmodalError("a subject sits in two splits", path=cohort_path, field="split")
    manifest_path = d / "manifest.json"
    provenance: dict[str, Any] = {
        "cohort_dir": str(d.resolve()),
        "cohort_id": cohort_id_of(man, d),
        "manifest_sha256": sha256_file(manifest_path),
        "source": man.get("source"),
        "task": man.get("task"),
        "dataset_version": man.get("dataset_version"),
        "task_definition": man.get("task_definition"),
        "prediction_time_rule": man.get("prediction_time_rule"),
        "split_seed": man.get("split_seed"),
        "split_names": SPLIT_TO_MEDS,
        "imported_labels": man.get("imported_labels"),
        "medmodal_version": medmodal.__version__,
        "meds_version": MEDS_VERSION,
        "labels": [],
    }
    # replaced only as the same kind of output (_check_out above; exports from before markers by EXPORT_MARKER)
    legacy = lambda p: (p / EXPORT_MARKER).is_file()  # noqa: E731
    with atomic_dir(out, kind="meds_export", overwrite=overwrite, inputs={"the cohort": d}, legacy=legacy) as tmp:
        (tmp / LABELS_DIR).mkdir()
        (tmp / "metadata").mkdir()
        for lab in labels:
            table, column, dropped = _label_table(cohort, lab, subject_ids)
            file = Path(LABELS_DIR) / f"{lab['name']}.parquet"
            pq.write_table(table, tmp / file)
            provenance["labels"].append(
                {
                    "name": lab["name"],
                    "kind": lab.get("kind", "binary"),
                    "classes": lab.get("classes", []),
                    "definition": lab.get("definition", ""),
                    "file": str(file),
                    "value_column": column,
                    "rows": table.num_rows,
                    "undefined_left_out": dropped,
                }
            )
        pq.write_table(meds.SubjectSplitSchema.align(splits.to_arrow()), tmp / meds.subject_splits_filepath)
        dataset = {
            "dataset_name": f"{man.get('source')}/{man.get('task')}",
            "dataset_version": str(man.get("dataset_version")),
            "etl_name": "medmodal",
            "etl_version": medmodal.__version__,
            "meds_version": MEDS_VERSION,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "raw_source_id_columns": [c for c in ("hadm_id", "stay_id") if c in cohort.columns],
        }
        meds.DatasetMetadataSchema.validate(dataset)
        write_json(tmp / meds.dataset_metadata_filepath, dataset)
        write_json(tmp / EXPORT_MARKER, provenance)
    n = ", ".join(f"{lab['name']} {lab['rows']}" for lab in provenance["labels"])
    console.print(f"[green]MEDS export[/green] {man.get('source')}/{man.get('task')}: labels ({n}) -> {out}")
    return out


# ------------------------------------------------------------------------------------------------ reading MEDS


def _read_parquet(path: Path) -> pa.Table:
    """One Parquet file, or every ``*.parquet`` under a folder (ACES writes one file per shard)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if p.is_file())
        if not files:
            raise MedmodalError("folder holds no .parquet file", path=path)
    elif path.is_file():
        files = [path]
    else:
        raise MedmodalError("not found", path=path)
    try:
        tables = [pq.read_table(f) for f in files]
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowException, OSError) as err:
        raise MedmodalError(f"unreadable Parquet ({type(err).__name__}: {_schema_error(err)})", path=path) from None


def read_meds_splits(path: str | Path) -> pl.DataFrame:
    """A MEDS ``subject_splits.parquet`` as (subject_key: Utf8, split: medmodal name), one row per subject."""
    path = Path(path)
    table = _read_parquet(path)
    for col in (meds.SubjectSplitSchema.subject_id_name, meds.SubjectSplitSchema.split_name):
        if col not in table.column_names:
            raise MedmodalError("required column missing (meds SubjectSplitSchema)", path=path, field=col)
    try:
        table = meds.SubjectSplitSchema.align(table.select(["subject_id", "split"]))
    except Exception as err:  # flexible_schema's Schema/TableValidationError
        raise MedmodalError(_schema_error(err), path=path, field="split") from None
    df = pl.from_arrow(table)
    unknown = df.filter(~pl.col("split").is_in(list(SPLIT_FROM_MEDS)))
    if unknown.height:
        raise MedmodalError(
            f"{unknown.height} subjects have a split other than {', '.join(SPLIT_FROM_MEDS)} "
            f"(e.g. subject {unknown['subject_id'][0]}: '{unknown['split'][0]}')",
            path=path,
            field="split",
        )
    twice = df.unique().group_by("subject_id").len().filter(pl.col("len") > 1)
    if twice.height:
        raise MedmodalError(
            f"{twice.height} subjects are in more than one split (e.g. subject {twice['subject_id'][0]})",
            path=path,
            field="split",
        )
    return df.unique().select(
        pl.col("subject_id").cast(pl.Utf8).alias("subject_key"), pl.col("split").replace_strict(SPLIT_FROM_MEDS)
    )


def _check_types(table: pa.Table, value_column: str, path: Path) -> None:
    """Stricter than ``LabelSchema.align``, which would read the text "1" or the integer 100 as True: each column
    must already be of its schema type's family (a boolean_value may be an integer column holding only 0 / 1)."""
    want = {
        "subject_id": (pa.types.is_integer, "an integer"),
        "prediction_time": (lambda t: pa.types.is_timestamp(t) or pa.types.is_date(t), "a timestamp"),
        "boolean_value": (lambda t: pa.types.is_boolean(t) or pa.types.is_integer(t), "bool"),
        "integer_value": (pa.types.is_integer, "an integer"),
        "categorical_value": (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "a string"),
    }
    for col in table.column_names:
        ok, what = want[col]
        typ = table.schema.field(col).type
        if not ok(typ):
            raise MedmodalError(f"type {typ}, expected {what} (meds LabelSchema)", path=path, field=col)
    if value_column == "boolean_value" and pa.types.is_integer(table.schema.field(value_column).type):
        values = pl.from_arrow(table.column(value_column))
        bad = values.filter(~values.is_in([0, 1]))
        if bad.len():
            raise MedmodalError(
                f"{bad.len()} integer boolean_value entries are neither 0 nor 1 (e.g. {bad[0]})",
                path=path,
                field=value_column,
            )


def read_meds_labels(path: str | Path, *, value_column: str | None = None) -> tuple[pl.DataFrame, str, list[str]]:
    """A MEDS label file (or folder of shards) checked against ``meds.LabelSchema``.

    Returns (frame of subject_id Int64, prediction_time Datetime[us], value, the value column's name, the columns
    ignored). Columns outside the label schema (ACES's window summaries, say) are ignored and reported; the
    value column is the one given, else the only schema value column present with any non-null value.
    Raises one line naming the file and field: missing / mistyped / null columns, duplicate (subject_id,
    prediction_time) rows, regression (float_value) labels, which medmodal's binary / multiclass tasks lack.
    """
    path = Path(path)
    table = _read_parquet(path)
    cols = table.column_names
    for col in (meds.LabelSchema.subject_id_name, meds.LabelSchema.prediction_time_name):
        if col not in cols:
            raise MedmodalError("required column missing (meds LabelSchema)", path=path, field=col)
    if value_column is not None:
        if value_column not in VALUE_COLUMNS:
            raise MedmodalError(f"not a MEDS label value column ({', '.join(VALUE_COLUMNS)})", field="--value-column")
        if value_column not in cols:
            raise MedmodalError("value column missing (given by --value-column)", path=path, field=value_column)
    else:
        present = [c for c in VALUE_COLUMNS if c in cols]
        if len(present) > 1:  # ACES writes all four, three of them all null
            present = [c for c in present if table.column(c).null_count < table.num_rows]
        if not present:
            raise MedmodalError(
                f"no label value column: the MEDS label schema needs one of {', '.join(VALUE_COLUMNS)}",
                path=path,
            )
        if len(present) > 1:
            raise MedmodalError(
                f"several value columns ({', '.join(present)}); choose one with --value-column", path=path
            )
        value_column = present[0]
    if value_column == meds.LabelSchema.float_value_name:
        raise MedmodalError(
            "float_value (regression) labels are not supported: medmodal tasks are binary or multiclass",
            path=path,
            field=value_column,
        )
    keep = [meds.LabelSchema.subject_id_name, meds.LabelSchema.prediction_time_name, value_column]
    ignored = [c for c in cols if c not in keep]
    selected = table.select(keep)
    for col in keep:
        nulls = selected.column(col).null_count
        if nulls:
            first = pl.from_arrow(selected).with_row_index("row").filter(pl.col(col).is_null())["row"][0]
            raise MedmodalError(f"{nulls} rows have a null {col} (e.g. data row {first})", path=path, field=col)
    _check_types(selected, value_column, path)
    try:
        aligned = meds.LabelSchema.align(selected)
    except Exception as err:  # flexible_schema's Schema/TableValidationError: names and types only
        raise MedmodalError(f"{_schema_error(err)} (meds LabelSchema)", path=path, field=value_column) from None
    df = pl.from_arrow(aligned)
    dup = df.group_by(keep[:2]).len().filter(pl.col("len") > 1).sort(keep[:2])
    if dup.height:
        raise MedmodalError(
            f"{dup.height} (subject_id, prediction_time) pairs appear more than once "
            f"(e.g. subject {dup['subject_id'][0]} at {dup['prediction_time'][0]})",
            path=path,
            field="prediction_time",
        )
    return df.rename({value_column: "value"}), value_column, ignored


def read_export_provenance(out: str | Path) -> dict[str, Any]:
    """medmodal_cohort.json of a MEDS export (what ``export_meds`` recorded)."""
    path = Path(out) / EXPORT_MARKER
    if not path.is_file():
        raise MedmodalError("not a medmodal MEDS export (metadata/medmodal_cohort.json missing)", path=out)
    return json.loads(path.read_text())
