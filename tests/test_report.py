"""vaelab report: one self-contained HTML file, one table row per run, every image a data: URI."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
from html.parser import HTMLParser

import pytest
from conftest import quiet_env
from PIL import Image
from typer.testing import CliRunner

from vaelab import rundir
from vaelab.viz import plots
from vaelab.viz import report as rep
from vaelab.cli import app
from vaelab.cli.demo import story_html
from vaelab.train import score


class Page(HTMLParser):
    """Collects <img src>, table rows of the metrics table, and anything that would fetch or run code."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.run_rows: list[list[str]] = []
        self.external: list[str] = []
        self.scripts = 0
        self._row: list[str] | None = None
        self._cell = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if a.get(key) and not a[key].startswith("data:"):
                self.external.append(a[key])
        if tag == "tr" and a.get("class") == "run":
            self._row = []
        if tag == "td" and self._row is not None:
            self._cell = True
            self._row.append("")

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.run_rows.append(self._row)
            self._row = None
        if tag == "td":
            self._cell = False

    def handle_data(self, data):
        if self._cell and self._row is not None:
            self._row[-1] += data


def parse(text: str) -> Page:
    p = Page()
    p.feed(text)
    return p


def decode_png(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,"), uri[:40]
    img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1], validate=True)))
    img.load()
    return img


def test_cli_report_compares_runs_in_one_self_contained_file(digits_runs, tmp_path):
    names = ["pca", "ae", "vae", "cvae"]
    out = tmp_path / "r" / "report.html"
    r = CliRunner().invoke(app, ["report", *[str(digits_runs[n]) for n in names], "--out", str(out)],
                           env=quiet_env())
    assert r.exit_code == 0, r.output
    page = parse(out.read_text())
    assert [row[0] for row in page.run_rows] == names          # one row per run, in order
    assert [row[1] for row in page.run_rows] == names          # the model column
    assert all(row[2] == "digits" for row in page.run_rows)
    assert page.scripts == 0 and page.external == []
    # latent, samples, recon for all four runs; curves for the three trained ones (pca: a reason instead)
    assert len(page.imgs) == 4 * 3 + 3
    sizes = [decode_png(src).size for src in page.imgs]
    assert sizes.count((500, 450)) == 4 and sizes.count((1000, 320)) == 3
    assert "fitted in closed form" in out.read_text()


def test_metrics_come_from_eval_json_when_present(digits_runs, tmp_path):
    run = tmp_path / "vae"
    shutil.copytree(digits_runs["vae"], run)
    last = rundir.read_metrics(run)[-1]
    metrics, source = rep.run_metrics(run)
    assert source.startswith("metrics.jsonl") and "validation" in source
    assert metrics["elbo"] == last["val_elbo"] and metrics["recon_mse"] == last["val_mse"]

    from vaelab.eval.evaluate import evaluate

    data = plots.load_run(run)
    ev = evaluate(data.model, data.test, iw_samples=5, fd=False)
    rundir.write_eval(run, ev, rundir.checkpoint_id(run))  # names the weights it scored
    metrics, source = rep.run_metrics(run)
    assert source == "eval.json" and metrics["nll"] == ev["nll"]
    html = rep.comparison_html([rep.summarize_run(run, kinds=("samples",))])
    row = parse(html).run_rows[0]
    assert f"{ev['nll']:.2f} \u00b1 {ev['nll_se']:.2g}" in row and row[-1] == "eval.json"  # NLL +/- its MC error
    assert ev["bits_per_dim"] is None and "cross-entropy" in row  # Bernoulli on grey levels: no bits/dim
    assert str(ev["active_units"]) in row


def test_autoencoder_rows_show_no_elbo(digits_runs):
    metrics, _ = rep.run_metrics(digits_runs["ae"])
    assert metrics["elbo"] is None and metrics["kl"] is None and metrics["recon_mse"] > 0


def test_same_folder_names_are_told_apart(digits_runs, tmp_path):
    from vaelab.cli.report import run_names

    a, b = tmp_path / "a" / "vae", tmp_path / "b" / "vae"
    assert run_names([a, b, tmp_path / "pca"]) == [str(a), str(b), "pca"]


def test_report_needs_a_run():
    with pytest.raises(ValueError, match="at least one run"):
        rep.comparison_html([])


def test_demo_story_tells_the_lecture_with_real_numbers(digits_runs, digits):
    _, test = digits
    models = {n: rundir.load(digits_runs[n]) for n in ("pca", "ae", "vae")}
    metrics = {}
    for n, m in models.items():
        s = score(m, test)
        metrics[n] = {"recon_mse": s.pop("mse"), **s}
    metrics["pca"]["log_likelihood"] = float(models["pca"].log_prob(test.x).mean())
    pictures = {f"latent_{n}.png": plots.make_plot("latent", m, test) for n, m in models.items()}
    for n in ("ae", "vae"):
        pictures[f"samples_{n}.png"] = plots.make_plot("samples", models[n])
    html = story_html(models, test, metrics, pictures)
    page = parse(html)
    for title in ("PCA is linear", "sparse and unstructured", "dense and sampleable", "ELBO vs log-likelihood",
                  "VAE samples are blurry", "autoencoder &#x27;samples&#x27;"):
        assert title in html, title
    assert [row[0] for row in page.run_rows] == ["pca", "ae", "vae"]
    assert page.scripts == 0 and page.external == [] and len(page.imgs) == 3 + 3 + 2 + 3
    for src in page.imgs:
        decode_png(src)
    # PCA: ELBO just below the dequantized bound (exact posterior for x, not for x + noise); VAE: ELBO <= IWAE_100
    lik = re.search(r"<td class='text'>pca</td><td>(-?[\d.]+)</td><td>&ge; (-?[\d.]+)</td>", html)
    assert lik and 0 <= float(lik.group(2)) - float(lik.group(1)) < 0.5
    vae = re.search(r"<td class='text'>vae</td><td>(-?[\d.]+)</td><td>&ge; (-?[\d.]+)</td>", html)
    assert vae and float(vae.group(1)) <= float(vae.group(2))
    # a Bernoulli VAE on grey levels (a cross-entropy) and dequantized PCA (17 levels) never share a column
    assert "Not comparable" in html and html.count("<th>log p(x) (nats)</th>") == 2
