"""The VAE (Kingma & Welling) and its conditional form p(x|z,y), q(z|x,y).

q(z|x) = N(mu(x), diag(exp(logvar(x)))) sampled by reparameterization; p(x|z) from the likelihood
table (Bernoulli, Gaussian with fixed or learned sigma); prior N(0, I); KL in closed form.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..distributions import diag_gaussian, get_likelihood, likelihood
from ..nn import Decoder, Encoder, check_body
from .base import Capabilities, LatentModel, check_shape, register


@dataclass(frozen=True)
class VAEConfig:
    input_shape: tuple[int, ...]      # shape of one example, e.g. (1, 28, 28)
    latent_dim: int = 2               # size of z
    hidden: tuple[int, ...] = (400,)  # hidden layer sizes, input side first (decoder mirrors them)
    arch: str = "mlp"                 # "mlp" or "conv"
    activation: str = "relu"          # relu | tanh | elu | gelu | silu
    likelihood: str = "bernoulli"     # bernoulli | gaussian | gaussian-learned | laplace
    sigma: float = 0.1                # decoder scale for gaussian/laplace (initial value if learned)
    n_classes: int = 0                # > 0: conditional on a class label y in 0..n_classes-1

    def __post_init__(self) -> None:
        check_shape(self.input_shape, self.latent_dim)
        check_body(self.input_shape, self.hidden, self.arch, self.activation)
        get_likelihood(self.likelihood)
        if not self.sigma > 0:
            raise ValueError(f"sigma={self.sigma} must be > 0")
        if self.n_classes < 0:
            raise ValueError(f"n_classes={self.n_classes} must be >= 0")


@dataclass(frozen=True)
class CVAEConfig(VAEConfig):
    n_classes: int = 2                # number of label classes (>= 2; taken from the data)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_classes < 2:
            raise ValueError(f"cvae needs n_classes >= 2 (the number of label classes); got {self.n_classes}")


@register("vae", VAEConfig)
class VariationalAE(LatentModel):
    capabilities = Capabilities()  # N(0, I) prior, diagonal Gaussian q, closed-form KL

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        c = config
        lik = get_likelihood(c.likelihood)
        self.encoder = Encoder(c.input_shape, c.hidden, 2 * c.latent_dim, c.arch, c.activation, c.n_classes)
        self.decoder = Decoder(c.input_shape, c.hidden, c.latent_dim, c.arch, c.activation, c.n_classes)
        log_sigma = torch.full(c.input_shape, math.log(c.sigma))
        if lik.learned_scale:
            self.log_sigma = nn.Parameter(log_sigma)                 # (*shape) learned per pixel
        else:
            self.register_buffer("log_sigma", torch.tensor(math.log(c.sigma)))

    def encode(self, x: Tensor, y: Tensor | None = None) -> Distribution:
        h = self.encoder(x, self.condition(y, len(x)))              # (B, 2d)
        mu, logvar = h.chunk(2, dim=-1)                             # (B, d) each
        return diag_gaussian(mu, logvar)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Distribution:
        out = self.decoder(z, self.condition(y, len(z)))            # (B, *shape)
        return likelihood(self.config.likelihood, out, self.log_sigma, len(self.input_shape))


@register("cvae", CVAEConfig)
class ConditionalVAE(VariationalAE):
    """A VAE conditioned on a class label: generate a chosen class with ``sample(n, y=k)``."""

    capabilities = Capabilities(needs_labels=True)
