"""The causal / biased dual stream shared by ``dfd`` and ``cdmm``: two feature streams and heads over a
representation, the per-sample loss EMA that weights them, and their joint loss.

Design (DFD, arXiv 2601.21941, built from its stated components with the standard choices of Learning from
Failure, Nam et al. 2020, and DisEnt, Lee et al. 2021 -- see docs/frameworks.md for which is which):

    z_c = E_c(h),  z_b = E_b([sg(h) ; c])            causal / biased features     (B, D); sg = stop-gradient
    ŷ_c = C_c([z_c ; c]),  ŷ_b = C_b([z_b ; c])       logits (B, C); c an optional context (cdmm's pattern
                                                     embedding), absent for dfd
    L_b = GCE_q(ŷ_b, y)                              biased stream latches onto easy, bias-aligned samples
    w_i = EMA(CE_b)_i / (EMA(CE_b)_i + EMA(CE_c)_i)  large where the biased stream fails (bias-conflicting);
                                                     CE_b on the calibrated logits (1 − q)·ŷ_b, both unweighted
    L_c = Σ_i w_i · CE_pw(ŷ_c, y)_i / Σ_i w_i         CE_pw: positives weighted by pos_weight
    L   = L_c + L_b + λ · Î(z̃_c; z̃_b)              Î = CLUB (nats per dimension; default) or HSIC,
                                                     z̃ = batch-standardised features

The stop-gradient is LfF's separation: there the biased model is its own network, so its GCE never shapes the
debiased one. Here both streams read the backbone's representation h, and without ``sg`` GCE would push the
shortcut *into* h, the representation the causal stream reads (``biased_input="coupled"`` keeps that variant).
Ablations: ``mi_weight=0`` (no decorrelation), ``reweight=False`` (w_i = 1: the causal stream is plain ERM).
The context enters the biased *stream* as well as both heads: the spurious branch then represents it, and the
dependence penalty pushes it out of the causal features (without that, cdmm's causal stream relied on the
pattern more than erm did on the behavioural toy, tests/test_frameworks_behaviour.py).

Shapes: B batch, H input size, D stream size, K label tasks, C logit columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from medmodal.models.base import FrameworkConfig
from medmodal.models.frameworks.label_losses import gce, masked_mean, per_sample_ce
from medmodal.models.frameworks.mi import make_dependence_penalty
from medmodal.options import option


@dataclass(frozen=True)
class DualStreamConfig(FrameworkConfig):
    # small, so that CLUB's Gaussian q stays well-posed
    stream_dim: int = option(64, "D: each stream's feature size", minimum=1)
    q: float = option(0.7, "GCE exponent of the biased stream (LfF's default)", above=0, maximum=1)
    ema_alpha: float = option(
        0.7, "weight of the old value in the per-sample loss EMA (LfF's default)", minimum=0, below=1
    )
    mi: Literal["club", "hsic", "none"] = option("club", "dependence penalty between the two streams")
    mi_weight: float = option(0.1, "λ: CLUB in nats per feature dimension, or HSIC", minimum=0)
    predict_from: Literal["causal", "both"] = option("causal", "predict from the causal stream or both streams' mean")
    biased_input: Literal["detached", "own", "coupled"] = option(
        "detached", "biased stream input: stop-gradient h | its own backbone (as LfF) | h (GCE trains it)"
    )
    reweight: bool = option(True, "weight the causal loss towards bias-conflicting samples (False: ablation)")
    calibrate_difficulty: bool = option(True, "CE_b on (1 − q)·ŷ_b (False: on ŷ_b, as LfF does)")


class LossEMA:
    """Exponential moving average of a per-sample, per-label loss, indexed by the sample's dataset row.

    ``update`` sets a sample's first value directly (an EMA started at 0 would call every sample easy in the
    first epoch) and grows its table when it meets a row beyond it, so it does not depend on the loop sizing it
    exactly. Training-only state: it is not saved with the model (a resumed run restarts the averages).
    """

    def __init__(self, alpha: float, n_rows: int = 0, n_labels: int = 1, device: torch.device | str = "cpu"):
        self.alpha = alpha
        self.values = torch.zeros(n_rows, n_labels, device=device)  # (N, K)
        self.seen = torch.zeros(n_rows, n_labels, dtype=torch.bool, device=device)

    def _ensure(self, index: Tensor, n_labels: int) -> None:
        n = int(index.max()) + 1 if index.numel() else 0
        if self.values.shape[1] != n_labels:
            self.values = torch.zeros(self.values.shape[0], n_labels, device=self.values.device)
            self.seen = torch.zeros_like(self.values, dtype=torch.bool)
        if n > self.values.shape[0]:
            grow = n - self.values.shape[0]
            self.values = torch.cat([self.values, self.values.new_zeros(grow, n_labels)])
            self.seen = torch.cat([self.seen, self.seen.new_zeros(grow, n_labels)])

    @torch.no_grad()
    def update(self, index: Tensor, loss: Tensor, mask: Tensor) -> Tensor:
        """Fold ``loss`` [B, K] into rows ``index`` [B] where ``mask`` [B, K]; return the EMA of those rows."""
        self._ensure(index, loss.shape[1])
        dev = self.values.device
        index, loss, mask = index.to(dev), loss.detach().to(dev, torch.float32), mask.to(dev)
        old, seen = self.values[index], self.seen[index]
        new = torch.where(seen, self.alpha * old + (1 - self.alpha) * loss, loss)
        new = torch.where(mask, new, old)
        self.values[index] = new
        self.seen[index] = seen | mask
        return new

    def get(self, index: Tensor) -> Tensor:
        return self.values[index.to(self.values.device)]


def _standardise(z: Tensor) -> Tensor:
    """Per-dimension batch standardisation before the dependence penalty.

    Without it the streams can shrink or inflate their features faster than CLUB's q network follows, and the
    estimate turns into a moving target (it went to −50 nats with features growing 20× in our runs).
    Dependence is scale-free, so nothing is lost. The population sd (no Bessel correction) keeps a batch of one
    row finite: its centred features are 0, and 0 / clamp is 0 (the sample sd of one row is 0/0 = NaN, which a
    cohort of n ≡ 1 modulo the batch size hit on its last step).
    """
    return (z - z.mean(0, keepdim=True)) / z.std(0, keepdim=True, correction=0).clamp_min(1e-4)


def _mlp(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))


class DualStream(nn.Module):
    """Causal and biased streams with their heads, and the DFD loss over them.

    Shapes: forward(h (B, H)) -> {"z_causal" (B, D), "z_biased" (B, D), "logits_causal" (B, C),
    "logits_biased" (B, C), "logits" (B, C)}.
    """

    def __init__(self, in_dim: int, n_outputs: int, spec_labels, config: DualStreamConfig, context_dim: int = 0):
        super().__init__()
        self.cfg = config
        self.spec_labels = tuple(spec_labels)
        d = config.stream_dim
        self.context_dim = context_dim
        self.causal = _mlp(in_dim, d)
        self.biased = _mlp(in_dim + context_dim, d)
        self.head_causal = nn.Linear(d + context_dim, n_outputs)
        self.head_biased = nn.Linear(d + context_dim, n_outputs)
        # features reach the penalty batch-standardised (unit variance), so q may explain at most ~86 % of a
        # dimension's variance (log σ² ≥ −2): that caps the penalty's gradient when the streams nearly coincide
        club_args = {"logvar_range": (-2.0, 2.0)} if config.mi == "club" else {}
        self.penalty = make_dependence_penalty(config.mi, d, d, hidden=d, **club_args)
        self.ema_causal = LossEMA(config.ema_alpha, n_labels=len(self.spec_labels))
        self.ema_biased = LossEMA(config.ema_alpha, n_labels=len(self.spec_labels))
        self.pos_weight: Tensor | None = None

    def reset_state(self, n_rows: int, pos_weight: Tensor | None, device) -> None:
        k = len(self.spec_labels)
        self.ema_causal = LossEMA(self.cfg.ema_alpha, n_rows, k, device)
        self.ema_biased = LossEMA(self.cfg.ema_alpha, n_rows, k, device)
        self.pos_weight = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32)

    def head(self, which: str, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Logits of one stream's head on features z (..., D) and, when the stream has one, context (..., D_c)."""
        head = self.head_causal if which == "causal" else self.head_biased
        return head(z if context is None else torch.cat([z, context.to(z.dtype)], dim=-1))

    def forward(self, h: Tensor, context: Tensor | None = None, h_biased: Tensor | None = None) -> dict[str, Tensor]:
        """h: the representation the causal stream reads; h_biased: the biased stream's own representation
        (``biased_input="own"``), else the biased stream reads h, detached unless ``biased_input="coupled"``."""
        if (context is None) != (self.context_dim == 0):
            raise ValueError(f"this dual stream expects a context of size {self.context_dim}")
        z_c = self.causal(h)
        if h_biased is None:
            h_biased = h if self.cfg.biased_input == "coupled" else h.detach()
        if context is not None:
            h_biased = torch.cat([h_biased, context.to(h_biased.dtype)], dim=-1)
        z_b = self.biased(h_biased)
        logits_c, logits_b = self.head("causal", z_c, context), self.head("biased", z_b, context)
        logits = logits_c if self.cfg.predict_from == "causal" else 0.5 * (logits_c + logits_b)
        return {
            "z_causal": z_c,
            "z_biased": z_b,
            "logits_causal": logits_c,
            "logits_biased": logits_b,
            "logits": logits,
        }

    def loss(self, batch, out: dict[str, Tensor], update_ema: bool) -> tuple[Tensor, dict[str, float]]:
        labels, lmask = batch["labels"], batch["label_mask"].bool()
        pw = None if self.pos_weight is None else self.pos_weight.to(labels.device)
        ce_c = per_sample_ce(out["logits_causal"], labels, lmask, self.spec_labels, pw)  # (B, K), for the loss
        # Difficulty compares *unweighted* CEs: pos_weight inside CE_c would lower every positive's weight and
        # partly undo the class weighting the loss applies.
        ce_c_raw = per_sample_ce(out["logits_causal"].detach(), labels, lmask, self.spec_labels)
        # GCE's population minimiser is overconfident: its odds are the true odds to the power 1/(1 − q) (3.3
        # for q = 0.7). With noisy clinical outcomes that makes every minority-label sample look "hard", and the
        # weights below would then teach the causal stream the inverted label. Scaling the biased logits by
        # (1 − q) undoes the power, so the difficulty compares calibrated probabilities.
        scale = (1 - self.cfg.q) if self.cfg.calibrate_difficulty else 1.0
        ce_b = per_sample_ce(scale * out["logits_biased"].detach(), labels, lmask, self.spec_labels)
        if update_ema:
            ema_c = self.ema_causal.update(batch["index"], ce_c_raw, lmask)
            ema_b = self.ema_biased.update(batch["index"], ce_b, lmask)
        else:  # evaluation of the loss (e.g. on validation rows): use the batch's own losses
            ema_c, ema_b = ce_c_raw, ce_b
        ema_c, ema_b = ema_c.to(ce_c.device), ema_b.to(ce_c.device)
        w = (ema_b / (ema_b + ema_c).clamp_min(1e-8)).detach()  # (B, K) relative difficulty
        if not self.cfg.reweight:
            w = torch.ones_like(w)
        loss_c = masked_mean(ce_c, lmask, w)
        loss_b = masked_mean(gce(out["logits_biased"], labels, lmask, self.spec_labels, self.cfg.q), lmask)
        total = loss_c + loss_b
        parts = {"causal_ce": loss_c.item(), "biased_gce": loss_b.item(), "weight_mean": float(masked_mean(w, lmask))}
        if self.penalty is not None:
            dep, q_nll = self.penalty(_standardise(out["z_causal"]), _standardise(out["z_biased"]))
            if self.cfg.mi == "club":
                # nats per feature dimension: two streams read off one representation can share tens of nats,
                # and a λ tuned at one stream_dim should mean the same at another
                dep = dep / self.cfg.stream_dim
            total = total + self.cfg.mi_weight * dep
            parts[f"{self.cfg.mi}"] = dep.item()
            if self.cfg.mi == "club":
                parts["club_q_nll"] = q_nll.item()
        return total, parts
