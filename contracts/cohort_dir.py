"""Opening a cohort directory: manifest.json and cohort.parquet read once, checked once (docs/contracts.md §1).

Featurize and models both read a cohort through :class:`CohortDir`: it checks what every reader relies on (the
manifest's modalities, kinds and labels; cohort.parquet's sample ids, splits and label values) with one line
naming the file and field, aligns the other tables to the cohort's row order on demand, and knows the cohort's
id, so no later step re-reads the manifest or cohort.parquet.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from medmodal.common import MedmodalError, write_json
from medmodal.contracts.identity import compute_cohort_id, sample_ids_digest
from medmodal.contracts.markers import check_path_part
from medmodal.contracts.schema import COHORT, LABEL_KINDS, MODALITY_KINDS, SPLITS, ModalityKind, modality_kind

MANIFEST = "manifest.json"


# ---------------------------------------------------------------------------------------------------- manifest
def read_cohort_manifest(cohort_dir: str | Path) -> dict[str, Any]:
    d = Path(cohort_dir)
    path = d / MANIFEST
    if not path.is_file():
        raise MedmodalError("not a cohort directory (manifest.json missing)", path=d)
    try:
        man = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise MedmodalError(f"unreadable JSON ({err.msg} at line {err.lineno})", path=path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise MedmodalError(f"unreadable ({type(err).__name__})", path=path) from None
    if not isinstance(man, dict):
        raise MedmodalError("must hold a JSON object", path=path)
    return man


def write_cohort_manifest(cohort_dir: str | Path, manifest: dict[str, Any]) -> None:
    """manifest.json, atomically, keys sorted (identical manifests are identical bytes)."""
    write_json(Path(cohort_dir) / MANIFEST, manifest)


def cohort_sample_ids(cohort_dir: str | Path) -> list[str]:
    path = Path(cohort_dir) / COHORT.file
    if not path.is_file():
        raise MedmodalError("missing", path=path)
    return pl.read_parquet(path, columns=["sample_id"])["sample_id"].cast(pl.Utf8).to_list()


def cohort_id(cohort_dir: str | Path) -> str:
    """The cohort's id from its manifest (see :func:`cohort_id_of`); reads the manifest."""
    return cohort_id_of(read_cohort_manifest(cohort_dir), cohort_dir)


def cohort_id_of(manifest: dict[str, Any], cohort_dir: str | Path, sample_ids: list[str] | None = None) -> str:
    """The manifest's cohort_id, checked: a safe folder name, and the hash of the identity it records.

    A manifest from before identities covered content (no ``cohort_identity``) gets the old id recomputed from
    its sample ids (``sample_ids``, else read from cohort.parquet), so stores featurized then are still found.
    """
    path = Path(cohort_dir) / MANIFEST
    identity = manifest.get("cohort_identity")
    if isinstance(identity, dict):
        expected = compute_cohort_id(identity)
        if manifest.get("cohort_id") != expected:
            raise MedmodalError(
                f"does not match the cohort_identity the manifest records ({expected}); was it edited by hand?",
                path=path,
                field="cohort_id",
            )
        return expected
    if manifest.get("cohort_id"):
        return check_path_part(manifest["cohort_id"], path=path, field="cohort_id")
    source = check_path_part(manifest.get("source"), path=path, field="source")
    task = check_path_part(manifest.get("task"), path=path, field="task")
    ids = cohort_sample_ids(cohort_dir) if sample_ids is None else sample_ids
    return f"{source}__{task}__{sample_ids_digest(ids)[:12]}"


# ---------------------------------------------------------------------------------------------------- labels
@dataclass(frozen=True)
class Label:
    """One entry of manifest ``labels``: a cohort.parquet column of 0/1 (binary) or class indices (multiclass)."""

    name: str
    kind: str
    classes: tuple[str, ...] = ()

    @property
    def n_classes(self) -> int:
        return 2 if self.kind == "binary" else len(self.classes)


def _labels(manifest: dict[str, Any], path: Path) -> tuple[Label, ...]:
    entries = manifest.get("labels")
    if not isinstance(entries, list) or not entries:
        raise MedmodalError("no labels listed", path=path, field="labels")
    out: dict[str, Label] = {}
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("name"), str):
            raise MedmodalError("each label needs a 'name'", path=path, field="labels")
        kind = e.get("kind", "binary")
        classes = tuple(str(c) for c in e.get("classes") or ())
        if kind not in LABEL_KINDS:
            raise MedmodalError(f"label '{e['name']}' has unknown kind '{kind}'", path=path, field="labels")
        if kind == "multiclass" and len(classes) < 2:
            raise MedmodalError(f"multiclass label '{e['name']}' needs >= 2 classes", path=path, field="labels")
        out[e["name"]] = Label(e["name"], kind, classes)
    return tuple(out.values())


