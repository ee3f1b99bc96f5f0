"""VQ-VAE (van den Oord et al. 2017): discrete codes from a codebook, and a learned autoregressive prior.

The encoder maps x to a grid (conv: (D, h, w), h = ceil(H / 2^len(channels))) or a vector (mlp: n_codes
vectors of size D) of continuous outputs z_e; each is replaced by its nearest of K codebook entries e_k
(z_q). The decoder reads z_q; its gradient is copied onto z_e (straight-through). The codebook follows the
encoder outputs assigned to it by exponential moving averages (EMA, appendix A.1); a code whose EMA
assignment count falls below ``restart_below`` is moved onto a random encoder output of the batch (dead-code
restart). The commitment loss beta * ||z_e - sg[z_q]||^2 (summed per example, like the log-likelihood) is an
extra training term.

Likelihood. q(c|x) puts all its mass on the nearest codes c(x), so with the prior p(c) (a gated PixelCNN
over the code grid, models/codes.py) the ELBO is log p(x|z_q) + log p(c(x)): a true lower bound on
log p(x) = sum_c p(x|c) p(c) (one term of the sum). The rate is -log p(c(x)) >= 0, exact (no sampling),
one group per code position. Importance sampling cannot tighten it (q has no spread), so vaelab's NLL of
a vqvae is this bound: an upper bound on the true NLL.

Training the prior. The rate's gradient reaches only the PixelCNN (codes are discrete), so the one training
loop fits the prior by maximum likelihood on the codes the encoder produces at each step, alongside the
autoencoder; with ``--warmup E`` it starts after E epochs (weight beta rising from 0). Sampling draws
codes from the PixelCNN (logits / temperature) and decodes them.

z as one vector: ``latent_dim`` = D * positions; ``encode`` returns a point mass at z_q flattened
(conv: channel-major (D, h, w)), ``decode`` accepts any z of that size (codebook vectors or not).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..distributions import PointMass, get_likelihood, likelihood
from ..nn import Decoder, Encoder, activation
from .base import Capabilities, LatentModel, check_sample_args, check_shape, register
from .codes import Codebook, GatedPixelCNN

ARCHS = ("conv", "mlp")


@dataclass(frozen=True)
class VQVAEConfig:
    input_shape: tuple[int, ...]          # shape of one example, e.g. (1, 28, 28)
    arch: str = "conv"                    # conv: a grid of codes | mlp: a vector of n_codes codes
    channels: tuple[int, ...] = (32, 64)  # conv: widths of the stride-2 convolutions (each halves the grid)
    hidden: tuple[int, ...] = (400,)      # mlp: hidden layer sizes, input side first (decoder mirrors them)
    n_codes: int = 8                      # mlp: code vectors per example (conv: set by the grid)
    code_dim: int = 16                    # D: size of each code vector
    codebook_size: int = 64               # K: codebook entries
    commitment: float = 0.25              # beta of the commitment loss beta * ||z_e - sg[z_q]||^2
    decay: float = 0.99                   # EMA decay of the codebook counts and sums
    restart_below: float = 1.0            # restart a code whose EMA count per batch falls below this (0: never)
    prior_channels: int = 64              # width of the PixelCNN prior over codes
    prior_layers: int = 4                 # gated layers of the PixelCNN prior
    activation: str = "relu"              # relu | tanh | elu | gelu | silu
    likelihood: str = "bernoulli"         # bernoulli | gaussian | gaussian-learned | laplace
    sigma: float = 0.1                    # decoder scale for gaussian/laplace (initial value if learned)

    def __post_init__(self) -> None:
        _check(self)

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of the code grid: (1, n_codes) for mlp."""
        if self.arch == "mlp":
            return 1, self.n_codes
        f = 2 ** len(self.channels)
        return math.ceil(self.input_shape[1] / f), math.ceil(self.input_shape[2] / f)

    @property
    def latent_dim(self) -> int:
        """Size of z: code_dim values per position."""
        return self.code_dim * self.grid[0] * self.grid[1]


