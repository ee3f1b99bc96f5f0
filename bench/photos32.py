"""Bits/dim on photos32 (32x32 RGB crops of scikit-learn's two photos, 8-bit): PPCA (dequantized bound),
an MLP VAE and a ResNet VAE with the discretized mixture of logistics, all on one discrete 256-level scale.

Each trainable model gets the same wall-clock budget (``--minutes``, TrainConfig.max_minutes: it stops after
the epoch that passes it); all are scored on the same first ``--examples`` test crops with K importance
samples (``--k``), NLL in nats with its Monte Carlo standard error, bits/dim = NLL / (3072 ln 2). Also printed:
mean brightness of 256 prior samples (decoded means) and of 256 samples from a Gaussian mixture fitted to the
training crops' codes (``vaelab sample RUN --sampler gmm``; stored in the run, so ``vaelab report RUN`` shows
them), against the mean of the test crops and of the training crops. ``--reuse`` scores runs already in
``--out`` instead of training them again.

    VAELAB_DATA_DIR=... python bench/photos32.py --minutes 8 --k 1000 --examples 130 --out /tmp/photos32
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vaelab import rundir, samplers
from vaelab.data import for_evaluation, load_dataset
from vaelab.eval.evaluate import evaluate
from vaelab.train import TrainConfig
from vaelab.train.run import train_run

MODELS = {
    "pca": ("pca", {"latent_dim": 64}),
    "vae-mlp-dmol": ("vae", {"latent_dim": 64, "hidden": (512,), "likelihood": "dmol", "mixture_components": 5}),
    "vae-resnet-dmol": ("vae", {"latent_dim": 64, "arch": "resnet", "channels": (16, 32, 64), "blocks": (1,),
                                "hidden": (256,), "likelihood": "dmol", "mixture_components": 5}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=8.0, help="training budget per trainable model (wall)")
    ap.add_argument("--k", type=int, default=1000, help="importance samples per test crop (0: no likelihood)")
    ap.add_argument("--examples", type=int, default=130, help="test crops scored (the first N of 520)")
    ap.add_argument("--out", type=Path, default=Path("runs/photos32-bench"))
    ap.add_argument("--only", default=",".join(MODELS))
    ap.add_argument("--reuse", action="store_true", help="score the runs already in --out (no training)")
    args = ap.parse_args()
    test = for_evaluation(load_dataset("photos32", "test"))
    train = load_dataset("photos32", "train")
    data_mean, train_mean = float(test.x.mean()), float(for_evaluation(train).x.mean())
    rows = []
    for key in args.only.split(","):
        name, options = MODELS[key]
        t0 = time.perf_counter()
        cfg = TrainConfig(epochs=1000, batch_size=64, lr=1e-3, seed=0, progress=False, max_minutes=args.minutes)
        if args.reuse:
            model, hist = rundir.load(args.out / key), rundir.read_metrics(args.out / key)
        else:
            model, hist = train_run(name, "photos32", args.out / key, options, cfg, overwrite=True, val_fraction=0.0)
        minutes = (time.perf_counter() - t0) / 60
        model = model.cpu().eval()
        t1 = time.perf_counter()
        r = evaluate(model, test, iw_samples=args.k, fd=False, max_examples=args.examples) if args.k else \
            {k: None for k in ("scale_label", "nll", "nll_se", "bits_per_dim", "bits_per_dim_se")}
        row = {"model": key, "epochs": len(hist), "train_minutes": round(minutes, 2),
               "eval_minutes": round((time.perf_counter() - t1) / 60, 2), "scale": r["scale_label"],
               "nll": r["nll"], "nll_se": r["nll_se"], "bits_per_dim": r["bits_per_dim"],
               "bits_per_dim_se": r["bits_per_dim_se"], "ess": r.get("ess"), "k": args.k, "examples": args.examples}
        if name != "pca":
            with torch.no_grad():
                row["sample_brightness"] = float(model.sample(256, generator=torch.Generator().manual_seed(0)).mean())
            gmm, _ = samplers.for_run(args.out / key, "gmm", model, lambda: train)
            row["gmm_sample_brightness"] = float(gmm.sample(model, 256, generator=torch.Generator().manual_seed(0)).mean())
        row["data_brightness"], row["train_brightness"] = data_mean, train_mean
        rows.append(row)
        print(json.dumps(row), flush=True)
    (args.out / ("results-reused.json" if args.reuse else "results.json")).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
