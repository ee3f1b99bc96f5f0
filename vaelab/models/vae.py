"""The VAE (Kingma & Welling) and its conditional form p(x|z,y), q(z|x,y).

q(z|x) = N(mu(x), diag(exp(logvar(x)))) sampled by reparameterization; p(x|z) from the likelihood
table (Bernoulli, continuous Bernoulli, discretized logistic (mixture), Gaussian with fixed or learned
sigma, Laplace; the decoder gives ``out_mult`` numbers per value); prior N(0, I); KL in closed form.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..distributions import check_components, diag_gaussian, get_likelihood, likelihood
from ..nn import Decoder, Encoder, check_body, resnet_channels
from ..resnet import ResNetSpec
from .base import Capabilities, LatentModel, check_shape, register


@dataclass(frozen=True)
class VAEConfig:
    input_shape: tuple[int, ...]      # shape of one example, e.g. (1, 28, 28)
    latent_dim: int = 2               # size of z
    hidden: tuple[int, ...] = (400,)  # hidden layer sizes, input side first (decoder mirrors them)
    arch: str = "mlp"                 # mlp | conv (2 stride-2 convs) | resnet (residual stages: channels, blocks, norm)
    channels: tuple[int, ...] = ()    # resnet: width per stage, full resolution first; empty = by image size
    blocks: tuple[int, ...] = (1,)    # resnet: residual blocks per stage (one entry: every stage)
    norm: str = "group"               # resnet: group | batch | none (batch: train-mode outputs depend on the batch)
    activation: str = "relu"          # relu | tanh | elu | gelu | silu
    likelihood: str = "bernoulli"     # p(x|z), a key of distributions.LIKELIHOODS (bernoulli, dmol, gaussian, ...)
    sigma: float = 0.1                # decoder scale for gaussian/laplace (initial value if learned)
    mixture_components: int = 5       # dmol: logistic components per value (other likelihoods: unused)
    n_classes: int = 0                # > 0: conditional on a class label y in 0..n_classes-1

    def __post_init__(self) -> None:
        check_shape(self.input_shape, self.latent_dim)
        object.__setattr__(self, "channels", resnet_channels(self.input_shape, self.arch, self.channels))
        check_body(self.input_shape, self.hidden, self.arch, self.activation, self.resnet)
        get_likelihood(self.likelihood)
        check_components(self.mixture_components)
        if not self.sigma > 0:
            raise ValueError(f"sigma={self.sigma} must be > 0")
        if not 0 <= self.n_classes <= 10_000:
            raise ValueError(f"n_classes={self.n_classes} must be in 0..10000")

    @property
    def resnet(self) -> ResNetSpec | None:
        """The resnet body's fields when arch is 'resnet' (else None)."""
        return ResNetSpec(self.channels, self.blocks, self.norm) if self.arch == "resnet" else None


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
        self.encoder = Encoder(c.input_shape, c.hidden, 2 * c.latent_dim, c.arch, c.activation, c.n_classes,
                               resnet=c.resnet)
        self.decoder = Decoder(c.input_shape, c.hidden, c.latent_dim, c.arch, c.activation, c.n_classes,
                               resnet=c.resnet, out_mult=lik.out_mult(c.mixture_components))
        log_sigma = torch.full(c.input_shape, math.log(c.sigma))
        if lik.learned_scale:
            self.log_sigma = nn.Parameter(log_sigma)                 # (*shape) learned per pixel
        else:
            self.register_buffer("log_sigma", torch.tensor(math.log(c.sigma)))

    def encode(self, x: Tensor, y: Tensor | None = None) -> Distribution:
        h = self.encoder(x, self.condition(y, len(x)))              # (B, 2d)
        mu, logvar = h.chunk(2, dim=-1)                             # (B, d) each
        return diag_gaussian(mu, logvar)

    def output_decoder(self) -> nn.Module:
        return self.decoder

    def decode(self, z: Tensor, y: Tensor | None = None) -> Distribution:
        out = self.decoder(z, self.condition(y, len(z)))            # (B, out_mult * C, *rest)
        return likelihood(self.config.likelihood, out, self.log_sigma, len(self.input_shape),
                          self.config.mixture_components)


@register("cvae", CVAEConfig)
class ConditionalVAE(VariationalAE):
    """A VAE conditioned on a class label: generate a chosen class with ``sample(n, y=k)``."""

    capabilities = Capabilities(needs_labels=True)
