"""Train a registered model on a named dataset into a run folder (what ``vaelab train`` does)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .. import rundir
from ..data import Dataset, load_dataset, load_from_info, split_validation
from ..models import LatentModel, build_model, config_fields, model_class, plugins as model_plugins
from ..objectives import ObjectiveConfig
from .loop import TrainConfig, fit


def model_params_for(name: str, data: Dataset, given: dict[str, Any]) -> dict[str, Any]:
    """Constructor args from the data (input shape, classes) plus the options the user set.

    An option the model does not take is an error naming it and the ones it does take."""
    fields = config_fields(name)
    unknown = sorted(k for k, v in given.items() if v is not None and k not in fields)
    if unknown:
        raise ValueError(f"option(s) {unknown} do not apply to model {name!r}; "
                         f"it takes: {sorted(fields - {'input_shape', 'n_classes'})}")
    params = {k: v for k, v in given.items() if v is not None}
    params["input_shape"] = data.info.shape
    if model_class(name).conditional:
        if not data.info.n_classes:
            raise ValueError(f"model {name!r} is conditional but data {data.info.name!r} has no labels")
        params["n_classes"] = data.info.n_classes
    return params


def train_run(model: str, data: str, out: str | Path | None, model_options: dict[str, Any],
              train_cfg: TrainConfig = TrainConfig(), objective: ObjectiveConfig = ObjectiveConfig(),
              data_dir: str | Path | None = None, binarize: str = "none", size: int | None = None,
              val_fraction: float = 0.1, resume: bool = False,
              plugins: Sequence[str] = ()) -> tuple[LatentModel, list[dict[str, Any]]]:
    """Load data, build (or resume) the model, train it; returns the model and per-epoch metrics.

    ``plugins``: modules to import first (models from outside vaelab); config.json records the ones
    the model needs under "plugins", so ``vaelab.load`` can import them again."""
    model_plugins.load_plugins(plugins)
    if resume:
        if out is None:
            raise ValueError("--resume needs --out RUN (the run folder to continue)")
        saved = rundir.read_config(out)
        if saved["model"] != model:
            raise ValueError(f"cannot resume run {str(out)!r}: it holds model {saved['model']!r}, not {model!r}")
        full = load_from_info(saved["data"], "train", data_dir)
        net = rundir.load(out)
    else:
        full = load_dataset(data, "train", data_dir=data_dir, binarize=binarize, size=size)
        torch.manual_seed(train_cfg.seed)  # the seed also fixes the initial weights
        net = build_model(model, **model_params_for(model, full, model_options))
    train, val = split_validation(full, val_fraction, seed=train_cfg.seed)
    needed = model_plugins.modules_for(net.name)
    history = fit(net, train, val, objective, train_cfg, run_dir=out, resume=resume,
                  extra_config={"val_fraction": val_fraction, **({"plugins": needed} if needed else {})})
    return net, history
