"""Raw rows checked where they enter: the rules each source declares with its FileSpecs, for every source alike.

One grouped scan per declared file (grouped by its key, so duplicates cost no second pass) counts every broken
rule and keeps one example key per rule. What a broken rule gets (docs/reliability.md, "Bad input"):

* ``key`` duplicated or null, a ``not_null`` column null, a value outside ``allowed`` / ``ranges`` /
  ``patterns``: the download is corrupt or mis-read (a file appended twice, a shifted column, an age of 999),
  and a researcher expects that to stop the build. One MedmodalError naming file, column and an example key.
* an ``ordered`` (start, end) pair broken (end missing or before start, e.g. ``outtime < intime``): the kind of
  data-quality flaw real releases have. The rows are kept in their views (dropping them would silently change,
  say, which admission is a subject's first); the samples built on them leave at one attrition step
  ``valid_<view>`` per file, counted in attrition.parquet, warned about and listed in the manifest.

Messages carry ids only, never a value from a row: a bad value may be anything, including note text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import duckdb

from medmodal.cohort.runner import Located, query, sql_literal
from medmodal.common import MedmodalError, console

_SAFE_ID = re.compile(r"[A-Za-z0-9 ._:,-]{1,120}")


@dataclass(frozen=True)
class Flagged:
    """Rows of one file that break an ``ordered`` rule; their link keys sit in DuckDB table ``table``."""

    item: Located
    rule: str  # in words, e.g. "dischtime missing or before admittime"
    n_rows: int
    example: str | None
    table: str
    link: tuple[str, ...]  # columns of ``table``: the file's key, plus subject_id when the file has one

    @property
    def step(self) -> str:
        return f"valid_{self.item.spec.view}"


def _q(col: str) -> str:
    return '"' + col.replace('"', '""') + '"'


def _text(col: str) -> str:
    return f"trim(CAST({_q(col)} AS VARCHAR))"


def _example_sql(cols: list[str]) -> str:
    if not cols:
        return "CAST(NULL AS VARCHAR)"
    parts = ", ".join(f"{sql_literal(c + ' ')} || CAST({_q(c)} AS VARCHAR)" for c in cols)
    return f"concat_ws(', ', {parts})"


def _id_columns(item: Located, exclude: str | None = None) -> list[str]:
    """The columns that name a row in an example: the key, then the other *id columns, at most two."""
    spec = item.spec
    cols = [*spec.key, *(c for c in spec.columns if c.lower().endswith("id") and c not in spec.key)]
    return [c for c in dict.fromkeys(cols) if c != exclude][:2]


def _safe(example: str | None) -> str | None:
    # ids are fine to print; anything else that ended up in an id column (a shifted row) is withheld
    if example is None:
        return None
    return example if _SAFE_ID.fullmatch(example) else "an id withheld (not id-like)"


def _ordered_sql(start: str, end: str) -> str:
    s = start if _is_literal(start) else _q(start)
    return f"({s} IS NULL OR {_q(end)} IS NULL OR {_q(end)} < {s})"


def _is_literal(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _rules(item: Located) -> list[tuple[str, str, str]]:
    """(field, condition that marks a broken row, what is wrong in words) for every error rule of the file."""
    spec = item.spec
    out = []
    for c in dict.fromkeys([*spec.key, *spec.not_null]):
        text_null = f" OR {_text(c)} = ''" if spec.columns[c] == "VARCHAR" else ""
        out.append((c, f"({_q(c)} IS NULL{text_null})", "rows without a value"))
    for c, values in spec.allowed.items():
        listed = ", ".join(sql_literal(str(v)) for v in values)
        shown = ", ".join(str(v) for v in values)
        out.append(
            (
                c,
                f"({_q(c)} IS NOT NULL AND {_text(c)} <> '' AND {_text(c)} NOT IN ({listed}))",
                f"rows with a value other than {shown}",
            )
        )
    for c, (lo, hi) in spec.ranges.items():
        out.append(
            (c, f"({_q(c)} IS NOT NULL AND ({_q(c)} < {lo!r} OR {_q(c)} > {hi!r}))", f"rows outside [{lo:g}, {hi:g}]")
        )
    for c, (regex, meaning) in spec.patterns.items():
        bad = f"NOT regexp_full_match({_text(c)}, {sql_literal(regex)})"
        out.append((c, f"({_q(c)} IS NOT NULL AND {_text(c)} <> '' AND {bad})", f"rows that are not {meaning}"))
    return out


def check_file(con: duckdb.DuckDBPyConnection, item: Located) -> Flagged | None:
    """Raise on the first broken error rule of ``item``'s file; return its ``ordered`` breaches, if any."""
    spec = item.spec
    rules = _rules(item)
    ordered = " OR ".join(_ordered_sql(s, e) for s, e in spec.ordered)
    if not rules and not spec.key and not ordered:
        return None
    aggs: list[str] = []  # pairs: how many rows break the rule, and the least example key among them
    for fld, cond, _ in rules:
        example = _example_sql(_id_columns(item, fld))
        aggs += [f"count(*) FILTER (WHERE {cond})", f"min({example}) FILTER (WHERE {cond})"]
    if ordered:
        example = _example_sql(_id_columns(item))
        aggs += [f"count(*) FILTER (WHERE {ordered})", f"min({example}) FILTER (WHERE {ordered})"]
    if spec.key:
        keys = ", ".join(_q(c) for c in spec.key)
        present = " AND ".join(f"{_q(c)} IS NOT NULL" for c in spec.key)
        inner = ", ".join(f"{a} AS a{i}" for i, a in enumerate(aggs))
        outer = ", ".join(
            ("sum" if i % 2 == 0 else "min") + f"(a{i})" for i in range(len(aggs))
        )  # per-key counts add up, per-key examples take the least
        sql = f"""
            WITH g AS (SELECT {keys}, count(*) AS n_rows, {inner} FROM {spec.view} GROUP BY ALL)
            SELECT count(*) FILTER (WHERE n_rows > 1 AND {present}),
                   min({_example_sql(list(spec.key))}) FILTER (WHERE n_rows > 1 AND {present}), {outer}
            FROM g"""
    else:
        sql = f"SELECT 0, NULL, {', '.join(aggs)} FROM {spec.view}"
    row = query(con, sql, item)[0]
    n_dup, dup_example, values = row[0] or 0, row[1], row[2:]
    # null keys first: a NULL key also makes "duplicates" meaningless
    for i, (fld, _, what) in enumerate(rules):
        n, example = int(values[2 * i] or 0), _safe(values[2 * i + 1])
        if fld in spec.key and n:
            raise _error(item, fld, n, what, example)
    if n_dup:
        more = f" ({n_dup} keys in all)" if n_dup > 1 else ""
        raise MedmodalError(
            f"{_safe(dup_example)} appears more than once{more}: the key ({', '.join(spec.key)}) must be unique",
            path=item.path,
            field=spec.key[-1],
        )
    for i, (fld, _, what) in enumerate(rules):
        n, example = int(values[2 * i] or 0), _safe(values[2 * i + 1])
        if n:
            raise _error(item, fld, n, what, example)
    if not ordered:
        return None
    n_bad, example = int(values[-2] or 0), _safe(values[-1])
    if not n_bad:
        return None
    link = tuple(dict.fromkeys([*spec.key, *(["subject_id"] if "subject_id" in spec.columns else [])]))
    table = f"_flagged_{spec.view}"
    cols = ", ".join(_q(c) for c in link) or "1 AS none"
    query(con, f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT DISTINCT {cols} FROM {spec.view} WHERE {ordered}", item)
    rule = "; ".join(f"{e} missing or before {s}" for s, e in spec.ordered)
    return Flagged(item=item, rule=rule, n_rows=n_bad, example=example, table=table, link=link)


def _error(item: Located, fld: str, n: int, what: str, example: str | None) -> MedmodalError:
    what = what.replace("rows that are", "1 row that is", 1) if n == 1 else what
    what = what.replace("rows", "1 row" if n == 1 else f"{n} rows", 1)
    return MedmodalError(what + (f" (e.g. {example})" if example else ""), path=item.path, field=fld)


def check_files(con: duckdb.DuckDBPyConnection, located: Iterable[Located]) -> list[Flagged]:
    """Every present file's declared rules; errors raise, ``ordered`` breaches come back for the attrition."""
    flagged = []
    for item in located:
        if item.path is None:
            continue
        hit = check_file(con, item)
        if hit is not None:
            flagged.append(hit)
    return flagged


def exclusion_condition(con: duckdb.DuckDBPyConnection, flag: Flagged, candidate_columns: list[str]) -> str | None:
    """SQL condition on ``candidates`` keeping the samples not built on ``flag``'s rows (None: no link column).

    A sample is linked by the file's key when the candidates carry it (an admission's hadm_id), else by subject
    (an ICU stay's outtime broken in a readmission cohort, whose samples are admissions): conservative, since
    the task SQL may have used any row of that subject."""
    cols = [c for c in flag.item.spec.key if c in candidate_columns] if flag.item.spec.key else []
    if not cols or len(cols) != len(flag.item.spec.key):
        cols = ["subject_id"] if "subject_id" in flag.link and "subject_id" in candidate_columns else []
    if not cols:
        return None
    on = " AND ".join(f"c.{_q(c)} = f.{_q(c)}" for c in cols)
    samples = f"{flag.table}_samples"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {samples} AS "
        f"SELECT DISTINCT c.sample_id FROM candidates AS c JOIN {flag.table} AS f ON {on}"
    )
    return f"sample_id NOT IN (SELECT sample_id FROM {samples})"


