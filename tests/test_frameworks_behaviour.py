"""What the debiasing frameworks do, not only what their formulas compute: a small synthetic problem with a known
shortcut that flips at test time, trained in memory for a few seconds per model.

The problem (``shortcut_world``): the label is a deterministic function of a latent U (y = 1[U > 0.4]) that
the structured modality measures with noise; a binary shortcut S agrees with y for ``agree`` of the samples and
leaves crisp marks in the note and image embeddings, and decides whether a content-free "order" modality is
present (P = 0.95 vs 0.05: a missingness-pattern shortcut whose observed features carry nothing). Training and
validation: agree = 0.95; flipped test: agree = 0.05; probe: agree = 0.5 (S independent of y, so decoding S
from a feature measures the shortcut alone, not the label). This is the regime Learning from Failure and its
descendants were built for -- a bias that is easier than, and mostly aligned with, the target. The module trains
15 small models (about 25 s of CPU on the 2-core machine); the benchmark in docs/benchmark.md is the evidence on
the simulated clinical world.

Each framework is compared with erm by the mean flipped-test AUROC over three seeds. Where a framework does
*not* beat erm here, its test is a strict xfail whose reason says what was measured and why: the test fails
the day it starts passing, so the documentation cannot silently go stale.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import medmodal.models.backbones
import medmodal.models.frameworks  # noqa: F401 - registers
from medmodal.models.base import BACKBONES, FRAMEWORKS, DataSpec, LabelSpec, ModalitySpec
from medmodal.models.encoders import pattern_from_mask

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC = DataSpec(
    modalities=(
        ModalitySpec("labs", "structured", 6),
        ModalitySpec("note", "text", 6),
        ModalitySpec("image", "image", 6),
        ModalitySpec("order", "image", 6),
    ),
    labels=(LabelSpec("y"),),
)
ORDER = 3  # index of the content-free modality whose presence is the pattern shortcut
SEEDS = (0, 1, 2)


def shortcut_world(n: int, agree: float, seed: int) -> tuple[dict, np.ndarray]:
    """A batch dict of n samples and the shortcut S (n,)."""
    g = np.random.default_rng(seed)
    u = g.standard_normal(n)
    y = (u > 0.4).astype(np.float32)
    s = np.where(g.random(n) < agree, y, 1 - y)
    mark = (2 * s - 1)[:, None]
    x = {
        "labs": np.concatenate([u[:, None] + 0.3 * g.standard_normal((n, 2)), g.standard_normal((n, 4))], 1),
        "note": np.concatenate([mark + 0.1 * g.standard_normal((n, 1)), g.standard_normal((n, 5))], 1),
        "image": np.concatenate([mark + 0.1 * g.standard_normal((n, 1)), g.standard_normal((n, 5))], 1),
        "order": g.standard_normal((n, 6)),  # nothing but noise: only its presence says anything
    }
    p_order = np.where(s > 0, 0.95, 0.05)
    mask = np.stack([np.ones(n, bool), g.random(n) < 0.9, g.random(n) < 0.6, g.random(n) < p_order], 1)
    xt = {
        k: torch.tensor(np.where(mask[:, i : i + 1], v, 0.0), dtype=torch.float32) for i, (k, v) in enumerate(x.items())
    }
    m = torch.tensor(mask)
    batch = {
        "x": xt,
        "mask": m,
        "labels": torch.tensor(y)[:, None],
        "label_mask": torch.ones(n, 1, dtype=torch.bool),
        "pattern": pattern_from_mask(m),
        "index": torch.arange(n),
    }
    return batch, s


def _rows(b: dict, rows: torch.Tensor) -> dict:
    out = {k: v[rows] for k, v in b.items() if k != "x"}
    out["x"] = {k: v[rows] for k, v in b["x"].items()}
    return out


def fit(framework: str, train: dict, val: dict, seed: int, epochs: int = 10, batch_size: int = 128, **options):
    """The training loop's essentials (AdamW, clipping, progress for the schedules, post-hoc on validation)."""
    torch.manual_seed(seed)
    model = FRAMEWORKS.get(framework)(BACKBONES.get("late_fusion")(SPEC, hidden=32), SPEC, **options)
    n, y = len(train["index"]), train["labels"]
    model.on_train_begin(
        {
            "n_train": n,
            "train_patterns": train["pattern"],
            "train_labels": y,
            "train_label_mask": train["label_mask"],
            "pos_weight": ((1 - y).sum() / y.sum()).reshape(1),
            "device": "cpu",
        }
    )
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    steps, g = math.ceil(n / batch_size), torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        for s in range(steps):
            batch = _rows(train, perm[s * batch_size : (s + 1) * batch_size])
            loss, _ = model.loss(batch, model(batch), (epoch * steps + s) / (epochs * steps))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    model.eval()
    with torch.no_grad():
        out = model(val)
        model.fit_post_hoc({"logits": out["logits"], **{k: val[k] for k in ("labels", "label_mask", "pattern")}})
    return model


