"""Pure picture functions: they return arrays or matplotlib figures; only the CLI and web write files."""
from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure


def to_images(x: torch.Tensor | np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """(N, C, H, W) or flat (N, D) with ``shape`` -> float array (N, H, W, C) clipped to [0, 1]."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if shape is not None:
        a = a.reshape(len(a), *shape)
    if a.ndim == 2:  # (N, D) with no shape: treat as a square grey image if possible
        side = int(math.isqrt(a.shape[1]))
        if side * side != a.shape[1]:
            raise ValueError(f"examples of size {a.shape[1]} are not images; pass their shape")
        a = a.reshape(len(a), 1, side, side)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise ValueError(f"cannot show examples of shape {a.shape[1:]} as images")
    return np.clip(a.transpose(0, 2, 3, 1), 0.0, 1.0)


def image_grid(x: torch.Tensor | np.ndarray, ncol: int | None = None, pad: int = 1,
               shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Tile images into one uint8 array (H', W', C) with C in {1, 3}; ``ncol`` defaults to ~sqrt(N)."""
    imgs = to_images(x, shape)                       # (N, H, W, C)
    n, h, w, c = imgs.shape
    ncol = ncol or max(1, math.ceil(math.sqrt(n)))
    nrow = math.ceil(n / ncol)
    grid = np.ones((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, ncol)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = imgs[i]
    return (grid * 255).round().astype(np.uint8)


def upscale(img: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement so small digits stay visible."""
    return img.repeat(factor, 0).repeat(factor, 1) if factor > 1 else img


def pairs(x: torch.Tensor, x_rec: torch.Tensor, n: int = 8) -> torch.Tensor:
    """First n originals then their n reconstructions: tile with ``ncol=n`` for two rows."""
    n = min(n, len(x))
    return torch.cat([x[:n].cpu(), x_rec[:n].cpu()], 0)


def latent_scatter(z: np.ndarray, y: np.ndarray | None = None, title: str = "",
                   class_names: tuple[str, ...] = ()) -> Figure:
    """2-D scatter of latent codes coloured by class; d > 2 uses the first two principal components."""
    z = np.asarray(z, dtype=np.float64)
    xlabel, ylabel = "z[0]", "z[1]"
    if z.shape[1] > 2:
        from sklearn.decomposition import PCA

        z = PCA(2).fit_transform(z)
        xlabel, ylabel = "PC 1 of posterior means (d > 2)", "PC 2 of posterior means"
    elif z.shape[1] == 1:
        z = np.concatenate([z, np.zeros_like(z)], 1)
        ylabel = "(1-D latent)"
    fig = Figure(figsize=(5, 4.5), dpi=100)
    ax = fig.add_subplot()
    sc = ax.scatter(z[:, 0], z[:, 1], c=None if y is None else y, cmap="tab10", s=4, alpha=0.8)
    if y is not None:
        cb = fig.colorbar(sc, ax=ax, ticks=np.unique(y))
        if class_names:
            cb.ax.set_yticklabels([class_names[int(i)] for i in np.unique(y)])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    fig.tight_layout()
    return fig
