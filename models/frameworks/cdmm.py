"""``cdmm``: Causal Debiasing with Missing Modalities over any backbone.

Paper: "Causal Debiasing Medical Multimodal Representation Learning with Missing Modalities" (arXiv
2509.05615). Two biases: *missingness bias* (which modalities a patient has depends on the patient, so the
pattern M confounds representation and outcome) and *distribution bias* (latent confounders drive both the
observed features and the outcome). The first is removed by a missingness deconfounding module approximating
backdoor adjustment over M (``backdoor.PatternBackdoor``); the second by the causal / spurious dual branch,
which is DFD's dual stream reused as is (``dual_stream.DualStream``).

    h = backbone(x, mask).fused                              (B, H)
    c, a = PatternBackdoor(h)      c = Σ_m a_m(h) d_m,  a ∝ softmax(⟨q(h), k(d_m)⟩/√D) · P(m)   (B, D), (B, P)
    u = [h ; c]                                              (B, H + D)
    z_c, z_b, ŷ_c, ŷ_b = DualStream(u)
    L = DFD loss on (ŷ_c, ŷ_b, z_c, z_b) + L_backbone_aux

Shapes: B batch, H backbone hidden, D dictionary size, P = 2^M patterns, C logit columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from medmodal.models.base import FRAMEWORKS, Backbone, DataSpec, Framework
from medmodal.models.frameworks.backdoor import PatternBackdoor
from medmodal.models.frameworks.dfd import DFD
from medmodal.models.frameworks.dual_stream import DualStream, DualStreamConfig


@dataclass(frozen=True)
class CDMMConfig(DualStreamConfig):
    dict_dim: int = 64  # D: size of each learned pattern embedding

    def __post_init__(self):
        super().__post_init__()
        if self.dict_dim < 1:
            raise ValueError(f"dict_dim must be >= 1, got {self.dict_dim}")


@FRAMEWORKS.register("cdmm")
class CDMM(DFD):
    """Missingness deconfounding (backdoor adjustment over the pattern) + DFD's causal / biased dual branch.

    Everything but the streams' input is DFD's: the same streams, losses, EMA state and backbone aux loss.
    """

    config_class = CDMMConfig

    def __init__(self, backbone: Backbone, spec: DataSpec, **kwargs: Any):
        Framework.__init__(self, backbone, spec)
        self.cfg = CDMMConfig(**kwargs)
        self.backdoor = PatternBackdoor(backbone.hidden, spec.n_patterns, self.cfg.dict_dim)
        self.streams = DualStream(backbone.hidden + self.cfg.dict_dim, spec.n_outputs, spec.labels, self.cfg)

    def on_train_begin(self, info: dict[str, Any]) -> None:
        self.backdoor.set_prior(info["train_patterns"])
        super().on_train_begin(info)

    def stream_input(self, fused: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        context, attn = self.backdoor(fused)  # (B, D), (B, P)
        return torch.cat([fused, context], dim=-1), {"pattern_attention": attn}  # (B, H + D)

    def extra_state(self) -> dict[str, Any]:
        # The prior is also a buffer in the weights; here it is readable next to them.
        return {"pattern_prior": [float(p) for p in self.backdoor.prior]}
