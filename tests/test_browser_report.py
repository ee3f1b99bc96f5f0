"""The HTML reports in headless Chromium: every image decodes, one table row per run, nothing fetched."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import quiet_env
from typer.testing import CliRunner

from vaelab.cli import app

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
    assert info["rows"] == ["pca", "ae", "vae"]
    check_images(info, 3 + 3 + 2 + 3)  # latent scatters, decoded grids, samples vae/ae, blur row
