"""One self-contained HTML page comparing runs: inline CSS, images as base64 ``data:`` URIs, no scripts.

``run_metrics`` / ``summarize_run`` read a run folder (``rundir.display_metrics``: eval.json when present,
else the last row of metrics.jsonl) and draw its pictures; the ``*_html`` builders are pure and return strings.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .. import rundir
from . import plots
from ..models import model_class

EVAL = rundir.EVAL
# (key in eval.json, column header, number format)
METRIC_COLUMNS: list[tuple[str, str, str]] = [
    ("elbo", "ELBO (nats)", "{:.2f}"), ("nll", "NLL (nats)", "{:.2f}"), ("bits_per_dim", "bits/dim", "{:.3f}"),
    ("kl", "KL (nats)", "{:.2f}"), ("recon_mse", "recon MSE", "{:.4f}"), ("active_units", "active units", "{:d}"),
    ("probe_accuracy", "probe accuracy", "{:.3f}"), ("frechet_distance", "FD", "{:.3g}"),
]
REPORT_KINDS = ("latent", "samples", "recon", "curves")

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
p.note{max-width:60em;line-height:1.45}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f3f3f3}
td.text,th.text{text-align:left}
.row{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
figure{margin:0;flex:1 1 300px;max-width:100%}figure img{max-width:100%;height:auto;image-rendering:pixelated}
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


def summarize_run(run: str | Path, data_dir: str | Path | None = None, name: str | None = None,
                  kinds: tuple[str, ...] = REPORT_KINDS, opts: plots.PlotOptions = plots.PlotOptions(),
                  data_path: str | Path | None = None) -> RunSummary:
    """Read a run folder and draw its report pictures (a kind that does not apply keeps its reason);
    ``data_path`` overrides the data recorded in config.json (``plots.load_run``)."""
    data = plots.load_run(run, data_dir, with_test=any(k in plots.NEEDS_TEST_DATA for k in kinds), data=data_path)
    metrics, source = run_metrics(run)
    pictures: dict[str, Any] = {}
    for kind in kinds:
        try:
            pictures[kind] = plots.make_plot(kind, data.model, data.test, data.history, opts)
        except ValueError as e:
            pictures[kind] = str(e)
    return RunSummary(name or Path(run).name, data.model.name, data.config["data"]["name"],
                      data.model.latent_dim, metrics, source, pictures)


# -- pure HTML ------------------------------------------------------------------------------------------
def png_data_uri(picture: np.ndarray | Figure) -> str:
    """A uint8 array (H, W[, C]) or a Figure as a 'data:image/png;base64,...' URI (``rundir.encode_png``)."""
    return "data:image/png;base64," + base64.b64encode(rundir.encode_png(picture)).decode("ascii")


def figure_html(picture: np.ndarray | Figure | str, caption: str) -> str:
    """<figure> with the embedded image, or the reason it is missing when ``picture`` is a str."""
    if isinstance(picture, str):
        body = f'<p class="na">not shown: {html.escape(picture)}</p>'
    else:
        body = f'<img src="{png_data_uri(picture)}" alt="{html.escape(caption)}">'
    return f"<figure>{body}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "&ndash;"
    try:
        return spec.format(int(value) if spec == "{:d}" else float(value))
    except (TypeError, ValueError):
        return html.escape(str(value))


def metrics_table(runs: list[RunSummary]) -> str:
    """One row per run: model, dataset, latent_dim, each metric column some run has, and where the numbers came from."""
    cols = [c for c in METRIC_COLUMNS if any(r.metrics.get(c[0]) is not None for r in runs)]  # drop empty ones
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in cols)
    rows = []
    for r in runs:
        cells = "".join(f"<td>{_fmt(r.metrics.get(k), spec)}</td>" for k, _, spec in cols)
        rows.append(f'<tr class="run"><td class="text">{html.escape(r.name)}</td><td class="text">'
                    f'{html.escape(r.model)}</td><td class="text">{html.escape(r.dataset)}</td>'
                    f"<td>{r.latent_dim}</td>{cells}<td class=\"text\">{html.escape(r.source)}</td></tr>")
    return (f'<table class="metrics"><thead><tr><th class="text">run</th><th class="text">model</th>'
            f'<th class="text">dataset</th><th>latent_dim</th>{head}<th class="text">numbers from</th></tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table>")


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
               "interpolate": "Interpolations"}


def comparison_html(runs: list[RunSummary], title: str = "vaelab report") -> str:
    """The ``vaelab report`` page: the metrics table, then one section per picture kind, runs side by side."""
    if not runs:
        raise ValueError("a report needs at least one run")
    kinds = list(dict.fromkeys(k for r in runs for k in r.pictures))
    body = [section_html("Metrics", "One row per run. 'numbers from' says whether they are the test-set "
                         "evaluation (eval.json) or the last training epoch (metrics.jsonl).",
                         extra=metrics_table(runs))]
    for kind in kinds:
        figs = [(r.pictures.get(kind, "not drawn"), f"{r.name} ({r.model})") for r in runs]
        body.append(section_html(KIND_TITLES.get(kind, kind), figures=figs))
    return page_html(title, "".join(body), intro=f"{len(runs)} run(s): " + ", ".join(r.name for r in runs))
