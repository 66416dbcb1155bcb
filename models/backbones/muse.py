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

Batch invariance (inductive prediction). The graph is built per mini-batch, so during training a modality node
aggregates the messages of the batch's patients that have it. At prediction that would make a patient's score
depend on who else is in the batch -- on an external cohort, the modality nodes would average over the OOD test
patients (an undisclosed transductive adaptation). So, as BatchNorm does with its statistics, every layer keeps
a running mean (momentum ``node_momentum``) of each modality node's aggregated message over the training
batches, and in ``eval()`` mode the modality nodes read those running means instead of the batch: a patient's
prediction is then a function of that patient alone (tested: alone == inside any batch). A modality node no
training batch reached aggregates the empty mean 0, as a node without edges does.

Determinism: every gather is ``index_select`` (its backward is ``index_add``, which adds in index order) and
not advanced indexing, whose backward ``index_put(accumulate=True)`` sums in an order that depends on the
number of CPU threads -- it made two runs of one seed differ on machines with different core counts.

Shapes: tokens (B, M, H), fused (B, H); graph x (B + M, H), edge_index (2, 2E), edge_attr (2E, H).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

with warnings.catch_warnings():  # torch_geometric's import touches the deprecated torch.jit.script
    warnings.simplefilter("ignore", FutureWarning)
    from torch_geometric.nn import MessagePassing

from medmodal.models.base import BACKBONES, Backbone, BackboneConfig, BackboneOutput, Batch, DataSpec
from medmodal.models.encoders import build_encoders, encode_modalities
from medmodal.options import option


@dataclass(frozen=True)
class MuseConfig(BackboneConfig):
    layers: int = option(2, "message-passing layers", minimum=1)
    dropout: float = option(0.25, "dropout of the encoders and between layers", minimum=0, below=1)
    edge_drop: float = option(
        0.5, "probability that a patient's edges are thinned in an augmented view", minimum=0, maximum=1
    )
    temperature: float = option(0.07, "τ of both contrastive losses", above=0)
    w_mc: float = option(0.5, "weight of the mutual-consistency (unsupervised) contrast", minimum=0)
    w_sup: float = option(0.5, "weight of the supervised contrast", minimum=0)
    normalize: bool = option(False, "L2-normalise node embeddings after each layer")
    contrast_full_graph: bool = option(False, "contrast the full graph with one dropped view (the public code)")
    node_momentum: float = option(
        0.1, "weight of a new batch in the modality nodes' running messages (BatchNorm's)", above=0, maximum=1
    )


