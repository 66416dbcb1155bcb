"""modalities.parquet from the builder's ``modality_last`` relation (docs/contracts.md §1).

The pattern code itself (bit i = modality i of ``manifest.modalities``) is the contracts' (``pattern_sql``,
``pattern_code``, ``pattern_modalities`` in ``medmodal.contracts``); this module only writes it from SQL.
"""

from __future__ import annotations

from collections.abc import Sequence

from medmodal.contracts import n_observed_sql, pattern_sql


def modalities_sql(modalities: Sequence[str]) -> str:
    """SELECT producing modalities.parquet from ``cohort`` and ``modality_last`` (one row per sample, sorted)."""
    cols = []
    for m in modalities:
        q = m.replace("'", "''")
        cols.append(f"count(ml.modality) FILTER (WHERE ml.modality = '{q}') > 0 AS \"has_{m}\"")
        cols.append(f"max(ml.last_time) FILTER (WHERE ml.modality = '{q}') AS \"{m}_time\"")
    return f"""
        WITH wide AS (
            SELECT c.sample_id, {", ".join(cols)}
            FROM cohort AS c LEFT JOIN modality_last AS ml USING (sample_id)
            GROUP BY c.sample_id
        )
        SELECT *, CAST({pattern_sql(modalities)} AS BIGINT) AS pattern,
               CAST({n_observed_sql(modalities)} AS BIGINT) AS n_observed
        FROM wide ORDER BY sample_id
    """
