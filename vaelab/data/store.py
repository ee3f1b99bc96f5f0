"""The in-memory :class:`Dataset`: 8-bit data stays uint8 until the batch; subsets and splits are index views.

A stored uint8 value v means the pixel v / 255 (MNIST, image folders, uint8 arrays, photos32: a quarter of
the float32 memory); float data (digits, swiss roll, float arrays) is stored as float32. Batches are
gathered from the storage as uint8 and converted on the batch; training batches also get their random
crops, flips and dynamic-binarization bits there, all drawn from the training generator.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from .info import DataInfo

CHUNK = 8192  # examples per chunk where a whole split would otherwise be converted at once


def to_float(x: Tensor) -> Tensor:
    """Stored examples as float32: uint8 v -> v / 255 (a new tensor); float32 unchanged."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def _rows_of(t: Tensor, rows: slice | Tensor) -> Tensor:
    """``t``'s rows at a slice (a view) or at int64 positions (one index_select)."""
    return t[rows] if isinstance(rows, slice) else t.index_select(0, rows)


def center_crop(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """The centered ``shape[-2:]`` window of images x (..., H, W) stored larger (crop='random'); a view."""
    if x.dim() < 3 or tuple(x.shape[-2:]) == tuple(shape[-2:]):
        return x
    h, w = shape[-2:]
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top:top + h, left:left + w]


def augment(xb: Tensor, info: DataInfo, generator: torch.Generator | None) -> Tensor:
    """A training batch's random crops (storage larger than info.shape) and left-right flips (info.flip).

    xb: (B, C, M, M') stored examples -> (B, *info.shape). Per example: an offset uniform over the
    (M - H + 1) x (M' - W + 1) positions, then a flip with probability 1/2; one gather does both."""
    crop = tuple(xb.shape[1:]) != tuple(info.shape)
    if not crop and not info.flip:
        return xb
    b, (h, w) = xb.shape[0], info.shape[-2:]
    if crop:
        top = torch.randint(0, xb.shape[-2] - h + 1, (b, 1), generator=generator)    # (B, 1)
        left = torch.randint(0, xb.shape[-1] - w + 1, (b, 1), generator=generator)   # (B, 1)
    else:
        top = left = torch.zeros(b, 1, dtype=torch.int64)
    cols = torch.arange(w).expand(b, w)                                               # (B, W)
    if info.flip:
        flip = torch.rand(b, generator=generator) < 0.5                               # (B,)
        cols = torch.where(flip[:, None], cols.flip(-1), cols)
    if not crop:
        return xb.gather(-1, cols[:, None, None, :].expand_as(xb))
    rows = top + torch.arange(h)                                                      # (B, H)
    cols = left + cols                                                                # (B, W)
    batch = torch.arange(b)[:, None, None, None]
    chan = torch.arange(xb.shape[1])[None, :, None, None]
    return xb[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]            # (B, C, H, W)


