"""Tasks are data: every ``*.yaml`` beside this file is one task, registered in ``TASKS`` under its ``name``.

Adding a task = one YAML file here + one SQL file per source in ``sql/<source>/tasks/``. Field meanings are in
docs/tasks.md; ``load_task`` validates them so a typo fails at import with the file and field named.
"""

from __future__ import annotations

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
    "index_event",
    "prediction_time",
    "observation_window",
    "labels",
    "inclusion",
    "modalities",
    "params",
}


def load_task(path: str | Path, *, sql_path: str | Path | None = None) -> TaskSpec:
    """Parse one task YAML into a TaskSpec (``sql_path`` overrides where its SQL lives, for tests)."""
    path = Path(path)
    try:
        doc: dict[str, Any] = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise MedmodalError(f"invalid YAML ({err.__class__.__name__})", path=path) from None
    if not isinstance(doc, dict):
        raise MedmodalError("a task file must be a mapping", path=path)
    unknown = set(doc) - _FIELDS
    if unknown:
        raise MedmodalError("unknown key", path=path, field=sorted(unknown)[0])
    for key in ("name", "description", "sources", "index_event", "prediction_time", "labels", "modalities"):
        if key not in doc:
            raise MedmodalError("missing", path=path, field=key)
    try:
        labels = tuple(
            LabelDef(
                name=lab["name"],
                column=lab.get("column", lab["name"]),
                kind=lab.get("kind", "binary"),
                classes=tuple(lab.get("classes", (0, 1))),
                definition=lab.get("definition", ""),
            )
            for lab in doc["labels"]
        )
        inclusion = tuple(InclusionStep(s["step"], s["description"]) for s in doc.get("inclusion", []))
        modalities = {
            m: ModalityRule(rule=r["rule"], grace_hours=float(r.get("grace_hours", 0)))
            if isinstance(r, dict)
            else ModalityRule(rule=str(r))
            for m, r in doc["modalities"].items()
        }
        return TaskSpec(
            name=doc["name"],
            description=" ".join(str(doc["description"]).split()),
            sources=tuple(doc["sources"]),
            sql=doc.get("sql", doc["name"]),
            index_event=" ".join(str(doc["index_event"]).split()),
            prediction_time=" ".join(str(doc["prediction_time"]).split()),
            observation_window=" ".join(str(doc.get("observation_window", "")).split()),
            labels=labels,
            inclusion=inclusion,
            modalities=modalities,
            params=dict(doc.get("params") or {}),
            sql_path=None if sql_path is None else Path(sql_path),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise MedmodalError(f"invalid task definition ({err})", path=path) from None


for _path in sorted(TASK_DIR.glob("*.yaml")):
    _task = load_task(_path)
    if _task.name != _path.stem:
        raise MedmodalError("task name must equal the file stem", path=_path, field="name")
    TASKS.register(_task.name)(_task)
