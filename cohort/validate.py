"""``validate_raw``: check a download against the release it claims to be, before a build spends hours on it.

For every table of the detected release (``cohort/releases/<source>.yaml``): the file is there, its gzip stream
reads to the end, its header is the release's column set and its row count is the published one; files the
release does not have are flagged; the variable map is checked against the release's dictionaries (and, for
eICU, lab names against the lab table); ``checksums=True`` verifies PhysioNet's ``SHA256SUMS.txt``.

A problem is an *error* (the command exits non-zero) only where it makes a table a task needs wrong: a file a
source reads (its ``FileSpec``s, and the dictionaries the variable-map check uses) that is missing, truncated,
differs from a confirmed count or column set, or fails its checksum. Everything else is a warning or a note:
tables medmodal never reads, counts or column sets medmodal could not confirm (the YAML says which), extra files,
variable-map mismatches (the build leaves such an item out rather than failing).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from rich.console import Group
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from medmodal.cohort.base import SOURCES, Source
from medmodal.cohort.preflight import MapFinding, check_variable_map, header_issue, pick_release, varchar_scan
from medmodal.cohort.release_data import Project, Release, SourceReleases, TableSpec, load_releases, release_key
from medmodal.cohort.runner import SUFFIXES, Located, read_header, register_views, resolve_file
from medmodal.common import MedmodalError, console

IGNORED_NAMES = {"index.html", "robots.txt"}  # what `wget -r` leaves beside PhysioNet's files
SIM_FILES = ("simulation.json", "truth.parquet")  # a medmodal simulated world (published counts do not apply)
SEVERITIES = ("error", "warning", "note")
SHA_CHUNK = 1 << 20


@dataclass
class TableResult:
    project: str
    file: str  # path relative to the project root, as SHA256SUMS.txt spells it
    key: str
    needed: bool  # read by the source (or by the variable-map check): a problem here is an error
    path: Path | None = None
    rows: int | None = None
    published: int | None = None
    confirmed: bool = False
    checksum: str = ""  # "", "ok", "mismatch", "known variant"
    problems: list[tuple[str, str]] = field(default_factory=list)  # (severity, text)

    def add(self, severity: str, text: str) -> None:
        self.problems.append((severity, text))

    @property
    def severity(self) -> str:
        found = {s for s, _ in self.problems}
        return next((s for s in SEVERITIES if s in found), "ok")


@dataclass
class ValidationReport:
    source: str
    raw: Path
    version: str
    evidence: str
    release: str  # key of the release checked, e.g. "demo-2.2"
    simulated: bool
    tables: list[TableResult] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)  # (severity, text) not tied to one table
    map_findings: list[MapFinding] = field(default_factory=list)
    scanned: set[Path] = field(default_factory=set, repr=False)  # download folders already searched for extras

    @property
    def errors(self) -> list[str]:
        out = [f"{t.file}: {text}" for t in self.tables for s, text in t.problems if s == "error"]
        return out + [text for s, text in self.messages if s == "error"]

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def table(self, file: str) -> TableResult:
        return next(t for t in self.tables if t.file == file)


def validate_raw(
    source: str,
    raw: str | Path,
    *,
    roots: Mapping[str, str | Path | None] | None = None,
    checksums: bool = False,
    dataset_version: str | None = None,
    threads: int | None = None,
) -> ValidationReport:
    """Check ``raw`` (and the optional module roots) against the release it is; never writes anything."""
    src = SOURCES.get(source)()
    raw = Path(raw)
    if not raw.is_dir():
        raise MedmodalError("raw data folder not found", path=raw)
    roots = src.resolve_roots(raw, roots)
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        located, unreadable = _locate_leniently(src, roots)
        register_views(con, located)
        if dataset_version:
            version, evidence = dataset_version, "given by the user"
        else:
            try:
                version, evidence = src.detect_version(con, raw)
            except duckdb.Error as err:  # e.g. the table it reads is truncated: report that, per table, below
                version, evidence = "unknown", f"not detected: {_duck_line(err)}"
        simulated = all((raw / name).is_file() for name in SIM_FILES)
        rel = load_releases(src.name)
        key = release_key(version, raw)
        report = ValidationReport(src.name, raw, version, evidence, key, simulated)
        if simulated:
            report.messages.append(("note", "a medmodal simulated world: published row counts do not apply"))
        if rel is None:
            report.messages.append(("note", f"no published release data is stored for {src.name}"))
        needed = _needed_keys(src, rel, roots)
        for project, modules in _projects(src, rel):
            release = pick_release(rel, modules[0], key) if rel else None
            _check_project(con, report, src, project, release, modules, roots, needed, unreadable, checksums)
        params = {"dataset_version": version, **src.extra_params(roots, version)}
        report.map_findings = check_variable_map(con, src, roots, params, located, scan_values=True)
        return report
    finally:
        con.close()


def _locate_leniently(src: Source, roots: dict[str, Path]) -> tuple[list[Located], dict[str, str]]:
    """Like runner.locate, but a missing or unreadable file is recorded instead of raised (it becomes an empty
    view, so the release can still be detected from the rest)."""
    located, unreadable = [], {}
    for spec in src.files:
        path = resolve_file(roots[spec.module], spec.stem)
        header: tuple[str, ...] = ()
        if path is not None:
            try:
                header = read_header(path)
            except MedmodalError as err:
                unreadable[f"{spec.module}/{spec.stem}"] = str(err).removeprefix(f"{path}: ")
                path = None
        located.append(Located(spec, path, header))
    return located, unreadable


def _needed_keys(src: Source, rel: SourceReleases | None, roots: dict[str, Path]) -> dict[str, str]:
    """key -> why the tasks need it: required FileSpecs always; optional ones when present (a task that allows
    their modality reads them); the dictionaries of the variable-map check."""
    out = {}
    for spec in src.files:
        key = f"{spec.module}/{spec.stem}"
        if not spec.optional:
            out[key] = "required"
        elif resolve_file(roots[spec.module], spec.stem) is not None:
            out[key] = "optional"
    for check in rel.map_checks.values() if rel else ():
        if check.kind == "dictionary":
            out[check.file] = "dictionary"
    return out


def _projects(src: Source, rel: SourceReleases | None) -> list[tuple[Project | None, tuple[str, ...]]]:
    if rel is not None:
        return [(p, p.modules) for p in rel.projects.values()]
    return [(None, tuple(dict.fromkeys(s.module for s in src.files)))]


def _check_project(
    con: duckdb.DuckDBPyConnection,
    report: ValidationReport,
    src: Source,
    project: Project | None,
    release: Release | None,
    modules: tuple[str, ...],
    roots: dict[str, Path],
    needed: dict[str, str],
    unreadable: dict[str, str],
    checksums: bool,
) -> None:
    title = project.title if project else src.name
    module_roots = {m: Path(roots[m]) for m in modules}
    project_root = project.project_root(module_roots[modules[0]]) if project else Path(roots[modules[0]])
    required = any(not s.optional for s in src.files if s.module in modules)
    if not required and not any(r.is_dir() for r in module_roots.values()):
        report.messages.append(("note", f"{title}: not found at {module_roots[modules[0]]} (optional)"))
        return
    if project is not None and release is None:
        report.messages.append(
            ("warning", f"{title}: no published counts stored for release '{report.release}'; files checked only")
        )
    elif release is not None:
        report.messages.append(("note", f"{title}: checked against {release.title}"))
        if release.warning:
            report.messages.append(("warning", f"{title} {release.version}: {release.warning}"))
    tables = list(release.tables) if release else []
    known = {t.key.lower() for t in tables}
    for spec in src.files:  # the FileSpecs medmodal reads, also where no release data covers them
        key = f"{spec.module}/{spec.stem}"
        if spec.module in modules and key.lower() not in known:
            tables.append(TableSpec(key, None, False))
    with _progress() as progress:
        bar = progress.add_task(f"counting {title} rows", total=len(tables))
        for table in tables:
            _check_table(con, report, project, release, table, module_roots, project_root, needed, unreadable)
            progress.advance(bar)
    _extra_files(report, project, tables, module_roots, project_root)
    if checksums:
        verify_checksums(report, title, release, project_root, module_roots)


def _display(path: Path, project_root: Path) -> str:
    try:
        return str(path.relative_to(project_root))
    except ValueError:
        return str(path)


def _check_table(
    con: duckdb.DuckDBPyConnection,
    report: ValidationReport,
    project: Project | None,
    release: Release | None,
    table: TableSpec,
    module_roots: dict[str, Path],
    project_root: Path,
    needed: dict[str, str],
    unreadable: dict[str, str],
) -> None:
    root = module_roots[table.module]
    path = resolve_file(root, table.stem)
    why = needed.get(table.key)
    res = TableResult(
        project=project.name if project else report.source,
        file=_display(path if path else root / f"{table.stem}.csv.gz", project_root),
        key=table.key,
        needed=why is not None,
        path=path,
        published=None if report.simulated else table.rows,
        confirmed=table.confirmed,
    )
    report.tables.append(res)
    bad = "error" if res.needed else "warning"
    if path is None:
        if why == "required":
            res.add("error", "missing (every task reads it)")
        elif why == "dictionary":
            res.add("error", "missing (the variable-map check reads it)")
        elif any(f"{s.module}/{s.stem}" == table.key for s in _source_files(report.source)):
            res.needed = True  # read when present: its modality is marked missing without it
            res.add("note", "absent (optional: its modality is marked missing)")
        else:
            res.add("note" if report.simulated else "warning", "missing (not read by medmodal)")
        return
    if table.key in unreadable:
        res.add(bad, unreadable[table.key])
        return
    try:
        header = read_header(path)
    except MedmodalError as err:
        res.add(bad, str(err).removeprefix(f"{path}: "))
        return
    spec = next((s for s in _source_files(report.source) if f"{s.module}/{s.stem}" == table.key), None)
    lacking = [c for c in (spec.required if spec else ()) if c not in header]
    if lacking:  # `cohort build` would stop here, whatever the release
        res.add("error", f"lacks column {', '.join(lacking)}, which medmodal reads")
    confirmed_schema = bool(release and release.schema_confirmed)
    issue = header_issue(table, path, header, confirmed_schema)
    if issue is not None:
        res.add(bad if confirmed_schema else "warning", issue.message().split(": ", 1)[1])
    try:
        res.rows = int(con.execute(f"SELECT count(*) FROM {varchar_scan(path, header)}").fetchone()[0])
    except duckdb.Error as err:
        res.add(bad, _count_error(err))
        return
    if report.simulated or table.rows is None:
        if table.rows is None and not report.simulated and table.note:
            res.add("note", table.note)
        return
    if res.rows == table.rows:
        return
    variant = release.known_variants.get(table.key) if release else None
    if variant is not None and res.rows == variant.rows and sha256_file(path) == variant.sha256:
        res.add("note", f"known variant: {variant.note}")
        return
    diff = res.rows - table.rows
    text = f"{res.rows:,} rows, the release has {table.rows:,} ({diff:+,})"
    if not table.confirmed:
        res.add("warning", f"{text}; that count is not confirmed ({table.note or 'see the release data'})")
    else:
        res.add(bad, text + ("; truncated?" if diff < 0 else ""))


def _duck_line(err: duckdb.Error) -> str:
    """DuckDB's first line, without the raw line its CSV errors quote (for a notes file that is patient text)."""
    text = str(err).split("Original Line", 1)[0].strip()
    return text.splitlines()[0] if text else err.__class__.__name__


