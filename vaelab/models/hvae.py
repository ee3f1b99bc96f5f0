"""A hierarchical VAE with T Gaussian stochastic layers (Burda et al. 2015; LVAE, Sonderby et al. 2016).

Generative chain p(x|z1) p(z1|z2) ... p(z_{T-1}|z_T) p(z_T), p(z_T) = N(0, I); every conditional is a
diagonal Gaussian from an MLP, p(x|z1) comes from the likelihood table like the VAE's. ``arch`` conv /
resnet puts conv stages (vaelab/resnet.py) between x and z1's MLP, in p(x|z1) and in inference's first
step, as in the VAE; the latents stay vectors (no spatial latent maps as in NVAE / VDVAE).

Inference (config ``inference``):
- ``top-down`` (default; ladder style as in LVAE/NVAE): a deterministic bottom-up pass d_1 ... d_T over x,
  then z_T ~ q(z_T|d_T) and, going down, q(z_i|z_{i+1}, x) = the precision-weighted product of the
  bottom-up estimate N(mu_hat_i(d_i), var_hat_i) and the generator's own p(z_i|z_{i+1}) (LVAE eq. 17).
  The KL of every layer is in closed form given the sampled layer above: KL(q(z_i|.) || p(z_i|z_{i+1})).
- ``bottom-up`` (as in the lecture and Burda et al.): q(z1|x) q(z2|z1) ... q(z_T|z_{T-1}). The top
  layer's KL vs N(0, I) is in closed form; a lower layer's "KL" is the single-sample estimate
  log q(z_i|z_{i-1}) - log p(z_i|z_{i+1}) (no closed form exists: z_{i+1} is drawn from z_i), which can
  be negative for one example; the layers still sum to a single-sample estimate of the total KL.

z as one vector: ``latent_dim`` is sum(latent_dims) and every code is the concatenation [z1, ..., z_T]
(bottom first). ``encode`` returns a diagonal Gaussian over it built along the chain of posterior means
(a mean-field summary for plots, transform and active units; the objectives use ``elbo_parts`` /
``log_weight_parts``, which sample the real chain). ``decode`` reads z1 from the concatenation.
``prior(n)`` is the whole chain over the concatenation (ancestral ``sample``, chain ``log_prob``);
``top_prior(n)`` is p(z_T) = N(0, I) here; a subclass may replace it (hvae_vamp.py: a VampPrior), and a top
prior that is no diagonal Gaussian gets the sampled rate log q(z_T|.) - log p(z_T) as its layer's KL.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent

from ..distributions import (HierarchicalPrior, check_components, diag_gaussian, get_likelihood, kl_per_dim,
                             likelihood, rsample, standard_normal)
from ..nn import Decoder, Encoder, activation, check_body, mlp, resnet_channels
from ..resnet import ResNetSpec
from .base import Capabilities, LatentModel, check_sample_args, check_shape, register

INFERENCE = ("top-down", "bottom-up")
LOGVAR_LIMIT = 30.0  # |log variance| of every layer's Gaussian at most this (std e^15)


@dataclass(frozen=True)
class HVAEConfig:
    input_shape: tuple[int, ...]                 # shape of one example, e.g. (1, 28, 28)
    latent_dims: tuple[int, ...] = (16, 8)       # size of each stochastic layer, bottom (z1) first
    hidden: tuple[tuple[int, ...], ...] = ((256,),)  # MLP sizes per stochastic layer (one entry: shared)
    arch: str = "mlp"                            # x <-> z1 body: mlp | conv | resnet (then an MLP head of hidden)
    channels: tuple[int, ...] = ()               # resnet: width per stage, full resolution first; empty = by size
    blocks: tuple[int, ...] = (1,)               # resnet: residual blocks per stage (one entry: every stage)
    norm: str = "group"                          # resnet: group | batch | none (batch: outputs depend on the batch)
    activation: str = "relu"                     # relu | tanh | elu | gelu | silu
    likelihood: str = "bernoulli"                # p(x|z1), a key of distributions.LIKELIHOODS
    sigma: float = 0.1                           # decoder scale for gaussian/laplace
    mixture_components: int = 5                  # dmol: logistic components per value (other likelihoods: unused)
    inference: str = "top-down"                  # top-down (ladder) | bottom-up (Markov chain)
    n_classes: int = 0                           # must be 0: the hvae is unconditional

    def __post_init__(self) -> None:
        # A flat tuple of sizes (the CLI's --hidden 200,200) is one spec shared by every layer.
        hidden = self.hidden
        if all(isinstance(v, int) for v in hidden):
            hidden = (tuple(hidden),)
        object.__setattr__(self, "hidden", tuple(tuple(int(v) for v in spec) for spec in hidden))
        object.__setattr__(self, "latent_dims", tuple(int(d) for d in self.latent_dims))
        object.__setattr__(self, "channels", resnet_channels(self.input_shape, self.arch, self.channels))
        _check(self)

    @property
    def resnet(self) -> ResNetSpec | None:
        """The resnet body's fields when arch is 'resnet' (else None)."""
        return ResNetSpec(self.channels, self.blocks, self.norm) if self.arch == "resnet" else None

    @property
    def latent_dim(self) -> int:
        """Size of the concatenated code [z1, ..., z_T]."""
        return sum(self.latent_dims)

    def layer_hidden(self, i: int) -> tuple[int, ...]:
        """Hidden sizes between stochastic layer i (0 = z1) and the layer below it (x for i = 0)."""
        return self.hidden[0] if len(self.hidden) == 1 else self.hidden[i]


