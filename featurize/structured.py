"""Tabular tensors: ``structured`` modalities from structured.parquet, ``timeseries`` from timeseries.parquet.

Both are z-scored with statistics fitted on the **train split only** (so validation and test values never shape
the features), then missing values become 0 with a separate ``observed`` mask of the same shape - the model sees
"unobserved" explicitly instead of a fake mean. Rows of samples whose ``has_<m>`` is false hold zeros and
``observed`` false, as docs/contracts.md §2 requires.

Timeseries shape (N, T, V): T = the longest observation window in the cohort in hours, capped at ``max_hours``
(default 48). With ``align="start"`` (default) each sample keeps the first T hours of its window (t = hours since
it opened: the contract's clock, the classic first-48-hours ICU layout); with ``align="end"`` it keeps the T hours
just before its prediction time (window end = ceil((prediction_time - window_start_time) / 1 h) on the hour clock,
index_time when there is no window_start_time), right-aligned so t = T-1 is always the last hour before
prediction and a short window is left-padded with unobserved hours. Values outside the kept hours are dropped and
counted. V = the variables observed in the train split, sorted by name (a variable seen only outside train cannot be
normalised without leakage and is dropped, counted in the manifest).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
import torch

from medmodal.common import MedmodalError, console
from medmodal.contracts import CohortDir
from medmodal.featurize.base import FEATURIZERS, Featurizer, ModalityFeatures
from medmodal.options import option, validate


@dataclass(frozen=True)
class StructuredConfig:
    pass  # nothing to choose: z-score on train, NaN -> 0 with an observed mask


@dataclass(frozen=True)
class TimeseriesConfig:
    # hours outside the kept T are dropped (counted in the manifest)
    max_hours: int = option(48, "cap on the timeseries length T (hours)", minimum=1)
    # "start": t = hours since the window opened (the contract's clock); "end": t = T-1 is the last hour before
    # prediction
    align: Literal["start", "end"] = option(
        "start", "start: the first T hours of the window | end: the T hours before prediction"
    )

    def __post_init__(self) -> None:
        validate(self)


def window_end_hours(cohort: CohortDir) -> np.ndarray | None:
    """Per sample, the hour index of the prediction time on the timeseries clock (hour 0 = window start):
    ceil((prediction_time - window_start_time) / 1 h), with index_time when the cohort has no window_start_time.
    None when cohort.parquet has neither clock column."""
    cols = cohort.frame.columns
    start = "window_start_time" if "window_start_time" in cols else "index_time" if "index_time" in cols else None
    if start is None or "prediction_time" not in cols:
        return None
    df = cohort.frame
    minutes = (df["prediction_time"] - df[start]).dt.total_minutes().to_numpy().astype(np.float64)
    return np.ceil(minutes / 60.0)  # NaN where either time is null


def fit_zscore(values: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column mean/std over the train rows' finite values. values (R, F), train bool (R,) -> (F,), (F,), (F,)."""
    tv = values[train]
    finite = np.isfinite(tv)
    n = finite.sum(0)
    safe = np.where(finite, tv, 0.0)
    mean = np.divide(safe.sum(0), n, out=np.zeros(values.shape[1]), where=n > 0)
    var = np.divide((np.where(finite, tv - mean, 0.0) ** 2).sum(0), n, out=np.ones(values.shape[1]), where=n > 0)
    std = np.sqrt(var)
    std[~(std > 0)] = 1.0  # a constant column is centred, not blown up
    return mean, std, n


