"""Sample quality beside FD_vaelab: how sharp samples are, and how much of the data they cover.

Sharpness (per image, then the mean over images with its standard error sd / sqrt(n)):
- ``laplacian_variance``: the variance over pixels of the image's Laplacian (``scipy.ndimage.laplace``, each
  channel on its own 2-D grid, channels averaged). Blur removes high frequencies, so a blurred image scores lower.
- ``gradient_energy``: the mean over pixels of the squared forward differences, (dI/dx)^2 + (dI/dy)^2.
Both are reported for prior samples and for test images and as the ratio samples / test (1: as sharp as
the data; below 1: blurrier). Samples are the decoded means (``features.generate`` without binarizing).

Precision and recall for generative models (Kynkäänniemi et al. 2019): in the feature space of FD_vaelab's
classifier (``features.feature_net``), each real point gets a ball reaching its k-th nearest real neighbour
(the real manifold), each sample one reaching its k-th nearest sample. Precision: the fraction of samples
inside some real ball (are samples realistic?); recall: the fraction of real points inside some sample ball
(is the data covered?). Both in [0, 1]; k = 3 as in the paper; n real and n generated points.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import Dataset
from ..models import LatentModel
from ..samplers import Sampler
from .features import fd_scores, sample_set

PR_K = 3  # neighbours per ball (Kynkäänniemi et al. 2019)


def _planes(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Images (N, C, H, W) or (N, H, W) -> float64 (N, C, H, W)."""
    a = np.asarray(images.detach().cpu() if isinstance(images, torch.Tensor) else images, dtype=np.float64)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or a.shape[-1] < 2 or a.shape[-2] < 2:
        raise ValueError(f"sharpness needs images (N, C, H, W) or (N, H, W) at least 2x2; got shape {a.shape}")
    return a


def laplacian_variance(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per image: Var over pixels of the Laplacian of each channel, averaged over channels: (N,)."""
    from scipy import ndimage

    a = _planes(images)
    flat = a.reshape(-1, *a.shape[-2:])                                    # (N*C, H, W)
    var = np.array([ndimage.laplace(plane).var() for plane in flat])       # (N*C,)
    return var.reshape(a.shape[:2]).mean(1)


def gradient_energy(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per image: mean over pixels of (dI/dx)^2 + (dI/dy)^2 (forward differences), channels averaged: (N,)."""
    a = _planes(images)
    dx = np.diff(a, axis=-1) ** 2                                          # (N, C, H, W-1)
    dy = np.diff(a, axis=-2) ** 2                                          # (N, C, H-1, W)
    return dx.mean((1, 2, 3)) + dy.mean((1, 2, 3))


def mean_se(values: np.ndarray) -> tuple[float, float]:
    """Mean and its standard error sd / sqrt(n) (NaN for n < 2)."""
    n = len(values)
    se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return float(values.mean()), se


def sharpness(samples: np.ndarray | torch.Tensor, test: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Laplacian variance and gradient energy of samples and test images: means, standard errors, ratios."""
    out: dict[str, float] = {}
    for name, fn in (("sharpness", laplacian_variance), ("gradient_energy", gradient_energy)):
        s, s_se = mean_se(fn(samples))
        t, t_se = mean_se(fn(test))
        out.update({f"{name}_samples": s, f"{name}_samples_se": s_se, f"{name}_test": t,
                    f"{name}_test_se": t_se, f"{name}_ratio": s / t if t > 0 else math.nan})
    return out


def _radii(points: np.ndarray, k: int) -> np.ndarray:
    """Distance of each point to its k-th nearest other point of the same set: (N,)."""
    from sklearn.neighbors import NearestNeighbors

    if not 1 <= k < len(points):
        raise ValueError(f"k={k} must be >= 1 and below the number of points ({len(points)})")
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)  # column 0: the point itself
    return dist[:, k]


def _inside(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """For each query: is it within radii[j] of some centre j? (M,) bool, in chunks of the distance matrix."""
    from sklearn.metrics import pairwise_distances_chunked

    hits = [(d <= radii[None, :]).any(1) for d in pairwise_distances_chunked(queries, centres)]
    return np.concatenate(hits) if hits else np.zeros(0, dtype=bool)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = PR_K) -> dict[str, float]:
    """Kynkäänniemi et al. 2019 precision and recall of feature sets real (N, F) and fake (M, F), k-NN balls."""
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"precision_recall needs two (N, F) arrays with the same F; got {real.shape}, {fake.shape}")
    precision = float(_inside(fake, real, _radii(real, k)).mean())
    recall = float(_inside(real, fake, _radii(fake, k)).mean())
    return {"precision": precision, "recall": recall, "pr_k": k, "pr_n_real": len(real), "pr_n_samples": len(fake)}


def sample_quality(model: LatentModel, test: Dataset, train: Dataset, cache_dir: str | Path | None = None,
                   max_samples: int = 10_000, seed: int = 0, k: int = PR_K,
                   sampler: Sampler | None = None) -> dict[str, Any]:
    """eval.json's sample block: FD_vaelab (``features.fd_scores``), sharpness of the samples vs test images,
    and precision / recall in FD_vaelab's feature space, over min(len(test), max_samples) test images and as
    many samples, all from one generated and featurized set (``features.sample_set``)."""
    s = sample_set(model, test, train, cache_dir, max_samples, seed, sampler)
    out: dict[str, Any] = {**fd_scores(s), "quality_n": len(s.real)}
    if test.info.is_image:
        out.update(sharpness(s.means, s.real.x))
    out.update(precision_recall(s.f_real, s.f_fake, k))
    out["pr_features"] = f"FD_vaelab:{s.name}"
    return out
