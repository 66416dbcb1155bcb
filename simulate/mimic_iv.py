"""Simulated MIMIC-IV v2.2 or v3.1 (+ MIMIC-IV-Note, + MIMIC-CXR-JPG): hosp/, icu/, note/, cxr/ and truth.parquet.

The v3.1 layout differs from v2.2's where a release detector or a dictionary check can see it: v3.0 added the
admissions of 2020-2022, so a fifth of the subjects get anchor_year_group '2020 - 2022'. Its d_labitems /
d_items rows for the simulated items are v2.2's: v3.1 kept those itemids and labels (v3.0's renumbering of some
lab items was undone in v3.1; docs/cohort.md, "Before you build"). The year groups are redrawn from their own
stream, so a v3.1 world differs from the v2.2 world of the same seed only in them and in what follows from them
(ICD-9 vs ICD-10 codes).

Subjects are generated in fixed-size chunks; each chunk draws from its own named random streams
(population, labs, charts, notes, pixels), so outputs depend only on (seed, environment, subjects, strengths)
and switching images off leaves every other file byte-identical. Memory is bounded by one chunk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from medmodal.common import MedmodalError
from medmodal.simulate.base import SIMULATORS, SimConfig
from medmodal.simulate.mimic_density import DENSITIES, RELEASE_ICU_INTERCEPT
from medmodal.simulate.mimic_events import D_ITEMS_COLUMNS, EventWriter, d_items, d_labitems
from medmodal.simulate.mimic_modalities import (
    CXR_CHEXPERT_COLUMNS,
    CXR_METADATA_COLUMNS,
    CXR_SPLIT_COLUMNS,
    NOTE_COLUMNS,
    ModalityWriter,
)
from medmodal.simulate.mimic_population import ICU_INTERCEPT, KINDS, YEAR_GROUPS, Population, draw_population
from medmodal.simulate.scm import World, sigmoid, stream
from medmodal.simulate.text import DIAGNOSES
from medmodal.simulate.writer import HOUR, Writers, dt, nullable, pick

CHUNK_SUBJECTS = 1000
RELEASES = ("2.2", "3.1")  # release layouts this simulator writes; the first is the default
YEAR_GROUPS_V3 = (*YEAR_GROUPS, "2020 - 2022")

SCHEMAS: dict[str, tuple[str, ...]] = {
    "hosp/patients.csv.gz": ("subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"),
    "hosp/admissions.csv.gz": (
        "subject_id",
        "hadm_id",
        "admittime",
        "dischtime",
        "deathtime",
        "admission_type",
        "admit_provider_id",
        "admission_location",
        "discharge_location",
        "insurance",
        "language",
        "marital_status",
        "race",
        "edregtime",
        "edouttime",
        "hospital_expire_flag",
    ),
    "hosp/transfers.csv.gz": ("subject_id", "hadm_id", "transfer_id", "eventtype", "careunit", "intime", "outtime"),
    "hosp/services.csv.gz": ("subject_id", "hadm_id", "transfertime", "prev_service", "curr_service"),
    "hosp/diagnoses_icd.csv.gz": ("subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"),
    "hosp/d_icd_diagnoses.csv.gz": ("icd_code", "icd_version", "long_title"),
    "hosp/labevents.csv.gz": (
        "labevent_id",
        "subject_id",
        "hadm_id",
        "specimen_id",
        "itemid",
        "order_provider_id",
        "charttime",
        "storetime",
        "value",
        "valuenum",
        "valueuom",
        "ref_range_lower",
        "ref_range_upper",
        "flag",
        "priority",
        "comments",
    ),
    "hosp/d_labitems.csv.gz": ("itemid", "label", "fluid", "category"),
    "icu/icustays.csv.gz": (
        "subject_id",
        "hadm_id",
        "stay_id",
        "first_careunit",
        "last_careunit",
        "intime",
        "outtime",
        "los",
    ),
    "icu/chartevents.csv.gz": (
        "subject_id",
        "hadm_id",
        "stay_id",
        "caregiver_id",
        "charttime",
        "storetime",
        "itemid",
        "value",
        "valuenum",
        "valueuom",
        "warning",
    ),
    "icu/d_items.csv.gz": D_ITEMS_COLUMNS,
    "note/discharge.csv.gz": NOTE_COLUMNS,
    "note/radiology.csv.gz": NOTE_COLUMNS,
    "cxr/mimic-cxr-2.0.0-metadata.csv.gz": CXR_METADATA_COLUMNS,
    "cxr/mimic-cxr-2.0.0-split.csv.gz": CXR_SPLIT_COLUMNS,
    "cxr/mimic-cxr-2.0.0-chexpert.csv.gz": CXR_CHEXPERT_COLUMNS,
}
SERVICES = ("MED", "SURG", "CMED", "NMED", "TRAUM", "CSURG", "ORTHO")
ADMIT_PROVIDERS = tuple(f"P{i:02d}{chr(65 + i % 26)}{chr(75 + i % 13)}{i % 10}" for i in range(60))


def _patients(pop: Population) -> pl.DataFrame:
    s = pop.subj
    dod = dt("dod", np.maximum(s["dod"], 0), s["dod"] >= 0).cast(pl.Date)
    return pl.DataFrame(
        [
            pl.Series("subject_id", s["subject_id"]),
            pl.Series("gender", s["gender"], dtype=pl.Utf8),
            pl.Series("anchor_age", s["anchor_age"]),
            pl.Series("anchor_year", s["anchor_year"]),
            pl.Series("anchor_year_group", s["anchor_year_group"], dtype=pl.Utf8),
            dod,
        ]
    )


def _admissions(rng: np.random.Generator, pop: Population) -> pl.DataFrame:
    a = pop.adm
    m = len(a["sub"])
    marital = np.where(a["marital_status"] == "", None, a["marital_status"])
    return pl.DataFrame(
        [
            pl.Series("subject_id", a["subject_id"]),
            pl.Series("hadm_id", a["hadm_id"]),
            dt("admittime", a["admittime"]),
            dt("dischtime", a["dischtime"]),
            dt("deathtime", a["deathtime"], a["died"]),
            pl.Series("admission_type", a["admission_type"], dtype=pl.Utf8),
            pl.Series(
                "admit_provider_id",
                np.asarray(ADMIT_PROVIDERS, dtype=object)[rng.integers(0, len(ADMIT_PROVIDERS), m)],
                dtype=pl.Utf8,
            ),
            pl.Series("admission_location", a["admission_location"], dtype=pl.Utf8),
            pl.Series("discharge_location", a["discharge_location"], dtype=pl.Utf8),
            pl.Series("insurance", a["insurance"], dtype=pl.Utf8),
            pl.Series("language", a["language"], dtype=pl.Utf8),
            pl.Series("marital_status", marital.tolist(), dtype=pl.Utf8),
            pl.Series("race", a["race"], dtype=pl.Utf8),
            dt("edregtime", a["edregtime"], a["has_ed"]),
            dt("edouttime", a["edouttime"], a["has_ed"]),
            pl.Series("hospital_expire_flag", a["died"].astype(np.int64)),
        ]
    )


def _transfers(pop: Population, next_id: int) -> pl.DataFrame:
    """ADT events: ED, admit to a ward, ICU transfer, back to a ward, discharge (careunit null, no outtime)."""
    a = pop.adm
    m = len(a["sub"])
    icu = a["icu"]
    direct = icu & (a["intime"] - a["admittime"] < 2 * HOUR)  # straight from the ED to the ICU
    via_ward = icu & ~direct
    back = icu & (a["outtime"] < a["dischtime"])  # survived the ICU: a ward until discharge
    first_unit = np.where(direct, a["first_careunit"], a["ward_unit"])
    first_out = np.where(direct, a["outtime"], np.where(via_ward, a["intime"], a["dischtime"]))
    everyone = np.ones(m, bool)
    parts = [  # (who, eventtype, careunit, intime, outtime, has outtime)
        (a["has_ed"], "ED", np.full(m, "Emergency Department", dtype=object), a["edregtime"], a["admittime"], True),
        (everyone, "admit", first_unit, a["admittime"], first_out, True),
        (via_ward, "transfer", a["first_careunit"], a["intime"], a["outtime"], True),
        (back, "transfer", a["ward_unit"], a["outtime"], a["dischtime"], True),
        (everyone, "discharge", np.full(m, None, dtype=object), a["dischtime"], a["dischtime"], False),
    ]
    frames = []
    for order, (mask, event, unit, tin, tout, has_out) in enumerate(parts):
        idx = np.flatnonzero(mask)
        frames.append(
            pl.DataFrame(
                [
                    pl.Series("subject_id", a["subject_id"][idx]),
                    pl.Series("hadm_id", a["hadm_id"][idx]),
                    pl.Series("eventtype", [event] * len(idx), dtype=pl.Utf8),
                    pl.Series("careunit", unit[idx].tolist(), dtype=pl.Utf8),
                    dt("intime", tin[idx]),
                    dt("outtime", tout[idx], np.full(len(idx), has_out)),
                    pl.Series("_order", np.full(len(idx), order)),
                ]
            )
        )
    df = pl.concat(frames).sort(["subject_id", "intime", "_order"])
    return df.with_columns(pl.Series("transfer_id", next_id + np.arange(df.height))).drop("_order")


def _diagnoses(rng: np.random.Generator, pop: Population) -> tuple[pl.DataFrame, list[tuple[str, ...]]]:
    """ICD codes per admission: acute and critical codes follow U; ICD-9 before the (shifted) 2015 switch."""
    a = pop.adm
    m = len(a["sub"])
    acuity = np.array([d[4] for d in DIAGNOSES])
    base = np.array(
        [
            -1.0,
            -1.6,
            -1.2,
            -1.8,
            -2.0,
            -2.2,
            -2.3,
            -2.3,
            -1.9,
            -2.2,
            -2.0,
            -2.2,
            -2.4,
            -2.8,
            -3.0,
            -2.8,
            -2.6,
            -3.6,
            -3.0,
            -4.0,
        ]
    )
    slope = np.where(acuity == 0, 0.3, np.where(acuity == 1, 0.9, 1.3))
    logit = (
        base[None, :] + slope[None, :] * a["u"][:, None] + np.where(acuity == 2, 1.0, 0.0)[None, :] * a["icu"][:, None]
    )
    has = rng.random((m, len(DIAGNOSES))) < sigmoid(logit)
    has[~has.any(axis=1), 0] = True
    rows, codes = np.nonzero(has)
    order = np.lexsort((codes, -acuity[codes], rows))
    rows, codes = rows[order], codes[order]
    seq = np.arange(len(rows)) - np.searchsorted(rows, rows)
    sub = a["sub"][rows]
    icd9 = np.isin(pop.subj["anchor_year_group"][sub], ("2008 - 2010", "2011 - 2013"))
    code = np.where(icd9, np.array([d[0] for d in DIAGNOSES])[codes], np.array([d[1] for d in DIAGNOSES])[codes])
    problems: list[list[str]] = [[] for _ in range(m)]
    for r, cidx in zip(rows, codes):
        problems[r].append(DIAGNOSES[cidx][3])
    df = pl.DataFrame(
        [
            pl.Series("subject_id", a["subject_id"][rows]),
            pl.Series("hadm_id", a["hadm_id"][rows]),
            pl.Series("seq_num", seq + 1),
            pl.Series("icd_code", code, dtype=pl.Utf8),
            pl.Series("icd_version", np.where(icd9, 9, 10)),
        ]
    )
    return df, [tuple(p) for p in problems]


def _icustays(pop: Population) -> pl.DataFrame:
    a = pop.adm
    idx = np.flatnonzero(a["icu"])
    return pl.DataFrame(
        [
            pl.Series("subject_id", a["subject_id"][idx]),
            pl.Series("hadm_id", a["hadm_id"][idx]),
            pl.Series("stay_id", a["stay_id"][idx]),
            pl.Series("first_careunit", a["first_careunit"][idx], dtype=pl.Utf8),
            pl.Series("last_careunit", a["last_careunit"][idx], dtype=pl.Utf8),
            dt("intime", a["intime"][idx]),
            dt("outtime", a["outtime"][idx]),
            pl.Series("los", (a["outtime"][idx] - a["intime"][idx]) / 86400.0),
        ]
    )


def _truth(world: World, pop: Population, counts: dict[str, np.ndarray]) -> pl.DataFrame:
    """One row per admission: ids, U, C, every outcome's causal risk / mechanism probability / draw, propensities."""
    a = pop.adm
    index = a["kind"] == 0
    cols = [
        pl.Series("subject_id", a["subject_id"]),
        pl.Series("hadm_id", a["hadm_id"]),
        nullable("stay_id", a["stay_id"], a["icu"]),
        pl.Series("encounter_kind", np.asarray(KINDS, dtype=object)[a["kind"]], dtype=pl.Utf8),
        pl.Series("U", a["u"]),
        pl.Series("C", a["c"].astype(np.int8)),
    ]
    for outcome in ("readmission_30d", "icu_admission_90d"):
        cols += [
            nullable(f"risk_{outcome}", a[f"risk_{outcome}"], index, pl.Float64),
            nullable(f"prob_{outcome}", a[f"prob_{outcome}"], index, pl.Float64),
            nullable(f"y_{outcome}", a[f"y_{outcome}"].astype(np.int8), index & ~a["died"], pl.Int8),
        ]
    cols += [
        nullable("risk_in_hospital_mortality", a["risk_in_hospital_mortality"], a["icu"], pl.Float64),
        nullable("prob_in_hospital_mortality", a["prob_in_hospital_mortality"], a["icu"], pl.Float64),
        pl.Series("y_in_hospital_mortality", a["died"].astype(np.int8)),
    ]
    for mod in ("discharge_note", "radiology_note", "cxr"):
        cols.append(pl.Series(f"prop_{mod}", a[f"prop_{mod}"]))
    cols += [
        pl.Series("order_discharge_note", a["order_discharge_note"]),
        pl.Series("order_cxr", a["order_cxr"]),
        pl.Series("order_other_imaging", a["order_other_imaging"]),
        pl.Series("n_cxr_studies", counts["n_cxr_studies"]),
        pl.Series("n_radiology_notes", counts["n_radiology_notes"]),
        pl.Series("environment", [world.environment.name] * len(a["sub"]), dtype=pl.Utf8),
    ]
    return pl.DataFrame(cols)


