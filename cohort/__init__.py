"""Leakage-safe cohorts from raw files: sources, tasks, the DuckDB runner, splits, masks, audits, report.

Library API (docs/cohort.md, docs/tasks.md):
    build_cohort(source, raw, task, out, *, roots=None, memory_limit=None, threads=None, seed=0,
                 overwrite=False, dataset_version=None, params=None, split_protocol_name="subject") -> Path
    load_task(path) -> TaskSpec          a task YAML of your own (pass it as ``task``)
    check_task(path or TaskSpec) -> list[str]   validate one against its sources without building
    format_report(cohort_dir) -> rich renderable
    SOURCES, TASKS: the registries (a new source = one module in cohort/sources/ + sql/<source>/ + one import
    line in cohort/sources/__init__.py; a new task = one YAML in cohort/tasks/ + one SQL file per source, or a
    ``template:``).
"""

from medmodal.cohort import sources, tasks  # noqa: F401  (fill the registries)
from medmodal.cohort.audits import audit_cohort_dir
from medmodal.cohort.base import SOURCES, TASKS, TaskSpec, tasks_for
from medmodal.cohort.build import build_cohort
from medmodal.cohort.report import format_report
from medmodal.cohort.task_check import check_task
from medmodal.cohort.tasks import load_task

__all__ = [
    "SOURCES",
    "TASKS",
    "TaskSpec",
    "audit_cohort_dir",
    "build_cohort",
    "check_task",
    "format_report",
    "load_task",
    "tasks_for",
]
