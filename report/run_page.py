"""The run page: how training went, how well the model discriminates and is calibrated, and for whom.

Input: a run directory (``medmodal train``: config.json, metrics.json, predictions.parquet) or an ``evaluate``
output folder (metrics.json and predictions.parquet; its config is the trained run's, found through
metrics.json's ``cohort.run_dir``). Everything comes from those files: the metrics table and the forest plots
show exactly the intervals stored in metrics.json (docs/models.md); the ROC, precision-recall and reliability
curves are recomputed from predictions.parquet with their own bootstrap bands; the t-SNE section reuses
models/report.py's computation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from medmodal.common import MedmodalError
from medmodal.report import figures
from medmodal.report.curves import pr_with_band, reliability, roc_with_band
from medmodal.report.html import Facts, Heading, Image, Page, Section, Table, Text, metric_cell, num

METRICS = (("auroc", "AUROC"), ("auprc", "AUPRC"), ("brier", "Brier"), ("ece", "ECE"))


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MedmodalError(f"unreadable JSON ({type(err).__name__})", path=path) from None


def _config(d: Path, metrics: dict) -> dict | None:
    if (d / "config.json").is_file():
        return _json(d / "config.json")
    run = (metrics.get("cohort") or {}).get("run_dir")
    if run and (Path(run) / "config.json").is_file():
        return _json(Path(run) / "config.json")
    return None


def _primary_first(metrics: dict, cfg: dict | None) -> dict:
    """metrics.json keeps tasks in key order; show them in the cohort's label order (primary label first)."""
    order = [lab["name"] for lab in (cfg or {}).get("data", {}).get("spec", {}).get("labels", [])]
    tasks = metrics.get("tasks", {})
    names = [t for t in order if t in tasks] + [t for t in tasks if t not in order]
    return {**metrics, "tasks": {t: tasks[t] for t in names}}


def report_split(metrics: dict) -> str:
    """The split with intervals and breakdowns: ``all`` for an external cohort, else ``test``."""
    return "all" if (metrics.get("cohort") or {}).get("external") else "test"


def run_page(run_dir: str | Path, *, n_boot: int = 200, tsne: dict[str, Any] | None = None) -> Page:
    """``tsne``: the result of models.report.tsne_streams, when the caller computed one."""
    d = Path(run_dir)
    metrics = _json(d / "metrics.json")
    try:
        preds = pl.read_parquet(d / "predictions.parquet")
    except Exception as err:
        raise MedmodalError(f"unreadable parquet ({type(err).__name__})", path=d / "predictions.parquet") from None
    cfg = _config(d, metrics)
    metrics = _primary_first(metrics, cfg)
    evaluated = (metrics.get("cohort") or {}).get("dir")
    name = f"{cfg['framework']['name']} / {cfg['backbone']['name']}" if cfg else d.name
    cohort = (cfg or {}).get("data", {}).get("cohort", {})
    split = report_split(metrics)
    title = f"Run {name}" + (" (evaluation)" if evaluated else "")
    subtitle = [
        f"trained on {cohort.get('source', '?')} / {cohort.get('task', '?')} ({cohort.get('cohort_id', '?')})",
    ]
    if evaluated:
        subtitle.append(f"scored on {metrics['cohort'].get('cohort_id', '?')}, split '{split}'")
    seed = int((metrics.get("bootstrap") or {}).get("seed", 0))
    sections = [
        _summary(d, metrics, cfg),
        _training(metrics),
        _metrics_table(metrics),
        _curves(metrics, preds, split, n_boot, seed),
        _groups(metrics, split),
        _streams(d, cfg, tsne),
    ]
    return Page("run", title, subtitle, str(d), sections)


