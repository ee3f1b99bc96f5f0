"""The likelihood table and the distributions the models return.

Every decoder returns ``Independent(<base>, event_dims)`` so ``log_prob(x)`` is one number per example.
Each table entry says what that number is (``Scale``): a log-probability over so many levels (discretized
logistics; the Bernoulli on binary data), a log-density (Gaussian, Laplace, continuous Bernoulli; on data
with levels it becomes a bound on a probability by uniform dequantization, see ``vaelab.eval.likelihood``),
or a cross-entropy (the Bernoulli on non-binary data). Pixel likelihoods live in ``pixel_likelihoods``.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, Laplace, Normal, constraints, register_kl
from torch.nn import functional as F

from . import pixel_likelihoods as pixel


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


SCALES = ("discrete", "density", "bernoulli")  # what a table entry's log_prob is (``likelihood_scale``)


@dataclass(frozen=True)
class Likelihood:
    name: str                                        # table key
    learned_scale: bool                              # True: a per-pixel log sigma is a parameter
    needs_unit_interval: bool                        # True: data must lie in [0, 1]
    build: Callable[[Tensor, Tensor], Distribution]  # (decoder output, log scale) -> base distribution
    scale: str = "density"                           # discrete (a pmf) | density | bernoulli (pmf on binary data)
    levels: int | None = None                        # discrete: how many values the pmf sums over
    params: int = 1                                  # decoder outputs per data value (per mixture component)
    mixture: bool = False                            # True: ``params`` per component, times the components
    start: Callable[[Tensor], Tensor] | None = None  # data mean -> the decoder output with that mean (None: no start)

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale={self.scale!r} is not known; allowed: {list(SCALES)}")
        if (self.scale == "discrete") != (self.levels is not None):
            raise ValueError(f"likelihood {self.name!r}: levels={self.levels} must be given exactly when discrete")

    def out_mult(self, components: int = 1) -> int:
        """How many decoder outputs one data value needs (``nn.Decoder(out_mult=...)``)."""
        return self.params * (components if self.mixture else 1)


def _normal(out: Tensor, ls: Tensor) -> Distribution:
    return Normal(out, ls.exp(), validate_args=False)


def _logit_of(mean: Tensor) -> Tensor:
    """Bernoulli logits with the given mean, kept within +-6.9 (a mean of 0 or 1 has none)."""
    return torch.logit(mean.clamp(1e-3, 1 - 1e-3))


def _same(mean: Tensor) -> Tensor:
    return mean


LIKELIHOODS: dict[str, Likelihood] = {
    "bernoulli": Likelihood("bernoulli", False, True, lambda out, _: FastBernoulli(logits=out, validate_args=False),
                            scale="bernoulli", start=_logit_of),
    "continuous-bernoulli": Likelihood("continuous-bernoulli", False, True,
                                       lambda out, _: pixel.continuous_bernoulli(out)),
    "discretized-logistic": Likelihood("discretized-logistic", False, True,
                                       lambda out, _: pixel.discretized_logistic(out), scale="discrete",
                                       levels=pixel.LEVELS, params=2),
    "dmol": Likelihood("dmol", False, True, lambda out, _: pixel.dmol(out), scale="discrete", levels=pixel.LEVELS,
                       params=3, mixture=True),
    "gaussian": Likelihood("gaussian", False, False, _normal, start=_same),
    "gaussian-learned": Likelihood("gaussian-learned", True, False, _normal, start=_same),
    "laplace": Likelihood("laplace", False, False, lambda out, ls: Laplace(out, ls.exp(), validate_args=False),
                          start=_same),
}


def get_likelihood(name: str) -> Likelihood:
    if name not in LIKELIHOODS:
        raise ValueError(f"likelihood={name!r} is not known; allowed: {sorted(LIKELIHOODS)}")
    return LIKELIHOODS[name]


def check_components(components: int) -> None:
    """Boundary check for a model config's ``mixture_components``."""
    if isinstance(components, bool) or not isinstance(components, int) or components < 1:
        raise ValueError(f"mixture_components={components!r} must be an integer >= 1")


