"""MNIST loading and downloading (numpy only).

The four original gzip-compressed IDX files are kept in ``<data_dir>/mnist/``::

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz

(the uncompressed files, without ``.gz``, are accepted as well).  ``data_dir``
is chosen by :func:`find_data_dir`: an explicit argument, else the environment
variable ``VAELAB_DATA_DIR``, else ``~/.cache/vaelab``.

Every file is checked against the SHA-256 of its *uncompressed* content.
Downloads try each mirror in turn, are written atomically (temporary file +
``os.replace``) and are only moved into place once the checksum matches, so a
corrupt or partial download never ends up in the data directory.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path
from typing import IO, Iterable, Sequence

import numpy as np

__all__ = [
    "MNIST_FILES",
    "MNIST_SHA256",
    "MNIST_SIZES",
    "DATA_DIR_ENV",
    "MNISTUnavailableError",
    "MNISTChecksumError",
    "parse_idx",
    "find_data_dir",
    "load_mnist",
]

#: split -> (images file name, labels file name), as published (gzip-compressed).
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

#: SHA-256 of the *uncompressed* content of each file (keyed by the ``.gz`` name).
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: Number of examples per split.
MNIST_SIZES: dict[str, int] = {"train": 60000, "test": 10000}

DATA_DIR_ENV = "VAELAB_DATA_DIR"
MIRRORS_ENV = "VAELAB_MNIST_MIRRORS"

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_CHUNK = 1 << 16

# (resolved path, size, mtime_ns) of local files whose checksum was verified
# in this process; avoids hashing the same file again on every load.
_VERIFIED: set[tuple[str, int, int]] = set()


class MNISTUnavailableError(FileNotFoundError):
    """MNIST files are missing and could not be downloaded.

    Attributes:
        directory: the directory where the files were expected.
        missing: names of the files that are missing.
        attempts: ``(url, reason)`` for every failed download attempt.
    """

    def __init__(
        self,
        message: str,
        directory: Path | None = None,
        missing: Sequence[str] = (),
        attempts: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.directory = directory
        self.missing = list(missing)
        self.attempts = list(attempts)

    def __str__(self) -> str:  # FileNotFoundError would otherwise format errno-style
        return str(self.args[0]) if self.args else ""


class MNISTChecksumError(ValueError):
    """A local MNIST file does not match its expected SHA-256 checksum."""


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


# ------------------------------------------------------------------ locations


def find_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the vaelab data directory (MNIST lives in ``<dir>/mnist/``).

    Order: the ``data_dir`` argument, else ``$VAELAB_DATA_DIR``, else
    ``~/.cache/vaelab``.  ``~`` is expanded; the directory is not created.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "vaelab"


def _all_names(splits: Iterable[str] = ("train", "test")) -> list[str]:
    return [name for split in splits for name in MNIST_FILES[split]]


def _local_file(mnist_dir: Path, name: str) -> Path | None:
    """The existing local copy of ``name``: the .gz file, else the uncompressed one."""
    gz = mnist_dir / name
    if gz.is_file():
        return gz
    raw = mnist_dir / name[: -len(".gz")]
    if raw.is_file():
        return raw
    return None


def _unavailable_message(mnist_dir: Path, missing: Sequence[str], attempts: Sequence[tuple[str, str]]) -> str:
    lines = [f"MNIST data not found in {mnist_dir}"]
    if attempts:
        lines[0] += " and the download failed:"
        lines += [f"  - {url}: {reason}" for url, reason in attempts]
    else:
        lines[0] += "."
    lines.append(
        f"Place these files (as published, gzip-compressed) in {mnist_dir}:"
    )
    lines += [f"  {name}" for name in _all_names()]
    lines.append(
        f"or point vaelab at a directory containing 'mnist/' with these files via the "
        f"{DATA_DIR_ENV} environment variable or the --data-dir option. "
        f"Other download mirrors can be given in {MIRRORS_ENV} (comma-separated base URLs)."
    )
    if missing and len(missing) < 4:
        lines.append("Missing: " + ", ".join(missing))
    return "\n".join(lines)


# ------------------------------------------------------------------ checksums


def _open_decompressed(path: Path) -> IO[bytes]:
    """Open ``path`` for reading its uncompressed content (gzip detected by magic)."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _sha256_decompressed(path: Path) -> str:
    """SHA-256 of the uncompressed content; ValueError if the gzip stream is bad."""
    digest = hashlib.sha256()
    try:
        with _open_decompressed(path) as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ValueError(f"not a valid gzip file ({exc})") from None
    return digest.hexdigest()


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def _checksum_error(path: Path, name: str, got: str) -> MNISTChecksumError:
    return MNISTChecksumError(
        f"{path}: sha256 checksum mismatch (expected {MNIST_SHA256[name]}, got {got}); "
        "the file is corrupt or not the original MNIST file - delete it and "
        "download it again"
    )


def _verify_local(path: Path, name: str) -> None:
    """Check a local file's checksum once per process (keyed by size + mtime)."""
    key = _file_key(path)
    if key in _VERIFIED:
        return
    try:
        got = _sha256_decompressed(path)
    except ValueError as exc:
        raise MNISTChecksumError(f"{path}: {exc}; delete it and download it again") from None
    if got != MNIST_SHA256[name]:
        raise _checksum_error(path, name, got)
    _VERIFIED.add(key)


def _read_verified(path: Path, name: str) -> bytes:
    """Uncompressed content of a local file, checksum-verified (once per process)."""
    key = _file_key(path)
    try:
        with _open_decompressed(path) as fh:
            data = fh.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise MNISTChecksumError(
            f"{path}: not a valid gzip file ({exc}); delete it and download it again"
        ) from None
    if key not in _VERIFIED:
        got = hashlib.sha256(data).hexdigest()
        if got != MNIST_SHA256[name]:
            raise _checksum_error(path, name, got)
        _VERIFIED.add(key)
    return data


# ----------------------------------------------------------------------- load


def _check_split(split: str) -> None:
    if split not in MNIST_FILES:
        allowed = ", ".join(repr(s) for s in MNIST_FILES)
        raise ValueError(f"unknown MNIST split {split!r}; allowed: {allowed}")


def download_mnist(*args, **kwargs) -> Path:
    """See :func:`vaelab.download.download_mnist` (imported on first use)."""
    from .download import download_mnist as _download

    return _download(*args, **kwargs)


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
    _check_split(split)
    root = find_data_dir(data_dir)
    mnist_dir = root / "mnist"
    names = MNIST_FILES[split]
    missing = [n for n in names if _local_file(mnist_dir, n) is None]
    if missing:
        if not download:
            raise MNISTUnavailableError(
                _unavailable_message(mnist_dir, missing, ()) + "\n(download=False: nothing was downloaded)",
                directory=mnist_dir,
                missing=missing,
            )
        download_mnist(root, splits=(split,))
    arrays = []
    for name in names:
        path = _local_file(mnist_dir, name)
        if path is None:  # removed concurrently
            raise MNISTUnavailableError(
                _unavailable_message(mnist_dir, [name], ()), directory=mnist_dir, missing=[name]
            )
        data = _read_verified(path, name)
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
