"""Test-set evaluation: importance-sampled log-likelihood, ELBO terms, latent statistics, FD_vaelab."""
from .evaluate import evaluate  # noqa: F401
from .likelihood import fast_path, iwae_curve, log_likelihood  # noqa: F401
