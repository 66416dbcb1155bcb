"""Every figure medmodal draws: one style, one colour-blind-safe palette, PNG bytes out.

Each public function is a pure function of arrays / plain lists and returns the PNG file's bytes, so the same
picture lands in a run directory (``training_curve.png``, ``tsne_causal_biased.png``), in the shift benchmark's
``shift.png`` and, base64-encoded, inside the offline HTML reports. Nothing here imports another medmodal stage,
so models/ and benchmarks/ can call it without a cycle.

Figures are drawn on ``matplotlib.figure.Figure`` objects directly (the Agg canvas, no pyplot): no global
backend switch, no figure registry to leak, safe to call from any thread. The palette is Okabe & Ito's
("Color Universal Design", 2008), distinguishable under the common colour-vision deficiencies; continuous
colours use ``cividis``, which was designed for the same purpose. Every axis states its unit. PNGs are written
without the matplotlib version in their metadata, so the same inputs give byte-identical files.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
from cycler import cycler
from matplotlib.figure import Figure
from PIL import Image as PILImage

# Okabe-Ito, reordered so that the first colours are the most distinct on white (yellow last but one)
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
GREY = "#8C8C8C"
DPI = 110

STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.prop_cycle": cycler(color=OKABE_ITO),
    "legend.frameon": False,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "image.cmap": "cividis",
    "savefig.dpi": DPI,
    "figure.dpi": DPI,
}


def _png(draw: Callable[..., Figure]) -> Callable[..., bytes]:
    """Run a drawing function under the house style and return its figure as PNG bytes."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs) -> bytes:
        with mpl.rc_context(STYLE):
            fig = draw(*args, **kwargs)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", metadata={"Software": None})
        # A figure has a few dozen colours plus anti-aliasing: a 256-colour palette looks the same and makes the
        # file ~2.5x smaller (a run page drops from ~900 to ~350 KiB). Median cut is deterministic.
        img = PILImage.open(buf).convert("RGB").quantize(colors=256)
        out = io.BytesIO()
        img.save(out, format="PNG")
        return out.getvalue()

    return wrapper


def _figure(width: float, height: float, **kw) -> Figure:
    return Figure(figsize=(width, height), layout="constrained", **kw)


def colour(i: int) -> str:
    return OKABE_ITO[i % len(OKABE_ITO)]


