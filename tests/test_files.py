"""Tests for vaelab.files: image folders and .npy/.npz files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaelab.data.files import load_array, load_image_folder


def _gray(path: Path, value: int, size: tuple[int, int] = (8, 6)) -> None:
    """Write a constant grayscale PNG; size is (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)


def _rgb(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


# ---------------------------------------------------------------- image folder


def test_class_subfolders_grayscale(tmp_path: Path) -> None:
    _gray(tmp_path / "cats" / "b.png", 255)
    _gray(tmp_path / "cats" / "a.png", 0)
    _gray(tmp_path / "dogs" / "x.png", 51)
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    x, y, classes = load_image_folder(tmp_path)
    assert classes == ["cats", "dogs"]
    assert x.shape == (3, 1, 6, 8) and x.dtype == np.float32
    assert y is not None and y.tolist() == [0, 0, 1] and y.dtype == np.int64
    # sorted file order within a class: a.png (0) then b.png (255)
    np.testing.assert_allclose(x[:, 0, 0, 0], [0.0, 1.0, 0.2], atol=1e-6)


def test_flat_folder_mixed_modes_gives_rgb(tmp_path: Path) -> None:
    _gray(tmp_path / "1.png", 128)
    _rgb(tmp_path / "2.jpg", (255, 0, 0))
    x, y, classes = load_image_folder(tmp_path)
    assert y is None and classes == []
    assert x.shape == (2, 3, 6, 8)
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_allclose(x[0, :, 0, 0], [128 / 255] * 3, atol=1e-6)
    assert x[1, 0].mean() > 0.9 and x[1, 1].mean() < 0.1  # red (JPEG is lossy)


def test_channels_and_gray_rgb_detection(tmp_path: Path) -> None:
    _rgb(tmp_path / "a.png", (10, 10, 10))  # RGB file with gray content
    _rgb(tmp_path / "b.bmp", (200, 200, 200))
    assert load_image_folder(tmp_path)[0].shape == (2, 1, 6, 8)
    assert load_image_folder(tmp_path, channels=3)[0].shape == (2, 3, 6, 8)
    with pytest.raises(ValueError, match="channels"):
        load_image_folder(tmp_path, channels=2)


def test_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("L", (4, 4), v) for v in (255, 0)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    x, _, _ = load_image_folder(tmp_path)
    assert x.shape == (1, 1, 4, 4)
    np.testing.assert_allclose(x, 1.0)


def test_resize(tmp_path: Path) -> None:
    _gray(tmp_path / "a" / "big.png", 200, size=(40, 30))
    _gray(tmp_path / "b" / "small.png", 100, size=(7, 5))
    x, y, _ = load_image_folder(tmp_path, size=16)
    assert x.shape == (2, 1, 16, 16)
    np.testing.assert_allclose(x[0], 200 / 255, atol=1e-5)
    np.testing.assert_allclose(x[1], 100 / 255, atol=1e-5)
    x, _, _ = load_image_folder(tmp_path, size=(10, 12))
    assert x.shape == (2, 1, 10, 12)  # (height, width)
    with pytest.raises(ValueError, match="size"):
        load_image_folder(tmp_path, size=0)


def test_mixed_sizes_without_size(tmp_path: Path) -> None:
    _gray(tmp_path / "a.png", 0, size=(8, 8))
    _gray(tmp_path / "b.png", 0, size=(9, 8))
    with pytest.raises(ValueError) as info:
        load_image_folder(tmp_path)
    msg = str(info.value)
    assert "a.png" in msg and "b.png" in msg and "size" in msg


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        load_image_folder(tmp_path / "nope")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(ValueError) as info:
        load_image_folder(tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg and ".png" in msg and ".jpg" in msg


def test_unreadable_image(tmp_path: Path) -> None:
    _gray(tmp_path / "good.png", 1)
    (tmp_path / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match="broken.png"):
        load_image_folder(tmp_path)


# ---------------------------------------------------------------------- arrays


def test_npy_uint8_scaled(tmp_path: Path) -> None:
    data = np.array([[0, 128], [255, 1]], dtype=np.uint8).reshape(2, 1, 2)
    np.save(tmp_path / "d.npy", data)
    x, y = load_array(tmp_path / "d.npy")
    assert y is None and x.dtype == np.float32 and x.shape == (2, 1, 2)
    np.testing.assert_allclose(x, data / 255.0, atol=1e-7)


def test_npy_binary_ints_and_floats_kept(tmp_path: Path) -> None:
    np.save(tmp_path / "b.npy", np.array([[0, 1], [1, 0]], dtype=np.int64))
    x, _ = load_array(tmp_path / "b.npy")
    np.testing.assert_array_equal(x, [[0, 1], [1, 0]])
    f = np.random.default_rng(0).random((3, 4, 4))
    np.save(tmp_path / "f.npy", f)
    x, _ = load_array(str(tmp_path / "f.npy"))
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, f, rtol=1e-6)


def test_npz_round_trip(tmp_path: Path) -> None:
    x0 = np.random.default_rng(1).integers(0, 256, (5, 3, 4, 4), dtype=np.uint8)
    y0 = np.arange(5, dtype=np.int32)
    np.savez(tmp_path / "d.npz", x=x0, y=y0)
    x, y = load_array(tmp_path / "d.npz")
    assert x.shape == (5, 3, 4, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x * 255, x0, atol=1e-4)
    assert y is not None and y.dtype == np.int64 and y.tolist() == list(range(5))
    np.savez_compressed(tmp_path / "xonly.npz", x=x0)
    assert load_array(tmp_path / "xonly.npz")[1] is None


def test_npz_without_x_lists_keys(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", images=np.zeros(3), labels=np.zeros(3))
    with pytest.raises(ValueError, match="images.*labels|labels.*images"):
        load_array(tmp_path / "d.npz")


def test_npz_length_mismatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2)), y=np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="'y'"):
        load_array(tmp_path / "d.npz")


def test_array_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.npy.*\.npz"):
        load_array(tmp_path / "data.csv")
    with pytest.raises(FileNotFoundError):
        load_array(tmp_path / "missing.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="obj.npy"):
        load_array(tmp_path / "obj.npy")
    np.save(tmp_path / "big.npy", np.array([0, 1000], dtype=np.int32))
    with pytest.raises(ValueError, match="0..255"):
        load_array(tmp_path / "big.npy")
    (tmp_path / "junk.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="junk.npz"):
        load_array(tmp_path / "junk.npz")
