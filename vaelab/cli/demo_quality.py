"""The demo's sampling act, measured: FD_vaelab, sharpness and precision/recall of every model's samples.

Each row scores one source of samples against the test digits in the same feature net (``vaelab.eval``):
a model's prior (N(0, I) decodes for the autoencoder, which has none), or a Gaussian mixture fitted to its
training codes (``vaelab.samplers``). The ``*_html`` builders are pure."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from .. import samplers
from ..data import Dataset
from ..eval.quality import sample_quality
from ..models import LatentModel
from ..viz.report import section_html


def quality_rows(models: dict[str, LatentModel], test: Dataset, train: Dataset, *, gmm_for: tuple[str, ...] = ("ae",),
                 cache_dir: str | Path | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """One row per sample source: {name, model, source, frechet_distance, sharpness_ratio, precision, recall,
    likelihood, n}; models without a decoder of images (PCA aside, all have one) are skipped."""
    rows = []
    for name, model in models.items():
        if not model.trainable:
            continue  # PCA: linear-Gaussian samples are not part of this contrast
        sources: list[tuple[str, samplers.Sampler | None]] = [(name, None)]
        if name in gmm_for:
            sources.append((f"{name} + gmm", samplers.fit_sampler("gmm", model, train)))
        for label, sampler in sources:
            q = sample_quality(model, test, train, cache_dir, seed=seed, sampler=sampler)  # FD included
            rows.append({"name": label, "model": model.name, "source": q["fd_sampler"],
                         "frechet_distance": q["frechet_distance"], "sharpness_ratio": q.get("sharpness_ratio"),
                         "precision": q["precision"], "recall": q["recall"], "n": q["quality_n"],
                         "likelihood": model.has_likelihood, "features": q["fd_features"]})
    return rows


def quality_table(rows: list[dict[str, Any]]) -> str:
    """The measured sampling contrast as an HTML table (pure)."""
    fmt = lambda v, f: "&ndash;" if v is None else f.format(v)  # noqa: E731
    body = "".join(
        f"<tr><td class='text'>{html.escape(r['name'])}</td><td class='text'>{html.escape(r['source'])}</td>"
        f"<td>{fmt(r['frechet_distance'], '{:.2f}')}</td><td>{fmt(r['sharpness_ratio'], '{:.2f}')}</td>"
        f"<td>{fmt(r['precision'], '{:.2f}')}</td><td>{fmt(r['recall'], '{:.2f}')}</td>"
        f"<td class='text'>{'yes (ELBO, NLL)' if r['likelihood'] else 'none'}</td></tr>" for r in rows)
    return ("<table><thead><tr><th class='text'>samples of</th><th class='text'>codes drawn from</th>"
            "<th>FD_vaelab (lower is better)</th><th>sharpness samples / test</th><th>precision</th>"
            "<th>recall</th><th class='text'>likelihood p(x)</th></tr></thead>"
            f"<tbody>{body}</tbody></table>")


def quality_sections(rows: list[dict[str, Any]], pictures: dict[str, Any], contrast_dim: int,
                     contrast_note: str) -> list[str]:
    """The report's sampling sections: the table, VAE vs VAE-GAN side by side, the larger-latent contrast."""
    if not rows:
        return []
    n, feats = rows[0]["n"], rows[0]["features"]
    out = [section_html(
        "Sampling, measured: FD, sharpness, precision and recall",
        f"Each row compares {n} generated images with the {n} test digits. FD_vaelab: the Frechet distance in the "
        f"features of a small classifier trained on the training digits ({feats}; not comparable to Inception "
        "FID). Sharpness: variance of the Laplacian of the samples over that of the test images (1: as sharp as "
        "the data, below 1: blurrier). Precision: the share of samples inside the test images' k-nearest-"
        "neighbour balls in the same features (realism); recall: the share of test images inside the samples' "
        "balls (coverage; Kynkaanniemi et al. 2019, k=3). Sharpness alone rewards noise: read it with precision. "
        "'codes drawn from' says what fed the decoder: the model's prior, N(0, I) for the autoencoder (it has no "
        "prior), or a Gaussian mixture fitted to the autoencoder's training codes (vaelab sample --sampler gmm), "
        "which turns it into a sampleable model.", extra=quality_table(rows))]
    if "samples_vae.png" in pictures and "samples_vaegan.png" in pictures:
        out.append(section_html(
            "VAE vs VAE-GAN: blurry with a likelihood, sharper without one",
            "Same latent size, same encoder and decoder sizes. The VAE's decoder is trained to put probability on "
            "every training image, so a code that could stand for several digits decodes to their average. The "
            "VAE-GAN (Larsen et al. 2016) matches reconstructions in a discriminator's features and trains the "
            "decoder to fool it: its samples have sharper strokes (sharpness column above), but it no longer "
            "defines p(x): no ELBO, no NLL, and its samples can drop whole styles of digits (recall).",
            figures=[(pictures["samples_vae.png"], "vae: decoded means of z ~ N(0, I)"),
                     (pictures["samples_vaegan.png"], "vaegan: decoded z ~ N(0, I)")]))
    keys = [f"samples_{m}-{contrast_dim}.png" for m in ("vae", "ae")]
    if all(k in pictures for k in keys):
        out.append(section_html(
            f"The autoencoder cannot be sampled: clearest with {contrast_dim} latent dimensions",
            contrast_note,
            figures=[(pictures[keys[0]], f"vae, {contrast_dim}-D: decoded z ~ N(0, I)"),
                     (pictures[keys[1]], f"ae, {contrast_dim}-D: decoded z ~ N(0, I) (it has no prior)")]))
    return out
