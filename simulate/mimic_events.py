"""MIMIC-IV world, part 2: labevents and chartevents (vectorised per chunk) and their dictionaries.

Measurement model (docs/simulator.md, "Measurements"): for item j drawn at time t of encounter i,

    z      = beta_j * u_signal * U_i(t) + r_ij + eps,   r_ij ~ N(0, 0.4^2) per encounter, eps ~ N(0, 0.6^2)
    value  = mean_j + sd_j * z + c_marks * offset_j * C_i          (normal items)
    value  = exp(log mean_j + sd_j * z + c_marks * offset_j * C_i) (skewed items: creatinine, lactate, ...)

U_i(t) drifts over an encounter (worse towards death, better towards discharge). The C offsets are analyser /
device calibration differences between the two campuses: small next to the clinical range, but consistent, so a
model can read C from them. Itemids and labels are those of MIMIC-IV v2.2 (hosp/d_labitems, icu/d_items).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from medmodal.simulate.mimic_density import dictionary_rows, extra_chartevents, extra_labevents
from medmodal.simulate.scm import World, sigmoid
from medmodal.simulate.writer import DAY, HOUR, codes, dt, nullable, ragged


@dataclass(frozen=True)
class Lab:
    itemid: int
    label: str  # as in d_labitems
    category: str
    uom: str | None
    mean: float
    sd: float  # on the log scale when log=True
    log: bool
    beta: float  # SDs per unit of U
    c_offset: float  # natural units (log units when log=True) at c_marks = 1
    lo: float
    hi: float
    dec: int
    ref_lo: float
    ref_hi: float
    panel: str


LABS: tuple[Lab, ...] = (
    Lab(50983, "Sodium", "Chemistry", "mEq/L", 139, 3.5, False, -0.3, 2.5, 110, 170, 0, 133, 145, "bmp"),
    Lab(50971, "Potassium", "Chemistry", "mEq/L", 4.2, 0.5, False, 0.3, 0.0, 2.0, 8.0, 1, 3.3, 5.1, "bmp"),
    Lab(50902, "Chloride", "Chemistry", "mEq/L", 102, 4.0, False, 0.1, 2.0, 75, 130, 0, 96, 108, "bmp"),
    Lab(50882, "Bicarbonate", "Chemistry", "mEq/L", 25, 3.5, False, -0.7, 0.0, 5, 45, 0, 22, 32, "bmp"),
    Lab(51006, "Urea Nitrogen", "Chemistry", "mg/dL", 18, 0.45, True, 0.8, 0.0, 2, 250, 0, 6, 20, "bmp"),
    Lab(50912, "Creatinine", "Chemistry", "mg/dL", 1.0, 0.35, True, 0.9, 0.0, 0.2, 15, 1, 0.5, 1.2, "bmp"),
    Lab(50931, "Glucose", "Chemistry", "mg/dL", 115, 0.25, True, 0.4, 0.08, 30, 900, 0, 70, 100, "bmp"),
    Lab(50868, "Anion Gap", "Chemistry", "mEq/L", 12, 3.0, False, 0.6, 0.0, 3, 45, 0, 8, 20, "bmp"),  # Na-Cl-HCO3
    Lab(50893, "Calcium, Total", "Chemistry", "mg/dL", 8.8, 0.6, False, -0.4, 0.0, 5, 14, 1, 8.4, 10.3, "bmp_ext"),
    Lab(50960, "Magnesium", "Chemistry", "mg/dL", 2.0, 0.25, False, 0.0, 0.0, 0.8, 4.5, 1, 1.6, 2.6, "bmp_ext"),
    Lab(50970, "Phosphate", "Chemistry", "mg/dL", 3.6, 0.8, False, 0.4, 0.0, 0.8, 12, 1, 2.7, 4.5, "bmp_ext"),
    Lab(51301, "White Blood Cells", "Hematology", "K/uL", 9.0, 0.4, True, 0.7, 0.0, 0.2, 80, 1, 4.0, 10.0, "cbc"),
    Lab(51222, "Hemoglobin", "Hematology", "g/dL", 11.5, 1.8, False, -0.6, -0.4, 4, 19, 1, 13.7, 17.5, "cbc"),
    Lab(51221, "Hematocrit", "Hematology", "%", 34.5, 5.4, False, -0.6, -1.2, 12, 58, 1, 40, 51, "cbc"),  # ~3 x Hgb
    Lab(51265, "Platelet Count", "Hematology", "K/uL", 220, 0.4, True, -0.5, 0.0, 5, 1200, 0, 150, 400, "cbc"),
    Lab(51237, "INR(PT)", "Hematology", None, 1.2, 0.2, True, 0.5, 0.0, 0.8, 10, 1, 0.9, 1.1, "coag"),
    Lab(
        50861, "Alanine Aminotransferase (ALT)", "Chemistry", "IU/L", 25, 0.6, True, 0.4, 0.0, 3, 3000, 0, 0, 40, "lft"
    ),
    Lab(50885, "Bilirubin, Total", "Chemistry", "mg/dL", 0.7, 0.6, True, 0.5, 0.0, 0.1, 30, 1, 0, 1.5, "lft"),
    Lab(50862, "Albumin", "Chemistry", "g/dL", 3.5, 0.5, False, -0.6, 0.0, 1.2, 5.5, 1, 3.5, 5.2, "lft"),
    Lab(50813, "Lactate", "Blood Gas", "mmol/L", 1.5, 0.45, True, 0.9, 0.0, 0.3, 20, 1, 0.5, 2.0, "gas"),
)
PANELS = ("bmp", "bmp_ext", "cbc", "coag", "lft", "gas")
_LAB_INDEX = {lab.itemid: j for j, lab in enumerate(LABS)}

# icu/d_items rows of the charted items (values as in MIMIC-IV v2.2).
D_ITEMS = (
    (220045, "Heart Rate", "HR", "chartevents", "Routine Vital Signs", "bpm", "Numeric", None, None),
    (
        220179,
        "Non Invasive Blood Pressure systolic",
        "NBPs",
        "chartevents",
        "Routine Vital Signs",
        "mmHg",
        "Numeric",
        None,
        None,
    ),
    (
        220180,
        "Non Invasive Blood Pressure diastolic",
        "NBPd",
        "chartevents",
        "Routine Vital Signs",
        "mmHg",
        "Numeric",
        None,
        None,
    ),
    (
        220181,
        "Non Invasive Blood Pressure mean",
        "NBPm",
        "chartevents",
        "Routine Vital Signs",
        "mmHg",
        "Numeric",
        None,
        None,
    ),
    (
        220050,
        "Arterial Blood Pressure systolic",
        "ABPs",
        "chartevents",
        "Routine Vital Signs",
        "mmHg",
        "Numeric",
        90,
        140,
    ),
    (
        220051,
        "Arterial Blood Pressure diastolic",
        "ABPd",
        "chartevents",
        "Routine Vital Signs",
        "mmHg",
        "Numeric",
        60,
        90,
    ),
    (
        220052,
        "Arterial Blood Pressure mean",
        "ABPm",
        "chartevents",
        "Routine Vital Signs",
        "mmHg",
        "Numeric",
        None,
        None,
    ),
    (220210, "Respiratory Rate", "RR", "chartevents", "Respiratory", "insp/min", "Numeric", None, None),
    (220277, "O2 saturation pulseoxymetry", "SpO2", "chartevents", "Respiratory", "%", "Numeric", None, None),
    (
        223761,
        "Temperature Fahrenheit",
        "Temperature F",
        "chartevents",
        "Routine Vital Signs",
        "°F",
        "Numeric",
        None,
        None,
    ),
    (223762, "Temperature Celsius", "Temperature C", "chartevents", "Routine Vital Signs", "°C", "Numeric", None, None),
    (220739, "GCS - Eye Opening", "Eye Opening", "chartevents", "Neurological", None, "Text", None, None),
    (223900, "GCS - Verbal Response", "Verbal Response", "chartevents", "Neurological", None, "Text", None, None),
    (223901, "GCS - Motor Response", "Motor Response", "chartevents", "Neurological", None, "Text", None, None),
    (226512, "Admission Weight (Kg)", "Admission Weight (Kg)", "chartevents", "General", "kg", "Numeric", None, None),
)
# Items of the variable map the simulator never charts, listed anyway (real rows, identical to the demo's) so that
# the build's dictionary check finds every mapped itemid in a simulated world, as it would in a real one.
DICTIONARY_ONLY_ITEMS = (
    (
        224690,
        "Respiratory Rate (Total)",
        "Respiratory Rate (Total)",
        "chartevents",
        "Respiratory",
        "insp/min",
        "Numeric",
        None,
        36,
    ),
    (224639, "Daily Weight", "Daily Weight", "chartevents", "General", "kg", "Numeric", None, None),
)
DICTIONARY_ONLY_LABS = ((51275, "PTT", "Blood", "Hematology"),)
D_ITEMS_COLUMNS = (
    "itemid",
    "label",
    "abbreviation",
    "linksto",
    "category",
    "unitname",
    "param_type",
    "lownormalvalue",
    "highnormalvalue",
)
GCS_TEXT = {
    220739: ("None", "To Pain", "To Speech", "Spontaneously"),
    223900: ("No Response", "Incomprehensible sounds", "Inappropriate Words", "Confused", "Oriented"),
    223901: (
        "No response",
        "Abnormal extension",
        "Abnormal Flexion",
        "Flex-withdraws",
        "Localizes Pain",
        "Obeys Commands",
    ),
}
PROVIDERS = tuple(f"P{n:05X}"[:6] for n in range(0x1A2B3, 0x1A2B3 + 211 * 97, 97))


def d_labitems(density: str = "tasks") -> pl.DataFrame:
    rows = [(lab.itemid, lab.label, "Blood", lab.category) for lab in LABS] + list(DICTIONARY_ONLY_LABS)
    df = pl.DataFrame(rows, schema=["itemid", "label", "fluid", "category"], orient="row")
    if density == "release":  # the items of the extra rows, with their real dictionary rows
        df = pl.concat([df, dictionary_rows("d_labitems").select(df.columns).cast(df.schema)]).sort("itemid")
    return df


def d_items(density: str = "tasks") -> pl.DataFrame:
    df = pl.DataFrame(D_ITEMS + DICTIONARY_ONLY_ITEMS, schema=list(D_ITEMS_COLUMNS), orient="row")
    if density == "release":  # normal values as text: the demo's rows keep their digits, ours print as before
        df = df.with_columns(pl.col("lownormalvalue", "highnormalvalue").cast(pl.Utf8))
        df = pl.concat([df, dictionary_rows("d_items").select(df.columns)]).sort("itemid")
    return df


def _fmt(values: np.ndarray, dec: int) -> pl.Series:
    s = pl.Series(values)
    return s.round(0).cast(pl.Int64).cast(pl.Utf8) if dec == 0 else s.round(dec).cast(pl.Utf8)


def _u_path(u, frac, died, u_signal):
    """U along an encounter: drifts up before a death, recovers towards a live discharge."""
    return u_signal * (u + np.where(died, 0.8, -0.5) * np.clip(frac, 0, 1))


class EventWriter:
    """Generates labevents and chartevents for successive chunks; carries the running row ids across chunks."""

    def __init__(self, world: World, density: str = "tasks"):
        self.world = world
        self.density = density  # "release": also the rows of items no task reads (simulate/mimic_density.py)
        env = world.environment.index
        self.next_labevent_id = 500_000_000 + env * 300_000_000
        self.next_specimen_id = 300_000_000 + env * 50_000_000

    # --------------------------------------------------------------------------------------------- labevents
    def labevents(
        self, rng: np.random.Generator, pop, extra_rng: np.random.Generator | None = None
    ) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
        """Lab rows of one chunk, and per admission the first/last in-hospital values of a few labs (for notes).

        ``extra_rng`` (with density "release") draws the rows of items no task reads, from a stream of its own.
        """
        a, s = pop.adm, pop.subj
        m = len(a["sub"])
        # Draw times: one ED / admission draw, a 05:00 draw every hospital day, and 12-hourly draws in the ICU.
        first_t = np.where(
            a["has_ed"],
            a["edregtime"] + (rng.uniform(0.3, 1.5, m) * HOUR).astype(np.int64),
            a["admittime"] + (rng.uniform(0.2, 2.0, m) * HOUR).astype(np.int64),
        )
        day0 = a["admittime"] // DAY * DAY + DAY + 5 * HOUR
        n_daily = np.maximum(0, np.ceil((a["dischtime"] - day0) / DAY)).astype(np.int64)
        own_d, pos_d = ragged(n_daily)
        t_daily = day0[own_d] + pos_d * DAY + rng.integers(-3600, 3600, len(own_d))
        icu_rows = np.flatnonzero(a["icu"])
        n_icu = np.maximum(
            0, np.ceil((a["outtime"][icu_rows] - a["intime"][icu_rows] - 6 * HOUR) / (12 * HOUR))
        ).astype(np.int64)
        own_i, pos_i = ragged(n_icu)
        own_i = icu_rows[own_i]
        t_icu = a["intime"][own_i] + 6 * HOUR + pos_i * 12 * HOUR + rng.integers(-1800, 1800, len(own_i))
        keep_d = t_daily < a["dischtime"][own_d]
        keep_i = t_icu < a["outtime"][own_i]
        own = np.concatenate([np.arange(m), own_d[keep_d], own_i[keep_i]])
        t = np.concatenate([first_t, t_daily[keep_d], t_icu[keep_i]])
        kind = np.concatenate([np.zeros(m, np.int8), np.ones(keep_d.sum(), np.int8), np.full(keep_i.sum(), 2, np.int8)])
        ed_draw = (kind == 0) & a["has_ed"][own] & (t < a["admittime"][own])
        # Labs without hadm_id: ED draws before the admission (mostly), a few mislinked inpatient draws, and
        # outpatient draws before the first / after the last admission (below).
        null_hadm = np.where(ed_draw, rng.random(len(t)) < 0.9, rng.random(len(t)) < 0.08)
        frac = (t - a["admittime"][own]) / np.maximum(1, a["dischtime"][own] - a["admittime"][own])
        u_t = _u_path(a["u"][own], frac, a["died"][own], self.world.strengths.u_signal)
        c = a["c"][own]
        re = rng.normal(0, 0.4, (m, len(LABS)))[own]

        # Outpatient draws: never inside an admission, so they only matter through the (subject, time) join.
        n_sub = len(s["k"])
        n_out = rng.poisson(2.5, n_sub)
        o_sub, _ = ragged(n_out)
        first_adm = np.full(n_sub, np.iinfo(np.int64).max)
        last_dis = np.zeros(n_sub, np.int64)
        np.minimum.at(first_adm, a["sub"], np.where(a["has_ed"], a["edregtime"], a["admittime"]))
        np.maximum.at(last_dis, a["sub"], a["dischtime"])
        before = rng.random(len(o_sub)) < 0.5
        gap = (rng.uniform(3, 365, len(o_sub)) * DAY).astype(np.int64)
        t_out = np.where(before, first_adm[o_sub] - gap, last_dis[o_sub] + gap)
        t_out = t_out // DAY * DAY + (rng.uniform(8, 17, len(o_sub)) * HOUR).astype(np.int64)
        u_out = self.world.strengths.u_signal * (
            self.world.strengths.rho * s["frailty"][o_sub] + rng.normal(0, 0.6, len(o_sub))
        )

        n_in = len(t)
        t = np.concatenate([t, t_out]) // 60 * 60
        u_all = np.concatenate([u_t, u_out])
        c_all = np.concatenate([c, s["c"][o_sub]])
        re_all = np.concatenate([re, np.zeros((len(o_sub), len(LABS)))])
        hadm = np.concatenate([a["hadm_id"][own], np.zeros(len(o_sub), np.int64)])
        has_hadm = np.concatenate([~null_hadm, np.zeros(len(o_sub), bool)])
        subject_id = np.concatenate([a["subject_id"][own], s["subject_id"][o_sub]])
        kind = np.concatenate([kind, np.full(len(o_sub), 3, np.int8)])  # 0 ED/adm, 1 daily, 2 ICU, 3 outpatient
        nd = len(t)

        # Which panels each draw has: sicker patients get coagulation, liver panel and lactate more often.
        inpatient = kind < 3
        p = np.zeros((nd, len(PANELS)))
        p[:, 0] = np.where(inpatient, 0.95, 0.8)
        p[:, 1] = p[:, 0] * 0.7
        p[:, 2] = np.where(inpatient, 0.85, 0.6)
        p[:, 3] = np.where(inpatient, sigmoid(-0.6 + 0.7 * u_all), 0.15)
        p[:, 4] = np.where(inpatient, sigmoid(-1.0 + 0.6 * u_all), 0.25)
        p[:, 5] = np.select(
            [kind == 2, kind == 0, kind == 1],
            [sigmoid(-0.2 + 0.9 * u_all), sigmoid(-1.0 + 0.9 * u_all), sigmoid(-2.5 + 0.8 * u_all)],
            0.0,
        )
        has_panel = rng.random((nd, len(PANELS))) < p
        panel_of = np.array([PANELS.index(lab.panel) for lab in LABS])
        include = has_panel[:, panel_of]  # (draws, labs)

        # Values for every (draw, lab), then keep the included cells.
        beta = np.array([lab.beta for lab in LABS])
        z = beta[None, :] * u_all[:, None] + re_all + rng.normal(0, 0.6, (nd, len(LABS)))
        mean = np.array([lab.mean for lab in LABS])
        sd = np.array([lab.sd for lab in LABS])
        off = np.array([lab.c_offset for lab in LABS]) * self.world.strengths.c_marks
        is_log = np.array([lab.log for lab in LABS])
        shift = off[None, :] * c_all[:, None]
        val = np.where(is_log[None, :], np.exp(np.log(mean)[None, :] + sd[None, :] * z + shift), mean + sd * z + shift)
        j = _LAB_INDEX
        val[:, j[50868]] = val[:, j[50983]] - val[:, j[50902]] - val[:, j[50882]] + rng.normal(0, 1.0, nd)
        val[:, j[51221]] = 3.0 * val[:, j[51222]] + rng.normal(0, 1.0, nd)
        lo = np.array([lab.lo for lab in LABS])
        hi = np.array([lab.hi for lab in LABS])
        dec = np.array([lab.dec for lab in LABS])
        val = np.clip(val, lo, hi)
        val = np.round(val * 10.0**dec) / 10.0**dec

        d_idx, l_idx = np.nonzero(include)
        n_rows = len(d_idx)
        spec = self.next_specimen_id + d_idx * len(PANELS) + panel_of[l_idx]
        self.next_specimen_id += nd * len(PANELS)
        v = val[d_idx, l_idx]
        ref_lo = np.array([lab.ref_lo for lab in LABS])[l_idx]
        ref_hi = np.array([lab.ref_hi for lab in LABS])[l_idx]
        num = pl.Series("v", v)
        value_text = pl.select(
            pl.when(pl.Series(dec[l_idx] == 0))
            .then(num.round(0).cast(pl.Int64).cast(pl.Utf8))
            .otherwise(num.round(1).cast(pl.Utf8))
        ).to_series()
        redacted = pl.Series(rng.random(n_rows) < 0.015)  # MIMIC shows some results as "___", number in valuenum
        pri_code = np.where(kind[d_idx] == 3, 0, np.where((kind[d_idx] == 1) & (rng.random(n_rows) < 0.7), 1, 2))
        provider = np.where(rng.random(n_rows) < 0.15, rng.integers(0, len(PROVIDERS), n_rows), -1)
        uom_idx = l_idx
        df = pl.DataFrame(
            [
                pl.Series("subject_id", subject_id[d_idx]),
                nullable("hadm_id", hadm[d_idx], has_hadm[d_idx]),
                pl.Series("specimen_id", spec),
                pl.Series("itemid", np.array([lab.itemid for lab in LABS])[l_idx]),
                codes("order_provider_id", provider, PROVIDERS),
                dt("charttime", t[d_idx]),
                dt("storetime", t[d_idx] + (rng.uniform(20, 150, n_rows) * 60).astype(np.int64) // 60 * 60),
                pl.select(pl.when(redacted).then(pl.lit("___")).otherwise(value_text)).to_series().alias("value"),
                value_text.alias("valuenum"),
                codes("valueuom", uom_idx, tuple(lab.uom for lab in LABS)),
                pl.Series("ref_range_lower", ref_lo),
                pl.Series("ref_range_upper", ref_hi),
                codes("flag", np.where((v < ref_lo) | (v > ref_hi), 0, -1), ("abnormal",)),
                codes("priority", pri_code - 1, ("ROUTINE", "STAT")),
                codes("comments", np.where(rng.random(n_rows) < 0.01, 0, -1), ("___",)),
            ]
        )
        if self.density == "release" and extra_rng is not None:
            extra = extra_labevents(extra_rng, a, self.next_specimen_id)
            self.next_specimen_id += extra.height
            df = pl.concat([df, extra.select(df.columns)], how="vertical")
        df = df.sort(["subject_id", "charttime", "itemid"], maintain_order=True)
        df = df.with_columns(pl.Series("labevent_id", self.next_labevent_id + np.arange(df.height)))
        self.next_labevent_id += df.height

        # First and last in-hospital values per admission (Pertinent Results of the discharge summary).
        in_adm = d_idx < n_in
        summary: dict[str, np.ndarray] = {}
        for item, name in (
            (50912, "creatinine"),
            (51301, "wbc"),
            (51222, "hemoglobin"),
            (50983, "sodium"),
            (50813, "lactate"),
        ):
            sel = in_adm & (l_idx == j[item])
            first = np.full(m, np.nan)
            last = np.full(m, np.nan)
            rows = d_idx[sel]
            rows = rows[np.lexsort((t[rows], own[rows]))]  # by admission, then time
            adm_of = own[rows]
            starts = np.flatnonzero(np.r_[True, adm_of[1:] != adm_of[:-1]])
            ends = np.r_[starts[1:], len(rows)] - 1
            first[adm_of[starts]] = val[rows[starts], j[item]]
            last[adm_of[ends]] = val[rows[ends], j[item]]
            summary[f"{name}_first"], summary[f"{name}_last"] = first, last
        return df, summary

    # -------------------------------------------------------------------------------------------- chartevents
    def chartevents(self, rng: np.random.Generator, pop, extra_rng: np.random.Generator | None = None) -> pl.DataFrame:
        a = pop.adm
        sel = np.flatnonzero(a["icu"])
        if not len(sel):
            return pl.DataFrame()
        s = self.world.strengths
        intime, outtime = a["intime"][sel], a["outtime"][sel]
        h0 = -(-intime // HOUR) * HOUR
        n_h = np.maximum(0, (outtime - h0) // HOUR + 1)
        own, pos = ragged(n_h)
        t = h0[own] + pos * HOUR
        frac = (t - intime[own]) / np.maximum(1, outtime[own] - intime[own])
        u_t = _u_path(a["u"][sel][own], frac, a["died"][sel][own], s.u_signal)
        c = a["c"][sel]
        n_s = len(sel)
        aline = rng.random(n_s) < sigmoid(-0.6 + 0.9 * a["u"][sel])
        celsius = rng.random(n_s) < 0.5 + 0.4 * np.tanh(s.c_marks) * (2 * c - 1)
        caregiver = rng.integers(10000, 99990, n_s)
        blocks: list[tuple[np.ndarray, int, np.ndarray, int]] = []  # (row owner+time index, itemid, value, dec)

        def vital(mean, sd, beta, re_sd=0.3, noise=0.5):
            re = rng.normal(0, re_sd, n_s)[own]
            return mean + sd * (beta * u_t + re + rng.normal(0, noise, len(own)))

        hr = np.clip(vital(85, 13, 0.6), 30, 200)
        sbp = np.clip(vital(120, 16, -0.5), 50, 230)
        dbp = np.clip(np.minimum(vital(65, 10, -0.4), sbp - 15), 25, 140)
        rr = np.clip(vital(18, 4, 0.6), 5, 50)
        spo2 = np.clip(vital(97, 1.8, -0.6) + 1.0 * s.c_marks * (2 * c[own] - 1) * 0.5, 70, 100)
        every = np.arange(len(own))
        nbp_rows = np.flatnonzero(~aline[own] | (pos % 4 == 0))
        blocks += [
            (every, 220045, hr, 0),
            (every, 220210, rr, 0),
            (every, 220277, spo2, 0),
            (nbp_rows, 220179, sbp[nbp_rows], 0),
            (nbp_rows, 220180, dbp[nbp_rows], 0),
            (nbp_rows, 220181, (sbp[nbp_rows] + 2 * dbp[nbp_rows]) / 3, 0),
        ]
        art = np.flatnonzero(aline[own])
        abps = sbp[art] + rng.normal(3, 4, len(art))
        abpd = dbp[art] + rng.normal(-2, 3, len(art))
        blocks += [(art, 220050, abps, 0), (art, 220051, abpd, 0), (art, 220052, (abps + 2 * abpd) / 3, 0)]
        q4 = np.flatnonzero(pos % 4 == 0)
        temp_c = np.clip(vital(37.0, 0.5, 0.5)[q4] + 0.15 * s.c_marks * c[own][q4], 33, 42)
        cel = celsius[own][q4]
        blocks += [(q4[cel], 223762, temp_c[cel], 1), (q4[~cel], 223761, temp_c[~cel] * 9 / 5 + 32, 1)]
        g4 = np.flatnonzero(pos % 4 == 2)
        g = -(0.9 * u_t[g4] + rng.normal(0, 0.3, n_s)[own][g4] + rng.normal(0, 0.5, len(g4)))
        for item, cuts in (
            (220739, (-2.2, -1.6, -1.0)),
            (223900, (-2.0, -1.5, -1.1, -0.6)),
            (223901, (-2.4, -2.1, -1.8, -1.4, -0.9)),
        ):
            blocks.append((g4, item, np.digitize(g, cuts) + 1.0, -1))
        chart = {"row": [], "item": [], "val": [], "text": [], "num": [], "t": []}
        for rows, item, val, dec in blocks:
            if dec >= 0:
                txt = _fmt(val, dec)
            else:
                txt = pl.Series(np.asarray(GCS_TEXT[item], dtype=object)[val.astype(int) - 1], dtype=pl.Utf8)
            chart["row"].append(own[rows])
            chart["t"].append(t[rows])
            chart["item"].append(np.full(len(rows), item))
            chart["text"].append(txt)
            chart["num"].append(_fmt(val, 0) if dec < 0 else txt)
        # Admission weight once, shortly after ICU admission (not on the hourly grid).
        w_t = intime + (rng.uniform(0.3, 3, n_s) * HOUR).astype(np.int64) // 60 * 60
        w = np.clip(rng.normal(80, 18, n_s), 35, 200)
        chart["row"].append(np.arange(n_s))
        chart["t"].append(w_t)
        chart["item"].append(np.full(n_s, 226512))
        w_txt = _fmt(w, 1)
        chart["text"].append(w_txt)
        chart["num"].append(w_txt)
        row = np.concatenate(chart["row"])
        tt = np.concatenate(chart["t"])
        n = len(row)
        item = np.concatenate(chart["item"])
        by_id = sorted(D_ITEMS)
        item_ids = np.array([r[0] for r in by_id])
        uoms = [r[5] for r in by_id]
        df = pl.DataFrame(
            [
                pl.Series("subject_id", a["subject_id"][sel][row]),
                pl.Series("hadm_id", a["hadm_id"][sel][row]),
                pl.Series("stay_id", a["stay_id"][sel][row]),
                pl.Series("caregiver_id", caregiver[row] + ((tt - intime[row]) // (12 * HOUR)) % 3 * 7),
                dt("charttime", tt),
                dt("storetime", tt + rng.integers(1, 45, n) * 60),
                pl.Series("itemid", item),
                pl.concat(chart["text"]).alias("value"),
                pl.concat(chart["num"]).alias("valuenum"),
                codes("valueuom", np.searchsorted(item_ids, item), tuple(uoms)),
                pl.Series("warning", np.zeros(n, np.int64)),
            ]
        )
        if self.density == "release" and extra_rng is not None:
            df = pl.concat([df, extra_chartevents(extra_rng, a, sel, caregiver).select(df.columns)], how="vertical")
        return df.sort(["subject_id", "stay_id", "charttime", "itemid"], maintain_order=True)
