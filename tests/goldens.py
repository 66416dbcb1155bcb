"""Golden outputs kept as readable CSV next to each fixture (tests/data/<fixture>/expected/<task>/<name>.csv)."""

from __future__ import annotations

from pathlib import Path

import polars as pl


def read_expected(path: Path, actual: pl.DataFrame) -> pl.DataFrame:
    """Read an expected CSV as text and cast each column to the dtype of the same column in ``actual``.

    Datetimes are written as ``YYYY-MM-DD HH:MM:SS`` with an optional fraction; booleans as true/false.
    """
    exp = pl.read_csv(path, infer_schema_length=0)
    casts = []
    for col in exp.columns:
        dtype = actual.schema[col]
        if dtype == pl.Datetime("us"):
            casts.append(pl.col(col).str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us"))
        elif dtype == pl.Boolean:
            casts.append(pl.col(col) == "true")
        else:
            casts.append(pl.col(col).cast(dtype))
    return exp.with_columns(casts)
