"""Datasets as whole in-memory tensors: digits (embedded default), MNIST, swiss roll, folders, arrays.

Every loader returns a :class:`Dataset` holding ``x`` of shape (N, *shape) float32 and optional integer
labels ``y`` of shape (N,). Batches are slices of a permutation: no per-item Python.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

BUILTIN = ("digits", "mnist", "swiss-roll")
BINARIZE = ("none", "dynamic", "static")


@dataclass(frozen=True)
class DataInfo:
    name: str                      # dataset name or path it came from
    shape: tuple[int, ...]         # shape of one example, e.g. (1, 28, 28) or (3,)
    n_classes: int = 0             # number of label classes (0: unlabelled)
    is_image: bool = True          # True when examples are (C, H, W) pixels in [0, 1]
    binarize: str = "none"         # none | dynamic | static (Bernoulli draws of the pixels)
    size: int | None = None        # resize target for image folders
    class_names: tuple[str, ...] = ()  # label names, index = class id

    @property
    def dim(self) -> int:
        """Number of scalar values in one example."""
        return math.prod(self.shape)


@dataclass
class Dataset:
    x: Tensor                      # (N, *shape) float32
    y: Tensor | None               # (N,) int64 or None
    info: DataInfo

    def __len__(self) -> int:
        return self.x.shape[0]

    def subset(self, idx: Tensor) -> "Dataset":
        return Dataset(self.x[idx], None if self.y is None else self.y[idx], self.info)


def check_binarize(mode: str) -> str:
    if mode not in BINARIZE:
        raise ValueError(f"binarize={mode!r} is not known; allowed: {list(BINARIZE)}")
    return mode


def check_finite(x: Tensor, what: str = "data") -> None:
    """Reject NaN/Inf at the boundary, naming how many and where the first one is."""
    flat = x.reshape(-1)
    step = 1 << 22  # in chunks: torch.isfinite makes full-size float temporaries (MNIST: 188 MB each)
    if all(bool(torch.isfinite(flat[i:i + step]).all()) for i in range(0, flat.numel(), step)):
        return
    bad = ~torch.isfinite(x)
    if bad.any():
        first = int(bad.reshape(len(x), -1).any(1).nonzero()[0])
        raise ValueError(f"{what} contains {int(bad.sum())} NaN/Inf value(s) (first in example {first}); "
                         "allowed: finite numbers only")


def _digits(split: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.2, random_state=seed, stratify=d.target)
    return (xtr, ytr, (1, 8, 8)) if split == "train" else (xte, yte, (1, 8, 8))


def _swiss_roll(split: str) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    from sklearn.datasets import make_swiss_roll

    n, seed = (4000, 0) if split == "train" else (1000, 1)
    x, t = make_swiss_roll(n_samples=n, noise=0.05, random_state=seed)
    x = ((x - np.array([2.0, 10.5, 0.3])) / np.array([6.5, 5.8, 6.7])).astype(np.float32)
    edges = np.linspace(1.5 * np.pi, 4.5 * np.pi, 11)[1:-1]
    return x, np.digitize(t, edges), (3,)  # labels: 10 bins of the position along the roll


def _mnist(split: str, data_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    from .mnist import load_mnist

    x, y = load_mnist(split, data_dir=data_dir)
    x = x.astype(np.float32)
    x /= 255.0  # in place: one float32 copy of the images at peak, not two
    return x[:, None], y, (1, 28, 28)


def _from_path(path: Path, size: int | None) -> tuple[np.ndarray, np.ndarray | None, bool, tuple[str, ...]]:
    from .files import load_array, load_image_folder

    if path.is_dir():
        x, y, names = load_image_folder(path, size=size)
        return x, y, True, tuple(names)
    x, y = load_array(path)
    return x, y, x.ndim == 4 or (x.ndim == 3 and float(x.min()) >= 0 and float(x.max()) <= 1), ()


def load_dataset(name: str, split: str = "train", data_dir: str | Path | None = None,
                 binarize: str = "none", size: int | None = None, seed: int = 0) -> Dataset:
    """Load ``name`` (digits | mnist | swiss-roll | a folder of images | a .npy/.npz file)."""
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is not known; allowed: ['train', 'test']")
    check_binarize(binarize)
    names: tuple[str, ...] = ()
    file_classes: int | None = None
    if name == "digits":
        x, y, shape = _digits(split)
        is_image = True
    elif name == "mnist":
        x, y, shape = _mnist(split, data_dir)
        is_image = True
    elif name == "swiss-roll":
        x, y, shape = _swiss_roll(split)
        is_image = False
    elif Path(name).exists():
        name = str(Path(name).resolve())  # recorded absolute: the run works from any working directory
        x, y, is_image, names = _from_path(Path(name), size)
        file_classes = max(len(names), _count_classes(y, name))  # both splits agree, whatever each holds
        x, y = _path_split(x, y, split, seed)
        if x.ndim == 3 and is_image:
            x = x[:, None]
        shape = tuple(x.shape[1:])
    else:
        raise ValueError(f"data={name!r} is neither a built-in dataset {list(BUILTIN)} "
                         "nor an existing image folder / .npy / .npz file")
    xt = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
    check_finite(xt, f"data {name!r}")
    if binarize != "none" and (not is_image or xt.min() < 0 or xt.max() > 1):
        raise ValueError(f"binarize={binarize!r} needs pixel values in [0, 1]; data {name!r} is not")
    yt = None if y is None else torch.as_tensor(np.asarray(y), dtype=torch.int64)
    n_classes = file_classes if file_classes is not None else int(yt.max()) + 1 if yt is not None else 0
    if name == "swiss-roll":
        names = tuple(f"t-bin {i}" for i in range(10))
    elif not names and n_classes:
        names = tuple(str(i) for i in range(n_classes))
    info = DataInfo(name=name, shape=tuple(shape), n_classes=n_classes, is_image=is_image,
                    binarize=binarize, size=size, class_names=names)
    ds = Dataset(xt, yt, info)
    if binarize == "static":  # one fixed draw per split, the same on every load
        gen = torch.Generator().manual_seed(1234 + (split == "test"))
        ds.x = torch.bernoulli(ds.x, generator=gen)
    return ds


def _count_classes(y: np.ndarray | None, name: str) -> int:
    """Number of classes max(y) + 1 of user labels, which must be integers >= 0 (0: no labels)."""
    if y is None or len(y) == 0:
        return 0
    y = np.asarray(y)
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all()):
        raise ValueError(f"data {name!r} has non-integer labels y (dtype {y.dtype}); allowed: integers >= 0")
    if y.min() < 0:
        raise ValueError(f"data {name!r} has label {int(y.min())}; allowed: integers >= 0 (class ids)")
    return int(y.max()) + 1


def _path_split(x: np.ndarray, y: np.ndarray | None, split: str, seed: int):
    """User data has no official split: a fixed 90/10 permutation split."""
    perm = np.random.default_rng(seed).permutation(len(x))
    cut = max(1, int(round(0.9 * len(x)))) if len(x) > 1 else 1
    idx = perm[:cut] if split == "train" else (perm[cut:] if len(x) > cut else perm[:cut])
    return x[idx], None if y is None else y[idx]


def load_from_info(info: DataInfo | dict[str, Any], split: str,
                   data_dir: str | Path | None = None) -> Dataset:
    """Reload the data a run was trained on, from the info saved in its config."""
    info = info_from_dict(info)  # config.json is untrusted: every field type-checked
    return load_dataset(info.name, split, data_dir=data_dir, binarize=info.binarize, size=info.size)


_WHERE = "config.json"


def _bad(field: str, value: Any, rule: str) -> ValueError:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return ValueError(f"{_WHERE} field data.{field}={text} must be {rule}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def info_from_dict(info: Any) -> DataInfo:
    """The recorded ``data`` entry of a config.json as a :class:`DataInfo`, every field type-checked."""
    if isinstance(info, DataInfo):
        return info
    if not isinstance(info, dict):
        raise ValueError(f"{_WHERE} field 'data' must be an object with the dataset's name and shape; "
                         f"got a {type(info).__name__}")
    fields = {f.name for f in dataclasses.fields(DataInfo)}
    unknown = sorted(set(info) - fields)
    if unknown:
        raise ValueError(f"{_WHERE} field 'data' has unknown key(s) {unknown}; allowed: {sorted(fields)}")
    for need in ("name", "shape"):
        if need not in info:
            raise ValueError(f"{_WHERE} field 'data' lacks {need!r}")
    name, shape = info["name"], info["shape"]
    if not isinstance(name, str) or not name:
        raise _bad("name", name, "a non-empty string (a built-in dataset or a path)")
    if not isinstance(shape, (list, tuple)) or not shape or not all(_is_int(s) and s >= 1 for s in shape):
        raise _bad("shape", shape, "a list of integers >= 1")
    n_classes = info.get("n_classes", 0)
    if not _is_int(n_classes) or n_classes < 0:
        raise _bad("n_classes", n_classes, "an integer >= 0")
    is_image = info.get("is_image", True)
    if not isinstance(is_image, bool):
        raise _bad("is_image", is_image, "true or false")
    binarize = info.get("binarize", "none")
    if not isinstance(binarize, str) or binarize not in BINARIZE:
        raise _bad("binarize", binarize, f"one of {list(BINARIZE)}")
    size = info.get("size")
    if size is not None and (not _is_int(size) or size < 1):
        raise _bad("size", size, "null or an integer >= 1")
    names = info.get("class_names", [])
    if not isinstance(names, (list, tuple)) or not all(isinstance(c, str) for c in names):
        raise _bad("class_names", names, "a list of strings")
    return DataInfo(name=name, shape=tuple(shape), n_classes=n_classes, is_image=is_image, binarize=binarize,
                    size=size, class_names=tuple(names))


def info_dict(info: DataInfo) -> dict[str, Any]:
    return {**dataclasses.asdict(info), "shape": list(info.shape), "class_names": list(info.class_names)}


def split_validation(ds: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset | None]:
    """Hold out ``fraction`` of a training set for validation (a fixed permutation)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction={fraction} must be in [0, 1)")
    n_val = int(round(fraction * len(ds)))
    if n_val == 0:
        return ds, None
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    return ds.subset(perm[n_val:]), ds.subset(perm[:n_val])


def batches(x: Tensor, y: Tensor | None, batch_size: int, *, shuffle: bool = True,
            binarize: str = "none", generator: torch.Generator | None = None,
            device: torch.device | str = "cpu") -> Iterator[tuple[Tensor, Tensor | None]]:
    """Yield (x, y) batches as slices of one permutation; dynamic binarization draws fresh bits."""
    n = x.shape[0]
    order = torch.randperm(n, generator=generator) if shuffle else None
    for start in range(0, n, batch_size):
        if order is None:
            xb = x[start:start + batch_size]
            yb = None if y is None else y[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            xb = x.index_select(0, idx)
            yb = None if y is None else y.index_select(0, idx)
        if binarize == "dynamic":
            xb = torch.bernoulli(xb, generator=generator)
        yield xb.to(device, non_blocking=True), None if yb is None else yb.to(device, non_blocking=True)


def for_evaluation(ds: Dataset, seed: int = 4321) -> Dataset:
    """Dynamically binarized data is scored on one fixed Bernoulli draw (the usual protocol)."""
    if ds.info.binarize != "dynamic":
        return ds
    return Dataset(torch.bernoulli(ds.x, generator=torch.Generator().manual_seed(seed)), ds.y, ds.info)
