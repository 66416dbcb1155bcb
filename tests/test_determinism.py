"""Same inputs + same seed (+ same thread count) => byte-identical cohort, store and run files, apart from timestamps.

Each test runs a pipeline twice *at the same paths* (paths are recorded in manifests), hashes every file after
each run and compares. What may differ, and nothing else: the JSON keys that hold wall-clock times
(``created_at``, ``build_seconds``, ``seconds``, a raw file's ``mtime``), and the cache's shard *names* (they
carry the writer's clock and pid; shards are compared by content). The text encoder's vectors must also not
depend on what the cache already held. docs/reliability.md gives the figures.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from medmodal.cohort import build_cohort
from medmodal.contracts import load_cohort_features, write_cohort
from medmodal.featurize import ImageConfig, featurize_all, featurize_structured, featurize_text, tiny
from medmodal.featurize.text import TextConfig, TextEncoder
from medmodal.models.toy import write_toy_cohort
from medmodal.models.train import train

FIXTURE = Path(__file__).resolve().parent / "data" / "mimic_iv_fixture"
# wall-clock times; "mtime": a raw file's modification time, recorded beside its hash (a re-simulated raw file is
# rewritten with the same bytes but a new mtime; the cohort id ignores it)
# "throughput": training's samples/s and data-wait share, rates of the same clock
VOLATILE = {"created_at", "build_seconds", "seconds", "mtime", "throughput"}


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def digest(root: Path) -> dict[str, str]:
    """{relative path: sha256}, JSON without its clock keys; cache shards keyed by content, not by name."""
    out: dict[str, str] = {}
    shards: list[str] = []
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel = str(p.relative_to(root))
        if "/file_hashes/" in f"/{rel}":  # remembered (path, size, mtime) of image files: mtimes are clocks
            continue
        data = p.read_bytes()
        if p.suffix == ".json":
            data = json.dumps(_strip(json.loads(data)), sort_keys=True).encode()
        h = hashlib.sha256(data).hexdigest()
        if "/shards/" in f"/{rel}":
            shards.append(h)
        elif p.name != "index.parquet" or "/cache/" not in f"/{rel}":  # the index lists shard names
            out[rel] = h
    out["(cache shards by content)"] = ",".join(sorted(shards))
    return out


def twice(base: Path, pipeline: Callable[[Path], None]) -> tuple[dict[str, str], dict[str, str]]:
    pipeline(base)
    first = digest(base)
    shutil.rmtree(base)
    pipeline(base)
    return first, digest(base)


def assert_same(a: dict[str, str], b: dict[str, str]) -> None:
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    assert not differ, differ
    assert len(a) >= 5


def test_build_featurize_twice_fixture(tmp_path, one_torch_thread):
    """Fast: the MIMIC-IV fixture built and featurized (structured, timeseries, notes) twice."""
    bert = tiny.make_tiny_bert(tmp_path / "bert")

    def pipeline(base: Path) -> None:
        cohort = build_cohort("mimic_iv", FIXTURE, "in_hospital_mortality_24h", base / "cohort")
        featurize_structured(cohort, base / "store")
        featurize_text(cohort, base / "store", model=str(bert), max_length=32, stride=8)

    first, second = twice(tmp_path / "run", pipeline)
    assert_same(first, second)
    assert any(k.endswith("timeseries.json") for k in first)  # the std that used to differ in its last bits


def test_train_twice_toy(tmp_path, one_torch_thread):
    """Fast: a toy cohort and store, trained twice with the same seed: every run file identical."""

    def pipeline(base: Path) -> None:
        cohort = write_toy_cohort(base / "cohort", base / "store", n=200, seed=3)
        for backbone in ("late_fusion", "muse"):
            train(cohort, base / "store", base / backbone, backbone=backbone, epochs=2, n_boot=50, progress=False)

    first, second = twice(tmp_path / "run", pipeline)
    assert_same(first, second)
    assert "muse/model.safetensors" in first and "late_fusion/predictions.parquet" in first


def test_timeseries_statistics_are_identical_across_runs(tmp_path):
    """The per-variable mean / std in the store manifest: polars' parallel group_by summed in a different order on
    every run (last bits of std differed); the numpy reduction over one total order does not."""
    rng = np.random.default_rng(0)
    n, hours, variables = 300, 48, 8
    ids = [f"s{i:04d}" for i in range(n)]
    rows = n * hours * variables
    ts = pl.DataFrame(
        {
            "sample_id": np.repeat(ids, hours * variables),
            "hour": np.tile(np.repeat(np.arange(hours, dtype=np.int32), variables), n),
            "variable": np.tile([f"v{j}" for j in range(variables)], n * hours),
            "value": rng.normal(100.0, 30.0, rows) * rng.random(rows),
        }
    )
    cohort = write_cohort(
        tmp_path / "cohort",
        sample_ids=ids,
        splits=["train"] * 200 + ["val"] * 50 + ["test"] * 50,
        modalities={"timeseries": "timeseries"},
        has={"timeseries": [True] * n},
        timeseries=ts,
    )
    seen = set()
    for i in range(3):
        featurize_structured(cohort, tmp_path / f"store{i}")
        slot = next((tmp_path / f"store{i}" / "cohorts").iterdir())
        seen.add((slot / "timeseries.json").read_bytes() + (slot / "timeseries.safetensors").read_bytes())
    assert len(seen) == 1


def test_text_vectors_do_not_depend_on_the_cache(tmp_path, one_torch_thread):
    """A note gets the same vector bit for bit whether it was embedded alone or next to longer notes (a warm
    cache changes which notes share a chunk, hence a batch): each window is padded to its own length bucket."""
    bert = tiny.make_tiny_bert(tmp_path / "bert", max_positions=128)
    enc = TextEncoder(TextConfig(model=str(bert), max_length=128, stride=16, batch_size=4, device="cpu"))
    short = "patient admitted with chest pain, ruled out, discharged home"
    base = " ".join([short] * 3)
    # windows of close lengths: the old "pad to the longest in the batch" padded the first two to the third's
    # length when they shared a batch (1.9e-9 here, up to 1.2e-7 on the demo's notes) but not when alone
    texts = [base, base + " and a cough", base + " with fever and a cough since monday", short, " ".join([short] * 9)]
    alone = np.stack([enc.embed([t])[0] for t in texts])
    together = enc.embed(texts)
    reordered = enc.embed(texts[::-1])[::-1]
    assert np.array_equal(alone, together) and np.array_equal(alone, reordered)


@pytest.mark.slow
def test_simulate_build_featurize_train_twice(tmp_path):
    """The demo's path end to end, twice: simulate -> build -> featurize all (tiny text and image encoders) ->
    train late_fusion and muse; every cohort, store and run file identical apart from clocks."""
    from medmodal.simulate import simulate

    encoders = tmp_path / "encoders"
    bert = tiny.make_tiny_bert(encoders / "bert")
    weights = tiny.make_tiny_timm(encoders / "timm.safetensors", name="test_convnext")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)

    def pipeline(base: Path) -> None:
        raw = simulate("mimic_iv", base / "raw", subjects=300, seed=4, image_size=32)
        cohort = build_cohort("mimic_iv", raw, "readmission_30d", base / "cohort", seed=4)
        featurize_all(
            cohort,
            base / "store",
            configs=[
                TextConfig(model=str(bert), device="cpu", max_length=64, stride=16),
                ImageConfig(model="test_convnext", weights=str(weights), device="cpu", num_workers=0),
            ],
        )
        for backbone in ("late_fusion", "muse"):
            train(cohort, base / "store", base / backbone, backbone=backbone, epochs=3, n_boot=100, progress=False)

    try:
        first, second = twice(tmp_path / "run", pipeline)
    finally:
        torch.set_num_threads(threads)
    assert_same(first, second)
    assert {"cohort/notes.parquet", "muse/model.safetensors"} <= set(first)
    cid = json.loads((tmp_path / "run" / "cohort" / "manifest.json").read_text())["cohort_id"]
    x = load_file(str(tmp_path / "run" / "store" / "cohorts" / cid / "discharge_note.safetensors"))["x"]
    assert x.abs().sum() > 0
    _, feats = load_cohort_features(tmp_path / "run" / "store", tmp_path / "run" / "cohort")
    assert {"structured", "timeseries", "discharge_note", "radiology_note", "cxr"} <= set(feats)
