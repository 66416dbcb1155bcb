"""What each published release holds: row counts, column sets and dictionary rules, read from
``cohort/releases/<source>.yaml`` (the data, with a source note for every count; the format is described at the
top of ``mimic_iv.yaml``).

A source's YAML lists *projects* (PhysioNet projects downloaded separately: MIMIC-IV, MIMIC-IV-Note,
MIMIC-CXR-JPG; eICU-CRD), each with the module folders it provides and its releases. ``cohort validate`` checks a
download against the release it detects; ``cohort build`` uses the column sets and the variable-map rules only.
A source without a YAML (ADNI: ADNIMERGE is re-exported weekly, there is no published release) gets the checks
its ``FileSpec``s imply and nothing more.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medmodal.common import MedmodalError

RELEASE_DIR = Path(__file__).resolve().parent / "releases"


@dataclass(frozen=True)
class TableSpec:
    key: str  # "<module>/<stem>", e.g. "hosp/admissions"
    rows: int | None  # published row count; None: none was found
    confirmed: bool  # False: a count medmodal could not confirm (a mismatch is reported, never fatal)
    note: str = ""
    columns: tuple[str, ...] | None = None  # the release's header; None: unknown

    @property
    def module(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def stem(self) -> str:
        return self.key.split("/", 1)[1]


@dataclass(frozen=True)
class KnownVariant:
    """A file that differs from the published one on purpose (medmodal's vendored copy), accepted only by hash."""

    sha256: str
    rows: int
    note: str


@dataclass(frozen=True)
class Release:
    project: str
    version: str
    title: str
    counts_source: str
    schema_confirmed: bool
    tables: tuple[TableSpec, ...]
    known_variants: dict[str, KnownVariant] = field(default_factory=dict)
    warning: str = ""

    def table(self, key: str) -> TableSpec | None:
        return next((t for t in self.tables if t.key.lower() == key.lower()), None)


@dataclass(frozen=True)
class Project:
    name: str
    title: str
    modules: tuple[str, ...]
    root: str  # "parent": the download folder holds the module folders; "module": it is the module folder
    other_files: tuple[str, ...]
    other_dirs: tuple[str, ...]
    releases: dict[str, Release]

    def project_root(self, module_root: Path) -> Path:
        return module_root.parent if self.root == "parent" else module_root


@dataclass(frozen=True)
class MapCheck:
    """How one ``source_table`` of the variable map is checked.

    kind ``dictionary``: the item must be a ``key`` of the dictionary file with the map's ``label`` (and ``unit``
    where the map gives one); ``header``: the item must be a column of ``file``; ``values``: the item must occur
    in ``column`` of ``file`` (a full scan, so only ``cohort validate`` does it).
    """

    source_table: str
    kind: str
    file: str  # "<module>/<stem>"
    key: str = ""
    label: str = ""
    unit: str = ""
    column: str = ""


@dataclass(frozen=True)
class SourceReleases:
    source: str
    map_item: str  # the variable map's column that names the item ("itemid", "item")
    map_checks: dict[str, MapCheck]
    projects: dict[str, Project]

    def project_of(self, module: str) -> Project | None:
        return next((p for p in self.projects.values() if module in p.modules), None)


def release_key(version: str, raw: Path) -> str:
    """The key of the release in the YAML: the version, prefixed ``demo-`` for PhysioNet's open demos (named
    so by the folder PhysioNet gives them, or marked by the ``demo_subject_id.csv`` the MIMIC-IV demo ships)."""
    if version.startswith("demo-"):
        return version
    raw = Path(raw)
    if "demo" in raw.resolve().name.lower() or (raw / "demo_subject_id.csv").is_file():
        return f"demo-{version}"
    return version


@functools.cache
def load_releases(source: str) -> SourceReleases | None:
    path = RELEASE_DIR / f"{source}.yaml"
    if not path.is_file():
        return None
    try:
        doc: dict[str, Any] = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise MedmodalError(f"invalid YAML ({err.__class__.__name__})", path=path) from None
    try:
        return _parse(doc)
    except (KeyError, TypeError, ValueError) as err:
        raise MedmodalError(f"release data is malformed ({err.__class__.__name__}: {err})", path=path) from None


def _parse(doc: dict[str, Any]) -> SourceReleases:
    schemas = {
        name: {k.lower(): tuple(str(c) for c in cols) for k, cols in tables.items()}
        for name, tables in doc.get("schemas", {}).items()
    }
    projects = {}
    for pname, p in doc["projects"].items():
        releases = {}
        for version, r in p["releases"].items():
            schema = schemas[r["schema"]] if r.get("schema") else {}
            tables = []
            for key, spec in r["tables"].items():
                spec = spec if isinstance(spec, dict) else {"rows": spec}
                rows = spec.get("rows")
                tables.append(
                    TableSpec(
                        key=key,
                        rows=None if rows is None else int(rows),
                        confirmed=bool(spec.get("confirmed", rows is not None)),
                        note=str(spec.get("note", "")),
                        columns=schema.get(key.lower()),
                    )
                )
            variants = {
                k: KnownVariant(sha256=v["sha256"], rows=int(v["rows"]), note=" ".join(str(v["note"]).split()))
                for k, v in (r.get("known_variants") or {}).items()
            }
            releases[str(version)] = Release(
                project=pname,
                version=str(version),
                title=r["title"],
                counts_source=" ".join(str(r["counts_source"]).split()),
                schema_confirmed=bool(r.get("schema_confirmed", False)),
                tables=tuple(tables),
                known_variants=variants,
                warning=" ".join(str(r.get("warning", "")).split()),
            )
        if p.get("root", "parent") not in ("parent", "module"):
            raise ValueError(f"project {pname}: root must be parent or module")
        projects[pname] = Project(
            name=pname,
            title=p["title"],
            modules=tuple(p["modules"]),
            root=p.get("root", "parent"),
            other_files=tuple(p.get("other_files", ())),
            other_dirs=tuple(p.get("other_dirs", ())),
            releases=releases,
        )
    vm = doc.get("variable_map") or {"item": "", "checks": {}}
    checks = {}
    for table, c in vm["checks"].items():
        kind = next(k for k in ("dictionary", "header_of", "values_of") if k in c)
        checks[table] = MapCheck(
            source_table=table,
            kind={"dictionary": "dictionary", "header_of": "header", "values_of": "values"}[kind],
            file=c[kind],
            key=c.get("key", ""),
            label=c.get("label", ""),
            unit=c.get("unit", ""),
            column=c.get("column", ""),
        )
    return SourceReleases(source=doc["source"], map_item=vm["item"], map_checks=checks, projects=projects)
