"""One training epoch: optimisation steps that skip non-finite updates, and the epoch's metrics row."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..data import dequantize, Dataset
from ..objectives import Objective
from . import distributed
from .config import TrainConfig, TrainingDiverged
from .precision import Precision


@dataclass
class Trainer:
    """What the steps need: the objective (``step_fn``: the Objective, or it wrapped in
    DistributedDataParallel), Adam over the model's parameters, the lr scheduler, and the run's shape."""
    objective: Objective
    step_fn: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    cfg: TrainConfig
    rank: int
    world: int
    steps_per_epoch: int
    precision: Precision    # autocast around the networks in the forward; GradScaler for fp16
    skipped: int = 0        # non-finite steps so far (the rows report this running count)
    bad_in_a_row: int = 0   # consecutive non-finite steps (reset by a good one)
    compiled: nn.Module | None = None  # torch.compile(step_fn) with cfg.compile: used once the KL weight is constant
    params: list[nn.Parameter] = field(init=False)  # the trained parameters (listed once, not every step)
    grad_params: list[nn.Parameter] = field(init=False)  # every parameter of the objective (probe included)

    def __post_init__(self) -> None:
        self.params = [p for p in self.objective.model.parameters() if p.requires_grad]
        self.grad_params = list(self.objective.parameters())

    def forward_fn(self, epoch: float) -> nn.Module:
        """The compiled step once the KL warm-up is over (compiled code specialises on the KL weight, a
        Python float: compiling during warm-up would recompile every step), else ``step_fn``."""
        if self.compiled is not None and epoch >= self.objective.cfg.warmup:
            return self.compiled
        return self.step_fn


def steps_per_epoch(n: int, batch_size: int, world: int) -> int:
    """Steps ``distributed.shard`` yields: global batches of batch_size * world, without a last one too
    small to give every rank an example."""
    full, last = divmod(n, batch_size * world)
    return full + (1 if last >= world else 0)


def finite_probe(grads: list[torch.Tensor]) -> torch.Tensor:
    """A scalar that is NaN/Inf when any gradient holds NaN/Inf: the sum of all gradients (one read of
    each, no squares: cheaper than their norm, and no overflow below |g| ~ 1e38 / numel)."""
    if not grads:
        return torch.zeros(())
    return torch.stack([g.sum() for g in grads]).sum()


def _step(t: Trainer, xb: torch.Tensor, yb: torch.Tensor | None, epoch: float, scale: float,
          epoch_index: int):
    """One Adam step (or a skipped one); returns (terms, global mean loss) or None when skipped."""
    for p in t.grad_params:  # the model's gradients and the loss probe's (a list: no module walk a step)
        p.grad = None
    with t.precision.autocast():  # fp32, or the networks under autocast (terms stay fp32)
        terms = t.forward_fn(epoch)(xb, yb, epoch, scale=scale)
    t.precision.check_terms(terms, t.objective.model.name)  # likelihood and KL in fp32 (a dtype check)
    scaler = t.precision.scaler  # fp16 only: the loss is scaled up, the gradients back down
    (scaler.scale(terms.loss) if scaler else terms.loss).backward()  # non-finite: skipped below
    loss = t.objective.loss_seen()  # mean over all ranks' examples (identical on every rank)
    if scaler:
        loss = loss / scaler.get_scale()  # the probe's gradient was scaled too (exact: a power of 2)
        scaler.unscale_(t.opt)
    params = t.params
    if t.cfg.grad_clip:
        norm = torch.nn.utils.clip_grad_norm_(params, t.cfg.grad_clip, foreach=True)
    else:
        norm = finite_probe([p.grad for p in params if p.grad is not None])
    if not bool(torch.isfinite(loss + norm)):  # NaN/Inf in either (inf - inf is NaN); one host sync a step
        if scaler:
            scaler.update()  # an overflow: the next step's loss scale is halved
        t.skipped, t.bad_in_a_row = t.skipped + 1, t.bad_in_a_row + 1
        if t.bad_in_a_row >= t.cfg.max_bad_steps:
            raise TrainingDiverged(
                f"{t.bad_in_a_row} non-finite steps in a row at epoch {epoch_index + 1}: the loss or gradients "
                f"are NaN/Inf. Try a lower lr (now {t.cfg.lr}), grad_clip, or check the data; "
                "the last good checkpoint was kept.")
        return None
    t.bad_in_a_row = 0
    if scaler:
        scaler.step(t.opt)
        scaler.update()
    else:
        t.opt.step()
    return terms, loss


def _dequantized(batches: Any, levels: int | None, gen: torch.Generator) -> Any:
    """Each batch x = k / (L - 1) as y = (k + u) / L with u ~ U[0, 1) drawn from ``gen`` (on the CPU)."""
    if not levels:
        raise ValueError("dequantize=True needs data that take fixed levels (8-bit images, digits, binary); "
                         "this data set is continuous")
    for xb, yb in batches:
        u = torch.rand(xb.shape, generator=gen).to(xb.device, xb.dtype)  # (B, *shape)
        yield dequantize(xb, u, levels), yb


def train_epoch(t: Trainer, train: Dataset, gen: torch.Generator, epoch: int, device: torch.device,
                bar: Any) -> dict[str, Any]:
    """Steps over one shuffled pass of ``train``; returns the row without validation scores."""
    t.step_fn.train()
    # (loss * batch, elbo, recon, kl) summed on the device, read back once per epoch
    t0, acc, n_seen = time.perf_counter(), torch.zeros(4, dtype=torch.float64, device=device), 0
    lr = t.opt.param_groups[0]["lr"]  # the lr of the epoch's first step
    # uint8 data becomes float on the batch; crops, flips and dynamic-binarization bits are drawn from gen
    global_batches = train.batches(t.cfg.batch_size * t.world, generator=gen, device=device, train=True)
    if t.cfg.dequantize:
        global_batches = _dequantized(global_batches, train.info.levels, gen)
    for i, (xb, yb, scale) in enumerate(distributed.weighted_shards(global_batches, t.rank, t.world)):
        done = _step(t, xb, yb, epoch + i / t.steps_per_epoch, scale, epoch)
        t.sched.step()  # every step, skipped or not: the lr follows the (fractional) epoch
        bar.update(1)
        if done is None:
            continue
        terms, loss = done
        b = len(xb)
        n_seen += b
        with torch.no_grad():
            acc += torch.stack([loss * b, terms.elbo.sum(), terms.recon.sum(), terms.kl.sum()]).to(acc)
    acc, n_seen = distributed.sum_over_ranks(acc, n_seen)  # all ranks' examples
    secs = time.perf_counter() - t0  # training steps only: validation is not timed
    sums = dict(zip(("loss", "elbo", "recon", "kl"), acc.tolist()))
    return {"epoch": epoch + 1, **{k: v / n_seen if n_seen else math.nan for k, v in sums.items()},
            "skipped_steps": t.skipped, "seconds": secs, "examples_per_s": n_seen / secs,
            "lr": lr}
