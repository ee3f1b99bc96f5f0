"""The scikit-learn estimator over any registered model: ``fit`` returns self, ``transform`` gives posterior
means, ``score_samples`` importance-sampled log p(x) per example, ``sample`` prior draws.

Every random choice comes from ``random_state``: the initial weights, shuffling and dynamic binarization
in ``fit``, and the importance samples of ``score_samples`` / ``score`` (so GridSearchCV compares the
same estimate for every candidate, not noise). ``sample(n, random_state=)`` takes its own.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._available_if import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import rundir
from ..config import from_dict, to_dict
from ..data import DataInfo, Dataset, check_binarize, check_finite, for_evaluation, info_dict
from ..eval.likelihood import log_likelihood
from ..models import LatentModel, build_model, model_class, plugins
from ..objectives import ObjectiveConfig
from ..train.loop import TrainConfig, fit, score
from .params import Param, resolve_likelihood, seed_of

BINARIZE_SEED = 1234  # binarize="static": the one fixed Bernoulli draw of X (as load_dataset makes it)


class Estimator(TransformerMixin, BaseEstimator):
    """A scikit-learn estimator for a registered model; its parameters come from the configs.

    Subclasses are made by ``vaelab.api.estimator(name)``; ``__init__`` only stores the arguments
    (scikit-learn's convention), the configs validate them at ``fit``. ``likelihood="auto"`` is resolved
    at ``fit`` from X (``likelihood_``; see ``vaelab.api.params.resolve_likelihood``)."""

    model_name: ClassVar[str]
    _params: ClassVar[list[Param]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        import inspect

        bound = inspect.signature(type(self).__init__).bind(self, *args, **kwargs)
        bound.apply_defaults()
        for name, value in list(bound.arguments.items())[1:]:
            setattr(self, name, value)

    def _part(self, source: str) -> dict[str, Any]:
        return {field: getattr(self, name) for name, src, field, _ in self._params if src == source}

    @classmethod
    def _caps(cls):
        return model_class(cls.model_name).capabilities

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # the networks compute in float32
        tags.target_tags.required = bool(self._caps().needs_labels)
        return tags

    # -- input ----------------------------------------------------------------------------------------------
    def _check_X(self, X: Any, reset: bool) -> tuple[torch.Tensor, tuple[int, ...]]:
        """X as float32 (n, *shape) and the shape of one row as given. 2-D input goes through scikit-learn's validate_data (feature names,
        n_features_in_, sparse/complex/dtype errors); image stacks (n, H, W) or (n, C, H, W) are taken as
        they are, with n_features_in_ = the pixels of one image."""
        shape = tuple(X.shape) if sparse.issparse(X) or hasattr(X, "shape") else np.asarray(X).shape
        if len(shape) not in (2, 3, 4):
            raise ValueError(f"X has shape {shape}; allowed: (n, features), (n, H, W) or (n, C, H, W). "
                             "Reshape your data: X.reshape(1, -1) for one example, X.reshape(-1, 1) for one feature")
        if len(shape) == 2:
            if not reset:
                self._check_features(int(shape[1]), shape[1:])
            arr = validate_data(self, X, reset=reset, dtype=(np.float32, np.float64), ensure_all_finite=False)
        else:
            arr = np.asarray(X, dtype=np.float32)
            n_features = math.prod(arr.shape[1:])
            if len(arr) == 0:
                raise ValueError(f"X has shape {arr.shape}: 0 examples; at least 1 is required")
            if reset:
                self.n_features_in_ = n_features
                self.__dict__.pop("feature_names_in_", None)
            else:
                self._check_features(n_features, arr.shape[1:])
        x = torch.as_tensor(np.ascontiguousarray(arr, dtype=np.float32))
        check_finite(x, "X")
        return (x[:, None] if x.dim() == 3 else x), tuple(arr.shape[1:])

    def _check_features(self, n: int, shape: tuple[int, ...]) -> None:
        check_is_fitted(self, "model_")
        if n != self.n_features_in_:
            raise ValueError(f"X has {n} features, but {type(self).__name__} is expecting {self.n_features_in_} "
                             f"features as input (example shape {tuple(shape)}; the model expects "
                             f"{self.model_.input_shape} or flat ({self.n_features_in_},))")

    def _check_y(self, y: Any, n: int) -> torch.Tensor | None:
        if y is None:
            return None
        labels = np.asarray(y)
        if labels.shape != (n,):
            raise ValueError(f"y has shape {labels.shape}; expected ({n},) to match X")
        if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)) or (
                np.issubdtype(labels.dtype, np.floating) and not np.all(np.mod(labels, 1) == 0)):
            raise ValueError("y must hold class labels 0, 1, 2, ... (integers)")
        if len(labels) and labels.min() < 0:
            raise ValueError(f"y holds the label {labels.min()}; class labels are integers >= 0")
        return torch.as_tensor(labels.astype(np.int64))

    # -- fitting --------------------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None) -> "Estimator":
        """Train on X (n, features) or images (n, H, W) / (n, C, H, W); ``y``: class labels for conditional
        models (ignored by the others). Returns self."""
        x, row_shape = self._check_X(X, reset=True)
        caps = self._caps()
        labels = self._check_y(y, len(x)) if caps.needs_labels else None
        if caps.needs_labels and labels is None:
            raise ValueError(f"{type(self).__name__}.fit needs class labels: fit(X, y) (this estimator "
                             "requires y to be passed, but the target y is None)")
        x_min, x_max = float(x.min()), float(x.max())
        binarize = check_binarize(getattr(self, "binarize", "none"))
        if binarize != "none" and (x_min < 0 or x_max > 1):
            raise ValueError(f"binarize={binarize!r} needs X in [0, 1]; X spans [{x_min:.3g}, {x_max:.3g}]: "
                             "use binarize='none'")
        if binarize == "static":  # one fixed draw, as load_dataset does
            x = torch.bernoulli(x, generator=torch.Generator().manual_seed(BINARIZE_SEED))
        params = {**self._part("model"), "input_shape": tuple(x.shape[1:])}
        if "likelihood" in params:
            params["likelihood"] = self.likelihood_ = resolve_likelihood(params["likelihood"], x_min, x_max)
        if caps.needs_labels:
            params["n_classes"] = int(labels.max()) + 1
        seed = seed_of(self.random_state)
        train = from_dict(TrainConfig, {"progress": False, **self._part("train"), "seed": seed})
        info = DataInfo(name="array", shape=tuple(x.shape[1:]), is_image=x.dim() == 4,
                        n_classes=params.get("n_classes", 0), binarize=binarize)
        with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left as it was
            torch.manual_seed(seed)  # the initial weights
            model = build_model(self.model_name, **params)
            history = fit(model, Dataset(x, labels, info), cfg=train,
                          objective=from_dict(ObjectiveConfig, self._part("objective")))
        self.model_, self.history_, self.info_, self.seed_ = model, history, info, seed
        self.x_shape_ = row_shape  # outputs come back in the shape X had: (n, *x_shape_)
        return self

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> np.ndarray:
        """``fit(X, y).transform(X, y)``: a conditional model encodes with the labels it was fitted on."""
        return self.fit(X, y, **fit_params).transform(X, y)

    # -- using ----------------------------------------------------------------------------------------------
    @property
    def model(self) -> LatentModel:
        """The fitted torch module (encode / decode return torch.distributions)."""
        check_is_fitted(self, "model_")
        return self.model_

    def _labels(self, y: Any, n: int) -> torch.Tensor | None:
        if not self.model.n_classes:
            return None  # unconditional: y is ignored (scikit-learn passes it along in pipelines)
        labels = self._check_y(y, n)
        return None if labels is None else labels.to(self.model.device)

    def _out(self, t: torch.Tensor) -> np.ndarray:
        t = t.detach().cpu()
        return t.reshape(len(t), *self.x_shape_).numpy()

    def _x(self, X: Any) -> torch.Tensor:
        m = self.model
        return m.check_input(self._check_X(X, reset=False)[0].to(m.device))

    @torch.no_grad()
    def transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Posterior means E[z|x]: (n, latent_dim) float32."""
        x = self._x(X)
        return self.model.encode(x, self._labels(y, len(x))).mean.cpu().numpy()

    @torch.no_grad()
    def inverse_transform(self, Z: Any, y: Any = None) -> np.ndarray:
        """Decoded means of latent codes Z (n, latent_dim), in the shape X had."""
        m = self.model
        z = torch.as_tensor(np.asarray(Z, dtype=np.float32), device=m.device)
        if z.dim() != 2 or z.shape[1] != m.latent_dim:
            raise ValueError(f"Z has shape {tuple(z.shape)}; expected (n, {m.latent_dim})")
        check_finite(z, "Z")
        return self._out(m.decode(z, self._labels(y, len(z))).mean)

    def sample(self, n: int = 1, y: Any = None, temperature: float = 1.0, random_state: Any = None) -> np.ndarray:
        """n decoded prior draws, in the shape X had. ``random_state`` (an int) makes them reproducible;
        None draws from torch's global RNG. Conditional models: ``y`` a class or n classes."""
        m = self.model
        gen = None if random_state is None else \
            torch.Generator(device=m.device).manual_seed(seed_of(random_state, "random_state"))
        return self._out(m.sample(n, y, temperature, generator=gen))

    def _scored(self, X: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self._x(X).cpu()
        labels = self._labels(y, len(x))
        ds = for_evaluation(Dataset(x, labels, self.info_))  # dynamic binarization: one fixed draw
        return ds.x, labels

    @available_if(lambda self: self._caps().likelihood)
    def score_samples(self, X: Any, y: Any = None) -> np.ndarray:
        """log p(x) per example in nats, (n,) float64: exact where the model has a closed form (PCA), else
        the importance-sampled IWAE bound with ``score_k`` samples from q(z|x), seeded by ``random_state``
        (equal to ``vaelab.eval.log_likelihood(model, x, k=score_k, seed=random_state)``).

        The importance samples are drawn per row position, as in log_likelihood: the same X gives the
        same numbers; a row moved or scored in another subset gets other draws of the same estimate."""
        m = self.model
        x, labels = self._scored(X, y)
        if m.capabilities.exact_likelihood:
            with torch.no_grad():
                return m.log_prob(x.to(m.device)).double().cpu().numpy()
        log_px, _ = log_likelihood(m, x, labels, k=self.score_k, seed=seed_of(self.random_state))
        return log_px.numpy()

    def score(self, X: Any, y: Any = None) -> float:
        """Higher is better, deterministic given ``random_state``: the mean of ``score_samples`` (log p(x) in
        nats) for models with a likelihood, minus the mean squared error per pixel without one (AE)."""
        if self._caps().likelihood:
            return float(np.mean(self.score_samples(X, y)))
        x = self._x(X).cpu()
        return -score(self.model, Dataset(x, None, DataInfo(name="array", shape=self.model.input_shape)))["mse"]

    # -- run folders ----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write a run folder (config.json + model.safetensors) that ``vaelab.load`` and
        ``vaelab.load_estimator`` read."""
        needed = plugins.modules_for(self.model.name)
        extra: dict[str, Any] = {"data": info_dict(self.info_)}
        if self._caps().trainable:
            extra["train"] = to_dict(from_dict(TrainConfig, {**self._part("train"), "seed": self.seed_}))
        if self._part("objective"):
            extra["objective"] = to_dict(from_dict(ObjectiveConfig, self._part("objective")))
        own = {k: v for k, v in self._part("estimator").items() if v is None or isinstance(v, int)}
        return rundir.save_model(path, self.model, **extra, estimator=own,
                                 **({"plugins": needed} if needed else {}))
