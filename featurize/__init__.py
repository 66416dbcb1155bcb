"""Featurization: cohort directory -> feature store (docs/contracts.md §2, docs/features.md).

Library entry points (the CLI's ``medmodal featurize text|image|structured|all`` call these):

- :func:`featurize` - the modalities of the chosen kinds, each kind through one registered featurizer;
- :func:`featurize_text` - notes, one modality per note type, transformers encoder, cached by content;
- :func:`featurize_image` - chest X-rays (JPG/PNG/DICOM), timm encoder, cached by content;
- :func:`featurize_structured` - structured.parquet and timeseries.parquet tensors with train-fitted z-scores;
- :func:`featurize_all` - every modality of the cohort's manifest, each through the featurizer of its kind.

Featurizers are found by name in ``FEATURIZERS``, each with its ``kind`` and typed ``config_class``; a kind
uses its default featurizer unless a config of another one is given. A new featurizer (a second text encoder,
or the one featurizer of a new modality kind) is one module plus one import line below.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from medmodal.common import MedmodalError, console
from medmodal.contracts import MARKER, CohortDir, check_store_root, is_legacy_store, load_cohort_features
from medmodal.distributed import DistEnv, barrier, coordination_group

# one import line per featurizer module: each registers itself in FEATURIZERS
from medmodal.featurize import image as _image  # noqa: F401  (timm: kind image)
from medmodal.featurize import structured as _structured  # noqa: F401  (structured, timeseries)
from medmodal.featurize import text as _text  # noqa: F401  (transformers: kind text)
from medmodal.featurize.base import (
    FEATURIZERS,
    POOLINGS,
    Featurizer,
    ModalityFeatures,
    ModalitySummary,
    default_featurizer,
    featurizer_of_config,
    featurizers_of,
    write_outputs,
)
from medmodal.featurize.image import ImageConfig
from medmodal.featurize.structured import StructuredConfig, TimeseriesConfig
from medmodal.featurize.text import TextConfig
from medmodal.options import make_config
from medmodal.outputs import claim_dir, sweep_tree

__all__ = [
    "FEATURIZERS",
    "POOLINGS",
    "Featurizer",
    "ImageConfig",
    "ModalityFeatures",
    "ModalitySummary",
    "StructuredConfig",
    "TextConfig",
    "TimeseriesConfig",
    "default_featurizer",
    "featurize",
    "featurize_all",
    "featurize_image",
    "featurize_kinds",
    "featurize_structured",
    "featurize_text",
    "featurizers_of",
    "load_cohort_features",
]


def featurize(
    cohort_dir: str | Path,
    store: str | Path,
    *,
    kinds: Iterable[str] | None = None,
    modalities: Iterable[str] | None = None,
    configs: Iterable[Any] = (),
    overwrite: bool = False,
) -> dict[str, ModalitySummary]:
    """Featurize the cohort's modalities (of ``kinds`` / named in ``modalities``; default all).

    ``configs``: config objects of registered featurizers, at most one per kind; a kind with none uses its
    default featurizer with its default config. All or nothing per call: the cohort's store folder changes only
    when every kind succeeded (every computed item stays in the cache either way, so a rerun resumes).
    ``overwrite``: replace modalities the store holds with other settings. ``store`` must be a feature store (or
    a new or empty folder) outside the cohort.

    Under ``torchrun`` (one node or several; docs/features.md, "Several GPUs and nodes") every rank calls this
    with the same arguments: the item featurizers (text, image) split the items still missing from the cache
    across the ranks, the others (structured) run on rank 0, and rank 0 alone writes the cohort's store folder
    once every rank's cache shards are in place; the other ranks return ``{}`` after it has.
    """
    chosen = _chosen(configs)
    with coordination_group() as env:
        check_store_root(store)
        cohort = CohortDir.open(cohort_dir, masks=True)
        created = not Path(store).exists()
        if env.main:  # one claim and one sweep; then the other ranks find the marker and join
            store = _claim_store(store, cohort_dir)
        barrier(env)
        if not env.main:
            store = claim_dir(store, "store", inputs={"the cohort": cohort_dir}, legacy=is_legacy_store, flag="--store")
        try:
            summaries = _featurize(cohort, store, kinds, modalities, chosen, overwrite, env)
        except BaseException:
            if created and env.main:  # a store this call created and left empty is not left behind
                with contextlib.suppress(OSError):
                    (store / MARKER).unlink()
                    store.rmdir()
            raise
        barrier(env)  # no rank exits before rank 0 has written the store
        return summaries if env.main else {}


def _claim_store(store: str | Path, cohort_dir: str | Path) -> Path:
    store = claim_dir(store, "store", inputs={"the cohort": cohort_dir}, legacy=is_legacy_store, flag="--store")
    if swept := sweep_tree(store, depth=3):  # shards, index and tensor temporaries of killed runs
        console.print(f"[yellow]cleaned up {swept} leftover(s) of interrupted featurize runs[/yellow] in {store}")
    return store


def _chosen(configs: Iterable[Any]) -> dict[str, tuple[str, Any]]:
    """{kind: (featurizer name, config)} of the given configs; two for one kind is an error."""
    chosen: dict[str, tuple[str, Any]] = {}
    for cfg in configs:
        name = featurizer_of_config(cfg)
        kind = FEATURIZERS.get(name).kind
        if kind in chosen:
            raise MedmodalError(f"two featurizers given for modality kind '{kind}': {chosen[kind][0]} and {name}")
        chosen[kind] = (name, cfg)
    return chosen


def _featurize(
    cohort: CohortDir, store: Path, kinds, modalities, chosen, overwrite, env: DistEnv
) -> dict[str, ModalitySummary]:
    wanted_kinds = None if kinds is None else set(kinds)
    wanted_mods = None if modalities is None else set(modalities)
    if wanted_mods is not None and (unknown := wanted_mods - set(cohort.modalities)):
        raise MedmodalError(
            f"unknown modalities {', '.join(sorted(unknown))} (cohort has: {', '.join(cohort.modalities)})",
            path=cohort.dir / "manifest.json",
            field="modalities",
        )
    results: dict[str, ModalityFeatures] = {}
    kinds_in_order = list(dict.fromkeys(cohort.kind(m) for m in cohort.modalities))
    for kind in kinds_in_order:
        if wanted_kinds is not None and kind not in wanted_kinds:
            continue
        mods = [m for m in cohort.modalities_of(kind) if wanted_mods is None or m in wanted_mods]
        if not mods:
            continue
        name, cfg = chosen.get(kind) or (default_featurizer(kind), None)
        if not env.main and not FEATURIZERS.get(name).distributed:
            continue  # rank 0 runs it alone
        featurizer = FEATURIZERS.get(name)()
        cfg = cfg if cfg is not None else featurizer.config_class()
        try:
            features = featurizer.run(cohort, mods, store, cfg)
        except OSError as err:  # a full disk, a read-only store, a file where a folder must be: one line
            where = err.filename or store
            raise MedmodalError(f"cannot read or write ({err.strerror or type(err).__name__})", path=where) from None
        for feats in features.values():
            feats.manifest.setdefault("featurizer", name)
        results.update(features)
    if not env.main:
        return {}
    try:
        return write_outputs(cohort, store, results, overwrite=overwrite)
    except OSError as err:
        where = err.filename or store
        raise MedmodalError(f"cannot read or write ({err.strerror or type(err).__name__})", path=where) from None


def kind_configs(
    kinds: Iterable[str],
    options: Mapping[str, Any] | None = None,
    featurizers: Mapping[str, str] | None = None,
    *,
    text: bool = False,
    spelled: Mapping[str, str] | None = None,
) -> list[Any]:
    """One config per kind: featurizer ``featurizers[kind]`` (default: the kind's default) with the ``options``
    that are its fields. An option that no chosen featurizer has is an error naming it (``spelled[name]``: how
    the user wrote it), as is a featurizer of another kind. A key ``kind.field`` is for that kind only; a plain
    ``field`` for every chosen featurizer that has it. ``text``: option values are command-line text."""
    options, spelled = dict(options or {}), dict(spelled or {})
    used: set[str] = set()
    kinds = list(kinds)
    if unknown := [k for k in featurizers or {} if k not in kinds]:
        raise MedmodalError(f"no modality kind '{unknown[0]}' here (kinds: {', '.join(kinds)})")
    names = [(featurizers or {}).get(kind) or default_featurizer(kind) for kind in kinds]
    configs = []
    for kind, name in zip(kinds, names):
        cls = FEATURIZERS.get(name)
        if cls.kind != kind:
            raise MedmodalError(
                f"featurizer '{name}' embeds {cls.kind}, not {kind} (featurizers of {kind}: "
                f"{', '.join(featurizers_of(kind)) or 'none'})"
            )
        fields = {f.name for f in dataclasses.fields(cls.config_class)}
        mine, said = {}, {}
        for key, value in options.items():
            field = key.removeprefix(f"{kind}.")
            if "." not in field and field in fields:
                mine[field] = value
                used.add(key)
                if key in spelled:
                    said[field] = spelled[key]
        configs.append(make_config(cls.config_class, mine, what=f"featurizer '{name}'", text=text, spelled=said))
    if unused := [k for k in options if k not in used]:
        raise MedmodalError(f"{spelled.get(unused[0], unused[0])} is not an option of {', '.join(names)}")
    return configs


def featurize_kinds(
    cohort_dir: str | Path,
    store: str | Path,
    kinds: Iterable[str],
    *,
    featurizers: Mapping[str, str] | None = None,
    overwrite: bool = False,
    **options: Any,
) -> dict[str, ModalitySummary]:
    """The modalities of ``kinds``, each kind through ``featurizers[kind]`` (default: its default featurizer)
    with the ``options`` that are that featurizer's config fields."""
    kinds = list(kinds)
    configs = kind_configs(kinds, options, featurizers)
    return featurize(cohort_dir, store, kinds=kinds, configs=configs, overwrite=overwrite)


def featurize_text(
    cohort_dir: str | Path, store: str | Path, *, featurizer: str | None = None, overwrite: bool = False, **options
) -> dict[str, ModalitySummary]:
    """Embed the notes of every ``<type>_note`` modality into the store; ``options``: the text featurizer's
    config fields (``model``, ``note_types``, ``max_length``, ...; TextConfig for the default)."""
    chosen = {"text": featurizer} if featurizer else None
    return featurize_kinds(cohort_dir, store, ["text"], featurizers=chosen, overwrite=overwrite, **options)


def featurize_image(
    cohort_dir: str | Path, store: str | Path, *, featurizer: str | None = None, overwrite: bool = False, **options
) -> dict[str, ModalitySummary]:
    """Embed the images of every image modality into the store; ``options``: the image featurizer's config
    fields (``model``, ``weights``, ``num_workers``, ``rehash``, ...; ImageConfig for the default)."""
    chosen = {"image": featurizer} if featurizer else None
    return featurize_kinds(cohort_dir, store, ["image"], featurizers=chosen, overwrite=overwrite, **options)


def featurize_structured(
    cohort_dir: str | Path, store: str | Path, *, overwrite: bool = False, **options: Any
) -> dict[str, ModalitySummary]:
    """Structured and timeseries tensors, z-scored on the train split, with observed masks; ``options``:
    TimeseriesConfig fields (``max_hours``, ``align``)."""
    return featurize_kinds(cohort_dir, store, ["structured", "timeseries"], overwrite=overwrite, **options)


def featurize_all(
    cohort_dir: str | Path,
    store: str | Path,
    *,
    configs: Iterable[Any] = (),
    modalities: Iterable[str] | None = None,
    overwrite: bool = False,
) -> dict[str, ModalitySummary]:
    """Every modality of the cohort (or only ``modalities``), each kind through the featurizer of its config in
    ``configs`` (e.g. ``[TextConfig(model=...), ImageConfig(weights=...)]``) or its default featurizer."""
    return featurize(cohort_dir, store, modalities=modalities, configs=configs, overwrite=overwrite)
