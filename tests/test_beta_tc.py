"""beta-TC (Chen et al. 2018): the TC estimate against Gaussians with a known TC, the decomposition's identity,
tc_beta = 1 as the ELBO loss, refusals, and a CLI run on shapes that `vaelab eval` scores with MIG / DCI."""
from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import assert_cli_error, cli, contract_params

from vaelab.models import build_model
from vaelab.objectives import Objective, ObjectiveConfig, beta_tc, compute, elbo, tc_decomposition


def gaussian_codes(cov_means: torch.Tensor, scale: float, n: int, seed: int):
    """Posterior means mu ~ N(0, cov_means), q(z|x) = N(mu, scale^2 I) and one draw z of each: the aggregate
    posterior is N(0, cov_means + scale^2 I), whose TC = (sum log diag - log det) / 2 is known."""
    g = torch.Generator().manual_seed(seed)
    d = len(cov_means)
    mu = torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov_means).T
    sd = torch.full((n, d), scale, dtype=torch.float64)
    z = mu + sd * torch.randn(n, d, generator=g, dtype=torch.float64)
    cov = cov_means + scale ** 2 * torch.eye(d, dtype=torch.float64)
    return z, mu, sd, float(0.5 * (cov.diagonal().log().sum() - torch.logdet(cov)))


@pytest.mark.parametrize("rho", [0.0, 0.8])
def test_tc_estimate_matches_the_tc_of_a_gaussian_aggregate_posterior(rho):
    d = 3
    cov = (1 - rho) * torch.eye(d, dtype=torch.float64) + rho
    z, mu, sd, exact = gaussian_codes(cov, 0.5, 1500, seed=0)
    tc = tc_decomposition(z, mu, sd, n_data=len(z), stratified=True)["tc"]   # the batch is the data set
    se = float(tc.std() / math.sqrt(len(tc)))
    assert abs(float(tc.mean()) - exact) < 0.05 + 3 * se, (float(tc.mean()), exact, se)
    if rho == 0:
        assert abs(float(tc.mean())) < 0.06
    else:
        assert exact > 0.5 and float(tc.mean()) > 0.5


def test_the_decomposition_adds_up_to_the_one_sample_kl_and_mws_is_offset_by_a_constant():
    z, mu, sd, _ = gaussian_codes(torch.eye(4, dtype=torch.float64) * 0.5, 0.3, 200, seed=1)
    n = 10_000
    for stratified in (False, True):
        parts = tc_decomposition(z, mu, sd, n, stratified)
        normal = torch.distributions.Normal
        one_sample_kl = (normal(mu, sd).log_prob(z) - normal(0.0, 1.0).log_prob(z)).sum(-1)   # (B,)
        assert torch.allclose(parts["mi"] + parts["tc"] + parts["dwkl"], one_sample_kl, atol=1e-9)
    # mws weights every term 1 / (N M); mss with N = M weights every term 1 / M: TC differs by (d - 1) log N
    mws = tc_decomposition(z, mu, sd, n, stratified=False)["tc"]
    kde = tc_decomposition(z, mu, sd, len(z), stratified=True)["tc"]
    assert torch.allclose(mws - kde, torch.full_like(mws, 3 * math.log(n)), atol=1e-9)
    with pytest.raises(ValueError, match="n_data=10 must be >= the batch size 200"):
        tc_decomposition(z, mu, sd, 10)


@pytest.fixture
def vae_and_batch():
    torch.manual_seed(0)
    model = build_model("vae", **{**contract_params("vae"), "latent_dim": 4})
    x = torch.rand(64, 1, 8, 8)
    return model, x


def test_tc_beta_one_is_the_elbo_loss_and_tc_beta_adds_the_weighted_tc(vae_and_batch):
    model, x = vae_and_batch
    torch.manual_seed(3)
    ref = elbo(model, x)
    torch.manual_seed(3)
    same = compute(model, x, None, ObjectiveConfig(kind="beta-tc", tc_beta=1.0), n_data=1000)
    assert torch.equal(same.loss, ref.loss) and torch.equal(same.elbo, ref.elbo)
    for stratified in (False, True):
        torch.manual_seed(3)
        six = beta_tc(model, x, None, n_data=1000, tc_beta=6.0, stratified=stratified)
        torch.manual_seed(3)
        base = elbo(model, x)
        q = model.encode(x)
        tc = tc_decomposition(q.rsample(), q.mean, q.stddev, 1000, stratified)["tc"].mean()  # the same draw
        assert torch.allclose(six.loss, base.loss + 5.0 * tc, atol=1e-4)
        assert torch.equal(six.elbo, base.elbo), "the reported elbo stays the true ELBO"
    # warm-up scales the whole regulariser: at epoch 0 only the reconstruction is left
    torch.manual_seed(3)
    cold = compute(model, x, None, ObjectiveConfig(kind="beta-tc", tc_beta=6.0, warmup=2.0), epoch=0.0, n_data=1000)
    assert torch.allclose(cold.loss, -cold.recon.mean())
    # the TC term moves the encoder's gradient
    grads = []
    for tc_beta in (1.0, 6.0):
        model.zero_grad()
        torch.manual_seed(3)
        beta_tc(model, x, None, 1000, tc_beta).loss.backward()
        grads.append(next(model.encoder.parameters()).grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def test_settings_and_models_beta_tc_refuses():
    for kwargs, needle in (({"tc_beta": -1.0}, "tc_beta=-1.0 must be"), ({"tc_beta": math.nan}, "tc_beta=nan"),
                           ({"tc_estimator": "exact"}, "allowed: ['mws', 'mss']"),
                           ({"beta": 4.0}, "set tc_beta"), ({"free_bits": 0.5}, "free_bits=0.5")):
        with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            ObjectiveConfig(kind="beta-tc", **kwargs)
    with pytest.raises(ValueError, match="apply to objective 'beta-tc'"):
        ObjectiveConfig(kind="elbo", tc_beta=6.0)
    cfg = ObjectiveConfig(kind="beta-tc", tc_beta=6.0)
    for name in ("hvae", "iaf", "vamp", "ae"):
        with pytest.raises(ValueError, match="objective 'beta-tc' needs a model with a diagonal Gaussian"):
            Objective(build_model(name, **contract_params(name)), cfg)
    model = build_model("vae", **contract_params("vae"))
    with pytest.raises(ValueError, match="needs n_data"):
        compute(model, torch.rand(4, 1, 8, 8), None, cfg)


def test_cli_trains_beta_tc_on_shapes_and_eval_writes_mig_and_dci(tmp_path):
    run = tmp_path / "btc"
    tiny = ("--data", "shapes", "--hidden", "16", "--latent-dim", "4", "--epochs", "1", "--batch-size", "512",
            "--val-fraction", "0.02", "--no-progress")
    r = cli("train", *tiny, "--objective", "beta-tc", "--tc-beta", "6", "--out", run)
    assert r.exit_code == 0, r.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["objective"]["kind"] == "beta-tc" and saved["objective"]["tc_beta"] == 6.0
    r = cli("eval", run, "--iw-samples", "2", "--max-examples", "600", "--no-fd", "--no-progress", "--device", "cpu")
    assert r.exit_code == 0, r.output
    result = json.loads((run / "eval.json").read_text())
    for key in ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness"):
        assert 0.0 <= result[key] <= 1.0, (key, result[key])
    assert set(result["mig_per_factor"]) == {"shape", "scale", "rotation", "x", "y"}
    assert "mig" in r.output
    assert_cli_error(cli("train", *tiny, "--objective", "elbo", "--tc-beta", "6", "--out", tmp_path / "e"),
                     "apply to objective 'beta-tc'")