def auroc(model, batch: dict) -> float:
    from sklearn.metrics import roc_auc_score

    with torch.no_grad():
        p = model.predict(batch)[:, 0].numpy()
    return float(roc_auc_score(batch["labels"][:, 0].numpy(), p))


def decodability(features: torch.Tensor, s: np.ndarray) -> float:
    """Held-out AUROC of a logistic regression reading S from standardised features (0.5: not decodable);
    fitted on the first half of the probe samples, scored on the second."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    z = features.numpy()
    z = (z - z.mean(0)) / (z.std(0) + 1e-6)
    half = len(z) // 2
    clf = LogisticRegression(max_iter=500).fit(z[:half], s[:half])
    return float(roc_auc_score(s[half:], clf.decision_function(z[half:])))


def pattern_reliance(model, batch: dict) -> float:
    """Mean |Δ p| when the content-free modality's presence flips, every observed feature held fixed."""
    flipped = {**batch, "mask": batch["mask"].clone()}
    flipped["mask"][:, ORDER] = ~flipped["mask"][:, ORDER]
    flipped["pattern"] = pattern_from_mask(flipped["mask"])
    with torch.no_grad():
        p0, p1 = torch.sigmoid(model.predict(batch)[:, 0]), torch.sigmoid(model.predict(flipped)[:, 0])
    return float((p1 - p0).abs().mean())


@pytest.fixture(scope="module")
def worlds():
    train, _ = shortcut_world(800, 0.95, seed=1)
    val, _ = shortcut_world(400, 0.95, seed=2)
    flipped, _ = shortcut_world(1500, 0.05, seed=3)
    probe, s_probe = shortcut_world(900, 0.5, seed=4)
    return {"train": train, "val": val, "flipped": flipped, "probe": probe, "s_probe": s_probe}


@pytest.fixture(scope="module")
def trained(worlds):
    """{framework: [model per seed]} for every registered framework (a new one is covered by its import line)."""
    return {f: [fit(f, worlds["train"], worlds["val"], seed) for seed in SEEDS] for f in FRAMEWORKS.names()}


def _mean_auroc(models, batch) -> float:
    return float(np.mean([auroc(m, batch) for m in models]))


def test_the_toy_has_a_shortcut_that_costs_erm_when_it_flips(trained, worlds):
    erm = trained["erm"]
    assert _mean_auroc(erm, worlds["val"]) > 0.95
    assert _mean_auroc(erm, worlds["flipped"]) < _mean_auroc(erm, worlds["val"]) - 0.1


# Measured with this file's settings (mean flipped-test AUROC over SEEDS; erm 0.815, in distribution 0.996).
NOT_BETTER = {
    "dfd": "measured 0.770 vs erm's 0.815. With the biased stream detached (the default: its GCE must not train "
    "the backbone) it reads a representation shaped by the causal stream, so its relative difficulty hardly "
    "separates bias-aligned from bias-conflicting samples, while the CLUB penalty and the reweighting still cost "
    "the causal stream; LfF's own coupling (biased_input='coupled', calibrate_difficulty=False) beats erm on such "
    "a toy on some seeds but collapsed in distribution on others and inverted on noisy clinical outcomes "
    "(docs/frameworks.md), so it is not the default",
    "mmnar": "measured 0.699 vs erm's 0.815. MMNAR conditions on the missingness pattern by design (it is "
    "informative, not a nuisance, in its causal model), and its cross-modal reconstruction pulls the note and "
    "image embeddings towards what they share -- here the shortcut's mark -- so it leans on the shortcut harder",
}


@pytest.mark.parametrize(
    "framework",
    [
        pytest.param(f, marks=pytest.mark.xfail(strict=True, reason=NOT_BETTER[f])) if f in NOT_BETTER else f
        for f in FRAMEWORKS.names()
        if f != "erm"
    ],
)
def test_framework_beats_erm_when_the_shortcut_flips(trained, worlds, framework):
    assert _mean_auroc(trained[framework], worlds["flipped"]) > _mean_auroc(trained["erm"], worlds["flipped"])


@pytest.mark.parametrize("framework", ["dfd", "cdmm"])
def test_causal_stream_decodes_the_shortcut_worse_than_the_biased_stream(trained, worlds, framework):
    causal, biased = [], []
    for model in trained[framework]:
        with torch.no_grad():
            out = model(worlds["probe"])
        causal.append(decodability(out["z_causal"], worlds["s_probe"]))
        biased.append(decodability(out["z_biased"], worlds["s_probe"]))
    assert np.mean(causal) < np.mean(biased), (causal, biased)


def test_cdmm_adjustment_changes_the_prediction_and_relies_less_on_the_pattern_than_erm(trained, worlds):
    probe = worlds["probe"]
    cdmm = trained["cdmm"]
    for model in cdmm:
        with torch.no_grad():
            out = model(probe)
        assert (out["logits"] - out["logits_conditional"]).abs().mean() > 1e-3  # the adjustment does something
    erm = np.mean([pattern_reliance(m, probe) for m in trained["erm"]])
    adjusted = np.mean([pattern_reliance(m, probe) for m in cdmm])
    assert adjusted < erm, (adjusted, erm)
