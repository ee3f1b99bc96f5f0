"""Test-set evaluation: NLL by importance sampling, ELBO terms, bits/dim, active units, probes, FD_vaelab.

``log p(x)`` is estimated with the IWAE bound (Burda et al. 2015) on K samples from q(z|x):

    log p(x) >= log (1/K) sum_k p(x, z_k) / q(z_k|x),   z_k ~ q(z|x)

computed as a streaming log-sum-exp over chunks of samples and batches of examples, so memory stays
bounded for any K. The noise for example i is a fixed function of (seed, i), so the result does not
depend on the batch or chunk sizes. Models that keep the base-class ``log_weights`` take a fast exact
path: the encoder runs once per batch, a batch x chunk of samples is one decoder call, and a Bernoulli
likelihood is ``x . logits - sum softplus(logits)`` (one batched matmul, no copies of x). Models that
override ``log_weights`` (e.g. hierarchical ones) are called through it, chunk by chunk.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from ..data import Dataset, for_evaluation
from ..models import LatentModel

LOG_2PI = math.log(2 * math.pi)
ROWS = 2048           # decoder rows (examples x samples) per call on the fast path
ACTIVE_THRESHOLD = 0.01  # Burda et al.: unit u is active when Cov_x(E_q[z_u]) > 0.01


def default_sizes(k: int, batch_size: int | None = None, chunk: int | None = None) -> tuple[int, int]:
    """(examples per batch, samples per chunk): about ROWS decoder rows per call (fits a 4 MB L2 cache)."""
    chunk = min(k, chunk or 256)
    batch_size = batch_size or max(1, ROWS // chunk)
    if batch_size < 1 or chunk < 1:
        raise ValueError(f"batch_size={batch_size} and chunk={chunk} must be >= 1")
    return batch_size, chunk


def example_noise(index: Tensor, k: int, d: int, seed: int = 0) -> Tensor:
    """Standard normal noise (B, k, d): row i depends only on (seed, index[i]), not on batching."""
    out = torch.empty(len(index), k, d)
    gen = torch.Generator()
    for row, i in enumerate(index.tolist()):
        gen.manual_seed((seed * 1_000_003 + int(i)) % (2 ** 63))
        out[row] = torch.randn(k, d, generator=gen)
    return out


@contextmanager
def seeded(model: LatentModel, seed: int) -> Iterator[None]:
    """Run a block with torch's global RNG seeded to ``seed`` and restore the RNG afterwards."""
    with torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
        torch.manual_seed(seed % (2 ** 63))
        yield


def _fast_path(model: LatentModel, q: Distribution) -> tuple[Tensor, Tensor] | None:
    """(mu, std) (B, d) when the model uses the base log_weights/prior and q is a diagonal Gaussian."""
    if type(model).log_weights is not LatentModel.log_weights or type(model).prior is not LatentModel.prior:
        return None
    base = q.base_dist if isinstance(q, Independent) else None
    if isinstance(base, Normal) and q.reinterpreted_batch_ndims == 1 and base.loc.dim() == 2:
        return base.loc, base.scale.expand_as(base.loc)
    return None


def _log_px(px: Distribution, x: Tensor, c: int) -> Tensor:
    """log p(x_b | z_bj) for decoder output over B*c rows (b-major): (B, c)."""
    b = x.shape[0]
    base = px.base_dist if isinstance(px, Independent) else None
    if isinstance(base, Bernoulli) and px.reinterpreted_batch_ndims == x.dim() - 1:
        logits = base.logits.reshape(b, c, -1)                                 # (B, c, D)
        dot = torch.bmm(logits, x.reshape(b, -1, 1).to(logits.dtype)).squeeze(-1)  # (B, c) x . logits
        return dot - torch.nn.functional.softplus(logits).sum(-1)             # = -BCE-with-logits
    xr = x.unsqueeze(1).expand(b, c, *x.shape[1:]).reshape(b * c, *x.shape[1:])
    return px.log_prob(xr).reshape(b, c)


