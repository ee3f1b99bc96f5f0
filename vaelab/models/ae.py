"""Deterministic autoencoder: z = e(x), x' = d(z), trained on MSE or L1.

``encode`` returns a point mass. ``decode`` returns a unit-scale Normal (MSE) or Laplace (L1) whose
negative log-density is the squared / absolute error up to a constant, so the one training loop fits
it; there is no prior and no likelihood of x, so an autoencoder reports reconstruction error only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Distribution

from ..distributions import PointMass, likelihood
from ..nn import Decoder, Encoder, check_body, resnet_channels
from ..resnet import ResNetSpec
from .base import Capabilities, LatentModel, check_shape, register

LOSSES = {"mse": "gaussian", "l1": "laplace"}


@dataclass(frozen=True)
class AEConfig:
    input_shape: tuple[int, ...]      # shape of one example, e.g. (1, 28, 28)
    latent_dim: int = 2               # size of the code z
    hidden: tuple[int, ...] = (400,)  # hidden layer sizes, input side first (decoder mirrors them)
    arch: str = "mlp"                 # mlp | conv (2 stride-2 convs) | resnet (residual stages: channels, blocks, norm)
    channels: tuple[int, ...] = ()    # resnet: width per stage, full resolution first; empty = by image size
    blocks: tuple[int, ...] = (1,)    # resnet: residual blocks per stage (one entry: every stage)
    norm: str = "group"               # resnet: group | batch | none (batch: train-mode outputs depend on the batch)
    activation: str = "relu"          # relu | tanh | elu | gelu | silu
    loss: str = "mse"                 # "mse" or "l1" reconstruction loss

    def __post_init__(self) -> None:
        check_shape(self.input_shape, self.latent_dim)
        object.__setattr__(self, "channels", resnet_channels(self.input_shape, self.arch, self.channels))
        check_body(self.input_shape, self.hidden, self.arch, self.activation, self.resnet)
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r} is not known; allowed: {sorted(LOSSES)}")

    @property
    def resnet(self) -> ResNetSpec | None:
        """The resnet body's fields when arch is 'resnet' (else None)."""
        return ResNetSpec(self.channels, self.blocks, self.norm) if self.arch == "resnet" else None


@register("ae", AEConfig)
class Autoencoder(LatentModel):
    # no p(x) and no prior: codes are points, trained on reconstruction error alone
    capabilities = Capabilities(likelihood=False, prior=False, standard_prior=False, gaussian_posterior=False)

    def __init__(self, config: AEConfig) -> None:
        super().__init__(config)
        c = config
        self.encoder = Encoder(c.input_shape, c.hidden, c.latent_dim, c.arch, c.activation, resnet=c.resnet)
        self.decoder = Decoder(c.input_shape, c.hidden, c.latent_dim, c.arch, c.activation, resnet=c.resnet)

    def encode(self, x: Tensor, y: Tensor | None = None) -> Distribution:
        return PointMass(self.encoder(x))                       # (B, d)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Distribution:
        out = self.decoder(z)                                   # (B, *shape)
        return likelihood(LOSSES[self.config.loss], out, torch.zeros((), device=out.device),
                          len(self.input_shape))

    def elbo_parts(self, x: Tensor, y: Tensor | None = None, generator=None) -> tuple[Tensor, Tensor]:
        recon = self.decode(self.encoder(x)).log_prob(x)        # (B,) = -SSE/2 (or -SAE) + const
        return recon, recon.new_zeros(len(x), 0)                # no KL term

    def log_weight_parts(self, x: Tensor, y: Tensor | None = None, k: int = 1, generator=None):
        raise ValueError("model 'ae' has no likelihood p(x): log-likelihood and ELBO are not defined; "
                         "use reconstruction error, or a vae")
