"""Per-sample, per-label losses over the model contract's mixed binary / multiclass label layout.

Every framework's logits are ``[B, Σ_k n_outputs(k)]`` (one column per binary label, ``n_classes`` columns per
multiclass label, in ``spec.labels`` order) and its targets ``labels [B, K]`` with ``label_mask [B, K]``.
The debiasing frameworks need *per-sample* quantities (the loss EMA of DFD, the sample weights, GCE), so these
helpers return ``[B, K]`` tensors instead of a reduced scalar; ``masked_mean`` reduces them.

Shapes: B batch, K label tasks, C = Σ_k n_outputs(k) logit columns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from medmodal.models.base import LabelSpec


def label_columns(labels: tuple[LabelSpec, ...] | list[LabelSpec]) -> list[slice]:
    """The logit columns of each label, in spec order."""
    out, start = [], 0
    for lab in labels:
        out.append(slice(start, start + lab.n_outputs))
        start += lab.n_outputs
    return out


def log_prob_true(logits: Tensor, labels: Tensor, label_mask: Tensor, spec_labels) -> Tensor:
    """log p(y_true | x) for every sample and label: ``[B, K]``; 0 where the label is masked.

    Masked targets may hold anything (NaN for an undefined label); they are replaced before use so that no NaN
    reaches the gradient.
    """
    y = torch.where(label_mask, labels, torch.zeros_like(labels))
    cols = []
    for k, (lab, sl) in enumerate(zip(spec_labels, label_columns(spec_labels))):
        z = logits[:, sl]
        if lab.kind == "binary":
            z = z[:, 0]  # (B,)
            cols.append(torch.where(y[:, k] > 0.5, F.logsigmoid(z), F.logsigmoid(-z)))
        else:
            idx = y[:, k].long().clamp(0, lab.n_outputs - 1)
            cols.append(F.log_softmax(z, dim=-1).gather(1, idx[:, None])[:, 0])
    logp = torch.stack(cols, dim=1)  # (B, K)
    return torch.where(label_mask, logp, torch.zeros_like(logp))


def per_sample_ce(
    logits: Tensor, labels: Tensor, label_mask: Tensor, spec_labels, pos_weight: Tensor | None = None
) -> Tensor:
    """Cross-entropy per sample and label ``[B, K]`` (0 where masked).

    ``pos_weight`` [K] up-weights positives of binary labels exactly as ``BCEWithLogitsLoss(pos_weight=...)``;
    it is ignored for multiclass labels.
    """
    nll = -log_prob_true(logits, labels, label_mask, spec_labels)
    if pos_weight is not None:
        pw = pos_weight.to(nll.dtype).reshape(1, -1)
        binary = torch.tensor([lab.kind == "binary" for lab in spec_labels], device=nll.device)
        positive = (labels > 0.5) & label_mask & binary[None, :]
        nll = torch.where(positive, nll * pw, nll)
    return nll


def gce(logits: Tensor, labels: Tensor, label_mask: Tensor, spec_labels, q: float = 0.7) -> Tensor:
    """Generalized cross-entropy (Zhang & Sabuncu 2018) per sample and label: ``(1 - p_y^q) / q``, ``[B, K]``.

    Its gradient is ``p_y^q · ∇CE``: confidently-fitted (bias-aligned) samples dominate, which is why Learning from
    Failure (Nam et al. 2020) trains the *biased* model with it. q → 0 recovers CE; q = 1 is MAE.
    """
    if not 0.0 < q <= 1.0:
        raise ValueError(f"GCE q must be in (0, 1], got {q}")
    logp = log_prob_true(logits, labels, label_mask, spec_labels)
    loss = (1.0 - torch.exp(q * logp)) / q
    return torch.where(label_mask, loss, torch.zeros_like(loss))


def masked_mean(values: Tensor, mask: Tensor, weights: Tensor | None = None) -> Tensor:
    """Σ w·v over observed entries / Σ w (w = 1 when not given); 0 when nothing is observed."""
    w = mask.to(values.dtype) if weights is None else weights * mask.to(values.dtype)
    return (values * w).sum() / w.sum().clamp_min(1e-8)


def outcome_targets(labels: Tensor, label_mask: Tensor, spec_labels) -> tuple[Tensor, Tensor]:
    """Per-logit-column targets and masks ``[B, C]``: the label for binary columns, one-hot for multiclass.

    Used by the rectifier, which works column by column on the logit scale.
    """
    y = torch.where(label_mask, labels, torch.zeros_like(labels))
    targets, masks = [], []
    for k, lab in enumerate(spec_labels):
        if lab.kind == "binary":
            targets.append(y[:, k : k + 1])
            masks.append(label_mask[:, k : k + 1])
        else:
            targets.append(F.one_hot(y[:, k].long().clamp(0, lab.n_outputs - 1), lab.n_outputs).to(y.dtype))
            masks.append(label_mask[:, k : k + 1].expand(-1, lab.n_outputs))
    return torch.cat(targets, dim=1), torch.cat(masks, dim=1)


def output_probs(logits: Tensor, spec_labels) -> Tensor:
    """Probabilities per logit column ``[B, C]``: sigmoid for binary, softmax within each multiclass label."""
    parts = []
    for lab, sl in zip(spec_labels, label_columns(spec_labels)):
        z = logits[:, sl]
        parts.append(torch.sigmoid(z) if lab.kind == "binary" else torch.softmax(z, dim=-1))
    return torch.cat(parts, dim=1)
