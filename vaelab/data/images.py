"""Reading a folder of images (Pillow) as 8-bit pixels, resized with a center crop, a margin for random
crops, or squashed.

:func:`read_image_folder` returns uint8 (N, C, H, W) arrays when every image is 8-bit (the usual case), and
float32 in [0, 1] when some image has more bits (16-bit or float grayscale), so nothing is rounded away.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np

#: File extensions (lower case) recognised by :func:`read_image_folder`.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

_GRAY_MODES = {"1", "L", "LA", "I", "F"}


def _is_hidden(p: Path) -> bool:
    return p.name.startswith(".")


def _is_image(p: Path) -> bool:
    return p.is_file() and not _is_hidden(p) and p.suffix.lower() in IMAGE_EXTENSIONS


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    if recursive:
        found = [
            p for p in folder.rglob("*")
            if _is_image(p) and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        ]
    else:
        found = [p for p in folder.iterdir() if _is_image(p)]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def normalize_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``size`` as (height, width): an int is a square."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        hw = (int(size), int(size))
    elif (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size)
    ):
        hw = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"size must be an int or a (height, width) pair of ints, got {size!r}")
    if hw[0] <= 0 or hw[1] <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return hw


def margin(hw: tuple[int, int]) -> tuple[int, int]:
    """The stored size for crop='random': 1/8 larger (rounded up) on each side, e.g. 32 -> 36, 28 -> 32."""
    return (hw[0] + math.ceil(hw[0] / 8), hw[1] + math.ceil(hw[1] / 8))


def _open_image(path: Path):  # -> PIL.Image.Image
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.seek(0)  # first frame of animated GIFs
            img.load()
            return img.copy() if img.mode != "P" else img.convert("RGBA" if "transparency" in img.info else "RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError) as exc:
        raise ValueError(f"cannot read image file {path}: {exc}") from None


def _is_gray(img) -> bool:  # img: PIL.Image.Image
    mode = img.mode
    if mode in _GRAY_MODES or mode.startswith("I;16"):
        return True
    if mode in ("RGB", "RGBA"):  # palette images were converted to RGB(A) on load
        a = np.asarray(img)
        return bool(np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]))
    return False


def _is_deep(img) -> bool:
    """More than 8 bits per pixel (16-bit or 32-bit integer, float grayscale)."""
    return img.mode in ("I", "F") or img.mode.startswith("I;16")


def _box(width: int, height: int, hw: tuple[int, int] | None, crop: str) -> tuple[int, int, int, int] | None:
    """The centered region (left, top, right, bottom) with the aspect ratio of ``hw`` that the resize reads
    (None: the whole image, squashed to ``hw``)."""
    if hw is None or crop == "squash":
        return None
    th, tw = hw
    if width * th > height * tw:  # wider than the target: cut the sides
        w = max(1, round(height * tw / th))
        left = (width - w) // 2
        return (left, 0, left + w, height)
    h = max(1, round(width * th / tw))
    top = (height - h) // 2
    return (0, top, width, top + h)


def _float_pixels(img, channels: int) -> np.ndarray:
    """An image as float32 (H, W, C) in [0, 1]; high-bit-depth grayscale scaled without going through 8 bits."""
    mode = img.mode
    if _is_deep(img):
        a = np.asarray(img, dtype=np.float64)
        if mode == "F":
            scale = 1.0 if a.size == 0 or a.max() <= 1.0 else 255.0
        else:
            scale = 65535.0 if (mode.startswith("I;16") or (a.size and a.max() > 255)) else 255.0
        g = np.clip(a / scale, 0.0, 1.0).astype(np.float32)[..., None]
        return np.repeat(g, 3, axis=2) if channels == 3 else g
    a = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
    return a[..., None] if a.ndim == 2 else a


def _resize_float(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize a float32 (H, W, C) array to ``hw`` with bilinear (antialiased) filtering, channel by channel."""
    from PIL import Image

    if a.shape[:2] == hw:
        return a
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(a[..., c])).resize((hw[1], hw[0]),
                                                                                 Image.Resampling.BILINEAR),
                        dtype=np.float32) for c in range(a.shape[2])]
    return np.clip(np.stack(chans, axis=2), 0.0, 1.0)


