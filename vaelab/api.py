"""scikit-learn style estimators: ``vaelab.VAE(latent_dim=2, epochs=20).fit(X)`` returns self.

``transform`` gives posterior means, ``inverse_transform`` decoded means, ``score`` the mean ELBO in
nats (exact log-likelihood for PCA, negative MSE for the autoencoder), ``sample`` draws from the prior.
They work in a ``sklearn.pipeline.Pipeline``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from . import rundir
from .data import DataInfo, Dataset, check_binarize, check_finite, info_dict
from .models import LatentModel, build_model, config_fields
from .objectives import ObjectiveConfig
from .train.loop import TrainConfig, fit, score

__all__ = ["AE", "CVAE", "PCA", "VAE"]

_TRAIN = ("epochs", "batch_size", "lr", "seed", "device")
_OBJECTIVE = ("beta", "warmup", "free_bits")


def _as_tensor(X: Any, what: str = "X") -> torch.Tensor:
    x = torch.as_tensor(np.asarray(X, dtype=np.float32))
    if x.dim() not in (2, 3, 4) or len(x) == 0:
        raise ValueError(f"{what} has shape {tuple(x.shape)}; allowed: (n, features), (n, H, W) or (n, C, H, W)")
    check_finite(x, what)
    return x[:, None] if x.dim() == 3 else x


class _LatentEstimator(TransformerMixin, BaseEstimator):
    model_name: ClassVar[str]

    # -- fitting --------------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> "_LatentEstimator":
        x = _as_tensor(X)
        labels = None if y is None else torch.as_tensor(np.asarray(y), dtype=torch.int64)
        if labels is not None and labels.shape != (len(x),):
            raise ValueError(f"y has shape {tuple(labels.shape)}; expected ({len(x)},) to match X")
        binarize = check_binarize(getattr(self, "binarize", "none"))
        if binarize != "none" and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"binarize={binarize!r} needs X in [0, 1]; X spans "
                             f"[{float(x.min()):.3g}, {float(x.max()):.3g}]: use binarize='none'")
        if binarize == "static":  # one fixed draw, as load_dataset does
            x = torch.bernoulli(x, generator=torch.Generator().manual_seed(1234))
        torch.manual_seed(getattr(self, "seed", 0))  # the seed also fixes the initial weights
        self.model_ = build_model(self.model_name, **self._model_params(x, labels))
        self.flat_input_ = x.dim() == 2
        self.x_shape_ = tuple(np.shape(X)[1:])  # outputs come back in the shape X had: (n, *x_shape_)
        info = DataInfo(name="array", shape=tuple(x.shape[1:]), is_image=x.dim() == 4,
                        n_classes=self.model_.n_classes, binarize=binarize)
        self.history_ = fit(self.model_, Dataset(x, labels if self.model_.n_classes else None, info),
                            objective=ObjectiveConfig(**{k: getattr(self, k) for k in _OBJECTIVE if hasattr(self, k)}),
                            cfg=TrainConfig(progress=getattr(self, "verbose", False),
                                            **{k: getattr(self, k) for k in _TRAIN if hasattr(self, k)}))
        self.info_ = info
        return self

    def _model_params(self, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, Any]:
        fields = config_fields(self.model_name)
        params = {k: getattr(self, k) for k in fields if hasattr(self, k)}
        params["input_shape"] = tuple(x.shape[1:])
        if "hidden" in params:
            params["hidden"] = tuple(params["hidden"])
        return params

    # -- using -----------------------------------------------------------------------------------------
    @property
    def model(self) -> LatentModel:
        check_is_fitted(self, "model_")
        return self.model_

    def _labels(self, y: Any, n: int) -> torch.Tensor | None:
        return None if y is None else torch.as_tensor(np.asarray(y), dtype=torch.int64, device=self.model.device)

    def _out(self, t: torch.Tensor) -> np.ndarray:
        t = t.detach().cpu()
        return t.reshape(len(t), *self.x_shape_).numpy()

    @torch.no_grad()
    def transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Posterior means E[z|x]: (n, latent_dim)."""
        m = self.model
        x = m.check_input(_as_tensor(X).to(m.device))
        return m.encode(x, self._labels(y, len(x))).mean.cpu().numpy()

    @torch.no_grad()
    def inverse_transform(self, Z: Any, y: Any = None) -> np.ndarray:
        """Decoded means of latent codes Z (n, latent_dim)."""
        m = self.model
        z = torch.as_tensor(np.asarray(Z, dtype=np.float32), device=m.device)
        if z.dim() != 2 or z.shape[1] != m.latent_dim:
            raise ValueError(f"Z has shape {tuple(z.shape)}; expected (n, {m.latent_dim})")
        check_finite(z, "Z")
        return self._out(m.decode(z, self._labels(y, len(z))).mean)

    def sample(self, n: int, y: Any = None, temperature: float = 1.0) -> np.ndarray:
        """n prior samples (decoded means)."""
        return self._out(self.model.sample(n, y, temperature))

    def score(self, X: Any, y: Any = None) -> float:
        """Mean ELBO per example in nats (higher is better)."""
        m = self.model
        x = m.check_input(_as_tensor(X))
        info = DataInfo(name="array", shape=m.input_shape, binarize=self.info_.binarize)  # dynamic: one fixed draw
        return score(m, Dataset(x, self._labels(y, len(x)), info))["elbo"]

    def save(self, path: str | Path) -> Path:
        """Write a run folder (config.json + model.safetensors) that ``vaelab.load`` reads."""
        return rundir.save_model(path, self.model, data=info_dict(self.info_))


