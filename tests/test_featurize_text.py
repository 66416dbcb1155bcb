"""Text featurizer: the tiny random BERT (featurize/tiny_bert), on hand-made cohorts in the contract schema.

Subjects of the fixture cohort and the edge case each one exists for:
  a  two discharge notes at different times (pooling: mean vs latest) + one radiology note
  b  one note far longer than max_length (windowing with stride)
  c  an empty (whitespace) note only -> skipped, mask false with a recorded reason
  d  has_discharge_note false although a note row exists (time rule) -> never embedded, zeros
  e  no notes at all
  f  the marker note (no note text may reach logs, errors or files)
"""

from __future__ import annotations

import ast
import logging
import re
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from medmodal.common import MedmodalError
from medmodal.contracts import write_cohort
from medmodal.featurize import featurize_text, load_cohort_features, tiny
from medmodal.featurize.text import TextConfig, TextEncoder

MARKER = "zebracorn"  # spelled from the character pieces of the vocabulary: tokenizes fine, appears nowhere else
SENTENCES = tiny.fixture_sentences()
SIMULATOR_TEXT = Path(__file__).resolve().parents[1] / "simulate" / "text.py"


def vocab_source_lines() -> list[str]:
    """What the tiny vocabulary is built from: the fixture sentences, and every word of the simulator's note
    templates (the string literals of simulate/text.py that are not docstrings), so that simulated notes tokenize
    into words (short windows in the demo) rather than into characters."""
    tree = ast.parse(SIMULATOR_TEXT.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    literals = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    ]
    texts = [re.sub(r"\{[a-z_]*\}", " ", text.lower()) for text in literals]  # str.format placeholders
    words = sorted({w for text in texts for w in re.findall(r"[a-z]+|[^\sa-z0-9]", text)})
    return [*SENTENCES, " ".join(words)]


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return tiny.make_tiny_bert(tmp_path_factory.mktemp("bert"), seed=0)


def _cohort(root: Path) -> Path:
    notes = pl.DataFrame(
        {
            "sample_id": ["a", "a", "a", "b", "c", "d", "f"],
            "note_id": ["a1", "a2", "a3", "b1", "c1", "d1", "f1"],
            "note_type": ["discharge", "discharge", "radiology", "discharge", "discharge", "discharge", "discharge"],
            "charttime": [datetime(2150, 1, 1, h) for h in (5, 2, 3, 1, 1, 1, 1)],
            "text": [
                SENTENCES[0],
                SENTENCES[1],
                SENTENCES[2],
                " ".join(SENTENCES * 3),
                "  \n ",
                SENTENCES[3],
                f"{SENTENCES[4]} {MARKER} {SENTENCES[5]}",
            ],
        }
    )
    return write_cohort(
        root,
        sample_ids=["f", "e", "d", "c", "b", "a"],  # written sorted: the row order is a..f
        splits=["train", "train", "val", "test", "train", "train"],
        modalities={"discharge_note": "text", "radiology_note": "text"},
        has={"discharge_note": [1, 0, 0, 1, 1, 1], "radiology_note": [0, 0, 0, 0, 0, 1]},
        notes=notes,
    )


@pytest.fixture()
def cohort(tmp_path) -> Path:
    return _cohort(tmp_path / "cohort")


def _run(cohort: Path, store: Path, bert: Path, **kw):
    kw = {"max_length": 32, "stride": 8, "batch_size": 4, **kw}
    return featurize_text(cohort, store, model=str(bert), **kw)


