"""The benchmark page: in-distribution vs shifted (OOD) scores per backbone and framework, and the difference
of every framework to erm on the same backbone, each with a 95% interval.

``read_benchmark`` is the only place that knows the shift benchmark's output format (benchmarks/shift.py:
summary.json + results.csv); everything else works on the two tidy frames it returns, so a new format means
changing that one function.

With the current format (per-seed rows, no stored intervals) the intervals are over training seeds: a t interval
of the mean, mean ± t(0.975, n−1) · sd / √n, and for the differences to erm the same over the per-seed paired
differences (seed s of a framework minus seed s of erm on that backbone). With one seed there is no interval.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import t as student_t

from medmodal.common import MedmodalError
from medmodal.report import figures
from medmodal.report.html import Facts, Heading, Image, Page, Section, Table, Text, interval

METRICS = (("auroc", "AUROC"), ("auprc", "AUPRC"))
SPLITS = (("id", "ID (train environment, test split)"), ("ood", "OOD (shifted environment, test split)"))
BASELINE = "erm"


@dataclass(frozen=True)
class Benchmark:
    """cells: backbone, framework, label, metric, split (id | ood), value, ci_low, ci_high, n;
    diffs: the same columns for framework − erm on the same backbone (erm rows absent); meta: config and notes."""

    cells: pl.DataFrame
    diffs: pl.DataFrame
    meta: dict[str, Any]


def _mean_ci(v: np.ndarray) -> tuple[float, float | None, float | None]:
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, None, None
    m = float(v.mean())
    if len(v) < 2:
        return m, None, None
    half = float(student_t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return m, m - half, m + half


def read_benchmark(path: str | Path) -> Benchmark:
    """The shift benchmark's output folder -> tidy frames (the one function to adapt to a new format)."""
    d = Path(path)
    try:
        summary = json.loads((d / "summary.json").read_text())
        rows = pl.read_csv(d / "results.csv")
    except (OSError, json.JSONDecodeError, pl.exceptions.PolarsError) as err:
        raise MedmodalError(f"unreadable benchmark output ({type(err).__name__})", path=d) from None
    labels = summary.get("labels") or []
    if "selected" not in rows.columns:
        raise MedmodalError("results.csv has no 'selected' column (another benchmark format?)", path=d)
    sel = rows.filter(pl.col("selected").cast(pl.Utf8).str.to_lowercase() == "true")
    cells, diffs = [], []
    for (bb, fw), g in sel.group_by(["backbone", "framework"], maintain_order=True):
        base = sel.filter((pl.col("backbone") == bb) & (pl.col("framework") == BASELINE))
        for label in labels:
            for metric, _ in METRICS:
                for split, _ in SPLITS:
                    col = f"{split}_test.{label}.{metric}"
                    if col not in g.columns:
                        continue
                    v, lo, hi = _mean_ci(g[col].cast(pl.Float64).to_numpy())
                    cells.append((bb, fw, label, metric, split, v, lo, hi, g.height))
                    if fw == BASELINE or base.is_empty():
                        continue
                    paired = g.select("seed", col).join(base.select("seed", col), on="seed", suffix="_erm")
                    delta = (paired[col].cast(pl.Float64) - paired[f"{col}_erm"].cast(pl.Float64)).to_numpy()
                    v, lo, hi = _mean_ci(delta)
                    diffs.append((bb, fw, label, metric, split, v, lo, hi, paired.height))
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
    meta = {
        "config": summary.get("config", {}),
        "labels": labels,
        "oracle": summary.get("oracle", {}),
        "seconds": summary.get("seconds"),
        "interval": "95% t interval over training seeds (paired by seed for the differences to erm)",
        "n_rows": rows.height,
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
        f"task {cfg.get('task', '?')}, {cfg.get('subjects', '?')} simulated subjects per environment, seeds "
        f"{cfg.get('seeds', '?')}, {cfg.get('epochs', '?')} epochs",
        f"intervals: {b.meta['interval']}",
    ]
    summary = Section("Summary", "summary").add(
        Text(
            "Every backbone × framework is trained on the train environment and scored on its test split (ID) and "
            "on the shifted environment's test split (OOD), where the confounder's effect flips (docs/benchmark.md)."
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
    panels = [
        figures.ForestPanel(f"{name} (0–1, 95% CI)", [_series(cells, keys, sp, m, sp.upper()) for sp, _ in SPLITS])
        for m, name in METRICS
    ]
    s.add(
        Heading("ID vs OOD"),
        Image(
            figures.forest(rows, panels, f"{label}: ID vs OOD", ylabel="backbone · framework"),
            f"ID and OOD scores per backbone and framework for {label}",
            "ID: the train environment's test split; OOD: the shifted environment's test split.",
        ),
        _table(cells, keys, "value"),
    )
    oracle = [(env, o) for env, o in b.meta["oracle"].items() if f"{label}.causal_risk.auroc" in o]
    if oracle:
        s.add(
            Text(
                "Oracles from the simulator's truth on the same test splits: "
                + "; ".join(
                    f"{env}: causal risk AUROC {o[f'{label}.causal_risk.auroc']:.3f} / AUPRC "
                    f"{o[f'{label}.causal_risk.auprc']:.3f}, true probability AUROC {o[f'{label}.true_prob.auroc']:.3f}"
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
                [_series(diffs, dkeys, sp, m, sp.upper()) for sp, _ in SPLITS],
                0.0,
                "no difference",
            )
            for m, name in METRICS
        ]
        s.add(
            Heading(f"Difference to {BASELINE} on the same backbone"),
            Image(
                figures.forest(
                    [f"{bb} · {fw}" for bb, fw in dkeys],
                    dpanels,
                    f"{label}: framework − erm",
                    ylabel="backbone · framework",
                ),
                f"Differences to erm for {label}",
                "Right of the dashed line: better than erm.",
            ),
            _table(diffs, dkeys, "difference"),
        )
    return s


def _table(frame: pl.DataFrame, keys: list[tuple[str, str]], what: str) -> Table:
    idx = {(r["backbone"], r["framework"], r["metric"], r["split"]): r for r in frame.iter_rows(named=True)}
    out = []
    for bb, fw in keys:
        row = [bb, fw]
        n = ""
        for m, _ in METRICS:
            for sp, _ in SPLITS:
                r = idx.get((bb, fw, m, sp))
                row.append("n/a" if r is None else interval(r["value"], r["ci_low"], r["ci_high"]))
                n = n or ("" if r is None else str(r["n"]))
        out.append([*row, n])
    cols = [
        "backbone",
        "framework",
        *(f"{sp.upper()} {name} {what}" for _, name in METRICS for sp, _ in SPLITS),
        "seeds",
    ]
    return Table(cols, out, numeric=tuple(range(2, 7)))
