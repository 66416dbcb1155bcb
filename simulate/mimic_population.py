"""MIMIC-IV world, part 1: subjects, admissions, ICU stays, outcomes and ordering decisions (the SCM applied).

Everything here is vectorised over one chunk of subjects and returns plain numpy columns; mimic_iv.py turns
them into the PhysioNet tables. The admission plan exists to make the task labels exactly the SCM's draws:

- kind 0 (``index``): the subject's first admission. Its readmission_30d / icu_admission_90d outcomes are drawn
  from the SCM and then *realised* as admissions:
- kind 1 (``readmission``): admitted within (0.5, 29.5] days of the index discharge iff readmission_30d = 1;
  it has an ICU stay iff icu_admission_90d = 1.
- kind 2 (``icu_followup``): only when icu_admission_90d = 1 and readmission_30d = 0: admitted 31-85 days after
  the index discharge straight into the ICU.
- kind 3 (``later``): background admissions at least 100 days after the previous discharge, so they never touch a
  30- or 90-day label.

Every ICU admission draws in-hospital death from the SCM, which is the label of the mortality tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medmodal.simulate.scm import World, sigmoid
from medmodal.simulate.writer import DAY, HOUR, pick, year_of, year_start

KINDS = ("index", "readmission", "icu_followup", "later")

# Intercepts a_Y of the outcome equations, set for MIMIC-like base rates at the default strengths:
# readmission within 30 d ~ 17 %, ICU within 90 d ~ 10 %, in-hospital death after an ICU admission ~ 13 %.
A_READMISSION_30D = -1.95
A_ICU_ADMISSION_90D = -2.6
A_IN_HOSPITAL_MORTALITY = -3.2
A_WARD_MORTALITY = -5.0  # death without an ICU stay: rare, U only; matters only as an exclusion
ICU_INTERCEPT = -0.15  # ~46 % of admissions see an ICU, more when sicker

# Ordering intercepts b_m (and U weights w_m): discharge summaries exist for ~85 % of admissions, a CXR is
# taken in ~50 %, another imaging report (CT / US / MR) in ~40 %. Sicker patients get more of everything.
B_DISCHARGE_NOTE, W_DISCHARGE_NOTE = 1.9, 0.5
B_CXR, W_CXR = 0.0, 1.0
B_OTHER_IMAGING, W_OTHER_IMAGING = -0.5, 0.8
P_CXR_REPORTED = 0.97  # share of CXR studies whose report is in MIMIC-IV-Note radiology

MAX_ADMISSIONS = 20  # id slots per subject: hadm_id = base + 20 * k + j
MAX_LATER = 5

ICU_UNITS = (
    # C = 0 (surgical campus)                        C = 1 (medical campus)
    ("Surgical Intensive Care Unit (SICU)", "Medical Intensive Care Unit (MICU)"),
    ("Cardiac Vascular Intensive Care Unit (CVICU)", "Medical/Surgical Intensive Care Unit (MICU/SICU)"),
    ("Trauma SICU (TSICU)", "Coronary Care Unit (CCU)"),
)
WARD_UNITS = ("Medicine", "Med/Surg", "Surgery", "Cardiology", "Neurology", "Medicine/Cardiology")
RACES = (
    "WHITE",
    "BLACK/AFRICAN AMERICAN",
    "HISPANIC/LATINO - PUERTO RICAN",
    "ASIAN",
    "OTHER",
    "UNKNOWN",
    "WHITE - OTHER EUROPEAN",
    "HISPANIC OR LATINO",
    "ASIAN - CHINESE",
)
RACE_P = (0.60, 0.16, 0.04, 0.03, 0.05, 0.05, 0.03, 0.02, 0.02)
YEAR_GROUPS = ("2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019")


@dataclass
class Population:
    """Columns of one chunk: ``subj`` one entry per subject, ``adm`` one per admission (sorted by subject, time)."""

    subj: dict[str, np.ndarray]
    adm: dict[str, np.ndarray]


def _minute(secs: np.ndarray) -> np.ndarray:
    return (np.asarray(secs) // 60 * 60).astype(np.int64)


def draw_subjects(world: World, rng: np.random.Generator, k: np.ndarray) -> dict[str, np.ndarray]:
    n = len(k)
    s = world.strengths
    age = np.clip(np.round(rng.normal(62, 17, n)), 18, 95).astype(np.int64)
    age[age > 89] = 91  # MIMIC-IV reports every age above 89 as 91
    c = (rng.random(n) < s.p_c).astype(np.int64)
    # Insurance is one of C's marks: the medical campus (C = 1) serves more Medicaid patients under 65.
    tilt = 0.2 * np.tanh(s.c_marks) * (2 * c - 1)
    p_medicaid = np.where(age >= 65, 0.05, 0.30 + tilt)
    p_medicare = np.where(age >= 65, 0.80, 0.08)
    p_other = 1.0 - p_medicaid - p_medicare
    return {
        "k": k,
        "subject_id": 20_000_000 + world.environment.index * 1_000_000 + k,
        "gender": pick(rng, ("F", "M"), (0.52, 0.48), n),
        "anchor_age": age,
        "anchor_year": rng.integers(2110, 2186, n),
        "anchor_year_group": pick(rng, YEAR_GROUPS, (0.25, 0.25, 0.25, 0.25), n),
        "c": c,
        "frailty": rng.standard_normal(n),
        "race": pick(rng, RACES, RACE_P, n),
        "insurance": pick(rng, ("Medicaid", "Medicare", "Other"), np.stack([p_medicaid, p_medicare, p_other], 1), n),
        "language": pick(rng, ("ENGLISH", "?"), (0.9, 0.1), n),
        "marital_status": pick(rng, ("MARRIED", "SINGLE", "WIDOWED", "DIVORCED", ""), (0.45, 0.3, 0.12, 0.08, 0.05), n),
    }


def _course(
    world: World, rng: np.random.Generator, u, c, admittime, force_icu, icu_delay_h, icu_intercept: float
) -> dict[str, np.ndarray]:
    """One hospital course per row: ED, ICU stay, death, discharge. ``force_icu``: -1 draw, 0 never, 1 always."""
    n = len(u)
    has_ed = rng.random(n) < 0.65
    p_icu = sigmoid(icu_intercept + 1.0 * u)
    icu = np.where(force_icu < 0, rng.random(n) < p_icu, force_icu == 1)
    delay = np.where(has_ed, rng.uniform(0.5, 8, n), rng.uniform(0.5, 36, n))
    delay = np.where(np.isnan(icu_delay_h), delay, icu_delay_h)
    intime = admittime + (delay * HOUR).astype(np.int64) + rng.integers(0, 60, n)
    icu_los_h = np.maximum(6.0, np.exp(rng.normal(np.log(52) + 0.3 * u, 0.75)))

    p_mort, risk_mort = world.outcome(A_IN_HOSPITAL_MORTALITY, u, c)
    p_ward = sigmoid(A_WARD_MORTALITY + world.strengths.u_outcome * u)
    died = np.where(icu, rng.random(n) < p_mort, rng.random(n) < p_ward)
    death_after_h = np.exp(rng.normal(np.log(100), 0.9, n))  # ~21 % of ICU deaths inside 48 h
    in_icu_death = rng.random(n) < 0.8
    outtime = np.where(
        died & in_icu_death,
        intime + (death_after_h * HOUR).astype(np.int64),
        np.where(
            died,
            intime + (death_after_h * rng.uniform(0.3, 0.9, n) * HOUR).astype(np.int64),
            intime + (icu_los_h * HOUR).astype(np.int64),
        ),
    )
    deathtime = np.where(icu, intime, admittime) + (death_after_h * HOUR).astype(np.int64)
    ward_h = np.exp(rng.normal(np.log(50), 0.7, n))
    plain_los_h = np.maximum(4.0, np.exp(rng.normal(np.log(70) + 0.25 * u, 0.7)))
    survivor_disch = np.where(
        icu, outtime + (ward_h * HOUR).astype(np.int64), admittime + (plain_los_h * HOUR).astype(np.int64)
    )
    dischtime = _minute(np.where(died, deathtime, survivor_disch))
    deathtime = _minute(deathtime)
    outtime = np.minimum(outtime, np.where(died & in_icu_death, dischtime, outtime))

    home = sigmoid(0.8 - 0.9 * u)
    disch_loc = pick(
        rng,
        ("HOME", "HOME HEALTH CARE", "SKILLED NURSING FACILITY", "REHAB", "CHRONIC/LONG TERM ACUTE CARE"),
        np.stack([home, (1 - home) * 0.45, (1 - home) * 0.35, (1 - home) * 0.12, (1 - home) * 0.08], 1),
        n,
    )
    disch_loc = np.where(died, "DIED", disch_loc)
    adm_type = np.where(
        has_ed,
        pick(rng, ("EW EMER.", "URGENT", "OBSERVATION ADMIT", "EU OBSERVATION"), (0.6, 0.2, 0.12, 0.08), n),
        pick(rng, ("ELECTIVE", "SURGICAL SAME DAY ADMISSION", "DIRECT EMER.", "URGENT"), (0.4, 0.3, 0.15, 0.15), n),
    )
    adm_loc = np.where(
        has_ed,
        "EMERGENCY ROOM",
        pick(
            rng,
            ("PHYSICIAN REFERRAL", "TRANSFER FROM HOSPITAL", "CLINIC REFERRAL", "WALK-IN/SELF REFERRAL"),
            (0.5, 0.25, 0.15, 0.1),
            n,
        ),
    )
    edregtime = _minute(admittime - (rng.uniform(1, 9, n) * HOUR).astype(np.int64))
    edouttime = _minute(admittime + (rng.uniform(0, 1.5, n) * HOUR).astype(np.int64))
    unit_row = rng.choice(len(ICU_UNITS), size=n, p=(0.5, 0.3, 0.2))
    own_campus = rng.random(n) < 0.85
    unit_col = np.where(own_campus, c, 1 - c)
    first_unit = np.array([ICU_UNITS[r][col] for r, col in zip(unit_row, unit_col)], dtype=object)
    last_unit = np.where(rng.random(n) < 0.9, first_unit, "Medical/Surgical Intensive Care Unit (MICU/SICU)")
    return {
        "has_ed": has_ed,
        "edregtime": edregtime,
        "edouttime": edouttime,
        "admission_type": adm_type,
        "admission_location": adm_loc,
        "dischtime": dischtime,
        "discharge_location": disch_loc,
        "icu": icu,
        "intime": intime,
        "outtime": outtime,
        "first_careunit": first_unit,
        "last_careunit": last_unit,
        "ward_unit": pick(rng, WARD_UNITS, (0.4, 0.2, 0.15, 0.1, 0.05, 0.1), n),
        "died": died,
        "deathtime": deathtime,
        "prob_in_hospital_mortality": np.where(icu, p_mort, np.nan),
        "risk_in_hospital_mortality": np.where(icu, risk_mort, np.nan),
    }


def draw_population(
    world: World, rng: np.random.Generator, k: np.ndarray, icu_intercept: float = ICU_INTERCEPT
) -> Population:
    """The chunk ``k`` of subjects. ``icu_intercept`` sets how often an admission whose ICU stay is not forced by
    a label reaches the ICU (the release-density world lowers it to MIMIC-IV's share, simulate/mimic_density.py).
    """
    subj = draw_subjects(world, rng, k)
    n = len(k)
    idx_all = np.arange(n)
    parts: list[dict[str, np.ndarray]] = []

    def encounters(sub_idx, admittime, kind, slot, force_icu, icu_delay_h):
        age_at = subj["anchor_age"][sub_idx] + (year_of(admittime) - subj["anchor_year"][sub_idx])
        u = world.encounter_u(rng, subj["frailty"][sub_idx], 0.3 * (age_at - 60) / 17)
        c = subj["c"][sub_idx]
        admittime = _minute(admittime)
        part = {
            "sub": sub_idx,
            "kind": np.full(len(sub_idx), kind),
            "slot": slot,
            "u": u,
            "c": c,
            "admittime": admittime,
            "age": age_at,
        }
        part.update(_course(world, rng, u, c, admittime, force_icu, icu_delay_h, icu_intercept))
        parts.append(part)
        return part

    nan = lambda m: np.full(m, np.nan)  # noqa: E731
    start = year_start(subj["anchor_year"]) + (rng.uniform(0, 2.5, n) * 365 * DAY).astype(np.int64)
    first = encounters(idx_all, start, 0, np.zeros(n, np.int64), np.full(n, -1), nan(n))

    # The index admission's post-discharge outcomes: drawn from the SCM, then realised as admissions.
    p_r, r_r = world.outcome(A_READMISSION_30D, first["u"], first["c"])
    p_i, r_i = world.outcome(A_ICU_ADMISSION_90D, first["u"], first["c"])
    y_r, y_i = rng.random(n) < p_r, rng.random(n) < p_i
    alive = ~first["died"]
    first.update(
        prob_readmission_30d=p_r,
        risk_readmission_30d=r_r,
        y_readmission_30d=np.where(alive, y_r, False),
        prob_icu_admission_90d=p_i,
        risk_icu_admission_90d=r_i,
        y_icu_admission_90d=np.where(alive, y_i, False),
    )
    last_disch = first["dischtime"].copy()
    slot = np.ones(n, np.int64)

    sel = np.flatnonzero(alive & y_r)
    if len(sel):
        t = first["dischtime"][sel] + (rng.uniform(0.5, 29.5, len(sel)) * DAY).astype(np.int64)
        p = encounters(sel, t, 1, slot[sel], y_i[sel].astype(np.int64), rng.uniform(1, 24, len(sel)))
        last_disch[sel] = p["dischtime"]
        alive[sel] &= ~p["died"]
        slot[sel] += 1
    sel = np.flatnonzero(alive & y_i & ~y_r)
    if len(sel):
        t = first["dischtime"][sel] + (rng.uniform(31, 85, len(sel)) * DAY).astype(np.int64)
        p = encounters(sel, t, 2, slot[sel], np.ones(len(sel), np.int64), rng.uniform(1, 24, len(sel)))
        last_disch[sel] = p["dischtime"]
        alive[sel] &= ~p["died"]
        slot[sel] += 1
    n_later = np.minimum(rng.poisson(0.5 * np.exp(0.4 * subj["frailty"])), MAX_LATER)
    for r in range(1, MAX_LATER + 1):
        sel = np.flatnonzero(alive & (n_later >= r))
        if not len(sel):
            break
        t = last_disch[sel] + ((100 + rng.exponential(250, len(sel))) * DAY).astype(np.int64)
        p = encounters(sel, t, 3, slot[sel], np.full(len(sel), -1), nan(len(sel)))
        last_disch[sel] = p["dischtime"]
        alive[sel] &= ~p["died"]
        slot[sel] += 1

    adm = _concat(parts)
    order = np.lexsort((adm["admittime"], adm["sub"]))
    adm = {key: v[order] for key, v in adm.items()}
    m = len(adm["sub"])
    base = world.environment.index * 20_000_000 + subj["k"][adm["sub"]] * MAX_ADMISSIONS + adm["slot"]
    adm["subject_id"] = subj["subject_id"][adm["sub"]]
    adm["hadm_id"] = 100_000_000 + base
    adm["stay_id"] = 300_000_000 + base
    for key in ("insurance", "language", "marital_status", "race"):
        adm[key] = subj[key][adm["sub"]]

    # Which modalities get ordered: missing not at random through U and C (the propensities go to truth).
    u, c = adm["u"], adm["c"]
    adm["prop_discharge_note"] = world.propensity(B_DISCHARGE_NOTE, u, c, W_DISCHARGE_NOTE)
    adm["prop_cxr"] = world.propensity(B_CXR, u, c, W_CXR)
    adm["prop_other_imaging"] = world.propensity(B_OTHER_IMAGING, u, c, W_OTHER_IMAGING)
    adm["prop_radiology_note"] = 1 - (1 - adm["prop_cxr"] * P_CXR_REPORTED) * (1 - adm["prop_other_imaging"])
    adm["order_discharge_note"] = rng.random(m) < adm["prop_discharge_note"]
    adm["order_cxr"] = rng.random(m) < adm["prop_cxr"]
    adm["order_other_imaging"] = rng.random(m) < adm["prop_other_imaging"]

    # Deaths after the last discharge (patients.dod holds out-of-hospital deaths within a year).
    last = np.r_[adm["sub"][1:] != adm["sub"][:-1], True]
    late_death = last & ~adm["died"] & (rng.random(m) < sigmoid(-3.5 + 0.8 * u))
    dod = np.full(n, -1, np.int64)
    dod[adm["sub"][adm["died"]]] = adm["deathtime"][adm["died"]]
    dod[adm["sub"][late_death]] = adm["dischtime"][late_death] + (rng.uniform(2, 365, late_death.sum()) * DAY).astype(
        np.int64
    )
    subj["dod"] = dod
    return Population(subj, adm)


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    keys = list(dict.fromkeys(k for p in parts for k in p))
    out = {}
    for key in keys:
        cols = []
        for p in parts:
            if key in p:
                cols.append(p[key])
            else:  # outcome columns exist only for index admissions
                cols.append(
                    np.full(len(p["sub"]), np.nan)
                    if key.startswith(("prob_", "risk_"))
                    else np.zeros(len(p["sub"]), bool)
                )
        out[key] = np.concatenate(cols)
    return out
