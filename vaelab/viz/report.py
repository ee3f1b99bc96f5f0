"""One self-contained HTML page comparing runs: inline CSS, images as base64 ``data:`` URIs, no scripts.

``run_metrics`` / ``summarize_run`` read a run folder (``rundir.display_metrics``: eval.json when present,
else the last row of metrics.jsonl) and draw its pictures; the ``*_html`` builders are pure and return strings.

Likelihood numbers (ELBO, NLL, bits/dim) are only comparable on one scale (``distributions.Scale``: a
discrete probability with so many levels, a density, or a Bernoulli cross-entropy). The metrics table
gives every scale its own columns, so no column mixes two; ``one_scale`` refuses a set of runs on several.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from .. import rundir, samplers
from . import plots
from ..distributions import Scale
from ..eval.evaluate import model_scale
from ..models import LatentModel, model_class

EVAL = rundir.EVAL
# (key in eval.json, column header, number format)
METRIC_COLUMNS: list[tuple[str, str, str]] = [
    ("elbo", "ELBO (nats)", "{:.2f}"), ("nll", "NLL (nats)", "{:.2f}"), ("bits_per_dim", "bits/dim", "{:.3f}"),
    ("ess", "ESS (mean)", "{:.1f}"),  # importance weights' effective sample size of K: small = NLL not converged
    ("kl", "KL (nats)", "{:.2f}"), ("recon_mse", "recon MSE", "{:.4f}"), ("active_units", "active units", "{:d}"),
    ("probe_accuracy", "probe accuracy", "{:.3f}"), ("frechet_distance", "FD", "{:.3g}"),
    ("sharpness_ratio", "sharpness samples/test", "{:.2f}"),  # variance of the Laplacian, 1: as sharp as the data
    ("precision", "precision (k-NN)", "{:.3f}"), ("recall", "recall (k-NN)", "{:.3f}"),
    ("mig", "MIG", "{:.3f}"), ("dci_disentanglement", "DCI disentanglement", "{:.3f}"),  # data with factors
]
SCALED = ("elbo", "nll", "bits_per_dim")
SAMPLE_KEYS = ("frechet_distance", "sharpness_ratio", "precision", "recall")  # numbers about generated samples   # likelihood numbers: a column holds one scale only
REPORT_KINDS = ("latent", "samples", "recon", "curves")

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
p.note{max-width:60em;line-height:1.45}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f3f3f3}
td.text,th.text{text-align:left}
.row{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
figure{margin:0;flex:0 1 auto;max-width:100%}figure img{max-width:100%;height:auto;image-rendering:pixelated}
figcaption{font-size:.85em;color:#555;margin-top:.3em}.na{color:#999;font-style:italic}
"""


@dataclass
class RunSummary:
    """What the report shows of one run; a picture entry that is a str says why that kind does not apply."""
    name: str
    model: str
    dataset: str
    latent_dim: int
    metrics: dict[str, Any]
    source: str
    pictures: dict[str, Any] = field(default_factory=dict)   # kind -> ndarray | Figure | reason (str)
    scale: Scale | None = None                                # the scale of its likelihood numbers (None: none)


# -- reading run folders ----------------------------------------------------------------------------------
def run_metrics(run: str | Path) -> tuple[dict[str, Any], str]:
    """Test metrics from RUN/eval.json, else the last metrics.jsonl row (validation values preferred),
    and where they came from (see ``rundir.display_metrics``; what it skipped is named in the source). A
    model with no likelihood (ae) gets no ELBO / KL from its training rows."""
    shown = rundir.display_metrics(run)
    if shown["source"] == EVAL:
        return shown["values"], EVAL
    note = f"; {shown['warning']}" if "warning" in shown else ""
    last = shown["values"]
    if not last:
        return {}, "none" + note
    has_val = any(k.startswith("val_") for k in last)
    pick = (lambda k: last.get(f"val_{k}")) if has_val else last.get
    out = {"elbo": pick("elbo"), "recon": pick("recon"), "kl": pick("kl"), "recon_mse": pick("mse")}
    if not model_class(rundir.read_config(run)["model"]).has_likelihood:
        out.update(elbo=None, recon=None, kl=None)
    split = "validation" if has_val else "training"
    return out, f"{rundir.METRICS} (epoch {last.get('epoch', '?')}, {split}){note}"


