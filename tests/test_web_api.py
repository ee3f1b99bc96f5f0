"""The explorer's JSON API (vaelab/web) on tiny digits runs: every endpoint, every malformed input."""
from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
from conftest import DIGITS_RUNS, contract_params  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from vaelab import rundir  # noqa: E402
from vaelab.data import info_dict, load_dataset  # noqa: E402
from vaelab.models import REGISTRY, build_model  # noqa: E402
from vaelab.web import create_app  # noqa: E402

# the shared trained runs plus two random-init ones: d = 5 (PCA map) and d = 1 (a line)
LOCAL = "http://127.0.0.1"  # the explorer answers loopback Host headers only
EXTRA = {"vae-d5": ("vae", 5), "ae-d1": ("ae", 1)}
NAMES = list(DIGITS_RUNS) + list(EXTRA)


@pytest.fixture(scope="module")
def runs(digits_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = dict(digits_runs)
    info = info_dict(load_dataset("digits", "test").info)
    for key, (name, d) in EXTRA.items():
        torch.manual_seed(0)
        model = build_model(name, **{**contract_params(name), "latent_dim": d})
        out[key] = rundir.save_model(tmp_path_factory.mktemp(key), model, data=info)
    return out


@pytest.fixture(scope="module")
def clients(runs: dict[str, Path]) -> dict[str, TestClient]:
    return {key: TestClient(create_app(path), base_url=LOCAL) for key, path in runs.items()}


@pytest.fixture(scope="module")
def test_set():
    return load_dataset("digits", "test")


def png(entry: dict) -> np.ndarray:
    """A base64 PNG from the API -> uint8 array (H, W)."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(entry["image"]))))


def expected_png(x: torch.Tensor) -> np.ndarray:
    """What the API should send for one decoded mean (1, H, W): rounded 8-bit grey pixels."""
    return (x.clamp(0, 1)[0].numpy() * 255).round().astype(np.uint8)


def explorer(client: TestClient):
    return client.app.state.explorer


@pytest.mark.parametrize("name", NAMES)
def test_info_map_is_the_projected_test_means(name: str, clients, runs, test_set) -> None:
    client = clients[name]
    info = client.get("/api/info").json()
    model = rundir.load(runs[name])
    assert info["model"] == rundir.read_config(runs[name])["model"]
    assert info["latent_dim"] == model.latent_dim and info["n_classes"] == model.n_classes
    assert info["input_shape"] == [1, 8, 8] and info["class_names"] == [str(i) for i in range(10)]
    n = len(test_set)
    points = np.array(info["map"]["points"])
    assert points.shape == (n, 2) and info["map"]["labels"] == test_set.y.tolist()
    y = test_set.y if model.n_classes else None
    with torch.no_grad():
        means = model.encode(test_set.x, y).mean.numpy().astype(np.float64)      # (n, d)
    proj = info["map"]["projection"]
    if model.latent_dim == 2:
        assert proj["kind"] == "identity"
        np.testing.assert_allclose(points, means, atol=2e-4)
    elif model.latent_dim == 1:
        np.testing.assert_allclose(points[:, 0], means[:, 0], atol=2e-4)
        assert np.all(points[:, 1] == 0)
    else:
        from sklearn.decomposition import PCA

        assert proj["kind"] == "pca" and 0 < sum(proj["explained_variance_ratio"]) <= 1 + 1e-9
        ref = PCA(2).fit_transform(means)
        for k in range(2):  # principal axes are defined up to sign
            sign = np.sign(ref[:, k] @ points[:, k])
            np.testing.assert_allclose(points[:, k], sign * ref[:, k], atol=1e-3)
    rows = rundir.read_metrics(runs[name])
    if rows:
        assert info["metrics"]["source"] == "metrics.jsonl"
        assert info["metrics"]["values"] == pytest.approx(rows[-1])


@pytest.mark.parametrize("name", NAMES)
def test_decode_matches_the_model_and_map_round_trips(name: str, clients, runs) -> None:
    client, model = clients[name], rundir.load(runs[name])
    proj = client.get("/api/info").json()["map"]["projection"]
    y = 3 if model.n_classes else None
    images = []
    for uv in ([0.5, -0.25], [-1.5, 1.0]):
        # a map point -> z by the inverse projection (what the page does), decoded by the server
        z = (np.array(uv) @ np.array(proj["components"]) + np.array(proj["mean"])).tolist()
        body = {"z": z, **({"y": y} if y is not None else {})}
        out = client.post("/api/decode", json=body).json()
        assert out["shape"] == [1, 8, 8]
        if model.latent_dim >= 2:
            np.testing.assert_allclose(out["map"], uv, atol=1e-6)
        with torch.no_grad():
            ref = model.decode(torch.tensor([z], dtype=torch.float32), None if y is None else torch.tensor([y])).mean
        got = png(out)
        assert got.shape == (8, 8)
        assert np.abs(got.astype(int) - expected_png(ref[0]).astype(int)).max() <= 1
        images.append(got)
    assert not np.array_equal(images[0], images[1]), "two distant map points decoded to the same image"


def test_decode_uses_the_chosen_class(clients) -> None:
    client = clients["cvae"]
    a = png(client.post("/api/decode", json={"z": [0.0, 0.0], "y": 1}).json())
    b = png(client.post("/api/decode", json={"z": [0.0, 0.0], "y": 8}).json())
    assert not np.array_equal(a, b)


def test_decode_runs_under_inference_mode(clients, monkeypatch) -> None:
    model = explorer(clients["vae"]).model
    seen = []
    original = model.decode

    def spy(z, y=None):
        seen.append(torch.is_inference_mode_enabled())
        return original(z, y)

    monkeypatch.setattr(model, "decode", spy)
    assert clients["vae"].post("/api/decode", json={"z": [0.1, 0.2]}).status_code == 200
    assert seen == [True]


@pytest.mark.parametrize("name", NAMES)
def test_encode_index_and_pixels_agree(name: str, clients, test_set) -> None:
    client = clients[name]
    info = client.get("/api/info").json()
    k = 7
    by_index = client.post("/api/encode", json={"index": k}).json()
    assert by_index["label"] == int(test_set.y[k])
    np.testing.assert_allclose(by_index["map"], info["map"]["points"][k], atol=1e-3)
    assert np.array_equal(png(by_index["original"]), expected_png(test_set.x[k]))
    body = {"x": test_set.x[k].flatten().tolist()}
    if info["n_classes"]:
        body["y"] = int(test_set.y[k])
    by_pixels = client.post("/api/encode", json=body).json()
    np.testing.assert_allclose(by_pixels["z"], by_index["z"], atol=1e-5)
    assert len(by_pixels["z"]) == info["latent_dim"]


@pytest.mark.parametrize("name", NAMES)
def test_sample_at_low_temperature_is_the_decoded_origin(name: str, clients) -> None:
    client = clients[name]
    d, cond = explorer(client).latent_dim, bool(explorer(client).n_classes)
    extra = {"y": 4} if cond else {}
    out = client.post("/api/sample", json={"n": 3, "temperature": 1e-4, **extra}).json()
    origin = png(client.post("/api/decode", json={"z": [0.0] * d, **extra}).json())
    assert len(out["images"]) == 3
    for entry in out["images"]:
        assert np.abs(png(entry).astype(int) - origin.astype(int)).max() <= 1
    wide = client.post("/api/sample", json={"n": 4, "temperature": 1.0, **extra}).json()["images"]
    assert len({png(e).tobytes() for e in wide}) > 1, "temperature-1 samples should differ"


@pytest.mark.parametrize("name", NAMES)
def test_interpolate_ends_at_the_two_images(name: str, clients, test_set) -> None:
    client = clients[name]
    ex = explorer(client)
    i, j = 2, 11
    info_points = np.array(client.get("/api/info").json()["map"]["points"])
    for method in ("linear", "slerp"):
        out = client.post("/api/interpolate", json={"i": i, "j": j, "steps": 5, "method": method}).json()
        assert len(out["images"]) == 5 and len(out["map"]) == 5
        np.testing.assert_allclose(out["map"][0], info_points[i], atol=1e-3)
        np.testing.assert_allclose(out["map"][-1], info_points[j], atol=1e-3)
        for end, idx in ((0, i), (-1, j)):
            body = {"z": ex.means[idx].tolist(), **({"y": int(test_set.y[idx])} if ex.n_classes else {})}
            ref = png(client.post("/api/decode", json=body).json())
            assert np.abs(png(out["images"][end]).astype(int) - ref.astype(int)).max() <= 1
        if method == "linear":  # the projection is affine: a straight latent path is straight on the map
            np.testing.assert_allclose(out["map"][2], (info_points[i] + info_points[j]) / 2, atol=1e-3)


def test_slerp_bends_the_path(clients) -> None:
    client = clients["vae-d5"]
    lin = client.post("/api/interpolate", json={"i": 0, "j": 1, "steps": 3}).json()["map"][1]
    sl = client.post("/api/interpolate", json={"i": 0, "j": 1, "steps": 3, "method": "slerp"}).json()["map"][1]
    assert np.abs(np.array(lin) - np.array(sl)).max() > 1e-4


def write_eval_json(run: Path, values: dict) -> None:
    """eval.json as ``vaelab eval`` writes it (naming the weights it describes), NaN as Python writes it."""
    (run / "eval.json").write_text(json.dumps({**values, "checkpoint": rundir.checkpoint_id(run)}))


def test_metrics_prefer_eval_json(runs, tmp_path: Path) -> None:
    run = shutil.copytree(runs["vae"], tmp_path / "vae")
    write_eval_json(run, {"nll": 31.5, "broken": float("nan")})
    info = TestClient(create_app(run), base_url=LOCAL).get("/api/info").json()
    assert info["metrics"] == {"source": "eval.json", "values": {"nll": 31.5, "broken": None}}


def test_metric_table_labels_every_number_with_its_split_unit_and_scale(runs, tmp_path: Path) -> None:
    run = shutil.copytree(runs["vae"], tmp_path / "vae")
    last = rundir.read_metrics(run)[-1]
    table = TestClient(create_app(run), base_url=LOCAL).get("/api/info").json()["metric_table"]
    assert [g["title"] for g in table["groups"]] == [f"last training epoch ({last['epoch']}, metrics.jsonl)"]
    rows = {r["label"]: r for r in table["groups"][0]["rows"]}
    val = rows["ELBO, validation"]
    assert val["value"] == pytest.approx(last["val_elbo"]) and val["unit"] == "nats / example"
    assert val["scale"] == "cross-entropy"  # a Bernoulli likelihood of grey digits is no normalised density
    assert rows["ELBO, training (epoch mean)"]["value"] == pytest.approx(last["elbo"])
    assert rows["skipped updates (non-finite loss or gradient), all epochs"]["value"] == last["skipped_steps"]
    assert rows["KL(q(z|x) || p(z)), validation"]["scale"] is None  # a KL is not a likelihood
    assert not [r for r in rows if "_" in r], "raw keys shown"
    # with an eval.json: the test-set numbers in their own group, on the scale they were recorded on
    write_eval_json(run, {"nll": 30.2, "nll_se": 0.03, "elbo": -31.0, "bits_per_dim": 0.68, "scale": "discrete",
                          "levels": 2, "dequantized": False, "n_examples": 360, "iw_samples": 1000,
                          "nll_method": "importance-sampling", "active_units": 2, "latent_dim": 2})
    table = TestClient(create_app(run), base_url=LOCAL).get("/api/info").json()["metric_table"]
    assert [g["title"][:9] for g in table["groups"]] == ["test set ", "last trai"]
    assert "360 examples" in table["groups"][0]["title"] and "K=1000" in table["groups"][0]["title"]
    test_rows = {r["label"]: r for r in table["groups"][0]["rows"]}
    nll = test_rows["negative log-likelihood -log p(x)"]
    assert nll["text"] == "30.20 ± 0.03" and nll["scale"] == "discrete, 2 levels" and "importance" in nll["note"]
    assert test_rows["bits per dimension"]["unit"] == "bits / dim"
    assert test_rows["active latent units (Var of the posterior mean > 0.01)"]["unit"] == "of 2"
    assert not any("validation" in r for r in test_rows) and "ELBO, validation" in {
        r["label"] for r in table["groups"][1]["rows"]}


def test_metric_table_of_an_autoencoder_has_no_elbo(runs) -> None:
    table = TestClient(create_app(runs["ae"], max_points=20), base_url=LOCAL).get("/api/info").json()["metric_table"]
    labels = [r["label"] for g in table["groups"] for r in g["rows"]]
    assert "reconstruction mean squared error, validation" in labels
    assert not [x for x in labels if "ELBO" in x or "KL" in x]


@pytest.mark.parametrize("name", ["vae", "cvae", "vae-d5"])
def test_likelihood_is_the_seeded_importance_sampled_estimate(name: str, clients, runs, test_set) -> None:
    from vaelab.eval.likelihood import log_likelihood_estimate

    client, model = clients[name], rundir.load(runs[name])
    k, idx = 50, 17
    x = test_set.x[idx:idx + 1]
    y = test_set.y[idx:idx + 1] if model.n_classes else None
    body = {"x": x.flatten().tolist(), "k": k, **({"y": int(y[0])} if y is not None else {})}
    out = client.post("/api/likelihood", json=body).json()
    assert client.post("/api/likelihood", json=body).json() == out      # same seed, same estimate
    ref = log_likelihood_estimate(model, x, y, k, seed=0, workers=1)
    assert out["log_px"] == pytest.approx(float(ref.log_px[0]), abs=1e-4)
    assert out["elbo"] == pytest.approx(float(ref.elbo[0]), abs=1e-4)
    assert out["log_px"] >= out["elbo"] - 1e-9             # log-mean-exp of the weights >= their mean
    assert 1 <= out["ess"] <= k and out["se"] > 0 and out["k"] == k and out["unit"] == "nats"
    assert f"K={k}" in out["method"] and out["scale"]["kind"] == "cross-entropy" and out["bits_per_dim"] is None
    other = client.post("/api/likelihood", json={**body, "seed": 1}).json()
    assert other["log_px"] != out["log_px"] and abs(other["log_px"] - out["log_px"]) < 6 * (out["se"] + other["se"])


def test_likelihood_of_binary_pixels_under_a_bernoulli_is_a_probability(clients) -> None:
    """Binary data lie on a 2-level grid: a Bernoulli log p(x) is then a log-probability, <= 0."""
    x = ([0.0] * 40 + [1.0] * 24)
    out = clients["vae"].post("/api/likelihood", json={"x": x}).json()
    # digits have 17 levels and {0, 1} lies on their grid, so the scale stays the data's (a cross-entropy) ...
    assert out["scale"]["kind"] == "cross-entropy"
    ex = explorer(clients["vae"])
    ex.levels, saved = 2, ex.levels
    try:  # ... and on binary data the same pixels are scored as the discrete probability they are
        out = clients["vae"].post("/api/likelihood", json={"x": x}).json()
    finally:
        ex.levels = saved
    assert out["scale"] == {"kind": "discrete", "levels": 2, "dequantized": False, "label": "discrete, 2 levels"}
    assert out["log_px"] < 0 and out["bits_per_dim"] == pytest.approx(-out["log_px"] / (64 * np.log(2)))


def test_likelihood_of_pca_is_exact_and_dequantized_on_the_data_grid(clients, test_set) -> None:
    out = clients["pca"].post("/api/likelihood", json={"x": test_set.x[3].flatten().tolist()}).json()
    assert out["method"].startswith("exact") and out["k"] is None and out["ess"] is None
    assert out["scale"]["kind"] == "discrete" and out["scale"]["levels"] == 17 and out["scale"]["dequantized"]
    assert out["log_px"] < 0 and out["bits_per_dim"] > 0   # a (bound on a) probability of a discrete image


def test_encode_pixels_gives_the_reconstruction_and_interpolate_the_originals(clients, test_set) -> None:
    client = clients["vae"]
    out = client.post("/api/encode", json={"x": test_set.x[5].flatten().tolist()}).json()
    decoded = client.post("/api/decode", json={"z": out["z"]}).json()
    assert np.array_equal(png(out["reconstruction"]), png(decoded))
    ends = client.post("/api/interpolate", json={"i": 4, "j": 9, "steps": 3}).json()["ends"]
    assert np.array_equal(png(ends[0]), expected_png(test_set.x[4]))
    assert np.array_equal(png(ends[1]), expected_png(test_set.x[9]))


def test_info_says_which_prior_the_map_can_draw_and_how_the_images_sit(clients, test_set) -> None:
    kinds = {name: clients[name].get("/api/info").json() for name in ("vae", "ae", "pca", "vae-d5")}
    assert {n: i["prior"]["kind"] for n, i in kinds.items()} == {
        "vae": "standard_normal", "ae": "none", "pca": "standard_normal", "vae-d5": "standard_normal"}
    assert "39 %, 86 %, 99 %" in kinds["vae"]["prior"]["text"] and "no sigma circles" in kinds["ae"]["prior"]["text"]
    assert kinds["ae"]["likelihood"]["available"] is False and kinds["pca"]["likelihood"]["method"].startswith("exact")
    frame = kinds["vae"]["frame"]
    g = test_set.x[:, 0]                                               # (N, 8, 8)
    border = torch.cat([g[:, 0], g[:, -1], g[:, :, 0], g[:, :, -1]], 1)
    assert frame["background"] == pytest.approx(float(border.quantile(0.5)), abs=1e-4)
    assert frame["ink"] == pytest.approx(float(g.quantile(0.99)), abs=1e-4)
    assert 0.5 < frame["extent"] <= 1.0 and kinds["vae"]["likelihood"]["levels"] == 17


def test_map_is_capped(runs) -> None:
    client = TestClient(create_app(runs["ae"], max_points=50), base_url=LOCAL)
    assert len(client.get("/api/info").json()["map"]["points"]) == 50
    r = client.post("/api/encode", json={"index": 50})
    assert r.status_code == 422 and "0..49" in r.json()["error"]


def test_static_files_only_from_the_package(clients) -> None:
    client = clients["vae"]
    app = client.app
    assert all("{" not in getattr(route, "path", "") for route in app.routes), "no path parameters"
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN or network assets
    assert client.get("/static/app.js").text.startswith("// vaelab explorer")
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/app.py", "/config.json",
                 "/static/index.html/..%2f..%2fapp.py"):
        r = client.get(path)
        assert r.status_code == 404 and "error" in r.json(), path
    assert client.get("/", params={"file": "/etc/passwd"}).text == page.text


# (path, raw JSON body, words the error must contain) for an unconditional 2-D model ("vae")
BAD = [
    ("/api/decode", '{"z": [0.1]}', ["z has 1 values", "latent_dim is 2"]),
    ("/api/decode", '{"z": [0.1, 0.2, 0.3]}', ["z has 3 values", "exactly 2"]),
    ("/api/decode", '{"z": []}', ["z=[]", "at least 1"]),
    ("/api/decode", '{"z": [0.1, NaN]}', ["z[1]=nan", "finite"]),
    ("/api/decode", '{"z": [Infinity, 0]}', ["z[0]=inf", "finite"]),
    ("/api/decode", '{"z": [0, -Infinity]}', ["z[1]=-inf", "finite"]),
    ("/api/decode", '{"z": [1e999, 0]}', ["z[0]=inf", "finite"]),
    ("/api/decode", '{"z": [5000, 0]}', ["z[0]=5000", "1000"]),
    ("/api/decode", '{"z": "0, 1"}', ["z='0, 1'", "list"]),
    ("/api/decode", '{"z": ["0", 1]}', ["z[0]='0'", "number"]),
    ("/api/decode", '{"z": [[0, 1]]}', ["z[0]=[0, 1]", "number"]),
    ("/api/decode", '{"z": [0, 1], "y": 3}', ["y=3", "not conditional"]),
    ("/api/decode", '{"z": [0, 1], "temperature": 2}', ["temperature", "allowed fields: ['y', 'z']"]),
    ("/api/decode", '{}', ["z is required"]),
    ("/api/decode", '[0, 1]', ["JSON object", "[0, 1]"]),
    ("/api/decode", '{"z": [0, 1]', ["not valid JSON"]),
    ("/api/decode", 'null', ["JSON object"]),
    ("/api/encode", '{"index": 360}', ["index=360", "0..359"]),
    ("/api/encode", '{"index": -1}', ["index=-1", "greater than or equal to 0"]),
    ("/api/encode", '{"index": 1.5}', ["index=1.5", "integer"]),
    ("/api/encode", '{"index": "3"}', ["index='3'", "integer"]),
    ("/api/encode", '{"index": true}', ["index=True", "integer"]),
    ("/api/encode", '{}', ["exactly one of 'index'", "'x'"]),
    ("/api/encode", '{"index": 1, "x": [0.5]}', ["exactly one of 'index'"]),
    ("/api/encode", '{"x": [0.5, 0.5]}', ["x has 2 values", "64"]),
    ("/api/encode", '{"x": [NaN]}', ["x[0]=nan", "finite"]),
    ("/api/sample", '{"n": 0}', ["n=0", "greater than or equal to 1"]),
    ("/api/sample", '{"n": 257}', ["n=257", "256"]),
    ("/api/sample", '{"n": 100000000}', ["n=100000000", "256"]),
    ("/api/sample", '{"n": "8"}', ["n='8'", "integer"]),
    ("/api/sample", '{"temperature": 0}', ["temperature=0", "greater than 0"]),
    ("/api/sample", '{"temperature": NaN}', ["temperature=nan", "finite"]),
    ("/api/sample", '{"temperature": 1000}', ["temperature=1000", "10"]),
    ("/api/sample", '{"y": 0}', ["y=0", "not conditional"]),
    ("/api/interpolate", '{"i": 0, "j": 1, "steps": 1}', ["steps=1", "2"]),
    ("/api/interpolate", '{"i": 0, "j": 1, "steps": 65}', ["steps=65", "64"]),
    ("/api/interpolate", '{"i": 0, "j": 1, "method": "cubic"}', ["method='cubic'", "'linear' or 'slerp'"]),
    ("/api/interpolate", '{"i": 0, "j": 9999}', ["j=9999", "0..359"]),
    ("/api/interpolate", '{"i": 0}', ["j is required"]),
    ("/api/likelihood", '{"x": [0.5, 0.5]}', ["x has 2 values", "64"]),
    ("/api/likelihood", '{"x": [[0.5]]}', ["x[0]=[0.5]", "number"]),
    ("/api/likelihood", '{"x": [NaN]}', ["x[0]=nan", "finite"]),
    ("/api/likelihood", '{}', ["x is required"]),
    ("/api/likelihood", '{"x": [0.5], "k": 0}', ["k=0", "greater than or equal to 1"]),
    ("/api/likelihood", '{"x": [0.5], "k": 100000}', ["k=100000", "5000"]),
    ("/api/likelihood", '{"x": [0.5], "seed": -1}', ["seed=-1"]),
    ("/api/likelihood", '{"x": [0.5], "K": 3}', ["unknown field 'K'", "allowed fields"]),
    ("/api/likelihood", '{"x": ' + str([0.5] * 64) + ', "y": 3}', ["y=3", "not conditional"]),
    ("/api/likelihood", '{"x": ' + str([2.0] * 64) + '}', ["[0, 1]"]),   # a Bernoulli needs pixels in [0, 1]
]
# the same for the conditional model ("cvae"): class checks
BAD_CONDITIONAL = [
    ("/api/decode", '{"z": [0, 1]}', ["conditional", "pass the class y", "0..9"]),
    ("/api/decode", '{"z": [0, 1], "y": 10}', ["y=10", "0..9"]),
    ("/api/decode", '{"z": [0, 1], "y": -1}', ["y=-1", "greater than or equal to 0"]),
    ("/api/decode", '{"z": [0, 1], "y": 2.0}', ["y=2.0", "integer"]),
    ("/api/decode", '{"z": [0, 1], "y": "two"}', ["y='two'", "integer"]),
    ("/api/encode", '{"x": [0.5, 0.5]}', ["x has 2 values"]),
    ("/api/encode", '{"index": 0, "y": 1}', ["y goes with x only"]),
    ("/api/sample", '{"n": 2, "y": 99}', ["y=99", "0..9"]),
    ("/api/interpolate", '{"i": 0, "j": 1, "y": 10}', ["y=10", "0..9"]),
    ("/api/likelihood", '{"x": ' + str([0.5] * 64) + '}', ["conditional", "pass the class y"]),
    ("/api/likelihood", '{"x": ' + str([0.5] * 64) + ', "y": 12}', ["y=12", "0..9"]),
]


BAD_AE = [("/api/likelihood", '{"x": ' + str([0.5] * 64) + '}', ["no likelihood", "not defined"])]


@pytest.mark.parametrize("name,cases", [("vae", BAD), ("cvae", BAD_CONDITIONAL), ("ae", BAD_AE)])
def test_malformed_requests_get_4xx_json_and_the_server_keeps_serving(name, cases, clients) -> None:
    client = clients[name]
    for path, body, words in cases:
        r = client.post(path, content=body, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text)
        error = r.json()["error"]
        for word in words:
            assert word in error, (path, body, error)
    assert client.get("/api/info").status_code == 200
    for path, body, _ in cases:  # a 422 names the problem; no input makes the server fail (500)
        r = client.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code in (413, 422), (path, body, r.status_code)
    z = [0.0] * explorer(client).latent_dim
    assert client.post("/api/decode", json={"z": z, **({"y": 0} if name == "cvae" else {})}).status_code == 200


def test_oversized_and_misrouted_requests(clients) -> None:
    client = clients["vae"]
    limit = 65536  # the default for 8x8 images: max(64 KiB, 32 bytes per pixel + 4 KiB)
    big = '{"z": [' + ", ".join(["0.0"] * (limit // 4)) + "]}"
    r = client.post("/api/decode", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and f"at most {limit} bytes" in r.json()["error"]

    def chunks():  # no content-length: the limit is enforced while streaming
        for _ in range(40):
            yield b" " * 4096

    r = client.post("/api/decode", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "error" in r.json()
    r = client.post("/api/decode", content="x" * 10, headers={"content-length": "999999999999"})
    assert r.status_code == 413
    r = client.get("/api/decode")
    assert r.status_code == 405 and "/api/decode" in r.json()["error"]
    r = client.post("/api/nothing", json={})
    assert r.status_code == 404 and "available" in r.json()["error"]
    assert client.post("/api/decode", json={"z": [0.0, 0.0]}).status_code == 200


def test_serve_cli_binds_localhost_by_default(runs, monkeypatch) -> None:
    import uvicorn

    from vaelab.cli import app

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda web_app, **kw: calls.append((web_app, kw)))
    result = CliRunner().invoke(app, ["serve", str(runs["vae"]), "--port", "8765"])
    assert result.exit_code == 0, result.output
    assert calls[0][1]["host"] == "127.0.0.1" and calls[0][1]["port"] == 8765
    assert calls[0][0].state.explorer.n_points == 360
    missing = CliRunner().invoke(app, ["serve", str(Path(runs["vae"]).parent / "no-such-run")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


# -- Host and Origin checks (DNS rebinding, cross-site requests) ------------------------------------------
@pytest.fixture(scope="module")
def guarded_app(runs: dict[str, Path]):
    return create_app(runs["ae"], max_points=50)


@pytest.mark.parametrize("base", ["http://127.0.0.1", "http://localhost:8000", "http://[::1]:9999"])
def test_loopback_hosts_allowed(guarded_app, base):
    assert TestClient(guarded_app, base_url=base).get("/api/info").status_code == 200


@pytest.mark.parametrize("base", ["http://evil.example", "http://evil.example:8000", "http://192.168.1.5:8000",
                                  "http://testserver"])  # no exemption for the in-process test client's host
def test_foreign_host_refused(guarded_app, base):
    client = TestClient(guarded_app, base_url=base)
    for r in (client.get("/"), client.get("/api/info"), client.post("/api/sample", json={"n": 1})):
        assert r.status_code == 403, r.text
        assert "not allowed" in r.json()["error"]


def test_allowed_hosts_extends(runs):
    app = create_app(runs["ae"], max_points=50, allowed_hosts=["192.168.1.5"])
    assert TestClient(app, base_url="http://192.168.1.5:8000").get("/api/info").status_code == 200
    assert TestClient(app, base_url="http://127.0.0.1:8000").get("/api/info").status_code == 200
    assert TestClient(app, base_url="http://evil.example").get("/api/info").status_code == 403


def test_foreign_origin_refused(guarded_app):
    client = TestClient(guarded_app, base_url="http://127.0.0.1:8000")
    evil = {"Origin": "http://evil.example"}
    r = client.post("/api/sample", json={"n": 1}, headers=evil)
    assert r.status_code == 403 and "cross-origin" in r.json()["error"]
    assert client.get("/api/info", headers=evil).status_code == 403
    assert client.get("/api/info", headers={"Origin": "null"}).status_code == 403
    assert client.get("/", headers=evil).status_code == 200  # the page itself is not state-changing
    same = {"Origin": "http://127.0.0.1:8000"}
    assert client.post("/api/sample", json={"n": 1}, headers=same).status_code == 200
    assert client.post("/api/sample", json={"n": 1}).status_code == 200  # no Origin: curl, same-origin GET


def test_serve_allows_its_non_loopback_host(runs, monkeypatch):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    r = CliRunner().invoke(__import__("vaelab.cli", fromlist=["app"]).app,
                           ["serve", str(runs["ae"]), "--host", "10.1.2.3", "--max-points", "20"])
    assert r.exit_code == 0, r.output
    assert seen["proxy_headers"] is False
    client = TestClient(seen["app"], base_url="http://10.1.2.3:8000")
    assert client.get("/api/info").status_code == 200
    assert TestClient(seen["app"], base_url="http://evil.example").get("/api/info").status_code == 403


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_model_opens_in_the_explorer(name: str, tmp_path, test_set) -> None:
    """No special cases: each model (random init, small) answers info, encode, decode, sample, interpolate and
    likelihood, or refuses the likelihood when it has none with a 4xx that says so."""
    torch.manual_seed(0)
    model = build_model(name, **contract_params(name))
    run = rundir.save_model(tmp_path / name, model, data=info_dict(test_set.info))
    client = TestClient(create_app(run), base_url=LOCAL)
    info = client.get("/api/info")
    assert info.status_code == 200 and info.json()["latent_dim"] == model.latent_dim, info.text
    y = {"y": 1} if model.n_classes else {}
    enc = client.post("/api/encode", json={"index": 0})
    assert enc.status_code == 200, enc.text
    dec = client.post("/api/decode", json={"z": [0.0] * model.latent_dim, **y})
    assert dec.status_code == 200 and dec.json()["shape"] == [1, 8, 8] and "image" in dec.json(), dec.text
    inter = client.post("/api/interpolate", json={"i": 0, "j": 1, "steps": 3})
    assert inter.status_code == 200, inter.text
    sample = client.post("/api/sample", json={"n": 2, **y})  # an ae decodes N(0, I) codes (it has no prior)
    assert sample.status_code == 200 and len(sample.json()["images"]) == 2, sample.text
    x = test_set.x[0].flatten().tolist()                                       # Dataset.x: float32 in [0, 1]
    lik = client.post("/api/likelihood", json={"x": x, "k": 4, **({"y": int(test_set.y[0])} if y else {})})
    if model.has_likelihood:
        assert lik.status_code == 200, lik.text
    else:
        assert 400 <= lik.status_code < 500 and "likelihood" in lik.text, lik.text
