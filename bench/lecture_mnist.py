"""The lecture's sampling claims on MNIST, measured: ae (decoded N(0, I) codes), vae, vae + gmm, vaegan.

    VAELAB_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1 .venv/bin/python bench/lecture_mnist.py \
        [--epochs 3] [--latent-dim 16] [--n 2000] [--iw 100] [--json out.json] [--png vae_vs_vaegan.png]

Grey-level MNIST (values in [0, 1]); ae (MSE), vae (Bernoulli) and vaegan share the MLP 784-400-d and the
epochs (vaegan adds its discriminator). Per row, from n prior samples (decoded means) against the n first
test images, all in the feature space of vaelab's own MNIST classifier (FD_vaelab, NOT Inception FID):
FD_vaelab, sharpness (variance of the Laplacian, samples / test, with the samples' mean +- standard error),
precision and recall (Kynkäänniemi et al. 2019, k = 3). NLL only where a likelihood exists (the vae; its
Bernoulli log-likelihood of grey pixels is a cross-entropy, not a log-probability: the scale is printed),
importance-sampled with --iw samples on the n test images, +- its standard error. vae + gmm: a 10-component
Gaussian mixture fitted to the vae's training codes (vaelab.samplers) replaces N(0, I).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from vaelab import samplers
from vaelab.data import load_dataset
from vaelab.eval.evaluate import model_scale
from vaelab.eval.features import feature_net, features, frechet_distance, generate
from vaelab.eval.likelihood import log_likelihood_estimate
from vaelab.eval.quality import PR_K, precision_recall, sharpness
from vaelab.objectives import ObjectiveConfig
from vaelab.train import TrainConfig
from vaelab.train.run import train_run

ROWS = [("ae", "prior"), ("vae", "prior"), ("vae", "gmm"), ("vaegan", "prior")]


def options(name: str, latent_dim: int) -> dict:
    mlp = {"latent_dim": latent_dim, "hidden": (400,)}
    return {"ae": {**mlp, "loss": "mse"}, "vae": {**mlp, "likelihood": "bernoulli"}, "vaegan": mlp}[name]


def side_by_side(images: dict[str, torch.Tensor], titles: dict[str, str], path: Path) -> None:
    """One PNG: a grid of samples per model, titled, side by side."""
    from matplotlib.figure import Figure

    from vaelab.viz.grids import image_grid

    fig = Figure(figsize=(5.2 * len(images), 5.8), dpi=100)
    for i, (key, x) in enumerate(images.items()):
        ax = fig.add_subplot(1, len(images), i + 1)
        ax.imshow(image_grid(x[:64], ncol=8), cmap="gray", interpolation="nearest")
        ax.set_title(titles[key], fontsize=11)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3, help="epochs of every model")
    ap.add_argument("--latent-dim", type=int, default=16)
    ap.add_argument("--n", type=int, default=2000, help="samples per row, test images compared with them")
    ap.add_argument("--iw", type=int, default=100, help="importance samples per test image for the vae's NLL")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--png", type=Path, default=None, help="VAE vs VAE-GAN samples side by side")
    args = ap.parse_args()
    torch.set_num_threads(1)
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    real = test.x[: args.n]
    net, name = feature_net(train)
    f_real = features(net, real)
    result = {"feature_net": f"FD_vaelab:{name}", "n": args.n, "k": PR_K, "epochs": args.epochs,
              "latent_dim": args.latent_dim, "rows": {}, "train_s": {}}
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key in dict.fromkeys(k for k, _ in ROWS):
            cfg = TrainConfig(epochs=args.epochs, batch_size=128, lr=1e-3, seed=0, device="cpu", progress=False)
            t0 = time.perf_counter()
            m, _ = train_run(key, "mnist", Path(tmp) / key, options(key, args.latent_dim), cfg, ObjectiveConfig(),
                             val_fraction=0.0)
            models[key], result["train_s"][key] = m.eval(), time.perf_counter() - t0
            print(f"trained {key} in {result['train_s'][key]:.0f} s", flush=True)
        shown = {}
        for key, how in ROWS:
            model = models[key]
            sampler = None if how == "prior" else samplers.for_run(Path(tmp) / key, how, model, lambda: train,
                                                                   refit=True)[0]
            x = generate(model, args.n, sampler=sampler)
            row = {"fd": frechet_distance(features(net, x), f_real), **sharpness(x, real),
                   **precision_recall(f_real, features(net, x), PR_K), "nll": None, "nll_se": None, "scale": None}
            if model.has_likelihood and how == "prior":
                est = log_likelihood_estimate(model, real, None, args.iw, seed=0)
                row.update(nll=-float(est.log_px.mean()), nll_se=est.mean_se(),
                           scale=model_scale(model, test, dequantize=False).label)
            result["rows"][f"{key}+{how}"] = row
            if how == "prior" and key in ("vae", "vaegan"):
                shown[key] = x
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.png:
        vae = result["rows"]["vae+prior"]
        side_by_side(shown, {
            "vae": f"VAE: N(0, I) samples, FD {vae['fd']:.1f}\nsharpness {vae['sharpness_ratio']:.2f} x test; "
                   f"NLL {vae['nll']:.1f} nats ({vae['scale']})",
            "vaegan": f"VAE-GAN: N(0, I) samples, FD {result['rows']['vaegan+prior']['fd']:.1f}\nsharpness "
                      f"{result['rows']['vaegan+prior']['sharpness_ratio']:.2f} x test; no likelihood"}, args.png)


def print_table(result: dict) -> None:
    print(f"\nMNIST, {result['epochs']} epochs, latent {result['latent_dim']}, n = {result['n']} samples vs test "
          f"images, FD and precision/recall (k = {result['k']}) in {result['feature_net']}")
    print(f"{'row':13s} {'FD_vaelab':>9s} {'sharp s/t':>9s} {'sharp samples':>16s} {'precision':>9s} {'recall':>7s}"
          "  NLL (nats, +- SE)")
    for key, r in result["rows"].items():
        nll = "-" if r["nll"] is None else f"{r['nll']:.2f} +- {r['nll_se']:.2f} ({r['scale']})"
        print(f"{key:13s} {r['fd']:9.2f} {r['sharpness_ratio']:9.2f} "
              f"{r['sharpness_samples']:8.4f}+-{r['sharpness_samples_se']:.4f} {r['precision']:9.3f} "
              f"{r['recall']:7.3f}  {nll}")
    r = next(iter(result["rows"].values()))
    print(f"test images' sharpness (variance of the Laplacian): {r['sharpness_test']:.4f} +- {r['sharpness_test_se']:.4f}")


if __name__ == "__main__":
    main()
