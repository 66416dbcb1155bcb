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

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
import torch

from medmodal.common import MedmodalError, console
from medmodal.contracts import CohortDir, SpooledTensor
from medmodal.contracts.tensorfile import PIECE_BYTES
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


BATCH_ROWS = 1 << 20  # timeseries.parquet rows read at a time (~50 MB): the featurizer's memory, whatever N


@dataclass
class _FirstPass:
    last_seen: dict[str, np.ndarray]  # modality -> (N,) last observed hour + 1 (NaN: none)
    sorted: bool  # the file's rows come in cohort row order (as the builder writes it): stream by samples


def _batches(cohort: CohortDir, path: Path) -> Iterator[pl.DataFrame]:
    """timeseries.parquet checked and typed, one batch at a time; non-finite values dropped."""
    for b in cohort.iter_table("timeseries", ["hour", "variable", "value"], batch_rows=BATCH_ROWS):
        if b["hour"].null_count() or (b.height and b["hour"].min() < 0):
            raise MedmodalError(
                "hours must be non-null and >= 0 (0 = first hour of the window)", path=path, field="hour"
            )
        if not b["value"].dtype.is_numeric():
            raise MedmodalError(f"must be numeric (is {b['value'].dtype})", path=path, field="value")
        b = b.with_columns(
            pl.col("value").cast(pl.Float64), pl.col("variable").cast(pl.Utf8), pl.col("hour").cast(pl.Int64)
        )
        yield b.filter(pl.col("value").is_finite())


def _first_pass(cohort: CohortDir, modalities: list[str], path: Path) -> _FirstPass:
    """Checks every row, finds each sample's last observed hour (per modality) and whether rows are sorted."""
    last = {m: np.full(cohort.n, np.nan) for m in modalities}
    in_order, prev = True, -1
    for b in _batches(cohort, path):
        rows = b["row"].to_numpy()
        if len(rows):
            in_order = in_order and rows[0] >= prev and bool((np.diff(rows) >= 0).all())
            prev = int(rows[-1])
        hours = b["hour"].to_numpy().astype(np.float64) + 1
        for m in modalities:
            sel = cohort.has[m][rows]
            np.fmax.at(last[m], rows[sel], hours[sel])
    return _FirstPass(last, in_order)


def _chunks(cohort: CohortDir, path: Path, in_order: bool) -> Iterator[pl.DataFrame]:
    """Chunks of complete samples in row order; a file not sorted by sample comes as one chunk (all in memory)."""
    if in_order:
        yield from _complete_rows(_batches(cohort, path))
        return
    parts = list(_batches(cohort, path))
    if parts:
        yield pl.concat(parts)


class _Scratch:
    """Hourly values (row, hour, variable code, value) appended chunk by chunk to an anonymous file beside the
    store and read back chunk by chunk: the passes after the first never re-parse timeseries.parquet, and
    memory stays one chunk (24 bytes per hourly value on disk)."""

    DTYPE = np.dtype([("r", "<i8"), ("h", "<i4"), ("c", "<i4"), ("v", "<f8")])

    def __init__(self, dir: Path):
        import tempfile

        self._fh = tempfile.TemporaryFile(dir=dir)  # noqa: SIM115  (unlinked from the start: gone when closed or killed)
        self.lengths: list[int] = []

    def add(self, r: np.ndarray, h: np.ndarray, c: np.ndarray, v: np.ndarray) -> np.ndarray:
        rec = np.empty(len(r), dtype=self.DTYPE)
        rec["r"], rec["h"], rec["c"], rec["v"] = r, h, c, v
        self._fh.write(rec.tobytes())
        self.lengths.append(len(r))
        return rec

    def chunks(self) -> Iterator[np.ndarray]:
        self._fh.seek(0)
        for n in self.lengths:
            yield np.frombuffer(self._fh.read(n * self.DTYPE.itemsize), dtype=self.DTYPE)

    def close(self) -> None:
        self._fh.close()


def _complete_rows(batches: Iterable[pl.DataFrame]) -> Iterator[pl.DataFrame]:
    """Re-cut batches of a table sorted by row so that no sample's rows span two chunks."""
    carry: pl.DataFrame | None = None
    for b in batches:
        b = b if carry is None else pl.concat([carry, b])
        if b.height == 0:
            continue
        last = b["row"][-1]
        done = b.filter(pl.col("row") != last)
        carry = b.filter(pl.col("row") == last)
        if done.height:
            yield done
    if carry is not None and carry.height:
        yield carry


