"""Tests for vaelab.mnist: IDX parsing, local loading, downloading from mirrors."""

from __future__ import annotations

import functools
import gzip
import shutil
import struct
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

from vaelab.data import download
from vaelab.data.download import download_mnist, get_mirrors
from vaelab.data.mnist import (
    MNIST_FILES,
    MNISTChecksumError,
    MNISTUnavailableError,
    find_data_dir,
    load_mnist,
    parse_idx,
)

TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
DEAD_MIRROR = "http://127.0.0.1:1/"
ALL_NAMES = [n for pair in MNIST_FILES.values() for n in pair]


@pytest.fixture(scope="module")
def shared_data(mnist_dir: Path) -> Path:
    """The data directory holding the real MNIST files (conftest's ``mnist_dir``: fails on CI if absent)."""
    return mnist_dir


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[Path], str]]:
    """Factory: serve a directory over HTTP on 127.0.0.1, return its base URL."""
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _idx(code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


# ------------------------------------------------------------------ parse_idx


def test_parse_idx_uint8() -> None:
    arr = parse_idx(_idx(0x08, (2, 3), bytes(range(6))))
    assert arr.dtype == np.uint8
    assert arr.shape == (2, 3)
    np.testing.assert_array_equal(arr, [[0, 1, 2], [3, 4, 5]])
    arr[0, 0] = 7  # writable


def test_parse_idx_int32_big_endian_and_gzip() -> None:
    data = _idx(0x0C, (3,), struct.pack(">3i", 1, -2, 70000))
    for buf in (data, gzip.compress(data)):
        arr = parse_idx(buf)
        assert arr.dtype == np.int32 and arr.dtype.isnative
        np.testing.assert_array_equal(arr, [1, -2, 70000])


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "too short"),
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x00", "magic"),
        (b"\x00\x00\x07\x01" + b"\x00\x00\x00\x01" + b"\x00", "dtype code"),
        (b"\x00\x00\x08\x00", "dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated header"),
        (_idx(0x08, (2, 3), bytes(5)), "truncated"),
        (_idx(0x08, (2, 3), bytes(7)), "trailing"),
        (gzip.compress(_idx(0x08, (2, 3), bytes(6)))[:-6], "gzip"),
    ],
)
def test_parse_idx_rejects_corrupt(data: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_idx(data)


# -------------------------------------------------------------- configuration


def test_find_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VAELAB_DATA_DIR", raising=False)
    assert find_data_dir() == Path.home() / ".cache" / "vaelab"
    monkeypatch.setenv("VAELAB_DATA_DIR", str(tmp_path / "env"))
    assert find_data_dir() == tmp_path / "env"
    assert find_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert find_data_dir(str(tmp_path)) == tmp_path


def test_get_mirrors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAELAB_MNIST_MIRRORS", raising=False)
    assert get_mirrors() == download.MIRRORS
    monkeypatch.setenv("VAELAB_MNIST_MIRRORS", "http://a/, http://b/mnist/ ,")
    assert get_mirrors() == ["http://a/", "http://b/mnist/"]
    assert get_mirrors(["http://c/"]) == ["http://c/"]


def test_bad_split_names_allowed_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'valid'.*'train'.*'test'"):
        load_mnist("valid", data_dir=tmp_path, download=False)


def test_missing_without_download(tmp_path: Path) -> None:
    with pytest.raises(MNISTUnavailableError) as info:
        load_mnist("test", data_dir=tmp_path, download=False)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path / "mnist") in str(info.value)
    assert not (tmp_path / "mnist").exists()  # nothing created


def test_local_checksum_mismatch(tmp_path: Path) -> None:
    d = tmp_path / "mnist"
    d.mkdir()
    images, labels = MNIST_FILES["test"]
    (d / images).write_bytes(gzip.compress(_idx(0x08, (10000, 28, 28), bytes(10000 * 784))))
    (d / labels).write_bytes(gzip.compress(_idx(0x08, (10000,), bytes(10000))))
    with pytest.raises(MNISTChecksumError, match="checksum mismatch"):
        load_mnist("test", data_dir=tmp_path, download=False)


# ----------------------------------------------------------------- real data


def test_load_test_split(shared_data: Path) -> None:
    x, y = load_mnist("test", data_dir=shared_data, download=False)
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.int64
    assert np.bincount(y, minlength=10).tolist() == TEST_LABEL_COUNTS
    assert x.max() == 255 and x.min() == 0


