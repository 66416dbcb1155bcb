"""DuckDB plumbing shared by every source: locate raw files, check headers, register typed views, run SQL files.

Events tables (chartevents: 433M rows in MIMIC-IV 3.1) are only ever scanned by DuckDB; Python sees headers and
small results. The connection is file-backed in a work directory with ``memory_limit``, ``threads`` and a
``temp_directory`` there, so joins and sorts larger than memory spill to disk instead of failing.

Any DuckDB error is turned into one MedmodalError line naming the raw file, the column and the line where
DuckDB says so. DuckDB's own CSV messages quote the offending raw line; that part is never passed on, because
for a notes file it is patient text.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from medmodal.cohort.base import FileSpec
from medmodal.common import MedmodalError

SUFFIXES = (".csv.gz", ".csv")


@dataclass(frozen=True)
class Located:
    spec: FileSpec
    path: Path | None  # None: optional file absent
    header: tuple[str, ...] = ()


def resolve_file(root: Path, stem: str) -> Path | None:
    for suffix in SUFFIXES:
        p = root / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def read_header(path: Path) -> tuple[str, ...]:
    """First line of a .csv / .csv.gz, split on commas (MIMIC headers are plain identifiers)."""
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            line = fh.readline()
    except (gzip.BadGzipFile, OSError, EOFError, zlib.error):
        raise MedmodalError("not a readable gzip file (corrupt or truncated)", path=path) from None
    except UnicodeDecodeError:
        raise MedmodalError("header is not UTF-8 text", path=path) from None
    if not line.strip():
        raise MedmodalError("empty file (no header line)", path=path)
    return tuple(c.strip().strip('"').lstrip("\ufeff") for c in line.rstrip("\r\n").split(","))


def locate(specs: Iterable[FileSpec], roots: Mapping[str, Path]) -> list[Located]:
    """Find every file, check its header has the required columns; absent required files are an error."""
    out = []
    for spec in specs:
        root = roots[spec.module]
        path = resolve_file(root, spec.stem)
        if path is None:
            if spec.optional:
                out.append(Located(spec, None))
                continue
            raise MedmodalError(f"required file missing (expected {spec.stem}.csv.gz or .csv)", path=root)
        header = read_header(path)
        for col in spec.required:
            if col not in header:
                raise MedmodalError("required column missing from the header", path=path, field=col)
        out.append(Located(spec, path, header))
    return out


def default_memory_limit() -> str:
    """Half the machine's RAM: leaves room for the OS page cache that gzip scans lean on."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return "4GB"
    return f"{max(1, int(total / 2**30 * 0.5))}GB"


def connect(work_dir: Path, *, memory_limit: str | None, threads: int | None) -> duckdb.DuckDBPyConnection:
    work_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(work_dir / "work.duckdb"))
    settings = {
        "memory_limit": memory_limit or default_memory_limit(),
        "threads": int(threads or os.cpu_count() or 1),
        "temp_directory": str(work_dir / "spill"),
        # Output order is always given by ORDER BY; not preserving scan order lets big scans stream.
        "preserve_insertion_order": False,
    }
    for key, value in settings.items():
        try:
            con.execute(f"SET {key} = {sql_literal(value)}")
        except duckdb.Error as err:
            con.close()
            raise MedmodalError(f"invalid value {value!r} ({_first_line(err)})", field=key) from None
    return con


def sql_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(sql_literal(v) for v in value) + "]"
    return "'" + str(value).replace("'", "''") + "'"


def _csv_call(path: Path, header: tuple[str, ...], spec: FileSpec) -> str:
    cols = ", ".join(f"{sql_literal(c)}: {sql_literal(spec.columns.get(c, 'VARCHAR'))}" for c in header)
    return (
        f"read_csv({sql_literal(str(path))}, header = true, auto_detect = false, delim = ',', quote = '\"', "
        f"escape = '\"', columns = {{{cols}}})"
    )


def register_views(con: duckdb.DuckDBPyConnection, located: Iterable[Located]) -> None:
    """One view per FileSpec with exactly its listed columns and types (absent optional columns read NULL)."""
    for item in located:
        spec = item.spec
        if item.path is None:
            cols = ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in spec.columns.items())
            con.execute(f"CREATE OR REPLACE VIEW {spec.view} AS SELECT {cols} WHERE false")
            continue
        cols = ", ".join(
            f'"{c}"' if c in item.header else f'CAST(NULL AS {t}) AS "{c}"' for c, t in spec.columns.items()
        )
        con.execute(
            f"CREATE OR REPLACE VIEW {spec.view} AS SELECT {cols} FROM {_csv_call(item.path, item.header, spec)}"
        )


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def render_sql(text: str, params: Mapping[str, Any], *, path: Path) -> str:
    """Replace ``{{ name }}`` with the SQL literal of ``params[name]``; an unknown name is an error."""

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in params:
            raise MedmodalError(f"SQL parameter '{name}' is not defined by the task or source", path=path)
        return sql_literal(params[name])

    return _PLACEHOLDER.sub(sub, text)


def run_sql_file(
    con: duckdb.DuckDBPyConnection, path: Path, params: Mapping[str, Any], located: Iterable[Located]
) -> None:
    sql = render_sql(path.read_text(), params, path=path)
    try:
        con.execute(sql)
    except duckdb.Error as err:
        raise translate_error(err, located, sql_file=path) from None


def run_sql(con: duckdb.DuckDBPyConnection, sql: str, located: Iterable[Located], *, what: str) -> Any:
    try:
        return con.execute(sql)
    except duckdb.Error as err:
        raise translate_error(err, located, sql_file=what) from None


def _first_line(err: BaseException) -> str:
    text = str(err).split("Original Line", 1)[0]
    return text.strip().splitlines()[0] if text.strip() else err.__class__.__name__


def translate_error(err: duckdb.Error, located: Iterable[Located], *, sql_file: Path | str) -> MedmodalError:
    """Name the raw file / column / line DuckDB complains about; never echo the raw line itself."""
    msg = str(err)
    culprit = None
    for item in located:
        if item.path is not None and str(item.path) in msg:
            culprit = item
            break
    col = re.search(r'converting column "([^"]+)"', msg)
    line = re.search(r"CSV Error on Line: (\d+)", msg)
    if culprit is None:
        return MedmodalError(f"DuckDB failed: {_first_line(err)}", path=sql_file)
    field = col.group(1) if col else None
    if "gzip" in msg.lower() or "zlib" in msg.lower():
        what = "truncated or corrupt gzip stream"
    elif col:
        typ = culprit.spec.columns.get(col.group(1), "?")
        what = f"value is not a valid {typ}" + (f" (data line {int(line.group(1)) - 1})" if line else "")
    elif line:
        what = f"malformed CSV row (data line {int(line.group(1)) - 1}): wrong number of fields or bad quoting"
    else:
        what = _first_line(err)
    return MedmodalError(what, path=culprit.path, field=field)
