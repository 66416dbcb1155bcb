"""``erm``: empirical risk minimisation — a prediction head on the backbone's fused representation.

The reference every debiasing framework is compared with (Vapnik, 1992): minimise the average supervised loss

    L = Σ_{i,k} ℓ_k(g(h_i), y_ik) · 1[y_ik defined] / Σ_{i,k} 1[y_ik defined] + L_backbone_aux,
    h = backbone(x, mask).fused,  g = Linear(GELU(Linear(h)))

with ℓ_k the binary cross-entropy (positives weighted by ``pos_weight`` from the training split) for a binary
label and the softmax cross-entropy for a multiclass one. Undefined labels of a multitask cohort are masked out
rather than imputed. Backbone-specific losses (MUSE's contrastive terms) are added unchanged.

Shapes: B batch, H hidden, C = Σ_k n_outputs(k) logit columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from medmodal.models.base import FRAMEWORKS, Backbone, Batch, DataSpec, Framework, FrameworkConfig
from medmodal.models.frameworks.label_losses import masked_mean, per_sample_ce
from medmodal.options import option


@dataclass(frozen=True)
class ERMConfig(FrameworkConfig):
    head_dropout: float = option(0.1, "dropout inside the prediction head", minimum=0, below=1)
    aux_weight: float = option(
        1.0, "scale of the backbone's own loss (1: as the backbone's paper weights it)", minimum=0
    )

    search_space: ClassVar[tuple[dict[str, Any], ...]] = ({}, {"head_dropout": 0.3}, {"train": {"weight_decay": 0.1}})


@FRAMEWORKS.register("erm")
class ERM(Framework):
    """Empirical risk minimisation: a prediction head on the backbone's fused representation."""

    config_class = ERMConfig
    ddp_find_unused_parameters = False  # backbone and head are used on every step

    def __init__(self, backbone: Backbone, spec: DataSpec, config: ERMConfig | None = None, **options: Any):
        super().__init__(backbone, spec, config, **options)
        H = backbone.hidden
        self.head = nn.Sequential(
            nn.Linear(H, H), nn.GELU(), nn.Dropout(self.cfg.head_dropout), nn.Linear(H, spec.n_outputs)
        )
        # set from the training split; not persistent: only the loss needs it, never prediction
        self.register_buffer("pos_weight", torch.ones(len(spec.labels)), persistent=False)

    def on_train_begin(self, info: dict[str, Any]) -> None:
        pw = info.get("pos_weight")
        if pw is not None:
            self.pos_weight = torch.as_tensor(pw, dtype=torch.float32, device=self.pos_weight.device)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        bo = self.backbone(batch)
        out = {"logits": self.head(bo.fused), "fused": bo.fused, "tokens": bo.tokens}  # logits (B, C)
        if bo.aux_loss is not None:
            out["aux_loss"] = bo.aux_loss
        return out

    def loss(self, batch: Batch, out: dict[str, Tensor], progress: float) -> tuple[Tensor, dict[str, float]]:
        ce = per_sample_ce(
            out["logits"].float(), batch["labels"], batch["label_mask"], self.spec.labels, self.pos_weight
        )  # (B, K)
        task = masked_mean(ce, batch["label_mask"])
        parts = {"task": float(task.detach())}
        loss = task
        if "aux_loss" in out:
            loss = loss + self.cfg.aux_weight * out["aux_loss"]
            parts["aux"] = float(out["aux_loss"].detach())
        return loss, parts
