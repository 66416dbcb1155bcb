"""Cohort identity and feature fingerprints.

- **Cohort identity.** ``cohort_id`` = ``<source>__<task>__<12 hex>`` where the hex digest covers everything that
  changes a cohort's rows or columns: its sample ids, the split seed, fractions and protocol, the dataset release,
  the task and its parameters, the SQL file hashes, the raw file fingerprints and the cohort output format. The feature
  store files a cohort's tensors under this id, so two different cohorts never share a store slot.
- **Feature fingerprints.** What a run records about each modality it was trained on, and the one recursive
  comparison ``evaluate`` applies to the store it is given.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from medmodal.common import MedmodalError
from medmodal.contracts.markers import check_path_part

# ---------------------------------------------------------------------------------------------------- identity
# Bump when the cohort builder's code changes what a cohort directory holds for the same inputs (columns,
# encodings, row rules), so cohorts built before and after never share a feature-store slot. Not the package
# version: a release that leaves cohorts unchanged keeps every featurized store valid.
COHORT_FORMAT = 2

# manifest keys whose values enter the identity as they are (everything else is derived or descriptive)
_IDENTITY_KEYS = (
    "source",
    "task",
    "dataset_version",
    "task_definition",
    "sql_params",
    "split_seed",
    "split_fractions",
    "split_protocol",  # subject-level (default) or a paper's sample-level split
    "sql_hashes",
    "modalities",
    "imported_labels",  # a task built from a MEDS label file: the file's hash and how it was read
)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sample_ids_digest(sample_ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(str(s) for s in sample_ids)).encode()).hexdigest()


def cohort_identity(manifest: dict[str, Any], sample_ids: list[str]) -> dict[str, Any]:
    """What a cohort's id covers, from the manifest ``build_cohort`` writes plus the cohort's sample ids.

    Raw files enter by content (bytes + hash), not by path or mtime: the same release copied elsewhere is the
    same cohort; a path that ends up *in* the rows (the CXR root in image paths) enters through ``sql_params``.
    """
    identity: dict[str, Any] = {"cohort_format": COHORT_FORMAT}
    identity.update({k: manifest.get(k) for k in _IDENTITY_KEYS})
    raw = manifest.get("raw_files") or {}
    identity["raw_files"] = {
        view: None if fp is None else {"bytes": fp.get("bytes"), "hash": fp.get("hash")} for view, fp in raw.items()
    }
    identity["sample_ids_sha256"] = sample_ids_digest(sample_ids)
    return identity


def compute_cohort_id(identity: dict[str, Any]) -> str:
    """``<source>__<task>__<first 12 hex of sha256 over the canonical JSON of the identity>``."""
    source = check_path_part(identity.get("source"), field="source")
    task = check_path_part(identity.get("task"), field="task")
    digest = hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:12]
    return f"{source}__{task}__{digest}"


# ---------------------------------------------------------------------------------------------------- fingerprints
# The fields of a store modality manifest that define what its tensor means. Counts, cache locations, skip lists
# and the raw ``config`` (batch size, device, worker count, a weights *path*) describe one featurization run and
# are left out: the encoder description already holds the weights hash and every preprocessing setting. N (the
# first dimension) is the cohort's size.
_MEANING_KEYS = (
    "kind",
    "dtype",
    "encoder",
    "pooling",
    "preprocessing",
    "pooling_windows_per_note",
    "dtype_compute",
    "columns",
    "variables",
    "hours",
    "hour_cap",
    "align",
    "normalisation",
    "encoder_fingerprint",
)
_VOLATILE_ENCODER_KEYS = ("cache_dir",)


def feature_fingerprint(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a run records about one store modality: the meaning of its tensor, not how it was computed."""
    fp = {k: manifest[k] for k in _MEANING_KEYS if k in manifest}
    if isinstance(fp.get("encoder"), dict):
        fp["encoder"] = {k: v for k, v in fp["encoder"].items() if k not in _VOLATILE_ENCODER_KEYS}
    if isinstance(manifest.get("shape"), list):
        fp["feature_shape"] = list(manifest["shape"][1:])  # (D,) or (T, V)
    return fp


def first_difference(recorded: Any, current: Any, where: str = "") -> tuple[str, Any, Any] | None:
    """The first place where ``current`` differs from ``recorded``: (dotted path, recorded, current), or None.

    Recurses through dicts (every key the run recorded must be present and equal; keys the store has beyond
    them are newer fields the run could not record) and lists (same length, element by element); anything
    else is compared for equality, so an int and the float JSON made of it still match.
    """
    if isinstance(recorded, dict):
        if not isinstance(current, dict):
            return (where or "(top)", recorded, current)
        for key in sorted(recorded, key=str):
            sub = f"{where}.{key}" if where else str(key)
            if key not in current:
                return (sub, recorded[key], "(absent)")
            diff = first_difference(recorded[key], current[key], sub)
            if diff:
                return diff
        return None
    if isinstance(recorded, list):
        if not isinstance(current, list) or len(current) != len(recorded):
            return (where or "(top)", recorded, current)
        for i, (a, b) in enumerate(zip(recorded, current)):
            diff = first_difference(a, b, f"{where}[{i}]")
            if diff:
                return diff
        return None
    if recorded != current and not (_is_nan(recorded) and _is_nan(current)):
        return (where or "(top)", recorded, current)
    return None


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _short(value: Any) -> str:
    text = canonical_json(value) if isinstance(value, (dict, list)) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_feature_fingerprints(
    recorded: dict[str, dict[str, Any]],
    current: dict[str, dict[str, Any]],
    *,
    store: str | Path,
    ignore: tuple[str, ...] = (),
) -> None:
    """Refuse (one line naming the modality and the field) a store whose modalities differ from ``recorded``.

    ``ignore``: top-level fingerprint keys not compared (an external cohort's store is z-scored on its own train
    split, so its ``normalisation`` legitimately differs). A modality absent from ``current`` is not compared
    (the caller treats it as missing for every sample).
    """
    for m in sorted(recorded):
        if m not in current:
            continue
        want = {k: v for k, v in recorded[m].items() if k not in ignore}
        if isinstance(want.get("encoder"), dict):  # runs from before feature_fingerprint() recorded cache_dir
            want["encoder"] = {k: v for k, v in want["encoder"].items() if k not in _VOLATILE_ENCODER_KEYS}
        diff = first_difference(want, current[m])
        if diff:
            where, was, now = diff
            raise MedmodalError(
                f"modality '{m}' differs from the store the run was trained on: {where} was {_short(was)}, "
                f"is {_short(now)}; re-featurize it with the training settings or evaluate on the training store",
                path=Path(store),
                field=m,
            )
