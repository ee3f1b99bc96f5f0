"""Shared fixtures for the vaelab test suite.

Fixtures other test files may use:

- ``digits`` (session): ``(train, test)`` :class:`vaelab.data.Dataset` of scikit-learn's 8x8 digits.
- ``digits_runs`` (session): ``dict`` model name -> run folder :class:`~pathlib.Path` holding a trained
  ``'pca'``, ``'ae'``, ``'vae'`` and ``'cvae'`` on digits (latent_dim 2, hidden (32,), a few epochs,
  validation fraction 0.1). Each folder has ``config.json``, ``model.safetensors``, ``metrics.jsonl``
  (and ``trainer.pt`` for the trainable models), exactly as ``vaelab train --out RUN`` writes them.
  Treat these folders as READ-ONLY (they are shared by every test); copy one with
  ``shutil.copytree`` into ``tmp_path`` before modifying it.
- ``mnist_dir`` (session): the data dir holding ``mnist/`` (``$VAELAB_DATA_DIR`` or ../shared/data);
  skips when the files are absent, fails when ``CI == "true"``.
- ``chromium`` (module): a Playwright browser on Debian's /usr/bin/chromium (headless, no network
  side traffic); skips when chromium or playwright is absent, fails when ``CI == "true"``.

The suite runs torch and BLAS on ONE thread (``torch.set_num_threads(1)``, ``threadpool_limits(1)``
below): every array here is tiny, and on a shared 2-core machine a second thread only spins against
other processes (measured under load: a full-batch linear-AE fit ~100 s -> ~5 s; a digits
LogisticRegression + CVAE test 12 s -> 2 s).

vaelab's cache root (``$XDG_CACHE_HOME/vaelab``: feature nets, the commands' option specs) is a fresh
temporary folder for the session, set below before anything runs: tests never write the user's ~/.cache.

Helpers (import with ``from conftest import ...``): ``contract_params(name)`` builds the small
constructor arguments the contract suite uses for any registered model.
"""
from __future__ import annotations

import atexit
import dataclasses
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from threadpoolctl import threadpool_limits

os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="vaelab-test-cache-")  # children inherit it
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)

from vaelab.data import Dataset, load_dataset
from vaelab.models import REGISTRY, build_model, config_fields, load_plugins, model_class

# The test-only plugin model (tests/plugins/) is registered for the whole session, so every suite that runs
# over the registry (contract, capabilities, bad input, plots) covers a model from outside the package too.
sys.path.insert(0, str(Path(__file__).resolve().parent / "plugins"))
load_plugins(["learned_prior_vae"])

torch.set_num_threads(1)
threadpool_limits(1)  # the same for numpy / scipy / scikit-learn BLAS (OpenBLAS spins too)

DIGITS_SHAPE = (1, 8, 8)
DIGITS_CLASSES = 10
MNIST_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

# Extra constructor arguments a model needs beyond the generic small sizes below; a registered
# model missing from this table is built from its Config defaults (plus input_shape, n_classes).
MODEL_KWARGS: dict[str, dict[str, Any]] = {
    "ae": {"hidden": (32,)},
    "vae": {"hidden": (32,)},
    "cvae": {"hidden": (32,)},
    "hvae": {"latent_dims": (4, 2), "hidden": ((32,),)},
    "vamp": {"hidden": (32,), "n_pseudo": 10},
    "iaf": {"hidden": (32,), "flow_hidden": (16,), "context_dim": 8},
    "iaf-cvae": {"hidden": (32,), "flow_hidden": (16,), "context_dim": 8},
    "vqvae": {"arch": "mlp", "hidden": (32,), "n_codes": 2, "code_dim": 2, "codebook_size": 8,
              "prior_channels": 8, "prior_layers": 2},
    "vaegan": {"hidden": (32,), "disc_hidden": (32,), "disc_features": 16},
}

# Settings of the shared trained runs: (model options, epochs)
DIGITS_RUNS: dict[str, tuple[dict[str, Any], int]] = {
    "pca": ({"latent_dim": 2}, 1),
    "ae": ({"latent_dim": 2, "hidden": (32,)}, 4),
    "vae": ({"latent_dim": 2, "hidden": (32,)}, 4),
    "cvae": ({"latent_dim": 2, "hidden": (32,)}, 4),
}


def contract_params(name: str, input_shape: tuple[int, ...] = DIGITS_SHAPE,
                    n_classes: int = DIGITS_CLASSES) -> dict[str, Any]:
    """Small constructor arguments for registered model ``name`` on data of ``input_shape``.

    input_shape always; latent_dim=2 when the model has that field and no required value of its own;
    n_classes for conditional models; then the model's row of MODEL_KWARGS (keys it lacks are dropped).
    """
    cls = model_class(name)
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    params: dict[str, Any] = {"input_shape": tuple(input_shape)}
    if "latent_dim" in fields:
        params["latent_dim"] = 2
    if cls.conditional and "n_classes" in fields:
        params["n_classes"] = n_classes
    params.update(MODEL_KWARGS.get(name, {}))
    return {k: v for k, v in params.items() if k in config_fields(name)}