def _hourly_chunk(part: pl.DataFrame, codes: dict[str, int]) -> tuple[np.ndarray, ...]:
    """One chunk of complete samples -> hourly means of duplicate measurements (row, hour, code, value).

    Done in numpy over one total order (row, hour, variable, value) instead of polars ``group_by``, whose
    parallel aggregation adds floats in a different order on every run: the tensors and the manifest's
    statistics are then byte-identical between runs (docs/reliability.md), and between a run in one chunk and
    one in many (a sample never spans two chunks). ``codes`` maps variable names to provisional codes (grown
    here); the final column order is by name.
    """
    part = part.filter(pl.col("variable").is_not_null()).sort(["row", "hour", "variable", "value"])
    r = part["row"].to_numpy().astype(np.int64)
    h = part["hour"].to_numpy().astype(np.int64)
    for name in part["variable"].unique(maintain_order=True).to_list():
        codes.setdefault(name, len(codes))
    c = part["variable"].replace_strict(codes, return_dtype=pl.Int64).to_numpy().astype(np.int64)
    vals = part["value"].to_numpy().astype(np.float64)
    if len(vals):
        starts = np.flatnonzero(np.r_[True, (r[1:] != r[:-1]) | (h[1:] != h[:-1]) | (c[1:] != c[:-1])])
        counts = np.diff(np.r_[starts, len(vals)])
        vals = np.add.reduceat(vals, starts) / counts  # duplicates -> hourly mean
        r, h, c = r[starts], h[starts], c[starts]
    return r, h, c, vals


def _grow(a: np.ndarray, n: int) -> np.ndarray:
    return a if len(a) >= n else np.concatenate([a, np.zeros(n - len(a), dtype=a.dtype)])


def _train_order(rec: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, values) of a chunk's train entries per variable in (row, hour) order: summing chunk after chunk in
    this order adds every variable's values in the same sequence as one pass over all of them would."""
    tr = train[rec["r"]] if len(rec) else np.zeros(0, dtype=bool)
    r, h, c, v = rec["r"][tr], rec["h"][tr], rec["c"][tr], rec["v"][tr]
    order = np.lexsort((h, r, c))
    return c[order], v[order]


