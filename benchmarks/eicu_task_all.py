"""eICU-CRD cohort builds: every task alone, their sum, and ``--task all`` on one simulated world (prints a table).

    python benchmarks/eicu_task_all.py                        # medmodal simulate eicu --subjects 20000
    python benchmarks/eicu_task_all.py --world RAW --json out.json
    python benchmarks/eicu_task_all.py --from-json out.json     # reprint the table of an earlier run

``--task all`` parses the events tables (lab, vitalPeriodic, vitalAperiodic) once into the shared
``measurement_events`` extract (sql/eicu/measurement_events.sql) and every task joins that; a single task streams
the csv.gz files through the same view. Each stage runs in a fresh child process measured as in
benchmarks/cohort_scale.py (CPU seconds of the process tree, peak RSS of the tree polled every 50 ms), beside the
DuckDB ``count(*)`` scan of the same three files measured in the same run. The machine is shared: compare the
ratios (of CPU seconds) within one run, not seconds across runs. Not run by ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

import medmodal.benchmarks.cohort_scale as scale

EVENTS = ("lab.csv.gz", "vitalPeriodic.csv.gz", "vitalAperiodic.csv.gz")
BUDGET_CONSTANT_MB = scale.COHORT_CONSTANT_MB  # a build may use its DuckDB limit plus this

scale.CHILDREN.update(
    {
        "eicu_simulate": """
from medmodal.simulate import simulate
simulate("eicu", A[0], subjects=int(A[1]), seed=0)
""",
        "eicu_cohort": """
from medmodal.cohort import build_cohort
build_cohort("eicu", A[0], A[1], A[2])
""",
    }
)


def run(world: Path, work: Path, console: Console) -> dict:
    from medmodal.cohort import tasks_for
    from medmodal.cohort.runner import default_memory_limit

    counts = json.loads((world / "simulation.json").read_text())["row_counts"]
    res: dict = {"subjects": json.loads((world / "simulation.json").read_text())["subjects"], "stages": {}}
    res["events"] = sum(counts[f] for f in EVENTS)
    res["unit_stays"] = counts["patient.csv.gz"]
    res["memory_limit_mb"] = scale._size_mb(default_memory_limit())
    st = res["stages"]
    st["scan floor"] = scale.measure("floor", [str(world / f) for f in EVENTS])
    for task in tasks_for("eicu"):
        st[f"cohort {task}"] = scale.measure("eicu_cohort", [str(world), task, str(work / task)])
        console.print(f"cohort {task}: {st[f'cohort {task}']['cpu']:.1f} CPU s", highlight=False)
    st["cohort --task all"] = scale.measure("eicu_cohort", [str(world), "all", str(work / "all")])
    return res


def table(r: dict) -> Table:
    st = r["stages"]
    floor = st["scan floor"]["cpu"]
    singles = {k: v for k, v in st.items() if k.startswith("cohort ") and k != "cohort --task all"}
    cheapest, costliest = (f(s["cpu"] for s in singles.values()) for f in (min, max))
    total = sum(s["cpu"] for s in singles.values())
    t = Table(
        title=f"eICU, {r['subjects']:,} simulated subjects: {r['unit_stays']:,} unit stays, "
        f"{r['events']:,} events rows (DuckDB limit {r['memory_limit_mb'] / 1024:.1f} GB); ratios of CPU seconds"
    )
    cols = ("stage", "wall s", "CPU s", "peak RSS MB", "budget MB", "× scan floor", "× cheapest task")
    for col in (*cols, "× costliest task", "× sum"):
        t.add_column(col, justify="right")
    rows = [*st.items(), ("separate builds, sum", {"wall": sum(s["wall"] for s in singles.values()), "cpu": total})]
    for name, s in rows:
        cohort = name.startswith(("cohort", "separate"))
        peak = s.get("peak_mb")
        t.add_row(
            name,
            f"{s['wall']:.1f}",
            f"{s['cpu']:.1f}",
            f"{peak:,.0f}" if peak is not None else "",
            f"{r['memory_limit_mb'] + BUDGET_CONSTANT_MB:,.0f}" if peak is not None and cohort else "",
            f"{s['cpu'] / floor:.2f}",
            f"{s['cpu'] / cheapest:.2f}" if cohort else "",
            f"{s['cpu'] / costliest:.2f}" if cohort else "",
            f"{s['cpu'] / total:.2f}" if cohort else "",
        )
    return t


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=20_000)
    ap.add_argument("--world", type=Path, default=None, help="an existing simulated eICU world (never removed)")
    ap.add_argument("--tmp", type=Path, default=None, help="where the world and cohorts go (default: system temp)")
    ap.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    ap.add_argument("--from-json", type=Path, nargs="+", default=None, help="print the tables of earlier --json runs")
    args = ap.parse_args(argv)
    console = Console(width=160)
    if args.from_json:
        for p in args.from_json:
            console.print(table(json.loads(p.read_text())))
        return
    console.print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start (compare ratios)")
    root = Path(tempfile.mkdtemp(prefix="eicu-task-all-", dir=args.tmp))
    try:
        world = args.world
        if world is None:
            world = root / "world"
            simulated = scale.measure("eicu_simulate", [str(world), str(args.subjects)])
            console.print(f"simulate eicu --subjects {args.subjects}: {simulated['wall']:.1f} s", highlight=False)
        (root / "out").mkdir()
        res = run(world, root / "out", console)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    console.print(table(res))


if __name__ == "__main__":
    main()
