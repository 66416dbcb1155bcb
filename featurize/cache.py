"""Content-addressed item-embedding cache: append-only safetensors shards plus one Parquet index.

Layout (docs/contracts.md §2, ``STORE/cache/<encoder>/``)::

    encoder.json                  what the encoder is (model, weights hash, preprocessing) and its fingerprint
    shards/<ns>-<host>-r<rank>-<pid>-<n>.safetensors
                                  "keys" uint8 [n, 32] and "vectors" float32 [n, D]; item ids and the encoder
                                  fingerprint in the metadata (one JSON value under "medmodal")
    index.parquet                 key (32-byte binary) -> shard, row; rebuilt after each run that added shards

Why this shape:

- The key of an item is ``sha256(item_id NUL sha256(content))``; the encoder fingerprint names the directory, so a
  changed model, weight file or preprocessing setting looks in a different directory and can never see stale
  vectors.
- A shard is written to a hidden temporary name, fsync'ed and renamed, so it is either complete or absent: a run
  killed at any instant leaves no corrupt entry, and a resumed run recomputes only what no shard holds.
- The index is an optimisation, not the truth: shards it does not list (written by a run that died before the
  index was rewritten, or by a concurrent run) are read on open and merged, so the index can never hide work.
- One Parquet index read plus a hash join answers a lookup of millions of keys; vectors are read shard by shard.
- Several writers at once (the ranks of ``torchrun``, on one node or several sharing the folder): a shard's name
  carries the writer's clock, host/boot tag, rank and pid, so no two writers ever pick the same name; nothing is
  ever written in place, only renamed (atomic on a POSIX file system; on NFS the server performs the rename) and
  no file locks are used. The index is rewritten by one process only: under torchrun rank 0, after every rank's
  shards are in place (``writer(save_index=False)``, then :meth:`refresh` with the names the ranks report:
  an NFS client's cached directory listing may not show another node's new file yet, opening it by name does).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import polars as pl
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from medmodal.common import OWNER_TAG, MedmodalError, atomic_file, write_json

log = logging.getLogger("medmodal.featurize")

KEY_BYTES = 32
_INDEX_SCHEMA = {"key": pl.Binary, "shard": pl.Utf8, "row": pl.Int32}


def content_sha256(data: bytes | str) -> str:
    """Hex sha256 of an item's content (note text as UTF-8, or image file bytes)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def item_key(item_id: str, content_hash: str) -> bytes:
    """The 32-byte cache key of one item: its id and its content hash together."""
    return hashlib.sha256(f"{item_id}\x00{content_hash}".encode()).digest()


