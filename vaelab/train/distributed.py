"""Data-parallel training with torch.distributed: the few collectives ``train.fit`` needs.

Launch any ``vaelab train`` under torchrun and ``fit`` trains on every rank:

    torchrun --nproc-per-node 2 -m vaelab train --model vae --data mnist --batch-size 64 --out runs/ddp

``--batch-size`` is per rank (the torch convention): one step uses world_size * batch_size examples.
With one process (no torchrun, no process group) every helper here is a no-op.

Why no DistributedDataParallel wrapper: DDP averages gradients through hooks armed by the wrapped
module's ``forward``, but the objectives call ``model.elbo_parts`` / ``model.log_weights``, never
``forward``. So ``average_gradients`` all-reduces one flat buffer after ``backward`` instead: one
collective a step, explicit, and it carries the loss too, so every rank takes the same
skip-this-non-finite-step decision.
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
    """True on rank 0 (or when not distributed): the process that prints and writes files."""
    return not active() or dist.get_rank() == 0


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


def broadcast_parameters(model: nn.Module) -> None:
    """Every rank starts from rank 0's weights and buffers (as DDP does at wrap time)."""
    if active():
        for t in model.state_dict().values():  # tensors sharing storage with the model: updated in place
            dist.broadcast(t, src=0)


def shard(batches: Iterable[Batch], rank: int, world: int) -> Iterator[Batch]:
    """This rank's contiguous part of each global batch (sizes differ by at most one).

    Every rank draws the same global batches (same permutation and binarization bits from the shared
    seed), so the ranks see disjoint examples whose union is the single-process batch. A last global
    batch with fewer than ``world`` examples is dropped: every rank needs at least one example."""
    for xb, yb in batches:
        if len(xb) < world:
            continue
        yield xb.tensor_split(world)[rank], None if yb is None else yb.tensor_split(world)[rank]


def average_gradients(params: list[nn.Parameter], loss: Tensor, n: int) -> Tensor:
    """Replace each ``p.grad`` by the mean over all examples of all ranks; returns the global mean loss.

    Each rank's batch-mean gradient and loss are weighted by its ``n`` examples, so the result equals
    one process on the union of the batches. A NaN/Inf on any rank reaches every rank's loss and
    gradients: the non-finite check after this agrees everywhere. A parameter without a gradient here
    gets zeros (all ranks must contribute the same buffer layout)."""
    if not active():
        return loss
    grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads] + [loss.detach().reshape(1).to(grads[0]),
                                                       grads[0].new_ones(1)])  # (P + 2,)
    flat.mul_(n)
    dist.all_reduce(flat)                    # sums: weighted grads, weighted loss, total examples
    flat = flat[:-1] / flat[-1]
    offset = 0
    for p in params:
        p.grad = flat[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
    return flat[-1]


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
