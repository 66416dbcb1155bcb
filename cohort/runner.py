"""DuckDB plumbing shared by every source: locate raw files, check headers, register typed views, run SQL files.

Events tables (chartevents: 433M rows in MIMIC-IV 3.1) are only ever scanned by DuckDB; Python sees headers and
small results. The connection is an in-memory database with ``memory_limit``, ``threads`` and a
``temp_directory`` in a work directory, so tables, joins and sorts larger than the limit spill there instead of
failing (an in-memory database's tables spill like a file-backed one's; not writing and checkpointing a database
file saved ~10 % of a build's CPU, docs/performance.md).

Any DuckDB error is turned into one MedmodalError line naming the raw file, the column and the line where
DuckDB says so. DuckDB's own CSV messages quote the offending raw line; that part is never passed on, because
for a notes file it is patient text.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from medmodal.cohort.base import FileSpec
from medmodal.common import MedmodalError
from medmodal.contracts import MODALITY_KINDS

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
    """First line of a .csv / .csv.gz, split on commas (MIMIC headers are plain identifiers).

    Read as bytes and decoded on its own: a text-mode read decodes a whole buffer, so a bad byte in a data row
    close to the top would be misreported as a bad header.
    """
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as fh:
            raw = fh.readline(1 << 20)
    except (gzip.BadGzipFile, OSError, EOFError, zlib.error):
        raise MedmodalError("not a readable gzip file (corrupt or truncated)", path=path) from None
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MedmodalError("header line is not UTF-8 text", path=path) from None
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


DEFAULT_MEMORY_LIMIT_GB = 3  # peak RSS of a build is the limit + ~0.3 GB: a 16 GB laptop keeps 12 GB free


def default_memory_limit() -> str:
    """3 GB, or half the machine's RAM when that is less: a build's peak memory then does not grow with the data
    (DuckDB spills joins, sorts and aggregates past the limit to the work folder), stays safe on a 16 GB laptop
    or a capped node, and leaves the OS page cache room for the gzip scans. Measured in docs/performance.md:
    a larger limit saves little time, because the scans, not the spills, bound a build."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return f"{DEFAULT_MEMORY_LIMIT_GB}GB"
    half_mb = int(total / 2**20 * 0.5)
    return f"{min(DEFAULT_MEMORY_LIMIT_GB * 1024, max(256, half_mb))}MB"


def connect(work_dir: Path, *, memory_limit: str | None, threads: int | None) -> duckdb.DuckDBPyConnection:
    work_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()  # in memory; spills to temp_directory below
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
        raise translate_error(err, located, sql_file=path, con=con, sql=sql) from None


