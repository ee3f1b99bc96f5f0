"""vaelab demo: the lecture's first act on the embedded digits - PCA vs autoencoder vs VAE, 2-D latents.

It ends by writing OUT/report.html, one self-contained page telling the story on the demo's own data."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import torch
import typer

from ..viz import grids as viz, plots
from ..data import Dataset, for_evaluation, load_from_info
from ..eval.evaluate import iwae_curve
from ..models import LatentModel
from ..objectives import ObjectiveConfig
from ..rundir import REPORT, atomic_write, read_config, write_json, write_png
from ..viz.report import RunSummary, metrics_table, page_html, section_html
from ..train.run import train_run
from ..train.loop import TrainConfig, score
from . import app
from .common import friendly

# (model, options, epochs): small nets, enough epochs for 8x8 digits, well under 2 minutes on 2 cores
DEMO_MODELS: list[tuple[str, dict[str, Any], int]] = [
    ("pca", {"latent_dim": 2}, 1),
    ("ae", {"latent_dim": 2, "hidden": (256, 128)}, 150),
    ("vae", {"latent_dim": 2, "hidden": (256, 128), "likelihood": "bernoulli"}, 150),
]
IW_SAMPLES = 100   # importance samples for the VAE's log-likelihood estimate in the report


def demo_pictures(name: str, model: LatentModel, test) -> dict[str, Any]:
    """The pictures the demo writes for one model (pure: arrays and figures)."""
    x, y = test.x, test.y
    z = model.encode(x, y if model.n_classes else None).mean.detach().numpy()
    pics: dict[str, Any] = {
        f"latent_{name}.png": viz.latent_scatter(z, None if y is None else y.numpy(),
                                                 title=f"{name}: test-set {plots.describe_codes(model)}"),
        f"recon_{name}.png": viz.upscale(viz.image_grid(viz.pairs(x, model.reconstruct(x), 16), ncol=16), 4),
    }
    if name != "pca":
        torch.manual_seed(0)
        pics[f"samples_{name}.png"] = viz.upscale(viz.image_grid(model.sample(64)), 4)
    return pics


def likelihood_numbers(models: dict[str, LatentModel], test: Dataset, metrics: dict[str, Any]) -> dict[str, dict]:
    """{model: {elbo, log_px, bound, how}} in nats per test image, for the models with a likelihood: the ELBO
    is the mean of IW_SAMPLES log weights; log p(x) the exact value (PCA) or the IWAE_K lower bound (VAE)."""
    out = {}
    for name, model in models.items():
        if not model.has_likelihood:
            continue
        exact = metrics[name].get("log_likelihood")
        curve = iwae_curve(model, test.x, (1, 10, IW_SAMPLES), seed=0)
        if exact is not None:
            out[name] = {"elbo": curve[1], "log_px": exact, "bound": False,
                         "how": f"exact (closed form); IWAE_{IW_SAMPLES} = {curve[IW_SAMPLES]:.3f}"}
        else:
            out[name] = {"elbo": curve[1], "log_px": curve[IW_SAMPLES], "bound": True,
                         "how": f"IWAE_K lower bound, K={IW_SAMPLES} (K=10: {curve[10]:.3f})"}
    return out


def _summaries(models: dict[str, LatentModel], test: Dataset, metrics: dict[str, Any],
               lik: dict[str, dict]) -> list[RunSummary]:
    out = []
    for name, model in models.items():
        m = {"recon_mse": metrics[name]["recon_mse"], "kl": metrics[name].get("kl")}
        if name in lik:
            nll = None if lik[name]["log_px"] is None else -lik[name]["log_px"]
            m.update(elbo=lik[name]["elbo"], nll=nll,
                     bits_per_dim=None if nll is None else nll / (test.info.dim * math.log(2)))
        out.append(RunSummary(name, model.name, test.info.name, model.latent_dim, m, "test set"))
    return out


def story_html(models: dict[str, LatentModel], test: Dataset, metrics: dict[str, Any],
               pictures: dict[str, Any]) -> str:
    """The demo's report: the lecture's story told with this run's pictures and numbers (pure)."""
    lik = likelihood_numbers(models, test, metrics)
    man = {n: plots.make_plot("manifold", m, test, opts=plots.PlotOptions(n=12)) for n, m in models.items()}
    vae = models["vae"]
    torch.manual_seed(0)
    with torch.no_grad():
        px = vae.decode(vae.prior(64).sample())
        means, draws = px.mean, px.sample()
    fmt = lambda v: "&ndash;" if v is None else f"{v:.3f}"  # noqa: E731
    rows = "".join(f"<tr><td class='text'>{n}</td><td>{fmt(r['elbo'])}</td>"
                   f"<td>{'&ge; ' if r['bound'] else ''}{fmt(r['log_px'])}</td><td class='text'>{r['how']}</td></tr>"
                   for n, r in lik.items())
    lik_table = ("<table><thead><tr><th class='text'>model</th><th>ELBO (nats)</th><th>log p(x) (nats)</th>"
                 f"<th class='text'>how log p(x) was computed</th></tr></thead><tbody>{rows}</tbody></table>")
    up = lambda a: viz.upscale(a, 4)  # noqa: E731
    body = [
        section_html("The three models on the test set",
                     "Reconstruction error for all three; ELBO, KL and negative log-likelihood (NLL = -log p(x)) "
                     "in nats per image for the two probabilistic ones. The autoencoder has no p(x), so no "
                     "likelihood: only its reconstruction error can be compared.",
                     extra=metrics_table(_summaries(models, test, metrics, lik))),
        section_html("Latent spaces: PCA is linear, the autoencoder's is sparse and unstructured, the VAE's is "
                     "dense and sampleable",
                     "Each dot is a test digit's code, coloured by its class. PCA projects linearly onto the two "
                     "directions of largest variance, so classes overlap wherever the digits' manifold curves. "
                     "Nothing in the autoencoder's loss fixes the scale of its codes or fills the space between "
                     "its clusters, so nothing says which regions decode to digits. The VAE's KL term pulls every "
                     "posterior towards N(0, I): the codes fill one round region around the origin, where the "
                     "prior puts its draws.",
                     figures=[(pictures[f"latent_{n}.png"], f"{n}: test-set codes") for n in models]),
        section_html("Decoding a grid over each latent space",
                     "PCA and the VAE decode the prior's quantile lattice z = Phi^-1(u) (Kingma & Welling's "
                     "figure); the autoencoder has no prior, so its grid spans the range of its test codes. PCA's "
                     "decodings are linear blends of two fixed images; the VAE's morph between digit shapes.",
                     figures=[(man[n], f"{n}: decoded grid") for n in models]),
        section_html("Sampling: VAE samples vs autoencoder 'samples'",
                     "Both decoders are fed codes drawn from N(0, I). The VAE was trained so that this is its prior. "
                     "The autoencoder never was: it has no prior, and random codes can land where no training digit "
                     "was encoded. An autoencoder compresses; on its own it is not a generative model.",
                     figures=[(pictures["samples_vae.png"], "vae: decoded z ~ N(0, I)"),
                              (pictures["samples_ae.png"], "ae: decoded z ~ N(0, I) (it has no prior)")]),
        section_html("ELBO vs log-likelihood",
                     "The ELBO is log p(x) minus KL(q(z|x) || p(z|x)). Probabilistic PCA's posterior is exact, so "
                     "its ELBO equals its exact log-likelihood (in expectation; with an exact posterior every "
                     "importance weight p(x, z)/q(z|x) equals p(x), so they agree to rounding). The VAE's encoder "
                     "only approximates the posterior, so its ELBO is a strict lower bound; the importance-weighted "
                     "(IWAE) bound tightens towards log p(x) as K grows: ELBO <= IWAE_10 <= IWAE_100 <= log p(x). "
                     "PCA uses a Gaussian density on continuous pixels and the VAE a Bernoulli likelihood, so their "
                     "values are not on the same scale.",
                     extra=lik_table),
        section_html("VAE samples are blurry",
                     "The decoder outputs a distribution for every pixel. The pictures show its mean: an average "
                     "over all digits a code could stand for, hence blur. Drawing the pixels instead gives speckle, "
                     "because p(x|z) treats pixels as independent given z. Sharper samples need a better posterior "
                     "and a richer decoder (hierarchical or autoregressive).",
                     figures=[(up(viz.image_grid(test.x[:64])), "real test digits"),
                              (up(viz.image_grid(means)), "vae: decoded means of z ~ N(0, I)"),
                              (up(viz.image_grid(draws)), "vae: pixels drawn from p(x|z), same z")]),
    ]
    return page_html("PCA, autoencoder, VAE: the demo's story", "".join(body),
                     intro=f"Three models with 2-D latents trained on {test.info.name} ({len(test)} test images).")


