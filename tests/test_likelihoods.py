"""Likelihoods that fit the data, and every likelihood number saying what it is.

Each test checks one property: a pmf sums to 1 over its levels, a density integrates to 1, each matches
a direct numpy formula, dequantization gives a bound in the right direction, eval.json carries the scale
with its standard error and effective sample size, and the report never puts two scales in one column.
"""
from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.special import expit
from scipy.stats import multivariate_normal
from typer.testing import CliRunner

from vaelab.cli import app
from vaelab.data import DataInfo, Dataset
from vaelab.distributions import Scale, grid_levels, likelihood, likelihood_scale
from vaelab.eval.evaluate import evaluate, log_likelihood
from vaelab.models import build_model
from vaelab.pixel_likelihoods import ContinuousBernoulli, DiscretizedLogisticMixture, cb_log_norm
from vaelab.viz import report as rep

LEVELS = torch.arange(256, dtype=torch.float64) / 255  # every value of 8-bit data


def random_params(n: int, m: int, seed: int = 0) -> torch.Tensor:
    """(n, 3m) mixture parameters: logits, locations around and outside [0, 1], log scales from tiny to wide."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, m, generator=g, dtype=torch.float64) * 2
    loc = torch.rand(n, m, generator=g, dtype=torch.float64) * 1.6 - 0.3
    log_scale = torch.rand(n, m, generator=g, dtype=torch.float64) * 9 - 8   # scale e^-8 .. e^1
    return torch.cat([logits, loc, log_scale], -1)


def numpy_pmf(params: np.ndarray, levels: int = 256) -> np.ndarray:
    """P(k) for every level k, straight from the definition: (n, levels)."""
    m = params.shape[1] // 3
    w = np.exp(params[:, :m]) / np.exp(params[:, :m]).sum(1, keepdims=True)              # (n, m)
    loc, s = params[:, m:2 * m, None], np.exp(params[:, 2 * m:, None])                  # (n, m, 1)
    k = np.arange(levels)
    upper = np.where(k == levels - 1, np.inf, (k + 0.5) / (levels - 1))
    lower = np.where(k == 0, -np.inf, (k - 0.5) / (levels - 1))
    cdf = lambda e: expit((e - loc) / s)  # noqa: E731
    sf = lambda e: expit(-(e - loc) / s)  # noqa: E731
    right = k / (levels - 1) > loc  # the bin lies right of the mode: 1 - F is exact there, F(b) - F(a) cancels
    mass = np.where(right, sf(lower) - sf(upper), cdf(upper) - cdf(lower))              # (n, m, levels)
    return (w[:, :, None] * mass).sum(1)                                                # (n, levels)


@pytest.mark.parametrize("m", [1, 5])
def test_discretized_logistic_mixture_pmf_sums_to_one_and_matches_numpy(m):
    params = random_params(40, m)
    d = DiscretizedLogisticMixture(params.unsqueeze(1).expand(40, 256, 3 * m))         # batch (40, 256)
    logp = d.log_prob(LEVELS.expand(40, 256))                                           # (40, 256)
    torch.testing.assert_close(torch.logsumexp(logp, 1), torch.zeros(40, dtype=torch.float64), atol=1e-9, rtol=0)
    ref = numpy_pmf(params.numpy())
    np.testing.assert_allclose(logp.exp().numpy(), ref, atol=1e-12, rtol=1e-7)
    big = ref > 1e-200
    np.testing.assert_allclose(logp.numpy()[big], np.log(ref[big]), rtol=1e-6, atol=1e-9)


def test_discretized_logistic_mean_and_samples_follow_the_pmf():
    params = random_params(3, 5, seed=1)
    d = DiscretizedLogisticMixture(params)
    pmf = numpy_pmf(params.numpy())                                                     # (3, 256)
    torch.testing.assert_close(d.mean, torch.as_tensor(pmf @ LEVELS.numpy()), atol=1e-9, rtol=0)
    torch.manual_seed(0)
    draws = d.sample((20000,))                                                          # (20000, 3)
    assert set(np.unique(np.round(draws.numpy() * 255, 6))) <= set(range(256))         # on the 8-bit grid
    for i in range(3):
        freq = np.bincount(np.round(draws[:, i].numpy() * 255).astype(int), minlength=256) / 20000
        assert 0.5 * np.abs(freq - pmf[i]).sum() < 0.05   # total variation; ~0.02 expected by chance


def test_decoder_outputs_are_parameter_major():
    """``likelihood`` reads parameter j of channel c from output channel j * C + c."""
    c, m = 3, 2
    out = torch.randn(4, 3 * m * c, 2, 2, dtype=torch.float64)                          # (B, 3M * C, H, W)
    d = likelihood("dmol", out, torch.zeros(()), 3, components=m)
    assert d.batch_shape == (4,) and d.event_shape == (3, 2, 2)
    b, ch, h, w = 1, 2, 1, 0
    params = torch.stack([out[b, j * c + ch, h, w] for j in range(3 * m)])
    x = torch.rand(4, 3, 2, 2, dtype=torch.float64)
    one = DiscretizedLogisticMixture(params).log_prob(x[b, ch, h, w])
    torch.testing.assert_close(d.base_dist.log_prob(x)[b, ch, h, w], one)


@pytest.mark.parametrize("name,extra", [("discretized-logistic", {}), ("dmol", {"mixture_components": 3})])
def test_a_vae_decoder_is_a_pmf_over_all_8bit_images(name, extra):
    """p(x|z) of a two-pixel image, summed over all 256^2 images, is 1."""
    torch.manual_seed(0)
    vae = build_model("vae", input_shape=(1, 1, 2), latent_dim=2, hidden=(8,), likelihood=name, **extra).double()
    a, b = torch.meshgrid(LEVELS, LEVELS, indexing="ij")
    images = torch.stack([a, b], -1).reshape(-1, 1, 1, 2)                              # (65536, 1, 1, 2)
    with torch.no_grad():
        logp = vae.decode(torch.randn(1, 2, dtype=torch.float64).expand(len(images), 2)).log_prob(images)
    assert abs(float(torch.logsumexp(logp, 0))) < 1e-9


# -- continuous Bernoulli ---------------------------------------------------------------------------------
LOGITS = [-60.0, -20.0, -5.0, -0.3, -0.011, -0.009, -1e-4, 0.0, 1e-6, 0.005, 0.3, 3.0, 20.0, 60.0]


def numpy_cb_log_prob(x: np.ndarray, logit: float) -> np.ndarray:
    """Loaiza-Ganem & Cunningham eq. (4): x log lam + (1-x) log(1-lam) + log(2 atanh(1-2 lam) / (1-2 lam))."""
    lam = expit(logit)
    return x * np.log(lam) + (1 - x) * np.log1p(-lam) + np.log(2 * np.arctanh(1 - 2 * lam) / (1 - 2 * lam))


@pytest.mark.parametrize("logit", LOGITS)
def test_continuous_bernoulli_integrates_to_one(logit):
    d = ContinuousBernoulli(logits=torch.tensor(logit, dtype=torch.float64))
    dens = lambda x: float(d.log_prob(torch.tensor(x, dtype=torch.float64)).exp())  # noqa: E731
    total, err = integrate.quad(dens, 0, 1, points=[1 / (abs(logit) + 1)], limit=200)
    assert abs(total - 1) < 1e-7 + err
    mean, _ = integrate.quad(lambda x: x * dens(x), 0, 1, points=[1 / (abs(logit) + 1)], limit=200)
    assert float(d.mean) == pytest.approx(mean, abs=1e-7)


@pytest.mark.parametrize("logit", [-20.0, 20.0])
def test_continuous_bernoulli_integrates_to_one_in_float32(logit):
    """Saturated pixels: torch's own class clamps lambda in float32 and integrates to 0.80 here."""
    x = torch.linspace(0, 1, 400_001)
    dens = ContinuousBernoulli(logits=torch.tensor(logit)).log_prob(x).double().exp()
    assert float(torch.trapezoid(dens, x.double())) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("logit", [-15.0, -2.0, -0.05, 0.02, 0.7, 9.0])
