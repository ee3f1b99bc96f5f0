"""scikit-learn integration of the estimators vaelab.PCA / AE / VAE / CVAE / HVAE: fitting, transforms,
score_samples = vaelab.eval.log_likelihood, determinism through random_state, run folders back to estimators.
(scikit-learn's own check suite: test_estimator_checks.py.)"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA as SkPCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import vaelab
from vaelab.eval.likelihood import log_likelihood

SMALL = {"PCA": {}, "AE": {"hidden": (16,), "epochs": 2}, "VAE": {"hidden": (16,), "epochs": 2},
         "CVAE": {"hidden": (16,), "epochs": 2}, "HVAE": {"hidden": (16,), "epochs": 2}}
FAST = {"device": "cpu", "batch_size": 64}


@pytest.fixture(scope="module")
def Xy():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y                                  # (1797, 64) in [0, 1], (1797,)


def make(name: str, **kw):
    cls = getattr(vaelab, name)
    extra = {} if name == "PCA" else FAST
    size = {"latent_dims": (2, 1)} if name == "HVAE" else {"latent_dim": 2}
    return cls(**{**size, **SMALL[name], **extra, **kw})


@pytest.mark.parametrize("name", sorted(SMALL))
def test_clone_keeps_params_and_drops_fitted_state(Xy, name):
    est = make(name)
    params = est.get_params()
    twin = clone(est)
    assert twin is not est and twin.get_params() == params
    X, y = Xy
    assert est.fit(X[:300], y[:300]) is est, "fit must return self"
    fresh = clone(est)
    assert not hasattr(fresh, "model_")
    with pytest.raises(Exception, match="not fitted"):
        fresh.transform(X[:3])


@pytest.mark.parametrize("name", sorted(SMALL))
def test_transform_and_inverse_transform_shapes(Xy, name):
    X, y = Xy
    est = make(name).fit(X[:300], y[:300])
    labels = y[:5] if name == "CVAE" else None
    Z = est.transform(X[:5], labels)
    assert Z.shape == (5, est.model.latent_dim) and np.isfinite(Z).all()
    assert est.n_features_in_ == 64
    X_hat = est.inverse_transform(Z, labels)
    assert X_hat.shape == (5, 64) and np.isfinite(X_hat).all()
    assert np.isfinite(est.score(X[300:400], y[300:400] if name == "CVAE" else None))


def test_image_shaped_input_comes_back_image_shaped(Xy):
    X, _ = Xy
    images = X[:200].reshape(-1, 8, 8)                 # (n, H, W)
    vae = make("VAE").fit(images)
    assert vae.transform(images[:4]).shape == (4, 2)
    assert vae.inverse_transform(np.zeros((3, 2))).shape == (3, 8, 8)
    assert vae.sample(5).shape == (5, 8, 8)


def test_pipeline_vae_then_logistic_regression_beats_chance(Xy):
    X, y = Xy
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    pipe = make_pipeline(vaelab.VAE(latent_dim=8, hidden=(64,), epochs=15, lr=3e-3, device="cpu"),
                         LogisticRegression(max_iter=1000))
    assert pipe.fit(Xtr, ytr) is pipe
    acc = pipe.score(Xte, yte)
    assert acc > 0.5, acc                               # chance is 0.1


def test_pca_codes_are_scaled_principal_components(Xy):
    """PPCA's posterior mean is M^-1 W^T (x - mu): each code is a rescaled principal component."""
    X, _ = Xy
    ours = vaelab.PCA(latent_dim=3).fit(X).transform(X)
    ref = SkPCA(n_components=3).fit(X).transform(X)
    for j in range(3):
        assert abs(np.corrcoef(ours[:, j], ref[:, j])[0, 1]) > 0.9999


def test_ae_score_is_minus_mse_and_vae_score_is_an_elbo(Xy):
    X, _ = Xy
    ae = make("AE").fit(X[:300])
    mse = float(((ae.inverse_transform(ae.transform(X[:100])) - X[:100]) ** 2).mean())
    assert ae.score(X[:100]) == pytest.approx(-mse, rel=1e-4)
    vae = make("VAE").fit(X[:300])
    assert vae.score(X[:100]) < 0                       # Bernoulli ELBO of 64 pixels: negative nats


def test_cvae_samples_the_requested_class(Xy):
    X, y = Xy
    cvae = vaelab.CVAE(latent_dim=2, hidden=(64,), epochs=10, lr=3e-3, **FAST).fit(X, y)
    torch.manual_seed(0)
    threes = cvae.sample(40, y=3)
    assert threes.shape == (40, 64) and np.isfinite(threes).all()
    # a classifier trained on real digits recognises most of the generated ones
    clf = LogisticRegression(max_iter=2000).fit(X, y)
    for k in range(10):
        torch.manual_seed(k)
        assert (clf.predict(cvae.sample(40, y=k)) == k).mean() > 0.7, k
    with pytest.raises(ValueError, match="CVAE.fit needs class labels"):
        vaelab.CVAE(latent_dim=2, epochs=1).fit(X)
    with pytest.raises(ValueError, match=r"class label 10 is out of range; allowed: 0\.\.9"):
        cvae.sample(2, y=10)


def test_saved_estimator_loads_as_the_same_module(Xy, tmp_path):
    X, _ = Xy
    vae = make("VAE").fit(X[:300])
    vae.save(tmp_path / "run")
    model = vaelab.load(tmp_path / "run")
    z = model.encode(torch.as_tensor(X[:5], dtype=torch.float32)).mean.detach().numpy()
    np.testing.assert_array_equal(z, vae.transform(X[:5]))


