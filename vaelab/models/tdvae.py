"""A convolutional top-down hierarchical VAE with spatial latent maps, NVAE / VDVAE at small scale
(Vahdat & Kautz 2020; Child 2021).

Resolution s has side ceil(side / 2^s) and ``channels[s]`` channels (full size first); the coarsest
``len(latent_channels)`` resolutions carry latent maps, ``layers_per_scale`` of them each, e.g. 4x4 and
8x8 maps for 32x32 images. A bottom-up ResNet pass (vaelab.resnet blocks) gives an activation a_s at every
resolution. The top-down pass starts from a learned tensor at the coarsest resolution; at each latent layer
l the prior p(z_l | z_>l) = N(mu_p, sigma_p) is read off the top-down state h, the posterior
q(z_l | z_>l, x) = N(mu_q, sigma_q) from [h, a_s] (VDVAE's merge of the two passes), and z_l is folded back
into h; upsampling and residual blocks lead to the likelihood p(x | z) from the table (bernoulli, dmol,
discretized-logistic, ...). Every z_l feeds x.

KL: elbo_parts gives, per latent layer, KL(q(z_l|z_>l, x) || p(z_l|z_>l)) in closed form for the layers
above drawn once from q (the hvae's top-down rule): each term is exact given that draw, their sum is a
single-sample estimate of the total KL, so ``closed_form_kl`` is False. log_weight_parts gives the sampled
log q - log p per layer.

z as one vector: ``latent_dim`` = sum over layers of z_ch * h_s * w_s; a code is every layer's map flattened
(C, h, w order) and concatenated, coarsest (generated first) first. ``encode`` returns a diagonal Gaussian
built along the chain of posterior means (a mean-field summary for plots, transform and active units; the
objectives sample the real chain). ``decode(z)`` runs the top-down pass on the given maps. ``prior(n)`` is
the whole ancestral chain (``rsample`` with a temperature on every layer's std, chain ``log_prob``).
Examples of shape (H, W) are read as (1, H, W) and flat (D,) as (D, 1, 1) (all resolutions 1x1 then).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Normal, kl_divergence

from ..distributions import LayeredPrior, check_components, diag_gaussian, get_likelihood, likelihood
from ..nn import activation
from ..resnet import NORMS
from .base import Capabilities, LatentModel, check_sample_args, check_shape, register
from .tdvae_blocks import BottomUp, TopDown

MIN_SIDE = 4      # default channels: halve until the coarsest resolution has a side of at most this many px


@dataclass(frozen=True)
class TDVAEConfig:
    input_shape: tuple[int, ...]               # shape of one example, e.g. (3, 32, 32); (H, W) and (D,) also
    channels: tuple[int, ...] = ()             # width per resolution, full size first (each next halves); empty = by size
    blocks: tuple[int, ...] = (1,)             # residual blocks per resolution in each pass (one entry: every one)
    latent_channels: tuple[int, ...] = (8, 4)  # latent map channels per latent resolution, coarsest first (count = scales)
    layers_per_scale: int = 1                  # latent layers per latent resolution (VDVAE stacks several)
    norm: str = "group"                        # group | batch | none (batch: outputs depend on the batch)
    activation: str = "silu"                   # relu | tanh | elu | gelu | silu
    likelihood: str = "bernoulli"              # p(x|z), a key of distributions.LIKELIHOODS (bernoulli, dmol, ...)
    sigma: float = 0.1                         # decoder scale for gaussian/laplace (initial value if learned)
    mixture_components: int = 5                # dmol: logistic components per value (other likelihoods: unused)
    n_classes: int = 0                         # must be 0: the tdvae is unconditional

    def __post_init__(self) -> None:
        check_shape(self.input_shape, 1)
        if len(self.input_shape) > 3:
            raise ValueError(f"input_shape={self.input_shape}: tdvae takes (C, H, W), (H, W) or (D,) examples")
        object.__setattr__(self, "latent_channels", tuple(self.latent_channels))
        if not self.latent_channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 1
                                           for c in self.latent_channels):
            raise ValueError(f"latent_channels={self.latent_channels!r} must list one channel count >= 1 per latent "
                             "resolution, coarsest first, e.g. (8, 4)")
        object.__setattr__(self, "channels", tuple(self.channels) or default_channels(self.image_shape,
                                                                                      len(self.latent_channels)))
        object.__setattr__(self, "blocks", tuple(self.blocks))
        _check(self)
        check_shape(self.input_shape, self.latent_dim)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The example as an image (C, H, W)."""
        s = tuple(self.input_shape)
        return s if len(s) == 3 else (1, *s) if len(s) == 2 else (s[0], 1, 1)

    @property
    def blocks_per_scale(self) -> tuple[int, ...]:
        """Residual blocks at every resolution, full size first."""
        return self.blocks * len(self.channels) if len(self.blocks) == 1 else self.blocks

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """(h, w) of every resolution, full size first."""
        _, h, w = self.image_shape
        return [(math.ceil(h / 2 ** s), math.ceil(w / 2 ** s)) for s in range(len(self.channels))]

    @property
    def z_channels(self) -> dict[int, int]:
        """Resolution index -> channels of its latent maps (the coarsest resolutions)."""
        top = len(self.channels) - 1
        return {top - j: c for j, c in enumerate(self.latent_channels)}

    @property
    def latent_shapes(self) -> list[tuple[int, int, int]]:
        """(z_ch, h, w) of every latent layer in generation order (coarsest first)."""
        return [(c, *self.sizes[s]) for s, c in sorted(self.z_channels.items(), reverse=True)
                for _ in range(self.layers_per_scale)]

    @property
    def latent_dim(self) -> int:
        """Size of the flat code: every latent map's values."""
        return sum(math.prod(shape) for shape in self.latent_shapes)