def _check_label_values(frame: pl.DataFrame, labels: tuple[Label, ...], path: Path) -> None:
    for lab in labels:
        if lab.name not in frame.columns:
            raise MedmodalError("label column missing", path=path, field=lab.name)
        col = frame[lab.name]
        if not col.dtype.is_numeric():
            raise MedmodalError(f"label must be numeric, got {col.dtype}", path=path, field=lab.name)
        allowed = [0.0, 1.0] if lab.kind == "binary" else [float(k) for k in range(lab.n_classes)]
        values = col.cast(pl.Float64)
        bad = values.is_not_null() & ~values.is_in(allowed)
        if bad.any():
            row = int(bad.arg_true()[0])
            raise MedmodalError(f"value {values[row]} outside {allowed} (row {row})", path=path, field=lab.name)


# ---------------------------------------------------------------------------------------------------- tables
def read_table(path: Path, required: list[str]) -> pl.DataFrame:
    """One Parquet file of a cohort directory with its required columns, or one line naming what is wrong."""
    if not path.is_file():
        raise MedmodalError("missing from the cohort directory", path=path)
    try:
        df = pl.read_parquet(path)
    except Exception as err:
        raise MedmodalError(f"unreadable Parquet ({type(err).__name__})", path=path) from None
    for col in required:
        if col not in df.columns:
            raise MedmodalError("required column missing", path=path, field=col)
    return df


