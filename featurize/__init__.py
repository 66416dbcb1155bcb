"""Featurization: cohort directory -> feature store (docs/contracts.md §2, docs/features.md).

Library entry points (the CLI's ``medmodal featurize text|image|structured|all`` call these):

- :func:`featurize_text` - notes, one modality per note type, transformers encoder, cached by content;
- :func:`featurize_image` - chest X-rays (JPG/PNG/DICOM), timm encoder, cached by content;
- :func:`featurize_structured` - structured.parquet and timeseries.parquet tensors with train-fitted z-scores;
- :func:`featurize_all` - every modality of the cohort's manifest, each through the featurizer of its kind.

A featurizer is found by modality kind in ``FEATURIZERS``; a new kind is one module plus one import line below.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medmodal.common import MedmodalError, console
from medmodal.contracts import MARKER, CohortDir, check_store_root, is_legacy_store, load_cohort_features
from medmodal.featurize import image as _image  # noqa: F401  (kind: image)

# one import line per featurizer module: each registers itself in FEATURIZERS
from medmodal.featurize import structured as _structured  # noqa: F401  (kinds: structured, timeseries)
from medmodal.featurize import text as _text  # noqa: F401  (kind: text)
from medmodal.featurize.base import FEATURIZERS, POOLINGS, ModalityFeatures, ModalitySummary, write_outputs
from medmodal.featurize.image import DEFAULT_IMAGE_MODEL, ImageConfig
from medmodal.featurize.structured import StructuredConfig, TimeseriesConfig
from medmodal.featurize.text import DEFAULT_TEXT_MODEL, TextConfig
from medmodal.outputs import claim_dir, sweep_tree

__all__ = [
    "DEFAULT_IMAGE_MODEL",
    "DEFAULT_TEXT_MODEL",
    "FEATURIZERS",
    "POOLINGS",
    "ImageConfig",
    "ModalityFeatures",
    "ModalitySummary",
    "StructuredConfig",
    "TextConfig",
    "TimeseriesConfig",
    "featurize",
    "featurize_all",
    "featurize_image",
    "featurize_structured",
    "featurize_text",
    "load_cohort_features",
]


def featurize(
    cohort_dir: str | Path,
    store: str | Path,
    *,
    kinds: Iterable[str] | None = None,
    modalities: Iterable[str] | None = None,
    configs: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, ModalitySummary]:
    """Run the registered featurizer of each modality kind (``configs[kind]`` or its default config).

    All or nothing per call: the cohort's store folder changes only when every kind succeeded (every computed
    item stays in the cache either way, so a rerun resumes). ``overwrite``: replace modalities the store holds
    with other settings. ``store`` must be a feature store (or a new or empty folder) outside the cohort.
    """
    check_store_root(store)
    cohort = CohortDir.open(cohort_dir, masks=True)
    created = not Path(store).exists()
    store = claim_dir(store, "store", inputs={"the cohort": cohort_dir}, legacy=is_legacy_store, flag="--store")
    if swept := sweep_tree(store, depth=3):  # shards, index and tensor temporaries of killed runs
        console.print(f"[yellow]cleaned up {swept} leftover(s) of interrupted featurize runs[/yellow] in {store}")
    try:
        return _featurize(cohort, store, kinds, modalities, configs, overwrite)
    except BaseException:
        if created:  # a store this call created and left empty is not left behind
            with contextlib.suppress(OSError):
                (store / MARKER).unlink()
                store.rmdir()
        raise


def _featurize(cohort: CohortDir, store: Path, kinds, modalities, configs, overwrite) -> dict[str, ModalitySummary]:
    wanted_kinds = None if kinds is None else set(kinds)
    wanted_mods = None if modalities is None else set(modalities)
    if wanted_mods is not None and (unknown := wanted_mods - set(cohort.modalities)):
        raise MedmodalError(
            f"unknown modalities {', '.join(sorted(unknown))} (cohort has: {', '.join(cohort.modalities)})",
            path=cohort.dir / "manifest.json",
            field="modalities",
        )
    configs = configs or {}
    results: dict[str, ModalityFeatures] = {}
    kinds_in_order = list(dict.fromkeys(cohort.kind(m) for m in cohort.modalities))
    for kind in kinds_in_order:
        if wanted_kinds is not None and kind not in wanted_kinds:
            continue
        mods = [m for m in cohort.modalities_of(kind) if wanted_mods is None or m in wanted_mods]
        if not mods:
            continue
        featurizer = FEATURIZERS.get(kind)()
        cfg = configs.get(kind) or featurizer.Config()
        try:
            results.update(featurizer.run(cohort, mods, store, cfg))
        except OSError as err:  # a full disk, a read-only store, a file where a folder must be: one line
            where = err.filename or store
            raise MedmodalError(f"cannot read or write ({err.strerror or type(err).__name__})", path=where) from None
    try:
        return write_outputs(cohort, store, results, overwrite=overwrite)
    except OSError as err:
        where = err.filename or store
        raise MedmodalError(f"cannot read or write ({err.strerror or type(err).__name__})", path=where) from None


def featurize_text(
    cohort_dir: str | Path,
    store: str | Path,
    *,
    model: str = DEFAULT_TEXT_MODEL,
    note_types: Iterable[str] | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    max_length: int = 512,
    stride: int = 128,
    pooling: str = "mean",
    token_pooling: str = "mean",
    precision: str = "auto",
    chunk_size: int = 256,
    shard_size: int = 1024,
    overwrite: bool = False,
) -> dict[str, ModalitySummary]:
    """Embed the notes of every ``<type>_note`` modality (or only ``note_types``) into the store."""
    cfg = TextConfig(
        model=model,
        note_types=None if note_types is None else tuple(note_types),
        batch_size=batch_size,
        device=device,
        max_length=max_length,
        stride=stride,
        pooling=pooling,
        token_pooling=token_pooling,
        precision=precision,
        chunk_size=chunk_size,
        shard_size=shard_size,
    )
    return featurize(cohort_dir, store, kinds=["text"], configs={"text": cfg}, overwrite=overwrite)


def featurize_image(
    cohort_dir: str | Path,
    store: str | Path,
    *,
    model: str = DEFAULT_IMAGE_MODEL,
    weights: str | Path | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    num_workers: int | None = None,
    pooling: str = "mean",
    precision: str = "auto",
    shard_size: int = 1024,
    rehash: bool = False,
    overwrite: bool = False,
) -> dict[str, ModalitySummary]:
    """Embed the images of every image modality into the store (``rehash``: ignore remembered file hashes)."""
    cfg = ImageConfig(
        trust_mtime=not rehash,
        model=model,
        weights=None if weights is None else str(weights),
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        pooling=pooling,
        precision=precision,
        shard_size=shard_size,
    )
    return featurize(cohort_dir, store, kinds=["image"], configs={"image": cfg}, overwrite=overwrite)


def featurize_structured(
    cohort_dir: str | Path,
    store: str | Path,
    *,
    max_hours: int = 48,
    align: str = "start",
    overwrite: bool = False,
) -> dict[str, ModalitySummary]:
    """Structured and timeseries tensors, z-scored on the train split, with observed masks."""
    return featurize(
        cohort_dir,
        store,
        kinds=["structured", "timeseries"],
        configs={"structured": StructuredConfig(), "timeseries": TimeseriesConfig(max_hours=max_hours, align=align)},
        overwrite=overwrite,
    )


def featurize_all(
    cohort_dir: str | Path,
    store: str | Path,
    *,
    text_model: str = DEFAULT_TEXT_MODEL,
    image_model: str = DEFAULT_IMAGE_MODEL,
    image_weights: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    note_types: Iterable[str] | None = None,
    text_batch_size: int | None = None,
    image_batch_size: int | None = None,
    max_length: int = 512,
    stride: int = 128,
    text_pooling: str = "mean",
    token_pooling: str = "mean",
    image_pooling: str = "mean",
    num_workers: int | None = None,
    max_hours: int = 48,
    align: str = "start",
    modalities: Iterable[str] | None = None,
    overwrite: bool = False,
) -> dict[str, ModalitySummary]:
    """Every modality of the cohort (or only ``modalities``): structured, timeseries, text, image."""
    configs = {
        "structured": StructuredConfig(),
        "timeseries": TimeseriesConfig(max_hours=max_hours, align=align),
        "text": TextConfig(
            model=text_model,
            note_types=None if note_types is None else tuple(note_types),
            batch_size=text_batch_size,
            device=device,
            precision=precision,
            max_length=max_length,
            stride=stride,
            pooling=text_pooling,
            token_pooling=token_pooling,
        ),
        "image": ImageConfig(
            model=image_model,
            weights=None if image_weights is None else str(image_weights),
            batch_size=image_batch_size,
            device=device,
            precision=precision,
            num_workers=num_workers,
            pooling=image_pooling,
        ),
    }
    return featurize(cohort_dir, store, modalities=modalities, configs=configs, overwrite=overwrite)