class SharedRelations:
    """Relations that do not depend on the task (``Source.shared_sql``: views over the raw events tables),
    materialised once per ``cohort build --task all`` so that every task reads one Parquet extract instead of
    re-parsing the csv.gz files.

    ``folder`` lives in the build's work directory (created and removed by the build). A relation is reused when
    the rendered SQL of it and of everything run before it is the same (same raw files within one build), so a
    task whose parameters change the extract computes its own.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.done: dict[str, Path] = {}
        self.outputs: list[tuple[str, Path, Path, Any]] = []  # (post-task key, cohort snapshot, task folder, extra)
        self.files_clean = False  # the raw files passed rules.check_files with nothing flagged

    # Tasks that differ only in their labels (readmission_15d / _30d / mortality_90d: the same first admissions)
    # have the same post-task outputs, so --task all computes those once per distinct cohort. Label columns are
    # left out of the comparison: no post-task relation may read a label (that would leak it into the inputs).
    def _snapshot_sql(self, con: duckdb.DuckDBPyConnection, labels: Iterable[str]) -> str:
        drop = set(labels)
        cols = [r[0] for r in con.execute("DESCRIBE cohort").fetchall() if r[0] not in drop]
        return "SELECT " + ", ".join(f'"{c}"' for c in cols) + " FROM cohort"

    def find_outputs(self, con: duckdb.DuckDBPyConnection, labels: Iterable[str], key: str) -> tuple[Path, Any] | None:
        """The folder (and extra) of an earlier task whose cohort, labels aside, equals this one row for row and
        whose post-task SQL (``key``: rendered text and modalities) is the same; None if there is none."""
        mine = self._snapshot_sql(con, labels)
        for k, snapshot, where, extra in self.outputs:
            if k != key:
                continue
            theirs = f"SELECT * FROM read_parquet({sql_literal(str(snapshot))})"
            try:
                differ = con.execute(
                    f"SELECT (SELECT count(*) FROM ({mine} EXCEPT ALL {theirs})) "
                    f"+ (SELECT count(*) FROM ({theirs} EXCEPT ALL {mine}))"
                ).fetchone()[0]
            except duckdb.Error:  # other columns or types: not the same cohort
                continue
            if differ == 0:
                return where, extra
        return None

    @staticmethod
    def copy_outputs(earlier: tuple[Path, Any], tmp: Path) -> Any:
        """Copy the files other than cohort and attrition from the earlier task's folder; return its extra."""
        where, extra = earlier
        for name in ("modalities.parquet", *(kind.table.file for kind in MODALITY_KINDS.values())):
            shutil.copyfile(where / name, tmp / name)
        return extra

    def remember_outputs(
        self, con: duckdb.DuckDBPyConnection, labels: Iterable[str], key: str, where: Path, extra: Any
    ) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        snapshot = self.folder / f"cohort-{len(self.outputs)}.parquet"
        con.execute(f"COPY ({self._snapshot_sql(con, labels)}) TO {sql_literal(str(snapshot))} (FORMAT parquet)")
        self.outputs.append((key, snapshot, where, extra))

    def run(
        self,
        con: duckdb.DuckDBPyConnection,
        path: Path,
        params: Mapping[str, Any],
        located: Iterable[Located],
        before: str,
    ) -> None:
        """Create relation ``path.stem``: a view over its extract, written now unless an earlier task did."""
        sql = render_sql(path.read_text(), params, path=path)
        key = hashlib.sha256(f"{before}\0{sql}".encode()).hexdigest()[:16]
        target = self.done.get(key)
        if target is None:
            try:
                con.execute(sql)
                self.folder.mkdir(parents=True, exist_ok=True)
                target = self.folder / f"{path.stem}-{key}.parquet"
                con.execute(f"COPY (SELECT * FROM {path.stem}) TO {sql_literal(str(target))} (FORMAT parquet)")
            except duckdb.Error as err:
                raise translate_error(err, located, sql_file=path, con=con, sql=sql) from None
            self.done[key] = target
        con.execute(f"CREATE OR REPLACE VIEW {path.stem} AS SELECT * FROM read_parquet({sql_literal(str(target))})")


def run_sql(con: duckdb.DuckDBPyConnection, sql: str, located: Iterable[Located], *, what: str) -> Any:
    try:
        return con.execute(sql)
    except duckdb.Error as err:
        raise translate_error(err, located, sql_file=what, con=con, sql=sql) from None


def query(con: duckdb.DuckDBPyConnection, sql: str, item: Located) -> list[tuple]:
    """Run a query that reads one raw file's view (value checks, release detection); errors name that file."""
    try:
        return con.execute(sql).fetchall()
    except duckdb.Error as err:
        raise translate_error(err, [item], sql_file=item.path or item.spec.view, culprit=item) from None


def _first_line(err: BaseException) -> str:
    text = str(err).split("Original Line", 1)[0]
    return text.strip().splitlines()[0] if text.strip() else err.__class__.__name__


# DuckDB quotes values it could not use ('Could not convert string "..."'); only identifiers may pass through.
_QUOTED = re.compile(r"""(["'])(.*?)\1""")


def scrub(text: str, identifiers: Iterable[str] = ()) -> str:
    """``text`` with every quoted token that is not a known identifier replaced by ``<value>``."""
    keep = set(identifiers)
    return _QUOTED.sub(lambda m: m.group(0) if m.group(2) in keep else "<value>", text)


def _identifiers(located: Iterable[Located]) -> set[str]:
    out: set[str] = set()
    for item in located:
        out.update(item.spec.columns)
        out.update(item.header)
        out.add(item.spec.view)
    return out


