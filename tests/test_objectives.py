"""Objectives over vae, cvae and hvae: IWAE(k=1) = ELBO, beta / warm-up / free bits, training with iwae."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import contract_params
from vaelab import objectives
from vaelab.models import build_model
from vaelab.models.vae import VAEConfig, VariationalAE
from vaelab.objectives import ObjectiveConfig, log_mean_exp
from vaelab.train import TrainConfig, fit

SHAPE = (1, 8, 8)
MODELS = {  # name -> constructor arguments (n_classes for the cvae)
    "vae": dict(input_shape=SHAPE, latent_dim=3, hidden=(32,)),
    "cvae": dict(input_shape=SHAPE, latent_dim=3, hidden=(32,), n_classes=10),
    "hvae-top-down": dict(input_shape=SHAPE, latent_dims=(4, 2), hidden=(32,), inference="top-down"),
    "hvae-bottom-up": dict(input_shape=SHAPE, latent_dims=(4, 2), hidden=(32,), inference="bottom-up"),
}


def make(key: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(key.split("-")[0], **MODELS[key]).eval()


def data(model, digits, n: int):
    x, y = digits[1].x[:n], digits[1].y[:n]
    return x, (y if model.n_classes else None)


@pytest.mark.parametrize("key", list(MODELS))
def test_iwae_with_one_sample_is_the_elbo(key, digits):
    model = make(key)
    x, y = data(model, digits, 4)
    # same seed: the same z, so the same reconstruction term; the bound is the one-sample ELBO estimate
    torch.manual_seed(5)
    iw = objectives.iwae(model, x, y, k=1)
    torch.manual_seed(5)
    el = objectives.elbo(model, x, y)
    torch.testing.assert_close(iw.recon, el.recon, rtol=0, atol=1e-5)
    torch.manual_seed(5)
    torch.testing.assert_close(iw.elbo, model.log_weights(x, y, k=1)[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(iw.loss, -iw.elbo.mean())
    # in expectation the two estimates of the same bound agree (iwae's KL is Monte Carlo, the ELBO's closed form)
    n = 1000
    xr, yr = x.repeat_interleave(n, 0), None if y is None else y.repeat_interleave(n, 0)
    with torch.no_grad():
        a = objectives.iwae(model, xr, yr, k=1).elbo.reshape(4, n)
        b = objectives.elbo(model, xr, yr).elbo.reshape(4, n)
    se = (a.var(1) / n + b.var(1) / n).sqrt()
    assert ((a.mean(1) - b.mean(1)).abs() < 4 * se + 1e-3).all()


def test_generic_log_weight_parts_match_a_direct_computation(digits):
    """The base model's one log_weight_parts: log p(x|z) and log q - log p per dimension, with the
    noise drawn from the caller's generator (the same generator seed gives the same z)."""
    model = make("vae")
    x, _ = data(model, digits, 5)
    with torch.no_grad():
        recon, rate = model.log_weight_parts(x, None, 6, generator=torch.Generator().manual_seed(2))
        q = model.encode(x)
        eps = torch.randn((6, 5, 3), generator=torch.Generator().manual_seed(2))
        z = q.mean + q.stddev * eps                                    # (6, 5, 3)
        px = model.decode(z.reshape(-1, 3))
        lw = px.log_prob(x.repeat(6, 1, 1, 1)).reshape(6, 5) + model.prior(5).log_prob(z) - q.log_prob(z)
    assert recon.shape == (6, 5) and rate.shape == (6, 5, 3)  # one group per latent dimension
    torch.testing.assert_close(recon - rate.sum(-1), lw, rtol=0, atol=1e-4)
    torch.testing.assert_close(model.log_weights(x, None, 6, generator=torch.Generator().manual_seed(2)), lw,
                               rtol=0, atol=1e-4)


