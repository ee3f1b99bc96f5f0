"""Smoke runs of the core CLI commands (train, sample, reconstruct, demo, --help, --resume) in-process."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from vaelab import rundir
from vaelab.cli import app

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ENV = {"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}
FAST = ["--data", "digits", "--latent-dim", "2", "--epochs", "2", "--batch-size", "64", "--no-progress",
        "--device", "cpu"]


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], env={**ENV, **(env or {})})


def assert_png(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 0, path
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.width > 0 and im.height > 0
        return im.size


def command_names() -> list[str]:
    return sorted((c.name or c.callback.__name__).replace("_", "-") for c in app.registered_commands)


def test_help_lists_every_command():
    r = invoke("--help")
    assert r.exit_code == 0, r.output
    names = command_names()
    assert {"train", "sample", "reconstruct", "demo"} <= set(names)
    for name in names:
        assert name in r.output, f"{name} missing from --help"


@pytest.mark.parametrize("name", command_names())
def test_every_command_has_help(name):
    r = invoke(name, "--help")
    assert r.exit_code == 0, r.output
    assert "Usage" in r.output


@pytest.mark.parametrize("model,extra", [
    ("vae", ["--hidden", "32"]),
    ("ae", ["--hidden", "32", "--loss", "l1"]),
    ("pca", []),
    ("cvae", ["--hidden", "32"]),
])
def test_train_writes_a_run_folder(tmp_path, model, extra):
    run = tmp_path / model
    r = invoke("train", "--model", model, *FAST, *extra, "--out", run)
    assert r.exit_code == 0, r.output
    assert f"trained {model} on digits" in r.output
    assert ("elbo" in r.output) == (model != "ae"), r.output  # no ELBO without a likelihood
    for f in (rundir.CONFIG, rundir.WEIGHTS, rundir.METRICS):
        assert (run / f).is_file()
    cfg = json.loads((run / rundir.CONFIG).read_text())
    assert cfg["model"] == model and cfg["model_config"]["latent_dim"] == 2
    assert cfg["data"]["name"] == "digits" and cfg["data"]["shape"] == [1, 8, 8]
    rows = rundir.read_metrics(run)
    assert len(rows) == (1 if model == "pca" else 2)
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
    assert rundir.load(run).name == model


def test_sample_writes_a_png_grid(digits_runs, tmp_path):
    out = tmp_path / "s.png"
    r = invoke("sample", digits_runs["vae"], "-n", "9", "--out", out, "--temperature", "0.7")
    assert r.exit_code == 0, r.output
    w, h = assert_png(out)
    assert w == h == 2 * (3 * 9 + 1)  # 3x3 grid of 8x8 digits, 1-px padding, upscaled x2


def test_sample_label_for_cvae_and_seed_is_reproducible(digits_runs, tmp_path):
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    for out, label in ((a, "3"), (b, "3"), (c, "7")):
        r = invoke("sample", digits_runs["cvae"], "-n", "4", "--label", label, "--out", out, "--seed", "1")
        assert r.exit_code == 0, r.output
        assert_png(out)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_sample_label_needs_a_conditional_model(digits_runs, tmp_path):
    r = invoke("sample", digits_runs["vae"], "--label", "3", "--out", tmp_path / "x.png")
    assert r.exit_code == 2
    assert "--label 3" in r.output and "conditional" in r.output
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("model", ["pca", "ae", "vae", "cvae"])
def test_reconstruct_writes_two_rows(digits_runs, tmp_path, model):
    out = tmp_path / "r.png"
    r = invoke("reconstruct", digits_runs[model], "-n", "5", "--out", out)
    assert r.exit_code == 0, r.output
    w, h = assert_png(out)
    assert (w, h) == (2 * (5 * 9 + 1), 2 * (2 * 9 + 1))


def test_demo_writes_metrics_and_pictures(tmp_path):
    out = tmp_path / "demo"
    r = invoke("demo", "--out", out, "--epochs-scale", "0.02", "--no-progress")
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"pca", "ae", "vae"}
    for name in metrics:
        assert metrics[name]["recon_mse"] > 0
    assert {"elbo", "recon", "kl", "log_likelihood"} <= set(metrics["pca"])
    assert {"elbo", "recon", "kl"} <= set(metrics["vae"])
    assert "elbo" not in metrics["ae"], "an autoencoder has no ELBO"
    # exact PPCA log-likelihood >= its ELBO estimate, up to the one-sample noise
    assert metrics["pca"]["log_likelihood"] > metrics["pca"]["elbo"] - 1.0
    pngs = [f"latent_{m}.png" for m in metrics] + [f"recon_{m}.png" for m in metrics] + \
        ["samples_ae.png", "samples_vae.png"]
    for f in pngs:
        assert_png(out / f)
    for name in metrics:
        assert rundir.load(out / name).name == name


def test_resume_continues_a_run(tmp_path):
    run = tmp_path / "vae"
    base = ["train", "--model", "vae", "--data", "digits", "--latent-dim", "2", "--hidden", "16",
            "--batch-size", "128", "--no-progress", "--device", "cpu", "--out", run]
    r = invoke(*base, "--epochs", "2")
    assert r.exit_code == 0, r.output
    weights_after_2 = rundir.load(run).state_dict()
    r = invoke(*base, "--epochs", "4", "--resume")
    assert r.exit_code == 0, r.output
    rows = rundir.read_metrics(run)
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert torch.load(run / rundir.TRAINER, weights_only=True)["epoch"] == 4
    after_4 = rundir.load(run).state_dict()
    assert any(not torch.equal(weights_after_2[k], after_4[k]) for k in after_4)


def test_seed_fixes_weights_and_training(tmp_path):
    base = ["train", "--model", "vae", "--hidden", "16", "--epochs", "1", "--no-progress", "--device", "cpu"]
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        assert invoke(*base, "--seed", seed, "--out", tmp_path / name).exit_code == 0
    weights = {n: (tmp_path / n / rundir.WEIGHTS).read_bytes() for n in "abc"}
    assert weights["a"] == weights["b"]
    assert weights["a"] != weights["c"]


def test_resume_of_a_different_model_is_refused(digits_runs, tmp_path):
    run = tmp_path / "vae"
    shutil.copytree(digits_runs["vae"], run)
    r = invoke("train", "--model", "ae", "--epochs", "6", "--resume", "--no-progress", "--out", run)
    assert r.exit_code == 2
    assert "'vae'" in r.output and "'ae'" in r.output


def test_train_on_mnist_one_epoch(mnist_dir, tmp_path):
    """The full MNIST pipeline: IDX files from VAELAB_DATA_DIR, one epoch of a small VAE."""
    run = tmp_path / "mnist"
    r = invoke("train", "--model", "vae", "--data", "mnist", "--latent-dim", "2", "--hidden", "32",
               "--epochs", "1", "--batch-size", "1000", "--lr", "3e-3", "--no-progress", "--device", "cpu",
               "--out", run, env={"VAELAB_DATA_DIR": str(mnist_dir)})
    assert r.exit_code == 0, r.output
    cfg = json.loads((run / rundir.CONFIG).read_text())
    assert cfg["data"]["shape"] == [1, 28, 28] and cfg["data"]["n_classes"] == 10
    (row,) = rundir.read_metrics(run)
    assert row["val_elbo"] > -400  # well above an untrained decoder (~ -545 nats = 784 * log 2)
