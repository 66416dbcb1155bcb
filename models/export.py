"""Predictions of a run in the layout meds-evaluation scores (its ``PredictionSchema``, built on ``meds.LabelSchema``).

``export_predictions(RUN_OR_EVAL_DIR)`` reads the folder's predictions.parquet (a run directory from ``medmodal
train`` or an evaluation from ``medmodal evaluate``) and the cohort it was made on, and writes::

    OUT/<label>/<split>.parquet    subject_id, prediction_time, boolean_value, predicted_boolean_value,
                                   predicted_boolean_probability; split in MEDS names (train, tuning, held_out)
    OUT/medmodal_predictions.json  run, cohort id, threshold, row counts (also the folder's marker)

Score one with ``meds-evaluation-cli predictions_path=OUT/<label>/held_out.parquet output_file=...``.
``predicted_boolean_value`` is ``probability >= 0.5``. meds-evaluation 0.0.6 scores binary labels only, so a
multiclass label is left out and said so. Samples whose label is undefined are left out (MEDS values are not
nullable).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import meds
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

import medmodal
from medmodal.common import MedmodalError, console, write_json
from medmodal.outputs import atomic_dir

THRESHOLD = 0.5
MARKER = "medmodal_predictions.json"
SPLIT_TO_MEDS = {"train": meds.train_split, "val": meds.tuning_split, "test": meds.held_out_split}

# meds-evaluation's PredictionSchema = meds.LabelSchema + these two columns (bool, float32)
PREDICTION_SCHEMA = pa.schema(
    [
        (meds.LabelSchema.subject_id_name, meds.LabelSchema.subject_id_dtype),
        (meds.LabelSchema.prediction_time_name, meds.LabelSchema.prediction_time_dtype),
        (meds.LabelSchema.boolean_value_name, meds.LabelSchema.boolean_value_dtype),
        ("predicted_boolean_value", pa.bool_()),
        ("predicted_boolean_probability", pa.float32()),
    ]
)


def _cohort_of(folder: Path) -> tuple[Path, str]:
    """(cohort dir, what folder is): from a run's config.json or an evaluation's metrics.json."""
    from medmodal.models.checkpoint import CONFIG, read_config

    if (folder / CONFIG).is_file():
        return Path(read_config(folder)["data"]["cohort"]["dir"]), "run"
    metrics = folder / "metrics.json"
    if metrics.is_file():
        try:
            cohort = json.loads(metrics.read_text()).get("cohort") or {}
        except json.JSONDecodeError as err:
            raise MedmodalError(f"unreadable JSON ({err.msg})", path=metrics) from None
        if cohort.get("dir"):
            return Path(cohort["dir"]), "evaluation"
    raise MedmodalError(
        "neither a run directory (config.json) nor an evaluation (metrics.json with cohort)", path=folder
    )


def export_predictions(folder: str | Path, out: str | Path | None = None, *, overwrite: bool = False) -> Path:
    """Write ``folder``'s predictions as meds-evaluation inputs under ``out`` (default FOLDER/meds); return it."""
    from medmodal.contracts import CohortDir

    folder = Path(folder)
    out = Path(out) if out is not None else folder / "meds"
    preds_path = folder / "predictions.parquet"
    if not preds_path.is_file():
        raise MedmodalError("missing (no predictions to export)", path=preds_path)
    cohort_dir, kind = _cohort_of(folder)
    opened = CohortDir.open(cohort_dir)
    man, cohort_path = opened.manifest, opened.dir / "cohort.parquet"
    missing = [c for c in ("subject_id", "prediction_time") if c not in opened.frame.columns]
    if missing:
        raise MedmodalError("required column missing", path=cohort_path, field=missing[0])
    cohort = opened.frame.select("sample_id", "subject_id", "prediction_time")
    preds = pl.read_parquet(preds_path)
    if out.exists():
        if not (out / MARKER).is_file():
            raise MedmodalError(
                "exists and is not a prediction export written by medmodal; refusing to replace it", path=out
            )
        if not overwrite:
            raise MedmodalError("already exists (pass --overwrite to replace it)", path=out)
    frame = preds.join(cohort.with_columns(pl.col("sample_id").cast(pl.Utf8)), on="sample_id", how="left")
    unmatched = frame.filter(pl.col("prediction_time").is_null())
    if unmatched.height:
        raise MedmodalError(
            f"{unmatched.height} predicted samples are not in the cohort (e.g. sample {unmatched['sample_id'][0]})",
            path=cohort_path,
            field="sample_id",
        )
    subject = frame["subject_id"].cast(pl.Int64, strict=False)
    if subject.null_count():  # MEDS subject ids are int64; eICU's uniquepid is text
        raise MedmodalError("subject ids are not integers; MEDS needs int64 subject ids", path=cohort_path)
    frame = frame.with_columns(subject.alias("subject_id"))

    written: dict[str, Any] = {}
    skipped: list[str] = []
    rules = {"overwrite": overwrite, "inputs": {"the cohort": cohort_dir, "FOLDER": folder}, "allow_inside": [folder]}
    legacy = lambda p: (p / MARKER).is_file()  # noqa: E731  (exports from before output markers)
    with atomic_dir(out, kind="prediction_export", legacy=legacy, **rules) as tmp:
        for lab in man.get("labels") or []:
            name = lab["name"]
            if lab.get("kind", "binary") != "binary":
                skipped.append(name)
                continue
            y, p = f"{name}_label", f"{name}_prob"
            if y not in frame.columns or p not in frame.columns:
                raise MedmodalError("column missing", path=preds_path, field=y if y not in frame.columns else p)
            defined = frame.filter(pl.col(y).is_not_null())
            table = defined.select(
                "split",
                "subject_id",
                pl.col("prediction_time").cast(pl.Datetime("us")),
                (pl.col(y) == 1).alias(meds.LabelSchema.boolean_value_name),
                (pl.col(p) >= THRESHOLD).alias("predicted_boolean_value"),
                pl.col(p).cast(pl.Float32).alias("predicted_boolean_probability"),
            ).sort("subject_id", "prediction_time")
            (tmp / name).mkdir()
            counts = {}
            for split in sorted(table["split"].unique().to_list()):
                meds_split = SPLIT_TO_MEDS.get(split, split)
                part = table.filter(pl.col("split") == split).drop("split")
                pq.write_table(part.to_arrow().cast(PREDICTION_SCHEMA), tmp / name / f"{meds_split}.parquet")
                counts[meds_split] = part.height
            written[name] = {"rows": counts, "undefined_left_out": frame.height - defined.height}
        if not written:
            raise MedmodalError(
                "no binary label to export (meds-evaluation 0.0.6 scores binary classification only)", path=folder
            )
        write_json(
            tmp / MARKER,
            {
                "from": str(folder.resolve()),
                "kind": kind,
                "cohort_dir": str(cohort_dir.resolve()),
                "cohort_id": opened.cohort_id,
                "threshold": THRESHOLD,
                "labels": written,
                "skipped_multiclass": skipped,
                "meds_version": meds.__version__,
                "medmodal_version": medmodal.__version__,
            },
        )
    if skipped:
        console.print(
            f"[yellow]left out[/yellow] multiclass label(s) {', '.join(skipped)} (meds-evaluation: binary only)"
        )
    console.print(f"[green]predictions[/green] for meds-evaluation ({', '.join(written)}) -> {out}")
    return out
