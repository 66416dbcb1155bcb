"""Per-pattern logit rectifier fitted on validation residuals with empirical-Bayes shrinkage.

MMNAR (arXiv 2509.17228) ends with a rectifier that removes the residual bias a trained model still has for
particular modality-observation patterns. Here that bias is an additive offset on the logit scale per pattern
and logit column, estimated on the **validation split only** (the paper's public code fits it on test labels;
this one never sees them: ``fit`` receives validation tensors and ``apply`` takes no labels at all).

Rare patterns have few validation samples, so their raw offsets are noisy; each is shrunk toward the offset of
a coarser group, level by level (pattern → number of observed modalities → global):

    δ_g      = argmin_δ  Σ_{i∈g} BCE(t_i, σ(z_i + δ))          (Newton; clipped to ±5 when a group is one-class)
    v_g      = 1 / Σ_{i∈g} p_i (1 − p_i)                       (sampling variance of δ_g at the optimum)
    τ²       = max(0, mean_g[(δ_g − δ_parent(g))² − v_g])        (between-group variance, method of moments)
    δ*_g     = δ*_parent(g) + τ² / (τ² + v_g) · (δ_g − δ*_parent(g))

A pattern absent from validation takes its parent's offset. Shapes: N samples, C logit columns, P patterns.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

MAX_OFFSET = 5.0


def _fit_offset(z: Tensor, t: Tensor) -> tuple[float, float]:
    """Newton solve of a single intercept on logit scale; returns (offset, variance). z, t: (n,)."""
    delta = torch.zeros((), dtype=torch.float64)
    z, t = z.double(), t.double()
    for _ in range(25):
        p = torch.sigmoid(z + delta)
        info = (p * (1 - p)).sum().clamp_min(1e-9)
        step = (t - p).sum() / info
        delta = (delta + step).clamp(-MAX_OFFSET, MAX_OFFSET)
        if step.abs() < 1e-8:
            break
    p = torch.sigmoid(z + delta)
    return float(delta), float(1.0 / (p * (1 - p)).sum().clamp_min(1e-9))


def _shrink(raw: dict[int, tuple[float, float]], parent: dict[int, float]) -> tuple[dict[int, float], float]:
    """Shrink each group's raw (δ, v) toward ``parent[g]``; returns (shrunk δ per group, τ²)."""
    if not raw:
        return {}, 0.0
    excess = [(d - parent[g]) ** 2 - v for g, (d, v) in raw.items()]
    tau2 = max(0.0, sum(excess) / len(excess))
    out = {g: parent[g] + (tau2 / (tau2 + v)) * (d - parent[g]) for g, (d, v) in raw.items()}
    return out, tau2


class PatternRectifier:
    """Fitted offsets ``[P, C]`` added to the logits of a sample by its pattern code."""

    levels = ("pattern", "n_observed", "global")

    def __init__(self, n_modalities: int, n_columns: int):
        self.n_modalities = n_modalities
        self.n_columns = n_columns
        self.offsets: Tensor | None = None  # (P, C)
        self.report: dict[str, Any] = {}

    @property
    def fitted(self) -> bool:
        return self.offsets is not None

    def n_observed(self, pattern: Tensor) -> Tensor:
        bits = (pattern.long()[:, None] >> torch.arange(self.n_modalities, device=pattern.device)) & 1
        return bits.sum(1)

    def fit(self, logits: Tensor, targets: Tensor, target_mask: Tensor, pattern: Tensor) -> PatternRectifier:
        """logits, targets, target_mask: (N, C) validation outputs; pattern: (N,) long."""
        logits, targets = logits.detach().double().cpu(), targets.detach().double().cpu()
        target_mask, pattern = target_mask.detach().bool().cpu(), pattern.detach().long().cpu()
        n_pat = 2**self.n_modalities
        nobs = self.n_observed(pattern)
        offsets = torch.zeros(n_pat, self.n_columns, dtype=torch.float64)
        per_column = []
        for c in range(self.n_columns):
            keep = target_mask[:, c]
            z, t, pat, no = logits[keep, c], targets[keep, c], pattern[keep], nobs[keep]
            if z.numel() == 0:
                per_column.append({"n": 0})
                continue
            d0, _v0 = _fit_offset(z, t)
            raw1 = {int(k): _fit_offset(z[no == k], t[no == k]) for k in no.unique().tolist()}
            lvl1, tau1 = _shrink(raw1, dict.fromkeys(raw1, d0))
            raw2 = {int(p): _fit_offset(z[pat == p], t[pat == p]) for p in pat.unique().tolist()}
            parent2 = {}
            for p in raw2:
                parent2[p] = lvl1.get(int(bin(p).count("1")), d0)
            lvl2, tau2 = _shrink(raw2, parent2)
            for p in range(n_pat):
                k = bin(p).count("1")
                offsets[p, c] = lvl2.get(p, lvl1.get(k, d0))
            per_column.append(
                {
                    "n": int(z.numel()),
                    "global": d0,
                    "tau2_n_observed": tau1,
                    "tau2_pattern": tau2,
                    "n_observed_raw": {str(k): raw1[k][0] for k in sorted(raw1)},
                    "n_observed_shrunk": {str(k): lvl1[k] for k in sorted(lvl1)},
                    "pattern_raw": {str(p): raw2[p][0] for p in sorted(raw2)},
                    "pattern_n": {str(p): int((pat == p).sum()) for p in sorted(raw2)},
                    "pattern_shrunk": {str(p): lvl2[p] for p in sorted(lvl2)},
                }
            )
        self.offsets = offsets.float()
        self.report = {"levels": list(self.levels), "columns": per_column}
        return self

    def apply(self, logits: Tensor, pattern: Tensor) -> Tensor:
        if self.offsets is None:
            return logits
        off = self.offsets.to(logits.device, logits.dtype)[pattern.long()]  # (B, C)
        return logits + off

    def state(self) -> dict[str, Any]:
        return {
            "n_modalities": self.n_modalities,
            "offsets": None if self.offsets is None else self.offsets.tolist(),
            "report": self.report,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        offsets = state.get("offsets")
        self.offsets = None if offsets is None else torch.tensor(offsets, dtype=torch.float32)
        if self.offsets is not None and tuple(self.offsets.shape) != (2**self.n_modalities, self.n_columns):
            raise ValueError(
                f"rectifier offsets have shape {tuple(self.offsets.shape)}, expected "
                f"({2**self.n_modalities}, {self.n_columns})"
            )
        self.report = state.get("report", {})
