"""The benchmark page: in-distribution and per-mechanism (OOD) scores per method, and the difference of every
method to erm on the same samples, with the benchmark's own 95% intervals.

``read_benchmark`` is the only place that knows the shift benchmark's output format (benchmarks/shift.py:
summary.json's ``cells``, one per strength × scoring set × method × variant); everything else works on the two
tidy frames it returns, so a new format means changing that one function. The page shows the default
confounder strength and each method's selected option set; the ablations, the target-domain selection and the
strength sweep are in the benchmark's benchmark.md and results.csv.

Intervals: the differences to erm carry the benchmark's paired two-level bootstrap interval (worlds, then
samples within each world); the absolute scores are means over worlds and seeds, without an interval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from medmodal.common import MedmodalError
from medmodal.report import figures
from medmodal.report.html import Facts, Heading, Image, Page, Section, Table, Text, interval

METRICS = (("auroc", "AUROC"), ("auprc", "AUPRC"))
BASELINE = "erm"
SPLIT_NAMES = {
    "id": "ID (train environment, test split)",
    "shifted": "shifted (both C effects flipped; all samples)",
    "outcome_shift": "outcome_shift (C → outcome flipped)",
    "order_shift": "order_shift (C → ordering flipped)",
    "decoupled": "decoupled (C without effect)",
}


@dataclass(frozen=True)
class Benchmark:
    """cells: backbone, framework, label, metric, split (id | a mechanism), value, ci_low, ci_high, n;
    diffs: the same columns for method − erm on the same samples (erm rows absent); meta: config and notes."""

    cells: pl.DataFrame
    diffs: pl.DataFrame
    meta: dict[str, Any]


def read_benchmark(path: str | Path) -> Benchmark:
    """The shift benchmark's output folder -> tidy frames (the one function to adapt to a new format)."""
    d = Path(path)
    try:
        summary = json.loads((d / "summary.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MedmodalError(f"unreadable benchmark output ({type(err).__name__})", path=d) from None
    rows, cfg = summary.get("cells"), summary.get("config", {})
    if not isinstance(rows, list) or (rows and "vs_erm" not in rows[0]) or "c_outcome" not in cfg:
        raise MedmodalError("summary.json has no per-method 'cells' with 'vs_erm' (another benchmark format?)", path=d)
    c0, label = cfg["c_outcome"][0], summary.get("primary", (summary.get("labels") or ["?"])[0])
    backbone = cfg.get("backbone", "?")
    n_runs = len(cfg.get("worlds", [])) * len(cfg.get("seeds", []))
    cells, diffs = [], []
    for r in rows:
        if r["c_outcome"] != c0 or r["variant"] != "selected":
            continue
        for metric, _ in METRICS:
            e = r["vs_erm"][metric]
            cells.append((backbone, r["method"], label, metric, r["scoring"], e["a"], None, None, n_runs))
            if r["method"] != BASELINE:
                diffs.append(
                    (backbone, r["method"], label, metric, r["scoring"], e["delta"], e["ci_low"], e["ci_high"], n_runs)
                )
    schema = {
        "backbone": pl.Utf8,
        "framework": pl.Utf8,
        "label": pl.Utf8,
        "metric": pl.Utf8,
        "split": pl.Utf8,
        "value": pl.Float64,
        "ci_low": pl.Float64,
        "ci_high": pl.Float64,
        "n": pl.Int64,
    }
    oracle = summary.get("oracle", {}).get(f"c{c0:g}", {})
    meta = {
        "config": cfg,
        "labels": [label],
        "splits": ["id", *cfg.get("mechanisms", [])],
        "oracle": {s: {f"{label}.causal_risk.{k}": v for k, v in o.items()} for s, o in oracle.items()},
        "seconds": summary.get("seconds_this_call"),
        "interval": "paired two-level bootstrap 95% (worlds, then samples) for the differences to erm; "
        "scores are means over worlds × seeds",
        "n_rows": len(rows),
    }
    return Benchmark(pl.DataFrame(cells, schema, orient="row"), pl.DataFrame(diffs, schema, orient="row"), meta)


def _series(frame: pl.DataFrame, keys: list[tuple[str, str]], split: str, metric: str, name: str) -> figures.Series:
    idx = {
        (r["backbone"], r["framework"]): r
        for r in frame.filter((pl.col("split") == split) & (pl.col("metric") == metric)).iter_rows(named=True)
    }
    pick = [idx.get(k, {}) for k in keys]
    return figures.Series(
        name, [r.get("value") for r in pick], [r.get("ci_low") for r in pick], [r.get("ci_high") for r in pick]
    )


def benchmark_page(path: str | Path) -> Page:
    d = Path(path)
    b = read_benchmark(d)
    cfg = b.meta["config"]
    title = "Shift benchmark"
    subtitle = [
        f"task {cfg.get('task', '?')}, {cfg.get('subjects', '?')} simulated subjects per environment, "
        f"{len(cfg.get('worlds', []))} worlds × seeds {cfg.get('seeds', '?')}, {cfg.get('epochs', '?')} epochs, "
        f"confounder strength c_outcome {cfg.get('c_outcome', ['?'])[0]}",
        f"intervals: {b.meta['interval']}",
    ]
    summary = Section("Summary", "summary").add(
        Text(
            "Every method is selected on the training environment's validation split, trained on the train "
            "environment of each world and scored on its test split (ID) and on every sample of each mechanism's "
            "cohort (docs/simulator.md: which of the confounder's effects change). Ablations, target-domain "
            "selection and the strength sweep: benchmark.md and results.csv in the same folder."
        ),
        Facts(
            [(k, json.dumps(v) if isinstance(v, dict | list) else str(v)) for k, v in cfg.items()]
            + [("benchmark time (s)", str(b.meta.get("seconds")))]
        ),
    )
    sections = [summary]
    for label in b.meta["labels"]:
        sections.append(_label_section(b, label))
    return Page("benchmark", title, subtitle, str(d), sections)


def _label_section(b: Benchmark, label: str) -> Section:
    s = Section(f"{label}", f"label-{label}")
    cells = b.cells.filter(pl.col("label") == label)
    diffs = b.diffs.filter(pl.col("label") == label)
    keys = list(dict.fromkeys((r["backbone"], r["framework"]) for r in cells.iter_rows(named=True)))
    rows = [f"{bb} · {fw}" for bb, fw in keys]
    splits = b.meta["splits"]
    panels = [
        figures.ForestPanel(f"{name} (0–1, mean)", [_series(cells, keys, sp, m, sp) for sp in splits])
        for m, name in METRICS
    ]
    s.add(
        Heading("ID vs OOD"),
        Image(
            figures.forest(rows, panels, f"{label}: ID and per mechanism", ylabel="backbone · method"),
            f"ID and per-mechanism scores per method for {label}",
            "; ".join(SPLIT_NAMES.get(sp, sp) for sp in splits),
        ),
        _table(cells, keys, "value", splits),
    )
    oracle = [(env, o) for env, o in b.meta["oracle"].items() if f"{label}.causal_risk.auroc" in o]
    if oracle:
        s.add(
            Text(
                "Causal-risk oracle (truth.parquet, U only) on the same samples, mean over worlds: "
                + "; ".join(
                    f"{env}: AUROC {o[f'{label}.causal_risk.auroc']:.3f} / AUPRC {o[f'{label}.causal_risk.auprc']:.3f}"
                    for env, o in oracle
                )
                + "."
            )
        )
    dkeys = [k for k in keys if k[1] != BASELINE]
    if dkeys and not diffs.is_empty():
        dpanels = [
            figures.ForestPanel(
                f"{name} difference to erm (95% CI)",
                [_series(diffs, dkeys, sp, m, sp) for sp in splits],
                0.0,
                "no difference",
            )
            for m, name in METRICS
        ]
        s.add(
            Heading(f"Difference to {BASELINE} on the same samples"),
            Image(
                figures.forest(
                    [f"{bb} · {fw}" for bb, fw in dkeys],
                    dpanels,
                    f"{label}: method − erm",
                    ylabel="backbone · method",
                ),
                f"Differences to erm for {label}",
                "Right of the dashed line: better than erm.",
            ),
            _table(diffs, dkeys, "difference", splits),
        )
    return s


def _table(frame: pl.DataFrame, keys: list[tuple[str, str]], what: str, splits: list[str]) -> Table:
    idx = {(r["backbone"], r["framework"], r["metric"], r["split"]): r for r in frame.iter_rows(named=True)}
    out = []
    for bb, fw in keys:
        row = [bb, fw]
        n = ""
        for m, _ in METRICS:
            for sp in splits:
                r = idx.get((bb, fw, m, sp))
                row.append("n/a" if r is None else interval(r["value"], r["ci_low"], r["ci_high"]))
                n = n or ("" if r is None else str(r["n"]))
        out.append([*row, n])
    cols = [
        "backbone",
        "framework",
        *(f"{sp} {name} {what}" for _, name in METRICS for sp in splits),
        "runs",
    ]
    return Table(cols, out, numeric=tuple(range(2, 3 + 2 * len(splits))))
