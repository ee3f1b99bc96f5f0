"""Loading user data sets from image folders and numpy files (numpy + Pillow).

Both loaders return float32 arrays with values in ``[0, 1]``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "ARRAY_EXTENSIONS", "load_image_folder", "load_array"]

#: File extensions (lower case) recognised by :func:`load_image_folder`.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

#: File extensions recognised by :func:`load_array`.
ARRAY_EXTENSIONS: tuple[str, ...] = (".npy", ".npz")

_GRAY_MODES = {"1", "L", "LA", "I", "F"}


# ---------------------------------------------------------------- image folder


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


def _normalize_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
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


def _to_float(img, channels: int) -> np.ndarray:
    """Convert a PIL image to a float32 (H, W, C) array in [0, 1]."""
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        # high bit depth grayscale: scale without going through 8 bits
        a = np.asarray(img, dtype=np.float64)
        if mode == "F":
            scale = 1.0 if a.size == 0 or a.max() <= 1.0 else 255.0
        else:
            scale = 65535.0 if (mode.startswith("I;16") or (a.size and a.max() > 255)) else 255.0
        g = np.clip(a / scale, 0.0, 1.0).astype(np.float32)[..., None]
        return np.repeat(g, channels, axis=2) if channels == 3 else g
    a = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
    return a[..., None] if a.ndim == 2 else a


def _resize(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize a float32 (H, W, C) array to ``hw`` with bilinear (antialiased) filtering."""
    from PIL import Image

    if a.shape[:2] == hw:
        return a
    chans = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(a[..., c])).resize(
                (hw[1], hw[0]), Image.Resampling.BILINEAR
            ),
            dtype=np.float32,
        )
        for c in range(a.shape[2])
    ]
    return np.clip(np.stack(chans, axis=2), 0.0, 1.0)