def _hourly_stats(part: pl.DataFrame, train: np.ndarray):
    """Hourly means of duplicate measurements, then per-variable mean / std (ddof 0) over the train split.

    Done in numpy over one total order (row, hour, variable, value) instead of polars ``group_by``, whose
    parallel aggregation adds floats in a different order on every run: the manifest's statistics and the
    tensors are then byte-identical between runs (docs/reliability.md). Returns the rows (row, hour, variable
    index, value) of the kept variables, the variable names (sorted; only those with a train value), the
    dropped names, and mean, std, n per kept variable.
    """
    part = part.filter(pl.col("variable").is_not_null()).sort(["row", "hour", "variable", "value"])
    names = sorted(part["variable"].unique().to_list())
    r = part["row"].to_numpy().astype(np.int64)
    h = part["hour"].to_numpy().astype(np.int64)
    c = np.searchsorted(np.asarray(names, dtype=object), part["variable"].to_numpy().astype(object)).astype(np.int64)
    vals = part["value"].to_numpy().astype(np.float64)
    if len(vals):
        starts = np.flatnonzero(np.r_[True, (r[1:] != r[:-1]) | (h[1:] != h[:-1]) | (c[1:] != c[:-1])])
        counts = np.diff(np.r_[starts, len(vals)])
        vals = np.add.reduceat(vals, starts) / counts  # duplicates -> hourly mean
        r, h, c = r[starts], h[starts], c[starts]
    tr = train[r] if len(r) else np.zeros(0, dtype=bool)
    n_fit = np.bincount(c[tr], minlength=len(names))
    sums = np.zeros(len(names))
    order = np.lexsort((h[tr], r[tr], c[tr]))  # per variable, in (row, hour) order
    tc, tv = c[tr][order], vals[tr][order]
    np.add.at(sums, tc, tv)  # sequential over the fixed order
    mean_all = np.divide(sums, n_fit, out=np.zeros(len(names)), where=n_fit > 0)
    sq = np.zeros(len(names))
    np.add.at(sq, tc, (tv - mean_all[tc]) ** 2)
    std_all = np.sqrt(np.divide(sq, n_fit, out=np.ones(len(names)), where=n_fit > 0))
    std_all[~(std_all > 0)] = 1.0  # a constant variable is centred, not blown up
    kept = np.flatnonzero(n_fit > 0)
    remap = np.full(len(names), -1, dtype=np.int64)
    remap[kept] = np.arange(len(kept))
    keep = remap[c] >= 0
    return (
        r[keep],
        h[keep],
        remap[c[keep]],
        vals[keep],
        [names[i] for i in kept],
        [names[i] for i in np.flatnonzero(n_fit == 0)],
        mean_all[kept],
        std_all[kept],
        n_fit[kept],
    )


