"""The hierarchical VAE: parity with the VAE at T=1, per-layer KL, bounds, sampling, training, CLI."""
from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from conftest import quiet_env
from vaelab import rundir
from vaelab.cli import app
from vaelab.models import build_model
from vaelab.objectives import ObjectiveConfig, log_mean_exp
from vaelab.train import TrainConfig, fit, score

SHAPE = (1, 8, 8)
INFERENCES = ["top-down", "bottom-up"]


def small_hvae(inference: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    params = dict(input_shape=SHAPE, latent_dims=(6, 4, 2), hidden=((32,), (16,), (16,)), inference=inference)
    return build_model("hvae", **{**params, **kw}).eval()


def repeat(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, ...) -> (n * B, ...): n independent copies of every example, example-major."""
    return x.repeat_interleave(n, 0)


# -- parity with the VAE at T = 1 -------------------------------------------------------------------------
def test_one_layer_bottom_up_hvae_is_the_vae_on_the_same_weights(digits):
    x = digits[1].x[:16]
    torch.manual_seed(0)
    vae = build_model("vae", input_shape=SHAPE, latent_dim=3, hidden=(32, 16), activation="tanh")
    hv = build_model("hvae", input_shape=SHAPE, latent_dims=(3,), hidden=(32, 16), activation="tanh",
                     inference="bottom-up")
    hv.load_state_dict(vae.state_dict())  # the same module names: a strict 1:1 map
    for seed in (1, 2):
        torch.manual_seed(seed)
        recon_v, kl_v = vae.elbo_parts(x)
        torch.manual_seed(seed)
        recon_h, kl_h = hv.elbo_parts(x)
        torch.testing.assert_close(recon_h, recon_v, rtol=0, atol=1e-5)
        assert kl_h.shape == (16, 1)
        torch.testing.assert_close(kl_h[:, 0], kl_v.sum(-1), rtol=0, atol=1e-5)
        torch.manual_seed(seed)
        lw_v = vae.log_weights(x, k=7)
        torch.manual_seed(seed)
        lw_h = hv.log_weights(x, k=7)
        torch.testing.assert_close(lw_h, lw_v, rtol=0, atol=1e-5)
    torch.testing.assert_close(hv.encode(x).mean, vae.encode(x).mean, rtol=0, atol=0)


def test_one_layer_top_down_hvae_is_the_vae_with_renamed_weights(digits):
    """At T=1 the ladder's bottom-up path + head is the VAE's encoder MLP split in two."""
    x = digits[1].x[:16]
    torch.manual_seed(0)
    vae = build_model("vae", input_shape=SHAPE, latent_dim=3, hidden=(32, 16))
    hv = build_model("hvae", input_shape=SHAPE, latent_dims=(3,), hidden=(32, 16), inference="top-down")
    renames = {"encoder.head.0.": "up.0.0.", "encoder.head.2.": "up.0.2.", "encoder.head.4.": "q_heads.0."}
    state = {}
    for key, value in vae.state_dict().items():
        for old, new in renames.items():
            key = key.replace(old, new)
        state[key] = value
    hv.load_state_dict(state)
    torch.manual_seed(3)
    recon_v, kl_v = vae.elbo_parts(x)
    torch.manual_seed(3)
    recon_h, kl_h = hv.elbo_parts(x)
    torch.testing.assert_close(recon_h, recon_v, rtol=0, atol=1e-5)
    torch.testing.assert_close(kl_h[:, 0], kl_v.sum(-1), rtol=0, atol=1e-5)


# -- per-layer KL, bounds, prior ---------------------------------------------------------------------------
@pytest.mark.parametrize("inference", INFERENCES)
def test_kl_per_layer_sums_to_the_total_kl(inference, digits):
    """Mean over many draws: sum of the per-layer KLs = E_q[log q(z_1..T|x) - log p(z_1..T)]."""
    model = small_hvae(inference)
    n, x = 2000, digits[1].x[:3]
    with torch.no_grad():
        torch.manual_seed(0)
        _, kl = model.elbo_parts(repeat(x, n))                      # (3n, T)
        torch.manual_seed(1)
        recon, rate = model.log_weight_parts(x, k=n)               # (n, 3), (n, 3, T)
    assert kl.shape == (3 * n, 3) and rate.shape == (n, 3, 3)
    if inference == "top-down":
        assert (kl >= -1e-5).all(), "closed-form conditional KLs are non-negative"
    per_layer = kl.sum(-1).reshape(3, n)                           # (3, n)
    total = rate.sum(-1).T                                         # (3, n) log q - log p of the whole chain
    se = (per_layer.var(1) / n + total.var(1) / n).sqrt()
    assert ((per_layer.mean(1) - total.mean(1)).abs() < 4 * se + 1e-3).all()
    # and the layers themselves agree one by one with the Monte Carlo rate of that layer
    se_l = (kl.reshape(3, n, 3).var(1) / n + rate.transpose(0, 1).var(1) / n).sqrt()
    assert ((kl.reshape(3, n, 3).mean(1) - rate.mean(0)).abs() < 4 * se_l + 1e-3).all()


def test_top_down_posterior_is_the_precision_weighted_product():
    mu_h, lv_h, mu_p, lv_p = torch.randn(4, 3, 5).unbind(0)
    mu, lv = small_hvae("top-down")._combine((mu_h, lv_h), (mu_p, lv_p))
    prec_h, prec_p = (-lv_h).exp(), (-lv_p).exp()
    torch.testing.assert_close(lv.exp(), 1 / (prec_h + prec_p))
    torch.testing.assert_close(mu, (mu_h * prec_h + mu_p * prec_p) / (prec_h + prec_p))


@pytest.mark.parametrize("inference", INFERENCES)
def test_prior_log_prob_is_the_chain_the_posterior_is_scored_against(inference, digits):
    model = small_hvae(inference)
    x = digits[1].x[:5]
    with torch.no_grad():
        chain = model._chain(x, 2)
        z = torch.cat([zi for zi, _, _ in chain], -1)              # (2, 5, 12)
        by_layer = sum(p.log_prob(zi) for zi, _, p in chain)       # (2, 5)
        torch.testing.assert_close(model.prior(5).log_prob(z), by_layer, rtol=0, atol=1e-4)
        recon, rate = model.log_weight_parts(x, k=4)
        torch.testing.assert_close(model.log_weights(x, k=4).shape, recon.shape)


@pytest.mark.parametrize("inference", INFERENCES)
def test_importance_weighted_bound_is_above_the_elbo_on_average(inference, digits):
    model = small_hvae(inference)
    x = digits[1].x[:20]
    with torch.no_grad():
        torch.manual_seed(0)
        recon, kl = model.elbo_parts(repeat(x, 200))
        elbo = (recon - kl.sum(-1)).reshape(20, 200).mean(1)       # (20,) ELBO per example
        torch.manual_seed(1)
        bound_1 = log_mean_exp(model.log_weights(x, k=1), 0)
        bound_500 = log_mean_exp(model.log_weights(x, k=500), 0)    # (20,)
    assert bound_500.mean() > elbo.mean() + 0.1
    assert bound_500.mean() > bound_1.mean()


@pytest.mark.parametrize("inference", INFERENCES)
def test_sample_and_temperature(inference):
    model = small_hvae(inference)
    assert model.latent_dim == 12 and model.prior(4).event_shape == (12,)
    s = model.sample(7, temperature=0.7)
    assert s.shape == (7, *SHAPE) and ((s >= 0) & (s <= 1)).all()
    # temperature -> 0 follows the chain of prior means from z_T = 0 in every layer
    torch.manual_seed(0)
    cold = model.prior(3, temperature=1e-6).sample()
    z = torch.zeros(3, 2)
    means = [z]
    for i in (1, 0):
        means.insert(0, model.p_layer(i, means[0])[0])
    torch.testing.assert_close(cold, torch.cat(means, -1).detach(), rtol=0, atol=1e-4)
    torch.manual_seed(0)
    hot = model.prior(2000).sample()
    torch.manual_seed(0)
    warm = model.prior(2000, temperature=0.5).sample()
    assert torch.allclose(warm[:, -2:], 0.5 * hot[:, -2:])         # the top layer is scaled exactly
    assert warm[:, :6].std(0).mean() < hot[:, :6].std(0).mean()    # and so is the spread below


def test_config_errors_name_the_bad_value():
    with pytest.raises(ValueError, match=r"inference='sideways'.*allowed: \['top-down', 'bottom-up'\]"):
        build_model("hvae", input_shape=SHAPE, inference="sideways")
    with pytest.raises(ValueError, match=r"latent_dims=\(\)"):
        build_model("hvae", input_shape=SHAPE, latent_dims=())
    with pytest.raises(ValueError, match=r"hidden=.*has 2 entries; allowed: 1 \(shared\) or one per"):
        build_model("hvae", input_shape=SHAPE, latent_dims=(4, 3, 2), hidden=((8,), (8,)))
    with pytest.raises(ValueError, match="n_classes=10.*unconditional"):
        build_model("hvae", input_shape=SHAPE, n_classes=10)
    with pytest.raises(ValueError, match="z has size 3; hvae decodes"):
        build_model("hvae", input_shape=SHAPE).decode(torch.zeros(2, 3))


def test_flat_hidden_is_shared_and_config_round_trips(tmp_path):
    model = build_model("hvae", input_shape=SHAPE, latent_dims=(5, 3), hidden=(20, 10))
    assert model.config.hidden == ((20, 10),) and model.config.layer_hidden(1) == (20, 10)
    per_layer = build_model("hvae", input_shape=SHAPE, latent_dims=(5, 3), hidden=[[20, 10], [7]])
    rundir.save_model(tmp_path / "run", per_layer)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model_config"]["hidden"] == [[20, 10], [7]]
    assert rundir.load(tmp_path / "run").config == per_layer.config


# -- training ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("inference", INFERENCES)
def test_both_inference_variants_train_on_digits(inference, digits):
    train, test = digits[0].subset(torch.arange(600)), digits[1].subset(torch.arange(200))
    model = small_hvae(inference, hidden=((64,), (32,), (32,)))
    torch.manual_seed(0)
    before = score(model, test)["elbo"]
    history = fit(model, train, test, ObjectiveConfig(free_bits=0.05),
                  TrainConfig(epochs=3, batch_size=32, lr=3e-3, progress=False, device="cpu",
                              output_init=False))  # progress from the naive start these margins were set on
    losses = [row["loss"] for row in history]
    assert all(math.isfinite(v) for v in losses) and history[-1]["skipped_steps"] == 0
    assert losses[-1] < losses[0] - 2.0
    assert history[-1]["val_elbo"] > before + 5.0


def test_cli_trains_and_samples_an_hvae(tmp_path):
    runner, run = CliRunner(), tmp_path / "h"
    res = runner.invoke(app, ["train", "--model", "hvae", "--latent-dims", "6,3", "--hidden", "24",
                              "--inference", "bottom-up", "--epochs", "1", "--out", str(run), "--no-progress"],
                        env=quiet_env())
    assert res.exit_code == 0, res.output
    model = rundir.load(run)
    assert model.config.latent_dims == (6, 3) and model.config.hidden == ((24,),)
    assert model.config.inference == "bottom-up"
    res = runner.invoke(app, ["train", "--model", "hvae", "--inference", "sideways", "--epochs", "1",
                              "--out", str(tmp_path / "bad"), "--no-progress"], env=quiet_env())
    assert res.exit_code == 2 and "inference='sideways'" in res.output and "bottom-up" in res.output
    res = runner.invoke(app, ["sample", str(run), "-n", "8", "--temperature", "0.5",
                              "--out", str(tmp_path / "s.png")], env=quiet_env())
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s.png").stat().st_size > 0
    res = runner.invoke(app, ["train", "--model", "vae", "--latent-dims", "6,3", "--epochs", "1",
                              "--out", str(tmp_path / "v"), "--no-progress"], env=quiet_env())
    assert res.exit_code == 2 and "latent_dims" in res.output and "do not apply to model 'vae'" in res.output