def test_shapes_row_order_masks_and_pooling(cohort, tmp_path, bert):
    store = tmp_path / "store"
    summary = _run(cohort, store, bert)
    ids, feats = load_cohort_features(store, cohort)
    assert ids == ["a", "b", "c", "d", "e", "f"]
    dis, rad = feats["discharge_note"], feats["radiology_note"]
    assert dis["x"].shape == (6, 32) and dis["x"].dtype == torch.float32
    assert dis["mask"].tolist() == [True, True, False, False, False, True]
    assert rad["mask"].tolist() == [True, False, False, False, False, False]
    assert torch.all(dis["x"][~dis["mask"]] == 0)
    man = dis["manifest"]
    assert man["counts"]["skipped"] == 1 and man["skip_reasons"] == {"empty note": 1}
    assert man["skipped_items"] == [{"item_id": "c1", "reason": "empty note"}]
    assert man["counts"]["computed"] == 4  # a1 a2 b1 f1; d1 belongs to a sample without the modality
    assert man["mask_false_reasons"]["every item skipped"] == 1
    assert man["preprocessing"]["stride"] == 8 and man["pooling"] == "mean"
    assert summary["discharge_note"].computed == 4

    # the stored rows are the per-note vectors pooled per sample, in cohort order
    enc = TextEncoder(TextConfig(model=str(bert), max_length=32, stride=8, device="cpu"))
    a1, a2, b1 = enc.embed([SENTENCES[0], SENTENCES[1], " ".join(SENTENCES * 3)])
    np.testing.assert_allclose(dis["x"][0].numpy(), (a1 + a2) / 2, atol=1e-5)
    np.testing.assert_allclose(dis["x"][1].numpy(), b1, atol=1e-5)
    assert not np.allclose(a1, a2)

    # latest = the note with the later charttime (a1 at 05:00, a2 at 02:00), from the cache: nothing recomputed
    latest = tmp_path / "store_latest"
    _run(cohort, store, bert, pooling="latest", overwrite=True)  # another pooling replaces the modality
    _, feats2 = load_cohort_features(store, cohort)
    np.testing.assert_allclose(feats2["discharge_note"]["x"][0].numpy(), a1, atol=1e-5)
    assert feats2["discharge_note"]["manifest"]["counts"]["computed"] == 0
    assert not latest.exists()


def test_long_note_windows_match_a_plain_per_window_loop(bert):
    """Batched, length-sorted, padded windows == each window alone (batch 1), then the mean over windows."""
    enc = TextEncoder(TextConfig(model=str(bert), max_length=32, stride=8, batch_size=3, device="cpu"))
    texts = [" ".join(SENTENCES * 2), SENTENCES[0], " ".join(SENTENCES[3:9])]
    batched = enc.embed(texts)
    for text, vec in zip(texts, batched):
        windows = enc.tokenizer(text, truncation=True, max_length=32, stride=8, return_overflowing_tokens=True)[
            "input_ids"
        ]
        assert all(len(w) <= 32 for w in windows)
        if text == texts[0]:
            assert len(windows) > 3
            # consecutive windows share `stride` tokens (body tokens without [CLS]/[SEP])
            assert windows[0][-1 - 8 : -1] == windows[1][1 : 1 + 8]
        with torch.inference_mode():
            singles = [enc.model(input_ids=torch.tensor([w])).last_hidden_state[0].mean(0).numpy() for w in windows]
        np.testing.assert_allclose(vec, np.mean(singles, axis=0), atol=2e-5)


def test_cache_reuse_and_invalidation(cohort, tmp_path, bert):
    store = tmp_path / "store"
    _run(cohort, store, bert)
    _, first = load_cohort_features(store, cohort)
    again = _run(cohort, store, bert)
    assert again["discharge_note"].computed == 0 and again["discharge_note"].reused == 4
    _, second = load_cohort_features(store, cohort)
    assert torch.equal(first["discharge_note"]["x"], second["discharge_note"]["x"])

    # preprocessing change -> another fingerprint, everything recomputed (replacing the modality: --overwrite)
    changed = _run(cohort, store, bert, max_length=24, overwrite=True)
    assert changed["discharge_note"].computed == 4 and changed["discharge_note"].reused == 0
    # a different checkpoint (other weights, same name and config) -> recomputed, and the vectors differ
    other = tiny.make_tiny_bert(tmp_path / "bert_other" / bert.name, seed=1)
    res = _run(cohort, store, other, overwrite=True)
    assert res["discharge_note"].computed == 4
    _, third = load_cohort_features(store, cohort)
    assert not torch.allclose(third["discharge_note"]["x"][0], first["discharge_note"]["x"][0])
    assert len(list((store / "cache").iterdir())) == 3
    # edited note text -> only that note is recomputed
    notes = pl.read_parquet(cohort / "notes.parquet")
    notes = notes.with_columns(
        pl.when(pl.col("note_id") == "b1").then(pl.lit(SENTENCES[7])).otherwise(pl.col("text")).alias("text")
    )
    notes.write_parquet(cohort / "notes.parquet")
    edited = _run(cohort, store, bert, overwrite=True)
    assert (edited["discharge_note"].computed, edited["discharge_note"].reused) == (1, 3)


