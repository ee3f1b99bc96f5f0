"""The learning-rate schedule: a ``LambdaLR`` stepped once per optimisation step.

At step s (0-based, counted over the whole run) the fractional epoch is e = s / steps_per_epoch and

    lr(e) = warm(e) * decay(e)
    warm(e)  = min(1, (e + 1 / steps_per_epoch) / lr_warmup)       (1 without warm-up; never 0)
    decay(e) = lr                                                  constant
               max(lr_min, lr * lr_gamma ** e)                     exponential (smooth, per epoch)
               max(lr_min, lr * lr_gamma ** floor(e / lr_step))    step
               lr_min + (lr - lr_min) * (1 + cos(pi * min(1, e / epochs))) / 2    cosine
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .config import TrainConfig


def lr_at(cfg: TrainConfig, epoch: float, steps_per_epoch: int = 1) -> float:
    """The scheduled learning rate at fractional ``epoch`` (see the module docstring)."""
    if cfg.lr_schedule == "exponential":
        decay = max(cfg.lr_min, cfg.lr * cfg.lr_gamma ** epoch)
    elif cfg.lr_schedule == "step":
        decay = max(cfg.lr_min, cfg.lr * cfg.lr_gamma ** math.floor(epoch / cfg.lr_step + 1e-9))
    elif cfg.lr_schedule == "cosine":
        decay = cfg.lr_min + (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * min(1.0, epoch / cfg.epochs))) / 2
    else:
        decay = cfg.lr
    if cfg.lr_warmup > 0:
        decay *= min(1.0, (epoch + 1 / steps_per_epoch) / cfg.lr_warmup)
    return decay


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR over ``opt`` (whose lr must be ``cfg.lr``) giving ``lr_at`` at every step."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_at(cfg, step / steps_per_epoch, steps_per_epoch) / cfg.lr)


def restore_scheduler(sched: torch.optim.lr_scheduler.LambdaLR, state: dict[str, Any] | None,
                      cfg: TrainConfig, start_step: int) -> None:
    """Continue ``sched`` from a saved ``state_dict`` (or, for a trainer.pt from before schedules existed,
    from ``start_step``). The peak lr is the one asked for now (``cfg.lr``), not the saved one."""
    if state is not None:
        sched.load_state_dict(state)
    else:
        sched.last_epoch = start_step
    sched.base_lrs = [cfg.lr for _ in sched.base_lrs]
    lrs = [base * fn(sched.last_epoch) for base, fn in zip(sched.base_lrs, sched.lr_lambdas)]
    for group, lr in zip(sched.optimizer.param_groups, lrs):
        group["initial_lr"], group["lr"] = cfg.lr, lr
    sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]  # what get_last_lr() reports
