"""The debiasing frameworks' building blocks against their formulas: GCE, CLUB, HSIC, the per-sample loss EMA,
the dual stream's sample weights, the backdoor prior and the empirical-Bayes rectifier."""

from __future__ import annotations

import math

import pytest
import torch

from medmodal.models.base import LabelSpec
from medmodal.models.frameworks.backdoor import PatternBackdoor
from medmodal.models.frameworks.dual_stream import DualStream, DualStreamConfig, LossEMA
from medmodal.models.frameworks.label_losses import gce, outcome_targets, per_sample_ce
from medmodal.models.frameworks.mi import CLUB, hsic
from medmodal.models.frameworks.rectifier import PatternRectifier

BINARY = (LabelSpec("death"),)
MIXED = (LabelSpec("death"), LabelSpec("stage", kind="multiclass", n_classes=3))


# ---------------------------------------------------------------------------------------------------- GCE


def test_gce_matches_formula_on_known_inputs():
    # binary logits 0, 2, -1 with labels 1, 0, 1 -> p_y = σ(0), 1 − σ(2), σ(−1)
    logits = torch.tensor([[0.0], [2.0], [-1.0]])
    labels = torch.tensor([[1.0], [0.0], [1.0]])
    mask = torch.ones(3, 1, dtype=torch.bool)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    p = [0.5, 1 - sig(2.0), sig(-1.0)]
    want = [(1 - pi**0.7) / 0.7 for pi in p]
    got = gce(logits, labels, mask, BINARY, q=0.7)[:, 0]
    assert torch.allclose(got, torch.tensor(want), atol=1e-6)
    # multiclass column: softmax over (1, 0, −1) at class 2
    logits = torch.tensor([[0.0, 1.0, 0.0, -1.0]])
    labels = torch.tensor([[1.0, 2.0]])
    got = gce(logits, labels, torch.ones(1, 2, dtype=torch.bool), MIXED, q=0.7)
    p_class2 = math.exp(-1) / (math.exp(1) + 1 + math.exp(-1))
    assert got[0, 1].item() == pytest.approx((1 - p_class2**0.7) / 0.7, abs=1e-6)
    assert got[0, 0].item() == pytest.approx((1 - 0.5**0.7) / 0.7, abs=1e-6)


def test_gce_gradient_is_ce_gradient_weighted_by_p_to_the_q():
    logits = torch.tensor([[1.5], [-0.3], [0.2], [-2.0]], requires_grad=True)
    labels = torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    mask = torch.ones(4, 1, dtype=torch.bool)
    (g_gce,) = torch.autograd.grad(gce(logits, labels, mask, BINARY, q=0.7).sum(), logits)
    (g_ce,) = torch.autograd.grad(per_sample_ce(logits, labels, mask, BINARY).sum(), logits)
    p_y = torch.where(labels > 0.5, torch.sigmoid(logits), 1 - torch.sigmoid(logits)).detach()
    assert torch.allclose(g_gce, p_y**0.7 * g_ce, atol=1e-6)
    # the confidently-right sample (p_y = σ(2)) gets a larger share of the gradient than under CE
    share_gce = g_gce.abs() / g_gce.abs().sum()
    share_ce = g_ce.abs() / g_ce.abs().sum()
    assert share_gce[3] > share_ce[3]


def test_gce_tends_to_ce_as_q_goes_to_zero_and_ignores_masked_labels():
    logits = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.stack([torch.randint(0, 2, (16,)), torch.randint(0, 3, (16,))], 1).float()
    mask = torch.ones(16, 2, dtype=torch.bool)
    mask[3, 1] = False
    labels[3, 1] = float("nan")  # an undefined label must not leak NaN
    ce = per_sample_ce(logits, labels, mask, MIXED)
    g = gce(logits, labels, mask, MIXED, q=1e-4)
    assert torch.isfinite(g).all() and g[3, 1] == 0 and ce[3, 1] == 0
    assert torch.allclose(g, ce, atol=1e-3)


def test_pos_weight_scales_only_binary_positives():
    logits = torch.zeros(2, 4)
    labels = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    mask = torch.ones(2, 2, dtype=torch.bool)
    plain = per_sample_ce(logits, labels, mask, MIXED)
    weighted = per_sample_ce(logits, labels, mask, MIXED, pos_weight=torch.tensor([3.0, 1.0]))
    assert weighted[0, 0] == pytest.approx(3 * plain[0, 0].item())
    assert weighted[1, 0] == plain[1, 0] and torch.equal(weighted[:, 1], plain[:, 1])


