"""MNIST loading (numpy only).

The four original gzip-compressed IDX files are kept in ``<data_dir>/mnist/``::

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz

(the uncompressed files, without ``.gz``, are accepted as well).  ``data_dir``
is chosen by :func:`find_data_dir`: an explicit argument, else the environment
variable ``VAELAB_DATA_DIR``, else ``~/.cache/vaelab``.

Every file is checked against the SHA-256 of its *uncompressed* content
(:mod:`vaelab.data.mnist_files`). Missing files are fetched by
:func:`vaelab.data.download.download_mnist`, which writes them atomically and
only once the checksum matches.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from .download import download_mnist
from .mnist_files import (
    MIRRORS_ENV,
    MNIST_FILES,
    MNIST_SHA256,
    MNIST_SIZES,
    MNISTChecksumError,
    MNISTUnavailableError,
    check_split,
    local_file,
    read_verified,
    unavailable_message,
)
from .paths import DATA_DIR_ENV, find_data_dir

__all__ = [
    "MNIST_FILES",
    "MNIST_SHA256",
    "MNIST_SIZES",
    "DATA_DIR_ENV",
    "MIRRORS_ENV",
    "MNISTUnavailableError",
    "MNISTChecksumError",
    "parse_idx",
    "find_data_dir",
    "download_mnist",
    "load_mnist",
]

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


# --------------------------------------------------------------------------- IDX


def parse_idx(data: bytes) -> np.ndarray:
    """Parse an IDX file (the MNIST container format) into a numpy array.

    Layout: two zero bytes, a dtype code (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions, then one
    big-endian uint32 per dimension, then the big-endian payload.
    Gzip-compressed input (starting with ``1f 8b``) is decompressed first.

    Returns a writable array in native byte order.

    Raises:
        ValueError: if the data is corrupt, truncated or has trailing bytes.
    """
    data = bytes(data)
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"invalid IDX data: corrupt gzip stream ({exc})") from None
    if len(data) < 4:
        raise ValueError(
            f"invalid IDX data: {len(data)} bytes is too short for the 4-byte header"
        )
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"invalid IDX data: bad magic number 0x{data[:4].hex()} "
            "(the first two bytes must be zero)"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise ValueError(f"invalid IDX data: unknown dtype code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise ValueError("invalid IDX data: number of dimensions is 0")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"invalid IDX data: truncated header ({len(data)} bytes, "
            f"{header} needed for {ndim} dimensions)"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        kind = "truncated" if actual < expected else "has trailing bytes"
        raise ValueError(
            f"invalid IDX data: payload {kind}: shape {shape} of {dtype.name} needs "
            f"{expected} bytes, got {actual}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


# ----------------------------------------------------------------------- load


def load_mnist(
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load an MNIST split.

    Args:
        split: ``"train"`` (60000 examples) or ``"test"`` (10000 examples).
        data_dir: data directory (see :func:`find_data_dir`); files are read
            from ``<data_dir>/mnist/``.
        download: download missing files (see :func:`download_mnist`).

    Returns:
        ``(images, labels)``: ``uint8`` array of shape ``(N, 28, 28)`` and
        ``int64`` array of shape ``(N,)``.

    Raises:
        ValueError: unknown split, or malformed files.
        MNISTUnavailableError: files missing and not downloadable (or ``download=False``).
        MNISTChecksumError: a local file does not match the published checksum.
    """
    check_split(split)
    root = find_data_dir(data_dir)
    mnist_dir = root / "mnist"
    names = MNIST_FILES[split]
    missing = [n for n in names if local_file(mnist_dir, n) is None]
    if missing:
        if not download:
            raise MNISTUnavailableError(
                unavailable_message(mnist_dir, missing, ()) + "\n(download=False: nothing was downloaded)",
                directory=mnist_dir,
                missing=missing,
            )
        download_mnist(root, splits=(split,))
    arrays = []
    for name in names:
        path = local_file(mnist_dir, name)
        if path is None:  # removed concurrently
            raise MNISTUnavailableError(
                unavailable_message(mnist_dir, [name], ()), directory=mnist_dir, missing=[name]
            )
        data = read_verified(path, name)
        try:
            arrays.append(parse_idx(data))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    images, labels = arrays
    n = MNIST_SIZES[split]
    if images.shape != (n, 28, 28) or images.dtype != np.uint8:
        raise ValueError(
            f"{mnist_dir / names[0]}: expected uint8 images of shape {(n, 28, 28)}, "
            f"got {images.dtype} {images.shape}"
        )
    if labels.shape != (n,):
        raise ValueError(
            f"{mnist_dir / names[1]}: expected {n} labels, got shape {labels.shape}"
        )
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{mnist_dir / names[1]}: labels outside 0..9")
    return images, labels
