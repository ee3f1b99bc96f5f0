"""Callbacks: ``on_epoch_end(row, model) -> bool | None`` after every epoch; True asks ``fit`` to stop.

``fit`` calls them on rank 0 only (the rank that validates and writes), in order, after the epoch's
metrics row is complete and before it is logged, so a callback may add keys to ``row`` (EarlyStopping
adds ``best_epoch``). When any callback asks to stop, every rank stops after that epoch's checkpoint.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from .. import rundir
from .config import TrainConfig

Row = dict[str, Any]


class Callback(Protocol):
    def on_epoch_end(self, row: Row, model: nn.Module) -> bool | None: ...


class TimeBudget:
    """Stop after the epoch during which ``minutes`` have passed: wall-clock time since this object was
    made, or with ``training_only`` the sum of the rows' ``seconds`` (training steps, not validation)."""

    def __init__(self, minutes: float, training_only: bool = False) -> None:
        if not minutes > 0:
            raise ValueError(f"minutes={minutes} must be > 0")
        self.minutes, self.training_only = minutes, training_only
        self.t0, self.trained_s = time.monotonic(), 0.0

    def elapsed_minutes(self) -> float:
        return (self.trained_s if self.training_only else time.monotonic() - self.t0) / 60

    def on_epoch_end(self, row: Row, model: nn.Module) -> bool:
        self.trained_s += float(row.get("seconds", 0.0))
        return self.elapsed_minutes() >= self.minutes


def higher_is_better(monitor: str) -> bool:
    """Log-likelihoods (names ending in elbo or recon) go up; losses, KL and MSE go down."""
    return monitor.endswith(("elbo", "recon"))


class EarlyStopping:
    """Stop when ``monitor`` has not improved for ``patience`` epochs; keep the best weights.

    The best epoch's weights are kept in ``best_state`` (CPU tensors) and, given ``run_dir``, written there
    as model_best.safetensors; every row gets ``best_epoch``. ``observe`` replays rows (on resume)."""

    def __init__(self, monitor: str, patience: int, run_dir: str | Path | None = None) -> None:
        if patience < 1:
            raise ValueError(f"patience={patience} must be >= 1")
        self.monitor, self.patience, self.run_dir = monitor, patience, run_dir
        self.sign = 1.0 if higher_is_better(monitor) else -1.0
        self.best, self.best_epoch, self.wait = -math.inf, 0, 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def observe(self, row: Row) -> bool:
        """Update the best value from ``row``; True when this row is the new best."""
        if self.monitor not in row:
            raise ValueError(f"early stopping monitors {self.monitor!r}, which the metrics do not have; "
                             f"they have: {sorted(row)}")
        value = self.sign * float(row[self.monitor])
        improved = math.isfinite(value) and value > self.best
        if improved:
            self.best, self.best_epoch, self.wait = value, int(row["epoch"]), 0
        else:
            self.wait += 1
        return improved

    def on_epoch_end(self, row: Row, model: nn.Module) -> bool:
        if self.observe(row):
            self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            if self.run_dir is not None:
                rundir.save_best(self.run_dir, model)
        row["best_epoch"] = self.best_epoch
        return self.wait >= self.patience


class TensorBoard:
    """Every numeric value of each row as a TensorBoard scalar (step = epoch) under ``log_dir``."""

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError("the TensorBoard callback needs the tensorboard package: "
                              "pip install 'vaelab[tensorboard]' (or pip install tensorboard)") from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def on_epoch_end(self, row: Row, model: nn.Module) -> None:
        for k, v in row.items():
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(k, v, int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def from_config(cfg: TrainConfig, monitor: str, run_dir: Path | None) -> list[Callback]:
    """The callbacks the config asks for (early stopping, time budget)."""
    out: list[Callback] = []
    if cfg.early_stopping:
        out.append(EarlyStopping(monitor, cfg.early_stopping, run_dir))
    if cfg.max_minutes:
        out.append(TimeBudget(cfg.max_minutes))
    return out


def epoch_line(row: Row, epochs: int, likelihood: bool = True) -> str:
    """One epoch as one line of text, e.g. 'epoch 3/10  train elbo -95.31 kl 12.4  val elbo -97.02 kl 12.11
    5120 examples/s' (nats per example); without a likelihood (autoencoder): train loss and val mse."""
    def part(prefix: str, keys: tuple[str, ...]) -> str:
        shown = [f"{k} {row[prefix + k]:.4g}" for k in keys if isinstance(row.get(prefix + k), (int, float))]
        return f"{prefix.rstrip('_') or 'train'} {' '.join(shown)}" if shown else ""

    train_keys, val_keys = (("elbo", "kl"), ("elbo", "kl")) if likelihood else (("loss",), ("mse",))
    parts = [f"epoch {row['epoch']}/{epochs}", part("", train_keys), part("val_", val_keys)]
    if "examples_per_s" in row:
        parts.append(f"{row['examples_per_s']:.0f} examples/s")
    return "  ".join(p for p in parts if p)


def run_all(callbacks: list[Callback], row: Row, model: nn.Module) -> bool:
    """Call every callback (none is skipped); True when any asks to stop."""
    stops = [bool(cb.on_epoch_end(row, model)) for cb in callbacks]
    return any(stops)
