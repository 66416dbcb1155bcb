"""Streaming, byte-reproducible CSV(.gz) writing and the clock helpers the simulators share.

Rows arrive chunk by chunk as polars DataFrames; each chunk is formatted by polars (fast, multi-threaded) and
pushed through one gzip stream, so memory stays bounded by one chunk. The gzip header carries mtime 0 and no
file name, which is what makes the same seed give byte-identical files.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import queue
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

# PhysioNet's timestamp format ("2180-07-23 12:36:00"); dates alone (dod, chartdate) as ISO dates.
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# zlib level 4: about 3x faster than the default 9 at ~10% larger files; the level is fixed so bytes are stable.
GZIP_LEVEL = 4


class _Compressor:
    """One background thread doing the gzip work of every table, in submission order.

    zlib releases the GIL while it deflates, so compressing chunk i overlaps with generating chunk i + 1 (about
    1.5x faster on two cores). The queue is bounded, so at most a few formatted chunks wait in memory.
    """

    def __init__(self, depth: int = 4):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="simulate-gzip", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            fh, data = item
            if self._error is None:
                try:
                    fh.write(data)
                except BaseException as err:  # re-raised in the generating thread
                    self._error = err

    def submit(self, fh, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((fh, data))

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


class CsvWriter:
    """One output table: a fixed column order, header written once, gzip when the name ends in .gz."""

    def __init__(self, path: Path, columns: Sequence[str], compressor: _Compressor):
        self.path = Path(path)
        self.columns = list(columns)
        self.rows = 0
        self._compressor = compressor
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._raw = open(self.path, "wb")  # noqa: SIM115  (closed by close(), which the Writers context calls)
        if self.path.suffix == ".gz":
            self._fh = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, compresslevel=GZIP_LEVEL, mtime=0)
        else:
            self._fh = self._raw
        compressor.submit(self._fh, (",".join(self.columns) + "\n").encode())

    def write(self, df: pl.DataFrame) -> None:
        if df.height == 0:
            return
        missing = [c for c in self.columns if c not in df.columns]
        if missing:  # a programming error in a simulator, not a user error
            raise AssertionError(f"{self.path.name}: chunk lacks columns {missing}")
        buf = io.BytesIO()
        df.select(self.columns).write_csv(
            buf, include_header=False, datetime_format=DATETIME_FORMAT, date_format="%Y-%m-%d", null_value=""
        )
        self._compressor.submit(self._fh, buf.getvalue())
        self.rows += df.height

    def close(self) -> None:
        """Only after the compressor has finished."""
        if self._fh is not self._raw:
            self._fh.close()
        self._raw.close()


class Writers:
    """The tables one simulation writes: opened lazily, compressed in the background, closed together.

    Use as a context manager; ``close()`` returns the row count of every table (all tables exist, even empty).
    """

    def __init__(self, root: Path, schemas: dict[str, Sequence[str]]):
        self.root = Path(root)
        self.schemas = schemas
        self._open: dict[str, CsvWriter] = {}
        self._compressor = _Compressor()

    def write(self, table: str, df: pl.DataFrame) -> None:
        if table not in self._open:
            self._open[table] = CsvWriter(self.root / table, self.schemas[table], self._compressor)
        self._open[table].write(df)

    def close(self) -> dict[str, int]:
        for table in self.schemas:
            if table not in self._open:
                self._open[table] = CsvWriter(self.root / table, self.schemas[table], self._compressor)
        self._compressor.finish()
        for w in self._open.values():
            w.close()
        return {table: w.rows for table, w in self._open.items()}

    def __enter__(self) -> Writers:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is not None:  # stop the thread and release the files; the caller's atomic_dir cleans up
            with contextlib.suppress(BaseException):
                self._compressor.finish()
            for w in self._open.values():
                w.close()


# ------------------------------------------------------------------------------------------------ clock helpers
HOUR = 3600
DAY = 86400


def year_start(years: np.ndarray) -> np.ndarray:
    """Seconds since 1970 of 1 January of each year (MIMIC's shifted years 2100-2210 included)."""
    return (np.asarray(years, dtype=np.int64) - 1970).astype("datetime64[Y]").astype("datetime64[s]").astype(np.int64)


def year_of(secs: np.ndarray) -> np.ndarray:
    return np.asarray(secs, dtype=np.int64).astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970


def dt(name: str, secs: np.ndarray, valid: np.ndarray | None = None) -> pl.Series:
    """Seconds since 1970 -> polars Datetime (null where ``valid`` is false)."""
    s = pl.Series(name, np.asarray(secs, dtype=np.int64) * 1_000_000, dtype=pl.Int64)
    if valid is not None:
        s = pl.select(pl.when(pl.Series(np.asarray(valid, dtype=bool))).then(s).otherwise(None)).to_series()
    return s.cast(pl.Datetime("us")).alias(name)


def nullable(name: str, values: np.ndarray, valid: np.ndarray, dtype: pl.DataType = pl.Int64) -> pl.Series:
    s = pl.Series(name, values).cast(dtype)
    return pl.select(pl.when(pl.Series(np.asarray(valid, dtype=bool))).then(s).otherwise(None)).to_series().alias(name)


def codes(name: str, idx: np.ndarray, labels: tuple[str | None, ...]) -> pl.Series:
    """Integer codes -> a string column without Python loops; code -1 (or a None label) -> null."""
    cat = pl.Series(name, [*list(labels), None], dtype=pl.Utf8)
    idx = np.where(np.asarray(idx) < 0, len(labels), idx)
    return cat.gather(pl.Series(idx, dtype=pl.UInt32)).alias(name)


def ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``counts[i]`` items per owner i: (owner of each item, position of the item within its owner)."""
    counts = np.asarray(counts, dtype=np.int64)
    owner = np.repeat(np.arange(len(counts)), counts)
    pos = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, pos


def pick(rng: np.random.Generator, choices: Sequence[str], p: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    """n categorical draws as an object array of strings (``p`` may be (n, k) for per-row probabilities)."""
    choices_arr = np.asarray(choices, dtype=object)
    p = np.asarray(p, dtype=float)
    if p.ndim == 1:
        return choices_arr[rng.choice(len(choices_arr), size=n, p=p / p.sum())]
    cum = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    idx = (rng.random((n, 1)) > cum).sum(axis=1)
    return choices_arr[np.minimum(idx, len(choices_arr) - 1)]
