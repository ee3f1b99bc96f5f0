"""Bad input gives a clear error at the boundary: naming the bad value and the allowed ones.

CLI: exit code 2 and 'error: ...' (no traceback). Python API: ValueError (or FileNotFoundError).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import vaelab
from conftest import CLI_ENV, assert_cli_error, cli
from vaelab import rundir
from vaelab.models import REGISTRY, build_model, config_fields
from vaelab.models.vae import VariationalAE
from vaelab.train import TrainConfig, TrainingDiverged, fit

ENV = CLI_ENV


@pytest.fixture
def X() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().data[:200] / 16.0  # (200, 64) in [0, 1]


# -- NaN / Inf ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", [vaelab.PCA, vaelab.AE, vaelab.VAE])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_estimator_fit_rejects_non_finite(X, estimator, bad):
    X = X.copy()
    X[7, 3] = bad
    with pytest.raises(ValueError, match=r"NaN/Inf.*example 7.*allowed: finite"):
        estimator(latent_dim=2).fit(X)


def test_cli_rejects_npy_with_nan(tmp_path):
    a = np.random.default_rng(0).random((40, 8, 8)).astype(np.float32)
    a[5, 1, 1] = np.nan
    np.save(tmp_path / "bad.npy", a)
    r = cli("train", "--data", tmp_path / "bad.npy", "--epochs", "1", "--no-progress", "--out", tmp_path / "run")
    assert_cli_error(r, "bad.npy", "NaN")
    assert not (tmp_path / "run" / rundir.WEIGHTS).exists()


# -- shapes -------------------------------------------------------------------------------------------------
def test_loaded_model_rejects_wrong_shapes(digits_runs):
    model = vaelab.load(digits_runs["vae"])
    with pytest.raises(ValueError, match=r"3 channel\(s\); this model expects 1"):
        model.reconstruct(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"example shape \(10,\).*expects \(1, 8, 8\) or flat \(64,\)"):
        model.reconstruct(torch.rand(2, 10))
    assert model.reconstruct(torch.rand(2, 64)).shape == (2, 1, 8, 8)


def test_estimator_rejects_wrong_shapes(X):
    vae = vaelab.VAE(latent_dim=2, hidden=(16,), epochs=1).fit(X)
    with pytest.raises(ValueError, match=r"example shape \(10,\).*expects \(64,\)"):
        vae.transform(X[:, :10])
    with pytest.raises(ValueError, match=r"Z has shape \(4, 3\); expected \(n, 2\)"):
        vae.inverse_transform(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"X has shape \(64,\); allowed"):
        vae.transform(X[0])


# -- configuration values ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(n for n in REGISTRY if "latent_dim" in config_fields(n)))
@pytest.mark.parametrize("bad", [0, -1])
def test_latent_dim_below_one_is_rejected(name, bad):
    extra = {"n_classes": 10} if REGISTRY[name].conditional else {}
    with pytest.raises(ValueError, match=rf"latent_dim={bad} must be >= 1"):
        build_model(name, input_shape=(1, 8, 8), latent_dim=bad, **extra)


@pytest.mark.parametrize("bad", ["0", "-1"])
def test_cli_latent_dim_below_one(tmp_path, bad):
    r = cli("train", "--latent-dim", bad, "--epochs", "1", "--no-progress", "--out", tmp_path / "run")
    assert_cli_error(r, f"latent_dim={bad} must be >= 1")


@pytest.mark.parametrize("option,value,allowed", [
    ("--model", "nope", "'vae'"),
    ("--likelihood", "nope", "'gaussian'"),
    ("--binarize", "nope", "'dynamic'"),
    ("--arch", "nope", "'conv'"),
    ("--activation", "nope", "'tanh'"),
    ("--objective", "nope", "'iwae'"),
])
def test_cli_unknown_names(tmp_path, option, value, allowed):
    r = cli("train", option, value, "--epochs", "1", "--no-progress", "--out", tmp_path / "run")
    assert_cli_error(r, f"={value!r} is not known", "allowed", allowed)


@pytest.mark.parametrize("kwargs,needle", [
    ({"likelihood": "nope"}, "likelihood='nope' is not known; allowed"),
    ({"binarize": "nope"}, "binarize='nope' is not known; allowed"),
    ({"arch": "nope"}, "arch='nope' is not known; allowed"),
    ({"activation": "nope"}, "activation='nope' is not known; allowed"),
    ({"latent_dim": 0}, "latent_dim=0 must be >= 1"),
])
def test_estimator_unknown_names(X, kwargs, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        vaelab.VAE(epochs=1, **kwargs).fit(X)


def test_option_not_applicable_to_model(tmp_path):
    r = cli("train", "--model", "pca", "--likelihood", "gaussian", "--no-progress", "--out", tmp_path / "run")
    assert_cli_error(r, "['likelihood']", "'pca'", "latent_dim")
    r = cli("train", "--model", "vae", "--loss", "l1", "--no-progress", "--out", tmp_path / "run")
    assert_cli_error(r, "['loss']", "'vae'", "likelihood")


def test_bernoulli_needs_unit_interval_data(tmp_path):
    r = cli("train", "--data", "swiss-roll", "--likelihood", "bernoulli", "--epochs", "1", "--no-progress",
            "--out", tmp_path / "run")
    assert_cli_error(r, "likelihood='bernoulli' needs data in [0, 1]", "'swiss-roll'", "gaussian")
    from vaelab.data import load_dataset

    x = load_dataset("swiss-roll").x[:300].numpy()
    with pytest.raises(ValueError, match=r"needs data in \[0, 1\]"):
        vaelab.VAE(likelihood="bernoulli", epochs=1).fit(x)
    with pytest.raises(ValueError, match=r"binarize='dynamic' needs X in \[0, 1\]"):
        vaelab.VAE(likelihood="gaussian", binarize="dynamic", epochs=1).fit(x)


# -- run folders ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["sample", "reconstruct"])
def test_missing_run_folder(tmp_path, command):
    r = cli(command, tmp_path / "nope", "--out", tmp_path / "x.png")
    assert_cli_error(r, "nope", "does not exist")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        vaelab.load(tmp_path / "nope")


def test_folder_without_checkpoint(tmp_path):
    r = cli("sample", tmp_path, "--out", tmp_path / "x.png")
    assert_cli_error(r, "holds no checkpoint", "config.json", "model.safetensors")


@pytest.fixture
def vae_copy(digits_runs, tmp_path) -> Path:
    run = tmp_path / "vae"
    shutil.copytree(digits_runs["vae"], run)
    return run


def test_truncated_weights(vae_copy, tmp_path):
    w = vae_copy / rundir.WEIGHTS
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    assert_cli_error(cli("sample", vae_copy, "--out", tmp_path / "x.png"), "model.safetensors", "corrupted")
    with pytest.raises(ValueError, match="corrupted"):
        vaelab.load(vae_copy)


@pytest.mark.parametrize("text,needle", [
    ('{"model": ', "not valid JSON"),
    ('[1, 2]', "lacks the 'model'"),
    ('{"model": "nope", "model_config": {}}', "model='nope' is not known; allowed"),
])
def test_corrupted_config(vae_copy, tmp_path, text, needle):
    (vae_copy / rundir.CONFIG).write_text(text)
    assert_cli_error(cli("reconstruct", vae_copy, "--out", tmp_path / "x.png"), needle)


def test_config_with_unknown_field(vae_copy):
    cfg = json.loads((vae_copy / rundir.CONFIG).read_text())
    cfg["model_config"]["latnt_dim"] = 3
    (vae_copy / rundir.CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"unknown VAEConfig field\(s\) \['latnt_dim'\]; allowed"):
        vaelab.load(vae_copy)


def test_weights_that_do_not_match_the_config(vae_copy):
    cfg = json.loads((vae_copy / rundir.CONFIG).read_text())
    cfg["model_config"]["hidden"] = [17]
    (vae_copy / rundir.CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not match its config.json"):
        vaelab.load(vae_copy)


def test_resume_with_fewer_epochs_than_done(vae_copy):
    done = len(rundir.read_metrics(vae_copy))
    r = cli("train", "--model", "vae", "--epochs", "1", "--resume", "--no-progress", "--out", vae_copy)
    assert_cli_error(r, "epochs=1", f"{done} epochs", f"epochs > {done}")


def test_corrupted_trainer_state_on_resume(vae_copy):
    (vae_copy / rundir.TRAINER).write_bytes(b"not a torch file")
    r = cli("train", "--model", "vae", "--epochs", "6", "--resume", "--no-progress", "--out", vae_copy)
    assert_cli_error(r, "trainer.pt", "corrupted")


def test_mnist_absent_offline(tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    r = cli("train", "--data", "mnist", "--epochs", "1", "--no-progress", "--out", tmp_path / "run",
            env={"VAELAB_DATA_DIR": str(empty), "VAELAB_MNIST_MIRRORS": "http://127.0.0.1:1/"})
    assert_cli_error(r, str(empty / "mnist"), "train-images-idx3-ubyte.gz", "VAELAB_DATA_DIR")


def test_sample_arguments(digits_runs, tmp_path):
    assert_cli_error(cli("sample", digits_runs["vae"], "-n", "0", "--out", tmp_path / "x.png"), "n=0 must be >= 1")
    assert_cli_error(cli("sample", digits_runs["vae"], "--temperature", "0", "--out", tmp_path / "x.png"),
                     "temperature=0")
    assert_cli_error(cli("sample", digits_runs["cvae"], "--label", "10", "--out", tmp_path / "x.png"),
                     "class label 10", "allowed: 0..9")
    assert_cli_error(cli("reconstruct", digits_runs["vae"], "-n", "0", "--out", tmp_path / "x.png"),
                     "n=0 must be >= 1")


# -- training failures ----------------------------------------------------------------------------------
def test_failed_resume_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "vae"
    base = ["train", "--model", "vae", "--hidden", "16", "--latent-dim", "2", "--no-progress", "--device", "cpu",
            "--out", run]
    assert cli(*base, "--epochs", "2").exit_code == 0
    saved = {f: (run / f).read_bytes() for f in (rundir.WEIGHTS, rundir.TRAINER, rundir.METRICS)}
    r = cli(*base, "--epochs", "4", "--lr", "1e6", "--resume")
    assert_cli_error(r, "NaN/Inf", "lr", "1000000", "last good checkpoint (epoch 2) was kept")
    for f, data in saved.items():
        assert (run / f).read_bytes() == data, f"{f} was overwritten by a failed run"
    assert vaelab.load(run).sample(2).isfinite().all()


def _nan_on(monkeypatch, bad_calls: set[int]) -> list[int]:
    """Make VariationalAE.elbo_parts return NaN on the given training-call numbers (0-based)."""
    calls: list[int] = []
    original = VariationalAE.elbo_parts

    def elbo_parts(self, x, y=None):
        recon, kl = original(self, x, y)
        if self.training:
            calls.append(len(calls))
            if calls[-1] in bad_calls:
                recon = recon * float("nan")
        return recon, kl

    monkeypatch.setattr(VariationalAE, "elbo_parts", elbo_parts)
    return calls


def test_non_finite_steps_are_skipped_and_counted(monkeypatch, digits):
    train, test = digits                      # 1437 examples: 12 steps of 128 per epoch
    calls = _nan_on(monkeypatch, {2, 5, 9, 15})
    torch.manual_seed(0)
    model = build_model("vae", input_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
    history = fit(model, train, test, cfg=TrainConfig(epochs=2, batch_size=128, progress=False, device="cpu"))
    assert len(calls) == 24
    assert [r["skipped_steps"] for r in history] == [3, 4]
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["val_elbo"]) for r in history)


def test_skipped_steps_do_not_change_the_weights(monkeypatch, digits):
    train, _ = digits
    _nan_on(monkeypatch, set(range(1000)))
    model = build_model("vae", input_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TrainingDiverged, match=r"5 non-finite steps in a row at epoch 1.*lr"):
        fit(model, train, cfg=TrainConfig(epochs=1, batch_size=128, progress=False, max_bad_steps=5,
                                          output_init=False))  # no data-dependent start: only steps could change them
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# -- config.json is untrusted: random JSON in it gives exit 0 or a one-line error, never a traceback --------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 64) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)


@pytest.fixture(scope="module")
def fuzz_run(digits_runs, tmp_path_factory):
    run = tmp_path_factory.mktemp("fuzz") / "vae"
    shutil.copytree(digits_runs["vae"], run)
    return run, json.loads((run / "config.json").read_text())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(["model_config", "top", "data"]), key=st.data(), value=_JSON)
def test_random_config_values_never_traceback(fuzz_run, where, key, value):
    run, original = fuzz_run
    cfg = json.loads(json.dumps(original))
    if where == "top":  # never "plugins": that entry imports modules by design
        cfg[key.draw(st.sampled_from(["model", "model_config", "data"]))] = value
    else:
        cfg[where][key.draw(st.sampled_from(sorted(cfg[where]) + ["unknown"]))] = value
    (run / "config.json").write_text(json.dumps(cfg))
    r = cli("sample", run, "-n", "4", "--out", run / "s.png")
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code in (0, 2), (r.exit_code, r.output)
    assert "Traceback" not in r.output
    if r.exit_code == 2:
        assert "error: " in r.output, r.output


@pytest.mark.parametrize("flag", ["--beta", "--free-bits", "--warmup"])
@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_objective_rejects_nan(flag, value):
    from vaelab.objectives import ObjectiveConfig

    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        ObjectiveConfig(**{flag.lstrip("-").replace("-", "_"): float(value)})


def test_config_types_checked():
    from vaelab.config import from_dict

    cls = VariationalAE.Config
    with pytest.raises(ValueError, match=r"config.json field latent_dim='2' must be int"):
        from_dict(cls, {"input_shape": [1, 8, 8], "latent_dim": "2"})
    with pytest.raises(ValueError, match=r"latent_dim=True must be int"):
        from_dict(cls, {"input_shape": [1, 8, 8], "latent_dim": True})
    with pytest.raises(ValueError, match=r"input_shape\[2\]='8' must be int"):
        from_dict(cls, {"input_shape": [1, 8, "8"]})
    with pytest.raises(ValueError, match="must be a JSON object"):
        from_dict(cls, 5)


def test_nonfinite_weights_refused(tmp_path):
    from safetensors.torch import load_file

    from vaelab.fileio import check_finite_weights

    model = build_model("vae", input_shape=(1, 8, 8), latent_dim=2, hidden=(8,))
    run = rundir.save_model(tmp_path / "run", model)
    state = load_file(str(run / "model.safetensors"))
    check_finite_weights(state, run / "model.safetensors")  # finite: no error
    first = next(iter(state))
    state[first].view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match=rf"model.safetensors.*NaN/Inf.*{first}"):
        check_finite_weights(state, run / "model.safetensors")


def test_unexpected_errors_are_one_line(monkeypatch):
    import errno

    import typer

    from vaelab.cli.common import friendly

    def boom(exc):
        @friendly
        def cmd():
            raise exc
        return cmd

    for exc, needle in [(TypeError("odd"), "error: unexpected TypeError: odd (please report it at "
                                            "https://github.com/vaelab/vaelab/issues; rerun with VAELAB_DEBUG=1"),
                        (OSError(errno.ENOSPC, "No space left on device", "/x/eval.json"),
                         "error: cannot write '/x/eval.json': No space left on device"),
                        (IsADirectoryError(errno.EISDIR, "Is a directory", "/x"), "Is a directory"),
                        (PermissionError(errno.EACCES, "Permission denied", "/x"), "Permission denied")]:
        monkeypatch.delenv("VAELAB_DEBUG", raising=False)
        with pytest.raises(typer.Exit) as e:
            boom(exc)()
        assert e.value.exit_code == 2
        monkeypatch.setenv("VAELAB_DEBUG", "1")
        with pytest.raises(type(exc)):
            boom(exc)()
    monkeypatch.delenv("VAELAB_DEBUG")
    r = CliRunner().invoke(typer_app_for(boom(TypeError("odd"))), [], env=ENV)
    assert r.exit_code == 2 and "unexpected TypeError: odd" in r.output and "Traceback" not in r.output


def typer_app_for(cmd):
    import typer

    t = typer.Typer()
    t.command()(cmd)
    return t


# -- sizes a file may ask for: refused before anything is allocated ------------------------------------------
@pytest.mark.parametrize("y,needle", [
    (np.arange(40 * 3).reshape(40, 3) % 2, "shape (40, 3)"),
    (np.r_[np.zeros(39, int), 10 ** 6], "label 1000000"),
])
def test_cli_rejects_labels_that_are_not_class_ids(tmp_path, y, needle):
    x = np.random.default_rng(0).random((40, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    r = cli("train", "--model", "cvae", "--data", tmp_path / "d.npz", "--epochs", "1", "--no-progress",
            "--out", tmp_path / "run")
    assert_cli_error(r, "d.npz", needle)


@pytest.mark.parametrize("field,value,needle", [
    ("input_shape", [1, 100000, 100000], "too large"),
    ("hidden", [10 ** 9], "1..65536"),
    ("n_classes", 10 ** 6, "0..10000"),
])
def test_config_json_cannot_ask_for_huge_tensors(vae_copy, tmp_path, field, value, needle):
    cfg = json.loads((vae_copy / rundir.CONFIG).read_text())
    cfg["model_config"][field] = value
    (vae_copy / rundir.CONFIG).write_text(json.dumps(cfg))
    assert_cli_error(cli("plot", vae_copy, "--kind", "samples", "--out", tmp_path / "s.png"), "config.json", needle)
