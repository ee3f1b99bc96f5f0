"""Train a registered model on a named dataset into a run folder (what ``vaelab train`` does)."""
from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .. import rundir
from ..data import Dataset, load_dataset, load_from_info, split_validation
from ..models import DATA_FIELDS, LatentModel, build_model, config_fields, model_class, plugins as model_plugins
from ..objectives import ObjectiveConfig
from . import distributed
from .loop import TrainConfig, fit


def model_params_for(name: str, data: Dataset, given: dict[str, Any]) -> dict[str, Any]:
    """Constructor args from the data (input shape, classes) plus the options the user set.

    An option the model does not take is an error naming it and the ones it does take."""
    fields = config_fields(name)
    unknown = sorted(k for k, v in given.items() if v is not None and k not in fields)
    if unknown:
        raise ValueError(f"option(s) {unknown} do not apply to model {name!r}; "
                         f"it takes: {sorted(fields - DATA_FIELDS)}")
    params = {k: v for k, v in given.items() if v is not None}
    params["input_shape"] = data.info.shape
    if model_class(name).conditional:
        if not data.info.n_classes:
            raise ValueError(f"model {name!r} is conditional but data {data.info.name!r} has no labels")
        params["n_classes"] = data.info.n_classes
    return params


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))  # tuples -> lists, as config.json holds them


def resume_conflicts(saved: dict[str, Any], model_options: dict[str, Any],
                     data_options: dict[str, Any] | None = None) -> list[str]:
    """The options given now (not None) that contradict a saved run's config.json: model options against
    its model_config, data options (name, binarize, size, crop, flip, test_fraction) against its data; as
    'option: given X, run has Y'."""
    out = []
    saved_model = saved.get("model_config") or {}
    for k, v in model_options.items():
        if v is not None and k in saved_model and _plain(v) != _plain(saved_model[k]):
            out.append(f"{k}: given {_plain(v)!r}, the run has {saved_model[k]!r}")
    saved_data = saved.get("data") or {}
    for k, v in (data_options or {}).items():
        have = saved_data.get(k)
        if v is None or k not in saved_data or _plain(v) == _plain(have):
            continue
        if k == "name" and isinstance(have, str) and Path(str(v)).expanduser().resolve() == Path(have).resolve():
            continue
        out.append(f"{'data' if k == 'name' else k}: given {_plain(v)!r}, the run has {have!r}")
    return out


def train_run(model: str, data: str, out: str | Path | None, model_options: dict[str, Any],
              train_cfg: TrainConfig = TrainConfig(), objective: ObjectiveConfig = ObjectiveConfig(),
              data_dir: str | Path | None = None, binarize: str = "none", size: int | None = None,
              val_fraction: float = 0.1, resume: bool = False,
              plugins: Sequence[str] = (),
              overwrite: bool = False, crop: str = "center", flip: bool = False,
              test_fraction: float | None = None) -> tuple[LatentModel, list[dict[str, Any]]]:
    """Load data, build (or resume) the model, train it; returns the model and per-epoch metrics.

    An ``out`` that already holds a run is refused (``overwrite=False``, the default, like ``vaelab train``
    without --overwrite) unless ``resume`` (continue it: model options given must agree with it);
    ``overwrite=True`` removes vaelab's own files in it first.
    The folder is locked while training (a second writer is refused).

    ``plugins``: modules to import first (models from outside vaelab); config.json records the ones
    the model needs under "plugins", so ``vaelab.load`` can import them again. ``binarize``, ``size``,
    ``crop``, ``flip``, ``test_fraction``: how the data is read (``vaelab.data.load_dataset``)."""
    model_plugins.load_plugins(plugins)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other: pass one of them")
    writer = out is not None and distributed.is_main()
    with rundir.writing(out) if writer else contextlib.nullcontext():
        data_opts = {"binarize": binarize, "size": size, "crop": crop, "flip": flip, "test_fraction": test_fraction}
        return _train_run(model, data, out, model_options, train_cfg, objective, data_dir, data_opts,
                          val_fraction, resume, overwrite, writer)


def _train_run(model: str, data: str, out: str | Path | None, model_options: dict[str, Any],
               train_cfg: TrainConfig, objective: ObjectiveConfig, data_dir: str | Path | None,
               data_opts: dict[str, Any], val_fraction: float, resume: bool,
               overwrite: bool, writer: bool) -> tuple[LatentModel, list[dict[str, Any]]]:
    if writer and not resume and rundir.holds_run(out):
        if not overwrite:
            raise ValueError(f"{str(out)!r} already holds a trained run; pass --resume to continue it "
                             "or --overwrite to replace it")
        rundir.clear_run(out)
    if resume:
        if out is None:
            raise ValueError("--resume needs --out RUN (the run folder to continue)")
        saved = rundir.read_config(out)
        if saved["model"] != model:
            raise ValueError(f"cannot resume run {str(out)!r}: it holds model {saved['model']!r}, not {model!r}")
        conflicts = resume_conflicts(saved, model_options)
        if conflicts:
            raise ValueError(f"cannot resume run {str(out)!r} with other model options: {'; '.join(conflicts)} "
                             "(leave them out to continue it as it is)")
        full = load_from_info(saved["data"], "train", data_dir)
        net = rundir.load(out)
    else:
        full = load_dataset(data, "train", data_dir=data_dir, **data_opts)
        torch.manual_seed(train_cfg.seed)  # the seed also fixes the initial weights
        net = build_model(model, **model_params_for(model, full, model_options))
    train, val = split_validation(full, val_fraction, seed=train_cfg.seed)
    needed = model_plugins.modules_for(net.name)
    history = fit(net, train, val, objective, train_cfg, run_dir=out, resume=resume,
                  extra_config={"val_fraction": val_fraction, **({"plugins": needed} if needed else {})})
    return net, history