def _nan(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


# ---------------------------------------------------------------------------------------------- training


@_png
def training_curves(history: list[dict], best_epoch: int | None = None) -> Figure:
    """Per-epoch training objective and validation cross-entropy (left), validation AUROC / AUPRC (right)."""
    ep = [h["epoch"] for h in history]
    fig = _figure(9, 3.2)
    a, b = fig.subplots(1, 2)
    a.plot(ep, [h["train_loss"] for h in history], marker=".", label="train objective (incl. framework terms)")
    a.plot(ep, [h["val_loss"] for h in history], marker=".", label="validation cross-entropy")
    a.set_xlabel("epoch (count)")
    a.set_ylabel("loss (nats per sample)")
    a.legend()
    for key, name in (("val_auroc", "validation AUROC"), ("val_auprc", "validation AUPRC")):
        b.plot(ep, _nan([h.get(key) for h in history]), marker=".", label=name)
    b.set_xlabel("epoch (count)")
    b.set_ylabel("score (0–1, higher is better)")
    for ax in (a, b):
        if best_epoch is not None:
            ax.axvline(best_epoch, color=GREY, ls="--", lw=0.8, label="selected epoch" if ax is b else None)
    b.legend()
    return fig


# ---------------------------------------------------------------------------------------------- t-SNE


def _categorical(values: np.ndarray) -> bool:
    return len(np.unique(values)) <= 12 and not np.issubdtype(values.dtype, np.floating)


@_png
def tsne_pair(
    emb_causal: np.ndarray,
    emb_biased: np.ndarray,
    color: np.ndarray,
    label: str,
    title: str,
    scores: dict[str, float | None],
) -> Figure:
    """Two 2-D embeddings side by side, points coloured by ``color`` (categorical or continuous); ``scores``
    {"causal", "biased"} are the confounder's decodability (AUROC) from each stream, shown in the titles."""
    fig = _figure(10, 4.6)
    axes = fig.subplots(1, 2)
    categorical = _categorical(color)
    values = np.unique(color)
    for ax, emb, name in ((axes[0], emb_causal, "causal"), (axes[1], emb_biased, "biased")):
        if categorical:
            for i, v in enumerate(values):
                sel = color == v
                ax.scatter(emb[sel, 0], emb[sel, 1], s=6, alpha=0.6, color=colour(i), label=f"{label}={v}", lw=0)
        else:
            sc = ax.scatter(emb[:, 0], emb[:, 1], s=6, alpha=0.6, c=color.astype(float), lw=0)
            fig.colorbar(sc, ax=ax, label=f"{label} (value)")
        auc = scores.get(name)
        ax.set_title(f"{name} features" + ("" if auc is None else f" ({label} decodable: AUROC {auc:.2f})"))
        ax.set_xlabel("t-SNE 1 (arbitrary units)")
        ax.set_ylabel("t-SNE 2 (arbitrary units)")
        ax.set_xticks([])
        ax.set_yticks([])
    if categorical:
        axes[1].legend(loc="best", markerscale=2)
    fig.suptitle(title, fontsize=11)
    return fig


# ---------------------------------------------------------------------------------------------- bars


@dataclass(frozen=True)
class BarPanel:
    """One panel of grouped bars: ``values`` / ``errors`` are (n_series, n_groups); NaN = no bar."""

    title: str
    ylabel: str
    values: np.ndarray
    errors: np.ndarray | None = None
    zero_line: bool = False  # a difference / drop: draw y = 0 and let the axis include it
    tight_ylim: bool = True  # scores: zoom to the range of the bars instead of starting at 0


@_png
def grouped_bars(groups: Sequence[str], series: Sequence[str], panels: Sequence[BarPanel], title: str = "") -> Figure:
    """Bars per group (x) and series (colour), one panel each, error bars where given (shift.png)."""
    fig = _figure(4.6 * len(panels), 3.8)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    width = 0.8 / max(1, len(series))
    for ax, panel in zip(axes, panels):
        for j, name in enumerate(series):
            xs = np.arange(len(groups)) + (j - (len(series) - 1) / 2) * width
            err = None if panel.errors is None else np.nan_to_num(panel.errors[j])
            ax.bar(xs, panel.values[j], width, yerr=err, capsize=2, label=name, color=colour(j))
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups)
        ax.set_title(panel.title)
        ax.set_ylabel(panel.ylabel)
        ax.set_xlabel("backbone")
        finite = panel.values[np.isfinite(panel.values)]
        if panel.zero_line:
            ax.axhline(0, color="black", lw=0.6)
        elif panel.tight_ylim and finite.size:
            ax.set_ylim(max(0.0, finite.min() - 0.08), min(1.0, finite.max() + 0.05))
    axes[0].legend(ncol=2)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


@_png
def attrition_funnel(steps: Sequence[str], n_subjects: Sequence[int], n_samples: Sequence[int]) -> Figure:
    """Horizontal bars per inclusion step, top to bottom, with the count and the share kept from the step above."""
    n = len(steps)
    fig = _figure(8, 0.45 * n + 1.2)
    ax = fig.subplots()
    y = np.arange(n)[::-1]
    ax.barh(y + 0.2, n_subjects, 0.4, color=colour(0), label="subjects")
    ax.barh(y - 0.2, n_samples, 0.4, color=colour(5), label="samples")
    top = max(max(n_subjects, default=0), max(n_samples, default=0), 1)
    for i in range(n):
        for off, vals in ((0.2, n_subjects), (-0.2, n_samples)):
            kept = "" if i == 0 or not vals[i - 1] else f"  ({vals[i] / vals[i - 1]:.0%} of previous)"
            ax.text(vals[i] + top * 0.01, y[i] + off, f"{vals[i]:,}{kept}", va="center", fontsize=7)
    ax.set_yticks(y)
    ax.set_yticklabels(steps)
    ax.set_xlim(0, top * 1.45)
    ax.set_xlabel("count (subjects or samples)")
    ax.set_ylabel("inclusion step (applied top to bottom)")
    ax.legend(loc="lower right")
    ax.grid(axis="y", visible=False)
    return fig


