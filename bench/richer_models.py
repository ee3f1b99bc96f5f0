"""Richer prior (VampPrior) and richer posterior (IAF) against the plain VAE at EQUAL CPU time, on dynamically
binarized MNIST, test NLL in nats (lower is better) with its standard error.

Every configuration is the 1-layer model of ``bench/likelihood.py`` (Burda et al.'s x-200-200-z50 tanh MLP,
Glorot init, decoder output bias = logit of the mean training pixel, all 60,000 training images with fresh
Bernoulli draws every batch, ELBO, Adam eps 1e-4, batch 100, lr 1e-3 decaying exponentially to 1e-4 over
the budget) with one change each:

  vae-1L   q = diagonal Gaussian, p(z) = N(0, I)                                (model vae)
  vamp-1L  p(z) = VampPrior with 500 pseudo-inputs (Tomczak & Welling 2018)     (model vamp)
  iaf-1L   q = diagonal Gaussian + 2 IAF steps, MADE 200, context 50 (Kingma et al. 2016)  (model iaf)

Budget: ``--minutes`` of this process's CPU time (``time.process_time``, one torch thread by default),
checked at epoch ends, so a loaded shared machine does not shorten a run; the lr decay is set from a
measured CPU time per step. Test set: one fixed Bernoulli draw of the first ``--test-subset`` test images
(vaelab.data.for_evaluation), the same images for every configuration, scored with ``--k`` importance
samples (vaelab.eval.likelihood); the table gives the mean NLL, its standard error over images, the
k-sample ELBO and the NLL difference to vae-1L on the same images (paired standard error).

``--full`` prints the published VampPrior protocol (Tomczak & Welling: batch 100, lr 5e-4, KL warm-up 100
epochs, up to 2000 epochs with early stopping after 50, K=5000 test samples) and what it costs here
(measured per-step CPU time); ``--full --go`` runs its schedule for ``--full-epochs`` epochs (no early
stopping: vaelab's early stopping needs a validation split, which this bench does not hold out).

    VAELAB_DATA_DIR=/work/shared/data .venv/bin/python bench/richer_models.py --minutes 3 --test-subset 2000
    # or one process per configuration (each on its own core), then one table:
    ... --configs vamp-1L --json vamp.json  (x3) ;  .venv/bin/python bench/richer_models.py --report *.json
    .venv/bin/python bench/richer_models.py --minutes 0.2 --train-subset 2000 --test-subset 100 --k 50  # smoke
"""
from __future__ import annotations

import argparse
import json
import math
import time
from datetime import date

import torch

from likelihood import ONE, CPUBudget, paper_init, seconds_per_step  # the likelihood bench's architecture, init, clocks
from vaelab.data import Dataset, for_evaluation, load_dataset
from vaelab.eval.likelihood import log_likelihood_estimate
from vaelab.models import build_model
from vaelab.objectives import ObjectiveConfig
from vaelab.train import TrainConfig, fit, pick_device

CONFIGS = {  # name -> (model, params, published test NLL and source)
    "vae-1L": ("vae", ONE, "86.76 (Burda et al. 2015, 3280 epochs)"),
    "vamp-1L": ("vamp", {**ONE, "n_pseudo": 500}, "85.57 (Tomczak & Welling 2018; pythae 85.79)"),
    "iaf-1L": ("iaf", {**ONE, "n_flows": 2, "flow_hidden": (200,), "context_dim": 50}, "- (no MLP row in the paper)"),
}
FULL = {"batch": 100, "lr": 5e-4, "warmup": 100, "max_epochs": 2000, "patience": 50, "k": 5000}


def build(name: str, device: torch.device, seed: int):
    model_name, params, _ = CONFIGS[name]
    torch.manual_seed(seed)
    model = build_model(model_name, input_shape=(1, 28, 28), **params)
    paper_init(model)
    return model.to(device)


def train(args, name: str, train_ds: Dataset, device: torch.device) -> tuple:
    model = build(name, device, args.seed)
    if args.full:
        cfg = TrainConfig(epochs=args.full_epochs, batch_size=FULL["batch"], lr=FULL["lr"], seed=args.seed,
                          device=str(device), progress=False)
        budget = CPUBudget(math.inf)
        history = fit(model, train_ds, objective=ObjectiveConfig(warmup=FULL["warmup"]), cfg=cfg)
        history[-1]["cpu_minutes"] = budget.used()
        return model, history
    obj = ObjectiveConfig()
    step = seconds_per_step(model, train_ds, obj, args.batch_size, steps=30, cpu=True)
    epochs = args.minutes * 60 / (step * math.ceil(len(train_ds) / args.batch_size))
    gamma = min(1.0, (args.lr_final / args.lr) ** (1 / max(epochs, 1e-3)))
    print(f"  {name}: {step * 1e3:.1f} CPU-ms/step -> ~{epochs:.1f} epochs in {args.minutes:g} CPU-min, "
          f"lr x {gamma:.4f} per epoch", flush=True)
    cfg = TrainConfig(epochs=10 ** 6, batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=str(device),
                      progress=False, adam_eps=1e-4, lr_schedule="exponential", lr_gamma=gamma,
                      lr_min=min(args.lr, args.lr_final))
    budget = CPUBudget(args.minutes)
    history = fit(model, train_ds, objective=obj, cfg=cfg, callbacks=[budget])
    history[-1]["cpu_minutes"] = budget.used()
    return model, history


