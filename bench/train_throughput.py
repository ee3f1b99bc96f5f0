"""Training throughput of vaelab's loop against the GEMM limit and the canonical pytorch/examples/vae loop.

The model is pytorch/examples/vae: MLP 784-400-20 (ReLU), Bernoulli likelihood on pixels in [0, 1]
(no binarization), batch 128, Adam lr 1e-3, all 60,000 MNIST training images. One run prints:

  (a) vaelab's training examples/s (through the real API, ``train.fit`` on ``load_dataset('mnist')``, no
      validation split, so it trains on all 60k; the loop's own timing, as in metrics.jsonl),
  (b) the fp32 GEMM limit: torch.matmul FLOP/s on the model's own GEMM shapes at batch 128 divided by the
      GEMM FLOPs per example of one training step,
  (c) (a) / (b),
  (d) the canonical loop (per-item Dataset + torch.utils.data.DataLoader, F.binary_cross_entropy on
      sigmoid outputs with reduction='sum' + closed-form KLD) examples/s and vaelab / canonical,
  (e) test loss (mean negative ELBO per test example, nats, one posterior sample) after the epochs,
  (f) peak RSS of each training run (each runs in its own subprocess, so the RSS is its own),
  (g) with --precisions fp32,bf16: (a), (c) and (e) once per training precision (TrainConfig.precision:
      the networks under autocast, fp32 master weights, likelihood / KL / test loss in fp32); the ratio is
      always to the fp32 GEMM limit, and the bf16 GEMM rate on the same shapes is printed beside it. On a
      CPU without bf16 instructions (AVX512-BF16 / AMX) bf16 GEMMs are emulated and far slower than fp32.
      An entry ending in +compile (e.g. fp32+compile) trains with TrainConfig.compile; its rate includes
      the compilation, which runs in the first epoch.

Next to wall-clock examples/s it prints examples per CPU-second of the process (time.process_time): on a
shared machine that is the steadier number, and with --threads 1 the two agree when the machine is idle.
With 2 intra-op threads on an oversubscribed machine torch's OpenMP threads wait on each other whenever
one is descheduled, and every step slows by 10x or more: use --threads 1 (or OMP_NUM_THREADS=1) there.

    VAELAB_DATA_DIR=/work/shared/data .venv/bin/python bench/train_throughput.py [--epochs 10] [--quick] \
        [--precisions fp32,bf16,fp32+compile]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

BATCH, LR, HIDDEN, LATENT, PIXELS = 128, 1e-3, 400, 20, 784
# (in, out) of each linear layer; the encoder's 400 -> 2*20 head is fc21 + fc22 of the example
LAYERS = [(PIXELS, HIDDEN), (HIDDEN, 2 * LATENT), (LATENT, HIDDEN), (HIDDEN, PIXELS)]
LOW = {"bf16": torch.bfloat16, "fp16": torch.float16}  # the 16-bit precisions' GEMM dtypes


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# -- (b) the GEMM limit ---------------------------------------------------------------------------
def gemm_flops_per_example() -> int:
    """Forward x @ W^T, backward dW = g^T @ x and dX = g @ W per layer; the first layer has no dX
    (autograd does not differentiate w.r.t. the data), so a step runs 11 GEMMs, not 12."""
    macs = sum(3 * i * o for i, o in LAYERS) - LAYERS[0][0] * LAYERS[0][1]
    return 2 * macs


def gemm_limit(seconds: float = 2.0, repeats: int = 5, dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """Best-of-``repeats`` time of one training step's GEMMs (torch.matmul, ``dtype``, batch 128)."""
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(o, i, generator=g).to(dtype) for i, o in LAYERS]      # (out, in) like nn.Linear
    xs = [torch.randn(BATCH, i, generator=g).to(dtype) for i, _ in LAYERS]  # (B, in)
    gs = [torch.randn(BATCH, o, generator=g).to(dtype) for _, o in LAYERS]  # (B, out)

    def step() -> None:
        for k, (w, x, gr) in enumerate(zip(ws, xs, gs)):
            torch.matmul(x, w.t())        # forward (B, out)
            torch.matmul(gr.t(), x)       # dW (out, in)
            if k > 0:
                torch.matmul(gr, w)       # dX (B, in)

    for _ in range(50 if dtype == torch.float32 else 5):
        step()
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < seconds / repeats:
        step()
        n += 1
    n = max(n, 20 if dtype == torch.float32 else 3)
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(n):
            step()
        best = min(best, (time.perf_counter() - t) / n)
        best_cpu = min(best_cpu, (time.process_time() - c) / n)
    flops = gemm_flops_per_example()
    return {"gflops": flops * BATCH / best / 1e9, "flops_per_example": flops, "examples_per_s": BATCH / best,
            "examples_per_cpu_s": BATCH / best_cpu}


