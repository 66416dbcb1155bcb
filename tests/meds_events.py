"""A small MEDS dataset (``meds.DataSchema``) from a MIMIC-IV download, for running ACES against medmodal in tests.

Not a MEDS ETL: only the events the ACES task configs in tests/data/aces/ need, with codes in the style of the
MIMIC-IV MEDS conversion (``HOSPITAL_ADMISSION//<admission_type>`` ...), so the same configs run on a real
MIMIC_IV_MEDS output too. MEDS_DEATH is the admission's deathtime (in-hospital deaths); out-of-hospital dates of
death (patients.dod, a date without a time) are left out, since a midnight time would fall before that day's
discharge and read as an in-hospital death.
"""

from __future__ import annotations

import json
from pathlib import Path

import meds
import polars as pl
import pyarrow.parquet as pq


def _read(raw: Path, name: str) -> pl.DataFrame:
    return pl.read_csv(raw / f"{name}.csv.gz", try_parse_dates=True, infer_schema_length=100_000)


def write_meds_dataset(raw: str | Path, out: str | Path) -> Path:
    """Write OUT/data/0.parquet and OUT/metadata/dataset.json from RAW/hosp and RAW/icu; return OUT."""
    raw, out = Path(raw), Path(out)
    pat, adm, icu = _read(raw, "hosp/patients"), _read(raw, "hosp/admissions"), _read(raw, "icu/icustays")

    def events(df: pl.DataFrame, time: str, code: pl.Expr) -> pl.DataFrame:
        return df.filter(pl.col(time).is_not_null()).select(
            pl.col("subject_id").cast(pl.Int64),
            pl.col(time).cast(pl.Datetime("us")).alias("time"),
            code.alias("code"),
        )

    birth = pat.with_columns(pl.datetime(pl.col("anchor_year") - pl.col("anchor_age"), 1, 1).alias("birth"))
    frames = [
        events(birth, "birth", pl.lit(meds.birth_code)),
        events(adm, "admittime", pl.lit("HOSPITAL_ADMISSION//") + pl.col("admission_type").fill_null("UNK")),
        events(adm, "dischtime", pl.lit("HOSPITAL_DISCHARGE//") + pl.col("discharge_location").fill_null("UNK")),
        events(adm, "deathtime", pl.lit(meds.death_code)),
        events(icu, "intime", pl.lit("ICU_ADMISSION//") + pl.col("first_careunit")),
        events(icu, "outtime", pl.lit("ICU_DISCHARGE//") + pl.col("last_careunit")),
    ]
    data = pl.concat(frames).sort("subject_id", "time", "code")
    (out / meds.data_subdirectory).mkdir(parents=True, exist_ok=True)
    (out / "metadata").mkdir(parents=True, exist_ok=True)
    pq.write_table(meds.DataSchema.align(data.to_arrow()), out / meds.data_subdirectory / "0.parquet")
    meta = {"dataset_name": "MIMIC-IV demo (events for tests)", "etl_name": "tests/meds_events.py"}
    (out / meds.dataset_metadata_filepath).write_text(json.dumps(meta | {"meds_version": meds.__version__}))
    return out
