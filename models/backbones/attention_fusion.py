"""Attention fusion: a transformer over modality tokens with key-padding masks and a missingness-pattern token.

Token-level fusion as in the multimodal EHR literature (MedFuse, Hayat et al., MLHC 2022, fuses modality tokens
with an LSTM; Ma et al., "Are Multimodal Transformers Robust to Missing Modality?", CVPR 2022, study the
transformer variant under missing inputs). Each observed modality
contributes one token t_m = f_m(x_m) + p_m (p_m a learned modality-type embedding). A [CLS] token carries a
learned embedding of the missingness pattern π = Σ_m δ_m 2^m, so the model can condition on *which* modalities
are present (informative missingness) without ever seeing a missing modality's values:

    h_0 = [c + E_pattern(π); t_1; …; t_M],   h_L = Transformer(h_0, key_padding_mask = ¬δ)
    fused = LayerNorm(h_L[0]),   tokens_m = δ_m · h_L[m]

Missing modalities are padded keys, so no attention weight ever lands on them; their own output rows are zeroed.
The [CLS] token is never padded, which is what keeps an all-missing row finite (a softmax over zero keys would be
NaN): such a patient attends only to its pattern token.

Shapes: tokens (B, M, H), fused (B, H).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from medmodal.models.base import BACKBONES, Backbone, BackboneConfig, BackboneOutput, Batch, DataSpec
from medmodal.models.encoders import build_encoders, encode_modalities, pattern_from_mask
from medmodal.options import option


@dataclass(frozen=True)
class AttentionFusionConfig(BackboneConfig):
    layers: int = option(2, "transformer layers over the modality tokens", minimum=1)
    heads: int = option(4, "attention heads (must divide hidden)", minimum=1)
    # tokens are few (one per modality), so a wide feed-forward block buys little
    ff_mult: int = option(2, "feed-forward width as a multiple of hidden", minimum=1)
    dropout: float = option(0.1, "dropout of the encoders and the transformer", minimum=0, below=1)
    pattern_embedding: bool = option(True, "give the [CLS] token a learned embedding of the missingness pattern")

    def __post_init__(self):
        super().__post_init__()
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")


@BACKBONES.register("attention_fusion")
class AttentionFusion(Backbone):
    """A transformer over modality tokens with key-padding masks and a missingness-pattern [CLS] token."""

    config_class = AttentionFusionConfig

    def __init__(self, spec: DataSpec, config: AttentionFusionConfig | None = None, **options: Any):
        super().__init__(spec, config, **options)
        cfg, hidden = self.cfg, self.hidden
        if len(spec.modalities) > 16:
            raise ValueError("attention_fusion: the pattern embedding supports at most 16 modalities")
        self.encoders = build_encoders(spec, hidden, cfg.dropout)
        self.modality_embedding = nn.Parameter(torch.zeros(len(spec.modalities), hidden))
        self.cls = nn.Parameter(torch.zeros(hidden))
        self.pattern_embedding = nn.Embedding(spec.n_patterns, hidden) if cfg.pattern_embedding else None
        layer = nn.TransformerEncoderLayer(
            hidden, cfg.heads, cfg.ff_mult * hidden, cfg.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        # nested tensors would change which kernel runs with the batch's padding; keep one code path
        self.transformer = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        nn.init.normal_(self.modality_embedding, std=0.02)
        nn.init.normal_(self.cls, std=0.02)
        if self.pattern_embedding is not None:
            nn.init.normal_(self.pattern_embedding.weight, std=0.02)

    def encode(self, batch: Batch) -> Tensor:
        return encode_modalities(self.encoders, batch, self.spec)  # (B, M, H), zeros where missing

    def fuse(self, embeddings: Tensor, mask: Tensor) -> BackboneOutput:
        zero = torch.zeros((), dtype=embeddings.dtype, device=embeddings.device)
        tokens = torch.where(mask[..., None], embeddings, zero) + self.modality_embedding  # (B, M, H)
        cls = self.cls.expand(mask.shape[0], -1)  # (B, H)
        if self.pattern_embedding is not None:
            # the pattern is recomputed from the mask, so it can never disagree with what the model sees
            cls = cls + self.pattern_embedding(pattern_from_mask(mask))
        seq = torch.cat([cls[:, None, :], tokens], dim=1)  # (B, 1 + M, H)
        padding = torch.cat([torch.zeros_like(mask[:, :1]), ~mask], dim=1)  # (B, 1 + M); True = ignore
        h = self.transformer(seq, src_key_padding_mask=padding)  # (B, 1 + M, H)
        out_tokens = torch.where(mask[..., None], h[:, 1:], torch.zeros((), dtype=h.dtype, device=h.device))
        return BackboneOutput(tokens=out_tokens, fused=self.norm(h[:, 0]))
