"""Training images/s of the ResNet VAE: vaelab's loop (``train.fit``) against the same network in a plain
PyTorch loop, on synthetic 32x32 RGB images (smooth random colour fields in [0, 1]).

Both train the same model, built by ``build_model("vae", arch="resnet", ...)`` from the same seed, with a
Gaussian likelihood of fixed sigma 0.1, batch 64 and Adam lr 1e-3 on the same images. vaelab's number is
the loop's own timing of its second epoch (``examples_per_s`` in metrics.jsonl: training steps only, not
validation); the plain loop is written the way one writes it by hand: shuffle indices, slice the batch,
``model.encoder`` -> reparameterise -> ``model.decoder`` -> Gaussian log-density and closed-form KL by
formula, ``torch.optim.Adam`` step, timed over its second epoch too. Then the plain loop once more with
the model and the batches in channels_last memory format, and vaelab with ``TrainConfig.channels_last``
(``--channels-last``: the model's conv weights in NHWC; the batches follow inside the first convolution).
Every number is images per wall-second and per CPU-second of this process (steadier on a shared machine);
the ratio is vaelab / plain.

    .venv/bin/python bench/resnet_throughput.py [--n 1024] [--threads 1] [--channels 32,64,128]
        [--precisions fp32,bf16] [--compile]    (extra vaelab rows: mixed precision, torch.compile)
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from vaelab.data import DataInfo, Dataset
from vaelab.device import pick_device
from vaelab.models import build_model
from vaelab.train import TrainConfig, fit

BATCH, LR, SIGMA, SHAPE = 64, 1e-3, 0.1, (3, 32, 32)


def synthetic_rgb(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 3, 32, 32) smooth colour fields: 4x4 random colours upsampled bilinearly, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=SHAPE[1:], mode="bilinear", align_corners=False)


def new_model(args: argparse.Namespace, device: torch.device):
    torch.manual_seed(0)
    return build_model("vae", input_shape=SHAPE, latent_dim=args.latent_dim, arch="resnet",
                       channels=args.channels, likelihood="gaussian", sigma=SIGMA).to(device)


def run_vaelab(x: torch.Tensor, args: argparse.Namespace, device: torch.device, precision: str = "fp32",
               compile: bool = False, channels_last: bool = False) -> dict[str, float]:
    model = new_model(args, device)
    ds = Dataset(x, None, DataInfo(name="synthetic-rgb32", shape=SHAPE))
    cfg = TrainConfig(epochs=2, batch_size=BATCH, lr=LR, seed=0, device=str(device), progress=False,
                      precision=precision, compile=compile, channels_last=channels_last)
    ends: list[float] = []  # process CPU time at each epoch's end (no validation, no run folder here)
    history = fit(model, ds, None, cfg=cfg, callbacks=[EpochCPU(ends)])
    row = history[-1]
    return {"wall": row["examples_per_s"], "cpu": row["examples_per_s"] * row["seconds"] / (ends[1] - ends[0]),
            "loss": row["loss"]}


class EpochCPU:
    """A fit callback noting the process CPU time when each epoch ends."""

    def __init__(self, ends: list[float]) -> None:
        self.ends = ends

    def on_epoch_end(self, row: dict, model: torch.nn.Module) -> None:
        self.ends.append(time.process_time())


def run_plain(x: torch.Tensor, args: argparse.Namespace, device: torch.device,
              channels_last: bool = False) -> dict[str, float]:
    model = new_model(args, device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    enc, dec = model.encoder, model.decoder
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x = x.to(device)
    const = 0.5 * math.log(2 * math.pi) + math.log(SIGMA)
    g = torch.Generator().manual_seed(0)
    result: dict[str, float] = {}
    for epoch in range(2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t, cpu, total, n = time.perf_counter(), time.process_time(), 0.0, 0
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - BATCH + 1, BATCH):
            xb = x[perm[i:i + BATCH].to(device)].contiguous(memory_format=fmt)  # (B, 3, 32, 32)
            mu, logvar = enc(xb).chunk(2, dim=-1)                               # (B, d) each
            z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
            mean = dec(z)                                                       # (B, 3, 32, 32)
            recon = -(0.5 * ((xb - mean) / SIGMA) ** 2 + const).flatten(1).sum(1)
            kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1)
            loss = (kl - recon).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(xb)   # the per-step sync vaelab's loop avoids
            n += len(xb)
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        result = {"wall": n / wall, "cpu": n / cpu, "loss": total / n}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1024, help="training images (an epoch)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads on the CPU")
    ap.add_argument("--channels", type=lambda s: tuple(int(v) for v in s.split(",")), default=(32, 64, 128),
                    help="resnet widths per stage (default: vaelab's default for 32 px)")
    ap.add_argument("--latent-dim", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precisions", default="fp32", help="vaelab rows: comma-separated fp32,bf16,fp16 (fp16: CUDA)")
    ap.add_argument("--compile", action="store_true", help="also a vaelab row with TrainConfig.compile (fp32)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    x = synthetic_rgb(args.n)
    print(f"device {device}, threads {torch.get_num_threads()}, {args.n} images 3x32x32, batch {BATCH}, "
          f"channels {args.channels}, latent {args.latent_dim}")
    runs = {"vaelab fit": run_vaelab(x, args, device), "plain loop": run_plain(x, args, device),
            "plain loop, channels_last": run_plain(x, args, device, channels_last=True),
            "vaelab fit, channels_last": run_vaelab(x, args, device, channels_last=True)}
    for precision in [p for p in args.precisions.split(",") if p != "fp32"]:
        runs[f"vaelab fit, {precision}"] = run_vaelab(x, args, device, precision=precision)
    if args.compile:  # timed on epoch 2: the compilation (epoch 1) is not in the rate
        runs["vaelab fit, compiled"] = run_vaelab(x, args, device, compile=True)
    for name, r in runs.items():
        print(f"{name:27s} {r['wall']:9.1f} images/s (wall)  {r['cpu']:9.1f} images/CPU-s   "
              f"epoch-2 loss {r['loss']:.1f} nats/image")
    v, p = runs["vaelab fit"], runs["plain loop"]
    print(f"ratio vaelab / plain: {v['wall'] / p['wall']:.3f} (wall), {v['cpu'] / p['cpu']:.3f} (CPU time)")
    c, vc = runs["plain loop, channels_last"], runs["vaelab fit, channels_last"]
    print(f"channels_last / contiguous (plain loop): {c['wall'] / p['wall']:.3f} (wall), "
          f"{c['cpu'] / p['cpu']:.3f} (CPU time)")
    print(f"channels_last / contiguous (vaelab fit): {vc['wall'] / v['wall']:.3f} (wall), "
          f"{vc['cpu'] / v['cpu']:.3f} (CPU time)")
    for name in [n for n in runs if n.startswith("vaelab fit, ")]:
        r = runs[name]
        print(f"{name} / plain loop: {r['wall'] / p['wall']:.3f} (wall), {r['cpu'] / p['cpu']:.3f} (CPU time)")


if __name__ == "__main__":
    main()
