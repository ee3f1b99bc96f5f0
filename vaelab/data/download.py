"""Downloading published data files from mirrors with sha256 checks (urllib only).

Each file is fetched from the mirrors in turn, written to a temporary file in the target directory and
moved into place (:func:`vaelab.fileio.atomic_path`) only once its checksum matches, so a corrupt or
partial download never ends up in the data directory. :func:`fetch_verified` is that step for any file
and checksum (MNIST here: the SHA-256 of the uncompressed content; Fashion-MNIST and CIFAR-10 in
:mod:`vaelab.data.published`: the SHA-256 of the file as published).
"""

from __future__ import annotations

import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Callable, Iterable, Sequence

from ..fileio import atomic_path
from .mnist_files import (
    CHUNK,
    MIRRORS_ENV,
    MNIST_SHA256,
    MNISTChecksumError,
    MNISTUnavailableError,
    all_names,
    check_split,
    local_file,
    mark_verified,
    sha256_decompressed,
    unavailable_message,
    verify_local,
)

#: Default public mirrors, tried in order (base URLs; the file name is appended).
MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]


def get_mirrors(mirrors: Iterable[str] | None = None, env: str = MIRRORS_ENV,
                default: Sequence[str] | None = None) -> list[str]:
    """Mirror base URLs to use: ``mirrors`` if given, else the comma-separated ``$<env>``
    (``$VAELAB_MNIST_MIRRORS``), else ``default`` (:data:`MIRRORS`)."""
    if mirrors is not None:
        if isinstance(mirrors, str):
            mirrors = mirrors.split(",")
        out = [m.strip() for m in mirrors if m and m.strip()]
    else:
        given = os.environ.get(env, "")
        out = [m.strip() for m in given.split(",") if m.strip()] or list(MIRRORS if default is None else default)
    return out


def _fetch(url: str, dest: IO[bytes], timeout: float, progress: bool, label: str) -> None:
    """Stream ``url`` into the open file ``dest``."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        total = resp.headers.get("Content-Length")
        total_n = int(total) if total and total.isdigit() else None
        bar = None
        if progress:
            try:
                from tqdm import tqdm  # optional dependency

                bar = tqdm(total=total_n, unit="B", unit_scale=True, desc=label, leave=False)
            except ImportError:
                bar = None
        received = 0
        try:
            while chunk := resp.read(CHUNK):
                dest.write(chunk)
                received += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        if total_n is not None and received != total_n:
            raise ValueError(f"incomplete download ({received} of {total_n} bytes)")


def fetch_verified(name: str, folder: Path, mirrors: Sequence[str], timeout: float, progress: bool,
                   verify: Callable[[Path], None]) -> tuple[bool, list[tuple[str, str]]]:
    """Download ``name`` into ``folder`` from the first mirror whose file ``verify`` accepts (it raises
    ValueError naming what is wrong, e.g. a checksum mismatch); the file is moved into place only then.

    Returns ``(ok, attempts)``: whether a verified copy was put in place, and the ``(url, reason)`` of
    every failed attempt.
    """
    attempts: list[tuple[str, str]] = []
    target = folder / name
    for base in mirrors:
        url = base.rstrip("/") + "/" + name
        try:
            with atomic_path(target) as tmp:  # moved into place only if the block succeeds
                with open(tmp, "wb") as fh:
                    _fetch(url, fh, timeout, progress, name)
                verify(Path(tmp))
            mark_verified(target)
            return True, attempts
        except (OSError, ValueError, http.client.HTTPException) as exc:
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, urllib.error.HTTPError):
                reason = f"HTTP {exc.code} {exc.reason}"
            elif isinstance(exc, urllib.error.URLError):
                reason = f"{exc.reason}"
            attempts.append((url, reason))
            if progress:
                print(f"vaelab: could not download {url}: {reason}", file=sys.stderr)
    return False, attempts


def _mnist_check(name: str) -> Callable[[Path], None]:
    """A gzip file whose uncompressed content has MNIST's published SHA-256 for ``name``."""
    want = MNIST_SHA256[name]

    def verify(path: Path) -> None:
        with open(path, "rb") as fh:
            if fh.read(2) != b"\x1f\x8b":
                raise ValueError("not a gzip file")
        got = sha256_decompressed(path)
        if got != want:
            raise ValueError(f"sha256 checksum mismatch (expected {want}, got {got})")

    return verify


def _download_one(name: str, mnist_dir: Path, mirrors: Sequence[str], timeout: float,
                  progress: bool) -> tuple[bool, list[tuple[str, str]]]:
    """Download MNIST file ``name`` into ``mnist_dir`` from the first mirror that works."""
    return fetch_verified(name, mnist_dir, mirrors, timeout, progress, _mnist_check(name))


def download_mnist(
    root: str | os.PathLike[str],
    mirrors: Iterable[str] | None = None,
    timeout: float = 30,
    progress: bool = True,
    splits: Sequence[str] = ("train", "test"),
) -> Path:
    """Download the MNIST files missing from ``<root>/mnist/``.

    Files already present (``.gz`` or uncompressed) with a valid checksum are
    kept; a present file with a bad checksum is re-downloaded and replaced.
    Each file is fetched from the mirrors in turn (see :func:`get_mirrors`),
    written to a temporary file in the target directory and moved into place
    with ``os.replace`` only once the SHA-256 of its uncompressed content
    matches, so a bad download never leaves a file behind.

    Args:
        root: data directory (MNIST goes into ``root/mnist``).
        mirrors: base URLs to try; default ``$VAELAB_MNIST_MIRRORS`` or :data:`MIRRORS`.
        timeout: socket timeout in seconds for each request.
        progress: show a tqdm progress bar (if tqdm is installed) and report
            failed attempts on stderr.
        splits: which splits to fetch (``"train"``, ``"test"``).

    Returns:
        The directory ``root/mnist``.

    Raises:
        MNISTUnavailableError: if some file could not be obtained from any mirror.
    """
    for split in splits:
        check_split(split)
    mnist_dir = Path(root).expanduser() / "mnist"
    mnist_dir.mkdir(parents=True, exist_ok=True)
    urls = get_mirrors(mirrors)
    all_attempts: list[tuple[str, str]] = []
    missing: list[str] = []
    for name in all_names(splits):
        local = local_file(mnist_dir, name)
        if local is not None:
            try:
                verify_local(local, name)
                continue
            except MNISTChecksumError as exc:
                if progress:
                    print(f"vaelab: {exc}; downloading it again", file=sys.stderr)
        ok, attempts = _download_one(name, mnist_dir, urls, timeout, progress)
        if ok:
            continue
        if not urls:
            attempts = [("(no mirrors)", f"no mirror URLs configured (see {MIRRORS_ENV})")]
        all_attempts += attempts
        missing.append(name)
    if missing:
        raise MNISTUnavailableError(
            unavailable_message(mnist_dir, missing, all_attempts),
            directory=mnist_dir,
            missing=missing,
            attempts=all_attempts,
        )
    return mnist_dir
