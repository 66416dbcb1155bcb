"""The feature store's layout: per-cohort tensors, written by featurize, read by models (docs/contracts.md §2).

The content-addressed item cache beside them is featurize's own (``featurize/cache.py``); this module only writes
and reads the assembled, cohort-ordered tensors that the model layer loads in one read per modality.

Layout::

    STORE/cohorts/<cohort_id>/samples.parquet        sample_id in cohort row order
    STORE/cohorts/<cohort_id>/<modality>.safetensors "x" [N, D] or [N, T, D], "mask" [N], optional "observed"
    STORE/cohorts/<cohort_id>/<modality>.json        manifest (fingerprint, pooling, dtype, counts, ...)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from medmodal.common import OWNER_TAG, MedmodalError, atomic_file, write_json
from medmodal.contracts.cohort_dir import CohortDir, cohort_id, cohort_sample_ids
from medmodal.contracts.markers import check_path_part
from medmodal.contracts.tensorfile import SpooledTensor, load_safetensors_mmap, save_safetensors

if TYPE_CHECKING:  # torch is imported where tensors are read or written, so the cohort stage never loads it
    import torch

SAMPLES = "samples.parquet"


def check_store_root(store: str | Path) -> Path:
    """A store is a folder (created on first use); anything else in its place is refused before any work."""
    store = Path(store)
    if store.exists() and not store.is_dir():
        raise MedmodalError("is not a folder (a feature store is a folder; give a new or existing folder)", path=store)
    return store


def cohort_store_dir(store: str | Path, cohort: str | Path | CohortDir) -> Path:
    """``STORE/cohorts/<cohort_id>``; the id is checked to be one safe folder name (``cohort_id_of``)."""
    cid = cohort.cohort_id if isinstance(cohort, CohortDir) else cohort_id(cohort)
    return Path(store) / "cohorts" / cid


def is_legacy_store(folder: Path) -> bool:
    """A store written before output markers existed: only cache/ and cohorts/ in it."""
    return {p.name for p in folder.iterdir()} <= {"cache", "cohorts"}


def write_samples(out_dir: Path, sample_ids: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_file(out_dir / SAMPLES) as fh:
        pl.DataFrame({"sample_id": sample_ids}, schema={"sample_id": pl.Utf8}).write_parquet(fh)


def write_modality(
    out_dir: Path,
    modality: str,
    x: torch.Tensor,
    mask: torch.Tensor,
    manifest: dict[str, Any],
    observed: torch.Tensor | None = None,
) -> None:
    """Write one modality's [N, ...] tensor, its [N] mask and its manifest, each atomically.

    ``x`` and ``observed`` may be :class:`SpooledTensor` s (built block by block on disk): they are copied into the
    file piece by piece, so a tensor larger than memory is never materialised (contracts/tensorfile.py)."""
    import torch

    if mask.dtype != torch.bool or mask.ndim != 1 or mask.shape[0] != x.shape[0]:
        raise ValueError(f"{modality}: mask must be bool [N] matching x {tuple(x.shape)}")
    tensors = {"x": x if isinstance(x, SpooledTensor) else x.contiguous(), "mask": mask.contiguous()}
    if isinstance(observed, SpooledTensor):
        tensors["observed"] = observed
    elif observed is not None:
        tensors["observed"] = observed.to(torch.bool).contiguous()
    check_path_part(modality, field="modality")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{modality}.safetensors.tmp-{OWNER_TAG}-{os.getpid()}-w"
    try:
        save_safetensors(tensors, tmp)  # the bytes safetensors' save_file writes, without a whole-file buffer
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out_dir / f"{modality}.safetensors")
    meta = {
        "modality": modality,
        "shape": list(x.shape),
        "dtype": str(x.dtype).replace("torch.", ""),
        "n_observed": int(mask.sum()),
        **manifest,
    }
    write_json(out_dir / f"{modality}.json", meta)


def load_cohort_features(
    store: str | Path, cohort: str | Path | CohortDir, modalities: list[str] | None = None, *, mmap: bool = False
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Return (sample_ids in cohort row order, {modality: {"x", "mask", ["observed"], "manifest"}}).

    Only modalities that have been featurized are returned; ``modalities`` restricts and orders them.
    The row order is checked against the cohort so a stale store never silently misaligns labels. ``cohort``:
    an opened :class:`CohortDir` (nothing re-read), or its folder. ``mmap``: the tensors are memory-mapped
    (``contracts.tensorfile.load_safetensors_mmap``; rows are read when used) instead of read whole.
    """
    from safetensors.torch import load_file

    d = cohort_store_dir(check_store_root(store), cohort)
    samples_path = d / SAMPLES
    if not samples_path.is_file():
        raise MedmodalError(
            "no features for this cohort in the store (run `medmodal featurize all COHORT_DIR --store STORE`)",
            path=d,
        )
    try:
        sample_ids = pl.read_parquet(samples_path)["sample_id"].to_list()
    except Exception as err:  # truncated or foreign file: a one-line error, never a polars traceback
        raise MedmodalError(f"unreadable Parquet ({type(err).__name__}); re-run featurize", path=samples_path) from None
    expected = cohort.sample_ids if isinstance(cohort, CohortDir) else cohort_sample_ids(cohort)
    if sample_ids != expected:
        raise MedmodalError("row order differs from the cohort's cohort.parquet; re-run featurize", path=samples_path)
    available = sorted(p.stem for p in d.glob("*.safetensors"))
    wanted = available if modalities is None else modalities
    out: dict[str, dict[str, Any]] = {}
    for m in wanted:
        path = d / f"{m}.safetensors"
        if not path.is_file():
            raise MedmodalError(f"modality '{m}' not featurized (have: {', '.join(available) or 'none'})", path=d)
        try:
            tensors = load_safetensors_mmap(path) if mmap else load_file(str(path))
        except Exception as err:  # SafetensorError: truncated or overwritten tensor file
            raise MedmodalError(
                f"unreadable tensor file ({type(err).__name__}); re-run featurize for '{m}'", path=path
            ) from None
        x = tensors.get("x")
        if x is None or x.ndim < 2 or x.shape[0] != len(sample_ids) or x.shape[-1] == 0:
            shape = None if x is None else tuple(x.shape)
            raise MedmodalError(
                f"tensor 'x' has shape {shape}, expected ({len(sample_ids)}, ..., D>0); re-run featurize for '{m}'",
                path=path,
            )
        meta = d / f"{m}.json"
        try:
            tensors["manifest"] = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise MedmodalError(f"unreadable modality manifest ({type(err).__name__})", path=meta) from None
        _check_recorded(tensors, d, m, len(sample_ids))
        out[m] = tensors
    return sample_ids, out


