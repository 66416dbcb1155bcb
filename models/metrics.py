"""Discrimination and calibration with bootstrap intervals — overall, per missingness pattern, per subgroup.

Point estimates come from scikit-learn (``roc_auc_score``, ``average_precision_score``, ``brier_score_loss``) so
they match what readers compute themselves. Expected calibration error has no scikit-learn function; it is the
equal-width, 10-bin ECE of Naeini et al. (AAAI 2015): Σ_b (n_b / n) |mean(y)_b - mean(p)_b|.

The 95 % intervals are percentile intervals over 1,000 bootstrap resamples. Calling scikit-learn 1,000 times per
metric per subgroup per task would dominate evaluation (tens of thousands of calls for per-pattern tables), so
the resamples are written as multinomial *weights* W (R, n) and every metric is computed for all R at once from
one sort of the scores: with tie groups g in descending score order, P_g / N_g the positive / negative weight in g,

    AUROC = Σ_g P_g (N_{<g} + ½ N_g) / (P · N)              (Mann–Whitney with ties)
    AP    = Σ_g (P_g / P) · TP_{≤g} / (TP_{≤g} + FP_{≤g})      (scikit-learn's step-wise average precision)

With unit weights these equal scikit-learn's values exactly (tests/test_models_metrics.py checks it). A resample
with one class only has no AUROC / AP; intervals use the resamples where the metric exists.

Multiclass labels use macro one-vs-rest AUROC and AP, the multiclass Brier score Σ_c (p_c - 1[y = c])² and the
top-label ECE.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

METRICS = ("auroc", "auprc", "brier", "ece")
N_BINS = 10
_CHUNK = 100  # bootstrap resamples per vectorised block: bounds memory at 100 x n floats


def _nan(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def ece_score(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> float:
    """Equal-width-bin expected calibration error of binary probabilities."""
    return float(_weighted_ece(np.ones((1, len(y))), y.astype(float), p, n_bins)[0])


def _weighted_ece(W: np.ndarray, y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    onehot = np.zeros((len(p), n_bins))
    onehot[np.arange(len(p)), bins] = 1.0
    gap = (W * y) @ onehot - (W * p) @ onehot  # (R, bins): Σ w·y - Σ w·p per bin
    return np.abs(gap).sum(1) / W.sum(1)


def _weighted_rank_metrics(W: np.ndarray, y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and AP of scores p against binary y under each row of weights W (R, n)."""
    order = np.argsort(-p, kind="stable")
    ps, ys, Ws = p[order], y[order], W[:, order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])  # tie groups, descending score
    gpos = np.add.reduceat(Ws * ys, starts, axis=1)  # (R, G)
    gneg = np.add.reduceat(Ws * (1 - ys), starts, axis=1)
    P, N = gpos.sum(1), gneg.sum(1)
    neg_below = N[:, None] - np.cumsum(gneg, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc = (gpos * (neg_below + 0.5 * gneg)).sum(1) / (P * N)
        tp, fp = np.cumsum(gpos, axis=1), np.cumsum(gneg, axis=1)
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
        ap = (gpos * precision).sum(1) / P
    auroc[(P == 0) | (N == 0)] = np.nan
    ap[P == 0] = np.nan
    return auroc, ap


def weighted_metrics(W: np.ndarray, y: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """All METRICS under each row of weights W (R, n). y: (n,) 0/1 or class index; p: (n,) or (n, C)."""
    W = W.astype(float)
    if p.ndim == 1:
        yf = y.astype(float)
        auroc, ap = _weighted_rank_metrics(W, yf, p)
        brier = (W * (p - yf) ** 2).sum(1) / W.sum(1)
        return {"auroc": auroc, "auprc": ap, "brier": brier, "ece": _weighted_ece(W, yf, p)}
    C = p.shape[1]
    onehot = np.eye(C)[y.astype(int)]  # (n, C)
    per_class = [_weighted_rank_metrics(W, onehot[:, c], p[:, c]) for c in range(C)]
    with warnings.catch_warnings():  # all-NaN rows (a class absent from a resample) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        auroc = np.nanmean(np.stack([a for a, _ in per_class]), axis=0)
        ap = np.nanmean(np.stack([b for _, b in per_class]), axis=0)
    brier = (W * ((p - onehot) ** 2).sum(1)).sum(1) / W.sum(1)
    conf, pred = p.max(1), p.argmax(1)
    ece = _weighted_ece(W, (pred == y).astype(float), conf)
    return {"auroc": auroc, "auprc": ap, "brier": brier, "ece": ece}


def point_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
    """scikit-learn point estimates; None where a metric is undefined (one class only)."""
    out: dict[str, float | None] = {}
    if p.ndim == 1:
        two = len(np.unique(y)) == 2
        out["auroc"] = _nan(roc_auc_score(y, p)) if two else None
        out["auprc"] = _nan(average_precision_score(y, p)) if y.sum() > 0 else None
        out["brier"] = _nan(brier_score_loss(y, p, labels=[0, 1]))
        out["ece"] = ece_score(y, p)
        return out
    C = p.shape[1]
    onehot = np.eye(C)[y.astype(int)]
    present = onehot.sum(0) > 0
    out["auroc"] = (
        _nan(roc_auc_score(y, p, multi_class="ovr", average="macro", labels=list(range(C)))) if present.all() else None
    )
    out["auprc"] = _nan(np.mean([average_precision_score(onehot[:, c], p[:, c]) for c in range(C) if present[c]]))
    out["brier"] = _nan(float(((p - onehot) ** 2).sum(1).mean()))
    out["ece"] = _nan(float(weighted_metrics(np.ones((1, len(y))), y, p)["ece"][0]))
    return out


def metrics_with_ci(
    y: np.ndarray, p: np.ndarray, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, Any]:
    """Point estimates, prevalence and (when n_boot > 0) percentile bootstrap intervals for one group."""
    y = np.asarray(y)
    p = np.asarray(p, dtype=float)
    res: dict[str, Any] = {"n": len(y)}
    if len(y) == 0:
        none = {"value": None, "ci_low": None, "ci_high": None, "n_boot": 0, "why_missing": "no samples"}
        return res | {m: dict(none) for m in METRICS}
    if p.ndim == 1:
        res["n_pos"] = int((y == 1).sum())
    else:
        res["class_counts"] = np.bincount(y.astype(int), minlength=p.shape[1]).tolist()
    point = point_metrics(y, p)
    why = why_missing(y, p, point)
    if n_boot <= 0:  # same layout as with intervals, so readers need one code path
        return res | {m: _entry(point[m], None, None, 0, why.get(m)) for m in METRICS}
    draws: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, _CHUNK):
        R = min(_CHUNK, n_boot - start)
        W = rng.multinomial(len(y), np.full(len(y), 1.0 / len(y)), size=R).astype(np.float32)
        for m, v in weighted_metrics(W, y, p).items():
            draws[m].append(v)
    for m in METRICS:
        v = np.concatenate(draws[m])
        v = v[np.isfinite(v)]
        ok = point[m] is not None and len(v) >= max(10, n_boot // 10)
        lo, hi = np.quantile(v, [alpha / 2, 1 - alpha / 2]) if ok else (np.nan, np.nan)
        res[m] = _entry(point[m], _nan(lo), _nan(hi), len(v), why.get(m))
        if point[m] is not None and not ok:
            res[m]["ci_why_missing"] = f"only {len(v)} of {n_boot} resamples define it (need {max(10, n_boot // 10)})"
    return res


def _entry(value, lo, hi, n_boot: int, why: str | None) -> dict[str, Any]:
    out = {"value": value, "ci_low": lo, "ci_high": hi, "n_boot": n_boot}
    if value is None:
        out["why_missing"] = why or "undefined"
    return out


def why_missing(y: np.ndarray, p: np.ndarray, point: dict[str, float | None]) -> dict[str, str]:
    """Why each undefined metric of ``point`` is undefined, in words (recorded beside the null in metrics.json)."""
    out = {}
    if p.ndim == 1:
        n_pos, n = int((y == 1).sum()), len(y)
        one_class = f"one class only ({n_pos} positive of {n})"
        if point.get("auroc") is None:
            out["auroc"] = one_class
        if point.get("auprc") is None:
            out["auprc"] = f"no positive samples (0 of {n})" if n_pos == 0 else "undefined"
    else:
        counts = np.bincount(y.astype(int), minlength=p.shape[1])
        absent = [str(c) for c in np.flatnonzero(counts == 0)]
        if point.get("auroc") is None:
            out["auroc"] = f"class(es) {', '.join(absent)} absent" if absent else "undefined"
        if point.get("auprc") is None:
            out["auprc"] = "no class has positive samples"
    for m in METRICS:
        if point.get(m) is None and m not in out:
            out[m] = "not finite (non-finite probabilities?)"
    return out


def pattern_name(code: int, modalities: list[str]) -> str:
    present = [m for i, m in enumerate(modalities) if code >> i & 1]
    return "+".join(present) if present else "none"


def grouped_metrics(
    y: np.ndarray,
    p: np.ndarray,
    *,
    pattern: np.ndarray | None = None,
    modalities: list[str] | None = None,
    groups: dict[str, np.ndarray] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """``overall``, ``by_pattern`` (keyed by pattern name) and ``by_subgroup`` {column: {value: metrics}}."""
    out: dict[str, Any] = {"overall": metrics_with_ci(y, p, n_boot=n_boot, seed=seed)}
    if pattern is not None:
        out["by_pattern"] = {}
        for code in np.unique(pattern):
            sel = pattern == code
            entry = metrics_with_ci(y[sel], p[sel], n_boot=n_boot, seed=seed)
            entry["pattern"] = int(code)
            out["by_pattern"][pattern_name(int(code), modalities or [])] = entry
    if groups:
        out["by_subgroup"] = {}
        for col, values in groups.items():
            out["by_subgroup"][col] = {
                str(v): metrics_with_ci(y[values == v], p[values == v], n_boot=n_boot, seed=seed)
                for v in np.unique(values)
            }
    return out
