"""Writing files so that readers never see half of one, JSON that stays strict, and where vaelab's own caches
live (bottom layer, stdlib only).

Every atomic write in vaelab goes through :func:`atomic_path`: a temporary name in the target's own folder
(``.<name>.<random>.tmp``, so the final ``os.replace`` never crosses file systems), flushed to disk with
``fsync`` and renamed over the target; on any error the temporary file is removed and the target is left
as it was.
"""
from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "atomic_write", "find_cache_dir", "finite_or_none", "fsync_dir"]

CACHE_ENV = "XDG_CACHE_HOME"


def find_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return vaelab's cache root (trained feature nets live in ``<root>/features/``, the commands' option
    specs in ``<root>/cli/``).

    Order: the ``cache_dir`` argument (--cache-dir), else ``$XDG_CACHE_HOME/vaelab``, else
    ``~/.cache/vaelab``; never the data directory (a read-only or shared data root stays untouched).
    ``~`` is expanded; the directory is not created."""
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    xdg = os.environ.get(CACHE_ENV, "").strip()
    if xdg and Path(xdg).expanduser().is_absolute():  # the XDG spec: relative values are ignored
        return Path(xdg).expanduser() / "vaelab"
    return Path.home() / ".cache" / "vaelab"


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds it is fsynced and renamed onto
    ``path``, otherwise it is deleted. For writers that want a file name (safetensors, torch.save)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (the renames in it) to disk; a no-op where folders cannot be opened
    (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` (str as UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def finite_or_none(value: Any) -> Any:
    """NaN/Inf -> None in nested dicts, lists and tuples (tuples become lists), so the value is strict JSON;
    a diverged model's numbers show up as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def check_finite_weights(state: Any, path: str | os.PathLike[str]) -> None:
    """Refuse a loaded state dict (name -> tensor) holding NaN/Inf: ValueError naming the file, the first bad
    tensor and how many values are bad. Duck-typed (``tensor.isfinite()``), so this module stays stdlib only."""
    for name, tensor in state.items():
        if not hasattr(tensor, "isfinite"):
            continue
        finite = tensor.isfinite()
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise ValueError(f"{str(path)!r} holds {bad} NaN/Inf value(s) in weight {name!r}; the checkpoint "
                             "is unusable (a diverged run?): retrain it or use an earlier checkpoint")