# ---------------------------------------------------------------------------------------------------- CLUB / HSIC


def _correlated(rho: float, n: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    y = rho * x + math.sqrt(1 - rho**2) * torch.randn(n, dim, generator=g)
    return x, y


def _fitted_club_estimate(rho: float, dim: int = 4) -> float:
    torch.manual_seed(0)
    club = CLUB(dim, dim, hidden=32, lr=1e-2)
    x, y = _correlated(rho, 2048, dim, seed=1)
    club.fit_step(x, y, steps=200)
    x, y = _correlated(rho, 4096, dim, seed=2)  # fresh samples
    with torch.no_grad():
        return float(club.estimate(x, y))


def test_club_rises_with_dependence_and_vanishes_for_independent_features():
    est = {rho: _fitted_club_estimate(rho) for rho in (0.0, 0.5, 0.9)}
    assert abs(est[0.0]) < 0.05
    assert est[0.0] < est[0.5] < est[0.9]
    for rho in (0.5, 0.9):
        # With the exact conditional q = N(ρx, 1 − ρ²), CLUB is dim·ρ²/(1 − ρ²) in closed form, which lies
        # above the true Gaussian MI −dim/2·log(1 − ρ²): the fitted estimate must land there.
        club_exact = 4 * rho**2 / (1 - rho**2)
        true_mi = -0.5 * 4 * math.log(1 - rho**2)
        assert est[rho] == pytest.approx(club_exact, rel=0.15)
        assert est[rho] > true_mi


def test_club_fits_q_itself_and_the_estimate_moves_only_the_features():
    torch.manual_seed(0)
    club = CLUB(3, 3, hidden=8, inner_steps=3)
    x, y = _correlated(0.8, 64, 3, seed=0)
    x.requires_grad_(True)
    before = [p.detach().clone() for p in club.parameters()]
    est, _nll = club(x, y)  # training mode: three likelihood steps on q first
    assert any(not torch.equal(a, b) for a, b in zip(before, club.parameters()))
    assert all(p.grad is None for p in club.parameters())  # nothing left for the model's optimiser
    g = torch.autograd.grad(est, [x, *club.parameters()], allow_unused=True)
    assert g[0] is not None and g[0].abs().sum() > 0
    assert all(gi is None for gi in g[1:])  # q's parameters are constants inside the estimate
    club.eval()
    frozen = [p.detach().clone() for p in club.parameters()]
    club(x, y)
    assert all(torch.equal(a, b) for a, b in zip(frozen, club.parameters()))  # no fitting outside training


def test_hsic_rises_with_dependence_and_sees_nonlinear_dependence():
    vals = [float(hsic(*_correlated(rho, 400, 3, seed=3))) for rho in (0.0, 0.5, 0.9)]
    assert vals[0] < vals[1] < vals[2]
    g = torch.Generator().manual_seed(4)
    x = torch.randn(400, 1, generator=g)
    indep = float(hsic(x, torch.randn(400, 1, generator=g)))
    quadratic = float(hsic(x, x**2 + 0.1 * torch.randn(400, 1, generator=g)))  # zero correlation, dependent
    assert quadratic > 5 * indep
    assert float(torch.corrcoef(torch.cat([x, x**2], 1).T)[0, 1]).__abs__() < 0.2


# ---------------------------------------------------------------------------------------------------- EMA / weights


def test_loss_ema_starts_at_first_value_blends_later_ones_and_grows():
    ema = LossEMA(alpha=0.7, n_rows=2, n_labels=1)
    idx = torch.tensor([0, 1])
    first = ema.update(idx, torch.tensor([[2.0], [4.0]]), torch.ones(2, 1, dtype=torch.bool))
    assert torch.equal(first, torch.tensor([[2.0], [4.0]]))
    second = ema.update(idx, torch.tensor([[1.0], [0.0]]), torch.tensor([[True], [False]]))
    assert second[0, 0].item() == pytest.approx(0.7 * 2 + 0.3 * 1)
    assert second[1, 0].item() == 4.0  # masked label: unchanged
    ema.update(torch.tensor([5]), torch.tensor([[1.5]]), torch.ones(1, 1, dtype=torch.bool))
    assert ema.values.shape[0] == 6 and ema.get(torch.tensor([5]))[0, 0].item() == 1.5


def test_dual_stream_upweights_samples_the_biased_stream_gets_wrong():
    torch.manual_seed(0)
    ds = DualStream(4, 1, BINARY, DualStreamConfig(stream_dim=4, mi="none"))
    ds.reset_state(2, None, "cpu")
    batch = {
        "labels": torch.tensor([[1.0], [1.0]]),
        "label_mask": torch.ones(2, 1, dtype=torch.bool),
        "index": torch.tensor([0, 1]),
    }
    logits_c = torch.zeros(2, 1, requires_grad=True)  # the causal stream is equally unsure on both
    out = {
        "logits_causal": logits_c,
        "logits_biased": torch.tensor([[4.0], [-4.0]]),  # 0 aligned, 1 conflicting
        "z_causal": torch.zeros(2, 4),
        "z_biased": torch.zeros(2, 4),
    }
    loss, parts = ds.loss(batch, out, update_ema=True)
    (g,) = torch.autograd.grad(loss, logits_c)
    # the biased stream's difficulty is measured on its calibrated logits (1 − q)·z (see the next test)
    w0 = math.log1p(math.exp(-1.2)) / (math.log1p(math.exp(-1.2)) + math.log(2))
    w1 = math.log1p(math.exp(1.2)) / (math.log1p(math.exp(1.2)) + math.log(2))
    assert g[1].abs() / g[0].abs() == pytest.approx(w1 / w0, rel=1e-4)
    assert parts["weight_mean"] == pytest.approx((w0 + w1) / 2, rel=1e-4)
    # class weighting scales the causal loss of positives but does not enter the difficulty
    ds.reset_state(2, torch.tensor([4.0]), "cpu")
    _, weighted = ds.loss(batch, out, update_ema=True)
    assert weighted["weight_mean"] == pytest.approx(parts["weight_mean"], rel=1e-6)
    assert weighted["causal_ce"] == pytest.approx(4 * parts["causal_ce"], rel=1e-6)


def test_gce_minimiser_is_overconfident_by_the_power_one_over_one_minus_q():
    # Minimise the expected GCE of a Bernoulli(0.2) label over one logit: the optimum's odds are 0.25^(1/0.3),
    # which is why the dual stream rescales the biased logits by (1 − q) before measuring difficulty.
    z = torch.zeros(1, 1, requires_grad=True)
    opt = torch.optim.LBFGS([z], lr=0.5, max_iter=200)
    mask = torch.ones(1, 1, dtype=torch.bool)

    def closure():
        opt.zero_grad()
        loss = 0.2 * gce(z, torch.ones(1, 1), mask, BINARY) + 0.8 * gce(z, torch.zeros(1, 1), mask, BINARY)
        loss.sum().backward()
        return loss.sum()

    opt.step(closure)
    assert z.item() == pytest.approx(math.log(0.25) / 0.3, rel=1e-3)
    assert (0.3 * z).item() == pytest.approx(math.log(0.25), rel=1e-3)


# ---------------------------------------------------------------------------------------------------- backdoor


def test_backdoor_prior_equals_training_pattern_frequencies_and_unseen_patterns_get_no_weight():
    bd = PatternBackdoor(n_patterns=8, dict_dim=4)
    train_patterns = torch.tensor([7, 7, 7, 1, 1, 3, 7, 1, 5, 7])
    bd.set_prior(train_patterns)
    want = torch.tensor([0, 3, 0, 1, 0, 1, 0, 5], dtype=torch.float32) / 10
    assert torch.allclose(bd.prior, want)
    assert torch.allclose(bd.expected(), want @ bd.dictionary)
    # a head that reads only the pattern embedding: an unseen pattern (here 0, 2, 4, 6) must not move the average
    seen_hit = []

    def head(d):  # (B, S, D) -> (B, S, 1)
        seen_hit.append(d.shape[1])
        return d.sum(-1, keepdim=True)

    bd.marginal_logits(head, 3, BINARY)
    assert seen_hit == [4]
    with pytest.raises(ValueError, match="pattern codes"):
        bd.set_prior(torch.tensor([0, 8]))


def test_backdoor_marginal_logits_average_probabilities_with_the_prior():
    torch.manual_seed(0)
    bd = PatternBackdoor(n_patterns=4, dict_dim=3)
    bd.set_prior(torch.tensor([0, 1, 1, 1, 2, 3, 3, 3, 3, 3]))  # P = 0.1, 0.3, 0.1, 0.5
    x = torch.randn(5, 2)
    w_x, w_d = torch.randn(2, 4), torch.randn(3, 4)  # logits: 1 binary column + 3 classes

    def head(d):  # (B, S, D) -> (B, S, 4): a head that mixes x and the pattern embedding
        return (x @ w_x)[:, None, :] + torch.tanh(d @ w_d)

    got = bd.marginal_logits(head, 5, MIXED)
    per = head(bd.dictionary[None].expand(5, -1, -1))  # (B, P, 4): every pattern is seen here
    prior = bd.prior[None, :, None]
    p_bin = (prior[..., 0] * torch.sigmoid(per[..., 0])).sum(1)  # Σ_m P(m) σ(ℓ_m)
    p_cls = (prior * torch.softmax(per[..., 1:], -1)).sum(1)  # Σ_m P(m) softmax(ℓ_m)
    assert torch.allclose(torch.sigmoid(got[:, 0]), p_bin, atol=1e-6)
    assert torch.allclose(torch.softmax(got[:, 1:], -1), p_cls, atol=1e-6)
    # ... which is not the head at the expected embedding (NWGM is an approximation, not the same thing)
    nwgm = head(bd.expected()[None, None].expand(5, 1, -1))[:, 0]
    assert not torch.allclose(torch.sigmoid(nwgm[:, 0]), p_bin, atol=1e-3)


# ---------------------------------------------------------------------------------------------------- rectifier


def _val_with_offsets(sizes: dict[int, int], offsets: dict[int, float], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pats, z, y = [], [], []
    for p, n in sizes.items():
        zp = torch.randn(n, generator=g)
        yp = (torch.rand(n, generator=g) < torch.sigmoid(zp + offsets[p])).float()
        pats.append(torch.full((n,), p)), z.append(zp), y.append(yp)
    return torch.cat(z)[:, None], torch.cat(y)[:, None], torch.cat(pats)


def test_rectifier_recovers_large_group_offsets_and_shrinks_small_groups():
    # 3 modalities; patterns 3 (2 observed) and 7 (3 observed) are large, pattern 5 (2 observed) has 12 samples
    z, y, pat = _val_with_offsets({3: 3000, 7: 3000, 5: 12}, {3: 1.0, 7: -1.0, 5: 3.0})
    rect = PatternRectifier(n_modalities=3, n_columns=1).fit(z, y, torch.ones_like(y, dtype=torch.bool), pat)
    off = rect.offsets[:, 0]
    assert off[3].item() == pytest.approx(1.0, abs=0.15)
    assert off[7].item() == pytest.approx(-1.0, abs=0.15)
    col = rect.report["columns"][0]
    parent5 = col["n_observed_shrunk"]["2"]  # the (shrunk) offset of the 2-observed group: patterns 3 and 5
    raw5 = col["pattern_raw"]["5"]
    assert raw5 > 1.5  # the small group's own estimate is far from its parent ...
    assert abs(off[5].item() - parent5) < abs(raw5 - parent5)  # ... and it is shrunk toward it
    # unseen patterns fall back to their n_observed group (6 has 2 observed), and to the global offset when that
    # group is unseen too (patterns 0 and 1: nobody in validation has 0 or 1 modality)
    assert off[6].item() == pytest.approx(parent5, abs=1e-6)
    assert set(col["n_observed_shrunk"]) == {"2", "3"}
    assert off[1].item() == pytest.approx(col["global"]) and off[0].item() == pytest.approx(col["global"])
    corrected = rect.apply(z, pat)
    assert torch.allclose(corrected - z, off[pat][:, None])


def test_rectifier_with_more_validation_data_shrinks_less():
    shrink = []
    for n in (15, 3000):
        z, y, pat = _val_with_offsets({3: 4000, 5: n}, {3: 0.0, 5: 2.0}, seed=1)
        rect = PatternRectifier(3, 1).fit(z, y, torch.ones_like(y, dtype=torch.bool), pat)
        col = rect.report["columns"][0]
        shrink.append(abs(rect.offsets[5, 0].item() - col["pattern_raw"]["5"]))
    assert shrink[1] < shrink[0]


def test_rectifier_state_round_trips_through_json():
    import json

    z, y, pat = _val_with_offsets({1: 200, 3: 200}, {1: 0.5, 3: -0.5})
    rect = PatternRectifier(2, 1).fit(z, y, torch.ones_like(y, dtype=torch.bool), pat)
    again = PatternRectifier(2, 1)
    again.load_state(json.loads(json.dumps(rect.state())))
    assert torch.equal(again.apply(z, pat), rect.apply(z, pat))


def test_outcome_targets_one_hot_multiclass_columns():
    labels = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    mask = torch.tensor([[True, True], [True, False]])
    t, m = outcome_targets(labels, mask, MIXED)
    assert torch.equal(t, torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0]]))
    assert torch.equal(m, torch.tensor([[True] * 4, [True, False, False, False]]))
