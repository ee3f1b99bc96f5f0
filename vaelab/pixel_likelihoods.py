"""Likelihoods for pixels in [0, 1]: the continuous Bernoulli density and discretized logistic mixtures.

- ``ContinuousBernoulli``: Loaiza-Ganem & Cunningham (2019), the normalised density on [0, 1]
  p(x | l) = C(l) sigmoid(l)^x (1 - sigmoid(l))^(1-x), written in the logit l. torch's own class clamps
  probabilities to [eps, 1 - eps] before the normaliser, so in float32 it integrates to 0.80 at |l| = 20
  (a saturated MNIST background pixel); here C(l) = l / tanh(l / 2) is computed from l itself.
- ``DiscretizedLogisticMixture``: PixelCNN++ (Salimans et al. 2017) per value, without the channel
  coupling: a probability mass function over ``levels`` values k / (levels - 1) in [0, 1]. The bins are
  [k - 1/2, k + 1/2] / (levels - 1), with the lowest bin extended to -inf and the highest to +inf
  (PixelCNN++'s edge cases for 0 and 255), so the masses of the levels sum to 1 exactly. One component
  is the discretized logistic. Data are rounded to the nearest level (exact for 8-bit data k / 255).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import ContinuousBernoulli as _TorchCB, Distribution, constraints
from torch.nn import functional as F

LEVELS = 256            # 8-bit data
MIN_LOG_SCALE = -10.0   # logistic scale floor (data units); a bin of 8-bit data is 1/255 = e^-5.5 wide
SMALL_LOGIT = 1e-2      # below this |l| the continuous Bernoulli uses Taylor series (exact to ~1e-12)


# -- continuous Bernoulli -----------------------------------------------------------------------------------
def cb_log_norm(logits: Tensor) -> Tensor:
    """log C(l), C(l) = l / tanh(l / 2) = 2 atanh(1 - 2 lambda) / (1 - 2 lambda), lambda = sigmoid(l)."""
    a = logits.abs()
    safe = torch.where(a < SMALL_LOGIT, torch.ones_like(a), a)
    # log tanh(a/2) = log(1 - e^-a) - log(1 + e^-a), both stable for every a > 0
    far = safe.log() - torch.log(-torch.expm1(-safe)) + torch.log1p(torch.exp(-safe))
    l2 = logits * logits
    near = math.log(2.0) + l2 / 12 - 7 * l2 * l2 / 1440
    return torch.where(a < SMALL_LOGIT, near, far)


def cb_mean(logits: Tensor) -> Tensor:
    """E[x] = sigmoid(l) / tanh(l / 2) - 1 / l (1/2 + l/12 - l^3/720 + l^5/30240 near 0), in float64."""
    lg = logits.double()
    near_zero = lg.abs() < 0.1
    safe = torch.where(near_zero, torch.ones_like(lg), lg)
    far = torch.sigmoid(safe) / torch.tanh(safe / 2) - 1 / safe
    near = 0.5 + lg / 12 - lg ** 3 / 720 + lg ** 5 / 30240
    return torch.where(near_zero, near, far).to(logits.dtype)


def cb_icdf(logits: Tensor, u: Tensor) -> Tensor:
    """Inverse CDF: x = log(1 + u (e^l - 1)) / l; for l > 0 through the symmetry x(l, u) = 1 - x(-l, 1 - u)."""
    neg = -logits.abs()
    v = torch.where(logits > 0, 1 - u, u)
    tiny = neg > -1e-6
    safe = torch.where(tiny, -torch.ones_like(neg), neg)
    x = torch.log1p(v * torch.expm1(safe)) / safe
    x = torch.where(tiny, v, x)
    return torch.where(logits > 0, 1 - x, x).clamp(0, 1)


class ContinuousBernoulli(_TorchCB):
    """torch's continuous Bernoulli with the normaliser, mean and inverse CDF computed from the logits.

    ``log_prob`` = -BCE-with-logits(l, x) + log C(l): a density on [0, 1] that integrates to 1 for every l."""

    def _cont_bern_log_norm(self) -> Tensor:
        return cb_log_norm(self.logits)

    @property
    def mean(self) -> Tensor:
        return cb_mean(self.logits)

    def icdf(self, value: Tensor) -> Tensor:
        return cb_icdf(self.logits, value)


def continuous_bernoulli(logits: Tensor) -> ContinuousBernoulli:
    return ContinuousBernoulli(logits=logits, validate_args=False)


# -- discretized logistic mixture ---------------------------------------------------------------------------
def _log_bin_mass(k: Tensor, loc: Tensor, log_scale: Tensor, levels: int) -> Tensor:
    """log P(level k) under Logistic(loc, e^log_scale) with bins of width 1/(levels-1) around k/(levels-1)."""
    step = 1.0 / (levels - 1)
    inv_s = torch.exp(-log_scale)
    centre = k * step
    upper = (centre + 0.5 * step - loc) * inv_s
    lower = (centre - 0.5 * step - loc) * inv_s
    # sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - e^(b - a)), b - a = -step / s: no cancellation
    inner = F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(-step * inv_s))
    return torch.where(k <= 0, F.logsigmoid(upper), torch.where(k >= levels - 1, F.logsigmoid(-lower), inner))


class DiscretizedLogisticMixture(Distribution):
    """A mixture of M discretized logistics per value: pmf over ``levels`` values k / (levels - 1).

    ``params`` (..., 3M): mixture logits, locations (data units, [0, 1] is the data range) and log scales.
    Batch shape ``params.shape[:-1]``; event shape (). M = 1 is the discretized logistic."""

    arg_constraints: dict = {}
    support = constraints.unit_interval
    has_rsample = False

    def __init__(self, params: Tensor, levels: int = LEVELS, validate_args: bool | None = False) -> None:
        if params.shape[-1] % 3:
            raise ValueError(f"params has {params.shape[-1]} entries per value; need 3 per component")
        if levels < 2:
            raise ValueError(f"levels={levels} must be >= 2")
        logit, loc, log_scale = params.chunk(3, dim=-1)                   # (..., M) each
        self.log_weights = torch.log_softmax(logit, -1)
        self.loc, self.log_scale = loc, log_scale.clamp_min(MIN_LOG_SCALE)
        self.levels = int(levels)
        super().__init__(params.shape[:-1], validate_args=validate_args)

    @property
    def components(self) -> int:
        return self.loc.shape[-1]

    def level(self, value: Tensor) -> Tensor:
        """The level index k = round(x (levels - 1)) of x in [0, 1], as a float tensor."""
        return torch.round(value * (self.levels - 1)).clamp(0, self.levels - 1)

    def log_prob(self, value: Tensor) -> Tensor:
        k = self.level(value).unsqueeze(-1)                                # (..., 1)
        per = self.log_weights + _log_bin_mass(k, self.loc, self.log_scale, self.levels)  # (..., M)
        return torch.logsumexp(per, -1)

    def cdf_at_levels(self, ks: Tensor) -> Tensor:
        """P(K <= k) for each level k in ``ks`` (L',): (..., L')."""
        edge = (ks + 0.5) / (self.levels - 1)                              # upper bin edges (L',)
        z = (edge - self.loc.unsqueeze(-1)) * torch.exp(-self.log_scale).unsqueeze(-1)  # (..., M, L')
        return (self.log_weights.exp().unsqueeze(-1) * torch.sigmoid(z)).sum(-2)

    @property
    def mean(self) -> Tensor:
        """E[x] = (1 / (levels - 1)) sum_{k < levels - 1} P(K > k), exact, in chunks of 32 levels."""
        total = torch.zeros(self.batch_shape, dtype=self.loc.dtype, device=self.loc.device)
        for start in range(0, self.levels - 1, 32):
            ks = torch.arange(start, min(start + 32, self.levels - 1), device=self.loc.device, dtype=self.loc.dtype)
            total = total + (1 - self.cdf_at_levels(ks)).sum(-1)
        return total / (self.levels - 1)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        """Draw a component, a logistic value in it, round to the nearest level: (*sample_shape, *batch)."""
        shape = torch.Size(sample_shape) + self.batch_shape
        with torch.no_grad():
            m = torch.distributions.Categorical(logits=self.log_weights).sample(torch.Size(sample_shape))
            loc = self.loc.expand(*shape, self.components).gather(-1, m.unsqueeze(-1)).squeeze(-1)
            log_s = self.log_scale.expand(*shape, self.components).gather(-1, m.unsqueeze(-1)).squeeze(-1)
            u = torch.rand(shape, dtype=loc.dtype, device=loc.device).clamp(1e-6, 1 - 1e-6)
            x = loc + log_s.exp() * (u.log() - torch.log1p(-u))
            return self.level(x) / (self.levels - 1)


def discretized_logistic(params: Tensor) -> DiscretizedLogisticMixture:
    """One logistic per value: ``params`` (..., 2) = (location, log scale) from the decoder."""
    loc, log_scale = params.unbind(-1)
    return DiscretizedLogisticMixture(torch.stack([torch.zeros_like(loc), loc, log_scale], -1))


def dmol(params: Tensor) -> DiscretizedLogisticMixture:
    """A mixture of logistics per value: ``params`` (..., 3M), parameter-major (logits, locs, log scales)."""
    return DiscretizedLogisticMixture(params)
