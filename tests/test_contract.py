"""One contract suite run over EVERY registered model (collected from vaelab.models.REGISTRY).

A model registered later (e.g. 'hvae') is covered automatically: it is built from
``conftest.contract_params`` (its Config defaults plus small sizes) on the 8x8 digits.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Distribution

import vaelab
from conftest import BUILT_BATCH as B, contract_params
from vaelab import objectives, rundir
from vaelab.config import from_dict, to_dict
from vaelab.models import REGISTRY, build_model, config_fields, model_class
from vaelab.objectives import ObjectiveConfig
from vaelab.train import TrainConfig, fit

MODELS = sorted(REGISTRY)


def test_registry_has_the_core_models():
    assert {"pca", "ae", "vae", "cvae"} <= set(REGISTRY)


def test_encode_returns_distribution_with_latent_shapes(built):
    model, x, y = built
    q = model.encode(x, y)
    assert isinstance(q, Distribution)
    assert tuple(q.batch_shape) == (B,)
    assert tuple(q.event_shape) == (model.latent_dim,)
    assert q.mean.shape == (B, model.latent_dim)
    assert torch.isfinite(q.rsample()).all()


def test_decode_returns_distribution_with_input_shapes(built):
    model, x, y = built
    z = torch.randn(B, model.latent_dim)
    p = model.decode(z, y)
    assert isinstance(p, Distribution)
    assert tuple(p.batch_shape) == (B,)
    assert tuple(p.event_shape) == model.input_shape
    lp = p.log_prob(x)
    assert lp.shape == (B,) and torch.isfinite(lp).all()


def test_elbo_parts_and_loss_are_finite(built):
    model, x, y = built
    recon, kl = model.elbo_parts(x, y)
    assert recon.shape == (B,) and kl.dim() == 2 and kl.shape[0] == B
    assert torch.isfinite(recon).all() and torch.isfinite(kl).all()
    if model.capabilities.closed_form_kl:
        assert (kl >= -1e-5).all(), "KL per group must be non-negative"
    else:  # a one-sample rate log q - log p may be negative; its mean over draws (the KL) may not
        n = 500
        with torch.no_grad():
            _, rate = model.elbo_parts(x.repeat(n, *[1] * (x.dim() - 1)), None if y is None else y.repeat(n))
        rate = rate.sum(-1).reshape(n, B)                                    # (draws, B)
        assert (rate.mean(0) >= -4 * rate.std(0) / math.sqrt(n) - 1e-5).all(), "KL must be non-negative"
    terms = objectives.compute(model, x, y, ObjectiveConfig())
    assert terms.loss.dim() == 0 and torch.isfinite(terms.loss)
    assert torch.allclose(terms.elbo, terms.recon - terms.kl)
    if model.has_likelihood:
        iw = objectives.compute(model, x, y, ObjectiveConfig(kind="iwae", k=3))
        assert torch.isfinite(iw.loss) and iw.elbo.shape == (B,)


def test_log_weights_shape(built):
    model, x, y = built
    if not model.has_likelihood:
        with pytest.raises(ValueError, match="no likelihood"):
            model.log_weights(x, y, k=2)
        return
    lw = model.log_weights(x, y, k=4)
    assert lw.shape == (4, B) and torch.isfinite(lw).all()


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sample_shapes(built, temperature):
    model, _, _ = built
    y = 3 if model.n_classes else None
    s = model.sample(5, y=y, temperature=temperature)
    assert s.shape == (5, *model.input_shape) and torch.isfinite(s).all()


def test_sample_rejects_bad_arguments(built):
    model, _, _ = built
    with pytest.raises(ValueError, match="temperature=0"):
        model.sample(2, temperature=0)
    with pytest.raises(ValueError, match="n=0"):
        model.sample(0)


def test_temperature_shrinks_the_spread_of_prior_codes(built):
    """Samples at a low temperature decode codes nearer 0: they vary less than at temperature 1."""
    model, _, _ = built
    y = 1 if model.n_classes else None
    torch.manual_seed(0)
    hot = model.sample(200, y=y, temperature=1.0).flatten(1)
    torch.manual_seed(0)
    cold = model.sample(200, y=y, temperature=1e-3).flatten(1)
    assert cold.var(0).sum() < hot.var(0).sum()


def test_reconstruct_shapes_flat_and_image(built):
    model, x, y = built
    r = model.reconstruct(x, y)
    assert r.shape == x.shape and torch.isfinite(r).all()
    assert torch.allclose(model.reconstruct(x.reshape(B, -1), y), r, atol=1e-6)


def test_save_load_round_trip_gives_equal_outputs(built, tmp_path):
    model, x, y = built
    rundir.save_model(tmp_path / "run", model)
    loaded = vaelab.load(tmp_path / "run")
    assert type(loaded) is type(model) and loaded.config == model.config
    assert not loaded.training
    torch.testing.assert_close(loaded.encode(x, y).mean, model.encode(x, y).mean, rtol=0, atol=0)
    z = torch.randn(B, model.latent_dim)
    torch.testing.assert_close(loaded.decode(z, y).mean, model.decode(z, y).mean, rtol=0, atol=0)
    if model.has_likelihood:
        torch.manual_seed(7)
        a = model.log_weights(x, y, k=3)
        torch.manual_seed(7)
        b = loaded.log_weights(x, y, k=3)
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_conditional_models_need_y(built):
    model, x, y = built
    if not model.conditional:
        assert model.n_classes == 0
        return
    with pytest.raises(ValueError, match="conditional"):
        model.encode(x)
    with pytest.raises(ValueError, match=rf"allowed: 0\.\.{model.n_classes - 1}"):
        model.encode(x, torch.full((B,), model.n_classes))
    # different labels give different decodings of the same code
    z = torch.zeros(2, model.latent_dim)
    out = model.decode(z, torch.tensor([0, 1])).mean
    assert not torch.allclose(out[0], out[1])


def test_fit_runs_a_couple_of_epochs(built, digits):
    model, _, _ = built
    train, test = digits
    small = train.subset(torch.arange(256))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = fit(model, small, test.subset(torch.arange(100)),
                  cfg=TrainConfig(epochs=2, batch_size=64, progress=False, device="cpu"))
    assert len(history) == (2 if model.trainable else 1)
    for row in history:
        assert all(math.isfinite(v) for v in row.values() if isinstance(v, float))
    changed = any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert changed, "fit must change the model's parameters"
    if model.trainable:
        assert history[-1]["skipped_steps"] == 0
        assert "val_mse" in history[-1]


@pytest.mark.parametrize("name", MODELS)
@settings(max_examples=25, deadline=None)
@given(latent=st.integers(1, 64), hidden=st.lists(st.integers(1, 512), min_size=1, max_size=3),
       shape=st.sampled_from([(1, 8, 8), (3, 16, 16), (5,)]))
def test_config_json_round_trip(name, latent, hidden, shape):
    """config -> JSON text -> config is the identity (tuples survive as tuples)."""
    params = contract_params(name, input_shape=shape)
    fields = config_fields(name)
    if "latent_dim" in fields:
        params["latent_dim"] = latent
    if "hidden" in fields:
        params["hidden"] = tuple(hidden)
    if name == "pca" and latent > math.prod(shape):  # the config itself rejects it (__post_init__)
        with pytest.raises(ValueError, match="must be <= the data dimension"):
            from_dict(model_class(name).Config, params)
        return
    cfg = from_dict(model_class(name).Config, params)
    back = from_dict(model_class(name).Config, json.loads(json.dumps(to_dict(cfg))))
    assert back == cfg and hash(back) == hash(cfg)


def test_unknown_config_key_is_rejected():
    with pytest.raises(ValueError, match=r"unknown VAEConfig field\(s\) \['latnt_dim'\]; allowed: .*'latent_dim'"):
        build_model("vae", input_shape=(1, 8, 8), latnt_dim=2)
