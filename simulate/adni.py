"""Simulated ADNIMERGE.csv: one row per (RID, VISCODE) in ADNIMERGE's 116-column schema.

The SCM with ADNI's meaning of U and C:

- U: severity within the baseline diagnosis, which sets a latent disease **stage** s(t) (s < 0 CN, 0 <= s < 1
  MCI, s >= 1 Dementia). Cognitive scores, MRI volumes, PET and CSF all read s(t); DX follows it.
- C: the acquisition site group. C = 1 sites scan at 3 T with FreeSurfer 6.0, C = 0 at 1.5 T with FreeSurfer 5.1
  (the marks: FLDSTRENG / FSVERSION and a few-percent volume offset between field strengths).
- ``conversion_24m`` (MCI at baseline -> Dementia at a visit within 24 months) is drawn from the SCM's outcome
  equation, and the stage trajectory is built to cross the dementia threshold at the drawn visit.
- Missing not at random: amyloid PET and the lumbar puncture (CSF) are done with SCM propensities in U and C;
  sicker subjects drop out of follow-up more often.
CSF values outside the assay range are censored as text (ABETA ">1700", TAU "<80", PTAU "<8").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from medmodal.simulate.base import SIMULATORS, SimConfig
from medmodal.simulate.scm import World, sigmoid, stream
from medmodal.simulate.writer import DAY, Writers, nullable, pick, year_start

CHUNK_SUBJECTS = 2000
A_CONVERSION_24M = -0.9  # ~35 % of MCI subjects convert within 24 months at the default strengths
B_PET, B_CSF = 0.3, -0.3
VISITS = (("bl", 0), ("m06", 6), ("m12", 12), ("m18", 18), ("m24", 24), ("m36", 36), ("m48", 48))

# The 116 columns in ADNIMERGE order (kept here so the package needs no schema file at run time;
# tests/test_simulate_eicu_adni.py checks them against the published column list when it is at hand).
COLUMNS = (
    "RID",
    "COLPROT",
    "ORIGPROT",
    "PTID",
    "SITE",
    "VISCODE",
    "EXAMDATE",
    "DX_bl",
    "AGE",
    "PTGENDER",
    "PTEDUCAT",
    "PTETHCAT",
    "PTRACCAT",
    "PTMARRY",
    "APOE4",
    "FDG",
    "PIB",
    "AV45",
    "FBB",
    "ABETA",
    "TAU",
    "PTAU",
    "CDRSB",
    "ADAS11",
    "ADAS13",
    "ADASQ4",
    "MMSE",
    "RAVLT_immediate",
    "RAVLT_learning",
    "RAVLT_forgetting",
    "RAVLT_perc_forgetting",
    "LDELTOTAL",
    "DIGITSCOR",
    "TRABSCOR",
    "FAQ",
    "MOCA",
    "EcogPtMem",
    "EcogPtLang",
    "EcogPtVisspat",
    "EcogPtPlan",
    "EcogPtOrgan",
    "EcogPtDivatt",
    "EcogPtTotal",
    "EcogSPMem",
    "EcogSPLang",
    "EcogSPVisspat",
    "EcogSPPlan",
    "EcogSPOrgan",
    "EcogSPDivatt",
    "EcogSPTotal",
    "FLDSTRENG",
    "FSVERSION",
    "IMAGEUID",
    "Ventricles",
    "Hippocampus",
    "WholeBrain",
    "Entorhinal",
    "Fusiform",
    "MidTemp",
    "ICV",
    "DX",
    "mPACCdigit",
    "mPACCtrailsB",
    "EXAMDATE_bl",
    "CDRSB_bl",
    "ADAS11_bl",
    "ADAS13_bl",
    "ADASQ4_bl",
    "MMSE_bl",
    "RAVLT_immediate_bl",
    "RAVLT_learning_bl",
    "RAVLT_forgetting_bl",
    "RAVLT_perc_forgetting_bl",
    "LDELTOTAL_BL",
    "DIGITSCOR_bl",
    "TRABSCOR_bl",
    "FAQ_bl",
    "mPACCdigit_bl",
    "mPACCtrailsB_bl",
    "FLDSTRENG_bl",
    "FSVERSION_bl",
    "IMAGEUID_bl",
    "Ventricles_bl",
    "Hippocampus_bl",
    "WholeBrain_bl",
    "Entorhinal_bl",
    "Fusiform_bl",
    "MidTemp_bl",
    "ICV_bl",
    "MOCA_bl",
    "EcogPtMem_bl",
    "EcogPtLang_bl",
    "EcogPtVisspat_bl",
    "EcogPtPlan_bl",
    "EcogPtOrgan_bl",
    "EcogPtDivatt_bl",
    "EcogPtTotal_bl",
    "EcogSPMem_bl",
    "EcogSPLang_bl",
    "EcogSPVisspat_bl",
    "EcogSPPlan_bl",
    "EcogSPOrgan_bl",
    "EcogSPDivatt_bl",
    "EcogSPTotal_bl",
    "ABETA_bl",
    "TAU_bl",
    "PTAU_bl",
    "FDG_bl",
    "PIB_bl",
    "AV45_bl",
    "FBB_bl",
    "Years_bl",
    "Month_bl",
    "Month",
    "M",
    "update_stamp",
)
# (column, value at stage 0, change per stage unit, noise sd, low, high, decimals): cognition worsens with stage
SCORES = (
    ("CDRSB", 0.5, 3.0, 0.7, 0, 18, 1),
    ("ADAS11", 6, 9, 2.5, 0, 70, 2),
    ("ADAS13", 10, 13, 3.5, 0, 85, 2),
    ("ADASQ4", 3, 3.5, 1.2, 0, 10, 0),
    ("MMSE", 28, -4.5, 1.3, 0, 30, 0),
    ("RAVLT_immediate", 40, -12, 6, 0, 75, 0),
    ("RAVLT_learning", 5, -2.5, 1.8, -5, 14, 0),
    ("RAVLT_forgetting", 4, 1.0, 2.0, -5, 15, 0),
    ("RAVLT_perc_forgetting", 45, 25, 20, -100, 100, 4),
    ("LDELTOTAL", 11, -6, 2.5, 0, 25, 0),
    ("DIGITSCOR", 42, -10, 7, 0, 80, 0),
    ("TRABSCOR", 90, 60, 30, 0, 300, 0),
    ("FAQ", 1, 8, 3, 0, 30, 0),
    ("MOCA", 25, -5, 2, 0, 30, 0),
    ("mPACCdigit", -1, -7, 2, -40, 5, 4),
    ("mPACCtrailsB", -1, -7, 2, -40, 5, 4),
)
ECOG = ("Mem", "Lang", "Visspat", "Plan", "Organ", "Divatt")
# FreeSurfer volumes (mm^3): (column, at stage 0, relative change per stage, relative noise)
VOLUMES = (
    ("Ventricles", 36000, 0.25, 0.3),
    ("Hippocampus", 6900, -0.12, 0.1),
    ("WholeBrain", 1_010_000, -0.03, 0.08),
    ("Entorhinal", 3500, -0.14, 0.13),
    ("Fusiform", 17500, -0.06, 0.1),
    ("MidTemp", 19500, -0.07, 0.1),
)


def _subjects(world: World, rng: np.random.Generator, k: np.ndarray) -> dict[str, np.ndarray]:
    n = len(k)
    env = world.environment.index
    c = (rng.random(n) < world.strengths.p_c).astype(np.int64)
    group = rng.choice(3, n, p=(0.35, 0.45, 0.20))  # CN, MCI, Dementia at baseline
    u = rng.standard_normal(n)
    s0 = np.select([group == 0, group == 1], [-0.8 + 0.3 * u, 0.45 + 0.2 * u], 1.4 + 0.3 * u)
    s0 = np.select([group == 0, group == 1], [np.minimum(s0, -0.05), np.clip(s0, 0.02, 0.95)], np.maximum(s0, 1.02))
    p_conv, r_conv = world.outcome(A_CONVERSION_24M, u, c)
    convert = (group == 1) & (rng.random(n) < p_conv)
    conv_month = np.where(
        convert, rng.choice((6, 12, 18, 24), n), np.where(rng.random(n) < 0.35, rng.choice((36, 48), n), 10_000)
    )
    # stage slope (per month): converters reach s = 1 at conv_month; others drift slowly
    slope = np.where(
        group == 1,
        np.where(conv_month < 10_000, (1.0 - s0 + 0.01) / conv_month, (0.97 - s0) / 60.0),
        np.where(group == 0, np.where(rng.random(n) < 0.1, 1.0 / 36, 0.002), 0.02 + 0.01 * u),
    )
    site = np.where(c == 1, rng.integers(2, 60, n) * 2, rng.integers(2, 60, n) * 2 + 1)
    first_year = rng.integers(2005, 2019, n)
    colprot = np.select(
        [first_year < 2009, first_year < 2011, first_year < 2016], ["ADNI1", "ADNIGO", "ADNI2"], "ADNI3"
    )
    apoe = np.minimum(2, rng.poisson(np.select([group == 0, group == 1], [0.3, 0.6], 0.9)))
    return {
        "k": k,
        "RID": 100_000 + env * 1_000_000 + k,
        "c": c,
        "group": group,
        "u": u,
        "s0": s0,
        "slope": slope,
        "prob_conversion_24m": np.where(group == 1, p_conv, np.nan),
        "risk_conversion_24m": np.where(group == 1, r_conv, np.nan),
        "y_conversion_24m": np.where(group == 1, (conv_month <= 24).astype(np.int8), -1).astype(np.int8),
        "site": site,
        "colprot": colprot,
        "apoe": apoe,
        "start": year_start(first_year) + (rng.uniform(0, 360, n) * DAY).astype(np.int64),
        "age": np.round(rng.normal(73, 7, n), 1),
        "gender": pick(rng, ("Male", "Female"), (0.53, 0.47), n),
        "educ": np.clip(np.round(rng.normal(16, 2.8, n)), 6, 20).astype(np.int64),
        "eth": pick(rng, ("Not Hisp/Latino", "Hisp/Latino", "Unknown"), (0.94, 0.04, 0.02), n),
        "race": pick(
            rng,
            ("White", "Black", "Asian", "More than one", "Am Indian/Alaskan", "Unknown"),
            (0.9, 0.04, 0.025, 0.02, 0.005, 0.01),
            n,
        ),
        "marry": pick(
            rng, ("Married", "Widowed", "Divorced", "Never married", "Unknown"), (0.74, 0.12, 0.09, 0.04, 0.01), n
        ),
        "dx_bl": np.select(
            [group == 0, group == 1],
            [np.where(rng.random(n) < 0.15, "SMC", "CN"), np.where(u > 0, "LMCI", "EMCI")],
            "AD",
        ),
    }


def _visits(world: World, rng: np.random.Generator, s: dict[str, np.ndarray]):
    """Visit rows (not yet with EXAMDATE / *_bl columns) and, per row, the stage and the PET / CSF draws."""
    n = len(s["k"])
    months = np.array([m for _, m in VISITS])
    # follow-up until dropout; ADNI1 had m18, later protocols skip it; sicker subjects drop out sooner
    drop = rng.random((n, len(VISITS))) < sigmoid(-2.6 + 0.8 * np.maximum(s["s0"], 0))[:, None]
    drop[:, 0] = False
    alive = np.cumprod(~drop, axis=1).astype(bool)
    alive[:, 3] &= s["colprot"] == "ADNI1"
    sub, vis = np.nonzero(alive)
    m = len(sub)
    month = months[vis]
    stage = s["s0"][sub] + s["slope"][sub] * month
    cs = world.strengths.c_marks
    cols: dict[str, object] = {}
    cols["RID"] = s["RID"][sub]
    cols["COLPROT"] = s["colprot"][sub]
    cols["ORIGPROT"] = s["colprot"][sub]
    cols["SITE"] = s["site"][sub]
    cols["PTID"] = np.array([f"{int(a):03d}_S_{int(b)}" for a, b in zip(s["site"][sub], s["RID"][sub])], dtype=object)
    cols["VISCODE"] = np.array([v for v, _ in VISITS], dtype=object)[vis]
    exam = s["start"][sub] + (month * 30.44 * DAY).astype(np.int64) + (rng.integers(-14, 15, m) * DAY)
    for key, src in (
        ("DX_bl", "dx_bl"),
        ("AGE", "age"),
        ("PTGENDER", "gender"),
        ("PTEDUCAT", "educ"),
        ("PTETHCAT", "eth"),
        ("PTRACCAT", "race"),
        ("PTMARRY", "marry"),
        ("APOE4", "apoe"),
    ):
        cols[key] = s[src][sub]
    noise = lambda sd: rng.normal(0, sd, m)  # noqa: E731
    sig = world.strengths.u_signal * np.maximum(stage, -1.0)
    # Which costly measurements a visit gets: missing not at random (U via stage, C via site group).
    u_v = s["u"][sub]
    c_v = s["c"][sub]
    prop_pet = world.propensity(B_PET, u_v, c_v) * (vis % 2 == 0)
    prop_csf = world.propensity(B_CSF, u_v, c_v) * np.isin(vis, (0, 2, 4))
    pet = rng.random(m) < prop_pet
    csf = rng.random(m) < prop_csf
    mri = rng.random(m) < 0.85
    cols["FDG"] = np.where(pet & (rng.random(m) < 0.7), np.round(1.3 - 0.12 * sig + noise(0.07), 5), np.nan)
    cols["PIB"] = np.where(
        pet & (s["colprot"][sub] == "ADNI1") & (rng.random(m) < 0.2), np.round(1.5 + 0.4 * sig + noise(0.2), 4), np.nan
    )
    amyloid = pet & (s["colprot"][sub] != "ADNI1")
    use_fbb = s["colprot"][sub] == "ADNI3"
    cols["AV45"] = np.where(amyloid & ~use_fbb, np.round(1.1 + 0.2 * sig + noise(0.1), 4), np.nan)
    cols["FBB"] = np.where(amyloid & use_fbb, np.round(1.1 + 0.18 * sig + noise(0.1), 4), np.nan)
    abeta = 1100 - 350 * sig + noise(250)
    tau = 250 + 80 * sig + noise(60)
    ptau = 23 + 9 * sig + noise(6)
    cols["ABETA"] = np.where(
        csf, np.where(abeta > 1700, ">1700", np.where(abeta < 200, "<200", np.round(abeta, 1).astype(str))), None
    )
    cols["TAU"] = np.where(
        csf, np.where(tau < 80, "<80", np.where(tau > 1300, ">1300", np.round(tau, 2).astype(str))), None
    )
    cols["PTAU"] = np.where(
        csf, np.where(ptau < 8, "<8", np.where(ptau > 120, ">120", np.round(ptau, 2).astype(str))), None
    )
    for name, at0, per, sd, lo, hi, dec in SCORES:
        v = np.clip(at0 + per * sig + noise(sd), lo, hi)
        missing = rng.random(m) < (0.05 if name not in ("MOCA", "mPACCtrailsB") else 0.25)
        cols[name] = np.where(missing, np.nan, np.round(v, dec))
    for who, base in (("Pt", 1.6), ("SP", 1.3)):
        has = (rng.random(m) < 0.7) & (s["colprot"][sub] != "ADNI1")
        parts = []
        for domain in ECOG:
            v = np.clip(base + (0.25 if who == "Pt" else 0.6) * np.maximum(sig, 0) + noise(0.35), 1, 4)
            cols[f"Ecog{who}{domain}"] = np.where(has, np.round(v, 4), np.nan)
            parts.append(v)
        cols[f"Ecog{who}Total"] = np.where(has, np.round(np.mean(parts, axis=0), 5), np.nan)
    three_t = rng.random(m) < 0.5 + 0.45 * np.tanh(cs) * (2 * c_v - 1)
    cols["FLDSTRENG"] = np.where(mri, np.where(three_t, "3 Tesla MRI", "1.5 Tesla MRI"), None)
    cols["FSVERSION"] = np.where(
        mri, np.where(three_t, "Cross-Sectional FreeSurfer (6.0)", "Cross-Sectional FreeSurfer (5.1)"), None
    )
    cols["IMAGEUID"] = np.where(mri, 1_000_000 + s["RID"][sub] * 10 + vis, np.nan)
    icv = np.exp(rng.normal(np.log(1_500_000), 0.1, n))[sub]
    for name, at0, rel, rel_sd in VOLUMES:
        v = (
            at0
            * (icv / 1_500_000)
            * (1 + rel * sig)
            * np.exp(noise(rel_sd * 0.3))
            * (1 + 0.03 * cs * np.where(three_t, 1, -1))
        )
        cols[name] = np.where(mri, np.round(v, 0), np.nan)
    cols["ICV"] = np.where(mri, np.round(icv), np.nan)
    dx = np.select([stage < 0, stage < 1], ["CN", "MCI"], "Dementia")
    cols["DX"] = np.where(rng.random(m) < 0.03, None, dx)
    df = pl.DataFrame(
        {k: (v.tolist() if isinstance(v, np.ndarray) and v.dtype == object else v) for k, v in cols.items()},
        strict=False,
    )
    df = df.with_columns(pl.Series("_exam", exam), pl.Series("_month", month), pl.Series("_sub", sub))
    return df, stage, prop_pet, prop_csf, pet, csf


def _finish(df: pl.DataFrame) -> pl.DataFrame:
    """Add EXAMDATE, the *_bl copies of the baseline visit, and the time-since-baseline columns."""
    df = df.with_columns(pl.from_epoch(pl.col("_exam"), time_unit="s").dt.date().alias("EXAMDATE"))
    bl = df.filter(pl.col("VISCODE") == "bl")
    bl_map = {"EXAMDATE_bl": "EXAMDATE", "LDELTOTAL_BL": "LDELTOTAL"}
    for col in COLUMNS:
        if col.endswith(("_bl", "_BL")) and col not in bl_map and col not in ("DX_bl", "Years_bl", "Month_bl"):
            bl_map[col] = col[:-3]
    bl = bl.select([pl.col("RID")] + [pl.col(src).alias(dst) for dst, src in bl_map.items()])
    df = df.join(bl, on="RID", how="left")
    years = (pl.col("EXAMDATE") - pl.col("EXAMDATE_bl")).dt.total_days() / 365.25
    df = df.with_columns(
        years.round(5).alias("Years_bl"),
        (years * 12).round(5).alias("Month_bl"),
        pl.col("_month").alias("Month"),
        pl.col("_month").alias("M"),
        pl.lit("2024-01-01 00:00:00.0").alias("update_stamp"),
    )
    df = df.with_columns(pl.col(pl.Float64).fill_nan(None)).with_columns(
        pl.col("IMAGEUID", "IMAGEUID_bl").cast(pl.Int64)
    )
    return df.sort(["RID", "_month"]).select(COLUMNS)


@SIMULATORS.register("adni")
def simulate_adni(out: Path, cfg: SimConfig, progress) -> dict:
    world = cfg.world
    env = world.environment.name
    with Writers(out, {"ADNIMERGE.csv": COLUMNS}) as writers:
        truth = []
        for chunk, k0 in enumerate(range(0, cfg.subjects, CHUNK_SUBJECTS)):
            k = np.arange(k0, min(k0 + CHUNK_SUBJECTS, cfg.subjects))
            s = _subjects(world, stream(cfg.seed, "adni", env, "subjects", chunk), k)
            df, stage, prop_pet, prop_csf, pet, csf = _visits(world, stream(cfg.seed, "adni", env, "visits", chunk), s)
            sub = df["_sub"].to_numpy()
            writers.write("ADNIMERGE.csv", _finish(df))
            baseline = df["VISCODE"].to_numpy() == "bl"
            mci = s["group"][sub] == 1
            truth.append(
                pl.DataFrame(
                    [
                        pl.Series("RID", s["RID"][sub]),
                        df["VISCODE"],
                        pl.Series("U", s["u"][sub]),
                        pl.Series("stage", stage),
                        pl.Series("C", s["c"][sub].astype(np.int8)),
                        nullable("risk_conversion_24m", s["risk_conversion_24m"][sub], baseline & mci, pl.Float64),
                        nullable("prob_conversion_24m", s["prob_conversion_24m"][sub], baseline & mci, pl.Float64),
                        nullable("y_conversion_24m", s["y_conversion_24m"][sub], baseline & mci, pl.Int8),
                        pl.Series("prop_pet", prop_pet),
                        pl.Series("prop_csf", prop_csf),
                        pl.Series("order_pet", pet),
                        pl.Series("order_csf", csf),
                        pl.Series("environment", [env] * len(sub), dtype=pl.Utf8),
                    ]
                )
            )
            progress(len(k))
        rows = writers.close()
        pl.concat(truth).write_parquet(out / "truth.parquet")
    return rows