def _source_files(source: str):
    return SOURCES.get(source).files


def _count_error(err: duckdb.Error) -> str:
    msg = str(err)
    if "gzip" in msg.lower() or "zlib" in msg.lower():
        return "truncated or corrupt gzip stream (the file ends before its data does)"
    line = re.search(r"CSV Error on Line: (\d+)", msg)
    if line:
        return f"malformed CSV row (data line {int(line.group(1)) - 1}): wrong number of fields or bad quoting"
    return f"unreadable ({_duck_line(err)})"


def _extra_files(
    report: ValidationReport,
    project: Project | None,
    tables: list[TableSpec],
    module_roots: dict[str, Path],
    project_root: Path,
) -> None:
    """Files and folders the release does not have (a stray copy, a partial download, another release's file)."""
    allowed = set(IGNORED_NAMES) | set(SIM_FILES if report.simulated else ())
    if project is not None:
        allowed |= set(project.other_files) | set(project.other_dirs)
    dirs = dict(module_roots)
    for module, root in dirs.items():
        if not root.is_dir():
            continue
        stems = {t.stem for t in tables if t.module == module}
        for entry in sorted(root.iterdir()):
            if entry.name.startswith(".") or entry.name in allowed:
                continue
            stem = next((entry.name[: -len(s)] for s in SUFFIXES if entry.name.endswith(s)), None)
            if entry.is_file() and stem in stems:
                if entry.name.endswith(".csv") and (root / f"{stem}.csv.gz").is_file():
                    report.messages.append(
                        ("warning", f"{_display(entry, project_root)}: both .csv and .csv.gz; medmodal reads .csv.gz")
                    )
                continue
            kind = "folder" if entry.is_dir() else "file"
            report.messages.append(("warning", f"{_display(entry, project_root)}: extra {kind}, not in the release"))
    if project is not None and project.root == "parent" and project_root.is_dir():
        # The download folder may be shared by several projects (medmodal's default layout puts note/ and cxr/
        # under the MIMIC-IV folder): scan it once, allowing what any of the source's projects puts there.
        if project_root.resolve() in report.scanned:
            return
        report.scanned.add(project_root.resolve())
        rel = load_releases(report.source)
        for p in rel.projects.values() if rel else ():
            allowed |= set(p.other_files) | set(p.other_dirs) | set(p.modules)
        for entry in sorted(project_root.iterdir()):
            if entry.name.startswith(".") or entry.name in allowed:
                continue
            kind = "folder" if entry.is_dir() else "file"
            report.messages.append(("warning", f"{entry.name}: extra {kind} in {project_root}, not in the release"))


