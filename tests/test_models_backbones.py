"""Every registered backbone (and, for the checkpoint round trip, every registered framework) against the model
contract: shapes, mask semantics, the all-missing row, one optimiser step lowering the loss, determinism."""

from __future__ import annotations

import json

import pytest
import torch

import medmodal.models.backbones
import medmodal.models.frameworks  # noqa: F401 - registers
from medmodal.models.backbones.muse import edge_dropout, supcon_loss
from medmodal.models.base import BACKBONES, FRAMEWORKS, DataSpec, LabelSpec, ModalitySpec
from medmodal.models.checkpoint import CONFIG, build_model, load_run_model, save_weights, spec_to_json
from medmodal.models.data import Normalizer
from medmodal.models.encoders import pattern_from_mask

SPEC = DataSpec(
    modalities=(
        ModalitySpec("structured", "structured", 6),
        ModalitySpec("timeseries", "timeseries", 4, seq_len=5),
        ModalitySpec("discharge_note", "text", 8),
        ModalitySpec("cxr", "image", 7),
    ),
    labels=(
        LabelSpec("mortality"),
        LabelSpec("readmission_30d"),
        LabelSpec("dx", "multiclass", 3, ("CN", "MCI", "AD")),
    ),
)
H = 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_batch(n: int = 32, seed: int = 0) -> dict:
    """Random inputs whose first structured feature drives the labels; row 0 has no modality at all."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, 4, generator=g) < 0.6
    mask[:, 0] |= torch.rand(n, generator=g) < 0.8
    mask[0] = False
    mask[1] = True
    x = {m.name: torch.randn(n, *((m.seq_len,) if m.seq_len else ()), m.dim, generator=g) for m in SPEC.modalities}
    for name, t in x.items():  # the contract: rows of missing modalities hold zeros
        i = SPEC.modality_names.index(name)
        t[~mask[:, i]] = 0
    s = x["structured"][:, 0]
    labels = torch.stack([(s > 0).float(), (s > 0.5).float(), (s > -0.5).float() + (s > 0.5).float()], dim=1)
    label_mask = torch.ones(n, 3, dtype=torch.bool)
    label_mask[::4, 1] = False  # an undefined second label, as in multitask cohorts
    return {
        "x": x,
        "mask": mask,
        "labels": torch.where(label_mask, labels, 0.0),
        "label_mask": label_mask,
        "pattern": pattern_from_mask(mask),
        "index": torch.arange(n),
    }


def make(backbone: str, framework: str = "erm", seed: int = 0):
    torch.manual_seed(seed)
    model, _, _ = build_model(SPEC, backbone, framework, {"hidden": H})
    return model


@pytest.mark.parametrize("name", BACKBONES.names())
def test_output_shapes(name):
    torch.manual_seed(0)
    bb = BACKBONES.get(name)(SPEC, hidden=H).eval()
    out = bb(make_batch())
    assert out.tokens.shape == (32, 4, H) and out.fused.shape == (32, H)
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.fused).all()
    # tokens of missing modalities are zeros
    assert (out.tokens[~make_batch()["mask"]] == 0).all()
    model = make(name).eval()
    assert model.predict(make_batch()).shape == (32, SPEC.n_outputs) == (32, 5)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_masked_out_input_does_not_change_any_output(name):
    model = make(name).eval()
    batch = make_batch()
    ref = model(batch)
    mask = batch["mask"]
    for fill in (1e3, float("nan")):
        poked = {**batch, "x": dict(batch["x"])}
        for i, m in enumerate(SPEC.modalities):
            t = poked["x"][m.name].clone()
            t[~mask[:, i]] = fill
            poked["x"][m.name] = t
        out = model(poked)
        for key in ("logits", "fused", "tokens"):
            assert torch.equal(out[key], ref[key]), (name, key, fill)
    # and the mask is honoured, not ignored: changing an *observed* input does change the output
    poked = {**batch, "x": {**batch["x"], "structured": batch["x"]["structured"] + 1.0}}
    assert not torch.equal(model(poked)["fused"], ref["fused"])


@pytest.mark.parametrize("name", BACKBONES.names())
def test_all_missing_rows_train_and_predict(name):
    model = make(name).train()
    batch = make_batch(8)
    batch["mask"] = torch.zeros_like(batch["mask"])
    batch["pattern"] = pattern_from_mask(batch["mask"])
    for t in batch["x"].values():
        t.zero_()
    out = model(batch)
    loss, _ = model.loss(batch, out, 0.5)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(model.eval().predict(batch)).all()


@pytest.mark.parametrize("name", BACKBONES.names())
def test_one_step_lowers_the_loss_on_a_fixed_batch(name):
    model = make(name).train()
    model.on_train_begin({"pos_weight": torch.ones(3)})
    batch = make_batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def loss_at_fixed_randomness():
        torch.manual_seed(123)  # same dropout masks and MUSE edge drops before and after the step
        return model.loss(batch, model(batch), 0.5)[0]

    before = loss_at_fixed_randomness()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss_at_fixed_randomness()
    assert after.item() < before.item(), (name, before.item(), after.item())


@pytest.mark.parametrize("name", BACKBONES.names())
def test_determinism(name):
    a, b = make(name, seed=7).train(), make(name, seed=7).train()
    batch = make_batch()
    torch.manual_seed(1)
    la = a.loss(batch, a(batch), 0.1)[0]
    torch.manual_seed(1)
    lb = b.loss(batch, b(batch), 0.1)[0]
    assert torch.equal(la, lb)
    assert torch.equal(a.eval().predict(batch), b.eval().predict(batch))
    c = make(name, seed=8).eval()
    assert not torch.equal(c.predict(batch), a.predict(batch))


# every backbone with erm, every framework with late_fusion: covers each registered piece once, quickly
ROUND_TRIPS = [(b, "erm") for b in BACKBONES.names()] + [("late_fusion", f) for f in FRAMEWORKS.names() if f != "erm"]


@pytest.mark.parametrize(("backbone", "framework"), ROUND_TRIPS)
def test_checkpoint_round_trip_gives_identical_predictions(tmp_path, backbone, framework):
    torch.manual_seed(0)
    model, bb_cfg, fw_cfg = build_model(SPEC, backbone, framework, {"hidden": H})
    batch = make_batch()
    model.on_train_begin(
        {
            "n_train": 32,
            "train_patterns": batch["pattern"],
            "train_labels": batch["labels"],
            "train_label_mask": batch["label_mask"],
            "pos_weight": torch.ones(3),
            "device": "cpu",
        }
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(2):
        loss, _ = model.loss(batch, model(batch), 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    val_logits = model(batch)["logits"].detach()
    model.fit_post_hoc(
        {
            "logits": val_logits,
            "labels": batch["labels"],
            "label_mask": batch["label_mask"],
            "pattern": batch["pattern"],
        }
    )
    expected = model.predict(batch)
    json.dumps(model.extra_state())  # framework state must be JSON, never pickle
    config = {
        "backbone": {"name": backbone, "config": bb_cfg},
        "framework": {"name": framework, "config": fw_cfg},
        "data": {"spec": spec_to_json(SPEC)},
    }
    (tmp_path / CONFIG).write_text(json.dumps(config))
    norm = Normalizer({"structured": torch.zeros(6)}, {"structured": torch.ones(6)})
    save_weights(tmp_path, model, norm)
    torch.manual_seed(99)  # a different init must be fully overwritten by the load
    loaded, _, loaded_norm = load_run_model(tmp_path)
    assert torch.equal(loaded.predict(batch), expected)
    assert torch.equal(loaded_norm.std["structured"], torch.ones(6))


def test_edge_dropout_keeps_at_least_one_edge_and_only_observed_ones():
    torch.manual_seed(0)
    mask = torch.rand(500, 5) < 0.6
    view = edge_dropout(mask, 1.0)
    assert not (view & ~mask).any()  # never invents an edge
    n = mask.sum(1)
    assert (view.sum(1)[n >= 1] >= 1).all()  # every patient with an edge keeps one
    assert (view.sum(1)[n >= 2] < n[n >= 2]).all()  # p = 1: every patient with >= 2 edges loses one
    assert torch.equal(edge_dropout(mask, 0.0), mask)


def test_supcon_matches_a_hand_computed_case():
    u = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]]), dim=-1)
    y = torch.tensor([0.0, 0.0, 1.0])
    sim = u @ u.T / 0.5
    # anchors 0 and 1 each have one positive; anchor 2 has none and is skipped
    l0 = -(sim[0, 1] - torch.logsumexp(sim[0, [1, 2]], 0))
    l1 = -(sim[1, 0] - torch.logsumexp(sim[1, [0, 2]], 0))
    assert torch.allclose(supcon_loss(u, y, 0.5), (l0 + l1) / 2)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_output_of_a_sample_does_not_depend_on_its_batch(name):
    """Batch invariance: after training steps (MUSE's modality nodes have seen batches), a sample's fused vector
    and tokens alone equal those inside a batch, in any order, within 1e-5. MUSE meets it by reading running
    means of its modality nodes' messages in eval mode instead of aggregating the scored batch."""
    model = make(name).train()
    model.on_train_begin({"pos_weight": torch.ones(3)})
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for seed in range(3):
        b = make_batch(seed=seed)
        loss = model.loss(b, model(b), 0.5)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    bb = model.backbone.eval()
    batch = make_batch(seed=9)
    with torch.no_grad():
        full = bb(batch)
        perm = torch.randperm(32, generator=torch.Generator().manual_seed(0))
        shuffled = bb(
            {**{k: v[perm] for k, v in batch.items() if k != "x"}, "x": {m: t[perm] for m, t in batch["x"].items()}}
        )
        for i in (0, 1, 7):
            alone = bb(
                {
                    **{k: v[i : i + 1] for k, v in batch.items() if k != "x"},
                    "x": {m: t[i : i + 1] for m, t in batch["x"].items()},
                }
            )
            assert torch.allclose(alone.fused[0], full.fused[i], atol=1e-5), (name, i)
            assert torch.allclose(alone.tokens[0], full.tokens[i], atol=1e-5), (name, i)
    assert torch.allclose(shuffled.fused, full.fused[perm], atol=1e-5)
