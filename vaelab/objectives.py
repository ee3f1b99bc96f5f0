"""Objectives are functions of (model, x, y): the ELBO and the IWAE bound, both with beta, KL warm-up
and free bits, for every model with a likelihood (vae, cvae, hvae, ...); and beta-TC (Chen et al. 2018),
the ELBO with an extra weight on the total correlation of q(z), for a Gaussian q(z|x) and an N(0, I) prior.

All values are per example in nats. ``elbo`` is always reported at beta = 1 (the true bound; for iwae
the k-sample bound); the loss that is minimised applies beta, warm-up and free bits. Free bits act per
latent group: per dimension for the vae, per stochastic layer for the hvae.

``Objective`` is the same computation as an ``nn.Module`` holding the model, so the training loop can wrap
it in ``DistributedDataParallel`` (whose gradient hooks are armed by the wrapped module's ``forward``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from torch.distributions import Normal

from .models import LatentModel  # noqa: F401  (the contract the objectives call)

OBJECTIVES = ("elbo", "iwae", "beta-tc")
TC_ESTIMATORS = ("mws", "mss")


@dataclass(frozen=True)
class ObjectiveConfig:
    kind: str = "elbo"        # elbo | iwae (importance-weighted, k samples) | beta-tc (weighted total correlation)
    beta: float = 1.0         # weight of the KL term (beta-VAE); 1 is the true ELBO
    warmup: float = 0.0       # epochs over which the KL weight rises linearly from 0 to beta
    free_bits: float = 0.0    # nats per latent group (dimension, or layer for hvae) not penalised
    k: int = 1                # importance samples for iwae
    tc_beta: float = 1.0      # beta-tc: weight of the total correlation (mutual information, dim-wise KL keep 1)
    tc_estimator: str = "mws"  # beta-tc: q(z) from the minibatch: mws (weighted, as published) | mss (stratified)

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVES:
            raise ValueError(f"objective={self.kind!r} is not known; allowed: {list(OBJECTIVES)}")
        # "not 0 <= x < inf": NaN fails every comparison, so it is refused too
        if not 0 <= self.beta < float("inf"):
            raise ValueError(f"beta={self.beta} must be a finite number >= 0")
        if not 0 <= self.warmup < float("inf"):
            raise ValueError(f"warmup={self.warmup} must be a finite number >= 0 (epochs)")
        if not 0 <= self.free_bits < float("inf"):
            raise ValueError(f"free_bits={self.free_bits} must be a finite number >= 0 (nats)")
        if not self.k >= 1:
            raise ValueError(f"k={self.k} must be >= 1")
        if not 0 <= self.tc_beta < float("inf"):
            raise ValueError(f"tc_beta={self.tc_beta} must be a finite number >= 0")
        if self.tc_estimator not in TC_ESTIMATORS:
            raise ValueError(f"tc_estimator={self.tc_estimator!r} is not known; allowed: {list(TC_ESTIMATORS)}")
        if self.kind != "beta-tc" and (self.tc_beta != 1.0 or self.tc_estimator != "mws"):
            raise ValueError(f"tc_beta / tc_estimator apply to objective 'beta-tc'; objective is {self.kind!r}")
        if self.kind == "beta-tc" and self.beta != 1.0:
            raise ValueError(f"beta={self.beta} weighs the whole KL of elbo / iwae; objective 'beta-tc' weighs the "
                             "total correlation alone: set tc_beta")
        if self.kind == "beta-tc" and self.free_bits > 0:
            raise ValueError(f"free_bits={self.free_bits} applies to elbo / iwae, not to objective 'beta-tc'")


@dataclass
class Terms:
    loss: Tensor      # scalar to minimise
    elbo: Tensor      # (B,) recon - kl, nats
    recon: Tensor     # (B,) E_q log p(x|z), one sample (distortion is its negative)
    kl: Tensor        # (B,) KL(q(z|x) || p(z)) (rate)
    kl_groups: Tensor  # (B, G) KL per latent dimension (or per layer)
    extra: dict[str, Tensor] = field(default_factory=dict)  # the model's extra loss terms (scalars), in loss


def kl_weight(cfg: ObjectiveConfig, epoch: float) -> float:
    """beta scaled by the linear warm-up at (fractional) ``epoch``."""
    if cfg.warmup <= 0:
        return cfg.beta
    return cfg.beta * min(1.0, epoch / cfg.warmup)


def elbo(model, x: Tensor, y: Tensor | None = None, beta: float = 1.0, free_bits: float = 0.0) -> Terms:
    """Negative ELBO loss with beta and free bits (Kingma et al. 2016, per group, batch-averaged)."""
    recon, kl_groups = model.elbo_parts(x, y)        # (B,), (B, G)
    kl = kl_groups.sum(-1)                           # (B,)
    if free_bits > 0:
        kl_pen = kl_groups.mean(0).clamp_min(free_bits).sum()
    else:
        kl_pen = kl.mean()
    loss = -recon.mean() + beta * kl_pen
    return Terms(loss, recon - kl, recon, kl, kl_groups)


def log_mean_exp(a: Tensor, dim: int = 0) -> Tensor:
    return torch.logsumexp(a, dim) - math.log(a.shape[dim])


def iwae(model, x: Tensor, y: Tensor | None = None, k: int = 5, beta: float = 1.0,
         free_bits: float = 0.0) -> Terms:
    """IWAE bound (Burda et al.): log (1/k) sum_i p(x, z_i) / q(z_i|x); with k = 1 it is the ELBO.

    ``elbo`` is the true bound (beta = 1). The loss uses the tempered log-weights
    log p(x|z) - sum_g c_g rate_g with c_g = beta, or 0 for a latent group whose batch-mean rate is
    below ``free_bits`` (the gradient the ELBO's clamp gives). recon / kl / kl_groups report the means
    over the same k samples (kl per group is then a Monte Carlo estimate)."""
    if not model.capabilities.likelihood:
        raise ValueError(f"model {model.name!r} has no likelihood p(x): the iwae bound is not defined; "
                         "use objective 'elbo'")
    recon_k, rate = model.log_weight_parts(x, y, k)      # (k, B), (k, B, G)
    bound = log_mean_exp(recon_k - rate.sum(-1), 0)      # (B,)
    if beta == 1.0 and free_bits <= 0:
        loss = -bound.mean()
    else:
        c = torch.full(rate.shape[-1:], float(beta), device=rate.device)  # (G,)
        if free_bits > 0:
            c = torch.where(rate.detach().mean((0, 1)) < free_bits, torch.zeros_like(c), c)
        loss = -log_mean_exp(recon_k - (rate * c).sum(-1), 0).mean()
    kl_groups = rate.detach().mean(0)                    # (B, G)
    return Terms(loss, bound, recon_k.detach().mean(0), kl_groups.sum(-1), kl_groups)


def _log_batch_weights(m: int, n_data: int, stratified: bool, like: Tensor) -> Tensor:
    """(M, M) log-weights w_ij of q(z_i|x_j) in the minibatch estimate of q(z_i), z_i drawn from q(z|x_i).

    mws: 1 / (N M) for every j (Chen et al. 2018, minibatch weighted sampling; a lower bound on q(z_i) in
    expectation). mss: 1 / N for j = i and (N - 1) / (N (M - 1)) for each of the M - 1 others, which stand for
    the rest of the data set (stratified; the weights sum to 1: unbiased when they are uniform draws from it)."""
    if not stratified:
        return like.new_full((m, m), -math.log(n_data * m))
    if m == 1:
        return like.new_zeros((1, 1))
    w = like.new_full((m, m), math.log(n_data - 1) - math.log(n_data * (m - 1)))
    return w.fill_diagonal_(-math.log(n_data))


def tc_decomposition(z: Tensor, loc: Tensor, scale: Tensor, n_data: int, stratified: bool = False) -> dict[str, Tensor]:
    """Chen et al. 2018: the one-sample KL log q(z|x) - log p(z) split into the index-code mutual information
    ``mi`` = log q(z|x) - log q(z), the total correlation ``tc`` = log q(z) - sum_d log q(z_d) and the
    dimension-wise KL ``dwkl`` = sum_d log q(z_d) - log p(z_d), per example (B,) in nats; they add up to the
    one-sample KL exactly. q(z) and q(z_d), the aggregate posterior over a data set of ``n_data`` examples,
    are estimated from the minibatch (``_log_batch_weights``: mws as published, or mss).

    z (B, d): z_i drawn from q(z|x_i) = N(loc_i, diag(scale_i^2)); p(z) = N(0, I). mws's log(N M) makes its
    ``tc`` larger than mss's by about (d - 1) log N (with N >> M), a constant that leaves gradients unchanged."""
    b = z.shape[0]
    if not b <= n_data:
        raise ValueError(f"n_data={n_data} must be >= the batch size {b} (the examples of the training set)")
    log_q = Normal(loc[None], scale[None]).log_prob(z[:, None])          # (B, B, d): log q(z_i,k | x_j)
    log_w = _log_batch_weights(b, n_data, stratified, z)                  # (B, B)
    log_qz = torch.logsumexp(log_q.sum(-1) + log_w, dim=1)                # (B,)
    log_prod = torch.logsumexp(log_q + log_w[..., None], dim=1).sum(-1)   # (B,)
    log_qzx = log_q.diagonal(dim1=0, dim2=1).sum(0)                       # (B,) log q(z_i | x_i)
    log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)                         # (B,)
    return {"mi": log_qzx - log_qz, "tc": log_qz - log_prod, "dwkl": log_prod - log_pz}


