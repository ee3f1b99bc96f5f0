"""``photos32``: 32x32 RGB crops of the two photos inside scikit-learn, a small offline stand-in for
CIFAR-like data (8-bit natural-image pixels; no objects, no classes beyond which photo a crop is from).

scikit-learn ships china.jpg and flower.jpg (427 x 640 RGB, ``sklearn.datasets.load_sample_images``).
Each photo is cut into a 2 x 4 grid of regions (rows split at 213, columns at 160, 320, 480); the
regions at (row 0, column 2) and (row 1, column 0) of both photos are the test split, the other six the
training split. Every region is handled on its own: it is shrunk by 1, 2 and 4 (box averages,
``PIL.Image.reduce``) and cut into 32 x 32 crops on a grid (stride 8 px for training, 16 px for test),
so no crop crosses a region border and no pixel of a photo is in both splits.

The two test regions were picked once, before any model was trained, among the 28 possible pairs as
the one whose crops' per-channel means are closest to the training crops' (within 3.5 / 255; pixel
standard deviation 91 against 83): china's sky and its lower-left trees and roofs, the flower's upper
middle (petals) and its lower-left leaves. Crops are in a fixed order (photo, region, scale, row,
column), the same on every load. Labels: 0 china, 1 flower.
"""
from __future__ import annotations

import numpy as np

NAME = "photos32"
SIDE = 32                              # crop side in pixels
PHOTOS = ("china", "flower")           # label -> photo (china.jpg, flower.jpg)
ROW_EDGES = (0, 213, 427)              # the 2 x 4 grid of regions, in pixels of the 427 x 640 photos
COL_EDGES = (0, 160, 320, 480, 640)
TEST_REGIONS = ((0, 2), (1, 0))        # (row, column) of the held-out regions
SCALES = (1, 2, 4)                     # shrink factors
STRIDE = {"train": 8, "test": 16}      # grid step of the crops, in pixels of the shrunk region


def _crops(region: np.ndarray, stride: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (n, 3, SIDE, SIDE) uint8 crops on a grid of step ``stride`` (copied)."""
    if region.shape[0] < SIDE or region.shape[1] < SIDE:
        return np.empty((0, 3, SIDE, SIDE), np.uint8)
    windows = np.lib.stride_tricks.sliding_window_view(region, (SIDE, SIDE), axis=(0, 1))  # (H', W', 3, S, S)
    return windows[::stride, ::stride].reshape(-1, 3, SIDE, SIDE).copy()


def regions(split: str) -> list[tuple[int, int]]:
    """The (row, column) grid regions of a split."""
    every = [(r, c) for r in range(len(ROW_EDGES) - 1) for c in range(len(COL_EDGES) - 1)]
    return [rc for rc in every if (rc in TEST_REGIONS) == (split == "test")]


def load_photos32(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): uint8 crops (N, 3, 32, 32) and int64 photo labels (N,) of ``split`` ('train' | 'test')."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    if split not in STRIDE:
        raise ValueError(f"split={split!r} is not known; allowed: {list(STRIDE)}")
    photos = load_sample_images().images  # china, flower: (427, 640, 3) uint8
    xs, ys = [], []
    for label, photo in enumerate(photos):
        if photo.shape != (ROW_EDGES[-1], COL_EDGES[-1], 3):
            raise ValueError(f"scikit-learn's sample photo {PHOTOS[label]} is {photo.shape}, "
                             f"expected {(ROW_EDGES[-1], COL_EDGES[-1], 3)}")
        for r, c in regions(split):
            region = photo[ROW_EDGES[r]:ROW_EDGES[r + 1], COL_EDGES[c]:COL_EDGES[c + 1]]
            for f in SCALES:
                small = region if f == 1 else np.asarray(Image.fromarray(region).reduce(f))
                crops = _crops(small, STRIDE[split])
                xs.append(crops)
                ys.append(np.full(len(crops), label, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)
