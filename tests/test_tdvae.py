"""The convolutional top-down VAE (tdvae): latent map shapes per resolution, the per-layer closed-form KL against
the sampled rate, the chain prior, log p(x) by importance sampling against 2-D quadrature, ELBO <= IWAE,
temperature, training and the CLI (the contract and capability suites cover the rest through the registry)."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import check_bounds_against_quadrature, cli, quadrature_log_px
from vaelab import objectives
from vaelab.data.store import Dataset
from vaelab.models import build_model
from vaelab.train import TrainConfig, fit

SHAPE = (1, 8, 8)
TWO_D = {"channels": (8, 8, 8, 8, 8), "latent_channels": (1, 1)}  # 8x8 -> 4, 2, 1, 1: two 1x1 maps of 1 channel


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def small(seed: int = 0, shape=SHAPE, **kw):
    torch.manual_seed(seed)
    params = {"input_shape": shape, "channels": (8, 16), "latent_channels": (3, 2)}
    return build_model("tdvae", **{**params, **kw})


def binarized(data: Dataset) -> Dataset:
    return Dataset((data.x > 0.5).float(), data.y, data.info)


def perturbed(model):
    """The model with every top-down weight moved at random: priors that depend on the layers above."""
    with torch.no_grad():
        for i, p in enumerate(model.top_down.parameters()):
            p.add_(0.05 * torch.randn(p.shape, generator=_gen(i), dtype=p.dtype))
    return model


def trained(digits, epochs: int = 4, **kw):
    model = small(**kw)
    fit(model, binarized(digits[0]), cfg=TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, progress=False, device="cpu", seed=0))
    return model.eval()


@pytest.mark.parametrize("shape, maps", [((3, 32, 32), [(8, 4, 4), (4, 8, 8)]), ((1, 28, 28), [(8, 4, 4), (4, 7, 7)]),
                                         ((1, 8, 8), [(8, 4, 4), (4, 8, 8)]), ((5,), [(8, 1, 1), (4, 1, 1)])])
def test_default_latent_maps_per_resolution_and_flat_codes(shape, maps):
    model = build_model("tdvae", input_shape=shape).eval()
    assert model.config.latent_shapes == maps
    assert model.latent_dim == sum(math.prod(m) for m in maps)
    x = torch.rand(3, *shape)
    with torch.no_grad():
        z = model.encode(x).mean                                              # (3, latent_dim)
        parts = model.split(z)
        assert [tuple(p.shape[1:]) for p in parts] == maps
        assert torch.equal(torch.cat([p.flatten(1) for p in parts], -1), z)   # split inverts the concatenation
        torch.testing.assert_close(model.reconstruct(x), model.decode(z).mean)


def test_layers_per_scale_and_three_scales():
    model = small(shape=(3, 16, 16), channels=(8, 8, 8), latent_channels=(2, 2, 1), layers_per_scale=2)
    assert model.config.latent_shapes == [(2, 4, 4)] * 2 + [(2, 8, 8)] * 2 + [(1, 16, 16)] * 2
    recon, kl = model.elbo_parts(torch.rand(4, 3, 16, 16).bernoulli())
    assert recon.shape == (4,) and kl.shape == (4, 6)


def test_kl_per_layer_is_closed_form_given_the_layers_above_and_matches_the_sampled_rate(digits):
    """Each layer's KL term, averaged over draws of the layers above, equals E_q[log q(z_l|.) - log p(z_l|.)]."""
    model = perturbed(small().double().eval())
    x = digits[1].x[:4].double()
    with torch.no_grad():
        parts = [model.elbo_parts(x, generator=_gen(s)) for s in range(300)]
        kl = torch.stack([k for _, k in parts])                               # (draws, B, L)
        recon = torch.stack([r for r, _ in parts])                            # (draws, B)
        lw_recon, rate = model.log_weight_parts(x, k=3000, generator=_gen(999))  # (k, B), (k, B, L)
    assert (kl >= -1e-9).all() and kl.sum(-1).mean() > 1.0                   # closed form: never negative; used
    assert kl[..., 1].std(0).max() > 0                                        # depends on the draw of the top
    for ours, ref in [(kl[..., i], rate[..., i]) for i in range(kl.shape[-1])] + [(recon, lw_recon)]:
        se = (ours.var(0) / len(ours) + ref.var(0) / len(ref)).sqrt()
        assert ((ours.mean(0) - ref.mean(0)).abs() <= 4 * se + 1e-6).all()