# -- (a) vaelab, in a worker process ------------------------------------------------------------------
def run_vaelab(epochs: int, seed: int, precision: str = "fp32") -> dict:
    from vaelab.data import load_dataset
    from vaelab.models import build_model
    from vaelab.train import TrainConfig, fit, score

    precision, compiled = precision.removesuffix("+compile"), precision.endswith("+compile")
    cfg = TrainConfig(epochs=epochs, batch_size=BATCH, lr=LR, seed=seed, device="cpu", progress=False,
                      precision=precision, compile=compiled)  # compiled: its compile time is in epoch 1
    train = load_dataset("mnist", "train", binarize="none")  # all 60k: no validation split
    model = build_model("vae", input_shape=train.info.shape, latent_dim=LATENT, hidden=(HIDDEN,),
                        activation="relu", likelihood="bernoulli")
    cpu = time.process_time()
    history = fit(model, train, None, cfg=cfg)
    cpu = time.process_time() - cpu
    test = load_dataset("mnist", "test", binarize="none")
    n = len(train) * len(history)
    secs = sum(r["seconds"] for r in history)  # the loop's own timing (metrics.jsonl's examples_per_s)
    return {"examples_per_s": n / secs, "train_seconds": secs, "examples_per_cpu_s": n / cpu,
            "epoch_examples_per_s": [round(r["examples_per_s"]) for r in history],
            "train_loss_last_epoch": history[-1]["loss"], "skipped_steps": history[-1]["skipped_steps"],
            "test_loss": -score(model, test)["elbo"], "peak_rss_mb": peak_rss_mb()}


