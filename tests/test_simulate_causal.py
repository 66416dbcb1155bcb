"""The causal model holds in what the simulator writes: labels in the raw files are the SCM's draws, each
environment's C relations have the sign it promises while U's stay, for every simulated source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression

from medmodal.simulate import ENVIRONMENTS, simulate
from medmodal.simulate.mimic_population import draw_population
from medmodal.simulate.scm import Strengths, World, get_environment, stream


def _coef(u: np.ndarray, c: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Logistic regression y ~ U + (2C - 1) without penalty: (coef of U, coef of the C term)."""
    x = np.column_stack([u, 2.0 * c - 1.0])
    m = LogisticRegression(C=1e6, max_iter=1000).fit(x, y)
    return float(m.coef_[0][0]), float(m.coef_[0][1])


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("envs")
    return {
        env: simulate("mimic_iv", root / env, subjects=1000, seed=3, environment=env, images=False)
        for env in ("train", "shifted")
    }


def _population_truth(env: str, n: int = 2000) -> pl.DataFrame:
    """The same SCM draws truth.parquet is written from, without writing files (for the other environments)."""
    pop = draw_population(World(Strengths(), get_environment(env)), stream(3, "test", env), np.arange(n))
    a = pop.adm
    index = (a["kind"] == 0) & ~a["died"]
    return pl.DataFrame(
        {
            "U": a["u"],
            "C": a["c"],
            "order_cxr": a["order_cxr"],
            "encounter_kind": np.where(a["kind"] == 0, "index", "other"),
            "y_readmission_30d": pl.Series(a["y_readmission_30d"].astype(np.int8)).set(pl.Series(~index), None),
            "risk_readmission_30d": a["risk_readmission_30d"],
        }
    )


def test_labels_in_raw_files_are_the_scm_draws(worlds):
    root = worlds["train"]
    adm = pl.read_csv(root / "hosp/admissions.csv.gz", try_parse_dates=True)
    icu = pl.read_csv(root / "icu/icustays.csv.gz", try_parse_dates=True)
    truth = pl.read_parquet(root / "truth.parquet")
    index = truth.filter(pl.col("encounter_kind") == "index").join(adm, on=["subject_id", "hadm_id"])
    other = adm.rename({"admittime": "t2", "hadm_id": "h2"}).select("subject_id", "h2", "t2")
    readm = (
        index.join(other, on="subject_id")
        .filter(pl.col("h2") != pl.col("hadm_id"))
        .group_by("hadm_id")
        .agg(
            ((pl.col("t2") > pl.col("dischtime")) & (pl.col("t2") <= pl.col("dischtime") + pl.duration(days=30)))
            .any()
            .alias("r")
        )
    )
    icu90 = (
        index.join(icu.select("subject_id", pl.col("intime").alias("i2")), on="subject_id")
        .group_by("hadm_id")
        .agg(
            ((pl.col("i2") > pl.col("dischtime")) & (pl.col("i2") <= pl.col("dischtime") + pl.duration(days=90)))
            .any()
            .alias("i")
        )
    )
    alive = (
        index.join(readm, on="hadm_id", how="left")
        .join(icu90, on="hadm_id", how="left")
        .filter(pl.col("hospital_expire_flag") == 0)
        .with_columns(pl.col("r", "i").fill_null(False))
    )
    assert alive.height > 800
    assert (alive["r"].cast(pl.Int8) == alive["y_readmission_30d"]).all()
    assert (alive["i"].cast(pl.Int8) == alive["y_icu_admission_90d"]).all()
    stays = truth.filter(pl.col("stay_id").is_not_null()).join(adm, on="hadm_id")
    assert (stays["hospital_expire_flag"] == stays["y_in_hospital_mortality"]).all()


@pytest.mark.parametrize("env", list(ENVIRONMENTS))
def test_environment_sets_c_relations_and_keeps_u(worlds, env):
    e = get_environment(env)
    s = Strengths()
    t = pl.read_parquet(worlds[env] / "truth.parquet") if env in worlds else _population_truth(env)
    index = t.filter((pl.col("encounter_kind") == "index") & pl.col("y_readmission_30d").is_not_null())
    b_u, b_c = _coef(index["U"].to_numpy(), index["C"].to_numpy(), index["y_readmission_30d"].to_numpy())
    assert abs(b_u - s.u_outcome) < 0.35, (env, b_u)
    assert abs(b_c - e.outcome_sign * s.c_outcome) < 0.35, (env, b_c)
    o_u, o_c = _coef(t["U"].to_numpy(), t["C"].to_numpy(), t["order_cxr"].to_numpy())
    assert abs(o_u - s.u_order) < 0.3, (env, o_u)
    assert abs(o_c - e.order_sign * s.c_order) < 0.3, (env, o_c)
    # the causal risk ignores C in every environment: same U -> same risk
    assert np.allclose(index["risk_readmission_30d"], 1 / (1 + np.exp(-(-1.95 + s.u_outcome * index["U"].to_numpy()))))


def test_missingness_is_informative_in_truth(worlds):
    """Outcome rate differs across ordering patterns (through U in every env, through C where it acts)."""
    for env, margin in (("train", 0.12), ("shifted", 0.12), ("decoupled", 0.05)):
        t = pl.read_parquet(worlds[env] / "truth.parquet") if env in worlds else _population_truth(env)
        t = t.filter(pl.col("y_readmission_30d").is_not_null())
        rates = t.group_by("order_cxr").agg(pl.col("y_readmission_30d").mean()).sort("order_cxr")["y_readmission_30d"]
        assert rates[1] - rates[0] > margin, (env, rates.to_list())


@pytest.mark.parametrize(
    "source,outcome,key", [("eicu", "icu_mortality", "patientunitstayid"), ("adni", "conversion_24m", "RID")]
)
def test_other_sources_follow_the_environment(tmp_path, source, outcome, key):
    """eICU and ADNI wire the same equations: prob = sigmoid(a + s_U U + sign(e) s_C (2C - 1))."""
    s = Strengths()
    for env in ("train", "shifted"):
        t = pl.read_parquet(simulate(source, tmp_path / env, subjects=150, seed=1, environment=env) / "truth.parquet")
        t = t.filter(pl.col(f"prob_{outcome}").is_not_null())
        logit_gap = np.log(t[f"prob_{outcome}"] / (1 - t[f"prob_{outcome}"])) - np.log(
            t[f"risk_{outcome}"] / (1 - t[f"risk_{outcome}"])
        )
        expected = get_environment(env).outcome_sign * s.c_outcome * (2 * t["C"].to_numpy() - 1)
        assert np.allclose(logit_gap.to_numpy(), expected)
        assert t[f"y_{outcome}"].mean() > 0.05


def test_world_equations():
    w = World(Strengths(c_outcome=0.5), ENVIRONMENTS["shifted"])
    p, r = w.outcome(-1.0, np.array([0.0, 0.0]), np.array([0, 1]))
    assert np.allclose(r, 1 / (1 + np.exp(1.0)))
    assert np.allclose(np.log(p / (1 - p)), [-1.0 + 0.5, -1.0 - 0.5])
    d = World(Strengths(), ENVIRONMENTS["decoupled"])
    assert np.allclose(d.propensity(0.3, np.zeros(2), np.array([0, 1])), 1 / (1 + np.exp(-0.3)))
