"""Modality masks and the missingness-pattern code (docs/contracts.md §1).

pattern = Σ_i has_<m_i> · 2^i over ``manifest.modalities`` in order, so bit i is modality i: with MIMIC-IV's
(structured, timeseries, discharge_note, radiology_note, cxr) a sample with structured + cxr has pattern
1 + 16 = 17. ``n_observed`` is the number of set bits.
"""

from __future__ import annotations

from collections.abc import Sequence


def pattern_code(has: Sequence[bool]) -> int:
    return sum(1 << i for i, h in enumerate(has) if h)


def pattern_modalities(pattern: int, modalities: Sequence[str]) -> list[str]:
    """The modality names present in a pattern code (inverse of ``pattern_code``)."""
    return [m for i, m in enumerate(modalities) if pattern >> i & 1]


def modalities_sql(modalities: Sequence[str]) -> str:
    """SELECT producing modalities.parquet from ``cohort`` and ``modality_last`` (one row per sample, sorted)."""
    cols = []
    for m in modalities:
        q = m.replace("'", "''")
        cols.append(f"count(ml.modality) FILTER (WHERE ml.modality = '{q}') > 0 AS \"has_{m}\"")
        cols.append(f"max(ml.last_time) FILTER (WHERE ml.modality = '{q}') AS \"{m}_time\"")
    has = [f'CAST("has_{m}" AS BIGINT)' for m in modalities]
    pattern = " + ".join(f"{h} * {1 << i}" for i, h in enumerate(has)) or "0"
    observed = " + ".join(has) or "0"
    return f"""
        WITH wide AS (
            SELECT c.sample_id, {", ".join(cols)}
            FROM cohort AS c LEFT JOIN modality_last AS ml USING (sample_id)
            GROUP BY c.sample_id
        )
        SELECT *, CAST({pattern} AS BIGINT) AS pattern, CAST({observed} AS BIGINT) AS n_observed
        FROM wide ORDER BY sample_id
    """