def batch_log_weights(model: LatentModel, x: Tensor, y: Tensor | None, index: Tensor, k: int,
                      chunk: int, seed: int = 0) -> Iterator[Tensor]:
    """log p(x, z_j) - log q(z_j|x) for j = 1..k in chunks: yields (B, <=chunk) tensors."""
    x = model.check_input(x)
    cond = y if model.n_classes else None
    q = model.encode(x, cond)
    params = _fast_path(model, q)
    if params is None:  # the model's own log_weights, seeded per (seed, first example, chunk)
        for j in range(0, k, chunk):
            c = min(chunk, k - j)
            with seeded(model, seed * 1_000_003 + int(index[0]) * 7919 + j):
                lw = model.log_weights(x, cond, c).transpose(0, 1)
            yield lw
        return
    mu, std = params                                                          # (B, d)
    b, d = mu.shape
    noise = example_noise(index, k, d, seed).to(mu.device, mu.dtype)          # (B, k, d)
    log_det = std.log().sum(-1, keepdim=True) + 0.5 * d * LOG_2PI            # (B, 1)
    for j in range(0, k, chunk):
        eps = noise[:, j:j + chunk]                                          # (B, c, d)
        c = eps.shape[1]
        z = mu.unsqueeze(1) + std.unsqueeze(1) * eps                          # (B, c, d)
        log_q = -0.5 * (eps * eps).sum(-1) - log_det                         # (B, c)
        log_pz = -0.5 * (z * z).sum(-1) - 0.5 * d * LOG_2PI                  # (B, c)
        yc = None if cond is None else cond.repeat_interleave(c)
        px = model.decode(z.reshape(b * c, d), yc)
        yield _log_px(px, x, c) + log_pz - log_q


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    """slice(0, b), slice(b, 2b), ... covering range(n)."""
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def default_workers(model: LatentModel) -> int:
    """CPU + base-class log_weights: one single-threaded worker per torch thread; else 1 (see log_likelihood)."""
    fast = type(model).log_weights is LatentModel.log_weights
    return torch.get_num_threads() if fast and model.device.type == "cpu" else 1