def test_prior_chain_log_prob_and_temperature():
    model = perturbed(small(**TWO_D).double().eval())
    with torch.no_grad():
        p1 = model.prior(1)
        t = torch.linspace(-9, 9, 241, dtype=torch.float64)
        grid = torch.cartesian_prod(t, t)                                      # (G, 2) = [z_top, z_below]
        mass = p1.log_prob(grid).exp().sum() * float(t[1] - t[0]) ** 2
        draws = model.prior(10000).rsample(generator=_gen(1))                  # (N, 2)
        cold = model.prior(10000, temperature=0.5).rsample(generator=_gen(1))
    assert abs(float(mass) - 1) < 1e-3                                         # a normalised density on R^2
    # the density's moments are the draws' (its own ancestral sampler)
    w = p1.log_prob(grid).exp() * float(t[1] - t[0]) ** 2
    mean = (w[:, None] * grid).sum(0)
    assert ((draws.mean(0) - mean).abs() < 4 * draws.std(0) / math.sqrt(len(draws))).all()
    assert (cold[:, 0].std() / draws[:, 0].std() - 0.5).abs() < 0.04          # the top layer's std halves


def test_importance_sampling_matches_quadrature_and_the_elbo_is_below(digits):
    """A wrong log q or log p (or a decode that disagrees with the training pass) biases the IS estimate."""
    model = trained(digits, **TWO_D).double()
    assert model.latent_dim == 2
    x = binarized(digits[1]).x[:6].double()
    with torch.no_grad():
        exact = quadrature_log_px(model, x, lim=8.0, n=161)  # step 0.1: within 1e-8 of n=241 (measured)
    check_bounds_against_quadrature(model, x, exact, k=2000, elbo_draws=300)


def test_sample_follows_the_generator_and_temperature():
    model = small().eval()
    a, b = (model.sample(4, generator=_gen(3)) for _ in range(2))
    assert torch.equal(a, b) and not torch.equal(a, model.sample(4, generator=_gen(4)))
    cold = model.sample(4, temperature=1e-6, generator=_gen(3))
    mean_chain = model.sample(4, temperature=1e-6, generator=_gen(8))          # ~ the chain of prior means
    torch.testing.assert_close(cold, mean_chain, rtol=0, atol=1e-4)


def test_training_lowers_the_negative_elbo(digits):
    model = small()
    x = binarized(digits[1]).x[:200]
    with torch.no_grad():
        before = -objectives.elbo(model, x).elbo.mean()
    model = trained(digits, epochs=3)
    with torch.no_grad():
        after = -objectives.elbo(model, x).elbo.mean()
    assert after < before - 5


@pytest.mark.parametrize("bad, match", [({"latent_channels": ()}, "latent_channels"),
                                        ({"latent_channels": (4, 4, 4), "channels": (8, 8)}, "has only 2"),
                                        ({"layers_per_scale": 0}, "layers_per_scale=0"),
                                        ({"blocks": (1, 1, 1)}, "blocks="), ({"norm": "nope"}, "norm='nope'"),
                                        ({"n_classes": 3}, "unconditional"), ({"input_shape": (1, 1, 8, 8)}, "(C, H, W)")])
def test_config_rejects(bad, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        build_model("tdvae", **{"input_shape": SHAPE, **bad})


def test_cli_train_eval_sample(tmp_path):
    run = tmp_path / "run"
    r = cli("train", "--model", "tdvae", "--data", "digits", "--channels", "8,16", "--latent-channels", "4,2",
            "--epochs", "1", "--no-progress", "--out", run)
    assert r.exit_code == 0, r.output
    r = cli("eval", run, "--iw-samples", "8")
    assert r.exit_code == 0, r.output
    r = cli("plot", run, "--kind", "samples", "--out", tmp_path / "s.png")
    assert r.exit_code == 0 and (tmp_path / "s.png").stat().st_size > 0, r.output
    r = cli("train", "--model", "tdvae", "--latent-channels", "0", "--epochs", "1", "--no-progress", "--out",
            tmp_path / "bad")
    assert r.exit_code == 2 and "latent_channels" in r.output and "Traceback" not in r.output
