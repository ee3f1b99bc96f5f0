"""The model registry and the contract every latent-variable model follows.

A model is built from its frozen config dataclass (exactly its constructor arguments). ``encode`` and
``decode`` return ``torch.distributions``; objectives (vaelab.objectives) are functions over these.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..config import from_dict
from ..distributions import kl_per_dim, standard_normal

REGISTRY: dict[str, type["LatentModel"]] = {}


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
        raise ValueError(f"model={name!r} is not known; allowed: {sorted(REGISTRY)}")
    return REGISTRY[name]


def build_model(name: str, **params: Any) -> "LatentModel":
    """Build a registered model from keyword arguments; keys its config does not have are rejected."""
    cls = model_class(name)
    return cls(from_dict(cls.Config, params))


def config_fields(name: str) -> set[str]:
    return {f.name for f in dataclasses.fields(model_class(name).Config)}


def check_sample_args(n: int, temperature: float) -> None:
    """Boundary check shared by every model's ``sample``."""
    if n < 1:
        raise ValueError(f"n={n} must be >= 1")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature} must be > 0")


class LatentModel(nn.Module):
    """p(x, z) = p(x|z) p(z) with an inference network q(z|x); y is an optional class label."""

    name: ClassVar[str]
    Config: ClassVar[type]
    trainable: ClassVar[bool] = True     # False: fitted in closed form (PCA)
    has_likelihood: ClassVar[bool] = True  # False: no p(x), so no ELBO / NLL (autoencoder)
    conditional: ClassVar[bool] = False    # True: needs class labels y (n_classes comes from the data)

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        if config.latent_dim < 1:
            raise ValueError(f"latent_dim={config.latent_dim} must be >= 1")
        if not config.input_shape or any(s < 1 for s in config.input_shape):
            raise ValueError(f"input_shape={config.input_shape} must be a non-empty tuple of sizes >= 1")
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # tracks the device

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

    def elbo_parts(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One-sample reconstruction log p(x|z) (B,) and closed-form KL per latent group (B, G)."""
        q = self.encode(x, y)
        z = q.rsample()                              # (B, d) reparameterization trick
        recon = self.decode(z, y).log_prob(x)        # (B,)
        return recon, kl_per_dim(q, self.prior(x.shape[0]))  # (B, d)

    def log_weights(self, x: Tensor, y: Tensor | None = None, k: int = 1) -> Tensor:
        """log p(x, z_i) - log q(z_i|x) for k posterior samples: (k, B)."""
        q = self.encode(x, y)
        z = q.rsample((k,))                          # (k, B, d)
        yk = None if y is None else y.expand(k, *y.shape).reshape(-1)
        px = self.decode(z.reshape(-1, z.shape[-1]), yk)
        log_px = px.log_prob(x.expand(k, *x.shape).reshape(-1, *x.shape[1:])).reshape(k, -1)
        return log_px + self.prior(x.shape[0]).log_prob(z) - q.log_prob(z)

    @torch.no_grad()
    def sample(self, n: int, y: Tensor | int | None = None, temperature: float = 1.0) -> Tensor:
        """Decoded means of z ~ N(0, temperature^2 I): (n, *input_shape)."""
        check_sample_args(n, temperature)
        if self.n_classes and y is None:
            y = torch.arange(n, device=self.device) % self.n_classes
        z = self.prior(n).sample() * temperature
        return self.decode(z, y).mean

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Decoded mean of the posterior mean: (B, *input_shape)."""
        x = self.check_input(x)
        return self.decode(self.encode(x, y).mean, y).mean
