"""``cdmm``: Causal Debiasing with Missing Modalities over any backbone.

Paper: "Causal Debiasing Medical Multimodal Representation Learning with Missing Modalities" (arXiv
2509.05615). Two biases: *missingness bias* (which modalities a patient has depends on the patient and the
site, so the pattern M confounds representation and outcome) and *distribution bias* (latent confounders drive
both the observed features and the outcome). The first is removed by a missingness deconfounding module that
performs backdoor adjustment over M (``backdoor.PatternBackdoor``); the second by the causal / spurious dual
branch, which is DFD's dual stream reused as is (``dual_stream.DualStream``).

    h = backbone(x, mask).fused                          (B, H)   the representation X
    z_c = E_c(h),  z_b = E_b([sg(h) ; d_{m_i}])          (B, D)   DFD's streams; the spurious one also reads the
                                                                  sample's own pattern embedding
    ŷ_c(m) = C_c([z_c ; d_m]),  ŷ_b = C_b([z_b ; d_{m_i}])         heads that also read a pattern embedding
    training:   L = DFD loss on (ŷ_c(m_i), ŷ_b, z_c, z_b) + L_backbone_aux             (own pattern m_i)
    prediction: p(y | do(x)) = Σ_m P(m) σ(ŷ_c(m))        exact over the training split's patterns (default);
                adjustment="nwgm": σ(C_c([z_c ; Σ_m P(m) d_m])); adjustment="none": σ(ŷ_c(m_i)) (ablation)

The causal stream's input is h alone: the sample's own pattern reaches the causal *head* only in training (that
is how d_m learns the pattern's association with Y, which z_c then need not carry), and at prediction it is
averaged out. The spurious stream reads the own pattern, so that the dependence penalty Î(z_c; z_b) also pushes
pattern information out of z_c. h is the backbone's representation of the observed modalities: which
modalities are observed is part of x by construction (the X ← M edge), so h still differs between patterns.

Shapes: B batch, H backbone hidden, D stream size, D_d dictionary size, P = 2^M patterns, C logit columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from torch import Tensor

from medmodal.models.base import FRAMEWORKS, Backbone, Batch, DataSpec, Framework
from medmodal.models.encoders import pattern_from_mask
from medmodal.models.frameworks.backdoor import PatternBackdoor
from medmodal.models.frameworks.dfd import DFD, own_backbone
from medmodal.models.frameworks.dual_stream import DualStream, DualStreamConfig
from medmodal.options import option


@dataclass(frozen=True)
class CDMMConfig(DualStreamConfig):
    # P ≤ 32 entries: a few dimensions suffice
    dict_dim: int = option(16, "D_d: size of each pattern embedding", minimum=1)
    adjustment: Literal["exact", "nwgm", "none"] = option(
        "exact", "backdoor adjustment at prediction: exact sum over patterns | NWGM | none (own pattern)"
    )

    search_space: ClassVar[tuple[dict[str, Any], ...]] = ({}, {"mi_weight": 0.3}, {"mi_weight": 0.03})


@FRAMEWORKS.register("cdmm")
class CDMM(DFD):
    """Backdoor adjustment over the missingness pattern + DFD's causal / biased dual branch.

    DFD's streams, losses, EMA state and backbone aux loss, with heads that also read a pattern embedding.
    """

    config_class = CDMMConfig

    def __init__(self, backbone: Backbone, spec: DataSpec, config: CDMMConfig | None = None, **options: Any):
        Framework.__init__(self, backbone, spec, config, **options)
        self.backdoor = PatternBackdoor(spec.n_patterns, self.cfg.dict_dim)
        self.streams = DualStream(backbone.hidden, spec.n_outputs, spec.labels, self.cfg, self.cfg.dict_dim)
        self.biased_backbone = own_backbone(backbone) if self.cfg.biased_input == "own" else None

    def on_train_begin(self, info: dict[str, Any]) -> None:
        self.backdoor.set_prior(info["train_patterns"])
        super().on_train_begin(info)

    def adjusted_logits(self, z: Tensor, stream: str = "causal", how: str | None = None) -> Tensor:
        """One stream's prediction with the pattern marginalised: features (B, D) -> logits (B, C)."""
        how = how or self.cfg.adjustment
        b = z.shape[0]
        if how == "nwgm":
            return self.streams.head(stream, z, self.backdoor.expected()[None].expand(b, -1))
        z3 = z[:, None, :]  # (B, 1, D)
        return self.backdoor.marginal_logits(
            lambda d: self.streams.head(stream, z3.expand(-1, d.shape[1], -1), d), b, self.spec.labels
        )

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        bo = self.backbone(batch)
        # the pattern of the mask the backbone saw (never a stale batch["pattern"]); used by the training loss
        own = self.backdoor.own(pattern_from_mask(batch["mask"]))  # (B, D_d)
        # logits_causal / logits_biased: p(y | x, own pattern)
        out = self.streams(bo.fused, own, h_biased=self.biased_representation(batch))
        out["logits_conditional"] = out["logits"]
        if self.cfg.adjustment != "none":
            adjusted = self.adjusted_logits(out["z_causal"])
            if self.cfg.predict_from == "both":
                adjusted = 0.5 * (adjusted + self.adjusted_logits(out["z_biased"], "biased"))
            out["logits"] = adjusted.to(out["logits"].dtype)
        if bo.aux_loss is not None:
            out["backbone_aux"] = bo.aux_loss
        return out

    def extra_state(self) -> dict[str, Any]:
        # The prior is also a buffer in the weights; here it is readable next to them.
        return {"pattern_prior": [float(p) for p in self.backdoor.prior]}
