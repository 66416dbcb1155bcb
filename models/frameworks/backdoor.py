"""Backdoor adjustment over the modality-missingness pattern with a dictionary of pattern embeddings.

CDMM (arXiv 2509.05615) treats the missingness pattern M as a confounder of the representation X and the
outcome Y (who gets a chest X-ray or a note depends on how sick they look, and so does the outcome). Backdoor
adjustment removes the path through M:

    P(Y | do(X)) = Σ_m P(Y | X, m) P(m)

Evaluating a network once per pattern is 2^M forward passes; the normalised weighted geometric mean (NWGM,
Xu et al. 2015; used for deconfounding by Wang et al. 2020 and Yue et al. 2020) moves the expectation inside
the softmax, so one pass on the expected pattern embedding suffices:

    P(Y | do(X)) ≈ softmax(f(x, E_m[g(m)])),   E_m[g(m)] ≈ Σ_m a_m(x) d_m
    a_m(x) = softmax_m(⟨W_q x, W_k d_m⟩ / √D) · P(m) / Σ_m' softmax_m'(...) · P(m')

where d_m are learned pattern embeddings (the dictionary) and P(m) is the pattern prior, fixed to the
**training split's** pattern frequencies. Patterns never seen in training have P(m) = 0 and never contribute.

Shapes: B batch, H input size, P = 2^M patterns, D dictionary size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PatternBackdoor(nn.Module):
    """Shapes: forward(h (B, H)) -> (confounder context (B, D), attention a (B, P))."""

    def __init__(self, in_dim: int, n_patterns: int, dict_dim: int = 64):
        super().__init__()
        self.dictionary = nn.Parameter(torch.randn(n_patterns, dict_dim) * dict_dim**-0.5)  # (P, D)
        self.query = nn.Linear(in_dim, dict_dim)
        self.key = nn.Linear(dict_dim, dict_dim)
        # Persistent so that a saved model predicts with the prior of the split it was trained on.
        self.register_buffer("prior", torch.full((n_patterns,), 1.0 / n_patterns))  # (P,)

    @torch.no_grad()
    def set_prior(self, train_patterns: Tensor) -> None:
        """P(m) = frequency of pattern m among the training split's samples."""
        pats = torch.as_tensor(train_patterns).long().flatten().cpu()
        n = self.prior.numel()
        if pats.numel() == 0:
            raise ValueError("cannot set the pattern prior from an empty training split")
        if int(pats.min()) < 0 or int(pats.max()) >= n:
            raise ValueError(f"pattern codes must be in [0, {n}), got [{int(pats.min())}, {int(pats.max())}]")
        counts = torch.bincount(pats, minlength=n).to(self.prior)
        self.prior.copy_(counts / counts.sum())

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        q = self.query(h)  # (B, D)
        k = self.key(self.dictionary)  # (P, D)
        scores = q @ k.T / math.sqrt(q.shape[-1])  # (B, P)
        # softmax(s)·P(m) renormalised == softmax(s + log P(m)); the log form is stable and drops P(m) = 0.
        log_prior = torch.log(self.prior.clamp_min(0))
        attn = torch.softmax(scores + log_prior[None, :], dim=-1)  # (B, P)
        return attn @ self.dictionary, attn  # (B, D), (B, P)
