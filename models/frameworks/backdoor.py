"""Backdoor adjustment over the modality-missingness pattern: a dictionary of pattern (confounder) embeddings and
the interventional prediction that marginalises the pattern with its training prior.

CDMM (arXiv 2509.05615) treats the missingness pattern M as a confounder of the representation X and the
outcome Y (who gets a chest X-ray or a note depends on the site and on how sick the patient looks, and so does
the outcome). Backdoor adjustment removes the path X ← M → Y:

    P(Y | do(X = x)) = Σ_m P(Y | x, m) P(m)

The model of P(Y | x, m) is a head that reads the sample's features *and* the embedding d_m of a pattern:
training fits it with each sample's own pattern (the observational conditional, so d_m learns what pattern m
says about Y beyond x); prediction evaluates the head once per pattern seen in training and averages the
probabilities with P(m), the **training split's** pattern frequencies (``marginal_logits``, exact over the seen
patterns). Patterns never seen in training have P(m) = 0 and never contribute. The normalised weighted geometric
mean (NWGM; Xu et al. 2015, used for deconfounding by Wang et al. 2020 and Yue et al. 2020) is the one-pass
option: the head on the expected embedding Σ_m P(m) d_m.

Shapes: B batch, P = 2^M patterns, D dictionary size, C logit columns.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medmodal.models.frameworks.label_losses import label_columns


class PatternBackdoor(nn.Module):
    """The pattern dictionary (P, D) and prior (P,). ``own(pattern)`` -> (B, D) embeddings of the samples' own
    patterns; ``expected()`` -> (D,) Σ_m P(m) d_m; ``marginal_logits(head, spec_labels)`` -> (B, C)."""

    def __init__(self, n_patterns: int, dict_dim: int = 64):
        super().__init__()
        self.dictionary = nn.Parameter(torch.randn(n_patterns, dict_dim) * dict_dim**-0.5)  # (P, D)
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

    def own(self, pattern: Tensor) -> Tensor:
        return self.dictionary.index_select(0, pattern.long())  # (B, D)

    def expected(self) -> Tensor:
        return self.prior @ self.dictionary  # (D,)

    def marginal_logits(self, head: Callable[[Tensor], Tensor], n_rows: int, spec_labels) -> Tensor:
        """Logits of Σ_m P(m) p(y | x, m) over the seen patterns: log-odds of the averaged probability for a
        binary label, log of the averaged class probabilities for a multiclass one (softmax of which is that
        average). ``head(d)`` maps pattern embeddings d (B, S, D) to logits (B, S, C)."""
        seen = torch.nonzero(self.prior > 0).flatten()  # (S,)
        d = self.dictionary.index_select(0, seen)  # (S, D)
        logits = head(d[None].expand(n_rows, -1, -1)).float()  # (B, S, C)
        log_w = torch.log(self.prior.index_select(0, seen)).to(logits.dtype)[None, :, None]  # (1, S, 1)
        cols = []
        for lab, sl in zip(spec_labels, label_columns(spec_labels)):
            z = logits[..., sl]  # (B, S, n_outputs)
            if lab.kind == "binary":
                log_p = torch.logsumexp(log_w + F.logsigmoid(z), dim=1)  # (B, 1)
                log_q = torch.logsumexp(log_w + F.logsigmoid(-z), dim=1)
                cols.append(log_p - log_q)
            else:
                cols.append(torch.logsumexp(log_w + F.log_softmax(z, dim=-1), dim=1))  # (B, n_classes)
        return torch.cat(cols, dim=-1)  # (B, C)
