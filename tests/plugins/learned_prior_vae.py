"""A model from outside vaelab (test plugin): a VAE whose prior N(m, diag(s^2)) has a learned mean and scale.

Imported by name (``vaelab train --plugin learned_prior_vae``); nothing under vaelab/ knows it. The prior is
not N(0, I) (``standard_prior=False``), but q and p are both diagonal Gaussians, so the KL stays in closed
form per dimension (torch's Normal-Normal KL in ``kl_per_dim``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from vaelab.models import Capabilities, register
from vaelab.models.vae import VAEConfig, VariationalAE


@dataclass(frozen=True)
class LearnedPriorVAEConfig(VAEConfig):
    prior_scale_init: float = 1.0     # initial scale s of the learned prior N(m, s^2) (m starts at 0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.prior_scale_init > 0:
            raise ValueError(f"prior_scale_init={self.prior_scale_init} must be > 0")


@register("learned-prior-vae", LearnedPriorVAEConfig)
class LearnedPriorVAE(VariationalAE):
    """The VAE with p(z) = N(m, diag(s^2)), m and log s trained with the rest."""

    capabilities = Capabilities(standard_prior=False)  # Gaussian q, closed-form KL vs the learned prior

    def __init__(self, config: LearnedPriorVAEConfig) -> None:
        super().__init__(config)
        d = config.latent_dim
        self.prior_mean = nn.Parameter(torch.zeros(d))                                    # (d,)
        self.prior_log_scale = nn.Parameter(torch.full((d,), math.log(config.prior_scale_init)))  # (d,)

    def prior(self, n: int) -> Distribution:
        loc = self.prior_mean.expand(n, -1)                                              # (n, d)
        return Independent(Normal(loc, self.prior_log_scale.exp().expand(n, -1)), 1)