def default_channels(image_shape: tuple[int, int, int], scales: int) -> tuple[int, ...]:
    """Halve until the coarsest side is <= MIN_SIDE px (and at least ``scales`` resolutions); widths 16, 32, 64
    (capped): 32 px -> (16, 32, 64, 64) at 32, 16, 8, 4 px; 28 -> 4 px; 8 -> (16, 32) at 8, 4 px."""
    side = min(image_shape[1:])
    n = max(scales, 1 + math.ceil(math.log2(max(side, 1) / MIN_SIDE)))
    return tuple(min(16 * 2 ** s, 64) for s in range(n))


def _int_at_least(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r} must be an integer >= {low}")


def _check(c: TDVAEConfig) -> None:
    """Every check of the config but the shape's (run by ``__post_init__``)."""
    if not c.channels or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in c.channels):
        raise ValueError(f"channels={c.channels!r} must list one width >= 1 per resolution, full size first")
    if len(c.channels) < len(c.latent_channels):
        raise ValueError(f"latent_channels={c.latent_channels} puts latents at {len(c.latent_channels)} resolutions; "
                         f"channels={c.channels} has only {len(c.channels)}")
    if (not c.blocks or any(isinstance(b, bool) or not isinstance(b, int) or b < 0 for b in c.blocks)
            or len(c.blocks) not in (1, len(c.channels))):
        raise ValueError(f"blocks={c.blocks!r} must be 1 entry (every resolution) or {len(c.channels)} (one per "
                         f"resolution for channels={c.channels}) of residual block counts >= 0")
    _int_at_least("layers_per_scale", c.layers_per_scale, 1)
    if c.norm not in NORMS:
        raise ValueError(f"norm={c.norm!r} is not known; allowed: {list(NORMS)}")
    activation(c.activation)
    get_likelihood(c.likelihood)
    check_components(c.mixture_components)
    if not c.sigma > 0:
        raise ValueError(f"sigma={c.sigma} must be > 0")
    if c.n_classes != 0:
        raise ValueError(f"n_classes={c.n_classes}: the tdvae is unconditional; allowed: 0")


def _normal(mu: Tensor, logvar: Tensor) -> Normal:
    """A diagonal Gaussian in fp32 (under --precision bf16 the heads' outputs may be 16-bit: KLs stay fp32)."""
    mu, logvar = mu.float(), logvar.float()
    return Normal(mu, (0.5 * logvar).exp(), validate_args=False)


