"""Scoring, paired bootstrap intervals, tables and the figure of the shift benchmark (``benchmarks/shift.py``),
and its logistic-regression baseline.

Estimand, per mechanism and metric: Δ = mean over worlds w of [mean over seeds of metric(method) − mean over
seeds of metric(erm)], each metric computed on the same samples of world w's cohort. Interval: a two-level
percentile bootstrap -- resample the worlds, then (multinomial weights) the samples within each drawn world; the
same weights score every method, so the interval is of the paired difference, and world-to-world variation
enters it as well as test-sample noise. Seeds are averaged, not resampled (three per world).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from medmodal.models.metrics import _weighted_rank_metrics

METRIC_NAMES = ("auroc", "auprc")


def auprc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, p)) if y.sum() > 0 else float("nan")


# ---------------------------------------------------------------------------------------------------- logreg


def _logreg_features(d: Path) -> tuple[np.ndarray, list[str], np.ndarray]:
    """structured.parquet's numeric features + the has_* flags of modalities.parquet, in labels.npz row order."""
    s = pl.read_parquet(d / "cohort" / "structured.parquet")
    m = pl.read_parquet(d / "cohort" / "modalities.parquet").select("sample_id", pl.col("^has_.*$"))
    df = s.join(m, on="sample_id", how="left")
    with np.load(d / "labels.npz") as z:
        order = [str(x) for x in z["sample_ids"]]
    df = pl.DataFrame({"sample_id": order}).join(df, on="sample_id", how="left", maintain_order="left")
    cols = [c for c in df.columns if c != "sample_id"]
    x = df.select([pl.col(c).cast(pl.Float64) for c in cols]).to_numpy()
    return x, cols, np.array(order)