def encoder_fingerprint(description: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of an encoder description (identity + weights hash + preprocessing)."""
    canon = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()


def cache_dir_name(description: dict[str, Any]) -> str:
    """``<readable model slug>-<first 16 hex of the fingerprint>``: humans can tell the directories apart."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(description.get("model", "encoder")).rstrip("/").split("/")[-1])
    return f"{slug[:48]}-{encoder_fingerprint(description)[:16]}"


@dataclass
class Lookup:
    """Result of a cache lookup over ``n`` requested keys."""

    found: np.ndarray  # bool [n]
    vectors: np.ndarray  # float32 [n, D]; rows where found is False are zeros


@dataclass
class EmbeddingCache:
    """One encoder's cache directory. Open with :meth:`open`; write through :meth:`writer`."""

    root: Path
    fingerprint: str
    description: dict[str, Any]
    _index: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_INDEX_SCHEMA))
    _index_dirty: bool = False

    # ------------------------------------------------------------------------------------------------ open / index
    @classmethod
    def open(cls, store: str | os.PathLike, description: dict[str, Any]) -> EmbeddingCache:
        root = Path(store) / "cache" / cache_dir_name(description)
        (root / "shards").mkdir(parents=True, exist_ok=True)
        fingerprint = encoder_fingerprint(description)
        if not (root / "encoder.json").is_file():
            write_json(root / "encoder.json", {"fingerprint": fingerprint, **description})
        cache = cls(root=root, fingerprint=fingerprint, description=description)
        cache._load_index()
        return cache

    @property
    def shard_dir(self) -> Path:
        return self.root / "shards"

    def __len__(self) -> int:
        return self._index.height

    def _load_index(self, expected: list[str] = ()) -> None:
        path = self.root / "index.parquet"
        index = pl.DataFrame(schema=_INDEX_SCHEMA)
        if path.is_file():
            try:
                index = pl.read_parquet(path).cast(_INDEX_SCHEMA)
            except Exception as err:  # the index is derived data: rebuild it from the shards
                log.warning("cache index %s unreadable (%s); rebuilding it from the shards", path, type(err).__name__)
                self._index_dirty = True
        on_disk = {p.name for p in self.shard_dir.glob("*.safetensors")} | set(expected)
        listed = set(index["shard"].unique().to_list())
        vanished = listed - on_disk
        if vanished:  # a user deleted shards by hand: forget them rather than fail on read
            index = index.filter(~pl.col("shard").is_in(sorted(vanished)))
            self._index_dirty = True
        parts = [index]
        for name in sorted(on_disk - listed):
            keys = self._read_keys(self.shard_dir / name)
            if keys is None:
                continue
            parts.append(
                pl.DataFrame(
                    {"key": [bytes(k) for k in keys], "shard": [name] * len(keys), "row": np.arange(len(keys))},
                    schema=_INDEX_SCHEMA,
                )
            )
            self._index_dirty = True
        # a key written twice (two runs racing) is served from its first shard
        self._index = pl.concat(parts).unique(subset="key", keep="first", maintain_order=True)

    def _read_keys(self, path: Path) -> np.ndarray | None:
        """The [n, 32] key matrix of a shard, or None (with a warning) when the shard cannot be read."""
        try:
            with safe_open(str(path), framework="pt") as fh:
                keys = fh.get_tensor("keys").numpy()
                n_vec = fh.get_slice("vectors").get_shape()[0]
            if keys.ndim != 2 or keys.shape[1] != KEY_BYTES or keys.shape[0] != n_vec:
                raise ValueError("shape")
            return keys
        except Exception as err:
            # Shards are renamed into place complete, so this means outside damage; the items are recomputed.
            log.warning("cache shard %s unreadable (%s); its items will be recomputed", path.name, type(err).__name__)
            return None

    def refresh(self, expected: list[str] = ()) -> None:
        """Re-read the index and merge the shards other processes added since (after a barrier), ``expected``
        among them whether or not the directory listing shows them yet."""
        self._index_dirty = False
        self._load_index(expected)
        if missing := sorted(set(expected) - set(self._index["shard"].unique().to_list())):
            raise MedmodalError(
                f"{len(missing)} cache shard(s) another rank reported written cannot be read (first: {missing[0]}); "
                "is the store on a file system every node shares?",
                path=self.shard_dir,
            )

    def save_index(self) -> None:
        if not self._index_dirty:
            return
        self._index = self._index.unique(subset="key", keep="first", maintain_order=True)
        with atomic_file(self.root / "index.parquet") as fh:
            self._index.write_parquet(fh)
        self._index_dirty = False

    # ------------------------------------------------------------------------------------------------ read
    def lookup(self, keys: list[bytes], dim: int | None = None) -> Lookup:
        """Vectors for the keys that some shard holds. ``dim`` is needed only when nothing is found."""
        n = len(keys)
        wanted = pl.DataFrame(
            {"key": keys, "pos": np.arange(n, dtype=np.int64)}, schema={"key": pl.Binary, "pos": pl.Int64}
        )
        hits = wanted.join(self._index, on="key", how="inner").unique(subset="pos", keep="first")
        found = np.zeros(n, dtype=bool)
        vectors: np.ndarray | None = None
        for (shard,), part in hits.group_by(["shard"], maintain_order=True):
            try:
                with safe_open(str(self.shard_dir / shard), framework="pt") as fh:
                    block = fh.get_tensor("vectors").numpy()
            except Exception as err:
                log.warning("cache shard %s unreadable (%s); its items will be recomputed", shard, type(err).__name__)
                continue
            if vectors is None:
                vectors = np.zeros((n, block.shape[1]), dtype=np.float32)
            pos = part["pos"].to_numpy()
            vectors[pos] = block[part["row"].to_numpy()]
            found[pos] = True
        if vectors is None:
            vectors = np.zeros((n, dim or 0), dtype=np.float32)
        return Lookup(found=found, vectors=vectors)

    # ------------------------------------------------------------------------------------------------ write
    def writer(self, *, shard_size: int = 1024, flush_seconds: float = 60.0, save_index: bool = True) -> ShardWriter:
        return ShardWriter(self, shard_size=shard_size, flush_seconds=flush_seconds, save_index=save_index)

    def _append_shard(self, keys: list[bytes], vectors: np.ndarray, item_ids: list[str]) -> str:
        rank = os.environ.get("RANK", "0")
        name = f"{time.time_ns()}-{OWNER_TAG}-r{rank}-{os.getpid()}-{len(self._index)}.safetensors"
        final = self.shard_dir / name
        tmp = self.shard_dir / f".{name}.tmp-{OWNER_TAG}-{os.getpid()}-w"  # swept after a kill (medmodal.outputs)
        tensors = {
            "keys": torch.from_numpy(
                np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES).copy()
            ),
            "vectors": torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)),
        }
        try:
            # one metadata key: safetensors keeps metadata in a hash map, so two keys come out in a random order
            # and identical shards would differ in their header bytes
            meta = {"medmodal": json.dumps({"fingerprint": self.fingerprint, "item_ids": item_ids}, sort_keys=True)}
            save_file(tensors, str(tmp), metadata=meta)
            with open(tmp, "rb+") as fh:  # durable before it becomes visible
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        new = pl.DataFrame(
            {"key": keys, "shard": [name] * len(keys), "row": np.arange(len(keys))}, schema=_INDEX_SCHEMA
        )
        # no de-duplication here (that would be O(index) per shard): new keys were cache misses, and a key a
        # racing run also wrote is harmless in a lookup; save_index de-duplicates once
        self._index = pl.concat([self._index, new], rechunk=False)
        self._index_dirty = True
        return name