def score(args, name: str, model, test_x: torch.Tensor) -> dict:
    t0 = time.process_time()
    est = log_likelihood_estimate(model, test_x, None, args.k, seed=4321)
    n = len(test_x)
    return {"config": name, "nll_per_image": (-est.log_px).tolist(), "nll": -float(est.log_px.mean()),
            "nll_se": float(est.log_px.std() / math.sqrt(n)), "mc_se": est.mean_se(), "elbo": float(est.elbo.mean()),
            "eval_cpu_minutes": (time.process_time() - t0) / 60}


def estimate_full(args, train_ds: Dataset, test_x: torch.Tensor, device: torch.device) -> None:
    steps = FULL["max_epochs"] * math.ceil(len(train_ds) / FULL["batch"])
    print(f"published VampPrior protocol: batch {FULL['batch']}, Adam lr {FULL['lr']}, KL warm-up {FULL['warmup']} "
          f"epochs, up to {FULL['max_epochs']} epochs (early stopping, patience {FULL['patience']}) = up to "
          f"{steps:,} steps; test NLL with K={FULL['k']} on 10,000 images")
    for name in args.configs:
        model = build(name, device, args.seed)
        step = seconds_per_step(model, train_ds, ObjectiveConfig(), FULL["batch"], steps=30, cpu=True)
        t0 = time.process_time()
        log_likelihood_estimate(model, test_x[:10], None, FULL["k"], seed=0)
        per_image = (time.process_time() - t0) / 10
        print(f"  {name}: {step * 1e3:.1f} CPU-ms/step -> up to {steps * step / 3600:.1f} CPU-h training; "
              f"scoring {per_image:.2f} CPU-s/image -> {10000 * per_image / 3600:.2f} CPU-h; paper {CONFIGS[name][2]}")
    print(f"device: {device}, {torch.get_num_threads()} thread(s). Run it with --full --go [--full-epochs N].")


def report(args, rows: list[dict]) -> None:
    base = next((r for r in rows if r["config"] == "vae-1L"), None)
    print(f"\n| config | model | epochs | train CPU-min | test NLL (K={args.k}, {args.n_test} images) +- se | "
          f"ELBO | NLL - vae-1L (paired se) | published |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        diff = "-"
        if base is not None and r is not base:
            d = torch.tensor(r["nll_per_image"]) - torch.tensor(base["nll_per_image"])
            diff = f"{float(d.mean()):+.2f} ({float(d.std() / math.sqrt(len(d))):.2f})"
        print(f"| {r['config']} | {CONFIGS[r['config']][0]} | {r['epochs']} | {r['train_cpu_minutes']:.2f} | "
              f"{r['nll']:.2f} +- {r['nll_se']:.2f} | {r['elbo']:.2f} | {diff} | {CONFIGS[r['config']][2]} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="training CPU-minutes per configuration")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {list(CONFIGS)}")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-final", type=float, default=1e-4)
    ap.add_argument("--k", type=int, default=1000, help="importance samples per test image")
    ap.add_argument("--train-subset", type=int, default=None, help="first N training images (smoke tests)")
    ap.add_argument("--test-subset", type=int, default=None, help="first N test images (default: all 10,000)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--full", action="store_true", help="the published VampPrior protocol: print its cost")
    ap.add_argument("--go", action="store_true", help="with --full: run it")
    ap.add_argument("--full-epochs", type=int, default=FULL["max_epochs"], help="with --full --go: epochs")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    ap.add_argument("--report", nargs="+", default=None, metavar="JSON",
                    help="only print the table of earlier --json files (e.g. one per configuration, run in parallel)")
    args = ap.parse_args()
    if args.report:
        saved = [json.load(open(path)) for path in args.report]
        args.k, args.n_test = saved[0]["args"]["k"], saved[0]["args"]["n_test"]
        if any((s["args"]["k"], s["args"]["n_test"], s["args"]["test_subset"]) != (args.k, args.n_test, saved[0]["args"]["test_subset"])
               for s in saved):
            ap.error("--report: the files were scored with different K or test images; they cannot be paired")
        report(args, [r for s in saved for r in s["rows"]])
        return
    args.configs = [c.strip() for c in args.configs.split(",")]
    bad = [c for c in args.configs if c not in CONFIGS]
    if bad:
        ap.error(f"--configs {bad} not known; allowed: {list(CONFIGS)}")
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    train_ds = load_dataset("mnist", "train", data_dir=args.data_dir, binarize="dynamic")
    if args.train_subset:
        train_ds = train_ds.subset(torch.arange(min(args.train_subset, len(train_ds))))
    test = for_evaluation(load_dataset("mnist", "test", data_dir=args.data_dir, binarize="dynamic"))
    test_x = test.x[: args.test_subset] if args.test_subset else test.x
    args.n_test = len(test_x)
    if args.full and not args.go:
        estimate_full(args, train_ds, test_x, device)
        return
    print(f"richer-models bench {date.today()}: {args.minutes:g} CPU-min per configuration, {args.threads} "
          f"thread(s), device {device}, {len(train_ds)} train / {len(test_x)} test images, K={args.k}", flush=True)
    rows = []
    for name in args.configs:
        model, history = train(args, name, train_ds, device)
        row = score(args, name, model.eval(), test_x)
        row.update(epochs=history[-1]["epoch"], train_cpu_minutes=history[-1]["cpu_minutes"],
                   train_wall_minutes=sum(r["seconds"] for r in history) / 60,
                   skipped_steps=history[-1]["skipped_steps"])
        print(f"  {name}: NLL {row['nll']:.2f} +- {row['nll_se']:.2f} (MC se {row['mc_se']:.3f}), ELBO "
              f"{row['elbo']:.2f}, {row['epochs']} epochs, eval {row['eval_cpu_minutes']:.1f} CPU-min", flush=True)
        rows.append(row)
    report(args, rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "device": str(device), "rows": rows}, f)


if __name__ == "__main__":
    main()
