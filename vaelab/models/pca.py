"""Probabilistic PCA (Tipping & Bishop): the linear baseline, a Gaussian density.

On data with levels (8-bit pixels), uniform dequantization turns its exact log-density into a lower
bound on the discrete log-probability (``vaelab.eval``), the scale the deep models' discrete likelihoods use.

x = W z + mu + eps, z ~ N(0, I), eps ~ N(0, s2 I), fitted in closed form. With W = U (L - s2 I)^(1/2)
the exact posterior q(z|x) = N(M^-1 W^T (x - mu), s2 M^-1), M = W^T W + s2 I, is diagonal, so the
ELBO's expectation equals log p(x) exactly and ``log_prob`` matches scikit-learn's ``score_samples``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution

from ..distributions import diag_gaussian, likelihood
from .base import Capabilities, LatentModel, check_shape, register


@dataclass(frozen=True)
class PCAConfig:
    input_shape: tuple[int, ...]  # shape of one example, e.g. (1, 8, 8)
    latent_dim: int = 2           # number of principal components kept

    def __post_init__(self) -> None:
        check_shape(self.input_shape, self.latent_dim)
        if self.latent_dim > math.prod(self.input_shape):
            raise ValueError(f"latent_dim={self.latent_dim} must be <= the data dimension "
                             f"{math.prod(self.input_shape)} for pca")


@register("pca", PCAConfig)
class PPCA(LatentModel):
    # exact log p(x); the exact posterior is a diagonal Gaussian; fitted in closed form
    capabilities = Capabilities(exact_likelihood=True, trainable=False)

    def __init__(self, config: PCAConfig) -> None:
        super().__init__(config)
        d, k = math.prod(config.input_shape), config.latent_dim
        self.register_buffer("mean", torch.zeros(d))             # (D,) data mean mu
        self.register_buffer("components", torch.eye(d, k))      # (D, k) orthonormal U
        self.register_buffer("eigenvalues", torch.ones(k))       # (k,) variances along U
        self.register_buffer("noise_variance", torch.ones(()))   # s2

    @property
    def likelihood_name(self) -> str:
        return "gaussian"  # a Gaussian density: its log p(x) is on the density scale unless dequantized

    def fit_closed_form(self, x: Tensor) -> "PPCA":
        """Fit by eigen-decomposition (scikit-learn's PCA, exact solver).

        With more examples than features the D x D covariance is eigen-decomposed: exact, and far
        faster than a full SVD of the data (1437x64 digits: ~3 ms instead of up to ~1 s when BLAS
        threads compete for cores; MNIST: ~0.3 s instead of seconds)."""
        from sklearn.decomposition import PCA

        flat = x.reshape(len(x), -1).double().cpu().numpy()
        if len(flat) <= self.latent_dim:
            raise ValueError(f"pca needs more than latent_dim={self.latent_dim} examples; got {len(flat)}")
        solver = "covariance_eigh" if len(flat) >= flat.shape[1] else "full"
        try:
            pca = PCA(n_components=self.latent_dim, svd_solver=solver).fit(flat)
        except ValueError:  # scikit-learn < 1.5 has no covariance_eigh
            pca = PCA(n_components=self.latent_dim, svd_solver="full").fit(flat)
        self.load_from_sklearn(pca)
        return self

    def load_from_sklearn(self, pca) -> None:
        s2 = max(float(pca.noise_variance_), 1e-12)
        as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=self.device)  # noqa: E731
        self.mean.copy_(as_t(pca.mean_))
        self.components.copy_(as_t(pca.components_.T))
        self.eigenvalues.copy_(as_t(np.maximum(pca.explained_variance_, s2)))
        self.noise_variance.fill_(s2)

    @property
    def weight(self) -> Tensor:
        """W = U (L - s2 I)^(1/2): (D, k)."""
        return self.components * (self.eigenvalues - self.noise_variance).clamp_min(0).sqrt()

    def encode(self, x: Tensor, y: Tensor | None = None) -> Distribution:
        xc = x.reshape(len(x), -1) - self.mean                   # (B, D)
        w = self.weight
        m_diag = (w * w).sum(0) + self.noise_variance            # (k,) M is diagonal
        mu = (xc @ w) / m_diag                                   # (B, k)
        logvar = (self.noise_variance / m_diag).log().expand_as(mu)
        return diag_gaussian(mu, logvar)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Distribution:
        out = (z @ self.weight.T + self.mean).reshape(*z.shape[:-1], *self.input_shape)
        log_sigma = 0.5 * self.noise_variance.log()
        return likelihood("gaussian", out, log_sigma, len(self.input_shape))

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log p(x) = log N(x; mu, W W^T + s2 I) per example: (B,)."""
        xc = x.reshape(len(x), -1).double() - self.mean.double()  # (B, D)
        lam, s2 = self.eigenvalues.double(), self.noise_variance.double()
        proj = xc @ self.components.double()                      # (B, k)
        d = xc.shape[1]
        maha = (proj ** 2 / lam).sum(1) + ((xc ** 2).sum(1) - (proj ** 2).sum(1)) / s2
        logdet = lam.log().sum() + (d - lam.numel()) * s2.log()
        return (-0.5 * (maha + logdet + d * math.log(2 * math.pi))).float()
