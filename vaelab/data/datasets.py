"""Datasets by name: digits (embedded default), MNIST, Fashion-MNIST, CIFAR-10, photos32, swiss roll, shapes
(drawn sprites with ground-truth factors), image folders, arrays.

Every loader returns a :class:`~vaelab.data.store.Dataset`: 8-bit data (MNIST, Fashion-MNIST, CIFAR-10,
photos32, image folders, uint8 arrays) is stored as uint8 and becomes float32 in [0, 1] on the batch;
the rest as float32. ``info.levels`` says how many values the data take (256: 8-bit pixels, 2: binary,
17: digits' 0..16 grey levels, None: continuous), for likelihoods that score discrete data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .info import (  # noqa: F401  (re-exported: vaelab.data.datasets was their home)
    BINARIZE, CROPS, DataInfo, check_binarize, info_dict, info_from_dict,
)
from .store import (  # noqa: F401
    Dataset, batches, check_finite, draw_bits, for_evaluation, split_validation,
)
from .shapes import FACTOR_NAMES

BUILTIN = ("digits", "mnist", "fashion-mnist", "cifar10", "photos32", "swiss-roll", "shapes")
DEFAULT_TEST_FRACTION = {"digits": 0.2, "path": 0.1}  # data sets without a published test split


def _digits(split: str, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8), values k / 16
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=fraction, random_state=seed, stratify=d.target)
    return (xtr, ytr) if split == "train" else (xte, yte)


def _swiss_roll(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_swiss_roll

    n, seed = (4000, 0) if split == "train" else (1000, 1)
    x, t = make_swiss_roll(n_samples=n, noise=0.05, random_state=seed)
    x = ((x - np.array([2.0, 10.5, 0.3])) / np.array([6.5, 5.8, 6.7])).astype(np.float32)
    edges = np.linspace(1.5 * np.pi, 4.5 * np.pi, 11)[1:-1]
    return x, np.digitize(t, edges)  # labels: 10 bins of the position along the roll


def _builtin(name: str, split: str, data_dir: str | Path | None, fraction: float | None):
    """(x, y, is_image, levels, class names) of a built-in data set; x uint8 or float32 numpy."""
    if name == "digits":
        x, y = _digits(split, fraction or DEFAULT_TEST_FRACTION["digits"])
        return x, y, True, 17, ()
    if name == "swiss-roll":
        x, y = _swiss_roll(split)
        return x, y, False, None, tuple(f"t-bin {i}" for i in range(10))
    if name == "mnist":
        from .mnist import load_mnist

        x, y = load_mnist(split, data_dir=data_dir)
        return x[:, None], y, True, 256, ()
    if name == "fashion-mnist":
        from .published import FASHION_CLASSES, load_fashion_mnist

        x, y = load_fashion_mnist(split, data_dir=data_dir)
        return x[:, None], y, True, 256, FASHION_CLASSES
    if name == "cifar10":
        from .published import CIFAR10_CLASSES, load_cifar10

        x, y = load_cifar10(split, data_dir=data_dir)
        return x, y, True, 256, CIFAR10_CLASSES
    from .photos import PHOTOS, load_photos32

    x, y = load_photos32(split)
    return x, y, True, 256, PHOTOS


def _from_path(path: Path, size: int | None, crop: str):
    """(x, y, is_image, levels, class names) of an image folder or a .npy/.npz file; x uint8 or float32."""
    from .files import read_array, read_image_folder

    if path.is_dir():
        x, y, names = read_image_folder(path, size=size, crop=crop)
        return x, y, True, 256 if x.dtype == np.uint8 else None, tuple(names)
    if size is not None:
        raise ValueError(f"size={size} resizes image folders; data {str(path)!r} is an array file")
    x, y, levels = read_array(path)
    is_image = x.ndim == 4 or (x.ndim == 3 and (x.dtype == np.uint8 or (float(x.min()) >= 0 and float(x.max()) <= 1)))
    return (x[:, None] if x.ndim == 3 and is_image else x), y, is_image, levels, ()


def _check_options(name: str, is_path: bool, size: int | None, crop: str, test_fraction: float | None) -> None:
    if crop not in CROPS:
        raise ValueError(f"crop={crop!r} is not known; allowed: {list(CROPS)}")
    if not is_path and size is not None:
        raise ValueError(f"size={size} resizes image folders; data {name!r} is built in (its own size)")
    if crop == "random" and (not is_path or size is None):
        raise ValueError("crop='random' crops image folders resized with size=S; pass --size")
    if test_fraction is not None and not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction} must be in (0, 1)")
    if test_fraction is not None and not is_path and name != "digits":
        raise ValueError(f"test_fraction applies to digits, image folders and array files; data {name!r} has "
                         "its own test split")


def load_dataset(name: str, split: str = "train", data_dir: str | Path | None = None,
                 binarize: str = "none", size: int | None = None, seed: int = 0, crop: str = "center",
                 flip: bool = False, test_fraction: float | None = None) -> Dataset:
    """Load ``name`` (a built-in name: digits | mnist | fashion-mnist | cifar10 | photos32 | swiss-roll |
    shapes (with ground-truth factors: ``Dataset.factors``); an image folder; a .npy/.npz file).

    ``size``, ``crop``: image folders resized to size x size (crop: center | random | squash, see
    DataInfo); ``flip``: random left-right flips of training batches; ``test_fraction``: the share held
    out as the test split of data without a published one (digits 0.2, folders and files 0.1 by default)."""
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is not known; allowed: ['train', 'test']")
    check_binarize(binarize)
    is_path = name not in BUILTIN and Path(name).exists()
    if name not in BUILTIN and not is_path:
        raise ValueError(f"data={name!r} is neither a built-in dataset {list(BUILTIN)} "
                         "nor an existing image folder / .npy / .npz file")
    _check_options(name, is_path, size, crop, test_fraction)
    rows, fraction, file_classes, factors = None, test_fraction, None, None
    if is_path:
        name = str(Path(name).resolve())  # recorded absolute: the run works from any working directory
        x, y, is_image, levels, names = _from_path(Path(name), size, crop)
        file_classes = max(len(names), _count_classes(y, name))  # both splits agree, whatever each holds
        fraction = test_fraction or DEFAULT_TEST_FRACTION["path"]
        rows = torch.from_numpy(_path_split(len(x), split, seed, fraction))
    elif name == "shapes":
        from .shapes import SHAPES, load_shapes

        x, y, factors = load_shapes(split)
        is_image, levels, names = True, 2, SHAPES
    else:
        x, y, is_image, levels, names = _builtin(name, split, data_dir, test_fraction)
        fraction = (test_fraction or DEFAULT_TEST_FRACTION["digits"]) if name == "digits" else None
    if flip and not (is_image and x.ndim == 4):
        raise ValueError(f"flip=True mirrors images; data {name!r} is not (C, H, W) images")
    xt = torch.from_numpy(x if x.dtype == np.uint8 else np.ascontiguousarray(x, dtype=np.float32))
    check_finite(xt, f"data {name!r}")
    if binarize != "none" and (not is_image or (xt.dtype != torch.uint8 and (xt.min() < 0 or xt.max() > 1))):
        raise ValueError(f"binarize={binarize!r} needs pixel values in [0, 1]; data {name!r} is not")
    yt = None if y is None else torch.as_tensor(np.asarray(y), dtype=torch.int64)
    n_classes = file_classes if file_classes is not None else int(yt.max()) + 1 if yt is not None else 0
    if not names and n_classes:
        names = tuple(str(i) for i in range(n_classes))
    out_shape = tuple(x.shape[1:]) if size is None else (x.shape[1], size, size)
    info = DataInfo(name=name, shape=out_shape, n_classes=n_classes, is_image=is_image, binarize=binarize,
                    size=size, class_names=tuple(names), crop=crop, flip=flip, test_fraction=fraction,
                    levels=2 if binarize != "none" else levels)
    ground = {} if factors is None else {"factors": torch.from_numpy(factors), "factor_names": FACTOR_NAMES}
    ds = Dataset(xt, yt, info, rows, **ground)
    if binarize == "static":  # one fixed draw per split, the same on every load
        gen = torch.Generator().manual_seed(1234 + (split == "test"))
        ds = Dataset(draw_bits(ds, gen, crop=False), ds.y, info, **ground)
    return ds


MAX_CLASSES = 10_000  # labels are class ids; more classes than this is a mistake (e.g. a regression target)


def _count_classes(y: np.ndarray | None, name: str) -> int:
    """Number of classes max(y) + 1 of user labels, which must be integers >= 0 (0: no labels)."""
    if y is None or len(y) == 0:
        return 0
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"data {name!r} has labels of shape {tuple(y.shape)}; allowed: one class id per example, "
                         "shape (N,)")
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all()):
        raise ValueError(f"data {name!r} has non-integer labels y (dtype {y.dtype}); allowed: integers >= 0")
    if y.min() < 0:
        raise ValueError(f"data {name!r} has label {int(y.min())}; allowed: integers >= 0 (class ids)")
    if y.max() >= MAX_CLASSES:
        raise ValueError(f"data {name!r} has label {int(y.max())}; allowed: class ids 0..{MAX_CLASSES - 1} "
                         "(a conditional model holds a one-hot input per class)")
    return int(y.max()) + 1


def _path_split(n: int, split: str, seed: int, fraction: float) -> np.ndarray:
    """User data has no published split: a fixed permutation, ``fraction`` of it (rounded, at least one
    example, leaving at least one) the test split; a single example is both."""
    perm = np.random.default_rng(seed).permutation(n)
    cut = min(n - 1, max(1, int(round((1.0 - fraction) * n)))) if n > 1 else 1
    return perm[:cut] if split == "train" else (perm[cut:] if n > cut else perm[:cut])


def data_options(info: DataInfo) -> dict[str, Any]:
    """The load_dataset arguments that reload the data ``info`` describes (beyond name and split)."""
    return {"binarize": info.binarize, "size": info.size, "crop": info.crop, "flip": info.flip,
            "test_fraction": info.test_fraction}


def load_from_info(info: DataInfo | dict[str, Any], split: str,
                   data_dir: str | Path | None = None) -> Dataset:
    """Reload the data a run was trained on, from the info saved in its config."""
    info = info_from_dict(info)  # config.json is untrusted: every field type-checked
    return load_dataset(info.name, split, data_dir=data_dir, **data_options(info))
