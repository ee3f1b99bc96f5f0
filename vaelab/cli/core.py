"""vaelab train / sample / reconstruct."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import typer

from .. import rundir
from ..train import distributed
from ..viz import grids as viz
from ..data import for_evaluation, load_from_info
from ..objectives import ObjectiveConfig
from ..train.run import train_run
from ..train.loop import TrainConfig
from . import app
from .common import friendly, parse_ints
from .io import write_png


@app.command()
@friendly
def train(
    model: str = typer.Option("vae", help="registered model: pca, ae, vae, cvae, ..."),
    data: str = typer.Option("digits", help="digits | mnist | swiss-roll | an image folder | a .npy/.npz file"),
    latent_dim: Optional[int] = typer.Option(None, help="size of z (model default when unset)"),
    latent_dims: Optional[str] = typer.Option(None, help="hvae: size of each stochastic layer, bottom first, e.g. 64,32"),
    inference: Optional[str] = typer.Option(None, help="hvae: top-down (ladder) | bottom-up (Markov chain)"),
    hidden: Optional[str] = typer.Option(None, help="hidden sizes, comma-separated, e.g. 512,256"),
    arch: Optional[str] = typer.Option(None, help="mlp | conv"),
    activation: Optional[str] = typer.Option(None, help="relu | tanh | elu | gelu | silu"),
    likelihood: Optional[str] = typer.Option(None, help="bernoulli | gaussian | gaussian-learned | laplace"),
    sigma: Optional[float] = typer.Option(None, help="decoder scale for gaussian likelihoods"),
    loss: Optional[str] = typer.Option(None, help="autoencoder loss: mse | l1"),
    binarize: str = typer.Option("none", help="none | dynamic | static"),
    size: Optional[int] = typer.Option(None, help="resize image folders to size x size"),
    objective: str = typer.Option("elbo", help="elbo | iwae"),
    k: int = typer.Option(1, help="importance samples for --objective iwae"),
    beta: float = typer.Option(1.0, help="KL weight (beta-VAE)"),
    warmup: float = typer.Option(0.0, help="epochs of linear KL warm-up"),
    free_bits: float = typer.Option(0.0, help="free nats per latent group (dimension; layer for hvae)"),
    batch_size: int = typer.Option(128),
    lr: float = typer.Option(1e-3),
    epochs: int = typer.Option(10),
    seed: int = typer.Option(0),
    val_fraction: float = typer.Option(0.1, help="share of the training split held out for validation"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps"),
    out: Path = typer.Option(Path("runs/x"), help="run folder to write"),
    data_dir: Optional[Path] = typer.Option(None, help="where mnist/ lives (else $VAELAB_DATA_DIR)"),
    resume: bool = typer.Option(False, help="continue the run in --out from its last epoch"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Train a model and write OUT/config.json, model.safetensors, metrics.jsonl."""
    options = {"latent_dim": latent_dim, "latent_dims": parse_ints(latent_dims, "--latent-dims") if latent_dims else None,
               "hidden": parse_ints(hidden, "--hidden") if hidden else None,
               "arch": arch, "activation": activation, "likelihood": likelihood, "sigma": sigma, "loss": loss,
               "inference": inference}
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, progress=progress)
    obj = ObjectiveConfig(kind=objective, k=k, beta=beta, warmup=warmup, free_bits=free_bits)
    net, history = train_run(model, data, out, options, cfg, obj, data_dir=data_dir, binarize=binarize,
                           size=size, val_fraction=val_fraction, resume=resume)
    last = history[-1] if history else {}
    keys = ("val_", "elbo", "loss") if net.has_likelihood else ("val_", "loss")  # an AE has no ELBO
    shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if k.startswith(keys))
    if distributed.is_main():  # under torchrun only rank 0 reports
        typer.echo(f"trained {model} on {data}: {shown} -> {out}")


@app.command()
@friendly
def sample(
    run: Path = typer.Argument(..., help="run folder"),
    n: int = typer.Option(64, "-n", help="number of samples"),
    out: Path = typer.Option(Path("samples.png")),
    label: Optional[int] = typer.Option(None, help="class to generate (conditional models)"),
    temperature: float = typer.Option(1.0, help="scale of the prior draws"),
    seed: int = typer.Option(0),
) -> None:
    """Draw prior samples and write them as an image grid."""
    model = rundir.load(run)
    if label is not None and model.n_classes == 0:
        raise ValueError(f"--label {label} needs a conditional model; {model.name!r} is not")
    if n > 10000:
        raise ValueError(f"-n {n} is too many; allowed: 1..10000")
    torch.manual_seed(seed)
    x = model.sample(n, label, temperature)
    write_png(out, viz.upscale(viz.image_grid(x), 2 if model.input_shape[-1] < 32 else 1))
    typer.echo(f"wrote {n} samples to {out}")


@app.command()
@friendly
def reconstruct(
    run: Path = typer.Argument(..., help="run folder"),
    out: Path = typer.Option(Path("recon.png")),
    n: int = typer.Option(16, "-n", help="test images to show"),
    data_dir: Optional[Path] = typer.Option(None, help="where mnist/ lives (else $VAELAB_DATA_DIR)"),
) -> None:
    """Test images (top row) and their reconstructions (bottom row)."""
    if n < 1:
        raise ValueError(f"-n {n} must be >= 1")
    model = rundir.load(run)
    test = for_evaluation(load_from_info(rundir.read_config(run)["data"], "test", data_dir))
    x, y = test.x[:n], None if test.y is None else test.y[:n]
    grid = viz.image_grid(viz.pairs(x, model.reconstruct(x, y if model.n_classes else None), n), ncol=min(n, len(x)))
    write_png(out, viz.upscale(grid, 2 if model.input_shape[-1] < 32 else 1))
    typer.echo(f"wrote originals and reconstructions to {out}")
