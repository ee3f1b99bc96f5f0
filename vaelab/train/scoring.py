"""Checks at the data boundary and the validation scores ``fit`` logs each epoch."""
from __future__ import annotations

import math
from typing import Any

import torch

from ..data import Dataset, for_evaluation
from ..distributions import get_likelihood
from ..models import LatentModel


def check_data_for_model(model: LatentModel, ds: Dataset) -> None:
    """Boundary checks: shapes, labels for conditional models, [0, 1] for Bernoulli."""
    model.check_input(ds.take(1))  # (not ds.x: a uint8 training set is never converted whole)
    lik = getattr(model.config, "likelihood", None)
    lo, hi = ds.value_range() if lik and get_likelihood(lik).needs_unit_interval else (0.0, 1.0)
    if lo < 0 or hi > 1:
        raise ValueError(f"likelihood={lik!r} needs data in [0, 1]; data {ds.info.name!r} spans "
                         f"[{lo:.3g}, {hi:.3g}]: use likelihood='gaussian'")
    if model.n_classes:
        if ds.y is None:
            raise ValueError(f"model {model.name!r} is conditional but data {ds.info.name!r} has no labels")
        if int(ds.y.max()) >= model.n_classes:
            raise ValueError(f"label {int(ds.y.max())} is out of range for n_classes={model.n_classes}")


@torch.no_grad()
def score(model: LatentModel, ds: Dataset, batch_size: int = 1000) -> dict[str, float]:
    """Mean ELBO, recon, KL (nats/example, one posterior sample) and recon MSE per pixel on ``ds``, plus the
    model's own latent statistics (``latent_stats``, e.g. VQ codebook usage) of its first batch."""
    model.eval()
    ds = for_evaluation(ds)
    sums = {"elbo": 0.0, "recon": 0.0, "kl": 0.0, "mse": 0.0}
    stats: dict[str, float] = {}
    for i, (xb, yb) in enumerate(ds.batches(batch_size, shuffle=False, device=model.device)):
        if i == 0:
            stats = model.latent_stats(xb)
        recon, kl = model.elbo_parts(xb, yb)
        kl = kl.sum(-1)
        sums["recon"] += float(recon.sum())
        sums["kl"] += float(kl.sum())
        sums["elbo"] += float((recon - kl).sum())
        sums["mse"] += float(((model.reconstruct(xb, yb) - xb) ** 2).flatten(1).mean(1).sum())
    out = {k: v / len(ds) for k, v in sums.items()}
    if not model.has_likelihood:
        out = {"mse": out["mse"]}
    return {**out, **stats}


def scores_finite(model: LatentModel, row: dict[str, Any], probe: Dataset | None) -> bool:
    """True when the epoch's validation scores (or, given ``probe``, scores on up to 1000 of its examples)
    are finite: a model that gives NaN/Inf is never checkpointed over the last good one."""
    values = [v for k, v in row.items() if k.startswith("val_")]
    if probe is not None:
        values += list(score(model, probe.subset(torch.arange(min(len(probe), 1000)))).values())
    return all(math.isfinite(v) for v in values)
