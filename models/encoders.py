"""Per-modality encoders shared by every backbone: one small network per modality, chosen by its kind.

The feature store already holds frozen embeddings (text, image) or engineered aggregates (structured, timeseries),
so the encoders here are deliberately small: a two-layer MLP for vectors and a GRU for hourly sequences. They
are the "modality-specific encoders" that late fusion, attention fusion and MUSE all start from.

Mask semantics start here: ``encode_modalities`` zeroes the *input* of every masked-out modality before encoding
and the *output* after, so no value of a missing modality (not even a NaN) can reach any backbone output or
gradient. No BatchNorm anywhere: batch statistics would let one sample's missing input leak into another's output.

Shapes: B batch, M modalities, D_m feature size, T time bins, H hidden size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medmodal.contracts import pattern_weights
from medmodal.models.base import Batch, DataSpec, ModalitySpec


class VectorEncoder(nn.Module):
    """[B, D] -> [B, H]: Linear -> LayerNorm -> GELU -> Dropout -> Linear."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, hidden)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SequenceEncoder(nn.Module):
    """[B, T, V] -> [B, H]: per-step projection, one GRU layer, last hidden state, LayerNorm.

    A GRU rather than a transformer: hourly vitals over a 24-48 h window are short, and the GRU is the encoder the
    MIMIC benchmarks and MUSE's public code use for this modality.
    """

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.proj = nn.Linear(dim, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.proj(x))  # (B, T, H)
        with torch.autocast(device_type=x.device.type, enabled=False):  # recurrent kernels stay in fp32 under AMP
            _, last = self.gru(h.float())  # (1, B, H)
        return self.drop(self.norm(last[0]))  # (B, H)


def make_encoder(m: ModalitySpec, hidden: int, dropout: float) -> nn.Module:
    if m.seq_len is not None:
        return SequenceEncoder(m.dim, hidden, dropout)
    return VectorEncoder(m.dim, hidden, dropout)


def build_encoders(spec: DataSpec, hidden: int, dropout: float) -> nn.ModuleDict:
    return nn.ModuleDict({m.name: make_encoder(m, hidden, dropout) for m in spec.modalities})


def encode_modalities(encoders: nn.ModuleDict, batch: Batch, spec: DataSpec) -> Tensor:
    """Encode every modality and zero the rows of missing ones: (B, M, H)."""
    mask = batch["mask"]
    out = []
    for i, m in enumerate(spec.modalities):
        x = batch["x"][m.name]
        keep = mask[:, i].reshape(-1, *([1] * (x.ndim - 1)))  # (B, 1[, 1])
        x = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
        h = encoders[m.name](x)  # (B, H)
        out.append(torch.where(mask[:, i, None], h, torch.zeros((), dtype=h.dtype, device=h.device)))
    return torch.stack(out, dim=1)  # (B, M, H)


def pattern_from_mask(mask: Tensor) -> Tensor:
    """Missingness pattern code Σ_i mask_i · 2^i (the cohort contract's ``pattern``), long [B]."""
    weights = torch.tensor(pattern_weights(mask.shape[1]), dtype=torch.long, device=mask.device)
    return (mask.long() * weights).sum(dim=1)
