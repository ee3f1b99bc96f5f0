"""Fashion-MNIST and CIFAR-10 as published, checked by SHA-256, fetched from mirrors like MNIST.

Files live in ``<data_dir>/<name>/`` exactly as published (``find_data_dir``: ``--data-dir``, else
``$VAELAB_DATA_DIR``, else ``~/.cache/vaelab``)::

    fashion-mnist/  train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
                    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz
    cifar10/        cifar-10-binary.tar.gz

A missing file is downloaded from the mirrors (``$VAELAB_FASHION_MNIST_MIRRORS`` /
``$VAELAB_CIFAR10_MIRRORS``: comma-separated base URLs replacing the defaults) and kept only when its
size and the SHA-256 of the file match the published ones; a local file that does not match is an error
naming both checksums. CIFAR-10 is read from its *binary* version (plain bytes: one label byte and 3072
pixel bytes a record), never from the Python version, which is pickle; the archive is read in memory,
nothing is extracted to disk.

Checksums: SHA-256 and sizes as listed by TensorFlow Datasets (``url_checksums/fashion_mnist.txt``,
``cifar10.txt``) and, identically, by several independent projects; the authors publish MD5s
(Fashion-MNIST README; the CIFAR page), kept here for reference. They were not re-computed from a fresh
download (this machine has no internet access).
"""
from __future__ import annotations

import hashlib
import os
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .download import fetch_verified, get_mirrors
from .mnist import parse_idx
from .mnist_files import file_key, is_verified, mark_verified
from .paths import DATA_DIR_ENV, find_data_dir


@dataclass(frozen=True)
class Published:
    """A data set as its authors publish it: files, checksums, where to get them."""
    name: str                                   # vaelab's name (--data) and its folder in the data dir
    title: str                                  # the data set's own name
    files: dict[str, tuple[str, int, str]]      # file -> (SHA-256 of the file, size in bytes, authors' MD5)
    splits: dict[str, tuple[str, ...]]          # split -> the files it is read from
    mirrors: tuple[str, ...]                    # default base URLs, tried in order
    mirrors_env: str                            # environment variable that replaces them


