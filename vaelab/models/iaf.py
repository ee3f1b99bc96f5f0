"""The VAE with an inverse autoregressive flow posterior (Kingma et al. 2016), unconditional or conditional.

q(z|x): the encoder gives mu, log sigma^2 and a context h; z_0 = mu + sigma * eps, eps ~ N(0, I), then T
steps z_t = s_t * z_{t-1} + (1 - s_t) * m_t with [m_t, logit s_t] = MADE_t(z_{t-1}, h) autoregressive in
z_{t-1} (output i sees z_{<i} only; the order is reversed every other step) and s_t = sigmoid(. + 2)
(the paper's numerically stable gated update; each step starts near the identity). The Jacobian of a step
is triangular with diagonal s_t, so by the change of variables

    log q(z_T|x) = log N(eps; 0, I) - sum log sigma - sum_t sum_i log s_t,i.

Prior N(0, I) and decoder as the VAE's; the rate log q(z|x) - log p(z) is sampled (one latent group).
``encode`` returns :class:`IAFPosterior`: ``rsample`` runs the flow, ``log_prob`` inverts it (d MADE
passes per step), ``mean`` is the flow's image of the base mean (eps = 0), the code used for plots and
reconstructions (not E[z|x], which has no closed form). ``elbo_parts`` / ``log_weight_parts`` get
log q from the forward pass, without inverting.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

from ..distributions import standard_normal
from ..nn import Encoder, activation
from .base import Capabilities, register
from .vae import VAEConfig, VariationalAE

LOG_2PI = math.log(2 * math.pi)
GATE_BIAS = 2.0  # added to logit s: sigmoid(2) = 0.88, so an untrained step is near the identity


def _int_in(v: object, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


@dataclass(frozen=True)
class IAFConfig(VAEConfig):
    n_flows: int = 2                  # T, the number of IAF steps after the diagonal Gaussian
    flow_hidden: tuple[int, ...] = (200,)  # hidden sizes of each step's MADE
    context_dim: int = 50             # size of the context h the encoder adds for the flow (0: none)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _int_in(self.n_flows, 0, 64):
            raise ValueError(f"n_flows={self.n_flows!r} must be an integer in 0..64")
        if not self.flow_hidden or not all(_int_in(h, 1, 65536) for h in self.flow_hidden):
            raise ValueError(f"flow_hidden={self.flow_hidden!r} must list one or more integer sizes in 1..65536")
        if not _int_in(self.context_dim, 0, 65536):
            raise ValueError(f"context_dim={self.context_dim!r} must be an integer in 0..65536")


@dataclass(frozen=True)
class IAFCVAEConfig(IAFConfig):
    n_classes: int = 2                # number of label classes (>= 2; taken from the data)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_classes < 2:
            raise ValueError(f"iaf-cvae needs n_classes >= 2 (the number of label classes); got {self.n_classes}")


class MaskedLinear(nn.Linear):
    """A Linear layer whose weight is multiplied by a fixed 0/1 mask (out, in)."""

    def __init__(self, n_in: int, n_out: int, mask: Tensor) -> None:
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask.float(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """[m, logit s] (..., d) each from z (..., d) and a context h (..., c), autoregressive in z.

    Inputs have degrees 1..d (d..1 when ``reverse``); hidden unit degrees cycle over 0..d-1 (degree 0 sees
    only h); a unit sees inputs of degree <= its own and all of h; output i (degree i) sees hidden units of
    degree < i."""

    def __init__(self, d: int, context: int, hidden: tuple[int, ...], act: str, reverse: bool) -> None:
        super().__init__()
        deg_in = torch.arange(d, 0, -1) if reverse else torch.arange(1, d + 1)     # (d,)
        degs = [torch.arange(h) % d for h in hidden]                              # hidden degrees
        see_z = degs[0][:, None] >= deg_in[None, :]                               # (H, d)
        self.inp = MaskedLinear(d + context, hidden[0], torch.cat([see_z, see_z.new_ones(hidden[0], context)], 1))
        self.body = nn.ModuleList(MaskedLinear(a.numel(), b.numel(), b[:, None] >= a[None, :])
                                  for a, b in zip(degs[:-1], degs[1:]))
        out_mask = (deg_in[:, None] > degs[-1][None, :]).repeat(2, 1)             # (2d, H)
        self.out = MaskedLinear(hidden[-1], 2 * d, out_mask)
        self.act = activation(act)

    def forward(self, z: Tensor, h: Tensor | None) -> tuple[Tensor, Tensor]:
        a = self.act(self.inp(z if h is None else torch.cat([z, h], -1)))     # every unit sees h
        for layer in self.body:
            a = self.act(layer(a))
        m, s = self.out(a).chunk(2, -1)
        return m, s + GATE_BIAS


class IAFPosterior(Distribution):
    """q(z|x) = the IAF steps applied to N(mu, diag(exp(logvar))); batch shape (B,), event shape (d,)."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, mu: Tensor, logvar: Tensor, h: Tensor | None, steps: nn.ModuleList) -> None:
        self.mu, self.logvar, self.h, self.steps = mu, logvar, h, steps      # (B, d), (B, d), (B, c)
        super().__init__(mu.shape[:-1], mu.shape[-1:], validate_args=False)

    def flow(self, eps: Tensor) -> tuple[Tensor, Tensor]:
        """z_T (..., B, d) and log q(z_T|x) (..., B) from base noise eps (..., B, d)."""
        z = self.mu + (0.5 * self.logvar).exp() * eps
        log_q = -0.5 * (eps.square() + LOG_2PI + self.logvar).sum(-1)
        h = None if self.h is None else self.h.expand(*eps.shape[:-1], -1)
        for step in self.steps:
            m, s = step(z, h)
            gate = torch.sigmoid(s)
            z = gate * z + (1 - gate) * m
            log_q = log_q + nn.functional.softplus(-s).sum(-1)      # -log sigmoid(s), stable
        return z, log_q

    def rsample_with_log_prob(self, sample_shape: torch.Size = torch.Size(),
                              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        shape = self._extended_shape(sample_shape)
        gen_device = self.mu.device if generator is None else generator.device
        eps = torch.randn(shape, generator=generator, device=gen_device, dtype=self.mu.dtype).to(self.mu.device)
        return self.flow(eps)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        return self.rsample_with_log_prob(sample_shape)[0]

    @property
    def mean(self) -> Tensor:
        """The flow's image of the base mean (eps = 0): a deterministic centre of q, not E[z|x]."""
        return self.flow(torch.zeros_like(self.mu))[0]

    def log_prob(self, value: Tensor) -> Tensor:
        """Invert the steps (each one dimension at a time, in its autoregressive order), then score eps."""
        h = None if self.h is None else self.h.expand(*value.shape[:-1], -1)
        z, log_det = value, value.new_zeros(value.shape[:-1])
        for step in reversed(self.steps):
            prev = torch.zeros_like(z)
            for _ in range(z.shape[-1]):  # after pass j, the first j dimensions in the step's order are exact
                m, s = step(prev, h)
                gate = torch.sigmoid(s)
                prev = (z - (1 - gate) * m) / gate
            log_det = log_det + nn.functional.softplus(-s).sum(-1)
            z = prev
        eps = (z - self.mu) * (-0.5 * self.logvar).exp()
        return -0.5 * (eps.square() + LOG_2PI + self.logvar).sum(-1) + log_det


@register("iaf", IAFConfig)
class IAFVAE(VariationalAE):
    """The VAE whose q(z|x) is a diagonal Gaussian followed by T inverse autoregressive flow steps."""

    capabilities = Capabilities(gaussian_posterior=False, closed_form_kl=False)  # N(0, I) prior, flow q

    def __init__(self, config: IAFConfig) -> None:
        super().__init__(config)
        c = config
        # the VAE's encoder (same arguments as VariationalAE's: test_iaf_without_flow_steps_is_the_vae checks
        # that the weights map 1:1 for every arch), widened by the context h
        self.encoder = Encoder(c.input_shape, c.hidden, 2 * c.latent_dim + c.context_dim, c.arch, c.activation,
                               c.n_classes, resnet=c.resnet)
        self.steps = nn.ModuleList(MADE(c.latent_dim, c.context_dim, c.flow_hidden, c.activation, t % 2 == 1)
                                   for t in range(c.n_flows))

    def encode(self, x: Tensor, y: Tensor | None = None) -> IAFPosterior:
        out = self.encoder(x, self.condition(y, len(x)))           # (B, 2d + c)
        d = self.latent_dim
        mu, logvar, h = out[:, :d], out[:, d:2 * d], out[:, 2 * d:]
        return IAFPosterior(mu, logvar, h if self.config.context_dim else None, self.steps)

    def _sample_rate(self, x: Tensor, y: Tensor | None, k: tuple[int, ...],
                     generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """z (*k, B, d) ~ q(z|x) and the rate log q(z|x) - log p(z) (*k, B, 1)."""
        z, log_q = self.encode(x, y).rsample_with_log_prob(torch.Size(k), generator)
        log_p = standard_normal(z.shape, z.device).log_prob(z)
        return z, (log_q - log_p).unsqueeze(-1)

    def elbo_parts(self, x: Tensor, y: Tensor | None = None,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """One-sample log p(x|z) (B,) and the sampled rate log q(z|x) - log p(z) (B, 1)."""
        z, rate = self._sample_rate(x, y, (), generator)
        return self.decode(z, y).log_prob(x), rate

    def log_weight_parts(self, x: Tensor, y: Tensor | None = None, k: int = 1,
                         generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """For k samples z ~ q(z|x): log p(x|z) (k, B) and the rate (k, B, 1)."""
        z, rate = self._sample_rate(x, y, (k,), generator)
        yk = None if y is None else y.expand(k, *y.shape).reshape(-1)
        px = self.decode(z.reshape(-1, z.shape[-1]), yk)
        recon = px.log_prob(x.expand(k, *x.shape).reshape(-1, *x.shape[1:])).reshape(k, -1)  # (k, B)
        return recon, rate


@register("iaf-cvae", IAFCVAEConfig)
class ConditionalIAFVAE(IAFVAE):
    """The conditional VAE (q(z|x, y), p(x|z, y)) with the IAF posterior: ``sample(n, y=k)``."""

    capabilities = Capabilities(gaussian_posterior=False, closed_form_kl=False, needs_labels=True)