@_png
def availability_by_split(modalities: Sequence[str], splits: Sequence[str], share: np.ndarray) -> Figure:
    """Share of samples with each modality (rows) per split (colours); ``share`` is (n_modalities, n_splits)."""
    m = len(modalities)
    fig = _figure(7, 0.14 * m * max(1, len(splits)) + 1.1)
    ax = fig.subplots()
    height = 0.8 / max(1, len(splits))
    y = np.arange(m)[::-1]
    for j, split in enumerate(splits):
        ys = y + ((len(splits) - 1) / 2 - j) * height
        ax.barh(ys, 100 * share[:, j], height, color=colour(j), label=split)
        for yy, v in zip(ys, share[:, j]):
            ax.text(100 * v + 1, yy, f"{v:.0%}", va="center", fontsize=7)
    ax.set_yticks(y)
    ax.set_yticklabels(modalities)
    ax.set_xlim(0, 112)
    ax.set_xlabel("samples with the modality observed (% of the split)")
    ax.set_ylabel("modality")
    ax.legend(title="split", loc="lower right")
    ax.grid(axis="y", visible=False)
    return fig


# ---------------------------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Series:
    """Estimates with 95% intervals, one per row (NaN = no estimate for that row)."""

    name: str
    value: Sequence[float | None]
    low: Sequence[float | None]
    high: Sequence[float | None]


@dataclass(frozen=True)
class ForestPanel:
    xlabel: str
    series: Sequence[Series]
    reference: float | None = None  # a vertical line (the overall value, or 0 for a difference)
    reference_label: str = ""


