"""The run folder during training: save an epoch's checkpoint, and resume from one."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .. import rundir
from ..models import LatentModel
from .epoch import Trainer
from .schedule import restore_scheduler


def log_row(run_dir: Path | None, row: dict[str, Any]) -> None:
    """Append one metrics row to run_dir/metrics.jsonl (nothing without a run folder)."""
    if run_dir is not None:
        with open(run_dir / rundir.METRICS, "a") as f:
            f.write(json.dumps(row) + "\n")


def save(out: Path, model: LatentModel, meta: dict[str, Any], t: Trainer, gen: torch.Generator,
         epoch: int) -> None:
    """Weights + config.json, then trainer.pt: Adam, the lr scheduler, the data generator, the epoch
    (tensors, dicts and numbers only: it is read back with weights_only=True)."""
    rundir.save_model(out, model, **meta)
    rundir.save_trainer(out, {"optimizer": t.opt.state_dict(), "scheduler": t.sched.state_dict(),
                              "generator": gen.get_state(), "epoch": epoch})


def resume(run: Path | None, model: LatentModel, t: Trainer, gen: torch.Generator,
           device: torch.device) -> tuple[int, list[dict[str, Any]]]:
    """Load the run's weights and trainer state into ``model`` / ``t`` / ``gen``; returns (epochs done,
    metrics rows so far). The lr asked for now replaces the saved one; the schedule continues."""
    if run is None:
        raise ValueError("resume=True needs a run_dir")
    state = rundir.load_trainer(run)
    model.load_state_dict(rundir.load(run, device).state_dict())
    t.opt.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"])
    start = int(state["epoch"])
    if t.cfg.epochs < start:
        raise ValueError(f"epochs={t.cfg.epochs} is below the {start} epochs run {str(run)!r} already has; "
                         f"pass epochs > {start} to continue it")
    restore_scheduler(t.sched, state.get("scheduler"), t.cfg, start * t.steps_per_epoch)
    return start, rundir.read_metrics(run)
