"""The cheap checks that run before any heavy SQL: headers against the release's column sets, and the variable map
against the release's own dictionaries. ``cohort build`` runs them on every build and records the result in the
manifest (``preflight``); ``cohort validate`` runs them too, plus the full scans (cohort/validate.py).

The variable-map check is what keeps a renumbered or relabelled item from silently feeding a variable: every
row of ``sql/<source>/variable_map.sql`` is looked up by the rules in ``cohort/releases/<source>.yaml``
(MIMIC-IV: the itemid in hosp/d_labitems or icu/d_items with the map's label and unit; eICU: the vital sign a
column of vitalPeriodic / vitalAperiodic, the lab name a value of lab.labname). A missing or relabelled itemid
is a warning naming the itemid, the expected and the found label; its key goes to the SQL parameter
``variable_map_excluded``, and the map then feeds nothing from it (the variable stays a column, unobserved).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from medmodal.cohort.base import Source
from medmodal.cohort.release_data import MapCheck, Release, SourceReleases, TableSpec, load_releases, release_key
from medmodal.cohort.runner import Located, read_header, resolve_file, run_sql_file, sql_literal
from medmodal.common import MedmodalError

# Statuses after which the item feeds nothing: it is not the item the map means in this download.
EXCLUDING = ("missing_item", "label_mismatch", "unit_mismatch")
FULL_SCAN = "needs a full scan"


@dataclass(frozen=True)
class MapFinding:
    source_table: str
    item: str
    variable: str
    status: str  # ok | missing_item | label_mismatch | unit_mismatch | absent_column | absent_value | unchecked
    where: str = ""  # the file checked against, e.g. "hosp/d_labitems"
    expected: str = ""
    found: str = ""
    reason: str = ""  # why a row is unchecked

    @property
    def key(self) -> str:
        return f"{self.source_table}:{self.item}"

    @property
    def excluded(self) -> bool:
        return self.status in EXCLUDING

    def message(self) -> str:
        what = f"{self.source_table} item {self.item} ({self.variable})"
        if self.status == "missing_item":
            text = f"{what}: not in {self.where} (expected '{self.expected}')"
        elif self.status == "label_mismatch":
            text = f"{what}: {self.where} labels it '{self.found}', the map expects '{self.expected}'"
        elif self.status == "unit_mismatch":
            text = f"{what}: {self.where} gives unit '{self.found}', the map expects '{self.expected}'"
        elif self.status == "absent_column":
            text = f"{what}: {self.where} has no column '{self.item}' (the variable reads as unobserved)"
        elif self.status == "absent_value":
            text = f"{what}: '{self.item}' never occurs in {self.where} (the variable reads as unobserved)"
        elif self.status == "unchecked":
            text = f"{what}: not checked ({self.reason})"
        else:
            text = f"{what}: ok"
        return text + (" -- left out" if self.excluded else "")

    def as_dict(self) -> dict[str, str]:
        out = {"source_table": self.source_table, "item": self.item, "variable": self.variable}
        out.update({"status": self.status, "where": self.where, "expected": self.expected, "found": self.found})
        return out


@dataclass(frozen=True)
class HeaderIssue:
    file: str  # "<module>/<stem>"
    path: str
    missing: tuple[str, ...]
    extra: tuple[str, ...]
    confirmed: bool  # False: the release's column set is assumed, not confirmed

    def message(self) -> str:
        parts = []
        if self.missing:
            parts.append("lacks " + ", ".join(self.missing))
        if self.extra:
            parts.append("has extra " + ", ".join(self.extra))
        basis = "the release's columns" if self.confirmed else "the columns assumed for this release"
        return f"{self.file}: header {' and '.join(parts)} (vs {basis})"


@dataclass
class Preflight:
    release: str  # e.g. "MIMIC-IV demo-2.2"; "" when no release data is stored for the download
    headers: list[HeaderIssue] = field(default_factory=list)
    map_findings: list[MapFinding] = field(default_factory=list)

    @property
    def excluded_keys(self) -> list[str]:
        return sorted({f.key for f in self.map_findings if f.excluded})

    def warnings(self) -> list[str]:
        """One line each: header differences, map mismatches, and one line per reason rows went unchecked."""
        lines = [h.message() for h in self.headers]
        lines += [f.message() for f in self.map_findings if f.status not in ("ok", "unchecked")]
        for reason, n in Counter(f.reason for f in self.map_findings if f.status == "unchecked").items():
            if FULL_SCAN not in reason:  # by design, not a property of this download
                lines.append(f"variable map: {n} row(s) not checked ({reason})")
        return lines

    def manifest(self) -> dict[str, Any]:
        unchecked = Counter(f.reason for f in self.map_findings if f.status == "unchecked")
        return {
            "release": self.release,
            "header_issues": [
                {"file": h.file, "missing": list(h.missing), "extra": list(h.extra), "confirmed": h.confirmed}
                for h in self.headers
            ],
            "variable_map": {
                "rows": len(self.map_findings),
                "ok": sum(f.status == "ok" for f in self.map_findings),
                "excluded": self.excluded_keys,
                "findings": [f.as_dict() for f in self.map_findings if f.status not in ("ok", "unchecked")],
                "unchecked": [{"reason": r, "rows": n} for r, n in sorted(unchecked.items())],
            },
        }


def pick_release(rel: SourceReleases | None, module: str, key: str) -> Release | None:
    """The release of the project that provides ``module``: the one named ``key``, else the project's only one
    (MIMIC-IV-Note and MIMIC-CXR-JPG are versioned apart from MIMIC-IV, and medmodal stores one release each)."""
    project = rel.project_of(module) if rel else None
    if project is None:
        return None
    if key in project.releases:
        return project.releases[key]
    return next(iter(project.releases.values())) if len(project.releases) == 1 else None


def header_issue(table: TableSpec | None, path: Path, header: Iterable[str], confirmed: bool) -> HeaderIssue | None:
    if table is None or table.columns is None:
        return None
    header = tuple(header)
    missing = tuple(c for c in table.columns if c not in header)
    extra = tuple(c for c in header if c not in table.columns)
    if not missing and not extra:
        return None
    return HeaderIssue(table.key, str(path), missing, extra, confirmed)


def varchar_scan(path: Path, header: Iterable[str]) -> str:
    """A DuckDB scan of a raw CSV with every column as text: nothing to mis-parse, quoted newlines handled."""
    cols = ", ".join(f"{sql_literal(c)}: 'VARCHAR'" for c in header)
    return (
        f"read_csv({sql_literal(str(path))}, header = true, auto_detect = false, delim = ',', quote = '\"', "
        f"escape = '\"', columns = {{{cols}}})"
    )


def run_preflight(
    con: duckdb.DuckDBPyConnection,
    src: Source,
    located: list[Located],
    roots: Mapping[str, Path],
    raw: Path,
    version: str,
    params: Mapping[str, Any],
) -> Preflight:
    """Headers of the located files against the release's column sets, then the variable-map check."""
    rel = load_releases(src.name)
    key = release_key(version, raw)
    main = pick_release(rel, src.files[0].module, key)
    pre = Preflight(release=f"{rel.projects[main.project].title} {main.version}" if rel and main else "")
    for it in located:
        if it.path is None:
            continue
        release = pick_release(rel, it.spec.module, key)
        if release is None:
            continue
        issue = header_issue(
            release.table(f"{it.spec.module}/{it.spec.stem}"), it.path, it.header, release.schema_confirmed
        )
        if issue is not None:
            pre.headers.append(issue)
    pre.map_findings = check_variable_map(con, src, roots, params, located)
    return pre


