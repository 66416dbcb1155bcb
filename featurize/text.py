"""Clinical-note embeddings with a Hugging Face encoder (default Bio_ClinicalBERT), cached by content.

Per note: the tokenizer's own overflow windows (``return_overflowing_tokens``: windows of ``max_length`` tokens
incl. [CLS]/[SEP], consecutive windows sharing ``stride`` tokens) -> one vector per window (``token_pooling``:
attention-masked mean of the last hidden states, or the [CLS] state) -> unweighted mean over the note's windows.
Per sample: the notes of one type are pooled by a named policy (``mean`` or ``latest``); each note type is its own
modality ``<type>_note``.

Throughput: notes are processed in chunks of ``chunk_size``; inside a chunk windows are grouped by their *own*
padded length (their length rounded up to a multiple of ``PAD_MULTIPLE`` tokens) and cut into batches of at most
``batch_size x max_length`` tokens; windows that fill their padded length exactly run without an attention mask
(fused SDPA kernel). Why per-window padding and not "pad to the longest in the batch": a window's vector then
depends only on the window, not on which other notes share its chunk, so the same note gets the same vector
bit for bit whatever the cache already held (padding length changes the last bits, ~1e-7; batch size does not
on the CPU; docs/reliability.md). ``torch.inference_mode``; bf16/fp16 autocast, pinned memory and non-blocking
copies on CUDA. Note text is never logged; errors name the note id only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import torch

from medmodal.common import MedmodalError, sha256_file
from medmodal.contracts import CohortDir
from medmodal.devices import autocast, resolve_device, resolve_precision
from medmodal.featurize.base import (
    FEATURIZERS,
    POOLINGS,
    EncodedBatch,
    Featurizer,
    ModalityFeatures,
    assemble_items,
    embed_items,
    skip_empty_modalities,
)
from medmodal.featurize.cache import content_sha256, item_key
from medmodal.options import option, validate

TEXT_ENCODER_CODE = "text-v2"  # fingerprinted: bump when the windowing / padding / pooling code changes
PAD_MULTIPLE = 32  # a window is padded to its length rounded up to this (at most a quarter more for >= 124 tokens)
# Files that change what a checkpoint computes; READMEs and other frameworks' weights do not.
_MODEL_FILE_PATTERNS = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",
    "*.safetensors",
    "pytorch_model*.bin",
    "*.safetensors.index.json",
)


@dataclass(frozen=True)
class TextConfig:
    model: str = option("emilyalsentzer/Bio_ClinicalBERT", "HF repo id in the local cache, or a model directory")
    note_types: tuple[str, ...] | None = option(
        None, "note types to embed, e.g. discharge,radiology (none: every <type>_note modality)"
    )
    max_length: int = option(512, "tokens per window incl. [CLS]/[SEP]; capped at the model's maximum", minimum=8)
    # a quarter of 512
    stride: int = option(128, "tokens shared by consecutive windows of a long note (<= max_length/2)", minimum=0)
    token_pooling: Literal["mean", "cls"] = option("mean", "window vector: masked mean of last hidden states, or [CLS]")
    pooling: str = option("mean", "notes per sample: a pooling policy (mean | latest)")
    # shorter windows are packed to the same token count; on the CPU batching buys little and big batches fall out
    # of cache (benchmarks/featurize_text.py)
    batch_size: int | None = option(
        None, "full-length windows per forward pass (none: 32 on CUDA, 8 on CPU)", minimum=1
    )
    chunk_size: int = option(
        256, "notes whose windows are length-sorted together (also bounds work lost on a kill)", minimum=1
    )
    device: str = option("auto", "auto | cpu | cuda[:N]", shared=True)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = option(
        "auto", "auto (bf16/fp16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16", shared=True
    )
    shard_size: int = option(1024, "vectors per cache shard file", minimum=1)

    def __post_init__(self) -> None:
        validate(self)
        if self.stride > self.max_length // 2:
            raise MedmodalError(f"stride must be in [0, max_length/2] (got {self.stride})", field="stride")
        POOLINGS.get(self.pooling)


# ---------------------------------------------------------------------------------------------------- loading
def resolve_local_model(name_or_path: str, *, what: str = "text model") -> Path:
    """A local directory, or the snapshot of a hub repo id in the local Hugging Face cache. Never downloads."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p.resolve()
    if p.exists():
        raise MedmodalError(f"{what} path is not a directory", path=p)
    # a plain lookup in the cache folders (refs/main -> snapshots/<commit>/config.json): no hub call that a
    # release could turn into a connection (docs/reliability.md, "Offline")
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(name_or_path, "config.json")
    except Exception:  # not a repo id at all (e.g. a mistyped path): the same instruction applies
        hit = None
    if isinstance(hit, str) and Path(hit).is_file():
        return Path(hit).parent
    raise MedmodalError(
        f"{what} '{name_or_path}' is neither a local directory nor in the local Hugging Face cache "
        f"(medmodal never downloads). On a networked machine run `hf download {name_or_path}` "
        f"and copy ~/.cache/huggingface here (or set HF_HOME), or pass --model /path/to/model_dir"
    )