def test_continuous_bernoulli_matches_numpy_formula(logit):
    x = np.linspace(0, 1, 11)
    ours = ContinuousBernoulli(logits=torch.tensor(logit, dtype=torch.float64)).log_prob(torch.as_tensor(x))
    np.testing.assert_allclose(ours.numpy(), numpy_cb_log_prob(x, logit), rtol=1e-9, atol=1e-9)


def test_continuous_bernoulli_normaliser_is_smooth_at_one_half():
    """The Taylor branch (|l| < 0.01) meets the closed form: log C(l) ~ log 2 + l^2 / 12."""
    l = torch.tensor([-0.0100001, -0.0099999, 0.0099999, 0.0100001, 1e-30, 0.0], dtype=torch.float64)
    v = cb_log_norm(l)
    assert float(v[0] - v[1]).__abs__() < 1e-9 and float(v[2] - v[3]).__abs__() < 1e-9
    assert float(v[4]) == float(v[5]) == pytest.approx(math.log(2), abs=1e-15)
    assert float(cb_log_norm(l.float())[0] - cb_log_norm(l.float())[1]).__abs__() < 1e-6


def test_continuous_bernoulli_samples_invert_the_cdf():
    logits = torch.tensor([-30.0, -3.0, -1e-7, 0.0, 2.0, 30.0], dtype=torch.float64)
    d = ContinuousBernoulli(logits=logits)
    u = torch.linspace(0.01, 0.99, 50, dtype=torch.float64).unsqueeze(1).expand(50, 6)
    x = d.icdf(u)
    # F(x) = (lam^x (1-lam)^(1-x) + lam - 1) / (2 lam - 1) = expm1(l x) / expm1(l), exact in float64 at |l| = 30
    cdf = torch.where(logits.abs() < 1e-6, x, torch.expm1(logits * x) / torch.expm1(logits))
    torch.testing.assert_close(cdf, u, atol=1e-9, rtol=1e-7)
    torch.manual_seed(0)
    draws = d.sample((20000,))
    se = draws.std(0) / math.sqrt(20000)
    assert ((draws.mean(0) - d.mean).abs() < 5 * se + 1e-12).all()


