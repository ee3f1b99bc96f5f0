"""Fashion-MNIST and CIFAR-10 downloads against a local HTTP server serving small generated files in the
real formats (gzip IDX; the binary CIFAR-10 tar.gz), with checksums checked."""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import io
import struct
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch

from conftest import assert_cli_error, cli
from vaelab.data import load_dataset, published
from vaelab.data.published import ChecksumError, DataUnavailableError

DEAD = "http://127.0.0.1:1/"
RNG = np.random.default_rng(0)
FASHION = {split: (RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8), RNG.integers(0, 10, n))
           for split, n in (("train", 12), ("test", 5))}
CIFAR = {name: (RNG.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), RNG.integers(0, 10, n))
         for name, n in [(f"data_batch_{i}", 3) for i in range(1, 6)] + [("test_batch", 4)]}


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[Path], str]]:
    """Factory: serve a folder over HTTP on 127.0.0.1, return its base URL."""
    servers = []

    def start(folder: Path) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _fashion_files(folder: Path) -> dict[str, bytes]:
    files = {}
    for split, (x, y) in FASHION.items():
        stem = "train" if split == "train" else "t10k"
        files[f"{stem}-images-idx3-ubyte.gz"] = gzip.compress(_idx(x))
        files[f"{stem}-labels-idx1-ubyte.gz"] = gzip.compress(_idx(y.astype(np.uint8)))
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def _cifar_archive(folder: Path, skip: str = "") -> dict[str, bytes]:
    """cifar-10-binary.tar.gz as published: cifar-10-batches-bin/<batch>.bin, records of label + 3072 bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, (x, y) in list(CIFAR.items()) + [("batches.meta", (None, None))]:
            if name == skip:
                continue
            data = (b"airplane\n" if x is None else
                    np.concatenate([y.astype(np.uint8)[:, None], x.reshape(len(x), -1)], 1).tobytes())
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}.{'txt' if x is None else 'bin'}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cifar-10-binary.tar.gz").write_bytes(buf.getvalue())
    return {"cifar-10-binary.tar.gz": buf.getvalue()}


def _pin(monkeypatch: pytest.MonkeyPatch, name: str, files: dict[str, bytes]) -> None:
    """Make the generated files the published ones (their sha256 and size) for data set ``name``."""
    spec = published.PUBLISHED[name]
    pins = {n: (hashlib.sha256(d).hexdigest(), len(d), "") for n, d in files.items()}
    monkeypatch.setitem(published.PUBLISHED, name, dataclasses.replace(spec, files=pins))


def _clean(folder: Path) -> bool:
    return not any(p.name.startswith(".") or p.suffix == ".part" for p in folder.iterdir())


def test_fashion_mnist_downloads_verifies_and_loads(serve, tmp_path, monkeypatch):
    files = _fashion_files(tmp_path / "mirror")
    _pin(monkeypatch, "fashion-mnist", files)
    monkeypatch.setenv("VAELAB_FASHION_MNIST_MIRRORS", f"{DEAD},{serve(tmp_path / 'mirror')}")
    train = load_dataset("fashion-mnist", "train", data_dir=tmp_path / "data")
    assert train.storage.dtype == torch.uint8 and train.info.levels == 256
    assert torch.equal(train.storage, torch.from_numpy(FASHION["train"][0][:, None]))
    assert train.y.tolist() == FASHION["train"][1].tolist()
    assert train.info.class_names[0] == "T-shirt/top" and train.info.n_classes == 10
    got = tmp_path / "data" / "fashion-mnist"
    assert sorted(p.name for p in got.iterdir()) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    monkeypatch.setenv("VAELAB_FASHION_MNIST_MIRRORS", DEAD)                 # present files: no download
    assert torch.equal(load_dataset("fashion-mnist", "train", data_dir=tmp_path / "data").storage, train.storage)


def test_cifar10_binary_archive_downloads_and_loads(serve, tmp_path, monkeypatch):
    _pin(monkeypatch, "cifar10", _cifar_archive(tmp_path / "mirror"))
    monkeypatch.setenv("VAELAB_CIFAR10_MIRRORS", serve(tmp_path / "mirror"))
    train = load_dataset("cifar10", "train", data_dir=tmp_path / "data")
    test = load_dataset("cifar10", "test", data_dir=tmp_path / "data")
    want = np.concatenate([CIFAR[f"data_batch_{i}"][0] for i in range(1, 6)])  # batches 1..5 in order
    assert train.info.shape == (3, 32, 32) and train.storage.dtype == torch.uint8
    assert torch.equal(train.storage, torch.from_numpy(want))                # red plane first, then green, blue
    assert test.y.tolist() == CIFAR["test_batch"][1].tolist() and test.info.class_names[1] == "automobile"


def test_cifar10_archive_without_a_batch_is_an_error(serve, tmp_path, monkeypatch):
    _pin(monkeypatch, "cifar10", _cifar_archive(tmp_path / "mirror", skip="data_batch_3"))
    monkeypatch.setenv("VAELAB_CIFAR10_MIRRORS", serve(tmp_path / "mirror"))
    with pytest.raises(ValueError, match="lacks.*data_batch_3"):
        load_dataset("cifar10", "train", data_dir=tmp_path / "data")


def test_the_published_checksums_reject_other_files(serve, tmp_path):
    """Generated files are not the published ones: refused, nothing kept, the reason per mirror."""
    _fashion_files(tmp_path / "mirror")
    url = serve(tmp_path / "mirror")
    with pytest.raises(DataUnavailableError) as info:
        published.download_published(published.FASHION_MNIST, tmp_path / "data", mirrors=[url], progress=False,
                                     splits=("test",))
    msg = str(info.value)
    assert "size mismatch (expected 4422102 bytes" in msg and url + "t10k-images-idx3-ubyte.gz" in msg
    assert "VAELAB_FASHION_MNIST_MIRRORS" in msg and "--data-dir" in msg
    folder = tmp_path / "data" / "fashion-mnist"
    assert list(folder.iterdir()) == [] and _clean(folder)


def test_sha256_mismatch_of_a_file_of_the_right_size(serve, tmp_path, monkeypatch):
    (data,) = _cifar_archive(tmp_path / "mirror").values()
    spec = dataclasses.replace(published.CIFAR10, files={"cifar-10-binary.tar.gz": ("0" * 64, len(data), "")})
    got = hashlib.sha256(data).hexdigest()
    with pytest.raises(DataUnavailableError, match=f"sha256 checksum mismatch \\(expected {'0' * 64}, got {got}"):
        published.download_published(spec, tmp_path / "data", mirrors=[serve(tmp_path / "mirror")], progress=False)
    assert not (tmp_path / "data" / "cifar10" / "cifar-10-binary.tar.gz").exists()


def test_a_local_file_that_changed_is_refused(serve, tmp_path, monkeypatch):
    files = _fashion_files(tmp_path / "mirror")
    _pin(monkeypatch, "fashion-mnist", files)
    published.download_published(published.PUBLISHED["fashion-mnist"], tmp_path, mirrors=[serve(tmp_path / "mirror")],
                                 progress=False)
    path = tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError, match="sha256 checksum mismatch.*delete it and download it again"):
        published.load_fashion_mnist("test", data_dir=tmp_path, download=False)


def test_offline_cli_says_where_to_put_the_files(tmp_path):
    r = cli("train", "--data", "cifar10", "--data-dir", tmp_path, "--out", tmp_path / "run", "--epochs", "1",
            env={"VAELAB_CIFAR10_MIRRORS": DEAD})
    assert_cli_error(r, "CIFAR-10 data not found", str(tmp_path / "cifar10"), "cifar-10-binary.tar.gz",
                     "VAELAB_CIFAR10_MIRRORS")
