"""``dfd``: Dual-Stream Feature Decorrelation over any backbone.

Paper: "Robust Multimodal Representation Learning in Healthcare" (arXiv 2601.21941). A structural causal view
with a latent confounder that drives both the inputs and the outcome: the backbone's fused representation h
carries causal and bias features; a causal and a biased stream split them, the biased stream is trained with
generalized cross-entropy so that it latches onto easy bias-aligned samples, the causal stream is weighted
towards the samples the biased stream gets wrong, and a mutual-information penalty decorrelates the two.

    h = backbone(x, mask).fused                          (B, H)
    z_c, z_b, ŷ_c, ŷ_b = DualStream(h)                   see models/frameworks/dual_stream.py
    L = Σ_i w_i CE(ŷ_c,i) / Σ_i w_i + GCE_q(ŷ_b) + λ Î(z_c; z_b) + L_backbone_aux
    predict: ŷ_c (or ½(ŷ_c + ŷ_b) with predict_from="both")

By default the biased stream reads h through a stop-gradient, so its GCE loss never trains the backbone (the
representation the causal stream reads); ``biased_input="coupled"`` lets it. Ablation settings: ``mi_weight=0``
(no decorrelation) and ``reweight=False`` (uniform weights).

Shapes: B batch, H backbone hidden, D stream size, C logit columns.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from medmodal.models.base import FRAMEWORKS, Backbone, Batch, DataSpec, Framework
from medmodal.models.frameworks.dual_stream import DualStream, DualStreamConfig


@dataclass(frozen=True)
class DFDConfig(DualStreamConfig):
    """Everything is the dual stream's; see ``DualStreamConfig`` for the fields and their defaults."""

    search_space: ClassVar[tuple[dict[str, Any], ...]] = ({}, {"mi_weight": 0.3}, {"mi_weight": 0.03})


def add_backbone_aux(loss: Tensor, parts: dict[str, float], aux: Tensor | None) -> Tensor:
    """Backbones such as MUSE carry their own training loss; every framework adds it unchanged."""
    if aux is None:
        return loss
    parts["backbone_aux"] = aux.item()
    return loss + aux


def own_backbone(backbone: Backbone) -> Backbone:
    """A fresh, independently initialised backbone of the same class and config for the biased stream: Learning
    from Failure trains its biased model as a separate network. Its own training loss (MUSE's contrast) is not
    used: GCE alone shapes it. A backbone without a config is deep-copied (same initial weights)."""
    if getattr(backbone, "cfg", None) is None:
        return deepcopy(backbone)
    return type(backbone)(backbone.spec, backbone.cfg)


@FRAMEWORKS.register("dfd")
class DFD(Framework):
    """Dual-stream feature decorrelation: causal stream for prediction, GCE-trained biased stream, MI penalty."""

    config_class = DFDConfig

    def __init__(self, backbone: Backbone, spec: DataSpec, config: DFDConfig | None = None, **options: Any):
        super().__init__(backbone, spec, config, **options)
        self.streams = DualStream(backbone.hidden, spec.n_outputs, spec.labels, self.cfg)
        self.biased_backbone = own_backbone(backbone) if self.cfg.biased_input == "own" else None

    def biased_representation(self, batch: Batch) -> Tensor | None:
        """The biased stream's own backbone output (``biased_input="own"``), else None (it reads h)."""
        return None if self.biased_backbone is None else self.biased_backbone(batch).fused

    def on_train_begin(self, info: dict[str, Any]) -> None:
        self.streams.reset_state(int(info.get("n_train", 0)), info.get("pos_weight"), info.get("device", "cpu"))

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        bo = self.backbone(batch)
        out = self.streams(bo.fused, h_biased=self.biased_representation(batch))
        if bo.aux_loss is not None:
            out["backbone_aux"] = bo.aux_loss
        return out

    def loss(self, batch: Batch, out: dict[str, Tensor], progress: float) -> tuple[Tensor, dict[str, float]]:
        loss, parts = self.streams.loss(batch, out, update_ema=self.training)
        loss = add_backbone_aux(loss, parts, out.get("backbone_aux"))
        parts["loss"] = loss.item()
        return loss, parts