class PCA(_LatentEstimator):
    """Probabilistic PCA; ``score`` is the exact mean log-likelihood (scikit-learn's ``PCA.score``)."""

    model_name = "pca"

    def __init__(self, latent_dim: int = 2) -> None:
        self.latent_dim = latent_dim

    def score(self, X: Any, y: Any = None) -> float:
        return float(self.model.log_prob(_as_tensor(X).to(self.model.device)).mean())


class AE(_LatentEstimator):
    """Deterministic autoencoder; ``score`` is minus the mean squared error per pixel."""

    model_name = "ae"

    def __init__(self, latent_dim: int = 2, hidden: tuple[int, ...] = (400,), arch: str = "mlp",
                 activation: str = "relu", loss: str = "mse", epochs: int = 20, batch_size: int = 128,
                 lr: float = 1e-3, seed: int = 0, device: str = "auto", verbose: bool = False) -> None:
        self.latent_dim, self.hidden, self.arch, self.activation, self.loss = latent_dim, hidden, arch, activation, loss
        self.epochs, self.batch_size, self.lr, self.seed, self.device, self.verbose = (
            epochs, batch_size, lr, seed, device, verbose)

    def score(self, X: Any, y: Any = None) -> float:
        m = self.model
        x = m.check_input(_as_tensor(X))
        return -score(m, Dataset(x, None, DataInfo(name="array", shape=m.input_shape)))["mse"]


class VAE(_LatentEstimator):
    """Variational autoencoder with a Gaussian posterior and a Bernoulli or Gaussian decoder."""

    model_name = "vae"

    def __init__(self, latent_dim: int = 2, hidden: tuple[int, ...] = (400,), arch: str = "mlp",
                 activation: str = "relu", likelihood: str = "bernoulli", sigma: float = 0.1,
                 beta: float = 1.0, warmup: float = 0.0, free_bits: float = 0.0, binarize: str = "none",
                 epochs: int = 20, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                 device: str = "auto", verbose: bool = False) -> None:
        self.latent_dim, self.hidden, self.arch, self.activation = latent_dim, hidden, arch, activation
        self.likelihood, self.sigma, self.binarize = likelihood, sigma, binarize
        self.beta, self.warmup, self.free_bits = beta, warmup, free_bits
        self.epochs, self.batch_size, self.lr, self.seed, self.device, self.verbose = (
            epochs, batch_size, lr, seed, device, verbose)


class CVAE(VAE):
    """Conditional VAE: ``fit(X, y)`` with class labels; ``sample(n, y=3)`` draws class 3."""

    model_name = "cvae"

    def _model_params(self, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, Any]:
        if y is None:
            raise ValueError("CVAE.fit needs class labels: fit(X, y)")
        return {**super()._model_params(x, y), "n_classes": int(y.max()) + 1}
