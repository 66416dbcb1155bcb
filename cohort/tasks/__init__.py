"""Tasks are data: every ``*.yaml`` beside this file is one task, registered in ``TASKS`` under its ``name``.

Adding a task = one YAML file here + one SQL file per source in ``sql/<source>/tasks/`` (or a ``template:`` of
``sql/<source>/templates/`` and no SQL). Field meanings are in docs/tasks.md; ``load_task`` validates them so a
typo fails at import with the file and field named, and reads a researcher's own task file the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from medmodal.cohort.base import TASKS, InclusionStep, LabelDef, ModalityRule, TaskSpec
from medmodal.common import MedmodalError

TASK_DIR = Path(__file__).resolve().parent

_FIELDS = {
    "name",
    "description",
    "sources",
    "sql",
    "template",
    "index_event",
    "prediction_time",
    "observation_window",
    "labels",
    "inclusion",
    "modalities",
    "params",
}

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _text(value: Any, params: Mapping[str, Any], *, name: bool = False) -> str:
    """One line of YAML text with each ``{param}`` replaced by the parameter's value (other braces kept).
    ``name``: the text is a column name, so a value is spelt as one (3.5 -> ``3p5``, -6 -> ``m6``)."""

    def sub(m: re.Match) -> str:
        if m.group(1) not in params:
            return m.group(0)
        v = params[m.group(1)]
        text = str(v).lower() if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)
        return re.sub(r"\W", "_", text.replace(".", "p").replace("-", "m")) if name else text

    return _PLACEHOLDER.sub(sub, " ".join(str(value).split()))


def _param_defaults(raw: Any, path: Path) -> tuple[dict[str, Any], dict[str, tuple[Any, ...]]]:
    """``params:`` as written: ``name: value``, or ``name: {default: value, choices: [...]}``."""
    if raw is None:
        return {}, {}
    if not isinstance(raw, dict):
        raise MedmodalError("params must be a mapping of name to value", path=path, field="params")
    values, choices = {}, {}
    for key, value in raw.items():
        if isinstance(value, dict):
            unknown = set(value) - {"default", "choices"}
            if unknown or "default" not in value:
                raise MedmodalError("a parameter mapping takes default and choices", path=path, field=f"params.{key}")
            values[key] = value["default"]
            if "choices" in value:
                choices[key] = tuple(value["choices"])
        else:
            values[key] = value
    return values, choices


def _sql_path(doc: Mapping[str, Any], path: Path | None) -> Path | None:
    """Where a task's own SQL lives when it is not in the package: ``sql: my_task.sql`` (relative to the YAML),
    else ``<yaml stem>.sql`` beside the YAML; None for a package stem (``sql: readmission_30d``) or a template."""
    sql = doc.get("sql")
    if isinstance(sql, str) and sql.endswith(".sql"):
        p = Path(sql).expanduser()
        return p if p.is_absolute() or path is None else path.parent / p
    if sql is None and "template" not in doc and path is not None and path.with_suffix(".sql").is_file():
        return path.with_suffix(".sql")
    return None


def _column(lab: Mapping[str, Any]) -> str:
    column = lab.get("column", lab["name"])
    if "{" in str(column):
        raise ValueError(f"label {lab['name']}: a name built from parameters needs column: (the SQL's column)")
    return column


def task_from_doc(
    doc: Mapping[str, Any],
    *,
    params: Mapping[str, Any] | None = None,
    path: Path | None = None,
    sql_path: str | Path | None = None,
) -> TaskSpec:
    """A TaskSpec from a parsed task YAML; ``params`` replaces the defaults (already typed), and every text field
    is rendered with the values in effect. ``path`` names the file in errors and anchors a relative ``sql:``."""
    unknown = set(doc) - _FIELDS
    if unknown:
        raise MedmodalError("unknown key", path=path, field=sorted(unknown)[0])
    for key in ("name", "description", "sources", "index_event", "prediction_time", "labels", "modalities"):
        if key not in doc:
            raise MedmodalError("missing", path=path, field=key)
    beside = path is not None and path.with_suffix(".sql").is_file()
    if "template" in doc and ("sql" in doc or beside):  # which one runs would be a guess
        what = "an sql: entry" if "sql" in doc else f"{path.with_suffix('.sql').name} beside it"
        raise MedmodalError(f"template given with {what}: give one, not both", path=path, field="template")
    defaults, choices = _param_defaults(doc.get("params"), path)
    values = {**defaults, **dict(params or {})}
    try:
        labels = tuple(
            LabelDef(
                name=_text(lab["name"], values, name=True),
                column=_column(lab),
                kind=lab.get("kind", "binary"),
                classes=tuple(lab.get("classes", (0, 1))),
                definition=_text(lab.get("definition", ""), values),
            )
            for lab in doc["labels"]
        )
        inclusion = tuple(InclusionStep(s["step"], _text(s["description"], values)) for s in doc.get("inclusion", []))
        modalities = {
            m: ModalityRule(rule=_text(r["rule"], values), grace_hours=float(_text(r.get("grace_hours", 0), values)))
            if isinstance(r, dict)
            else ModalityRule(rule=_text(r, values))
            for m, r in doc["modalities"].items()
        }
        own_sql = Path(sql_path) if sql_path is not None else _sql_path(doc, path)
        return TaskSpec(
            name=doc["name"],
            description=_text(doc["description"], values),
            sources=tuple(doc["sources"]),
            sql=doc.get("sql", doc["name"]) if own_sql is None else own_sql.stem,
            index_event=_text(doc["index_event"], values),
            prediction_time=_text(doc["prediction_time"], values),
            observation_window=_text(doc.get("observation_window", ""), values),
            labels=labels,
            inclusion=inclusion,
            modalities=modalities,
            params=values,
            sql_path=own_sql,
            param_choices=choices,
            template=doc.get("template"),
            path=path,
            doc=dict(doc),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise MedmodalError(f"invalid task definition ({err})", path=path) from None


def load_task(path: str | Path, *, sql_path: str | Path | None = None) -> TaskSpec:
    """Parse one task YAML into a TaskSpec: a built-in one, or a researcher's own file anywhere on disk (its SQL
    beside it, referenced by ``sql: file.sql``, or a ``template:``). ``sql_path`` overrides where its SQL lives.
    Validates the fields only; ``check_task`` (cohort/task_check.py) also runs its SQL against each source."""
    path = Path(path)
    if not path.is_file():
        raise MedmodalError("task file not found", path=path)
    try:
        doc: dict[str, Any] = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise MedmodalError(f"invalid YAML ({err.__class__.__name__})", path=path) from None
    if not isinstance(doc, dict):
        raise MedmodalError("a task file must be a mapping", path=path)
    return task_from_doc(doc, path=path, sql_path=sql_path)


for _path in sorted(TASK_DIR.glob("*.yaml")):
    _task = load_task(_path)
    if _task.name != _path.stem:
        raise MedmodalError("task name must equal the file stem", path=_path, field="name")
    TASKS.register(_task.name)(_task)
