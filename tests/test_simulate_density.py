"""The release-density MIMIC-IV world: real items at MIMIC-IV v3.1's densities, none of them read by a task.

``simulate mimic_iv --density release`` adds the rows of items no task reads (profiled from the vendored demo) so
that scale benchmarks parse what a real download holds. These tests check the profile is what the demo says, the
files still look like the real ones, the densities are v3.1's, and that the extra rows change no cohort output.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from medmodal.simulate import mimic_density as md
from medmodal.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dense") / "mimic"
    return simulate("mimic_iv", out, subjects=1500, seed=3, images=False, release="3.1", density="release")


def test_profiles_rederive_from_the_vendored_demo(tmp_path, mimic_demo):
    for ours in md.build_profiles(mimic_demo, tmp_path):
        assert ours.read_bytes() == (md.PROFILE_DIR / ours.name).read_bytes(), ours.name


def test_profile_items_are_real_and_never_mapped(mimic_demo):
    chart, lab = md.profiles()
    mapped = duckdb.sql(
        "SELECT itemid FROM (SELECT unnest(regexp_extract_all(content, '''(?:labevents|chartevents)'',\\s*(\\d+)', 1))"
        f" AS itemid FROM read_text('{ROOT / 'sql/mimic_iv/variable_map.sql'}'))"
    ).fetchall()
    mapped = {int(m[0]) for m in mapped}
    assert len(mapped) >= 25
    assert mapped.isdisjoint(chart.itemid.tolist()) and mapped.isdisjoint(lab.itemid.tolist())
    demo_items = set(pl.read_csv(mimic_demo / "icu/d_items.csv.gz", infer_schema_length=0)["itemid"].cast(int))
    demo_labs = set(pl.read_csv(mimic_demo / "hosp/d_labitems.csv.gz", infer_schema_length=0)["itemid"].cast(int))
    assert set(chart.itemid.tolist()) <= demo_items and set(lab.itemid.tolist()) <= demo_labs
    assert len(chart.itemid) > 1000 and len(lab.itemid) > 400  # the demo's variety, not a handful of items


def test_files_keep_the_real_layout(world, mimic_demo):
    for table in ("icu/chartevents", "hosp/labevents", "icu/d_items", "hosp/d_labitems"):
        ours = pl.read_csv(world / f"{table}.csv.gz", infer_schema_length=0)
        demo = pl.read_csv(mimic_demo / f"{table}.csv.gz", infer_schema_length=0)
        assert ours.columns == demo.columns, table
        if table.startswith(("icu/d_", "hosp/d_")):  # every dictionary row is a real one
            assert ours.join(demo, on=ours.columns, how="anti", nulls_equal=True).height == 0, table
            assert ours["itemid"].is_unique().all(), table
    charts = duckdb.sql(
        f"SELECT count(*) FILTER (WHERE valuenum IS NULL), count(*) FROM read_csv('{world}/icu/chartevents.csv.gz',"
        " types={'valuenum': 'DOUBLE', 'charttime': 'TIMESTAMP', 'storetime': 'TIMESTAMP'})"
    ).fetchall()[0]
    assert 0.3 < charts[0] / charts[1] < 0.8  # text-only rows, as most of the release's chartevents are


def test_densities_are_those_of_v31(world):
    q = lambda sql: duckdb.sql(sql).fetchall()[0]  # noqa: E731
    (adm,) = q(f"SELECT count(*) FROM read_csv('{world}/hosp/admissions.csv.gz')")
    stays, icu_hours = q(f"SELECT count(*), sum(los) * 24 FROM read_csv('{world}/icu/icustays.csv.gz')")
    (chart,) = q(f"SELECT count(*) FROM read_csv('{world}/icu/chartevents.csv.gz')")
    (lab,) = q(f"SELECT count(*) FROM read_csv('{world}/hosp/labevents.csv.gz')")
    assert stays / adm == pytest.approx(md.V31_ICU_PER_ADMISSION, abs=0.03)
    assert chart / icu_hours == pytest.approx(md.V31_CHART_PER_ICU_HOUR, rel=0.08)
    assert lab / adm == pytest.approx(md.V31_LAB_PER_ADMISSION, rel=0.1)


def test_extra_rows_change_no_cohort_output(world, tmp_path):
    """Strip every profile item from the events files: the cohort is the same, value for value."""
    stripped = tmp_path / "stripped"
    shutil.copytree(world, stripped)
    chart, lab = md.profiles()
    con = duckdb.connect()
    for table, prof in (("icu/chartevents", chart), ("hosp/labevents", lab)):
        ids = ", ".join(map(str, prof.itemid.tolist()))
        src, dst = world / f"{table}.csv.gz", stripped / f"{table}.csv.gz"
        con.execute(
            f"COPY (SELECT * FROM read_csv('{src}', all_varchar = true) WHERE CAST(itemid AS BIGINT) NOT IN ({ids}))"
            f" TO '{dst}' (HEADER, COMPRESSION gzip)"
        )
        kept = con.sql(f"SELECT count(*) FROM read_csv('{dst}')").fetchall()[0][0]
        total = con.sql(f"SELECT count(*) FROM read_csv('{src}')").fetchall()[0][0]
        assert kept < 0.6 * total, table  # most rows are items no task reads
    from medmodal.cli import app

    runner = CliRunner()
    for raw, out in ((world, tmp_path / "c_full"), (stripped, tmp_path / "c_stripped")):
        res = runner.invoke(
            app, ["cohort", "build", "mimic_iv", "--raw", str(raw), "--task", "readmission_30d", "--out", str(out)]
        )
        assert res.exit_code == 0, res.output
    for name in ("cohort", "structured", "timeseries", "modalities", "notes", "attrition"):
        a = pl.read_parquet(tmp_path / "c_full" / f"{name}.parquet")
        b = pl.read_parquet(tmp_path / "c_stripped" / f"{name}.parquet")
        assert a.height > 0 and a.sort(a.columns).equals(b.sort(b.columns)), name


def test_bad_density_is_one_line(tmp_path):
    from medmodal.cli import app

    runner = CliRunner()
    for source, density in (("mimic_iv", "dense"), ("eicu", "release")):
        res = runner.invoke(
            app, ["simulate", source, "--out", str(tmp_path / source), "--subjects", "5", "--density", density]
        )
        assert res.exit_code != 0 and "--density" in res.output and len(res.output.strip().splitlines()) == 1
        assert not (tmp_path / source).exists()
