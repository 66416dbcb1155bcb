"""What every featurizer shares: the registries, the cached item-embedding loop, per-sample pooling, the output.

A **featurizer** embeds the modalities of one kind (``text``, ``image``, ``structured``, ``timeseries``): a
:class:`Featurizer` subclass registered by *name* with ``@FEATURIZERS.register(name)`` that states its ``kind``,
a frozen ``config_class`` (``medmodal.options``) and a ``run(cohort, modalities, store, config) ->
{modality: ModalityFeatures}`` method. Several featurizers may serve one kind (a second text encoder is one
file); the one marked ``default`` (or the only one) is used when the user names none. Adding a featurizer is one
file plus one import line in ``featurize/__init__.py``; ``featurize_all`` finds the kinds through the manifest's
``modality_kinds``, and ``medmodal featurize`` derives its options from the registry.

Item-based featurizers (notes, images) go through :func:`embed_items`: content keys -> cache lookup -> compute
only the missing items through an :class:`ItemEncoder` -> append to the cache -> pool items per sample with a
named policy from ``POOLINGS``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from medmodal.common import MedmodalError, Registry, console
from medmodal.contracts import (
    CohortDir,
    feature_fingerprint,
    first_difference,
    read_marker,
    write_marker,
    write_modality,
    write_samples,
)
from medmodal.distributed import DistEnv, broadcast, gather, share
from medmodal.featurize.cache import EmbeddingCache
from medmodal.outputs import atomic_dir

log = logging.getLogger("medmodal.featurize")


class Featurizer:
    """Base class of a featurizer; subclass, set the class attributes, decorate with ``@FEATURIZERS.register``."""

    kind: ClassVar[str]  # the modality kind it embeds (a manifest's modality_kinds value)
    config_class: ClassVar[type]  # frozen dataclass of its options, with their defaults
    default: ClassVar[bool] = False  # the kind's featurizer when none is named (needed once a kind has two)
    # the `medmodal featurize <command>` it runs under (default: its kind); timeseries runs with `structured`
    command: ClassVar[str | None] = None
    # under torchrun: True = every rank runs it and it splits its work across them (embed_items does); False = it
    # runs on rank 0 alone while the other ranks wait
    distributed: ClassVar[bool] = False

    def run(self, cohort: CohortDir, modalities: list[str], store: str | Path, cfg: Any) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover - interface


FEATURIZERS: Registry[type[Featurizer]] = Registry("featurizer")
POOLINGS: Registry[Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = Registry("pooling policy")


def featurizers_of(kind: str) -> list[str]:
    """Names of the registered featurizers of modality kind ``kind``."""
    return [name for name, cls in FEATURIZERS.items() if cls.kind == kind]


def default_featurizer(kind: str) -> str:
    """The featurizer of ``kind`` used when none is named: the one marked ``default``, else the only one."""
    names = featurizers_of(kind)
    marked = [n for n in names if FEATURIZERS.get(n).default]
    if len(marked) == 1 or len(names) == 1:
        return marked[0] if marked else names[0]
    if not names:
        raise MedmodalError(f"no featurizer is registered for modality kind '{kind}'")
    raise MedmodalError(f"modality kind '{kind}' has featurizers {', '.join(names)} and {len(marked)} marked default")


def featurizer_of_config(config: Any) -> str:
    """The registered featurizer whose ``config_class`` ``config`` is an instance of."""
    names = [n for n, cls in FEATURIZERS.items() if type(config) is cls.config_class]
    if len(names) != 1:
        what = "no featurizer" if not names else f"featurizers {', '.join(names)}"
        raise MedmodalError(f"{type(config).__name__} is the config of {what}; pass one of a featurizer's configs")
    return names[0]


def command_of(name: str) -> str:
    cls = FEATURIZERS.get(name)
    return cls.command or cls.kind


MAX_LISTED_SKIPS = 100  # skipped item ids listed in a manifest; the counts cover all of them


# ---------------------------------------------------------------------------------------------------- outputs
@dataclass
class ModalityFeatures:
    """One modality assembled in cohort row order (docs/contracts.md §2)."""

    x: torch.Tensor  # float32 (N, D) or (N, T, V)
    mask: torch.Tensor  # bool (N,)
    manifest: dict[str, Any]
    observed: torch.Tensor | None = None  # bool, same shape as x (structured / timeseries)


@dataclass
class ModalitySummary:
    modality: str
    path: Path
    computed: int = 0
    reused: int = 0
    skipped: int = 0
    observed: int = 0

    n_samples: int = 0

    def line(self) -> str:
        return f"{self.modality}: {self.observed}/{self.n_samples} samples observed -> {self.path}"


def write_outputs(
    cohort: CohortDir, store: str | Path, results: dict[str, ModalityFeatures], *, overwrite: bool = False
) -> dict[str, ModalitySummary]:
    """Write samples.parquet and every modality's tensors + manifest into the cohort's store folder at once.

    All or nothing: the folder is rebuilt as a private temporary (the modalities already there hard-linked in)
    and renamed into place, so a command that fails or is killed leaves the previous folder as it was. A
    modality already in the store with a different fingerprint (another encoder, pooling, preprocessing) is
    replaced only with ``overwrite``: runs trained on it would no longer evaluate.
    """
    out_dir = Path(store) / "cohorts" / cohort.cohort_id
    if out_dir.is_dir() and read_marker(out_dir) is None and _legacy_cohort_folder(out_dir):
        write_marker(out_dir, "store_cohort")  # written before markers existed
    if not overwrite:
        _refuse_replacements(out_dir, results)
    with atomic_dir(out_dir, kind="store_cohort", overwrite=True, keep_existing=True, flag="--store") as tmp:
        write_samples(tmp, cohort.sample_ids)
        for m, feats in results.items():
            manifest = {**feats.manifest, "cohort_id": cohort.cohort_id}
            write_modality(tmp, m, feats.x, feats.mask, manifest, observed=feats.observed)
    summaries = {}
    for m, feats in results.items():
        counts = feats.manifest.get("counts", {})
        summaries[m] = ModalitySummary(
            modality=m,
            path=out_dir / f"{m}.safetensors",
            computed=counts.get("computed", 0),
            reused=counts.get("reused", 0),
            skipped=counts.get("skipped", 0),
            observed=int(feats.mask.sum()),
            n_samples=cohort.n,
        )
        console.print(summaries[m].line(), soft_wrap=True)
    return summaries


def _legacy_cohort_folder(folder: Path) -> bool:
    return all(p.name == "samples.parquet" or p.suffix in (".safetensors", ".json") for p in folder.iterdir())


def _refuse_replacements(out_dir: Path, results: dict[str, ModalityFeatures]) -> None:
    for m, feats in results.items():
        old_path = out_dir / f"{m}.json"
        if not old_path.is_file():
            continue
        try:
            old = json.loads(old_path.read_text())
        except (OSError, ValueError):
            continue  # unreadable: nothing a run could have been checked against; replaced
        new = {**feats.manifest, "shape": list(feats.x.shape), "dtype": str(feats.x.dtype).replace("torch.", "")}
        diff = first_difference(feature_fingerprint(old), feature_fingerprint(new))
        if diff:
            raise MedmodalError(
                f"modality '{m}' is already in the store with other settings ({diff[0]} differs); pass "
                "--overwrite to replace it (runs trained on the old tensors will then refuse this store)",
                path=old_path,
                field=m,
            )


def skip_empty_modalities(parts: dict[str, Any], what: str) -> dict[str, Any]:
    """Drop (with a printed note) item modalities with no item in any sample that has them - e.g. notes in a
    cohort built without MIMIC-IV-Note. Nothing is written for them, and no encoder is loaded for nothing: a
    tensor of unknown width whose mask is false everywhere would carry no information."""
    kept = {}
    for m, part in parts.items():
        if len(part):
            kept[m] = part
        else:
            console.print(
                f"{m}: no {what} for any sample with has_{m}; not featurized (nothing to embed)", soft_wrap=True
            )
    return kept


# ---------------------------------------------------------------------------------------------------- pooling
@POOLINGS.register("mean")
def pool_mean(vectors: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Unweighted mean of a sample's item vectors. vectors (K, D), rows (K,) -> (N, D)."""
    out = np.zeros((n, vectors.shape[1]), dtype=np.float64)
    np.add.at(out, rows, vectors)
    counts = np.bincount(rows, minlength=n)[:, None]
    return (out / np.maximum(counts, 1)).astype(np.float32)