def _check(c: VQVAEConfig) -> None:
    """Every check of the config (run by ``__post_init__``)."""
    if c.arch not in ARCHS:
        raise ValueError(f"arch={c.arch!r} is not known; allowed: {list(ARCHS)}")
    if c.arch == "conv" and len(c.input_shape) != 3:
        raise ValueError(f"arch='conv' needs image data (C, H, W); got example shape {c.input_shape} (use arch 'mlp')")
    for name in ("channels", "hidden"):
        if any(not isinstance(v, int) or v < 1 for v in getattr(c, name)):
            raise ValueError(f"{name}={getattr(c, name)!r} sizes must be integers >= 1")
    if c.arch == "conv" and not c.channels:
        raise ValueError("channels=() : arch 'conv' needs at least one stride-2 convolution")
    for name in ("n_codes", "code_dim", "prior_channels", "prior_layers"):
        if getattr(c, name) < 1:
            raise ValueError(f"{name}={getattr(c, name)} must be >= 1")
    if c.codebook_size < 2:
        raise ValueError(f"codebook_size={c.codebook_size} must be >= 2")
    if not 0 <= c.commitment < math.inf:
        raise ValueError(f"commitment={c.commitment} must be a finite number >= 0")
    if not 0 <= c.decay < 1:
        raise ValueError(f"decay={c.decay} must be in [0, 1)")
    if not 0 <= c.restart_below < math.inf:
        raise ValueError(f"restart_below={c.restart_below} must be a finite number >= 0")
    if not c.sigma > 0:
        raise ValueError(f"sigma={c.sigma} must be > 0")
    activation(c.activation)
    if get_likelihood(c.likelihood).out_mult() != 1:
        raise ValueError(f"likelihood={c.likelihood!r} needs several decoder outputs per value; vqvae's decoder "
                         "gives one: use bernoulli, continuous-bernoulli, discretized-logistic or a gaussian")
    check_shape(c.input_shape, c.latent_dim)


def _conv_nets(c: VQVAEConfig) -> tuple[nn.Module, nn.Module]:
    """conv encoder x (B, C, H, W) -> z_e (B, D, h, w) and decoder z_q -> (B, C, >=H, >=W)."""
    act = c.activation
    widths = [c.input_shape[0], *c.channels]
    enc: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        enc += [nn.Conv2d(a, b, 3, stride=2, padding=1), activation(act)]
    enc += [nn.Conv2d(widths[-1], widths[-1], 3, padding=1), activation(act), nn.Conv2d(widths[-1], c.code_dim, 1)]
    dec: list[nn.Module] = [nn.Conv2d(c.code_dim, widths[-1], 3, padding=1), activation(act)]
    back = widths[::-1]
    for i, (a, b) in enumerate(zip(back[:-1], back[1:])):
        dec.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))
        if i < len(back) - 2:
            dec.append(activation(act))
    return nn.Sequential(*enc), nn.Sequential(*dec)


