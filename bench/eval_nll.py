"""Speed of vaelab's test-set NLL: K=5000 importance samples on the 10,000 MNIST test images, 784-400-20 VAE.

Target: <= 5 minutes on 2 CPU cores. Trains the 784-400-20 MLP VAE for ``--epochs`` (the weights only
need to exist; the timing is what matters) or loads ``--run``, then times, in the same process:

- fast:   vaelab.evaluate.log_likelihood (encoder once per batch, batch x chunk samples in one decoder
          call, Bernoulli as x . logits - sum softplus) on ``--n`` test images with ``--k`` samples;
- naive:  torch.distributions, one posterior sample per step of a Python loop over k, on ``--naive-n``
          images with ``--naive-k`` samples (the obvious implementation);
- generic: the model's own ``log_weights`` (vectorized over k, re-encoding every chunk) on the same subset;
- fast with one worker using torch's intra-op threads instead of one single-threaded worker per thread.

It prints samples/s, examples/s, total seconds, the projection to 10,000 images x K, and the ratios,
and checks that fast and naive agree on the subset NLL within Monte Carlo error.

    VAELAB_DATA_DIR=/work/shared/data .venv/bin/python bench/eval_nll.py [--run RUN] [--n 10000] [--k 5000]
    .venv/bin/python bench/eval_nll.py --n 200 --k 500 --naive-n 20 --naive-k 200   # quick look
"""
from __future__ import annotations

import argparse
import math
import os
import time
from datetime import date

import torch

from vaelab import rundir
from vaelab.data import for_evaluation, load_dataset
from vaelab.eval.evaluate import log_likelihood
from vaelab.objectives import log_mean_exp
from vaelab.train.run import train_run
from vaelab.train import TrainConfig


@torch.inference_mode()
def naive_nll(model, x: torch.Tensor, k: int) -> torch.Tensor:
    """-log p(x) per example via torch.distributions, one sample per loop step: (N,)."""
    q = model.encode(x)
    prior = model.prior(len(x))
    lw = []
    for _ in range(k):
        z = q.sample()                                                  # (N, d)
        lw.append(model.decode(z).log_prob(x) + prior.log_prob(z) - q.log_prob(z))
    return -log_mean_exp(torch.stack(lw), 0)


@torch.inference_mode()
def generic_nll(model, x: torch.Tensor, k: int, chunk: int = 256) -> torch.Tensor:
    """-log p(x) per example via model.log_weights in chunks of samples (encoder re-run per chunk)."""
    acc = torch.full((len(x),), -math.inf, dtype=torch.float64)
    for j in range(0, k, chunk):
        acc = torch.logaddexp(acc, torch.logsumexp(model.log_weights(x, None, min(chunk, k - j)).double(), 0))
    return -(acc - math.log(k))


def timed(fn, *args, **kw):
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="a trained 784-400-20 VAE run folder (else train one)")
    ap.add_argument("--out", default="runs/bench-eval-mnist", help="where to train when --run is not given")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--n", type=int, default=10_000, help="test images for the fast timing")
    ap.add_argument("--k", type=int, default=5000)
    ap.add_argument("--naive-n", type=int, default=50)
    ap.add_argument("--naive-k", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--chunk", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None, help="threads scoring batches (default: torch threads)")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()

    torch.manual_seed(0)
    if args.run:
        model = rundir.load(args.run)
    else:
        cfg = TrainConfig(epochs=args.epochs, batch_size=128, device="cpu", progress=False)
        model, _ = train_run("vae", "mnist", args.out, {"latent_dim": 20, "hidden": (400,)}, cfg,
                             data_dir=args.data_dir)
    model = model.cpu().eval()
    test = for_evaluation(load_dataset("mnist", "test", data_dir=args.data_dir))
    print(f"date {date.today()}  torch {torch.__version__}  threads {torch.get_num_threads()}  "
          f"cpus {os.cpu_count()}  load avg at start {os.getloadavg()[0]:.2f} (shared machine)")

    sub = test.x[: args.naive_n]
    (naive, t_naive) = timed(naive_nll, model, sub, args.naive_k)
    (generic, t_generic) = timed(generic_nll, model, sub, args.naive_k)
    ((fast_sub, _), t_fast_sub) = timed(log_likelihood, model, sub, None, args.naive_k, workers=args.workers)
    (_, t_fast_1) = timed(log_likelihood, model, sub, None, args.naive_k, workers=1)
    sub_samples = args.naive_n * args.naive_k
    print(f"subset {args.naive_n} images x k={args.naive_k}: NLL naive {float(naive.mean()):.3f}, "
          f"generic {float(generic.mean()):.3f}, fast {-float(fast_sub.mean()):.3f} nats")
    for name, t in (("naive (python loop over k)", t_naive), ("generic (model.log_weights)", t_generic),
                    ("fast, 1 worker x torch threads", t_fast_1), ("fast (vaelab.evaluate)", t_fast_sub)):
        print(f"  {name:<32} {t:8.2f} s  {sub_samples / t:12.0f} samples/s")

    x = test.x[: args.n]
    ((ll, elbo), secs) = timed(log_likelihood, model, x, None, args.k, batch_size=args.batch_size,
                               chunk=args.chunk, workers=args.workers, progress=False)
    rate = args.n * args.k / secs
    projected = 10_000 * 5000 / rate
    print(f"fast: {args.n} images x K={args.k}: {secs:.1f} s, {args.n / secs:.2f} examples/s, "
          f"{rate:.0f} samples/s; test NLL {-float(ll.mean()):.3f} nats, ELBO {float(elbo.mean()):.3f}")
    print(f"projected 10,000 x K=5000: {projected:.0f} s ({projected / 60:.1f} min; target <= 5 min)")
    print(f"speed-up vs naive: {rate / (sub_samples / t_naive):.1f}x; vs generic log_weights: "
          f"{rate / (sub_samples / t_generic):.1f}x (samples/s ratios, same run)")
    print(f"load avg at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
