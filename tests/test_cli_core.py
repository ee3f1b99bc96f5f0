"""Smoke runs of the core CLI commands (train, sample, reconstruct, demo, --help, --version, --resume) in-process;
the lazy command table; one line per epoch without a bar; "did you mean"; serve on a busy port."""
from __future__ import annotations

import inspect
import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import vaelab
from vaelab import rundir
from conftest import assert_cli_error
from vaelab.cli import COMMANDS, app, load_command

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
    return sorted(COMMANDS)


def test_help_lists_every_command():
    r = invoke("--help")
    assert r.exit_code == 0, r.output
    names = command_names()
    assert {"train", "sample", "reconstruct", "demo", "plot", "report", "serve", "eval"} <= set(names)
    for name in names:
        assert name in r.output, f"{name} missing from --help"


@pytest.mark.parametrize("name", command_names())
def test_command_table_matches_the_real_commands(name):
    """--help lists COMMANDS without importing the modules: each entry is the real command's first paragraph."""
    real = load_command(name)
    assert real.name == name
    first = inspect.cleandoc(real.help or "").split("\n\n")[0]
    assert " ".join(first.split()) == COMMANDS[name][1]
    registered = {(c.name or c.callback.__name__).replace("_", "-") for c in app.registered_commands}
    assert registered <= set(COMMANDS), registered - set(COMMANDS)  # no command missing from the table


def test_version():
    r = invoke("--version")
    assert r.exit_code == 0 and r.output.strip() == f"vaelab {vaelab.__version__}"


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["trian"]])
def test_help_version_and_unknown_commands_do_not_import_torch(args):
    code = ("import sys; sys.argv = ['vaelab', *sys.argv[1:]]\nfrom vaelab.cli import main\ntry:\n    main()\n"
            "except SystemExit as e:\n    code = e.code\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"})
    last = proc.stdout.strip().splitlines()[-1]
    assert last.split()[0] == "NO-TORCH", proc.stdout + proc.stderr
    if args == ["trian"]:
        assert last.split()[1] == "2" and "Did you mean 'train'?" in proc.stderr, proc.stderr


def test_mistyped_names_get_a_suggestion(tmp_path):
    r = invoke("train", "--model", "vea", "--epochs", "1", "--no-progress", "--out", tmp_path / "run")
    assert r.exit_code == 2 and "model='vea' is not known" in r.output and "(did you mean 'vae'?)" in r.output
    r = invoke("train", "--data", "digts", "--epochs", "1", "--no-progress", "--out", tmp_path / "run")
    assert r.exit_code == 2 and "(did you mean 'digits'?)" in r.output, r.output
    r = invoke("train", "--likelihood", "bernouli", "--epochs", "1", "--no-progress", "--out", tmp_path / "run")
    assert r.exit_code == 2 and "(did you mean 'bernoulli'?)" in r.output, r.output
    r = invoke("trian")
    assert r.exit_code == 2 and "Did you mean 'train'?" in r.output, r.output


@pytest.mark.parametrize("args, needles", [
    (["train", "--epoch", "5"], ["No such option: --epoch", "--epochs", "train --help"]),
    (["train", "--epochs", "x"], ["'--epochs'", "valid integer", "(got 'x')"]),
    (["sample", "--n", "4"], ["No such option: --n", "sample --help"]),
    (["eval"], ["Missing argument 'run'", "eval --help"]),
    (["trian"], ["No such command 'trian'", "Did you mean 'train'?"]),
])
def test_usage_errors_are_one_error_line(args, needles):
    """Unknown options, unparsable values and missing arguments: one `error:` line naming them and the
    command's --help, exit code 2, no usage box, no traceback."""
    r = invoke(*args)
    assert_cli_error(r, *needles)
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    assert "╭" not in r.output and "Usage:" not in r.output


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


EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+)  train elbo (\S+) kl (\S+)  val elbo (\S+) kl (\S+)  (\d+) examples/s$")


def test_no_progress_prints_one_line_per_epoch(tmp_path):
    run = tmp_path / "vae"
    r = invoke("train", "--model", "vae", *FAST, "--epochs", "3", "--hidden", "16", "--out", run)
    assert r.exit_code == 0, r.output
    lines = [m for m in map(EPOCH_LINE.match, r.output.splitlines()) if m]
    assert [(int(m[1]), int(m[2])) for m in lines] == [(1, 3), (2, 3), (3, 3)], r.output
    for m, row in zip(lines, rundir.read_metrics(run)):  # the printed numbers are the metrics rows
        assert float(m[3]) == pytest.approx(row["elbo"], rel=1e-3) and float(m[4]) == pytest.approx(row["kl"], rel=1e-3)
        assert float(m[5]) == pytest.approx(row["val_elbo"], rel=1e-3)
        assert float(m[6]) == pytest.approx(row["val_kl"], rel=1e-3)
        assert int(m[7]) == round(row["examples_per_s"])


