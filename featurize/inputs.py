"""Reading a cohort directory (docs/contracts.md §1) for the featurizers, with one-line errors on bad input.

Featurizers never run cohort SQL: they see only these Parquet files and manifest.json. Every table is aligned to
the cohort's row order (``cohort.parquet`` sorted by ``sample_id``) here, once, so featurizers work in row indices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from medmodal.common import MedmodalError
from medmodal.contracts import check_path_part, cohort_id, read_cohort_manifest

KINDS = ("structured", "timeseries", "text", "image")
SPLITS = ("train", "val", "test")


def _read(path: Path, required: list[str]) -> pl.DataFrame:
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
class CohortInputs:
    """A validated view of one cohort directory; tables other than cohort/modalities are read on demand."""

    dir: Path
    manifest: dict[str, Any]
    cohort_id: str
    sample_ids: list[str]
    split: np.ndarray  # object [N]: "train" | "val" | "test"
    has: dict[str, np.ndarray]  # modality -> bool [N]
    _tables: dict[str, pl.DataFrame] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, cohort_dir: str | Path) -> CohortInputs:
        d = Path(cohort_dir)
        manifest = read_cohort_manifest(d)
        for key in ("modalities", "modality_kinds"):
            if key not in manifest:
                raise MedmodalError("key missing", path=d / "manifest.json", field=key)
        for m in manifest["modalities"]:
            check_path_part(m, path=d / "manifest.json", field="modalities")  # names store files
            kind = manifest["modality_kinds"].get(m)
            if kind is None:
                raise MedmodalError(f"modality '{m}' has no kind", path=d / "manifest.json", field="modality_kinds")
        cohort = _read(d / "cohort.parquet", ["sample_id", "split"])
        ids = cohort["sample_id"].cast(pl.Utf8)
        if ids.null_count() or ids.n_unique() != len(ids):
            raise MedmodalError("sample_id must be unique and non-null", path=d / "cohort.parquet", field="sample_id")
        if ids.to_list() != sorted(ids.to_list()):
            raise MedmodalError("rows must be sorted by sample_id", path=d / "cohort.parquet", field="sample_id")
        split = cohort["split"].cast(pl.Utf8)
        bad = split.filter(~split.is_in(SPLITS) | split.is_null())
        if len(bad):
            raise MedmodalError(
                f"values must be train/val/test (found {bad[0]!r})", path=d / "cohort.parquet", field="split"
            )
        sample_ids = ids.to_list()
        if not sample_ids:
            raise MedmodalError("the cohort has no samples (nothing to featurize)", path=d / "cohort.parquet")

        mods = _read(d / "modalities.parquet", ["sample_id"] + [f"has_{m}" for m in manifest["modalities"]])
        mods = mods.with_columns(pl.col("sample_id").cast(pl.Utf8))
        aligned = pl.DataFrame({"sample_id": sample_ids}).join(mods, on="sample_id", how="left", maintain_order="left")
        if aligned.height != len(sample_ids):
            raise MedmodalError("duplicate sample_id rows", path=d / "modalities.parquet", field="sample_id")
        has = {}
        for m in manifest["modalities"]:
            col = aligned[f"has_{m}"]
            if col.null_count():
                raise MedmodalError(
                    f"{col.null_count()} cohort samples have no row (or a null)",
                    path=d / "modalities.parquet",
                    field=f"has_{m}",
                )
            has[m] = col.cast(pl.Boolean).to_numpy().astype(bool)
        return cls(
            dir=d,
            manifest=manifest,
            cohort_id=cohort_id(d),
            sample_ids=sample_ids,
            split=split.to_numpy().astype(object),
            has=has,
        )

    @property
    def n(self) -> int:
        return len(self.sample_ids)

    @property
    def modalities(self) -> list[str]:
        return list(self.manifest["modalities"])

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

    def table(self, name: str, required: list[str]) -> pl.DataFrame:
        """``<name>.parquet`` with a ``row`` column (the sample's cohort row); rows of unknown samples dropped."""
        if name not in self._tables:
            path = self.dir / f"{name}.parquet"
            df = _read(path, ["sample_id", *required]).with_columns(pl.col("sample_id").cast(pl.Utf8))
            rows = pl.DataFrame({"sample_id": self.sample_ids, "row": np.arange(self.n, dtype=np.int64)})
            self._tables[name] = df.join(rows, on="sample_id", how="inner")
        return self._tables[name]
