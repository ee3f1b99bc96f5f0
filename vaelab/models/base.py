"""The model registry and the contract every latent-variable model follows.

A model is one file: a frozen config dataclass (its constructor arguments; one comment per field, every
check in ``__post_init__``), a ``LatentModel`` subclass registered with ``@register(name, Config)``
and a ``Capabilities`` value saying what it has. ``encode`` / ``decode`` / ``prior`` return
``torch.distributions``; objectives, evaluation, plots, the web page and the estimators ask
``model.capabilities``, never ``hasattr`` or which methods were overridden.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..config import from_dict, unknown_name
from ..distributions import get_likelihood, groups_rate, kl_per_dim, rsample, standard_normal

REGISTRY: dict[str, type["LatentModel"]] = {}
MAX_VALUES = 1 << 26  # values per example (64M: a 4096x4096 RGB image); a bigger config.json is refused, not allocated
DATA_FIELDS = frozenset({"input_shape", "n_classes"})  # config fields the data sets: never user options


def register(name: str, config_cls: type):
    """Class decorator: ``@register("vae", VAEConfig)`` adds a model to the registry."""

    def wrap(cls: type[LatentModel]) -> type[LatentModel]:
        if name in REGISTRY:
            raise ValueError(f"model name {name!r} registered twice")
        cls.name, cls.Config = name, config_cls
        REGISTRY[name] = cls
        return cls

    return wrap


def model_class(name: str) -> type["LatentModel"]:
    if name not in REGISTRY:
        raise ValueError(unknown_name("model", name, sorted(REGISTRY)))
    return REGISTRY[name]


def build_model(name: str, **params: Any) -> "LatentModel":
    """Build a registered model from keyword arguments; keys its config does not have are rejected."""
    cls = model_class(name)
    return cls(from_dict(cls.Config, params))


def config_fields(name: str) -> set[str]:
    return {f.name for f in dataclasses.fields(model_class(name).Config)}


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a model has, declared once in its file (a class attribute ``capabilities``)."""

    likelihood: bool = True          # p(x) is defined: ELBO, IWAE and NLL apply (False: autoencoder, vaegan)
    prior: bool = True               # p(z) is defined: prior samples, lattices, traversals (False: autoencoder)
    exact_likelihood: bool = False   # log_prob(x) in closed form (probabilistic PCA)
    standard_prior: bool = True      # p(z) = N(0, I); False: the model's own prior(n) (hvae chain, learned)
    closed_form_kl: bool = True      # elbo_parts' KL is analytic; False: a one-sample Monte Carlo estimate
    gaussian_posterior: bool = True  # encode() returns the diagonal Gaussian q(z|x) that log_weight_parts samples
    discrete_latents: bool = False   # z is discrete (codebook indices); False: continuous
    needs_labels: bool = False       # conditional on a class label y (n_classes comes from the data)
    extra_losses: bool = False       # extra_losses(x, y) adds named terms to the training loss
    trainable: bool = True           # False: fitted in closed form by fit_closed_form(x) (PCA)


def check_shape(input_shape: tuple[int, ...], latent_dim: int) -> None:
    """The checks every model config shares (call from ``__post_init__``)."""
    if not isinstance(latent_dim, int) or isinstance(latent_dim, bool):
        raise ValueError(f"latent_dim={latent_dim!r} must be an integer")
    if latent_dim < 1:
        raise ValueError(f"latent_dim={latent_dim} must be >= 1")
    if (not isinstance(input_shape, tuple) or not input_shape
            or any(not isinstance(s, int) or s < 1 for s in input_shape)):
        raise ValueError(f"input_shape={input_shape!r} must be a non-empty tuple of integer sizes >= 1")
    if math.prod(input_shape) > MAX_VALUES or latent_dim > MAX_VALUES:
        raise ValueError(f"input_shape={input_shape!r} / latent_dim={latent_dim} is too large: at most "
                         f"{MAX_VALUES:,} values per example")


def check_sample_args(n: int, temperature: float) -> None:
    """Boundary check shared by every model's ``sample``."""
    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature} must be > 0")


