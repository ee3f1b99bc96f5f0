"""Does torch.compile pay for a vaelab training step? Eager against compiled, alternated, in one process.

The step is vaelab's objective module (``objectives.Objective``: the model's encode/decode, the likelihood,
the KL, the loss) with fused Adam, on random binary images (the MLP: pytorch/examples' 784-400-20 VAE,
batch 128) or random [0, 1] images (the ResNet VAE on 3x32x32, batch 32, channels 16,32,64, Gaussian
likelihood). The compiled copy is ``torch.compile(objective)`` (inductor, default mode) of an identical
model; blocks of ``--steps`` steps of each run alternated ``--rounds`` times (A B A B ...) and the
median CPU-ms per step is compared; the compile cost (first steps) and the number of steps after which
compiling has paid for itself are printed. Same seed and data for both: the losses of the first step
are printed side by side (they agree to float rounding).

    .venv/bin/python bench/compile_step.py [--model mlp|resnet] [--threads 1] [--steps 50] [--rounds 5]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from vaelab.models import build_model
from vaelab.objectives import Objective, ObjectiveConfig

SETUPS = {  # name -> (build kwargs, batch, binary data)
    "mlp": (dict(input_shape=(1, 28, 28), latent_dim=20, hidden=(400,), likelihood="bernoulli"), 128, True),
    "resnet": (dict(input_shape=(3, 32, 32), latent_dim=32, hidden=(256,), arch="resnet", channels=(16, 32, 64),
                    likelihood="gaussian"), 32, False),
}


def make_step(obj: torch.nn.Module, fn, x: torch.Tensor):
    opt = torch.optim.Adam(obj.model.parameters(), lr=1e-3, fused=x.device.type in ("cpu", "cuda") or None)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        obj.zero_grad(set_to_none=True)
        terms = fn(x)
        terms.loss.backward()
        opt.step()
        return float(terms.loss.detach())
    return step


def timed(step, n: int, cuda: bool) -> float:
    """CPU seconds per step (wall on CUDA) over n steps."""
    clock = time.perf_counter if cuda else time.process_time
    if cuda:
        torch.cuda.synchronize()
    t0 = clock()
    for _ in range(n):
        step()
    if cuda:
        torch.cuda.synchronize()
    return (clock() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=list(SETUPS), default="mlp")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=50, help="steps per timed block")
    ap.add_argument("--rounds", type=int, default=5, help="alternated (eager, compiled) block pairs")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    kwargs, batch, binary = SETUPS[args.model]
    torch.manual_seed(0)
    model = build_model("vae", **kwargs).to(device)
    x = torch.rand(batch, *kwargs["input_shape"], device=device)
    x = (x < 0.3).float() if binary else x
    eager = Objective(model, ObjectiveConfig())
    compiled_obj = Objective(copy.deepcopy(model), ObjectiveConfig())
    compiled = torch.compile(compiled_obj)
    steps = {"eager": make_step(eager, lambda b: eager(b, None), x),
             "compiled": make_step(compiled_obj, lambda b: compiled(b, None), x)}
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    first = {}
    for name, step in steps.items():  # the first 3 steps: compile (or eager warm-up) cost
        torch.manual_seed(1)
        t0 = clock()
        first[name] = step()
        step(), step()
        first[name + "_s"] = clock() - t0
    per = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            per[name].append(timed(step, args.steps, device.type == "cuda"))
    unit = "wall" if device.type == "cuda" else "CPU"
    med = {name: statistics.median(v) for name, v in per.items()}
    print(f"{args.model} VAE, batch {batch}, device {device}, {args.threads} thread(s), torch {torch.__version__}")
    print(f"first-step loss: eager {first['eager']:.4f}, compiled {first['compiled']:.4f}")
    for name in steps:
        print(f"  {name:9s} first 3 steps {first[name + '_s']:7.2f} {unit}-s; then {med[name] * 1e3:8.2f} {unit}-ms/step "
              f"(median of {args.rounds} blocks of {args.steps}: "
              + ", ".join(f"{v * 1e3:.2f}" for v in per[name]) + ")")
    speedup = med["eager"] / med["compiled"]
    gain = med["eager"] - med["compiled"]
    cost = first["compiled_s"] - first["eager_s"]
    pays = f"after ~{cost / gain:,.0f} steps" if gain > 0 else "never (compiled steps are not faster)"
    print(f"compiled / eager speed: {speedup:.3f}x; compile cost {cost:.1f} {unit}-s; pays for itself {pays}")


if __name__ == "__main__":
    main()
