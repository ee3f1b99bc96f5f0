"""VAE-GAN (Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity metric").

A VAE (q(z|x) a diagonal Gaussian, p(z) = N(0, I), KL in closed form) whose decoder also plays a GAN game
against a discriminator Dis: x -> (Dis_l(x), logit). Reconstruction is measured in the discriminator's
layer l (here its first layer) instead of pixels, Larsen's L_llike^Dis_l = -log N(Dis_l(x) | Dis_l(x~),
sigma^2 I) = |Dis_l(x) - Dis_l(x~)|^2 / (2 sigma^2) + const, with x~ = Dec(z), z ~ q(z|x). Larsen use
sigma = 1; the discriminator sets the features' scale, so ``feature_sigma`` says how much reconstruction
weighs against the KL (like a pixel VAE's sigma). The three players get the gradients of section 2.1:

    encoder        <- L_prior + L_llike                  (the KL and the feature-matching reconstruction)
    decoder        <- gamma * L_llike + L_GAN,gen        (gamma weighs reconstruction against fooling Dis)
    discriminator  <- L_GAN,dis                          (real x against Dec(z~q) and Dec(z~p))

One loss and one optimizer do this: ``elbo_parts`` gives the reconstruction (through Dis with its parameters
entered as constants, and through the decoder with its parameters' gradient scaled by gamma, forward values
unchanged) and the KL; ``extra_losses`` gives the generator term (Dis frozen again; the reconstruction's code
detached, so the encoder gets no GAN gradient) and the discriminator term (on detached fakes, so only Dis
gets it). The GAN terms are the usual binary cross-entropies, the generator's non-saturating (-log D).

No likelihood is claimed: the reconstruction term is a density of discriminator features, not of x, so
ELBO / IWAE / NLL do not apply (``Capabilities(likelihood=False)``). The prior is a real N(0, I): samples,
prior lattices and traversals apply. ``decode(z)`` returns a unit-scale Normal around the decoded image
(its mean is the picture; its log_prob is -SSE/2 + const, a pixel score, not a likelihood).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Distribution
from torch.func import functional_call
from torch.nn import functional as F

from ..distributions import diag_gaussian, kl_per_dim, likelihood, rsample
from ..nn import Decoder, Encoder, activation, check_body, mlp, resnet_channels
from ..resnet import ResNetSpec
from .base import Capabilities, LatentModel, check_shape, register

OUTPUTS = ("sigmoid", "linear")


@dataclass(frozen=True)
class VAEGANConfig:
    input_shape: tuple[int, ...]          # shape of one example, e.g. (1, 28, 28)
    latent_dim: int = 2                   # size of z
    hidden: tuple[int, ...] = (400,)      # encoder/decoder hidden layer sizes, input side first (decoder mirrors)
    arch: str = "mlp"                     # mlp | conv (2 stride-2 convs) | resnet: encoder, decoder and discriminator
    channels: tuple[int, ...] = ()        # resnet: width per stage, full resolution first; empty = by image size
    blocks: tuple[int, ...] = (1,)        # resnet: residual blocks per stage (one entry: every stage)
    norm: str = "group"                   # resnet: group | batch | none (batch: train-mode outputs depend on the batch)
    activation: str = "relu"              # relu | tanh | elu | gelu | silu
    disc_features: int = 512              # size of Dis_l, the discriminator's first layer, where reconstruction is matched
    disc_hidden: tuple[int, ...] = (256,)  # discriminator hidden layer sizes after Dis_l (then the real/fake logit)
    feature_sigma: float = 0.1            # scale of the unit Gaussian over Dis_l: reconstruction weight 1/sigma^2 vs the KL
    gamma: float = 0.01                   # Larsen's gamma: weight of the Dis_l reconstruction vs the GAN term in the decoder's update
    output: str = "sigmoid"               # decoder output: sigmoid (data in [0, 1], e.g. images) | linear (any real data)

    def __post_init__(self) -> None:
        check_shape(self.input_shape, self.latent_dim)
        object.__setattr__(self, "channels", resnet_channels(self.input_shape, self.arch, self.channels))
        check_body(self.input_shape, self.hidden, self.arch, self.activation, self.resnet)
        if any(not isinstance(h, int) or isinstance(h, bool) or not 1 <= h <= 65536 for h in self.disc_hidden):
            raise ValueError(f"disc_hidden={self.disc_hidden!r} sizes must be integers in 1..65536")
        if isinstance(self.disc_features, bool) or not isinstance(self.disc_features, int) \
                or not 1 <= self.disc_features <= 65536:
            raise ValueError(f"disc_features={self.disc_features!r} must be an integer in 1..65536")
        if not 0 < self.feature_sigma < math.inf:
            raise ValueError(f"feature_sigma={self.feature_sigma} must be a finite number > 0")
        if not 0 <= self.gamma < math.inf:  # NaN fails the comparison too
            raise ValueError(f"gamma={self.gamma} must be a finite number >= 0")
        if self.output not in OUTPUTS:
            raise ValueError(f"output={self.output!r} is not known; allowed: {list(OUTPUTS)}")

    @property
    def resnet(self) -> ResNetSpec | None:
        """The resnet body's fields when arch is 'resnet' (else None)."""
        return ResNetSpec(self.channels, self.blocks, self.norm) if self.arch == "resnet" else None


