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

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from medmodal.models.base import BACKBONES, Backbone, BackboneConfig, BackboneOutput, Batch, DataSpec
from medmodal.models.encoders import build_encoders, encode_modalities
from medmodal.options import option


@dataclass(frozen=True)
class LateFusionConfig(BackboneConfig):
    dropout: float = option(0.1, "dropout of the encoders and the fusion MLP", minimum=0, below=1)


@BACKBONES.register("late_fusion")
class LateFusion(Backbone):
    """Masked mean of the observed modality embeddings, then an MLP (the baseline of every multimodal paper)."""

    config_class = LateFusionConfig

    def __init__(self, spec: DataSpec, config: LateFusionConfig | None = None, **options: Any):
        super().__init__(spec, config, **options)
        hidden = self.hidden
        self.encoders = build_encoders(spec, hidden, self.cfg.dropout)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(self.cfg.dropout)
        )

    def encode(self, batch: Batch) -> Tensor:
        return encode_modalities(self.encoders, batch, self.spec)  # (B, M, H), zeros where missing

    def fuse(self, embeddings: Tensor, mask: Tensor) -> BackboneOutput:
        tokens = torch.where(mask[..., None], embeddings, torch.zeros((), dtype=embeddings.dtype))  # (B, M, H)
        count = mask.sum(dim=1, keepdim=True).clamp_min(1).to(tokens.dtype)  # (B, 1)
        pooled = tokens.sum(dim=1) / count  # (B, H)
        return BackboneOutput(tokens=tokens, fused=self.mlp(pooled))