# -- (d) the canonical pytorch/examples/vae loop, in a worker process --------------------------------
def run_canonical(epochs: int, seed: int, precision: str = "fp32") -> dict:
    import numpy as np
    from torch import nn
    from torch.nn import functional as F
    from torch.utils.data import DataLoader, Dataset

    from vaelab.data.mnist import load_mnist

    class Items(Dataset):
        """TensorDataset-like: one (image, label) per __getitem__."""

        def __init__(self, split: str) -> None:
            x, y = load_mnist(split)
            self.x = torch.from_numpy(x).float().div_(255).unsqueeze(1)  # (N, 1, 28, 28)
            self.y = torch.from_numpy(np.asarray(y))

        def __len__(self) -> int:
            return len(self.x)

        def __getitem__(self, i: int):
            return self.x[i], self.y[i]

    class VAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
            self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

        def forward(self, x):
            h1 = F.relu(self.fc1(x.view(-1, 784)))
            mu, logvar = self.fc21(h1), self.fc22(h1)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar

    def loss_function(recon_x, x, mu, logvar):
        bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
        return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())

    torch.manual_seed(seed)
    train_loader = DataLoader(Items("train"), batch_size=BATCH, shuffle=True)
    test_loader = DataLoader(Items("test"), batch_size=BATCH, shuffle=False)
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    secs, per_epoch, cpu = 0.0, [], time.process_time()
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        train_loss = 0.0
        for data, _ in train_loader:
            opt.zero_grad()
            recon, mu, logvar = model(data)
            loss = loss_function(recon, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            opt.step()
        dt = time.perf_counter() - t0
        secs += dt
        per_epoch.append(round(len(train_loader.dataset) / dt))
    cpu = time.process_time() - cpu
    model.eval()
    test_loss = 0.0
    with torch.no_grad():
        for data, _ in test_loader:
            recon, mu, logvar = model(data)
            test_loss += loss_function(recon, data, mu, logvar).item()
    return {"examples_per_s": 60000 * epochs / secs, "train_seconds": secs, "examples_per_cpu_s": 60000 * epochs / cpu,
            "epoch_examples_per_s": per_epoch,
            "test_loss": test_loss / len(test_loader.dataset), "peak_rss_mb": peak_rss_mb()}


def run_floor(epochs: int, seed: int, precision: str = "fp32") -> dict:
    """RSS of torch itself after one Adam step (Optimizer.step imports torch._dynamo): no data, no vaelab."""
    model = torch.nn.Linear(4, 4)
    model(torch.randn(2, 4)).sum().backward()
    torch.optim.Adam(model.parameters()).step()
    return {"peak_rss_mb": peak_rss_mb()}


def worker(kind: str, epochs: int, seed: int, threads: int, precision: str = "fp32") -> dict:
    """Run one trainer in a fresh interpreter; its peak RSS is its own."""
    cmd = [sys.executable, __file__, "--worker", kind, "--epochs", str(epochs), "--seed", str(seed),
           "--threads", str(threads), "--precisions", precision]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10, help="vaelab training epochs (default 10)")
    p.add_argument("--canonical-epochs", type=int, default=2,
                   help="epochs of the canonical DataLoader loop (default 2; 0 skips it)")
    p.add_argument("--quick", action="store_true", help="1 epoch of each (smoke test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--precisions", default="fp32",
                   help="comma-separated training precisions for vaelab, e.g. fp32,bf16,fp32+compile (default fp32; "
                        "+compile: TrainConfig.compile)")
    p.add_argument("--worker", choices=["vaelab", "canonical", "floor"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.worker:
        fn = {"vaelab": run_vaelab, "canonical": run_canonical, "floor": run_floor}[a.worker]
        print(json.dumps(fn(a.epochs, a.seed, a.precisions)))
        return
    precisions = [x.strip() for x in a.precisions.split(",") if x.strip()]
    if not precisions or precisions[0] != "fp32" or len(set(precisions)) != len(precisions):
        sys.exit(f"--precisions={a.precisions!r}: a list of distinct values starting with fp32 (the reference)")
    if "VAELAB_DATA_DIR" not in os.environ:
        sys.exit("set VAELAB_DATA_DIR to the folder holding mnist/ (e.g. /work/shared/data)")
    epochs = 1 if a.quick else a.epochs
    canon_epochs = min(1, a.canonical_epochs) if a.quick else a.canonical_epochs
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    g0 = gemm_limit()
    print(f"GEMM limit (before): {g0['gflops']:.1f} GFLOP/s -> {g0['examples_per_s']:,.0f} examples/s", flush=True)
    runs = {}
    for prec in precisions:
        runs[prec] = worker("vaelab", epochs, a.seed, a.threads, prec)
        r = runs[prec]
        print(f"vaelab {prec}: {r['examples_per_s']:,.0f} examples/s over {epochs} epoch(s) "
              f"(per epoch {r['epoch_examples_per_s']}), test loss {r['test_loss']:.2f} nats, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    v = runs["fp32"]
    c = worker("canonical", canon_epochs, a.seed, a.threads) if canon_epochs > 0 else None
    if c:
        print(f"canonical DataLoader loop: {c['examples_per_s']:,.0f} examples/s over {canon_epochs} epoch(s) "
              f"(per epoch {c['epoch_examples_per_s']}), test loss {c['test_loss']:.2f} nats after "
              f"{canon_epochs} epoch(s), peak RSS {c['peak_rss_mb']:.0f} MB", flush=True)
    g1 = gemm_limit()
    floor = worker("floor", 1, a.seed, a.threads)["peak_rss_mb"]
    g = g0 if g0["examples_per_s"] >= g1["examples_per_s"] else g1
    print(f"GEMM limit (after): {g1['gflops']:.1f} GFLOP/s -> {g1['examples_per_s']:,.0f} examples/s")
    gc = max(g0["examples_per_cpu_s"], g1["examples_per_cpu_s"])
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print("\n== summary (the faster GEMM measurement is the limit) ==    wall-clock   per CPU-second")
    print(f"(a) vaelab examples/s              {v['examples_per_s']:>10,.0f}   {v['examples_per_cpu_s']:>10,.0f}")
    print(f"(b) fp32 GEMM limit examples/s     {g['examples_per_s']:>10,.0f}   {gc:>10,.0f}   "
          f"({g['gflops']:.1f} GFLOP/s / {g['flops_per_example'] / 1e6:.3f} MFLOP per example)")
    print(f"(c) vaelab / GEMM limit            {v['examples_per_s'] / g['examples_per_s']:>10.2f}   "
          f"{v['examples_per_cpu_s'] / gc:>10.2f}")
    if c:
        print(f"(d) canonical examples/s           {c['examples_per_s']:>10,.0f}   {c['examples_per_cpu_s']:>10,.0f}")
        print(f"    vaelab / canonical             {v['examples_per_s'] / c['examples_per_s']:>10.2f}   "
              f"{v['examples_per_cpu_s'] / c['examples_per_cpu_s']:>10.2f}")
    print(f"(e) vaelab test loss ({epochs} ep)       {v['test_loss']:>10.2f} nats"
          + (f"   canonical ({canon_epochs} ep): {c['test_loss']:.2f}" if c else ""))
    print(f"(f) vaelab peak RSS                {v['peak_rss_mb']:>10.0f} MB"
          + (f"   canonical: {c['peak_rss_mb']:.0f} MB" if c else "")
          + f"   torch + one Adam step alone: {floor:.0f} MB")
    if len(runs) > 1:
        print(f"(g) per precision ({epochs} ep)      examples/s  per CPU-s  / fp32 GEMM limit (wall, CPU)  "
              f"test loss   peak RSS")
        for prec, r in runs.items():
            print(f"    {prec:12s}             {r['examples_per_s']:>10,.0f} {r['examples_per_cpu_s']:>10,.0f}"
                  f"   {r['examples_per_s'] / g['examples_per_s']:>8.2f} {r['examples_per_cpu_s'] / gc:>6.2f}"
                  f"          {r['test_loss']:>7.2f}   {r['peak_rss_mb']:>5.0f} MB")
        for prec in runs:
            if prec in LOW:
                b = gemm_limit(dtype=LOW[prec])
                print(f"    {prec} GEMM rate on the same shapes: {b['gflops']:.1f} GFLOP/s -> "
                      f"{b['examples_per_s']:,.0f} examples/s ({b['examples_per_s'] / g['examples_per_s']:.2f} "
                      "of the fp32 limit)")


if __name__ == "__main__":
    main()