def test_the_progress_bar_names_the_epoch(digits, capsys):
    from vaelab.models import build_model
    from vaelab.train import TrainConfig, fit

    train, _ = digits
    model = build_model("vae", input_shape=(1, 8, 8), latent_dim=2, hidden=(8,))
    fit(model, train.subset(torch.arange(256)), cfg=TrainConfig(epochs=2, batch_size=128, progress=True, device="cpu"))
    err = capsys.readouterr().err
    assert "vae epoch 1/2" in err and "vae epoch 2/2" in err, err


def test_serve_on_a_busy_port_says_so_before_any_url(digits_runs):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = invoke("serve", digits_runs["vae"], "--port", port)
    assert r.exit_code == 2, r.output
    assert f"error: port {port} on 127.0.0.1 is in use" in r.output
    assert "http://" not in r.output and "Traceback" not in r.output


def test_sample_writes_a_png_grid(digits_runs, tmp_path):
    out = tmp_path / "s.png"
    r = invoke("sample", digits_runs["vae"], "-n", "9", "--out", out, "--temperature", "0.7")
    assert r.exit_code == 0, r.output
    w, h = assert_png(out)
    from vaelab.viz.plots import upscale_for

    assert w == h == upscale_for((1, 8, 8)) * (3 * 9 + 1)  # 3x3 grid of 8x8 digits, 1-px padding, upscaled


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
def test_reconstruct_is_plot_kind_recon(digits_runs, tmp_path, model):
    """`reconstruct` is the short form of `plot --kind recon`: the same picture, pixel for pixel."""
    out, same = tmp_path / "r.png", tmp_path / "p.png"
    r = invoke("reconstruct", digits_runs[model], "-n", "5", "--out", out)
    assert r.exit_code == 0, r.output
    w, h = assert_png(out)
    assert w > h                                                       # a strip: 5 originals over 5 reconstructions
    assert invoke("plot", digits_runs[model], "--kind", "recon", "-n", "5", "--out", same).exit_code == 0
    with Image.open(out) as a, Image.open(same) as b:
        assert a.tobytes() == b.tobytes()


def test_demo_writes_metrics_and_pictures(tmp_path):
    out = tmp_path / "demo"
    r = invoke("demo", "--out", out, "--epochs-scale", "0.02", "--no-progress")
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "metrics.json").read_text())
    quality = metrics.pop("sample_quality")
    story, contrast = ["pca", "ae", "vae", "vaegan"], ["ae-16", "vae-16"]
    assert set(metrics) == set(story + contrast)
    for name in metrics:
        assert metrics[name]["recon_mse"] > 0
    assert {"elbo", "recon", "kl", "log_likelihood"} <= set(metrics["pca"])
    assert {"elbo", "recon", "kl"} <= set(metrics["vae"])
    assert "elbo" not in metrics["ae"] and "elbo" not in metrics["vaegan"], "no ELBO without a likelihood"
    # exact PPCA log-likelihood >= its ELBO estimate, up to the one-sample noise
    assert metrics["pca"]["log_likelihood"] > metrics["pca"]["elbo"] - 1.0
    # the sampling act: every trained model's samples (and the ae's through a fitted GMM) scored
    assert [q["name"] for q in quality] == ["ae", "ae + gmm", "vae", "vaegan", "ae-16", "vae-16"]
    assert [q["source"] for q in quality] == ["N(0, I)", "gmm", "prior", "prior", "N(0, I)", "prior"]
    assert all(0 <= q["precision"] <= 1 and 0 <= q["recall"] <= 1 and q["frechet_distance"] >= 0 for q in quality)
    pngs = [f"latent_{m}.png" for m in story] + [f"recon_{m}.png" for m in story] + \
        [f"samples_{m}.png" for m in story[1:] + contrast]
    for f in pngs:
        assert_png(out / f)
    for name in metrics:
        assert rundir.load(out / name).name == name.split("-")[0]
    page = (out / "report.html").read_text()
    assert "Sampling, measured" in page and "VAE vs VAE-GAN" in page and "16 latent dimensions" in page


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


@pytest.mark.parametrize("run,extra", [("vae", []), ("cvae", ["--label", "3"]), ("ae", ["--sampler", "gmm"])])
def test_sample_is_plot_kind_samples(digits_runs, tmp_path, run, extra):
    """One way to draw samples: `vaelab sample` is the short form of `vaelab plot --kind samples`."""
    import numpy as np
    from PIL import Image

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    src = tmp_path / run
    shutil.copytree(digits_runs[run], src)  # a sampler is fitted into the run folder
    assert invoke("sample", src, "-n", "9", "--seed", "3", "--out", a, *extra).exit_code == 0
    r = invoke("plot", src, "--kind", "samples", "-n", "9", "--seed", "3", "--out", b, *extra)
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_ctrl_c_is_aborted_not_a_traceback(monkeypatch, tmp_path):
    """Ctrl-C in a command: exit code 130 (128 + SIGINT), no traceback."""
    import vaelab.cli.core as core

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(core, "train_run", interrupted)
    r = invoke("train", *FAST, "--out", tmp_path / "run")
    assert r.exit_code == 130 and isinstance(r.exception, SystemExit), (r.output, r.exception)
    assert "Traceback" not in r.output