@pytest.mark.parametrize("key", ["vae", "hvae-top-down"])
def test_iwae_warmup_beta_and_free_bits_temper_the_log_weights(key, digits):
    model = make(key)
    x, y = data(model, digits, 32)
    cfg = ObjectiveConfig(kind="iwae", k=5, warmup=2.0)

    def parts(seed):
        torch.manual_seed(seed)
        return model.log_weight_parts(x, y, 5)

    recon, rate = parts(0)
    torch.manual_seed(0)
    start = objectives.compute(model, x, y, cfg, epoch=0.0)        # KL weight 0
    torch.testing.assert_close(start.loss, -log_mean_exp(recon, 0).mean())
    torch.testing.assert_close(start.elbo, log_mean_exp(recon - rate.sum(-1), 0))  # reported at beta = 1
    torch.manual_seed(0)
    half = objectives.compute(model, x, y, cfg, epoch=1.0)         # KL weight 0.5
    torch.testing.assert_close(half.loss, -log_mean_exp(recon - 0.5 * rate.sum(-1), 0).mean())
    torch.manual_seed(0)
    done = objectives.compute(model, x, y, cfg, epoch=5.0)
    torch.testing.assert_close(done.loss, -start.elbo.mean())
    # free bits: a group whose batch-mean rate is under the threshold is not penalised
    mean_rate = rate.detach().mean((0, 1))                         # (G,)
    cut = 0.999 * float(mean_rate.max())
    assert cut > 0
    torch.manual_seed(0)
    fb = objectives.compute(model, x, y, ObjectiveConfig(kind="iwae", k=5, free_bits=cut))
    keep = (mean_rate >= cut).float()
    assert 0 < keep.sum() < len(keep)
    torch.testing.assert_close(fb.loss, -log_mean_exp(recon - (rate * keep).sum(-1), 0).mean())


def test_elbo_free_bits_act_per_layer_for_the_hvae(digits):
    model = make("hvae-top-down")
    x, _ = data(model, digits, 16)
    torch.manual_seed(0)
    recon, kl = model.elbo_parts(x)                                # (B,), (B, T)
    assert kl.shape == (16, 2)
    lam = float(kl.detach().mean(0).max()) + 1.0                            # above every layer's mean KL
    torch.manual_seed(0)
    terms = objectives.elbo(model, x, free_bits=lam)
    torch.testing.assert_close(terms.loss, -recon.mean() + 2 * lam)
    torch.testing.assert_close(terms.kl_groups, kl)
    torch.testing.assert_close(terms.elbo, recon - kl.sum(-1))     # the reported bound is untouched


def test_a_prior_that_does_not_factorise_is_one_latent_group(digits):
    """A model whose prior is not a product over dimensions (here N(0, I) as a MultivariateNormal) gets
    one rate group; its log-weights equal the factorised model's, and beta tempers the one group."""
    class FullPrior(VariationalAE):
        def prior(self, n):
            d = self.latent_dim
            return torch.distributions.MultivariateNormal(torch.zeros(n, d), scale_tril=torch.eye(d))

    torch.manual_seed(0)
    model = FullPrior(VAEConfig(input_shape=SHAPE, latent_dim=2, hidden=(16,)))
    plain = VariationalAE(model.config)
    plain.load_state_dict(model.state_dict())
    x = digits[1].x[:4]
    with torch.no_grad():
        recon, rate = model.log_weight_parts(x, None, 3, generator=torch.Generator().manual_seed(1))
        recon_p, rate_p = plain.log_weight_parts(x, None, 3, generator=torch.Generator().manual_seed(1))
    assert rate.shape == (3, 4, 1) and rate_p.shape == (3, 4, 2)
    torch.testing.assert_close(recon - rate.sum(-1), recon_p - rate_p.sum(-1), rtol=0, atol=1e-4)
    torch.manual_seed(5)
    half = objectives.iwae(model, x, None, k=3, beta=0.5)
    torch.manual_seed(5)
    recon, rate = model.log_weight_parts(x, None, 3)
    torch.testing.assert_close(half.loss, -log_mean_exp(recon - 0.5 * rate.sum(-1), 0).mean())


def test_autoencoder_has_no_iwae(digits):
    model = build_model("ae", **contract_params("ae"))
    with pytest.raises(ValueError, match="no likelihood"):
        objectives.iwae(model, digits[1].x[:2], None, k=2)


@pytest.mark.parametrize("key", ["vae", "cvae"])
def test_vae_and_cvae_train_with_iwae_free_bits_and_warmup(key, digits):
    model = make(key)
    train, test = digits[0].subset(torch.arange(400)), digits[1].subset(torch.arange(100))
    history = fit(model, train, test, ObjectiveConfig(kind="iwae", k=5, free_bits=0.1, warmup=1.0),
                  TrainConfig(epochs=4, batch_size=32, lr=3e-3, progress=False, device="cpu",
                              output_init=False))  # progress from the naive start these margins were set on
    losses = [row["loss"] for row in history]
    assert all(math.isfinite(v) for v in losses) and history[-1]["skipped_steps"] == 0
    assert losses[-1] < losses[1] - 1.0                            # after warm-up (epoch 1 on) it falls
    assert history[-1]["val_elbo"] > history[0]["val_elbo"]
