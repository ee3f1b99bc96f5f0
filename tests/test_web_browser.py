"""End to end: the real uvicorn server on 127.0.0.1 and the page in headless Chromium (Playwright)."""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

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


def _sliders(page) -> list[float]:
    return page.eval_on_selector_all("#sliders input", "xs => xs.map(x => Number(x.value))")


@pytest.mark.parametrize("name", ["vae", "cvae", "vae-d5"])
def test_clicking_the_map_decodes_that_point(name: str, runs, page_factory) -> None:
    for base in _serve(create_app(runs[name]), name):
        page = page_factory.new_page()
        requests, errors = [], []
        page.on("request", lambda r: requests.append(r.url))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(base + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=15000)
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
        page.click("#interp-go")
        page.wait_for_function("() => document.querySelectorAll('#strip canvas').length === 6", timeout=10000)
        page.fill("#n", "5")
        page.click("#sample-go")
        page.wait_for_function("() => document.querySelectorAll('#samples canvas').length === 5", timeout=10000)
        if name == "vae-d5":  # saved without training: no metrics to show
            assert "no metrics" in page.inner_text("#metrics")
        else:
            assert "val_elbo" in page.inner_text("#metrics")
        assert page.is_hidden("#error"), page.inner_text("#error")
        assert not errors, errors
        assert all(u.startswith(base) or u.startswith("data:") for u in requests), requests
        page.close()
