"""How fast and how lean the simulator is: rows/s and peak memory at growing sizes (prints a table).

    python benchmarks/simulate_scale.py                      # MIMIC-IV at 1k, 10k, 100k subjects (no pixels)
    python benchmarks/simulate_scale.py --subjects 2000 --images --source mimic_iv eicu adni

Each run is a fresh child process so its peak RSS (ru_maxrss, all threads) is its own. The claim under test is
the one in docs/simulator.md: memory stays bounded by one chunk of subjects whatever the total size, and
100k MIMIC-IV subjects (tens of millions of chartevents rows) finish on a 2-core machine in minutes.
Not run by the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

CHILD = """
import json, resource, sys, time
from pathlib import Path
from medmodal.simulate import simulate
source, out, n, images, size = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5])
density = sys.argv[6] if len(sys.argv) > 6 and sys.argv[6] else None
t = time.perf_counter()
simulate(source, out, subjects=n, seed=0, images=images, image_size=size, density=density)
wall = time.perf_counter() - t
rows = json.loads((out / "simulation.json").read_text())["row_counts"]
size_b = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
n_img = sum(1 for p in (out / "cxr" / "files").rglob("*") if p.is_file()) if (out / "cxr" / "files").exists() else 0
print(json.dumps({"wall": wall, "rows": rows, "bytes": size_b, "images": n_img,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(source: str, subjects: int, images: bool, image_size: int, root: Path, density: str = "") -> dict:
    out = root / f"{source}_{subjects}_{int(images)}"
    res = subprocess.run(
        [sys.executable, "-c", CHILD, source, str(out), str(subjects), str(int(images)), str(image_size), density],
        capture_output=True,
        text=True,
        check=True,
    )
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", nargs="+", default=["mimic_iv"])
    ap.add_argument("--subjects", nargs="+", type=int, default=[1000, 10_000, 100_000])
    ap.add_argument("--images", action="store_true", help="also write CXR pixel files")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--tmp", type=Path, default=None, help="where to write (default: system temp)")
    ap.add_argument("--density", default="", help="mimic_iv: 'release' for MIMIC-IV v3.1's rows per stay/admission")
    args = ap.parse_args()
    console = Console(width=160)
    table = Table(
        title=f"medmodal simulate: throughput and peak memory ({os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f} at start)"
    )
    for col in (
        "source",
        "subjects",
        "images",
        "wall s",
        "rows",
        "rows/s",
        "largest table",
        "MB on disk",
        "peak RSS MB",
    ):
        table.add_column(col, justify="right")
    root = Path(tempfile.mkdtemp(prefix="simscale-", dir=args.tmp))
    try:
        for source in args.source:
            for n in args.subjects:
                r = run(source, n, args.images, args.image_size, root, args.density if source == "mimic_iv" else "")
                total = sum(r["rows"].values())
                big, big_n = max(r["rows"].items(), key=lambda kv: kv[1])
                table.add_row(
                    source,
                    f"{n:,}",
                    f"{r['images']:,}" if args.images else "off",
                    f"{r['wall']:.1f}",
                    f"{total:,}",
                    f"{total / r['wall']:,.0f}",
                    f"{Path(big).name.split('.')[0]} {big_n:,}",
                    f"{r['bytes'] / 1e6:,.0f}",
                    f"{r['maxrss_mb']:,.0f}",
                )
                console.print(
                    f"{source} {n:,}: {r['wall']:.1f} s, {total / r['wall']:,.0f} rows/s, "
                    f"peak RSS {r['maxrss_mb']:,.0f} MB",
                    highlight=False,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    console.print(table)


if __name__ == "__main__":
    main()