def load_image_folder(
    path: str | os.PathLike[str],
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Load a folder of images (PNG, JPEG, BMP, GIF - first frame) with Pillow.

    If ``path`` has subfolders, each subfolder is a class: the sorted subfolder
    names are the classes and get labels ``0..K-1`` (images are collected
    recursively inside each class folder; subfolders without images are
    skipped with a warning, images directly in ``path`` are ignored with a
    warning). Otherwise the images directly in ``path`` are loaded without
    labels. Hidden files and folders (names starting with ``.``) are ignored.
    Files are loaded in sorted order.

    Args:
        path: the folder.
        size: output size, an int (square) or ``(height, width)``. Default: the
            size of the first image; all images must then have that size.
        channels: 1 (grayscale) or 3 (RGB). Default: 1 if every image is
            grayscale, else 3. Alpha channels are dropped.

    Returns:
        ``(x, y, classes)``: float32 array ``(N, C, H, W)`` in ``[0, 1]``; int64
        labels ``(N,)`` or ``None`` for a flat folder; the class names
        (``classes[label]``), empty for a flat folder.

    Raises:
        FileNotFoundError: the folder does not exist.
        NotADirectoryError: ``path`` is not a folder.
        ValueError: no images found, an unreadable image, differing image sizes
            without ``size``, or an invalid ``size``/``channels``.
    """
    folder = Path(path).expanduser()
    if not folder.exists():
        raise FileNotFoundError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    hw = _normalize_size(size)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")

    subdirs = sorted((p for p in folder.iterdir() if p.is_dir() and not _is_hidden(p)), key=lambda p: p.name)
    files: list[Path] = []
    labels: list[int] | None = None
    classes: list[str] = []
    if subdirs:
        labels = []
        for d in subdirs:
            found = _images_in(d, recursive=True)
            if not found:
                warnings.warn(f"ignoring folder without images: {d}", stacklevel=2)
                continue
            labels += [len(classes)] * len(found)
            classes.append(d.name)
            files += found
        stray = _images_in(folder, recursive=False)
        if stray and files:
            warnings.warn(
                f"ignoring {len(stray)} image(s) directly in {folder} (e.g. {stray[0].name}): "
                "with subfolders, each subfolder is a class",
                stacklevel=2,
            )
    if not files:  # no subfolders, or subfolders without images
        files = _images_in(folder, recursive=False)
        labels, classes = None, []
    if not files:
        raise ValueError(
            f"no images found in {folder} (nor in its subfolders); accepted extensions: "
            + ", ".join(IMAGE_EXTENSIONS)
        )

    images = [_open_image(f) for f in files]
    if hw is None:
        first = (images[0].height, images[0].width)
        for f, img in zip(files, images):
            if (img.height, img.width) != first:
                raise ValueError(
                    f"images differ in size: {files[0]} is {first[1]}x{first[0]} but {f} is "
                    f"{img.width}x{img.height} (width x height); pass size=(height, width) "
                    "to resize all images"
                )
        hw = first
    if channels is None:
        channels = 1 if all(_is_gray(img) for img in images) else 3

    x = np.empty((len(images), channels, hw[0], hw[1]), dtype=np.float32)
    for i, img in enumerate(images):
        x[i] = _resize(_to_float(img, channels), hw).transpose(2, 0, 1)
    y = None if labels is None else np.asarray(labels, dtype=np.int64)
    return x, y, classes


# ---------------------------------------------------------------------- arrays


def _as_pixels(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    """Convert ``x`` to float32: integers with max > 1 are 0..255 pixels."""
    where = f"{path}" + (f" [{key}]" if key else "")
    if x.ndim == 0:
        raise ValueError(f"{where}: expected an array of shape (N, ...), got a scalar")
    if x.shape[0] == 0:
        raise ValueError(f"{where}: contains no samples (shape {x.shape})")
    if x.dtype == np.bool_:
        return x.astype(np.float32)
    if np.issubdtype(x.dtype, np.integer):
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise ValueError(
                f"{where}: integer values must be 0..255 pixels (or 0/1), got range {lo}..{hi}"
            )
        return x.astype(np.float32) / np.float32(255.0) if hi > 1 else x.astype(np.float32)
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise ValueError(f"{where}: contains NaN or infinite values")
        return x
    raise ValueError(f"{where}: unsupported dtype {x.dtype} (expected integer, bool or float)")


def load_array(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Load a data set from a ``.npy`` file (x only) or ``.npz`` file (``x``, optional ``y``).

    Files are loaded with ``allow_pickle=False``. Integer arrays whose maximum
    is above 1 are treated as 0..255 pixels and scaled to ``[0, 1]``; other
    integer/bool arrays and float arrays are converted to float32 unchanged.
    The shape of ``x`` is kept as given, ``(N, ...)``.

    Returns:
        ``(x, y)``: float32 ``x``; ``y`` (int64 if integer, else as stored) or
        ``None`` if absent.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown extension, unreadable file, missing ``x`` key (the
            message lists the keys present), bad values or mismatched lengths.
    """
    p = Path(path).expanduser()
    ext = p.suffix.lower()
    if ext not in ARRAY_EXTENSIONS:
        raise ValueError(
            f"unsupported array file {p}: extension {ext or '(none)'!r}; allowed: "
            + ", ".join(ARRAY_EXTENSIONS)
        )
    if not p.is_file():
        raise FileNotFoundError(f"array file not found: {p}")
    try:
        loaded = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"cannot read {p}: {exc}") from None

    y: np.ndarray | None = None
    if ext == ".npy":
        if not isinstance(loaded, np.ndarray):
            raise ValueError(f"{p} is not a .npy array file")
        return _as_pixels(loaded, p, ""), None

    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{p} is not a .npz archive")
    with loaded as npz:
        keys = list(npz.files)
        if "x" not in keys:
            raise ValueError(
                f"{p}: no 'x' array; keys present: {', '.join(keys) if keys else '(none)'}. "
                "Save the data as np.savez(path, x=..., y=...)"
            )
        try:
            x_raw = npz["x"]
            y_raw = npz["y"] if "y" in keys else None
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {p}: {exc}") from None
    x = _as_pixels(x_raw, p, "x")
    if y_raw is not None:
        if y_raw.ndim == 0 or y_raw.shape[0] != x.shape[0]:
            raise ValueError(
                f"{p}: 'y' has shape {y_raw.shape} but 'x' has {x.shape[0]} samples"
            )
        y = y_raw.astype(np.int64) if np.issubdtype(y_raw.dtype, np.integer) else y_raw
    return x, y