# -- scales and dequantization ----------------------------------------------------------------------------
def test_scales_follow_the_likelihood_and_the_data():
    assert grid_levels(torch.tensor([0.0, 1.0, 1.0])) == 2
    assert grid_levels(torch.arange(256) / 255.0) == 256
    assert grid_levels(torch.tensor([0.0, 0.0625, 1.0])) == 17     # digits: k / 16
    assert grid_levels(torch.rand(100, generator=torch.Generator().manual_seed(0))) is None
    assert likelihood_scale("bernoulli", 2) == Scale("discrete", 2)
    assert likelihood_scale("bernoulli", 256) == Scale("cross-entropy")
    assert likelihood_scale("dmol", None) == Scale("discrete", 256)
    assert likelihood_scale("continuous-bernoulli", 256) == Scale("discrete", 256, dequantized=True)
    assert likelihood_scale("gaussian", 256, dequantize=False) == Scale("density")
    assert likelihood_scale("gaussian", None) == Scale("density")
    with pytest.raises(ValueError, match="continuous"):
        likelihood_scale("gaussian", None, dequantize=True)


def toy_binary(n: int = 400, seed: int = 0) -> Dataset:
    """Two correlated binary values per example: data with 2 levels."""
    g = torch.Generator().manual_seed(seed)
    a = (torch.rand(n, generator=g) < 0.6).float()
    b = torch.where(torch.rand(n, generator=g) < 0.8, a, 1 - a)
    return Dataset(torch.stack([a, b], 1), None, DataInfo(name="toy", shape=(2,), is_image=False))


def exact_discrete_log_prob(pca, x: np.ndarray) -> np.ndarray:
    """log P(k) = log of PPCA's Gaussian mass on the bin [k/2, (k+1)/2)^2 of each example (scipy's mvn CDF)."""
    mu = pca.mean.double().numpy()
    w = pca.weight.double().numpy()
    cov = w @ w.T + float(pca.noise_variance) * np.eye(2)
    mvn = multivariate_normal(mu, cov, abseps=1e-10, releps=1e-10)
    out = []
    for row in x:
        lo, hi = row / 2, (row + 1) / 2
        mass = mvn.cdf(hi) - mvn.cdf([lo[0], hi[1]]) - mvn.cdf([hi[0], lo[1]]) + mvn.cdf(lo)
        out.append(math.log(mass))
    return np.array(out)


def test_dequantized_ppca_bounds_the_exact_discrete_probability():
    ds = toy_binary()
    pca = build_model("pca", input_shape=(2,), latent_dim=1).fit_closed_form(ds.x)
    exact_nll = -exact_discrete_log_prob(pca, ds.x.numpy()).mean()
    exact_bpd = exact_nll / (2 * math.log(2))
    out = evaluate(pca, ds, iw_samples=2000, fd=False, dequantize=True)
    assert out["scale"] == "discrete" and out["levels"] == 2 and out["dequantized"] is True
    assert out["nll_method"] == "dequantized-exact"
    assert 0 <= exact_bpd <= out["bits_per_dim"] + 3 * out["bits_per_dim_se"]   # the bound's direction
    assert out["bits_per_dim"] - exact_bpd > 3 * out["bits_per_dim_se"]         # Jensen's gap over u is real here
    # importance sampling over (z, u) tends to log P(k) itself as K grows: the convention is exact
    assert out["nll_iw"] == pytest.approx(exact_nll, abs=max(5 * out["nll_iw_se"], 2e-3))
    assert out["nll_iw"] >= exact_nll - 5 * out["nll_iw_se"]
    dens = evaluate(pca, ds, iw_samples=10, fd=False, dequantize=False)
    assert dens["scale"] == "density" and dens["bits_per_dim"] is None and dens["nll_se"] == 0


