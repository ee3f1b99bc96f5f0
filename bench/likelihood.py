"""Test NLL on dynamically binarized MNIST beside Burda et al. (2015), Table 1 (nats, lower is better).

Architectures as in the paper (tanh MLPs, Bernoulli p(x|z1), diagonal Gaussian layers):
  1 stochastic layer:  x -> 200 -> 200 -> z(50); decoder mirrored                    (model vae)
  2 stochastic layers: x -> 200 -> 200 -> z1(100) -> 100 -> 100 -> z2(50); mirrored   (model hvae, bottom-up)
trained with the ELBO (k=1) or the IWAE bound (k=50) on all 60,000 training images, fresh Bernoulli draws
every batch, from Glorot-uniform weights (decoder output bias = logit of the mean training pixel: fit's
``TrainConfig.output_init``, on by default). The test set is one fixed Bernoulli draw of the 10,000 test images (vaelab.data.for_evaluation).

Budget mode (default): every configuration trains for ``--minutes`` of training compute (evaluation time
is not counted), Adam (eps 1e-4), batch ``--batch-size`` (100), learning rate decaying exponentially per
epoch from ``--lr`` (1e-3) to ``--lr-final`` (1e-4) over the epochs the budget is measured to allow.
Training is ``vaelab.train.fit`` (exponential lr schedule, a TimeBudget callback counting training
time, checked at epoch ends); ``--switch-k K --switch-at F`` trains the budget's last 1 - F with the IWAE
bound (k = K) after the config's own objective, one resumed fit. Every ``--eval-every`` minutes the IWAE bound with
``--curve-k`` samples (200) on the first ``--curve-subset`` test images (1000) is recorded (an upper bound
on the K=5000 NLL), then the final test NLL uses ``--final-k`` (5000) importance samples.
The paper trained for 3280 epochs (8 stages of 3^i epochs at lr 1e-3 * 10^(-i/7)), batch 20: ``--full``
prints that plan and how long it would take on this device (measured), and runs it with ``--go``.

    VAELAB_DATA_DIR=/work/shared/data .venv/bin/python bench/likelihood.py [--minutes 60] [--configs all]
    .venv/bin/python bench/likelihood.py --minutes 1 --train-subset 2000 --test-subset 200 --final-k 100  # smoke
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import tempfile
import time
from datetime import date

import torch

from vaelab.data import Dataset, for_evaluation, load_dataset
from vaelab.models import build_model
from vaelab.objectives import ObjectiveConfig, log_mean_exp
from vaelab.train import TimeBudget, TrainConfig, fit, pick_device

ONE = dict(latent_dim=50, hidden=(200, 200), activation="tanh", likelihood="bernoulli")
TWO = dict(latent_dims=(100, 50), hidden=((200, 200), (100, 100)), activation="tanh",
           likelihood="bernoulli", inference="bottom-up")
CONFIGS = {  # name -> (model, params, training k, Burda et al. 2015 Table 1 test NLL)
    "vae-1L": ("vae", ONE, 1, 86.76),
    "iwae-1L-k50": ("vae", ONE, 50, 84.78),
    "vae-2L": ("hvae", TWO, 1, 85.33),
    "iwae-2L-k50": ("hvae", TWO, 50, 82.90),
    "iwae-2L-k5": ("hvae", TWO, 5, None),  # not in the paper: a cheaper IWAE for a CPU budget
}
PAPER_ROWS = ["vae-1L", "iwae-1L-k50", "vae-2L", "iwae-2L-k50"]  # --configs all
PAPER_STAGES = 8  # sum_{i<8} 3^i = 3280 epochs


def paper_cell(value: float | None) -> str:
    return "-" if value is None else f"{value} (3280 epochs)"


def paper_schedule(stages: int) -> list[tuple[int, float]]:
    """(epochs, lr) per stage of Burda et al.: 3^i epochs at 1e-3 * 10^(-i/7)."""
    return [(3 ** i, 1e-3 * 10 ** (-i / 7)) for i in range(stages)]


def paper_init(model) -> None:
    """Glorot-uniform weights and zero biases (as Burda et al.). The decoder's output bias then starts at
    the logit of the mean training pixel in fit (``TrainConfig.output_init``: the model is fresh), so
    training does not start from p(x|z) = Bernoulli(0.5)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(module.weight)
            torch.nn.init.zeros_(module.bias)


