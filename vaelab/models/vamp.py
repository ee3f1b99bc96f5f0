"""The VAE with a VampPrior (Tomczak & Welling 2018): p(z) = (1/K) sum_k q(z | u_k).

The prior is the encoder's own posterior averaged over K learned pseudo-inputs u_k, which live in data
space: a parameter tensor (K, *input_shape) passed through hardtanh(0, 1) when the likelihood needs data
in [0, 1] (as in the authors' code), used as is otherwise. Initialised N(0.05, 0.01^2) per value (the
authors' init scale, inside hardtanh's linear range so every pseudo-input gets gradients). Encoder,
decoder and likelihood are the VAE's.

KL(q(z|x) || p(z)) has no closed form (p is a mixture): ``elbo_parts`` and ``log_weight_parts`` use the
sampled rate log q(z|x) - log p(z) (one latent group; the base class does this when
``closed_form_kl`` is False). The mixture is re-built from the pseudo-inputs at every ``prior()`` call,
so it always matches the current encoder (costs K encoder rows per call).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

from ..distributions import get_likelihood
from .base import Capabilities, register
from .vae import VAEConfig, VariationalAE

LOG_2PI = math.log(2 * math.pi)


def check_n_pseudo(n_pseudo: object) -> None:
    """The pseudo-input count every VampPrior config accepts: an integer in 1..65536."""
    if isinstance(n_pseudo, bool) or not isinstance(n_pseudo, int) or not 1 <= n_pseudo <= 65536:
        raise ValueError(f"n_pseudo={n_pseudo!r} must be an integer in 1..65536")


class PseudoInputs:
    """Mixed in before a model class whose config has ``n_pseudo``, ``input_shape`` and ``likelihood``: the K
    learned pseudo-inputs u_k of a VampPrior (``pseudo``, (K, *input_shape)), shared by vamp and hvae-vamp."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.unit_interval = get_likelihood(config.likelihood).needs_unit_interval
        # initialised N(0.05, 0.01^2) per value: inside hardtanh's linear range, so every one gets gradients
        self.pseudo = nn.Parameter(torch.randn(config.n_pseudo, *config.input_shape) * 0.01 + 0.05)  # (K, *shape)

    def pseudo_inputs(self) -> Tensor:
        """The K pseudo-inputs u_k in data space (hardtanh(0, 1) when the likelihood needs [0, 1] data, else
        as they are): (K, *input_shape)."""
        return nn.functional.hardtanh(self.pseudo, 0.0, 1.0) if self.unit_interval else self.pseudo


@dataclass(frozen=True)
class VampConfig(VAEConfig):
    n_pseudo: int = 500               # K, the number of learned pseudo-inputs (mixture components of p(z))

    def __post_init__(self) -> None:
        super().__post_init__()
        check_n_pseudo(self.n_pseudo)
        if self.n_classes != 0:
            raise ValueError(f"n_classes={self.n_classes}: vamp is unconditional (its prior encodes unlabelled "
                             "pseudo-inputs); allowed: 0")


class VampMixture(Distribution):
    """Equal-weight mixture of K diagonal Gaussians N(mu_k, diag(exp(logvar_k))), the same for every row.

    batch shape (n,), event shape (d,). ``rsample`` picks a component uniformly, then reparameterizes
    inside it (differentiable in the components' parameters, not in the choice)."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, mu: Tensor, logvar: Tensor, n: int) -> None:
        self.mu, self.logvar = mu, logvar                          # (K, d) each
        super().__init__(torch.Size((n,)), mu.shape[-1:], validate_args=False)

    @property
    def mean(self) -> Tensor:
        return self.mu.mean(0).expand(*self.batch_shape, -1)       # (n, d)

    @property
    def variance(self) -> Tensor:
        second = (self.logvar.exp() + self.mu.square()).mean(0)     # E[z^2] per dimension
        return (second - self.mu.mean(0).square()).expand(*self.batch_shape, -1)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)                 # (*sample_shape, n, d)
        k = torch.randint(len(self.mu), shape[:-1], device=self.mu.device)
        eps = torch.randn(shape, device=self.mu.device, dtype=self.mu.dtype)
        return self.mu[k] + (0.5 * self.logvar[k]).exp() * eps

    def component_log_prob(self, value: Tensor) -> Tensor:
        """log N(value; mu_k, diag(exp(logvar_k))) for every component: (..., K) for value (..., d).

        sum_j (z_j - mu_kj)^2 / v_kj expanded into matrix products (no (..., K, d) tensor, so scoring
        1000 samples x 500 components stays cheap), in float64 (MPS has none: its own dtype there) because
        the expansion cancels large terms: float32 loses ~0.01 nats for narrow components far from 0."""
        work = value.dtype if value.device.type == "mps" else torch.float64
        z, mu, logvar = value.to(work), self.mu.to(work), self.logvar.to(work)
        prec = (-logvar).exp()                                     # (K, d) 1 / v
        quad = z.square() @ prec.T - 2 * z @ (mu * prec).T + (mu.square() * prec).sum(-1)  # (..., K)
        return (-0.5 * (quad.clamp_min(0) + (logvar + LOG_2PI).sum(-1))).to(value.dtype)

    def log_prob(self, value: Tensor) -> Tensor:
        """log (1/K) sum_k N(value; mu_k, ...): value (..., d) -> (...)."""
        return torch.logsumexp(self.component_log_prob(value), -1) - math.log(len(self.mu))


@register("vamp", VampConfig)
class VampVAE(PseudoInputs, VariationalAE):
    """The VAE with p(z) = mean_k q(z | u_k) over learned pseudo-inputs u_k."""

    capabilities = Capabilities(standard_prior=False, closed_form_kl=False)  # Gaussian q, mixture p, MC rate

    def pseudo_posteriors(self) -> Distribution:
        """q(z | u_k) for every pseudo-input: a diagonal Gaussian with batch shape (K,)."""
        return self.encode(self.pseudo_inputs())

    def prior(self, n: int) -> VampMixture:
        q = self.pseudo_posteriors()
        return VampMixture(q.base_dist.loc, 2 * q.base_dist.scale.log(), n)