def check_beta_tc(model) -> None:
    """beta-tc needs a diagonal Gaussian q(z|x) and the N(0, I) prior (ValueError otherwise)."""
    caps = model.capabilities
    if not (caps.gaussian_posterior and caps.standard_prior):
        raise ValueError(f"objective 'beta-tc' needs a model with a diagonal Gaussian q(z|x) and the N(0, I) prior; "
                         f"model {model.name!r} has gaussian_posterior={caps.gaussian_posterior}, "
                         f"standard_prior={caps.standard_prior}")


def beta_tc(model, x: Tensor, y: Tensor | None, n_data: int, tc_beta: float, weight: float = 1.0,
            stratified: bool = False) -> Terms:
    """beta-TC loss (Chen et al. 2018, alpha = gamma = 1): -recon + w [MI + tc_beta TC + dwKL], computed as the
    ELBO loss -recon + w KL plus w (tc_beta - 1) TC: MI + TC + dwKL add up to the one-sample KL, whose
    expectation the model's KL (closed form for a Gaussian q) gives with less variance; tc_beta = 1 is exactly
    the ELBO loss. ``w``: the warm-up weight. ``elbo`` is the true ELBO. TC is estimated on its own draw
    z ~ q(z|x) (one more encoder pass), so the model's ``elbo_parts`` stays the one place recon and KL come from."""
    check_beta_tc(model)
    terms = elbo(model, x, y, beta=weight)
    if tc_beta != 1.0:
        q = model.encode(x, y)
        tc = tc_decomposition(q.rsample(), q.mean, q.stddev, n_data, stratified)["tc"]  # (B,)
        terms.loss = terms.loss + weight * (tc_beta - 1.0) * tc.mean()
    return terms


