"""End to end: the real uvicorn server on 127.0.0.1 and the page in headless Chromium (Playwright).

Each check compares what the page shows with what the API (or the dataset) says independently: the
drawing's map marker sits where /api/encode puts the pixels the page sent, its reconstruction is the
decoded PNG, its log p(x) the seeded /api/likelihood number; a hovered point shows that test image."""
from __future__ import annotations

import base64
import io
import math
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from PIL import Image  # noqa: E402

from vaelab.web import create_app  # noqa: E402


def _serve(app, name: str) -> Iterator[str]:
    """Run uvicorn on a free 127.0.0.1 port in a thread; yield its base URL; stop it afterwards."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{name}", daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            thread.join(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def page_factory(chromium):
    return chromium


def _canvas(page, selector: str) -> str:
    return page.eval_on_selector(selector, "c => c.toDataURL()")


def _pixels(page, selector: str) -> np.ndarray:
    """A canvas' pixels as uint8 (H, W, 4)."""
    url = _canvas(page, selector)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))


def _png(entry: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(entry["image"]))))


def _cells(pixels: np.ndarray, side: int) -> np.ndarray:
    """The centre pixel (grey) of each of side x side cells of a canvas drawn with nearest-neighbour scaling."""
    h, w = pixels.shape[:2]
    rows = ((np.arange(side) + 0.5) * h / side).astype(int)
    cols = ((np.arange(side) + 0.5) * w / side).astype(int)
    return pixels[rows][:, cols, 0]


