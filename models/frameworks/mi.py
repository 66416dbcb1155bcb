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

    an upper bound of I(x; y) when q_θ is close to p(y|x). As in the paper's algorithm, θ and the feature
    extractors are updated in alternation: on every training call ``forward`` first takes ``inner_steps``
    maximum-likelihood steps on θ with its own small Adam optimiser (features detached), then returns the estimate
    with θ held constant, so the model's optimiser moves only the features. θ never receives a gradient from the
    model's loss (its ``.grad`` stays None, so the model's optimiser skips it). A single joint step was not
    enough: the features outran q and the estimate swung between −80 and +45 nats. The negative term uses all
    B² pairs in closed form (the non-sampled CLUB), which is deterministic.

    Shapes: x (B, Dx), y (B, Dy) -> (estimate (), q negative log-likelihood () for logging).
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        hidden: int = 64,
        inner_steps: int = 5,
        lr: float = 3e-3,
        logvar_range: tuple[float, float] = (-5.0, 5.0),
    ):
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(x_dim, hidden), nn.GELU(), nn.Linear(hidden, y_dim))
        # A bounded log-variance (tanh into logvar_range): q's variance sets the scale of the estimate's gradient
        # (∝ 1/σ²), and an unbounded one lets it explode when y is nearly a function of x.
        self.logvar = nn.Sequential(nn.Linear(x_dim, hidden), nn.GELU(), nn.Linear(hidden, y_dim), nn.Tanh())
        lo, hi = logvar_range
        self._lv_mid, self._lv_half = (hi + lo) / 2, (hi - lo) / 2
        self.inner_steps = inner_steps
        self.lr = lr
        self._opt: torch.optim.Optimizer | None = None

    def _gaussian(self, x: Tensor, params: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        if params is None:
            return self.mu(x), self._lv_mid + self._lv_half * self.logvar(x)
        mu = functional_call(self.mu, {k[3:]: v for k, v in params.items() if k.startswith("mu.")}, (x,))
        lv = functional_call(self.logvar, {k[7:]: v for k, v in params.items() if k.startswith("logvar.")}, (x,))
        return mu, self._lv_mid + self._lv_half * lv

    def log_likelihood(self, x: Tensor, y: Tensor) -> Tensor:
        """Mean log q_θ(y|x) over the batch (up to the constant −Dy/2·log 2π)."""
        mu, logvar = self._gaussian(x)
        return (-0.5 * ((mu - y) ** 2) / logvar.exp() - 0.5 * logvar).sum(-1).mean()

    def estimate(self, x: Tensor, y: Tensor, params: dict[str, Tensor] | None = None) -> Tensor:
        mu, logvar = self._gaussian(x, params)  # (B, Dy) each
        inv_var = torch.exp(-logvar)
        positive = -0.5 * ((mu - y) ** 2 * inv_var).sum(-1)  # (B,)
        # E_j[(μ_i − y_j)²] = μ_i² − 2 μ_i ȳ + mean_j y_j² per dimension: all B² pairs, no B×B tensor.
        y_mean, y2_mean = y.mean(0, keepdim=True), (y**2).mean(0, keepdim=True)
        negative = -0.5 * ((mu**2 - 2 * mu * y_mean + y2_mean) * inv_var).sum(-1)  # (B,)
        return (positive - negative).mean()

    def fit_step(self, x: Tensor, y: Tensor, steps: int) -> float:
        """``steps`` maximum-likelihood updates of q on detached (x, y); returns the last negative log-lik."""
        params = list(self.parameters())
        if self._opt is None:
            self._opt = torch.optim.Adam(params, lr=self.lr)
        x, y = x.detach().float(), y.detach().float()
        nll = float("nan")
        with torch.enable_grad():
            for _ in range(steps):
                loss = -self.log_likelihood(x, y)
                # autograd.grad rather than backward(): no gradient-accumulation hooks fire, so a surrounding
                # DistributedDataParallel never sees this inner step
                grads = torch.autograd.grad(loss, params)
                for p, g in zip(params, grads):
                    p.grad = g
                self._opt.step()
                nll = loss.item()
        for p in params:  # leave nothing for the model's optimiser to apply
            p.grad = None
        return nll

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and torch.is_grad_enabled() and self.inner_steps > 0:
            self.fit_step(x, y, self.inner_steps)
        frozen = {k: v.detach() for k, v in self.named_parameters()}
        with torch.no_grad():
            nll = -self.log_likelihood(x, y)
        return self.estimate(x, y, frozen), nll


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
    """HSIC as a drop-in for CLUB: same call signature, nothing to fit (the second value is 0)."""

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return hsic(x, y), x.new_zeros(())


def make_dependence_penalty(kind: str, x_dim: int, y_dim: int, hidden: int = 64, **club_args) -> nn.Module | None:
    if kind == "club":
        return CLUB(x_dim, y_dim, hidden, **club_args)
    if kind == "hsic":
        return HSICPenalty()
    if kind == "none":
        return None
    raise ValueError(f"unknown dependence penalty '{kind}' (use club, hsic or none)")
