"""Objectives are functions of (model, x, y): the ELBO with beta, KL warm-up and free bits, and IWAE.

All values are per example in nats. ``elbo = recon - kl`` is always reported at beta = 1 (the true
bound); the loss that is minimised applies beta, warm-up and free bits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

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
        if self.beta < 0:
            raise ValueError(f"beta={self.beta} must be >= 0")
        if self.warmup < 0:
            raise ValueError(f"warmup={self.warmup} must be >= 0 (epochs)")
        if self.free_bits < 0:
            raise ValueError(f"free_bits={self.free_bits} must be >= 0 (nats)")
        if self.k < 1:
            raise ValueError(f"k={self.k} must be >= 1")


@dataclass
class Terms:
    loss: Tensor      # scalar to minimise
    elbo: Tensor      # (B,) recon - kl, nats
    recon: Tensor     # (B,) E_q log p(x|z), one sample (distortion is its negative)
    kl: Tensor        # (B,) KL(q(z|x) || p(z)) (rate)
    kl_groups: Tensor  # (B, G) KL per latent dimension (or per layer)


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


def iwae(model, x: Tensor, y: Tensor | None = None, k: int = 5) -> Terms:
    """IWAE bound (Burda et al.): log (1/k) sum_i p(x, z_i) / q(z_i|x); with k = 1 it is the ELBO.

    recon / kl are the ELBO's terms on a fresh sample, for reporting."""
    bound = log_mean_exp(model.log_weights(x, y, k), 0)  # (B,)
    with torch.no_grad():
        recon, kl_groups = model.elbo_parts(x, y)
    kl = kl_groups.sum(-1)
    return Terms(-bound.mean(), bound, recon, kl, kl_groups)


def compute(model, x: Tensor, y: Tensor | None, cfg: ObjectiveConfig, epoch: float = math.inf) -> Terms:
    """The configured objective at (fractional) ``epoch``."""
    if cfg.kind == "iwae":
        return iwae(model, x, y, cfg.k)
    return elbo(model, x, y, kl_weight(cfg, epoch), cfg.free_bits)
