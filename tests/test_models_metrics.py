"""Metrics against hand-computed values and scikit-learn; the vectorised bootstrap against its definition."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from medmodal.models.metrics import grouped_metrics, metrics_with_ci, point_metrics, weighted_metrics


def test_known_values_on_a_four_sample_example():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    m = point_metrics(y, p)
    assert m["auroc"] == pytest.approx(0.75)  # 3 of 4 (pos, neg) pairs ordered correctly
    assert m["auprc"] == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)  # recall steps at precision 1 and 2/3
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert m["ece"] == pytest.approx((0.1 + 0.4 + 0.65 + 0.2) / 4)  # one sample per bin


def test_perfect_and_inverted_rankings():
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert point_metrics(y, p)["auroc"] == 1.0 and point_metrics(y, p)["auprc"] == 1.0
    assert point_metrics(y, 1 - p)["auroc"] == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_vectorised_metrics_equal_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(200) < 0.3).astype(int)
    p = np.round(rng.random(200) * 0.6 + 0.3 * y, 1)  # heavy ties
    v = weighted_metrics(np.ones((1, 200)), y, p)
    assert v["auroc"][0] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert v["auprc"][0] == pytest.approx(average_precision_score(y, p), abs=1e-12)
    P = rng.dirichlet(np.ones(3), size=200)
    yc = rng.integers(0, 3, 200)
    vc = weighted_metrics(np.ones((1, 200)), yc, P)
    assert vc["auroc"][0] == pytest.approx(roc_auc_score(yc, P, multi_class="ovr", average="macro"), abs=1e-12)
    assert vc["auprc"][0] == pytest.approx(point_metrics(yc, P)["auprc"], abs=1e-12)


def test_bootstrap_weights_mean_duplicated_rows():
    """A resample is a multiset: weights W must give sklearn's value on the rows repeated W times."""
    rng = np.random.default_rng(0)
    y = (rng.random(60) < 0.4).astype(int)
    p = np.round(rng.random(60), 2)
    W = rng.integers(0, 4, size=(5, 60)).astype(float)
    v = weighted_metrics(W, y, p)
    for r in range(5):
        yy, pp = np.repeat(y, W[r].astype(int)), np.repeat(p, W[r].astype(int))
        assert v["auroc"][r] == pytest.approx(roc_auc_score(yy, pp), abs=1e-12)
        assert v["auprc"][r] == pytest.approx(average_precision_score(yy, pp), abs=1e-12)
        assert v["brier"][r] == pytest.approx(np.mean((pp - yy) ** 2), abs=1e-12)


def test_bootstrap_intervals_are_seeded_and_sensible():
    rng = np.random.default_rng(1)
    y = (rng.random(400) < 0.2).astype(int)
    p = np.clip(0.2 + 0.3 * y + 0.2 * rng.normal(size=400), 0, 1)
    a = metrics_with_ci(y, p, n_boot=300, seed=5)
    assert a == metrics_with_ci(y, p, n_boot=300, seed=5)
    assert a != metrics_with_ci(y, p, n_boot=300, seed=6)
    for m in ("auroc", "auprc", "brier", "ece"):
        assert a[m]["ci_low"] <= a[m]["value"] <= a[m]["ci_high"]
    small = metrics_with_ci(y[:80], p[:80], n_boot=300, seed=5)
    assert small["auroc"]["ci_high"] - small["auroc"]["ci_low"] > a["auroc"]["ci_high"] - a["auroc"]["ci_low"]


def test_single_class_group_has_no_auroc_but_keeps_brier():
    m = metrics_with_ci(np.zeros(20, int), np.linspace(0, 0.5, 20), n_boot=50)
    assert m["auroc"]["value"] is None and m["auprc"]["value"] is None
    assert m["brier"]["value"] == pytest.approx(np.mean(np.linspace(0, 0.5, 20) ** 2))


def test_grouped_by_pattern_and_subgroup():
    rng = np.random.default_rng(2)
    y = (rng.random(300) < 0.3).astype(int)
    p = rng.random(300)
    pattern = rng.choice([1, 3, 7], 300)
    sex = rng.choice(["F", "M"], 300)
    g = grouped_metrics(
        y, p, pattern=pattern, modalities=["structured", "notes", "cxr"], groups={"gender": sex}, n_boot=50
    )
    assert set(g["by_pattern"]) == {"structured", "structured+notes", "structured+notes+cxr"}
    assert g["by_pattern"]["structured+notes"]["n"] == int((pattern == 3).sum())
    assert g["by_subgroup"]["gender"]["F"]["n"] + g["by_subgroup"]["gender"]["M"]["n"] == 300