def _check_recorded(tensors: dict[str, Any], d: Path, modality: str, n: int) -> None:
    """The tensor file and its manifest must describe each other (a file copied in from another store, a manifest
    edited by hand, a half-finished copy): shape, dtype, mask and the cohort they were made for."""
    man, x, mask = tensors["manifest"], tensors.get("x"), tensors.get("mask")
    path = d / f"{modality}.safetensors"
    if x is None or mask is None:
        raise MedmodalError("tensor 'x' or 'mask' missing; re-run featurize", path=path, field=modality)
    dtype = str(x.dtype).replace("torch.", "")
    if man.get("shape", list(x.shape)) != list(x.shape) or man.get("dtype", dtype) != dtype:
        raise MedmodalError(
            f"holds {dtype} {list(x.shape)} but {modality}.json records {man.get('dtype')} {man.get('shape')}; "
            "re-run featurize",
            path=path,
            field=modality,
        )
    if x.shape[0] != n or tuple(mask.shape) != (n,):
        raise MedmodalError(f"has {x.shape[0]} rows for {n} samples; re-run featurize", path=path, field=modality)
    if man.get("cohort_id", d.name) != d.name:
        raise MedmodalError(
            f"was made for cohort {man['cohort_id']!r}, not {d.name!r}", path=d / f"{modality}.json", field="cohort_id"
        )