def recorded_scale(metrics: dict[str, Any]) -> Scale | None:
    """The scale eval.json recorded with its numbers (None: not recorded)."""
    if not metrics.get("scale"):
        return None
    return Scale(metrics["scale"], metrics.get("levels"), bool(metrics.get("dequantized")))


def summarize_run(run: str | Path, data_dir: str | Path | None = None, name: str | None = None,
                  kinds: tuple[str, ...] = REPORT_KINDS, opts: plots.PlotOptions = plots.PlotOptions(),
                  data_path: str | Path | None = None) -> RunSummary:
    """Read a run folder and draw its report pictures (a kind that does not apply keeps its reason);
    ``data_path`` overrides the data recorded in config.json (``plots.load_run``). Numbers without a recorded
    scale (training rows, an older eval.json) get the undequantized scale of the model's likelihood on the data."""
    metrics, source = run_metrics(run)
    scale = recorded_scale(metrics)
    has_numbers = any(metrics.get(k) is not None for k in SCALED)
    need_test = any(k in plots.NEEDS_TEST_DATA for k in kinds) or (scale is None and has_numbers)
    data = plots.load_run(run, data_dir, with_test=need_test, data=data_path)
    if scale is None and has_numbers:
        scale = model_scale(data.model, data.test, dequantize=False)
    pictures: dict[str, Any] = {}
    for kind in kinds:
        try:
            pictures[kind] = plots.make_plot(kind, data.model, data.test, data.history, opts)
        except ValueError as e:
            pictures[kind] = str(e)
    if "samples" in kinds:
        pictures.update(sampler_pictures(run, data.model, opts))
    return RunSummary(name or Path(run).name, data.model.name, data.config["data"]["name"],
                      data.model.latent_dim, metrics, source, pictures, scale)


def sampler_pictures(run: str | Path, model: LatentModel, opts: plots.PlotOptions) -> dict[str, np.ndarray]:
    """Samples from each post-hoc sampler stored in the run (``vaelab sample RUN --sampler gmm`` fits and
    stores one) and fitted to its current weights: {"samples (gmm)": image grid}."""
    out = {}
    for name in samplers.SAMPLERS:
        fitted = None if name == "prior" else samplers.load(run, name)
        if fitted is not None:
            x = fitted.sample(model, 64, 1.0, torch.Generator().manual_seed(opts.seed))  # (64, *shape)
            out[f"samples ({name})"] = plots.sample_grid(model, x)
    return out


def one_scale(runs: list[RunSummary]) -> Scale | None:
    """The one scale of these runs' likelihood numbers; ValueError when they are on several (runs without a
    likelihood do not count). Dequantized bounds and exact probabilities with the same levels agree: the
    result says kind and levels only."""
    keys = {r.scale.key: Scale(r.scale.kind, r.scale.levels) for r in runs if r.scale is not None}
    if len(keys) > 1:
        named = "; ".join(f"{r.name}: {r.scale.label}" for r in runs if r.scale is not None)
        raise ValueError(f"these runs' likelihood numbers are on different scales ({named}): a discrete "
                         "log-probability, a density and a cross-entropy cannot share a column")
    return next(iter(keys.values()), None)


def scale_groups(runs: list[RunSummary]) -> list[list[RunSummary]]:
    """Runs with a likelihood grouped by scale (``Scale.key``), in order of first appearance."""
    groups: dict[str, list[RunSummary]] = {}
    for r in runs:
        if r.scale is not None:
            groups.setdefault(r.scale.key, []).append(r)
    return list(groups.values())


# -- pure HTML ------------------------------------------------------------------------------------------
def png_data_uri(picture: np.ndarray | Figure) -> str:
    """A uint8 array (H, W[, C]) or a Figure as a 'data:image/png;base64,...' URI (``rundir.encode_png``)."""
    return "data:image/png;base64," + base64.b64encode(rundir.encode_png(picture)).decode("ascii")