def test_training_is_reproducible_with_a_seed(Xy):
    X, _ = Xy
    a = make("VAE", random_state=3).fit(X[:300]).transform(X[:10])
    b = make("VAE", random_state=3).fit(X[:300]).transform(X[:10])
    np.testing.assert_array_equal(a, b)
    c = make("VAE", random_state=4).fit(X[:300]).transform(X[:10])
    assert not np.array_equal(a, c)


# -- score_samples, score, random_state ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["VAE", "HVAE"])
def test_score_samples_is_deterministic_and_equals_log_likelihood(Xy, name):
    X, _ = Xy
    est = make(name, random_state=5, score_k=40).fit(X[:300])
    a, b = est.score_samples(X[300:340]), est.score_samples(X[300:340])
    assert a.shape == (40,) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    ref, _ = log_likelihood(est.model, torch.as_tensor(X[300:340], dtype=torch.float32), k=40, seed=5)
    np.testing.assert_array_equal(a, ref.numpy())
    assert est.score(X[300:340]) == float(np.mean(a))
    other = est.set_params(random_state=6).score_samples(X[300:340])  # other importance samples, same model
    assert not np.array_equal(a, other)
    # more importance samples tighten the bound: IWAE_1 (an ELBO) < IWAE_200 on average
    assert est.set_params(score_k=1).score(X[300:340]) < est.set_params(score_k=200).score(X[300:340])


def test_pca_score_samples_is_the_exact_log_likelihood(Xy):
    X, _ = Xy
    ours = vaelab.PCA(latent_dim=3).fit(X[:1000])
    ref = SkPCA(n_components=3).fit(X[:1000])
    np.testing.assert_allclose(ours.score_samples(X[1000:1100]), ref.score_samples(X[1000:1100]), rtol=1e-4, atol=1e-3)


def test_ae_has_no_score_samples(Xy):
    X, _ = Xy
    ae = make("AE").fit(X[:200])
    assert not hasattr(ae, "score_samples")  # no likelihood p(x); score is minus the MSE


def test_grid_search_over_latent_dim_picks_the_same_twice(Xy):
    X, _ = Xy
    est = vaelab.VAE(hidden=(16,), epochs=3, batch_size=64, lr=3e-3, score_k=20, device="cpu")

    def search():
        return GridSearchCV(est, {"latent_dim": [1, 2, 4]}, cv=KFold(2)).fit(X[:400])

    first, second = search(), search()
    assert first.best_params_ == second.best_params_
    np.testing.assert_array_equal(first.cv_results_["mean_test_score"], second.cv_results_["mean_test_score"])
    assert np.isfinite(first.cv_results_["mean_test_score"]).all()


def test_sample_random_state_makes_draws_reproducible(Xy):
    X, _ = Xy
    vae = make("VAE").fit(X[:200])
    a, b = vae.sample(4, random_state=0), vae.sample(4, random_state=0)
    assert a.shape == (4, 64)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, vae.sample(4, random_state=1))


def test_fit_leaves_the_global_torch_rng_alone(Xy):
    X, _ = Xy
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    make("VAE").fit(X[:100])
    torch.testing.assert_close(torch.rand(3), expected)


# -- the likelihood that fits the data ----------------------------------------------------------------------
def test_likelihood_auto_is_decided_at_fit_from_the_data(Xy):
    X, y = Xy
    unit = make("VAE").fit(X[:200])
    assert unit.likelihood_ == "bernoulli" and unit.get_params()["likelihood"] == "auto"
    pipe = make_pipeline(StandardScaler(), make("VAE")).fit(X[:200])     # values outside [0, 1]
    vae = pipe[-1]
    assert vae.likelihood_ == "gaussian" and vae.get_params()["likelihood"] == "auto"
    assert vae.model.config.likelihood == "gaussian" and np.isfinite(pipe.score(X[200:300]))
    with pytest.raises(ValueError, match=r"likelihood='bernoulli' needs data in \[0, 1\]"):
        make("VAE", likelihood="bernoulli").fit(StandardScaler().fit_transform(X[:200]))


# -- run folders back to estimators --------------------------------------------------------------------------
def test_load_estimator_round_trip(Xy, tmp_path):
    X, _ = Xy
    vae = make("VAE", random_state=7, lr=2e-3, score_k=30).fit(X[:300])
    vae.save(tmp_path / "run")
    back = vaelab.load_estimator(tmp_path / "run")
    assert type(back) is vaelab.VAE
    np.testing.assert_array_equal(back.transform(X[:5]), vae.transform(X[:5]))
    np.testing.assert_array_equal(back.score_samples(X[:20]), vae.score_samples(X[:20]))
    params, saved = vae.get_params(), back.get_params()
    assert saved.pop("likelihood") == "bernoulli" and params.pop("likelihood") == "auto"  # the resolved one
    assert saved == params


@pytest.mark.parametrize("model", ["pca", "vae", "ae"])
def test_load_estimator_of_a_cli_run(digits_runs, Xy, model):
    X, _ = Xy
    est = vaelab.load_estimator(digits_runs[model])
    assert est.model_name == model and est.n_features_in_ == 64
    Z = est.transform(X[:6])                                             # flat rows for a (1, 8, 8) model
    np.testing.assert_allclose(Z, vaelab.load(digits_runs[model]).encode(
        torch.as_tensor(X[:6], dtype=torch.float32).reshape(-1, 1, 8, 8)).mean.detach().numpy(), rtol=1e-6)
    assert est.inverse_transform(Z).shape == (6, 1, 8, 8)
    if model != "ae":
        assert np.isfinite(est.score_samples(X[:10])).all()
