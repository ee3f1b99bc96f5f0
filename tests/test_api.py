"""scikit-learn integration of the estimators vaelab.PCA / AE / VAE / CVAE."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA as SkPCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

import vaelab

SMALL = {"PCA": {}, "AE": {"hidden": (16,), "epochs": 2}, "VAE": {"hidden": (16,), "epochs": 2},
         "CVAE": {"hidden": (16,), "epochs": 2}}
FAST = {"device": "cpu", "batch_size": 64}


@pytest.fixture(scope="module")
def Xy():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y                                  # (1797, 64) in [0, 1], (1797,)


def make(name: str, **kw):
    cls = getattr(vaelab, name)
    extra = {} if name == "PCA" else FAST
    return cls(latent_dim=2, **SMALL[name], **extra, **kw)


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
    assert Z.shape == (5, 2) and np.isfinite(Z).all()
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
    a = make("VAE", seed=3).fit(X[:300]).transform(X[:10])
    b = make("VAE", seed=3).fit(X[:300]).transform(X[:10])
    np.testing.assert_array_equal(a, b)
