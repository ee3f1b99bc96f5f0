"""The likelihood table and the distributions the models return.

Every decoder returns ``Independent(<base>, event_dims)`` so ``log_prob(x)`` is one number per example.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, Laplace, Normal, constraints, register_kl
from torch.nn import functional as F


class FastBernoulli(Bernoulli):
    """Bernoulli(logits=...) whose log_prob goes straight to binary_cross_entropy_with_logits."""

    def log_prob(self, value: Tensor) -> Tensor:
        if value.shape != self.logits.shape:
            return super().log_prob(value)
        return F.binary_cross_entropy_with_logits(self.logits, value, reduction="none").neg_()


class FastIndependent(Independent):
    """Independent whose Bernoulli log_prob sums the cross-entropy before negating (one less pass)."""

    def log_prob(self, value: Tensor) -> Tensor:
        base = self.base_dist
        if type(base) is FastBernoulli and value.shape == base.logits.shape:
            dims = tuple(range(-self.reinterpreted_batch_ndims, 0))
            return F.binary_cross_entropy_with_logits(base.logits, value, reduction="none").sum(dims).neg()
        return super().log_prob(value)


class StandardNormal(Normal):
    """N(0, 1) elementwise (the prior); its KL from a Normal has the short closed form below."""


@register_kl(Normal, StandardNormal)
def _kl_normal_standard(q: Normal, p: StandardNormal) -> Tensor:
    return 0.5 * (q.loc.square() + q.scale.square() - 1) - q.scale.log()


@dataclass(frozen=True)
class Likelihood:
    name: str                                        # table key
    learned_scale: bool                              # True: a per-pixel log sigma is a parameter
    needs_unit_interval: bool                        # True: data must lie in [0, 1]
    build: Callable[[Tensor, Tensor], Distribution]  # (decoder output, log scale) -> base distribution


LIKELIHOODS: dict[str, Likelihood] = {
    "bernoulli": Likelihood("bernoulli", False, True, lambda out, _: FastBernoulli(logits=out, validate_args=False)),
    "gaussian": Likelihood("gaussian", False, False, lambda out, ls: Normal(out, ls.exp(), validate_args=False)),
    "gaussian-learned": Likelihood("gaussian-learned", True, False, lambda out, ls: Normal(out, ls.exp(), validate_args=False)),
    "laplace": Likelihood("laplace", False, False, lambda out, ls: Laplace(out, ls.exp(), validate_args=False)),
}


def get_likelihood(name: str) -> Likelihood:
    if name not in LIKELIHOODS:
        raise ValueError(f"likelihood={name!r} is not known; allowed: {sorted(LIKELIHOODS)}")
    return LIKELIHOODS[name]


def likelihood(name: str, out: Tensor, log_scale: Tensor, event_dims: int) -> Distribution:
    """p(x|z) as an Independent distribution over the last ``event_dims`` dimensions."""
    return FastIndependent(get_likelihood(name).build(out, log_scale), event_dims, validate_args=False)


def diag_gaussian(mu: Tensor, logvar: Tensor) -> Independent:
    """N(mu, diag(exp(logvar))) over the last dimension; rsample is the reparameterization trick."""
    return Independent(Normal(mu, (0.5 * logvar).exp(), validate_args=False), 1, validate_args=False)


def standard_normal(shape: tuple[int, ...], device: torch.device | str = "cpu") -> Independent:
    """The prior N(0, I) with batch shape ``shape[:-1]`` and event size ``shape[-1]``."""
    zeros = torch.zeros(shape, device=device)
    return Independent(StandardNormal(zeros, torch.ones_like(zeros), validate_args=False), 1, validate_args=False)


class PointMass(Distribution):
    """A deterministic 'distribution' (an autoencoder's code): sampling returns the value itself."""

    arg_constraints = {"value": constraints.real}
    has_rsample = True

    def __init__(self, value: Tensor, event_dims: int = 1) -> None:
        self.value = value
        n = value.dim()
        super().__init__(value.shape[: n - event_dims], value.shape[n - event_dims:], validate_args=False)

    @property
    def mean(self) -> Tensor:
        return self.value

    @property
    def variance(self) -> Tensor:
        return torch.zeros_like(self.value)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        return self.value.expand(torch.Size(sample_shape) + self.value.shape)

    def log_prob(self, value: Tensor) -> Tensor:
        hit = (value == self.value).reshape(*value.shape[: value.dim() - len(self.event_shape)], -1).all(-1)
        return torch.where(hit, 0.0, -math.inf)


def kl_per_dim(q: Distribution, p: Distribution) -> Tensor:
    """KL(q || p) per latent dimension, closed form for diagonal Gaussians: (..., d)."""
    base_q = q.base_dist if isinstance(q, Independent) else q
    base_p = p.base_dist if isinstance(p, Independent) else p
    return torch.distributions.kl_divergence(base_q, base_p)


_GLOBAL_RNG = __import__("threading").Lock()


def rsample(d: Distribution, sample_shape: tuple[int, ...] = (), generator: torch.Generator | None = None) -> Tensor:
    """``d.rsample(sample_shape)``, drawing the noise from ``generator`` when one is given.

    Gaussians (plain or ``Independent``) use ``loc + scale * eps`` with eps from the generator, so
    concurrent callers with their own generators never touch torch's global RNG. A point mass needs
    no noise. Any other distribution is sampled from the global RNG seeded by the generator, under a
    lock and inside ``fork_rng`` (the caller's global RNG state is restored)."""
    shape = torch.Size(sample_shape)
    if generator is None:
        return d.rsample(shape)
    base = d.base_dist if isinstance(d, Independent) else d
    if isinstance(base, PointMass):
        return d.rsample(shape)
    if isinstance(base, Normal):
        out = d._extended_shape(shape)
        eps = torch.randn(out, generator=generator, dtype=base.loc.dtype, device=generator.device)
        return base.loc + base.scale * eps.to(base.loc.device)
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
    with _GLOBAL_RNG:
        devices = [base.mean.device] if base.mean.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return d.rsample(shape)


def groups_rate(q: Distribution, p: Distribution, z: Tensor) -> Tensor:
    """log q(z) - log p(z) per latent group: per dimension (..., d) when q and p both factorise over
    the dimensions (``Independent`` over one event dim), else one group (..., 1)."""
    if (isinstance(q, Independent) and isinstance(p, Independent)
            and q.reinterpreted_batch_ndims == 1 and p.reinterpreted_batch_ndims == 1):
        return q.base_dist.log_prob(z) - p.base_dist.log_prob(z)
    return (q.log_prob(z) - p.log_prob(z)).unsqueeze(-1)
