"""The content-addressed cache (shards + index) and the `medmodal featurize` commands end to end."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from medmodal.cli import app
from medmodal.contracts import write_cohort
from medmodal.featurize import load_cohort_features, tiny
from medmodal.featurize.cache import EmbeddingCache, item_key

DESC = {"kind": "test", "model": "toy", "preprocessing": {"n": 1}}


def _keys(n, prefix="i"):
    return [item_key(f"{prefix}{i}", f"{i:064x}") for i in range(n)]


def test_shards_index_and_lookup(tmp_path):
    cache = EmbeddingCache.open(tmp_path, DESC)
    keys = _keys(10)
    vecs = np.arange(40, dtype=np.float32).reshape(10, 4)
    with cache.writer(shard_size=4) as w:
        w.add(keys[:7], vecs[:7], [f"i{i}" for i in range(7)])
        w.add(keys[7:], vecs[7:], [f"i{i}" for i in range(7, 10)])
    shards = sorted((cache.root / "shards").glob("*.safetensors"))
    assert len(shards) == 3 and (cache.root / "index.parquet").is_file()
    again = EmbeddingCache.open(tmp_path, DESC)
    probe = [keys[9], _keys(1, "other")[0], keys[0]]
    hit = again.lookup(probe)
    assert hit.found.tolist() == [True, False, True]
    np.testing.assert_array_equal(hit.vectors[[0, 2]], vecs[[9, 0]])
    # a different description is a different directory: nothing shared
    assert not EmbeddingCache.open(tmp_path, {**DESC, "preprocessing": {"n": 2}}).lookup(keys).found.any()


def test_buffered_items_survive_an_exception(tmp_path):
    cache = EmbeddingCache.open(tmp_path, DESC)
    with pytest.raises(KeyboardInterrupt), cache.writer(shard_size=1000) as w:
        w.add(_keys(3), np.ones((3, 4), np.float32), ["a", "b", "c"])
        raise KeyboardInterrupt
    assert EmbeddingCache.open(tmp_path, DESC).lookup(_keys(3)).found.all()


def test_damaged_shards_and_stale_index_never_serve_wrong_vectors(tmp_path, caplog):
    cache = EmbeddingCache.open(tmp_path, DESC)
    with cache.writer(shard_size=2) as w:
        w.add(_keys(4), np.ones((4, 4), np.float32), list("abcd"))
    shards = sorted((cache.root / "shards").glob("*.safetensors"))
    # outside damage to one shard (the writer itself never leaves one): warned, its items become misses
    shards[0].write_bytes(shards[0].read_bytes()[:50])
    (cache.root / "index.parquet").unlink()  # the index is derived: rebuilt from the shards
    (cache.root / "shards" / ".123.safetensors.tmp").write_bytes(b"half-written")  # a killed writer's temp file
    caplog.set_level(logging.WARNING)
    hit = EmbeddingCache.open(tmp_path, DESC).lookup(_keys(4))
    assert hit.found.sum() == 2 and "unreadable" in caplog.text
    # a shard the index does not list (its writer died before rewriting the index) is still found
    late = EmbeddingCache.open(tmp_path, DESC)
    late._append_shard(_keys(1, "late"), np.zeros((1, 4), np.float32), ["late0"])  # index not saved
    assert EmbeddingCache.open(tmp_path, DESC).lookup(_keys(1, "late")).found.all()


def test_lookup_of_many_keys_is_a_join_not_a_loop(tmp_path):
    cache = EmbeddingCache.open(tmp_path, DESC)
    n = 50_000
    keys = _keys(n)
    with cache.writer(shard_size=10_000) as w:
        w.add(keys, np.random.default_rng(0).random((n, 8), dtype=np.float32), [str(i) for i in range(n)])
    t = time.perf_counter()
    hit = EmbeddingCache.open(tmp_path, DESC).lookup(keys[::-1])
    assert hit.found.all() and time.perf_counter() - t < 5.0


# ------------------------------------------------------------------------------------------------ CLI end to end
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return tiny.make_tiny_bert(d / "bert"), tiny.make_tiny_timm(d / "net.safetensors", name="test_convnext")


def _full_cohort(root: Path) -> Path:
    from PIL import Image

    (root / "img").mkdir(parents=True)
    Image.fromarray(np.full((40, 40), 90, np.uint8)).save(root / "img" / "p.png")
    lines = tiny.fixture_sentences()
    return write_cohort(
        root,
        sample_ids=["s1", "s2", "s3"],
        splits=["train", "val", "test"],
        modalities={"structured": "structured", "timeseries": "timeseries", "discharge_note": "text", "cxr": "image"},
        has={"structured": [1, 1, 1], "timeseries": [1, 0, 1], "discharge_note": [1, 1, 0], "cxr": [0, 1, 1]},
        structured=pl.DataFrame({"sample_id": ["s1", "s2", "s3"], "age": [40.0, 50.0, 60.0]}),
        timeseries=pl.DataFrame(
            {
                "sample_id": ["s1", "s3"],
                "hour": pl.Series([0, 1], dtype=pl.Int32),
                "variable": ["hr", "hr"],
                "value": [80.0, 90.0],
            }
        ),
        notes=pl.DataFrame(
            {
                "sample_id": ["s1", "s2"],
                "note_id": ["n1", "n2"],
                "note_type": ["discharge"] * 2,
                "charttime": [datetime(2150, 1, 1)] * 2,
                "text": lines[:2],
            }
        ),
        images=pl.DataFrame(
            {
                "sample_id": ["s2", "s3"],
                "dicom_id": ["d2", "d3"],
                "study_id": [2, 3],
                "view": ["PA"] * 2,
                "study_time": [datetime(2150, 1, 1)] * 2,
                "path": [str(root / "img" / "p.png"), "/no/file.jpg"],
            }
        ),
        feature_groups={"structured": ["age"]},
    )


def test_cli_featurize_all_then_errors(tmp_path, models):
    bert, net = models
    cohort = _full_cohort(tmp_path / "cohort")
    store = tmp_path / "store"
    args = [
        "featurize",
        "all",
        str(cohort),
        "--store",
        str(store),
        "--text-model",
        str(bert),
        "--image-model",
        "test_convnext",
        "--image-weights",
        str(net),
        "--max-length",
        "32",
        "--stride",
        "8",
        "--num-workers",
        "0",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and str(store) in res.output.replace("\n", "")
    _ids, feats = load_cohort_features(store, cohort)
    assert sorted(feats) == ["cxr", "discharge_note", "structured", "timeseries"]
    assert feats["cxr"]["mask"].tolist() == [False, True, False]  # s3's file is missing: skipped, recorded
    assert feats["discharge_note"]["mask"].tolist() == [True, True, False]

    res = CliRunner().invoke(app, ["featurize", "text", str(tmp_path / "nowhere"), "--store", str(store)])
    assert res.exit_code == 1 and "manifest.json missing" in res.output
    res = CliRunner().invoke(app, ["featurize", "all", str(cohort), "--store", str(store), "--modalities", "ecg"])
    assert res.exit_code == 1 and "unknown modalities ecg" in res.output


@pytest.mark.slow
def test_hard_kill_mid_run_then_resume(tmp_path, models):
    """SIGKILL a real run between shards; the rerun reuses every finished shard and finishes the rest."""
    bert, _ = models
    lines = tiny.fixture_sentences()
    n = 40
    notes = pl.DataFrame(
        {
            "sample_id": [f"s{i:02d}" for i in range(n)],
            "note_id": [f"n{i}" for i in range(n)],
            "note_type": ["radiology"] * n,
            "charttime": [datetime(2150, 1, 1)] * n,
            "text": [" ".join(lines[i % 10 : i % 10 + 6]) for i in range(n)],
        }
    )
    cohort = write_cohort(
        tmp_path / "c",
        sample_ids=list(notes["sample_id"]),
        splits=["train"] * n,
        modalities={"radiology_note": "text"},
        has={"radiology_note": [1] * n},
        notes=notes,
    )
    store = tmp_path / "store"
    script = textwrap.dedent(f"""
        import time
        from medmodal.featurize import featurize_text
        from medmodal.featurize.text import TextEncoder
        real = TextEncoder._forward
        def slow(self, w, length):
            time.sleep(0.15)
            return real(self, w, length)
        TextEncoder._forward = slow
        featurize_text({str(cohort)!r}, {str(store)!r}, model={str(bert)!r}, max_length=32, stride=8,
                       batch_size=1, chunk_size=1, shard_size=1)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shard_dir = None
    deadline = time.time() + 120
    while time.time() < deadline:
        shards = list((store / "cache").glob("*/shards/*.safetensors")) if (store / "cache").exists() else []
        if len(shards) >= 5:
            shard_dir = shards[0].parent
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert shard_dir is not None, "the child never wrote a shard"
    done = len(list(shard_dir.glob("*.safetensors")))
    assert 5 <= done < n
    from medmodal.featurize import featurize_text

    res = featurize_text(cohort, store, model=str(bert), max_length=32, stride=8)
    assert res["radiology_note"].reused == done and res["radiology_note"].computed == n - done


