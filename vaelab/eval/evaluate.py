"""``evaluate``: every test-set number vaelab reports, as the flat dict written to eval.json.

The pieces live next door: log p(x) by importance sampling in :mod:`vaelab.eval.likelihood`, posterior
statistics (active units, KL per group, the linear probe) in :mod:`vaelab.eval.latents`, FD_vaelab in
:mod:`vaelab.eval.features`. Their names are re-exported here.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..data import Dataset, for_evaluation
from ..fileio import finite_or_none
from ..models import LatentModel
from .features import fd_vaelab
from .latents import ACTIVE_THRESHOLD, active_units, posterior_stats, probe_accuracy
from .likelihood import (batch_log_weights, batch_slices, default_sizes, default_workers,  # noqa: F401
                         example_noise, fast_path, iwae_curve, log_likelihood)  # (re-exported)

__all__ = ["evaluate", "fast_path", "default_sizes", "example_noise", "batch_log_weights", "batch_slices",
           "default_workers", "log_likelihood", "iwae_curve", "posterior_stats", "active_units",
           "probe_accuracy", "ACTIVE_THRESHOLD"]


def evaluate(model: LatentModel, test: Dataset, train: Dataset | None = None, iw_samples: int = 1000, *,
             batch_size: int | None = None, chunk: int | None = None, seed: int = 0,
             max_examples: int | None = None, curve: Sequence[int] | None = None, fd: bool = True,
             cache_dir: str | Path | None = None, probe_max_train: int = 10_000,
             workers: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Every test-set number vaelab reports, as the flat dict written to eval.json (None: not applicable)."""
    t0 = time.perf_counter()
    if max_examples is not None:
        if max_examples < 1:
            raise ValueError(f"max_examples={max_examples} must be >= 1")
        test = test.subset(torch.arange(min(max_examples, len(test))))
    scored = for_evaluation(test)  # dynamically binarized data: one fixed draw
    model.eval()
    y = scored.y if model.n_classes else None
    stats = posterior_stats(model, scored, seed=seed)  # a Monte Carlo KL draws from its own seeded generator
    n_active, variances = active_units(stats["means"])
    out: dict[str, Any] = {
        "model": model.name, "dataset": test.info.name, "n_examples": len(test), "iw_samples": None,
        "seed": seed, "elbo": None, "recon": None, "kl": None, "nll": None, "nll_iw": None,
        "nll_exact": None, "nll_method": None, "bits_per_dim": None, "recon_mse": stats["recon_mse"],
        "active_units": n_active, "latent_dim": model.latent_dim, "posterior_mean_variance": variances,
        "kl_per_dim": None, "probe_accuracy": None, "frechet_distance": None, "fd_features": None,
        "fd_classifier_accuracy": None}
    if model.capabilities.likelihood:
        ll, elbo = log_likelihood(model, scored.x, y, iw_samples, batch_size=batch_size, chunk=chunk,
                                  seed=seed, workers=workers, progress=progress)
        kl = stats["kl_per_dim"]
        out.update(iw_samples=iw_samples, elbo=float(elbo.mean()), kl=float(kl.sum()),
                   recon=float(elbo.mean() + kl.sum()), kl_per_dim=[float(v) for v in kl],
                   nll_iw=-float(ll.mean()), nll=-float(ll.mean()), nll_method="importance-sampling")
        if model.capabilities.exact_likelihood:  # closed form (PPCA)
            with torch.inference_mode():
                exact = torch.cat([model.log_prob(scored.x[sl].to(model.device)).double().cpu()
                                   for sl in batch_slices(len(scored), 1000)])
            out.update(nll_exact=-float(exact.mean()), nll=-float(exact.mean()), nll_method="exact")
        if test.info.is_image:
            out["bits_per_dim"] = out["nll"] / (test.info.dim * math.log(2))
        if curve:
            out["iwae_curve"] = {str(k): v for k, v in iwae_curve(model, scored.x, curve, y, seed=seed,
                                                                 batch_size=batch_size, chunk=chunk).items()}
    labelled = train is not None and train.y is not None and test.y is not None
    if labelled:
        out["probe_accuracy"] = probe_accuracy(model, train, scored, stats["means"], probe_max_train, seed)
    if fd and labelled and test.info.is_image:
        out.update(fd_vaelab(model, test, train, cache_dir, seed=seed))
    out["seconds"] = time.perf_counter() - t0
    return finite_or_none(out)