@_png
def forest(rows: Sequence[str], panels: Sequence[ForestPanel], title: str = "", ylabel: str = "group") -> Figure:
    """A forest plot: one row per group, a point and its interval per series, panels side by side."""
    n = len(rows)
    fig = _figure(max(6.0, 3.6 * len(panels) + 2.2), 0.28 * n + 1.4)
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    y = np.arange(n)[::-1].astype(float)
    for ax, panel in zip(axes, panels):
        k = len(panel.series)
        for j, s in enumerate(panel.series):
            v, lo, hi = _nan(s.value), _nan(s.low), _nan(s.high)
            yy = y + ((k - 1) / 2 - j) * (0.6 / max(1, k))
            err = np.vstack([np.where(np.isfinite(lo), v - lo, 0), np.where(np.isfinite(hi), hi - v, 0)])
            ax.errorbar(v, yy, xerr=err, fmt="o", ms=4, capsize=2, lw=1, color=colour(j), label=s.name)
        if panel.reference is not None and np.isfinite(panel.reference):
            ax.axvline(panel.reference, color=GREY, ls="--", lw=0.8, label=panel.reference_label or None)
        ax.set_xlabel(panel.xlabel)
        ax.grid(axis="y", visible=False)
        if k > 1 or panel.reference_label:
            ax.legend(loc="best")
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(rows)
    axes[0].set_ylim(-0.7, n - 0.3)
    axes[0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


@_png
def upset(
    modalities: Sequence[str],
    present: np.ndarray,
    counts: Sequence[int],
    rates: Sequence[tuple[str, Series, float | None]],
) -> Figure:
    """UpSet-style view of missingness patterns (columns): the sample count per pattern on top, then one panel
    per label with the label rate and its 95% interval per pattern (and the overall rate as a dashed line), and
    the dot matrix of which modalities each pattern holds at the bottom. ``present`` is (n_patterns, n_modalities)
    bool; ``rates`` are (panel label, per-pattern Series in [0, 1], overall rate)."""
    p, m = present.shape
    heights = [1.3] + [1.1] * len(rates) + [0.28 * m + 0.2]
    fig = _figure(max(5.0, 0.42 * p + 2.6), sum(heights) + 0.8)
    axes = fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights})
    x = np.arange(p)
    top = axes[0]
    top.bar(x, counts, 0.6, color=colour(0))
    for xi, c in zip(x, counts):
        top.text(xi, c, f"{c:,}", ha="center", va="bottom", fontsize=7)
    top.set_ylabel("samples (count)")
    top.set_ylim(0, max(max(counts, default=1), 1) * 1.2)
    top.grid(axis="x", visible=False)
    for ax, (name, s, overall) in zip(axes[1:-1], rates):  # each panel: the rate, its 95% interval, the overall
        v, lo, hi = 100 * _nan(s.value), 100 * _nan(s.low), 100 * _nan(s.high)
        err = np.vstack([np.nan_to_num(v - lo), np.nan_to_num(hi - v)])
        ax.errorbar(x, v, yerr=err, fmt="o", ms=4, capsize=2, lw=1, color=colour(1))
        if overall is not None:
            ax.axhline(100 * overall, color=GREY, ls="--", lw=0.8, label=f"all samples {overall:.1%}")
            ax.legend(loc="best")
        ax.set_title(name, loc="left", fontsize=9)
        ax.set_ylabel("label rate (%)")
        ax.set_ylim(bottom=0)
        ax.grid(axis="x", visible=False)
    mat = axes[-1]
    for i in range(p):
        on = np.flatnonzero(present[i])
        mat.scatter(np.full(m, i), np.arange(m), s=30, color="#DDDDDD", zorder=1)
        if on.size:
            mat.scatter(np.full(on.size, i), on, s=30, color="black", zorder=2)
            mat.plot([i, i], [on.min(), on.max()], color="black", lw=1.5, zorder=2)
    mat.set_yticks(range(m))
    mat.set_yticklabels(modalities)
    mat.set_ylim(-0.6, m - 0.4)
    mat.invert_yaxis()
    mat.set_ylabel("modality present")
    mat.set_xlabel("missingness pattern (sorted by sample count)")
    mat.set_xticks(x)
    mat.set_xticklabels([str(i + 1) for i in x])
    mat.grid(False)
    for spine in ("left", "bottom"):
        mat.spines[spine].set_visible(False)
    return fig


# ---------------------------------------------------------------------------------------------- discrimination


@dataclass(frozen=True)
class Curve:
    """A curve (x, y) with a pointwise 95% band (band_low / band_high over band_x); ``score`` for the legend."""

    x: np.ndarray
    y: np.ndarray
    band_x: np.ndarray
    band_low: np.ndarray
    band_high: np.ndarray
    score: float | None = None


@dataclass(frozen=True)
class Reliability:
    """Equal-width bins: mean predicted probability, observed event rate with its 95% interval, samples per bin."""

    mean_predicted: np.ndarray
    observed: np.ndarray
    low: np.ndarray
    high: np.ndarray
    counts: np.ndarray
    ece: float | None = None


