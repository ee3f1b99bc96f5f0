"""Loading user data sets from image folders and numpy files (numpy + Pillow).

:func:`read_array` and :func:`~vaelab.data.images.read_image_folder` keep 8-bit data as uint8 (a value v
means v / 255), which is what :func:`vaelab.data.load_dataset` stores; :func:`load_array` and
:func:`load_image_folder` return float32 in ``[0, 1]`` for callers that want plain floats.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .images import IMAGE_EXTENSIONS, read_image_folder

__all__ = ["IMAGE_EXTENSIONS", "ARRAY_EXTENSIONS", "load_image_folder", "load_array", "read_array",
           "read_image_folder", "as_float"]

#: File extensions recognised by :func:`load_array`.
ARRAY_EXTENSIONS: tuple[str, ...] = (".npy", ".npz")


def as_float(x: np.ndarray) -> np.ndarray:
    """uint8 pixels v -> float32 v / 255; float32 unchanged."""
    return x.astype(np.float32) / np.float32(255.0) if x.dtype == np.uint8 else x


def load_image_folder(
    path: str | os.PathLike[str],
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    crop: str = "squash",
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """:func:`~vaelab.data.images.read_image_folder` with float32 pixels in ``[0, 1]`` (``crop`` defaults
    to 'squash': the whole image resized to ``size``)."""
    x, y, classes = read_image_folder(path, size=size, channels=channels, crop=crop)
    return as_float(x), y, classes


def _as_pixels(x: np.ndarray, path: Path, key: str) -> tuple[np.ndarray, int | None]:
    """``x`` as stored data and its number of levels: integers with max > 1 are 0..255 pixels (uint8, 256
    levels); 0/1 integers and bools are binary (uint8 0 / 255, 2 levels); floats are float32 (None)."""
    where = f"{path}" + (f" [{key}]" if key else "")
    if x.ndim == 0:
        raise ValueError(f"{where}: expected an array of shape (N, ...), got a scalar")
    if x.shape[0] == 0:
        raise ValueError(f"{where}: contains no samples (shape {x.shape})")
    if x.dtype == np.bool_:
        return x.astype(np.uint8) * np.uint8(255), 2
    if np.issubdtype(x.dtype, np.integer):
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise ValueError(
                f"{where}: integer values must be 0..255 pixels (or 0/1), got range {lo}..{hi}"
            )
        if hi > 1:
            return x.astype(np.uint8, copy=False), 256
        return x.astype(np.uint8) * np.uint8(255), 2
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise ValueError(f"{where}: contains NaN or infinite values")
        return x, None
    raise ValueError(f"{where}: unsupported dtype {x.dtype} (expected integer, bool or float)")


def read_array(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None, int | None]:
    """Read a data set from a ``.npy`` file (x only) or ``.npz`` file (``x``, optional ``y``).

    Files are loaded with ``allow_pickle=False``. Integer arrays whose maximum is above 1 are 0..255
    pixels, kept as uint8; other integer and bool arrays are binary, kept as uint8 0 / 255; float arrays
    become float32 unchanged. The shape of ``x`` is kept as given, ``(N, ...)``.

    Returns:
        ``(x, y, levels)``: uint8 or float32 ``x``; ``y`` (int64 if integer, else as stored) or ``None``
        if absent; the number of levels of ``x`` (256, 2, or None for floats).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown extension, unreadable file, missing ``x`` key (the message lists the keys
            present), bad values or mismatched lengths.
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

    if ext == ".npy":
        if not isinstance(loaded, np.ndarray):
            raise ValueError(f"{p} is not a .npy array file")
        x, levels = _as_pixels(loaded, p, "")
        return x, None, levels

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
    x, levels = _as_pixels(x_raw, p, "x")
    y: np.ndarray | None = None
    if y_raw is not None:
        if y_raw.ndim == 0 or y_raw.shape[0] != x.shape[0]:
            raise ValueError(
                f"{p}: 'y' has shape {y_raw.shape} but 'x' has {x.shape[0]} samples"
            )
        y = y_raw.astype(np.int64) if np.issubdtype(y_raw.dtype, np.integer) else y_raw
    return x, y, levels


def load_array(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`read_array` with float32 ``x`` (uint8 pixels scaled to ``[0, 1]``): ``(x, y)``."""
    x, y, _ = read_array(path)
    return as_float(x), y
