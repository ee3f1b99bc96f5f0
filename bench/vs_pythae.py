"""Whole-process wall time of ``vaelab train`` against pythae's TrainingPipeline on the same run.

Both sides train the pytorch/examples/vae model (MLP 784-400-20, ReLU, Bernoulli / BCE on MNIST pixels in
[0, 1], no binarization), Adam lr 1e-3, batch 128, ``--epochs`` epochs (default 5) on the same 54,000
training images, validating on the same 6,000 held-out ones after every epoch (vaelab's default
``--val-fraction 0.1`` split with seed 0; the pythae worker rebuilds that permutation with torch), seed 0,
on the CPU, with the same OMP/MKL thread count. Each process starts from nothing: it imports its library,
reads the gzip IDX files from ``$VAELAB_DATA_DIR/mnist``, converts pixels with ``uint8 / 255`` to float32,
trains, validates and saves what its tool saves by default (vaelab: a checkpoint per epoch; pythae: its
final and best model). A pair runs vaelab (A) then pythae (B); pairs repeat A B A B ..., and the script
prints each pair's wall-clock ratio B / A and the median (with min / max) over the pairs, plus each
process's CPU time, peak RSS and last validation loss (negative ELBO, nats per image, one sample).

pythae is NOT a vaelab dependency: install it in its own virtual environment (torch first, the same
version as vaelab's; pythae 0.1.2 needs nothing pinned beyond that) and pass that venv's python:

    python3 -m venv /work/pythae-venv
    /work/pythae-venv/bin/pip install torch==2.13.0 && /work/pythae-venv/bin/pip install pythae
    VAELAB_DATA_DIR=/work/shared/data .venv/bin/python bench/vs_pythae.py /work/pythae-venv/bin/python \\
        [--pairs 5] [--epochs 5] [--threads 1]

This file is also the pythae worker (``--pythae-worker``, run by the pythae venv's python); at module level
it imports only the standard library.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH, LR, HIDDEN, LATENT, VAL_FRACTION, SEED = 128, 1e-3, 400, 20, 0.1, 0


# -- the pythae side (runs inside the pythae venv) -----------------------------------------------------
def _idx_images(path: Path):
    """uint8 (N, 1, 28, 28) from a gzip IDX3 file (big-endian header: magic, n, rows, cols)."""
    import numpy as np

    raw = gzip.decompress(path.read_bytes())
    n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 1, rows, cols)


def pythae_worker(epochs: int, out: str) -> dict:
    import numpy as np
    import torch
    from torch import nn
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.head = nn.Linear(784, HIDDEN), nn.Linear(HIDDEN, 2 * LATENT)

        def forward(self, x):
            mu, logvar = self.head(torch.relu(self.fc1(x.reshape(len(x), -1)))).chunk(2, -1)  # (B, 20) each
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.fc3, self.fc4 = nn.Linear(LATENT, HIDDEN), nn.Linear(HIDDEN, 784)

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.fc4(torch.relu(self.fc3(z)))).reshape(-1, 1, 28, 28))

    x = _idx_images(Path(os.environ["VAELAB_DATA_DIR"]) / "mnist" / "train-images-idx3-ubyte.gz")
    x = x.astype(np.float32) / np.float32(255)                          # (60000, 1, 28, 28) in [0, 1]
    # vaelab's split_validation(full, 0.1, seed=0): the first 10% of randperm(n, generator seeded 0)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED)).numpy()
    n_val = round(len(x) * VAL_FRACTION)
    train, val = x[perm[n_val:]], x[perm[:n_val]]
    config = VAEConfig(input_dim=(1, 28, 28), latent_dim=LATENT, reconstruction_loss="bce")
    model = VAE(config, encoder=Encoder(), decoder=Decoder())
    trainer_config = BaseTrainerConfig(output_dir=out, num_epochs=epochs, learning_rate=LR,
                                       per_device_train_batch_size=BATCH, per_device_eval_batch_size=1000,
                                       optimizer_cls="Adam", seed=SEED, no_cuda=True)
    TrainingPipeline(model=model, training_config=trainer_config)(train_data=train, eval_data=val)
    model.eval()
    with torch.no_grad():  # the last validation loss, as vaelab's metrics.jsonl has it
        xs = torch.from_numpy(val)
        loss = sum(float(model({"data": xs[i:i + 1000]}).loss) * len(xs[i:i + 1000]) for i in range(0, len(xs), 1000))
    return {"val_loss": loss / len(xs), "pythae": __import__("importlib.metadata").metadata.version("pythae"), "torch": torch.__version__}


# -- the driver (runs in vaelab's venv) --------------------------------------------------------------
def vaelab_cmd(epochs: int, out: str) -> list[str]:
    return [sys.executable, "-m", "vaelab", "train", "--model", "vae", "--data", "mnist", "--latent-dim", str(LATENT),
            "--hidden", str(HIDDEN), "--activation", "relu", "--likelihood", "bernoulli", "--binarize", "none",
            "--epochs", str(epochs), "--batch-size", str(BATCH), "--lr", str(LR), "--seed", str(SEED),
            "--val-fraction", str(VAL_FRACTION), "--device", "cpu", "--out", out, "--overwrite", "--no-progress"]


def timed(cmd: list[str], env: dict[str, str], log: Path) -> dict:
    """Run ``cmd``; its wall time, CPU time (user + sys) and peak RSS from its own rusage."""
    with log.open("w") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{cmd[:4]} ... failed with exit code {proc.returncode}; see {log}:\n{log.read_text()[-2000:]}")
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pythae_python", nargs="?", help="python of the venv where pythae is installed")
    p.add_argument("--pairs", type=int, default=5, help="A B pairs (default 5)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs on each side (default 5)")
    p.add_argument("--threads", type=int, default=1, help="OMP/MKL threads for both sides (default 1)")
    p.add_argument("--pythae-worker", metavar="OUT", help=argparse.SUPPRESS)
    a = p.parse_args()
    if "VAELAB_DATA_DIR" not in os.environ:
        sys.exit("set VAELAB_DATA_DIR to the folder holding mnist/ (e.g. /work/shared/data)")
    if a.pythae_worker:
        print(json.dumps(pythae_worker(a.epochs, a.pythae_worker)))
        return
    if not a.pythae_python:
        p.error("give the pythae venv's python (see the install command in --help)")
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads),
           "PYTHONWARNINGS": "ignore"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="vs_pythae_") as tmp:
        root = Path(tmp)
        print(f"{a.pairs} pairs, {a.epochs} epochs, {a.threads} thread(s) each; "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        for i in range(a.pairs):
            run = str(root / "vaelab_run")
            va = timed(vaelab_cmd(a.epochs, run), env, root / "vaelab.log")
            last = [json.loads(line) for line in Path(run, "metrics.jsonl").read_text().splitlines() if line][-1]
            va["val_loss"] = -last["val_elbo"]
            pb = timed([a.pythae_python, __file__, "--pythae-worker", str(root / f"pythae_{i}"),
                        "--epochs", str(a.epochs)], env, root / "pythae.log")
            pb.update(json.loads((root / "pythae.log").read_text().strip().splitlines()[-1]))
            rows.append((va, pb))
            print(f"pair {i + 1}: vaelab {va['wall']:6.1f} s wall {va['cpu']:6.1f} s CPU {va['rss_mb']:4.0f} MB "
                  f"val {va['val_loss']:.2f} | pythae {pb['wall']:6.1f} s wall {pb['cpu']:6.1f} s CPU "
                  f"{pb['rss_mb']:4.0f} MB val {pb['val_loss']:.2f} | ratio {pb['wall'] / va['wall']:.2f}; "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
    ratios = [b["wall"] / v["wall"] for v, b in rows]
    cpu_ratios = [b["cpu"] / v["cpu"] for v, b in rows]

    def med(key: str, side: int) -> float:
        return statistics.median(r[side][key] for r in rows)

    print(f"\npythae {rows[0][1]['pythae']} (torch {rows[0][1]['torch']}) vs vaelab, {a.pairs} pairs:")
    print(f"  wall  median vaelab {med('wall', 0):.1f} s (range {min(r[0]['wall'] for r in rows):.1f}-"
          f"{max(r[0]['wall'] for r in rows):.1f}), pythae {med('wall', 1):.1f} s (range "
          f"{min(r[1]['wall'] for r in rows):.1f}-{max(r[1]['wall'] for r in rows):.1f})")
    print(f"  wall ratio pythae / vaelab: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, "
          f"max {max(ratios):.2f})")
    print(f"  CPU  ratio pythae / vaelab: median {statistics.median(cpu_ratios):.2f}x (min {min(cpu_ratios):.2f}, "
          f"max {max(cpu_ratios):.2f}); CPU medians {med('cpu', 0):.1f} s / {med('cpu', 1):.1f} s")
    print(f"  peak RSS median vaelab {med('rss_mb', 0):.0f} MB, pythae {med('rss_mb', 1):.0f} MB; last validation "
          f"loss median vaelab {med('val_loss', 0):.2f}, pythae {med('val_loss', 1):.2f} nats")


if __name__ == "__main__":
    main()
