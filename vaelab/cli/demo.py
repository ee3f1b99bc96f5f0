"""vaelab demo: the lecture's first act on the embedded digits - PCA vs autoencoder vs VAE, 2-D latents."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
import typer

from .. import viz
from ..data import for_evaluation, load_from_info
from ..models import LatentModel
from ..objectives import ObjectiveConfig
from ..runs import train_run
from ..train import TrainConfig, score
from . import app
from .common import friendly
from .io import write_png

# (model, options, epochs): small nets, enough epochs for 8x8 digits, well under 2 minutes on 2 cores
DEMO_MODELS: list[tuple[str, dict[str, Any], int]] = [
    ("pca", {"latent_dim": 2}, 1),
    ("ae", {"latent_dim": 2, "hidden": (256, 128)}, 150),
    ("vae", {"latent_dim": 2, "hidden": (256, 128), "likelihood": "bernoulli"}, 150),
]


def demo_pictures(name: str, model: LatentModel, test) -> dict[str, Any]:
    """The pictures the demo writes for one model (pure: arrays and figures)."""
    x, y = test.x, test.y
    z = model.encode(x, y if model.n_classes else None).mean.detach().numpy()
    pics: dict[str, Any] = {
        f"latent_{name}.png": viz.latent_scatter(z, None if y is None else y.numpy(),
                                                 title=f"{name}: test-set posterior means"),
        f"recon_{name}.png": viz.upscale(viz.image_grid(viz.pairs(x, model.reconstruct(x), 16), ncol=16), 4),
    }
    if name != "pca":
        torch.manual_seed(0)
        pics[f"samples_{name}.png"] = viz.upscale(viz.image_grid(model.sample(64)), 4)
    return pics


@app.command()
@friendly
def demo(
    data: str = typer.Option("digits", help="dataset (digits is embedded and needs no download)"),
    out: Path = typer.Option(Path("runs/demo"), help="folder for runs, pictures and metrics.json"),
    data_dir: Optional[Path] = typer.Option(None, help="where mnist/ lives (else $VAELAB_DATA_DIR)"),
    epochs_scale: float = typer.Option(1.0, help="multiply every model's epochs (e.g. 0.1 for a quick look)"),
    progress: bool = typer.Option(True),
) -> None:
    """Train PCA, an autoencoder and a VAE with 2-D latents; write metrics.json and pictures into OUT."""
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = {}
    for name, options, epochs in DEMO_MODELS:
        cfg = TrainConfig(epochs=max(1, round(epochs * epochs_scale)), batch_size=64, lr=2e-3,
                          progress=progress)
        model, _ = train_run(name, data, out / name, options, cfg, ObjectiveConfig(), data_dir=data_dir,
                             val_fraction=0.0)
        test = for_evaluation(load_from_info(json.loads((out / name / "config.json").read_text())["data"],
                                             "test", data_dir))
        m = score(model, test)
        if name == "pca":
            m["log_likelihood"] = float(model.log_prob(test.x).mean())
        metrics[name] = {"recon_mse": m.pop("mse"), **m}
        for fname, pic in demo_pictures(name, model, test).items():
            write_png(out / fname, pic)
        typer.echo(f"{name:>4}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics[name].items()))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    typer.echo(f"wrote {out}/metrics.json and pictures")
