"""vaelab's training step against a hand-written step of the same math, alternated in one process.

Model and data as bench/train_throughput.py (pytorch/examples/vae: MLP 784-400-20, ReLU, Bernoulli on MNIST
pixels in [0, 1], batch 128, Adam lr 1e-3). Both sides start from the same weights and see uint8 batches of
the same MNIST subset converted on the batch:

  vaelab        ``train.epoch.train_epoch`` over a trainer from ``train.loop.make_trainer``: the whole loop
                (batches, the objective with its distributions, the non-finite check, Adam, the lr schedule,
                the epoch's metric sums)
  hand-written  index_select + float / 255, two Linear-ReLU-Linear nets, reparameterized z,
                binary_cross_entropy_with_logits(sum) + closed-form KL, backward, torch.optim.Adam(fused=True)

Blocks of ``--steps`` steps alternate (vaelab, hand-written, vaelab, ...); the first pair is a warm-up and
the medians of the other ``--blocks - 1`` are compared. torch.profiler's count of top-level aten ops and
autograd nodes per step is printed for each side (dispatches: what the step's overhead is made of).

    VAELAB_DATA_DIR=/work/shared/data .venv/bin/python bench/step_vs_plain.py [--threads 1] [--steps 100] [--blocks 8]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_step import BATCH, LR, mnist_setup, trainer_for  # noqa: E402  (same model, data, trainer)


def plain_epoch_fn(model: torch.nn.Module, x_u8: torch.Tensor, steps: int) -> Callable[[], None]:
    """One epoch of ``steps`` hand-written steps on the linear layers of vaelab's ``model`` (its own copy of
    the weights, so both sides train from the same start)."""
    l1, l2, l3, l4 = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    opt = torch.optim.Adam([p for m in (l1, l2, l3, l4) for p in m.parameters()], LR, fused=True)
    flat = x_u8.reshape(len(x_u8), -1)  # (N, 784) uint8

    def epoch() -> None:
        perm = torch.randperm(len(flat))
        for i in range(steps):
            x = flat.index_select(0, perm[i * BATCH:(i + 1) * BATCH]).float().div_(255)  # (B, 784)
            opt.zero_grad(set_to_none=True)
            mu, logvar = l2(F.relu(l1(x))).chunk(2, -1)  # (B, 20) each
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            logits = l4(F.relu(l3(z)))  # (B, 784)
            loss = (F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
                    + 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum()) / len(x)
            loss.backward()
            opt.step()
    return epoch


def dispatches(fn: Callable[[], None], steps: int) -> dict[str, float]:
    """Top-level aten ops (called from Python or the autograd engine) and backward nodes, per step."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    n: Counter = Counter()
    for e in prof.events():
        parent = e.cpu_parent
        if e.name.startswith("aten::") and (parent is None or not parent.name.startswith("aten::")):
            n["aten ops"] += 1
        if e.name.startswith("autograd::engine") and "Backward" in e.name:
            n["backward nodes"] += 1
    return {k: v / steps for k, v in n.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--steps", type=int, default=100, help="steps per block (default 100)")
    p.add_argument("--blocks", type=int, default=8, help="blocks per side, the first a warm-up (default 8)")
    a = p.parse_args()
    full, gen, bar = mnist_setup(a.threads)
    from vaelab.train.epoch import train_epoch

    data = full.subset(torch.arange(a.steps * BATCH))
    x_u8 = full.storage.index_select(0, data.rows)  # the same examples, as stored (uint8)
    cpu = torch.device("cpu")
    with trainer_for(full, "fp32", a.steps) as t:
        plain = plain_epoch_fn(copy.deepcopy(t.objective.model), x_u8, a.steps)  # same start, own weights
        epochs = iter(range(10 ** 6))
        sides = {"vaelab": lambda: train_epoch(t, data, gen, next(epochs), cpu, bar), "hand-written": plain}
        ms: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(a.blocks):
            for name, fn in sides.items():
                t0 = time.perf_counter()
                fn()
                ms[name].append((time.perf_counter() - t0) / a.steps * 1e3)
        counts = {name: dispatches(fn, a.steps) for name, fn in sides.items()}
    med = {k: statistics.median(v[1:]) for k, v in ms.items()}
    print(f"torch {torch.__version__}, {a.threads} thread(s), {a.steps} steps x {a.blocks} alternated blocks "
          f"(the first pair a warm-up)")
    for name in sides:
        blocks = ", ".join(f"{v:.2f}" for v in ms[name])
        c = counts[name]
        print(f"  {name:13s} median {med[name]:6.2f} ms/step  [{blocks}]  "
              f"{c.get('aten ops', 0):.0f} aten ops + {c.get('backward nodes', 0):.0f} backward nodes per step")
    print(f"  vaelab / hand-written: {med['vaelab'] / med['hand-written']:.3f}")


if __name__ == "__main__":
    main()
