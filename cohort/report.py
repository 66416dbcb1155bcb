"""``format_report``: the attrition table and the missingness-pattern table of a cohort directory.

The pattern table (pattern code, modalities present, n, share, label rate per label) is the view that shows
whether missingness is informative: if the label rate differs a lot across patterns, a model can learn the
outcome from *which* modalities exist, and a debiasing framework has something to correct.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from rich.console import Group
from rich.table import Table
from rich.text import Text

from medmodal.common import MedmodalError
from medmodal.contracts import pattern_modalities


def _read(cohort_dir: Path, name: str, columns: list[str] | None = None) -> pl.DataFrame:
    path = cohort_dir / f"{name}.parquet"
    if not path.is_file():
        raise MedmodalError("missing (not a complete cohort directory)", path=path)
    try:
        return pl.read_parquet(path, columns=columns)
    except Exception as err:  # truncated or foreign file: one line naming it, never a polars traceback
        raise MedmodalError(f"unreadable Parquet ({type(err).__name__})", path=path) from None


def _manifest(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MedmodalError(f"unreadable JSON ({type(err).__name__})", path=path) from None


def _rates(man: dict) -> dict[str, pl.Expr]:
    """``<label>_rate`` per binary label; ``<label>_<class>_rate`` per class of a multiclass label (a mean class
    index would mean nothing)."""
    out: dict[str, pl.Expr] = {}
    for lab in man["labels"]:
        name = lab["name"]
        if lab.get("kind") == "multiclass":
            for i, cls in enumerate(lab.get("classes") or []):
                out[f"{name}_{cls}_rate"] = (pl.col(name) == i).cast(pl.Float64).mean()
        else:
            out[f"{name}_rate"] = pl.col(name).cast(pl.Float64).mean()
    return {k: e.alias(k) for k, e in out.items()}


def pattern_table(cohort_dir: str | Path) -> pl.DataFrame:
    """One row per pattern: pattern, modalities, n, share, <label>_rate for every label (sorted by n desc);
    a multiclass label gets one <label>_<class>_rate column per class."""
    d = Path(cohort_dir)
    man = _manifest(d / "manifest.json")
    labels = [lab["name"] for lab in man["labels"]]
    rates = _rates(man)
    mods = _read(d, "modalities", ["sample_id", "pattern"])
    cohort = _read(d, "cohort", ["sample_id", *labels])
    df = mods.join(cohort, on="sample_id", how="left")
    n_total = max(df.height, 1)
    out = (
        df.group_by("pattern")
        .agg([pl.len().alias("n"), *rates.values()])
        .with_columns(
            (pl.col("n") / n_total).alias("share"),
            pl.col("pattern")
            .map_elements(
                lambda p: "+".join(pattern_modalities(p, man["modalities"])) or "(none)", return_dtype=pl.Utf8
            )
            .alias("modalities"),
        )
        .sort(["n", "pattern"], descending=[True, False])
    )
    return out.select(["pattern", "modalities", "n", "share", *rates])


def format_report(cohort_dir: str | Path) -> Group:
    d = Path(cohort_dir)
    path = d / "manifest.json"
    if not path.is_file():
        raise MedmodalError("not a cohort directory (manifest.json missing)", path=d)
    man = _manifest(path)
    cohort = _read(d, "cohort", ["split"])
    split_counts = cohort["split"].value_counts().sort("split")
    head = Text.assemble(
        (f"{man['source']} / {man['task']}", "bold"),
        f"  dataset {man.get('dataset_version', '?')}  cohort_id {man.get('cohort_id', '?')}\n",
        f"prediction time: {man.get('prediction_time_rule', '?')}\n",
        "splits: " + ", ".join(f"{r['split']} {r['count']}" for r in split_counts.iter_rows(named=True)),
    )
    protocol = man.get("split_protocol") or {}
    if not protocol.get("subject_level", True):  # a paper's sample-level split, asked for: say so every time
        head.append(
            f"\nsplit protocol {protocol.get('name')}: NOT subject-level ({protocol.get('unit')})", style="yellow"
        )
    for line in man.get("audit_warnings") or []:
        head.append(f"\naudit warning: {line}", style="yellow")
    if man.get("unavailable_modalities"):
        head.append(f"\nunavailable (files absent): {', '.join(man['unavailable_modalities'])}", style="yellow")

    att = _read(d, "attrition")
    t1 = Table(title="Attrition", title_justify="left")
    for col, just in (("step", "left"), ("description", "left"), ("n_subjects", "right"), ("n_samples", "right")):
        t1.add_column(col, justify=just, overflow="fold")
    for r in att.iter_rows(named=True):
        t1.add_row(r["step"], r["description"], f"{r['n_subjects']:,}", f"{r['n_samples']:,}")

    pt = pattern_table(d)
    rate_cols = list(_rates(man))
    bits = ", ".join(f"{i}={m}" for i, m in enumerate(man["modalities"]))
    t2 = Table(title=f"Missingness patterns: n, share and label rate per pattern (bits: {bits})", title_justify="left")
    t2.add_column("pattern", justify="right")
    t2.add_column("modalities", overflow="fold", ratio=3)
    t2.add_column("n", justify="right")
    t2.add_column("share", justify="right")
    for col in rate_cols:
        t2.add_column(f"{col.removesuffix('_rate')} rate", justify="right", overflow="fold", ratio=1)
    for r in pt.iter_rows(named=True):
        rates = ["-" if r[col] is None else f"{r[col]:.3f}" for col in rate_cols]
        t2.add_row(str(r["pattern"]), r["modalities"].replace("+", " + "), f"{r['n']:,}", f"{r['share']:.1%}", *rates)
    return Group(head, t1, t2)


def cohort_dirs(path: str | Path) -> list[Path]:
    """``path`` itself if it is a cohort directory, else its cohort subdirectories (``--task all`` output)."""
    p = Path(path)
    if (p / "manifest.json").is_file():
        return [p]
    found = sorted(d for d in p.glob("*") if (d / "manifest.json").is_file()) if p.is_dir() else []
    if not found:
        raise MedmodalError("not a cohort directory (no manifest.json here or one level below)", path=p)
    return found


def tasks_table() -> Table:
    from medmodal.cohort.base import SOURCES, TASKS, tasks_for

    t = Table(title="Sources and tasks", title_justify="left")
    t.add_column("source", no_wrap=True)
    t.add_column("task", no_wrap=True)
    for col in ("labels", "prediction time", "modalities"):
        t.add_column(col, overflow="fold")
    for s in SOURCES.names():
        src = SOURCES.get(s)
        for name in tasks_for(s):
            task = TASKS.get(name)
            mods = ", ".join(m.name for m in src.modalities if m.name in task.modalities)
            t.add_row(s, name, ", ".join(lab.name for lab in task.labels), task.prediction_time, mods)
    return t
