"""vaelab.evaluate / vaelab.features / ``vaelab eval``: each test checks one property of the numbers."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import contract_params
from typer.testing import CliRunner

from vaelab.eval import features as feats
from vaelab.cli import app
from vaelab.data import load_dataset
from vaelab.eval.evaluate import (active_units, batch_log_weights, evaluate, example_noise, iwae_curve,
                             log_likelihood, posterior_stats, probe_accuracy)
from vaelab.models import REGISTRY, build_model
from vaelab.train import TrainConfig, fit


@pytest.fixture(scope="module")
def binary_digits():
    """Statically binarized digits: a Bernoulli VAE has a proper discrete likelihood on them."""
    return load_dataset("digits", "train", binarize="static"), load_dataset("digits", "test", binarize="static")


@pytest.fixture(scope="module")
def bvae(binary_digits):
    """A small Bernoulli VAE (64 -> 64 -> 4) trained briefly on binarized digits."""
    torch.manual_seed(0)
    model = build_model("vae", input_shape=(1, 8, 8), latent_dim=4, hidden=(64,))
    fit(model, binary_digits[0], None, cfg=TrainConfig(epochs=15, batch_size=128, lr=3e-3, device="cpu",
                                                       progress=False))
    return model.eval()


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory) -> Path:
    """One feature-net cache for the module (FD test and CLI test share the digits net)."""
    return tmp_path_factory.mktemp("feature_cache")


def test_iwae_curve_increases_with_k(bvae, binary_digits):
    curve = iwae_curve(bvae, binary_digits[1].x, ks=(1, 4, 16, 64))
    values = [curve[k] for k in (1, 4, 16, 64)]
    assert all(a < b for a, b in zip(values, values[1:])), values
    assert values[-1] < 0


def test_elbo_below_iwae_below_zero_for_bernoulli(bvae, binary_digits):
    ll, elbo = log_likelihood(bvae, binary_digits[1].x, k=100)
    assert (elbo <= ll + 1e-9).all()          # Jensen on the same samples, per example
    assert float(ll.max()) < 0                # log p(x) of binary pixels is a log-probability
    assert float(ll.mean()) - float(elbo.mean()) > 0.01  # the bound is strictly tighter on average


def test_fast_path_matches_torch_distributions(bvae, binary_digits):
    x = binary_digits[1].x[:6]
    index, k = torch.arange(6), 9
    fast = torch.cat(list(batch_log_weights(bvae, x, None, index, k, chunk=4)), 1)  # (6, 9)
    with torch.no_grad():
        q = bvae.encode(x)
        z = q.mean.unsqueeze(1) + q.stddev.unsqueeze(1) * example_noise(index, k, 4)  # (6, 9, 4)
        zk = z.transpose(0, 1)                                                        # (9, 6, 4)
        ref = (bvae.decode(zk.reshape(-1, 4)).log_prob(x.repeat(k, 1, 1, 1)).reshape(k, 6)
               + bvae.prior(6).log_prob(zk) - q.log_prob(zk)).T
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-5)


def test_chunked_threaded_nll_equals_unchunked(bvae, binary_digits):
    x = binary_digits[1].x[:40]
    threads = torch.get_num_threads()
    one, _ = log_likelihood(bvae, x, k=300, batch_size=40, chunk=300, seed=3, workers=1)
    many, _ = log_likelihood(bvae, x, k=300, batch_size=3, chunk=7, seed=3, workers=3)
    other, _ = log_likelihood(bvae, x, k=300, batch_size=40, chunk=300, seed=4)
    assert torch.get_num_threads() == threads  # the worker pool restores torch's thread count
    torch.testing.assert_close(one, many, atol=1e-4, rtol=1e-6)
    assert not torch.allclose(one, other, atol=1e-4)  # the seed does change the samples


def test_ppca_importance_sampling_equals_exact(digits):
    train, test = digits
    pca = build_model("pca", input_shape=(1, 8, 8), latent_dim=8).fit_closed_form(train.x)
    out = evaluate(pca, test, None, iw_samples=5, dequantize=False)  # the density itself, not a bound
    assert out["nll_method"] == "exact" and out["scale"] == "density" and out["nll_se"] == 0
    assert out["nll"] == out["nll_exact"]
    assert abs(out["nll_iw"] - out["nll_exact"]) < 1e-3 * max(1.0, abs(out["nll_exact"]))
    ll, _ = log_likelihood(pca, test.x, k=5)
    torch.testing.assert_close(ll.float(), pca.log_prob(test.x), atol=2e-3, rtol=1e-5)


def test_collapsed_dimension_is_inactive(bvae, binary_digits):
    test = binary_digits[1]
    n_before, var_before = active_units(posterior_stats(bvae, test)["means"])
    u = int(np.argmax(var_before))
    assert var_before[u] > 0.01
    collapsed = copy.deepcopy(bvae)
    last = [m for m in collapsed.encoder.head if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight[u] = 0.0   # output u is mu_u: now a constant, whatever x is
        last.bias[u] = 0.7
    n_after, var_after = active_units(posterior_stats(collapsed, test)["means"])
    assert n_after == n_before - 1
    assert var_after[u] < 1e-12


def test_probe_accuracy_above_chance(bvae, binary_digits):
    acc = probe_accuracy(bvae, *binary_digits)
    assert acc > 0.3  # chance is 0.1 on ten balanced classes


def test_frechet_distance_zero_for_same_set_large_for_noise(digits, feature_cache):
    train, test = digits
    net, _ = feats.feature_net(train, feature_cache)
    real = feats.features(net, test.x)
    other = feats.features(net, train.x[:360])
    noise = feats.features(net, torch.rand(360, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    same, fresh, bad = (feats.frechet_distance(real, f) for f in (real, other, noise))
    assert same < 1e-6 * max(1.0, bad)
    assert fresh < bad / 3  # other real digits are much closer than uniform noise


def test_feature_net_cache_is_reused(digits, tmp_path):
    train = digits[0].subset(torch.arange(300))
    cfg = feats.FeatureNetConfig(steps=20)
    count = feats.TRAIN_COUNT
    net1, name = feats.feature_net(train, tmp_path, cfg)
    path = tmp_path / "features" / f"{name}.safetensors"
    assert feats.TRAIN_COUNT == count + 1 and path.exists()
    assert json.loads(path.with_suffix(".json").read_text())["dataset"] == "digits"
    mtime = path.stat().st_mtime_ns
    net2, name2 = feats.feature_net(train, tmp_path, cfg)
    assert feats.TRAIN_COUNT == count + 1 and name2 == name and path.stat().st_mtime_ns == mtime
    torch.testing.assert_close(feats.features(net1, train.x[:5]), feats.features(net2, train.x[:5]))
    feats.feature_net(train, tmp_path, feats.FeatureNetConfig(steps=21))  # other settings: a new net
    assert feats.TRAIN_COUNT == count + 2


KEYS = {"model", "dataset", "n_examples", "iw_samples", "elbo", "recon", "kl", "nll", "nll_exact",
        "nll_method", "bits_per_dim", "recon_mse", "active_units", "kl_per_dim", "probe_accuracy",
        "frechet_distance", "seconds", "scale", "levels", "dequantized", "nll_se", "ess", "ess_min", "kl_estimated",
        "kl_se"}


def test_cli_eval_writes_eval_json(digits_runs, tmp_path, feature_cache):
    run = shutil.copytree(digits_runs["vae"], tmp_path / "vae")
    res = CliRunner().invoke(app, ["eval", str(run), "--iw-samples", "20", "--curve", "--curve-ks", "1,4,20",
                                   "--cache-dir", str(feature_cache), "--no-progress"])
    assert res.exit_code == 0, res.output
    out = json.loads((run / "eval.json").read_text())
    assert KEYS <= set(out) and set(out["iwae_curve"]) == {"1", "4", "20"}
    assert out["model"] == "vae" and out["n_examples"] == 360 and out["iw_samples"] == 20
    assert out["elbo"] <= -out["nll"] and abs(out["elbo"] - (out["recon"] - out["kl"])) < 1e-6
    assert out["nll_exact"] is None and out["frechet_distance"] > 0 and 0.1 < out["probe_accuracy"] <= 1
    assert out["scale"] == "cross-entropy" and out["bits_per_dim"] is None  # Bernoulli on grey levels: no bits
    assert "nll" in res.output and "eval.json" in res.output


def test_cli_eval_autoencoder_has_no_likelihood(digits_runs, tmp_path):
    run = shutil.copytree(digits_runs["ae"], tmp_path / "ae")
    res = CliRunner().invoke(app, ["eval", str(run), "--no-fd", "--no-progress", "--max-examples", "50"])
    assert res.exit_code == 0, res.output
    out = json.loads((run / "eval.json").read_text())
    assert out["nll"] is None and out["elbo"] is None and out["kl_per_dim"] is None
    assert out["recon_mse"] > 0 and out["n_examples"] == 50 and out["frechet_distance"] is None


def test_cli_eval_rejects_bad_values(digits_runs, tmp_path):
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "does not exist" in res.output
    run = shutil.copytree(digits_runs["pca"], tmp_path / "pca")
    res = CliRunner().invoke(app, ["eval", str(run), "--iw-samples", "0"])
    assert res.exit_code == 2 and "--iw-samples 0" in res.output


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_evaluate_runs_for_every_registered_model(name, digits):
    """Untrained small models: the evaluator follows the contract, not one model's internals."""
    train, test = digits
    torch.manual_seed(0)
    model = build_model(name, **contract_params(name)).eval()
    out = evaluate(model, test, train.subset(torch.arange(200)), iw_samples=4, max_examples=30, fd=False)
    assert out["n_examples"] == 30 and out["model"] == name
    if model.has_likelihood:
        assert np.isfinite(out["nll"]) and out["elbo"] <= -out["nll_iw"] + 1e-9
        assert len(out["kl_per_dim"]) >= 1 and all(np.isfinite(out["kl_per_dim"]))
    else:
        assert out["nll"] is None and out["elbo"] is None
    assert 0 <= out["active_units"] <= model.latent_dim and 0 <= out["probe_accuracy"] <= 1