@_png
def roc_pr_calibration(roc: Curve, pr: Curve, reliability: Reliability, prevalence: float, title: str) -> Figure:
    """ROC, precision-recall and reliability curves of one binary label, each with its bootstrap band."""
    fig = _figure(12, 3.9)
    a, b, c = fig.subplots(1, 3)
    band = {"color": colour(0), "alpha": 0.2, "lw": 0}
    a.fill_between(roc.band_x, roc.band_low, roc.band_high, label="95% bootstrap band", **band)
    a.plot(roc.x, roc.y, color=colour(0), label=f"model (AUROC {roc.score:.3f})" if roc.score is not None else "model")
    a.plot([0, 1], [0, 1], color=GREY, ls="--", lw=0.8, label="chance")
    a.set_xlabel("false-positive rate (1 − specificity, 0–1)")
    a.set_ylabel("true-positive rate (sensitivity, 0–1)")
    a.set_title("ROC")
    b.fill_between(pr.band_x, pr.band_low, pr.band_high, label="95% bootstrap band", **band)
    b.step(
        pr.x,
        pr.y,
        where="pre",  # x is increasing recall: "pre" is scikit-learn's steps-post on its decreasing order
        color=colour(0),
        label=f"model (AP {pr.score:.3f})" if pr.score is not None else "model",
    )
    b.axhline(prevalence, color=GREY, ls="--", lw=0.8, label=f"prevalence {prevalence:.3f}")
    b.set_xlabel("recall (sensitivity, 0–1)")
    b.set_ylabel("precision (PPV, 0–1)")
    b.set_ylim(0, 1.02)
    b.set_title("precision–recall")
    r = reliability
    ok = r.counts > 0
    err = np.vstack([np.nan_to_num(r.observed - r.low), np.nan_to_num(r.high - r.observed)])[:, ok]
    c.plot([0, 1], [0, 1], color=GREY, ls="--", lw=0.8, label="perfect calibration")
    ece = "" if r.ece is None else f" (ECE {r.ece:.3f})"
    c.errorbar(
        r.mean_predicted[ok],
        r.observed[ok],
        yerr=err,
        fmt="o-",
        ms=4,
        capsize=2,
        lw=1,
        color=colour(1),
        label=f"model, 10 equal-width bins{ece}",
    )
    c.set_xlim(0, 1)
    c.set_ylim(0, 1.02)
    c.set_xlabel("mean predicted probability in the bin (0–1)")
    c.set_ylabel("observed event rate in the bin (0–1)")
    c.set_title("calibration (reliability)")
    hist = c.twinx()
    edges = np.linspace(0, 1, len(r.counts) + 1)
    hist.bar(edges[:-1], r.counts, width=np.diff(edges), align="edge", color=GREY, alpha=0.25, lw=0)
    hist.set_ylabel("samples in the bin (count)", color=GREY)
    hist.set_ylim(0, max(r.counts.max(initial=1), 1) * 4)  # keep the histogram in the bottom quarter
    hist.grid(False)
    hist.spines["right"].set_visible(True)
    for ax in (a, b, c):
        ax.legend(loc="lower right" if ax is a else "best")
    fig.suptitle(title, fontsize=11)
    return fig


@_png
def prevalence_by_split(labels: Sequence[str], splits: Sequence[str], rates: Sequence[Series]) -> Figure:
    """Label prevalence (points with 95% intervals) per label (x) and split (colour); one Series per split."""
    fig = _figure(max(4.5, 1.6 * len(labels) + 2), 3.2)
    ax = fig.subplots()
    k = len(splits)
    for j, s in enumerate(rates):
        v, lo, hi = 100 * _nan(s.value), 100 * _nan(s.low), 100 * _nan(s.high)
        xs = np.arange(len(labels)) + ((j - (k - 1) / 2) * 0.6 / max(1, k))
        ax.errorbar(
            xs,
            v,
            yerr=np.vstack([np.nan_to_num(v - lo), np.nan_to_num(hi - v)]),
            fmt="o",
            ms=5,
            capsize=3,
            color=colour(j),
            label=s.name,
        )
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels)
    ax.set_xlabel("label (class)")
    ax.set_ylabel("prevalence (% of labelled samples, 95% CI)")
    ax.set_ylim(bottom=0)
    ax.legend(title="split")
    ax.grid(axis="x", visible=False)
    return fig
