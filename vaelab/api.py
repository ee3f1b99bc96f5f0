"""scikit-learn style estimators: ``vaelab.VAE(latent_dim=2, epochs=20).fit(X)`` returns self.

``transform`` gives posterior means, ``inverse_transform`` decoded means, ``score`` the mean ELBO in
nats (exact log-likelihood for PCA, negative MSE for the autoencoder), ``sample`` draws from the prior.
They work in a ``sklearn.pipeline.Pipeline``.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from . import rundir
from .data import DataInfo, Dataset, check_binarize, check_finite, info_dict
from .config import field_default, from_dict
from .models import DATA_FIELDS, REGISTRY, LatentModel, build_model, model_class, plugins
from .objectives import ObjectiveConfig
from .train.loop import TrainConfig, fit, score

__all__ = ["AE", "CVAE", "Estimator", "PCA", "VAE", "estimator"]

API_DEFAULTS = {"epochs": 20}                       # estimator defaults that differ from TrainConfig's


def _as_tensor(X: Any, what: str = "X") -> torch.Tensor:
    x = torch.as_tensor(np.asarray(X, dtype=np.float32))
    if x.dim() not in (2, 3, 4) or len(x) == 0:
        raise ValueError(f"{what} has shape {tuple(x.shape)}; allowed: (n, features), (n, H, W) or (n, C, H, W)")
    check_finite(x, what)
    return x[:, None] if x.dim() == 3 else x


def parameters(model_name: str) -> list[tuple[str, str, str, Any]]:
    """An estimator's parameters for a registered model: (name, source, config field, default).

    The model's config fields (but input_shape and n_classes, from the data); for a trainable model
    with a likelihood the ObjectiveConfig fields (``kind`` as ``objective``) and ``binarize``; for a trainable
    model the TrainConfig fields (``progress`` as ``verbose``, default False; ``epochs`` 20). A model
    field whose name is taken is ``model_<field>``."""
    cls = model_class(model_name)
    caps = cls.capabilities
    objective = caps.likelihood and caps.trainable  # PCA (closed form) takes only its model fields
    out: list[tuple[str, str, str, Any]] = []
    taken: set[str] = set()
    later = set()
    if objective:
        later |= {f.name for f in dataclasses.fields(ObjectiveConfig)} | {"objective", "binarize"}
    if caps.trainable:
        later |= {f.name for f in dataclasses.fields(TrainConfig)} | {"verbose"}
    for f in dataclasses.fields(cls.Config):
        if f.name not in DATA_FIELDS:
            name = f"model_{f.name}" if f.name in later else f.name
            out.append((name, "model", f.name, field_default(f, inspect.Parameter.empty)))
            taken.add(name)
    if objective:
        for f in dataclasses.fields(ObjectiveConfig):
            name = "objective" if f.name == "kind" else f.name
            out.append((name, "objective", f.name, field_default(f, inspect.Parameter.empty)))
            taken.add(name)
        out.append(("binarize", "data", "binarize", "none"))
        taken.add("binarize")
    if caps.trainable:
        for f in dataclasses.fields(TrainConfig):
            if f.name == "progress":
                continue
            name = f"train_{f.name}" if f.name in taken else f.name
            out.append((name, "train", f.name, API_DEFAULTS.get(f.name, field_default(f, inspect.Parameter.empty))))
        out.append(("verbose", "train", "progress", False))
    return out


def _signature(params: list[tuple[str, str, str, Any]]) -> inspect.Signature:
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    args = [inspect.Parameter("self", kind)]
    required = [inspect.Parameter(n, kind) for n, _, _, d in params if d is inspect.Parameter.empty]
    optional = [inspect.Parameter(n, kind, default=d) for n, _, _, d in params if d is not inspect.Parameter.empty]
    return inspect.Signature(args + required + optional)


class Estimator(TransformerMixin, BaseEstimator):
    """A scikit-learn estimator for a registered model; its parameters come from the configs.

    Subclasses are made by ``estimator(name)``; ``__init__`` only stores the arguments (scikit-learn's
    convention), the configs validate them at ``fit``."""

    model_name: ClassVar[str]
    _params: ClassVar[list[tuple[str, str, str, Any]]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        bound = inspect.signature(type(self).__init__).bind(self, *args, **kwargs)
        bound.apply_defaults()
        for name, value in list(bound.arguments.items())[1:]:
            setattr(self, name, value)

    def _part(self, source: str) -> dict[str, Any]:
        return {field: getattr(self, name) for name, src, field, _ in self._params if src == source}

    # -- fitting --------------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> "Estimator":
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
        train = self._part("train")
        torch.manual_seed(train.get("seed", 0))  # the seed also fixes the initial weights
        self.model_ = build_model(self.model_name, **self._model_params(x, labels))
        self.flat_input_ = x.dim() == 2
        self.x_shape_ = tuple(np.shape(X)[1:])  # outputs come back in the shape X had: (n, *x_shape_)
        info = DataInfo(name="array", shape=tuple(x.shape[1:]), is_image=x.dim() == 4,
                        n_classes=self.model_.n_classes, binarize=binarize)
        train.setdefault("progress", False)
        self.history_ = fit(self.model_, Dataset(x, labels if self.model_.n_classes else None, info),
                            objective=from_dict(ObjectiveConfig, self._part("objective")),
                            cfg=from_dict(TrainConfig, train))
        self.info_ = info
        return self

    def _model_params(self, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, Any]:
        params = {**self._part("model"), "input_shape": tuple(x.shape[1:])}
        if model_class(self.model_name).conditional:
            if y is None:
                raise ValueError(f"{type(self).__name__}.fit needs class labels: fit(X, y)")
            params["n_classes"] = int(y.max()) + 1
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
        """Higher is better: the exact mean log-likelihood when the model has one (PCA), minus the mean
        squared error per pixel without a likelihood (autoencoder), else the mean ELBO in nats."""
        m = self.model
        caps = m.capabilities
        if caps.exact_likelihood:
            return float(m.log_prob(_as_tensor(X).to(m.device)).mean())
        x = m.check_input(_as_tensor(X))
        if not caps.likelihood:
            return -score(m, Dataset(x, None, DataInfo(name="array", shape=m.input_shape)))["mse"]
        info = DataInfo(name="array", shape=m.input_shape, binarize=self.info_.binarize)  # dynamic: one fixed draw
        return score(m, Dataset(x, self._labels(y, len(x)), info))["elbo"]

    def save(self, path: str | Path) -> Path:
        """Write a run folder (config.json + model.safetensors) that ``vaelab.load`` reads."""
        needed = plugins.modules_for(self.model.name)
        return rundir.save_model(path, self.model, data=info_dict(self.info_),
                                 **({"plugins": needed} if needed else {}))


_CLASSES: dict[str, type[Estimator]] = {}


def _class_name(model_name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", model_name) if part) + "Estimator"


def estimator(name: str, class_name: str | None = None, doc: str | None = None) -> type[Estimator]:
    """The estimator class of registered model ``name`` (plugins included), e.g.
    ``estimator("hvae")(latent_dims=(8, 4), epochs=5).fit(X)``. Made once per model."""
    if name not in REGISTRY:
        plugins.discover()  # $VAELAB_PLUGINS and installed entry points may provide it
    cls_model = model_class(name)  # unknown: an error naming the known ones
    if name in _CLASSES:
        return _CLASSES[name]
    params = parameters(name)
    class_name = class_name or _class_name(name)

    def __init__(self: Estimator, *args: Any, **kwargs: Any) -> None:
        Estimator.__init__(self, *args, **kwargs)

    __init__.__signature__ = _signature(params)  # type: ignore[attr-defined]  (what scikit-learn reads)
    __init__.__qualname__ = f"{class_name}.__init__"
    cls = type(class_name, (Estimator,), {
        "__init__": __init__, "model_name": name, "_params": params, "__module__": __name__,
        "__qualname__": class_name,
        "__doc__": doc or f"Estimator for the registered model {name!r} ({cls_model.__name__}); "
                          f"parameters: {', '.join(p[0] for p in params)}.",
    })
    _CLASSES[name] = cls
    globals().setdefault(class_name, cls)  # picklable by name
    return cls


PCA = estimator("pca", "PCA", "Probabilistic PCA; ``score`` is the exact mean log-likelihood "
                              "(scikit-learn's ``PCA.score``).")
AE = estimator("ae", "AE", "Deterministic autoencoder; ``score`` is minus the mean squared error per pixel.")
VAE = estimator("vae", "VAE", "Variational autoencoder with a Gaussian posterior and a Bernoulli or Gaussian "
                              "decoder; ``score`` is the mean ELBO in nats.")
CVAE = estimator("cvae", "CVAE", "Conditional VAE: ``fit(X, y)`` with class labels; ``sample(n, y=3)`` "
                                 "draws class 3.")