@dataclass
class CohortDir:
    """One cohort directory, opened and checked once; tables other than cohort.parquet are read on demand."""

    dir: Path
    manifest: dict[str, Any]
    frame: pl.DataFrame  # cohort.parquet as written: rows sorted by sample_id
    cohort_id: str
    sample_ids: list[str]
    split: np.ndarray  # str [N]: one of SPLITS
    labels: tuple[Label, ...]
    _has: dict[str, np.ndarray] | None = field(default=None, repr=False)
    _tables: dict[str, pl.DataFrame] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, cohort_dir: str | Path | CohortDir, *, masks: bool = False) -> CohortDir:
        """Read and check manifest.json and cohort.parquet (``masks``: modalities.parquet too, now)."""
        if isinstance(cohort_dir, CohortDir):
            return cohort_dir.with_masks() if masks else cohort_dir
        d = Path(cohort_dir)
        manifest = read_cohort_manifest(d)
        man_path = d / MANIFEST
        for key in ("modalities", "modality_kinds"):
            if key not in manifest:
                raise MedmodalError("key missing", path=man_path, field=key)
        kinds = manifest["modality_kinds"]
        if not isinstance(manifest["modalities"], list) or not isinstance(kinds, dict):
            raise MedmodalError("must list the modalities and map each to its kind", path=man_path, field="modalities")
        for m in manifest["modalities"]:
            check_path_part(m, path=man_path, field="modalities")  # names store files
            if kinds.get(m) is None:
                raise MedmodalError(f"modality '{m}' has no kind", path=man_path, field="modality_kinds")
            modality_kind(kinds[m], path=man_path, field="modality_kinds")
        labels = _labels(manifest, man_path)

        path = d / COHORT.file
        frame = read_table(path, COHORT.required)
        ids = frame["sample_id"].cast(pl.Utf8)
        if ids.null_count() or ids.n_unique() != len(ids):
            raise MedmodalError("sample_id must be unique and non-null", path=path, field="sample_id")
        sample_ids = ids.to_list()
        if sample_ids != sorted(sample_ids):
            raise MedmodalError("rows must be sorted by sample_id", path=path, field="sample_id")
        split = frame["split"].cast(pl.Utf8)
        bad = split.filter(~split.is_in(SPLITS) | split.is_null())
        if len(bad):
            raise MedmodalError(f"values must be {'/'.join(SPLITS)} (found {bad[0]!r})", path=path, field="split")
        if not sample_ids:
            raise MedmodalError("the cohort has no samples", path=path)
        _check_label_values(frame, labels, path)
        opened = cls(
            dir=d,
            manifest=manifest,
            frame=frame,
            cohort_id=cohort_id_of(manifest, d, sample_ids),
            sample_ids=sample_ids,
            split=split.to_numpy().astype(str),
            labels=labels,
        )
        return opened.with_masks() if masks else opened

    # ------------------------------------------------------------------------------------------------ manifest
    @property
    def n(self) -> int:
        return len(self.sample_ids)

    @property
    def modalities(self) -> list[str]:
        return list(self.manifest["modalities"])

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST

    @property
    def image_root(self) -> Path | None:
        """The folder image paths must resolve inside (manifest ``image_root``; None in hand-made cohorts)."""
        root = self.manifest.get("image_root")
        if not root and (files := (self.manifest.get("sql_params") or {}).get("cxr_files_root")):
            root = str(Path(files).parent)  # MIMIC-IV cohorts built before image_root was recorded
        return Path(root) if root else None

    def kind(self, modality: str) -> str:
        return self.manifest["modality_kinds"][modality]

    def modalities_of(self, kind: str) -> list[str]:
        return [m for m in self.modalities if self.kind(m) == kind]

    # ------------------------------------------------------------------------------------------------ tables
    @property
    def has(self) -> dict[str, np.ndarray]:
        """modality -> bool [N] from modalities.parquet (read and checked on first use)."""
        return self.with_masks()._has  # type: ignore[return-value]

    def with_masks(self) -> CohortDir:
        if self._has is not None:
            return self
        path = self.dir / "modalities.parquet"
        mods = read_table(path, ["sample_id"] + [f"has_{m}" for m in self.modalities])
        mods = mods.with_columns(pl.col("sample_id").cast(pl.Utf8))
        aligned = pl.DataFrame({"sample_id": self.sample_ids}).join(
            mods, on="sample_id", how="left", maintain_order="left"
        )
        if aligned.height != self.n:
            raise MedmodalError("duplicate sample_id rows", path=path, field="sample_id")
        has = {}
        for m in self.modalities:
            col = aligned[f"has_{m}"]
            if col.null_count():
                raise MedmodalError(
                    f"{col.null_count()} cohort samples have no row (or a null)", path=path, field=f"has_{m}"
                )
            has[m] = col.cast(pl.Boolean).to_numpy().astype(bool)
        self._has = has
        return self

    def table(self, name: str, required: list[str]) -> pl.DataFrame:
        """``<name>.parquet`` with a ``row`` column (the sample's cohort row); rows of unknown samples dropped."""
        if name not in self._tables:
            path = self.dir / f"{name}.parquet"
            df = read_table(path, ["sample_id", *required]).with_columns(pl.col("sample_id").cast(pl.Utf8))
            rows = pl.DataFrame({"sample_id": self.sample_ids, "row": np.arange(self.n, dtype=np.int64)})
            self._tables[name] = df.join(rows, on="sample_id", how="inner")
        return self._tables[name]

    def iter_table(self, name: str, columns: list[str], *, batch_rows: int = 1 << 20) -> Iterator[pl.DataFrame]:
        """``<name>.parquet``'s ``columns`` as :meth:`table` (with ``row``; rows of unknown samples dropped), one
        record batch at a time in file order: memory is one batch whatever the file's size."""
        import pyarrow.parquet as pq

        path = self.dir / f"{name}.parquet"
        if not path.is_file():
            raise MedmodalError("missing from the cohort directory", path=path)
        try:
            fh = pq.ParquetFile(path)
        except Exception as err:
            raise MedmodalError(f"unreadable Parquet ({type(err).__name__})", path=path) from None
        for col in ["sample_id", *columns]:
            if col not in fh.schema_arrow.names:
                raise MedmodalError("required column missing", path=path, field=col)
        rows = pl.DataFrame({"sample_id": self.sample_ids, "row": np.arange(self.n, dtype=np.int64)})
        batches = fh.iter_batches(batch_size=batch_rows, columns=["sample_id", *columns])
        while True:
            try:
                batch = next(batches, None)
            except Exception as err:
                raise MedmodalError(f"unreadable Parquet ({type(err).__name__})", path=path) from None
            if batch is None:
                return
            df = pl.from_arrow(batch).with_columns(pl.col("sample_id").cast(pl.Utf8))
            yield df.join(rows, on="sample_id", how="inner", maintain_order="left")

    def items(self, kind: str | ModalityKind) -> pl.DataFrame:
        """The item table of a modality kind (its contract columns required), aligned as :meth:`table`."""
        k = kind if isinstance(kind, ModalityKind) else MODALITY_KINDS[kind]
        return self.table(k.table.name, [c for c in k.table.required if c != "sample_id"])
