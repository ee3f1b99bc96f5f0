"""An estimator's parameters: generated from the model's config, the objective and the training settings.

``parameters(name)`` lists them as (parameter, source, config field, default); the sources are ``model``
(the model's config fields), ``objective`` (ObjectiveConfig), ``data`` (binarize), ``train`` (TrainConfig)
and ``estimator`` (random_state, score_k: the estimator's own). ``resolve_likelihood`` is the documented
rule behind ``likelihood="auto"``.
"""
from __future__ import annotations

import dataclasses
import inspect
import numbers
from typing import Any

import numpy as np

from ..config import field_default
from ..models import DATA_FIELDS, model_class
from ..objectives import ObjectiveConfig
from ..train.loop import TrainConfig

Param = tuple[str, str, str, Any]                  # (parameter, source, config field, default)
API_DEFAULTS = {"epochs": 20}                       # estimator defaults that differ from TrainConfig's
SCORE_K = 100                                       # importance samples per example in score_samples
AUTO = "auto"                                       # likelihood="auto": chosen from X at fit (below)


def resolve_likelihood(value: str, x_min: float, x_max: float) -> str:
    """``likelihood="auto"``: "bernoulli" when every value of X lies in [0, 1] (binary data, or grey levels
    read as probabilities such as MNIST / 255), "gaussian" (fixed ``sigma``) otherwise, e.g. after a
    StandardScaler. Any other value is returned as given (the model config checks it)."""
    if value != AUTO:
        return value
    return "bernoulli" if 0.0 <= x_min and x_max <= 1.0 else "gaussian"


def parameters(model_name: str) -> list[Param]:
    """An estimator's parameters for a registered model: (name, source, config field, default).

    The model's config fields (but input_shape and n_classes, from the data; ``likelihood`` defaults to
    "auto"); for a trainable model with a likelihood the ObjectiveConfig fields (``kind`` as
    ``objective``) and ``binarize``; for a trainable model the TrainConfig fields (``progress`` as
    ``verbose``, default False; ``seed`` as ``random_state``; ``epochs`` 20); ``score_k`` for a model scored
    by importance sampling; ``random_state`` for every model. A model field whose name is taken is
    ``model_<field>``."""
    cls = model_class(model_name)
    caps = cls.capabilities
    objective = caps.likelihood and caps.trainable  # PCA (closed form) takes only its model fields
    sampled = caps.likelihood and not caps.exact_likelihood
    out: list[Param] = []
    taken: set[str] = set()
    later = {"random_state", "score_k"}
    if objective:
        later |= {f.name for f in dataclasses.fields(ObjectiveConfig)} | {"objective", "binarize"}
    if caps.trainable:
        later |= {f.name for f in dataclasses.fields(TrainConfig)} | {"verbose"}
    for f in dataclasses.fields(cls.Config):
        if f.name not in DATA_FIELDS:
            name = f"model_{f.name}" if f.name in later else f.name
            default = field_default(f, inspect.Parameter.empty)
            if f.name == "likelihood" and caps.likelihood:
                default = AUTO
            out.append((name, "model", f.name, default))
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
            if f.name in ("progress", "seed"):
                continue
            name = f"train_{f.name}" if f.name in taken else f.name
            out.append((name, "train", f.name, API_DEFAULTS.get(f.name, field_default(f, inspect.Parameter.empty))))
        out.append(("verbose", "train", "progress", False))
    if sampled:
        out.append(("score_k", "estimator", "score_k", SCORE_K))
    out.append(("random_state", "estimator", "random_state", 0))
    return out



def signature(params: list[Param]) -> inspect.Signature:
    """``__init__(self, <required>, <optional>=default, ...)`` for scikit-learn's get_params."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    args = [inspect.Parameter("self", kind)]
    required = [inspect.Parameter(n, kind) for n, _, _, d in params if d is inspect.Parameter.empty]
    optional = [inspect.Parameter(n, kind, default=d) for n, _, _, d in params if d is not inspect.Parameter.empty]
    return inspect.Signature(args + required + optional)



def seed_of(random_state: Any, what: str = "random_state") -> int:
    """An int seed from scikit-learn's random_state: an int as it is, a RandomState's next draw, None a
    fresh draw from numpy's global RNG."""
    if random_state is None or isinstance(random_state, np.random.RandomState):
        rng = np.random.mtrand._rand if random_state is None else random_state
        return int(rng.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool) and random_state >= 0:
        return int(random_state)
    raise ValueError(f"{what}={random_state!r} must be None, an integer >= 0 or a numpy RandomState")
