"""``mmnar``: causal representation learning under modality missing-not-at-random, over any backbone.

Paper: "Causal Representation Learning from Multimodal Clinical Records under Non-Random Modality
Missingness" (arXiv 2509.17228). Which modalities a patient has (δ) is decided by clinicians from how the patient
looks, so δ is informative; the framework conditions on it instead of ignoring it, and corrects what is left:

1. Missingness-aware fusion. Per-modality tokens t_m (the backbone's, zero when missing) are gated by an
   embedding of δ and fused by attention restricted to the observed modalities:
       e = MLP(δ)                                           (B, H)
       g_m = σ(W_g [t_m ; e]),  t'_m = g_m ⊙ t_m + p_m        (B, M, H)   p_m: modality embedding
       z = Attn([e ; h ; t'_1..t'_M], key mask = [1, 1, δ])[0] (B, H)     h: backbone's fused vector
2. Leave-one-observed-modality-out reconstruction in embedding space: for every observed m of a sample with at
   least two observed modalities, the backbone fuses the *other* modalities' pre-fusion embeddings e_k
   (``Backbone.encode``; k ≠ m) under δ with m switched off -- its fused vector h₋ₘ and tokens t₋ₘ recomputed
   without m, so nothing of x_m reaches them, for any backbone (tested exactly) -- MMNAR's fusion z₋ₘ =
   Fusion(t₋ₘ, h₋ₘ, δ₋ₘ) is decoded to ê_m = Dec([z₋ₘ ; p_m]), and ê_m is pulled to e_m by MSE and InfoNCE
   (τ = 0.1) between projections, as in the public code:
       L_rec = ½ [CE(sim(P e_m, P ê_m)/τ) + CE(sim(P ê_m, P e_m)/τ)] + w_mse · ‖ê_m − e_m‖² / H
3. Pattern prediction from z (BCE over the M bits of δ) as an auxiliary task.
4. Multitask heads: one small head per label on z.
5. Schedule: auxiliary pre-training (progress < pretrain_frac: L = L_aux), then fine-tuning with
   L = L_sup + λ(progress) L_aux, λ annealed from aux_weight to 0 by a half cosine.
6. Rectifier: per-pattern logit offsets fitted on validation residuals with empirical-Bayes shrinkage
   (``rectifier.PatternRectifier``), added in ``predict``. It is fitted only in ``fit_post_hoc(val)``.

Shapes: B batch, M modalities, H backbone hidden, C logit columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medmodal.models.base import FRAMEWORKS, Backbone, Batch, DataSpec, Framework, FrameworkConfig
from medmodal.models.frameworks.dfd import add_backbone_aux
from medmodal.models.frameworks.label_losses import masked_mean, outcome_targets, output_probs, per_sample_ce
from medmodal.models.frameworks.rectifier import PatternRectifier
from medmodal.options import option


@dataclass(frozen=True)
class MMNARConfig(FrameworkConfig):
    heads: int = option(
        4, "attention heads of the fusion block (reduced to a divisor of the backbone's hidden)", minimum=1
    )
    tau: float = option(0.1, "InfoNCE temperature (the paper's)", above=0)
    proj_dim: int = option(64, "InfoNCE projection size", minimum=1)
    rec_weight: float = option(1.0, "weight of L_rec inside L_aux", minimum=0)
    rec_mse_weight: float = option(1.0, "w_mse: weight of the MSE term beside InfoNCE inside L_rec", minimum=0)
    pattern_weight: float = option(0.5, "weight of the pattern-prediction BCE inside L_aux", minimum=0)
    aux_weight: float = option(0.5, "λ at the start of fine-tuning", minimum=0)
    pretrain_frac: float = option(0.2, "fraction of training spent on auxiliary pre-training only", minimum=0, below=1)
    rectify: bool = option(True, "apply the validation-fitted rectifier in predict()")

    search_space: ClassVar[tuple[dict[str, Any], ...]] = ({}, {"aux_weight": 1.0}, {"aux_weight": 0.2})


class MissingnessAwareFusion(nn.Module):
    """δ-gated modality tokens fused by one pre-norm attention block whose keys are the observed modalities.

    Shapes: forward(tokens (B, M, H), fused (B, H), delta bool (B, M)) -> z (B, H).
    """

    def __init__(self, n_modalities: int, hidden: int, heads: int):
        super().__init__()
        if hidden % heads:
            heads = math.gcd(hidden, heads)  # keep the block valid for any backbone width
        self.delta_embed = nn.Sequential(nn.Linear(n_modalities, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.gate = nn.Linear(2 * hidden, hidden)
        self.modality_embed = nn.Parameter(torch.randn(n_modalities, hidden) * 0.02)  # (M, H)
        self.norm1 = nn.LayerNorm(hidden)
        self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))

    def forward(self, tokens: Tensor, fused: Tensor, delta: Tensor) -> Tensor:
        b, m, h = tokens.shape
        e = self.delta_embed(delta.to(tokens.dtype))  # (B, H)
        g = torch.sigmoid(self.gate(torch.cat([tokens, e[:, None, :].expand(b, m, h)], dim=-1)))  # (B, M, H)
        # Missing rows are zeroed again: the gate's bias must not turn an absent modality into a signal.
        t = (g * tokens + self.modality_embed[None]) * delta[..., None].to(tokens.dtype)  # (B, M, H)
        seq = torch.cat([e[:, None], fused[:, None], t], dim=1)  # (B, 2 + M, H)
        ignore = torch.cat([torch.zeros(b, 2, dtype=torch.bool, device=delta.device), ~delta], dim=1)
        x = self.norm1(seq)
        a, _ = self.attn(x[:, :1], x, x, key_padding_mask=ignore, need_weights=False)  # (B, 1, H)
        z = seq[:, 0] + a[:, 0]
        return z + self.mlp(self.norm2(z))  # (B, H)


def info_nce(a: Tensor, b: Tensor, tau: float) -> Tensor:
    """Symmetric InfoNCE between rows of a and b (N, D); row i of each is the positive pair."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / tau  # (N, N)
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


