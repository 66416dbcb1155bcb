"""MIMIC-IV world, part 4: the rows no task reads, at the density of the real release (``density="release"``).

The default world (``density="tasks"``) charts only the items a medmodal task reads: 653 chartevents rows per ICU
stay and 153 labevents rows per admission. The real release is mostly other items (alarms, nursing assessments,
ventilator settings, urine chemistries): MIMIC-IV v3.1 has 432,997,491 chartevents rows over 94,458 ICU stays
(4,584 per stay) and 158,374,764 labevents rows over 546,028 admissions (290 per admission), and 17 % of its
admissions reach an ICU. A cohort build drops those rows right after parsing, so they cost the scan and the
item filter only; a scale benchmark that leaves them out measures the wrong thing.

``density="release"`` therefore (1) lowers the chance that an admission without a label-forced ICU stay reaches
the ICU, so that ICU stays per admission are v3.1's; (2) adds chartevents rows of items outside the variable
map, a Poisson number per ICU hour, so that rows per stay are v3.1's; (3) adds labevents rows of other items, a
Poisson number per hospital day, so that rows per admission are v3.1's. The items and their relative
frequencies, value types and units come from the MIMIC-IV demo v2.2 (vendored in data/, ODbL): the item
profile files beside this module are derived from it by :func:`build_profiles` (a test re-derives them). The
extra rows use their own random streams, so the task-relevant rows of a world depend only on its population.

Values: a numeric item draws from a normal around its demo median with its demo IQR, rounded to its usual
decimals; a text item (the reconstructed demo chartevents has no text values, see data/.../SOURCE.md) takes one of
a few short assessment words. Both are realistic in length, which is what the parse cost depends on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl

from medmodal.simulate.writer import DAY, HOUR, codes, dt, nullable

DENSITIES = ("tasks", "release")  # the first is the default
PROFILE_DIR = Path(__file__).parent / "profiles"
CHART_PROFILE = PROFILE_DIR / "mimic_iv_chart_items.csv"
LAB_PROFILE = PROFILE_DIR / "mimic_iv_lab_items.csv"

# MIMIC-IV v3.1 row counts (PhysioNet release notes / the files' line counts).
V31_CHARTEVENTS = 432_997_491
V31_LABEVENTS = 158_374_764
V31_ICUSTAYS = 94_458
V31_ADMISSIONS = 546_028
V31_CHART_PER_STAY = V31_CHARTEVENTS / V31_ICUSTAYS  # 4,584
V31_LAB_PER_ADMISSION = V31_LABEVENTS / V31_ADMISSIONS  # 290
V31_ICU_PER_ADMISSION = V31_ICUSTAYS / V31_ADMISSIONS  # 0.173
# Per ICU hour: v3.1's rows per stay over the mean ICU length of stay of the demo (88.3 h over its 140 stays; the
# demo's own chartevents gives 54 rows per ICU hour). The simulator's stays are a little longer (~95 h), so its
# rows per stay come out ~8 % above v3.1's when its rows per hour match.
DEMO_ICU_LOS_HOURS = 88.3
V31_CHART_PER_ICU_HOUR = V31_CHART_PER_STAY / DEMO_ICU_LOS_HOURS  # 51.9

# Calibrated on a 20k-subject release-density world (benchmarks/simulate_scale.py --density release prints the
# densities reached): the ICU intercept for undrawn (not label-forced) admissions, and the extra rows per ICU hour
# and per hospital day that bring the simulator's own rows (about 8 chart rows per ICU hour, 25 lab rows per
# hospital day) up to v3.1's per-stay and per-admission counts.
RELEASE_ICU_INTERCEPT = -2.4
EXTRA_CHART_PER_ICU_HOUR = 44.5
EXTRA_LABS_PER_HOSPITAL_DAY = 41.0

TEXT_WORDS = ("Normal", "WNL", "Yes", "No", "Clear", "Intact", "Present", "Absent", "Regular", "Strong")


@dataclass(frozen=True)
class Profile:
    """Items of one events table with their share of rows and how their values look."""

    itemid: np.ndarray
    p: np.ndarray  # share of the extra rows
    numeric: np.ndarray  # bool: valuenum is filled
    median: np.ndarray
    iqr: np.ndarray
    decimals: np.ndarray
    uom: tuple[str | None, ...]
    null_hadm: np.ndarray  # labs: share of rows without hadm_id in the demo

    @classmethod
    def read(cls, path: Path) -> Profile:
        df = pl.read_csv(path, comment_prefix="#", infer_schema_length=None)
        rows = df["rows"].to_numpy().astype(np.float64)
        return cls(
            itemid=df["itemid"].to_numpy(),
            p=rows / rows.sum(),
            numeric=df["numeric"].to_numpy().astype(bool),
            median=df["median"].fill_null(0.0).to_numpy(),
            iqr=df["iqr"].fill_null(0.0).to_numpy(),
            decimals=df["decimals"].fill_null(0).to_numpy().astype(np.int64),
            uom=tuple(df["valueuom"].to_list()),
            null_hadm=df["null_hadm"].fill_null(0.0).to_numpy() if "null_hadm" in df.columns else np.zeros(len(df)),
        )


@cache
def profiles() -> tuple[Profile, Profile]:
    return Profile.read(CHART_PROFILE), Profile.read(LAB_PROFILE)


def dictionary_rows(table: str) -> pl.DataFrame:
    """The d_items / d_labitems rows of the profile's items as the demo writes them (text, so that a normal
    value such as 12.100000381469727 keeps its digits), for the world's dictionaries."""
    path = CHART_PROFILE if table == "d_items" else LAB_PROFILE
    df = pl.read_csv(path, comment_prefix="#", infer_schema_length=0).with_columns(pl.col("itemid").cast(pl.Int64))
    if table == "d_items":
        cols = ["itemid", "label", "abbreviation", "linksto", "category", "unitname", "param_type"]
        return df.select(*cols, "lownormalvalue", "highnormalvalue")
    return df.select("itemid", "label", "fluid", "category")