_RAW_READ_ERROR = re.compile(r"CSV Error|GZIP|gzip|zlib|Invalid unicode|not utf-8|Could not convert", re.IGNORECASE)


def _probe(con: duckdb.DuckDBPyConnection, located: list[Located], sql: str | None) -> tuple[Located, str] | None:
    """Find the raw file behind a read error whose message names none (a gzip stream with trailing bytes says only
    "Input is not a GZIP stream"): read every column of each file the failing SQL mentions, smallest first.
    Runs only after a failure, so a clean build never pays for it."""
    mentioned = [
        it
        for it in located
        if it.path is not None and (sql is None or re.search(rf"\b{re.escape(it.spec.view)}\b", sql, re.IGNORECASE))
    ]
    for item in sorted(mentioned, key=lambda it: it.path.stat().st_size):
        counts = ", ".join(f'count("{c}")' for c in item.header) or "count(*)"
        try:
            con.execute(f"SELECT {counts} FROM {_csv_call(item.path, item.header, item.spec)}").fetchall()
        except duckdb.Error as err:
            return item, str(err)
    return None


def _utf8_field(item: Located, max_records: int = 5_000_000) -> tuple[int, str] | None:
    """(data line, column) of the first field that is not UTF-8, read with Python's csv module (same quoting
    rules as the view). Error path only; gives up after ``max_records`` rows."""
    import csv
    import io

    opener = gzip.open if item.path.name.endswith(".gz") else open
    try:
        with opener(item.path, "rb") as fh:
            text = io.TextIOWrapper(fh, encoding="utf-8", errors="surrogateescape", newline="")
            for n, record in enumerate(csv.reader(text)):
                if n > max_records:
                    return None
                for i, value in enumerate(record):
                    if any("\udc80" <= ch <= "\udcff" for ch in value):
                        return n, item.header[i] if i < len(item.header) else f"#{i + 1}"
    except (OSError, EOFError, zlib.error, csv.Error):
        return None
    return None


def translate_error(
    err: duckdb.Error,
    located: Iterable[Located],
    *,
    sql_file: Path | str,
    culprit: Located | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
    sql: str | None = None,
) -> MedmodalError:
    """Name the raw file / column / line DuckDB complains about; never echo the raw line or a value from it."""
    located = list(located)
    msg = str(err)
    if culprit is None:
        culprit = next((it for it in located if it.path is not None and str(it.path) in msg), None)
    if culprit is None and con is not None and _RAW_READ_ERROR.search(msg):
        found = _probe(con, located, sql)
        if found is not None:
            culprit, msg = found
    if culprit is None or culprit.path is None:
        return MedmodalError(f"DuckDB failed: {scrub(_first_line(err), _identifiers(located))}", path=sql_file)
    col = re.search(r'converting column "([^"]+)"', msg)
    line = re.search(r"CSV Error on Line: (\d+)", msg)
    at = f" (data line {int(line.group(1)) - 1})" if line else ""
    field = col.group(1) if col else None
    wrong = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", msg)
    if "gzip" in msg.lower() or "zlib" in msg.lower():
        what = "truncated or corrupt gzip stream (or bytes after its end)"
    elif "invalid unicode" in msg.lower() or "not utf-8" in msg.lower():
        where = _utf8_field(culprit)
        if where is not None:
            at, field = f" (data line {where[0]})", where[1]
        what = "not UTF-8 text" + at
    elif col:
        typ = culprit.spec.columns.get(col.group(1), "?")
        what = f"value is not a valid {typ}" + at
    elif wrong:
        what = f"malformed CSV row{at}: {wrong.group(2)} fields where the header has {wrong.group(1)}"
    elif "unterminated quote" in msg.lower():
        what = f"malformed CSV row{at}: a quoted value is never closed"
    elif line:
        what = f"malformed CSV row{at}: wrong number of fields or bad quoting"
    else:
        what = scrub(_first_line(err).replace(str(culprit.path), "<file>"), _identifiers(located))
    return MedmodalError(what, path=culprit.path, field=field)
