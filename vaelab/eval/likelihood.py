"""log p(x) by importance sampling: the IWAE bound, its curve over K, and how the work is split.

``log p(x)`` is estimated with the IWAE bound (Burda et al. 2015) on K samples from q(z|x):

    log p(x) >= log (1/K) sum_k p(x, z_k) / q(z_k|x),   z_k ~ q(z|x)

computed as a streaming log-sum-exp over chunks of samples and batches of examples, so memory stays
bounded for any K. Which path a model takes is declared, not inferred: :func:`fast_path` is true when its
capabilities say it has a likelihood, the N(0, I) prior and a diagonal Gaussian q(z|x). Then the encoder
runs once per batch, a batch x chunk of samples is one decoder call, a Bernoulli likelihood is
``x . logits - sum softplus(logits)`` (one batched matmul, no copies of x), and the noise for example i
is a fixed function of (seed, i), so the result does not depend on the batch or chunk sizes. Every other
model is called through its own ``log_weights`` chunk by chunk, with a ``torch.Generator`` seeded from
(seed, first example, chunk offset): torch's global RNG is never touched.

Uniform dequantization (``levels`` = L): a density p on data x = k / (L - 1), k in 0..L-1, gives the
probability P(k) = integral of p over the bin [k, k + 1) / L, and (Theis et al. 2016)

    log P(k) = log E_u[p((k + u) / L)] - D log L >= E_u[log p((k + u) / L)] - D log L,   u ~ U[0, 1)^D.

The importance weights then use the proposal q(z|x) U(u): w_j = p((k + u_j) / L, z_j) / q(z_j|x) / L^D, so
IWAE_K is a lower bound on log P(k) that tends to it as K grows, and K = 1 (the ELBO) is the dequantized
ELBO. The u of example i come from a generator seeded from (seed, i), drawn in order, chunk by chunk.

Monte Carlo error (``LikelihoodEstimate``): with normalised weights w~_j, the effective sample size is
ESS = 1 / sum_j w~_j^2 (Kish) and the delta-method standard error of log mean_j w_j is
sqrt(1 / ESS - 1 / K); it misses the estimator's downward bias and is unreliable when the ESS is small.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from ..data import dequantize  # noqa: F401  (y = (k + u) / L; re-exported for eval.evaluate)
from ..models import LatentModel

LOG_2PI = math.log(2 * math.pi)
ROWS = 2048           # decoder rows (examples x samples) per call on the fast path


def fast_path(model: LatentModel) -> bool:
    """The one predicate for the fast exact NLL path (and for scoring batches in parallel threads on a CPU):
    a likelihood, the N(0, I) prior and a diagonal Gaussian posterior, as the model declares."""
    caps = model.capabilities
    return bool(caps.likelihood and caps.standard_prior and caps.gaussian_posterior)


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


def chunk_generator(seed: int, first: int, offset: int) -> torch.Generator:
    """The CPU generator for one chunk of a model's own ``log_weights``: seeded from (seed, first example
    index, chunk offset), so a batch's numbers do not depend on what ran before it (or in other threads)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + first * 7919 + offset) % (2 ** 63))


class UniformNoise:
    """u ~ U[0, 1) of shape (c, *shape) per example, chunk after chunk: example i's stream depends only
    on (seed, index[i]), so the numbers do not depend on the batch or chunk sizes."""

    def __init__(self, index: Tensor, shape: tuple[int, ...], seed: int = 0) -> None:
        self.shape = shape
        self.gens = [torch.Generator().manual_seed((seed * 1_000_003 + int(i) + 7_777_777) % (2 ** 63))
                     for i in index.tolist()]

    def next(self, c: int) -> Tensor:
        """The next c draws of every example: (B, c, *shape) on the CPU."""
        return torch.stack([torch.rand(c, *self.shape, generator=g) for g in self.gens])