def _check(c: HVAEConfig) -> None:
    """Every check of the config (run by ``__post_init__``)."""
    if not c.latent_dims or any(d < 1 for d in c.latent_dims):
        raise ValueError(f"latent_dims={c.latent_dims} must list one size >= 1 per stochastic layer, "
                         "bottom first, e.g. (64, 32)")
    if len(c.hidden) not in (1, len(c.latent_dims)):
        raise ValueError(f"hidden={c.hidden} has {len(c.hidden)} entries; allowed: 1 (shared) or one per "
                         f"stochastic layer ({len(c.latent_dims)} for latent_dims={c.latent_dims})")
    if any(h < 1 for spec in c.hidden for h in spec):
        raise ValueError(f"hidden={c.hidden} sizes must be >= 1")
    if c.inference not in INFERENCE:
        raise ValueError(f"inference={c.inference!r} is not known; allowed: {list(INFERENCE)}")
    if c.inference == "top-down" and any(not spec for spec in c.hidden):
        raise ValueError(f"inference='top-down' needs at least one hidden layer per stochastic layer "
                         f"(its deterministic bottom-up path); got hidden={c.hidden}")
    if c.n_classes != 0:
        raise ValueError(f"n_classes={c.n_classes}: the hvae is unconditional; allowed: 0 (use model 'cvae' "
                         "for a conditional VAE)")
    if c.sigma <= 0:
        raise ValueError(f"sigma={c.sigma} must be > 0")
    get_likelihood(c.likelihood)
    check_components(c.mixture_components)
    activation(c.activation)
    check_shape(c.input_shape, c.latent_dim)
    check_body(c.input_shape, (), c.arch, c.activation, c.resnet)


def _image_up(c: HVAEConfig, hidden: tuple[int, ...]) -> nn.Module:
    """Top-down inference's first step x (B, C, H, W) -> d_1 (B, hidden[-1]) for arch conv / resnet: the
    conv stages, an MLP head, the activation (as the MLP path ends)."""
    return nn.Sequential(Encoder(c.input_shape, hidden[:-1], hidden[-1], c.arch, c.activation, resnet=c.resnet),
                         activation(c.activation))


def _gaussian(h: Tensor) -> tuple[Tensor, Tensor]:
    """(mu, logvar) from a network output; logvar within +-LOGVAR_LIMIT so a layer's KL stays finite in float32
    (on unscaled data, e.g. values near 100, an untrained net's exp(logvar) overflows and KL = inf - inf)."""
    mu, logvar = h.chunk(2, dim=-1)
    return mu, logvar.clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT)


