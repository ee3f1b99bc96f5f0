"""vaelab demo: the lecture's first act on the embedded digits - PCA vs autoencoder vs VAE, 2-D latents.

It ends by writing OUT/report.html, one self-contained page telling the story on the demo's own data.
PCA and the VAE (both Gaussian densities, the VAE's with sigma 0.1) are compared on one scale:
the digits take 17 levels (k / 16), and uniform dequantization turns each density into a lower bound on
the probability of the discrete image (``vaelab.eval.likelihood``)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import torch
import typer

from ..viz import grids as viz, plots
from ..data import Dataset, for_evaluation, load_from_info
from ..eval.evaluate import exact_log_px, iwae_curve, log_likelihood_estimate, model_scale
from ..models import LatentModel
from ..objectives import ObjectiveConfig
from ..rundir import REPORT, atomic_write, read_config, write_json, write_png
from ..viz.report import RunSummary, metrics_table, one_scale, page_html, section_html
from ..train.run import train_run
from ..train.loop import TrainConfig, score
from . import app
from .common import friendly
from .demo_quality import quality_rows, quality_sections

VAEGAN_EPOCHS = 150
# (model, options, epochs): small nets, enough epochs for 8x8 digits, well under 2 minutes on 2 cores
DEMO_MODELS: list[tuple[str, dict[str, Any], int]] = [
    ("pca", {"latent_dim": 2}, 1),
    ("ae", {"latent_dim": 2, "hidden": (256, 128)}, 150),
    # a fixed-sigma Gaussian decoder: PCA's kind of density, and one whose dequantized bound stays tight
    # (a continuous Bernoulli trained on the raw k/16 values piles its density onto 0 and 1: measured
    # 220 bits/dim once dequantized, against log2 17 = 4.09 for a uniform guess)
    ("vae", {"latent_dim": 2, "hidden": (256, 128), "likelihood": "gaussian", "sigma": 0.1}, 150),
    # the adversarial contrast: same encoder/decoder sizes, reconstruction matched in discriminator features
    ("vaegan", {"latent_dim": 2, "hidden": (256, 128)}, VAEGAN_EPOCHS),
]
# The sampling contrast needs more than 2 latent dimensions: at 2-D an autoencoder's codes spread over a
# region N(0, I) draws mostly hit, so its "samples" look like digits too. Measured on digits (150 epochs,
# FD_vaelab of 360 N(0, I) decodes, seeds 0/1; bench/RESULTS.md "Lecture claims"): CONTRAST_NOTE.
CONTRAST_DIM = 16
CONTRAST_NOTE = ("With 2-D codes the autoencoder's N(0, I) 'samples' are hard to tell from the VAE's: its codes "
                 "happen to spread over the region the draws hit. With more dimensions the difference is plain: "
                 "nothing made the autoencoder's codes fill N(0, I), so most draws decode to no digit. Measured "
                 "on these digits (150 epochs, FD_vaelab of 360 N(0, I) decodes, seeds 0 and 1): 2-D ae 23.0 / 14.1 vs "
                 "vae 10.5 / 8.5; 4-D ae 17.5 / 45.6 vs vae 11.0 / 4.5; 8-D ae 59.5 / 31.0 vs vae 7.4 / 7.6; 16-D ae "
                 "50.4 / 38.8 vs vae 7.5 / 7.1 (bench/demo_latent_contrast.py). The "
                 "'Sampling, measured' table above scores this pair too.")
CONTRAST_MODELS = [(f"{name}-{CONTRAST_DIM}", name, {**options, "latent_dim": CONTRAST_DIM}, epochs)
                   for name, options, epochs in DEMO_MODELS if name in ("ae", "vae")]
IW_SAMPLES = 100   # importance samples for the VAE's log-likelihood estimate in the report


def demo_pictures(name: str, model: LatentModel, test) -> dict[str, Any]:
    """The pictures the demo writes for one model (pure: arrays and figures)."""
    x, y = test.x, test.y
    z = model.encode(x, y if model.n_classes else None).mean.detach().numpy()
    pics: dict[str, Any] = {
        f"latent_{name}.png": viz.latent_scatter(z, None if y is None else y.numpy(),
                                                 title=f"{name}: test-set {plots.describe_codes(model)}"),
        f"recon_{name}.png": plots.make_plot("recon", model, test, opts=plots.PlotOptions(n=16)),  # labelled rows
    }
    if name != "pca":
        torch.manual_seed(0)
        pics[f"samples_{name}.png"] = viz.upscale(viz.image_grid(model.sample(64)), 4)
    return pics


def likelihood_numbers(models: dict[str, LatentModel], test: Dataset) -> dict[str, dict]:
    """{model: {scale, elbo, log_px, se, ess, bits_per_dim, bound, how}} in nats per test image for the models
    with a likelihood, each on its own scale (``eval.evaluate.model_scale``: densities on data with levels are
    dequantized). log p(x): PCA's closed form (dequantized: Monte Carlo over u), else the IWAE_K lower bound."""
    out = {}
    for name, model in models.items():
        scale = model_scale(model, test)
        if scale is None:
            continue
        levels = scale.levels if scale.dequantized else None
        curve = iwae_curve(model, test.x, (1, 10, IW_SAMPLES), seed=0, levels=levels)
        est = log_likelihood_estimate(model, test.x, None, IW_SAMPLES, seed=0, levels=levels)
        row = {"scale": scale, "elbo": curve[1], "log_px": float(est.log_px.mean()), "se": est.mean_se(),
               "ess": float(est.ess.mean()), "bound": True,
               "how": f"IWAE_K lower bound, K={IW_SAMPLES} (K=10: {curve[10]:.3f}); ESS {est.ess.mean():.1f}"}
        if model.capabilities.exact_likelihood:
            exact, se = exact_log_px(model, test.x, levels)
            what = "E_u log p((k+u)/L) - D log L over 16 draws of u" if levels else "exact (closed form)"
            row.update(log_px=float(exact.mean()), se=float(se.square().sum().sqrt() / len(se)),
                       bound=levels is not None, how=f"{what}; IWAE_{IW_SAMPLES} = {curve[IW_SAMPLES]:.3f}")
        discrete = scale.kind == "discrete"
        row["bits_per_dim"] = -row["log_px"] / (test.info.dim * math.log(2)) if discrete else None
        out[name] = row
    return out


