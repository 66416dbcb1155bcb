"""What validating raw rows where they enter costs: the declared FileSpec rules (cohort/rules.py) against the
whole build of one task, both measured in the same run (prints a table of ratios).

    python benchmarks/raw_checks.py                                   # simulated MIMIC-IV, eICU, ADNI at 5k
    python benchmarks/raw_checks.py --subjects 20000 --source mimic_iv
    python benchmarks/raw_checks.py --raw data/mimic-iv-demo-2.2 --source mimic_iv   # a real download

The checks scan each declared table once (grouped by its key); event tables declare no rules, so the cost grows
with patients / admissions / stays / notes, not with chartevents. Not run by the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from medmodal.cohort import build_cohort
from medmodal.cohort.base import SOURCES
from medmodal.cohort.rules import check_files
from medmodal.cohort.runner import connect, locate, register_views
from medmodal.simulate import simulate

TASK = {"mimic_iv": "readmission_30d", "eicu": "icu_mortality_24h", "adni": "diagnosis_3class"}


def time_checks(source: str, raw: Path, work: Path, threads: int) -> tuple[float, int, int]:
    """(seconds, files with rules, rows in them) for check_files alone on a fresh connection."""
    src = SOURCES.get(source)()
    located = locate(src.files, src.resolve_roots(raw))
    con = connect(work, memory_limit=None, threads=threads)
    try:
        register_views(con, located)
        checked = [it for it in located if it.path is not None and (it.spec.key or it.spec.ordered)]
        rows = sum(con.execute(f"SELECT count(*) FROM {it.spec.view}").fetchone()[0] for it in checked)
        t = time.perf_counter()
        check_files(con, located)
        return time.perf_counter() - t, len(checked), rows
    finally:
        con.close()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", nargs="+", default=list(TASK))
    ap.add_argument("--subjects", type=int, default=5000)
    ap.add_argument("--raw", type=Path, default=None, help="use this raw folder instead of simulating")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    console = Console(width=140)
    table = Table(title=f"raw-row checks vs the whole build ({args.threads} threads, {os.cpu_count()} CPUs)")
    for col in ("source", "input", "files checked", "rows checked", "checks s", "build s", "checks / build"):
        table.add_column(col, justify="right")
    root = Path(tempfile.mkdtemp(prefix="medmodal-bench-checks-"))
    try:
        for source in args.source:
            raw = args.raw
            if raw is None:
                raw = simulate(source, root / f"raw_{source}", subjects=args.subjects, seed=0, images=False)
            checks, n_files, n_rows = time_checks(source, raw, root / "work", args.threads)
            t = time.perf_counter()
            build_cohort(source, raw, TASK[source], root / f"out_{source}", threads=args.threads)
            build = time.perf_counter() - t
            what = str(raw) if args.raw else f"simulated, {args.subjects:,} subjects"
            table.add_row(
                source, what, str(n_files), f"{n_rows:,}", f"{checks:.2f}", f"{build:.2f}", f"{checks / build:.1%}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    console.print(table)


if __name__ == "__main__":
    main()
