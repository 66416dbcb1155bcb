"""Dependence penalties between two feature sets: the CLUB mutual-information upper bound and HSIC.

DFD and CDMM decorrelate their causal features z_c from their biased features z_b with one of these. Both are
written by hand (about 30 lines each) because no installed library offers a differentiable, batch-wise version
that can sit inside a training loss.

Shapes: B batch, Dx / Dy feature sizes.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call


class CLUB(nn.Module):
    """Contrastive Log-ratio Upper Bound of I(x; y) (Cheng et al., ICML 2020).

    A variational Gaussian q_θ(y | x) = N(μ(x), diag σ²(x)) gives

        I_CLUB = E_{p(x,y)}[log q_θ(y|x)] − E_{p(x)} E_{p(y)}[log q_θ(y|x)],

    an upper bound of I(x; y) when q_θ is close to p(y|x). θ is fitted by maximum likelihood on (x, y) pairs
    while the *estimate* is minimised with respect to the feature extractors. Both happen in one backward pass
    here: ``forward`` returns the estimate computed with θ treated as a constant (so minimising it moves only
    the features) and the negative log-likelihood computed on detached features (so fitting q moves only θ).
    The negative term uses all B×B pairs in closed form (the non-sampled CLUB), which is deterministic.

    Shapes: x (B, Dx), y (B, Dy) -> (estimate (), q_loss ()).
    """

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 64):
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(x_dim, hidden), nn.GELU(), nn.Linear(hidden, y_dim))
        # tanh keeps the predicted log-variance in [-5, 5]: an unbounded one lets the bound explode early on.
        self.logvar = nn.Sequential(nn.Linear(x_dim, hidden), nn.GELU(), nn.Linear(hidden, y_dim), nn.Tanh())

    def _gaussian(self, x: Tensor, params: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        if params is None:
            return self.mu(x), 5.0 * self.logvar(x)
        mu = functional_call(self.mu, {k[3:]: v for k, v in params.items() if k.startswith("mu.")}, (x,))
        lv = functional_call(self.logvar, {k[7:]: v for k, v in params.items() if k.startswith("logvar.")}, (x,))
        return mu, 5.0 * lv

    def log_likelihood(self, x: Tensor, y: Tensor) -> Tensor:
        """Mean log q_θ(y|x) over the batch (up to the constant −Dy/2·log 2π)."""
        mu, logvar = self._gaussian(x)
        return (-0.5 * ((mu - y) ** 2) / logvar.exp() - 0.5 * logvar).sum(-1).mean()

    def estimate(self, x: Tensor, y: Tensor, params: dict[str, Tensor] | None = None) -> Tensor:
        mu, logvar = self._gaussian(x, params)  # (B, Dy) each
        inv_var = torch.exp(-logvar)
        positive = -0.5 * ((mu - y) ** 2 * inv_var).sum(-1)  # (B,)
        # E_j[(μ_i − y_j)²] = μ_i² − 2 μ_i ȳ + mean_j y_j², per dimension: all B² pairs without a B×B tensor.
        y_mean, y2_mean = y.mean(0, keepdim=True), (y**2).mean(0, keepdim=True)
        negative = -0.5 * ((mu**2 - 2 * mu * y_mean + y2_mean) * inv_var).sum(-1)  # (B,)
        return (positive - negative).mean()

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        frozen = {k: v.detach() for k, v in self.named_parameters()}
        estimate = self.estimate(x, y, frozen)
        q_loss = -self.log_likelihood(x.detach(), y.detach())
        return estimate, q_loss


def _rbf_gram(x: Tensor) -> Tensor:
    """RBF Gram matrix with the median-distance bandwidth (computed without gradient)."""
    d2 = torch.cdist(x, x).pow(2)  # (B, B)
    with torch.no_grad():
        off = d2[~torch.eye(len(x), dtype=torch.bool, device=x.device)]
        sigma2 = off.median().clamp_min(1e-6) if off.numel() else torch.ones((), device=x.device)
    return torch.exp(-d2 / (2 * sigma2))


def hsic(x: Tensor, y: Tensor) -> Tensor:
    """Biased HSIC estimate tr(K H L H) / (B − 1)² with RBF kernels (Gretton et al. 2005).

    Zero in expectation (up to O(1/B) bias) for independent x and y, positive otherwise, and it sees non-linear
    dependence. Shapes: x (B, Dx), y (B, Dy) -> ().
    """
    n = x.shape[0]
    if n < 2:
        return x.new_zeros(())
    k, l = _rbf_gram(x), _rbf_gram(y)
    kc = k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()  # H K H
    return (kc * l).sum() / (n - 1) ** 2


class HSICPenalty(nn.Module):
    """HSIC as a drop-in for CLUB: same call signature, no parameters to fit (q_loss is 0)."""

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return hsic(x, y), x.new_zeros(())


def make_dependence_penalty(kind: str, x_dim: int, y_dim: int, hidden: int = 64) -> nn.Module | None:
    if kind == "club":
        return CLUB(x_dim, y_dim, hidden)
    if kind == "hsic":
        return HSICPenalty()
    if kind == "none":
        return None
    raise ValueError(f"unknown dependence penalty '{kind}' (use club, hsic or none)")

