"""Pure picture functions: they return arrays or matplotlib figures; only the CLI and web write files."""
from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure

# font sizes in points; at 100 dpi 1 pt = 1.39 px, so the smallest (9 pt) is 12.5 px in the PNG and stays
# >= 10 px when a page shows the figure at 80 % of its size or more
FONT_SMALL = 9    # tick labels, legends
FONT = 10         # axis labels
FONT_TITLE = 11   # titles


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


def class_colors(labels: np.ndarray) -> np.ndarray | None:
    """One RGBA colour per class index (K, 4) for K = max label + 1 <= 20 (tab10, or tab20 past 10 classes):
    the same class always gets the same colour (the explorer uses tab10 too); None for more classes."""
    from matplotlib import colormaps

    k = int(labels.max()) + 1 if len(labels) else 1
    if k > 20:
        return None
    return np.asarray(colormaps["tab10" if k <= 10 else "tab20"].colors)[:k]


def latent_scatter(z: np.ndarray, y: np.ndarray | None = None, title: str = "",
                   class_names: tuple[str, ...] = (), axis_labels: tuple[str, str] = ("z[0]", "z[1]")) -> Figure:
    """2-D scatter of latent codes coloured by class (500 x 450 px); d > 2 uses the first two principal
    components (and says so on the axes). Up to 20 classes get a legend of discrete colours (one entry per
    class present); more classes a colour bar."""
    z = np.asarray(z, dtype=np.float64)
    xlabel, ylabel = axis_labels
    if z.shape[1] > 2:
        from sklearn.decomposition import PCA

        z = PCA(2).fit_transform(z)
        xlabel, ylabel = "PC 1 of posterior means (d > 2)", "PC 2 of posterior means"
    elif z.shape[1] == 1:
        z = np.concatenate([z, np.zeros_like(z)], 1)
        ylabel = "(1-D latent)"
    fig = Figure(figsize=(5, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    y = None if y is None else np.asarray(y).astype(np.int64)
    palette = None if y is None else class_colors(y)
    if y is None:
        ax.scatter(z[:, 0], z[:, 1], s=4, alpha=0.8, color="#1f77b4")
    elif palette is None:  # many classes: a continuous colour bar
        sc = ax.scatter(z[:, 0], z[:, 1], c=y, cmap="viridis", s=4, alpha=0.8)
        fig.colorbar(sc, ax=ax, label="class")
    else:  # one scatter in data order (no class drawn over the others), a legend of discrete colours
        from matplotlib.lines import Line2D

        ax.scatter(z[:, 0], z[:, 1], color=palette[y], s=4, alpha=0.8)
        present = np.unique(y)
        names = [class_names[int(c)] if int(c) < len(class_names) else str(int(c)) for c in present]
        handles = [Line2D([], [], linestyle="", marker="o", markersize=6, color=palette[int(c)]) for c in present]
        ax.legend(handles, names, title="class", loc="center left", bbox_to_anchor=(1.0, 0.5),
                  fontsize=FONT_SMALL, title_fontsize=FONT_SMALL, frameon=False, handletextpad=0.2,
                  ncols=1 if len(present) <= 12 else 2)
    ax.set_xlabel(xlabel, fontsize=FONT)
    ax.set_ylabel(ylabel, fontsize=FONT)
    ax.set_title(title, fontsize=FONT_TITLE, wrap=True)
    ax.tick_params(labelsize=FONT_SMALL)
    return fig


def min_font_px(fig: Figure) -> float:
    """The smallest font of any visible, non-empty text in ``fig``, in pixels of its PNG (points * dpi / 72)."""
    from matplotlib.text import Text

    fig.canvas.draw()  # tick labels exist once drawn
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return min(sizes) * fig.dpi / 72 if sizes else float("inf")


# -- latent-space geometry: codes to decode (pure tensor functions) ------------------------------------
def lattice_levels(n: int) -> torch.Tensor:
    """The manifold axis' probability levels u = (i + 0.5) / n, i = 0..n-1: (n,) float64."""
    if n < 2:
        raise ValueError(f"n={n} must be >= 2 points per side")
    return (torch.arange(n, dtype=torch.float64) + 0.5) / n


def gaussian_lattice(n: int) -> torch.Tensor:
    """Kingma & Welling's manifold axis: z = Phi^-1(u) at ``lattice_levels(n)``: (n,)."""
    return torch.special.ndtri(lattice_levels(n)).float()


def lattice_codes(xs: torch.Tensor, ys: torch.Tensor, dims: tuple[int, int], base: torch.Tensor) -> torch.Tensor:
    """Codes for a decoded grid: row r, column c sets z[dims[0]] = xs[c], z[dims[1]] = ys[-1 - r]
    (so z[dims[1]] grows upwards like a plot's y axis); other entries from ``base`` (d,). -> (len(ys) * len(xs), d)."""
    gy, gx = torch.meshgrid(ys.flip(0), xs, indexing="ij")         # (ny, nx) each
    z = base.reshape(1, -1).repeat(gx.numel(), 1)                   # (ny * nx, d)
    z[:, dims[0]] = gx.reshape(-1).to(z)
    z[:, dims[1]] = gy.reshape(-1).to(z)
    return z


def lerp(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """Linear interpolation from a (d,) to b (d,), both ends included: (steps, d)."""
    t = torch.linspace(0, 1, steps, dtype=a.dtype, device=a.device)[:, None]
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """Spherical interpolation (White, 2016): along the great circle between the directions of a and b,
    norms interpolated linearly; falls back to lerp when a and b are (anti)parallel or zero: (steps, d)."""
    na, nb = a.norm(), b.norm()
    if na < 1e-8 or nb < 1e-8:
        return lerp(a, b, steps)
    omega = torch.arccos(torch.clamp((a / na) @ (b / nb), -1.0, 1.0))
    if torch.sin(omega).abs() < 1e-6:
        return lerp(a, b, steps)
    t = torch.linspace(0, 1, steps, dtype=a.dtype, device=a.device)[:, None]
    s = torch.sin(omega)
    direction = (torch.sin((1 - t) * omega) / s) * (a / na) + (torch.sin(t * omega) / s) * (b / nb)
    return direction * ((1 - t) * na + t * nb)


def traversal_codes(base: torch.Tensor, dims: list[int], values: torch.Tensor) -> torch.Tensor:
    """Row i sets z[dims[i]] to ``values`` (steps,) or ``values[i]`` (rows, steps), the rest at ``base`` (d,):
    -> (len(dims) * steps, d)."""
    values = values.expand(len(dims), values.shape[-1])            # (rows, steps)
    z = base.reshape(1, 1, -1).repeat(len(dims), values.shape[1], 1)  # (rows, steps, d)
    for row, dim in enumerate(dims):
        z[row, :, dim] = values[row].to(z)
    return z.reshape(-1, base.numel())


# -- figures --------------------------------------------------------------------------------------------
CURVE_TITLES = {"elbo": "ELBO (nats per example)", "recon": "reconstruction E_q log p(x|z) (nats)",
                "kl": "KL(q(z|x) || p(z)) (nats)", "loss": "training loss", "mse": "MSE per pixel"}


def image_figure(grid: np.ndarray, title: str, size: tuple[float, float], row_labels: list[str] = (),
                 col_labels: list[str] = (), xlabel: str = "", ylabel: str = "") -> Figure:
    """Show a uint8 grid (H, W, C) under a title; ``row_labels`` / ``col_labels`` name its equal-sized rows /
    columns (thinned to at most 11 shown). ``size`` is (width, height) in inches at 100 dpi."""
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255,
              interpolation="nearest")
    for labels, extent, set_ticks in ((row_labels, grid.shape[0], ax.set_yticks),
                                      (col_labels, grid.shape[1], ax.set_xticks)):
        cell = extent / max(len(labels), 1)
        shown = thinned(len(labels), 11)
        set_ticks([cell * (i + 0.5) for i in shown], [labels[i] for i in shown])
    ax.tick_params(length=0, labelsize=FONT_SMALL)
    ax.set_xlabel(xlabel, fontsize=FONT)
    ax.set_ylabel(ylabel, fontsize=FONT)
    ax.set_title(title, fontsize=FONT_TITLE, wrap=True)
    return fig


def thinned(n: int, most: int) -> list[int]:
    """At most ``most`` evenly spaced indices of 0..n-1, always the first and the last."""
    if n <= most:
        return list(range(n))
    step = math.ceil(n / most)
    shown = list(range(0, n, step))
    if shown[-1] != n - 1:
        shown[-1 if n - 1 - shown[-1] <= step / 2 else len(shown):] = [n - 1]
    return shown


def grid_figure_size(rows: int, cols: int, cell_in: float = 0.5, label_in: float = 1.3,
                     extra_h: float = 0.9) -> tuple[float, float]:
    """(width, height) in inches for an ``image_figure`` of rows x cols images shown ``cell_in`` inches
    (x 100 px) each, with ``label_in`` for row labels and ``extra_h`` for the title and column labels."""
    return cols * cell_in + label_in, rows * cell_in + extra_h


def training_curves(rows: list[dict], keys: tuple[str, ...], title: str = "") -> Figure:
    """One panel per metric in ``keys``: the training value and ``val_<key>`` per epoch (1000 x 320 px)."""
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 3.2), dpi=100, layout="constrained")
    keys = tuple(k for k in keys if any(k in r or f"val_{k}" in r for r in rows))
    if not keys:
        raise ValueError(f"no training curves to draw: the metrics rows hold none of {list(keys)}")
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        for name, style in ((key, "-"), (f"val_{key}", "--")):
            pts = [(r["epoch"], r[name]) for r in rows if r.get(name) is not None]
            if pts:
                ep, v = zip(*pts)
                ax.plot(ep, v, style, marker="." if len(pts) < 30 else None,
                        label="validation" if name.startswith("val_") else "training")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch", fontsize=FONT)
        ax.set_title(CURVE_TITLES.get(key, key), fontsize=FONT)
        ax.tick_params(labelsize=FONT_SMALL)
        ax.legend(fontsize=FONT_SMALL)
    if title:
        fig.suptitle(title, fontsize=FONT_TITLE)
    return fig
