"""Objectives are functions of (model, x, y): the ELBO and the IWAE bound, both with beta, KL warm-up
and free bits, for every model with a likelihood (vae, cvae, hvae, ...).

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

from .models import LatentModel  # noqa: F401  (the contract the objectives call)

OBJECTIVES = ("elbo", "iwae")


@dataclass(frozen=True)
class ObjectiveConfig:
    kind: str = "elbo"        # "elbo" or "iwae" (importance-weighted bound with k samples)
    beta: float = 1.0         # weight of the KL term (beta-VAE); 1 is the true ELBO
    warmup: float = 0.0       # epochs over which the KL weight rises linearly from 0 to beta
    free_bits: float = 0.0    # nats per latent group (dimension, or layer for hvae) not penalised
    k: int = 1                # importance samples for iwae

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


def compute(model, x: Tensor, y: Tensor | None, cfg: ObjectiveConfig, epoch: float = math.inf) -> Terms:
    """The configured objective at (fractional) ``epoch``."""
    if cfg.kind == "iwae":
        terms = iwae(model, x, y, cfg.k, kl_weight(cfg, epoch), cfg.free_bits)
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

    def __init__(self, model: nn.Module, cfg: ObjectiveConfig = ObjectiveConfig()) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg
        self.probe = nn.Parameter(torch.zeros((), device=next(model.parameters(), torch.zeros(())).device))

    def forward(self, x: Tensor, y: Tensor | None = None, epoch: float = math.inf,
                scale: float = 1.0) -> Terms:
        """Terms at (fractional) ``epoch``; ``scale`` multiplies the loss (a rank's share of a global batch)."""
        terms = compute(self.model, x, y, self.cfg, epoch)
        loss = terms.loss * scale if scale != 1.0 else terms.loss
        terms.loss = loss + self.probe.to(loss.dtype) * loss.detach()
        return terms

    def loss_seen(self) -> Tensor:
        """After backward: the (rank-averaged) loss carried by ``probe.grad``."""
        return self.probe.grad if self.probe.grad is not None else self.probe.new_full((), math.nan)
