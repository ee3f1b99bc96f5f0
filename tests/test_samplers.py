"""Post-hoc samplers: the GMM's moments, deterministic fits, the two-stage VAE, storage in the run folder, and
``vaelab sample RUN --sampler gmm`` for an autoencoder (which has no prior of its own)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import assert_cli_error, cli

from vaelab import rundir, samplers
from vaelab.samplers import GMMConfig, GMMSampler, TwoStageConfig, TwoStageSampler


def _clusters(n: int = 3000, seed: int = 0) -> torch.Tensor:
    """Codes from two correlated 2-D Gaussian clusters: (n, 2) float64."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n // 2, 2, generator=g, dtype=torch.float64) @ torch.tensor([[1.0, 0.6], [0.0, 0.5]], dtype=torch.float64) + 4
    b = torch.randn(n - n // 2, 2, generator=g, dtype=torch.float64) * 0.7 - torch.tensor([2.0, 1.0], dtype=torch.float64)
    return torch.cat([a, b])


def _moments(w: torch.Tensor, mu: torch.Tensor, cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of a Gaussian mixture: E z and sum_k w_k (S_k + mu_k mu_k^T) - E z E z^T."""
    mean = w @ mu
    second = (w[:, None, None] * (cov + mu[:, :, None] * mu[:, None, :])).sum(0)
    return mean, second - torch.outer(mean, mean)


def test_gmm_fit_matches_the_codes_moments_and_its_samples_match_the_fit():
    codes = _clusters()
    gmm = GMMSampler(GMMConfig(components=2)).fit(codes)
    mean, cov = _moments(gmm.weights, gmm.means, gmm.covariances)
    # at an EM fixed point the mixture's moments are the data's (covariance: biased, + sklearn's reg_covar 1e-6)
    torch.testing.assert_close(mean, codes.mean(0), rtol=0, atol=1e-6)
    torch.testing.assert_close(cov, torch.cov(codes.T, correction=0) + 1e-6 * torch.eye(2), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gmm.mixture().mean, mean)
    n = 40_000
    z = gmm.sample_codes(n, generator=torch.Generator().manual_seed(1))                  # (n, 2)
    assert z.shape == (n, 2)
    se_mean = z.std(0) / n ** 0.5
    assert ((z.mean(0) - mean).abs() <= 5 * se_mean).all()
    centred = z - z.mean(0)
    products = centred[:, :, None] * centred[:, None, :]                                 # (n, 2, 2)
    se_cov = products.std(0) / n ** 0.5
    assert ((products.mean(0) - cov).abs() <= 5 * se_cov).all()
    # temperature scales the spread about the component means
    cold = gmm.sample_codes(n, temperature=0.01, generator=torch.Generator().manual_seed(1))
    assert torch.cdist(cold, gmm.means).min(1).values.max() < 0.1


def test_gmm_fit_and_draws_are_deterministic():
    codes = _clusters(seed=3)
    a, b = (GMMSampler(GMMConfig(components=3, seed=5)).fit(codes) for _ in range(2))
    for k, v in a.arrays().items():
        assert torch.equal(v, b.arrays()[k]), k
    draw = [s.sample_codes(50, generator=torch.Generator().manual_seed(2)) for s in (a, b)]
    assert torch.equal(*draw)


def test_two_stage_learns_the_codes_distribution():
    codes = _clusters(2000, seed=4)
    sampler = TwoStageSampler(TwoStageConfig(hidden=(64, 64), epochs=40, batch_size=100)).fit(codes)
    z = sampler.sample_codes(4000, generator=torch.Generator().manual_seed(0))
    # loose: a second VAE approximates the two clusters; the standardisation must be undone exactly
    assert ((z.mean(0) - codes.mean(0)).abs() < 0.25 * codes.std(0)).all()
    assert ((z.std(0) / codes.std(0)).log().abs() < 0.3).all()
    assert float(sampler.vae.log_sigma.exp().mean()) < 0.9  # the learned decoder scale went below its start


@pytest.fixture()
def ae_run(digits_runs, tmp_path):
    run = tmp_path / "ae"
    shutil.copytree(digits_runs["ae"], run)
    return run


@pytest.mark.parametrize("name,config", [("gmm", GMMConfig(components=3)),
                                         ("two-stage", TwoStageConfig(hidden=(16,), epochs=2))])
def test_sampler_round_trip_through_the_run_folder(ae_run, digits, name, config):
    model = rundir.load(ae_run)
    fitted, fresh = samplers.for_run(ae_run, name, model, lambda: digits[0], config)
    assert fresh and fitted.n_codes == len(digits[0])
    folder = ae_run / samplers.FOLDER / name
    meta = json.loads((folder / samplers.META).read_text())
    assert meta["checkpoint"] == rundir.checkpoint_id(ae_run) and meta["settings"]["seed"] == 0
    assert not list(folder.glob("*.pt")) and not list(folder.glob("*.pkl"))              # safetensors + json only
    loaded, fresh = samplers.for_run(ae_run, name, model, lambda: pytest.fail("must not refit"), config)
    assert not fresh and type(loaded) is type(fitted)
    a = fitted.sample(model, 7, generator=torch.Generator().manual_seed(9))
    b = loaded.sample(model, 7, generator=torch.Generator().manual_seed(9))
    assert a.shape == (7, *model.input_shape) and torch.equal(a, b)
    # other settings, or retrained weights: not used
    other = GMMConfig(components=4) if name == "gmm" else TwoStageConfig(hidden=(16,), epochs=3)
    assert samplers.load(ae_run, name, other) is None
    with torch.no_grad():
        next(model.parameters()).add_(0.1)
    rundir.save_model(ae_run, model)
    assert samplers.load(ae_run, name) is None


def test_conditional_models_are_refused(digits_runs, digits):
    with pytest.raises(ValueError, match="conditional"):
        samplers.fit_sampler("gmm", rundir.load(digits_runs["cvae"]), digits[0])
    with pytest.raises(ValueError, match=r"sampler='nope' cannot be fitted; allowed: \['gmm', 'two-stage'\]"):
        samplers.sampler_class("nope")


def test_cli_samples_an_autoencoder_through_a_gmm(ae_run, tmp_path):
    out = tmp_path / "gmm.png"
    r = cli("sample", ae_run, "--sampler", "gmm", "-n", "9", "--out", out)
    assert r.exit_code == 0, r.output
    assert "fitted sampler gmm" in r.output and out.stat().st_size > 0
    assert (ae_run / "samplers" / "gmm" / "sampler.safetensors").is_file()
    again = cli("sample", ae_run, "--sampler", "gmm", "-n", "9", "--out", tmp_path / "again.png")
    assert again.exit_code == 0 and "fitted" not in again.output
    assert (tmp_path / "again.png").read_bytes() == out.read_bytes()                     # stored sampler, same seed
    assert_cli_error(cli("sample", ae_run, "--out", tmp_path / "p.png"), "has no prior", "--sampler gmm")
    assert_cli_error(cli("sample", ae_run, "--sampler", "vamp", "--out", tmp_path / "p.png"),
                     "--sampler 'vamp' is not known", "prior, gmm, two-stage")


def test_report_shows_the_samples_of_a_stored_sampler_for_the_current_weights(ae_run, tmp_path):
    page = tmp_path / "r.html"
    assert cli("report", ae_run, "--out", page).exit_code == 0
    assert "Samples from a Gaussian mixture" not in page.read_text()                     # none fitted yet
    assert cli("sample", ae_run, "--sampler", "gmm", "--out", tmp_path / "g.png").exit_code == 0
    r = cli("report", ae_run, "--out", page)
    assert r.exit_code == 0, r.output
    assert page.read_text().count("Samples from a Gaussian mixture fitted to the training codes") == 1
    model = rundir.load(ae_run)
    with torch.no_grad():
        next(model.parameters()).add_(0.1)
    cfg = rundir.read_config(ae_run)
    rundir.save_model(ae_run, model, **{k: v for k, v in cfg.items() if k not in ("model", "model_config")})
    r = cli("report", ae_run, "--out", page)                                              # retrained: stale sampler
    assert r.exit_code == 0, r.output
    assert "Samples from a Gaussian mixture" not in page.read_text()


def test_eval_scores_the_samples_of_a_fitted_sampler(ae_run, tmp_path):
    """`vaelab eval --sampler gmm`: FD, sharpness and precision/recall of the GMM's samples, named in eval.json;
    for an autoencoder they beat its N(0, I) decodes (which land off the codes' region)."""
    runs = {}
    for sampler in ("prior", "gmm"):
        r = cli("eval", ae_run, "--iw-samples", "2", "--sampler", sampler, "--no-progress",
                "--cache-dir", tmp_path / "cache")
        assert r.exit_code == 0, r.output
        runs[sampler] = json.loads((ae_run / "eval.json").read_text())
    assert runs["prior"]["fd_sampler"] == "N(0, I)" and runs["gmm"]["fd_sampler"] == "gmm"
    assert runs["gmm"]["frechet_distance"] < runs["prior"]["frechet_distance"]
    assert (ae_run / "samplers" / "gmm" / "sampler.json").is_file()
    page = tmp_path / "r.html"
    assert cli("report", ae_run, "--out", page).exit_code == 0
    assert f"{runs['gmm']['frechet_distance']:.3g} (gmm)" in page.read_text()
    assert_cli_error(cli("eval", ae_run, "--sampler", "best"), "--sampler 'best' is not known", "prior, gmm")
