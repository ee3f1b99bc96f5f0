"""``evaluate``: every test-set number vaelab reports, as the flat dict written to eval.json.

The pieces live next door: log p(x) by importance sampling in :mod:`vaelab.eval.likelihood`, posterior
statistics (active units, KL per group, the linear probe) in :mod:`vaelab.eval.latents`, FD_vaelab in
:mod:`vaelab.eval.features`, MIG and DCI (data with ground-truth factors) in :mod:`vaelab.eval.disentangle`.
Their names are re-exported here.

eval.json's likelihood numbers (keys):
- ``scale`` discrete | density | cross-entropy, ``levels`` (discrete: values per dimension), ``dequantized``
  (a density turned into a bound on the discrete probability), ``scale_label`` (the same, for people).
- ``nll`` (nats per example) with ``nll_se``, its Monte Carlo standard error given the test set; ``nll_iw``
  / ``nll_iw_se`` the importance-sampling estimate; ``ess`` / ``ess_min`` the mean / smallest per-example
  effective sample size of the K importance weights (Kish: (sum w)^2 / sum w^2, between 1 and K).
- ``bits_per_dim`` (and ``bits_per_dim_se``) = nll / (D ln 2), only on the discrete scale.
- ``kl_estimated``: True when the KL is a one-sample Monte Carlo estimate; ``kl_se`` its standard error.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..data import Dataset, for_evaluation
from ..distributions import Scale, grid_levels, likelihood_scale
from ..fileio import finite_or_none
from ..models import LatentModel
from ..samplers import Sampler
from .disentangle import disentanglement
from .quality import sample_quality
from .latents import ACTIVE_THRESHOLD, active_units, posterior_stats, probe_accuracy
from .likelihood import (UniformNoise, batch_log_weights, batch_slices, chunk_generator, default_sizes,  # noqa: F401
                         default_workers, dequantize, example_noise, fast_path, iwae_curve, log_likelihood,
                         log_likelihood_estimate)  # (re-exported)

__all__ = ["evaluate", "fast_path", "default_sizes", "example_noise", "batch_log_weights", "batch_slices",
           "default_workers", "log_likelihood", "iwae_curve", "posterior_stats", "active_units",
           "probe_accuracy", "ACTIVE_THRESHOLD", "log_likelihood_estimate", "model_scale", "data_levels"]


DEQUANT_DRAWS = 16  # u draws per example for an exact density's dequantized bound E_u[log p((k + u) / L)]


def data_levels(ds: Dataset) -> int | None:
    """Values per dimension of the data (DataInfo.levels when declared, else read off the values)."""
    return ds.info.levels or grid_levels(ds.x)


def model_scale(model: LatentModel, ds: Dataset, dequantize: bool | None = None) -> Scale | None:
    """The scale of the model's log p(x) on ``ds`` (None: the model has no likelihood)."""
    name = model.likelihood_name
    return None if name is None else likelihood_scale(name, data_levels(ds), dequantize)