FASHION_MNIST = Published(
    "fashion-mnist", "Fashion-MNIST",
    {"train-images-idx3-ubyte.gz": ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                                    26421880, "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
     "train-labels-idx1-ubyte.gz": ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                                    29515, "25c81989df183df01b3e8a0aad5dffbe"),
     "t10k-images-idx3-ubyte.gz": ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                                   4422102, "bef4ecab320f06d8554ea6380940ec79"),
     "t10k-labels-idx1-ubyte.gz": ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                                   5148, "bb300cfdad3c16e7a12a480ee83cd310")},
    {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
     "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")},
    ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
     "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
    "VAELAB_FASHION_MNIST_MIRRORS",
)
CIFAR10 = Published(
    "cifar10", "CIFAR-10",
    {"cifar-10-binary.tar.gz": ("c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                                170052171, "c32a1d4ab5d03f1284b67883e8d87530")},
    {"train": ("cifar-10-binary.tar.gz",), "test": ("cifar-10-binary.tar.gz",)},
    ("https://www.cs.toronto.edu/~kriz/",),
    "VAELAB_CIFAR10_MIRRORS",
)
#: name -> data set; the loaders look their data set up here when called.
PUBLISHED: dict[str, Published] = {p.name: p for p in (FASHION_MNIST, CIFAR10)}

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_MEMBERS = {"train": tuple(f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)),
                   "test": ("cifar-10-batches-bin/test_batch.bin",)}
CIFAR10_RECORD = 1 + 3 * 32 * 32  # label byte, then the red, green and blue 32 x 32 planes


class DataUnavailableError(FileNotFoundError):
    """Files of a published data set are missing and could not be downloaded."""

    def __str__(self) -> str:  # FileNotFoundError would otherwise format errno-style
        return str(self.args[0]) if self.args else ""


class ChecksumError(ValueError):
    """A local file does not match its published size and SHA-256."""


def _check(path: Path, spec: Published, name: str) -> None:
    """ValueError unless ``path`` has the published size and SHA-256 of ``name``."""
    want, size, _ = spec.files[name]
    got_size = path.stat().st_size
    if got_size != size:
        raise ValueError(f"size mismatch (expected {size} bytes, got {got_size})")
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != want:
        raise ValueError(f"sha256 checksum mismatch (expected {want}, got {digest.hexdigest()})")


def verify_local(path: Path, spec: Published, name: str) -> None:
    """:func:`_check` once per process per (path, size, mtime); ChecksumError telling what to do."""
    key = file_key(path)
    if is_verified(key):
        return
    try:
        _check(path, spec, name)
    except ValueError as exc:
        raise ChecksumError(f"{path}: {exc}; the file is corrupt or not the published {spec.title} file - "
                            "delete it and download it again") from None
    mark_verified(key)


def _unavailable(spec: Published, folder: Path, missing: Sequence[str], attempts: Sequence[tuple[str, str]]) -> str:
    lines = [f"{spec.title} data not found in {folder}" + (" and the download failed:" if attempts else ".")]
    lines += [f"  - {url}: {reason}" for url, reason in attempts]
    lines.append(f"Place these files (as published) in {folder}: " + ", ".join(spec.files))
    lines.append(f"or point vaelab at a directory containing '{spec.name}/' with these files via the "
                 f"{DATA_DIR_ENV} environment variable or the --data-dir option. Other download mirrors can "
                 f"be given in {spec.mirrors_env} (comma-separated base URLs).")
    lines.append("Missing: " + ", ".join(missing))
    return "\n".join(lines)


def download_published(spec: Published, root: str | os.PathLike[str], mirrors: Iterable[str] | None = None,
                       timeout: float = 30, progress: bool = True,
                       splits: Sequence[str] = ("train", "test")) -> Path:
    """Download the files of ``splits`` missing from ``<root>/<spec.name>/`` (a present file that fails its
    checksum is fetched again); returns that folder. DataUnavailableError lists every failed attempt."""
    folder = Path(root).expanduser() / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    urls = get_mirrors(mirrors, spec.mirrors_env, spec.mirrors)
    names = list(dict.fromkeys(n for s in splits for n in spec.splits[s]))
    missing: list[str] = []
    attempts: list[tuple[str, str]] = []
    for name in names:
        if (folder / name).is_file():
            try:
                verify_local(folder / name, spec, name)
                continue
            except ChecksumError as exc:
                if progress:
                    print(f"vaelab: {exc}; downloading it again", file=sys.stderr)
        ok, tried = fetch_verified(name, folder, urls, timeout, progress, lambda p, n=name: _check(p, spec, n))
        if not ok:
            missing.append(name)
            attempts += tried or [("(no mirrors)", f"no mirror URLs configured (see {spec.mirrors_env})")]
    if missing:
        raise DataUnavailableError(_unavailable(spec, folder, missing, attempts))
    return folder


def published_files(name: str, split: str, data_dir: str | os.PathLike[str] | None = None,
                    download: bool = True) -> list[Path]:
    """The verified local files of ``split`` of data set ``name``, downloading missing ones if allowed."""
    spec = PUBLISHED[name]
    if split not in spec.splits:
        raise ValueError(f"split={split!r} is not known; allowed: {list(spec.splits)}")
    folder = find_data_dir(data_dir) / spec.name
    wanted = spec.splits[split]
    missing = [n for n in wanted if not (folder / n).is_file()]
    if missing and not download:
        raise DataUnavailableError(_unavailable(spec, folder, missing, ())
                                   + "\n(download=False: nothing was downloaded)")
    if missing:
        download_published(spec, find_data_dir(data_dir), splits=(split,))
    for n in wanted:
        verify_local(folder / n, spec, n)
    return [folder / n for n in wanted]


def _labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    if y.shape != (n,) or (n and (y.min() < 0 or y.max() > 9)):
        raise ValueError(f"{where}: expected {n} labels in 0..9, got shape {y.shape}")
    return y.astype(np.int64)


def load_fashion_mnist(split: str, data_dir: str | os.PathLike[str] | None = None,
                       download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``split``: uint8 images (N, 28, 28) and int64 labels (N,) (60000 / 10000 as published)."""
    image_file, label_file = published_files("fashion-mnist", split, data_dir, download)
    images, labels = (parse_idx(p.read_bytes()) for p in (image_file, label_file))
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{image_file}: expected uint8 images (N, 28, 28), got {images.dtype} {images.shape}")
    return images, _labels(labels, len(images), str(label_file))


def load_cifar10(split: str, data_dir: str | os.PathLike[str] | None = None,
                 download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 ``split`` from the binary archive: uint8 images (N, 3, 32, 32) and int64 labels (N,)."""
    (archive,) = published_files("cifar10", split, data_dir, download)
    wanted = CIFAR10_MEMBERS[split]
    found: dict[str, np.ndarray] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:  # one pass over the stream; only regular files with the names we want
                if member.name in wanted and member.isfile():
                    with tar.extractfile(member) as fh:  # type: ignore[union-attr]
                        found[member.name] = np.frombuffer(fh.read(), dtype=np.uint8)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValueError(f"{archive}: cannot read the archive ({exc})") from None
    absent = [m for m in wanted if m not in found]
    bad = [m for m in wanted if m in found and (found[m].size == 0 or found[m].size % CIFAR10_RECORD)]
    if absent or bad:
        raise ValueError(f"{archive}: " + (f"lacks {absent}" if absent else f"{bad} are not whole "
                                           f"{CIFAR10_RECORD}-byte records"))
    records = np.concatenate([found.pop(m).reshape(-1, CIFAR10_RECORD) for m in wanted])   # (N, 3073)
    images = records[:, 1:].reshape(-1, 3, 32, 32)                                         # a view
    return images, _labels(records[:, 0], len(records), str(archive))
