"""MIMIC-IV (hosp + icu), with MIMIC-IV-Note (discharge, radiology) and MIMIC-CXR-JPG / MIMIC-CXR as optional
modules. Relational work is in ``sql/mimic_iv/``; this module lists the files with their types, finds the
module roots and detects the release.

Layout (PhysioNet's): ROOT/hosp/*.csv.gz, ROOT/icu/*.csv.gz, ROOT/note/{discharge,radiology}.csv.gz,
ROOT/cxr/mimic-cxr-2.0.0-metadata.csv.gz + ROOT/cxr/files/pXX/pSUBJECT/sSTUDY/DICOM.jpg|.dcm. The ``note`` and
``cxr`` extra roots (``--note-root`` / ``--cxr-root``) point elsewhere when the modules were downloaded apart (a
note root that holds a ``note/`` folder, as the MIMIC-IV-Note download does, is accepted too).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from medmodal.cohort.base import SOURCES, FileSpec, ModalitySpec, Source
from medmodal.cohort.runner import resolve_file

T, BIG, INT, DBL, S, D = "TIMESTAMP", "BIGINT", "INTEGER", "DOUBLE", "VARCHAR", "DATE"

_NOTE_COLUMNS = {
    "note_id": S,
    "subject_id": BIG,
    "hadm_id": BIG,
    "note_type": S,
    "note_seq": INT,
    "charttime": T,
    "storetime": T,
    "text": S,
}
_NOTE_REQUIRED = ("note_id", "subject_id", "hadm_id", "charttime", "text")
# hadm_id may be NULL (radiology reports of outpatient or ED films are attached by subject and time)
_NOTE_RULES = {"key": ("note_id",), "not_null": ("subject_id", "charttime")}

FILES = (
    FileSpec(
        "patients",
        "hosp",
        "patients",
        {"subject_id": BIG, "gender": S, "anchor_age": INT, "anchor_year": INT, "anchor_year_group": S, "dod": D},
        required=("subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group"),
        key=("subject_id",),
        ranges={"anchor_age": (0, 130), "anchor_year": (1800, 2500)},
    ),
    FileSpec(
        "admissions",
        "hosp",
        "admissions",
        {
            "subject_id": BIG,
            "hadm_id": BIG,
            "admittime": T,
            "dischtime": T,
            "deathtime": T,
            "admission_type": S,
            "admit_provider_id": S,
            "admission_location": S,
            "discharge_location": S,
            "insurance": S,
            "language": S,
            "marital_status": S,
            "race": S,
            "edregtime": T,
            "edouttime": T,
            "hospital_expire_flag": INT,
        },
        required=(
            "subject_id",
            "hadm_id",
            "admittime",
            "dischtime",
            "deathtime",
            "admission_type",
            "insurance",
            "race",
            "hospital_expire_flag",
        ),
        key=("hadm_id",),
        not_null=("subject_id", "hospital_expire_flag"),
        allowed={"hospital_expire_flag": (0, 1)},
        ordered=(("admittime", "dischtime"),),
    ),
    FileSpec(
        "icustays",
        "icu",
        "icustays",
        {
            "subject_id": BIG,
            "hadm_id": BIG,
            "stay_id": BIG,
            "first_careunit": S,
            "last_careunit": S,
            "intime": T,
            "outtime": T,
            "los": DBL,
        },
        required=("subject_id", "hadm_id", "stay_id", "intime", "outtime"),
        key=("stay_id",),
        not_null=("subject_id", "hadm_id"),
        ordered=(("intime", "outtime"),),
    ),
    FileSpec(
        "labevents",
        "hosp",
        "labevents",
        {
            "labevent_id": BIG,
            "subject_id": BIG,
            "hadm_id": BIG,
            "specimen_id": BIG,
            "itemid": INT,
            "charttime": T,
            "valuenum": DBL,
            "valueuom": S,
        },
        required=("subject_id", "itemid", "charttime", "valuenum"),
    ),
    FileSpec(
        "chartevents",
        "icu",
        "chartevents",
        {
            "subject_id": BIG,
            "hadm_id": BIG,
            "stay_id": BIG,
            "charttime": T,
            "itemid": INT,
            "valuenum": DBL,
            "valueuom": S,
        },
        required=("subject_id", "charttime", "itemid", "valuenum"),
    ),
    FileSpec("discharge", "note", "discharge", _NOTE_COLUMNS, _NOTE_REQUIRED, optional=True, **_NOTE_RULES),
    FileSpec("radiology", "note", "radiology", _NOTE_COLUMNS, _NOTE_REQUIRED, optional=True, **_NOTE_RULES),
    FileSpec(
        "cxr_metadata",
        "cxr",
        "mimic-cxr-2.0.0-metadata",
        {
            "dicom_id": S,
            "subject_id": BIG,
            "study_id": BIG,
            "PerformedProcedureStepDescription": S,
            "ViewPosition": S,
            "Rows": INT,
            "Columns": INT,
            "StudyDate": BIG,
            "StudyTime": DBL,
        },
        required=("dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate", "StudyTime"),
        optional=True,
        # dicom_id, subject_id and study_id become parts of the image path (files/pXX/pSUBJECT/sSTUDY/DICOM.jpg)
        key=("dicom_id",),
        not_null=("subject_id", "study_id"),
        patterns={"dicom_id": (r"[A-Za-z0-9][A-Za-z0-9._-]*", "a DICOM id (letters, digits, '.', '_', '-')")},
        ranges={"subject_id": (0, 1e15), "study_id": (0, 1e15)},
    ),
)

# Releases whose layout and itemids this source knows; the major selects rows of sql/mimic_iv/variable_map.sql.
KNOWN_VERSIONS = ("2.0", "2.1", "2.2", "3.0", "3.1")
_VERSION_IN_NAME = re.compile(r"(?:^|[^0-9.])([23]\.[0-9])$")


@SOURCES.register("mimic_iv")
class MimicIV(Source):
    name = "mimic_iv"
    description = "MIMIC-IV 2.2 / 3.1 (hosp, icu) + MIMIC-IV-Note + MIMIC-CXR-JPG"
    files = FILES
    modalities = (
        ModalitySpec("structured", "structured", needs=("labevents", "chartevents")),
        ModalitySpec("timeseries", "timeseries", needs=("labevents", "chartevents")),
        ModalitySpec("discharge_note", "text", needs=("discharge",)),
        ModalitySpec("radiology_note", "text", needs=("radiology",)),
        ModalitySpec("cxr", "image", needs=("cxr_metadata",)),
    )
    subgroups = ("gender", "race_group", "insurance", "age_group")
    population_view = "patients"
    known_versions = KNOWN_VERSIONS
    before_task_sql = ("macros", "variable_map", "admission_demographics", "icu_stay_samples")
    shared_sql = ("measurement_events",)
    after_task_sql = (
        "measurements",
        "structured_feature_list",
        "structured_features",
        "timeseries_out",
        "notes_out",
        "images_out",
        "modality_last",
    )

    extra_roots: ClassVar[Mapping[str, str]] = {
        "note": "MIMIC-IV-Note folder (default RAW/note)",
        "cxr": "MIMIC-CXR-JPG folder (default RAW/cxr)",
    }

    def roots(self, raw: Path, given: Mapping[str, Path]) -> dict[str, Path]:
        raw = Path(raw)
        note = Path(given.get("note") or raw / "note")
        if (
            resolve_file(note, "discharge") is None
            and resolve_file(note, "radiology") is None
            and (note / "note").is_dir()
        ):
            note = note / "note"  # the MIMIC-IV-Note download: <root>/note/discharge.csv.gz
        cxr = Path(given.get("cxr") or raw / "cxr")
        return {"hosp": raw / "hosp", "icu": raw / "icu", "note": note, "cxr": cxr}

    def detect_version(self, con: Any, raw: Path) -> tuple[str, str]:
        """The release from the folder name PhysioNet gives it, else from the data.

        PhysioNet downloads land in .../mimiciv/<version>/ (the demo in mimic-iv-demo-<version>). Without such a
        name: v3.0 added admissions of 2020-2022, visible as anchor_year_group '2020 - 2022' in patients.
        """
        for part in (Path(raw).resolve().name, Path(raw).resolve().parent.name):
            m = _VERSION_IN_NAME.search(part)
            if m and m.group(1) in KNOWN_VERSIONS:
                return m.group(1), f"folder name '{part}'"
        n_recent = con.execute("SELECT count(*) FROM patients WHERE anchor_year_group = '2020 - 2022'").fetchone()[0]
        if n_recent:
            return "3.1", f"{n_recent} patients with anchor_year_group '2020 - 2022' (added in v3.0)"
        return "2.2", "no anchor_year_group '2020 - 2022' (that group arrived in v3.0); assuming the v2.2 layout"

    def image_root(self, roots: dict[str, Path]) -> Path | None:
        return roots["cxr"].resolve()

    def extra_params(self, roots: dict[str, Path], version: str) -> dict[str, Any]:
        files = roots["cxr"].resolve() / "files"
        return {
            "dataset_major": int(version.split(".")[0]),
            "cxr_files_root": str(files),
            "cxr_files_glob": str(files / "p*" / "p*" / "s*" / "*"),
        }