def _noise(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``like``: from ``generator`` when given (on its device)."""
    if generator is None:
        return torch.randn_like(like)
    return torch.randn(like.shape, generator=generator, device=generator.device, dtype=like.dtype).to(like.device)


Layer = tuple[Tensor, "tuple[Tensor, Tensor] | None", tuple[Tensor, Tensor]]  # z, (q_mu, q_logvar), (p_mu, p_logvar)


@register("tdvae", TDVAEConfig)
class TopDownVAE(LatentModel):
    # its own prior (the top-down chain); encode() is a mean-field summary, not the q that is sampled; each
    # layer's KL is closed form only given a sampled layer above, so the total is a single-sample estimate
    capabilities = Capabilities(standard_prior=False, gaussian_posterior=False, closed_form_kl=False)

    def __init__(self, config: TDVAEConfig) -> None:
        super().__init__(config)
        c, act = config, partial(activation, config.activation)
        lik = get_likelihood(c.likelihood)
        self.bottom_up = BottomUp(c.image_shape[0], c.channels, c.blocks_per_scale, c.norm, act)
        self.top_down = TopDown(lik.out_mult(c.mixture_components) * c.image_shape[0], c.channels, c.sizes,
                                c.blocks_per_scale, c.z_channels, c.layers_per_scale, c.norm, act)
        log_sigma = torch.full(c.input_shape, math.log(c.sigma))
        if lik.learned_scale:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", torch.tensor(math.log(c.sigma)))

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    # -- the passes -----------------------------------------------------------------------------------------
    def _acts(self, x: Tensor, k: int = 1) -> list[Tensor]:
        """Bottom-up activations of x (B, *input_shape), each repeated k times (sample-major): (k B, ch, h, w)."""
        acts = self.bottom_up(x.reshape(len(x), *self.config.image_shape))
        return acts if k == 1 else [a.repeat(k, 1, 1, 1) for a in acts]

    def _run(self, n: int, acts: list[Tensor] | None = None, codes: list[Tensor] | None = None,
             temperature: float = 1.0, generator: torch.Generator | None = None,
             use_mean: bool = False, output: bool = True) -> tuple[Tensor, list[Layer]]:
        """The top-down pass for n rows: decoder output (n, out_ch, H, W) (None unless ``output``) and, per
        latent layer, (z, q, p). z is ``codes[i]`` when given; else with ``acts`` a posterior draw (its mean if
        ``use_mean``); else a prior draw with std times ``temperature``."""
        layers: list[Layer] = []

        def pick(i: int, s: int, layer, h: Tensor, p_mu: Tensor, p_logvar: Tensor) -> Tensor:
            q = None
            if codes is not None:
                z = codes[i]
            elif acts is not None:
                q = layer.posterior(h, acts[s])
                z = q[0] if use_mean else q[0] + (0.5 * q[1]).exp() * _noise(q[0], generator)
            else:
                z = p_mu + temperature * (0.5 * p_logvar).exp() * _noise(p_mu, generator)
            layers.append((z, q, (p_mu, p_logvar)))
            return z

        return self.top_down(n, pick, output), layers

    def _px(self, out: Tensor, lead: tuple[int, ...]) -> Distribution:
        """p(x|z) from the decoder output (N, m C, H, W), rows reshaped to ``lead``: event shape input_shape."""
        out = out.reshape(*lead, -1, *self.input_shape[1:])            # (*lead, m * C, *rest)
        return likelihood(self.config.likelihood, out, self.log_sigma, len(self.input_shape),
                          self.config.mixture_components)

    def split(self, z: Tensor) -> list[Tensor]:
        """Flat codes (N, latent_dim) -> every layer's map (N, z_ch, h, w), coarsest first."""
        shapes = self.config.latent_shapes
        return [part.reshape(len(z), *shape) for part, shape in
                zip(z.split([math.prod(s) for s in shapes], -1), shapes)]

    # -- the contract -----------------------------------------------------------------------------------------
    def encode(self, x: Tensor, y: Tensor | None = None) -> Distribution:
        """Mean-field summary of q over the flat code: every layer's Gaussian along the chain of posterior means."""
        self.condition(y, len(x))
        _, layers = self._run(len(x), acts=self._acts(x), use_mean=True, output=False)
        mu = torch.cat([q[0].flatten(1) for _, q, _ in layers], -1)     # (B, latent_dim)
        logvar = torch.cat([q[1].flatten(1) for _, q, _ in layers], -1)
        return diag_gaussian(mu, logvar)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Distribution:
        """p(x|z): the top-down pass on the latent maps read from z (..., latent_dim)."""
        if z.shape[-1] != self.latent_dim:
            raise ValueError(f"z has size {z.shape[-1]}; tdvae decodes its flattened latent maps, size "
                             f"{self.latent_dim} (latent shapes {self.config.latent_shapes})")
        lead = tuple(z.shape[:-1])
        flat = z.reshape(-1, self.latent_dim)
        out, _ = self._run(len(flat), codes=self.split(flat))
        return self._px(out, lead)

    def prior(self, n: int, temperature: float = 1.0) -> Distribution:
        """The whole top-down chain over the flat code, batch shape (n,), event (latent_dim,)."""
        return TopDownPrior(self, n, temperature)

    def elbo_parts(self, x: Tensor, y: Tensor | None = None,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """One-sample log p(x|z) (B,) and per latent layer (B, L) KL(q(z_l|z_>l, x) || p(z_l|z_>l)) in closed
        form given the layers above as drawn."""
        x = self.check_input(x)
        self.condition(y, len(x))
        out, layers = self._run(len(x), acts=self._acts(x), generator=generator)
        recon = self._px(out, (len(x),)).log_prob(x)                   # (B,)
        kls = [kl_divergence(_normal(*q), _normal(*p)).flatten(1).sum(-1) for _, q, p in layers]
        return recon, torch.stack(kls, -1)                              # (B,), (B, L)

    def log_weight_parts(self, x: Tensor, y: Tensor | None = None, k: int = 1,
                         generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """For k posterior draws: log p(x|z) (k, B) and log q(z_l|.) - log p(z_l|.) per layer (k, B, L)."""
        x = self.check_input(x)
        self.condition(y, len(x))
        out, layers = self._run(k * len(x), acts=self._acts(x, k), generator=generator)
        recon = self._px(out, (k, len(x))).log_prob(x.expand(k, *x.shape))  # (k, B)
        rate = [(_normal(*q).log_prob(z) - _normal(*p).log_prob(z)).flatten(1).sum(-1) for z, q, p in layers]
        return recon, torch.stack(rate, -1).reshape(k, len(x), -1)      # (k, B, L)

    @torch.no_grad()
    def sample(self, n: int, y: Tensor | int | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Ancestral top-down samples, every layer's std scaled by ``temperature``: (n, *input_shape)."""
        check_sample_args(n, temperature)
        out, _ = self._run(n, temperature=temperature, generator=generator)
        return self._px(out, (n,)).mean


class TopDownPrior(LayeredPrior):
    """prod_l p(z_l | z_>l) over the flat code of a TopDownVAE; ``temperature`` scales every layer's std."""

    def rsample(self, sample_shape: torch.Size = torch.Size(), generator: torch.Generator | None = None) -> Tensor:
        lead = torch.Size(sample_shape) + self.batch_shape
        _, layers = self.model._run(math.prod(lead), temperature=self.temperature, generator=generator, output=False)
        return torch.cat([z.flatten(1) for z, _, _ in layers], -1).reshape(*lead, -1)  # (*lead, latent_dim)

    def log_prob(self, value: Tensor) -> Tensor:
        m, lead = self.model, value.shape[:-1]
        flat = value.reshape(-1, m.latent_dim)
        _, layers = m._run(len(flat), codes=m.split(flat), output=False)
        shift = 2 * math.log(self.temperature)
        lp = sum(_normal(p[0], p[1] + shift).log_prob(z).flatten(1).sum(-1) for z, _, p in layers)
        return lp.reshape(lead)                                          # value.shape[:-1]