def _gaussian_params(model: LatentModel, q: Distribution) -> tuple[Tensor, Tensor]:
    """(mu, std) (B, d) of the diagonal Gaussian q(z|x) that a fast-path model declares it returns."""
    base = q.base_dist if isinstance(q, Independent) else None
    if isinstance(base, Normal) and q.reinterpreted_batch_ndims == 1 and base.loc.dim() == 2:
        return base.loc, base.scale.expand_as(base.loc)
    raise TypeError(f"model {model.name!r} declares capabilities.gaussian_posterior, but encode() returned "
                    f"{type(q).__name__}{'' if base is None else f'({type(base).__name__})'}, not a diagonal "
                    "Gaussian Independent(Normal(loc (B, d), scale), 1)")


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
                      chunk: int, seed: int = 0, levels: int | None = None) -> Iterator[Tensor]:
    """log p(x, z_j) - log q(z_j|x) for j = 1..k in chunks: yields (B, <=chunk) tensors.

    ``levels``: uniformly dequantize x to L levels (module docstring); the weights then bound log P(k)."""
    x = model.check_input(x)
    cond = y if model.n_classes else None
    noise = None if levels is None else UniformNoise(index, tuple(x.shape[1:]), seed)
    shift = 0.0 if levels is None else math.prod(x.shape[1:]) * math.log(levels)  # D log L
    if not fast_path(model):  # the model's own log_weights, one generator per (seed, first example, chunk)
        first = int(index[0]) if len(index) else 0
        for j in range(0, k, chunk):
            c = min(chunk, k - j)
            gen = chunk_generator(seed, first, j)
            if noise is None:
                yield model.log_weights(x, cond, c, generator=gen).transpose(0, 1)
                continue
            yd = dequantize(x.unsqueeze(1), noise.next(c).to(x.device, x.dtype), levels)  # (B, c, *shape)
            yc = None if cond is None else cond.repeat_interleave(c)
            lw = model.log_weights(yd.reshape(-1, *x.shape[1:]), yc, 1, generator=gen)   # (1, B*c)
            yield lw.reshape(len(x), c) - shift
        return
    mu, std = _gaussian_params(model, model.encode(x, cond))                       # (B, d)
    b, d = mu.shape
    eps_all = example_noise(index, k, d, seed).to(mu.device, mu.dtype)       # (B, k, d)
    log_det = std.log().sum(-1, keepdim=True) + 0.5 * d * LOG_2PI            # (B, 1)
    for j in range(0, k, chunk):
        eps = eps_all[:, j:j + chunk]                                        # (B, c, d)
        c = eps.shape[1]
        z = mu.unsqueeze(1) + std.unsqueeze(1) * eps                          # (B, c, d)
        log_q = -0.5 * (eps * eps).sum(-1) - log_det                         # (B, c)
        log_pz = -0.5 * (z * z).sum(-1) - 0.5 * d * LOG_2PI                  # (B, c)
        yc = None if cond is None else cond.repeat_interleave(c)
        px = model.decode(z.reshape(b * c, d), yc)
        if noise is None:
            yield _log_px(px, x, c) + log_pz - log_q
        else:
            yd = dequantize(x.unsqueeze(1), noise.next(c).to(x.device, x.dtype), levels)  # (B, c, *shape)
            yield px.log_prob(yd.reshape(b * c, *x.shape[1:])).reshape(b, c) - shift + log_pz - log_q


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    """slice(0, b), slice(b, 2b), ... covering range(n)."""
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def default_workers(model: LatentModel) -> int:
    """On a CPU and the fast path: one single-threaded worker per torch thread; else 1 (see log_likelihood)."""
    return torch.get_num_threads() if fast_path(model) and model.device.type == "cpu" else 1


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


@dataclass
class LikelihoodEstimate:
    """Per-example results of importance sampling with K samples, float64 (N,) each."""
    log_px: Tensor   # IWAE_K estimate of log p(x): a lower bound in expectation
    elbo: Tensor     # mean log weight (the K-sample ELBO)
    ess: Tensor      # Kish effective sample size of the normalised weights, in [1, K]
    se: Tensor       # delta-method Monte Carlo standard error of log_px: sqrt(1/ESS - 1/K)

    def mean_se(self) -> float:
        """Monte Carlo standard error of the mean of log_px over the examples (independent per example)."""
        return float(self.se.square().sum().sqrt() / max(1, len(self.se)))