def model_files_hash(model_dir: Path) -> dict[str, str]:
    """{relative path: content hash} of the files that define the checkpoint (weights, config, tokenizer)."""
    files = sorted({f for pat in _MODEL_FILE_PATTERNS for f in model_dir.glob(pat) if f.is_file()})
    if not files:
        raise MedmodalError("no model files (config.json, weights) found", path=model_dir)
    return {str(f.relative_to(model_dir)): sha256_file(f) for f in files}


class TextEncoder:
    """Tokenizer + encoder loaded once; ``embed(texts)`` returns one float32 vector per note."""

    def __init__(self, cfg: TextConfig):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # its "sequence longer than max length" notices are expected here
        hf_logging.disable_progress_bar()  # our own progress bar is the one that counts items
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        model_dir = resolve_local_model(cfg.model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            self.model = AutoModel.from_pretrained(model_dir, local_files_only=True)
        except Exception as err:
            raise MedmodalError(f"cannot load the text model ({type(err).__name__}: {err})", path=model_dir) from None
        if not getattr(self.tokenizer, "is_fast", False):
            raise MedmodalError("a fast (Rust) tokenizer is needed for windowing; add tokenizer.json", path=model_dir)
        self.model.eval().to(self.device)
        limits = [cfg.max_length, getattr(self.model.config, "max_position_embeddings", cfg.max_length)]
        if 0 < getattr(self.tokenizer, "model_max_length", 0) < 100_000:
            limits.append(self.tokenizer.model_max_length)
        self.max_length = int(min(limits))
        self.stride = min(cfg.stride, self.max_length // 2)
        self.dim = int(self.model.config.hidden_size)
        self.batch_size = cfg.batch_size or (32 if self.device.type == "cuda" else 8)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        name = cfg.model if not Path(cfg.model).expanduser().is_dir() else Path(cfg.model).resolve().name
        self.description: dict[str, Any] = {
            "kind": "text",
            "model": name,
            "model_type": getattr(self.model.config, "model_type", None),
            "files": model_files_hash(model_dir),
            "preprocessing": {
                "max_length": self.max_length,
                "stride": self.stride,
                "token_pooling": cfg.token_pooling,
                "window_pooling": "mean",
                "special_tokens": True,
            },
            "precision": self.precision,
            "encoder_code": TEXT_ENCODER_CODE,
        }
        self.texts: list[str] = []
        self.keys: list[bytes | None] = []

    # --------------------------------------------------------------------------------------- windows -> vectors
    def _windows(self, texts: list[str]) -> tuple[list[list[int]], np.ndarray]:
        enc = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_length,
            stride=self.stride,
            return_overflowing_tokens=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return enc["input_ids"], np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)

    def _padded(self, n: int) -> int:
        return min(self.max_length, -(-n // PAD_MULTIPLE) * PAD_MULTIPLE)

    def _forward(self, windows: list[list[int]], length: int) -> np.ndarray:
        """Windows of one padded ``length`` -> (B, D) float32. No attention mask when every window fills it."""
        ids = torch.full((len(windows), length), self.pad_id, dtype=torch.long)  # (B, L)
        attn = torch.zeros((len(windows), length), dtype=torch.long)  # (B, L)
        for i, w in enumerate(windows):
            ids[i, : len(w)] = torch.tensor(w, dtype=torch.long)
            attn[i, : len(w)] = 1
        cuda = self.device.type == "cuda"
        if cuda:
            ids, attn = ids.pin_memory(), attn.pin_memory()
        ids = ids.to(self.device, non_blocking=cuda)
        attn = attn.to(self.device, non_blocking=cuda)
        # full windows (the windows of long notes) need no mask, and without one SDPA can take its fused kernel
        # (~20% faster per window at 512 tokens on CPU); which path a window takes depends on it alone
        uniform = all(len(w) == length for w in windows)
        with torch.inference_mode(), autocast(self.device, self.precision):
            out = self.model(input_ids=ids, attention_mask=None if uniform else attn)
            hidden = out.last_hidden_state.float()  # (B, L, H)
        if self.cfg.token_pooling == "cls":
            vec = hidden[:, 0]  # (B, H)
        else:
            m = attn.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
            vec = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, H)
        return vec.cpu().numpy()

    def _batches(self, lengths: list[int]) -> Iterator[tuple[list[int], int]]:
        """(window indices, padded length) batches: windows grouped by (padded length, fills it exactly), longest
        first, at most batch_size x max_length padded tokens (and 8 x batch_size windows) per batch."""
        budget = self.batch_size * self.max_length
        cap = 8 * self.batch_size
        groups: dict[tuple[int, bool], list[int]] = {}
        for i, n in enumerate(lengths):
            padded = self._padded(n)
            groups.setdefault((padded, n == padded), []).append(i)
        for padded, full in sorted(groups, reverse=True):
            members = groups[(padded, full)]
            rows = max(1, min(cap, budget // padded))
            for s in range(0, len(members), rows):
                yield members[s : s + rows], padded

    def embed(self, texts: list[str], advance: Callable[[int], None] = lambda k: None) -> np.ndarray:
        """(n, D) float32 note vectors for non-empty ``texts``: windows batched by padded length, mean per note."""
        windows, owner = self._windows(texts)
        win_vecs = np.zeros((len(windows), self.dim), dtype=np.float32)
        remaining = np.bincount(owner, minlength=len(texts))
        for idx, padded in self._batches([len(w) for w in windows]):
            win_vecs[idx] = self._forward([windows[i] for i in idx], padded)
            done = owner[idx]
            np.subtract.at(remaining, done, 1)
            advance(int(np.count_nonzero(remaining[np.unique(done)] == 0)))
        sums = np.zeros((len(texts), self.dim), dtype=np.float64)
        np.add.at(sums, owner, win_vecs)
        return (sums / np.maximum(np.bincount(owner, minlength=len(texts)), 1)[:, None]).astype(np.float32)

    # --------------------------------------------------------------------------------------- ItemEncoder
    def bind(self, texts: list[str], keys: list[bytes | None]) -> TextEncoder:
        self.texts, self.keys = texts, keys
        return self

    def encode(self, positions: list[int], advance: Callable[[int], None]) -> Iterator[EncodedBatch]:
        for s in range(0, len(positions), self.cfg.chunk_size):
            chunk = positions[s : s + self.cfg.chunk_size]
            vecs = self.embed([self.texts[p] for p in chunk], advance)
            yield EncodedBatch(positions=chunk, vectors=vecs, keys=[self.keys[p] for p in chunk])


# ---------------------------------------------------------------------------------------------------- featurizer
@FEATURIZERS.register("transformers")
class TextFeaturizer(Featurizer):
    """Notes: a Hugging Face encoder over overlapping token windows, mean per note, pooled per sample."""

    kind = "text"
    config_class = TextConfig
    default = True
    distributed = True  # under torchrun the notes to embed are split across the ranks (embed_items)

    def run(
        self, cohort: CohortDir, modalities: list[str], store: str | Path, cfg: TextConfig
    ) -> dict[str, ModalityFeatures]:
        wanted = [m for m in modalities if cfg.note_types is None or m.removesuffix("_note") in cfg.note_types]
        for m in wanted:
            if not m.endswith("_note"):
                raise MedmodalError(
                    f"text modality '{m}' must be named '<note_type>_note'", path=cohort.dir / "manifest.json"
                )
        if not wanted:
            return {}
        notes = cohort.items("text")
        parts = {}
        for m in wanted:
            part = notes.filter(pl.col("note_type") == m.removesuffix("_note"))
            # notes of samples without the modality under the time rule are never embedded
            part = part.filter(pl.Series(cohort.has[m][part["row"].to_numpy()]))
            parts[m] = part.with_columns(pl.col("note_id").cast(pl.Utf8)).sort(
                ["row", "charttime", "note_id"], nulls_last=False
            )
        parts = skip_empty_modalities(parts, "notes")
        if not parts:
            return {}
        encoder = TextEncoder(cfg)
        results = {}
        for m, part in parts.items():
            if part["note_id"].null_count():
                raise MedmodalError("null note_id", path=cohort.dir / "notes.parquet", field="note_id")
            item_ids = part["note_id"].to_list()
            texts = [t if isinstance(t, str) else "" for t in part["text"].to_list()]
            keys: list[bytes | None] = []
            reasons: list[str | None] = []
            for nid, t in zip(item_ids, texts):
                empty = not t.strip()
                keys.append(None if empty else item_key(nid, content_sha256(t)))
                reasons.append("empty note" if empty else None)
            emb = embed_items(m, item_ids, keys, reasons, encoder.bind(texts, keys), store, shard_size=cfg.shard_size)
            extra = {
                "preprocessing": encoder.description["preprocessing"],
                "pooling_windows_per_note": "mean",
                "dtype_compute": encoder.precision,
                "config": asdict(cfg),
            }
            results[m] = assemble_items(m, "text", cohort, part["row"].to_numpy(), item_ids, emb, cfg.pooling, extra)
        return results