def _step(con: duckdb.DuckDBPyConnection, conds: list[str], rows: list, name: str, description: str, cond: str) -> int:
    """Add ``cond`` to the attrition; its row only when it removed samples. Returns how many it removed."""
    before = rows[-1][3]
    conds.append(cond)
    n_s, n_x = con.execute(
        f"SELECT count(DISTINCT subject_id), count(*) FROM candidates WHERE {' AND '.join(conds)}"
    ).fetchone()
    if n_x < before:
        rows.append((name, description, n_s, n_x))
    return before - n_x


def _warn(where: str, what: str, example: str | None, step: str, excluded: int) -> None:
    effect = f"{excluded} samples excluded at attrition step '{step}'" if excluded else "no sample is built on them"
    more = f" (e.g. {example})" if example else ""
    console.print(f"[yellow]warning[/yellow]: {where}: {what}{more}; {effect}", soft_wrap=True)


TIMES = ("index_time", "prediction_time", "window_start_time")


def apply_exclusions(
    con: duckdb.DuckDBPyConnection,
    flagged: Iterable[Flagged],
    candidate_columns: list[str],
    conds: list[str],
    rows: list[tuple[str, str, int, int]],
) -> list[dict[str, Any]]:
    """The data-quality steps of the attrition, placed before the task's clinical steps: one per flagged file.
    Each appends its condition to ``conds`` and, when it removed samples, its row to ``rows``; each prints one
    warning. Returns the manifest's ``data_quality`` entries."""
    entries = []
    step = partial(_step, con, conds, rows)

    for flag in flagged:
        cond = exclusion_condition(con, flag, candidate_columns)
        excluded = (
            0 if cond is None else step(flag.step, f"excluded: {flag.item.spec.view} rows with {flag.rule}", cond)
        )
        rows_word = "1 row" if flag.n_rows == 1 else f"{flag.n_rows} rows"
        _warn(str(flag.item.path), f"{rows_word} with {flag.rule}", flag.example, flag.step, excluded)
        entries.append(
            {
                "file": str(flag.item.path),
                "rule": flag.rule,
                "rows": flag.n_rows,
                "example": flag.example,
                "step": flag.step if excluded else None,
                "samples_excluded": excluded,
            }
        )
    return entries


