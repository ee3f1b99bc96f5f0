"""The HTML reports in headless Chromium: every image decodes, one table row per run, nothing fetched, and
every text in a figure reads at >= 10 px on a 1280-px-wide window."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import quiet_env
from matplotlib.figure import Figure
from PIL import Image
from typer.testing import CliRunner

from vaelab import rundir
from vaelab.cli import app
from vaelab.viz import report as rep
from vaelab.viz.grids import min_font_px

MIN_TEXT_PX = 10  # the smallest text a report may show (CSS pixels at the size the page displays it)

@pytest.fixture(scope="module")
def browser(chromium):
    return chromium


def open_report(browser, path: Path) -> dict:
    """Load the file and report its images, metrics-table rows and any request leaving the file."""
    page = browser.new_page()
    fetched: list[str] = []
    page.on("request", lambda req: fetched.append(req.url) if not req.url.startswith(("file:", "data:")) else None)
    page.goto(path.resolve().as_uri(), wait_until="load")
    info = page.evaluate("""() => ({
        imgs: [...document.images].map(i => ({complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,
                                              data: i.src.startsWith('data:image/png;base64,')})),
        rows: [...document.querySelectorAll('table.metrics tbody tr')].map(r => r.cells[0].textContent),
        scripts: document.scripts.length})""")
    page.close()
    info["fetched"] = fetched
    return info


def check_images(info: dict, expected: int) -> None:
    assert len(info["imgs"]) == expected
    for img in info["imgs"]:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0 and img["data"], img
    assert info["scripts"] == 0 and info["fetched"] == []


def test_report_renders_in_chromium(browser, digits_runs, tmp_path):
    names = ["pca", "ae", "vae", "cvae"]
    out = tmp_path / "report.html"
    r = CliRunner().invoke(app, ["report", *[str(digits_runs[n]) for n in names], "--out", str(out)],
                           env=quiet_env())
    assert r.exit_code == 0, r.output
    info = open_report(browser, out)
    assert info["rows"] == names
    check_images(info, 4 * 3 + 3)   # latent, samples, recon each; curves for the 3 trained models


def test_demo_ends_with_its_story_report(browser, tmp_path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(app, ["demo", "--out", str(out), "--epochs-scale", "0.02", "--no-progress"],
                           env=quiet_env())
    assert r.exit_code == 0, r.output
    info = open_report(browser, out / "report.html")
    assert info["rows"] == ["pca", "ae", "vae", "vaegan"]
    # latent scatters, decoded grids, samples vae/ae, blur row, vae vs vaegan, the 16-D vae/ae pair
    check_images(info, 4 + 4 + 2 + 3 + 2 + 2)


def _recording_figures(monkeypatch) -> dict[str, dict]:
    """Wrap report.png_data_uri: data URI -> what was encoded (its smallest font in PNG pixels, its size)."""
    seen: dict[str, dict] = {}
    encode = rep.png_data_uri

    def recording(picture):
        uri = encode(picture)
        font = min_font_px(picture) if isinstance(picture, Figure) else None
        seen[uri] = {"font_px": font, "size": rep.picture_size(picture), "figure": isinstance(picture, Figure)}
        return uri

    monkeypatch.setattr(rep, "png_data_uri", recording)
    return seen


def displayed_images(browser, path: Path, width: int, screenshot: Path | None = None) -> list[dict]:
    """Open the report in a window ``width`` CSS px wide: every image's src and natural / displayed width."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(path.resolve().as_uri(), wait_until="load")
    shown = page.evaluate("""() => [...document.images].map(i => ({src: i.src, natural: i.naturalWidth,
        displayed: i.getBoundingClientRect().width}))""")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width  # no sideways scrolling
    if screenshot is not None:
        page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    return shown


def test_report_text_is_at_least_10_px_at_1280_px(browser, digits_runs, tmp_path, monkeypatch):
    """Each figure's smallest font (points x dpi / 72 = PNG pixels) times the scale the page shows the PNG
    at (displayed / natural width) is >= 10 CSS px: tick labels, axis labels, legends, titles."""
    seen = _recording_figures(monkeypatch)
    out = tmp_path / "report.html"
    names = ["pca", "ae", "vae", "cvae"]
    r = CliRunner().invoke(app, ["report", *[str(digits_runs[n]) for n in names], "--out", str(out)],
                           env=quiet_env())
    assert r.exit_code == 0, r.output
    shot = tmp_path / "report-1280.png"
    images = displayed_images(browser, out, 1280, shot)
    assert Image.open(shot).size[0] == 1280
    figures = 0
    for img in images:
        drawn = seen[img["src"]]
        assert img["natural"] == drawn["size"][0]
        scale = img["displayed"] / img["natural"]
        assert scale > 0.99, f"a {drawn['size']} picture is shrunk to {scale:.2f} at 1280 px"
        if drawn["figure"]:
            figures += 1
            assert drawn["font_px"] * scale >= MIN_TEXT_PX, (drawn, scale)
    assert figures == 4 + 4 + 3  # latent and recon of every run, curves of the trained ones
    # on a narrower window figures wrap onto new lines instead of shrinking their text
    for img in displayed_images(browser, out, 1100):
        assert img["displayed"] / img["natural"] > 0.99


def test_report_never_puts_test_and_validation_numbers_in_one_column(digits_runs, tmp_path):
    """A run with eval.json (test set) beside runs with only training rows (validation): separate columns."""
    run = Path(shutil.copytree(digits_runs["vae"], tmp_path / "vae-evaluated"))
    (run / rundir.EVAL).write_text(json.dumps({"elbo": -30.0, "nll": 29.0, "kl": 1.0, "scale": "cross-entropy",
                                               "checkpoint": rundir.checkpoint_id(run)}))
    runs = [rep.summarize_run(p, kinds=()) for p in (run, digits_runs["vae"], digits_runs["cvae"])]
    assert [rep.split_of(r) for r in runs] == ["test", "validation", "validation"]
    html = rep.metrics_table(runs)
    assert "ELBO (nats) [test]" in html and "ELBO (nats) [validation]" in html
    assert "KL (nats) [test]" in html and "KL (nats) [validation]" in html
    cols = rep._columns(runs)
    for key, header, _, members in cols:
        assert len({rep.split_of(m) for m in members}) == 1, header
    elbo_test = [c for c in cols if c[1] == "ELBO (nats) [test]"][0]
    assert [m.name for m in elbo_test[3]] == ["vae-evaluated"]
    # runs of one split keep plain headers
    assert "ELBO (nats)</th>" in rep.metrics_table(runs[1:])