def check_variable_map(
    con: duckdb.DuckDBPyConnection,
    src: Source,
    roots: Mapping[str, Path],
    params: Mapping[str, Any],
    located: Iterable[Located],
    *,
    scan_values: bool = False,
) -> list[MapFinding]:
    """One finding per row of the source's variable map (none when the source has no map or no rules)."""
    rel = load_releases(src.name)
    map_sql = src.sql_dir / "variable_map.sql"
    if rel is None or not rel.map_checks or not map_sql.is_file():
        return []
    run_sql_file(con, map_sql, {**params, "variable_map_excluded": []}, list(located))
    cur = con.execute("SELECT * FROM variable_map ORDER BY position")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    lookups: dict[str, Any] = {}
    findings = []
    for row in rows:
        item, table = str(row[rel.map_item]), str(row["source_table"])
        base = {"source_table": table, "item": item, "variable": str(row["variable"])}
        check = rel.map_checks.get(table)
        if check is None:
            findings.append(MapFinding(**base, status="unchecked", reason=f"no rule for source table {table}"))
            continue
        if check.kind == "values" and not scan_values:
            reason = f"{check.file} {FULL_SCAN}; `medmodal cohort validate` checks it"
            findings.append(MapFinding(**base, status="unchecked", where=check.file, reason=reason))
            continue
        if check.file not in lookups:
            lookups[check.file] = _lookup(con, check, roots)
        lookup = lookups[check.file]
        if isinstance(lookup, str):  # the reason the file cannot be used
            findings.append(MapFinding(**base, status="unchecked", where=check.file, reason=lookup))
        else:
            findings.append(_compare(check, base, row, lookup))
    return findings