class _Capability:
    """``Model.trainable`` etc.: a name for one field of the class's declared capabilities."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __get__(self, obj: Any, cls: type) -> bool:
        return getattr(cls.capabilities, self.field)


def _no_longer_fresh(model: nn.Module, _incompatible: Any) -> None:
    """load_state_dict post-hook: loaded weights are not a fresh start."""
    model.fresh = False


class LatentModel(nn.Module):
    """p(x, z) = p(x|z) p(z) with an inference network q(z|x); y is an optional class label."""

    name: ClassVar[str]
    Config: ClassVar[type]
    capabilities: ClassVar[Capabilities] = Capabilities()

    # read-only shorthands for the declared capabilities (on the class and on instances)
    trainable = _Capability("trainable")
    has_likelihood = _Capability("likelihood")
    has_prior = _Capability("prior")
    conditional = _Capability("needs_labels")

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not isinstance(config, self.Config):
            raise TypeError(f"model {self.name!r} is built from a {self.Config.__name__}, not {type(config).__name__}")
        self.config = config  # validated by its own __post_init__
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # tracks the device
        self.fresh = True  # built here, never trained or loaded: fit may start its outputs at the data
        self.register_load_state_dict_post_hook(_no_longer_fresh)

    # -- shapes and conditioning ------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.config.input_shape)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def n_classes(self) -> int:
        return getattr(self.config, "n_classes", 0)

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def likelihood_name(self) -> str | None:
        """The key of ``distributions.LIKELIHOODS`` that p(x|z) comes from (its config's ``likelihood``);
        None for a model without a likelihood. It decides the scale of the model's log p(x)."""
        if not self.capabilities.likelihood:
            return None
        return getattr(self.config, "likelihood", None)

    def check_input(self, x: Tensor) -> Tensor:
        """Accept (B, *input_shape) or flat (B, D); anything else is a clear error."""
        shape = self.input_shape
        if tuple(x.shape[1:]) == shape:
            return x
        if x.dim() == 2 and x.shape[1] == math.prod(shape):
            return x.reshape(-1, *shape)
        if len(shape) == 3 and x.dim() == 4 and x.shape[1] != shape[0]:
            raise ValueError(f"x has {x.shape[1]} channel(s); this model expects {shape[0]} (shape {shape})")
        raise ValueError(f"x has example shape {tuple(x.shape[1:])}; this model expects {shape} "
                         f"or flat ({math.prod(shape)},)")

    def condition(self, y: Tensor | int | None, n: int) -> Tensor | None:
        """One-hot (n, K) for a conditional model; None for an unconditional one."""
        if self.n_classes == 0:
            return None
        if y is None:
            raise ValueError(f"model {self.name!r} is conditional: pass class labels y in 0..{self.n_classes - 1}")
        y = torch.as_tensor(y, device=self.device).long()
        if y.dim() == 0:
            y = y.expand(n)
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
            bad = int(y.max()) if int(y.max()) >= self.n_classes else int(y.min())
            raise ValueError(f"class label {bad} is out of range; allowed: 0..{self.n_classes - 1}")
        return nn.functional.one_hot(y, self.n_classes).float()

    def output_decoder(self) -> nn.Module | None:
        """The ``nn.Decoder`` whose outputs parameterise p(x|z) as the likelihood table says (the one
        ``start_at_mean`` sets); None (the default) for a model without one."""
        return None

    def start_at_mean(self, mean: Tensor) -> bool:
        """Data-dependent start: the decoder's output bias set so that p(x|z) has mean ``mean`` (*input_shape,
        the training data's mean) where the rest of its last layer gives 0 (Bernoulli: the logit of the
        mean; Gaussian, Laplace: the mean). True when set; False, nothing changed, for a model or
        likelihood without such a start (``output_decoder`` None, several outputs per value)."""
        decoder, name = self.output_decoder(), self.likelihood_name
        start = get_likelihood(name).start if decoder is not None and name is not None else None
        return start is not None and decoder.start_outputs_at(start(mean.to(self.device)))

    # -- the contract ---------------------------------------------------------------------------------
    def encode(self, x: Tensor, y: Tensor | None = None) -> Distribution:
        """q(z|x[, y]): a distribution with batch shape (B,) and event shape (latent_dim,)."""
        raise NotImplementedError

    def decode(self, z: Tensor, y: Tensor | None = None) -> Distribution:
        """p(x|z[, y]): a distribution with event shape ``input_shape``."""
        raise NotImplementedError

    def prior(self, n: int) -> Distribution:
        """p(z) = N(0, I), batch shape (n,)."""
        return standard_normal((n, self.latent_dim), self.device)

    def elbo_parts(self, x: Tensor, y: Tensor | None = None,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """One-sample reconstruction log p(x|z) (B,) and the KL per latent group (B, G).

        Closed form per dimension when ``capabilities.closed_form_kl``; otherwise the one-sample rate
        log q(z|x) - log p(z) (a Monte Carlo estimate). ``generator``: where the noise comes from."""
        q = self.encode(x, y)
        z = rsample(q, (), generator)                # (B, d) reparameterization trick
        recon = self.decode(z, y).log_prob(x)        # (B,)
        p = self.prior(x.shape[0])
        if self.capabilities.closed_form_kl:
            return recon, kl_per_dim(q, p)           # (B, d)
        return recon, groups_rate(q, p, z)           # (B, G)

    def log_weight_parts(self, x: Tensor, y: Tensor | None = None, k: int = 1,
                         generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """For k samples z ~ q(z|x): log p(x|z) (k, B) and the rate log q(z_g|.) - log p(z_g|.) per
        latent group (k, B, G): per dimension when q and p factorise, else one group."""
        q = self.encode(x, y)
        z = rsample(q, (k,), generator)              # (k, B, d)
        yk = None if y is None else y.expand(k, *y.shape).reshape(-1)
        px = self.decode(z.reshape(-1, z.shape[-1]), yk)
        recon = px.log_prob(x.expand(k, *x.shape).reshape(-1, *x.shape[1:])).reshape(k, -1)  # (k, B)
        return recon, groups_rate(q, self.prior(x.shape[0]), z)

    def log_weights(self, x: Tensor, y: Tensor | None = None, k: int = 1,
                    generator: torch.Generator | None = None) -> Tensor:
        """log p(x, z_i) - log q(z_i|x) for k posterior samples: (k, B)."""
        recon, rate = self.log_weight_parts(x, y, k, generator)
        return recon - rate.sum(-1)

    @torch.no_grad()
    def latent_stats(self, x: Tensor) -> dict[str, float]:
        """Numbers a model reports about its latent codes of x (eval.json ``latent_stats``; e.g. the VQ-VAE's
        codebook usage and perplexity). None by default."""
        return {}

    def extra_losses(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """Named scalar terms added to the training loss (models with ``capabilities.extra_losses``)."""
        return {}

    @torch.no_grad()
    def sample(self, n: int, y: Tensor | int | None = None, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Decoded means of prior draws, the prior's spread scaled by ``temperature``: (n, *input_shape).

        N(0, I) priors scale z; a model's own prior scales its draws about the prior mean."""
        check_sample_args(n, temperature)
        if self.n_classes and y is None:
            y = torch.arange(n, device=self.device) % self.n_classes
        p = self.prior(n)
        z = p.sample() if generator is None else rsample(p, (), generator)  # (n, d)
        if temperature != 1.0:
            z = p.mean + temperature * (z - p.mean)
        return self.decode(z, y).mean

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Decoded mean of the posterior mean: (B, *input_shape)."""
        x = self.check_input(x)
        return self.decode(self.encode(x, y).mean, y).mean


@torch.no_grad()
def posterior_means(model: LatentModel, x: Tensor, y: Tensor | None = None, batch_size: int = 1000) -> Tensor:
    """E[z|x] for every row of x in batches, on the CPU: (N, latent_dim). Labels are used only by
    conditional models."""
    model.eval()
    out = []
    for start in range(0, len(x), batch_size):
        xb = model.check_input(x[start:start + batch_size].to(model.device))
        yb = None if y is None or not model.n_classes else y[start:start + batch_size].to(model.device)
        out.append(model.encode(xb, yb).mean.reshape(len(xb), -1).cpu())
    return torch.cat(out) if out else torch.empty(0, model.latent_dim)