def _values(rng: np.random.Generator, prof: Profile, item: np.ndarray) -> tuple[pl.Series, pl.Series]:
    """(value, valuenum) text columns for rows of profile items ``item`` (indices into the profile)."""
    n = len(item)
    num = prof.numeric[item]
    x = prof.median[item] + prof.iqr[item] / 1.35 * rng.standard_normal(n)
    x = np.where(prof.median[item] >= 0, np.abs(x), x)
    dec = prof.decimals[item]
    scaled = np.round(x * 10.0**dec) / 10.0**dec
    as_int = pl.Series(np.round(scaled)).cast(pl.Int64).cast(pl.Utf8)
    as_dec = pl.Series(scaled).round(2).cast(pl.Utf8)
    numtxt = pl.select(pl.when(pl.Series(dec == 0)).then(as_int).otherwise(as_dec)).to_series()
    words = pl.Series(np.asarray(TEXT_WORDS, dtype=object)[rng.integers(0, len(TEXT_WORDS), n)], dtype=pl.Utf8)
    is_num = pl.Series(num)
    value = pl.select(pl.when(is_num).then(numtxt).otherwise(words)).to_series().alias("value")
    valuenum = pl.select(pl.when(is_num).then(numtxt).otherwise(None)).to_series().alias("valuenum")
    return value, valuenum