def logreg_cell(work: Path, cfg, c: float, world: int, options: dict[str, Any]) -> dict[str, np.ndarray]:
    """Fit scikit-learn's logistic regression (standardised features, NaN → training mean) per label on the
    train environment's train split; predict every environment of the world: {env: probs (N, K)}."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from medmodal.benchmarks.shift import env_dir, load_labels

    train_d = env_dir(work, c, world, "train")
    x_tr, cols, _ = _logreg_features(train_d)
    lab = load_labels(work, c, world, "train")
    fit_rows = x_tr[lab["split"] == "train"]
    seen = ~np.isnan(fit_rows)
    # column means of the observed training values; 0 for a column never observed there
    fill = np.where(seen, fit_rows, 0.0).sum(0) / np.maximum(seen.sum(0), 1)
    models = []
    for k in range(lab["labels"].shape[1]):
        rows = (lab["split"] == "train") & lab["label_mask"][:, k]
        x = np.where(np.isnan(x_tr[rows]), fill, x_tr[rows])
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=float(options.get("C", 1.0)), max_iter=2000))
        models.append(clf.fit(x, lab["labels"][rows, k]))
    envs = ["train", *(cfg.mechanisms if world != cfg.select_world else ("shifted",))]
    out = {}
    for env in envs:
        x, cols_env, _ = _logreg_features(env_dir(work, c, world, env))
        if cols_env != cols:  # a feature the other environment lacks is unobserved there
            idx = {name: i for i, name in enumerate(cols_env)}
            x = np.stack([x[:, idx[name]] if name in idx else np.full(len(x), np.nan) for name in cols], 1)
        x = np.where(np.isnan(x), fill, x)
        out[env] = np.stack([mdl.predict_proba(x)[:, 1] for mdl in models], 1).astype(np.float32)
    return out


# ---------------------------------------------------------------------------------------------------- bootstrap


def _weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """Multinomial resample weights (n_boot, n); row 0 is the identity (the point estimate)."""
    rng = np.random.default_rng(seed)
    w = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)
    w[0] = 1.0
    return w


def boot_metrics(w: np.ndarray, y: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    auroc, ap = _weighted_rank_metrics(w, y.astype(float), p.astype(float))
    return {"auroc": auroc, "auprc": ap}


def paired_bootstrap(per_world: list[dict[str, list[dict[str, np.ndarray]]]], n_boot: int, seed: int = 0) -> dict:
    """per_world[w] = {"a": [metrics of method's seeds], "b": [metrics of the reference's seeds]}, each metrics
    dict holding (n_boot,) arrays from the world's shared weights (row 0 = unresampled). Returns, per metric,
    est (row-0 Δ), the 95 % interval over replicates 1.. after resampling worlds, mean of a and b, and the
    number of worlds where Δ > 0."""
    rng = np.random.default_rng(seed + 7)
    W = len(per_world)
    draws = rng.integers(0, W, size=(n_boot, W))
    draws[0] = np.arange(W)
    counts = np.stack([np.bincount(d, minlength=W) for d in draws])  # (R, W)
    out = {}
    for metric in METRIC_NAMES:
        a = np.stack([np.mean([r[metric] for r in pw["a"]], 0) for pw in per_world])  # (W, R)
        b = np.stack([np.mean([r[metric] for r in pw["b"]], 0) for pw in per_world])
        diff = a - b  # (W, R)
        rep = (counts.T * diff).sum(0) / W  # (R,)
        ok = np.isfinite(rep[1:])
        lo, hi = np.percentile(rep[1:][ok], [2.5, 97.5]) if ok.any() else (np.nan, np.nan)
        out[metric] = {
            "delta": float(rep[0]),
            "ci_low": float(lo),
            "ci_high": float(hi),
            "a": float(a[:, 0].mean()),
            "b": float(b[:, 0].mean()),
            "worlds_positive": int((diff[:, 0] > 0).sum()),
            "worlds": W,
        }
    return out


# ---------------------------------------------------------------------------------------------------- summary


def _oracle(d: Path, rows: np.ndarray, sample_ids: np.ndarray, y: np.ndarray, label: str) -> dict[str, float]:
    """AUROC / AUPRC of truth.parquet's causal risk (U only) on the scored samples."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    cohort = pl.read_parquet(d / "cohort" / "cohort.parquet").select("sample_id", "hadm_id")
    truth = pl.read_parquet(d / "raw" / "truth.parquet").select("hadm_id", f"risk_{label}").drop_nulls()
    j = pl.DataFrame({"sample_id": sample_ids[rows]}).join(cohort, on="sample_id", how="left", maintain_order="left")
    j = j.join(truth.unique("hadm_id"), on="hadm_id", how="left", maintain_order="left")
    risk = j[f"risk_{label}"].to_numpy()
    ok = np.isfinite(risk)
    return {"auroc": float(roc_auc_score(y[ok], risk[ok])), "auprc": float(average_precision_score(y[ok], risk[ok]))}