def likelihood(name: str, out: Tensor, log_scale: Tensor, event_dims: int, components: int = 1) -> Distribution:
    """p(x|z) as an Independent distribution over the last ``event_dims`` dimensions.

    ``out`` (..., m * C, *rest) with m = ``out_mult(components)``: parameter j of value (c, ...) is channel
    j * C + c (parameter-major), handed to the table's ``build`` as a trailing axis (..., C, *rest, m)."""
    lik = get_likelihood(name)
    m = lik.out_mult(components)
    if m > 1:
        axis = out.dim() - event_dims
        if out.shape[axis] % m:
            raise ValueError(f"likelihood={name!r} needs {m} decoder outputs per value; the decoder gave "
                             f"{out.shape[axis]} channels (build it with out_mult={m})")
        out = out.unflatten(axis, (m, out.shape[axis] // m)).movedim(axis, -1)
    return FastIndependent(lik.build(out, log_scale), event_dims, validate_args=False)


@dataclass(frozen=True)
class Scale:
    """What a likelihood number is: ``discrete`` (log-probability of data with ``levels`` values per
    dimension; bits/dim >= 0 apply), ``density`` (log-density on the data's support: not a probability, can
    be any sign) or ``cross-entropy`` (Bernoulli on non-binary data: no normalised distribution at all)."""
    kind: str                  # discrete | density | cross-entropy
    levels: int | None = None  # discrete: values per dimension (2: binary, 256: 8-bit)
    dequantized: bool = False  # discrete by uniform dequantization of a density (a lower bound on log P)

    @property
    def label(self) -> str:
        """Short human label, e.g. 'discrete, 256 levels (dequantized bound)'."""
        if self.kind != "discrete":
            return self.kind
        return f"discrete, {self.levels} levels" + (" (dequantized bound)" if self.dequantized else "")

    @property
    def key(self) -> str:
        """Runs whose numbers may share a column have the same key: kind and levels."""
        return self.kind if self.kind != "discrete" else f"discrete-{self.levels}"


def grid_levels(x: Tensor, max_levels: int = 256) -> int | None:
    """The number of levels L when every value of x is k / (L - 1) for an integer k in 0..L-1 (the smallest such
    L <= ``max_levels``; 2 for binary data, 256 for 8-bit data, 17 for sklearn's digits), else None."""
    if x.numel() == 0 or float(x.min()) < 0 or float(x.max()) > 1:
        return None
    values = torch.unique(x.detach().reshape(-1).double().cpu())            # (U,)
    for n in range(1, max_levels):
        if bool(((values - (values * n).round() / n).abs() <= 1e-6).all()):  # k / n up to float32 rounding
            return n + 1
    return None


def likelihood_scale(name: str, data_levels: int | None, dequantize: bool | None = None) -> Scale:
    """The scale of log p(x) under likelihood ``name`` on data with ``data_levels`` values per dimension
    (``grid_levels``; None: continuous data). See ``Scale``.

    ``dequantize``: for a density likelihood, True turns it into a bound on the discrete probability by
    uniform dequantization (the data must have levels), False keeps the density, None (auto) dequantizes
    whenever the data have levels. Discrete likelihoods and the Bernoulli ignore it."""
    lik = get_likelihood(name)
    if lik.scale == "discrete":
        return Scale("discrete", lik.levels)
    if lik.scale == "bernoulli":
        return Scale("discrete", 2) if data_levels == 2 else Scale("cross-entropy")
    if dequantize and data_levels is None:
        raise ValueError(f"dequantize=True needs data whose values are k / (L - 1) for integers k (L <= 256 "
                         f"levels); these data are continuous (likelihood={name!r})")
    if dequantize is False or data_levels is None:
        return Scale("density")
    return Scale("discrete", data_levels, dequantized=True)


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


class LayeredPrior(Distribution):
    """The prior of a model with layers of latents, over its flat code: batch shape (n,), event
    (model.latent_dim,); ``temperature`` scales every layer's std. Subclasses walk the model's layers in
    ``rsample`` and ``log_prob`` (HierarchicalPrior here; models/tdvae.py's TopDownPrior)."""

    arg_constraints: dict = {}
    has_rsample = True

    def __init__(self, model: Any, n: int, temperature: float = 1.0) -> None:
        self.model, self.temperature = model, float(temperature)
        super().__init__(torch.Size((n,)), torch.Size((model.latent_dim,)), validate_args=False)


class HierarchicalPrior(LayeredPrior):
    """p(z_T) prod_i p(z_i|z_{i+1}) over [z1, ..., z_T]. ``model`` gives ``latent_dims``, ``device``,
    ``top_prior(n, temperature)`` and ``p_layer(i, z_above) -> (mu, logvar)`` (models/hvae.py)."""

    def rsample(self, sample_shape: torch.Size = torch.Size(), generator: torch.Generator | None = None) -> Tensor:
        m, t = self.model, self.temperature

        def randn(*shape: int) -> Tensor:  # from ``generator`` when given (on its device), else the global RNG
            if generator is None:
                return torch.randn(*shape, device=m.device)
            return torch.randn(*shape, generator=generator, device=generator.device).to(m.device)

        zs = [rsample(m.top_prior(self.batch_shape[0], t), tuple(sample_shape), generator)]  # z_T (*lead, d_T)
        for i in reversed(range(len(m.latent_dims) - 1)):
            mu, logvar = m.p_layer(i, zs[0])
            zs.insert(0, mu + t * (0.5 * logvar).exp() * randn(*mu.shape))
        return torch.cat(zs, -1)                                       # (*lead, latent_dim)

    def log_prob(self, value: Tensor) -> Tensor:
        m, t = self.model, self.temperature
        zs = value.split(list(m.latent_dims), -1)
        top = zs[-1]
        lp = m.top_prior(1, t).log_prob(top).reshape(top.shape[:-1])  # batch (1,) broadcasts over value's rows
        for i in range(len(zs) - 1):
            mu, logvar = m.p_layer(i, zs[i + 1])
            lp = lp + diag_gaussian(mu, logvar + 2 * math.log(t)).log_prob(zs[i])
        return lp                                                      # value.shape[:-1]