class Dataset:
    """Examples ``x`` (N, *info.shape) in float32 and optional int64 labels ``y`` (N,).

    ``storage`` holds the stored examples, uint8 (v means v / 255) or float32, possibly larger than
    info.shape (crop='random' keeps a margin to crop from); ``rows`` (None: all) picks this dataset's
    examples from it, so subsets and the validation split are views, not copies. ``x`` is the float32
    center-cropped view evaluation code reads, converted once on first access and kept; training reads
    ``batches(..., train=True)`` and never converts the whole set.

    Data drawn from known generative factors (``shapes``) carries them: ``factor_table`` (M, F) int64
    indices of each stored example's factor values, named by ``factor_names``; ``factors`` is this
    dataset's rows of it (None for data without factors)."""

    def __init__(self, x: Tensor, y: Tensor | None, info: DataInfo, rows: Tensor | None = None,
                 factors: Tensor | None = None, factor_names: tuple[str, ...] = ()) -> None:
        if (factors is None) != (not factor_names) or (factors is not None and (
                factors.dim() != 2 or len(factors) != len(x) or factors.shape[1] != len(factor_names))):
            raise ValueError(f"factors must be (N={len(x)}, F) with F = {len(factor_names)} factor_names")
        self.storage = x          # (M, *stored_shape) uint8 or float32
        self.labels = y           # (M,) int64 or None
        self.info = info
        self.rows = rows          # (N,) int64 rows of storage, or None for all M
        self.factor_table = factors          # (M, F) int64 factor indices, or None
        self.factor_names = tuple(factor_names)
        self._x: Tensor | None = None
        self._y: Tensor | None = None

    def __len__(self) -> int:
        return self.storage.shape[0] if self.rows is None else len(self.rows)

    def __repr__(self) -> str:
        return (f"Dataset({self.info.name!r}, n={len(self)}, shape={self.info.shape}, "
                f"stored as {str(self.storage.dtype).removeprefix('torch.')})")

    def _gather(self, sl: slice | Tensor) -> Tensor:
        """Stored examples at positions ``sl`` of this dataset (a view for a slice of an un-indexed one)."""
        return _rows_of(self.storage, sl if self.rows is None else self.rows[sl])

    @property
    def x(self) -> Tensor:
        """(N, *info.shape) float32, center-cropped; computed on first access and kept."""
        if self._x is None:
            if self.rows is None and self.storage.dtype != torch.uint8:
                self._x = center_crop(self.storage, self.info.shape)
            else:
                out = torch.empty((len(self), *self.info.shape), dtype=torch.float32)
                for i in range(0, len(self), CHUNK):  # no full-size uint8 gather or float temporary
                    out[i:i + CHUNK] = to_float(center_crop(self._gather(slice(i, i + CHUNK)), self.info.shape))
                self._x = out
        return self._x

    @property
    def y(self) -> Tensor | None:
        if self.labels is None or self.rows is None:
            return self.labels
        if self._y is None:
            self._y = self.labels.index_select(0, self.rows)
        return self._y

    @property
    def factors(self) -> Tensor | None:
        """(N, F) int64 ground-truth factor indices of this dataset's examples, or None (data without factors)."""
        if self.factor_table is None or self.rows is None:
            return self.factor_table
        return self.factor_table.index_select(0, self.rows)

    def subset(self, idx: Tensor) -> "Dataset":
        """The examples at positions ``idx`` (int tensor), as a view of the same storage."""
        idx = torch.as_tensor(idx, dtype=torch.int64)
        return Dataset(self.storage, self.labels, self.info, idx if self.rows is None else self.rows[idx],
                       self.factor_table, self.factor_names)

    def take(self, n: int) -> Tensor:
        """The first ``n`` examples as float32 (n, *info.shape), without converting the rest."""
        if self._x is not None:
            return self._x[:n]
        return to_float(center_crop(self._gather(slice(0, n)), self.info.shape)).contiguous()

    def mean(self) -> Tensor:
        """(*info.shape) float32 mean of the examples' float values (center crops), chunk by chunk (uint8
        storage never converted); for binarize='dynamic' the chance of a 1 that training's bits have."""
        total, step = torch.zeros(self.info.shape, dtype=torch.float64), CHUNK // 8  # float64 temporaries: ~6 MB on MNIST
        for i in range(0, len(self), step):
            total += center_crop(self._gather(slice(i, i + step)), self.info.shape).sum(0, dtype=torch.float64)
        scale = 255.0 if self.storage.dtype == torch.uint8 else 1.0
        return (total / (max(len(self), 1) * scale)).float()

    def value_range(self) -> tuple[float, float]:
        """(min, max) of the float values, chunk by chunk (uint8 storage: read as stored, never converted)."""
        lo, hi = float("inf"), float("-inf")
        for i in range(0, len(self), CHUNK):
            part = self._gather(slice(i, i + CHUNK))
            lo, hi = min(lo, float(part.min())), max(hi, float(part.max()))
        scale = 255.0 if self.storage.dtype == torch.uint8 else 1.0
        return lo / scale, hi / scale

    def batches(self, batch_size: int, *, shuffle: bool = True, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", train: bool = False) -> Iterator[tuple[Tensor, Tensor | None]]:
        """(x, y) batches of a permutation drawn from ``generator`` (or in order without ``shuffle``).

        ``train``: what a training step sees: random crops and flips (as info says) and, for
        binarize='dynamic', fresh Bernoulli bits, all drawn from ``generator``; otherwise center crops of
        the values as stored. uint8 batches go to the device as uint8 and become float32 there."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else None
        # storage rows of the epoch's examples in batch order, composed once: a batch is then a slice of it
        at = self.rows if order is None else (order if self.rows is None else self.rows.index_select(0, order))
        dynamic = train and self.info.binarize == "dynamic"
        for start in range(0, n, batch_size):
            pos = slice(start, start + batch_size) if at is None else at[start:start + batch_size]
            xb = _rows_of(self.storage, pos)
            yb = None if self.labels is None else _rows_of(self.labels, pos)
            xb = augment(xb, self.info, generator) if train else center_crop(xb, self.info.shape)
            if dynamic:  # drawn on the CPU: the generator lives there
                xb = torch.bernoulli(to_float(xb), generator=generator)
            xb = to_float(xb.to(device, non_blocking=True))
            yield xb, None if yb is None else yb.to(device, non_blocking=True)


def dequantize(x: Tensor, u: Tensor, levels: int) -> Tensor:
    """y = (k + u) / L for data x = k / (L - 1) (k rounded) and u in [0, 1): same shape as u. Training on
    y (``TrainConfig.dequantize``) fits the density that the dequantized bound of ``vaelab eval`` scores."""
    return (torch.round(x * (levels - 1)) + u) / levels


def check_finite(x: Tensor, what: str = "data") -> None:
    """Reject NaN/Inf at the boundary, naming how many and where the first one is."""
    if x.dtype == torch.uint8:
        return
    flat = x.reshape(-1)
    step = 1 << 22  # in chunks: torch.isfinite makes full-size float temporaries (MNIST: 188 MB each)
    if all(bool(torch.isfinite(flat[i:i + step]).all()) for i in range(0, flat.numel(), step)):
        return
    bad = ~torch.isfinite(x)
    if bad.any():
        first = int(bad.reshape(len(x), -1).any(1).nonzero()[0])
        raise ValueError(f"{what} contains {int(bad.sum())} NaN/Inf value(s) (first in example {first}); "
                         "allowed: finite numbers only")


def draw_bits(ds: Dataset, generator: torch.Generator, crop: bool) -> Tensor:
    """One Bernoulli draw of every value of ``ds`` (in order, chunk by chunk: the same bits as one draw over
    the whole float tensor), as uint8 0 / 255; ``crop``: of the center crops, else of the stored examples."""
    shape = ds.info.shape if crop else tuple(ds.storage.shape[1:])
    out = torch.empty((len(ds), *shape), dtype=torch.uint8)
    for i in range(0, len(ds), CHUNK):
        part = ds._gather(slice(i, i + CHUNK))
        part = center_crop(part, shape) if crop else part
        out[i:i + CHUNK] = torch.bernoulli(to_float(part), generator=generator).mul_(255)
    return out


def split_validation(ds: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset | None]:
    """Hold out ``fraction`` of a training set for validation (a fixed permutation; both parts are views)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction={fraction} must be in [0, 1)")
    n_val = int(round(fraction * len(ds)))
    if n_val == 0:
        return ds, None
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    return ds.subset(perm[n_val:]), ds.subset(perm[:n_val])


def for_evaluation(ds: Dataset, seed: int = 4321) -> Dataset:
    """Dynamically binarized data is scored on one fixed Bernoulli draw (the usual protocol), kept as uint8."""
    if ds.info.binarize != "dynamic":
        return ds
    return Dataset(draw_bits(ds, torch.Generator().manual_seed(seed), crop=True), ds.y, ds.info,
                   factors=ds.factors, factor_names=ds.factor_names)


def batches(x: Tensor, y: Tensor | None, batch_size: int, *, shuffle: bool = True,
            binarize: str = "none", generator: torch.Generator | None = None,
            device: torch.device | str = "cpu") -> Iterator[tuple[Tensor, Tensor | None]]:
    """(x, y) batches of tensors (x float32, or uint8 meaning v / 255) as slices of one permutation;
    dynamic binarization draws fresh bits. ``Dataset.batches`` does the same for a Dataset."""
    info = DataInfo(name="tensor", shape=tuple(x.shape[1:]), binarize=binarize)
    yield from Dataset(x, y, info).batches(batch_size, shuffle=shuffle, generator=generator, device=device,
                                           train=binarize == "dynamic")