@torch.inference_mode()
def exact_log_px(model: LatentModel, x: torch.Tensor, levels: int | None = None, seed: int = 0,
                 batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example: log p(x) in closed form and its Monte Carlo standard error (0), float64 (N,) each.

    ``levels``: the dequantized bound E_u[log p((k + u) / L)] - D log L instead, estimated with
    DEQUANT_DRAWS draws of u per example (``likelihood.UniformNoise``), with its standard error."""
    vals, ses = [], []
    for sl in batch_slices(len(x), batch_size):
        xb = x[sl].to(model.device)
        if levels is None:
            vals.append(model.log_prob(xb).double().cpu())
            ses.append(torch.zeros(len(xb), dtype=torch.float64))
            continue
        u = UniformNoise(torch.arange(sl.start, sl.stop), tuple(xb.shape[1:]), seed).next(DEQUANT_DRAWS)
        yd = dequantize(xb.unsqueeze(1), u.to(xb.device, xb.dtype), levels)         # (B, S, *shape)
        lp = model.log_prob(yd.reshape(-1, *xb.shape[1:])).double().cpu().reshape(len(xb), -1)  # (B, S)
        lp = lp - math.prod(xb.shape[1:]) * math.log(levels)
        vals.append(lp.mean(1))
        ses.append(lp.std(1) / math.sqrt(DEQUANT_DRAWS))
    return torch.cat(vals), torch.cat(ses)


def kl_estimate(model: LatentModel, ds: Dataset, seed: int = 0, batch_size: int = 1000) -> tuple[float, float]:
    """A Monte Carlo KL (models without ``capabilities.closed_form_kl``): the mean over examples of the
    one-sample total rate and its standard error sd / sqrt(N), with the draws ``posterior_stats`` uses
    (the same mean). The SE also holds the spread between examples: an upper bound on the Monte Carlo part."""
    y = ds.y if model.n_classes else None
    totals = []
    with torch.inference_mode():
        for sl in batch_slices(len(ds), batch_size):
            xb = model.check_input(ds.x[sl].to(model.device))
            yb = None if y is None else y[sl].to(model.device)
            rate = model.elbo_parts(xb, yb, generator=chunk_generator(seed, sl.start, 0))[1]
            totals.append(rate.double().sum(-1).cpu())
    t = torch.cat(totals)
    return float(t.mean()), float(t.std() / math.sqrt(len(t))) if len(t) > 1 else float("nan")


def likelihood_numbers(model: LatentModel, scored: Dataset, y: torch.Tensor | None, iw_samples: int,
                       scale: Scale, kl: torch.Tensor, *, seed: int = 0, **opts: Any) -> dict[str, Any]:
    """The likelihood block of eval.json: NLL with its Monte Carlo SE and ESS, ELBO terms, bits/dim if discrete.

    ``kl`` (G,): mean KL per latent group from ``posterior_stats``; ``opts``: batch_size, chunk, workers,
    progress for ``log_likelihood_estimate``."""
    levels = scale.levels if scale.dequantized else None
    est = log_likelihood_estimate(model, scored.x, y, iw_samples, seed=seed, levels=levels, **opts)
    out: dict[str, Any] = {
        "scale": scale.kind, "levels": scale.levels, "dequantized": scale.dequantized, "scale_label": scale.label,
        "iw_samples": iw_samples, "elbo": float(est.elbo.mean()), "kl": float(kl.sum()),
        "recon": float(est.elbo.mean() + kl.sum()), "kl_per_dim": [float(v) for v in kl],
        "kl_estimated": not model.capabilities.closed_form_kl, "kl_se": None,
        "nll_iw": -float(est.log_px.mean()), "nll_iw_se": est.mean_se(), "ess": float(est.ess.mean()),
        "ess_min": float(est.ess.min()) if len(est.ess) else None,
        "nll": -float(est.log_px.mean()), "nll_se": est.mean_se(),
        "nll_method": "dequantized-importance-sampling" if levels else "importance-sampling"}
    if model.capabilities.exact_likelihood:  # closed form (PPCA); dequantized: Monte Carlo over u
        exact, se = exact_log_px(model, scored.x, levels, seed)
        mean_se = float(se.square().sum().sqrt() / max(1, len(se)))
        out.update(nll_exact=-float(exact.mean()), nll=-float(exact.mean()), nll_se=mean_se,
                   nll_method="dequantized-exact" if levels else "exact")
    if out["kl_estimated"]:
        out["kl_se"] = kl_estimate(model, scored, seed)[1]
    if scale.kind == "discrete":
        out["bits_per_dim"] = out["nll"] / (scored.info.dim * math.log(2))
        out["bits_per_dim_se"] = out["nll_se"] / (scored.info.dim * math.log(2))
    return out


def evaluate(model: LatentModel, test: Dataset, train: Dataset | None = None, iw_samples: int = 1000, *,
             batch_size: int | None = None, chunk: int | None = None, seed: int = 0,
             max_examples: int | None = None, curve: Sequence[int] | None = None, fd: bool = True,
             cache_dir: str | Path | None = None, probe_max_train: int = 10_000,
             workers: int | None = None, progress: bool = False, dequantize: bool | None = None,
             sampler: Sampler | None = None) -> dict[str, Any]:
    """Every test-set number vaelab reports, as the flat dict written to eval.json (None: not applicable).

    FD_vaelab, sharpness and precision/recall score the model's prior samples, or ``sampler``'s (a fitted
    ``vaelab.samplers`` density over the codes); ``fd_sampler`` names which.

    Every likelihood number (elbo, recon, nll*, iwae_curve, bits_per_dim) is on the one scale named by
    ``scale`` / ``levels`` / ``dequantized`` (``distributions.Scale``); bits/dim only on a discrete scale.
    ``dequantize``: None (auto) scores a density on data with levels by uniform dequantization, a lower
    bound on the discrete log-probability; False keeps the density; True requires it."""
    t0 = time.perf_counter()
    if max_examples is not None:
        if max_examples < 1:
            raise ValueError(f"max_examples={max_examples} must be >= 1")
        test = test.subset(torch.arange(min(max_examples, len(test))))
    scored = for_evaluation(test)  # dynamically binarized data: one fixed draw
    model.eval()
    y = scored.y if model.n_classes else None
    scale = model_scale(model, scored, dequantize)
    stats = posterior_stats(model, scored, seed=seed)  # a Monte Carlo KL draws from its own seeded generator
    n_active, variances = active_units(stats["means"])
    out: dict[str, Any] = {
        "model": model.name, "dataset": test.info.name, "n_examples": len(test), "iw_samples": None,
        "seed": seed, "scale": None, "levels": None, "dequantized": None, "scale_label": None,
        "elbo": None, "recon": None, "kl": None, "kl_estimated": None, "kl_se": None,
        "nll": None, "nll_se": None, "nll_iw": None, "nll_iw_se": None, "ess": None, "ess_min": None,
        "nll_exact": None, "nll_method": None, "bits_per_dim": None, "bits_per_dim_se": None,
        "recon_mse": stats["recon_mse"], "active_units": n_active, "latent_dim": model.latent_dim,
        "posterior_mean_variance": variances, "kl_per_dim": None, "probe_accuracy": None,
        "frechet_distance": None, "fd_features": None, "fd_sampler": None, "fd_classifier_accuracy": None}
    if scale is not None:
        out.update(likelihood_numbers(model, scored, y, iw_samples, scale, stats["kl_per_dim"], seed=seed,
                                      batch_size=batch_size, chunk=chunk, workers=workers, progress=progress))
        if curve:
            levels = scale.levels if scale.dequantized else None
            out["iwae_curve"] = {str(k): v for k, v in iwae_curve(model, scored.x, curve, y, seed=seed,
                                                                 batch_size=batch_size, chunk=chunk,
                                                                 levels=levels).items()}
    out["latent_stats"] = model.latent_stats(scored.x) or None  # e.g. vqvae: codebook usage, perplexity
    if scored.factors is not None:  # data with ground-truth factors (shapes): MIG and DCI of the posterior means
        out.update(disentanglement(stats["means"].numpy(), scored.factors.numpy(), scored.factor_names, seed))
    labelled = train is not None and train.y is not None and test.y is not None
    if labelled:
        out["probe_accuracy"] = probe_accuracy(model, train, scored, stats["means"], probe_max_train, seed)
    if fd and labelled and test.info.is_image:
        out.update(sample_quality(model, test, train, cache_dir, seed=seed, sampler=sampler))  # FD, sharpness, P/R
    out["seconds"] = time.perf_counter() - t0
    return finite_or_none(out)