def figure_html(picture: np.ndarray | Figure | str, caption: str) -> str:
    """<figure> with the embedded image, or the reason it is missing when ``picture`` is a str."""
    if isinstance(picture, str):
        body = f'<p class="na">not shown: {html.escape(picture)}</p>'
    else:  # shown at its own pixel size (figures wrap rather than shrink), so its text keeps its size
        w, h = picture_size(picture)
        body = f'<img src="{png_data_uri(picture)}" width="{w}" height="{h}" alt="{html.escape(caption)}">'
    return f"<figure>{body}<figcaption>{html.escape(caption)}</figcaption></figure>"


def picture_size(picture: np.ndarray | Figure) -> tuple[int, int]:
    """(width, height) in pixels of the PNG a picture becomes."""
    if isinstance(picture, Figure):
        w, h = picture.get_size_inches() * picture.dpi
        return round(w), round(h)
    return picture.shape[1], picture.shape[0]


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "&ndash;"
    try:
        return spec.format(int(value) if spec == "{:d}" else float(value))
    except (TypeError, ValueError):
        return html.escape(str(value))


def _cell(r: RunSummary, key: str, spec: str) -> str:
    """One number; an NLL with its Monte Carlo standard error, a Monte Carlo KL marked 'est.'."""
    m = r.metrics
    text = _fmt(m.get(key), spec)
    se = {"nll": "nll_se", "bits_per_dim": "bits_per_dim_se", "kl": "kl_se"}.get(key)
    if se and m.get(key) is not None and m.get(se):
        text += f" &plusmn; {_fmt(m[se], '{:.2g}')}"
    if key == "kl" and m.get("kl_estimated") and m.get(key) is not None:
        text += " (est.)"
    if key in SAMPLE_KEYS and m.get(key) is not None and m.get("fd_sampler") not in (None, "prior"):
        text += f" ({html.escape(str(m['fd_sampler']))})"  # samples from a fitted sampler or N(0, I)
    return text


def split_of(r: RunSummary) -> str:
    """What a run's numbers measure: 'test' (eval.json), else 'validation' or 'training' (last epoch)."""
    if r.source == EVAL:
        return "test"
    return "validation" if "validation" in r.source else "training"


def _columns(runs: list[RunSummary]) -> list[tuple[str, str, str, list[RunSummary]]]:
    """(key, header, format, runs it holds): a metric gets one column per split (test / validation /
    training) and a likelihood metric one per scale too, so no column mixes test with validation numbers
    or two scales."""
    cols = []
    splits = list(dict.fromkeys(split_of(r) for r in runs))
    for key, header, spec in METRIC_COLUMNS:
        groups = scale_groups(runs) if key in SCALED else [runs]
        for group in groups:
            scale = one_scale(group) if key in SCALED else None
            if key == "bits_per_dim" and scale.kind != "discrete":
                continue  # bits/dim only where they are bits of a discrete image
            for split in splits:
                members = [r for r in group if split_of(r) == split]
                if any(r.metrics.get(key) is not None for r in members):
                    tags = ([scale.label] if scale is not None and len(groups) > 1 else []) + \
                        ([split] if len(splits) > 1 else [])
                    cols.append((key, header + (f" [{', '.join(tags)}]" if tags else ""), spec, members))
    return cols


