"""The run folder during training: commit an epoch's checkpoint, and resume from one.

An epoch is committed whole (weights, config, trainer state and the metrics rows so far, then one rename
of RUN/checkpoint.json: see ``rundir.commit_epoch``), so a crash anywhere leaves the previous epoch or this
one, never a mix. ``VAELAB_TEST_KILL_AT=n`` (tests only) kills the process at the n-th file operation of
the commits it makes.
"""
from __future__ import annotations

import math
import os
import signal
from pathlib import Path
from typing import Any

import torch

from .. import rundir
from ..models import LatentModel
from .epoch import Trainer
from .schedule import restore_scheduler

_ops = [0]


def _kill_hook() -> None:
    """Test hook: die (SIGKILL, like a killed job) at the n-th file operation when VAELAB_TEST_KILL_AT=n."""
    at = os.environ.get("VAELAB_TEST_KILL_AT")
    if not at:
        return
    _ops[0] += 1
    if _ops[0] == int(at):
        if hasattr(signal, "SIGKILL"):
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(137)


def commit(out: Path, model: LatentModel, meta: dict[str, Any], rows: list[dict[str, Any]], epoch: int,
           t: Trainer | None = None, gen: torch.Generator | None = None) -> None:
    """Commit epoch ``epoch``: weights + config.json, metrics.jsonl (``rows``), and for a trained model
    trainer.pt: Adam, the lr scheduler, the data generator, the epoch, fp16's loss scale (tensors, dicts and
    numbers only: it is read back with weights_only=True)."""
    trainer = None
    if t is not None and gen is not None:
        trainer = {"optimizer": t.opt.state_dict(), "scheduler": t.sched.state_dict(),
                   "generator": gen.get_state(), "epoch": epoch}
        if t.precision.scaler is not None:  # fp16: the loss scale reached so far
            trainer["scaler"] = t.precision.scaler.state_dict()
    rundir.commit_epoch(out, epoch, model, meta, rows, trainer, hook=_kill_hook)


def resume(run: Path | None, model: LatentModel, t: Trainer, gen: torch.Generator,
           device: torch.device) -> tuple[int, list[dict[str, Any]]]:
    """Load the run's weights and trainer state into ``model`` / ``t`` / ``gen``; returns (epochs done,
    metrics rows so far). The lr asked for now replaces the saved one; the schedule continues."""
    if run is None:
        raise ValueError("resume=True needs a run_dir")
    # (rank 0's fit has finished an interrupted commit: rundir.recover; other ranks only read)
    manifest = rundir.verify_commit(run, (rundir.WEIGHTS, rundir.TRAINER))
    state = rundir.load_trainer(run)
    path = str(run / rundir.TRAINER)
    start = check_trainer_state(path, state, t.opt, gen)
    if manifest is not None and start != manifest["epoch"]:
        raise ValueError(f"{path!r} holds epoch {start} but {rundir.MANIFEST} says epoch {manifest['epoch']}; "
                         "the run folder is inconsistent")
    model.load_state_dict(rundir.load(run, device).state_dict())
    t.opt.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"])
    if t.precision.scaler is not None and isinstance(state.get("scaler"), dict):
        t.precision.scaler.load_state_dict(state["scaler"])
    if t.cfg.epochs < start:
        raise ValueError(f"epochs={t.cfg.epochs} is below the {start} epochs run {str(run)!r} already has; "
                         f"pass epochs > {start} to continue it")
    restore_scheduler(t.sched, state.get("scheduler"), t.cfg, start * t.steps_per_epoch)
    rows = [r for r in rundir.read_metrics(run) if int(r.get("epoch", 0)) <= start]  # older runs appended
    return start, rows


def check_trainer_state(path: str, state: dict[str, Any], opt: torch.optim.Optimizer,
                        gen: torch.Generator) -> int:
    """Check a saved trainer state against the optimizer and generator it will be loaded into (a state of
    another model would crash the fused Adam step); returns its epoch. Any mismatch: ValueError naming
    ``path`` and the field."""
    def bad(field: str, why: str) -> ValueError:
        return ValueError(f"{path!r} does not fit this model: {field} {why} (is it another run's trainer.pt?)")

    for key in ("optimizer", "generator", "epoch"):
        if key not in state:
            raise bad(key, "is missing")
    epoch = state["epoch"]
    if isinstance(epoch, torch.Tensor) and epoch.numel() == 1:
        epoch = epoch.item()
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise bad("epoch", f"must be an integer >= 0, not {epoch!r}")
    saved = state["optimizer"]
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) \
            or not isinstance(saved.get("param_groups"), list):
        raise bad("optimizer", "is not an optimizer state (expected 'state' and 'param_groups')")
    groups = opt.param_groups
    if len(saved["param_groups"]) != len(groups):
        raise bad("optimizer.param_groups", f"has {len(saved['param_groups'])} group(s), the model {len(groups)}")
    params: dict[Any, torch.Tensor] = {}
    for i, (sg, g) in enumerate(zip(saved["param_groups"], groups)):
        ids = sg.get("params") if isinstance(sg, dict) else None
        if not isinstance(ids, list):
            raise bad(f"optimizer.param_groups[{i}]", "has no 'params' list")
        if len(ids) != len(g["params"]):
            raise bad(f"optimizer.param_groups[{i}].params",
                      f"lists {len(ids)} parameter(s), the model has {len(g['params'])}")
        params.update(zip(ids, g["params"]))
    for pid, entry in saved["state"].items():
        if pid not in params:
            raise bad(f"optimizer.state[{pid!r}]", "belongs to no parameter of the model")
        if not isinstance(entry, dict):
            raise bad(f"optimizer.state[{pid!r}]", "is not a dict")
        p = params[pid]
        for name, value in entry.items():
            field = f"optimizer.state[{pid!r}].{name}"
            if name == "step":
                if isinstance(value, torch.Tensor):
                    if value.numel() != 1:
                        raise bad(field, f"must be a scalar, not shape {tuple(value.shape)}")
                    value = value.item()
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                        or value < 0:
                    raise bad(field, f"must be a finite number >= 0, not {value!r}")
            elif isinstance(value, torch.Tensor):
                if value.shape != p.shape:
                    raise bad(field, f"has shape {tuple(value.shape)}, the parameter {tuple(p.shape)}")
                if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    raise bad(field, "holds NaN/Inf")
            elif value is not None and not isinstance(value, (int, float, bool)):
                raise bad(field, f"has an unexpected {type(value).__name__}")
    sched = state.get("scheduler")
    if sched is not None and not isinstance(sched, dict):
        raise bad("scheduler", f"must be a dict, not a {type(sched).__name__}")
    g_state, want = state["generator"], gen.get_state()
    if not isinstance(g_state, torch.Tensor) or g_state.dtype != want.dtype or g_state.shape != want.shape:
        raise bad("generator", f"must be a {want.dtype} tensor of shape {tuple(want.shape)}")
    return epoch
