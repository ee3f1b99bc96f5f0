"""VampPrior and IAF posteriors: the mixture prior against its definition, the flow's log-determinant
against autograd's Jacobian, log q by inversion, parity with the VAE, and log p(x) by importance sampling
against 2-D quadrature (the contract and capability suites cover the rest through the registry)."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import quadrature_log_px
from torch.autograd.functional import jacobian

from vaelab import objectives
from vaelab.eval.likelihood import log_likelihood_estimate
from vaelab.models import build_model
from vaelab.models.vamp import VampMixture
from vaelab.nn import ARCHS
from vaelab.train import TrainConfig, fit

SHAPE = (1, 8, 8)
LOG_2PI = math.log(2 * math.pi)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def small(name: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_model(name, input_shape=SHAPE, **{"hidden": (32,), **kw})


def trained(name: str, digits, epochs: int = 4, **kw):
    model = small(name, **kw)
    fit(model, digits[0], cfg=TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, progress=False, device="cpu", seed=0))
    return model.eval()


# -- VampPrior -------------------------------------------------------------------------------------------
def test_vamp_prior_is_the_log_mean_exp_of_the_pseudo_input_posteriors():
    model = small("vamp", latent_dim=3, n_pseudo=7).eval()
    with torch.no_grad():
        model.pseudo.uniform_(-0.5, 1.5)            # some values outside [0, 1]: hardtanh must clip them
        u = model.pseudo_inputs()
        assert u.min() >= 0 and u.max() <= 1 and u.shape == (7, *SHAPE)
        z = 2 * torch.randn(4, 5, 3, generator=_gen(0))                      # (k, n, d)
        direct = torch.stack([model.encode(u[i:i + 1]).log_prob(z) for i in range(7)])  # (K, k, n): q(z|u_i)
        expect = torch.logsumexp(direct, 0) - math.log(7)
        got = model.prior(5).log_prob(z)
    assert got.shape == (4, 5)
    torch.testing.assert_close(got, expect, rtol=0, atol=1e-5)


def test_vamp_mixture_is_exact_in_float32_for_narrow_components_far_from_zero():
    """The matrix-product form of the mixture density cancels large terms; it must not lose precision."""
    torch.manual_seed(0)
    mu, logvar = 3 * torch.randn(50, 20, dtype=torch.float64), torch.full((50, 20), math.log(0.01), dtype=torch.float64)
    z = mu[:8] + 0.1 * torch.randn(8, 20, dtype=torch.float64)                # near a component: large terms cancel
    direct = -0.5 * ((z[:, None] - mu).square() / logvar.exp() + logvar + LOG_2PI).sum(-1)   # (8, K)
    expect = torch.logsumexp(direct, -1) - math.log(50)
    got = VampMixture(mu.float(), logvar.float(), 1).log_prob(z.float())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expect, rtol=0, atol=1e-4)


def test_vamp_prior_is_a_density_and_its_draws_have_its_moments():
    model = small("vamp", latent_dim=1, n_pseudo=5).double().eval()
    with torch.no_grad():
        model.pseudo.uniform_(0, 1)
        p = model.prior(1)
        grid = torch.linspace(-15, 15, 30001, dtype=torch.float64)[:, None]                       # (G, 1)
        mass = p.log_prob(grid).exp().sum() * (grid[1, 0] - grid[0, 0])
        torch.manual_seed(1)
        draws = p.sample((40000,))[:, 0]                                      # (N, 1)
    assert abs(float(mass) - 1) < 1e-4
    se_mean = float(p.variance.sqrt()) / math.sqrt(len(draws))
    assert abs(float(draws.mean()) - float(p.mean)) < 4 * se_mean
    assert abs(float(draws.var()) / float(p.variance) - 1) < 0.05


def test_vamp_pseudo_inputs_receive_gradients():
    model = small("vamp", latent_dim=3, n_pseudo=7)
    x = torch.rand(8, *SHAPE).bernoulli()
    objectives.elbo(model, x).loss.backward()
    assert model.pseudo.grad is not None and model.pseudo.grad.abs().sum() > 0


def test_vamp_without_unit_interval_likelihood_uses_pseudo_inputs_as_they_are():
    model = small("vamp", latent_dim=2, n_pseudo=3, likelihood="gaussian")
    with torch.no_grad():
        model.pseudo.fill_(3.0)
    assert torch.equal(model.pseudo_inputs(), model.pseudo)


@pytest.mark.parametrize("bad, match", [({"n_pseudo": 0}, "n_pseudo=0"), ({"n_pseudo": 10 ** 6}, "1..65536"),
                                        ({"n_classes": 3}, "unconditional")])
def test_vamp_config_rejects(bad, match):
    with pytest.raises(ValueError, match=match):
        build_model("vamp", input_shape=SHAPE, **bad)


# -- IAF -------------------------------------------------------------------------------------------------
def test_iaf_log_det_equals_autograd_jacobian():
    """log N(eps) - log q(z|x) = log |det dz/deps| for the whole flow (Gaussian layer + T steps)."""
    model = small("iaf", latent_dim=4, n_flows=3, flow_hidden=(12, 12), context_dim=5).double().eval()
    with torch.no_grad():
        for p in model.steps.parameters():      # a far-from-identity flow
            p.mul_(3)
    x = torch.rand(3, *SHAPE, dtype=torch.float64).bernoulli()
    q = model.encode(x)
    eps = torch.randn(3, 4, generator=_gen(2), dtype=torch.float64)
    _, log_q = q.flow(eps)
    log_det = -0.5 * (eps.square() + LOG_2PI).sum(-1) - log_q                # (B,)
    for b in range(3):
        def f(e: torch.Tensor, b: int = b) -> torch.Tensor:
            full = eps.clone()
            full[b] = e
            return q.flow(full)[0][b]
        jac = jacobian(f, eps[b])                                             # (d, d)
        torch.testing.assert_close(log_det[b], torch.linalg.slogdet(jac).logabsdet, rtol=0, atol=1e-9)


@pytest.mark.parametrize("reverse", [False, True])
def test_iaf_step_is_autoregressive(reverse):
    """d m_i / d z_j = d s_i / d z_j = 0 unless j comes before i in the step's order."""
    model = small("iaf", latent_dim=5, n_flows=2, flow_hidden=(20,), context_dim=3).double()
    step = model.steps[int(reverse)]
    z, h = torch.randn(5, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    jm, js = jacobian(lambda v: torch.cat(step(v, h)), z).split(5)           # (d, d) each
    order = torch.arange(5).flip(0) if reverse else torch.arange(5)           # position -> rank in the order
    allowed = order[None, :] < order[:, None]                                 # [i, j]: j before i
    for jac in (jm, js):
        assert (jac[~allowed] == 0).all()
        assert (jac[allowed] != 0).any()


def test_iaf_log_prob_by_inversion_equals_the_sampling_pass():
    model = small("iaf", latent_dim=4, n_flows=3, flow_hidden=(16,), context_dim=4).double().eval()
    x = torch.rand(5, *SHAPE, dtype=torch.float64).bernoulli()
    with torch.no_grad():
        q = model.encode(x)
        z, log_q = q.rsample_with_log_prob((6,), _gen(3))                    # (6, 5, 4), (6, 5)
        torch.testing.assert_close(q.log_prob(z), log_q, rtol=0, atol=1e-9)


@pytest.mark.parametrize("arch", ARCHS)
def test_iaf_without_flow_steps_is_the_vae_on_the_same_weights(arch):
    x = torch.rand(7, *SHAPE).bernoulli()
    vae = small("vae", latent_dim=3, arch=arch).eval()
    iaf = small("iaf", latent_dim=3, arch=arch, n_flows=0, context_dim=0).eval()
    iaf.load_state_dict(vae.state_dict())  # strict: the same encoder / decoder modules
    with torch.no_grad():
        torch.testing.assert_close(iaf.log_weights(x, k=5, generator=_gen(4)),
                                   vae.log_weights(x, k=5, generator=_gen(4)), rtol=0, atol=1e-5)
        # the same noise gives the same z: equal reconstruction terms (the vae's KL is closed form, not sampled)
        torch.testing.assert_close(iaf.elbo_parts(x, generator=_gen(5))[0],
                                   vae.elbo_parts(x, generator=_gen(5))[0], rtol=0, atol=1e-5)


def test_iaf_cvae_conditions_on_labels(digits):
    model = small("iaf-cvae", latent_dim=2, n_classes=10).eval()
    x, y = digits[1].x[:4], digits[1].y[:4]
    with pytest.raises(ValueError, match="conditional"):
        model.encode(x)
    a, b = model.encode(x, y).mean, model.encode(x, (y + 1) % 10).mean
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("bad, match", [({"n_flows": -1}, "n_flows=-1"), ({"flow_hidden": (0,)}, "flow_hidden"),
                                        ({"context_dim": -2}, "context_dim=-2"),
                                        ({"n_flows": 10 ** 4}, "0..64")])
def test_iaf_config_rejects(bad, match):
    with pytest.raises(ValueError, match=match):
        build_model("iaf", input_shape=SHAPE, **bad)


# -- both: log p(x) by importance sampling against quadrature; ELBO <= IS estimate -------------------------


@pytest.mark.parametrize("name, kw", [("vamp", {"n_pseudo": 20}), ("iaf", {"n_flows": 2, "flow_hidden": (32,)})])
def test_importance_sampling_matches_quadrature_and_bounds_the_elbo(name, kw, digits):
    """A wrong log q (flow) or log p (mixture) would bias the IS estimate away from the quadrature value."""
    model = trained(name, digits, latent_dim=2, **kw).double()
    x = digits[1].x[:6].double()
    with torch.no_grad():
        exact = quadrature_log_px(model, x, lim=7.0, n=281)
        est = log_likelihood_estimate(model, x, None, k=4000, seed=1)
        elbo = torch.stack([objectives.elbo(model, x).elbo for _ in range(400)])   # (draws, B)
    assert ((est.log_px - exact).abs() < 0.02 + 4 * est.se).all()
    gap = exact - elbo.mean(0)                                                # KL(q || p(z|x)) >= 0
    se = elbo.std(0) / math.sqrt(len(elbo))                                   # (B,)
    assert (gap >= -4 * se).all()
    assert gap.mean() > 4 * se.square().sum().sqrt() / len(se)                # the ELBO is strictly below
    assert (est.log_px >= est.elbo).all()
