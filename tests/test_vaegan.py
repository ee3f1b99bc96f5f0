"""VAE-GAN (Larsen et al. 2016): each player gets the gradient of its own loss only, gamma scales the
decoder's reconstruction gradient and nothing else, it trains on digits, and the CLI round trip works."""
from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import cli, contract_params
from vaelab import objectives
from vaelab.models import build_model

PARTS = ("encoder", "decoder", "discriminator")


@pytest.fixture
def gan():
    torch.manual_seed(0)
    return build_model("vaegan", **contract_params("vaegan"), gamma=0.3)


def grads_by_part(model, loss: torch.Tensor) -> dict[str, float]:
    """Sum of |grad| over each part's parameters after backward of ``loss`` (0 when none reached it)."""
    model.zero_grad(set_to_none=True)
    loss.backward()
    out = dict.fromkeys(PARTS, 0.0)
    for name, p in model.named_parameters():
        if p.grad is not None:
            out[name.split(".")[0]] += float(p.grad.abs().sum())
    return out


def test_each_player_gets_only_its_own_gradient(gan, digits):
    x = digits[0].x[:32]
    recon, kl = gan.elbo_parts(x)
    g = grads_by_part(gan, -recon.mean() + kl.sum(-1).mean())
    assert g["encoder"] > 0 and g["decoder"] > 0 and g["discriminator"] == 0  # Dis_l frozen in L_llike
    extra = gan.extra_losses(x)
    assert set(extra) == {"gan_generator", "gan_discriminator"}
    g = grads_by_part(gan, extra["gan_generator"])
    assert g["decoder"] > 0 and g["discriminator"] == 0 and g["encoder"] == 0
    g = grads_by_part(gan, gan.extra_losses(x)["gan_discriminator"])
    assert g["discriminator"] > 0 and g["decoder"] == 0 and g["encoder"] == 0


def test_gamma_scales_the_decoders_reconstruction_gradient_only(gan, digits):
    """gamma = 0.3 vs gamma = 1 on the same weights and noise: same loss value, the decoder's gradient from the
    reconstruction times 0.3, the encoder's unchanged."""
    x = digits[0].x[:16]
    one = build_model("vaegan", **{**contract_params("vaegan"), "gamma": 1.0})
    one.load_state_dict(gan.state_dict())
    got = {}
    for m in (gan, one):
        torch.manual_seed(5)
        recon, _ = m.elbo_parts(x)
        m.zero_grad(set_to_none=True)
        (-recon.mean()).backward()
        got[m.config.gamma] = (recon.detach(), {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None})
    (r3, g3), (r1, g1) = got[0.3], got[1.0]
    assert torch.equal(r3, r1) and g3.keys() == g1.keys()
    for k in g1:
        expect = 0.3 * g1[k] if k.startswith("decoder") else g1[k]
        torch.testing.assert_close(g3[k], expect, rtol=1e-5, atol=1e-7)


def test_trains_a_few_steps_on_digits_with_finite_loss_and_samples_in_the_data_range(gan, digits):
    train = digits[0]
    opt = torch.optim.Adam(gan.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in gan.state_dict().items()}
    for step in range(5):
        t = objectives.compute(gan, train.x[64 * step:64 * (step + 1)], None, objectives.ObjectiveConfig())
        assert torch.isfinite(t.loss) and set(t.extra) == {"gan_generator", "gan_discriminator"}
        opt.zero_grad(set_to_none=True)
        t.loss.backward()
        opt.step()
    assert all(not torch.equal(before[k], v) for k, v in gan.state_dict().items() if k.startswith("discriminator"))
    s = gan.sample(50)
    assert s.shape == (50, 1, 8, 8) and float(s.min()) >= 0 and float(s.max()) <= 1  # digits are in [0, 1]


def test_no_likelihood_is_claimed(gan, digits):
    assert not gan.has_likelihood and gan.has_prior and gan.likelihood_name is None
    with pytest.raises(ValueError, match="no likelihood"):
        gan.log_weights(digits[1].x[:4], k=2)


@pytest.mark.parametrize("bad,needle", [({"gamma": -1.0}, "gamma=-1.0 must be"), ({"feature_sigma": 0.0}, "feature_sigma=0.0"),
                                        ({"output": "tanh"}, "output='tanh' is not known"),
                                        ({"disc_hidden": (0,)}, "disc_hidden=(0,)"), ({"disc_features": 0}, "disc_features=0")])
def test_config_rejects_bad_values(bad, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        build_model("vaegan", input_shape=(1, 8, 8), **bad)


def test_conv_body_builds_and_runs(digits):
    m = build_model("vaegan", input_shape=(1, 8, 8), arch="conv", hidden=(16,), disc_hidden=(16,), disc_features=32)
    t = objectives.compute(m, digits[0].x[:8], None, objectives.ObjectiveConfig())
    assert torch.isfinite(t.loss) and m.sample(3).shape == (3, 1, 8, 8)


def test_cli_train_eval_plot_round_trip(tmp_path):
    run = tmp_path / "gan"
    r = cli("train", "--model", "vaegan", "--data", "digits", "--epochs", "1", "--latent-dim", "2", "--hidden", "32",
            "--disc-hidden", "32", "--disc-features", "32", "--no-progress", "--out", run)
    assert r.exit_code == 0, r.output
    assert json.loads((run / "config.json").read_text())["model"] == "vaegan"
    r = cli("eval", run, "--max-examples", "60", "--cache-dir", tmp_path / "cache", "--no-progress")
    assert r.exit_code == 0, r.output
    out = json.loads((run / "eval.json").read_text())
    assert out["nll"] is None and out["elbo"] is None and out["recon_mse"] > 0
    assert out["frechet_distance"] > 0 and 0 <= out["precision"] <= 1 and 0 <= out["recall"] <= 1
    assert out["pr_k"] == 3 and out["quality_n"] == 60 and math.isfinite(out["sharpness_ratio"])
    r = cli("plot", run, "--kind", "samples", "--out", tmp_path / "s.png")
    assert r.exit_code == 0 and (tmp_path / "s.png").stat().st_size > 0, r.output
