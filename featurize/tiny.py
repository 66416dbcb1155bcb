"""Tiny, randomly initialised encoders for tests, benchmarks and the demo.

Nothing here downloads: the BERT is a 2-layer ``BertConfig`` with a WordPiece vocabulary shipped as package data
(``featurize/tiny_bert/``: the words of synthetic fixture sentences and of the simulator's note templates, so
simulated notes tokenize into words, not characters), the image model is a timm architecture created with
``pretrained=False`` and saved as safetensors. Hand-made cohort directories come from ``contracts.write_cohort``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import torch

# the WordPiece vocabulary of the tiny BERT used by tests, the demo and the benchmarks, and the synthetic
# sentences it was partly built from (package data; tiny_bert/README.md says how the vocabulary is rebuilt)
TINY_BERT_DIR = Path(__file__).resolve().parent / "tiny_bert"
TINY_BERT_VOCAB = TINY_BERT_DIR / "vocab.txt"


def fixture_sentences() -> list[str]:
    """The synthetic clinical-style sentences of ``tiny_bert/fixture_text.txt`` (its first line is a comment)."""
    return (TINY_BERT_DIR / "fixture_text.txt").read_text().splitlines()[1:]


SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_wordpiece_vocab(lines: Iterable[str]) -> list[str]:
    """Special tokens, every word / number / punctuation mark of ``lines``, then single characters and their
    ``##`` continuations so that any lower-case ASCII word still tokenizes without [UNK]."""
    words: set[str] = set()
    for line in lines:
        words.update(re.findall(r"[a-z]+|[0-9]+|[^\sa-z0-9]", line.lower()))
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    extra_punct = sorted(set(".,;:-()/%+=") - words)
    vocab = SPECIAL_TOKENS + sorted(words - set(chars)) + chars + ["##" + c for c in chars] + extra_punct
    return list(dict.fromkeys(vocab))


def make_tiny_bert(
    out_dir: str | Path,
    vocab_file: str | Path = TINY_BERT_VOCAB,
    *,
    seed: int = 0,
    hidden: int = 32,
    layers: int = 2,
    max_positions: int = 128,
    heads: int = 2,
    intermediate: int | None = None,
) -> Path:
    """Save a random BertModel + fast tokenizer to ``out_dir`` (safetensors), loadable by the Auto classes."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The vocabulary goes in as a mapping: transformers 5 ignores ``vocab_file=`` and would leave the five special
    # tokens only, turning every word into [UNK].
    tokens = Path(vocab_file).read_text().splitlines()
    tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)
    if tok.vocab_size != len(tokens):
        raise ValueError(f"{vocab_file}: {len(tokens)} tokens but the tokenizer holds {tok.vocab_size}")
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate or 2 * hidden,
        max_position_embeddings=max_positions,
    )
    torch.manual_seed(seed)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    BertModel(config).eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out


def make_tiny_timm(out_file: str | Path, *, name: str = "test_convnext", seed: int = 0) -> Path:
    """Save the state dict of a randomly initialised timm model (``num_classes=0``) as safetensors."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, num_classes=0)
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out))
    return out