def test_dequantized_nll_does_not_depend_on_batching(digits):
    test = digits[1].subset(torch.arange(30))
    torch.manual_seed(0)
    vae = build_model("vae", input_shape=(1, 8, 8), latent_dim=2, hidden=(16,), likelihood="gaussian").eval()
    one, _ = log_likelihood(vae, test.x, k=40, batch_size=30, chunk=40, workers=1, levels=17)
    many, _ = log_likelihood(vae, test.x, k=40, batch_size=4, chunk=7, workers=2, levels=17)
    torch.testing.assert_close(one, many, atol=1e-6, rtol=1e-9)


def test_eval_json_says_what_each_number_is(digits_runs, tmp_path):
    runner = CliRunner()
    for name in ("pca", "vae"):
        run = shutil.copytree(digits_runs[name], tmp_path / name)
        res = runner.invoke(app, ["eval", str(run), "--iw-samples", "20", "--no-fd", "--max-examples", "60",
                                  "--no-progress"])
        assert res.exit_code == 0, res.output
        out = json.loads((run / "eval.json").read_text())
        assert {"scale", "levels", "dequantized", "nll_se", "ess", "ess_min", "kl_estimated"} <= set(out)
        assert 1 <= out["ess_min"] <= out["ess"] <= 20
        if name == "pca":  # a Gaussian density on 17-level digits: dequantized to a probability
            assert (out["scale"], out["levels"], out["dequantized"]) == ("discrete", 17, True)
            assert out["nll_se"] > 0 and 0 < out["bits_per_dim"] < math.log2(17)
        else:  # a Bernoulli on grey levels: a cross-entropy, no bits/dim
            assert out["scale"] == "cross-entropy" and out["bits_per_dim"] is None and out["nll_se"] > 0


def test_a_monte_carlo_kl_is_labelled_with_its_error(digits):
    test = digits[1].subset(torch.arange(40))
    torch.manual_seed(0)
    hvae = build_model("hvae", input_shape=(1, 8, 8), latent_dims=(4, 2), hidden=(16,), inference="bottom-up")
    vae = build_model("vae", input_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
    h = evaluate(hvae, test, iw_samples=4, fd=False)
    v = evaluate(vae, test, iw_samples=4, fd=False)
    assert h["kl_estimated"] is True and h["kl_se"] > 0
    assert v["kl_estimated"] is False and v["kl_se"] is None


# -- the report ---------------------------------------------------------------------------------------------
def summary(name: str, scale: Scale | None, nll: float | None) -> rep.RunSummary:
    bits = nll / (64 * math.log(2)) if scale is not None and scale.kind == "discrete" else None
    return rep.RunSummary(name, "vae", "digits", 2, {"nll": nll, "nll_se": 0.01, "bits_per_dim": bits,
                                                      "recon_mse": 0.05}, "eval.json", scale=scale)


def test_report_refuses_to_mix_scales_in_a_column():
    runs = [summary("pca", Scale("discrete", 17, True), 170.0), summary("cb", Scale("discrete", 17), 150.0),
            summary("bern", Scale("cross-entropy"), 30.0), summary("ae", None, None)]
    with pytest.raises(ValueError, match="different scales"):
        rep.one_scale(runs)
    assert rep.one_scale(runs[:2]) == Scale("discrete", 17)   # a dequantized bound shares the 17 levels
    table = rep.metrics_table(runs)
    head = re.findall(r"<th[^>]*>([^<]*)</th>", table)
    assert "NLL (nats) [discrete, 17 levels]" in head and "NLL (nats) [cross-entropy]" in head
    assert "bits/dim [discrete, 17 levels]" in head and not any("bits/dim [cross" in h for h in head)
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", r) for r in table.split('<tr class="run">')[1:]]
    col = head.index("NLL (nats) [discrete, 17 levels]")
    assert [r[col] for r in rows] == ["170.00 &plusmn; 0.01", "150.00 &plusmn; 0.01", "&ndash;", "&ndash;"]
