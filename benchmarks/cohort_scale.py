"""Every stage at growing size: wall, CPU, peak memory of the process tree, rows/s, and ratios (prints tables).

    python benchmarks/cohort_scale.py                                   # 10k and 30k simulated subjects
    python benchmarks/cohort_scale.py --subjects 10000 30000 100000 --pyhealth /tmp/pyhealth-venv
    python benchmarks/cohort_scale.py --subjects 2000 --json out.json   # what the slow test runs

Per world (``medmodal simulate mimic_iv --release 3.1 --no-images``) each stage runs in a fresh child process
whose peak RSS is that of its whole process tree (psutil, polled every 50 ms; DuckDB's threads are inside it) and
whose CPU seconds (user + system, from the kernel's accounting of waited-for children) are what the ratios use:

- ``scan floor``: DuckDB ``count(*)`` over labevents + chartevents csv.gz, the least any build must pay;
- ``cohort <task>`` for every MIMIC-IV task and ``cohort --task all`` (defaults: DuckDB memory limit
  ``cohort.runner.default_memory_limit``);
- ``featurize structured`` and one training epoch (late_fusion + erm on structured + timeseries, no bootstrap)
  of the readmission_30d cohort, with its inputs precomputed (as every cohort up to 1 GB of inputs) and
  ``streamed`` (as larger ones: standardised per batch from the memory-mapped store);
- with ``--pyhealth VENV``: PyHealth 1.1.6's MIMIC4Dataset over the same hosp files (diagnoses_icd, labevents)
  and its 15-day readmission task (``readmission_prediction_mimic4_fn``'s loop, with labevents in place of the
  procedures and prescriptions the simulator does not write), in its own virtual environment (created on first use with
  ``pyhealth==1.1.6 'numpy<2' 'setuptools<81'``; PyHealth 2.x needs Python >= 3.12).

Then each stage's CPU time and memory are fitted as a fixed cost plus a cost per events row (least squares over
the sizes run) and projected to MIMIC-IV v3.1 (432,997,491 chartevents + 158,374,764 labevents). The machine is shared:
compare ratios within one run, not seconds across runs. ``--json`` writes the measurements and each stage's
memory budget (``budgets``) for tests/test_cohort_scale.py. Not run by ``make test``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

V31_EVENTS = 432_997_491 + 158_374_764  # chartevents + labevents rows of MIMIC-IV v3.1
V31_ADMISSIONS = 546_028
POLL_S = 0.05
MB = 2**20

MAIN_TASK = "readmission_30d"  # the task featurize and training run on; every MIMIC-IV task is built
STAGE_BUDGET_MB = 4096  # the target for featurize and training at any size
COHORT_CONSTANT_MB = 1024  # a build may use its DuckDB limit plus this (Python, polars, pyarrow, the audits)

CHILDREN = {
    "simulate": """
from medmodal.simulate import simulate
simulate("mimic_iv", A[0], subjects=int(A[1]), seed=0, images=False, release="3.1", density=A[2])
""",
    "floor": """
import duckdb
con = duckdb.connect()
n = sum(con.execute(f"SELECT count(*) FROM read_csv('{p}')").fetchone()[0] for p in A)
print(json.dumps({"rows": n}))
""",
    "cohort": """
from medmodal.cohort import build_cohort
build_cohort("mimic_iv", A[0], A[1], A[2], params=json.loads(A[3]) if len(A) > 3 else None)
""",
    "featurize": """
from medmodal.featurize import featurize_structured
featurize_structured(A[0], A[1])
""",
    "epoch": """
import medmodal.models.data
from medmodal.models.train import train
if A[3] == "streamed":  # what a cohort past DENSE_INPUT_BYTES gets: inputs standardised per batch from the map
    medmodal.models.data.DENSE_INPUT_BYTES = 0
train(A[0], A[1], A[2], backbone="late_fusion", framework="erm", modalities=["structured", "timeseries"],
      epochs=1, n_boot=0, progress=False)
""",
    "pyhealth": """
import os
import resource
import pandas as pd
from pyhealth.datasets import MIMIC4Dataset

