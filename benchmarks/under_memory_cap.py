"""Run one command inside a memory cgroup with a hard limit; print whether it finished, and what it held.

    python benchmarks/under_memory_cap.py --limit 4GiB -- medmodal train COHORT --store STORE --out RUN --epochs 1

Why: a stage that memory-maps its inputs (training reads the store through ``mmap``) shows the mapped file's pages
in its RSS, so ``/usr/bin/time`` reports more than the stage needs; those pages are page cache the kernel drops
under pressure. A cgroup charges page cache to the group as well, so finishing under the limit is the evidence
that the stage fits a machine or a node capped there. Prints: the exit code, wall seconds, the peak anonymous
memory of the command's processes (``RssAnon`` summed, sampled every 0.25 s) and the group's peak usage and
limit hits. Needs a writable cgroup (v2 ``memory.max`` or v1 ``memory.limit_in_bytes``; root in most containers).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

UNITS = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str) -> int:
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    return int(float(t[:-1]) * UNITS[t[-1]]) if t and t[-1] in UNITS else int(t)


def own_cgroup() -> tuple[Path, str]:
    """(this process's memory cgroup directory, 'v1' or 'v2')."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory") / path.lstrip("/"), "v1"
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return Path("/sys/fs/cgroup") / line[3:].lstrip("/"), "v2"
    raise SystemExit("error: no memory cgroup found in /proc/self/cgroup")


def anon_kb(pids: list[str]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    total += int(line.split()[1])
        except OSError:  # exited between listing and reading
            pass
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", default="4GiB", help="the group's hard memory limit (default 4GiB)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = ap.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        ap.error("give the command after --")
    limit = parse_size(args.limit)
    parent, version = own_cgroup()
    group = parent / f"medmodal-cap-{os.getpid()}"
    try:
        group.mkdir()
    except OSError as err:
        raise SystemExit(f"error: {parent}: cannot create a child cgroup ({err.strerror}); run as root") from None
    try:
        limit_file = group / ("memory.limit_in_bytes" if version == "v1" else "memory.max")
        limit_file.write_text(str(limit))
        if version == "v2":
            (group / "memory.swap.max").write_text("0") if (group / "memory.swap.max").exists() else None
        procs = group / "cgroup.procs"
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, preexec_fn=lambda: procs.write_text(str(os.getpid())))
        peak_anon = 0
        while proc.poll() is None:
            peak_anon = max(peak_anon, anon_kb(procs.read_text().split()))
            time.sleep(0.25)
        wall = time.perf_counter() - t0
        if version == "v1":
            peak = int((group / "memory.max_usage_in_bytes").read_text())
            hits = int((group / "memory.failcnt").read_text())
        else:
            peak = int((group / "memory.peak").read_text()) if (group / "memory.peak").exists() else -1
            events = dict(line.split() for line in (group / "memory.events").read_text().splitlines())
            hits = int(events.get("max", 0))
        print(
            f"exit {proc.returncode}; wall {wall:.1f} s; limit {limit / 2**30:.2f} GiB (cgroup {version}); "
            f"group peak {peak / 2**30:.2f} GiB (page cache included); reclaim at the limit {hits:,} times; "
            f"peak anonymous memory {peak_anon / 2**20:.2f} GiB"
        )
        return proc.returncode
    finally:
        time.sleep(0.5)  # the group can be removed once its last process has gone
        group.rmdir()


if __name__ == "__main__":
    sys.exit(main())
