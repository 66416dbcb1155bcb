"""``check_task``: validate a task (a researcher's own YAML, or a registered one) without any raw data.

What a build would refuse, found in a second: the YAML's fields (``load_task``), each named source registered
and having every modality the task allows, the SQL file present and every ``{{ param }}`` it reads defined, and
the SQL itself run - with the source's SQL before and after it - over empty views typed exactly like the raw
files (``runner.register_views`` with no file), so a misspelt column, a missing relation or a ``candidates``
without one of the columns the builder needs (sample_id, the labels, the subgroups, one ``incl_<step>`` per
inclusion step) is one line naming the file, before anyone points it at a 100 GB download.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb

from medmodal.cohort.base import COMMON_SQL, SOURCES, TaskSpec
from medmodal.cohort.build import _check_task, _params
from medmodal.cohort.runner import Located, register_views, run_sql_file
from medmodal.cohort.tasks import load_task
from medmodal.common import MedmodalError


def _needed(spec: TaskSpec, subgroups: tuple[str, ...]) -> list[str]:
    cols = ["sample_id", "subject_id", "index_time", "prediction_time", "window_start_time"]
    return cols + [lab.column for lab in spec.labels] + list(subgroups) + [f"incl_{s.step}" for s in spec.inclusion]


def check_task(task: str | Path | TaskSpec, *, params: Mapping[str, Any] | None = None) -> list[str]:
    """Validate ``task`` (a YAML path or a TaskSpec; ``params`` as ``--param`` would give them) against every
    source it names; return one line per thing checked, or raise MedmodalError (one line, file and field)."""
    spec = task if isinstance(task, TaskSpec) else load_task(task)
    spec = spec.with_params(params, text=True)
    where = spec.path or spec.name
    lines = [f"task {spec.name} ({where}): fields ok; labels {', '.join(lab.name for lab in spec.labels)}"]
    for source in spec.sources:
        if source not in SOURCES.names():
            raise MedmodalError(f"unknown source '{source}' (known: {', '.join(SOURCES.names())})", path=spec.path)
        src = SOURCES.get(source)()
        try:
            _check_task(src, spec)
        except MedmodalError as err:  # name the file the researcher has to edit
            raise MedmodalError(str(err), path=spec.path) from None
        sql = spec.sql_file(source)
        if not sql.is_file():
            raise MedmodalError("SQL file missing", path=sql)
        with tempfile.TemporaryDirectory(prefix="medmodal-check-") as empty:
            roots = src.roots(Path(empty), {})
            version = (src.known_versions or ("0",))[-1]
            values = _params(src, spec, roots, version)
            values["variable_map_excluded"] = []
            con = duckdb.connect()
            try:
                _dry_run(con, src, spec, sql, values)
            finally:
                con.close()
        lines.append(f"source {source}: {sql} runs on empty typed views and gives every column the builder needs")
    return lines


def _dry_run(con: duckdb.DuckDBPyConnection, src: Any, spec: TaskSpec, sql: Path, values: dict[str, Any]) -> None:
    located = [Located(f, None) for f in src.files]
    register_views(con, located)
    for p in [*COMMON_SQL, *(src.sql_dir / f"{s}.sql" for s in (*src.before_task_sql, *src.shared_sql)), sql]:
        run_sql_file(con, p, values, located)
    cols = [r[0] for r in con.execute("DESCRIBE candidates").fetchall()]
    missing = [c for c in _needed(spec, tuple(src.subgroups)) if c not in cols]
    if missing:
        raise MedmodalError(f"task SQL does not produce column '{missing[0]}'", path=sql)
    # the source's post-task SQL reads `cohort` (candidates + split): a task SQL must leave what it needs too
    con.execute("CREATE TABLE cohort AS SELECT *, CAST('train' AS VARCHAR) AS split FROM candidates")
    for s in src.after_task_sql:
        run_sql_file(con, src.sql_dir / f"{s}.sql", values, located)
