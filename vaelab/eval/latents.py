"""What the latent codes say: posterior means, KL per latent group, active units, a linear probe."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..data import Dataset, for_evaluation
from ..models import LatentModel, posterior_means
from .likelihood import batch_slices, chunk_generator

ACTIVE_THRESHOLD = 0.01  # Burda et al.: unit u is active when Cov_x(E_q[z_u]) > 0.01


@torch.inference_mode()
def posterior_stats(model: LatentModel, ds: Dataset, batch_size: int = 1000, kl: bool = True,
                    seed: int = 0) -> dict[str, Any]:
    """Posterior means (N, d), mean KL per latent group (G,) (None without a likelihood or ``kl``), MSE per pixel.

    A Monte Carlo KL (models without ``capabilities.closed_form_kl``) draws its noise from a generator
    seeded from (seed, first example of the batch), never from torch's global RNG."""
    y = ds.y if model.n_classes else None
    codes = posterior_means(model, ds.x, y, batch_size)                       # (N, d) on the CPU
    kl_sum, mse = None, 0.0
    for sl in batch_slices(len(ds), batch_size):
        xb = model.check_input(ds.x[sl].to(model.device))
        yb = None if y is None else y[sl].to(model.device)
        if kl and model.capabilities.likelihood:
            part = model.elbo_parts(xb, yb, generator=chunk_generator(seed, sl.start, 0))[1]
            kl_sum = part.double().sum(0).cpu() if kl_sum is None else kl_sum + part.double().sum(0).cpu()  # (G,)
        rec = model.decode(codes[sl].to(model.device), yb).mean                # = model.reconstruct(xb, yb)
        mse += float(((rec - xb) ** 2).flatten(1).mean(1).sum())
    return {"means": codes.double(), "kl_per_dim": None if kl_sum is None else kl_sum / len(ds), "recon_mse": mse / len(ds)}


def active_units(means: Tensor, threshold: float = ACTIVE_THRESHOLD) -> tuple[int, list[float]]:
    """Burda et al. 2015: unit u is active when Var_x(E_q[z_u|x]) > threshold. Returns (count, variances)."""
    var = means.double().var(0) if len(means) > 1 else torch.zeros(means.shape[1], dtype=torch.float64)
    return int((var > threshold).sum()), [float(v) for v in var]


def probe_accuracy(model: LatentModel, train: Dataset, test: Dataset, test_means: Tensor | None = None,
                   max_train: int = 10_000, seed: int = 0) -> float:
    """Test accuracy of a logistic regression on posterior means, fitted on (<= max_train of) the train split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if train.y is None or test.y is None:
        raise ValueError("probe_accuracy needs labels in both the train and the test split")
    train = for_evaluation(train)
    if len(train) > max_train:
        train = train.subset(torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:max_train])
    z_train = posterior_means(model, train.x, train.y).double().numpy()
    z_test = (test_means if test_means is not None else posterior_means(model, test.x, test.y)).double().numpy()
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(z_train, train.y.numpy())
    return float(clf.score(z_test, test.y.numpy()))