# ------------------------------------------------------------------------------------------------ checksums


def sha256_file(path: Path, progress: Progress | None = None, bar: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(SHA_CHUNK):
            h.update(chunk)
            if progress is not None and bar is not None:
                progress.advance(bar, len(chunk))
    return h.hexdigest()


def read_sha256sums(path: Path) -> dict[str, str]:
    """PhysioNet's SHA256SUMS.txt: one '<hex digest> <relative path>' per line (sha256sum's format)."""
    out = {}
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise MedmodalError(f"line {n} is not '<sha256> <path>'", path=path)
        out[parts[1].strip().lstrip("*").removeprefix("./")] = parts[0].lower()
    return out


def verify_checksums(
    report: ValidationReport,
    title: str,
    release: Release | None,
    project_root: Path,
    module_roots: dict[str, Path],
) -> None:
    """Hash every file SHA256SUMS.txt lists (with a progress bar over the bytes) and name every mismatch."""
    candidates = dict.fromkeys([project_root, *module_roots.values()])
    sums_path = next((d / "SHA256SUMS.txt" for d in candidates if (d / "SHA256SUMS.txt").is_file()), None)
    if sums_path is None:
        report.messages.append(("warning", f"{title}: no SHA256SUMS.txt in {project_root} (PhysioNet ships one)"))
        return
    sums = read_sha256sums(sums_path)
    base = sums_path.parent
    by_path = {t.path.resolve(): t for t in report.tables if t.path is not None}
    present = {rel: base / rel for rel in sums if (base / rel).is_file()}
    total = sum(p.stat().st_size for p in present.values())
    bad = variants = 0
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task(f"sha256 {title} ({len(present)} files)", total=total)
        for rel_path, digest in sums.items():
            path = present.get(rel_path)
            table = by_path.get(path.resolve()) if path else None
            if path is None:
                if not any(t.file == rel_path for t in report.tables):  # a missing table is already reported
                    report.messages.append(("warning", f"{rel_path}: listed in SHA256SUMS.txt but absent"))
                continue
            progress.update(bar, description=f"sha256 {rel_path}")
            found = sha256_file(path, progress, bar)
            if found == digest:
                if table is not None:
                    table.checksum = "ok"
                continue
            variant = release.known_variants.get(table.key) if (release and table) else None
            if variant is not None and found == variant.sha256:
                table.checksum = "known variant"
                variants += 1
                continue
            bad += 1
            text = f"sha256 {found[:12]}… differs from SHA256SUMS.txt's {digest[:12]}…"
            if table is not None:
                table.checksum = "mismatch"
                table.add("error" if table.needed else "warning", text)
            else:
                report.messages.append(("warning", f"{rel_path}: {text}"))
    match = len(present) - bad - variants
    text = f"{title}: {match} of {len(present)} files match {_display(sums_path, project_root)}"
    report.messages.append(("note", text + (f", {variants} known variant(s)" if variants else "")))


# ------------------------------------------------------------------------------------------------ report


def _progress() -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console, transient=True)


