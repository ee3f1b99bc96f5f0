"""Discrete codes: the VQ-VAE's EMA codebook, and a gated PixelCNN over a grid of codes (van den Oord et al.
2016), its learned prior.

The codebook: K vectors e_k = m_k / N_k, where N_k and m_k are exponential moving averages of the number and
the sum of the encoder outputs assigned to code k (van den Oord et al. 2017, appendix A.1; N Laplace-smoothed
as in Sonnet's VectorQuantizerEMA).

The prior:
p(c) = prod_p p(c_p | c_<p) over the positions of an (h, w) grid in raster order (a vector of codes is a
(1, L) grid). Two stacks without a blind spot: the vertical stack sees the rows above (its output is
shifted down one row before the horizontal stack reads it), the horizontal stack sees the positions to the
left in the same row (the first layer's input is shifted right one column, so no position sees its own
code). ``logits(c)`` gives every position's conditional in one pass; ``sample`` fills the grid position by
position (h * w passes).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

SMOOTHING = 1e-5  # Laplace smoothing of the EMA counts (as in Sonnet's VectorQuantizerEMA)


class Codebook(nn.Module):
    """K code vectors of size D updated by EMA: counts N_k and sums m_k of the encoder outputs assigned."""

    def __init__(self, size: int, dim: int, decay: float, restart_below: float) -> None:
        super().__init__()
        self.decay, self.restart_below = decay, restart_below
        self.register_buffer("embedding", torch.randn(size, dim))     # (K, D) e_k = m_k / N_k
        self.register_buffer("ema_count", torch.ones(size))           # (K,) N_k (starts as one use each)
        self.register_buffer("ema_sum", self.embedding.clone())       # (K, D) m_k

    def nearest(self, z: Tensor) -> Tensor:
        """Index of the nearest code for each row of z (N, D): (N,)."""
        d = (z.square().sum(1, keepdim=True) - 2 * z @ self.embedding.T
             + self.embedding.square().sum(1))                         # (N, K) squared distances
        return d.argmin(1)

    @torch.no_grad()
    def update(self, z: Tensor, idx: Tensor) -> None:
        """One EMA step from encoder outputs z (N, D) assigned to codes idx (N,), then dead-code restarts."""
        onehot = F.one_hot(idx, len(self.embedding)).to(z.dtype)       # (N, K)
        g = self.decay
        self.ema_count.mul_(g).add_(onehot.sum(0), alpha=1 - g)        # N_k <- g N_k + (1-g) n_k
        self.ema_sum.mul_(g).add_(onehot.T @ z, alpha=1 - g)           # m_k <- g m_k + (1-g) sum z
        n = self.ema_count.sum()
        count = (self.ema_count + SMOOTHING) / (n + len(self.ema_count) * SMOOTHING) * n
        self.embedding.copy_(self.ema_sum / count[:, None])
        dead = self.ema_count < self.restart_below
        if dead.any():  # move unused codes onto random encoder outputs of this batch
            pick = torch.randint(len(z), (int(dead.sum()),), device=z.device)
            self.embedding[dead] = z[pick]
            self.ema_sum[dead] = z[pick]
            self.ema_count[dead] = 1.0

    def stats(self, idx: Tensor) -> dict[str, float]:
        """Usage (share of the K codes assigned at least once) and perplexity exp(H) of the assignments."""
        p = torch.bincount(idx.flatten(), minlength=len(self.embedding)).double()
        p = p / p.sum()
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        return {"codebook_usage": float((p > 0).double().mean()), "perplexity": float(entropy.exp())}


def _down(t: Tensor) -> Tensor:
    """Shift (B, C, h, w) down one row (row 0 becomes zeros): row i then holds row i-1."""
    return F.pad(t, (0, 0, 1, 0))[:, :, :-1]


def _gate(t: Tensor) -> Tensor:
    a, b = t.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated layer: (vertical, horizontal) (B, C, h, w) each -> the same shapes."""

    def __init__(self, channels: int, kernel: int, first: bool) -> None:
        super().__init__()
        self.k, self.first = kernel // 2, first
        c = channels
        self.v_conv = nn.Conv2d(c, 2 * c, (self.k + 1, 2 * self.k + 1))  # rows i-k..i, columns j-k..j+k
        self.h_conv = nn.Conv2d(c, 2 * c, (1, self.k + 1))               # columns j-k..j of row i
        self.v_to_h = nn.Conv2d(2 * c, 2 * c, 1)
        self.h_out = nn.Conv2d(c, c, 1)

    def forward(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        k = self.k
        v_pre = self.v_conv(F.pad(v, (k, k, k, 0)))                      # (B, 2C, h, w): rows <= i
        h_in = F.pad(h, (1, 0))[:, :, :, :-1] if self.first else h      # first layer: strictly left
        h_pre = self.h_conv(F.pad(h_in, (k, 0))) + self.v_to_h(_down(v_pre))  # rows < i, or row i left of j
        h_new = self.h_out(_gate(h_pre))
        return _gate(v_pre), h_new if self.first else h + h_new          # no residual of the own code


class GatedPixelCNN(nn.Module):
    """Autoregressive model of K-valued codes on an (h, w) grid: logits (B, K, h, w) of p(c_p | c_<p)."""

    def __init__(self, n_values: int, channels: int = 64, layers: int = 4, kernel: int = 3) -> None:
        super().__init__()
        self.n_values = n_values
        self.embed = nn.Embedding(n_values, channels)
        self.layers = nn.ModuleList(GatedLayer(channels, kernel, first=i == 0) for i in range(layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(),
                                  nn.Conv2d(channels, n_values, 1))

    def logits(self, codes: Tensor) -> Tensor:
        """codes (B, h, w) long -> logits (B, K, h, w); position p depends only on codes before p."""
        x = self.embed(codes).permute(0, 3, 1, 2)                        # (B, C, h, w)
        v, h = x, x
        for layer in self.layers:
            v, h = layer(v, h)
        return self.head(h)

    def log_prob_per_position(self, codes: Tensor, temperature: float = 1.0) -> Tensor:
        """log p(c_p | c_<p) for every position (logits / temperature): (B, h * w) in raster order."""
        logits = self.logits(codes)
        logp = F.log_softmax(logits if temperature == 1.0 else logits / temperature, dim=1)  # (B, K, h, w)
        return logp.gather(1, codes[:, None]).flatten(1)                 # (B, h * w)

    @torch.no_grad()
    def sample(self, n: int, grid: tuple[int, int], temperature: float = 1.0,
               generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
        """n grids of codes (n, h, w), position by position, every conditional's logits divided by
        ``temperature``. Uniform draws come from ``generator`` (on its device) when given, else torch's RNG."""
        gh, gw = grid
        codes = torch.zeros(n, gh, gw, dtype=torch.long, device=device)
        for i in range(gh):
            for j in range(gw):
                logits = self.logits(codes[:, : i + 1])[:, :, i, j]     # rows below i cannot matter
                probs = F.softmax(logits.double() / temperature, dim=1)  # (n, K)
                if generator is None:
                    u = torch.rand(n, 1, dtype=torch.float64, device=device)
                else:
                    u = torch.rand(n, 1, dtype=torch.float64, generator=generator, device=generator.device)
                below = (probs.cumsum(1) < u.to(probs.device)).sum(1)     # inverse CDF
                codes[:, i, j] = below.clamp_max(self.n_values - 1)
        return codes