def compute(model, x: Tensor, y: Tensor | None, cfg: ObjectiveConfig, epoch: float = math.inf,
            n_data: int | None = None) -> Terms:
    """The configured objective at (fractional) ``epoch``; ``n_data``: training-set size (beta-tc's q(z))."""
    if cfg.kind == "iwae":
        terms = iwae(model, x, y, cfg.k, kl_weight(cfg, epoch), cfg.free_bits)
    elif cfg.kind == "beta-tc":
        if n_data is None:
            raise ValueError("objective 'beta-tc' needs n_data, the size of the training set (its estimate of q(z))")
        terms = beta_tc(model, x, y, n_data, cfg.tc_beta, kl_weight(cfg, epoch), cfg.tc_estimator == "mss")
    else:
        terms = elbo(model, x, y, kl_weight(cfg, epoch), cfg.free_bits)
    if model.capabilities.extra_losses:  # e.g. a VQ-VAE's codebook and commitment losses
        terms.extra = model.extra_losses(x, y)
        terms.loss = terms.loss + sum(terms.extra.values())
    return terms


class Objective(nn.Module):
    """``compute`` as a module: ``Objective(model, cfg)(x, y, epoch)`` gives the same Terms.

    ``probe`` is a zero scalar parameter (not the model's, never given to the optimizer): the loss is
    ``scale * loss + probe * (scale * loss).detach()``, unchanged in value and in the model's gradients,
    while ``probe.grad`` receives the scaled loss. Under DistributedDataParallel the all-reduce that averages
    the gradients then averages the ranks' losses too, so ``probe.grad`` is the global mean loss, NaN/Inf
    when any rank's is, on every rank (one collective a step)."""

    def __init__(self, model: nn.Module, cfg: ObjectiveConfig = ObjectiveConfig(), n_data: int | None = None) -> None:
        super().__init__()
        if cfg.kind == "beta-tc":  # refused before any step
            check_beta_tc(model)
        self.model, self.cfg, self.n_data = model, cfg, n_data
        self.probe = nn.Parameter(torch.zeros((), device=next(model.parameters(), torch.zeros(())).device))

    def forward(self, x: Tensor, y: Tensor | None = None, epoch: float = math.inf,
                scale: float = 1.0) -> Terms:
        """Terms at (fractional) ``epoch``; ``scale`` multiplies the loss (a rank's share of a global batch)."""
        terms = compute(self.model, x, y, self.cfg, epoch, self.n_data)
        loss = terms.loss * scale if scale != 1.0 else terms.loss
        terms.loss = loss + self.probe.to(loss.dtype) * loss.detach()
        return terms

    def loss_seen(self) -> Tensor:
        """After backward: the (rank-averaged) loss carried by ``probe.grad``."""
        return self.probe.grad if self.probe.grad is not None else self.probe.new_full((), math.nan)
