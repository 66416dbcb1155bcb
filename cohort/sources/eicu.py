"""eICU Collaborative Research Database (v2.0, and its demo v2.0.1): ICU unit stays from 208 US hospitals.

Relational work is in ``sql/eicu/``; this module lists the files with their types, declares the rules the rows
must satisfy (the stay key, the ``age`` text the SQL parses, a unit discharge not before admission; checked by
cohort/rules.py) and detects the release. Layout (PhysioNet's): every table is one file in ROOT
(``patient.csv.gz``, ``lab.csv.gz``, ...). The unit of a sample is a unit stay (``patientunitstayid``); the
subject is ``uniquepid``, a string such as ``002-34851``.

eICU has no calendar: every event is a minute offset from the unit admission of its stay. The synthetic clock
that turns offsets into the contract's timestamps is defined in ``sql/eicu/macros.sql`` and docs/tasks.md.

``lab`` and ``vitalPeriodic`` are optional because the open eICU-CRD demo 2.0.1 lacks them;
without them the ``labs`` modality is marked missing and ``vitals`` comes from ``vitalAperiodic`` alone, both
printed and recorded in the manifest (``absent_files``). ``nurseCharting`` is not used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medmodal.cohort.base import SOURCES, FileSpec, ModalitySpec, Source

BIG, INT, DBL, S, TIME = "BIGINT", "INTEGER", "DOUBLE", "VARCHAR", "TIME"

FILES = (
    FileSpec(
        "patient",
        "eicu",
        "patient",
        {
            "patientunitstayid": BIG,
            "patienthealthsystemstayid": BIG,
            "uniquepid": S,
            "gender": S,
            "age": S,
            "ethnicity": S,
            "hospitalid": BIG,
            "wardid": BIG,
            "admissionheight": DBL,
            "admissionweight": DBL,
            "hospitaladmittime24": TIME,
            "hospitaladmitoffset": BIG,
            "hospitaladmitsource": S,
            "hospitaldischargeyear": INT,
            "hospitaldischargeoffset": BIG,
            "hospitaldischargelocation": S,
            "hospitaldischargestatus": S,
            "unittype": S,
            "unitadmittime24": TIME,
            "unitadmitsource": S,
            "unitvisitnumber": INT,
            "unitstaytype": S,
            "unitdischargeoffset": BIG,
            "unitdischargelocation": S,
            "unitdischargestatus": S,
        },
        required=(
            "patientunitstayid",
            "patienthealthsystemstayid",
            "uniquepid",
            "gender",
            "age",
            "ethnicity",
            "hospitaladmitoffset",
            "hospitaldischargeyear",
            "hospitaldischargeoffset",
            "hospitaldischargestatus",
            "unittype",
            "unitvisitnumber",
            "unitdischargeoffset",
            "unitdischargelocation",
            "unitdischargestatus",
        ),
        key=("patientunitstayid",),
        not_null=("uniquepid",),
        # eICU writes ages of 90 and over as "> 89" (de-identification); the SQL parses the rest as whole years
        patterns={"age": (r"> 89|[0-9]{1,2}", "whole years below 90, '> 89' or empty")},
        # a unit stay ends at or after its own admission (minute 0 of its clock)
        ordered=(("0", "unitdischargeoffset"),),
    ),
    FileSpec(
        "lab",
        "eicu",
        "lab",
        {
            "labid": BIG,
            "patientunitstayid": BIG,
            "labresultoffset": BIG,
            "labtypeid": INT,
            "labname": S,
            "labresult": DBL,
            "labresulttext": S,
            "labresultrevisedoffset": BIG,
        },
        required=("patientunitstayid", "labresultoffset", "labname", "labresult"),
        optional=True,
    ),
    FileSpec(
        "vitalperiodic",
        "eicu",
        "vitalPeriodic",
        {
            "vitalperiodicid": BIG,
            "patientunitstayid": BIG,
            "observationoffset": BIG,
            "temperature": DBL,
            "sao2": DBL,
            "heartrate": DBL,
            "respiration": DBL,
            "cvp": DBL,
            "etco2": DBL,
            "systemicsystolic": DBL,
            "systemicdiastolic": DBL,
            "systemicmean": DBL,
        },
        required=("patientunitstayid", "observationoffset", "heartrate", "respiration", "sao2"),
        optional=True,
    ),
    FileSpec(
        "vitalaperiodic",
        "eicu",
        "vitalAperiodic",
        {
            "vitalaperiodicid": BIG,
            "patientunitstayid": BIG,
            "observationoffset": BIG,
            "noninvasivesystolic": DBL,
            "noninvasivediastolic": DBL,
            "noninvasivemean": DBL,
        },
        required=(
            "patientunitstayid",
            "observationoffset",
            "noninvasivesystolic",
            "noninvasivediastolic",
            "noninvasivemean",
        ),
    ),
    FileSpec(
        "apacheapsvar",
        "eicu",
        "apacheApsVar",
        {
            "apacheapsvarid": BIG,
            "patientunitstayid": BIG,
            "intubated": INT,
            "vent": INT,
            "dialysis": INT,
            "eyes": INT,
            "motor": INT,
            "verbal": INT,
            "meds": INT,
            "urine": DBL,
            "wbc": DBL,
            "temperature": DBL,
            "respiratoryrate": DBL,
            "sodium": DBL,
            "heartrate": DBL,
            "meanbp": DBL,
            "ph": DBL,
            "hematocrit": DBL,
            "creatinine": DBL,
            "albumin": DBL,
            "pao2": DBL,
            "pco2": DBL,
            "bun": DBL,
            "glucose": DBL,
            "bilirubin": DBL,
            "fio2": DBL,
        },
        required=(
            "patientunitstayid",
            "intubated",
            "vent",
            "dialysis",
            "eyes",
            "motor",
            "verbal",
            "meds",
            "urine",
            "wbc",
            "temperature",
            "respiratoryrate",
            "sodium",
            "heartrate",
            "meanbp",
            "ph",
            "hematocrit",
            "creatinine",
            "albumin",
            "pao2",
            "pco2",
            "bun",
            "glucose",
            "bilirubin",
            "fio2",
        ),
    ),
    FileSpec(
        "diagnosis",
        "eicu",
        "diagnosis",
        {
            "diagnosisid": BIG,
            "patientunitstayid": BIG,
            "activeupondischarge": S,
            "diagnosisoffset": BIG,
            "diagnosisstring": S,
            "icd9code": S,
            "diagnosispriority": S,
        },
        required=("patientunitstayid", "diagnosisoffset", "diagnosisstring"),
    ),
    FileSpec(
        "treatment",
        "eicu",
        "treatment",
        {
            "treatmentid": BIG,
            "patientunitstayid": BIG,
            "treatmentoffset": BIG,
            "treatmentstring": S,
            "activeupondischarge": S,
        },
        required=("patientunitstayid", "treatmentoffset", "treatmentstring"),
    ),
    FileSpec(
        "admissiondx",
        "eicu",
        "admissionDx",
        {
            "admissiondxid": BIG,
            "patientunitstayid": BIG,
            "admitdxenteredoffset": BIG,
            "admitdxpath": S,
            "admitdxname": S,
            "admitdxtext": S,
        },
        required=("patientunitstayid", "admitdxenteredoffset", "admitdxpath"),
    ),
)

DEMO_STAYS = 2520  # patient.csv rows of eICU-CRD Demo v2.0.1 (the full v2.0 has 200,859)
_VERSION_IN_NAME = re.compile(r"(?:^|[^0-9.])(2\.0(?:\.[0-9])?)$")


@SOURCES.register("eicu")
class EICU(Source):
    name = "eicu"
    description = "eICU-CRD v2.0 / demo v2.0.1 (unit stays; minute offsets on a synthetic clock)"
    files = FILES
    modalities = (
        ModalitySpec("demographics", "structured", needs=("patient",)),
        ModalitySpec("labs", "structured", needs=("lab",)),
        ModalitySpec("vitals", "timeseries", needs=("vitalperiodic", "vitalaperiodic")),
        ModalitySpec("apache", "structured", needs=("apacheapsvar",)),
        ModalitySpec("codes", "structured", needs=("diagnosis", "treatment", "admissiondx")),
    )
    subgroups = ("gender", "ethnicity", "age_group", "unit_type")
    population_view = "stays"
    known_versions = ("2.0", "demo-2.0.1")
    before_task_sql = ("macros", "variable_map", "stays", "unit_stay_samples")
    shared_sql = ("measurement_events",)  # lab + vitalPeriodic + vitalAperiodic: parsed once under --task all
    after_task_sql = (
        "measurements",
        "apache_values",
        "code_events",
        "structured_feature_list",
        "structured_features",
        "timeseries_out",
        "modality_last",
    )  # no notes_out / images_out: eICU's note table holds structured note fields (notepath / notevalue), not free
    # text, and eICU has no images; the builder writes those tables empty

    def roots(self, raw: Path, given: Mapping[str, Path]) -> dict[str, Path]:
        return {"eicu": Path(raw)}

    def detect_version(self, con: Any, raw: Path) -> tuple[str, str]:
        """From the folder name PhysioNet gives the download (eicu-crd/2.0, eicu-crd-demo-2.0.1), else the size."""
        for part in (Path(raw).resolve().name, Path(raw).resolve().parent.name):
            m = _VERSION_IN_NAME.search(part)
            if m:
                version = ("demo-" if "demo" in part.lower() else "") + m.group(1)
                return version, f"folder name '{part}'"
        n = con.execute("SELECT count(*) FROM patient").fetchone()[0]
        if n == DEMO_STAYS:
            return "demo-2.0.1", f"{n} unit stays, the size of the demo"
        return "2.0", f"{n} unit stays (not the demo's {DEMO_STAYS}); assuming the v2.0 layout"
