"""``medmodal report PATH --out report.html``: decide what PATH is, build its page, write one HTML file.

A folder is recognised by the files its stage's contract requires, and by the keys in their JSON (so a
stray metrics.json does not pass for a run):

=========== ======================================================= ============================================
kind        files                                                   JSON keys
=========== ======================================================= ============================================
cohort      manifest.json, cohort.parquet, modalities.parquet      manifest: source, task, modalities, labels
run         metrics.json, predictions.parquet (+ config.json, or    metrics: tasks
            an ``evaluate`` output naming its run)
benchmark   summary.json, results.csv                               summary: cells, labels
=========== ======================================================= ============================================
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medmodal.common import MedmodalError

KINDS = ("cohort", "run", "benchmark")
_FILES = {
    "cohort": ("manifest.json", ("cohort.parquet", "modalities.parquet"), ("source", "task", "modalities", "labels")),
    "run": ("metrics.json", ("predictions.parquet",), ("tasks",)),
    "benchmark": ("summary.json", ("results.csv",), ("cells", "labels")),
}


def _keys(path: Path) -> set[str]:
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MedmodalError(f"unreadable JSON ({type(err).__name__})", path=path) from None
    return set(obj) if isinstance(obj, dict) else set()


def _kind_of(d: Path) -> str | None:
    for kind, (js, files, keys) in _FILES.items():
        if (d / js).is_file() and all((d / f).is_file() for f in files):
            have = _keys(d / js)
            missing = [k for k in keys if k not in have]
            if missing:
                raise MedmodalError(f"looks like a {kind} folder but has no '{missing[0]}' key", path=d / js)
            return kind
    return None


def detect_kind(path: str | Path) -> str:
    """'cohort' | 'run' | 'benchmark', or a one-line error saying what was looked for."""
    d = Path(path)
    if not d.exists():
        raise MedmodalError("not found", path=d)
    if not d.is_dir():
        raise MedmodalError("is a file; give the cohort, run or benchmark folder", path=d)
    kind = _kind_of(d)
    if kind:
        return kind
    below = sorted(p.name for p in d.iterdir() if p.is_dir() and _kind_of(p))
    if below:
        shown = ", ".join(below[:5]) + (", ..." if len(below) > 5 else "")
        raise MedmodalError(f"holds {len(below)} report-able folders ({shown}); give one of them", path=d)
    raise MedmodalError(
        "not a cohort, run or benchmark folder (looked for manifest.json + cohort.parquet + modalities.parquet, "
        "metrics.json + predictions.parquet, summary.json + results.csv)",
        path=d,
    )


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def build_page(path: str | Path, *, n_boot: int = 200, tsne: dict[str, Any] | None = None):
    """The Page for PATH (not yet written). ``tsne``: options of models.report.tsne_streams (truth or color_by,
    split, ...), only for a run; its t-SNE section is then computed rather than read from RUN_DIR/report."""
    kind = detect_kind(path)
    if tsne is not None and kind != "run":
        raise MedmodalError(f"--truth / --color-by apply to a run folder, and this is a {kind} folder", path=path)
    if kind == "cohort":
        from medmodal.report.cohort_page import cohort_page

        return cohort_page(path)
    if kind == "run":
        from medmodal.models.report import tsne_streams
        from medmodal.report.run_page import run_page

        if tsne is not None and not (Path(path) / "config.json").is_file():
            raise MedmodalError(
                "is an evaluate output; for the t-SNE give the trained run folder (with --cohort / --store to "
                "embed another cohort)",
                path=path,
            )

        return run_page(path, n_boot=n_boot, tsne=None if tsne is None else tsne_streams(path, **tsne))
    from medmodal.report.benchmark_page import benchmark_page

    return benchmark_page(path)


def write_report(
    path: str | Path,
    out: str | Path,
    *,
    overwrite: bool = False,
    n_boot: int = 200,
    tsne: dict[str, Any] | None = None,
) -> tuple[Path, str]:
    """Write PATH's page to ``out`` (one self-contained .html); returns (out, kind)."""
    from medmodal.report.html import write_page

    path, out = Path(path), Path(out)
    if n_boot < 0:
        raise MedmodalError(f"must be >= 0, got {n_boot}", field="--n-boot")
    if path.is_dir() and _inside(out, path):
        raise MedmodalError("is inside the folder it reports on; write the report elsewhere", path=out, field="--out")
    if out.exists() and not overwrite:  # before any work: building a run page can take a while
        raise MedmodalError("already exists (pass --overwrite to replace it)", path=out)
    page = build_page(path, n_boot=n_boot, tsne=tsne)
    return write_page(page, out, overwrite=overwrite), page.kind