def test_load_train_split_fast(shared_data: Path) -> None:
    start = time.perf_counter()
    x, y = load_mnist("train", data_dir=shared_data, download=False)
    elapsed = time.perf_counter() - start
    assert x.shape == (60000, 28, 28) and y.shape == (60000,)
    assert y[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]
    assert elapsed < 2.0, f"loading train took {elapsed:.2f} s"


def test_load_uses_env_data_dir(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAELAB_DATA_DIR", str(shared_data))
    x, _ = load_mnist("test", download=False)
    assert x.shape == (10000, 28, 28)


# ------------------------------------------------------------------ download


def _no_partial_files(directory: Path) -> bool:
    return not any(p.name.startswith(".") or p.suffix == ".part" for p in directory.iterdir())


def test_download_falls_back_to_working_mirror(
    shared_data: Path, serve: Callable[[Path], str], tmp_path: Path
) -> None:
    url = serve(shared_data / "mnist")
    out = download_mnist(tmp_path, mirrors=[DEAD_MIRROR, url], timeout=5, progress=False)
    assert out == tmp_path / "mnist"
    assert sorted(p.name for p in out.iterdir()) == sorted(ALL_NAMES)
    x, y = load_mnist("test", data_dir=tmp_path, download=False)
    assert x.shape == (10000, 28, 28)
    assert np.bincount(y).tolist() == TEST_LABEL_COUNTS
    # everything present: a second call downloads nothing (dead mirrors suffice)
    assert download_mnist(tmp_path, mirrors=[DEAD_MIRROR], progress=False) == out


def test_load_mnist_downloads_via_env_mirrors(
    shared_data: Path, serve: Callable[[Path], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAELAB_MNIST_MIRRORS", f"{DEAD_MIRROR},{serve(shared_data / 'mnist')}")
    monkeypatch.setenv("VAELAB_DATA_DIR", str(tmp_path))
    x, y = load_mnist("test")
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(MNIST_FILES["test"])


def _corrupt_mirror(shared_data: Path, dest: Path, how: str) -> str:
    """Copy the test files to ``dest`` with a corrupted labels file; return its name."""
    dest.mkdir()
    images, labels = MNIST_FILES["test"]
    shutil.copy(shared_data / "mnist" / images, dest / images)
    raw = bytearray(gzip.decompress((shared_data / "mnist" / labels).read_bytes()))
    if how == "content":  # valid gzip, wrong content
        raw[100] = (raw[100] + 1) % 10
        (dest / labels).write_bytes(gzip.compress(bytes(raw)))
    else:  # truncated gzip stream
        (dest / labels).write_bytes(gzip.compress(bytes(raw))[:-100])
    return labels


@pytest.mark.parametrize("how, match", [("content", "checksum mismatch"), ("truncated", "gzip")])
def test_download_rejects_corrupt_file(
    shared_data: Path, serve: Callable[[Path], str], tmp_path: Path, how: str, match: str
) -> None:
    bad = _corrupt_mirror(shared_data, tmp_path / "bad", how)
    url = serve(tmp_path / "bad")
    target = tmp_path / "target"
    with pytest.raises(MNISTUnavailableError, match=match) as info:
        download_mnist(target, mirrors=[url], splits=("test",), progress=False)
    assert bad in str(info.value)
    assert not (target / "mnist" / bad).exists()
    assert _no_partial_files(target / "mnist")
    # the good file from the same mirror was kept
    assert (target / "mnist" / MNIST_FILES["test"][0]).is_file()

    # with a good mirror after the bad one, the download succeeds
    download_mnist(target, mirrors=[url, serve(shared_data / "mnist")], splits=("test",), progress=False)
    assert np.bincount(load_mnist("test", data_dir=target, download=False)[1]).tolist() == TEST_LABEL_COUNTS
    assert _no_partial_files(target / "mnist")


def test_download_offline_message(tmp_path: Path) -> None:
    with pytest.raises(MNISTUnavailableError) as info:
        download_mnist(tmp_path, mirrors=[DEAD_MIRROR, "http://127.0.0.1:1/x/"], timeout=2, progress=False)
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path / "mnist") in msg
    for name in ALL_NAMES:
        assert name in msg
    assert "VAELAB_DATA_DIR" in msg and "--data-dir" in msg
    assert DEAD_MIRROR in msg
    assert info.value.directory == tmp_path / "mnist"
    assert sorted(info.value.missing) == sorted(ALL_NAMES)
    assert _no_partial_files(tmp_path / "mnist")