@pytest.fixture(scope="module")
def runs(digits_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shared trained runs plus a random-init VAE with latent_dim 5 (map = PCA of the means)."""
    import torch

    from vaelab import rundir
    from vaelab.data import info_dict, load_dataset
    from vaelab.models import build_model

    torch.manual_seed(0)
    model = build_model("vae", input_shape=(1, 8, 8), latent_dim=5, hidden=(32,))
    info = info_dict(load_dataset("digits", "test").info)
    return {**digits_runs, "vae-d5": rundir.save_model(tmp_path_factory.mktemp("vae-d5"), model, data=info)}


def _open(page_factory, base: str):
    """A page of the explorer, loaded; errors on the page's console are collected in page.errors."""
    page = page_factory.new_page(viewport={"width": 1280, "height": 1000})
    page.errors, page.requests = [], []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.goto(base + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    return page


def _sliders(page) -> list[float]:
    return page.eval_on_selector_all("#sliders input", "xs => xs.map(x => Number(x.value))")


@pytest.mark.parametrize("name", ["vae", "cvae", "vae-d5"])
def test_clicking_the_map_decodes_that_point(name: str, runs, page_factory) -> None:
    for base in _serve(create_app(runs[name]), name):
        page = _open(page_factory, base)
        assert page.inner_text("#title").startswith(name.split("-")[0])
        before, n = _canvas(page, "#decoded"), int(page.get_attribute("body", "data-decodes"))
        z_before = _sliders(page)
        assert len(z_before) == (5 if name == "vae-d5" else 2)
        box = page.locator("#map").bounding_box()
        page.mouse.click(box["x"] + 0.9 * box["width"], box["y"] + 0.1 * box["height"])
        page.wait_for_function("n => Number(document.body.dataset.decodes) > n", arg=n, timeout=10000)
        after = _canvas(page, "#decoded")
        assert after != before, "the decoded image did not change after clicking the map"
        # the sliders follow the clicked point; for d > 2 the PCA inverse moves every dimension
        z_after = _sliders(page)
        assert sum(abs(a - b) > 0.005 for a, b in zip(z_before, z_after)) >= min(len(z_after), 3)

        # drag: several decodes, last one wins
        n = int(page.get_attribute("body", "data-decodes"))
        page.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + 0.8 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.5 * box["height"], steps=5)
        page.mouse.up()
        page.wait_for_function("n => Number(document.body.dataset.decodes) > n", arg=n, timeout=10000)

        page.fill("#steps", "6")
        page.click("#interp-go")  # 6 steps plus the two originals at the ends
        page.wait_for_function("() => document.querySelectorAll('#strip canvas').length === 8", timeout=10000)
        page.fill("#n", "5")
        page.click("#sample-go")
        page.wait_for_function("() => document.querySelectorAll('#samples canvas').length === 5", timeout=10000)
        metrics = page.inner_text("#metrics")
        if name == "vae-d5":  # saved without training: no metrics to show
            assert "no metrics" in metrics
        else:
            assert "ELBO, validation" in metrics and "nats / example" in metrics and "cross-entropy" in metrics
            assert "val_elbo" not in metrics and "skipped_steps" not in metrics
        assert page.is_hidden("#error"), page.inner_text("#error")
        assert not page.errors, page.errors
        assert all(u.startswith(base) or u.startswith("data:") for u in page.requests), page.requests
        page.close()


def _stroke(page, selector: str, points: list[tuple[float, float]]) -> None:
    """Press, move through ``points`` (fractions of the element's box) and release the mouse."""
    box = page.locator(selector).bounding_box()
    at = [(box["x"] + u * box["width"], box["y"] + v * box["height"]) for u, v in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for p in at[1:]:
        page.mouse.move(*p, steps=6)
    page.mouse.up()


@pytest.mark.parametrize("name", ["vae", "cvae", "ae"])
def test_drawing_a_stroke_lands_on_the_map_with_its_reconstruction(name: str, runs, page_factory, tmp_path) -> None:
    for base in _serve(create_app(runs[name]), name):
        page = _open(page_factory, base)
        client_post = lambda path, body: page.request.post(base + path, data=body).json()  # noqa: E731
        assert page.eval_on_selector("#draw-recon", "c => c.dataset.filled") is None
        if name == "cvae":
            page.select_option("#class", "7")
        _stroke(page, "#draw", [(0.3, 0.15), (0.7, 0.15), (0.45, 0.9)])    # a 7
        page.wait_for_function("() => Number(document.body.dataset.drawEncodes || 0) > 0", timeout=10000)
        page.wait_for_function("() => !draw.busy", timeout=10000)
        x = page.evaluate("() => modelInput()")
        assert len(x) == 64 and max(x) > 0.5 and sum(v > 0.25 for v in x) >= 6, x   # ink reached the model
        body = {"x": x, **({"y": 7} if name == "cvae" else {})}
        enc = client_post("/api/encode", body)
        # the marker: where the API puts these pixels, drawn in the marker's colour on the map
        drawn = page.evaluate("() => state.drawn")
        np.testing.assert_allclose(drawn, enc["map"], atol=1e-6)
        px, py = page.evaluate("p => toPx(...p)", drawn)
        r, g, b, _ = _pixels(page, "#map")[int(py), int(px)]
        assert (r, g, b) == (0xe0, 0x10, 0x9b), (r, g, b)
        # the reconstruction: the decoded mean's PNG, cell for cell
        recon = _cells(_pixels(page, "#draw-recon"), 8)
        assert np.array_equal(recon, _png(enc["reconstruction"])), (recon, _png(enc["reconstruction"]))
        assert np.array_equal(_cells(_pixels(page, "#draw-input"), 8), np.round(np.array(x) * 255).reshape(8, 8))
        stats = page.inner_text("#draw-stats")
        if name == "ae":
            assert "not defined" in stats
        else:  # log p(x): the seeded estimate the API gives for the same pixels, with its scale and K
            lik = client_post("/api/likelihood", {**body, "k": 100})
            assert f"{lik['log_px']:.2f}" in stats and "nats" in stats and "cross-entropy" in stats
            assert "K=100" in stats and "effective samples" in stats
        # a second stroke moves the marker; Clear removes it
        n = int(page.get_attribute("body", "data-draw-encodes"))
        _stroke(page, "#draw", [(0.5, 0.1), (0.5, 0.9)])
        page.wait_for_function("n => Number(document.body.dataset.drawEncodes) > n", arg=n, timeout=10000)
        page.click("#draw-clear")
        assert page.evaluate("() => state.drawn") is None
        if name == "vae":  # an image file, dark ink on white paper: inverted to the data's white on black
            photo = np.full((120, 90), 255, np.uint8)
            photo[15:105, 35:55] = 0                                   # a black bar: a "1"
            path = tmp_path / "one.png"
            Image.fromarray(photo).save(path)
            n = int(page.get_attribute("body", "data-draw-encodes"))
            page.set_input_files("#draw-file", str(path))
            page.wait_for_function("n => Number(document.body.dataset.drawEncodes) > n", arg=n, timeout=10000)
            assert page.is_checked("#draw-invert")
            x = np.array(page.evaluate("() => modelInput()")).reshape(8, 8)
            assert x[:, 0].max() == 0 and x[:, -1].max() == 0 and x[:, 3:5].min() > 0.75, x  # a bright bar
            assert page.evaluate("() => state.drawn") is not None
        assert page.is_hidden("#error"), page.inner_text("#error")
        assert not page.errors, page.errors
        page.close()


def test_hover_thumbnail_interpolation_ends_bad_index_and_png_downloads(runs, page_factory, digits, tmp_path) -> None:
    test = digits[1]
    for base in _serve(create_app(runs["vae"]), "vae"):
        page = _open(page_factory, base)
        # hover: the point under the pointer shows its own test image
        assert page.is_hidden("#hover")
        for i in (5, 123):
            j = page.evaluate("i => nearest(...state.info.map.points[i])", i)  # the topmost point there
            x, y = page.evaluate("""i => { const [x, y] = toPx(...state.info.map.points[i]), c = $('map'),
                r = c.getBoundingClientRect();
                return [r.left + x * r.width / c.width, r.top + y * r.height / c.height]; }""", i)
            page.mouse.move(x, y)
            page.wait_for_function("j => $('hover').dataset.index === String(j) && !$('hover').hidden", arg=j,
                                   timeout=10000)
            shown = _cells(_pixels(page, "#hover-img"), 8)
            assert np.array_equal(shown, (test.x[j, 0].numpy() * 255).round()), j
            assert f"test image {j}" in page.inner_text("#hover-text")
        page.mouse.move(0, 0)
        page.wait_for_function("() => $('hover').hidden", timeout=5000)

        # interpolation: the strip starts and ends with the two test images themselves
        page.fill("#ia", "3"); page.dispatch_event("#ia", "change")
        page.fill("#ib", "40"); page.dispatch_event("#ib", "change")
        page.fill("#steps", "4")
        page.click("#interp-go")
        page.wait_for_function("() => document.querySelectorAll('#strip canvas').length === 6", timeout=10000)
        strip = page.query_selector_all("#strip canvas")
        for canvas, k in ((strip[0], 3), (strip[-1], 40)):
            url = canvas.evaluate("c => c.toDataURL()")
            px = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))
            assert np.array_equal(_cells(px, 8), (test.x[k, 0].numpy() * 255).round()), k
        assert page.inner_text("#strip").split()[0] == "A" and "B (#40)" in page.inner_text("#strip")

        # any image as PNG: the decoded image, the strip (joined), the map
        for button, size in (("#decode-panel button.download", (196, 196)),
                             ("#interp-panel button.download", (6 * 56 + 5 * 2, 56)),
                             ("#map-panel button.download", (480, 480))):
            with page.expect_download() as dl:
                page.click(button)
            path = tmp_path / dl.value.suggested_filename
            dl.value.save_as(path)
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.suffix == ".png"
            assert Image.open(path).size == size

        # a bad index: the error is shown and the old thumbnail is cleared, not left standing
        assert not page.errors, page.errors
        assert page.eval_on_selector("#thumb-a", "c => c.dataset.filled") == "1"
        page.fill("#ia", "99999"); page.dispatch_event("#ia", "change")
        page.wait_for_selector("#error:not([hidden])", timeout=10000)
        assert "index=99999 is out of range" in page.inner_text("#error")
        assert page.eval_on_selector("#thumb-a", "c => c.dataset.filled") is None
        assert not _pixels(page, "#thumb-a").any(), "the old thumbnail is still shown"
        assert all("status of 422" in e for e in page.errors), page.errors  # the refused request, nothing else
        page.close()


