"""Tiny, randomly initialised encoders and hand-made cohort directories for tests, benchmarks and demos.

Nothing here downloads: the BERT is a 2-layer ``BertConfig`` with a WordPiece vocabulary built from synthetic
fixture sentences (tests/data/tiny_bert/), the image model is a timm architecture created with
``pretrained=False`` and saved as safetensors. ``write_cohort`` writes a directory that follows
docs/contracts.md §1, so the featurizers can be exercised before (and independently of) the cohort builder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from medmodal.common import sha256_file
from medmodal.contracts import compute_cohort_id, sample_ids_digest, write_marker

TABLES = ("cohort", "modalities", "notes", "images", "structured", "timeseries")

# the WordPiece vocabulary of the tiny BERT used by tests, the demo and the benchmarks (shipped as package data)
TINY_BERT_VOCAB = Path(__file__).resolve().parents[1] / "tests" / "data" / "tiny_bert" / "vocab.txt"

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_wordpiece_vocab(lines: Iterable[str]) -> list[str]:
    """Special tokens, every word / number / punctuation mark of ``lines``, then single characters and their
    ``##`` continuations so that any lower-case ASCII word still tokenizes without [UNK]."""
    words: set[str] = set()
    for line in lines:
        words.update(re.findall(r"[a-z]+|[0-9]+|[^\sa-z0-9]", line.lower()))
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    extra_punct = sorted(set(".,;:-()/%+=") - words)
    vocab = SPECIAL_TOKENS + sorted(words - set(chars)) + chars + ["##" + c for c in chars] + extra_punct
    return list(dict.fromkeys(vocab))


def make_tiny_bert(
    out_dir: str | Path,
    vocab_file: str | Path,
    *,
    seed: int = 0,
    hidden: int = 32,
    layers: int = 2,
    max_positions: int = 128,
) -> Path:
    """Save a random BertModel + fast tokenizer to ``out_dir`` (safetensors), loadable by the Auto classes."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=max_positions,
    )
    torch.manual_seed(seed)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    BertModel(config).eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out


def make_tiny_timm(out_file: str | Path, *, name: str = "test_convnext", seed: int = 0) -> Path:
    """Save the state dict of a randomly initialised timm model (``num_classes=0``) as safetensors."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, num_classes=0)
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out))
    return out


def write_cohort(
    out_dir: str | Path,
    *,
    sample_ids: list[str],
    splits: list[str],
    modalities: dict[str, str],
    has: dict[str, list[bool]],
    notes: pl.DataFrame | None = None,
    images: pl.DataFrame | None = None,
    structured: pl.DataFrame | None = None,
    timeseries: pl.DataFrame | None = None,
    feature_groups: dict[str, list[str]] | None = None,
    source: str = "tiny",
    task: str = "tiny_task",
    labels: list[int] | None = None,
) -> Path:
    """Write a contract-compliant cohort dir (docs/contracts.md §1); empty tables get the contract's schema.

    ``modalities`` maps modality name -> kind, in ``pattern`` bit order; ``has[m]`` is the per-sample flag.
    """
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    order = np.argsort(sample_ids, kind="stable")
    sid = [sample_ids[i] for i in order]
    n = len(sid)
    t0 = datetime(2150, 1, 1)  # a shifted, MIMIC-like future date
    pred = [t0 + timedelta(hours=48)] * n
    pl.DataFrame(
        {
            "sample_id": sid,
            "subject_id": np.arange(n, dtype=np.int64) + 10_000,
            "index_time": [t0] * n,
            "prediction_time": pred,
            "label": pl.Series([(labels or [i % 2 for i in range(n)])[i] for i in order], dtype=pl.Int8),
            "split": [splits[i] for i in order],
        }
    ).write_parquet(d / "cohort.parquet")
    mods: dict[str, Any] = {"sample_id": sid}
    pattern = np.zeros(n, dtype=np.int64)
    for bit, m in enumerate(modalities):
        flags = np.asarray([bool(has[m][i]) for i in order])
        mods[f"has_{m}"] = flags
        mods[f"{m}_time"] = pl.Series([p if f else None for p, f in zip(pred, flags)], dtype=pl.Datetime("us"))
        pattern += flags.astype(np.int64) << bit
    mods["pattern"] = pattern
    mods["n_observed"] = (
        np.sum([mods[f"has_{m}"] for m in modalities], axis=0).astype(np.int64) if modalities else np.zeros(n, np.int64)
    )
    pl.DataFrame(mods).write_parquet(d / "modalities.parquet")
    empty = {
        "notes": {
            "sample_id": pl.Utf8,
            "note_id": pl.Utf8,
            "note_type": pl.Utf8,
            "charttime": pl.Datetime("us"),
            "text": pl.Utf8,
        },
        "images": {
            "sample_id": pl.Utf8,
            "dicom_id": pl.Utf8,
            "study_id": pl.Int64,
            "view": pl.Utf8,
            "study_time": pl.Datetime("us"),
            "path": pl.Utf8,
        },
        "structured": {"sample_id": pl.Utf8},
        "timeseries": {"sample_id": pl.Utf8, "hour": pl.Int32, "variable": pl.Utf8, "value": pl.Float64},
    }
    for name, df in {"notes": notes, "images": images, "structured": structured, "timeseries": timeseries}.items():
        (df if df is not None else pl.DataFrame(schema=empty[name])).write_parquet(d / f"{name}.parquet")
    # hand-written content: the identity hashes the written tables themselves
    identity = {
        "source": source,
        "task": task,
        "modalities": dict(modalities),
        "sample_ids_sha256": sample_ids_digest(sid),
        "tables_sha256": {name: sha256_file(d / f"{name}.parquet") for name in TABLES},
    }
    manifest = {
        "source": source,
        "task": task,
        "cohort_identity": identity,
        "cohort_id": compute_cohort_id(identity),
        "modalities": list(modalities),
        "modality_kinds": dict(modalities),
        "feature_groups": feature_groups or {},
        "labels": [{"name": "label", "kind": "binary", "classes": [0, 1]}],
        "subgroups": [],
        "split_seed": 0,
        "row_counts": {"cohort": n},
        "created_at": "2150-01-01T00:00:00",
    }
    (d / "manifest.json").write_text(json.dumps(manifest, indent=2))
    write_marker(d, "cohort")
    return d
