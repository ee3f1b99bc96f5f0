"""One readable training loop: Adam with an lr schedule, any registered model, any objective, a run folder.

It knows nothing about the model beyond the contract (``elbo_parts`` / ``log_weights`` via the
objective) and ``model.capabilities``. The pieces: ``epoch.py`` (the steps; non-finite ones are skipped
and counted, too many in a row abort with a clear message, leaving the last good checkpoint in place),
``schedule.py`` (lr), ``callbacks.py`` (early stopping, time budget, TensorBoard), ``checkpoint.py``
(save / resume) and ``distributed.py`` (DistributedDataParallel under torchrun).
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from .. import rundir
from ..config import to_dict
from ..data import Dataset, info_dict
from ..device import pick_device  # noqa: F401  (re-exported: vaelab.train.pick_device)
from ..models import LatentModel
from ..objectives import Objective, ObjectiveConfig
from . import callbacks as cbs, checkpoint, distributed
from .adam import Adam
from .config import TrainConfig, TrainingDiverged
from .epoch import Trainer, steps_per_epoch, train_epoch
from .precision import Precision, check_precision
from .schedule import make_scheduler
from .scoring import check_data_for_model, score, scores_finite

__all__ = ["TrainConfig", "TrainingDiverged", "check_data_for_model", "fit", "pick_device", "score"]
Row = dict[str, Any]
LOG = logging.getLogger("vaelab.train")  # one INFO line per epoch when there is no bar (the CLI shows them)


def fit(model: LatentModel, train: Dataset, val: Dataset | None = None,
        objective: ObjectiveConfig = ObjectiveConfig(), cfg: TrainConfig = TrainConfig(),
        run_dir: str | Path | None = None, resume: bool = False,
        extra_config: dict[str, Any] | None = None,
        callbacks: list[cbs.Callback] | None = None) -> list[Row]:
    """Train ``model`` in place; returns one metrics row per epoch (also in run_dir/metrics.jsonl).

    ``callbacks`` (after those ``cfg`` asks for: early stopping, max_minutes) see each row on rank 0 and
    may stop training (callbacks.py). Under torchrun (or in an initialised process group) every rank
    trains on its share of each global batch of world_size * batch_size examples; only rank 0 writes the
    run folder (see distributed.py)."""
    check_data_for_model(model, train)
    device, rank, world = distributed.setup(pick_device(cfg.device))  # rank 0 of 1 without torchrun
    check_precision(cfg.precision, device)
    torch.manual_seed(cfg.seed + rank)  # model noise (posterior samples) differs across ranks
    model.to(device)
    run = Path(run_dir) if run_dir is not None else None
    out = run if rank == 0 else None  # where to write: rank 0 only
    with rundir.writing(out) if out is not None else nullcontext():  # one writer at a time (RUN/.lock)
        if out is not None:
            rundir.recover(out)  # finish or undo a commit a crash interrupted
        return _fit(model, train, val, objective, cfg, run, out, resume, extra_config, callbacks,
                    device, rank, world)


def _fit(model: LatentModel, train: Dataset, val: Dataset | None, objective: ObjectiveConfig,
         cfg: TrainConfig, run: Path | None, out: Path | None, resume: bool,
         extra_config: dict[str, Any] | None, callbacks: list[cbs.Callback] | None,
         device: torch.device, rank: int, world: int) -> list[Row]:
    meta = {"data": info_dict(train.info), "train": to_dict(cfg), "objective": to_dict(objective),
            **({"world_size": world} if world > 1 else {}), **(extra_config or {})}
    monitor = _monitor(cfg, model, val)
    calls = [*cbs.from_config(cfg, monitor, out), *(callbacks or [])] if rank == 0 else []
    if not model.capabilities.trainable:  # closed form (PCA)
        return [_fit_closed_form(model, train, val, out, meta, calls, device)]

    if cfg.output_init and model.fresh and not resume:  # p(x|z) starts at the data's mean
        model.start_at_mean(train.mean())
    model.fresh = False  # trained from here on: a later fit continues, never re-starts, its outputs
    t = make_trainer(model, objective, cfg, len(train), device, rank, world)
    try:
        return _train(model, train, val, t, run, out, resume, meta, calls, device)
    finally:
        t.precision.close()  # no autocast hooks left on the model


def make_trainer(model: LatentModel, objective: ObjectiveConfig, cfg: TrainConfig, n_train: int,
                 device: torch.device, rank: int = 0, world: int = 1) -> Trainer:
    """The objective, Adam, the lr schedule and the precision for training ``model`` (on ``device``) on
    ``n_train`` examples; ``trainer.precision.close()`` when done (bf16 / fp16 put hooks on the model)."""
    obj = Objective(model, objective, n_data=n_train).to(device)  # n_data: beta-tc's estimate of q(z)
    if cfg.channels_last:  # 4-D (conv) weights to NHWC, in place; convolutions then run NHWC end to end
        model.to(memory_format=torch.channels_last)
    # fused: one kernel for the whole Adam update instead of ~10 ops per parameter tensor; adam.Adam is
    # torch.optim.Adam without the torch._dynamo import (~2 s a process) and with a leaner step
    opt = Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps, fused=device.type in ("cpu", "cuda") or None)
    spe = steps_per_epoch(n_train, cfg.batch_size, world)
    step_fn = distributed.wrap(obj, device)
    return Trainer(obj, step_fn, opt, make_scheduler(opt, cfg, spe), cfg, rank, world, spe,
                   Precision(cfg.precision, model, device), compiled=torch.compile(step_fn) if cfg.compile else None)


def _train(model: LatentModel, train: Dataset, val: Dataset | None, t: Trainer, run: Path | None,
           out: Path | None, resume: bool, meta: dict[str, Any], calls: list[cbs.Callback],
           device: torch.device) -> list[Row]:
    cfg, rank = t.cfg, t.rank
    spe = t.steps_per_epoch
    gen = torch.Generator().manual_seed(cfg.seed)
    start, history = checkpoint.resume(run, model, t, gen, device) if resume else (0, [])
    for cb in calls:  # early stopping continues from the rows so far
        if isinstance(cb, cbs.EarlyStopping):
            for row in history:
                cb.observe(row)

    show_bar = cfg.progress and rank == 0  # else one logged line per epoch (the CLI prints them)
    bar = _progress(show_bar, total=(cfg.epochs - start) * spe, desc=model.name)
    for epoch in range(start, cfg.epochs):
        bar.set_description(f"{model.name} epoch {epoch + 1}/{cfg.epochs}", refresh=False)
        row = train_epoch(t, train, gen, epoch, device, bar)
        if val is not None and rank == 0:  # the weights are the same on every rank: validate once
            row.update({f"val_{k}": v for k, v in score(model, val).items()})
        _check_finite(model, row, train if val is None and t.bad_in_a_row else None, t, epoch, device)
        stop = cbs.run_all(calls, row, model)
        bar.set_postfix({k: f"{row[k]:.2f}" for k in ("loss", "val_elbo") if k in row})
        if not show_bar and rank == 0:
            LOG.info(cbs.epoch_line(row, cfg.epochs, model.capabilities.likelihood))
        history.append(row)
        stop = not distributed.all_agree(not stop, device)  # a stop on rank 0 stops every rank
        if out is not None and (stop or _commit_due(cfg, epoch)):  # rows, weights, trainer state: one commit
            checkpoint.commit(out, model, meta, history, epoch + 1, t, gen)
        if stop:
            break
    bar.close()
    model.eval()
    return history


def _commit_due(cfg: TrainConfig, epoch: int) -> bool:
    """Whether 0-based ``epoch`` is committed: every ``checkpoint_every``-th epoch and the last one."""
    return (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs


def _monitor(cfg: TrainConfig, model: LatentModel, val: Dataset | None) -> str:
    """The early-stopping metric ("auto": val_elbo, or val_mse without a likelihood); checks val exists."""
    monitor = cfg.monitor
    if monitor == "auto":
        monitor = "val_elbo" if model.capabilities.likelihood else "val_mse"
    if cfg.early_stopping and monitor.startswith("val_") and val is None:
        raise ValueError(f"early_stopping={cfg.early_stopping} monitors {monitor!r} but no validation data "
                         "was given: pass val, or monitor='loss'")
    return monitor


def _fit_closed_form(model: LatentModel, train: Dataset, val: Dataset | None, out: Path | None,
                     meta: dict[str, Any], calls: list[cbs.Callback], device: torch.device) -> Row:
    model.fit_closed_form(train.x.to(device))
    row = {"epoch": 1, **{f"val_{k}": v for k, v in (score(model, val) if val else {}).items()}}
    cbs.run_all(calls, row, model)
    if out is not None:
        checkpoint.commit(out, model, meta, [row], 1)
    return row


def _check_finite(model: LatentModel, row: Row, probe: Dataset | None, t: Trainer, epoch: int,
                  device: torch.device) -> None:
    """Raise on every rank when rank 0's scores are NaN/Inf (before anything is checkpointed)."""
    finite = t.rank > 0 or scores_finite(model, row, probe)
    if not distributed.all_agree(finite, device):
        raise TrainingDiverged(
            f"the model's scores are NaN/Inf after epoch {epoch + 1} ({t.bad_in_a_row} non-finite steps at its "
            f"end): a step broke the weights. Try a lower lr (now {t.cfg.lr}) or grad_clip; "
            + (f"the last good checkpoint (epoch {epoch}) was kept." if epoch else "nothing was saved."))


def _progress(enabled: bool, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)

