"""Disentanglement against known generative factors (data such as ``shapes`` that carry ``Dataset.factors``).

- MIG, the mutual information gap (Chen et al. 2018): each latent (the posterior mean, over the examples) is
  cut into ``BINS`` = 20 equal-width bins; I(z_j; v_k) by ``sklearn.metrics.mutual_info_score`` (nats) for
  every latent j and factor k; per factor the gap between the largest and the second largest I(z_j; v_k),
  divided by the factor's entropy H(v_k); MIG is the mean over factors. 1: each factor is captured by exactly
  one latent; 0: by none, or by several equally.
- DCI (Eastwood & Williams 2018): one classifier per factor predicts the factor's value from all latents;
  the importances R (d, F) are the ``feature_importances_`` (mean impurity decrease) of a scikit-learn
  ``RandomForestClassifier`` (random forests as in Eastwood & Williams; disentanglement_lib's gradient-boosted
  trees are ~10x slower here) of ``TREES`` trees, every split choosing among all latents (else importance
  leaks to latents drawn at random) and leaves of at least ``MIN_LEAF`` examples, fitted on ``FIT_FRACTION``
  of the examples (at most ``MAX_EXAMPLES``). Disentanglement: 1 - H_F(P_j.) per latent (P_j. its
  importances normalised over factors, entropy in base F), averaged with weights sum_k R_jk / sum R.
  Completeness: 1 - H_d(P_.k) per factor (normalised over latents, base d), averaged over factors.
  Informativeness: the classifiers' accuracy on the held-out examples, averaged over factors (chance is
  1 / values of the factor).

Factors taking a single value in the examples carry no information and are left out of every number.
Pure functions of arrays; :func:`disentanglement` gives the eval.json block.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BINS = 20            # equal-width bins per latent for MIG's mutual information (Chen et al. 2018)
FIT_FRACTION = 2 / 3  # share of the examples the DCI classifiers are fitted on; the rest scores informativeness
MAX_EXAMPLES = 5000  # examples the DCI classifiers use at most (a fixed random subset)
TREES = 30           # trees per DCI random forest
MIN_LEAF = 10        # examples per leaf at least (fully grown trees also split on noise and spread importance)


def _check(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, factors = np.asarray(codes, dtype=np.float64), np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors) or len(codes) < 2:
        raise ValueError(f"codes (N, d) and factors (N, F) must have the same N >= 2 rows; got shapes "
                         f"{codes.shape} and {factors.shape}")
    if not np.isfinite(codes).all():
        raise ValueError("codes contain NaN/Inf; allowed: finite numbers only")
    return codes, factors


def discretize(codes: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Each column of codes (N, d) as its bin index among ``bins`` equal-width bins of its range: (N, d) int."""
    out = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, j], bins)
        out[:, j] = np.digitize(codes[:, j], edges[1:-1])
    return out


def mutual_info_matrix(codes: np.ndarray, factors: np.ndarray, bins: int = BINS) -> np.ndarray:
    """I(z_j; v_k) in nats of the discretized latents and the factors: (d, F)."""
    from sklearn.metrics import mutual_info_score

    codes, factors = _check(codes, factors)
    binned = discretize(codes, bins)
    return np.array([[mutual_info_score(factors[:, k], binned[:, j]) for k in range(factors.shape[1])]
                     for j in range(codes.shape[1])])


def entropies(factors: np.ndarray) -> np.ndarray:
    """H(v_k) in nats of each factor column (F,), from its empirical frequencies."""
    from sklearn.metrics import mutual_info_score

    return np.array([mutual_info_score(f, f) for f in np.asarray(factors).T])


def _varying(factors: np.ndarray) -> np.ndarray:
    keep = np.array([len(np.unique(f)) > 1 for f in factors.T])
    if not keep.any():
        raise ValueError("every factor takes a single value in these examples: nothing to disentangle")
    return keep


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = BINS) -> tuple[float, np.ndarray]:
    """MIG (mean over the factors that vary) and the normalised gap per factor (F,), NaN for constant ones."""
    codes, factors = _check(codes, factors)
    keep = _varying(factors)
    mi = mutual_info_matrix(codes, factors, bins)                      # (d, F)
    top = -np.sort(-np.vstack([mi, np.zeros((1, mi.shape[1]))]), axis=0)  # (d + 1, F), descending
    gap = np.full(factors.shape[1], np.nan)
    gap[keep] = (top[0, keep] - top[1, keep]) / entropies(factors)[keep]
    return float(gap[keep].mean()), gap


