"""The contracts between stages, below every stage (docs/contracts.md says where each one lives).

Every stage (cohort, featurize, models, simulate) reads the previous stage's output through this package and
nothing here imports a stage, so each rule is written once:

- ``schema``: what a cohort directory holds: each Parquet file's columns and types, the split names, the modality
  kinds and the item table each kind reads, the missingness-pattern code.
- ``cohort_dir``: manifest reading and writing, and :class:`CohortDir`, the one open-and-check of a cohort
  directory that featurize and models use.
- ``identity``: the cohort id and what it covers; the feature fingerprints a run records and evaluate compares.
- ``store``: the feature store's layout (``samples.parquet``, ``<modality>.safetensors`` + ``.json``), its
  writer and the reader models use.
- ``tensorfile``: tensors written block by block and saved without materialising them (bounded memory).
- ``markers``: output markers naming each output folder's kind; ids used as path parts.
- ``writer``: the one writer of hand-made cohort directories (tests, tiny encoders' fixtures, toy cohorts).
"""

from medmodal.contracts.cohort_dir import (
    MANIFEST,
    CohortDir,
    Label,
    cohort_id,
    cohort_id_of,
    cohort_sample_ids,
    read_cohort_manifest,
    read_table,
    write_cohort_manifest,
)
from medmodal.contracts.identity import (
    COHORT_FORMAT,
    canonical_json,
    check_feature_fingerprints,
    cohort_identity,
    compute_cohort_id,
    feature_fingerprint,
    first_difference,
    sample_ids_digest,
)
from medmodal.contracts.markers import (
    MARKER,
    MARKER_FORMAT,
    OUTPUT_KINDS,
    check_path_part,
    describe_kind,
    marker_payload,
    read_marker,
    write_marker,
)
from medmodal.contracts.schema import (
    ATTRITION,
    COHORT,
    IMAGES,
    LABEL_KINDS,
    MODALITY_KINDS,
    NOTES,
    SPLITS,
    STRUCTURED,
    TIMESERIES,
    Column,
    ModalityKind,
    Table,
    cohort_column_order,
    cohort_files,
    item_tables,
    modalities_table,
    modality_kind,
    n_observed_sql,
    pattern_code,
    pattern_codes,
    pattern_modalities,
    pattern_sql,
    pattern_weights,
    register_modality_kind,
    structured_table,
)
from medmodal.contracts.store import (
    SAMPLES,
    check_store_root,
    cohort_store_dir,
    is_legacy_store,
    load_cohort_features,
    write_modality,
    write_samples,
)
from medmodal.contracts.tensorfile import SpooledTensor, save_safetensors
from medmodal.contracts.writer import write_cohort

__all__ = [
    "ATTRITION",
    "COHORT",
    "COHORT_FORMAT",
    "IMAGES",
    "LABEL_KINDS",
    "MANIFEST",
    "MARKER",
    "MARKER_FORMAT",
    "MODALITY_KINDS",
    "NOTES",
    "OUTPUT_KINDS",
    "SAMPLES",
    "SPLITS",
    "STRUCTURED",
    "TIMESERIES",
    "CohortDir",
    "Column",
    "Label",
    "ModalityKind",
    "SpooledTensor",
    "Table",
    "canonical_json",
    "check_feature_fingerprints",
    "check_path_part",
    "check_store_root",
    "cohort_column_order",
    "cohort_files",
    "cohort_id",
    "cohort_id_of",
    "cohort_identity",
    "cohort_sample_ids",
    "cohort_store_dir",
    "compute_cohort_id",
    "describe_kind",
    "feature_fingerprint",
    "first_difference",
    "is_legacy_store",
    "item_tables",
    "load_cohort_features",
    "marker_payload",
    "modalities_table",
    "modality_kind",
    "n_observed_sql",
    "pattern_code",
    "pattern_codes",
    "pattern_modalities",
    "pattern_sql",
    "pattern_weights",
    "read_cohort_manifest",
    "read_marker",
    "read_table",
    "register_modality_kind",
    "sample_ids_digest",
    "save_safetensors",
    "structured_table",
    "write_cohort",
    "write_cohort_manifest",
    "write_marker",
    "write_modality",
    "write_samples",
]
