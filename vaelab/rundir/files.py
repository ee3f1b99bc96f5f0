"""Writing files: strict JSON and PNG, atomically (through vaelab.fileio)."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from ..fileio import atomic_write, finite_or_none


def json_text(data: Any) -> str:
    """Strict JSON text (NaN/Inf -> null), indented, with a final newline."""
    return json.dumps(finite_or_none(data), indent=2, allow_nan=False) + "\n"


def write_json(path: str | Path, data: Any) -> Path:
    """Strict JSON (NaN/Inf -> null), indented, written atomically."""
    return atomic_write(path, json_text(data))


def encode_png(picture: Any, meta: dict[str, str] | None = None) -> bytes:
    """PNG bytes of a uint8 array (H, W), (H, W, 1), (H, W, 3) or a matplotlib Figure (encoded in memory);
    ``meta``: PNG text chunks (e.g. the checkpoint the picture shows)."""
    buf = io.BytesIO()
    if hasattr(picture, "savefig"):  # a matplotlib Figure (not imported here: rundir stays light)
        picture.savefig(buf, format="png", metadata=meta)
        return buf.getvalue()
    import numpy as np
    from PIL import Image

    arr = np.asarray(picture)
    arr = arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr
    info = None
    if meta:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in meta.items():
            info.add_text(key, value)
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def write_png(path: str | Path, picture: Any, meta: dict[str, str] | None = None) -> Path:
    """Write ``picture`` (see :func:`encode_png`) as a PNG file, atomically; creates the folder."""
    return atomic_write(path, encode_png(picture, meta))