def _summaries(models: dict[str, LatentModel], test: Dataset, metrics: dict[str, Any],
               lik: dict[str, dict]) -> list[RunSummary]:
    out = []
    for name, model in models.items():
        m: dict[str, Any] = {"recon_mse": metrics[name]["recon_mse"], "kl": metrics[name].get("kl")}
        scale = None
        if name in lik:
            r, scale = lik[name], lik[name]["scale"]
            se = r["se"] / (test.info.dim * math.log(2)) if r["bits_per_dim"] is not None else None
            m.update(elbo=r["elbo"], nll=-r["log_px"], nll_se=r["se"], bits_per_dim=r["bits_per_dim"],
                     bits_per_dim_se=se)
        out.append(RunSummary(name, model.name, test.info.name, model.latent_dim, m, "test set", scale=scale))
    return out


def _scale_text(lik: dict[str, dict]) -> str:
    """Says whether the models' likelihood numbers share one scale, and which."""
    runs = [RunSummary(n, n, "", 0, {}, "", scale=r["scale"]) for n, r in lik.items()]
    try:
        scale = one_scale(runs)
    except ValueError as e:
        return f"Not comparable: {e}. Each scale gets its own columns below."
    if scale is None:
        return ""
    if scale.kind == "discrete" and scale.dequantized:
        return (f"All on one scale: {scale.label}. The data take {scale.levels} levels per pixel; each model's "
                "density p is turned into a probability of the discrete image by uniform dequantization, "
                f"log P(k) >= E_u[log p((k + u) / {scale.levels})] - D log {scale.levels}, so bits/dim are "
                f"between 0 and log2({scale.levels}) = {math.log2(scale.levels):.2f} for a model better than "
                "uniform, and lower is better.")
    return f"All on one scale: {scale.label}."


def lik_tables(lik: dict[str, dict]) -> str:
    """The ELBO / log p(x) table, one table per scale (a column never holds two scales)."""
    fmt = lambda v, f="{:.3f}": "&ndash;" if v is None else f.format(v)  # noqa: E731
    groups: dict[str, list[str]] = {}
    for n, r in lik.items():
        groups.setdefault(r["scale"].key, []).append(n)
    out = []
    for names in groups.values():
        rows = "".join(f"<tr><td class='text'>{n}</td><td>{fmt(lik[n]['elbo'])}</td>"
                       f"<td>{'&ge; ' if lik[n]['bound'] else ''}{fmt(lik[n]['log_px'])}</td>"
                       f"<td>{fmt(lik[n]['se'], '{:.2g}')}</td><td>{fmt(lik[n]['bits_per_dim'])}</td>"
                       f"<td class='text'>{lik[n]['scale'].label}</td><td class='text'>{lik[n]['how']}</td></tr>"
                       for n in names)
        out.append("<table><thead><tr><th class='text'>model</th><th>ELBO (nats)</th><th>log p(x) (nats)</th>"
                   "<th>Monte Carlo s.e.</th><th>bits/dim</th><th class='text'>scale</th>"
                   f"<th class='text'>how log p(x) was computed</th></tr></thead><tbody>{rows}</tbody></table>")
    return "".join(out)


