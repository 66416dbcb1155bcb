"""Subject-level train / val / test splits from a seeded hash, identical for every task of every source.

The split of a subject depends only on (seed, subject_id): u = first 8 bytes of sha256("<seed>:<subject_id>")
read as an integer / 2^64, then train if u < 0.7, val if u < 0.8, test otherwise. So a subject lands in the same
split in the readmission and the mortality cohorts (featurized caches and cross-task comparisons stay valid),
no subject can sit in two splits, and adding subjects never moves existing ones. sha256 rather than DuckDB's
``hash()`` because the latter is not promised stable across DuckDB releases.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import polars as pl

FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


def split_of(subject_id: object, seed: int) -> str:
    digest = hashlib.sha256(f"{seed}:{subject_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < FRACTIONS["train"]:
        return "train"
    if u < FRACTIONS["train"] + FRACTIONS["val"]:
        return "val"
    return "test"


def assign_splits(subject_ids: Iterable[object], seed: int) -> pl.DataFrame:
    """(subject_id as text, split) for the distinct subjects given, sorted by subject_id text."""
    ids = sorted({str(s) for s in subject_ids})
    return pl.DataFrame(
        {"subject_key": ids, "split": [split_of(s, seed) for s in ids]},
        schema={"subject_key": pl.Utf8, "split": pl.Utf8},
    )