def _summary(d: Path, metrics: dict, cfg: dict | None) -> Section:
    s = Section("Summary", "summary")
    if cfg is None:
        s.add(Text("The trained run's config.json was not found; only the scores are shown.", note=True))
        cfg = {}
    data = cfg.get("data", {})
    train = cfg.get("train", {})
    tr = metrics.get("training") or {}
    boot = metrics.get("bootstrap") or {}
    facts = [
        (
            "framework",
            f"{cfg.get('framework', {}).get('name', '?')} {json.dumps(cfg.get('framework', {}).get('config', {}))}",
        ),
        (
            "backbone",
            f"{cfg.get('backbone', {}).get('name', '?')} {json.dumps(cfg.get('backbone', {}).get('config', {}))}",
        ),
        (
            "training cohort",
            f"{data.get('cohort', {}).get('dir', '?')} ({data.get('cohort', {}).get('cohort_id', '?')})",
        ),
        ("feature store", data.get("store", "?")),
        ("modalities", ", ".join(m.get("name", "?") for m in data.get("spec", {}).get("modalities", [])) or "?"),
        ("samples per split", ", ".join(f"{k} {v:,}" for k, v in (data.get("n") or {}).items()) or "?"),
        ("seed / device", f"{cfg.get('seed', '?')} / {cfg.get('device', '?')}"),
        (
            "optimisation",
            ", ".join(f"{k} {train[k]}" for k in ("epochs", "batch_size", "lr", "patience") if k in train),
        ),
        (
            "bootstrap",
            f"{boot.get('n_boot', '?')} resamples, {boot.get('interval', '?')}, seed {boot.get('seed', '?')}",
        ),
        ("trained at", cfg.get("created_at", "?")),
    ]
    if tr:
        facts.insert(7, ("selected epoch", f"{tr.get('best_epoch')} of {tr.get('epochs_run')} ({tr.get('selection')})"))
    if metrics.get("cohort"):
        c = metrics["cohort"]
        facts.append(
            ("scored cohort", f"{c.get('dir', '?')} ({c.get('cohort_id', '?')}, external: {c.get('external')})")
        )
    return s.add(Facts(facts))


def _training(metrics: dict) -> Section:
    s = Section("Training curves", "training")
    tr = metrics.get("training") or {}
    if not tr.get("history"):
        return s.add(Text("No training history here (an evaluate output): see the trained run's page.", note=True))
    return s.add(
        Image(
            figures.training_curves(tr["history"], tr.get("best_epoch")),
            "Training objective, validation cross-entropy, AUROC and AUPRC per epoch",
            f"The selected epoch ({tr.get('best_epoch')}) maximised {tr.get('selection', 'validation AUPRC')}; "
            "its weights are the run's.",
        )
    )


def _metrics_table(metrics: dict) -> Section:
    s = Section("Metrics", "metrics")
    rows = []
    for task, per_split in metrics.get("tasks", {}).items():
        for split, m in per_split.items():
            o = m.get("overall", {})
            pos = o.get("n_pos", "/".join(map(str, o.get("class_counts", []))) or "")
            rows.append([task, split, f"{o.get('n', 0):,}", str(pos), *(metric_cell(o.get(k)) for k, _ in METRICS)])
    return s.add(
        Text(
            "Intervals are the 95% percentile bootstrap intervals stored in metrics.json; train and validation rows "
            "are point estimates (for spotting over-fitting, not for reporting)."
        ),
        Table(["task", "split", "n", "positives", *(n for _, n in METRICS)], rows, numeric=tuple(range(2, 8))),
    )


def _curves(metrics: dict, preds: pl.DataFrame, split: str, n_boot: int, seed: int) -> Section:
    s = Section(f"ROC, precision–recall and calibration ({split})", "curves")
    sel = preds if split == "all" else preds.filter(pl.col("split") == split)
    for task in metrics.get("tasks", {}):
        lab, prob = f"{task}_label", f"{task}_prob"
        if lab not in sel.columns or prob not in sel.columns:
            continue
        if sel[prob].dtype != pl.Float64:
            s.add(Text(f"{task}: a multiclass label; its one-vs-rest scores are in the metrics table.", note=True))
            continue
        sub = sel.filter(pl.col(lab).is_not_null())
        y, p = sub[lab].to_numpy().astype(int), sub[prob].to_numpy().astype(float)
        if len(np.unique(y)) < 2:
            s.add(Text(f"{task}: only one class among the {len(y)} labelled {split} samples; no curves.", note=True))
            continue
        png = figures.roc_pr_calibration(
            roc_with_band(y, p, n_boot=n_boot, seed=seed),
            pr_with_band(y, p, n_boot=n_boot, seed=seed),
            reliability(y, p, n_boot=n_boot, seed=seed),
            float(y.mean()),
            f"{task}: {len(y):,} {split} samples, {int(y.sum()):,} positive",
        )
        s.add(
            Image(
                png,
                f"ROC, precision-recall and reliability curves for {task}",
                f"Bands: pointwise 95% percentile intervals over {n_boot} bootstrap resamples of the {split} samples.",
            )
        )
    return s


def _rows(groups: dict[str, dict]) -> tuple[list[str], list[dict]]:
    """Row labels and entries, largest group first (the intervals that mean most at the top)."""
    items = sorted(groups.items(), key=lambda kv: -kv[1].get("n", 0))
    return [f"{k} (n={v.get('n', 0):,})" for k, v in items], [v for _, v in items]