_STYLE = {"ok": "green", "note": "cyan", "warning": "yellow", "error": "red"}


def format_validation(report: ValidationReport) -> Group:
    """The per-table table, then the messages, the variable-map findings and a one-line verdict."""
    head = Text(
        f"{report.source} at {report.raw}: release {report.release} ({report.evidence})", style="bold", no_wrap=False
    )
    table = Table(show_lines=False, pad_edge=False)
    hashed = any(t.checksum for t in report.tables)
    columns = [("file", "left"), ("rows", "right"), ("published", "right")]
    columns += [("sha256", "left")] if hashed else []
    for name, justify in [*columns, ("status", "left")]:
        table.add_column(name, justify=justify, overflow="fold")
    for t in report.tables:
        published = "" if t.published is None else f"{t.published:,}" + ("" if t.confirmed else " ?")
        status = Text("; ".join(text for _, text in t.problems) or "ok", style=_STYLE[t.severity])
        name = t.file + ("" if t.needed else " ·")
        rows = "" if t.rows is None else f"{t.rows:,}"
        table.add_row(name, rows, published, *([t.checksum] if hashed else []), status)
    lines = [head, table, Text("· not read by medmodal; ? count not confirmed (see cohort/releases/)", style="dim")]
    for severity, text in sorted(report.messages, key=lambda m: SEVERITIES.index(m[0])):
        lines.append(Text(f"{severity}: {text}", style=_STYLE[severity]))
    for f in report.map_findings:
        if f.status not in ("ok", "unchecked"):
            lines.append(Text(f"variable map: {f.message()}", style="yellow"))
    for reason, n in Counter(f.reason for f in report.map_findings if f.status == "unchecked").items():
        lines.append(Text(f"variable map: {n} row(s) not checked ({reason})", style="cyan"))
    n_ok = sum(f.status == "ok" for f in report.map_findings)
    n_unchecked = sum(f.status == "unchecked" for f in report.map_findings)
    if report.map_findings:
        text = f"variable map: {n_ok} of {len(report.map_findings)} rows match the release"
        lines.append(Text(text + (f" ({n_unchecked} not checked)" if n_unchecked else "")))
    if report.failed:
        lines.append(Text(f"{len(report.errors)} problem(s) in files the tasks need", style="bold red"))
    else:
        lines.append(Text("every file the tasks need is as published", style="bold green"))
    return Group(*lines)