# -- evaluation ---------------------------------------------------------------------------------------
def test_nll_se(model, x: torch.Tensor, k: int, seed: int = 0) -> tuple[float, float]:
    """Mean -log p(x) estimated with k importance samples, nats, and its standard error over the images
    (chunked over samples and examples)."""
    try:  # the library's streaming estimator when present (vaelab.evaluate)
        from vaelab.eval.evaluate import log_likelihood
    except ImportError:
        log_likelihood = None
    if log_likelihood is not None:
        ll, _ = log_likelihood(model, x, None, k, seed=seed)              # (N,) per-image estimates
    else:
        torch.manual_seed(seed)
        chunk, parts = min(k, 250), []
        with torch.no_grad():
            for xb in x.split(max(1, 4096 // chunk)):
                xb = xb.to(model.device)
                lw = torch.cat([model.log_weights(xb, None, min(chunk, k - j)) for j in range(0, k, chunk)])  # (k, b)
                parts.append(log_mean_exp(lw.double(), 0).cpu())
        ll = torch.cat(parts)
    ll = ll.double()
    se = float(ll.std() / len(ll) ** 0.5) if len(ll) > 1 else float("nan")
    return -float(ll.mean()), se


def test_nll(model, x: torch.Tensor, k: int, seed: int = 0) -> float:
    """Mean -log p(x) estimated with k importance samples, nats."""
    return test_nll_se(model, x, k, seed)[0]


# -- training (vaelab.train.fit) ------------------------------------------------------------------------
class CPUBudget:
    """fit callback: stop after the epoch in which this process has spent ``minutes`` of CPU time on
    training (its CPU time, minus what ``curve`` spent evaluating when given)."""

    def __init__(self, minutes: float, curve: "Curve | None" = None, t0: float | None = None) -> None:
        self.minutes, self.curve = minutes, curve
        self.t0 = time.process_time() if t0 is None else t0

    def used(self) -> float:
        return (time.process_time() - self.t0 - (self.curve.cpu_s if self.curve else 0.0)) / 60

    def on_epoch_end(self, row: dict, model) -> bool:
        return self.used() >= self.minutes


class EpochEMA:
    """fit callback: an exponential moving average of the weights taken at epoch ends (Polyak averaging at
    epoch granularity), from the first epoch at which ``budget.used()`` passes ``start`` minutes;
    ``swap_in`` puts the average into the model (for scoring)."""

    def __init__(self, decay: float, start: float, budget) -> None:
        self.decay, self.start, self.budget, self.avg, self.epochs = decay, start, budget, None, 0

    def on_epoch_end(self, row: dict, model) -> None:
        if self.budget.used() < self.start:
            return
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if self.avg is None:
            self.avg = state
        else:
            for k, v in state.items():
                self.avg[k].mul_(self.decay).add_(v, alpha=1 - self.decay) if v.is_floating_point() else None
        self.epochs += 1

    def swap_in(self, model) -> None:
        if self.avg is not None:
            model.load_state_dict(self.avg)


class Curve:
    """fit callback: every ``every`` minutes of training compute (the rows' ``seconds``; this evaluation is
    not counted), the IWAE_k NLL on ``x``; checked at epoch ends."""

    def __init__(self, name: str, x: torch.Tensor, k: int, every: float) -> None:
        self.name, self.x, self.k, self.every = name, x, k, every
        self.minutes, self.next, self.points, self.cpu_s = 0.0, every, [], 0.0
        self.budget = None  # a CPUBudget: then minutes are its CPU-minutes of training

    def on_epoch_end(self, row: dict, model) -> None:
        self.minutes = self.budget.used() if self.budget else self.minutes + row["seconds"] / 60
        if self.minutes >= self.next:
            t0 = time.process_time()
            self.next += self.every * max(1, math.floor((self.minutes - self.next) / self.every) + 1)
            nll = round(test_nll(model, self.x, self.k), 2)
            self.points.append({"minutes": round(self.minutes, 2), "epochs": row["epoch"], f"nll_k{self.k}": nll})
            print(f"  {self.name}: {self.minutes:6.1f} min, {row['epoch']:4d} epochs, test[:{len(self.x)}] "
                  f"IWAE_{self.k} NLL {nll:.2f}", flush=True)
            self.cpu_s += time.process_time() - t0


class CPUClock:
    """fit callback: this process's CPU seconds per epoch."""

    def __init__(self) -> None:
        self.t, self.spent = time.process_time(), []

    def on_epoch_end(self, row: dict, model) -> None:
        now = time.process_time()
        self.spent.append(now - self.t)
        self.t = now


def seconds_per_step(model, data: Dataset, obj: ObjectiveConfig, batch_size: int, steps: int = 40,
                     cpu: bool = False, compile: bool = False) -> float:
    """Training time (with ``cpu``: CPU time) of one step, measured with fit on a copy of ``model`` (the
    first epoch, which holds any compiling, excluded)."""
    sub = data.subset(torch.arange(min(len(data), batch_size * steps)))
    cfg = TrainConfig(epochs=2, batch_size=batch_size, device=str(model.device), progress=False, compile=compile)
    clock = CPUClock()
    rows = fit(copy.deepcopy(model), sub, objective=obj, cfg=cfg, callbacks=[clock])
    return (clock.spent[-1] if cpu else rows[-1]["seconds"]) / math.ceil(len(sub) / batch_size)


def budget_config(args, model, data: Dataset, obj: ObjectiveConfig, late: ObjectiveConfig | None = None
                  ) -> TrainConfig:
    """Exponential decay per epoch from --lr to --lr-final over the epochs --minutes is expected to give
    (measured; with ``late``, the objective of the budget's last 1 - --switch-at, measured too), then held
    at --lr-final; Adam eps 1e-4 as Burda et al."""
    spe = math.ceil(len(data) / args.batch_size)
    parts = [(obj, args.switch_at if late else 1.0)] + ([(late, 1 - args.switch_at)] if late else [])
    epochs = sum(args.minutes * 60 * share / (spe * seconds_per_step(model, data, o, args.batch_size, cpu=args.cpu_budget,
                                                                      compile=args.compile)) for o, share in parts)
    gamma = (args.lr_final / args.lr) ** (1 / max(epochs, 1e-3))
    print(f"  expect ~{epochs:.1f} epochs in {args.minutes:g} min: lr x {gamma:.4f} per epoch", flush=True)
    return TrainConfig(epochs=10 ** 6, batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=str(model.device),
                       progress=False, adam_eps=1e-4, lr_schedule="exponential", lr_gamma=min(1.0, gamma),
                       lr_min=min(args.lr, args.lr_final), compile=args.compile, checkpoint_every=10 ** 6)


def switched_fit(args, model, data: Dataset, obj: ObjectiveConfig, cfg: TrainConfig, budget: "CPUBudget",
                 calls: list) -> list[dict]:
    """--switch-k: ``obj`` until --switch-at of the budget, then the IWAE bound with k = --switch-k for the
    rest (one resumed fit: Adam's state, the lr schedule and the data order carry over)."""
    late = ObjectiveConfig(kind="iwae", k=args.switch_k)
    with tempfile.TemporaryDirectory() as run:
        first = CPUBudget(args.switch_at * args.minutes, budget.curve, t0=budget.t0)
        history = fit(model, data, objective=obj, cfg=cfg, run_dir=run, callbacks=[*calls, first])
        print(f"  switch to IWAE k={args.switch_k} after epoch {history[-1]['epoch']} "
              f"({budget.used():.1f} CPU-min)", flush=True)
        return fit(model, data, objective=late, cfg=cfg, run_dir=run, resume=True, callbacks=[*calls, budget])


def train(args, model, data: Dataset, obj: ObjectiveConfig, curve: Curve) -> list[dict]:
    """Budget mode: one fit with an exponential lr schedule and a TimeBudget of training minutes (with
    --cpu-budget: of this process's CPU time spent training), optionally an epoch-end weight average
    (--ema) swapped in at the end. --full: one fit per paper stage (constant lr), each resuming the last
    (Adam's state carries over)."""
    if not args.full:
        cfg = budget_config(args, model, data, obj, ObjectiveConfig(kind="iwae", k=args.switch_k)
                            if args.switch_k else None)
        if not args.cpu_budget:
            return fit(model, data, objective=obj, cfg=cfg, callbacks=[curve, TimeBudget(args.minutes, True)])
        budget = CPUBudget(args.minutes, curve)
        curve.budget = budget
        ema = EpochEMA(args.ema, args.ema_from * args.minutes, budget) if args.ema else None
        calls = [c for c in (ema, curve) if c]
        history = (switched_fit(args, model, data, obj, cfg, budget, calls) if args.switch_k else
                   fit(model, data, objective=obj, cfg=cfg, callbacks=[*calls, budget]))
        history[-1]["cpu_minutes"] = budget.used()
        if ema is not None:  # the curve's estimate for the last and the averaged weights, side by side
            last = test_nll(model, curve.x, curve.k)
            ema.swap_in(model)
            history[-1].update(ema_epochs=ema.epochs, curve_nll_last=round(last, 2),
                               curve_nll_ema=round(test_nll(model, curve.x, curve.k), 2))
            print(f"  IWAE_{curve.k} on test[:{len(curve.x)}]: last weights {last:.2f}, epoch-EMA "
                  f"{history[-1]['curve_nll_ema']:.2f} ({ema.epochs} epochs averaged)", flush=True)
        return history
    history, end = [], 0
    with tempfile.TemporaryDirectory() as run:
        for i, (epochs, lr) in enumerate(paper_schedule(args.stages)):
            end += epochs
            cfg = TrainConfig(epochs=end, batch_size=args.batch_size, lr=lr, seed=args.seed,
                              device=str(model.device), progress=False, adam_eps=1e-4)
            history = fit(model, data, objective=obj, cfg=cfg, run_dir=run, resume=i > 0, callbacks=[curve])
    return history


def run_config(name: str, args, train_ds: Dataset, test_x: torch.Tensor, device: torch.device) -> dict:
    model_name, params, k, paper = CONFIGS[name]
    torch.manual_seed(args.seed)
    model = build_model(model_name, input_shape=(1, 28, 28), **params)
    paper_init(model)
    model.to(device)
    obj = ObjectiveConfig(kind="iwae" if k > 1 else "elbo", k=k, warmup=args.warmup)
    curve = Curve(name, test_x[: args.curve_subset], args.curve_k, args.eval_every or args.minutes / 12)
    cpu0 = time.process_time()
    history = train(args, model, train_ds, obj, curve)
    minutes, epochs = sum(r["seconds"] for r in history) / 60, history[-1]["epoch"]
    cpu = (time.process_time() - cpu0) / 60
    if args.score_threads:
        torch.set_num_threads(args.score_threads)
    t0 = time.perf_counter()
    nll, se = test_nll_se(model, test_x, args.final_k)
    row = {"config": name, "model": model_name, "train_k": f"{k} then {args.switch_k}" if args.switch_k else k, "epochs": epochs,
           "train_minutes": round(minutes, 2), "cpu_minutes_incl_curve": round(cpu, 2),
           "train_cpu_minutes": round(history[-1].get("cpu_minutes", float("nan")), 2),
           **{key: history[-1][key] for key in ("ema_epochs", "curve_nll_last", "curve_nll_ema")
              if key in history[-1]},
           "skipped_steps": history[-1]["skipped_steps"], f"test_nll_k{args.final_k}": round(nll, 2),
           "test_nll_se_over_images": round(se, 3),
           "eval_minutes": round((time.perf_counter() - t0) / 60, 2), "paper": paper, "curve": curve.points}
    print(f"  {name}: test NLL (K={args.final_k}, {len(test_x)} images) {nll:.2f} +- {se:.2f} (se over images) "
          f"after {epochs} epochs / "
          f"{minutes:.1f} min; paper {paper}", flush=True)
    return row


def estimate_full(args, train_ds: Dataset, test_x: torch.Tensor, device: torch.device) -> None:
    """Time steps at batch 20 and K=5000 scoring on this device; print what the paper's protocol costs."""
    epochs = sum(e for e, _ in paper_schedule(args.stages))
    steps = epochs * math.ceil(60000 / 20)
    print(f"paper protocol: {epochs} epochs x 3000 steps (batch 20, Adam eps 1e-4, lr 1e-3 * 10^(-i/7) for "
          f"3^i epochs) = {steps:,} steps per configuration; test NLL with K=5000 on 10,000 images")
    for name in args.configs:
        model_name, params, k, paper = CONFIGS[name]
        model = build_model(model_name, input_shape=(1, 28, 28), **params).to(device)
        obj = ObjectiveConfig(kind="iwae" if k > 1 else "elbo", k=k)
        per_step = seconds_per_step(model, train_ds, obj, 20, steps=60)
        t0 = time.perf_counter()
        test_nll(model, test_x[:20], 5000)
        per_image = (time.perf_counter() - t0) / 20
        print(f"  {name}: {per_step * 1e3:.2f} ms/step -> {steps * per_step / 3600:.1f} h training; "
              f"scoring {per_image:.3f} s/image -> {10000 * per_image / 3600:.2f} h; paper {paper}")
    print(f"device: {device}. Run it with --full --go (add --stages N for the first N stages only).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="training compute per configuration")
    ap.add_argument("--configs", default="all", help=f"comma-separated subset of {list(CONFIGS)}; all: {PAPER_ROWS}")
    ap.add_argument("--batch-size", type=int, default=None, help="100 (budget mode) or 20 (--full, as the paper)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lr-final", type=float, default=1e-4, help="lr at the end of the budget (exponential decay)")
    ap.add_argument("--cpu-budget", action="store_true",
                    help="count --minutes as this process's CPU time spent training (not the rows' wall seconds)")
    ap.add_argument("--warmup", type=float, default=0.0, help="KL warm-up epochs (beta rises 0 -> 1)")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="with --cpu-budget: decay of an epoch-end weight average scored instead of the last weights")
    ap.add_argument("--ema-from", type=float, default=0.5, help="fraction of the budget after which --ema averages")
    ap.add_argument("--switch-k", type=int, default=0,
                    help="with --cpu-budget: train the last 1 - --switch-at of the budget with the IWAE bound, this k")
    ap.add_argument("--switch-at", type=float, default=0.5, help="fraction of the budget trained with the config's own k")
    ap.add_argument("--compile", action="store_true", help="torch.compile the objective (TrainConfig.compile)")
    ap.add_argument("--score-threads", type=int, default=0, help="torch threads for the final scoring (0: as training)")
    ap.add_argument("--eval-every", type=float, default=None, help="minutes between curve points (minutes/12)")
    ap.add_argument("--curve-k", type=int, default=200)
    ap.add_argument("--curve-subset", type=int, default=1000)
    ap.add_argument("--final-k", type=int, default=5000)
    ap.add_argument("--train-subset", type=int, default=None, help="first N training images (smoke tests)")
    ap.add_argument("--test-subset", type=int, default=None, help="first N test images (smoke tests)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--full", action="store_true", help="the paper's 3280-epoch protocol: print the plan and cost")
    ap.add_argument("--go", action="store_true", help="with --full: run it")
    ap.add_argument("--stages", type=int, default=PAPER_STAGES, help="with --full: first N lr stages (8 = paper)")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    args.configs = PAPER_ROWS if args.configs == "all" else [c.strip() for c in args.configs.split(",")]
    bad = [c for c in args.configs if c not in CONFIGS]
    if bad:
        ap.error(f"--configs {bad} not known; allowed: {list(CONFIGS)} or 'all'")
    if args.switch_k and not (args.switch_k > 1 and 0 < args.switch_at < 1 and args.cpu_budget):
        ap.error(f"--switch-k {args.switch_k} --switch-at {args.switch_at}: needs k > 1, 0 < at < 1 and --cpu-budget")
    if args.ema and not (0 < args.ema < 1 and args.cpu_budget):
        ap.error(f"--ema {args.ema}: needs 0 < decay < 1 and --cpu-budget")
    args.batch_size = args.batch_size or (20 if args.full else 100)
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    train_ds = load_dataset("mnist", "train", data_dir=args.data_dir, binarize="dynamic")
    test = for_evaluation(load_dataset("mnist", "test", data_dir=args.data_dir, binarize="dynamic"))
    if args.train_subset:
        train_ds = train_ds.subset(torch.arange(min(args.train_subset, len(train_ds))))
    test_x = test.x[: args.test_subset] if args.test_subset else test.x
    if args.full and not args.go:
        estimate_full(args, train_ds, test_x, device)
        return
    mode = (f"full paper schedule ({sum(e for e, _ in paper_schedule(args.stages))} epochs, batch {args.batch_size})"
            if args.full else f"{args.minutes:g} training minutes per configuration, batch {args.batch_size}, "
            f"lr {args.lr:g} -> {args.lr_final:g}" + (", CPU-time budget" if args.cpu_budget else "")
            + (f", KL warm-up {args.warmup:g} epochs" if args.warmup else "")
            + (f", epoch-end weight EMA {args.ema:g} after {args.ema_from:g} of the budget" if args.ema else "")
            + (f", IWAE k={args.switch_k} after {args.switch_at:g} of the budget" if args.switch_k else "")
            + (", torch.compile" if args.compile else ""))
    print(f"likelihood bench {date.today()}: {mode}, device {device}, {torch.get_num_threads()} threads, "
          f"{len(train_ds)} train / {len(test_x)} test images", flush=True)
    rows = [run_config(name, args, train_ds, test_x, device) for name in args.configs]
    k = args.final_k
    print(f"\n| config | model | train k | epochs | train min | test NLL (K={k}) +- se over images | Burda et al. 2015 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['model']} | {r['train_k']} | {r['epochs']} | {r['train_minutes']} | "
              f"{r[f'test_nll_k{k}']} +- {r['test_nll_se_over_images']:.2f} | {paper_cell(r['paper'])} |")
    for r in rows:
        pts = ", ".join(f"{p['minutes']}m: {p[f'nll_k{args.curve_k}']}" for p in r["curve"])
        print(f"curve {r['config']} (IWAE_{args.curve_k} NLL, first {args.curve_subset} test images): {pts}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "device": str(device), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
