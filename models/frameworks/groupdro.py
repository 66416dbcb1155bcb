"""``groupdro``: group distributionally robust optimisation over missingness patterns (a group-robust baseline).

Sagawa, Koh, Hashimoto, Liang. "Distributionally Robust Neural Networks for Group Shifts", ICLR 2020. Groups are
(spurious attribute, label) cells; here the attribute is the modality-missingness pattern, the shortcut the
debiasing frameworks are also after, and the label is the primary task's (``spec.labels[0]``; its undefined
rows form their own cell). The model is erm's (an MLP head on the backbone's fused vector); the loss is the
online GroupDRO objective with exponentiated-gradient group weights:

    ℓ_g   = mean CE of the batch's samples in group g                     (groups present in the batch)
    q_g  ← q_g · exp(η (ℓ_g + C / √n_g)),  q ← q / Σ q                   n_g: training samples of g
    L     = Σ_{g present} q_g ℓ_g / Σ_{g present} q_g + L_backbone_aux

η = ``step_size`` (0.01, Sagawa et al.'s choice) and C = ``adjustment`` (0: none; their generalisation
adjustment favours small groups) are the options; ``groups="pattern"`` drops the label from the cell. The CE is
unweighted: groups already separate the classes, and pos_weight on top would count the imbalance twice. q is
training-only state (not saved). The loss is renormalised over the groups present in the batch (Sagawa et al.
sum over all groups with ℓ_g = 0 for absent ones): with up to 2^M · 3 cells, most are absent from a batch, and the
plain sum would shrink the loss -- and the effective learning rate -- by the absent groups' weight.
Shapes: B batch, G groups, K label tasks, C logit columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from medmodal.models.base import FRAMEWORKS, Backbone, Batch, DataSpec
from medmodal.models.encoders import pattern_from_mask
from medmodal.models.frameworks.erm import ERM, ERMConfig
from medmodal.models.frameworks.label_losses import masked_mean, per_sample_ce
from medmodal.options import option


@dataclass(frozen=True)
class GroupDROConfig(ERMConfig):
    step_size: float = option(0.01, "η of the exponentiated-gradient update of the group weights", above=0)
    adjustment: float = option(0.0, "C of the generalisation adjustment C / √n_g", minimum=0)
    groups: Literal["pattern_label", "pattern"] = option("pattern_label", "groups: pattern × label, or pattern")

    search_space: ClassVar[tuple[dict[str, Any], ...]] = ({}, {"step_size": 0.1}, {"adjustment": 1.0})


@FRAMEWORKS.register("groupdro")
class GroupDRO(ERM):
    config_class = GroupDROConfig

    def __init__(self, backbone: Backbone, spec: DataSpec, config: GroupDROConfig | None = None, **options: Any):
        super().__init__(backbone, spec, config, **options)
        primary = spec.labels[0]
        self.n_cells = 1 if self.cfg.groups == "pattern" else primary.n_classes + 1  # + 1: label undefined
        n_groups = spec.n_patterns * self.n_cells
        self.register_buffer("q", torch.full((n_groups,), 1.0 / n_groups), persistent=False)
        self.register_buffer("group_counts", torch.zeros(n_groups), persistent=False)

    def group_of(self, mask: Tensor, labels: Tensor, label_mask: Tensor) -> Tensor:
        """Group index (B,) = pattern · n_cells + cell, cell = primary label (or n_classes when undefined)."""
        pattern = pattern_from_mask(mask)
        if self.n_cells == 1:
            return pattern
        undefined = self.n_cells - 1
        cell = torch.where(label_mask[:, 0], labels[:, 0].long().clamp(0, undefined - 1), undefined)
        return pattern * self.n_cells + cell

    def on_train_begin(self, info: dict[str, Any]) -> None:
        super().on_train_begin(info)
        n_groups = self.q.numel()
        patterns = torch.as_tensor(info["train_patterns"]).long()
        bits = ((patterns[:, None] >> torch.arange(len(self.spec.modalities), device=patterns.device)) & 1).bool()
        g = self.group_of(bits, torch.as_tensor(info["train_labels"]), torch.as_tensor(info["train_label_mask"]))
        self.group_counts = torch.bincount(g.cpu(), minlength=n_groups).float().to(self.q.device)
        self.q = torch.full_like(self.q, 1.0 / n_groups)

    def loss(self, batch: Batch, out: dict[str, Tensor], progress: float) -> tuple[Tensor, dict[str, float]]:
        lmask = batch["label_mask"]
        ce = per_sample_ce(out["logits"].float(), batch["labels"], lmask, self.spec.labels)  # (B, K)
        per_sample = ce.sum(1) / lmask.sum(1).clamp_min(1)  # (B,) mean over the sample's defined labels
        labelled = lmask.any(1).float()
        g = self.group_of(batch["mask"], batch["labels"], lmask)
        n_groups = self.q.numel()
        loss_sum = torch.zeros(n_groups, device=ce.device).index_add(0, g, per_sample * labelled)
        count = torch.zeros(n_groups, device=ce.device).index_add(0, g, labelled)
        present = count > 0
        group_loss = loss_sum / count.clamp_min(1)  # (G,)
        if self.training:
            with torch.no_grad():
                bonus = self.cfg.adjustment / self.group_counts.clamp_min(1).sqrt()
                step = torch.where(present, self.cfg.step_size * (group_loss.detach() + bonus), 0.0)
                q = self.q * torch.exp(step)
                self.q = q / q.sum()
        loss = (self.q * group_loss).sum() / self.q[present].sum().clamp_min(1e-12)
        parts = {
            "robust": float(loss.detach()),
            "average": float(masked_mean(ce, lmask).detach()),
            "worst_group": float(group_loss[present].max().detach()) if bool(present.any()) else 0.0,
        }
        if "aux_loss" in out:
            loss = loss + self.cfg.aux_weight * out["aux_loss"]
            parts["aux"] = float(out["aux_loss"].detach())
        return loss, parts
