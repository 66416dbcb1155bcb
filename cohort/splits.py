"""Subject-level train / val / test splits from a seeded hash, identical for every task of every source; and the
named split protocols of papers (``SPLIT_PROTOCOLS``: a sample-level random split such as MUSE's), on request.

The split of a subject depends only on (seed, subject_id): u = first 8 bytes of sha256("<seed>:<subject_id>")
read as an integer / 2^64, then train if u < 0.7, val if u < 0.8, test otherwise. So a subject lands in the same
split in the readmission and the mortality cohorts (featurized caches and cross-task comparisons stay valid),
no subject can sit in two splits, and adding subjects never moves existing ones. sha256 rather than DuckDB's
``hash()`` because the latter is not promised stable across DuckDB releases.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl

from medmodal.common import MedmodalError

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


@dataclass(frozen=True)
class SplitProtocol:
    """How samples are dealt into train / val / test. ``unit`` = what one hash decides: a subject (every sample
    of a subject in one split: the default, leakage-safe) or a sample (a paper's protocol, reproduced as
    published; the audits then report subjects in two splits as a warning, not a failure)."""

    name: str
    unit: str  # "subject" | "sample"
    description: str

    @property
    def subject_level(self) -> bool:
        return self.unit == "subject"

    def manifest(self) -> dict[str, object]:
        return {
            "name": self.name,
            "unit": self.unit,
            "subject_level": self.subject_level,
            "fractions": FRACTIONS,
            "description": self.description,
        }


SPLIT_PROTOCOLS = {
    p.name: p
    for p in (
        SplitProtocol(
            "subject",
            "subject",
            "subject-level 70/10/20 from a seeded hash of subject_id (the default; identical across tasks)",
        ),
        SplitProtocol(
            "muse",
            "sample",
            "MUSE (Wu et al., ICLR 2024): samples (admissions or stays) dealt at random 70/10/20, not grouped by "
            "subject - a subject with several samples can sit in train and test; for reproducing the paper only",
        ),
    )
}


def split_protocol(name: str) -> SplitProtocol:
    if name not in SPLIT_PROTOCOLS:
        raise MedmodalError(
            f"unknown split protocol '{name}' (known: {', '.join(SPLIT_PROTOCOLS)})", field="--split-protocol"
        )
    return SPLIT_PROTOCOLS[name]


def assign_sample_splits(sample_ids: Iterable[object], seed: int) -> pl.DataFrame:
    """(sample_id, split) for a sample-level protocol: the same seeded hash, keyed by sample instead of subject
    (``sample:`` prefix, so a sample never shares a draw with the subject of the same id)."""
    ids = sorted({str(s) for s in sample_ids})
    return pl.DataFrame(
        {"sample_key": ids, "split": [split_of(f"sample:{s}", seed) for s in ids]},
        schema={"sample_key": pl.Utf8, "split": pl.Utf8},
    )
