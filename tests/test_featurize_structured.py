"""Structured and timeseries tensors on a hand-made cohort in the contract schema.

Samples and what each exists for:
  a, b  train: the only rows the normalisation may be fitted on (hr 80 / 100 -> mean 90, sd 10)
  c     val with an absurd hr (10_000): must not move the statistics
  d     test with hr missing (NaN -> 0, observed false) and has_structured false in the time-series
  e     test, has_structured false: zeros even though a structured row exists
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch

from medmodal.common import MedmodalError
from medmodal.contracts import write_cohort
from medmodal.featurize import featurize_structured, load_cohort_features


def _cohort(root, hr_c=10_000.0):
    structured = pl.DataFrame(
        {
            "sample_id": list("abcde"),
            "hr": [80.0, 100.0, hr_c, None, 70.0],
            "age": [50.0, 70.0, 60.0, 65.0, 90.0],
            "male": [1.0, 1.0, 0.0, 0.0, 1.0],
            "unused": [1.0] * 5,
        }
    )
    ts = pl.DataFrame(
        {
            "sample_id": ["a", "a", "a", "b", "b", "c", "c", "d", "a"],
            "hour": pl.Series([0, 0, 2, 1, 70, 0, 3, 0, 5], dtype=pl.Int32),
            "variable": ["sbp", "sbp", "sbp", "sbp", "sbp", "sbp", "lactate", "sbp", "hr"],
            "value": [100.0, 120.0, 140.0, 130.0, 999.0, 5000.0, 2.0, 90.0, 88.0],
        }
    )
    return write_cohort(
        root,
        sample_ids=list("abcde"),
        splits=["train", "train", "val", "test", "test"],
        modalities={"structured": "structured", "timeseries": "timeseries"},
        has={"structured": [1, 1, 1, 1, 0], "timeseries": [1, 1, 1, 0, 0]},
        structured=structured,
        timeseries=ts,
        feature_groups={"structured": ["hr", "age", "male"]},
    )


def test_structured_zscore_fitted_on_train_only(tmp_path):
    c = _cohort(tmp_path / "c")
    featurize_structured(c, tmp_path / "store")
    ids, feats = load_cohort_features(tmp_path / "store", c)
    s = feats["structured"]
    assert ids == list("abcde") and s["x"].shape == (5, 3) and s["observed"].dtype == torch.bool
    norm = s["manifest"]["normalisation"]
    assert norm["fitted_on"] == "train" and norm["mean"] == [90.0, 60.0, 1.0] and norm["std"] == [10.0, 10.0, 1.0]
    x = s["x"].numpy()
    np.testing.assert_allclose(x[:, 0], [-1.0, 1.0, (10_000 - 90) / 10, 0.0, 0.0])
    np.testing.assert_allclose(x[:, 2], [0.0, 0.0, -1.0, -1.0, 0.0])  # constant train column: centred, sd 1
    assert s["observed"][:, 0].tolist() == [True, True, True, False, False]  # d: NaN; e: modality absent
    assert s["mask"].tolist() == [True, True, True, True, False]
    assert s["manifest"]["columns"] == ["hr", "age", "male"]

    # changing a validation value changes only that row: the statistics never see it
    c2 = _cohort(tmp_path / "c2", hr_c=-5.0)
    featurize_structured(c2, tmp_path / "store2")
    _, f2 = load_cohort_features(tmp_path / "store2", c2)
    assert torch.equal(f2["structured"]["x"][[0, 1, 3, 4]], s["x"][[0, 1, 3, 4]])


def test_timeseries_dense_tensor_with_observed_mask(tmp_path):
    c = _cohort(tmp_path / "c")
    featurize_structured(c, tmp_path / "store", max_hours=6)  # align="start" is the default
    _, feats = load_cohort_features(tmp_path / "store", c)
    t = feats["timeseries"]
    man = t["manifest"]
    assert man["variables"] == ["hr", "sbp"]  # lactate only in val: not normalisable without leakage
    assert man["variables_dropped_not_in_train"] == ["lactate"]
    assert man["hours"] == 6 and t["x"].shape == (5, 6, 2)
    assert man["counts"]["values_after_kept_hours_dropped"] == 1  # b's hour 70
    # train sbp hourly values: a@0 = mean(100, 120) = 110, a@2 = 140, b@1 = 130 -> mean 126.67
    mean, sd = np.mean([110, 140, 130]), np.std([110, 140, 130])
    assert math.isclose(man["normalisation"]["mean"][1], mean) and math.isclose(man["normalisation"]["std"][1], sd)
    assert math.isclose(float(t["x"][0, 0, 1]), (110 - mean) / sd, rel_tol=1e-5)
    assert math.isclose(float(t["x"][2, 0, 1]), (5000 - mean) / sd, rel_tol=1e-5)
    assert t["observed"][0, :, 1].tolist() == [True, False, True, False, False, False]
    assert float(t["x"][0, 1, 1]) == 0.0
    assert t["mask"].tolist() == [True, True, True, False, False]
    assert not t["observed"][3].any() and torch.all(t["x"][3] == 0)  # d has rows but no modality under the rule


def test_bad_structured_inputs_are_one_line_errors(tmp_path):
    c = _cohort(tmp_path / "c")
    df = pl.read_parquet(c / "structured.parquet").with_columns(pl.col("age").cast(pl.Utf8))
    df.write_parquet(c / "structured.parquet")
    with pytest.raises(MedmodalError, match=r"structured\.parquet: field 'age': must be numeric"):
        featurize_structured(c, tmp_path / "s")
    ts = pl.read_parquet(c / "timeseries.parquet").with_columns(pl.lit(-1, dtype=pl.Int32).alias("hour"))
    ts.write_parquet(c / "timeseries.parquet")
    pl.read_parquet(c / "structured.parquet").with_columns(pl.col("age").cast(pl.Float64)).write_parquet(
        c / "structured.parquet"
    )
    with pytest.raises(MedmodalError, match=r"timeseries\.parquet: field 'hour'"):
        featurize_structured(c, tmp_path / "s")
    (c / "modalities.parquet").unlink()
    with pytest.raises(MedmodalError, match=r"modalities\.parquet: missing"):
        featurize_structured(c, tmp_path / "s")
    assert not (tmp_path / "s" / "cohorts").exists() or not list((tmp_path / "s" / "cohorts").rglob("timeseries*"))


def test_timeseries_end_alignment_keeps_the_hours_before_prediction(tmp_path):
    """Prediction is 48 h after index_time (the window start here): with T = 6, t = 5 is hour 47."""
    ts = pl.DataFrame(
        {
            "sample_id": ["a", "a", "a", "b", "b"],
            "hour": pl.Series([0, 45, 47, 47, 48], dtype=pl.Int32),
            "variable": ["sbp"] * 5,
            "value": [100.0, 110.0, 130.0, 120.0, 999.0],
        }
    )
    c = write_cohort(
        tmp_path / "c",
        sample_ids=["a", "b"],
        splits=["train", "train"],
        modalities={"timeseries": "timeseries"},
        has={"timeseries": [1, 1]},
        timeseries=ts,
    )
    featurize_structured(c, tmp_path / "store", max_hours=6, align="end")
    _, feats = load_cohort_features(tmp_path / "store", c)
    t = feats["timeseries"]
    assert t["x"].shape == (2, 6, 1) and t["manifest"]["align"] == "end"
    assert t["observed"][0, :, 0].tolist() == [False, False, False, True, False, True]  # hours 45 and 47
    assert t["observed"][1, :, 0].tolist() == [False] * 5 + [True]
    counts = t["manifest"]["counts"]
    assert counts["values_before_kept_hours_dropped"] == 1  # a's hour 0: older than the last 6 h
    assert counts["values_after_kept_hours_dropped"] == 1  # b's hour 48: at/after the prediction time
    assert t["manifest"]["normalisation"]["mean"] == [120.0]  # 110, 130, 120: dropped values never fitted
