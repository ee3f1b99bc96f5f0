"""Where a training step's time goes: torch.profiler over vaelab's own training epoch, grouped.

Model and data as bench/train_throughput.py (pytorch/examples/vae: MLP 784-400-20, ReLU, Bernoulli on MNIST
pixels in [0, 1], batch 128, Adam lr 1e-3). The profiled code is vaelab's: ``train.loop.make_trainer`` and
``train.epoch.train_epoch`` (the step, the lr schedule, the metric sums) over ``--steps`` batches, after a
warm-up epoch of the same length. Batch creation is marked with ``record_function("data")`` around each
``next()`` of ``Dataset.batches``. Each profiled op's self CPU time goes to one group:

  GEMM         aten::addmm / mm / bmm / baddbmm / addbmm / matmul / linear (forward and backward)
  optimizer    anything under ``Optimizer.step`` (the fused Adam kernel), _foreach / adam ops (clipping)
  data         anything under the "data" marker (permutation slice, index_select, uint8 -> float)
  elementwise  every other aten:: op (activations, the likelihood, the KL, reductions, copies, fills)
  Python/other the rest of the wall time: the interpreter, autograd's engine, the dispatcher, ops that
               move no data (views, empty, aten::to without a copy), and the profiler itself

One intra-op thread by default (the per-op split is clearest without OpenMP waits); the unprofiled ms per
step of the same code is printed next to the profile (the profiler adds its own overhead to "other").

    VAELAB_DATA_DIR=/work/shared/data .venv/bin/python bench/profile_step.py [--steps 200] [--precision bf16]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch.profiler import ProfilerActivity, profile, record_function

BATCH, LR, HIDDEN, LATENT = 128, 1e-3, 400, 20
GEMMS = {"aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::addbmm", "aten::matmul", "aten::linear"}
# ops that move no data (views, allocation, metadata): framework bookkeeping, counted with Python/other
BOOKKEEPING = {"aten::view", "aten::t", "aten::transpose", "aten::as_strided", "aten::empty", "aten::empty_strided",
               "aten::reshape", "aten::_reshape_alias", "aten::expand", "aten::slice", "aten::select", "aten::unsqueeze",
               "aten::squeeze", "aten::detach", "detach", "aten::alias", "aten::_unsafe_view", "aten::resolve_conj",
               "aten::resolve_neg", "aten::chunk", "aten::split", "aten::narrow", "aten::permute", "aten::flatten",
               "aten::empty_like", "aten::zeros_like", "aten::lift_fresh", "aten::result_type", "aten::to"}
GROUPS = ("GEMM", "elementwise", "optimizer", "data", "Python/other")


class MarkedData:
    """A Dataset whose training batches are created inside record_function("data")."""

    def __init__(self, ds: Any) -> None:
        self.ds, self.info = ds, ds.info

    def __len__(self) -> int:
        return len(self.ds)

    def batches(self, *args: Any, **kw: Any) -> Iterator[Any]:
        it = self.ds.batches(*args, **kw)
        while True:
            with record_function("data"):
                batch = next(it, None)
            if batch is None:
                return
            yield batch


def group_of(evt: Any) -> str | None:
    """The group of one profiled op (None: a marker, its self time belongs to Python/other)."""
    node = evt
    while node is not None:  # the innermost enclosing marker decides data / optimizer
        if node.name == "data":
            return "data"
        if node.name.startswith("Optimizer.step"):
            return "optimizer"
        node = node.cpu_parent
    name = evt.name
    if name in GEMMS:
        return "GEMM"
    if name in BOOKKEEPING:
        return None
    if "_foreach" in name or "adam" in name.lower():
        return "optimizer"
    if name.startswith("aten::"):
        return "elementwise"
    return None


@contextmanager
def trainer_for(train: Any, precision: str, steps: int) -> Iterator[Any]:
    from vaelab.models import build_model
    from vaelab.objectives import ObjectiveConfig
    from vaelab.train import TrainConfig
    from vaelab.train.loop import make_trainer

    cfg = TrainConfig(epochs=1, batch_size=BATCH, lr=LR, device="cpu", progress=False, precision=precision)
    torch.manual_seed(0)
    model = build_model("vae", input_shape=train.info.shape, latent_dim=LATENT, hidden=(HIDDEN,),
                        activation="relu", likelihood="bernoulli")
    t = make_trainer(model, ObjectiveConfig(), cfg, steps * BATCH, torch.device("cpu"))
    try:
        yield t
    finally:
        t.precision.close()


def mnist_setup(threads: int) -> tuple[Any, torch.Generator, Any]:
    """MNIST's training split (uint8, no binarization), a seeded generator and a bar that draws nothing,
    with torch at ``threads`` intra-op threads (exits naming VAELAB_DATA_DIR when it is unset)."""
    if "VAELAB_DATA_DIR" not in os.environ:
        sys.exit("set VAELAB_DATA_DIR to the folder holding mnist/ (e.g. /work/shared/data)")
    torch.set_num_threads(threads)
    from vaelab.data import load_dataset

    bar = type("NoBar", (), {"update": lambda self, n: None})()
    return load_dataset("mnist", "train", binarize="none"), torch.Generator().manual_seed(0), bar


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200, help="profiled training steps (default 200)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--precision", default="fp32", help="fp32 (default) or bf16")
    p.add_argument("--top", type=int, default=12, help="also list the N ops with most self time")
    a = p.parse_args()
    full, gen, bar = mnist_setup(a.threads)
    from vaelab.train.epoch import train_epoch

    data = MarkedData(full.subset(torch.arange(a.steps * BATCH)))
    with trainer_for(full, a.precision, a.steps) as t:
        train_epoch(t, data, gen, 0, torch.device("cpu"), bar)  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        train_epoch(t, data, gen, 1, torch.device("cpu"), bar)  # the unprofiled timing
        plain, plain_cpu = (time.perf_counter() - t0) / a.steps, (time.process_time() - c0) / a.steps
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0, c0 = time.perf_counter(), time.process_time()
            train_epoch(t, data, gen, 2, torch.device("cpu"), bar)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    us: dict[str, float] = defaultdict(float)
    by_op: dict[tuple[str, str], float] = defaultdict(float)
    for evt in prof.events():
        g = group_of(evt)
        if g is not None:
            us[g] += evt.self_cpu_time_total
            by_op[evt.name, g] += evt.self_cpu_time_total
    us["Python/other"] = wall * 1e6 - sum(us[g] for g in GROUPS[:-1])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), precision {a.precision}, "
          f"load average {os.getloadavg()[0]:.2f}; {a.steps} steps of batch {BATCH}")
    print(f"unprofiled: {plain * 1e3:.2f} ms/step wall ({BATCH / plain:,.0f} examples/s), {plain_cpu * 1e3:.2f} ms "
          f"CPU; profiled: {wall / a.steps * 1e3:.2f} ms wall, {cpu / a.steps * 1e3:.2f} ms CPU (the CPU difference "
          "estimates the profiler's own cost, counted in Python/other; on a busy machine it is mostly noise)")
    print("\n| group | ms / step | % of step |\n|---|---|---|")
    for g in GROUPS:
        print(f"| {g} | {us[g] / a.steps / 1e3:.3f} | {100 * us[g] / (wall * 1e6):.1f} |")
    print(f"\ntop {a.top} ops by self CPU time (ms / step):")
    for (name, g), v in sorted(by_op.items(), key=lambda kv: -kv[1])[:a.top]:
        print(f"  {name:45s} {v / a.steps / 1e3:8.3f}  [{g}]")


if __name__ == "__main__":
    main()