@FRAMEWORKS.register("mmnar")
class MMNAR(Framework):
    """Missingness-aware fusion, reconstruction + contrastive and pattern auxiliaries, multitask heads,
    validation-fitted per-pattern rectifier."""

    config_class = MMNARConfig

    def __init__(self, backbone: Backbone, spec: DataSpec, config: MMNARConfig | None = None, **options: Any):
        super().__init__(backbone, spec, config, **options)
        h, m = backbone.hidden, len(spec.modalities)
        self.fusion = MissingnessAwareFusion(m, h, self.cfg.heads)
        self.decoder = nn.Sequential(nn.Linear(2 * h, h), nn.GELU(), nn.Linear(h, h))
        self.project = nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.Linear(h, self.cfg.proj_dim))
        self.pattern_head = nn.Linear(h, m)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.Linear(h, lab.n_outputs)) for lab in spec.labels
        )
        self.rectifier = PatternRectifier(m, spec.n_outputs)
        self.pos_weight: Tensor | None = None

    def on_train_begin(self, info: dict[str, Any]) -> None:
        pw = info.get("pos_weight")
        self.pos_weight = None if pw is None else torch.as_tensor(pw, dtype=torch.float32)
        self.rectifier = PatternRectifier(self.rectifier.n_modalities, self.rectifier.n_columns)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        bo = self.backbone(batch)
        delta = batch["mask"].bool()
        z = self.fusion(bo.tokens, bo.fused, delta)  # (B, H)
        out = {
            "z": z,
            "logits": torch.cat([head(z) for head in self.heads], dim=-1),  # (B, C)
            "pattern_logits": self.pattern_head(z),  # (B, M)
            "embeddings": bo.embeddings,
        }
        if bo.aux_loss is not None:
            out["backbone_aux"] = bo.aux_loss
        return out

    def leave_one_out(self, embeddings: Tensor, delta: Tensor) -> list[tuple[int, Tensor, Tensor]]:
        """For each modality m: (m, rows, z₋ₘ) with rows (B,) the samples that observe m and at least one other
        modality, and z₋ₘ (n_rows, H) the decoder's input, fused from the other modalities only.

        The backbone re-fuses the pre-fusion embeddings under δ with m switched off, so x_m cannot reach z₋ₘ:
        not through a fused vector computed from every modality, nor through tokens that a transformer or a
        graph already mixed across modalities. One pass per modality (M of them), rows subset first."""
        out = []
        n_obs = delta.sum(dim=1)
        for m in range(delta.shape[1]):
            rows = delta[:, m] & (n_obs >= 2)
            if not bool(rows.any()):
                continue
            rest = delta[rows].clone()
            rest[:, m] = False  # (n, M): m held out
            bo = self.backbone.fuse(embeddings[rows], rest)
            out.append((m, rows, self.fusion(bo.tokens, bo.fused, rest)))
        return out

    def reconstruction_loss(self, embeddings: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
        """(InfoNCE, MSE) between each held-out pre-fusion embedding e_m and its reconstruction, averaged over m."""
        nce, mse = [], []
        for m, rows, z_rest in self.leave_one_out(embeddings, delta):
            target = embeddings[rows, m]  # (n, H)
            recon = self.decoder(torch.cat([z_rest, self.fusion.modality_embed[m].expand_as(z_rest)], dim=-1))
            mse.append(F.mse_loss(recon.float(), target.float()))
            if target.shape[0] >= 2:  # InfoNCE needs at least one negative
                nce.append(info_nce(self.project(target), self.project(recon), self.cfg.tau))
        zero = embeddings.new_zeros((), dtype=torch.float32)
        return (torch.stack(nce).mean() if nce else zero), (torch.stack(mse).mean() if mse else zero)

    def aux_weight(self, progress: float) -> float:
        p0 = self.cfg.pretrain_frac
        if progress < p0:
            return 1.0
        return self.cfg.aux_weight * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - p0) / (1 - p0))))

    def loss(self, batch: Batch, out: dict[str, Tensor], progress: float) -> tuple[Tensor, dict[str, float]]:
        delta = batch["mask"].bool()
        labels, lmask = batch["labels"], batch["label_mask"].bool()
        nce, mse = self.reconstruction_loss(out["embeddings"], delta)
        rec = nce + self.cfg.rec_mse_weight * mse
        pat = F.binary_cross_entropy_with_logits(out["pattern_logits"], delta.to(out["pattern_logits"].dtype))
        aux = self.cfg.rec_weight * rec + self.cfg.pattern_weight * pat
        pw = None if self.pos_weight is None else self.pos_weight.to(labels.device)
        sup = masked_mean(per_sample_ce(out["logits"], labels, lmask, self.spec.labels, pw), lmask)
        lam = self.aux_weight(progress)
        pretraining = progress < self.cfg.pretrain_frac
        loss = aux if pretraining else sup + lam * aux
        parts = {
            "supervised": sup.item(),
            "reconstruction_nce": nce.item(),
            "reconstruction_mse": mse.item(),
            "pattern_bce": pat.item(),
            "aux_weight": lam,
            "pretraining": float(pretraining),
        }
        loss = add_backbone_aux(loss, parts, out.get("backbone_aux"))
        parts["loss"] = loss.item()
        return loss, parts

    @torch.no_grad()
    def predict(self, batch: Batch) -> Tensor:
        logits = self(batch)["logits"]
        if self.cfg.rectify:
            logits = self.rectifier.apply(logits, batch["pattern"])
        return logits

    def fit_post_hoc(self, val: dict[str, Tensor]) -> None:
        """Fit the rectifier on *validation* logits (uncorrected), labels, label mask and pattern only.

        Each column is fitted on its log-odds (the raw logit for a binary label; log p_c / (1 − p_c) within a
        multiclass label), so that the offset added to that logit column moves exactly these log-odds.
        """
        targets, tmask = outcome_targets(val["labels"], val["label_mask"].bool(), self.spec.labels)
        log_odds = torch.logit(output_probs(val["logits"].float(), self.spec.labels), eps=1e-6)
        self.rectifier.fit(log_odds, targets, tmask, val["pattern"])

    def extra_state(self) -> dict[str, Any]:
        return {"rectifier": self.rectifier.state()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "rectifier" in state:
            self.rectifier.load_state(state["rectifier"])
