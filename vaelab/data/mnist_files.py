"""The published MNIST files: names, SHA-256 checksums, errors and checksum verification (numpy-free).

Shared by :mod:`vaelab.data.mnist` (reading) and :mod:`vaelab.data.download` (fetching); neither imports
the other's internals. Every file is checked against the SHA-256 of its *uncompressed* content, once per
process per (path, size, mtime).
"""
from __future__ import annotations

import gzip
import hashlib
import threading
import zlib
from pathlib import Path
from typing import IO, Iterable, Sequence

from .paths import DATA_DIR_ENV

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

MIRRORS_ENV = "VAELAB_MNIST_MIRRORS"

#: Bytes per read when streaming a download.
CHUNK = 1 << 16

# (resolved path, size, mtime_ns) of local files whose checksum was verified in this process; avoids
# hashing the same file again on every load. Only touched through is_verified / mark_verified.
_verified: set[tuple[str, int, int]] = set()
_verified_lock = threading.Lock()


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


# ------------------------------------------------------------------ names and messages


def check_split(split: str) -> None:
    if split not in MNIST_FILES:
        allowed = ", ".join(repr(s) for s in MNIST_FILES)
        raise ValueError(f"unknown MNIST split {split!r}; allowed: {allowed}")


def all_names(splits: Iterable[str] = ("train", "test")) -> list[str]:
    return [name for split in splits for name in MNIST_FILES[split]]


def local_file(mnist_dir: Path, name: str) -> Path | None:
    """The existing local copy of ``name``: the .gz file, else the uncompressed one."""
    gz = mnist_dir / name
    if gz.is_file():
        return gz
    raw = mnist_dir / name[: -len(".gz")]
    if raw.is_file():
        return raw
    return None


def unavailable_message(mnist_dir: Path, missing: Sequence[str], attempts: Sequence[tuple[str, str]]) -> str:
    lines = [f"MNIST data not found in {mnist_dir}"]
    if attempts:
        lines[0] += " and the download failed:"
        lines += [f"  - {url}: {reason}" for url, reason in attempts]
    else:
        lines[0] += "."
    lines.append(
        f"Place these files (as published, gzip-compressed) in {mnist_dir}:"
    )
    lines += [f"  {name}" for name in all_names()]
    lines.append(
        f"or point vaelab at a directory containing 'mnist/' with these files via the "
        f"{DATA_DIR_ENV} environment variable or the --data-dir option. "
        f"Other download mirrors can be given in {MIRRORS_ENV} (comma-separated base URLs)."
    )
    if missing and len(missing) < 4:
        lines.append("Missing: " + ", ".join(missing))
    return "\n".join(lines)


# ------------------------------------------------------------------ checksums


def open_decompressed(path: Path) -> IO[bytes]:
    """Open ``path`` for reading its uncompressed content (gzip detected by magic)."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


def sha256_decompressed(path: Path) -> str:
    """SHA-256 of the uncompressed content; ValueError if the gzip stream is bad."""
    digest = hashlib.sha256()
    try:
        with open_decompressed(path) as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ValueError(f"not a valid gzip file ({exc})") from None
    return digest.hexdigest()


def file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def is_verified(key: tuple[str, int, int]) -> bool:
    with _verified_lock:
        return key in _verified


def mark_verified(path_or_key: Path | tuple[str, int, int]) -> None:
    """Remember that this file (as it is now: path, size, mtime) has the published checksum."""
    key = path_or_key if isinstance(path_or_key, tuple) else file_key(path_or_key)
    with _verified_lock:
        _verified.add(key)


def checksum_error(path: Path, name: str, got: str) -> MNISTChecksumError:
    return MNISTChecksumError(
        f"{path}: sha256 checksum mismatch (expected {MNIST_SHA256[name]}, got {got}); "
        "the file is corrupt or not the original MNIST file - delete it and "
        "download it again"
    )


def verify_local(path: Path, name: str) -> None:
    """Check a local file's checksum once per process (keyed by size + mtime)."""
    key = file_key(path)
    if is_verified(key):
        return
    try:
        got = sha256_decompressed(path)
    except ValueError as exc:
        raise MNISTChecksumError(f"{path}: {exc}; delete it and download it again") from None
    if got != MNIST_SHA256[name]:
        raise checksum_error(path, name, got)
    mark_verified(key)


def read_verified(path: Path, name: str) -> bytes:
    """Uncompressed content of a local file, checksum-verified (once per process)."""
    key = file_key(path)
    try:
        with open_decompressed(path) as fh:
            data = fh.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise MNISTChecksumError(
            f"{path}: not a valid gzip file ({exc}); delete it and download it again"
        ) from None
    if not is_verified(key):
        got = hashlib.sha256(data).hexdigest()
        if got != MNIST_SHA256[name]:
            raise checksum_error(path, name, got)
        mark_verified(key)
    return data