def test_featurize_all_on_the_vendored_mimic_demo_cohort(tmp_path, mimic_demo):
    """The real MIMIC-IV demo has no notes or images: those modalities are reported and skipped without
    needing any model weights; structured and timeseries tensors follow the cohort's row order."""
    from medmodal.cohort import build_cohort
    from medmodal.featurize import ImageConfig, TextConfig, featurize_all

    cohort = build_cohort("mimic_iv", mimic_demo, "readmission_30d", tmp_path / "cohort", seed=0)
    configs = [TextConfig(model="nobody/absent-model"), ImageConfig(model="densenet121")]
    res = featurize_all(cohort, tmp_path / "store", configs=configs)
    assert sorted(res) == ["structured", "timeseries"]
    ids, feats = load_cohort_features(tmp_path / "store", cohort)
    assert ids == pl.read_parquet(cohort / "cohort.parquet")["sample_id"].to_list()
    mods = pl.read_parquet(cohort / "modalities.parquet")
    assert feats["timeseries"]["mask"].tolist() == mods["has_timeseries"].to_list()
    x, obs = feats["structured"]["x"], feats["structured"]["observed"]
    assert x.shape[0] == len(ids) and bool((x[~obs] == 0).all()) and obs.any()
    train = (pl.read_parquet(cohort / "cohort.parquet")["split"] == "train").to_numpy()
    # z-scored on train: every column with >= 2 distinct train values has train mean ~0 over observed entries
    xt, ot = x[train].numpy(), obs[train].numpy()
    for j in range(xt.shape[1]):
        vals = xt[ot[:, j], j]
        if len(np.unique(vals)) > 1:
            assert abs(vals.mean()) < 1e-4