class EdgeSAGEConv(MessagePassing):
    """GraphSAGE layer whose messages see the edge feature (GRAPE, You et al., NeurIPS 2020).

    m_{j→i} = ReLU(W_msg [h_j ‖ e_ji]);  h_i' = ReLU(W_upd [mean_j m_{j→i} ‖ h_i]).
    A node without incoming edges aggregates the empty mean 0 — that is the all-missing patient.
    ``aggregate_messages`` and ``update_nodes`` are the two halves of ``forward``, so that MUSE can replace the
    modality nodes' aggregate by its running mean between them.

    Shapes: x (N, H), edge_index (2, E), edge_attr (E, H_e) -> (N, H).
    """

    def __init__(self, hidden: int, edge_dim: int, normalize: bool = False):
        super().__init__(aggr="mean")
        self.msg = nn.Linear(hidden + edge_dim, hidden)
        self.upd = nn.Linear(2 * hidden, hidden)
        self.normalize = normalize

    def aggregate_messages(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        return self.propagate(edge_index, x=x, edge_attr=edge_attr)  # (N, H): mean of incoming messages

    def update_nodes(self, aggr: Tensor, x: Tensor) -> Tensor:
        h = F.relu(self.upd(torch.cat([aggr, x], dim=-1)))  # (N, H)
        return F.normalize(h, dim=-1) if self.normalize else h

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        return self.update_nodes(self.aggregate_messages(x, edge_index, edge_attr), x)

    def message(self, x_j: Tensor, edge_attr: Tensor) -> Tensor:
        return F.relu(self.msg(torch.cat([x_j, edge_attr], dim=-1)))  # (E, H)


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
    """A patient-modality bipartite graph, edge-aware message passing and mutual-consistency contrast."""

    config_class = MuseConfig

    def __init__(self, spec: DataSpec, config: MuseConfig | None = None, **options: Any):
        super().__init__(spec, config, **options)
        cfg, hidden = self.cfg, self.hidden
        M = len(spec.modalities)
        self.encoders = build_encoders(spec, hidden, cfg.dropout)
        self.modality_nodes = nn.Parameter(torch.randn(M, hidden) / hidden**0.5)
        self.convs = nn.ModuleList(EdgeSAGEConv(hidden, hidden, cfg.normalize) for _ in range(cfg.layers))
        self.edge_mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(3 * hidden, hidden), nn.ReLU()) for _ in range(cfg.layers - 1)
        )
        self.projection = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh())
        # running mean of each modality node's aggregated message per layer (see "Batch invariance"); persistent,
        # so a saved model predicts with the population it was trained on
        self.register_buffer("running_aggr", torch.zeros(cfg.layers, M, hidden))
        self.register_buffer("running_seen", torch.zeros(cfg.layers, M, dtype=torch.bool))

    def message_passing(self, mask: Tensor, edge_feats: Tensor, track: bool = False) -> tuple[Tensor, Tensor]:
        """Run the GNN on the bipartite graph of ``mask`` (B, M); returns patient nodes (B, H), tokens (B, M, H).

        Training: modality nodes aggregate the batch, and with ``track`` (the full graph of a training step; not
        the edge-dropped views nor a framework's leave-one-out variants) fold it into their running means;
        evaluation: they read the running means, so no patient's output depends on another patient."""
        B, M, H = edge_feats.shape
        pat, mod = mask.nonzero(as_tuple=True)  # (E,), (E,) row-major: deterministic edge order
        E = pat.shape[0]
        src = torch.cat([pat, B + mod])
        dst = torch.cat([B + mod, pat])
        edge_index = torch.stack([src, dst])  # (2, 2E): patient→modality, then modality→patient
        edge_attr = edge_feats.reshape(B * M, H).index_select(0, pat * M + mod).repeat(2, 1)  # (2E, H)
        x = torch.cat([edge_feats.new_ones(B, H), self.modality_nodes.to(edge_feats.dtype)], dim=0)  # (B + M, H)
        has_edges = mask.any(dim=0)  # (M,): modalities with at least one patient in this batch
        for layer, conv in enumerate(self.convs):
            aggr = conv.aggregate_messages(x, edge_index, edge_attr)  # (B + M, H)
            node_aggr = aggr[B:]  # (M, H)
            if self.training:
                if track:
                    self.update_running(layer, node_aggr.detach(), has_edges)
            else:
                node_aggr = self.running_aggr[layer]  # zeros for a modality no training batch had
            x = conv.update_nodes(torch.cat([aggr[:B], node_aggr.to(aggr.dtype)]), x)
            if layer < len(self.convs) - 1:
                x = F.dropout(x, p=self.cfg.dropout, training=self.training)
                ends = torch.cat([x.index_select(0, src), x.index_select(0, dst), edge_attr], dim=-1)
                edge_attr = self.edge_mlps[layer](ends)
        tokens = edge_feats.new_zeros(B, M, H).index_put((pat, mod), edge_attr[:E].to(edge_feats.dtype))
        return x[:B], tokens

    @torch.no_grad()
    def update_running(self, layer: int, node_aggr: Tensor, has_edges: Tensor) -> None:
        """Fold this batch's modality-node aggregates (M, H) into the running means; a modality absent from the
        batch keeps its value, and the first batch that has it sets it."""
        mom = self.cfg.node_momentum
        old, seen = self.running_aggr[layer], self.running_seen[layer]
        new = torch.where(seen[:, None], (1 - mom) * old + mom * node_aggr.float(), node_aggr.float())
        self.running_aggr[layer] = torch.where(has_edges[:, None], new, old)
        self.running_seen[layer] = seen | has_edges

    def fuse(self, embeddings: Tensor, mask: Tensor, track: bool = False) -> BackboneOutput:
        zero = torch.zeros((), dtype=embeddings.dtype, device=embeddings.device)
        fused, tokens = self.message_passing(mask, torch.where(mask[..., None], embeddings, zero), track)
        return BackboneOutput(tokens=tokens, fused=fused)

    def encode(self, batch: Batch) -> Tensor:
        return encode_modalities(self.encoders, batch, self.spec)  # (B, M, H), zeros where missing

    def forward(self, batch: Batch) -> BackboneOutput:
        mask = batch["mask"]
        edge_feats = self.encode(batch)  # (B, M, H)
        out = self.fuse(edge_feats, mask, track=True)
        out.embeddings = edge_feats
        if self.training:
            out.aux_loss, out.extras = self.contrastive_loss(batch, mask, edge_feats, out.fused)
        return out

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
