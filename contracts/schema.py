"""What a cohort directory holds: its tables with their columns and types, the split names, the modality kinds and
the item table each kind reads, and the missingness-pattern code (docs/contracts.md §1).

The cohort builder writes these tables (casting to the types below), the fixture writer (``contracts.writer``)
writes them for tests, tiny encoders and toy cohorts, and ``CohortDir`` reads and checks them; all three take the
columns from here. Types are named as DuckDB names them, because the builder writes every table from SQL;
``Table.polars_schema`` gives the polars dtypes the same files read as.

A **modality kind** (structured, timeseries, text, image) says which item table a modality of that kind reads.
A new kind is one :func:`register_modality_kind` call: the builder then writes its table (from the relation
``<table>_out`` a source's SQL leaves behind, or empty when the source has none), the fixture writer writes it
(empty unless given), ``CohortDir.items(kind)`` reads it, and a featurizer registered for the kind embeds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from medmodal.common import MedmodalError

SPLITS = ("train", "val", "test")  # the values of cohort.parquet's `split`, in reporting order

LABEL_KINDS = ("binary", "multiclass")

_POLARS = {
    "VARCHAR": pl.Utf8,
    "BIGINT": pl.Int64,
    "INTEGER": pl.Int32,
    "TINYINT": pl.Int8,
    "DOUBLE": pl.Float64,
    "BOOLEAN": pl.Boolean,
    "TIMESTAMP": pl.Datetime("us"),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str | None  # DuckDB type name; None: any type (cohort.parquet's subject_id is Int64, or Utf8 on eICU)
    required: bool = True  # readers refuse the file without it
    description: str = ""

    def __post_init__(self) -> None:
        if self.type is not None and self.type not in _POLARS:
            raise ValueError(f"column {self.name}: unknown type {self.type} (known: {', '.join(_POLARS)})")

    @property
    def dtype(self) -> pl.DataType | None:
        return None if self.type is None else _POLARS[self.type]


@dataclass(frozen=True)
class Table:
    """One Parquet file of a cohort directory: ``<name>.parquet`` with ``columns`` first, rows in ``order_by``."""

    name: str
    columns: tuple[Column, ...]
    order_by: tuple[str, ...] = ("sample_id",)
    description: str = ""

    @property
    def file(self) -> str:
        return f"{self.name}.parquet"

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def polars_schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.dtype if c.dtype is not None else pl.Utf8 for c in self.columns}

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.polars_schema())

    def select_sql(self, relation: str | None, where: str = "TRUE", order: Sequence[str] = ()) -> str:
        """The SELECT that writes this table from ``relation``: every column cast to its type, the contract's row
        order; ``relation=None`` selects no row (the table of a kind the source's SQL does not produce).
        ``order``: columns of ``relation`` to sort by instead, which its SQL guarantees give the contract's order
        (integer keys ranked like the strings they stand for sort in a fraction of the time)."""

        def cast(c: Column) -> str:
            value = "NULL" if relation is None else f'"{c.name}"'
            return f'CAST({value} AS {c.type}) AS "{c.name}"' if c.type else f'{value} AS "{c.name}"'

        cols = ", ".join(cast(c) for c in self.columns)
        order = ", ".join(f'"{c}"' for c in (order or self.order_by))
        if relation is None:
            return f"SELECT {cols} WHERE FALSE"
        return f'SELECT {cols} FROM "{relation}" WHERE {where} ORDER BY {order}'


def _sample_id() -> Column:
    return Column("sample_id", "VARCHAR", description="the cohort sample the row belongs to")


COHORT = Table(
    "cohort",
    (
        Column("sample_id", "VARCHAR", description="unique, stable across rebuilds; the row order of everything"),
        Column("subject_id", None, required=False, description="Int64, or Utf8 for eICU's uniquepid"),
        Column("index_time", "TIMESTAMP", required=False),
        Column("prediction_time", "TIMESTAMP", required=False),
        Column("split", "VARCHAR", description="one of SPLITS; subject-level"),
    ),
    description="one row per sample: ids, times, one column per label (Int8), split, descriptive extras",
)
ATTRITION = Table(
    "attrition",
    (
        Column("step", "VARCHAR"),
        Column("description", "VARCHAR"),
        Column("n_subjects", "BIGINT"),
        Column("n_samples", "BIGINT"),
    ),
    order_by=(),
    description="one row per attrition step, in the order the steps apply",
)
STRUCTURED = Table(
    "structured",
    (_sample_id(),),
    description="one row per sample; DOUBLE feature columns, which modality owns which: manifest.feature_groups",
)
TIMESERIES = Table(
    "timeseries",
    (_sample_id(), Column("hour", "INTEGER"), Column("variable", "VARCHAR"), Column("value", "DOUBLE")),
    order_by=("sample_id", "hour", "variable"),
    description="hourly means, hour 0 = first hour of the observation window; empty bins are not written",
)
NOTES = Table(
    "notes",
    (
        _sample_id(),
        Column("note_id", "VARCHAR"),
        Column("note_type", "VARCHAR", description="text modality <note_type>_note takes the notes of its type"),
        Column("charttime", "TIMESTAMP"),
        Column("text", "VARCHAR"),
    ),
    order_by=("sample_id", "charttime", "note_id"),
    description="the notes each sample may see under the task's time rule",
)
IMAGES = Table(
    "images",
    (
        _sample_id(),
        Column("dicom_id", "VARCHAR"),
        Column("study_id", "BIGINT"),
        Column("view", "VARCHAR"),
        Column("study_time", "TIMESTAMP"),
        Column("path", "VARCHAR", description="absolute path of the .jpg/.png/.dcm file, inside manifest.image_root"),
    ),
    order_by=("sample_id", "study_time", "dicom_id"),
    description="the images each sample may see under the task's time rule",
)


def modalities_table(modalities: Sequence[str]) -> Table:
    """modalities.parquet: per modality ``has_<m>`` and ``<m>_time`` (null when absent), then the pattern code."""
    cols = [_sample_id()]
    for m in modalities:
        cols += [Column(f"has_{m}", "BOOLEAN"), Column(f"{m}_time", "TIMESTAMP")]
    cols += [Column("pattern", "BIGINT"), Column("n_observed", "BIGINT")]
    return Table("modalities", tuple(cols), description="one row per sample, in cohort row order")


def structured_table(columns: Iterable[str]) -> Table:
    """structured.parquet with the given feature columns (DOUBLE)."""
    return Table(
        "structured", (_sample_id(), *(Column(c, "DOUBLE") for c in columns)), description=STRUCTURED.description
    )


def cohort_column_order(columns: Sequence[str], labels: Sequence[str]) -> list[str]:
    """cohort.parquet's column order: ids and times first, then the labels and ``split``, then descriptive extras."""
    order = [c for c in columns if c not in labels and c != "split"]
    front = [c for c in order if c in ("sample_id", "subject_id") or c.endswith(("_id", "_time"))]
    rest = [c for c in order if c not in front]
    return front + list(labels) + ["split"] + rest


# ---------------------------------------------------------------------------------------------------- kinds
@dataclass(frozen=True)
class ModalityKind:
    """What a modality of this kind reads from the cohort directory.

    ``relation``: the DuckDB relation a source's SQL leaves behind for the builder to write ``table`` from
    (default ``<table>_out``); a source that leaves none gets the empty table. ``wide``: one row per sample whose
    columns the manifest's ``feature_groups`` assign to modalities (the builder pivots them itself).
    """

    name: str
    table: Table
    description: str
    relation: str | None = None
    wide: bool = False

    @property
    def source_relation(self) -> str:
        return self.relation or f"{self.table.name}_out"


MODALITY_KINDS: dict[str, ModalityKind] = {}


def register_modality_kind(kind: ModalityKind) -> ModalityKind:
    """Add a modality kind (the one entry a new kind needs in the contracts); returns it."""
    known = MODALITY_KINDS.get(kind.name)
    if known is not None and known != kind:
        raise ValueError(f"modality kind '{kind.name}' registered twice")
    taken = {k.table.name: k.name for k in MODALITY_KINDS.values() if k.name != kind.name}
    reserved = {COHORT.name, ATTRITION.name, "modalities"}
    if kind.table.name in taken or kind.table.name in reserved:
        raise ValueError(f"modality kind '{kind.name}': table '{kind.table.name}' is already a cohort file")
    MODALITY_KINDS[kind.name] = kind
    return kind


def modality_kind(name: str, **where) -> ModalityKind:
    """The registered kind ``name``; else one line (``where``: the ``path`` / ``field`` to name)."""
    try:
        return MODALITY_KINDS[name]
    except (KeyError, TypeError):
        raise MedmodalError(f"unknown modality kind {name!r} (known: {', '.join(MODALITY_KINDS)})", **where) from None


register_modality_kind(
    ModalityKind("structured", STRUCTURED, "tabular features: one row per sample, Float64 columns", wide=True)
)
register_modality_kind(ModalityKind("timeseries", TIMESERIES, "hourly means of measured variables"))
register_modality_kind(ModalityKind("text", NOTES, "clinical notes, one modality per note type"))
register_modality_kind(ModalityKind("image", IMAGES, "image files (JPG, PNG, DICOM)"))


def item_tables() -> list[Table]:
    """The item table of every registered kind, in registration order."""
    return [k.table for k in MODALITY_KINDS.values()]


def cohort_files() -> tuple[str, ...]:
    """Every Parquet file of a cohort directory, by name (without ``.parquet``)."""
    return (COHORT.name, "modalities", *(t.name for t in item_tables()), ATTRITION.name)


# ---------------------------------------------------------------------------------------------------- pattern
# pattern = Σ_i has_<m_i> · 2^i over manifest.modalities in order, so bit i is modality i: with MIMIC-IV's
# (structured, timeseries, discharge_note, radiology_note, cxr) a sample with structured + cxr has pattern
# 1 + 16 = 17. n_observed is the number of set bits. Every writer and reader of the code goes through these.
def pattern_weights(n_modalities: int) -> list[int]:
    return [1 << i for i in range(n_modalities)]


def pattern_code(has: Sequence[bool]) -> int:
    return sum(w for w, h in zip(pattern_weights(len(has)), has) if h)


def pattern_codes(has: np.ndarray) -> np.ndarray:
    """Int64 [N] codes of a bool [N, M] presence matrix (columns in manifest.modalities order)."""
    has = np.asarray(has, dtype=bool)
    if has.ndim != 2:
        raise ValueError(f"presence must be [N, M], got shape {has.shape}")
    return has.astype(np.int64) @ np.asarray(pattern_weights(has.shape[1]), dtype=np.int64)


def pattern_modalities(pattern: int, modalities: Sequence[str]) -> list[str]:
    """The modality names present in a pattern code (inverse of :func:`pattern_code`)."""
    return [m for w, m in zip(pattern_weights(len(modalities)), modalities) if pattern & w]


def pattern_sql(modalities: Sequence[str]) -> str:
    """SQL expression of the pattern code over the ``has_<m>`` columns of a relation."""
    terms = [f'CAST("has_{m}" AS BIGINT) * {w}' for w, m in zip(pattern_weights(len(modalities)), modalities)]
    return " + ".join(terms) or "0"


def n_observed_sql(modalities: Sequence[str]) -> str:
    """SQL expression of n_observed over the ``has_<m>`` columns of a relation."""
    return " + ".join(f'CAST("has_{m}" AS BIGINT)' for m in modalities) or "0"