def readmission_15d(patient, time_window=15):
    # PyHealth's readmission_prediction_mimic4_fn, with labevents in place of procedures and prescriptions (which
    # the simulator does not write): same visits, same label, same per-visit code lists
    samples = []
    for i in range(len(patient) - 1):
        visit, nxt = patient[i], patient[i + 1]
        conditions = visit.get_code_list(table="diagnoses_icd")
        labs = visit.get_code_list(table="labevents")
        if not conditions or not labs:
            continue
        gap = (nxt.encounter_time - visit.encounter_time).days
        samples.append({"visit_id": visit.visit_id, "patient_id": patient.patient_id, "conditions": [conditions],
                        "labs": [labs], "label": int(gap < time_window)})
    return samples
_read = pd.read_csv
def read_gz(path, *a, **k):  # PyHealth 1.x opens <table>.csv; the release (and the simulator) ships .csv.gz
    path = str(path)
    return _read(path + ".gz" if not os.path.exists(path) and os.path.exists(path + ".gz") else path, *a, **k)
pd.read_csv = read_gz
ds = MIMIC4Dataset(root=A[0], tables=["diagnoses_icd", "labevents"], dev=False, refresh_cache=True)
samples = ds.set_task(readmission_15d)
print(json.dumps({"samples": len(samples)}))
""",
}


def measure(kind: str, args: list[str], *, python: str | None = None, env: dict | None = None) -> dict:
    """Run CHILDREN[kind] with ``args``; wall seconds and the peak summed RSS of its process tree."""
    code = "import json, sys\nA = sys.argv[1:]\n" + textwrap.dedent(CHILDREN[kind])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [python or sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    peak = peak_anon = 0
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            rss = anon = 0
            for p in tree:
                with contextlib.suppress(psutil.Error):  # a child that exited between listing and reading
                    mem = p.memory_info()
                    rss += mem.rss
                    # rss less the file-backed pages (memory-mapped store, shared libraries): what the process
                    # itself holds; mapped file pages are page cache the kernel reclaims under pressure
                    anon += mem.rss - getattr(mem, "shared", 0)
            peak, peak_anon = max(peak, rss), max(peak_anon, anon)
        except psutil.Error:
            pass
        time.sleep(POLL_S)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child and every descendant it waited for
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode:
        tail = "\n".join(err.strip().splitlines()[-5:])
        raise RuntimeError(f"{kind} {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
    line = next((x for x in reversed(out.strip().splitlines()) if x.startswith("{")), "{}")
    return {"wall": wall, "cpu": cpu, "peak_mb": peak / MB, "peak_anon_mb": peak_anon / MB, **json.loads(line)}


def ensure_pyhealth(venv: Path) -> str:
    """The venv's python, with PyHealth 1.1.6 installed into it on first use (from the configured index)."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    ok = subprocess.run([str(python), "-c", "import pyhealth"], capture_output=True).returncode == 0
    if not ok:
        pins = ["pyhealth==1.1.6", "numpy<2", "setuptools<81"]
        subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], check=True)
    return str(python)


def events_rows(world: Path) -> int:
    counts = json.loads((world / "simulation.json").read_text())["row_counts"]
    return counts["hosp/labevents.csv.gz"] + counts["icu/chartevents.csv.gz"]


STAGES = ("floor", "tasks", "all", "featurize", "epoch", "pyhealth")


class _Stages(dict):
    """The stage measurements of one world; ``saved()`` runs after each one, so a long run keeps what it has."""

    def __init__(self, saved):
        super().__init__()
        self._saved = saved

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self._saved()


def densities(world: Path) -> dict:
    """What the world holds per ICU stay, ICU hour and admission (to set beside MIMIC-IV v3.1's)."""
    import duckdb

    counts = json.loads((world / "simulation.json").read_text())["row_counts"]
    stays, hours = duckdb.sql(
        f"SELECT count(*), sum(los) * 24 FROM read_csv('{world / 'icu' / 'icustays.csv.gz'}')"
    ).fetchall()[0]
    adm, chart, lab = (counts[f] for f in ("hosp/admissions.csv.gz", "icu/chartevents.csv.gz", "hosp/labevents.csv.gz"))
    return {
        "icu_stays_per_admission": stays / adm,
        "chartevents_per_stay": chart / max(stays, 1),
        "chartevents_per_icu_hour": chart / max(hours, 1e-9),
        "labevents_per_admission": lab / adm,
    }


