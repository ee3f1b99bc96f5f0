"""Data-parallel training with torch.distributed: the few collectives ``train.fit`` needs.

Launch any ``vaelab train`` under torchrun and ``fit`` trains on every rank:

    torchrun --nproc-per-node 2 -m vaelab train --model vae --data mnist --batch-size 64 --out runs/ddp

``--batch-size`` is per rank (the torch convention): one step uses world_size * batch_size examples.
With one process (no torchrun, no process group) every helper here is a no-op.

How: ``fit`` wraps the ``objectives.Objective`` module (which holds the model) in
``DistributedDataParallel`` (gloo on cpu, nccl on cuda). Its constructor broadcasts rank 0's weights, and
its hooks average the gradients over the ranks during ``backward``. Two details make the result equal one
process on the global batch:

* ranks may get one example more than others (``tensor_split``): each rank's batch-mean loss is scaled
  by world * n_rank / n_global before backward (``weighted_shards``), so DDP's mean is the global mean;
* the Objective's zero ``probe`` parameter receives each rank's loss as its gradient, so DDP's all-reduce
  also yields the global loss: a NaN/Inf on any rank is seen on every rank, and all skip that step.
"""
from __future__ import annotations

import atexit
import os
from collections.abc import Iterable, Iterator
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn

Batch = tuple[Tensor, "Tensor | None"]


def active() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    """True on rank 0 (or when not distributed): the process that prints and writes files. Before the
    process group exists (e.g. checking the run folder under torchrun), torchrun's RANK says it."""
    if active():
        return dist.get_rank() == 0
    return int(os.environ.get("WORLD_SIZE") or 1) <= 1 or int(os.environ.get("RANK") or 0) == 0


def setup(device: torch.device) -> tuple[torch.device, int, int]:
    """(device, rank, world_size). Joins the group torchrun describes (env WORLD_SIZE > 1) unless a
    process group is already initialised; each rank uses cuda:LOCAL_RANK when ``device`` is plain cuda.

    Backend: nccl on cuda, gloo on cpu. Returns (device, 0, 1) in a plain single process."""
    if not dist.is_available():
        return device, 0, 1
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device, 0, 1
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"distributed training runs on device cpu (gloo) or cuda (nccl), not {str(device)!r}")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=10))
        atexit.register(dist.destroy_process_group)  # we made it, we close it
    return device, dist.get_rank(), dist.get_world_size()


def wrap(objective: nn.Module, device: torch.device) -> nn.Module:
    """``objective`` in DistributedDataParallel inside a process group of several ranks, else itself.

    Every trainable parameter must get a gradient each step (true of every registered model's objective;
    DDP's find_unused_parameters is off: it would traverse the autograd graph every step)."""
    if not active():
        return objective
    from torch.nn.parallel import DistributedDataParallel

    ids = [device] if device.type == "cuda" else None
    return DistributedDataParallel(objective, device_ids=ids, output_device=ids[0] if ids else None)


def shard(batches: Iterable[Batch], rank: int, world: int) -> Iterator[Batch]:
    """This rank's contiguous part of each global batch (sizes differ by at most one).

    Every rank draws the same global batches (same permutation and binarization bits from the shared
    seed), so the ranks see disjoint examples whose union is the single-process batch. A last global
    batch with fewer than ``world`` examples is dropped: every rank needs at least one example."""
    if world == 1:  # the whole batch (no split views made every step)
        yield from batches
        return
    for xb, yb in batches:
        if len(xb) < world:
            continue
        yield xb.tensor_split(world)[rank], None if yb is None else yb.tensor_split(world)[rank]


def weighted_shards(batches: Iterable[Batch], rank: int,
                    world: int) -> Iterator[tuple[Tensor, "Tensor | None", float]]:
    """``shard`` plus each shard's loss scale world * n_rank / n_global (1.0 with one process): DDP
    averages the ranks' gradients, so the scaled batch means average to the mean over the global batch."""
    for xb, yb in batches:
        for part_x, part_y in shard([(xb, yb)], rank, world):
            yield part_x, part_y, world * len(part_x) / len(xb)


def sum_over_ranks(acc: Tensor, n: int) -> tuple[Tensor, int]:
    """(acc, n) summed over all ranks: epoch metrics that cover every rank's examples."""
    if not active():
        return acc, n
    buf = torch.cat([acc, acc.new_tensor([n])])
    dist.all_reduce(buf)
    return buf[:-1], int(buf[-1])


def all_agree(flag: bool, device: torch.device) -> bool:
    """True only when ``flag`` is True on every rank (so all ranks raise, or none does)."""
    if not active():
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())