class ShardWriter:
    """Buffers computed vectors and appends them as shards of ``shard_size`` items (or every ``flush_seconds``).

    Used as a context manager: on leaving - normally *or through an exception such as KeyboardInterrupt or a
    failing batch* - the buffer of already-finished items is flushed and the index rewritten, so finished work
    survives a crash. A hard kill loses at most the unflushed buffer.
    """

    def __init__(self, cache: EmbeddingCache, *, shard_size: int, flush_seconds: float, save_index: bool = True):
        self.cache = cache
        self.save_index = save_index
        self.shard_size = max(1, int(shard_size))
        self.flush_seconds = flush_seconds
        self._keys: list[bytes] = []
        self._vecs: list[np.ndarray] = []
        self._ids: list[str] = []
        self._since = time.monotonic()
        self.n_shards = 0
        self.names: list[str] = []  # the shards this writer added

    def add(self, keys: list[bytes], vectors: np.ndarray, item_ids: list[str]) -> None:
        if not keys:
            return
        if not self._keys:
            self._since = time.monotonic()
        self._keys.extend(keys)
        self._vecs.append(np.asarray(vectors, dtype=np.float32))
        self._ids.extend(item_ids)
        while len(self._keys) >= self.shard_size:
            self._flush(self.shard_size)
        if self._keys and time.monotonic() - self._since >= self.flush_seconds:
            self._flush(len(self._keys))

    def _flush(self, n: int) -> None:
        vecs = np.concatenate(self._vecs) if len(self._vecs) > 1 else self._vecs[0]
        self.names.append(self.cache._append_shard(self._keys[:n], vecs[:n], self._ids[:n]))
        self.n_shards += 1
        self._keys, self._ids = self._keys[n:], self._ids[n:]
        self._vecs = [vecs[n:]] if self._keys else []
        self._since = time.monotonic()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._keys:
            self._flush(len(self._keys))
        if self.save_index:
            self.cache.save_index()


class FileHashMemo:
    """sha256 of files remembered by (path, size, mtime_ns), so a warm run over a million DICOMs stats the files
    instead of reading terabytes again. A file whose size or modification time changed is hashed anew.

    ``STORE/cache/file_hashes/*.parquet``: one append-only shard per run (atomic), compacted when they pile up.
    """

    SCHEMA: ClassVar[dict] = {"path": pl.Utf8, "size": pl.Int64, "mtime_ns": pl.Int64, "sha256": pl.Utf8}

    def __init__(self, store: str | os.PathLike):
        self.dir = Path(store) / "cache" / "file_hashes"
        self.dir.mkdir(parents=True, exist_ok=True)
        parts = []
        for f in sorted(self.dir.glob("*.parquet")):
            try:
                parts.append(pl.read_parquet(f).cast(self.SCHEMA))
            except Exception as err:  # derived data: an unreadable memo shard only costs re-hashing
                log.warning("file-hash memo %s unreadable (%s); ignoring it", f.name, type(err).__name__)
        self.table = pl.concat(parts) if parts else pl.DataFrame(schema=self.SCHEMA)
        self.n_files = len(parts)

    def lookup(self, stats: pl.DataFrame) -> list[str | None]:
        """stats: path, size, mtime_ns (one row per wanted file, in order) -> known sha256 or None per row."""
        hits = stats.with_row_index("pos").join(self.table, on=["path", "size", "mtime_ns"], how="left")
        hits = hits.unique(subset="pos", keep="first").sort("pos")
        return hits["sha256"].to_list()

    def add(self, rows: pl.DataFrame, *, compact: bool = True) -> None:
        """Remember ``rows``. ``compact``: may fold the memo's files into one (only when no other process is
        adding beside it: a compaction deletes the files it read, and would drop a concurrent writer's)."""
        if rows.height == 0:
            return
        rows = rows.select(list(self.SCHEMA)).cast(self.SCHEMA)
        if compact and self.n_files >= 64:  # compact: one file with the latest hash per path
            rows = pl.concat([self.table, rows]).unique(subset="path", keep="last", maintain_order=True)
            old = list(self.dir.glob("*.parquet"))
        else:
            old = []
        with atomic_file(self.dir / f"{time.time_ns()}-{OWNER_TAG}-{os.getpid()}.parquet") as fh:
            rows.write_parquet(fh)
        for f in old:
            f.unlink(missing_ok=True)
        self.table = rows if old else pl.concat([self.table, rows])
        self.n_files = 1 if old else self.n_files + 1
