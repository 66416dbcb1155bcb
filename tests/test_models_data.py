"""Loading a cohort + feature store into tensors: alignment, normalisation from train only, labels, bad input."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from medmodal.common import MedmodalError
from medmodal.contracts import cohort_store_dir, write_samples
from medmodal.models.data import load_cohort, pos_weight
from medmodal.models.toy import write_toy_cohort


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_data")
    write_toy_cohort(root / "cohort", root / "store", n=200, seed=3, multiclass=True)
    return root / "cohort", root / "store"


def test_tensors_follow_the_cohort_contract(toy):
    cohort_dir, store = toy
    d = load_cohort(cohort_dir, store)
    assert d.spec.modality_names == ["structured", "timeseries", "discharge_note", "cxr"]  # manifest order
    assert [l.name for l in d.spec.labels] == ["mortality", "readmission_30d", "diagnosis_3class"]
    assert d.spec.labels[2].kind == "multiclass" and d.spec.labels[2].classes == ("CN", "MCI", "AD")
    # structured and timeseries carry observed-indicators (doubling D); embeddings do not
    assert d.x["structured"].shape == (200, 20) and d.x["timeseries"].shape == (200, 8, 6)
    assert d.x["discharge_note"].shape == (200, 16) and d.indicators == ["structured", "timeseries"]
    mods = pl.read_parquet(cohort_dir / "modalities.parquet")
    assert np.array_equal(d.pattern.numpy(), mods["pattern"].to_numpy())  # same bit order as the cohort
    assert np.array_equal(d.mask[:, 3].numpy(), mods["has_cxr"].to_numpy())
    for i, m in enumerate(d.spec.modality_names):
        assert (d.x[m][~d.mask[:, i]] == 0).all()  # missing rows hold zeros
        assert torch.isfinite(d.x[m]).all()
    cohort = pl.read_parquet(cohort_dir / "cohort.parquet")
    readm = cohort["readmission_30d"]
    assert np.array_equal(d.label_mask[:, 1].numpy(), readm.is_not_null().to_numpy())
    assert (d.labels[~d.label_mask] == 0).all()
    assert set(d.labels[:, 2].unique().tolist()) <= {0.0, 1.0, 2.0}
    assert d.groups.columns == ["gender"]


def test_normalisation_uses_the_training_split_only(toy, tmp_path):
    cohort_dir, store = toy
    d = load_cohort(cohort_dir, store, tasks=["mortality"])
    tr = d.rows("train")
    keep = d.mask[tr, 2]
    # text embeddings standardised on train: mean ~0, sd ~1 on observed training rows
    z = d.x["discharge_note"][tr][keep]
    assert z.mean(0).abs().max() < 1e-4 and (z.std(0, unbiased=False) - 1).abs().max() < 1e-3
    # scaling the *test* rows' raw features in the store must not change the statistics
    from safetensors.torch import load_file, save_file

    path = cohort_store_dir(store, cohort_dir) / "discharge_note.safetensors"
    saved = path.read_bytes()
    try:
        t = load_file(str(path))
        test = torch.from_numpy(d.split == "test")
        t["x"][test] *= 100
        save_file(t, str(path))
        d2 = load_cohort(cohort_dir, store, tasks=["mortality"])
        assert torch.equal(d2.normalizer.mean["discharge_note"], d.normalizer.mean["discharge_note"])
        assert torch.equal(d2.x["discharge_note"][tr], d.x["discharge_note"][tr])
    finally:
        path.write_bytes(saved)


def test_batches_are_tensor_gathers(toy):
    d = load_cohort(*toy, tasks=["mortality"])
    rows = torch.tensor([5, 0, 17])
    b = d.batch(rows, torch.arange(3))
    assert torch.equal(b["x"]["timeseries"], d.x["timeseries"][rows]) and torch.equal(b["index"], torch.arange(3))
    assert b["labels"].shape == (3, 1) and b["mask"].shape == (3, 4)
    batches = list(d.iter_batches(d.rows("val"), 16))
    assert sum(len(b["index"]) for b in batches) == int((d.split == "val").sum())


def test_pos_weight_is_neg_over_pos_and_ignores_undefined(toy):
    d = load_cohort(*toy, tasks=["mortality", "readmission_30d", "diagnosis_3class"])
    pw = pos_weight(d.labels, d.label_mask, d.spec)
    y = d.labels[:, 1][d.label_mask[:, 1]]
    assert pw[1] == pytest.approx(float((y == 0).sum() / (y == 1).sum()))
    assert pw[2] == 1.0  # multiclass


def test_modality_subset_and_unknown_modality(toy):
    d = load_cohort(*toy, modalities=["cxr", "structured"])
    assert d.spec.modality_names == ["cxr", "structured"]
    with pytest.raises(MedmodalError, match="ecg"):
        load_cohort(*toy, modalities=["ecg"])


def _copy_cohort(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_bad_inputs_give_one_line_errors(toy, tmp_path):
    cohort_dir, store = toy
    with pytest.raises(MedmodalError, match="unknown task.*los_7d") as e:
        load_cohort(cohort_dir, store, tasks=["los_7d"])
    assert "manifest.json" in str(e.value) and "\n" not in str(e.value)

    bad = _copy_cohort(cohort_dir, tmp_path / "bad_label")
    df = pl.read_parquet(bad / "cohort.parquet")
    df.with_columns(
        pl.when(pl.int_range(pl.len()) == 4).then(2).otherwise(pl.col("mortality")).cast(pl.Int8).alias("mortality")
    ).write_parquet(bad / "cohort.parquet")
    with pytest.raises(MedmodalError, match="mortality.*outside"):
        load_cohort(bad, store)

    nosplit = _copy_cohort(cohort_dir, tmp_path / "no_split")
    pl.read_parquet(nosplit / "cohort.parquet").drop("split").write_parquet(nosplit / "cohort.parquet")
    with pytest.raises(MedmodalError, match="field 'split'"):
        load_cohort(nosplit, store)

    (tmp_path / "trunc").mkdir()
    trunc = _copy_cohort(cohort_dir, tmp_path / "trunc" / "c")
    (trunc / "cohort.parquet").write_bytes((cohort_dir / "cohort.parquet").read_bytes()[:100])
    with pytest.raises(MedmodalError, match="cohort.parquet"):
        load_cohort(trunc, store)


def test_stale_store_row_order_is_refused(toy, tmp_path):
    cohort_dir, _store = toy
    stale = tmp_path / "store"
    d = cohort_store_dir(stale, cohort_dir)
    ids = pl.read_parquet(cohort_dir / "cohort.parquet")["sample_id"].to_list()
    write_samples(d, ids[::-1])
    with pytest.raises(MedmodalError, match="row order"):
        load_cohort(cohort_dir, stale)