def exclude_untimed(
    con: duckdb.DuckDBPyConnection,
    candidate_columns: list[str],
    conds: list[str],
    rows: list[tuple[str, str, int, int]],
) -> dict[str, Any] | None:
    """The last attrition step, ``valid_times``: a sample that survived the task's own steps but cannot be placed
    on the timeline (a raw value no rule covers, an offset the SQL could not place) leaves, counted and warned
    about, instead of carrying a null time downstream. After the task's steps, so that a task that names its own
    (ADNI's ``dated``) keeps them. Returns the manifest's ``data_quality`` entry, or None."""
    known = " AND ".join(f'"{t}" IS NOT NULL' for t in TIMES if t in candidate_columns)
    where = " AND ".join(conds) or "TRUE"
    n_bad, example = con.execute(
        f"SELECT count(*), min(sample_id) FROM candidates WHERE {where} AND NOT ({known})"
    ).fetchone()
    if n_bad:
        rule = f"{', '.join(TIMES)} known"
        excluded = _step(con, conds, rows, "valid_times", rule, known)
        _warn(
            "task SQL", f"{n_bad} samples without {' / '.join(TIMES)}", f"sample_id {example}", "valid_times", excluded
        )
        entry = {"rule": rule, "rows": n_bad, "example": example, "step": "valid_times", "samples_excluded": excluded}
        return {"file": None, **entry}
    return None