def extra_chartevents(rng: np.random.Generator, a: dict[str, np.ndarray], sel: np.ndarray, caregiver) -> pl.DataFrame:
    """Rows of non-task items for the ICU stays ``sel`` of one chunk (columns and dtypes as chartevents)."""
    chart, _ = profiles()
    intime, outtime = a["intime"][sel], a["outtime"][sel]
    hours = np.maximum(0, outtime - intime) / HOUR
    n_per = rng.poisson(EXTRA_CHART_PER_ICU_HOUR * hours)
    own = np.repeat(np.arange(len(sel)), n_per)
    n = len(own)
    t = intime[own] + (rng.random(n) * (outtime[own] - intime[own])).astype(np.int64) // 60 * 60
    item = rng.choice(len(chart.itemid), n, p=chart.p)
    value, valuenum = _values(rng, chart, item)
    return pl.DataFrame(
        [
            pl.Series("subject_id", a["subject_id"][sel][own]),
            pl.Series("hadm_id", a["hadm_id"][sel][own]),
            pl.Series("stay_id", a["stay_id"][sel][own]),
            pl.Series("caregiver_id", caregiver[own] + ((t - intime[own]) // (12 * HOUR)) % 3 * 7),
            dt("charttime", t),
            dt("storetime", t + rng.integers(1, 45, n) * 60),
            pl.Series("itemid", chart.itemid[item]),
            value,
            valuenum,
            codes("valueuom", np.where(chart.numeric[item], item, -1), chart.uom),
            pl.Series("warning", np.zeros(n, np.int64)),
        ]
    )


def extra_labevents(rng: np.random.Generator, a: dict[str, np.ndarray], next_specimen: int) -> pl.DataFrame:
    """Non-task lab rows for one chunk's admissions, one specimen each (labevents' columns but labevent_id)."""
    _, lab = profiles()
    days = np.maximum(0, a["dischtime"] - a["admittime"]) / DAY
    n_per = rng.poisson(EXTRA_LABS_PER_HOSPITAL_DAY * days)
    own = np.repeat(np.arange(len(days)), n_per)
    n = len(own)
    span = a["dischtime"][own] - a["admittime"][own]
    t = a["admittime"][own] + (rng.random(n) * span).astype(np.int64) // 60 * 60
    item = rng.choice(len(lab.itemid), n, p=lab.p)
    value, valuenum = _values(rng, lab, item)
    none = np.full(n, -1)
    return pl.DataFrame(
        [
            pl.Series("subject_id", a["subject_id"][own]),
            nullable("hadm_id", a["hadm_id"][own], rng.random(n) >= lab.null_hadm[item]),
            pl.Series("specimen_id", next_specimen + np.arange(n, dtype=np.int64)),
            pl.Series("itemid", lab.itemid[item]),
            codes("order_provider_id", none, ()),
            dt("charttime", t),
            dt("storetime", t + (rng.uniform(20, 150, n) * 60).astype(np.int64) // 60 * 60),
            value,
            valuenum,
            codes("valueuom", np.where(lab.numeric[item], item, -1), lab.uom),
            pl.Series("ref_range_lower", np.full(n, np.nan)).fill_nan(None),
            pl.Series("ref_range_upper", np.full(n, np.nan)).fill_nan(None),
            codes("flag", none, ("abnormal",)),
            codes("priority", np.zeros(n, np.int64), ("ROUTINE", "STAT")),
            codes("comments", none, ("___",)),
        ]
    )


# ------------------------------------------------------------------------------------------- profile building
def _used_itemids(repo_root: Path) -> set[int]:
    """Itemids the simulator writes itself or the variable map reads: never part of the extra rows."""
    from medmodal.simulate.mimic_events import D_ITEMS, DICTIONARY_ONLY_ITEMS, DICTIONARY_ONLY_LABS, LABS

    used = {lab.itemid for lab in LABS} | {r[0] for r in D_ITEMS + DICTIONARY_ONLY_ITEMS}
    used |= {r[0] for r in DICTIONARY_ONLY_LABS}
    vm = (repo_root / "sql" / "mimic_iv" / "variable_map.sql").read_text()
    used |= {int(m) for m in re.findall(r"\(\s*\d+,\s*'(?:labevents|chartevents)',\s*(\d+)", vm)}
    return used


HEADER = (
    "# Derived from the MIMIC-IV Clinical Database Demo v2.2 (PhysioNet, ODbL 1.0; data/mimic-iv-demo-2.2) by\n"
    "# medmodal.simulate.mimic_density.build_profiles: per item no medmodal task reads, its rows in the demo, the\n"
    "# share with a numeric value, the median and IQR of those values, their usual decimals and unit, and the\n"
    "# item's dictionary row. Regenerate: python -m medmodal.simulate.mimic_density data/mimic-iv-demo-2.2\n"
)


# Per item of an events table: rows, numeric share, median / IQR / usual decimals of valuenum, unit.
_ITEM_STATS = """
    count(*) AS rows,
    round(count(valuenum) / count(*), 4) >= 0.5 AS numeric,
    round(quantile_cont(valuenum, 0.5), 3) AS median,
    round(quantile_cont(valuenum, 0.75) - quantile_cont(valuenum, 0.25), 3) AS iqr,
    CAST(least(2, coalesce(mode(CASE WHEN valuenum IS NULL THEN NULL
         WHEN valuenum = round(valuenum) THEN 0 WHEN valuenum * 10 = round(valuenum * 10) THEN 1 ELSE 2 END), 0))
         AS INTEGER) AS decimals,
    mode(valueuom ORDER BY valueuom) AS valueuom
"""


def _profile(con, events: Path, dictionary: Path, excluded: str, extra: str, dict_cols: str) -> pl.DataFrame:
    """One table's profile: the item statistics (+ ``extra``) joined to the item's dictionary row."""
    return con.sql(f"""
        WITH stats AS (
            SELECT itemid, {_ITEM_STATS}{extra}
            FROM read_csv('{events}')
            WHERE itemid NOT IN ({excluded})
            GROUP BY itemid
        )
        SELECT s.*, {dict_cols}
        FROM stats AS s JOIN read_csv('{dictionary}', all_varchar = true) AS d ON CAST(d.itemid AS BIGINT) = s.itemid
        ORDER BY s.itemid
    """).pl()


def build_profiles(demo_root: Path, out_dir: Path = PROFILE_DIR) -> tuple[Path, Path]:
    """Write the two item profiles from a MIMIC-IV demo download (the vendored one is the reference)."""
    import duckdb

    repo_root = Path(__file__).resolve().parent.parent
    excluded = ", ".join(str(i) for i in sorted(_used_itemids(repo_root)))
    con = duckdb.connect()
    con.execute("SET threads = 1")  # fixed float summation order: the derived file is byte-stable
    chart_df = _profile(
        con,
        demo_root / "icu" / "chartevents.csv.gz",
        demo_root / "icu" / "d_items.csv.gz",
        excluded,
        "",
        "d.label, d.abbreviation, d.linksto, d.category, d.unitname, d.param_type, d.lownormalvalue, d.highnormalvalue",
    )
    lab_df = _profile(
        con,
        demo_root / "hosp" / "labevents.csv.gz",
        demo_root / "hosp" / "d_labitems.csv.gz",
        excluded,
        ", round(count(*) FILTER (WHERE hadm_id IS NULL) / count(*), 4) AS null_hadm",
        "d.label, d.fluid, d.category",
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (out_dir / CHART_PROFILE.name, out_dir / LAB_PROFILE.name)
    for df, path in zip((chart_df, lab_df), paths, strict=True):
        path.write_text(HEADER + df.write_csv())
    return paths


if __name__ == "__main__":
    import sys

    for p in build_profiles(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else PROFILE_DIR):
        print(p)