def test_resume_after_a_crash_recomputes_only_unfinished_chunks(cohort, tmp_path, bert, monkeypatch):
    store = tmp_path / "store"
    calls = {"n": 0}
    real = TextEncoder._forward

    def dying(self, windows, length):
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("simulated crash (CUDA error, OOM kill, ...)")
        return real(self, windows, length)

    monkeypatch.setattr(TextEncoder, "_forward", dying)
    # chunk_size 1: each note is its own chunk, so the crash happens after one finished note
    with pytest.raises(RuntimeError, match="simulated crash"):
        featurize_text(cohort, store, model=str(bert), max_length=32, stride=8, chunk_size=1, shard_size=1)
    assert not (store / "cohorts").exists()  # nothing assembled from a partial run
    cache_dir = next((store / "cache").iterdir())
    shards = list((cache_dir / "shards").glob("*.safetensors"))
    assert len(shards) == 1 and not list((cache_dir / "shards").glob(".*"))  # complete shard, no temp leftovers

    monkeypatch.setattr(TextEncoder, "_forward", real)
    resumed = featurize_text(cohort, store, model=str(bert), max_length=32, stride=8, chunk_size=1, shard_size=1)
    assert (resumed["discharge_note"].computed, resumed["discharge_note"].reused) == (3, 1)
    _, got = load_cohort_features(store, cohort)
    clean = tmp_path / "clean"
    featurize_text(cohort, clean, model=str(bert), max_length=32, stride=8)
    _, want = load_cohort_features(clean, cohort)
    torch.testing.assert_close(got["discharge_note"]["x"], want["discharge_note"]["x"], atol=1e-5, rtol=0)


def test_note_text_never_reaches_logs_errors_or_files(cohort, tmp_path, bert, caplog, capsys, monkeypatch):
    caplog.set_level(logging.DEBUG)
    store = tmp_path / "store"
    _run(cohort, store, bert)
    # a failing encoder must not leak text through its error either
    monkeypatch.setattr(TextEncoder, "_forward", lambda self, w, n: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError) as err:
        _run(cohort, tmp_path / "store2", bert)
    out = capsys.readouterr()
    assert "discharge_note" in out.err  # the progress / summary lines were printed
    for text in (out.out, out.err, caplog.text, str(err.value)):
        assert MARKER not in text
    for f in store.rglob("*"):
        if f.is_file():
            assert MARKER.encode() not in f.read_bytes(), f


def test_missing_model_is_a_one_line_error_saying_how_to_provide_it(cohort, tmp_path):
    with pytest.raises(MedmodalError) as err:
        featurize_text(cohort, tmp_path / "store", model="nobody/no-such-model-xyz")
    msg = str(err.value)
    assert "\n" not in msg and "hf download nobody/no-such-model-xyz" in msg and "--model" in msg


def test_bad_inputs_name_the_file_and_field(cohort, tmp_path, bert):
    notes = pl.read_parquet(cohort / "notes.parquet").drop("note_type")
    notes.write_parquet(cohort / "notes.parquet")
    with pytest.raises(MedmodalError, match=r"notes\.parquet: field 'note_type'"):
        _run(cohort, tmp_path / "s", bert)
    with pytest.raises(MedmodalError, match="stride"):
        TextConfig(max_length=32, stride=20)
    with pytest.raises(MedmodalError, match="unknown pooling policy 'median'"):
        TextConfig(pooling="median")


def test_a_note_shared_by_two_samples_is_computed_once(tmp_path, bert):
    notes = pl.DataFrame(
        {
            "sample_id": ["x", "y"],
            "note_id": ["n1", "n1"],
            "note_type": ["radiology"] * 2,
            "charttime": [datetime(2150, 1, 1)] * 2,
            "text": [SENTENCES[6]] * 2,
        }
    )
    c = write_cohort(
        tmp_path / "c",
        sample_ids=["x", "y"],
        splits=["train", "test"],
        modalities={"radiology_note": "text"},
        has={"radiology_note": [1, 1]},
        notes=notes,
    )
    res = _run(c, tmp_path / "store", bert)
    _, feats = load_cohort_features(tmp_path / "store", c)
    assert res["radiology_note"].computed == 2 and len(list((tmp_path / "store" / "cache").rglob("*.safetensors"))) == 1
    assert torch.equal(feats["radiology_note"]["x"][0], feats["radiology_note"]["x"][1])


