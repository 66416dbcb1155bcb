"""kill -9 at random points: ``cohort build`` and ``featurize all`` are SIGKILLed in a subprocess after random delays,
then run again; the rerun's outputs equal an uninterrupted run's byte for byte (apart from clocks) and nothing
is left behind - no partial output, no ``.medmodal-work-`` database, no ``.tmp-`` / ``.old-`` folder or file.

Slow (each kill pays a Python + torch start-up); `make test-slow` runs it. The delays are drawn from a seeded
generator over the span of an uninterrupted run, so the kills land in start-up, SQL, Parquet writing, audits,
embedding, cache flushes and the final rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_determinism import assert_same, digest

KILLS = 5
TEMP_MARKS = (".tmp-", ".old-", ".medmodal-work-")

BUILD = """
from medmodal.cohort import build_cohort
build_cohort("mimic_iv", {raw!r}, "readmission_30d", {out!r}, seed=1, overwrite=True)
"""
FEATURIZE = """
import torch
torch.set_num_threads(1)
from medmodal.featurize import ImageConfig, TextConfig, featurize_all
featurize_all({cohort!r}, {store!r}, configs=[
    TextConfig(model={bert!r}, device="cpu", max_length=64, stride=16, batch_size=2),
    ImageConfig(model="test_convnext", weights={weights!r}, device="cpu", num_workers=0, batch_size=2)])
"""


def _run(script: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _kill_after(script: str, delay: float) -> bool:
    """Start ``script``, SIGKILL it after ``delay`` seconds; True if it was still running (really killed)."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def _store_digest(store: Path) -> dict[str, str]:
    """The cohort folders of a store; manifests without what only says how this run got there (items
    computed vs reused from the cache of an earlier, killed run; the cache's absolute location)."""
    out = {}
    for p in sorted((store / "cohorts").rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        if p.suffix == ".json":
            man = json.loads(data)
            man.get("encoder", {}).pop("cache_dir", None) if isinstance(man.get("encoder"), dict) else None
            for key in ("computed", "reused"):
                man.get("counts", {}).pop(key, None)
            data = json.dumps(man, sort_keys=True).encode()
        out[str(p.relative_to(store))] = hashlib.sha256(data).hexdigest()
    return out


def _temps(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if any(m in p.name for m in TEMP_MARKS)]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    from medmodal.featurize import tiny
    from medmodal.simulate import simulate

    root = tmp_path_factory.mktemp("kill")
    raw = simulate("mimic_iv", root / "raw", subjects=250, seed=2, image_size=48)
    return {
        "root": root,
        "raw": raw,
        "bert": tiny.make_tiny_bert(root / "bert"),
        "weights": tiny.make_tiny_timm(root / "timm.safetensors", name="test_convnext"),
    }


@pytest.mark.slow
def test_killed_cohort_build_reruns_to_the_same_cohort(world):
    root, rng = world["root"] / "build", random.Random(10)
    root.mkdir()
    ref = root / "reference"
    span = _run(BUILD.format(raw=str(world["raw"]), out=str(ref)))
    want = digest(ref)
    out = root / "cohort"
    killed = 0
    for _ in range(KILLS):
        killed += _kill_after(BUILD.format(raw=str(world["raw"]), out=str(out)), rng.uniform(0.2, 1.0) * span)
        # a kill leaves either the previous complete cohort or none: never a partial one under the final name
        assert not out.exists() or (out / "manifest.json").is_file()
        _run(BUILD.format(raw=str(world["raw"]), out=str(out)))
        assert_same(want, digest(out))
        assert not _temps(root), _temps(root)
    assert killed >= 3  # most delays must land inside the run, or the test proves nothing


@pytest.mark.slow
def test_killed_featurize_reruns_to_the_same_store(world):
    from medmodal.cohort import build_cohort

    root, rng = world["root"] / "featurize", random.Random(20)
    root.mkdir()
    cohort = build_cohort("mimic_iv", world["raw"], "readmission_30d", root / "cohort", seed=1)
    args = {"cohort": str(cohort), "bert": str(world["bert"]), "weights": str(world["weights"])}
    ref = root / "reference"
    span = _run(FEATURIZE.format(store=str(ref), **args))
    want = _store_digest(ref)
    store = root / "store"
    killed = 0
    for i in range(KILLS):
        if i % 2 == 0:
            shutil.rmtree(store, ignore_errors=True)  # kills into a cold store and into a warm, partial one
        killed += _kill_after(FEATURIZE.format(store=str(store), **args), rng.uniform(0.2, 1.0) * span)
        slot = list((store / "cohorts").glob("*")) if (store / "cohorts").exists() else []
        # all or nothing: a cohort folder in the store is complete (every modality) or absent
        for d in slot:
            if not d.name.startswith("."):
                assert len(list(d.glob("*.safetensors"))) == 5, sorted(p.name for p in d.iterdir())
        _run(FEATURIZE.format(store=str(store), **args))
        assert_same(want, _store_digest(store))
        assert not _temps(store), _temps(store)
    assert killed >= 3
