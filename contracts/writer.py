"""The one writer of hand-made cohort directories: tests, the tiny encoders' fixtures and the toy cohorts.

It takes the tables' columns, the pattern code, the column order and the manifest keys from the contracts, so a
hand-made cohort can only differ from a built one in its content. Tables not given are written empty with the
contract's schema; ``<m>_time`` is the prediction time of every sample that has modality ``m``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from medmodal.common import sha256_file
from medmodal.contracts.cohort_dir import write_cohort_manifest
from medmodal.contracts.identity import compute_cohort_id, sample_ids_digest
from medmodal.contracts.markers import write_marker
from medmodal.contracts.schema import (
    ATTRITION,
    COHORT,
    cohort_column_order,
    item_tables,
    modalities_table,
    pattern_codes,
)

T0 = datetime(2150, 1, 1)  # a shifted, MIMIC-like future date


def write_cohort(
    out_dir: str | Path,
    *,
    sample_ids: Sequence[str],
    splits: Sequence[str],
    modalities: Mapping[str, str],
    has: Mapping[str, Sequence[bool]],
    labels: Mapping[str, Sequence[int | None]] | None = None,
    label_specs: Sequence[Mapping[str, Any]] | None = None,
    columns: Mapping[str, Any] | None = None,
    feature_groups: Mapping[str, list[str]] | None = None,
    subgroups: Sequence[str] = (),
    source: str = "tiny",
    task: str = "tiny_task",
    identity: Mapping[str, Any] | None = None,
    manifest: Mapping[str, Any] | None = None,
    **items: pl.DataFrame | None,
) -> Path:
    """Write a cohort directory that follows docs/contracts.md §1 into ``out_dir`` (created, or written into).

    ``modalities``: modality name -> kind, in ``pattern`` bit order; ``has[m]``: per-sample flags, in the order
    of ``sample_ids`` (rows are written sorted by sample id). ``labels``: label column -> values (default one
    binary ``label`` alternating 0/1), described by ``label_specs`` (default: binary). ``columns``: more
    cohort.parquet columns (default ``subject_id``, ``index_time`` and ``prediction_time`` = index + 48 h).
    ``items``: item tables by name (``notes=``, ``images=``, ``structured=``, ``timeseries=``, ...).
    ``identity``: what the cohort id covers (default: source, task, modalities and the written tables' hashes).
    ``manifest``: more manifest keys.
    """
    unknown = set(items) - {t.name for t in item_tables()}
    if unknown:
        raise ValueError(f"not an item table of a cohort directory: {', '.join(sorted(unknown))}")
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    n = len(sample_ids)
    order = np.argsort(np.asarray(sample_ids, dtype=object), kind="stable") if n else np.zeros(0, dtype=np.int64)

    labels = dict(labels) if labels is not None else {"label": [i % 2 for i in range(n)]}
    cols: dict[str, Any] = {"sample_id": list(sample_ids), **dict(columns or {})}
    cols.update({name: pl.Series(list(values), dtype=pl.Int8) for name, values in labels.items()})
    cols["split"] = list(splits)
    frame = pl.DataFrame(cols)[order]
    if columns is None:  # numbered in row order, like a built cohort's ids
        frame = frame.with_columns(
            subject_id=pl.Series(np.arange(n, dtype=np.int64) + 10_000),
            index_time=pl.Series([T0] * n, dtype=pl.Datetime("us")),
            prediction_time=pl.Series([T0 + timedelta(hours=48)] * n, dtype=pl.Datetime("us")),
        )
    frame = frame.select(cohort_column_order(frame.columns, list(labels)))
    frame.write_parquet(d / COHORT.file)

    pred = frame["prediction_time"] if "prediction_time" in frame.columns else pl.Series([None] * n)
    present = np.stack([np.asarray(has[m], dtype=bool)[order] for m in modalities], 1) if modalities else None
    mods: dict[str, Any] = {"sample_id": frame["sample_id"]}
    for i, m in enumerate(modalities):
        flags = present[:, i]
        mods[f"has_{m}"] = flags
        mods[f"{m}_time"] = pl.Series([p if f else None for p, f in zip(pred, flags)], dtype=pl.Datetime("us"))
    mods["pattern"] = pattern_codes(present) if present is not None else np.zeros(n, np.int64)
    mods["n_observed"] = present.sum(1).astype(np.int64) if present is not None else np.zeros(n, np.int64)
    mod_table = modalities_table(list(modalities))
    pl.DataFrame(mods).write_parquet(d / mod_table.file)

    for table in item_tables():
        given = items.get(table.name)
        if given is not None and (missing := [c for c in table.required if c not in given.columns]):
            raise ValueError(f"{table.file}: contract columns {missing} missing")
        (given if given is not None else table.empty()).write_parquet(d / table.file)
    ATTRITION.empty().write_parquet(d / ATTRITION.file)

    if identity is None:  # hand-written content: the identity hashes the written tables themselves
        hashed = [COHORT.file, mod_table.file, *(t.file for t in item_tables())]
        identity = {
            "source": source,
            "task": task,
            "modalities": dict(modalities),
            "sample_ids_sha256": sample_ids_digest(frame["sample_id"].to_list()),
            "tables_sha256": {name[: -len(".parquet")]: sha256_file(d / name) for name in hashed},
        }
    specs = (
        label_specs if label_specs is not None else [{"name": k, "kind": "binary", "classes": [0, 1]} for k in labels]
    )
    write_cohort_manifest(
        d,
        {
            "source": source,
            "task": task,
            "cohort_identity": dict(identity),
            "cohort_id": compute_cohort_id(dict(identity)),
            "modalities": list(modalities),
            "modality_kinds": dict(modalities),
            "feature_groups": dict(feature_groups) if feature_groups is not None else {},
            "labels": [dict(s) for s in specs],
            "subgroups": list(subgroups),
            "split_seed": 0,
            "row_counts": {"cohort": n},
            "created_at": T0.isoformat(),
            **(manifest or {}),
        },
    )
    write_marker(d, "cohort")
    return d
