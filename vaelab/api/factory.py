"""One estimator class per registered model (plugins included), made once; and a run folder back as a
fitted estimator (``load_estimator``)."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from .. import rundir
from ..data import info_from_dict
from ..models import REGISTRY, model_class, plugins
from .estimator import Estimator
from .params import parameters, signature

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

    __init__.__signature__ = signature(params)  # type: ignore[attr-defined]  (what scikit-learn reads)
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


def _saved_value(cfg: dict[str, Any], model: Any, source: str, field: str, default: Any) -> Any:
    """A parameter's value as a run folder recorded it (the default where it did not)."""
    if source == "model":
        return getattr(model.config, field)
    if source == "data":
        return (cfg.get("data") or {}).get(field, default)
    if source == "train" and field == "progress":
        return False
    section = {"objective": "objective", "train": "train", "estimator": "estimator"}[source]
    saved = cfg.get(section) or {}
    if field == "random_state":
        return saved.get("random_state", (cfg.get("train") or {}).get("seed", default))
    return saved.get(field, default)


def load_estimator(run: str | Path, device: str | torch.device = "cpu") -> Estimator:
    """The fitted estimator of a run folder (from ``vaelab train`` or ``Estimator.save``): ``transform``,
    ``score_samples``, ``sample`` ... work at once; its parameters are the ones the run recorded, so
    ``clone(est).fit(X)`` trains the same configuration again. Outputs have the model's example shape."""
    cfg = rundir.read_config(run)
    model = rundir.load(run, device)
    cls = estimator(model.name)
    est = cls(**{name: _saved_value(cfg, model, src, field, default) for name, src, field, default in cls._params})
    est.model_ = model
    est.info_ = info_from_dict(cfg["data"]) if cfg.get("data") else None
    est.history_ = rundir.read_metrics(run)
    est.x_shape_ = model.input_shape
    est.n_features_in_ = math.prod(model.input_shape)
    est.seed_ = int((cfg.get("train") or {}).get("seed", 0))
    if hasattr(model.config, "likelihood") and "likelihood" in est.get_params():
        est.likelihood_ = model.config.likelihood
    return est