def summarise(work: Path, cfg, selection: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Every (strength, scoring set, method, variant) with its mean metrics and paired Δ vs erm (and, for an
    ablation, vs its full framework)."""
    from medmodal.benchmarks.shift import ABLATIONS, PREDICT_ABLATIONS, env_dir, load_cell, load_labels

    primary = names[0]
    rows: list[dict[str, Any]] = []
    oracle: dict[str, Any] = {}
    c0 = cfg.c_outcome[0]
    for c in cfg.c_outcome:
        variants: dict[str, list[tuple[str, str]]] = {}  # method -> [(variant name, key inside the cell)]
        for m in cfg.methods:
            v = [("selected", "")]
            if cfg.ablations and c == c0:
                v += [(name, "") for name in ABLATIONS.get(m, {})]
                v += [(name, f"@{name}") for name in PREDICT_ABLATIONS.get(m, {})]
            if cfg.target_selection and c == c0:
                same = selection[m]["target_selected"] == selection[m]["selected"]
                v.append(("target_selected", "same" if same else ""))
            variants[m] = v
        for si, scoring in enumerate(("id", *cfg.mechanisms)):
            env = "train" if scoring == "id" else scoring
            # boot[(method, variant)] = per world list of per-seed metric dicts
            boot: dict[tuple[str, str], list[list[dict]]] = {}
            orc = []
            for wi, w in enumerate(cfg.worlds):
                lab = load_labels(work, c, w, env)
                rows_w = lab["label_mask"][:, 0] & ((lab["split"] == "test") if scoring == "id" else True)
                y = lab["labels"][rows_w, 0]
                weights = _weights(int(rows_w.sum()), cfg.n_boot, seed=1000 * wi + si)
                orc.append(_oracle(env_dir(work, c, w, env), rows_w, lab["sample_ids"], y, primary))
                for m, vs in variants.items():
                    seeds = cfg.seeds[:1] if m == "logreg" else cfg.seeds
                    for vname, key in vs:
                        cell_variant = "selected" if key.startswith("@") or key == "same" else vname
                        suffix = key if key.startswith("@") else ""
                        per_seed = []
                        for s in seeds:
                            cell = load_cell(work, c, w, m, cell_variant, s)
                            per_seed.append(boot_metrics(weights, y, cell[env + suffix][rows_w, 0]))
                        boot.setdefault((m, vname), []).append(per_seed)
            oracle.setdefault(f"c{c:g}", {})[scoring] = {k: float(np.mean([o[k] for o in orc])) for k in METRIC_NAMES}
            for (m, vname), per_world in boot.items():
                vs_erm = paired_bootstrap(
                    [{"a": a, "b": b} for a, b in zip(per_world, boot[("erm", "selected")])], cfg.n_boot
                )
                row = {"c_outcome": c, "scoring": scoring, "method": m, "variant": vname, "vs_erm": vs_erm}
                if vname not in ("selected", "target_selected"):
                    row["vs_full"] = paired_bootstrap(
                        [{"a": a, "b": b} for a, b in zip(per_world, boot[(m, "selected")])], cfg.n_boot
                    )
                rows.append(row)
    n = {}
    for env in ("train", *cfg.mechanisms):
        lab = load_labels(work, c0, cfg.worlds[0], env)
        scored = lab["label_mask"][:, 0] & ((lab["split"] == "test") if env == "train" else True)
        n["id" if env == "train" else env] = {"n": int(scored.sum()), "n_pos": int(lab["labels"][scored, 0].sum())}
    return {"labels": names, "primary": primary, "selection": selection, "cells": rows, "oracle": oracle, "n": n}


def results_table(summary: dict[str, Any]):
    """results.csv: one row per (strength, scoring set, method, variant, metric) with the mean, Δ vs erm and its
    interval (and Δ vs the full framework for an ablation)."""
    out = []
    for r in summary["cells"]:
        for metric in METRIC_NAMES:
            e = r["vs_erm"][metric]
            f = r.get("vs_full", {}).get(metric, {})
            out.append(
                {
                    "c_outcome": r["c_outcome"],
                    "scoring": r["scoring"],
                    "method": r["method"],
                    "variant": r["variant"],
                    "metric": metric,
                    "mean": e["a"],
                    "delta_vs_erm": e["delta"],
                    "ci_low": e["ci_low"],
                    "ci_high": e["ci_high"],
                    "worlds_positive": e["worlds_positive"],
                    "worlds": e["worlds"],
                    "delta_vs_full": f.get("delta"),
                    "full_ci_low": f.get("ci_low"),
                    "full_ci_high": f.get("ci_high"),
                }
            )
    return pl.DataFrame(out)


# ---------------------------------------------------------------------------------------------------- tables


def _ci(d: dict[str, Any]) -> str:
    sig = "**" if d["ci_low"] > 0 or d["ci_high"] < 0 else ""
    return f"{sig}{d['delta']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]{sig}"


def _pick(rows, c, scoring, method, variant):
    return next(
        (r for r in rows if (r["c_outcome"], r["scoring"], r["method"], r["variant"]) == (c, scoring, method, variant)),
        None,
    )


def markdown(summary: dict[str, Any]) -> str:
    """benchmark.md: headline Δ tables, selection, ablations, target-domain selection (apart), the strength
    sweep, then one detailed table per scoring set."""
    cfg = summary["config"]
    c0 = cfg["c_outcome"][0]
    rows = summary["cells"]
    scorings = ["id", *cfg["mechanisms"]]
    others = [m for m in cfg["methods"] if m != "erm"]
    sel = summary["selection"]
    lines = [
        f"Shift benchmark ({summary['primary']}; backbone {cfg['backbone']}; {len(cfg['worlds'])} worlds × "
        f"{len(cfg['seeds'])} seeds; {cfg['subjects']} subjects per environment; {cfg['epochs']} epochs, hidden "
        f"{cfg['hidden']}). Δ = method − erm on the same samples, mean over worlds and seeds, with the paired "
        "two-level bootstrap 95 % interval; **bold** = interval excludes 0.",
        "",
        "Scored samples per world (first world): "
        + ", ".join(f"{k} {v['n']} ({v['n_pos']} positive)" for k, v in summary["n"].items()),
    ]
    for metric in ("auprc", "auroc"):
        lines += [
            "",
            f"## Δ {metric.upper()} vs erm (selected option sets, c_outcome {c0:g}); erm's own value in the first row",
            "",
            "| method | " + " | ".join(scorings) + " |",
            "|---|" + "---|" * len(scorings),
        ]
        erm = [_pick(rows, c0, sc, "erm", "selected") for sc in scorings]
        lines.append("| erm | " + " | ".join(f"{r['vs_erm'][metric]['a']:.3f}" for r in erm) + " |")
        for m in others:
            cells = [_pick(rows, c0, sc, m, "selected") for sc in scorings]
            lines.append(f"| {m} | " + " | ".join(_ci(r["vs_erm"][metric]) if r else "" for r in cells) + " |")
        orc = summary["oracle"].get(f"c{c0:g}", {})
        if orc:
            lines.append("| *causal-risk oracle* | " + " | ".join(f"{orc[sc][metric]:.3f}" for sc in scorings) + " |")
    lines += [
        "",
        "## Selected option sets (selection world, train-environment validation AUPRC)",
        "",
        "| method | candidates (train-val AUPRC / target-val AUPRC) | selected | target-selected |",
        "|---|---|---|---|",
    ]
    for m, s_m in sel.items():
        cands = "; ".join(
            f"{i}: {_opts(r['options'])} ({r['train_val']:.3f} / {r['target_val']:.3f})"
            for i, r in enumerate(s_m["candidates"])
        )
        lines.append(f"| {m} | {cands} | {s_m['selected']} | {s_m['target_selected']} |")
    ablations = [(r["method"], r["variant"]) for r in rows if "vs_full" in r and r["scoring"] == "id"]
    if ablations:
        lines += [
            "",
            "## Ablations: Δ AUPRC vs the full framework (same seeds and samples)",
            "",
            "| method | ablation | " + " | ".join(scorings) + " |",
            "|---|---|" + "---|" * len(scorings),
        ]
        for m, v in ablations:
            cells = [_pick(rows, c0, sc, m, v) for sc in scorings]
            lines.append(f"| {m} | {v} | " + " | ".join(_ci(r["vs_full"]["auprc"]) for r in cells) + " |")
    moved = [m for m in cfg["methods"] if m in sel and sel[m]["target_selected"] != sel[m]["selected"]]
    if cfg.get("target_selection"):
        lines += [
            "",
            "## Labelled option: selection on target-domain labels (the selection world's shifted validation split)",
            "",
            "Reported apart: this uses labels of the deployment domain, which a real deployment does not have. "
            + (
                f"It changed the choice for {', '.join(moved)}; Δ AUPRC vs erm (erm selected as by default):"
                if moved
                else "It chose the same option set as the default for every method."
            ),
        ]
        if moved:
            lines += ["", "| method | " + " | ".join(scorings) + " |", "|---|" + "---|" * len(scorings)]
            for m in moved:
                cells = [_pick(rows, c0, sc, m, "target_selected") for sc in scorings]
                lines.append(f"| {m} | " + " | ".join(_ci(r["vs_erm"]["auprc"]) for r in cells) + " |")
    if len(cfg["c_outcome"]) > 1:
        lines += [
            "",
            "## Confounder strength sweep (selected option sets; Δ AUPRC vs erm; erm's AUPRC in its column)",
            "",
            "| c_outcome | scoring | erm | " + " | ".join(others) + " |",
            "|---|---|---|" + "---|" * len(others),
        ]
        for c in cfg["c_outcome"]:
            for sc in scorings:
                erm = _pick(rows, c, sc, "erm", "selected")
                if erm is None:  # a strength not scored (a partial summary)
                    continue
                cells = [_pick(rows, c, sc, m, "selected") for m in others]
                lines.append(
                    f"| {c:g} | {sc} | {erm['vs_erm']['auprc']['a']:.3f} | "
                    + " | ".join(_ci(r["vs_erm"]["auprc"]) if r else "" for r in cells)
                    + " |"
                )
    for sc in scorings:
        title = "in distribution (train environment, test split)" if sc == "id" else sc
        lines += [
            "",
            f"## Detail: {title}, c_outcome {c0:g}",
            "",
            "| method | variant | AUROC | Δ AUROC vs erm | AUPRC | Δ AUPRC vs erm | worlds with Δ AUPRC > 0 |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            if r["c_outcome"] != c0 or r["scoring"] != sc:
                continue
            e, m, v = r["vs_erm"], r["method"], r["variant"]
            if v == "target_selected" and m not in moved:
                continue  # the same runs as "selected"
            ref = m == "erm" and v == "selected"
            worlds = f"{e['auprc']['worlds_positive']}/{e['auprc']['worlds']}"
            d_roc, d_prc, worlds_cell = ("", "", "") if ref else (_ci(e["auroc"]), _ci(e["auprc"]), worlds)
            lines.append(
                f"| {m} | {v} | {e['auroc']['a']:.3f} | {d_roc} | {e['auprc']['a']:.3f} | {d_prc} | {worlds_cell} |"
            )
    lines.append("")
    return "\n".join(lines)


def _opts(o: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in o.items()) or "defaults"


def plot(summary: dict[str, Any], path: Path) -> None:
    """One figure: Δ AUPRC and Δ AUROC vs erm with their 95 % intervals, per scoring set (panels) and method
    (rows), selected option sets at the default strength; drawn by the report package's forest plot."""
    from medmodal.common import atomic_file
    from medmodal.report.figures import ForestPanel, Series, forest

    cfg = summary["config"]
    c0 = cfg["c_outcome"][0]
    methods = [m for m in cfg["methods"] if m != "erm"]
    panels = []
    for scoring in ("id", *cfg["mechanisms"]):
        series = []
        for metric in ("auprc", "auroc"):
            d = [_pick(summary["cells"], c0, scoring, m, "selected")["vs_erm"][metric] for m in methods]
            series.append(
                Series(
                    f"Δ {metric.upper()}", [x["delta"] for x in d], [x["ci_low"] for x in d], [x["ci_high"] for x in d]
                )
            )
        panels.append(ForestPanel(f"{scoring}: method − erm (0–1)", series, 0.0))
    png = forest(
        methods,
        panels,
        f"{summary['primary']}: method − erm, 95% paired bootstrap interval (c_outcome {c0:g})",
        "method",
    )
    with atomic_file(path) as fh:
        fh.write(png)
