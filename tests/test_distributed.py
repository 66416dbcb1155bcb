"""Featurize under torchrun: 2 gloo ranks on the CPU write the same store, byte for byte, as one process, and a
rank killed mid-run loses only its unflushed buffer: the rerun reuses every finished shard.

The fixture cohort, and the edge case each part exists for:
  s00-s11   one discharge note each, 1 to 12 sentences (one window to several; blocks of unequal work)
  s03       a second, later note (pooling over notes)
  s04       a whitespace note -> skipped by every rank alike (rejected before the split)
  s05, s06  share note n05 (one item reached through two samples: computed once, by whichever rank holds it)
  images    one PNG per sample of varying size; s07 a corrupt JPG (skipped by the rank that decodes it: its
            reason must reach rank 0), s08 a missing file, s09 and s10 the same file (one hash, two items)
  structured two columns (a featurizer that runs on rank 0 alone)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from safetensors import safe_open

from medmodal.contracts import write_cohort
from medmodal.featurize import ImageConfig, TextConfig, featurize_all, tiny

N = 12
SENTENCES = tiny.fixture_sentences()
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent))
needs_torchrun = pytest.mark.skipif(TORCHRUN is None, reason="torchrun not installed beside this Python")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dist")
    ids = [f"s{i:02d}" for i in range(N)]
    texts = [" ".join(SENTENCES[j % len(SENTENCES)] for j in range(i, 2 * i + 1)) for i in range(N)]
    texts[4] = "  \n "
    notes = pl.DataFrame(
        {
            "sample_id": [*ids, "s03", "s06"],
            "note_id": [*(f"n{i:02d}" for i in range(N)), "n12", "n05"],
            "note_type": ["discharge"] * (N + 2),
            "charttime": [datetime(2150, 1, 1, 1)] * N + [datetime(2150, 1, 1, 5), datetime(2150, 1, 1, 1)],
            "text": [*texts, SENTENCES[3], texts[5]],
        }
    )
    imgs = root / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(N):
        p = imgs / f"i{i:02d}.png"
        Image.fromarray((rng.random((40 + 3 * i, 50)) * 255).astype(np.uint8)).save(p)
        paths.append(str(p))
    (imgs / "bad.jpg").write_bytes(rng.bytes(2000))
    paths[7], paths[8], paths[10] = str(imgs / "bad.jpg"), str(imgs / "missing.png"), paths[9]
    images = pl.DataFrame(
        {
            "sample_id": ids,
            "dicom_id": [f"d{i:02d}" for i in range(N)],
            "study_id": list(range(N)),
            "view": ["PA"] * N,
            "study_time": [datetime(2150, 1, 1, 2)] * N,
            "path": paths,
        }
    )
    structured = pl.DataFrame(
        {"sample_id": ids, "age": [50.0 + i for i in range(N)], "hr": [70.0 + 3 * i for i in range(N)]}
    )
    cohort = write_cohort(
        root / "cohort",
        sample_ids=ids,
        splits=["train"] * 8 + ["val"] * 2 + ["test"] * 2,
        modalities={"discharge_note": "text", "cxr": "image", "structured": "structured"},
        has={"discharge_note": [True] * N, "cxr": [True] * N, "structured": [True] * N},
        notes=notes,
        images=images,
        structured=structured,
        feature_groups={"structured": ["age", "hr"]},
    )
    return {
        "root": root,
        "cohort": cohort,
        "bert": tiny.make_tiny_bert(root / "bert"),
        "weights": tiny.make_tiny_timm(root / "timm.safetensors", name="test_convnext"),
    }


# shard size 2: each rank writes several shards, so a kill can land between two of them
SETTINGS = {"batch_size": 2, "shard_size": 2, "device": "cpu"}


def _configs(world) -> list:
    return [
        TextConfig(model=str(world["bert"]), max_length=32, stride=8, **SETTINGS),
        ImageConfig(model="test_convnext", weights=str(world["weights"]), num_workers=0, **SETTINGS),
    ]


def _cli_args(world, store: Path) -> list[str]:
    return [
        *("featurize", "all", str(world["cohort"]), "--store", str(store), "--device", "cpu"),
        *("--text-model", str(world["bert"]), "--max-length", "32", "--stride", "8", "--text-batch-size", "2"),
        *("--text-shard-size", "2", "--image-model", "test_convnext", "--weights", str(world["weights"])),
        *("--num-workers", "0", "--image-batch-size", "2", "--image-shard-size", "2"),
    ]


def _torchrun(args: list[str], *, script: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    target = [str(script)] if script else ["-m", "medmodal"]
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node", "2", *target, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def reference(world) -> Path:
    """The single-process store, one torch thread like the ranks."""
    store = world["root"] / "single"
    featurize_all(world["cohort"], store, configs=_configs(world))
    return store


def _cohort_files(store: Path, *, drop_counts: bool = False) -> dict[str, bytes]:
    """The store's cohort folder, file by file; manifests without the cache's absolute location (and with
    ``drop_counts`` without how many items this run computed vs reused from an earlier one)."""
    out = {}
    for p in sorted((store / "cohorts").rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.suffix == ".json":
                man = json.loads(data)
                if isinstance(man.get("encoder"), dict):
                    man["encoder"].pop("cache_dir", None)
                if drop_counts:
                    for key in ("computed", "reused"):
                        man.get("counts", {}).pop(key, None)
                data = json.dumps(man, sort_keys=True).encode()
            out[str(p.relative_to(store))] = data
    return out


def _shards(store: Path) -> dict[str, str]:
    """{encoder dir/shard name: sha256 of its bytes} over the whole cache."""
    return {
        f"{p.parent.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((store / "cache").glob("*/shards/*.safetensors"))
    }


def _cached(store: Path, *, rows: list | None = None) -> dict[bytes, bytes]:
    """{item key: vector bytes} over every shard of every encoder (``rows``: gets every key as written, so a
    key written twice shows)."""
    out = {}
    for p in sorted((store / "cache").glob("*/shards/*.safetensors")):
        with safe_open(str(p), framework="numpy") as fh:
            for k, v in zip(fh.get_tensor("keys"), fh.get_tensor("vectors")):
                out[k.tobytes()] = v.tobytes()
                if rows is not None:
                    rows.append(k.tobytes())
    return out


@needs_torchrun
def test_two_ranks_write_the_single_process_store_byte_for_byte(world, reference):
    store = world["root"] / "ranks"
    res = _torchrun(_cli_args(world, store))
    assert res.returncode == 0, res.stderr[-3000:]
    assert _cohort_files(store) == _cohort_files(reference)  # tensors, masks, manifests incl. counts and skips
    assert {Path(k).name for k in _cohort_files(store)} >= {"discharge_note.json", "cxr.json", "structured.json"}
    man = json.loads(next((store / "cohorts").glob("*/cxr.json")).read_text())
    assert man["counts"]["skipped"] == 2  # the missing file (before the split) and rank 1's corrupt JPG
    # both ranks computed a block, each into its own shards, and the cache holds what one process computed
    names = list(_shards(store))
    assert any("-r0-" in n for n in names) and any("-r1-" in n for n in names), names
    written: list[bytes] = []
    assert _cached(store, rows=written) == _cached(reference)
    assert len(written) == len(set(written))  # the blocks partition the work: no item computed by both ranks
    for enc in (store / "cache").glob("*/index.parquet"):  # rank 0's index lists every shard of every rank
        listed = set(pl.read_parquet(enc)["shard"].to_list())
        assert listed == {p.name for p in (enc.parent / "shards").glob("*.safetensors")}
    assert res.stderr.count("wrote ") == 1  # rank 0 alone writes and reports
    assert not [p for p in store.rglob("*") if ".tmp-" in p.name]


KILLER = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from medmodal.featurize import cache
if os.environ["RANK"] == "1":  # rank 1 dies by SIGKILL right after its second shard is in place
    append, written = cache.EmbeddingCache._append_shard, []
    def dying(self, *a, **k):
        name = append(self, *a, **k)
        written.append(name)
        if len(written) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return name
    cache.EmbeddingCache._append_shard = dying
from medmodal.cli import main
sys.argv = ["medmodal", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
@needs_torchrun
def test_a_killed_rank_resumes_without_recomputing_its_finished_shards(world, reference, tmp_path):
    store = world["root"] / "killed"
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    res = _torchrun(_cli_args(world, store), script=script)
    assert res.returncode != 0 and signal.SIGKILL.name in res.stderr + res.stdout, res.stderr[-2000:]
    assert not (store / "cohorts").exists() or not any((store / "cohorts").iterdir())  # nothing half-written
    before = _shards(store)
    assert sum("-r1-" in n for n in before) == 2  # the dead rank's finished shards are on disk
    have = _cached(store)

    res = _torchrun(_cli_args(world, store))
    assert res.returncode == 0, res.stderr[-3000:]
    after = _shards(store)
    assert all(after.get(n) == h for n, h in before.items())  # every finished shard kept, untouched
    assert _cohort_files(store, drop_counts=True) == _cohort_files(reference, drop_counts=True)
    assert _cached(store) == _cached(reference)
    # what was cached before the rerun was reused, not computed again: the counts say so exactly
    for m in ("discharge_note", "cxr"):
        ref = json.loads(next((reference / "cohorts").glob(f"*/{m}.json")).read_text())["counts"]
        got = json.loads(next((store / "cohorts").glob(f"*/{m}.json")).read_text())["counts"]
        assert got["reused"] + got["computed"] == ref["computed"], (m, got, ref)
    reused = sum(
        json.loads(next((store / "cohorts").glob(f"*/{m}.json")).read_text())["counts"]["reused"]
        for m in ("discharge_note", "cxr")
    )
    assert reused >= len(have) > 0  # >=: note n05 is one cached item reached through two samples
