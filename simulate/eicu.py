"""Simulated eICU-CRD v2.0: patient, hospital, lab, vitalPeriodic, vitalAperiodic, apache*, diagnosis, treatment,
admissionDx -- minute offsets from each unit admission, "> 89" ages, unit vs hospital discharge status.

The SCM of scm.py with eICU's meaning of C: the hospital system. C = 1 are large teaching hospitals, C = 0
community hospitals (hospital.teachingstatus / numbedscategory say which, so C is observable through
``hospitalid`` as well as through its marks: lab analyser offsets, pulse-oximeter offset, unit type mix).
Per health-system stay:

- the first unit stay is the index; ``icu_mortality`` (unitdischargestatus = 'Expired') is drawn from the SCM;
- a survivor is readmitted to an ICU within 15 days of unit discharge, inside the same hospital stay
  (unitvisitnumber 2, unitstaytype 'readmit'), iff ``icu_readmission_15d`` = 1, also from the SCM;
- a survivor may still die on the ward later: hospital 'Expired' with unit 'Alive'.

Missing not at random: an arterial line (systemic* columns of vitalPeriodic) and blood gases / lactate are
ordered with SCM propensities in U and C.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from medmodal.simulate.base import SIMULATORS, SimConfig
from medmodal.simulate.scm import World, sigmoid, stream
from medmodal.simulate.writer import Writers, codes, nullable, pick, ragged

CHUNK_SUBJECTS = 1000
OR_PATH = (  # the admitDx path eICU uses for the operating-room question
    "admission diagnosis|Was the patient admitted from the O.R. or went to the O.R. within 4 hours of admission?|"
)
A_ICU_MORTALITY = -3.0
A_ICU_READMISSION_15D = -2.4
B_ARTERIAL_LINE, B_BLOOD_GAS = -0.4, -0.2

SCHEMAS: dict[str, tuple[str, ...]] = {
    "patient.csv.gz": (
        "patientunitstayid",
        "patienthealthsystemstayid",
        "gender",
        "age",
        "ethnicity",
        "hospitalid",
        "wardid",
        "apacheadmissiondx",
        "admissionheight",
        "hospitaladmittime24",
        "hospitaladmitoffset",
        "hospitaladmitsource",
        "hospitaldischargeyear",
        "hospitaldischargetime24",
        "hospitaldischargeoffset",
        "hospitaldischargelocation",
        "hospitaldischargestatus",
        "unittype",
        "unitadmittime24",
        "unitadmitsource",
        "unitvisitnumber",
        "unitstaytype",
        "admissionweight",
        "dischargeweight",
        "unitdischargetime24",
        "unitdischargeoffset",
        "unitdischargelocation",
        "unitdischargestatus",
        "uniquepid",
    ),
    "hospital.csv.gz": ("hospitalid", "numbedscategory", "teachingstatus", "region"),
    "lab.csv.gz": (
        "labid",
        "patientunitstayid",
        "labresultoffset",
        "labtypeid",
        "labname",
        "labresult",
        "labresulttext",
        "labmeasurenamesystem",
        "labmeasurenameinterface",
        "labresultrevisedoffset",
    ),
    "vitalPeriodic.csv.gz": (
        "vitalperiodicid",
        "patientunitstayid",
        "observationoffset",
        "temperature",
        "sao2",
        "heartrate",
        "respiration",
        "cvp",
        "etco2",
        "systemicsystolic",
        "systemicdiastolic",
        "systemicmean",
        "pasystolic",
        "padiastolic",
        "pamean",
        "st1",
        "st2",
        "st3",
        "icp",
    ),
    "vitalAperiodic.csv.gz": (
        "vitalaperiodicid",
        "patientunitstayid",
        "observationoffset",
        "noninvasivesystolic",
        "noninvasivediastolic",
        "noninvasivemean",
        "paop",
        "cardiacoutput",
        "cardiacinput",
        "svr",
        "svri",
        "pvr",
        "pvri",
    ),
    "apachePatientResult.csv.gz": (
        "apachepatientresultsid",
        "patientunitstayid",
        "physicianspeciality",
        "physicianinterventioncategory",
        "acutephysiologyscore",
        "apachescore",
        "apacheversion",
        "predictedicumortality",
        "actualicumortality",
        "predictediculos",
        "actualiculos",
        "predictedhospitalmortality",
        "actualhospitalmortality",
        "predictedhospitallos",
        "actualhospitallos",
        "preopmi",
        "preopcardiaccath",
        "ptcawithin24h",
        "unabridgedunitlos",
        "unabridgedhosplos",
        "actualventdays",
        "predventdays",
        "unabridgedactualventdays",
    ),
    "apacheApsVar.csv.gz": (
        "apacheapsvarid",
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
    "diagnosis.csv.gz": (
        "diagnosisid",
        "patientunitstayid",
        "activeupondischarge",
        "diagnosisoffset",
        "diagnosisstring",
        "icd9code",
        "diagnosispriority",
    ),
    "treatment.csv.gz": (
        "treatmentid",
        "patientunitstayid",
        "treatmentoffset",
        "treatmentstring",
        "activeupondischarge",
    ),
    "admissionDx.csv.gz": (
        "admissiondxid",
        "patientunitstayid",
        "admitdxenteredoffset",
        "admitdxpath",
        "admitdxname",
        "admitdxtext",
    ),
}

# (labname, labtypeid, unit, mean, sd, log, beta per U, C offset, decimals, needs a blood-gas order)
LABS = (
    ("sodium", 1, "mmol/L", 139, 3.5, False, -0.3, 2.5, 0, False),
    ("potassium", 1, "mmol/L", 4.1, 0.5, False, 0.3, 0.0, 1, False),
    ("chloride", 1, "mmol/L", 103, 4.0, False, 0.1, 2.0, 0, False),
    ("bicarbonate", 1, "mmol/L", 24, 3.5, False, -0.7, 0.0, 0, False),
    ("BUN", 1, "mg/dL", 20, 0.45, True, 0.8, 0.0, 0, False),
    ("creatinine", 1, "mg/dL", 1.1, 0.35, True, 0.9, 0.0, 2, False),
    ("glucose", 1, "mg/dL", 130, 0.25, True, 0.4, 0.08, 0, False),
    ("WBC x 1000", 3, "K/mcL", 10.0, 0.4, True, 0.7, 0.0, 1, False),
    ("Hgb", 3, "g/dL", 11.0, 1.8, False, -0.6, -0.4, 1, False),
    ("platelets x 1000", 3, "K/mcL", 210, 0.4, True, -0.5, 0.0, 0, False),
    ("lactate", 1, "mmol/L", 1.6, 0.45, True, 0.9, 0.0, 1, True),
    ("pH", 7, "Units", 7.38, 0.05, False, -0.6, 0.0, 2, True),
)
DIAGNOSES = (  # (diagnosisstring, icd9code, acuity 0/1/2)
    ("cardiovascular|vascular disorders|hypertension", "401.9, I10", 0),
    ("endocrine|glucose metabolism|diabetes mellitus", None, 0),
    ("cardiovascular|ventricular disorders|congestive heart failure", "428.0, I50.9", 1),
    ("renal|disorder of kidney|acute renal failure", "584.9, N17.9", 1),
    ("pulmonary|pulmonary infections|pneumonia", "486, J18.9", 1),
    ("pulmonary|respiratory failure|acute respiratory failure", "518.81, J96.00", 2),
    ("cardiovascular|shock / hypotension|septic shock", "785.52, R65.21", 2),
    ("infectious diseases|systemic/other infections|sepsis", "038.9, A41.9", 2),
)
TREATMENTS = (
    "pulmonary|ventilation and oxygenation|mechanical ventilation",
    "pulmonary|radiologic procedures / bronchoscopy|chest x-ray",
    "cardiovascular|intravenous fluid|normal saline administration",
    "gastrointestinal|medications|stress ulcer prophylaxis|pantoprazole",
    "cardiovascular|shock|vasopressors|norepinephrine > 0.1 micrograms/kg/min",
    "infectious diseases|medications|therapeutic antibacterials",
)
ADMIT_DX = (
    "Sepsis, pulmonary",
    "CHF, congestive heart failure",
    "Diabetic ketoacidosis",
    "Pneumonia, bacterial",
    "Rhythm disturbance (atrial, supraventricular)",
    "Emphysema/bronchitis",
    "Sepsis, renal/UTI (including bladder)",
)
N_HOSPITALS = 40  # ids 900..939: the first half teaching (C = 1), the second half community (C = 0)


def _hhmm(minutes: np.ndarray) -> pl.Series:
    m = np.mod(np.asarray(minutes, dtype=np.int64), 1440)
    return pl.Series([f"{h:02d}:{mm:02d}:00" for h, mm in zip(m // 60, m % 60)], dtype=pl.Utf8)


def _hospitals() -> pl.DataFrame:
    ids = np.arange(900, 900 + N_HOSPITALS)
    teaching = ids < 900 + N_HOSPITALS // 2
    beds = np.where(
        teaching, np.where(ids % 2 == 0, ">= 500", "250 - 499"), np.where(ids % 2 == 0, "<100", "100 - 249")
    )
    region = np.asarray(("Midwest", "South", "West", "Northeast"), dtype=object)[ids % 4]
    return pl.DataFrame(
        {
            "hospitalid": ids,
            "numbedscategory": beds,
            "teachingstatus": np.where(teaching, "True", "False"),
            "region": region,
        }
    )


def _stays(world: World, rng: np.random.Generator, k: np.ndarray) -> dict[str, np.ndarray]:
    """One row per unit stay (index stays and their 15-day readmissions), with the SCM's draws."""
    n = len(k)
    env = world.environment.index
    c = (rng.random(n) < world.strengths.p_c).astype(np.int64)
    frailty = rng.standard_normal(n)
    age = np.clip(np.round(rng.normal(64, 17, n)), 16, 99).astype(np.int64)
    u = world.encounter_u(rng, frailty, 0.3 * (age - 60) / 17)
    p_m, r_m = world.outcome(A_ICU_MORTALITY, u, c)
    p_r, r_r = world.outcome(A_ICU_READMISSION_15D, u, c)
    died = rng.random(n) < p_m
    readmit = ~died & (rng.random(n) < p_r)
    los = np.maximum(120, np.exp(rng.normal(np.log(2.2 * 1440) + 0.3 * u, 0.8))).astype(np.int64)  # minutes
    death_at = np.exp(rng.normal(np.log(90 * 60), 0.9, n)).astype(np.int64)
    unit_out = np.where(died, death_at, los)
    gap = (rng.uniform(0.5, 14.5, n) * 1440).astype(np.int64)  # unit discharge -> readmission, minutes
    los2 = np.maximum(120, np.exp(rng.normal(np.log(2.0 * 1440) + 0.3 * u, 0.7))).astype(np.int64)
    died2 = readmit & (rng.random(n) < sigmoid(-2.5 + world.strengths.u_outcome * u))
    ward_after = np.exp(rng.normal(np.log(3 * 1440), 0.6, n)).astype(np.int64)
    ward_death = ~died & ~died2 & (rng.random(n) < sigmoid(-4.0 + u))
    pre = np.where(rng.random(n) < 0.6, rng.uniform(5, 600, n), rng.uniform(600, 5000, n)).astype(np.int64)
    second_in = unit_out + gap
    second_out = second_in + np.where(died2, np.minimum(los2, death_at), los2)
    hosp_out = np.where(
        died, unit_out, np.where(readmit, second_out + np.where(died2, 0, ward_after), unit_out + ward_after)
    )
    hosp_status = np.where(died | died2 | ward_death, "Expired", "Alive")
    teaching = np.flatnonzero(np.arange(N_HOSPITALS) < N_HOSPITALS // 2)
    community = np.flatnonzero(np.arange(N_HOSPITALS) >= N_HOSPITALS // 2)
    hosp = 900 + np.where(c == 1, rng.choice(teaching, n), rng.choice(community, n))
    first = {
        "k": k,
        "slot": np.zeros(n, np.int64),
        "c": c,
        "u": u,
        "age": age,
        "hospitalid": hosp,
        "unit_in": np.zeros(n, np.int64),
        "unit_out": unit_out,
        "unit_died": died,
        "visit": np.ones(n, np.int64),
        "prob_icu_mortality": p_m,
        "risk_icu_mortality": r_m,
        "y_icu_mortality": died.astype(np.int8),
        "prob_icu_readmission_15d": p_r,
        "risk_icu_readmission_15d": r_r,
        "y_icu_readmission_15d": readmit.astype(np.int8),
    }
    r = np.flatnonzero(readmit)
    second = {key: v[r] for key, v in first.items()}
    second.update(
        slot=np.ones(len(r), np.int64),
        unit_in=second_in[r],
        unit_out=second_out[r],
        unit_died=died2[r],
        visit=np.full(len(r), 2),
    )
    for key in ("prob_icu_mortality", "risk_icu_mortality", "prob_icu_readmission_15d", "risk_icu_readmission_15d"):
        second[key] = np.full(len(r), np.nan)
    for key in ("y_icu_mortality", "y_icu_readmission_15d"):
        second[key] = np.full(len(r), -1, np.int8)
    stays = {key: np.concatenate([first[key], second[key]]) for key in first}
    owner = np.concatenate([np.arange(n), r])
    stays.update(owner=owner, hosp_in=-pre[owner], hosp_out=hosp_out[owner], hosp_status=hosp_status[owner])
    stays["patientunitstayid"] = 3_500_000 + env * 2_000_000 + k[owner] * 2 + stays["slot"]
    stays["patienthealthsystemstayid"] = 3_000_000 + env * 1_000_000 + k[owner]
    stays["uniquepid"] = np.array([f"{900 + env:03d}-{int(x):05d}" for x in k[owner]], dtype=object)
    m = len(owner)
    stays["prop_arterial_line"] = world.propensity(B_ARTERIAL_LINE, stays["u"], stays["c"])
    stays["prop_blood_gas"] = world.propensity(B_BLOOD_GAS, stays["u"], stays["c"])
    stays["aline"] = rng.random(m) < stays["prop_arterial_line"]
    stays["abg"] = rng.random(m) < stays["prop_blood_gas"]
    stays["gender"] = pick(rng, ("Male", "Female"), (0.54, 0.46), n)[owner]
    stays["ethnicity"] = pick(
        rng,
        ("Caucasian", "African American", "Hispanic", "Asian", "Native American", "Other/Unknown", ""),
        (0.78, 0.1, 0.05, 0.015, 0.005, 0.035, 0.015),
        n,
    )[owner]
    stays["height"] = np.round(rng.normal(170, 10, n), 1)[owner]
    stays["weight"] = np.round(np.clip(rng.normal(82, 20, n), 35, 250), 1)[owner]
    stays["tod"] = rng.integers(0, 1440, m)  # unit admission time of day, minutes
    stays["year"] = rng.choice((2014, 2015), n)[owner]
    stays["admitdx"] = pick(rng, ADMIT_DX, np.full(len(ADMIT_DX), 1.0), n)[owner]
    return stays


def _patient(rng: np.random.Generator, s: dict[str, np.ndarray]) -> pl.DataFrame:
    m = len(s["k"])
    off = lambda x: x - s["unit_in"]  # noqa: E731  (every offset is relative to this row's unit admission)
    age = np.where(s["age"] > 89, "> 89", s["age"].astype(str))
    unittype = np.where(
        s["c"] == 1,
        pick(rng, ("MICU", "Cardiac ICU", "SICU", "Neuro ICU"), (0.45, 0.2, 0.2, 0.15), m),
        pick(rng, ("Med-Surg ICU", "CCU-CTICU", "CSICU"), (0.8, 0.1, 0.1), m),
    )
    first = s["slot"] == 0
    unit_loc = np.where(
        s["unit_died"],
        "Death",
        np.where(
            s["slot"] == 0,
            pick(rng, ("Floor", "Step-Down Unit (SDU)", "Telemetry", "Acute Care/Floor"), (0.55, 0.2, 0.15, 0.1), m),
            "Floor",
        ),
    )
    hosp_loc = np.where(
        s["hosp_status"] == "Expired",
        "Death",
        pick(
            rng,
            ("Home", "Skilled Nursing Facility", "Rehabilitation", "Other Hospital", "Nursing Home"),
            (0.65, 0.15, 0.08, 0.08, 0.04),
            m,
        ),
    )
    return pl.DataFrame(
        [
            pl.Series("patientunitstayid", s["patientunitstayid"]),
            pl.Series("patienthealthsystemstayid", s["patienthealthsystemstayid"]),
            pl.Series("gender", s["gender"].tolist(), dtype=pl.Utf8),
            pl.Series("age", age.tolist(), dtype=pl.Utf8),
            pl.Series("ethnicity", [e or None for e in s["ethnicity"]], dtype=pl.Utf8),
            pl.Series("hospitalid", s["hospitalid"]),
            pl.Series("wardid", s["hospitalid"] * 10 + s["slot"]),
            pl.Series("apacheadmissiondx", np.where(first, s["admitdx"], None).tolist(), dtype=pl.Utf8),
            pl.Series("admissionheight", s["height"]),
            _hhmm(s["tod"] + off(s["hosp_in"])).alias("hospitaladmittime24"),
            pl.Series("hospitaladmitoffset", off(s["hosp_in"])),
            pl.Series("hospitaladmitsource", np.where(first, "Emergency Department", "Floor").tolist(), dtype=pl.Utf8),
            pl.Series("hospitaldischargeyear", s["year"]),
            _hhmm(s["tod"] + off(s["hosp_out"])).alias("hospitaldischargetime24"),
            pl.Series("hospitaldischargeoffset", off(s["hosp_out"])),
            pl.Series("hospitaldischargelocation", hosp_loc.tolist(), dtype=pl.Utf8),
            pl.Series("hospitaldischargestatus", s["hosp_status"].tolist(), dtype=pl.Utf8),
            pl.Series("unittype", unittype.tolist(), dtype=pl.Utf8),
            _hhmm(s["tod"]).alias("unitadmittime24"),
            pl.Series("unitadmitsource", np.where(first, "Emergency Department", "Floor").tolist(), dtype=pl.Utf8),
            pl.Series("unitvisitnumber", s["visit"]),
            pl.Series("unitstaytype", np.where(first, "admit", "readmit").tolist(), dtype=pl.Utf8),
            pl.Series("admissionweight", s["weight"]),
            pl.Series("dischargeweight", np.round(s["weight"] + rng.normal(0, 1.5, m), 1)),
            _hhmm(s["tod"] + off(s["unit_out"])).alias("unitdischargetime24"),
            pl.Series("unitdischargeoffset", off(s["unit_out"])),
            pl.Series("unitdischargelocation", unit_loc.tolist(), dtype=pl.Utf8),
            pl.Series("unitdischargestatus", np.where(s["unit_died"], "Expired", "Alive").tolist(), dtype=pl.Utf8),
            pl.Series("uniquepid", s["uniquepid"].tolist(), dtype=pl.Utf8),
        ]
    )


def _grid(s, every_min: int, rng: np.random.Generator, start_min: int = 0):
    """Observation offsets every ``every_min`` minutes from unit admission to unit discharge, per stay."""
    length = s["unit_out"] - s["unit_in"]
    n = np.maximum(0, (length - start_min) // every_min)
    own, pos = ragged(n)
    offset = start_min + pos * every_min + rng.integers(0, 3, len(own))
    return own, offset, np.clip(offset / np.maximum(1, length[own]), 0, 1)


def _u_at(world: World, s, own, frac):
    return world.strengths.u_signal * (s["u"][own] + np.where(s["unit_died"][own], 0.8, -0.4) * frac)


def _vitals(world: World, rng: np.random.Generator, s, next_id: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    cm = world.strengths.c_marks
    own, offset, frac = _grid(s, 5, rng)
    u = _u_at(world, s, own, frac)
    n = len(own)
    noise = lambda sd: rng.normal(0, sd, n)  # noqa: E731
    hr = np.round(np.clip(85 + 13 * (0.6 * u + noise(0.5)), 30, 200))
    sao2 = np.round(np.clip(96.5 + 1.8 * (-0.6 * u + noise(0.5)) + 0.5 * cm * (2 * s["c"][own] - 1), 60, 100))
    resp = np.round(np.clip(18 + 4 * (0.6 * u + noise(0.5)), 4, 50))
    sbp = np.clip(120 + 16 * (-0.5 * u + noise(0.5)), 50, 230)
    dbp = np.clip(np.minimum(65 + 10 * (-0.4 * u + noise(0.5)), sbp - 15), 25, 140)
    art = s["aline"][own]
    temp = np.where((offset % 60 < 5) & (rng.random(n) < 0.3), np.round(37 + 0.5 * (0.5 * u + noise(0.5)), 1), np.nan)
    st = np.where(rng.random(n) < 0.4, np.round(noise(0.3), 1), np.nan)
    periodic = pl.DataFrame(
        {
            "vitalperiodicid": next_id + np.arange(n),
            "patientunitstayid": s["patientunitstayid"][own],
            "observationoffset": offset,
            "temperature": temp,
            "sao2": sao2,
            "heartrate": hr,
            "respiration": resp,
            "cvp": np.full(n, np.nan),
            "etco2": np.full(n, np.nan),
            "systemicsystolic": np.where(art, np.round(sbp), np.nan),
            "systemicdiastolic": np.where(art, np.round(dbp), np.nan),
            "systemicmean": np.where(art, np.round((sbp + 2 * dbp) / 3), np.nan),
            "pasystolic": np.full(n, np.nan),
            "padiastolic": np.full(n, np.nan),
            "pamean": np.full(n, np.nan),
            "st1": st,
            "st2": st,
            "st3": st,
            "icp": np.full(n, np.nan),
        }
    ).with_columns(pl.exclude("vitalperiodicid", "patientunitstayid", "observationoffset").fill_nan(None))
    own2, off2, frac2 = _grid(s, 60, rng, start_min=10)
    u2 = _u_at(world, s, own2, frac2)
    m = len(own2)
    nsbp = np.round(np.clip(120 + 16 * (-0.5 * u2 + rng.normal(0, 0.5, m)), 50, 230))
    ndbp = np.round(np.clip(np.minimum(65 + 10 * (-0.4 * u2 + rng.normal(0, 0.5, m)), nsbp - 15), 25, 140))
    aperiodic = pl.DataFrame(
        {
            "vitalaperiodicid": next_id + n + np.arange(m),
            "patientunitstayid": s["patientunitstayid"][own2],
            "observationoffset": off2,
            "noninvasivesystolic": nsbp,
            "noninvasivediastolic": ndbp,
            "noninvasivemean": np.round((nsbp + 2 * ndbp) / 3),
            **{
                c: np.full(m, None, dtype=object)
                for c in ("paop", "cardiacoutput", "cardiacinput", "svr", "svri", "pvr", "pvri")
            },
        }
    ).with_columns(
        [pl.col(c).cast(pl.Float64) for c in ("paop", "cardiacoutput", "cardiacinput", "svr", "svri", "pvr", "pvri")]
    )
    return periodic, aperiodic


def _labs(world: World, rng: np.random.Generator, s, next_id: int) -> pl.DataFrame:
    # a draw before unit admission (ED / ward) and then every 12 h in the unit
    own, offset, frac = _grid(s, 720, rng, start_min=240)
    pre = np.arange(len(s["k"]))
    own = np.concatenate([pre, own])
    offset = np.concatenate([-rng.integers(30, 300, len(pre)), offset])
    frac = np.concatenate([np.zeros(len(pre)), frac])
    u = _u_at(world, s, own, frac)
    n = len(own)
    rows, vals, names = [], [], []
    re = rng.normal(0, 0.4, (len(s["k"]), len(LABS)))
    for j, (_name, _typeid, _unit, mean, sd, log, beta, c_off, dec, needs_abg) in enumerate(LABS):
        take = s["abg"][own] & (rng.random(n) < 0.7) if needs_abg else rng.random(n) < 0.92
        idx = np.flatnonzero(take)
        z = beta * u[idx] + re[own[idx], j] + rng.normal(0, 0.6, len(idx))
        shift = c_off * world.strengths.c_marks * s["c"][own[idx]]
        v = np.exp(np.log(mean) + sd * z + shift) if log else mean + sd * z + shift
        rows.append(idx)
        vals.append(np.round(v, dec))
        names.append(np.full(len(idx), j))
    idx, v, j = np.concatenate(rows), np.concatenate(vals), np.concatenate(names)
    order = np.lexsort((j, offset[idx], own[idx]))
    idx, v, j = idx[order], v[order], j[order]
    dec = np.array([lab[8] for lab in LABS])[j]
    res_text = pl.select(
        pl.when(pl.Series(dec == 0))
        .then(pl.Series(v).round(0).cast(pl.Int64).cast(pl.Utf8))
        .otherwise(pl.Series(v).cast(pl.Utf8))
    ).to_series()
    units = tuple(lab[2] for lab in LABS)
    return pl.DataFrame(
        [
            pl.Series("labid", next_id + np.arange(len(idx))),
            pl.Series("patientunitstayid", s["patientunitstayid"][own[idx]]),
            pl.Series("labresultoffset", offset[idx]),
            pl.Series("labtypeid", np.array([lab[1] for lab in LABS])[j]),
            codes("labname", j, tuple(lab[0] for lab in LABS)),
            pl.Series("labresult", v),
            res_text.alias("labresulttext"),
            codes("labmeasurenamesystem", j, units),
            codes("labmeasurenameinterface", j, units),
            pl.Series("labresultrevisedoffset", offset[idx] + rng.integers(10, 120, len(idx))),
        ]
    )


def _apache(world: World, rng: np.random.Generator, s, next_id: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """APACHE IV/IVa rows: scores and predictions from U in the first 24 h (site-blind, as APACHE is)."""
    m = len(s["k"])
    u = s["u"] * world.strengths.u_signal + rng.normal(0, 0.5, m)
    aps = np.clip(np.round(45 + 20 * u), 0, 200).astype(np.int64)
    score = aps + np.clip(s["age"] - 40, 0, None) // 3
    pred_icu = sigmoid(-3.2 + 1.1 * u)
    icu_los = (s["unit_out"] - s["unit_in"]) / 1440
    hosp_los = (s["hosp_out"] - s["hosp_in"]) / 1440
    vent = rng.random(m) < sigmoid(-1.0 + u)
    rows = []
    for version, bump in (("IV", 0.0), ("IVa", 0.15)):
        rows.append(
            pl.DataFrame(
                {
                    "patientunitstayid": s["patientunitstayid"],
                    "physicianspeciality": pick(
                        rng,
                        ("internal medicine", "hospitalist", "critical care medicine (CCM)", "family practice"),
                        (0.4, 0.3, 0.2, 0.1),
                        m,
                    ),
                    "physicianinterventioncategory": pick(
                        rng, ("Unknown", "I", "II", "III", "IV"), (0.4, 0.15, 0.2, 0.2, 0.05), m
                    ),
                    "acutephysiologyscore": aps,
                    "apachescore": score,
                    "apacheversion": [version] * m,
                    "predictedicumortality": sigmoid(-3.2 + bump + 1.1 * u),
                    "actualicumortality": np.where(s["unit_died"], "EXPIRED", "ALIVE"),
                    "predictediculos": np.round(np.exp(np.log(2.5) + 0.3 * u), 4),
                    "actualiculos": np.round(icu_los, 4),
                    "predictedhospitalmortality": np.minimum(1, pred_icu * 1.4),
                    "actualhospitalmortality": np.where(s["hosp_status"] == "Expired", "EXPIRED", "ALIVE"),
                    "predictedhospitallos": np.round(np.exp(np.log(6) + 0.3 * u), 4),
                    "actualhospitallos": np.round(hosp_los, 4),
                    "preopmi": np.zeros(m, np.int64),
                    "preopcardiaccath": np.zeros(m, np.int64),
                    "ptcawithin24h": np.zeros(m, np.int64),
                    "unabridgedunitlos": np.round(icu_los, 4),
                    "unabridgedhosplos": np.round(hosp_los, 4),
                    "actualventdays": np.where(vent, np.ceil(icu_los * 0.7), np.nan),
                    "predventdays": np.where(vent, np.round(np.exp(np.log(3) + 0.3 * u), 4), np.nan),
                    "unabridgedactualventdays": np.where(vent, np.ceil(icu_los * 0.7), np.nan),
                }
            ).with_columns(pl.col("actualventdays", "predventdays", "unabridgedactualventdays").fill_nan(None))
        )
    result = pl.concat(rows).sort("patientunitstayid", maintain_order=True)
    result = result.with_columns(pl.Series("apachepatientresultsid", next_id + np.arange(result.height)))
    gcs = np.clip(np.round(15 - 3 * np.maximum(u, 0) + rng.normal(0, 1, m)), 3, 15)
    aps_var = pl.DataFrame(
        {
            "apacheapsvarid": next_id + np.arange(m),
            "patientunitstayid": s["patientunitstayid"],
            "intubated": vent.astype(np.int64),
            "vent": vent.astype(np.int64),
            "dialysis": (rng.random(m) < 0.05).astype(np.int64),
            "eyes": np.clip(np.round(gcs / 15 * 4), 1, 4).astype(np.int64),
            "motor": np.clip(np.round(gcs / 15 * 6), 1, 6).astype(np.int64),
            "verbal": np.clip(np.round(gcs / 15 * 5), 1, 5).astype(np.int64),
            "meds": np.zeros(m, np.int64),
            "urine": np.where(rng.random(m) < 0.6, np.round(np.exp(rng.normal(7.3 - 0.3 * u, 0.4)), 1), -1.0),
            "wbc": np.round(np.exp(np.log(10) + 0.4 * 0.7 * u + rng.normal(0, 0.2, m)), 1),
            "temperature": np.round(37 + 0.5 * u, 1),
            "respiratoryrate": np.round(18 + 5 * u + rng.normal(0, 2, m)),
            "sodium": np.round(139 - u + rng.normal(0, 3, m)),
            "heartrate": np.round(90 + 15 * u + rng.normal(0, 8, m)),
            "meanbp": np.round(80 - 10 * u + rng.normal(0, 6, m)),
            "ph": np.where(s["abg"], np.round(7.38 - 0.03 * u, 3), -1.0),
            "hematocrit": np.round(33 - 3 * u + rng.normal(0, 3, m), 1),
            "creatinine": np.round(np.exp(np.log(1.1) + 0.3 * u), 2),
            "albumin": np.where(rng.random(m) < 0.5, np.round(3.3 - 0.3 * u, 1), -1.0),
            "pao2": np.where(s["abg"], np.round(90 - 15 * u), -1.0),
            "pco2": np.where(s["abg"], np.round(40 + 4 * u), -1.0),
            "bun": np.round(np.exp(np.log(20) + 0.36 * u)),
            "glucose": np.round(np.exp(np.log(130) + 0.1 * u)),
            "bilirubin": np.where(rng.random(m) < 0.5, np.round(np.exp(np.log(0.7) + 0.3 * u), 1), -1.0),
            "fio2": np.where(vent, np.round(np.clip(40 + 15 * u, 21, 100)), -1.0),
        }
    )
    return result, aps_var


def _diagnosis_treatment(rng: np.random.Generator, s, next_id: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    m = len(s["k"])
    acuity = np.array([d[2] for d in DIAGNOSES])
    p = sigmoid(
        np.where(acuity == 0, -0.8, np.where(acuity == 1, -1.5, -2.2))[None, :]
        + np.where(acuity == 0, 0.2, 1.0)[None, :] * s["u"][:, None]
    )
    rows, dx = np.nonzero(rng.random((m, len(DIAGNOSES))) < p)
    n = len(rows)
    length = s["unit_out"] - s["unit_in"]
    diag = pl.DataFrame(
        [
            pl.Series("diagnosisid", next_id + np.arange(n)),
            pl.Series("patientunitstayid", s["patientunitstayid"][rows]),
            pl.Series("activeupondischarge", np.where(rng.random(n) < 0.3, "True", "False").tolist(), dtype=pl.Utf8),
            pl.Series("diagnosisoffset", (rng.random(n) * np.minimum(length[rows], 1440)).astype(np.int64)),
            codes("diagnosisstring", dx, tuple(d[0] for d in DIAGNOSES)),
            codes("icd9code", dx, tuple(d[1] for d in DIAGNOSES)),
            codes(
                "diagnosispriority",
                np.where(acuity[dx] == 2, 0, np.where(acuity[dx] == 1, 1, 2)),
                ("Primary", "Major", "Other"),
            ),
        ]
    )
    p_t = sigmoid(
        np.array([-1.0, 0.0, -0.3, -0.5, -2.0, -0.8])[None, :]
        + np.array([1.2, 0.6, 0.4, 0.3, 1.4, 0.9])[None, :] * s["u"][:, None]
    )
    rows_t, tx = np.nonzero(rng.random((m, len(TREATMENTS))) < p_t)
    nt = len(rows_t)
    treat = pl.DataFrame(
        [
            pl.Series("treatmentid", next_id + np.arange(nt)),
            pl.Series("patientunitstayid", s["patientunitstayid"][rows_t]),
            pl.Series("treatmentoffset", (rng.random(nt) * length[rows_t]).astype(np.int64)),
            codes("treatmentstring", tx, TREATMENTS),
            pl.Series("activeupondischarge", np.where(rng.random(nt) < 0.3, "True", "False").tolist(), dtype=pl.Utf8),
        ]
    )
    first = np.flatnonzero(s["slot"] == 0)
    op = rng.random(len(first)) < 0.2
    path = np.array(
        ["admission diagnosis|All Diagnosis|Non-operative|Diagnosis|" + str(d) for d in s["admitdx"][first]],
        dtype=object,
    )
    adm = pl.DataFrame(
        [
            pl.Series("admissiondxid", next_id + np.repeat(np.arange(len(first)) * 2, 2) + np.tile([0, 1], len(first))),
            pl.Series("patientunitstayid", np.repeat(s["patientunitstayid"][first], 2)),
            pl.Series("admitdxenteredoffset", np.repeat(rng.integers(10, 600, len(first)), 2)),
            pl.Series(
                "admitdxpath",
                np.ravel(
                    np.stack(
                        [
                            path,
                            np.where(
                                op,
                                OR_PATH + "Yes",
                                OR_PATH + "No",
                            ),
                        ],
                        1,
                    )
                ).tolist(),
                dtype=pl.Utf8,
            ),
            pl.Series(
                "admitdxname",
                np.ravel(np.stack([s["admitdx"][first], np.where(op, "Yes", "No")], 1)).tolist(),
                dtype=pl.Utf8,
            ),
            pl.Series(
                "admitdxtext",
                np.ravel(np.stack([s["admitdx"][first], np.where(op, "Yes", "No")], 1)).tolist(),
                dtype=pl.Utf8,
            ),
        ]
    )
    return diag, treat, adm


@SIMULATORS.register("eicu")
def simulate_eicu(out: Path, cfg: SimConfig, progress) -> dict:
    world = cfg.world
    env = world.environment.name
    with Writers(out, SCHEMAS) as writers:
        writers.write("hospital.csv.gz", _hospitals())
        truth = []
        base_ids = 100_000_000 * (1 + world.environment.index)
        next_vital = next_lab = next_apache = next_dx = base_ids
        for chunk, k0 in enumerate(range(0, cfg.subjects, CHUNK_SUBJECTS)):
            k = np.arange(k0, min(k0 + CHUNK_SUBJECTS, cfg.subjects))
            named = lambda part: stream(cfg.seed, "eicu", env, part, chunk)  # noqa: E731
            s = _stays(world, named("population"), k)
            order = np.argsort(s["patientunitstayid"], kind="stable")
            s = {key: v[order] for key, v in s.items()}
            writers.write("patient.csv.gz", _patient(named("patient"), s))
            periodic, aperiodic = _vitals(world, named("vitals"), s, next_vital)
            next_vital += periodic.height + aperiodic.height
            writers.write("vitalPeriodic.csv.gz", periodic)
            writers.write("vitalAperiodic.csv.gz", aperiodic)
            labs = _labs(world, named("labs"), s, next_lab)
            next_lab += labs.height
            writers.write("lab.csv.gz", labs)
            result, aps = _apache(world, named("apache"), s, next_apache)
            next_apache += result.height
            writers.write("apachePatientResult.csv.gz", result)
            writers.write("apacheApsVar.csv.gz", aps)
            diag, treat, adm = _diagnosis_treatment(named("diagnosis"), s, next_dx)
            next_dx += diag.height + treat.height + adm.height
            writers.write("diagnosis.csv.gz", diag)
            writers.write("treatment.csv.gz", treat)
            writers.write("admissionDx.csv.gz", adm)
            index = s["slot"] == 0
            t = {
                "patientunitstayid": s["patientunitstayid"],
                "patienthealthsystemstayid": s["patienthealthsystemstayid"],
                "uniquepid": s["uniquepid"].astype(str),
                "unitvisitnumber": s["visit"],
                "U": s["u"],
                "C": s["c"].astype(np.int8),
            }
            frame = pl.DataFrame(t)
            for outcome in ("icu_mortality", "icu_readmission_15d"):
                frame = frame.with_columns(
                    pl.Series(f"risk_{outcome}", s[f"risk_{outcome}"]).fill_nan(None),
                    pl.Series(f"prob_{outcome}", s[f"prob_{outcome}"]).fill_nan(None),
                    nullable(f"y_{outcome}", s[f"y_{outcome}"], index, pl.Int8),
                )
            frame = frame.with_columns(
                pl.Series("prop_arterial_line", s["prop_arterial_line"]),
                pl.Series("prop_blood_gas", s["prop_blood_gas"]),
                pl.Series("order_arterial_line", s["aline"]),
                pl.Series("order_blood_gas", s["abg"]),
                pl.lit(env).alias("environment"),
            )
            truth.append(frame)
            progress(len(k))
        rows = writers.close()
        pl.concat(truth).write_parquet(out / "truth.parquet")
    return rows