def importance_matrix(codes: np.ndarray, factors: np.ndarray, seed: int = 0,
                      max_examples: int = MAX_EXAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """DCI's importances R (d, F) (each column sums to 1; zero for constant factors) and the held-out accuracy
    per factor (F,) (NaN for constant factors) of random forests predicting each factor from the codes."""
    from sklearn.ensemble import RandomForestClassifier

    codes, factors = _check(codes, factors)
    keep = _varying(factors)
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(codes))[:max_examples]
    cut = max(1, min(len(rows) - 1, int(round(FIT_FRACTION * len(rows)))))
    fit, held = rows[:cut], rows[cut:]
    r = np.zeros((codes.shape[1], factors.shape[1]))
    acc = np.full(factors.shape[1], np.nan)
    for k in np.flatnonzero(keep):
        if len(np.unique(factors[fit, k])) < 2:
            raise ValueError(f"factor {k} takes one value among the {len(fit)} examples the classifiers fit: "
                             "too few examples")
        clf = RandomForestClassifier(TREES, max_features=None, min_samples_leaf=MIN_LEAF, random_state=seed,
                                     n_jobs=1).fit(codes[fit], factors[fit, k])
        r[:, k] = clf.feature_importances_
        acc[k] = clf.score(codes[held], factors[held, k])
    return r, acc


def _entropy_base(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy of each row of p (rows sum to 1) in base ``base`` (0 log 0 = 0)."""
    logs = np.log(np.where(p > 0, p, 1.0)) / np.log(base)
    return -(p * logs).sum(-1)


def dci_scores(r: np.ndarray) -> tuple[float, float]:
    """(disentanglement, completeness) of an importance matrix R (d, F), over its non-zero columns."""
    r = np.abs(np.asarray(r, dtype=np.float64))
    r = r[:, r.sum(0) > 0]
    d, f = r.shape
    if f == 0 or r.sum() == 0:
        raise ValueError("the importance matrix is all zeros")
    rows = r.sum(1)
    p_rows = r[rows > 0] / rows[rows > 0, None]                       # (d', F) over factors
    dis = 1.0 - _entropy_base(p_rows, f) if f > 1 else np.ones(len(p_rows))
    weights = rows[rows > 0] / rows.sum()
    p_cols = (r / r.sum(0)).T                                        # (F, d) over latents
    comp = 1.0 - _entropy_base(p_cols, d) if d > 1 else np.ones(f)
    return float((weights * dis).sum()), float(comp.mean())


def disentanglement(codes: np.ndarray, factors: np.ndarray, names: Sequence[str], seed: int = 0) -> dict[str, Any]:
    """eval.json's disentanglement block for posterior means ``codes`` (N, d) of examples with ground-truth
    factor indices ``factors`` (N, F) named ``names``."""
    codes, factors = _check(codes, factors)
    if len(names) != factors.shape[1]:
        raise ValueError(f"{len(names)} factor names for {factors.shape[1]} factors")
    score, gaps = mig(codes, factors)
    r, acc = importance_matrix(codes, factors, seed)
    dis, comp = dci_scores(r)
    keep = _varying(factors)
    return {
        "mig": score, "mig_per_factor": {n: float(g) for n, g, k in zip(names, gaps, keep) if k},
        "dci_disentanglement": dis, "dci_completeness": comp,
        "dci_informativeness": float(np.nanmean(acc)),
        "dci_informativeness_per_factor": {n: float(a) for n, a, k in zip(names, acc, keep) if k},
        "disentanglement_examples": len(codes), "dci_estimator": f"random forest ({TREES} trees, min leaf {MIN_LEAF})",
    }