def story_html(models: dict[str, LatentModel], test: Dataset, metrics: dict[str, Any],
               pictures: dict[str, Any], lik: dict[str, dict] | None = None,
               quality: list[dict[str, Any]] | None = None) -> str:
    """The demo's report: the lecture's story told with this run's pictures and numbers (pure);
    ``lik``: ``likelihood_numbers(models, test)`` when already computed; ``quality``: ``quality_rows`` (the
    measured sampling sections, with the VAE-GAN and larger-latent pictures in ``pictures``)."""
    lik = likelihood_numbers(models, test) if lik is None else lik
    man = {n: plots.make_plot("manifold", m, test, opts=plots.PlotOptions(n=12)) for n, m in models.items()}
    vae = models["vae"]
    torch.manual_seed(0)
    with torch.no_grad():
        px = vae.decode(vae.prior(64).sample())
        means, draws = px.mean, px.sample()
    lik_table = lik_tables(lik)
    up = lambda a: viz.upscale(a, 4)  # noqa: E731
    body = [
        section_html("The three models on the test set",
                     "Reconstruction error for all three; ELBO, KL and negative log-likelihood (NLL = -log p(x)) "
                     "in nats per image for the two probabilistic ones. The autoencoder has no p(x), so no "
                     "likelihood: only its reconstruction error can be compared. " + _scale_text(lik),
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
                     "on the pixel values its ELBO equals its exact log-density (in expectation; with an exact posterior every "
                     "importance weight p(x, z)/q(z|x) equals p(x), so they agree to rounding). The VAE's encoder "
                     "only approximates the posterior, so its ELBO is a strict lower bound; the importance-weighted "
                     "(IWAE) bound tightens towards log p(x) as K grows: ELBO <= IWAE_10 <= IWAE_100 <= log p(x). "
                     "With dequantization PCA's importance weights are no longer all equal (its posterior is exact "
                     "for the pixel values, not for the noisy ones), so its ELBO sits a little below. "
                     + _scale_text(lik),
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
    body += quality_sections(quality or [], pictures, CONTRAST_DIM, CONTRAST_NOTE)
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
    """Train PCA, an autoencoder, a VAE and a VAE-GAN with 2-D latents (and the autoencoder and VAE again with
    16-D latents for the sampling contrast); write metrics.json, pictures and report.html."""
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = {}
    models: dict[str, LatentModel] = {}
    pictures: dict[str, Any] = {}
    contrast: dict[str, LatentModel] = {}
    for key, name, options, epochs in [(n, n, o, e) for n, o, e in DEMO_MODELS] + CONTRAST_MODELS:
        n_epochs = max(1, round(epochs * epochs_scale))
        cfg = TrainConfig(epochs=n_epochs, batch_size=64, lr=2e-3, progress=progress,
                          checkpoint_every=n_epochs)  # one commit at the end: the demo replaces its folders anyway
        # the demo's own folders: re-running the demo replaces them (and their stale pictures / eval.json)
        model, _ = train_run(name, data, out / key, options, cfg, ObjectiveConfig(), data_dir=data_dir,
                             val_fraction=0.0, overwrite=True)
        model = model.cpu().eval()  # trained on the auto device; scored and drawn next to CPU test data
        info = read_config(out / key)["data"]
        test = for_evaluation(load_from_info(info, "test", data_dir))
        m = score(model, test)
        if name == "pca":
            m["log_likelihood"] = float(model.log_prob(test.x).mean())
        metrics[key] = {"recon_mse": m.pop("mse"), **m}
        if key == name:
            models[key] = model  # the story's models; the larger-latent pair only feeds the sampling act
        else:
            contrast[key] = model
        for fname, pic in demo_pictures(key, model, test).items():
            if key == name or fname.startswith("samples_"):
                write_png(out / fname, pic)
                pictures[fname] = pic
        typer.echo(f"{key:>6}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics[key].items()))
    quality = quality_rows({**models, **contrast}, test, load_from_info(info, "train", data_dir))
    metrics["sample_quality"] = quality
    for r in quality:
        typer.echo(f"{r['name']:>10}: FD_vaelab {r['frechet_distance']:.2f}, sharpness/test "
                   f"{r['sharpness_ratio']:.2f}, precision {r['precision']:.2f}, recall {r['recall']:.2f}")
    lik = likelihood_numbers(models, test)
    for name, r in lik.items():  # the numbers the report compares, on the scale they share
        metrics[name]["shared_scale"] = {"scale": r["scale"].label, "elbo": r["elbo"], "log_px": r["log_px"],
                                         "log_px_se": r["se"], "bits_per_dim": r["bits_per_dim"]}
        typer.echo(f"{name:>4}: log p(x) {'>= ' if r['bound'] else ''}{r['log_px']:.2f} +/- {r['se']:.2g} nats, "
                   f"{r['bits_per_dim'] if r['bits_per_dim'] is not None else float('nan'):.3f} bits/dim "
                   f"({r['scale'].label})")
    write_json(out / "metrics.json", metrics)
    atomic_write(out / REPORT, story_html(models, test, metrics, pictures, lik, quality))
    typer.echo(f"wrote {out}/metrics.json, pictures and {out}/report.html")
