"""A cohort from MEDS labels: ACES output (or any ``meds.LabelSchema`` file) supplies the samples, prediction
times and labels; the builder adds everything else (masks, features, notes, images, splits, audits, manifest).

The label file plays the task SQL's part: ``sql/<source>/tasks/meds_labels.sql`` turns the registered
``meds_labels`` relation (subject_id, prediction_time, label) into ``candidates`` by linking each row to the raw
data, and ``cohort/build.py`` runs as for any task. A source imports labels once it has that one SQL file.

Time rule (docs/ecosystem.md): an imported label says only *when* the prediction is made, so

* ``prediction_time`` is the label's; nothing after it enters any feature, mask or note (grace 0 for every
  modality, notes and images linked by subject and time only -- the audits check it);
* the observation window is ``[prediction_time - window_hours, prediction_time]`` when ``window_hours`` is given,
  else ``[admittime, prediction_time]`` of the linked admission: the latest admission that began at or before the
  prediction time (the one containing it when there is one);
* ``index_time`` is that admission's admittime (demographics are known from then; the structured modality's time
  when the window has no measurement);
* discharge summaries are left out unless asked for: they describe the whole stay, outcome included, and a label
  file gives no guarantee that its prediction time falls after discharge.

Bad rows are errors, not exclusions, each one line with a count and an example: a subject missing from the raw
data, a prediction time outside the subject's record (before the first admission or after the last discharge),
plus the file checks of ``read_meds_labels`` (missing / mistyped / null value column, duplicate rows).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from medmodal.cohort.base import SOURCES, SQL_ROOT, LabelDef, ModalityRule, TaskSpec
from medmodal.cohort.meds import MEDS_VERSION, read_meds_labels, read_meds_splits
from medmodal.cohort.splits import assign_splits
from medmodal.common import MedmodalError, sha256_file

LABELS_SQL = "meds_labels"  # sql/<source>/tasks/meds_labels.sql
LABEL_COLUMN = "meds_label"  # the label column the SQL passes through
# cohort.parquet columns a label name must not shadow
_RESERVED = {"sample_id", "subject_id", "hadm_id", "stay_id", "index_time", "prediction_time", "window_start_time"}
_RESERVED |= {"split", "gender", "race_group", "insurance", "age_group", "age", "admission_type", LABEL_COLUMN}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_DEFAULT_EXCLUDED = ("discharge_note",)


@dataclass
class ImportedLabels:
    """What ``build_cohort`` needs from a MEDS label file: the relation, the checks, the splits, provenance."""

    path: Path
    frame: pl.DataFrame  # subject_id Int64, prediction_time Datetime[us], meds_label Int8 (0/1 or class index)
    value_column: str
    ignored_columns: list[str]
    sha256: str
    splits_path: Path | None = None
    splits: pl.DataFrame | None = None  # subject_key, split (medmodal names)
    splits_sha256: str | None = None
    window_hours: float | None = None
    classes: list[Any] = field(default_factory=list)

    def register(self, con: Any) -> None:
        con.register("meds_labels", self.frame.to_arrow())

    def check(self, con: Any) -> None:
        """After the SQL linked every label row to the raw data: unknown subjects, times outside the record."""
        n, ex = con.execute("SELECT count(*), min(subject_id) FROM candidates WHERE NOT _subject_known").fetchone()
        if n:
            raise MedmodalError(
                f"{n} label rows name a subject not in the raw data's patients table (e.g. subject {ex})",
                path=self.path,
                field="subject_id",
            )
        n, ex_s, ex_t, lo, hi = con.execute(
            """SELECT count(*) OVER (), subject_id, prediction_time, _record_start, _record_end
               FROM candidates WHERE NOT _in_record ORDER BY subject_id, prediction_time LIMIT 1"""
        ).fetchone() or (0, None, None, None, None)
        if n:
            span = f"admissions {lo} to {hi}" if lo is not None else "no admission"
            raise MedmodalError(
                f"{n} label rows have a prediction_time outside the subject's record "
                f"(e.g. subject {ex_s} at {ex_t}; {span})",
                path=self.path,
                field="prediction_time",
            )

    def split_assignment(self, subjects: list[str], seed: int) -> pl.DataFrame:
        """(subject_key, split): the MEDS splits file when given (every subject must be in it), else the seeded
        hash of cohort/splits.py -- the same split a subject gets in every native medmodal cohort."""
        if self.splits is None:
            return assign_splits(subjects, seed)
        wanted = pl.DataFrame({"subject_key": sorted(set(subjects))}, schema={"subject_key": pl.Utf8})
        got = wanted.join(self.splits, on="subject_key", how="left")
        absent = got.filter(pl.col("split").is_null())
        if absent.height:
            raise MedmodalError(
                f"{absent.height} subjects of the labels have no split (e.g. subject {absent['subject_key'][0]})",
                path=self.splits_path,
                field="subject_id",
            )
        return got

    def provenance(self) -> dict[str, Any]:
        return {
            "format": f"MEDS label schema (meds {MEDS_VERSION})",
            "path": str(self.path.resolve()),
            "sha256": self.sha256,
            "rows": self.frame.height,
            "subjects": self.frame["subject_id"].n_unique(),
            "value_column": self.value_column,
            "classes": self.classes,
            "ignored_columns": self.ignored_columns,
            "window": (
                f"[prediction_time - {self.window_hours:g} h, prediction_time]"
                if self.window_hours is not None
                else "[admittime of the linked admission, prediction_time]"
            ),
            "splits": None
            if self.splits_path is None
            else {"path": str(self.splits_path.resolve()), "sha256": self.splits_sha256},
        }


def _label_name(name: str | None, path: Path) -> str:
    if name is None:
        stem = path.name.removesuffix(".parquet") if path.is_file() else path.name
        name = re.sub(r"[^A-Za-z0-9_]", "_", stem)
        name = name if name[:1].isalpha() or name[:1] == "_" else f"label_{name}"
    if not _NAME.fullmatch(name):
        raise MedmodalError(f"'{name}' cannot name a label (letters, digits, '_'; at most 64)", field="--task")
    if name in _RESERVED:
        raise MedmodalError(f"'{name}' is a cohort.parquet column; choose another label name", field="--task")
    return name


def load_labels(
    labels: str | Path,
    *,
    value_column: str | None = None,
    splits: str | Path | None = None,
    window_hours: float | None = None,
) -> ImportedLabels:
    """Read and check a MEDS label file (and splits file) before any raw data is touched."""
    path = Path(labels)
    df, column, ignored = read_meds_labels(path, value_column=value_column)
    if window_hours is not None and not window_hours > 0:
        raise MedmodalError(f"must be a positive number of hours, got {window_hours}", field="--window-hours")
    classes: list[Any] = []
    if column == "boolean_value":
        label = pl.col("value").cast(pl.Int8)
    else:
        classes = sorted(df["value"].unique().to_list())
        if len(classes) < 2:
            raise MedmodalError(f"a multiclass label needs at least two classes, found {classes}", path=path)
        if len(classes) > 127:
            raise MedmodalError(f"{len(classes)} classes; medmodal stores class indices as Int8", path=path)
        label = pl.col("value").replace_strict(classes, list(range(len(classes))), return_dtype=pl.Int8)
    frame = df.select("subject_id", "prediction_time", label.alias(LABEL_COLUMN)).sort("subject_id", "prediction_time")
    digest = sha256_file(path) if path.is_file() else _folder_digest(path)
    out = ImportedLabels(path, frame, column, ignored, digest, window_hours=window_hours, classes=classes)
    if splits is not None:
        out.splits_path = Path(splits)
        out.splits = read_meds_splits(out.splits_path)
        out.splits_sha256 = sha256_file(out.splits_path) if out.splits_path.is_file() else None
    return out


def _folder_digest(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted(path.rglob("*.parquet")):
        h.update(f.relative_to(path).as_posix().encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()


def labels_task(source: str, imported: ImportedLabels, name: str, modalities: list[str] | None) -> TaskSpec:
    """The TaskSpec of an imported label: one label, the generic linking SQL, the uniform time rule."""
    src = SOURCES.get(source)()
    sql = SQL_ROOT / source / "tasks" / f"{LABELS_SQL}.sql"
    if not sql.is_file():
        raise MedmodalError(
            f"source '{source}' cannot build a cohort from MEDS labels yet (no sql/{source}/tasks/{LABELS_SQL}.sql)"
        )
    known = [m.name for m in src.modalities]
    if modalities is None:
        chosen = [m for m in known if m not in _DEFAULT_EXCLUDED]
    else:
        unknown = [m for m in modalities if m not in known]
        if unknown:
            raise MedmodalError(
                f"source '{source}' has no modality '{unknown[0]}' ({', '.join(known)})", field="--modalities"
            )
        chosen = [m for m in known if m in modalities]  # the source's order: the pattern bits
    window = (
        f"[prediction_time - {imported.window_hours:g} h, prediction_time]"
        if imported.window_hours is not None
        else "[admittime of the latest admission starting at or before prediction_time, prediction_time]"
    )
    kind = "binary" if imported.value_column == "boolean_value" else "multiclass"
    return TaskSpec(
        name=name,
        description=f"Samples, prediction times and labels from the MEDS label file {imported.path.name}.",
        sources=(source,),
        sql=LABELS_SQL,
        index_event="a row of the MEDS label file, linked to the latest admission starting at or before its "
        "prediction_time",
        prediction_time="prediction_time of the label row",
        observation_window=window,
        labels=(
            LabelDef(
                name=name,
                column=LABEL_COLUMN,
                kind=kind,
                classes=(0, 1) if kind == "binary" else tuple(imported.classes),
                definition=f"{imported.value_column} of {imported.path.name} (MEDS label file)",
            ),
        ),
        inclusion=(),
        modalities={m: ModalityRule(rule=f"observed in {window} (no grace)") for m in chosen},
        params={
            "window_hours": float(imported.window_hours or 0.0),
            "window_from_admission": imported.window_hours is None,
            # content identity: a relabelled file is another cohort even with the same samples
            "labels_sha256": imported.sha256,
            "splits_sha256": imported.splits_sha256 or "",
        },
    )


def build_from_labels(
    source: str,
    raw: str | Path,
    labels: str | Path,
    out: str | Path,
    *,
    name: str | None = None,
    value_column: str | None = None,
    splits: str | Path | None = None,
    window_hours: float | None = None,
    modalities: list[str] | None = None,
    **build_kwargs: Any,
) -> Path:
    """``medmodal cohort build SOURCE --labels LABELS``: a cohort whose samples and labels are the label file's."""
    from medmodal.cohort.build import build_cohort

    imported = load_labels(labels, value_column=value_column, splits=splits, window_hours=window_hours)
    spec = labels_task(source, imported, _label_name(name, Path(labels)), modalities)
    return build_cohort(source, raw, spec, out, imported=imported, **build_kwargs)
