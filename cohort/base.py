"""What a source and a task are: the typed specs, and the two registries that find them by name.

A **source** (one module in ``cohort/sources/``) knows one dataset: which raw files exist and their column types,
how to detect the release, which modalities it can offer, and which SQL files in ``sql/<source>/`` turn a task's
``candidates`` relation into the per-modality outputs. A **task** (one YAML file in ``cohort/tasks/``) is data:
index event, prediction time, inclusion steps, labels, the modalities it allows and each one's time rule, plus
the stem of the SQL file that implements it under ``sql/<source>/tasks/``.

The relations a source's SQL must leave behind for the generic builder (``cohort/build.py``):

=====================  ==========================================================================================
``candidates``         task SQL: one row per index event; ``sample_id``, ``subject_id``, ``index_time``,
                       ``prediction_time``, ``window_start_time``, the label columns, the subgroup columns, one
                       Boolean ``incl_<step>`` per inclusion step; columns starting with ``_`` stay internal.
``structured_features`` (sample_id, feature, value) long form; ``structured_feature_list`` (position, feature,
                       modality) fixes the columns of structured.parquet and their order.
``<table>_out``        per modality kind the source offers, the rows of that kind's item table, allowed items only
                       (``timeseries_out``, ``notes_out``, ``images_out``; columns: ``medmodal.contracts.schema``).
                       A kind without its relation gets an empty table.
``modality_last``      (sample_id, modality, last_time): one row per sample that has the modality.
=====================  ==========================================================================================

The builder creates ``cohort`` (the candidates that pass every inclusion step, with ``split``) before the
source's post-task SQL runs, so those files select from ``cohort``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from medmodal.common import MedmodalError, Registry
from medmodal.contracts import MODALITY_KINDS
from medmodal.options import make_config, option, validate

REPO_ROOT = Path(__file__).resolve().parents[1]
SQL_ROOT = REPO_ROOT / "sql"
COMMON_SQL = (SQL_ROOT / "common" / "macros.sql",)  # run before every source's own SQL

PARAM_TYPES = (int, float, bool, str)  # what a task parameter may hold (a scalar the SQL renders as a literal)


@dataclass(frozen=True)
class FileSpec:
    """One raw table: where it lives, its columns with DuckDB types, and which columns the SQL relies on.

    ``columns`` lists every column the SQL may select (type per column). Columns of the real file that are not
    listed are ignored; listed columns that are not ``required`` may be absent (they read as NULL), which keeps
    the view schema identical across releases that add or drop a column.
    """

    view: str  # DuckDB view name the SQL uses, e.g. "admissions"
    module: str  # which root it lives under: a key of Source.roots(), e.g. "hosp", "note", "cxr"
    stem: str  # file name without .csv / .csv.gz, relative to the module root
    columns: Mapping[str, str]
    required: tuple[str, ...]
    optional: bool = False  # an absent optional file is an empty view, its modality marked absent
    # What the rows must satisfy, checked where the data enters (cohort/rules.py; docs/reliability.md "Bad
    # input"). A broken key / not_null / allowed / ranges / patterns rule means a corrupt or mis-read download:
    # the build stops, naming file, column and one example key (never a value). An ``ordered`` (start, end) pair
    # that a row breaks (end missing or before start) is a data-quality exclusion: counted, warned about, and the
    # samples built on those rows leave at an attrition step. Event tables (chartevents: 433M rows) declare none.
    key: tuple[str, ...] = ()  # unique and never null; also the example printed for the other rules
    not_null: tuple[str, ...] = ()
    allowed: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # text compared trimmed; NULL/'' pass
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # inclusive; NULL passes
    patterns: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # (regex, meaning): a full match of the
    # trimmed text; NULL/'' pass
    ordered: tuple[tuple[str, str], ...] = ()  # (start, end) columns, or a number literal as start

    def __post_init__(self) -> None:
        missing = [c for c in self.required if c not in self.columns]
        if missing:
            raise ValueError(f"{self.view}: required columns {missing} have no type")
        pairs = [c for pair in self.ordered for c in pair if not _is_number(c)]
        checked = [*self.key, *self.not_null, *self.allowed, *self.ranges, *self.patterns, *pairs]
        unknown = [c for c in checked if c not in self.columns]
        if unknown:
            raise ValueError(f"{self.view}: checked columns {unknown} are not listed in columns")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class ModalitySpec:
    name: str  # e.g. "discharge_note"; the has_<name> / <name>_time columns of modalities.parquet
    kind: str  # a registered modality kind (medmodal.contracts.MODALITY_KINDS)
    needs: tuple[str, ...] = ()  # views it is built from; all absent -> reported as unavailable

    def __post_init__(self) -> None:
        if self.kind not in MODALITY_KINDS:
            raise ValueError(f"modality {self.name}: kind must be one of {', '.join(MODALITY_KINDS)}")


@dataclass(frozen=True)
class LabelDef:
    name: str  # column name in cohort.parquet (and manifest.labels[i].name)
    column: str  # column the task SQL produces (lets two tasks share one SQL file)
    kind: str = "binary"
    classes: tuple[Any, ...] = (0, 1)
    definition: str = ""


@dataclass(frozen=True)
class InclusionStep:
    step: str  # the task SQL provides Boolean column incl_<step>
    description: str


@dataclass(frozen=True)
class ModalityRule:
    rule: str  # the time rule in words (restated in docs/tasks.md)
    grace_hours: float = 0.0  # items may be up to this long after prediction_time (audited)


@dataclass(frozen=True)
class TaskSpec:
    """A task as data. Loaded from ``cohort/tasks/<name>.yaml``; see docs/tasks.md for every field."""

    name: str
    description: str
    sources: tuple[str, ...]
    sql: str  # stem of sql/<source>/tasks/<sql>.sql
    index_event: str
    prediction_time: str
    observation_window: str
    labels: tuple[LabelDef, ...]
    inclusion: tuple[InclusionStep, ...]
    modalities: Mapping[str, ModalityRule]
    # the task's parameters, each a scalar its SQL reads as {{ name }}; typed by its value (``config_class``)
    params: Mapping[str, Any] = field(default_factory=dict)
    sql_path: Path | None = None  # explicit SQL file (a task file's own SQL); otherwise sql/<source>/tasks/<sql>.sql
    # a parameter limited to a list of values (``sample_unit``: subject | admission): name -> the allowed values
    param_choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    template: str | None = None  # stem of sql/<source>/templates/<template>.sql: a shared shape, no SQL of its own
    path: Path | None = None  # the YAML it was loaded from
    # the YAML as written ({param} placeholders unrendered): ``with_params`` renders it again with new values
    doc: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError(f"task {self.name}: needs at least one label")
        for lab in self.labels:
            if lab.kind not in ("binary", "multiclass"):
                raise ValueError(f"task {self.name}: label {lab.name} kind must be binary or multiclass")
            if not lab.name.isidentifier():
                raise ValueError(f"task {self.name}: label name {lab.name!r} is not a column name")
        if len({lab.name for lab in self.labels}) != len(self.labels):
            raise ValueError(f"task {self.name}: two labels share a name")
        steps = [s.step for s in self.inclusion]
        if len(set(steps)) != len(steps):
            raise ValueError(f"task {self.name}: duplicate inclusion step")
        for key, value in self.params.items():
            if not key.isidentifier() or type(value) not in PARAM_TYPES:
                raise ValueError(f"task {self.name}: param {key} must be a name with an int, float, bool or text value")
        for key, allowed in self.param_choices.items():
            if key not in self.params or self.params[key] not in allowed:
                raise ValueError(f"task {self.name}: param {key} must default to one of its choices")
        if self.template is not None and self.sql_path is not None:
            raise ValueError(f"task {self.name}: give template or its own SQL, not both")

    @functools.cached_property
    def config_class(self) -> type:
        """The params as a typed frozen dataclass (each type from its value, or a ``Literal`` of its choices; each
        default the value), so a task's options are listed and checked like every other registry entry's
        (``medmodal list tasks``, ``--param``)."""

        def kind(k: str, v: Any) -> Any:
            return Literal[tuple(self.param_choices[k])] if k in self.param_choices else type(v)

        fields = [(k, kind(k, v), option(v, f"task parameter (SQL {{{{ {k} }}}})")) for k, v in self.params.items()]
        ns = {"__post_init__": validate, "__doc__": f"Parameters of task {self.name}."}
        return dataclasses.make_dataclass(f"{self.name}_params", fields, frozen=True, namespace=ns)

    def with_params(self, values: Mapping[str, Any] | None, *, text: bool = False, flag: str = "--param") -> TaskSpec:
        """This task with some parameters changed: each typed and checked against ``config_class`` (an unknown
        name or a wrong type is one line listing the valid ones), the YAML re-rendered so that label names and
        definitions follow the values (``readmission_{readmission_days}d`` -> ``readmission_15d``).
        ``text``: the values are command-line text (``"15"``)."""
        if not values:
            return self
        config = make_config(self.config_class, values, what=f"task '{self.name}'", flag=flag, text=text)
        params = {k: getattr(config, k) for k in self.params}
        if not self.doc:  # built in Python, not from a YAML: nothing to re-render
            return dataclasses.replace(self, params=params)
        from medmodal.cohort.tasks import task_from_doc  # the loader lives beside the YAML files it reads

        return task_from_doc(self.doc, params=params, path=self.path, sql_path=self.sql_path)

    def sql_file(self, source: str) -> Path:
        if self.sql_path is not None:
            return self.sql_path
        if self.template is not None:
            return SQL_ROOT / source / "templates" / f"{self.template}.sql"
        return SQL_ROOT / source / "tasks" / f"{self.sql}.sql"

    def grace_hours(self, modality: str) -> float:
        rule = self.modalities.get(modality)
        return 0.0 if rule is None else float(rule.grace_hours)


class Source:
    """Base class of a dataset source. Subclass, fill the class attributes, decorate with ``@SOURCES.register``.

    Only ``detect_version`` and (optionally) ``extra_params`` hold Python logic; everything relational is SQL.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    files: ClassVar[tuple[FileSpec, ...]]
    modalities: ClassVar[tuple[ModalitySpec, ...]]
    subgroups: ClassVar[tuple[str, ...]]  # cohort.parquet columns for subgroup metrics
    population_view: ClassVar[str]  # view whose distinct subject_id is the attrition's first row
    before_task_sql: ClassVar[tuple[str, ...]] = ()  # stems in sql/<name>/, run before the task SQL
    after_task_sql: ClassVar[tuple[str, ...]] = ()  # stems in sql/<name>/, run on `cohort`
    # stems in sql/<name>/ run after before_task_sql that create a task-independent view over raw files (the
    # events extract): `--task all` materialises each once and shares it between tasks (cohort.runner)
    shared_sql: ClassVar[tuple[str, ...]] = ()
    known_versions: ClassVar[tuple[str, ...] | None] = None  # releases --dataset-version accepts (None: any)
    # Modules the user may keep outside RAW (downloaded apart): module -> what folder it is. The CLI derives
    # ``--<module>-root`` from these; ``roots`` reads them from ``given``.
    extra_roots: ClassVar[Mapping[str, str]] = {}

    @property
    def sql_dir(self) -> Path:
        return SQL_ROOT / self.name

    def roots(self, raw: Path, given: Mapping[str, Path]) -> dict[str, Path]:
        """Map each FileSpec.module to a directory: ``given[module]`` (an extra root the user named), else
        ``raw/<module>``."""
        return {spec.module: Path(given.get(spec.module) or Path(raw) / spec.module) for spec in self.files}

    def resolve_roots(self, raw: Path, given: Mapping[str, str | Path | None] | None = None) -> dict[str, Path]:
        """Check the extra roots the user named (declared by this source, existing folders), then ``roots``."""
        named = {module: Path(p) for module, p in (given or {}).items() if p is not None}
        for module, path in named.items():
            if module not in self.extra_roots:
                known = ", ".join(f"--{m}-root" for m in self.extra_roots) or "none"
                raise MedmodalError(
                    f"source {self.name} has no {module} root (its roots: {known})", field=root_flag(module)
                )
            if not path.is_dir():  # given explicitly: a typo must not read as "absent"
                raise MedmodalError(f"folder given by {root_flag(module)} not found", path=path)
        return self.roots(Path(raw), named)

    def detect_version(self, con: Any, raw: Path) -> tuple[str, str]:
        """Return (dataset_version, evidence in words). ``con`` has every view registered."""
        raise NotImplementedError

    def check_values(self, con: Any, located: Any) -> None:
        """Value checks that the FileSpec rules cannot declare: raise MedmodalError naming the file and field, never
        a value. ``con`` has every view registered; the declared rules have already passed."""

    def check_version(self, version: str) -> None:
        """Refuse a ``--dataset-version`` this source does not know (its SQL would silently select nothing)."""
        if self.known_versions is not None and version not in self.known_versions:
            raise MedmodalError(
                f"unknown {self.name} release {version!r} (known: {', '.join(self.known_versions)})",
                field="--dataset-version",
            )

    def image_root(self, roots: dict[str, Path]) -> Path | None:
        """The folder every image path of images.parquet must resolve inside (None: the source has no images)."""
        return None

    def extra_params(self, roots: dict[str, Path], version: str) -> dict[str, Any]:
        """Source-specific SQL parameters (e.g. where image files live)."""
        return {}

    def modality(self, name: str) -> ModalitySpec:
        for m in self.modalities:
            if m.name == name:
                return m
        raise MedmodalError(f"source {self.name} has no modality '{name}'")


def root_flag(module: str) -> str:
    """The CLI flag of an extra module root: ``--note-root``."""
    return f"--{module.replace('_', '-')}-root"


SOURCES: Registry[type[Source]] = Registry("source")
TASKS: Registry[TaskSpec] = Registry("task")


def tasks_for(source: str) -> list[str]:
    return [t for t in TASKS.names() if source in TASKS.get(t).sources]
