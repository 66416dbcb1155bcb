"""The model contract for every registered framework × every registered backbone (plus a minimal test backbone):
output shapes, mask semantics, one optimiser step lowering the loss, determinism, saved state; and the
framework-specific promises: the CDMM prior comes from the training split, MMNAR's pre-training ignores labels
and its rectifier sees validation data only."""

from __future__ import annotations

import importlib
import json
import math

import pytest
import torch
from torch import nn

from medmodal.models.base import (
    BACKBONES,
    FRAMEWORKS,
    Backbone,
    BackboneOutput,
    DataSpec,
    LabelSpec,
    ModalitySpec,
)

importlib.import_module("medmodal.models.backbones")
importlib.import_module("medmodal.models.frameworks")

OURS = ("dfd", "cdmm", "mmnar")
SPEC = DataSpec(
    modalities=(
        ModalitySpec("structured", "structured", 6),
        ModalitySpec("timeseries", "timeseries", 3, seq_len=4),
        ModalitySpec("discharge_note", "text", 8),
        ModalitySpec("cxr", "image", 8),
    ),
    labels=(LabelSpec("mortality"), LabelSpec("stage", kind="multiclass", n_classes=3)),
)
HIDDEN = 16


class MaskedMeanBackbone(Backbone):
    """The smallest contract-abiding backbone: a linear map per modality, masked mean as the fused vector."""

    def __init__(self, spec: DataSpec, hidden: int = 16, **kwargs):
        super().__init__(spec, hidden=hidden)
        self.proj = nn.ModuleDict({m.name: nn.Linear(m.dim, hidden) for m in spec.modalities})

    def encode(self, batch):
        toks = []
        for i, m in enumerate(self.spec.modalities):
            x = batch["x"][m.name]
            x = x.mean(1) if x.ndim == 3 else x  # (B, D)
            keep = batch["mask"][:, i : i + 1]
            toks.append(torch.where(keep, torch.tanh(self.proj[m.name](torch.where(keep, x, 0.0))), 0.0))
        return torch.stack(toks, 1)  # (B, M, H)

    def fuse(self, embeddings, mask):
        tokens = torch.where(mask[..., None], embeddings, 0.0)
        return BackboneOutput(tokens=tokens, fused=tokens.sum(1) / mask.sum(1, keepdim=True).clamp_min(1))


BACKBONE_NAMES = ["masked_mean_test", *BACKBONES.names()]


def make_backbone(name: str) -> Backbone:
    if name == "masked_mean_test":
        return MaskedMeanBackbone(SPEC, HIDDEN)
    return BACKBONES.get(name)(SPEC, hidden=HIDDEN)


