"""Late fusion: one encoder per modality, a masked mean over the observed modality embeddings, an MLP.

The baseline of every multimodal EHR paper (e.g. Soenksen et al., "Integrated multimodal artificial intelligence
framework for healthcare applications", npj Digit. Med. 2022; the MUSE and MMNAR baselines). With
e_m = f_m(x_m) the modality embedding and δ_m ∈ {0, 1} its observation indicator:

    fused = MLP( Σ_m δ_m e_m / max(1, Σ_m δ_m) )

Missing modalities are excluded from the mean instead of imputed, so the fused vector of a patient does not move
when an absent modality's input changes. A patient with no observed modality gets MLP(0) — a learned constant,
not a crash.

Shapes: tokens (B, M, H), fused (B, H).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from medmodal.models.base import BACKBONES, Backbone, BackboneOutput, Batch, DataSpec
from medmodal.models.encoders import build_encoders, encode_modalities


@dataclass(frozen=True)
class LateFusionConfig:
    hidden: int = 128
    dropout: float = 0.1

    def __post_init__(self):
        if self.hidden < 1 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"late_fusion: hidden must be >= 1 and dropout in [0, 1), got {self}")


@BACKBONES.register("late_fusion")
class LateFusion(Backbone):
    def __init__(self, spec: DataSpec, hidden: int = 128, **kwargs):
        super().__init__(spec, hidden)
        self.cfg = LateFusionConfig(hidden=hidden, **kwargs)
        self.encoders = build_encoders(spec, hidden, self.cfg.dropout)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(self.cfg.dropout)
        )

    def config(self) -> dict:
        return asdict(self.cfg)

    def encode(self, batch: Batch) -> Tensor:
        return encode_modalities(self.encoders, batch, self.spec)  # (B, M, H), zeros where missing

    def fuse(self, embeddings: Tensor, mask: Tensor) -> BackboneOutput:
        tokens = torch.where(mask[..., None], embeddings, torch.zeros((), dtype=embeddings.dtype))  # (B, M, H)
        count = mask.sum(dim=1, keepdim=True).clamp_min(1).to(tokens.dtype)  # (B, 1)
        pooled = tokens.sum(dim=1) / count  # (B, H)
        return BackboneOutput(tokens=tokens, fused=self.mlp(pooled))