def _normalise(values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    observed = np.isfinite(values)
    x = np.where(observed, (np.where(observed, values, 0.0) - mean) / std, 0.0)
    return x.astype(np.float32), observed


@FEATURIZERS.register("structured")
class StructuredFeaturizer(Featurizer):
    """structured.parquet's features z-scored on the train split, NaN -> 0 with an observed mask."""

    kind = "structured"
    config_class = StructuredConfig

    def run(
        self, cohort: CohortDir, modalities: list[str], store: str | Path, cfg: StructuredConfig
    ) -> dict[str, ModalityFeatures]:
        if not modalities:
            return {}
        groups = cohort.manifest.get("feature_groups") or {}
        path = cohort.dir / "structured.parquet"
        results = {}
        for m in modalities:
            cols = groups.get(m)
            if not cols:
                raise MedmodalError(
                    f"no columns listed for structured modality '{m}'",
                    path=cohort.dir / "manifest.json",
                    field="feature_groups",
                )
            table = cohort.table("structured", list(cols))
            if table["row"].n_unique() != table.height:
                raise MedmodalError("duplicate sample_id rows", path=path, field="sample_id")
            values = np.full((cohort.n, len(cols)), np.nan)  # (N, F)
            rows = table["row"].to_numpy()
            for j, c in enumerate(cols):
                if not table[c].dtype.is_numeric() and table[c].dtype != pl.Null:
                    raise MedmodalError(f"must be numeric (is {table[c].dtype})", path=path, field=c)
                values[rows, j] = table[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
            n_nonfinite = int(np.isinf(values).sum())
            values[np.isinf(values)] = np.nan
            has = cohort.has[m]
            values[~has] = np.nan
            mean, std, n_fit = fit_zscore(values, cohort.split == "train")
            x, observed = _normalise(values, mean, std)
            manifest = {
                "kind": "structured",
                "columns": list(cols),
                "encoder": {"fingerprint": None, "description": "z-score fitted on the train split; NaN -> 0"},
                "pooling": None,
                "normalisation": {
                    "fitted_on": "train",
                    "n_train_samples": int((cohort.split == "train").sum()),
                    "mean": mean.tolist(),
                    "std": std.tolist(),
                    "n_fit_values": n_fit.astype(int).tolist(),
                    "columns_without_train_values": [c for c, k in zip(cols, n_fit) if k == 0],
                },
                "counts": {
                    "computed": cohort.n,
                    "reused": 0,
                    "skipped": 0,
                    "observed": int(has.sum()),
                    "non_finite_values": n_nonfinite,
                },
                "observed_fraction": float(observed[has].mean()) if has.any() else 0.0,
                "config": asdict(cfg),
            }
            results[m] = ModalityFeatures(
                x=torch.from_numpy(x),
                mask=torch.from_numpy(has.copy()),
                observed=torch.from_numpy(observed),
                manifest=manifest,
            )
        return results


@FEATURIZERS.register("timeseries")
class TimeseriesFeaturizer(Featurizer):
    """timeseries.parquet as (N, T, V) hourly means z-scored on the train split, with an observed mask."""

    kind = "timeseries"
    config_class = TimeseriesConfig
    command = "structured"  # `medmodal featurize structured` writes both tabular kinds

    def run(
        self, cohort: CohortDir, modalities: list[str], store: str | Path, cfg: TimeseriesConfig
    ) -> dict[str, ModalityFeatures]:
        if not modalities:
            return {}
        path = cohort.dir / "timeseries.parquet"
        ts = cohort.items("timeseries")
        if ts["hour"].null_count() or (ts.height and ts["hour"].min() < 0):
            raise MedmodalError(
                "hours must be non-null and >= 0 (0 = first hour of the window)", path=path, field="hour"
            )
        if not ts["value"].dtype.is_numeric():
            raise MedmodalError(f"must be numeric (is {ts['value'].dtype})", path=path, field="value")
        ts = ts.with_columns(
            pl.col("value").cast(pl.Float64), pl.col("variable").cast(pl.Utf8), pl.col("hour").cast(pl.Int64)
        )
        ts = ts.filter(pl.col("value").is_finite())
        results = {}
        for m in modalities:
            has = cohort.has[m]
            part = ts.filter(pl.Series(has[ts["row"].to_numpy()]))
            # end of each sample's window on the hour clock: from the cohort's times, else its last observed hour
            last_seen = np.full(cohort.n, np.nan)
            if part.height:
                agg = part.group_by("row").agg(pl.col("hour").max())
                last_seen[agg["row"].to_numpy()] = agg["hour"].to_numpy() + 1
            end = window_end_hours(cohort) if cfg.align == "end" else None
            end = last_seen if end is None else np.where(np.isnan(end), last_seen, end)
            if cfg.align == "end":
                T = int(min(cfg.max_hours, max(1, np.nanmax(end[has], initial=1))))
                offset = np.nan_to_num(end - T, nan=0.0).astype(np.int64)  # (N,) hour index of t = 0
            else:
                T = int(min(cfg.max_hours, max(1, np.nanmax(last_seen, initial=1))))
                offset = np.zeros(cohort.n, dtype=np.int64)
            part = part.with_columns((pl.col("hour") - pl.Series(offset[part["row"].to_numpy()])).alias("hour"))
            early = int((part["hour"] < 0).sum())
            late = int((part["hour"] >= T).sum())
            part = part.filter((pl.col("hour") >= 0) & (pl.col("hour") < T))
            r, h, v, vals, variables, dropped, mean, std, n_fit = _hourly_stats(part, cohort.split == "train")
            if not variables:
                # a (N, T, 0) tensor carries nothing and no model can take it: not written, and said so
                console.print(
                    f"[yellow]{m}: no variable has a value in the train split; not featurized[/yellow]",
                    soft_wrap=True,
                )
                continue
            x = np.zeros((cohort.n, T, len(variables)), dtype=np.float32)  # (N, T, V)
            observed = np.zeros((cohort.n, T, len(variables)), dtype=bool)
            if len(vals):
                x[r, h, v] = ((vals - mean[v]) / std[v]).astype(np.float32)
                observed[r, h, v] = True
            manifest = {
                "kind": "timeseries",
                "variables": variables,
                "hours": T,
                "hour_cap": cfg.max_hours,
                "encoder": {
                    "fingerprint": None,
                    "description": "hourly values z-scored per variable on the train split; NaN -> 0",
                },
                "pooling": None,
                "normalisation": {
                    "fitted_on": "train",
                    "mean": mean.tolist(),
                    "std": std.tolist(),
                    "n_fit_values": n_fit.astype(int).tolist(),
                },
                "counts": {
                    "computed": cohort.n,
                    "reused": 0,
                    "skipped": 0,
                    "observed": int(has.sum()),
                    "values": len(vals),
                    "values_before_kept_hours_dropped": early,
                    "values_after_kept_hours_dropped": late,
                },
                "align": cfg.align,
                "variables_dropped_not_in_train": dropped,
                "config": asdict(cfg),
            }
            results[m] = ModalityFeatures(
                x=torch.from_numpy(x),
                mask=torch.from_numpy(has.copy()),
                observed=torch.from_numpy(observed),
                manifest=manifest,
            )
        return results