def metrics_table(runs: list[RunSummary]) -> str:
    """One row per run: model, dataset, latent_dim, the scale of its likelihood numbers, each metric some
    run has (a likelihood metric in one column per scale, blank for runs on another), and where the
    numbers came from."""
    cols = _columns(runs)
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _, _ in cols)
    rows = []
    for r in runs:
        cells = "".join(f"<td>{_cell(r, k, spec) if any(r is m for m in members) else '&ndash;'}</td>"
                        for k, _, spec, members in cols)
        scale = html.escape(r.scale.label) if r.scale is not None else "no likelihood"
        rows.append(f'<tr class="run"><td class="text">{html.escape(r.name)}</td><td class="text">'
                    f'{html.escape(r.model)}</td><td class="text">{html.escape(r.dataset)}</td>'
                    f'<td>{r.latent_dim}</td><td class="text">{scale}</td>{cells}'
                    f'<td class="text">{html.escape(r.source)}</td></tr>')
    return (f'<table class="metrics"><thead><tr><th class="text">run</th><th class="text">model</th>'
            f'<th class="text">dataset</th><th>latent_dim</th><th class="text">scale</th>{head}'
            f'<th class="text">numbers from</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


SCALE_NOTE = ("Likelihood numbers are nats per example (bits/dim: per value, base 2) on the scale in the "
              "'scale' column: 'discrete, L levels' is a log-probability of data with L values per dimension "
              "(bits/dim >= 0; 'dequantized bound': a density turned into a lower bound on that probability by "
              "uniform dequantization), 'density' a log-density (not a probability, any sign), 'cross-entropy' a "
              "Bernoulli likelihood of non-binary data (no normalised distribution). Runs on different scales get "
              "different columns: their numbers cannot be compared. NLL +/- its Monte Carlo standard error; ESS: the "
              "mean effective sample size of the K importance weights (a few: the NLL has not converged and its "
              "standard error is optimistic); 'est.': a Monte Carlo KL. FD: FD_vaelab (a Frechet distance in the "
              "features of a classifier vaelab trains, not Inception FID; lower is better). Sharpness samples/test: "
              "mean variance of the Laplacian of prior samples over that of test images (below 1: blurrier than the "
              "data). Precision / recall (Kynkaanniemi et al. 2019, k = 3 nearest-neighbour balls in the FD "
              "features): the share of samples that land on the data's manifold / of test images the samples cover.")


def label_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """``display_metrics`` output with every likelihood number's key naming its recorded scale, e.g.
    'nll [discrete, 256 levels]' (for a page listing one run's numbers); unchanged without a recorded scale."""
    values = metrics.get("values") or {}
    scale = recorded_scale(values)
    if scale is None:
        return metrics
    likelihood_keys = {"elbo", "recon", "nll", "nll_iw", "nll_exact", "bits_per_dim", "nll_se", "nll_iw_se",
                       "bits_per_dim_se"}
    out = {(f"{k} [{scale.label}]" if k in likelihood_keys else k): v for k, v in values.items()}
    return {**metrics, "values": out}


def section_html(title: str, text: str = "", figures: list[tuple[Any, str]] = (), extra: str = "") -> str:
    """<h2> title, an explanatory paragraph, ``extra`` HTML (e.g. a table), then figures side by side."""
    para = f'<p class="note">{html.escape(text)}</p>' if text else ""
    row = f'<div class="row">{"".join(figure_html(p, c) for p, c in figures)}</div>' if figures else ""
    return f"<section><h2>{html.escape(title)}</h2>{para}{extra}{row}</section>"


def page_html(title: str, body: str, intro: str = "") -> str:
    """A complete HTML document with inline CSS and no scripts."""
    lead = f'<p class="note">{html.escape(intro)}</p>' if intro else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>{lead}{body}</body></html>\n")


KIND_TITLES = {"latent": "Latent space (test set)", "samples": "Samples from the prior",
               "recon": "Reconstructions (top: test images, bottom: reconstructions)",
               "curves": "Training curves", "manifold": "Decoded latent grid", "traverse": "Traversals",
               "interpolate": "Interpolations",
               "samples (gmm)": "Samples from a Gaussian mixture fitted to the training codes (--sampler gmm)",
               "samples (two-stage)": "Samples from a second VAE fitted to the training codes (--sampler two-stage)"}


def comparison_html(runs: list[RunSummary], title: str = "vaelab report") -> str:
    """The ``vaelab report`` page: the metrics table, then one section per picture kind, runs side by side."""
    if not runs:
        raise ValueError("a report needs at least one run")
    kinds = list(dict.fromkeys(k for r in runs for k in r.pictures))
    body = [section_html("Metrics", "One row per run. 'numbers from' says whether they are the test-set "
                         "evaluation (eval.json) or the last training epoch (metrics.jsonl). " + SCALE_NOTE,
                         extra=metrics_table(runs))]
    for kind in kinds:
        figs = [(r.pictures.get(kind, "not drawn"), f"{r.name} ({r.model})") for r in runs]
        body.append(section_html(KIND_TITLES.get(kind, kind), figures=figs))
    return page_html(title, "".join(body), intro=f"{len(runs)} run(s): " + ", ".join(r.name for r in runs))