def make_model(framework: str, backbone: str, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return FRAMEWORKS.get(framework)(make_backbone(backbone), SPEC, **kwargs)


def make_batch(n: int = 24, seed: int = 0) -> dict:
    """Labels carry signal in the structured and note inputs so that a gradient step has something to learn."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, 4, generator=g) < 0.7
    mask[:, 0] = True  # structured data is always present, as in the cohorts
    mask[0] = torch.tensor([True, False, False, False])  # one sample with a single modality
    y = (torch.rand(n, generator=g) < 0.5).float()
    stage = torch.randint(0, 3, (n,), generator=g).float()
    x = {
        "structured": torch.randn(n, 6, generator=g) + y[:, None],
        "timeseries": torch.randn(n, 4, 3, generator=g),
        "discharge_note": torch.randn(n, 8, generator=g) + stage[:, None],
        "cxr": torch.randn(n, 8, generator=g),
    }
    for i, m in enumerate(SPEC.modality_names):  # missing rows hold zeros, as the feature store writes them
        keep = mask[:, i].reshape(-1, *([1] * (x[m].ndim - 1)))
        x[m] = torch.where(keep, x[m], 0.0)
    label_mask = torch.ones(n, 2, dtype=torch.bool)
    label_mask[1, 1] = False  # an undefined label in a multitask cohort
    labels = torch.stack([y, torch.where(label_mask[:, 1], stage, 0.0)], 1)
    pattern = (mask.long() * 2 ** torch.arange(4)).sum(1)
    return {
        "x": x,
        "mask": mask,
        "labels": labels,
        "label_mask": label_mask,
        "pattern": pattern,
        "index": torch.arange(n),
    }


def train_info(batch: dict) -> dict:
    return {
        "n_train": len(batch["index"]),
        "train_patterns": batch["pattern"],
        "train_labels": batch["labels"],
        "train_label_mask": batch["label_mask"],
        "pos_weight": torch.tensor([1.5, 1.0]),
        "device": "cpu",
    }


# every registered framework (erm included: a new one is covered by adding its import line) × every backbone
CASES = [(f, b) for f in FRAMEWORKS.names() for b in BACKBONE_NAMES]


@pytest.mark.parametrize("framework,backbone", CASES)
def test_output_shapes_and_finite_predictions(framework, backbone):
    model = make_model(framework, backbone)
    batch = make_batch()
    model.on_train_begin(train_info(batch))
    model.eval()
    out = model(batch)
    assert out["logits"].shape == (24, SPEC.n_outputs)
    pred = model.predict(batch)
    assert pred.shape == (24, SPEC.n_outputs) and torch.isfinite(pred).all()
    if framework in ("dfd", "cdmm"):
        assert out["z_causal"].shape == out["z_biased"].shape == (24, model.cfg.stream_dim)


@pytest.mark.parametrize("framework,backbone", CASES)
def test_masked_out_modality_input_does_not_change_outputs(framework, backbone):
    model = make_model(framework, backbone)
    batch = make_batch()
    model.on_train_begin(train_info(batch))
    model.eval()
    before = model.predict(batch)
    poked = {**batch, "x": dict(batch["x"])}
    for i, m in enumerate(SPEC.modality_names):
        x = poked["x"][m].clone()
        missing = ~batch["mask"][:, i]
        x[missing] = 1e3 * torch.randn_like(x[missing])
        poked["x"][m] = x
    assert torch.allclose(model.predict(poked), before, atol=1e-5)


@pytest.mark.parametrize("framework,backbone", CASES)
def test_one_optimiser_step_lowers_the_loss(framework, backbone):
    model = make_model(framework, backbone)
    batch = make_batch()
    model.on_train_begin(train_info(batch))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch.manual_seed(1)  # same dropout / edge-dropout draws for both evaluations
    loss, parts = model.loss(batch, model(batch), progress=0.5)
    assert torch.isfinite(loss) and all(isinstance(v, float) for v in parts.values())
    opt.zero_grad()
    loss.backward()
    opt.step()
    torch.manual_seed(1)
    with torch.no_grad():
        after, _ = model.loss(batch, model(batch), progress=0.5)
    assert after.item() < loss.item()


@pytest.mark.parametrize("framework,backbone", CASES)
def test_same_seed_same_outputs_and_state_round_trip(framework, backbone):
    batch = make_batch()
    preds, losses = [], []
    for _ in range(2):
        model = make_model(framework, backbone, seed=3)
        model.on_train_begin(train_info(batch))
        model.train()
        torch.manual_seed(5)
        loss, _ = model.loss(batch, model(batch), progress=0.5)
        loss.backward()
        losses.append(loss.item())
        model.eval()
        # fit_post_hoc is part of every framework's contract (a no-op for most, the rectifier for mmnar)
        model.fit_post_hoc(
            {
                "logits": model(batch)["logits"].detach(),
                "labels": batch["labels"],
                "label_mask": batch["label_mask"],
                "pattern": batch["pattern"],
            }
        )
        preds.append(model.predict(batch))
    assert losses[0] == losses[1] and torch.equal(preds[0], preds[1])
    # weights + JSON extra state rebuild the same predictor
    state = json.loads(json.dumps(model.extra_state()))
    fresh = make_model(framework, backbone, seed=99, **model.config())
    fresh.load_state_dict(model.state_dict())
    fresh.load_extra_state(state)
    fresh.eval()
    assert torch.allclose(fresh.predict(batch), preds[1], atol=1e-6)


@pytest.mark.parametrize("framework", OURS)
def test_bad_config_is_rejected(framework):
    with pytest.raises((ValueError, TypeError)):
        make_model(framework, "masked_mean_test", not_an_option=1)
    bad = {"dfd": {"q": 0.0}, "cdmm": {"mi": "mine"}, "mmnar": {"tau": 0.0}}[framework]
    with pytest.raises(ValueError):
        make_model(framework, "masked_mean_test", **bad)


# ---------------------------------------------------------------------------------------------------- dfd / cdmm


@pytest.mark.parametrize("mi", ["club", "hsic", "none"])
def test_dfd_dependence_penalty_options_and_predict_from_both(mi):
    batch = make_batch()
    model = make_model("dfd", "masked_mean_test", mi=mi, predict_from="both")
    model.on_train_begin(train_info(batch))
    out = model(batch)
    _loss, parts = model.loss(batch, out, progress=0.1)
    assert (mi in parts) == (mi != "none")
    assert torch.allclose(out["logits"], 0.5 * (out["logits_causal"] + out["logits_biased"]))


def test_cdmm_prior_is_the_training_split_pattern_frequencies():
    model = make_model("cdmm", "masked_mean_test")
    train = make_batch(n=40, seed=7)
    model.on_train_begin(train_info(train))
    want = torch.bincount(train["pattern"], minlength=SPEC.n_patterns).float() / 40
    assert torch.allclose(model.backdoor.prior, want)
    assert model.extra_state()["pattern_prior"] == pytest.approx(want.tolist())
    # the prior travels with the weights
    again = make_model("cdmm", "masked_mean_test", seed=1)
    again.load_state_dict(model.state_dict())
    assert torch.equal(again.backdoor.prior, model.backdoor.prior)
    # the adjusted prediction averages the head over the patterns seen in training, with their prior
    model.eval()
    batch = make_batch(seed=8)
    out = model(batch)
    z = out["z_causal"]
    seen = torch.nonzero(want > 0).flatten()
    d = model.backdoor.dictionary
    heads = [model.streams.head("causal", z, d[m].expand(len(z), -1))[:, 0] for m in seen]
    per_pattern = torch.sigmoid(torch.stack(heads))  # (S, B): p(mortality | x, m) for each seen pattern m
    p_do = (want[seen, None] * per_pattern).sum(0)
    assert torch.allclose(torch.sigmoid(out["logits"][:, 0]), p_do, atol=1e-5)
    # ... which is not the observational prediction with the sample's own pattern
    assert not torch.allclose(out["logits"], out["logits_conditional"], atol=1e-3)


# ---------------------------------------------------------------------------------------------------- mmnar


def test_mmnar_pretraining_phase_ignores_labels_and_finetuning_uses_them():
    model = make_model("mmnar", "masked_mean_test")
    batch = make_batch()
    model.on_train_begin(train_info(batch))
    model.eval()
    flipped = {**batch, "labels": batch["labels"].clone()}
    flipped["labels"][:, 0] = 1 - flipped["labels"][:, 0]
    out = model(batch)
    pre = [model.loss(b, out, progress=0.05)[0].item() for b in (batch, flipped)]
    post = [model.loss(b, out, progress=0.6)[0].item() for b in (batch, flipped)]
    assert pre[0] == pre[1] and post[0] != post[1]
    assert model.aux_weight(0.2) == pytest.approx(model.cfg.aux_weight) and model.aux_weight(1.0) == pytest.approx(0)


def _val_outputs(model, batch):
    with torch.no_grad():
        logits = model(batch)["logits"]
    return {"logits": logits, "labels": batch["labels"], "label_mask": batch["label_mask"], "pattern": batch["pattern"]}


def test_mmnar_rectifier_sees_validation_only_and_ignores_test_labels():
    model = make_model("mmnar", "masked_mean_test")
    val, test = make_batch(n=60, seed=11), make_batch(n=30, seed=12)
    model.on_train_begin(train_info(make_batch(seed=10)))
    model.eval()
    raw = model(test)["logits"]
    model.fit_post_hoc(_val_outputs(model, val))
    assert model.rectifier.fitted
    pred = model.predict(test)
    assert not torch.allclose(pred, raw)  # it does correct something
    # poisoned / permuted test labels change nothing: predict never reads them
    poisoned = {
        **test,
        "labels": torch.full_like(test["labels"], float("nan")),
        "label_mask": torch.zeros_like(test["label_mask"]),
    }
    permuted = {**test, "labels": test["labels"][torch.randperm(30)]}
    assert torch.equal(model.predict(poisoned), pred) and torch.equal(model.predict(permuted), pred)
    # ... while the validation labels are what it learns from
    other = make_model("mmnar", "masked_mean_test")
    other.load_state_dict(model.state_dict())
    other.eval()
    flipped = _val_outputs(other, val)
    flipped["labels"] = flipped["labels"].clone()
    flipped["labels"][:, 0] = 1 - flipped["labels"][:, 0]
    other.fit_post_hoc(flipped)
    assert not torch.allclose(other.predict(test), pred)
    # and rectify=False switches it off at predict time
    off = make_model("mmnar", "masked_mean_test", rectify=False)
    off.load_state_dict(model.state_dict())
    off.eval()
    off.fit_post_hoc(_val_outputs(off, val))
    assert torch.allclose(off.predict(test), raw)


# ---------------------------------------------------------------------------------------------------- batch contract


def _rows(batch: dict, rows: torch.Tensor) -> dict:
    """A sub-batch (any order); ``index`` restarts at 0 as the evaluation loop's does."""
    out = {k: v[rows] for k, v in batch.items() if k not in ("x", "index")}
    out["x"] = {m: t[rows] for m, t in batch["x"].items()}
    out["index"] = torch.arange(len(rows))
    return out


def _trained(framework: str, backbone: str, batch: dict, steps: int = 2):
    """A model after a few optimiser steps (so MUSE's running node messages and CDMM's prior are set)."""
    model = make_model(framework, backbone)
    model.on_train_begin(train_info(batch))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        loss, _ = model.loss(batch, model(batch), progress=0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model


@pytest.mark.parametrize("framework,backbone", CASES)
def test_prediction_is_batch_invariant(framework, backbone):
    """A sample's prediction alone equals its prediction inside any batch: no backbone or framework may let the
    other patients being scored (an external cohort's, say) move it."""
    batch = make_batch(n=24, seed=3)
    model = _trained(framework, backbone, batch)
    other = make_batch(n=16, seed=4)
    full = model.predict(batch)
    for i in (0, 5, 23):  # row 0 has a single modality
        alone = model.predict(_rows(batch, torch.tensor([i])))
        assert torch.allclose(alone[0], full[i], atol=1e-5), (i, alone[0], full[i])
    mixed = {
        "x": {m: torch.cat([other["x"][m], batch["x"][m].flip(0)]) for m in SPEC.modality_names},
        **{k: torch.cat([other[k], batch[k].flip(0)]) for k in ("mask", "labels", "label_mask", "pattern")},
        "index": torch.arange(40),
    }
    assert torch.allclose(model.predict(mixed)[16:], full.flip(0), atol=1e-5)


@pytest.mark.parametrize("framework,backbone", CASES)
def test_a_batch_of_one_sample_trains(framework, backbone):
    """The last batch of an epoch can hold one row (n ≡ 1 modulo the batch size): the loss and every gradient
    stay finite (a batch standardisation with the sample sd was NaN there)."""
    batch = make_batch(n=24, seed=5)
    model = make_model(framework, backbone)
    model.on_train_begin(train_info(batch))
    model.train()
    one = _rows(batch, torch.tensor([7]))
    one["index"] = torch.tensor([7])
    loss, parts = model.loss(one, model(one), progress=0.5)
    loss.backward()
    assert torch.isfinite(loss) and all(math.isfinite(v) for v in parts.values()), parts
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("backbone", BACKBONE_NAMES)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_mmnar_reconstruction_of_a_modality_never_sees_that_modality(backbone, mode):
    """The decoder input for modality m (the leave-one-out fusion z₋ₘ) is bit-identical whatever x_m holds, for
    every backbone -- also those whose tokens mix modalities (attention, graph) -- while it does move with
    another observed modality, so the check is not vacuous."""
    batch = make_batch(n=24, seed=6)
    model = make_model("mmnar", backbone)
    model.on_train_begin(train_info(batch))
    model.train(mode == "train")

    def loo(b) -> dict[int, torch.Tensor]:
        torch.manual_seed(0)  # the same dropout / edge-dropout draws in every call
        out = model(b)
        return {m: z for m, _rows_m, z in model.leave_one_out(out["embeddings"], b["mask"])}

    ref = loo(batch)
    assert set(ref) == {0, 1, 2, 3}
    for m, name in enumerate(SPEC.modality_names):
        poked = {**batch, "x": dict(batch["x"])}
        observed = batch["mask"][:, m].reshape(-1, *([1] * (batch["x"][name].ndim - 1)))
        poked["x"][name] = torch.where(observed, batch["x"][name] + 5 * torch.randn_like(batch["x"][name]), 0.0)
        got = loo(poked)
        assert torch.equal(got[m], ref[m]), (backbone, name)
        others = [k for k in ref if k != m]
        assert any(not torch.allclose(got[k], ref[k]) for k in others), (backbone, name)