@app.command()
@friendly
def demo(
    data: str = typer.Option("digits", help="dataset (digits is embedded and needs no download)"),
    out: Path = typer.Option(Path("runs/demo"), help="folder for runs, pictures and metrics.json"),
    data_dir: Optional[Path] = typer.Option(None, help="where mnist/ lives (else $VAELAB_DATA_DIR)"),
    epochs_scale: float = typer.Option(1.0, help="multiply every model's epochs (e.g. 0.1 for a quick look)"),
    progress: bool = typer.Option(True),
) -> None:
    """Train PCA, an autoencoder and a VAE with 2-D latents; write metrics.json, pictures and report.html."""
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = {}
    models: dict[str, LatentModel] = {}
    pictures: dict[str, Any] = {}
    for name, options, epochs in DEMO_MODELS:
        cfg = TrainConfig(epochs=max(1, round(epochs * epochs_scale)), batch_size=64, lr=2e-3,
                          progress=progress)
        # the demo's own folders: re-running the demo replaces them (and their stale pictures / eval.json)
        model, _ = train_run(name, data, out / name, options, cfg, ObjectiveConfig(), data_dir=data_dir,
                             val_fraction=0.0, overwrite=True)
        model = model.cpu().eval()  # trained on the auto device; scored and drawn next to CPU test data
        test = for_evaluation(load_from_info(read_config(out / name)["data"],
                                             "test", data_dir))
        m = score(model, test)
        if name == "pca":
            m["log_likelihood"] = float(model.log_prob(test.x).mean())
        metrics[name] = {"recon_mse": m.pop("mse"), **m}
        models[name] = model
        for fname, pic in demo_pictures(name, model, test).items():
            write_png(out / fname, pic)
            pictures[fname] = pic
        typer.echo(f"{name:>4}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics[name].items()))
    write_json(out / "metrics.json", metrics)
    atomic_write(out / REPORT, story_html(models, test, metrics, pictures))
    typer.echo(f"wrote {out}/metrics.json, pictures and {out}/report.html")