def quiet_env() -> dict[str, str]:
    """Environment for CliRunner: no colours, no progress noise."""
    return {"NO_COLOR": "1", "TERM": "dumb"}


CLI_ENV = {"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}


def cli(*args, env: dict[str, str] | None = None):
    """Run ``vaelab ARGS`` in-process (typer's CliRunner) with a quiet, wide terminal."""
    from typer.testing import CliRunner

    from vaelab.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], env={**CLI_ENV, **(env or {})})


def assert_cli_error(r, *needles: str) -> None:
    """One ``error:`` line, exit code 2, no traceback, and every needle in the output."""
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert "error: " in r.output and "Traceback" not in r.output, r.output
    for needle in needles:
        assert needle in r.output, (needle, r.output)


@pytest.fixture(scope="session")
def digits() -> tuple[Dataset, Dataset]:
    """(train, test) splits of the embedded 8x8 digits, x in [0, 1], shape (N, 1, 8, 8)."""
    return load_dataset("digits", "train"), load_dataset("digits", "test")


@pytest.fixture(scope="session")
def digits_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Trained run folders on digits: {'pca', 'ae', 'vae', 'cvae'} -> Path (read-only, shared)."""
    from vaelab.train.run import train_run
    from vaelab.train import TrainConfig

    root = tmp_path_factory.mktemp("digits_runs")
    runs: dict[str, Path] = {}
    torch.manual_seed(0)
    for name, (options, epochs) in DIGITS_RUNS.items():
        cfg = TrainConfig(epochs=epochs, batch_size=64, lr=2e-3, seed=0, device="cpu", progress=False)
        train_run(name, "digits", root / name, options, cfg, val_fraction=0.1)
        runs[name] = root / name
    return runs


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder holding mnist/ with the four IDX files (skip when absent; fail on CI)."""
    env = os.environ.get("VAELAB_DATA_DIR")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    missing = [n for n in MNIST_NAMES if not (root / "mnist" / n).is_file()]
    if missing:
        _unavailable(f"MNIST not available in {root / 'mnist'} (missing {', '.join(missing)})")
    return root


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def _unavailable(msg: str) -> None:
    """A missing test prerequisite: a failure on CI (it must never pass by skipping), else a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def chromium():
    """Headless Debian chromium driven by Playwright (no browser download)."""
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright python package is missing")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()



BUILT_BATCH = 6


@pytest.fixture(params=sorted(REGISTRY))
def built(request, digits):
    """Every registered model in turn: (model, x (6, 1, 8, 8), y (6,) or None), fitted in closed form
    when it must be (the contract and capability suites run over this)."""
    name = request.param
    torch.manual_seed(0)
    model = build_model(name, **contract_params(name))
    train, test = digits
    if not model.capabilities.trainable:
        model.fit_closed_form(train.x)
    x, y = test.x[:BUILT_BATCH], test.y[:BUILT_BATCH]
    return model.eval(), x, (y if model.capabilities.needs_labels else None)


def quadrature_log_px(model, x: torch.Tensor, lim: float = 7.0, n: int = 281) -> torch.Tensor:
    """log p(x) = log int p(x|z) p(z) dz on an n x n grid over [-lim, lim]^2 for a model with a 2-D code
    (for a hierarchy, p(z) is its whole chain, ``model.prior(1).log_prob``): (B,)."""
    t = torch.linspace(-lim, lim, n, dtype=torch.float64)
    z = torch.cartesian_prod(t, t)                                            # (G, 2)
    log_pz = model.prior(1).log_prob(z)                                       # (G,)
    px = model.decode(z)
    log_px_z = torch.stack([px.log_prob(xi.expand(len(z), *xi.shape)) for xi in x])  # (B, G)
    return torch.logsumexp(log_px_z + log_pz, -1) + 2 * math.log(float(t[1] - t[0]))


def check_bounds_against_quadrature(model, x: torch.Tensor, exact: torch.Tensor, k: int,
                                    elbo_draws: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The importance-sampled log p(x) (k samples) within 0.02 + 4 se of the quadrature value ``exact``, and
    ELBO <= IWAE-50 <= log p(x) per example (within 4 se). Returns the IWAE-50 - ELBO gap and its se (B,)."""
    from vaelab import objectives
    from vaelab.eval.likelihood import log_likelihood_estimate

    with torch.no_grad():
        est = log_likelihood_estimate(model, x, None, k=k, seed=1)
        iwae = torch.stack([objectives.iwae(model, x, k=50).elbo for _ in range(20)])       # (draws, B)
        elbo = torch.stack([objectives.elbo(model, x).elbo for _ in range(elbo_draws)])     # (draws, B)
    assert ((est.log_px - exact).abs() < 0.02 + 4 * est.se).all()
    se = (elbo.var(0) / len(elbo) + iwae.var(0) / len(iwae)).sqrt()
    gap = iwae.mean(0) - elbo.mean(0)                                          # ELBO <= IWAE-50 <= log p(x)
    assert (gap >= -4 * se).all()
    assert (iwae.mean(0) <= exact + 4 * iwae.std(0) / math.sqrt(len(iwae))).all()
    return gap, se
