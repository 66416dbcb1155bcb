"""The bounded-memory paths give the bytes of the whole-in-memory ones (docs/performance.md):

- ``save_safetensors`` writes what ``safetensors.torch.save_file`` writes, from tensors or spooled row blocks;
- structured features z-scored one column block at a time equal the unblocked statistics and tensors;
- timeseries featurized in chunks of a few rows equal one chunk holding every sample;
- ``cohort build --task all`` computes the events extract once, copies the outputs of tasks whose cohorts differ
  only in labels, and its cohorts equal single-task builds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import medmodal.contracts.tensorfile as tensorfile
import medmodal.featurize.structured as structured
from medmodal.cohort import build_cohort, tasks_for
from medmodal.cohort.runner import SharedRelations
from medmodal.contracts import SpooledTensor, save_safetensors
from medmodal.featurize import featurize_structured

FIXTURE = Path(__file__).resolve().parent / "data" / "mimic_iv_fixture"


@pytest.mark.parametrize("shape", [(5, 3), (7, 4, 3), (0, 2)])
def test_save_safetensors_writes_the_bytes_of_save_file(tmp_path, monkeypatch, shape):
    monkeypatch.setattr(tensorfile, "PIECE_BYTES", 16)  # many pieces per tensor
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g)
    mask = torch.rand(shape[0], generator=g) > 0.5
    observed = torch.rand(*shape, generator=g) > 0.3
    save_file({"x": x, "mask": mask, "observed": observed}, str(tmp_path / "ref"))
    save_safetensors({"x": x, "mask": mask, "observed": observed}, tmp_path / "tensors")
    sx = SpooledTensor(shape, np.float32, dir=tmp_path)
    so = SpooledTensor(shape, bool, dir=tmp_path)
    if shape[0]:
        sx.append(x[:2].numpy())
        sx.append(x[2:].numpy())
    so.append(observed.numpy())
    save_safetensors({"observed": so, "x": sx, "mask": mask}, tmp_path / "spooled")
    ref = (tmp_path / "ref").read_bytes()
    assert (tmp_path / "tensors").read_bytes() == ref
    assert (tmp_path / "spooled").read_bytes() == ref
    assert not [p for p in tmp_path.iterdir() if p.name not in ("ref", "tensors", "spooled")]  # spools unlinked


def test_spooled_tensor_refuses_missing_or_misshapen_rows(tmp_path):
    t = SpooledTensor((3, 2), np.float32, dir=tmp_path)
    t.append(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="does not continue"):
        t.append(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="2 of its 3 rows"):
        list(t.pieces())
    t.append_zeros(1)
    assert t.numpy().shape == (3, 2)


@pytest.mark.parametrize("n", [1, 2, 16, 17, 33, 174])
def test_column_blocks_give_the_unblocked_statistics(n):
    blocks = structured.column_blocks(n)
    assert blocks[0][0] == 0 and blocks[-1][1] == n
    assert all(b - a >= 2 for a, b in blocks) or n == 1  # an (N, 1) block would be summed another way
    rng = np.random.default_rng(n)
    values = rng.normal(size=(20_000, n)) * rng.uniform(0.1, 1000, size=n)
    values[rng.random(values.shape) < 0.3] = np.nan
    train = rng.random(20_000) < 0.7
    mean, std, count = structured.fit_zscore(values, train)
    for a, b in blocks:
        block = np.ascontiguousarray(values[:, a:b])
        mb, sb, nb = structured.fit_zscore(block, train)
        assert mb.tobytes() == mean[a:b].tobytes() and sb.tobytes() == std[a:b].tobytes()
        assert (nb == count[a:b]).all()


@pytest.fixture(scope="module")
def fixture_cohort(tmp_path_factory) -> Path:
    return build_cohort("mimic_iv", FIXTURE, "readmission_30d", tmp_path_factory.mktemp("c") / "readmission_30d")


def _store_bytes(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(store.glob("cohorts/*/*")) if p.name != ".medmodal"}


def test_timeseries_in_chunks_of_a_few_rows_is_byte_identical(fixture_cohort, tmp_path, monkeypatch):
    featurize_structured(fixture_cohort, tmp_path / "one_chunk")
    monkeypatch.setattr(structured, "BATCH_ROWS", 3)  # samples span batches: re-cut at sample boundaries
    monkeypatch.setattr(tensorfile, "PIECE_BYTES", 64)  # output blocks of a row or two
    monkeypatch.setattr(structured, "PIECE_BYTES", 64)
    featurize_structured(fixture_cohort, tmp_path / "chunked")
    one, chunked = _store_bytes(tmp_path / "one_chunk"), _store_bytes(tmp_path / "chunked")
    assert "timeseries.safetensors" in one and one == chunked


def test_task_all_extracts_the_events_once_and_matches_single_builds(fixture_cohort, tmp_path, monkeypatch):
    extracts: list[int] = []
    run = SharedRelations.run

    def counting(self, *args, **kwargs):
        run(self, *args, **kwargs)
        extracts.append(len(self.done))

    monkeypatch.setattr(SharedRelations, "run", counting)
    reused: list[str] = []  # tasks whose post-task outputs were copied from an earlier task's
    find = SharedRelations.find_outputs

    def recording(self, con, labels, key):
        hit = find(self, con, labels, key)
        if hit is not None:
            reused.append(labels[0])
        return hit

    monkeypatch.setattr(SharedRelations, "find_outputs", recording)
    out = build_cohort("mimic_iv", FIXTURE, "all", tmp_path / "all")
    assert len(extracts) == len(tasks_for("mimic_iv")) > 1 and set(extracts) == {1}  # every task, one extract
    names = ("cohort", "modalities", "structured", "timeseries", "notes", "images", "attrition")
    for name in names:
        single = (fixture_cohort / f"{name}.parquet").read_bytes()
        assert (out / "readmission_30d" / f"{name}.parquet").read_bytes() == single, name
    # readmission_30d copied mortality_90d's outputs (same first admissions); an ICU task copied one too, and
    # its files equal its own single-task build
    assert "readmission_30d" in reused and "los_7d_48h" in reused, reused
    single = build_cohort("mimic_iv", FIXTURE, "los_7d_48h", tmp_path / "los")
    for name in names:
        assert (out / "los_7d_48h" / f"{name}.parquet").read_bytes() == (single / f"{name}.parquet").read_bytes()
    assert not list(tmp_path.glob(".medmodal-work-*"))  # the work folder (spill, extract) is removed


def test_training_from_the_memory_mapped_store_equals_the_precomputed_inputs(toy, tmp_path, monkeypatch):
    """A cohort too large to hold its inputs is standardised batch by batch from the memory-mapped store (and
    its normalisation fitted in row blocks): same inputs, and a run with the same bytes."""
    import medmodal.models.data as data_mod
    from medmodal.models.data import load_cohort
    from medmodal.models.train import train

    kw = {"backbone": "attention_fusion", "epochs": 2, "seed": 3, "batch_size": 64, "n_boot": 0, "threads": 1}
    kw["progress"] = False
    dense = load_cohort(*toy)
    assert dense.dense is not None
    a = train(*toy, tmp_path / "a", **kw)
    monkeypatch.setattr(data_mod, "DENSE_INPUT_BYTES", 0)
    lazy = load_cohort(*toy)
    assert lazy.dense is None
    rows = torch.tensor([5, 0, 599, 17])
    for m in dense.spec.modality_names:
        assert torch.equal(lazy.batch(rows)["x"][m], dense.batch(rows)["x"][m]), m
    b = train(*toy, tmp_path / "b", **kw)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "predictions.parquet").read_bytes() == (b / "predictions.parquet").read_bytes()
    monkeypatch.setattr(data_mod, "EXACT_FIT_BYTES", 4096)  # the normaliser fitted a few rows at a time
    blocked = load_cohort(*toy)
    for m in dense.spec.modality_names:
        torch.testing.assert_close(blocked.normalizer.mean[m], dense.normalizer.mean[m], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(blocked.normalizer.std[m], dense.normalizer.std[m], rtol=1e-6, atol=1e-7)