def _norm(text: Any) -> str:
    return " ".join(str(text).split()).casefold() if text is not None else ""


def _compare(check: MapCheck, base: dict[str, str], row: Mapping[str, Any], lookup: Any) -> MapFinding:
    item = base["item"]
    if check.kind == "header":
        status = "ok" if item in lookup else "absent_column"
        return MapFinding(**base, status=status, where=check.file)
    if check.kind == "values":
        status = "ok" if item in lookup else "absent_value"
        return MapFinding(**base, status=status, where=check.file)
    expected_label = row.get("label")
    if item not in lookup:
        return MapFinding(**base, status="missing_item", where=check.file, expected=str(expected_label or ""))
    label, unit = lookup[item]
    if expected_label is not None and _norm(expected_label) != _norm(label):
        return MapFinding(
            **base, status="label_mismatch", where=check.file, expected=str(expected_label), found=str(label)
        )
    expected_unit = row.get("unit")
    if check.unit and expected_unit is not None and _norm(expected_unit) != _norm(unit):
        return MapFinding(
            **base, status="unit_mismatch", where=check.file, expected=str(expected_unit), found=str(unit or "")
        )
    return MapFinding(**base, status="ok", where=check.file)


def _lookup(con: duckdb.DuckDBPyConnection, check: MapCheck, roots: Mapping[str, Path]) -> Any:
    """What the check compares against: {item: (label, unit)}, a header's column set or a column's values; a
    string instead is the reason the file cannot be used (absent, unreadable)."""
    module, stem = check.file.split("/", 1)
    root = roots.get(module)
    path = resolve_file(Path(root), stem) if root is not None else None
    if path is None:
        return f"{check.file} absent"
    try:
        header = read_header(path)
    except MedmodalError:
        return f"{check.file} unreadable"
    if check.kind == "header":
        return set(header)
    need = [c for c in (check.key, check.label, check.unit, check.column) if c]
    lacking = [c for c in need if c not in header]
    if lacking:
        return f"{check.file} has no column {lacking[0]}"
    scan = varchar_scan(path, header)
    try:
        if check.kind == "values":
            return {r[0] for r in con.execute(f'SELECT DISTINCT "{check.column}" FROM {scan}').fetchall()}
        unit = f'"{check.unit}"' if check.unit else "NULL"
        rows = con.execute(f'SELECT "{check.key}", "{check.label}", {unit} FROM {scan}').fetchall()
    except duckdb.Error:
        return f"{check.file} unreadable"
    return {str(k).strip(): (label, unit) for k, label, unit in rows if k is not None}
