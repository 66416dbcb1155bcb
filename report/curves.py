"""The numbers behind the report's figures: proportion intervals and curves with bootstrap bands.

* Proportions (a label rate per missingness pattern or split) get the Wilson score interval (Wilson, JASA 1927),
  computed by scipy (``binomtest(...).proportion_ci(method="wilson")``); unlike the normal approximation it stays
  inside [0, 1] and is honest for the small patterns and rare labels clinical cohorts are full of.
* ROC and precision-recall curves are scikit-learn's (``roc_curve``, ``precision_recall_curve``); their 95% bands
  are pointwise percentiles over bootstrap resamples of the evaluated samples, each resample's curve read on a
  fixed grid (true-positive rate at each false-positive rate; interpolated precision — the best precision at a
  recall at least as high, as in the PASCAL VOC definition — at each recall).
* The reliability diagram uses the same 10 equal-width bins as the ECE in models/metrics.py; each bin's observed
  rate gets a percentile interval from the same resamples (multinomial weights, as models/metrics.py draws them).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest, chi2_contingency
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from medmodal.report.figures import Curve, Reliability, Series

GRID = np.linspace(0.0, 1.0, 101)
N_BINS = 10


def wilson(k: int, n: int) -> tuple[float | None, float | None, float | None]:
    """(k / n, low, high) with the 95% Wilson interval; Nones when n == 0."""
    if n <= 0:
        return None, None, None
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return k / n, float(ci.low), float(ci.high)


def wilson_series(name: str, k: np.ndarray, n: np.ndarray) -> Series:
    triples = [wilson(int(a), int(b)) for a, b in zip(k, n)]
    return Series(name, [t[0] for t in triples], [t[1] for t in triples], [t[2] for t in triples])


def independence_test(table: np.ndarray) -> tuple[float, float, int] | None:
    """Pearson's chi-square test that the label is independent of the pattern: (statistic, p-value, dof) over a
    (patterns x classes) count table, rows / columns without samples dropped; None when fewer than 2 of either."""
    t = np.asarray(table, dtype=float)
    t = t[t.sum(1) > 0][:, t.sum(0) > 0]
    if t.shape[0] < 2 or t.shape[1] < 2:
        return None
    res = chi2_contingency(t, correction=False)
    return float(res.statistic), float(res.pvalue), int(res.dof)


def _resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def roc_with_band(y: np.ndarray, p: np.ndarray, *, n_boot: int = 200, seed: int = 0) -> Curve:
    fpr, tpr, _ = roc_curve(y, p)
    draws = []
    for idx in _resamples(len(y), n_boot, seed):
        yb = y[idx]
        if 0 < yb.sum() < len(yb):
            f, t, _ = roc_curve(yb, p[idx])
            draws.append(np.interp(GRID, f, t))
    low, high = _band(draws)
    return Curve(fpr, tpr, GRID, low, high, float(roc_auc_score(y, p)))


def _interpolated_precision(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """max precision over recall >= r, read at each GRID recall (recall from sklearn is decreasing)."""
    r, pr = recall[::-1], precision[::-1]  # increasing recall
    best = np.maximum.accumulate(pr[::-1])[::-1]  # best precision at recall >= r[i]
    pos = np.searchsorted(r, GRID, side="left")
    return np.where(pos < len(r), best[np.minimum(pos, len(r) - 1)], 0.0)


def pr_with_band(y: np.ndarray, p: np.ndarray, *, n_boot: int = 200, seed: int = 0) -> Curve:
    precision, recall, _ = precision_recall_curve(y, p)
    draws = []
    for idx in _resamples(len(y), n_boot, seed):
        yb = y[idx]
        if yb.sum() > 0:
            pb, rb, _ = precision_recall_curve(yb, p[idx])
            draws.append(_interpolated_precision(rb, pb))
    low, high = _band(draws)
    return Curve(recall[::-1], precision[::-1], GRID, low, high, float(average_precision_score(y, p)))


def reliability(y: np.ndarray, p: np.ndarray, *, n_boot: int = 200, seed: int = 0) -> Reliability:
    bins = np.minimum((p * N_BINS).astype(int), N_BINS - 1)
    onehot = np.zeros((len(p), N_BINS))
    onehot[np.arange(len(p)), bins] = 1.0
    counts = onehot.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = (y @ onehot) / counts
        mean_p = (p @ onehot) / counts
        W = np.random.default_rng(seed).multinomial(len(y), np.full(len(y), 1.0 / len(y)), size=n_boot)
        rates = ((W * y) @ onehot) / (W @ onehot)  # (R, bins); NaN where a resample leaves a bin empty
    low, high = np.full(N_BINS, np.nan), np.full(N_BINS, np.nan)
    for b in range(N_BINS):
        v = rates[:, b][np.isfinite(rates[:, b])]
        if counts[b] > 0 and len(v) >= 10:
            low[b], high[b] = np.quantile(v, [0.025, 0.975])
    ece = float(np.nansum(counts / len(y) * np.abs(observed - mean_p)))
    return Reliability(mean_p, observed, low, high, counts.astype(int), ece)


def _band(draws: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if len(draws) < 10:  # too few usable resamples to call it an interval
        return np.full(len(GRID), np.nan), np.full(len(GRID), np.nan)
    lo, hi = np.quantile(np.stack(draws), [0.025, 0.975], axis=0)
    return lo, hi