def _pixels(img, channels: int, hw: tuple[int, int] | None, crop: str, deep: bool) -> np.ndarray:
    """One image as (H, W, C): uint8, or float32 in [0, 1] when ``deep``; cropped and resized to ``hw``."""
    from PIL import Image

    box = _box(img.width, img.height, hw, crop)
    if deep:
        a = _float_pixels(img, channels)
        if box is not None:
            a = a[box[1]:box[3], box[0]:box[2]]
        return a if hw is None else _resize_float(a, hw)
    im = img.convert("L" if channels == 1 else "RGB")
    if box is not None:
        im = im.crop(box)  # first: the resize's filter then reads no pixel outside the crop
    if hw is not None and (im.height, im.width) != hw:
        im = im.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)  # antialiased when shrinking
    a = np.asarray(im, dtype=np.uint8)
    return a[..., None] if a.ndim == 2 else a


def _collect(folder: Path) -> tuple[list[Path], list[int] | None, list[str]]:
    """Image files, labels (None for a flat folder) and class names, as :func:`read_image_folder` describes."""
    subdirs = sorted((p for p in folder.iterdir() if p.is_dir() and not _is_hidden(p)), key=lambda p: p.name)
    files: list[Path] = []
    labels: list[int] | None = None
    classes: list[str] = []
    if subdirs:
        labels = []
        for d in subdirs:
            found = _images_in(d, recursive=True)
            if not found:
                warnings.warn(f"ignoring folder without images: {d}", stacklevel=3)
                continue
            labels += [len(classes)] * len(found)
            classes.append(d.name)
            files += found
        stray = _images_in(folder, recursive=False)
        if stray and files:
            warnings.warn(f"ignoring {len(stray)} image(s) directly in {folder} (e.g. {stray[0].name}): "
                          "with subfolders, each subfolder is a class", stacklevel=3)
    if not files:  # no subfolders, or subfolders without images
        files, labels, classes = _images_in(folder, recursive=False), None, []
    if not files:
        raise ValueError(f"no images found in {folder} (nor in its subfolders); accepted extensions: "
                         + ", ".join(IMAGE_EXTENSIONS))
    return files, labels, classes


def read_image_folder(
    path: str | os.PathLike[str],
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    crop: str = "center",
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Read a folder of images (PNG, JPEG, BMP, GIF - first frame) with Pillow, keeping 8-bit pixels.

    If ``path`` has subfolders, each subfolder is a class: the sorted subfolder names are the classes and
    get labels ``0..K-1`` (images are collected recursively inside each class folder; subfolders without
    images are skipped with a warning, images directly in ``path`` are ignored with a warning). Otherwise
    the images directly in ``path`` are loaded without labels. Hidden files and folders are ignored.
    Files are loaded in sorted order.

    Args:
        path: the folder.
        size: output size, an int (square) or ``(height, width)``. Default: the size of the first image;
            all images must then have that size.
        channels: 1 (grayscale) or 3 (RGB). Default: 1 if every image is grayscale, else 3. Alpha is dropped.
        crop: with ``size``: ``"center"`` resizes the largest centered region of the target's aspect
            ratio (no distortion); ``"random"`` does the same at :func:`margin` (1/8 larger), leaving room
            for random crops of ``size``; ``"squash"`` resizes the whole image (aspect ratio changes).

    Returns:
        ``(x, y, classes)``: ``(N, C, H, W)`` uint8 pixels (float32 in [0, 1] when some image has more
        than 8 bits); int64 labels ``(N,)`` or ``None`` for a flat folder; the class names.

    Raises:
        FileNotFoundError: the folder does not exist.
        NotADirectoryError: ``path`` is not a folder.
        ValueError: no images found, an unreadable image, differing image sizes without ``size``, or an
            invalid ``size``/``channels``/``crop``.
    """
    folder = Path(path).expanduser()
    if not folder.exists():
        raise FileNotFoundError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    hw = normalize_size(size)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    if crop not in ("center", "random", "squash"):
        raise ValueError(f"crop={crop!r} is not known; allowed: ['center', 'random', 'squash']")
    files, labels, classes = _collect(folder)
    images = [_open_image(f) for f in files]
    if hw is None:
        first = (images[0].height, images[0].width)
        for f, img in zip(files, images):
            if (img.height, img.width) != first:
                raise ValueError(
                    f"images differ in size: {files[0]} is {first[1]}x{first[0]} but {f} is "
                    f"{img.width}x{img.height} (width x height); pass size=(height, width) to resize all images")
    elif crop == "random":
        hw = margin(hw)
    if channels is None:
        channels = 1 if all(_is_gray(img) for img in images) else 3
    deep = any(_is_deep(img) for img in images)
    out_hw = hw or (images[0].height, images[0].width)
    x = np.empty((len(images), channels, *out_hw), dtype=np.float32 if deep else np.uint8)
    for i, img in enumerate(images):
        x[i] = _pixels(img, channels, hw, crop, deep).transpose(2, 0, 1)
    y = None if labels is None else np.asarray(labels, dtype=np.int64)
    return x, y, classes