def column_blocks(n: int, width: int = 16) -> list[tuple[int, int]]:
    """[a, b) column ranges of ``width`` (the structured features are z-scored a block at a time, so memory is one
    (N, width) float64 block, not (N, F)). No block is one column wide unless F is: numpy sums an (N, 1) column
    pairwise but a wider block row by row, and the statistics must not depend on the blocking (a test checks)."""
    bounds = [*range(0, n, width), n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]
    return list(itertools.pairwise(bounds))


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
            has = cohort.has[m]
            train = cohort.split == "train"
            x = np.zeros((cohort.n, len(cols)), dtype=np.float32)  # (N, F): 0.4 GB at MIMIC-IV size
            observed = np.zeros((cohort.n, len(cols)), dtype=bool)
            mean, std, n_fit = np.zeros(len(cols)), np.ones(len(cols)), np.zeros(len(cols), dtype=np.int64)
            n_nonfinite = 0
            for a, b in column_blocks(len(cols)):
                block = cols[a:b]
                table = pl.concat(list(cohort.iter_table("structured", block)))
                if table["row"].n_unique() != table.height:
                    raise MedmodalError("duplicate sample_id rows", path=path, field="sample_id")
                values = np.full((cohort.n, len(block)), np.nan)  # (N, k) float64, one block of columns
                rows = table["row"].to_numpy()
                for j, c in enumerate(block):
                    if not table[c].dtype.is_numeric() and table[c].dtype != pl.Null:
                        raise MedmodalError(f"must be numeric (is {table[c].dtype})", path=path, field=c)
                    values[rows, j] = table[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
                del table
                n_nonfinite += int(np.isinf(values).sum())
                values[np.isinf(values)] = np.nan
                values[~has] = np.nan
                mean[a:b], std[a:b], n_fit[a:b] = fit_zscore(values, train)
                x[:, a:b], observed[:, a:b] = _normalise(values, mean[a:b], std[a:b])
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
        train = cohort.split == "train"
        first = _first_pass(cohort, modalities, path)
        results = {}
        for m in modalities:
            has = cohort.has[m]
            # end of each sample's window on the hour clock: from the cohort's times, else its last observed hour
            last_seen = first.last_seen[m]
            end = window_end_hours(cohort) if cfg.align == "end" else None
            end = last_seen if end is None else np.where(np.isnan(end), last_seen, end)
            if cfg.align == "end":
                T = int(min(cfg.max_hours, max(1, np.nanmax(end[has], initial=1))))
                offset = np.nan_to_num(end - T, nan=0.0).astype(np.int64)  # (N,) hour index of t = 0
            else:
                T = int(min(cfg.max_hours, max(1, np.nanmax(last_seen, initial=1))))
                offset = np.zeros(cohort.n, dtype=np.int64)
            scratch = _Scratch(Path(store))
            try:
                feats = self._modality(cohort, m, cfg, first, has, train, T, offset, scratch, Path(store))
            finally:
                scratch.close()
            if feats is not None:
                results[m] = feats
        return results

    def _modality(self, cohort, m, cfg, first, has, train, T, offset, scratch, store) -> ModalityFeatures | None:
        # pass 1 (timeseries.parquet): kept hours, hourly means, per-variable train counts and sums
        codes: dict[str, int] = {}
        early = late = 0
        n_fit, sums = np.zeros(0, np.int64), np.zeros(0)
        for chunk in _chunks(cohort, cohort.dir / "timeseries.parquet", first.sorted):
            part = chunk.filter(pl.Series(has[chunk["row"].to_numpy()]))
            part = part.with_columns((pl.col("hour") - pl.Series(offset[part["row"].to_numpy()])).alias("hour"))
            early += int((part["hour"] < 0).sum())
            late += int((part["hour"] >= T).sum())
            part = part.filter((pl.col("hour") >= 0) & (pl.col("hour") < T))
            rec = scratch.add(*_hourly_chunk(part, codes))
            tc, tv = _train_order(rec, train)
            n_fit, sums = _grow(n_fit, len(codes)), _grow(sums, len(codes))
            n_fit += np.bincount(tc, minlength=len(codes))
            np.add.at(sums, tc, tv)  # sequential over the fixed order
        names = sorted(codes)
        by_name = np.asarray([codes[n] for n in names], dtype=np.int64)  # name position -> provisional code
        n_fit, sums = _grow(n_fit, len(codes)), _grow(sums, len(codes))
        mean_p = np.divide(sums, n_fit, out=np.zeros(len(codes)), where=n_fit > 0)
        # pass 2 (scratch): squared deviations from the train mean, in the same order
        sq = np.zeros(len(codes))
        for rec in scratch.chunks():
            tc, tv = _train_order(rec, train)
            np.add.at(sq, tc, (tv - mean_p[tc]) ** 2)
        std_p = np.sqrt(np.divide(sq, n_fit, out=np.ones(len(codes)), where=n_fit > 0))
        std_p[~(std_p > 0)] = 1.0  # a constant variable is centred, not blown up
        kept_p = by_name[n_fit[by_name] > 0]  # provisional codes of the kept variables, by name
        variables = [names[i] for i in np.flatnonzero(n_fit[by_name] > 0)]
        dropped = [names[i] for i in np.flatnonzero(n_fit[by_name] == 0)]
        mean, std, n_kept = mean_p[kept_p], std_p[kept_p], n_fit[kept_p]
        if not variables:
            # a (N, T, 0) tensor carries nothing and no model can take it: not written, and said so
            console.print(
                f"[yellow]{m}: no variable has a value in the train split; not featurized[/yellow]", soft_wrap=True
            )
            return None
        remap = np.full(len(codes), -1, dtype=np.int64)
        remap[kept_p] = np.arange(len(kept_p))
        # pass 3 (scratch): the (N, T, V) tensors, row block by row block, into spooled files
        x = SpooledTensor((cohort.n, T, len(variables)), np.float32, dir=store)
        observed = SpooledTensor((cohort.n, T, len(variables)), bool, dir=store)
        n_values = 0
        done = 0  # rows written so far; samples come in row order (one chunk holds all when the file is unsorted)
        step = max(1, PIECE_BYTES // (T * len(variables) * 5))  # rows per block: x (float32) + observed (bool)
        for rec in scratch.chunks():
            v = remap[rec["c"]]
            keep = v >= 0
            r, h, v, vals = rec["r"][keep], rec["h"][keep], v[keep], rec["v"][keep]
            n_values += len(vals)
            if not len(r):
                continue
            end_row = int(r[-1]) + 1  # r ascends: chunks are sorted by (row, hour, variable)
            for lo in range(done, end_row, step):
                hi = min(lo + step, end_row)
                a, b = np.searchsorted(r, [lo, hi])
                block = np.zeros((hi - lo, T, len(variables)), dtype=np.float32)  # (rows, T, V)
                seen = np.zeros((hi - lo, T, len(variables)), dtype=bool)
                vb = v[a:b]
                block[r[a:b] - lo, h[a:b], vb] = ((vals[a:b] - mean[vb]) / std[vb]).astype(np.float32)
                seen[r[a:b] - lo, h[a:b], vb] = True
                x.append(block)
                observed.append(seen)
            done = end_row
        x.append_zeros(cohort.n - done)
        observed.append_zeros(cohort.n - done)
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
                "n_fit_values": n_kept.astype(int).tolist(),
            },
            "counts": {
                "computed": cohort.n,
                "reused": 0,
                "skipped": 0,
                "observed": int(has.sum()),
                "values": n_values,
                "values_before_kept_hours_dropped": early,
                "values_after_kept_hours_dropped": late,
            },
            "align": cfg.align,
            "variables_dropped_not_in_train": dropped,
            "config": asdict(cfg),
        }
        return ModalityFeatures(x=x, mask=torch.from_numpy(has.copy()), observed=observed, manifest=manifest)