class Discriminator(nn.Module):
    """x (B, *shape) -> (Dis_l(x) (B, F), logit of "x is real" (B,)).

    Dis_l is the discriminator's first layer: a linear map of the pixels (mlp) or of the conv / resnet
    feature maps (conv, resnet), before its activation; the hidden layers ``disc_hidden`` and the logit follow."""

    def __init__(self, c: VAEGANConfig) -> None:
        super().__init__()
        self.body = Encoder(c.input_shape, (), c.disc_features, c.arch, c.activation, resnet=c.resnet)
        self.head = nn.Sequential(activation(c.activation), mlp([c.disc_features, *c.disc_hidden, 1], c.activation))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feats = self.body(x)                                  # (B, F) Dis_l
        return feats, self.head(feats).squeeze(-1)            # (B, F), (B,)


def _scaled_grad(p: Tensor, scale: float) -> Tensor:
    """p in the forward pass (exactly), ``scale`` times its gradient in the backward pass."""
    return p.detach() + scale * (p - p.detach())


def _real(logits: Tensor) -> Tensor:
    """Mean binary cross-entropy of logits against the label "real"."""
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def _fake(logits: Tensor) -> Tensor:
    """Mean binary cross-entropy of logits against the label "fake"."""
    return F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))


@register("vaegan", VAEGANConfig)
class VAEGAN(LatentModel):
    # N(0, I) prior and diagonal Gaussian q (closed-form KL); no p(x): recon is matched in Dis_l; GAN terms extra
    capabilities = Capabilities(likelihood=False, extra_losses=True)

    def __init__(self, config: VAEGANConfig) -> None:
        super().__init__(config)
        c = config
        self.encoder = Encoder(c.input_shape, c.hidden, 2 * c.latent_dim, c.arch, c.activation, resnet=c.resnet)
        self.decoder = Decoder(c.input_shape, c.hidden, c.latent_dim, c.arch, c.activation, resnet=c.resnet)
        self.discriminator = Discriminator(c)

    # -- pieces -----------------------------------------------------------------------------------------
    def _pixels(self, out: Tensor) -> Tensor:
        """Decoder output (B, *shape) -> the image it stands for (sigmoid: in [0, 1])."""
        return torch.sigmoid(out) if self.config.output == "sigmoid" else out

    def _decode_for_recon(self, z: Tensor) -> Tensor:
        """Dec(z) (B, *shape) whose gradient into the decoder's parameters is gamma times the true one
        (z's gradient, hence the encoder's, is unscaled): Larsen's gamma * L_llike for the decoder only."""
        g = self.config.gamma
        if g == 1.0 or not torch.is_grad_enabled():
            return self._pixels(self.decoder(z))
        params = {k: _scaled_grad(v, g) for k, v in self.decoder.named_parameters()}
        return self._pixels(functional_call(self.decoder, params, (z,)))

    def discriminate(self, x: Tensor, frozen: bool = False) -> tuple[Tensor, Tensor]:
        """(Dis_l(x) (B, F), logits (B,)). ``frozen``: the discriminator's parameters enter as constants, so
        a loss through this call trains only what made x (the decoder, the encoder)."""
        if not frozen:
            return self.discriminator(x)
        params = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, params, (x,))

    # -- the contract ---------------------------------------------------------------------------------
    def encode(self, x: Tensor, y: Tensor | None = None) -> Distribution:
        mu, logvar = self.encoder(x).chunk(2, dim=-1)                # (B, d) each
        return diag_gaussian(mu, logvar)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Distribution:
        mean = self._pixels(self.decoder(z))                         # (B, *shape)
        return likelihood("gaussian", mean, torch.zeros((), device=mean.device), len(self.input_shape))

    def elbo_parts(self, x: Tensor, y: Tensor | None = None,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The feature-matching reconstruction log N(Dis_l(x) | Dis_l(x~), sigma^2 I) + const (B,), x~ = Dec(z),
        z ~ q(z|x), and the KL per latent dimension (B, d). Not a likelihood of x."""
        q = self.encode(x, y)
        z = rsample(q, (), generator)                                 # (B, d)
        with torch.no_grad():
            real = self.discriminator(x)[0]                           # (B, F) the target: a constant
        fake = self.discriminate(self._decode_for_recon(z), frozen=True)[0]  # (B, F)
        recon = -0.5 * ((real - fake) / self.config.feature_sigma).square().sum(-1)  # (B,)
        return recon, kl_per_dim(q, self.prior(len(x)))              # (B,), (B, d)

    def log_weight_parts(self, x: Tensor, y: Tensor | None = None, k: int = 1, generator=None):
        raise ValueError("model 'vaegan' has no likelihood p(x) (its reconstruction is matched in discriminator "
                         "features): log-likelihood, ELBO and IWAE are not defined; use a vae")

    def extra_losses(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """The GAN terms of one step: the decoder's (non-saturating, Dis frozen) and the discriminator's (on
        detached fakes), over reconstructions Dec(z ~ q(z|x)) and prior samples Dec(z ~ N(0, I))."""
        n = len(x)
        with torch.no_grad():                                         # the encoder gets no GAN gradient
            z = self.encode(x, y).sample()                            # (B, d)
        z = torch.cat([z, self.prior(n).sample()])                   # (2B, d)
        fakes = self._pixels(self.decoder(z))                         # (2B, *shape)
        g = self.discriminate(fakes, frozen=True)[1]                  # (2B,)
        d = self.discriminate(torch.cat([x, fakes.detach()]))[1]      # (3B,)
        return {"gan_generator": _real(g[:n]) + _real(g[n:]),
                "gan_discriminator": _real(d[:n]) + _fake(d[n:2 * n]) + _fake(d[2 * n:])}