def _dark_fraction(layer: np.ndarray, centre: tuple[float, float], radius: float) -> float:
    """Fraction of 180 points on a circle that are dark (the prior's dashed line is #333)."""
    angles = np.linspace(0, 2 * math.pi, 180, endpoint=False)
    h, w = layer.shape[:2]
    xs, ys = centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)
    inside = (xs >= 0) & (xs < w - 1) & (ys >= 0) & (ys < h - 1)
    vals = layer[ys[inside].round().astype(int), xs[inside].round().astype(int), :3].max(-1)
    return float((vals < 110).mean()) if inside.any() else 0.0


@pytest.mark.parametrize("name", ["vae", "vae-d5", "ae"])
def test_the_map_draws_the_priors_sigma_circles(name: str, runs, page_factory) -> None:
    for base in _serve(create_app(runs[name]), name):
        page = _open(page_factory, base)
        layer = page.evaluate("() => state.layer.toDataURL()")
        px = np.asarray(Image.open(io.BytesIO(base64.b64decode(layer.split(",", 1)[1]))).convert("RGBA"))
        centre = page.evaluate("() => toPx(...priorCentre())")
        unit = page.evaluate("() => $('map').width / (state.bounds.u1 - state.bounds.u0)")
        on = [_dark_fraction(px, centre, s * unit) for s in (1, 2, 3)]
        off = [_dark_fraction(px, centre, (s + 0.5) * unit) for s in (1, 2)]
        if name == "ae":  # no prior: no circles, and the page says so
            assert max(on) < 0.1 and "no sigma circles" in page.inner_text("#prior-note")
        else:
            assert min(on) > 0.25 and max(off) < 0.05, (on, off)   # dashed: about 60 % ink, antialiased
            assert "39 %, 86 %, 99 %" in page.inner_text("#prior-note")
        ticks = page.evaluate("() => niceStep(state.bounds.u1 - state.bounds.u0)")
        assert ticks > 0
        assert not page.errors, page.errors
        page.close()
