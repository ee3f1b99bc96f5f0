"""MIG and DCI on `shapes` for vae (beta = 1), beta-vae (beta = 4) and beta-tc (tc_beta = 6), several seeds.

    OMP_NUM_THREADS=1 .venv/bin/python bench/disentangle.py [--seeds 0 1 2] [--train-examples 10000]
        [--epochs 8] [--batch-size 64] [--out bench/results/disentangle.json]

A small CPU budget, stated in the output: an MLP encoder / decoder (hidden 256, 256; Bernoulli p(x|z);
latent 10, as in the beta-VAE papers' MLPs but narrower), Adam lr 1e-3, batch `--batch-size`, trained for `--epochs` on a
fixed random subset of `--train-examples` of the shapes training split (the same subset for every run), one
torch thread. Scored on the whole shapes test split (4,608 images): the test ELBO (nats, one posterior sample),
the active units, and MIG / DCI of the posterior means (`vaelab.eval.disentangle`: MIG with 20 bins; DCI
from random forests). Prints one row per run and, per setting, the mean and sample standard deviation over
seeds; writes every number to `--out` as JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from vaelab.data import load_dataset
from vaelab.eval.disentangle import disentanglement
from vaelab.eval.latents import active_units
from vaelab.models import build_model, posterior_means
from vaelab.objectives import ObjectiveConfig
from vaelab.train import TrainConfig, fit, score

SETTINGS = {
    "vae (beta=1)": ObjectiveConfig(),
    "beta-vae (beta=4)": ObjectiveConfig(beta=4.0),
    "beta-tc (tc_beta=6)": ObjectiveConfig(kind="beta-tc", tc_beta=6.0),
}
KEYS = ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "elbo", "active_units")


def one_run(objective: ObjectiveConfig, seed: int, train, test, args) -> dict:
    torch.manual_seed(seed)
    model = build_model("vae", input_shape=train.info.shape, latent_dim=10, hidden=(256, 256))
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, seed=seed, device="cpu", progress=False)
    t0 = time.process_time()
    fit(model, train, None, objective, cfg)
    train_cpu = time.process_time() - t0
    codes = posterior_means(model, test.x).double()
    scores = disentanglement(codes.numpy(), test.factors.numpy(), test.factor_names, seed=0)
    return {**scores, "elbo": score(model, test)["elbo"], "active_units": active_units(codes)[0],
            "train_cpu_s": train_cpu, "total_cpu_s": time.process_time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train-examples", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("bench/results/disentangle.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    start = time.process_time()
    full, test = load_dataset("shapes", "train"), load_dataset("shapes", "test")
    train = full.subset(torch.randperm(len(full), generator=torch.Generator().manual_seed(0))[:args.train_examples])
    print(f"budget: {len(SETTINGS)} settings x {len(args.seeds)} seeds; vae MLP 256-256, latent 10, "
          f"{args.epochs} epochs x {len(train)} training examples (batch {args.batch_size}), 1 torch thread; "
          f"scored on {len(test)} test images")
    rows = []
    for name, objective in SETTINGS.items():
        for seed in args.seeds:
            r = {"setting": name, "seed": seed, **one_run(objective, seed, train, test, args)}
            rows.append(r)
            print(f"{name:22s} seed {seed}: " + ", ".join(f"{k} {r[k]:.3f}" for k in KEYS)
                  + f"  ({r['total_cpu_s']:.0f} CPU s)", flush=True)
    print(f"\n| setting | {' | '.join(KEYS)} |\n|---|{'---|' * len(KEYS)}")
    summary = {}
    for name in SETTINGS:
        mine = [r for r in rows if r["setting"] == name]
        summary[name] = {k: (statistics.mean(r[k] for r in mine),
                             statistics.stdev(r[k] for r in mine) if len(mine) > 1 else float("nan")) for k in KEYS}
        print(f"| {name} | " + " | ".join(f"{m:.3f} ± {s:.3f}" if k != "elbo" else f"{m:.1f} ± {s:.1f}"
                                          for k, (m, s) in summary[name].items()) + " |")
    total = time.process_time() - start
    print(f"\nmean ± sample sd over {len(args.seeds)} seeds; total {total / 60:.1f} CPU minutes")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                    "summary": summary, "cpu_minutes": total / 60}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
