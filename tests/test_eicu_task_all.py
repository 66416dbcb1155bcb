"""eICU-CRD under ``cohort build --task all``: the events tables (lab, vitalPeriodic, vitalAperiodic) are parsed
once into the shared ``measurement_events`` extract, and every task's cohort equals its single-task build, on the
simulator's world and on the open demo; ``cohort task check`` runs the shared SQL too (docs/performance.md)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from medmodal.cohort import TASKS, build_cohort, check_task, tasks_for
from medmodal.cohort.runner import SharedRelations, read_header
from medmodal.common import MedmodalError

EVENTS = ("lab", "vitalPeriodic", "vitalAperiodic")
OUTPUTS = ("cohort", "modalities", "structured", "timeseries", "notes", "images", "attrition")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from medmodal.simulate import simulate

    return simulate("eicu", tmp_path_factory.mktemp("eicu_world") / "raw", subjects=200, seed=5)


def _poison(raw: Path) -> None:
    """Each events file keeps its header and gets one row whose id is not a number: parsing it again fails."""
    for stem in EVENTS:
        path = raw / f"{stem}.csv.gz"
        header = read_header(path)
        with gzip.open(path, "wt") as fh:
            fh.write(",".join(header) + "\n" + ",".join(["not-a-number"] * len(header)) + "\n")


def _assert_same_outputs(a: Path, b: Path) -> None:
    for name in OUTPUTS:
        assert (a / f"{name}.parquet").read_bytes() == (b / f"{name}.parquet").read_bytes(), (a.name, name)


def test_task_all_parses_the_events_tables_once_and_matches_single_builds(world, tmp_path, monkeypatch):
    """After the first task has written the extract, the events files are replaced by ones that cannot be parsed:
    the later tasks still build, because they read the extract and never the csv.gz files again, and every cohort
    equals the single-task build of the intact files."""
    raw = tmp_path / "raw"
    shutil.copytree(world, raw)
    extracts: list[int] = []
    run = SharedRelations.run

    def run_then_poison(self, *args, **kwargs):
        run(self, *args, **kwargs)
        extracts.append(len(self.done))
        if len(extracts) == 1:
            _poison(raw)

    monkeypatch.setattr(SharedRelations, "run", run_then_poison)
    out = build_cohort("eicu", raw, "all", tmp_path / "all", threads=2)
    monkeypatch.undo()
    names = tasks_for("eicu")
    assert len(extracts) == len(names) > 1 and set(extracts) == {1}  # every task, one extract
    for task in names:
        single = build_cohort("eicu", world, task, tmp_path / task, threads=2)
        _assert_same_outputs(out / task, single)
    assert not list(tmp_path.glob(".medmodal-work-*"))  # the work folder (spill, extract) is removed
    # the poisoned files are what a re-parse would have met: a build that reads them fails on them
    with pytest.raises(MedmodalError, match="vitalPeriodic|vitalAperiodic|lab"):
        build_cohort("eicu", raw, names[0], tmp_path / "again", threads=2)


def test_task_all_matches_single_builds_on_the_open_demo(shared_data, tmp_path):
    """The demo lacks lab and vitalPeriodic: the extract holds vitalAperiodic alone, and still gives each task
    the bytes of its own build."""
    raw = shared_data / "eicu-crd-demo-2.0.1"
    out = build_cohort("eicu", raw, "all", tmp_path / "all", threads=2)
    for task in tasks_for("eicu"):
        _assert_same_outputs(out / task, build_cohort("eicu", raw, task, tmp_path / task, threads=2))


def test_task_check_dry_run_runs_the_shared_extract(monkeypatch):
    """``cohort task check`` runs measurement_events over the empty typed views before the task's SQL, as a
    build does, so a task SQL or measurements.sql that needs it is checked too."""
    import medmodal.cohort.task_check as task_check

    ran: list[str] = []
    run = task_check.run_sql_file

    def recording(con, path, *args, **kwargs):
        ran.append(path.stem)
        return run(con, path, *args, **kwargs)

    monkeypatch.setattr(task_check, "run_sql_file", recording)
    for task in tasks_for("eicu"):
        ran.clear()
        check_task(TASKS.get(task))
        assert "measurement_events" in ran and "measurements" in ran, task
        assert ran.index("measurement_events") < ran.index("measurements"), task