@POOLINGS.register("latest")
def pool_latest(vectors: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """The last item of each sample; items arrive sorted by (row, time, item_id), so the last one is the latest."""
    out = np.zeros((n, vectors.shape[1]), dtype=np.float32)
    out[rows] = vectors  # later assignments win: numpy applies fancy-index writes in order
    return out


# ---------------------------------------------------------------------------------------------------- progress
class RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("  -- items/s" if speed is None else f"{speed:7.1f} items/s", style="progress.data.speed")


def progress_bar(*, disable: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=disable,
    )


# ---------------------------------------------------------------------------------------------------- cached items
@dataclass
class EncodedBatch:
    """What an encoder yields: vectors for some items (by position) and the items it had to skip."""

    positions: list[int]
    vectors: np.ndarray  # float32 (len(positions), D)
    keys: list[bytes]  # the cache key actually computed for each position (content read by the encoder)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (position, reason)


class ItemEncoder(Protocol):
    description: dict[str, Any]  # fingerprinted: model identity, weights hash, preprocessing
    dim: int

    def encode(self, positions: list[int], advance: Callable[[int], None]) -> Iterator[EncodedBatch]:
        """Compute the items at ``positions``; call ``advance(k)`` as k items finish."""


@dataclass
class ItemEmbeddings:
    vectors: np.ndarray  # float32 (n_items, D)
    ok: np.ndarray  # bool (n_items,)
    reasons: list[str | None]  # skip reason per item (None when ok)
    computed: int
    reused: int
    cache: EmbeddingCache


def embed_items(
    label: str,
    item_ids: list[str],
    keys: list[bytes | None],
    reasons: list[str | None],
    encoder: ItemEncoder,
    store: str | Path,
    *,
    shard_size: int,
    flush_seconds: float = 60.0,
) -> ItemEmbeddings:
    """Embed every item once: reuse cached vectors, compute the rest, append them to the cache.

    ``keys[i]`` is None when item i was already rejected (``reasons[i]`` says why, e.g. an empty note).

    Under torchrun (``medmodal.distributed``) every rank calls this with the same items; the items still missing
    from the cache are split into contiguous blocks, one per rank, and each rank appends its own shards. Rank 0
    then reads the others' vectors back from the cache and returns every item, with the counts and skip reasons
    of all ranks; the other ranks return their own items only (their result is not written anywhere).
    """
    env = DistEnv.from_env()
    n = len(item_ids)
    cache = EmbeddingCache.open(store, encoder.description)
    reasons = list(reasons)
    candidates = [i for i in range(n) if keys[i] is not None]
    cand = np.asarray(candidates, dtype=np.int64)
    vectors = np.zeros((n, encoder.dim), dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    found = None
    if env.main:
        hit = cache.lookup([keys[i] for i in candidates], dim=encoder.dim)
        found = hit.found
        if len(cand):
            vectors[cand[found]] = hit.vectors[found]
    # rank 0's view of the cache decides what is missing, for every rank: a rank that looked for itself could see
    # a shard another rank had just written (or, on NFS, not yet see one), and the blocks would no longer match
    found = broadcast(found, env)
    if len(cand):
        ok[cand[found]] = True
    reused = int(found.sum())
    # the same item reached through two samples (one note linked to two stays) is computed once
    first_of: dict[bytes, int] = {}
    copies: list[tuple[int, int]] = []
    for pos in cand[~found].tolist():
        if keys[pos] in first_of:
            copies.append((pos, first_of[keys[pos]]))
        else:
            first_of[keys[pos]] = pos
    todo = list(first_of.values())
    mine = share(todo, env)
    computed = 0
    skipped_here: list[tuple[int, str]] = []
    rekeyed: list[tuple[int, bytes]] = []  # items whose content changed since it was hashed: the key computed
    t0 = time.perf_counter()
    with (
        progress_bar(disable=not env.main) as bar,
        cache.writer(shard_size=shard_size, flush_seconds=flush_seconds, save_index=env.world == 1) as writer,
    ):
        # rank 0's bar counts its own block; the blocks differ in size by one item at most
        task = bar.add_task(label if env.world == 1 else f"{label} (rank 0 of {env.world})", total=len(mine))
        for batch in encoder.encode(mine, lambda k: bar.advance(task, k)):
            if batch.positions:
                vectors[batch.positions] = batch.vectors
                ok[batch.positions] = True
                writer.add(batch.keys, batch.vectors, [item_ids[p] for p in batch.positions])
                computed += len(batch.positions)
                rekeyed += [(p, k) for p, k in zip(batch.positions, batch.keys) if k != keys[p]]
            for pos, why in batch.skipped:
                reasons[pos] = why
            skipped_here += batch.skipped
    if env.world > 1:
        mine_done = {"shards": writer.names, "computed": computed, "skipped": skipped_here, "rekeyed": rekeyed}
        computed = _merge_ranks(env, cache, todo, mine_done, keys, vectors, ok, reasons)
    for pos, src in copies:
        vectors[pos], ok[pos], reasons[pos] = vectors[src], ok[src], reasons[src]
        computed += int(ok[src])
    dt = time.perf_counter() - t0
    skipped = sum(r is not None for r in reasons)
    rate = f", {computed / dt:.1f} items/s" if computed and dt > 0 else ""
    if env.main:
        ranks = f" by {env.world} ranks" if env.world > 1 else ""
        console.print(f"{label}: {computed} computed{ranks}, {reused} reused, {skipped} skipped{rate}", soft_wrap=True)
    return ItemEmbeddings(vectors=vectors, ok=ok, reasons=reasons, computed=computed, reused=reused, cache=cache)


def _merge_ranks(env: DistEnv, cache, todo, mine_done, keys, vectors, ok, reasons) -> int:
    """After every rank's block: rank 0 indexes the shards all ranks wrote and fills in their items' vectors and
    skip reasons; returns the items computed by all ranks together (on the other ranks, their own count)."""
    parts = gather(mine_done, env)
    if not env.main:
        return mine_done["computed"]
    cache.refresh([name for part in parts for name in part["shards"]])  # the one index writer
    cache.save_index()
    theirs: list[int] = []
    wanted: list[bytes] = []
    for r, part in enumerate(parts):
        if r == env.rank:
            continue
        new_key = dict(part["rekeyed"])
        for pos, why in part["skipped"]:
            reasons[pos] = why
        skipped = {pos for pos, _ in part["skipped"]}
        for pos in share(todo, DistEnv(rank=r, world=env.world)):  # rank r's block, as it computed it
            if pos not in skipped:
                theirs.append(pos)
                wanted.append(new_key.get(pos, keys[pos]))
    if theirs:
        got = cache.lookup(wanted, dim=vectors.shape[1])
        if not got.found.all():
            raise MedmodalError(
                f"{int((~got.found).sum())} item(s) another rank computed are in none of the shards it reported",
                path=cache.shard_dir,
            )
        vectors[theirs] = got.vectors
        ok[theirs] = True
    return sum(part["computed"] for part in parts)


def assemble_items(
    modality: str,
    kind: str,
    cohort: CohortDir,
    rows: np.ndarray,
    item_ids: list[str],
    emb: ItemEmbeddings,
    pooling: str,
    extra_manifest: dict[str, Any],
) -> ModalityFeatures:
    """Pool item vectors per sample (items given in (row, time, item_id) order) into (N, D) plus mask and manifest."""
    pool = POOLINGS.get(pooling)
    has = cohort.has[modality]
    keep = emb.ok & has[rows]
    x = pool(emb.vectors[keep], rows[keep], cohort.n)
    mask = np.zeros(cohort.n, dtype=bool)
    mask[rows[keep]] = True
    mask &= has
    x[~mask] = 0.0
    with_items = np.zeros(cohort.n, dtype=bool)
    with_items[rows] = True
    reason_counts = Counter(r for r in emb.reasons if r is not None)
    skipped_list = [{"item_id": item_ids[i], "reason": r} for i, r in enumerate(emb.reasons) if r is not None]
    manifest = {
        "kind": kind,
        "encoder": {"fingerprint": emb.cache.fingerprint, "cache_dir": str(emb.cache.root), **emb.cache.description},
        "pooling": pooling,
        "counts": {
            "items": len(item_ids),
            "computed": emb.computed,
            "reused": emb.reused,
            "skipped": len(skipped_list),
            "observed": int(mask.sum()),
        },
        "skip_reasons": dict(sorted(reason_counts.items())),
        "skipped_items": skipped_list[:MAX_LISTED_SKIPS],
        "mask_false_reasons": {
            "absent under the task's time rule": int((~has).sum()),
            "has_ true but no items in the cohort tables": int((has & ~with_items).sum()),
            "every item skipped": int((has & with_items & ~mask).sum()),
        },
        **extra_manifest,
    }
    return ModalityFeatures(x=torch.from_numpy(np.ascontiguousarray(x)), mask=torch.from_numpy(mask), manifest=manifest)
