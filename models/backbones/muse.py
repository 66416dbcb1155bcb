"""MUSE: a patient–modality bipartite graph with edge-aware message passing and mutual-consistency contrast.

Wu, Dadu, Tustison, Avants, Nalls, Sun, Faghri. "Multimodal Patient Representation Learning with Missing
Modalities and Labels", ICLR 2024 (https://openreview.net/forum?id=Je5SHCKpPa).

Graph (one per mini-batch). Nodes: the B patients of the batch, initialised to a constant vector 1 so that a
patient's identity comes only from its edges, and the M modalities, initialised to learned vectors. An edge
(i, m), in both directions, exists **only when patient i has modality m**, and carries that modality's embedding
e_im = f_m(x_im). A missing modality therefore has no edge at all — nothing to impute, nothing to leak.

Edge-aware message passing (GraphSAGE with edge features, as in GRAPE, You et al., NeurIPS 2020), layer l:

    m_{j→i} = ReLU(W_msg [h_j ‖ e_ji])
    h_i'    = ReLU(W_upd [mean_{j ∈ N(i)} m_{j→i} ‖ h_i])                  (EdgeSAGEConv below)
    e_ij'   = ReLU(W_edge [h_i' ‖ h_j' ‖ e_ij])                            (between layers)

The patient node after the last layer is the fused representation; the updated patient→modality edge
embeddings are the per-modality tokens.

Training signal beside the task loss (``BackboneOutput.aux_loss``). Two views of the graph are drawn with
*edge dropout*: each patient with ≥ 2 observed modalities, with probability ``edge_drop`` (default 0.5), keeps a
uniformly drawn number k ∈ [1, n - 1] of its n edges, so every patient keeps at least one. With u = normalise(
tanh(W_p z)) the projected patient embeddings of the two views and τ the temperature:

    L_mc  = ½ [CE(u¹ u²ᵀ / τ, I) + CE(u² u¹ᵀ / τ, I)]       mutual consistency: a patient is its own positive
                                                                   across views (symmetric InfoNCE)
    L_sup = SupCon(u¹ ∪ u², y) over labelled patients             supervised contrast (Khosla et al., 2020):
                                                                   same-label patients are positives
    aux   = w_mc · L_mc + w_sup · L_sup

L_mc uses every patient, labelled or not — the paper's point about missing *labels*; L_sup and the task loss
use labelled ones only (the primary label, ``spec.labels[0]``, for L_sup).

Defaults, from the paper and its public code (github.com/zzachw/MUSE): hidden 128, two GNN layers, mean
aggregation, dropout 0.25, τ = 0.07, w_mc = w_sup = 0.5, edge dropout on half of the patients. Two choices of
ours, documented in docs/models.md: the two contrasted views are *both* edge-dropped (the public code contrasts
the full graph with one dropped view; ``contrast_full_graph=True`` restores that), and L_sup is the SupCon loss
of Khosla et al. (the public code uses a pairwise BCE on the scaled similarities).

The graph is built per mini-batch, so modality nodes aggregate over the patients in the batch: a patient's
prediction depends (weakly) on its batch mates. Evaluation therefore uses a fixed batch order per split.

Shapes: tokens (B, M, H), fused (B, H); graph x (B + M, H), edge_index (2, 2E), edge_attr (2E, H).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

with warnings.catch_warnings():  # torch_geometric's import touches the deprecated torch.jit.script
    warnings.simplefilter("ignore", FutureWarning)
    from torch_geometric.nn import MessagePassing

from medmodal.models.base import BACKBONES, Backbone, BackboneOutput, Batch, DataSpec
from medmodal.models.encoders import build_encoders, encode_modalities


@dataclass(frozen=True)
class MuseConfig:
    hidden: int = 128
    layers: int = 2
    dropout: float = 0.25
    edge_drop: float = 0.5  # probability that a patient's edges are thinned in an augmented view
    temperature: float = 0.07
    w_mc: float = 0.5  # mutual-consistency (unsupervised) contrast
    w_sup: float = 0.5  # supervised contrast
    normalize: bool = False  # L2-normalise node embeddings after each layer
    contrast_full_graph: bool = False  # True: contrast the full graph with one dropped view (public code)

    def __post_init__(self):
        if self.layers < 1 or self.temperature <= 0 or not 0.0 <= self.edge_drop <= 1.0:
            raise ValueError(f"muse: need layers >= 1, temperature > 0, edge_drop in [0, 1]; got {self}")


class EdgeSAGEConv(MessagePassing):
    """GraphSAGE layer whose messages see the edge feature (GRAPE, You et al., NeurIPS 2020).

    m_{j→i} = ReLU(W_msg [h_j ‖ e_ji]);  h_i' = ReLU(W_upd [mean_j m_{j→i} ‖ h_i]).
    A node without incoming edges aggregates the empty mean 0 — that is the all-missing patient.

    Shapes: x (N, H), edge_index (2, E), edge_attr (E, H_e) -> (N, H).
    """

    def __init__(self, hidden: int, edge_dim: int, normalize: bool = False):
        super().__init__(aggr="mean")
        self.msg = nn.Linear(hidden + edge_dim, hidden)
        self.upd = nn.Linear(2 * hidden, hidden)
        self.normalize = normalize

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        return self.propagate(edge_index, x=x, edge_attr=edge_attr)

    def message(self, x_j: Tensor, edge_attr: Tensor) -> Tensor:
        return F.relu(self.msg(torch.cat([x_j, edge_attr], dim=-1)))  # (E, H)

    def update(self, aggr_out: Tensor, x: Tensor) -> Tensor:
        h = F.relu(self.upd(torch.cat([aggr_out, x], dim=-1)))  # (N, H)
        return F.normalize(h, dim=-1) if self.normalize else h


def edge_dropout(mask: Tensor, p: float) -> Tensor:
    """An augmented view of the observed-modality mask (B, M): with probability p a patient with n ≥ 2 edges keeps
    a uniform k ∈ [1, n - 1] of them, chosen uniformly. Vectorised: rank random scores within each row."""
    B, M = mask.shape
    n = mask.sum(dim=1)  # (B,)
    thin = (torch.rand(B, device=mask.device) < p) & (n >= 2)
    k = 1 + (torch.rand(B, device=mask.device) * (n - 1).clamp_min(1)).floor().long()  # (B,) in [1, n - 1]
    scores = torch.rand(B, M, device=mask.device).masked_fill(~mask, float("inf"))
    rank = scores.argsort(dim=1).argsort(dim=1)  # (B, M): 0 = first kept
    kept = mask & (rank < k[:, None])
    return torch.where(thin[:, None], kept, mask)


def supcon_loss(u: Tensor, y: Tensor, temperature: float) -> Tensor:
    """Supervised contrastive loss (Khosla et al., NeurIPS 2020, L_out) over normalised embeddings u (N, H)."""
    n = u.shape[0]
    sim = u @ u.T / temperature  # (N, N)
    self_mask = torch.eye(n, dtype=torch.bool, device=u.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positives = (y[:, None] == y[None, :]) & ~self_mask
    n_pos = positives.sum(dim=1)
    has = n_pos > 0
    if not bool(has.any()):
        return u.sum() * 0.0
    mean_log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=1) / n_pos.clamp_min(1)
    return -mean_log_prob[has].mean()


@BACKBONES.register("muse")
class Muse(Backbone):
    def __init__(self, spec: DataSpec, hidden: int = 128, **kwargs):
        super().__init__(spec, hidden)
        self.cfg = cfg = MuseConfig(hidden=hidden, **kwargs)
        M = len(spec.modalities)
        self.encoders = build_encoders(spec, hidden, cfg.dropout)
        self.modality_nodes = nn.Parameter(torch.randn(M, hidden) / hidden**0.5)
        self.convs = nn.ModuleList(EdgeSAGEConv(hidden, hidden, cfg.normalize) for _ in range(cfg.layers))
        self.edge_mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(3 * hidden, hidden), nn.ReLU()) for _ in range(cfg.layers - 1)
        )
        self.projection = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh())

    def config(self) -> dict:
        return asdict(self.cfg)

    def message_passing(self, mask: Tensor, edge_feats: Tensor) -> tuple[Tensor, Tensor]:
        """Run the GNN on the bipartite graph of ``mask`` (B, M); returns patient nodes (B, H), tokens (B, M, H)."""
        B, M, H = edge_feats.shape
        pat, mod = mask.nonzero(as_tuple=True)  # (E,), (E,) row-major: deterministic edge order
        E = pat.shape[0]
        src = torch.cat([pat, B + mod])
        dst = torch.cat([B + mod, pat])
        edge_index = torch.stack([src, dst])  # (2, 2E): patient→modality, then modality→patient
        edge_attr = edge_feats[pat, mod].repeat(2, 1)  # (2E, H)
        x = torch.cat([edge_feats.new_ones(B, H), self.modality_nodes.to(edge_feats.dtype)], dim=0)  # (B + M, H)
        for layer, conv in enumerate(self.convs):
            x = conv(x, edge_index, edge_attr)
            if layer < len(self.convs) - 1:
                x = F.dropout(x, p=self.cfg.dropout, training=self.training)
                edge_attr = self.edge_mlps[layer](torch.cat([x[src], x[dst], edge_attr], dim=-1))
        tokens = edge_feats.new_zeros(B, M, H).index_put((pat, mod), edge_attr[:E].to(edge_feats.dtype))
        return x[:B], tokens

    def forward(self, batch: Batch) -> BackboneOutput:
        mask = batch["mask"]
        edge_feats = encode_modalities(self.encoders, batch, self.spec)  # (B, M, H)
        fused, tokens = self.message_passing(mask, edge_feats)
        if not self.training:
            return BackboneOutput(tokens=tokens, fused=fused)
        aux, parts = self.contrastive_loss(batch, mask, edge_feats, fused)
        return BackboneOutput(tokens=tokens, fused=fused, aux_loss=aux, extras=parts)

    def contrastive_loss(self, batch: Batch, mask: Tensor, edge_feats: Tensor, fused: Tensor):
        cfg = self.cfg

        def dropped_view() -> Tensor:
            return self.message_passing(edge_dropout(mask, cfg.edge_drop), edge_feats)[0]  # (B, H)

        z1 = fused if cfg.contrast_full_graph else dropped_view()
        z2 = dropped_view()
        u1 = F.normalize(self.projection(z1).float(), dim=-1)  # (B, H); contrast in fp32 under AMP
        u2 = F.normalize(self.projection(z2).float(), dim=-1)
        logits = u1 @ u2.T / cfg.temperature  # (B, B)
        target = torch.arange(logits.shape[0], device=logits.device)
        l_mc = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        labelled = batch["label_mask"][:, 0]
        y = batch["labels"][labelled, 0]
        l_sup = supcon_loss(torch.cat([u1[labelled], u2[labelled]]), torch.cat([y, y]), cfg.temperature)
        aux = cfg.w_mc * l_mc + cfg.w_sup * l_sup
        return aux, {"muse_mc": l_mc.detach(), "muse_sup": l_sup.detach()}