def test_committed_vocab_is_the_one_built_from_the_fixture_text_and_the_simulator():
    built = tiny.build_wordpiece_vocab(vocab_source_lines())
    assert tiny.TINY_BERT_VOCAB.read_text().splitlines() == built, (
        "rebuild it: python tests/test_featurize_text.py --write-vocab"
    )


def test_the_tiny_tokenizer_uses_its_vocabulary(bert):
    """Every fixture and simulator word is one token (no [UNK]), unknown words fall back to characters, and the
    saved tokenizer holds the whole vocabulary (transformers 5 once silently kept only the special tokens)."""
    from transformers import AutoTokenizer

    from medmodal.simulate.text import COURSE

    tok = AutoTokenizer.from_pretrained(bert)
    vocab = tiny.TINY_BERT_VOCAB.read_text().splitlines()
    assert tok.vocab_size == len(vocab) > 500
    for template in [*SENTENCES, *(style for pair in COURSE.values() for style in pair)]:
        text = re.sub(r"\{[a-z_]*\}", " ", template)
        pieces = tok.tokenize(text)
        assert "[UNK]" not in pieces, text
        words = re.findall(r"[a-z]+", text.lower())
        assert sum(not p.startswith("##") for p in pieces if p.isalpha()) == len(words)  # whole words, not chars
    assert tok.tokenize("zebracorn") == ["z", "##e", "##b", "##r", "##a", "##c", "##o", "##r", "##n"]
    ids = tok("patient admitted with fever")["input_ids"]
    assert ids[0] == vocab.index("[CLS]") and ids[-1] == vocab.index("[SEP]") and len(ids) == 6


def test_same_length_notes_with_other_words_embed_differently(bert):
    """With every word [UNK], two notes of equal length embedded identically; now the words matter."""
    enc = TextEncoder(TextConfig(model=str(bert), max_length=32, stride=8, device="cpu"))
    one, two, again = enc.embed(
        ["patient admitted with fever", "lungs are clear bilaterally", "patient admitted with fever"]
    )
    assert not np.allclose(one, two, atol=1e-4)
    np.testing.assert_allclose(one, again, atol=1e-6)


def test_note_types_restricts_the_modalities(cohort, tmp_path, bert):
    res = _run(cohort, tmp_path / "store", bert, note_types=["radiology"])
    assert sorted(res) == ["radiology_note"]
    _, feats = load_cohort_features(tmp_path / "store", cohort)
    assert sorted(feats) == ["radiology_note"]


def test_every_registered_featurizer_and_pooling_policy():
    """Registry contract: a frozen Config with defaults and a run method; pooling policies keep row semantics."""
    import dataclasses

    from medmodal.featurize import FEATURIZERS, POOLINGS, default_featurizer

    kinds = {FEATURIZERS.get(name).kind for name in FEATURIZERS}
    assert {"text", "image", "structured", "timeseries"} <= kinds
    for kind in kinds:  # every kind has exactly one featurizer used when none is named
        assert FEATURIZERS.get(default_featurizer(kind)).kind == kind
    for name in FEATURIZERS:
        cls = FEATURIZERS.get(name)
        assert callable(cls().run)
        cfg = cls.config_class()
        assert dataclasses.is_dataclass(cfg) and cls.config_class.__dataclass_params__.frozen
    vecs = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]], dtype=np.float32)  # rows sorted by (sample, time)
    rows = np.array([0, 0, 2])
    for name in POOLINGS:
        out = POOLINGS.get(name)(vecs, rows, 4)
        assert out.shape == (4, 2) and np.all(out[[1, 3]] == 0) and np.allclose(out[2], [5, 5])
    np.testing.assert_allclose(POOLINGS.get("mean")(vecs, rows, 4)[0], [2.0, 1.0])
    np.testing.assert_allclose(POOLINGS.get("latest")(vecs, rows, 4)[0], [3.0, 2.0])


if __name__ == "__main__" and sys.argv[1:] == ["--write-vocab"]:
    tiny.TINY_BERT_VOCAB.write_text("\n".join(tiny.build_wordpiece_vocab(vocab_source_lines())) + "\n")
