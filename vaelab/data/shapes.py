"""``shapes``: procedurally drawn 64x64 binary sprites with known generative factors (dSprites-like,
Matthey et al. 2017), generated on first use from numpy alone: no download, no file, no randomness.

Every example is one combination of five factors, each on a grid of evenly spaced values:

- ``shape``: square | ellipse | heart (3 values)
- ``scale``: 0.5 .. 1 (6 values); the shape's radius is ``RADIUS * scale`` pixels
- ``rotation``: 0 .. 2 pi, end excluded (10 values, 36 degrees apart; dSprites has 40)
- ``x``, ``y``: the shape's center, 0 .. 1 across the middle of the image (16 values each; dSprites has 32)

The default grid is smaller than dSprites' 737,280 images to keep memory small: 3 x 6 x 10 x 16 x 16 =
46,080 images, 189 MB as uint8 (:func:`render` draws any grid, e.g. dSprites' own ``(3, 6, 40, 32, 32)``).
A pixel is on (255) when its center lies inside the shape, off (0) otherwise: no anti-aliasing, so the
images are binary (``levels=2``). The square has half-side 0.8, the ellipse semi-axes 1 and 0.5, the heart
the curve (u^2 + v^2 - 1)^3 <= u^2 v^3 shrunk by 0.85, all in units of the radius, rotated about the center
by the rotation angle (counter-clockwise on screen).

The test split is a fixed 10 % of the grid (a permutation seeded with ``SPLIT_SEED``), the training split
the rest, both in the permutation's order (the first n test examples are a random part of the grid, e.g. for
``vaelab eval --max-examples``) and the same on every load. Labels are the shape (0 square, 1 ellipse,
2 heart); the factors travel with the :class:`~vaelab.data.store.Dataset` as grid indices (N, 5).
"""
from __future__ import annotations

import numpy as np

NAME = "shapes"
SIDE = 64                                          # image side in pixels
SHAPES = ("square", "ellipse", "heart")            # label -> shape
FACTOR_NAMES = ("shape", "scale", "rotation", "x", "y")
GRID = (3, 6, 10, 16, 16)                          # values per factor (the registered data set)
RADIUS = 12.0                                      # pixels at scale 1
MARGIN = 15.0                                      # pixels between the image border and the outermost center
TEST_FRACTION = 0.1                                # share of the grid held out as the test split
SPLIT_SEED = 0
WINDOW = 32                                        # side of the square around a center where pixels are tested
CHUNK = 4096                                       # images drawn at once (a few (CHUNK, 32, 32) arrays)


def factor_grid(sizes: tuple[int, ...] = GRID) -> np.ndarray:
    """Every combination of factor indices, the last factor fastest: (prod(sizes), 5) int64."""
    _check_sizes(sizes)
    return np.indices(sizes).reshape(len(sizes), -1).T.astype(np.int64)


def factor_values(factors: np.ndarray, sizes: tuple[int, ...] = GRID) -> np.ndarray:
    """Grid indices (N, 5) -> values (N, 5) float64: shape id, scale in [0.5, 1], rotation in [0, 2 pi),
    x and y in [0, 1]."""
    _check_sizes(sizes)
    f = np.asarray(factors)
    if f.ndim != 2 or f.shape[1] != len(FACTOR_NAMES) or (f < 0).any() or (f >= np.asarray(sizes)).any():
        raise ValueError(f"factors must be grid indices of shape (N, {len(FACTOR_NAMES)}) below sizes {sizes}")
    out = np.empty(f.shape, dtype=np.float64)
    out[:, 0] = f[:, 0]
    out[:, 1] = 0.5 + 0.5 * f[:, 1] / max(1, sizes[1] - 1)
    out[:, 2] = 2 * np.pi * f[:, 2] / sizes[2]
    out[:, 3] = f[:, 3] / max(1, sizes[3] - 1)
    out[:, 4] = f[:, 4] / max(1, sizes[4] - 1)
    return out


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Which points (B, H, W) of the shape's own frame (radius units, v up) lie inside ``shape``."""
    if shape == 0:
        return (np.abs(u) <= 0.8) & (np.abs(v) <= 0.8)
    if shape == 1:
        return u * u + 4.0 * v * v <= 1.0
    hu, hv = u / 0.85, v / 0.85 + 0.12                # centered: the curve spans v in [-1, 1.25]
    hu2 = hu * hu
    return (hu2 + hv * hv - 1.0) ** 3 <= hu2 * hv * hv * hv


def render(factors: np.ndarray, sizes: tuple[int, ...] = GRID) -> np.ndarray:
    """The images of grid indices ``factors`` (N, 5): (N, 1, 64, 64) uint8, 0 or 255.

    Only a WINDOW x WINDOW square around each center is tested (every shape fits in it)."""
    values = factor_values(factors, sizes)            # (N, 5)
    out = np.zeros((len(values), 1, SIDE, SIDE), dtype=np.uint8)
    span, steps = SIDE - 2 * MARGIN, np.arange(WINDOW)
    for i in range(0, len(values), CHUNK):
        v = values[i:i + CHUNK]
        center = MARGIN + span * v[:, 3:5]                                       # (B, 2) x, y in pixels
        corner = np.clip(np.round(center).astype(np.int64) - WINDOW // 2, 0, SIDE - WINDOW)  # (B, 2)
        cols, rows = corner[:, :1] + steps, corner[:, 1:] + steps                # (B, WINDOW) each
        radius = (RADIUS * v[:, 1])[:, None, None]                               # (B, 1, 1)
        dx = (cols[:, None, :] + 0.5 - center[:, 0, None, None]) / radius        # (B, 1, WINDOW)
        dy = (center[:, 1, None, None] - rows[:, :, None] - 0.5) / radius        # (B, WINDOW, 1): up is +
        cos, sin = np.cos(v[:, 2])[:, None, None], np.sin(v[:, 2])[:, None, None]
        mask = np.empty((len(v), WINDOW, WINDOW), dtype=bool)
        for shape in np.unique(v[:, 0]).astype(int):
            k = v[:, 0] == shape
            u = (cos[k] * dx[k] + sin[k] * dy[k]).astype(np.float32)            # (b, WINDOW, WINDOW), rotated back
            w = (cos[k] * dy[k] - sin[k] * dx[k]).astype(np.float32)
            mask[k] = _inside(shape, u, w)
        b = np.arange(i, i + len(v))[:, None, None]
        out[b, 0, rows[:, :, None], cols[:, None, :]] = mask.astype(np.uint8) * 255
    return out


def split_rows(n: int, split: str) -> np.ndarray:
    """Positions in the grid of ``split``, in the order of a seeded permutation (its first TEST_FRACTION: test)."""
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is not known; allowed: ['train', 'test']")
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    cut = int(round(TEST_FRACTION * n))
    return perm[:cut] if split == "test" else perm[cut:]


def load_shapes(split: str, sizes: tuple[int, ...] = GRID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, factors) of ``split``: uint8 images (N, 1, 64, 64), shape labels (N,) and grid indices (N, 5)."""
    grid = factor_grid(sizes)
    factors = grid[split_rows(len(grid), split)]
    return render(factors, sizes), factors[:, 0].copy(), factors


def _check_sizes(sizes: tuple[int, ...]) -> None:
    if (len(sizes) != len(FACTOR_NAMES) or any(not isinstance(s, (int, np.integer)) or s < 1 for s in sizes)
            or sizes[0] > len(SHAPES)):
        raise ValueError(f"sizes={sizes} must give values per factor {list(FACTOR_NAMES)}: integers >= 1, "
                         f"at most {len(SHAPES)} shapes")