@register("hvae", HVAEConfig)
class HierarchicalVAE(LatentModel):
    # its own prior (the generative chain); encode() is a mean-field summary, not the q that is sampled;
    # the KL of a layer is closed form only given a sampled layer above, so the total is an estimate
    capabilities = Capabilities(standard_prior=False, gaussian_posterior=False, closed_form_kl=False)

    def __init__(self, config: HVAEConfig) -> None:
        super().__init__(config)
        c, dims, act = config, config.latent_dims, config.activation
        hid = [c.layer_hidden(i) for i in range(len(dims))]
        # generator: p(x|z1) and p(z_i|z_{i+1}) for i = 1..T-1 (p_nets[i] maps z_{i+1} -> (mu, logvar) of z_i)
        self.decoder = Decoder(c.input_shape, hid[0], dims[0], c.arch, act, resnet=c.resnet,
                               out_mult=get_likelihood(c.likelihood).out_mult(c.mixture_components))
        self.p_nets = nn.ModuleList(mlp([dims[i + 1], *reversed(hid[i + 1]), 2 * dims[i]], act)
                                    for i in range(len(dims) - 1))
        if c.inference == "bottom-up":  # q(z1|x) (named like the VAE's, so T=1 weights map 1:1) and q(z_{i+1}|z_i)
            self.encoder = Encoder(c.input_shape, hid[0], 2 * dims[0], c.arch, act, resnet=c.resnet)
            self.q_nets = nn.ModuleList(mlp([dims[i], *hid[i + 1], 2 * dims[i + 1]], act)
                                        for i in range(len(dims) - 1))
        else:  # deterministic bottom-up path d_i and the heads giving (mu_hat_i, logvar_hat_i)
            widths = [math.prod(c.input_shape)] + [h[-1] for h in hid]
            self.up = nn.ModuleList(mlp([widths[i], *hid[i]], act, final_act=True) if i or c.arch == "mlp"
                                    else _image_up(c, hid[0]) for i in range(len(dims)))
            self.q_heads = nn.ModuleList(nn.Linear(hid[i][-1], 2 * dims[i]) for i in range(len(dims)))
        log_sigma = torch.full(c.input_shape, math.log(c.sigma))
        if get_likelihood(c.likelihood).learned_scale:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", torch.tensor(math.log(c.sigma)))

    @property
    def latent_dims(self) -> tuple[int, ...]:
        return self.config.latent_dims

    # -- generator pieces -----------------------------------------------------------------------------
    def p_layer(self, i: int, z_above: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar) of p(z_i | z_{i+1}) for layer i (0-based, i < T-1): (..., d_i) each."""
        return _gaussian(self.p_nets[i](z_above))

    def top_prior(self, n: int, temperature: float = 1.0) -> Distribution:
        """p(z_T) = N(0, I), batch shape (n,); ``temperature`` scales its std."""
        p = standard_normal((n, self.latent_dims[-1]), self.device)
        return p if temperature == 1.0 else diag_gaussian(p.mean, torch.full_like(p.mean, 2 * math.log(temperature)))

    def prior(self, n: int, temperature: float = 1.0) -> Distribution:
        """The whole generative chain over [z1, ..., z_T], batch shape (n,), event (latent_dim,)."""
        return HierarchicalPrior(self, n, temperature)

    def output_decoder(self) -> nn.Module:
        return self.decoder

    def decode(self, z: Tensor, y: Tensor | None = None) -> Distribution:
        """p(x|z1) from the concatenated code z (..., latent_dim)."""
        if z.shape[-1] != self.latent_dim:
            raise ValueError(f"z has size {z.shape[-1]}; hvae decodes the concatenation [z1, ..., z_T] of size "
                             f"{self.latent_dim} (latent_dims={self.latent_dims})")
        return self._px(z[..., : self.latent_dims[0]])

    def _px(self, z1: Tensor) -> Distribution:
        """p(x|z1) from the bottom layer alone (..., d_1): event shape input_shape."""
        out = self.decoder(z1)                                      # (..., out_mult * C, *rest)
        return likelihood(self.config.likelihood, out, self.log_sigma, len(self.input_shape),
                          self.config.mixture_components)

    # -- inference ------------------------------------------------------------------------------------
    def _bottom_up(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Top-down inference's deterministic pass: (mu_hat_i, logvar_hat_i) per layer, (B, d_i) each."""
        h, out = (x.flatten(1) if self.config.arch == "mlp" else x), []
        for up, head in zip(self.up, self.q_heads):
            h = up(h)
            out.append(_gaussian(head(h)))
        return out

    @staticmethod
    def _combine(hat: tuple[Tensor, Tensor], prior: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """LVAE precision weighting: N(mu_hat, v_hat) * N(mu_p, v_p), normalised."""
        (mu_h, lv_h), (mu_p, lv_p) = hat, prior
        w = torch.sigmoid(lv_p - lv_h)                  # = (1/v_hat) / (1/v_hat + 1/v_p)
        return w * mu_h + (1 - w) * mu_p, -torch.logaddexp(-lv_h, -lv_p)

    def _chain(self, x: Tensor, k: int, gen: torch.Generator | None = None) -> list[tuple[Tensor, Independent, Independent]]:
        """Sample the posterior chain k times: per layer (bottom first) (z_i (k, B, d_i), q_i, p_i).

        q_i / p_i are the conditional Gaussians the sample was drawn from / is scored under
        (p_T = N(0, I)); their batch shapes broadcast against (k, B)."""
        T = len(self.latent_dims)
        if self.config.inference == "bottom-up":
            q = diag_gaussian(*_gaussian(self.encoder(x)))  # batch (B,)
            zs, qs = [rsample(q, (k,), gen)], [q]                 # (k, B, d_1)
            for net in self.q_nets:
                q = diag_gaussian(*_gaussian(net(zs[-1])))  # batch (k, B)
                zs.append(rsample(q, (), gen))
                qs.append(q)
            ps = [diag_gaussian(*self.p_layer(i, zs[i + 1])) for i in range(T - 1)]
        else:
            hats = self._bottom_up(x)
            q = diag_gaussian(*hats[-1])
            zs, qs, ps = [rsample(q, (k,), gen)], [q], []
            for i in reversed(range(T - 1)):
                p_params = self.p_layer(i, zs[0])             # (k, B, d_i) each
                q = diag_gaussian(*self._combine(hats[i], p_params))
                zs.insert(0, rsample(q, (), gen))
                qs.insert(0, q)
                ps.insert(0, diag_gaussian(*p_params))
        ps.append(self.top_prior(x.shape[0]))
        return list(zip(zs, qs, ps))

    def encode(self, x: Tensor, y: Tensor | None = None) -> Distribution:
        """Mean-field summary of q over [z1, ..., z_T]: every layer's Gaussian along the chain of means."""
        self.condition(y, len(x))
        T = len(self.latent_dims)
        if self.config.inference == "bottom-up":
            layers = [_gaussian(self.encoder(x))]
            for net in self.q_nets:
                layers.append(_gaussian(net(layers[-1][0])))
        else:
            hats = self._bottom_up(x)
            layers = [hats[-1]]
            for i in reversed(range(T - 1)):
                layers.insert(0, self._combine(hats[i], self.p_layer(i, layers[0][0])))
        mu = torch.cat([m for m, _ in layers], -1)          # (B, latent_dim)
        logvar = torch.cat([lv for _, lv in layers], -1)
        return diag_gaussian(mu, logvar)

    # -- objectives' inputs ---------------------------------------------------------------------------
    def elbo_parts(self, x: Tensor, y: Tensor | None = None,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """One-sample log p(x|z1) (B,) and the KL of each layer (B, T), bottom first.

        top-down: every layer in closed form given the sampled layer above. bottom-up: the top layer in
        closed form (vs N(0, I)), lower layers single-sample log q(z_i|z_{i-1}) - log p(z_i|z_{i+1}).
        A top prior that is not a diagonal Gaussian (a mixture) gets the single-sample rate too."""
        x = self.check_input(x)
        self.condition(y, len(x))
        chain = self._chain(x, 1, generator)
        recon = self._px(chain[0][0]).log_prob(x)[0]                 # (B,)
        kls = []
        for i, (z, q, p) in enumerate(chain):
            closed = isinstance(p, Independent) and (self.config.inference == "top-down" or i == len(chain) - 1)
            kl = kl_per_dim(q, p).sum(-1) if closed else q.log_prob(z) - p.log_prob(z)
            kls.append(kl.expand(1, x.shape[0])[0])                 # (B,)
        return recon, torch.stack(kls, -1)                          # (B,), (B, T)

    def log_weight_parts(self, x: Tensor, y: Tensor | None = None, k: int = 1,
                         generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """For k posterior samples: log p(x|z1) (k, B) and log q(z_i|.) - log p(z_i|.) per layer (k, B, T)."""
        x = self.check_input(x)
        self.condition(y, len(x))
        chain = self._chain(x, k, generator)
        recon = self._px(chain[0][0]).log_prob(x)                    # (k, B)
        rate = torch.stack([q.log_prob(z) - p.log_prob(z) for z, q, p in chain], -1)  # (k, B, T)
        return recon, rate

    # -- generation -----------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, y: Tensor | int | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Ancestral top-down samples, every layer's std scaled by ``temperature``: (n, *input_shape)."""
        check_sample_args(n, temperature)
        z = self.prior(n, temperature).rsample(generator=generator)  # (n, latent_dim)
        return self.decode(z).mean