def _run_parallel(fn, items: list, workers: int, progress: bool) -> list:
    """fn over items in ``workers`` threads, each with single-threaded torch ops (restored afterwards)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    threads = torch.get_num_threads()
    if workers > 1:
        torch.set_num_threads(1)
    out = []
    try:
        with ThreadPoolExecutor(workers) as pool, tqdm(total=len(items), disable=not progress, desc="nll",
                                                       leave=False) as bar:
            for result in pool.map(fn, items):
                out.append(result)
                bar.update(1)
    finally:
        torch.set_num_threads(threads)
    return out


def log_likelihood(model: LatentModel, x: Tensor, y: Tensor | None = None, k: int = 1000, *,
                   batch_size: int | None = None, chunk: int | None = None, seed: int = 0,
                   workers: int | None = None, progress: bool = False) -> tuple[Tensor, Tensor]:
    """Per-example IWAE_k estimate of log p(x) and the k-sample ELBO (mean log weight): (N,), (N,) float64.

    ``workers`` > 1 scores batches in that many threads with single-threaded torch ops (torch's thread
    count is set to 1 during the call): on a CPU this scales like intra-op threads when the cores are
    free and does not collapse when they are shared. Default: ``default_workers(model)``. The result
    does not depend on it (nor on batch_size / chunk) on the fast path."""
    if not model.has_likelihood:
        raise ValueError(f"model {model.name!r} has no likelihood p(x): log-likelihood is not defined")
    if k < 1:
        raise ValueError(f"iw_samples={k} must be >= 1")
    batch_size, chunk = default_sizes(k, batch_size, chunk)
    workers = default_workers(model) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers={workers} must be >= 1")
    if type(model).log_weights is not LatentModel.log_weights:
        workers = 1  # the model's own log_weights draws from the global RNG: keep it sequential
    model.eval()

    def one(sl: slice) -> tuple[Tensor, Tensor]:
        with torch.inference_mode():
            xb = x[sl].to(model.device)
            yb = None if y is None else y[sl].to(model.device)
            acc = torch.full((len(xb),), -math.inf, dtype=torch.float64)
            total = torch.zeros(len(xb), dtype=torch.float64)
            for lw in batch_log_weights(model, xb, yb, torch.arange(sl.start, sl.stop), k, chunk, seed):
                lw = lw.double().cpu()
                acc = torch.logaddexp(acc, torch.logsumexp(lw, 1))
                total += lw.sum(1)
            return acc - math.log(k), total / k

    parts = _run_parallel(one, list(batch_slices(len(x), batch_size)), workers, progress)
    if not parts:
        return torch.empty(0, dtype=torch.float64), torch.empty(0, dtype=torch.float64)
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@torch.inference_mode()
def iwae_curve(model: LatentModel, x: Tensor, ks: Sequence[int] = (1, 5, 50, 500), y: Tensor | None = None,
               *, seed: int = 0, batch_size: int | None = None, chunk: int | None = None) -> dict[int, float]:
    """Mean IWAE_k bound (nats/example) for each k: ELBO = IWAE_1 <= IWAE_5 <= ... <= log p(x).

    One set of max(ks) samples per example serves every k: IWAE_k is averaged over the
    floor(max(ks) / k) disjoint groups of k samples, an unbiased, low-variance estimate of E[IWAE_k]."""
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks={list(ks)} must be integers >= 1")
    kmax = ks[-1]
    batch_size, chunk = default_sizes(kmax, batch_size, chunk)
    model.eval()
    sums = dict.fromkeys(ks, 0.0)
    for sl in batch_slices(len(x), batch_size):
        yb = None if y is None else y[sl].to(model.device)
        lw = torch.cat(list(batch_log_weights(model, x[sl].to(model.device), yb, torch.arange(sl.start, sl.stop),
                                              kmax, chunk, seed)), 1).double().cpu()  # (B, kmax)
        for k in ks:
            groups = lw[:, : (kmax // k) * k].reshape(len(lw), -1, k)          # (B, g, k)
            sums[k] += float((torch.logsumexp(groups, -1) - math.log(k)).mean(1).sum())
    return {k: s / len(x) for k, s in sums.items()}


@torch.inference_mode()
def posterior_stats(model: LatentModel, ds: Dataset, batch_size: int = 1000, kl: bool = True) -> dict[str, Any]:
    """Posterior means (N, d), mean KL per latent group (G,) (None without a likelihood or ``kl``), MSE per pixel."""
    means, kl_sum, mse = [], None, 0.0
    for sl in batch_slices(len(ds), batch_size):
        xb = model.check_input(ds.x[sl].to(model.device))
        yb = None if ds.y is None or not model.n_classes else ds.y[sl].to(model.device)
        means.append(model.encode(xb, yb).mean.reshape(len(xb), -1).double().cpu())
        if kl and model.has_likelihood:
            part = model.elbo_parts(xb, yb)[1].double().sum(0).cpu()         # (G,)
            kl_sum = part if kl_sum is None else kl_sum + part
        mse += float(((model.reconstruct(xb, yb) - xb) ** 2).flatten(1).mean(1).sum())
    return {"means": torch.cat(means), "kl_per_dim": None if kl_sum is None else kl_sum / len(ds),
            "recon_mse": mse / len(ds)}


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
    z_train = posterior_stats(model, train, kl=False)["means"].numpy()
    z_test = (test_means if test_means is not None else posterior_stats(model, test, kl=False)["means"]).numpy()
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(z_train, train.y.numpy())
    return float(clf.score(z_test, test.y.numpy()))


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
    with seeded(model, seed):  # elbo_parts samples (a Monte Carlo KL for bottom-up hvae layers)
        stats = posterior_stats(model, scored)
    n_active, variances = active_units(stats["means"])
    out: dict[str, Any] = {
        "model": model.name, "dataset": test.info.name, "n_examples": len(test), "iw_samples": None,
        "seed": seed, "elbo": None, "recon": None, "kl": None, "nll": None, "nll_iw": None,
        "nll_exact": None, "nll_method": None, "bits_per_dim": None, "recon_mse": stats["recon_mse"],
        "active_units": n_active, "latent_dim": model.latent_dim, "posterior_mean_variance": variances,
        "kl_per_dim": None, "probe_accuracy": None, "frechet_distance": None, "fd_features": None,
        "fd_classifier_accuracy": None}
    if model.has_likelihood:
        ll, elbo = log_likelihood(model, scored.x, y, iw_samples, batch_size=batch_size, chunk=chunk,
                                  seed=seed, workers=workers, progress=progress)
        kl = stats["kl_per_dim"]
        out.update(iw_samples=iw_samples, elbo=float(elbo.mean()), kl=float(kl.sum()),
                   recon=float(elbo.mean() + kl.sum()), kl_per_dim=[float(v) for v in kl],
                   nll_iw=-float(ll.mean()), nll=-float(ll.mean()), nll_method="importance-sampling")
        if hasattr(model, "log_prob"):  # closed form (PPCA)
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
        from .features import fd_vaelab

        out.update(fd_vaelab(model, test, train, cache_dir, seed=seed))
    out["seconds"] = time.perf_counter() - t0
    return {k: _finite_or_none(v) for k, v in out.items()}


def _finite_or_none(v: Any) -> Any:
    """NaN/Inf -> None, so eval.json stays strict JSON (a diverged model shows up as null)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, list):
        return [_finite_or_none(u) for u in v]
    if isinstance(v, dict):
        return {k: _finite_or_none(u) for k, u in v.items()}
    return v
