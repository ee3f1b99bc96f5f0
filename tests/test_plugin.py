"""A model from outside vaelab (tests/plugins/learned_prior_vae.py) through every surface: train (in-process
and a real ``vaelab`` process, whose --plugin pre-scan must add the plugin's options), eval, plot, report,
the web API, the estimator and ``vaelab.load`` in a fresh process (the plugin re-imported from config.json)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

PLUGINS = Path(__file__).resolve().parent / "plugins"
PLUGIN, NAME = "learned_prior_vae", "learned-prior-vae"
ENV = {"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}
FAST = ["--data", "digits", "--latent-dim", "2", "--hidden", "16", "--epochs", "2", "--batch-size", "64",
        "--no-progress", "--device", "cpu"]


def child_env() -> dict[str, str]:
    """Environment of a child process that can import the plugin (and vaelab, as this process does)."""
    path = os.pathsep.join([str(PLUGINS), *[p for p in sys.path if p]])
    return {**os.environ, **ENV, "PYTHONPATH": path, "VAELAB_PLUGINS": ""}


@pytest.fixture(scope="module")
def cli():
    """The typer app with the plugin loaded (what ``vaelab.cli.main`` does before running a command)."""
    sys.path.insert(0, str(PLUGINS))
    from vaelab.cli import app, use_plugins

    use_plugins([PLUGIN])

    def invoke(*args):
        return CliRunner().invoke(app, [str(a) for a in args], env=ENV)

    yield invoke
    sys.path.remove(str(PLUGINS))


@pytest.fixture(scope="module")
def run(cli, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plugin") / "run"
    r = cli("train", "--plugin", PLUGIN, "--model", NAME, *FAST, "--prior-scale-init", "0.5", "--out", out)
    assert r.exit_code == 0, r.output
    assert f"trained {NAME} on digits" in r.output
    return out


def test_train_help_lists_the_plugin_options_with_their_comments(cli):
    r = cli("train", "--help")
    assert r.exit_code == 0, r.output
    assert "--prior-scale-init" in r.output and "initial scale s of the learned prior" in r.output
    assert "models: learned-prior-vae" in r.output
    assert NAME in r.output                                   # listed among the registered models


def test_config_records_the_plugin_and_its_fields(run):
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"] == NAME and cfg["plugins"] == [PLUGIN]
    assert cfg["model_config"]["prior_scale_init"] == 0.5 and cfg["model_config"]["hidden"] == [16]


def test_learned_prior_is_trained_and_used(run):
    import torch
    import vaelab

    model = vaelab.load(run)
    assert type(model).__name__ == "LearnedPriorVAE" and not model.capabilities.standard_prior
    assert not torch.allclose(model.prior_log_scale.exp(), torch.full((2,), 0.5))  # it moved in training
    x = torch.rand(4, 1, 8, 8)
    q, p = model.encode(x), model.prior(4)
    _, kl = model.elbo_parts(x)
    ref = torch.distributions.kl_divergence(q, p)            # (4,) closed form vs the learned prior
    torch.testing.assert_close(kl.sum(-1), ref)


@pytest.mark.parametrize("bad,needle", [("no_such_plugin_module", "No module named"),
                                        ("../evil", "not a dotted module name")])
def test_unknown_plugin_is_a_one_line_error(cli, tmp_path, bad, needle):
    r = cli("train", "--plugin", bad, "--model", NAME, *FAST, "--out", tmp_path / "x")
    assert r.exit_code == 2, r.output
    assert f"error: plugin={bad!r} cannot be imported" in r.output and needle in r.output
    assert "Traceback" not in r.output


def test_plugin_option_given_to_another_model_is_an_error(cli, tmp_path):
    r = cli("train", "--model", "vae", *FAST, "--prior-scale-init", "2", "--out", tmp_path / "x")
    assert r.exit_code == 2, r.output
    assert "['prior_scale_init']" in r.output and "do not apply to model 'vae'" in r.output


def test_eval_plot_report_on_the_plugin_run(cli, run, tmp_path):
    from vaelab.viz.plots import KINDS

    r = cli("eval", run, "--iw-samples", "4", "--max-examples", "40", "--no-fd", "--no-progress", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert (run / "eval.json").exists() or "nll" in r.output.lower(), r.output
    for kind in KINDS:
        out = tmp_path / f"{kind}.png"
        r = cli("plot", run, "--kind", kind, "--out", out)
        assert r.exit_code == 0, (kind, r.output)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", kind
    r = cli("report", run, "--out", tmp_path / "report.html")
    assert r.exit_code == 0, r.output
    assert NAME in (tmp_path / "report.html").read_text()


def test_web_api_on_the_plugin_run(cli, run):
    from fastapi.testclient import TestClient
    from vaelab.web import create_app

    client = TestClient(create_app(run, max_points=100), base_url="http://127.0.0.1")
    info = client.get("/api/info").json()
    assert info["model"] == NAME and info["latent_dim"] == 2 and info["input_shape"] == [1, 8, 8]
    out = client.post("/api/sample", json={"n": 3, "temperature": 1.0}).json()
    assert len(out["images"]) == 3
    out = client.post("/api/decode", json={"z": [0.0, 0.0]}).json()
    assert out["shape"] == [1, 8, 8]


def test_estimator_for_the_plugin_model(cli):
    import inspect

    from sklearn.base import clone
    from sklearn.datasets import load_digits

    import vaelab.api

    X = load_digits().data[:300] / 16.0
    cls = vaelab.api.estimator(NAME)
    assert "prior_scale_init" in inspect.signature(cls).parameters and "beta" in inspect.signature(cls).parameters
    est = cls(latent_dim=2, hidden=(16,), epochs=2, batch_size=64, device="cpu")
    assert clone(est).get_params() == est.get_params()
    assert est.fit(X) is est
    assert np.isfinite(est.score(X)) and est.transform(X[:5]).shape == (5, 2)
    assert vaelab.api.estimator(NAME) is cls


def test_real_process_prescans_plugin_and_load_reimports_it(tmp_path):
    """``vaelab train --plugin=X`` in a new process (the pre-scan must add --prior-scale-init before typer
    parses), then ``vaelab.load`` in another fresh process that never names the plugin."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "vaelab", "train", f"--plugin={PLUGIN}", "--model", NAME, *FAST,
           "--epochs", "1", "--prior-scale-init", "0.25", "--out", str(out)]
    proc = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((out / "config.json").read_text())["plugins"] == [PLUGIN]
    code = ("import sys, vaelab; m = vaelab.load(sys.argv[1]); "
            "print(m.name, type(m).__module__, m.config.prior_scale_init, tuple(m.sample(2).shape))")
    proc = subprocess.run([sys.executable, "-c", code, str(out)], env=child_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [NAME, PLUGIN, "0.25", "(2,", "1,", "8,", "8)"]


def test_plugin_names_from_argv_and_environment(monkeypatch):
    from vaelab.cli import plugin_args
    from vaelab.models import plugins

    assert plugin_args(["train", "--plugin", "a.b", "--plugin=c", "--model", "x"]) == ["a.b", "c"]
    monkeypatch.setattr(plugins, "_LOADED", [])  # leave the session's record of loaded plugins alone
    monkeypatch.setenv(plugins.ENV_VAR, " json , os.path ")
    assert plugins.env_plugins() == ["json", "os.path"]
    assert plugins.discover()[:2] == ["json", "os.path"]
    with pytest.raises(ValueError, match=r"plugin='/tmp/x.py' cannot be imported: not a dotted module name"):
        plugins.load_plugins(["/tmp/x.py"])