def run_world(
    n: int,
    root: Path,
    pyhealth: str | None,
    console: Console,
    stages=STAGES,
    *,
    density: str = "release",
    world: Path | None = None,
    tasks: list[str] | None = None,
    sample_unit: str | None = None,
    epoch_modes: tuple[str, ...] = ("auto", "streamed"),
    on_stage=None,
) -> dict:
    """Measure every stage on a world of ``n`` subjects, simulated under ``root`` (and removed after), or on the
    existing ``world`` (never removed: this script did not create it). ``sample_unit="admission"`` builds the
    featurize / training cohort with one sample per admission (the issue's largest cohort)."""
    from medmodal.cohort import tasks_for
    from medmodal.cohort.runner import default_memory_limit

    every = [MAIN_TASK, *(t for t in tasks_for("mimic_iv") if t != MAIN_TASK)]
    if tasks:
        every = [t for t in every if t in tasks or t == MAIN_TASK]
    own_world = world is None
    world = root / f"world_{n}" if own_world else world
    work = root / f"out_{n}"
    work.mkdir()
    res: dict = {"subjects": n, "memory_limit_mb": _size_mb(default_memory_limit())}
    res["stages"] = _Stages(lambda: on_stage and on_stage(res))
    st = res["stages"]
    if own_world:
        st["simulate"] = measure("simulate", [str(world), str(n), density])
    sim = json.loads((world / "simulation.json").read_text())
    res["subjects"], res["density"] = sim["subjects"], sim.get("density") or "tasks"
    res["events"] = events_rows(world)
    res["densities"] = densities(world)
    counts = sim["row_counts"]
    res["admissions"] = counts["hosp/admissions.csv.gz"]
    st["scan floor"] = measure(
        "floor", [str(world / "hosp" / "labevents.csv.gz"), str(world / "icu" / "chartevents.csv.gz")]
    )
    for task in every if "tasks" in stages else (MAIN_TASK,) if {"featurize", "epoch"} & set(stages) else ():
        st[f"cohort {task}"] = measure("cohort", [str(world), task, str(work / task)])
        wall = st[f"cohort {task}"]["wall"]
        console.print(f"{res['subjects']:,} subjects: cohort {task} {wall:.1f} s", highlight=False)
    if "all" in stages:
        st["cohort --task all"] = measure("cohort", [str(world), "all", str(work / "all")])
    cohort = work / MAIN_TASK
    if sample_unit and {"featurize", "epoch"} & set(stages):
        cohort = work / f"{MAIN_TASK}_{sample_unit}"
        name = f"cohort {MAIN_TASK} (sample_unit={sample_unit})"
        st[name] = measure("cohort", [str(world), MAIN_TASK, str(cohort), json.dumps({"sample_unit": sample_unit})])
    if cohort.is_dir():
        rows = json.loads((cohort / "manifest.json").read_text())["row_counts"]
        res["samples"], res["timeseries_rows"] = rows["cohort"], rows["timeseries"]
    if {"featurize", "epoch"} & set(stages):
        st["featurize structured"] = measure("featurize", [str(cohort), str(work / "store")])
    if "epoch" in stages:
        if "auto" in epoch_modes:  # precomputed inputs up to DENSE_INPUT_BYTES, streamed beyond
            st["train one epoch"] = measure("epoch", [str(cohort), str(work / "store"), str(work / "run"), "auto"])
        if "streamed" in epoch_modes:
            st["train one epoch, streamed"] = measure(
                "epoch", [str(cohort), str(work / "store"), str(work / "run_streamed"), "streamed"]
            )
    if pyhealth and "pyhealth" in stages:
        st["PyHealth 1.1.6 readmission"] = measure("pyhealth", [str(world / "hosp")], python=pyhealth)
    res["budgets"] = budgets(res)
    if own_world:
        shutil.rmtree(world, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return res


def budgets(res: dict) -> dict[str, float]:
    """Each stage's memory budget: a build its DuckDB limit plus a constant; featurize and training 4 GB."""
    limit = res["memory_limit_mb"]
    return {
        k: (limit + COHORT_CONSTANT_MB if k.startswith("cohort") else STAGE_BUDGET_MB)
        for k in res["stages"]
        if k.startswith(("cohort", "featurize", "train"))
    }


def _size_mb(text: str) -> float:
    units = {"KB": 1 / 1024, "MB": 1, "GB": 1024, "TB": 1024**2}
    for u, f in units.items():
        if text.upper().endswith(u):
            return float(text[: -len(u)]) * f
    return float(text) / MB


def _cost(s: dict) -> float:
    """CPU seconds of the stage's process tree (wall where an old --json lacks them): on a machine shared with
    other jobs, CPU time is what a stage costs; wall time measures the neighbours too."""
    return s.get("cpu") or s["wall"]


def world_table(r: dict) -> Table:
    st = r["stages"]
    floor = _cost(st["scan floor"])
    one = _cost(st[f"cohort {MAIN_TASK}"]) if f"cohort {MAIN_TASK}" in st else math.nan
    ph = _cost(st["PyHealth 1.1.6 readmission"]) if "PyHealth 1.1.6 readmission" in st else None
    t = Table(
        title=f"{r['subjects']:,} subjects: {r['events']:,} events rows, {r['admissions']:,} admissions, "
        f"{r.get('samples', 0):,} {MAIN_TASK} samples (DuckDB limit {r['memory_limit_mb'] / 1024:.1f} GB); "
        "ratios of CPU seconds"
    )
    d = r.get("densities")
    if d:
        t.caption = (
            f"density '{r.get('density', 'tasks')}': {d['icu_stays_per_admission']:.3f} ICU stays per admission "
            f"(v3.1 0.173), {d['chartevents_per_icu_hour']:.1f} chartevents per ICU hour (v3.1 ~51.9), "
            f"{d['chartevents_per_stay']:,.0f} per stay (4,584), {d['labevents_per_admission']:.0f} labevents per "
            "admission (290)"
        )
    cols = ("stage", "wall s", "CPU s", "peak RSS MB", "of it not file-backed", "budget MB", "events rows/CPU s")
    cols += ("× scan floor", "× one task")
    for col in cols:
        t.add_column(col, justify="right")
    if ph:
        t.add_column("× PyHealth", justify="right")
    for name, s in st.items():
        budget = r.get("budgets", budgets(r)).get(name)
        scans = name.startswith(("cohort", "scan", "PyHealth"))
        row = [
            name,
            f"{s['wall']:.1f}",
            f"{_cost(s):.1f}",
            f"{s['peak_mb']:,.0f}",
            f"{s['peak_anon_mb']:,.0f}" if "peak_anon_mb" in s else "",
            f"{budget:,.0f}" if budget else "",
            f"{r['events'] / _cost(s):,.0f}" if scans else "",
            f"{_cost(s) / floor:.2f}" if scans else "",
            f"{_cost(s) / one:.2f}" if name.startswith("cohort") else "",
        ]
        if ph:
            row.append(f"{_cost(s) / ph:.3f}" if name.startswith("cohort") else "")
        t.add_row(*row)
    return t


def fit(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """y = fixed + per_row * x by least squares (a start-up cost plus a cost per events row); None from one size.
    Affine rather than a power law: at small sizes the fixed cost (imports, audits, writing the outputs) would
    read as sub-linear growth and under-project the full size."""
    if len(set(xs)) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)
    return my - slope * mx, slope


def projection_table(results: list[dict]) -> Table | None:
    """Cohort stages grow with the events rows scanned; featurize and training with the samples (projected to
    one sample per admission of v3.1, the largest cohort a task can have)."""
    if len({r["events"] for r in results}) < 2:
        return None
    t = Table(
        title=f"fitted growth (fixed + per unit), projected to MIMIC-IV v3.1 ({V31_EVENTS:,} events rows; "
        f"{V31_ADMISSIONS:,} samples)"
    )
    for col in ("stage", "unit", "CPU s per M units", "projected CPU", "MB per M units", "projected peak RSS"):
        t.add_column(col, justify="right")
    t.add_column("× scan floor", justify="right")
    floor = fit([r["events"] for r in results], [_cost(r["stages"]["scan floor"]) for r in results])
    floor_v31 = floor[0] + floor[1] * V31_EVENTS
    for name in results[0]["stages"]:
        if name == "simulate" or any(name not in r["stages"] for r in results):
            continue
        by_samples = name.startswith(("featurize", "train"))
        xs = [r["samples"] if by_samples else r["events"] for r in results]
        target = V31_ADMISSIONS if by_samples else V31_EVENTS
        w0, w1 = fit(xs, [_cost(r["stages"][name]) for r in results])
        m0, m1 = fit(xs, [r["stages"][name]["peak_mb"] for r in results])
        wall, mem = w0 + w1 * target, max(m0 + m1 * target, 0.0)
        capped = ""
        if name.startswith("cohort"):  # DuckDB fills its buffer pool up to the limit, then spills: a ceiling
            limit = max(r["memory_limit_mb"] for r in results)
            over = max(max(0.0, r["stages"][name]["peak_mb"] - r["memory_limit_mb"]) for r in results)
            if mem > limit + over:
                mem, capped = limit + over, " (limit)"
        t.add_row(
            name,
            "samples" if by_samples else "events",
            f"{w1 * 1e6:.2f}",
            f"{wall / 60:,.1f} min",
            f"{m1 * 1e6:,.1f}",
            f"{mem / 1024:,.2f} GB{capped}",
            "" if by_samples else f"{wall / floor_v31:.2f}",
        )
    return t


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", nargs="+", type=int, default=[10_000, 30_000])
    ap.add_argument("--full", action="store_true", help="also a world with MIMIC-IV v3.1's admissions (hours)")
    ap.add_argument("--pyhealth", type=Path, default=None, help="venv for PyHealth 1.1.6 (created if absent)")
    ap.add_argument("--tmp", type=Path, default=None, help="where worlds are written (default: system temp)")
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="a subset of the stages")
    ap.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    ap.add_argument("--from-json", type=Path, nargs="+", default=None, help="print the tables of earlier --json runs")
    ap.add_argument(
        "--density",
        choices=("release", "tasks"),
        default="release",
        help="simulate MIMIC-IV v3.1's rows per stay/admission (default) or only the items tasks read",
    )
    ap.add_argument("--world", type=Path, default=None, help="measure this existing simulated world (kept) instead")
    ap.add_argument("--tasks", nargs="+", default=None, help="build only these tasks (readmission_30d always)")
    ap.add_argument(
        "--sample-unit", default=None, help="'admission': featurize and train on one readmission sample per admission"
    )
    ap.add_argument(
        "--epoch-modes",
        nargs="+",
        choices=("auto", "streamed"),
        default=["auto", "streamed"],
        help="the training epochs to time: the default input path and/or inputs forced to stream from the map",
    )
    args = ap.parse_args(argv)
    console = Console(width=180)
    if args.from_json:
        results = sorted((r for p in args.from_json for r in json.loads(p.read_text())), key=lambda r: r["events"])
        for r in results:
            console.print(world_table(r))
        if (proj := projection_table(results)) is not None:
            console.print(proj)
        return
    sizes = [] if args.world else list(args.subjects)
    if args.full:  # ~546k admissions: 1.76 admissions per subject at release density, 1.7 with tasks only
        sizes.append(310_000 if args.density == "release" else 320_000)
    pyhealth = ensure_pyhealth(args.pyhealth) if args.pyhealth else None
    load = os.getloadavg()[0]
    console.print(f"{os.cpu_count()} CPUs, load average {load:.1f} at start (compare ratios, not seconds)")
    root = Path(tempfile.mkdtemp(prefix="cohort-scale-", dir=args.tmp))
    results = []
    try:

        def save(partial: dict) -> None:  # after every stage: results so far plus the world in progress
            if args.json:
                args.json.write_text(json.dumps([*results, partial], indent=1))

        kw = {"density": args.density, "tasks": args.tasks, "sample_unit": args.sample_unit}
        kw |= {"epoch_modes": tuple(args.epoch_modes), "on_stage": save}
        runs = [(n, None) for n in sizes] + ([(0, args.world)] if args.world else [])
        for n, world in runs:
            results.append(run_world(n, root, pyhealth, console, args.stages, world=world, **kw))
            console.print(world_table(results[-1]))
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if (proj := projection_table(results)) is not None:
        console.print(proj)


if __name__ == "__main__":
    main()
