"""The hvae with a VampPrior on top (hvae-vamp): the top prior against its definition, the chain prior, the
sampled top-layer KL, log p(x) by importance sampling against 2-D quadrature, and ELBO <= IWAE on a trained
model (the contract and capability suites cover the rest through the registry)."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import check_bounds_against_quadrature, quadrature_log_px

from vaelab import objectives
from vaelab.distributions import diag_gaussian
from vaelab.models import build_model
from vaelab.train import TrainConfig, fit

SHAPE = (1, 8, 8)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def small(seed: int = 0, **kw):
    torch.manual_seed(seed)
    params = {"input_shape": SHAPE, "latent_dims": (4, 3), "hidden": ((32,),), "n_pseudo": 7}
    return build_model("hvae-vamp", **{**params, **kw})


def trained(digits, epochs: int = 4, **kw):
    model = small(**kw)
    fit(model, digits[0], cfg=TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, progress=False, device="cpu", seed=0,
                                          output_init=False))  # the model whose ELBO gap these checks were sized on
    return model.eval()


def test_top_prior_is_the_log_mean_exp_of_the_pseudo_input_top_posteriors():
    model = small().eval()
    with torch.no_grad():
        model.pseudo.uniform_(-0.5, 1.5)                                     # hardtanh must clip to [0, 1]
        u = model.pseudo_inputs()
        assert u.min() >= 0 and u.max() <= 1 and u.shape == (7, *SHAPE)
        z = 2 * torch.randn(4, 5, 3, generator=_gen(0))                      # (k, n, d_T)
        # q(z_T | u_i) from the ladder's bottom-up pass, one pseudo-input at a time
        direct = torch.stack([diag_gaussian(*model._bottom_up(u[i:i + 1])[-1]).log_prob(z) for i in range(7)])
        expect = torch.logsumexp(direct, 0) - math.log(7)                    # (k, n)
        got = model.top_prior(5).log_prob(z)
        # temperature t: every component's std times t
        t = 0.6
        direct_t = torch.stack([diag_gaussian(mu, lv + 2 * math.log(t)).log_prob(z) for mu, lv in
                                (model._bottom_up(u[i:i + 1])[-1] for i in range(7))])
        got_t = model.top_prior(5, t).log_prob(z)
    assert got.shape == (4, 5)
    torch.testing.assert_close(got, expect, rtol=0, atol=1e-5)
    torch.testing.assert_close(got_t, torch.logsumexp(direct_t, 0) - math.log(7), rtol=0, atol=1e-5)


def test_chain_prior_is_the_vamp_top_times_the_conditionals():
    model = small().eval()
    with torch.no_grad():
        z = model.prior(6).rsample(generator=_gen(1))                        # (6, 7) = [z1 (4), z2 (3)]
        z1, z2 = z.split([4, 3], -1)
        expect = model.top_prior(6).log_prob(z2) + diag_gaussian(*model.p_layer(0, z2)).log_prob(z1)
        torch.testing.assert_close(model.prior(6).log_prob(z), expect, rtol=0, atol=1e-5)


def test_top_layer_kl_is_sampled_and_agrees_with_the_log_weights(digits):
    """elbo_parts' layers (closed form below, single-sample rate on top) average to E_q[log q - log p]."""
    model = small().double().eval()
    x = digits[1].x[:4].double()
    with torch.no_grad():
        parts = [model.elbo_parts(x, generator=_gen(s)) for s in range(400)]
        recon = torch.stack([r for r, _ in parts])                            # (draws, B)
        kl = torch.stack([k for _, k in parts])                               # (draws, B, 2)
        lw_recon, rate = model.log_weight_parts(x, k=4000, generator=_gen(999))
    top = kl[..., 1]
    assert top.std(0).min() > 0                                               # sampled, not closed form
    for ours, ref in ((kl.sum(-1), rate.sum(-1)), (recon, lw_recon), (top, rate[..., 1])):
        se = (ours.var(0) / len(ours) + ref.var(0) / len(ref)).sqrt()
        assert ((ours.mean(0) - ref.mean(0)).abs() <= 4 * se + 1e-6).all()
    se_top = top.std(0) / math.sqrt(len(top))
    assert (top.mean(0) >= -4 * se_top).all()                                 # a KL is >= 0 on average


def test_pseudo_inputs_receive_gradients():
    model = small()
    x = torch.rand(8, *SHAPE).bernoulli()
    objectives.elbo(model, x).loss.backward()
    assert model.pseudo.grad is not None and model.pseudo.grad.abs().sum() > 0


def test_importance_sampling_matches_quadrature_and_the_elbo_is_below(digits):
    model = trained(digits, latent_dims=(1, 1), n_pseudo=20).double()
    x = digits[1].x[:6].double()
    with torch.no_grad():
        exact = quadrature_log_px(model, x, lim=7.0, n=281)
    gap, se = check_bounds_against_quadrature(model, x, exact, k=4000, elbo_draws=400)
    assert gap.mean() > 4 * se.square().sum().sqrt() / len(se)                # the ELBO is strictly below


@pytest.mark.parametrize("bad, match", [({"n_pseudo": 0}, "n_pseudo=0"), ({"n_pseudo": 10 ** 6}, "1..65536"),
                                        ({"inference": "bottom-up"}, "allowed: 'top-down'")])
def test_config_rejects(bad, match):
    with pytest.raises(ValueError, match=match):
        build_model("hvae-vamp", input_shape=SHAPE, **bad)