def _forest(title: str, labels: list[str], entries: list[dict], overall: dict, ylabel: str) -> Image:
    panels = []
    for key, name in METRICS[:2]:
        series = figures.Series(
            "model",
            [(e.get(key) or {}).get("value") for e in entries],
            [(e.get(key) or {}).get("ci_low") for e in entries],
            [(e.get(key) or {}).get("ci_high") for e in entries],
        )
        ref = (overall.get(key) or {}).get("value")
        panels.append(figures.ForestPanel(f"{name} (0–1, 95% bootstrap CI)", [series], ref, "all samples"))
    png = figures.forest(labels, panels, title, ylabel=ylabel)
    return Image(png, title, "Dashed line: the value over all samples; no point where a group has one class only.")


def _groups(metrics: dict, split: str) -> Section:
    s = Section("By missingness pattern and subgroup", "groups")
    for task, per_split in metrics.get("tasks", {}).items():
        m = per_split.get(split) or {}
        overall = m.get("overall", {})
        blocks: list[Any] = []
        if m.get("by_pattern"):
            labels, entries = _rows(m["by_pattern"])
            blocks.append(_forest(f"{task}: by missingness pattern ({split})", labels, entries, overall, "pattern"))
            blocks.append(_group_table("pattern", m["by_pattern"]))
        for col, groups in (m.get("by_subgroup") or {}).items():
            labels, entries = _rows(groups)
            blocks.append(_forest(f"{task}: by {col} ({split})", labels, entries, overall, col))
            blocks.append(_group_table(col, groups))
        if blocks:
            s.add(Heading(task), *blocks)
    if not s.blocks:
        s.add(Text(f"metrics.json holds no per-pattern or per-subgroup metrics for split '{split}'.", note=True))
    return s


def _group_table(name: str, groups: dict[str, dict]) -> Table:
    rows = [
        [k, f"{v.get('n', 0):,}", str(v.get("n_pos", "")), *(metric_cell(v.get(m)) for m, _ in METRICS)]
        for k, v in groups.items()
    ]
    return Table([name, "n", "positives", *(n for _, n in METRICS)], rows, numeric=tuple(range(1, 7)))


def _dual_stream(cfg: dict | None) -> bool:
    """Whether the run's framework has causal / biased streams (its config derives from DualStreamConfig)."""
    if not cfg:
        return False
    import medmodal.models.frameworks  # noqa: F401  (fill the registry)
    from medmodal.models.base import FRAMEWORKS
    from medmodal.models.frameworks.dual_stream import DualStreamConfig

    name = cfg.get("framework", {}).get("name", "")
    if name not in FRAMEWORKS:
        return False
    return issubclass(getattr(FRAMEWORKS.get(name), "config_class", object), DualStreamConfig)


def _streams(d: Path, cfg: dict | None, tsne: dict[str, Any] | None) -> Section:
    s = Section("Causal vs biased features", "streams")
    if tsne is not None:
        res = tsne["result"]
        scores = res["confounder_decodability_auroc"]
        png = figures.tsne_pair(tsne["causal"], tsne["biased"], tsne["color"], tsne["label"], tsne["title"], scores)
    elif (d / "report" / "report.json").is_file() and (d / "report" / "tsne_causal_biased.png").is_file():
        res = _json(d / "report" / "report.json")  # written earlier by `medmodal report RUN_DIR --truth ...`
        scores = res.get("confounder_decodability_auroc", {})
        png = (d / "report" / "tsne_causal_biased.png").read_bytes()
    else:
        if _dual_stream(cfg):
            s.add(
                Text(
                    "This framework has causal and biased streams: pass --truth (a simulator truth.parquet) or "
                    "--color-by (a cohort column) to add their t-SNE and how well each decodes the confounder."
                )
            )
        return s
    color = res.get("color", {})
    s.add(
        Image(
            png,
            "t-SNE of the causal and the biased stream's features, coloured by the confounder",
            f"{res.get('n_points')} {res.get('split')} samples coloured by {color.get('name')} "
            f"({color.get('source')}); perplexity {res.get('perplexity')}, {res.get('iterations')} iterations.",
        ),
        Table(
            ["stream", f"{color.get('name')} decodability (AUROC)"],
            [[k, num(v)] for k, v in scores.items()],
            caption=res.get("note", ""),
            numeric=(1,),
        ),
    )
    return s
