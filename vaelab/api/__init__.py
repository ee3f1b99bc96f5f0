"""scikit-learn estimators: ``vaelab.VAE(latent_dim=2, epochs=20).fit(X)`` returns self.

``transform`` gives posterior means, ``inverse_transform`` decoded means, ``score_samples`` log p(x) per
example (exact for PCA, importance-sampled with ``score_k`` samples otherwise), ``score`` its mean
(minus the MSE per pixel for the autoencoder, which has no likelihood), ``sample(n, random_state=)``
prior draws. ``random_state`` seeds fitting and scoring. ``load_estimator(run)`` reads a run folder back.
They work in a ``sklearn.pipeline.Pipeline`` and pass ``sklearn.utils.estimator_checks``.

Modules: ``params`` (parameters from the configs), ``estimator`` (the class), ``factory`` (one class per
registered model, run folders back to estimators).
"""
from .estimator import Estimator
from .factory import estimator, load_estimator
from .params import parameters, resolve_likelihood

__all__ = ["AE", "CVAE", "Estimator", "HVAE", "PCA", "VAE", "estimator", "load_estimator", "parameters",
           "resolve_likelihood"]

PCA = estimator("pca", "PCA", "Probabilistic PCA; ``score_samples`` is the exact log-likelihood per example "
                              "(scikit-learn's ``PCA.score_samples``).")
AE = estimator("ae", "AE", "Deterministic autoencoder; ``score`` is minus the mean squared error per pixel "
                           "(no likelihood: no ``score_samples``).")
VAE = estimator("vae", "VAE", "Variational autoencoder with a Gaussian posterior; ``likelihood='auto'`` picks "
                              "Bernoulli for X in [0, 1], Gaussian otherwise; ``score_samples`` is log p(x) "
                              "by importance sampling.")
CVAE = estimator("cvae", "CVAE", "Conditional VAE: ``fit(X, y)`` with class labels; ``sample(n, y=3)`` "
                                 "draws class 3.")
HVAE = estimator("hvae", "HVAE", "Hierarchical (ladder) VAE with stochastic layers ``latent_dims``, bottom "
                                 "first; ``transform`` gives the concatenated posterior means.")