@SIMULATORS.register("mimic_iv")
def simulate_mimic_iv(out: Path, cfg: SimConfig, progress) -> dict:
    if cfg.release not in RELEASES:
        raise MedmodalError(f"mimic_iv simulates releases {', '.join(RELEASES)}, not '{cfg.release}'")
    if cfg.density not in DENSITIES:
        raise MedmodalError(f"mimic_iv simulates densities {', '.join(DENSITIES)}, not '{cfg.density}'")
    world = cfg.world
    with Writers(out, SCHEMAS) as writers:
        release_density = cfg.density == "release"
        writers.write("hosp/d_labitems.csv.gz", d_labitems(cfg.density))
        writers.write("icu/d_items.csv.gz", d_items(cfg.density))
        writers.write(
            "hosp/d_icd_diagnoses.csv.gz",
            pl.DataFrame(
                {
                    "icd_code": [d[v] for d in DIAGNOSES for v in (0, 1)],
                    "icd_version": [9, 10] * len(DIAGNOSES),
                    "long_title": [d[2] for d in DIAGNOSES for _ in (0, 1)],
                }
            ),
        )
        events = EventWriter(world, cfg.density)
        icu_intercept = RELEASE_ICU_INTERCEPT if release_density else ICU_INTERCEPT
        modal = ModalityWriter(world, out, writers, images=cfg.images, image_size=cfg.image_size)
        next_transfer = 400_000_000 + world.environment.index * 50_000_000
        truth = []
        env = world.environment.name
        for chunk, k0 in enumerate(range(0, cfg.subjects, CHUNK_SUBJECTS)):
            k = np.arange(k0, min(k0 + CHUNK_SUBJECTS, cfg.subjects))
            named = lambda part: stream(cfg.seed, "mimic_iv", env, part, chunk)  # noqa: E731
            pop = draw_population(world, named("population"), k, icu_intercept)
            if cfg.release == "3.1":  # before anything that reads the year group (ICD-9 vs ICD-10 below)
                groups = pick(named("release"), YEAR_GROUPS_V3, (0.2,) * len(YEAR_GROUPS_V3), len(k))
                pop.subj["anchor_year_group"] = groups
            adm_rng = named("tables")
            writers.write("hosp/patients.csv.gz", _patients(pop))
            writers.write("hosp/admissions.csv.gz", _admissions(adm_rng, pop))
            tr = _transfers(pop, next_transfer)
            next_transfer += tr.height
            writers.write("hosp/transfers.csv.gz", tr)
            service = np.asarray(SERVICES, dtype=object)[
                adm_rng.choice(len(SERVICES), len(pop.adm["sub"]), p=(0.55, 0.15, 0.12, 0.06, 0.05, 0.04, 0.03))
            ]
            writers.write(
                "hosp/services.csv.gz",
                pl.DataFrame(
                    [
                        pl.Series("subject_id", pop.adm["subject_id"]),
                        pl.Series("hadm_id", pop.adm["hadm_id"]),
                        dt("transfertime", pop.adm["admittime"]),
                        pl.Series("prev_service", [None] * len(service), dtype=pl.Utf8),
                        pl.Series("curr_service", service, dtype=pl.Utf8),
                    ]
                ),
            )
            diag, problems = _diagnoses(adm_rng, pop)
            writers.write("hosp/diagnoses_icd.csv.gz", diag)
            writers.write("icu/icustays.csv.gz", _icustays(pop))
            extra = (named("extra_labs"), named("extra_charts")) if release_density else (None, None)
            labs, lab_summary = events.labevents(named("labs"), pop, extra[0])
            writers.write("hosp/labevents.csv.gz", labs)
            del labs
            writers.write("icu/chartevents.csv.gz", events.chartevents(named("charts"), pop, extra[1]))
            counts = modal.write_chunk(named("notes"), named("pixels"), pop, lab_summary, problems, service)
            truth.append(_truth(world, pop, counts))
            progress(len(k))
        rows = writers.close()
        pl.concat(truth).write_parquet(out / "truth.parquet")
    return rows


simulate_mimic_iv.releases = RELEASES  # read by simulate() to check --release
simulate_mimic_iv.densities = DENSITIES  # read by simulate() to check --density
