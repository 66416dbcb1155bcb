"""ADNI (Alzheimer's Disease Neuroimaging Initiative) from its merged longitudinal table ADNIMERGE.

Relational work is in ``sql/adni/``; this module lists the columns with their types, declares the rules the rows
must satisfy (the visit key, the DX spellings and censored CSF values the SQL parses; cohort/rules.py checks
them) and reads the export date. Layout: ``--raw ROOT`` holding
``ADNIMERGE.csv`` (or ``.csv.gz``); the LONI download's dated name ``ADNIMERGE_<date>.csv`` is found too (the
newest by name when several are there). One row per visit (RID + VISCODE); the subject is RID. Visit time is
EXAMDATE, a real calendar date. Schema: ADNIMERGE's 116 columns (``simulate/adni.py`` lists them; selected here
by name, so the column order of an export does not matter). Missing values are empty fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from medmodal.cohort.base import SOURCES, FileSpec, ModalitySpec, Source
from medmodal.cohort.runner import resolve_file
from medmodal.common import MedmodalError

BIG, DBL, S, D = "BIGINT", "DOUBLE", "VARCHAR", "DATE"

# Accepted DX spellings -> class. Recent exports write CN / MCI / Dementia; older ones (and TADPOLE) write NL and
# transitions such as 'MCI to Dementia', whose current state is the part after 'to'.
DX_VALUES = {
    "CN": "CN",
    "NL": "CN",
    "MCI to NL": "CN",
    "Dementia to NL": "CN",
    "MCI": "MCI",
    "NL to MCI": "MCI",
    "Dementia to MCI": "MCI",
    "Dementia": "Dementia",
    "AD": "Dementia",
    "MCI to Dementia": "Dementia",
    "NL to Dementia": "Dementia",
}
_CSF = r"[<>]?\s*[0-9]+(\.[0-9]+)?"
ADNIMERGE = FileSpec(
    "adnimerge",
    "adni",
    "ADNIMERGE",
    {
        "RID": BIG,
        "COLPROT": S,
        "PTID": S,
        "VISCODE": S,
        "EXAMDATE": D,
        "DX_bl": S,
        "AGE": DBL,
        "PTGENDER": S,
        "PTEDUCAT": DBL,
        "PTETHCAT": S,
        "PTRACCAT": S,
        "PTMARRY": S,
        "APOE4": DBL,
        "FDG": DBL,
        "PIB": DBL,
        "AV45": DBL,
        "FBB": DBL,
        "ABETA": S,
        "TAU": S,
        "PTAU": S,
        "FLDSTRENG": S,
        "Ventricles": DBL,
        "Hippocampus": DBL,
        "WholeBrain": DBL,
        "Entorhinal": DBL,
        "Fusiform": DBL,
        "MidTemp": DBL,
        "ICV": DBL,
        "DX": S,
        "EXAMDATE_bl": D,
        "Years_bl": DBL,
        "update_stamp": S,
    },
    # Cognitive scores (MMSE, ADAS, CDR-SB, ...) are deliberately not listed: they define DX (docs/tasks.md).
    required=(
        "RID",
        "VISCODE",
        "EXAMDATE",
        "AGE",
        "PTGENDER",
        "PTEDUCAT",
        "APOE4",
        "FDG",
        "AV45",
        "ABETA",
        "TAU",
        "PTAU",
        "Ventricles",
        "Hippocampus",
        "WholeBrain",
        "Entorhinal",
        "Fusiform",
        "MidTemp",
        "ICV",
        "DX",
    ),
    key=("RID", "VISCODE"),
    allowed={"DX": tuple(DX_VALUES)},
    ranges={"AGE": (0, 130), "PTEDUCAT": (0, 40), "APOE4": (0, 2)},
    # CSF assays are numbers or detection bounds of the Elecsys / AlzBio3 ranges, e.g. ">1700", "<80"
    patterns=dict.fromkeys(("ABETA", "TAU", "PTAU"), (_CSF, "a number or a detection bound such as '>1700' / '<200'")),
)

_DATED = re.compile(r"^ADNIMERGE_[^/]+$")
_DATE_IN_NAME = re.compile(r"ADNIMERGE_([0-9]{1,2}[A-Za-z]{3}[0-9]{4}|[0-9]{4}-?[0-9]{2}-?[0-9]{2})")


@SOURCES.register("adni")
class ADNI(Source):
    name = "adni"
    description = "ADNI ADNIMERGE (visits; MRI, FDG / amyloid PET, CSF, demographics + APOE4)"
    files = (ADNIMERGE,)
    modalities = (
        ModalitySpec("demographics", "structured", needs=("adnimerge",)),
        ModalitySpec("mri", "structured", needs=("adnimerge",)),
        ModalitySpec("fdg_pet", "structured", needs=("adnimerge",)),
        ModalitySpec("amyloid_pet", "structured", needs=("adnimerge",)),
        ModalitySpec("csf", "structured", needs=("adnimerge",)),
    )
    subgroups = ("gender", "age_group", "race", "apoe4")
    population_view = "visits"
    before_task_sql = ("macros", "visits")
    after_task_sql = (
        "modality_visit",
        "structured_feature_list",
        "structured_features",
        "modality_last",
    )  # no timeseries_out / notes_out / images_out: visits are months apart (the longitudinal signal is in the
    # per-visit samples), ADNIMERGE has no free text, and MRI / PET enter as the derived measures it carries (the
    # scans are separate LONI downloads); the builder writes those tables empty

    def roots(self, raw: Path, given: Mapping[str, Path]) -> dict[str, Path]:
        """ROOT itself; a dated LONI export is used when no plain ADNIMERGE.csv(.gz) is there."""
        raw = Path(raw)
        if resolve_file(raw, ADNIMERGE.stem) is None and raw.is_dir():
            dated = sorted(p for p in raw.glob("ADNIMERGE_*.csv*") if p.name.endswith((".csv", ".csv.gz")))
            if dated:
                stem = dated[-1].name.removesuffix(".gz").removesuffix(".csv")
                if _DATED.match(stem):
                    self.files = (replace(ADNIMERGE, stem=stem),)
        return {"adni": raw}

    def check_version(self, version: str) -> None:
        """ADNIMERGE has no release numbers; an override must name an export the way detect_version does."""
        if not re.fullmatch(r"ADNIMERGE \S+", version):
            raise MedmodalError(
                f"unknown adni release {version!r} (known: 'ADNIMERGE <export date>', e.g. 'ADNIMERGE 18Feb2025')",
                field="--dataset-version",
            )

    def detect_version(self, con: Any, raw: Path) -> tuple[str, str]:
        """ADNIMERGE has no release number: the export date in the file name, else the newest update_stamp."""
        name = self.files[0].stem
        m = _DATE_IN_NAME.search(name)
        if m:
            return f"ADNIMERGE {m.group(1)}", f"file name '{name}'"
        stamp = con.execute("SELECT max(update_stamp) FROM adnimerge").fetchone()[0]
        if stamp:
            return f"ADNIMERGE {str(stamp)[:10]}", f"newest update_stamp {stamp}"
        return "unknown", "no export date in the file name and no update_stamp values"