def log_likelihood_estimate(model: LatentModel, x: Tensor, y: Tensor | None = None, k: int = 1000, *,
                            batch_size: int | None = None, chunk: int | None = None, seed: int = 0,
                            workers: int | None = None, progress: bool = False,
                            levels: int | None = None) -> LikelihoodEstimate:
    """IWAE_k estimate of log p(x) per example with its ELBO, ESS and Monte Carlo standard error.

    ``workers`` > 1 scores batches in that many threads with single-threaded torch ops (torch's thread
    count is set to 1 during the call): on a CPU this scales like intra-op threads when the cores are
    free and does not collapse when they are shared. Default: ``default_workers(model)``; models off the
    fast path are scored sequentially. The result does not depend on it (nor on batch_size / chunk) on
    the fast path. ``levels``: uniform dequantization to L levels (a bound on the discrete log P(k))."""
    if not model.capabilities.likelihood:
        raise ValueError(f"model {model.name!r} has no likelihood p(x): log-likelihood is not defined")
    if k < 1:
        raise ValueError(f"iw_samples={k} must be >= 1")
    if levels is not None and levels < 2:
        raise ValueError(f"levels={levels} must be >= 2")
    batch_size, chunk = default_sizes(k, batch_size, chunk)
    workers = default_workers(model) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers={workers} must be >= 1")
    if not fast_path(model):
        workers = 1  # the model's own log_weights: keep it sequential
    model.eval()

    def one(sl: slice) -> tuple[Tensor, ...]:
        with torch.inference_mode():
            xb = x[sl].to(model.device)
            yb = None if y is None else y[sl].to(model.device)
            acc = torch.full((len(xb),), -math.inf, dtype=torch.float64)    # log sum w
            acc2 = torch.full((len(xb),), -math.inf, dtype=torch.float64)   # log sum w^2
            total = torch.zeros(len(xb), dtype=torch.float64)
            for lw in batch_log_weights(model, xb, yb, torch.arange(sl.start, sl.stop), k, chunk, seed, levels):
                lw = lw.double().cpu()
                acc = torch.logaddexp(acc, torch.logsumexp(lw, 1))
                acc2 = torch.logaddexp(acc2, torch.logsumexp(2 * lw, 1))
                total += lw.sum(1)
            return acc - math.log(k), total / k, torch.exp(2 * acc - acc2)

    parts = _run_parallel(one, list(batch_slices(len(x), batch_size)), workers, progress)
    cat = (lambda i: torch.cat([p[i] for p in parts])) if parts else (lambda i: torch.empty(0, dtype=torch.float64))
    ess = cat(2).nan_to_num(nan=1.0)  # all weights zero (log p = -inf): no information
    return LikelihoodEstimate(cat(0), cat(1), ess, (1 / ess - 1 / k).clamp_min(0).sqrt())


def log_likelihood(model: LatentModel, x: Tensor, y: Tensor | None = None, k: int = 1000, *,
                   batch_size: int | None = None, chunk: int | None = None, seed: int = 0,
                   workers: int | None = None, progress: bool = False,
                   levels: int | None = None) -> tuple[Tensor, Tensor]:
    """Per-example IWAE_k estimate of log p(x) and the k-sample ELBO: (N,), (N,) float64
    (``log_likelihood_estimate`` without the ESS and standard errors)."""
    est = log_likelihood_estimate(model, x, y, k, batch_size=batch_size, chunk=chunk, seed=seed, workers=workers,
                                  progress=progress, levels=levels)
    return est.log_px, est.elbo


@torch.inference_mode()
def iwae_curve(model: LatentModel, x: Tensor, ks: Sequence[int] = (1, 5, 50, 500), y: Tensor | None = None,
               *, seed: int = 0, batch_size: int | None = None, chunk: int | None = None,
               levels: int | None = None) -> dict[int, float]:
    """Mean IWAE_k bound (nats/example) for each k: ELBO = IWAE_1 <= IWAE_5 <= ... <= log p(x).

    One set of max(ks) samples per example serves every k: IWAE_k is averaged over the
    floor(max(ks) / k) disjoint groups of k samples, an unbiased, low-variance estimate of E[IWAE_k].
    ``levels``: uniform dequantization to L levels, as in ``log_likelihood_estimate``."""
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
                                              kmax, chunk, seed, levels)), 1).double().cpu()  # (B, kmax)
        for k in ks:
            groups = lw[:, : (kmax // k) * k].reshape(len(lw), -1, k)          # (B, g, k)
            sums[k] += float((torch.logsumexp(groups, -1) - math.log(k)).mean(1).sum())
    return {k: s / len(x) for k, s in sums.items()}