@register("vqvae", VQVAEConfig)
class VQVAE(LatentModel):
    # one-hot q (a point mass at the nearest codes); the rate -log p(codes) under the PixelCNN is exact
    capabilities = Capabilities(standard_prior=False, gaussian_posterior=False, discrete_latents=True,
                                extra_losses=True)

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__(config)
        c = config
        if c.arch == "conv":
            self.encoder, self.decoder = _conv_nets(c)
        else:
            self.encoder = Encoder(c.input_shape, c.hidden, c.latent_dim, "mlp", c.activation)
            self.decoder = Decoder(c.input_shape, c.hidden, c.latent_dim, "mlp", c.activation)
        self.codebook = Codebook(c.codebook_size, c.code_dim, c.decay, c.restart_below)
        self.code_prior = GatedPixelCNN(c.codebook_size, c.prior_channels, c.prior_layers)
        log_sigma = torch.full(c.input_shape, math.log(c.sigma))
        if get_likelihood(c.likelihood).learned_scale:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", torch.tensor(math.log(c.sigma)))
        self._pending: tuple[Tensor, Tensor] | None = None  # (x, commitment) of the last training step

    @property
    def grid(self) -> tuple[int, int]:
        return self.config.grid

    # -- codes ----------------------------------------------------------------------------------------
    def _grid_of(self, z: Tensor) -> Tensor:
        """Flat codes (..., latent_dim) -> (N, D, h, w)."""
        return z.reshape(-1, self.config.code_dim, *self.grid)

    def encode_grid(self, x: Tensor) -> Tensor:
        """Continuous encoder outputs z_e: (B, D, h, w)."""
        return self._grid_of(self.encoder(self.check_input(x)))

    def codes(self, x: Tensor) -> Tensor:
        """Indices of the nearest codebook entries: (B, h, w) long."""
        ze = self.encode_grid(x)
        return self.codebook.nearest(ze.permute(0, 2, 3, 1).reshape(-1, ze.shape[1])).reshape(len(ze), *self.grid)

    def embed(self, codes: Tensor) -> Tensor:
        """Code indices (B, h, w) -> flat z_q (B, latent_dim)."""
        return self.codebook.embedding[codes].permute(0, 3, 1, 2).flatten(1)

    def quantize(self, x: Tensor, update: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """(z_q with the straight-through gradient (B, latent_dim), codes (B, h, w), commitment (B,)).

        ``update``: the codebook then takes one EMA step on this batch (after z_q is read)."""
        ze = self.encode_grid(x)                                       # (B, D, h, w)
        flat = ze.permute(0, 2, 3, 1).reshape(-1, ze.shape[1])         # (B*h*w, D)
        idx = self.codebook.nearest(flat.detach())
        codes = idx.reshape(len(ze), *self.grid)
        zq = self.embed(codes)                                         # (B, latent_dim)
        if update:
            self.codebook.update(flat.detach(), idx)
        ze = ze.flatten(1)
        commitment = self.config.commitment * (ze - zq.detach()).square().sum(1)  # (B,)
        return ze + (zq - ze).detach(), codes, commitment

    # -- the contract ---------------------------------------------------------------------------------
    def encode(self, x: Tensor, y: Tensor | None = None) -> Distribution:
        """A point mass at the quantized codes z_q: (B, latent_dim)."""
        return PointMass(self.embed(self.codes(x)))

    def output_decoder(self) -> nn.Module | None:
        return self.decoder if self.config.arch == "mlp" else None  # conv: its own nets, no table layout

    def decode(self, z: Tensor, y: Tensor | None = None) -> Distribution:
        lead = z.shape[:-1]
        if self.config.arch == "conv":
            out = self.decoder(self._grid_of(z))[:, :, : self.input_shape[1], : self.input_shape[2]]
            out = out.reshape(*lead, *self.input_shape)
        else:
            out = self.decoder(z)
        return likelihood(self.config.likelihood, out, self.log_sigma, len(self.input_shape))

    def prior(self, n: int, temperature: float = 1.0) -> Distribution:
        """p(z): the PixelCNN's distribution over codebook vectors (n draws; off-codebook z has log p = -inf)."""
        return CodePrior(self, n, temperature)

    def code_log_prob(self, codes: Tensor, temperature: float = 1.0) -> Tensor:
        """log p(c_p | c_<p) under the PixelCNN prior (logits / temperature) per position: (B, h*w)."""
        return self.code_prior.log_prob_per_position(codes, temperature)

    def elbo_parts(self, x: Tensor, y: Tensor | None = None,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """log p(x|z_q) (B,) and the rate -log p(c_p|c_<p) per code position (B, h*w), both exact."""
        given, x = x, self.check_input(x)
        self.condition(y, len(x))
        step = self.training and torch.is_grad_enabled()               # a training step: EMA update
        zq, codes, commitment = self.quantize(x, update=step)
        if step:
            self._pending = (given, commitment.mean())                 # for this step's extra_losses
        return self.decode(zq).log_prob(x), -self.code_log_prob(codes)

    def log_weight_parts(self, x: Tensor, y: Tensor | None = None, k: int = 1,
                         generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The same (deterministic) parts for each of k 'samples' of q: (k, B) and (k, B, h*w)."""
        recon, rate = self.elbo_parts(x, y, generator)
        return recon.expand(k, *recon.shape), rate.expand(k, *rate.shape)

    def extra_losses(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """The commitment loss of this training step (computed with its elbo_parts), mean over the batch."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] is x:
            return {"commitment": pending[1]}
        return {"commitment": self.quantize(self.check_input(x))[2].mean()}  # no second EMA step

    @torch.no_grad()
    def sample(self, n: int, y: Tensor | int | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Decoded means of codes drawn from the PixelCNN prior (logits / temperature): (n, *input_shape)."""
        check_sample_args(n, temperature)
        return self.decode(self.prior(n, temperature).sample(generator=generator)).mean

    @torch.no_grad()
    @torch.no_grad()
    def latent_stats(self, x: Tensor) -> dict[str, float]:
        return self.codebook_stats(x)

    def codebook_stats(self, x: Tensor, batch_size: int = 1000) -> dict[str, float]:
        """Codebook usage and perplexity of the codes of x (N, *shape) (perplexity K: every code equally used)."""
        idx = torch.cat([self.codes(x[i:i + batch_size].to(self.device)).flatten().cpu()
                         for i in range(0, len(x), batch_size)])
        return self.codebook.stats(idx)


class CodePrior(Distribution):
    """The PixelCNN prior as a distribution over flat codebook vectors z (latent_dim,)."""

    arg_constraints: dict = {}

    def __init__(self, model: VQVAE, n: int, temperature: float = 1.0) -> None:
        self.model, self.temperature = model, float(temperature)
        super().__init__(torch.Size((n,)), torch.Size((model.latent_dim,)), validate_args=False)

    def sample(self, sample_shape: torch.Size = torch.Size(), generator: torch.Generator | None = None) -> Tensor:
        m = self.model
        lead = torch.Size(sample_shape) + self.batch_shape
        codes = m.code_prior.sample(math.prod(lead), m.grid, self.temperature, generator, m.device)
        return m.embed(codes).reshape(*lead, m.latent_dim)

    def log_prob(self, value: Tensor) -> Tensor:
        """log p(z): the PixelCNN's log-probability of z's codes (at this temperature); -inf off the codebook."""
        m = self.model
        flat = value.reshape(-1, m.config.code_dim, *m.grid).permute(0, 2, 3, 1)       # (N, h, w, D)
        codes = m.codebook.nearest(flat.reshape(-1, flat.shape[-1])).reshape(flat.shape[:3])
        exact = (m.embed(codes) == value.reshape(len(codes), -1)).all(1)
        lp = m.code_log_prob(codes, self.temperature).sum(1)
        return torch.where(exact, lp, -math.inf).reshape(value.shape[:-1])
