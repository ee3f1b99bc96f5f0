"""FD_vaelab of samples on MNIST: vae (its N(0, I) prior), vae + gmm, vae + two-stage, ae + gmm, vqvae (its
PixelCNN code prior); same feature net, same number of samples, short trainings.

    VAELAB_DATA_DIR=/work/shared/data .venv/bin/python bench/samplers_fd.py [--epochs 5] [--vq-epochs 2]
        [--n 5000] [--seeds 2] [--out bench/results/samplers_fd.json]

Grey-level MNIST (binarize none, values in [0, 1]): vae and vqvae with the Bernoulli likelihood (the
pixel cross-entropy), ae on MSE; vae and ae share the MLP (784-400-16). Samples are decoded means. FD_vaelab
is the Fréchet distance in the 128-d features of vaelab's own MNIST classifier (NOT Inception FID) between
the n first test images and n samples; it is given as mean and standard deviation over ``--seeds`` sample
draws (the spread of the sampling, not of the training). The floor: n training images vs the same test
images. Also printed: the vqvae's codebook usage and perplexity on the test set, training and fitting
times (CPU seconds of this process).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vaelab import rundir, samplers
from vaelab.data import load_dataset
from vaelab.eval.features import feature_net, features, frechet_distance, generate
from vaelab.objectives import ObjectiveConfig
from vaelab.train import TrainConfig
from vaelab.train.run import train_run

MLP = {"latent_dim": 16, "hidden": (400,)}
RUNS = {  # name -> (model, options, epochs key)
    "vae": ("vae", {**MLP, "likelihood": "bernoulli"}, "epochs"),
    "ae": ("ae", {**MLP, "loss": "mse"}, "epochs"),
    "vqvae": ("vqvae", {"arch": "conv", "channels": (32, 64), "code_dim": 16, "codebook_size": 64,
                        "prior_channels": 32, "prior_layers": 3}, "vq_epochs"),
}
ROWS = [("vae", "prior"), ("vae", "gmm"), ("vae", "two-stage"), ("ae", "gmm"), ("vqvae", "prior")]


def cpu(fn):
    t = time.process_time()
    out = fn()
    return out, time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5, help="epochs of the vae and the ae")
    ap.add_argument("--vq-epochs", type=int, default=2, help="epochs of the vqvae (autoencoder and prior together)")
    ap.add_argument("--n", type=int, default=5000, help="samples per row (and test images)")
    ap.add_argument("--seeds", type=int, default=2, help="sample draws per row")
    ap.add_argument("--two-stage-epochs", type=int, default=20)
    ap.add_argument("--runs", type=Path, default=None, help="keep the run folders here (default: a temp dir)")
    ap.add_argument("--only", default=None, help="comma-separated rows, e.g. vae+gmm,ae+gmm (default: all)")
    ap.add_argument("--reuse", action="store_true", help="load the runs already in --runs instead of training")
    ap.add_argument("--out", type=Path, default=Path("bench/results/samplers_fd.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    real = test.x[: args.n]
    net, name = feature_net(train)
    f_real = features(net, real)
    result = {"feature_net": f"FD_vaelab:{name}", "n": args.n, "seeds": args.seeds, "epochs": args.epochs,
              "vq_epochs": args.vq_epochs, "rows": {}, "train_cpu_s": {}, "fit_cpu_s": {}}
    floor = frechet_distance(features(net, train.x[: args.n]), f_real)
    result["floor_train_vs_test"] = floor
    print(f"FD_vaelab floor (train vs test images, n={args.n}): {floor:.3f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.runs or Path(tmp)
        rows = [r for r in ROWS if args.only is None or f"{r[0]}+{r[1]}" in args.only.split(",")]
        models = {}
        for key, (model, options, epochs_key) in RUNS.items():
            if key not in {k for k, _ in rows}:
                continue
            cfg = TrainConfig(epochs=getattr(args, epochs_key), batch_size=128, lr=1e-3, seed=0, device="cpu",
                              progress=False)
            if args.reuse and (root / key / "model.safetensors").is_file():
                models[key] = rundir.load(root / key)
                print(f"reused {root / key}")
                continue
            (m, history), secs = cpu(lambda: train_run(model, "mnist", root / key, options, cfg, ObjectiveConfig(),
                                                       val_fraction=0.0, overwrite=True))
            models[key] = m.eval()
            result["train_cpu_s"][key] = secs
            last = {k: round(v, 3) for k, v in history[-1].items() if isinstance(v, float)}
            print(f"trained {key}: {secs:.0f} CPU s, last epoch {json.dumps(last)}", flush=True)
        if "vqvae" in models:
            stats = models["vqvae"].codebook_stats(test.x)
            result["vqvae_codebook"] = stats
            print(f"vqvae codebook on the test set: {stats}", flush=True)
        for key, sampler_name in rows:
            model, sampler = models[key], None
            if sampler_name != "prior":
                config = samplers.TwoStageConfig(epochs=args.two_stage_epochs) if sampler_name == "two-stage" else None
                (sampler, _), secs = cpu(lambda: samplers.for_run(root / key, sampler_name, model, lambda: train,
                                                                  config, refit=True))
                result["fit_cpu_s"][f"{key}+{sampler_name}"] = secs
            fds = [frechet_distance(features(net, generate(model, args.n, seed, sampler=sampler)), f_real)
                   for seed in range(args.seeds)]
            row = {"fd_mean": statistics.mean(fds), "fd_sd": statistics.stdev(fds) if len(fds) > 1 else None,
                   "fd": fds}
            result["rows"][f"{key}+{sampler_name}"] = row
            print(f"{key:6s} + {sampler_name:9s}: FD_vaelab {row['fd_mean']:.3f} +- {row['fd_sd'] or 0:.3f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
