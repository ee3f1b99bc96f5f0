"""Where vaelab keeps its data and caches: the one rule every reader and cache uses."""
from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "VAELAB_DATA_DIR"


def _given(value: str | os.PathLike[str] | None) -> Path | None:
    """A folder named by an argument, ``~`` expanded; None when unset or empty."""
    return Path(value).expanduser() if value is not None and str(value) != "" else None


def _env_data_dir() -> Path | None:
    """``$VAELAB_DATA_DIR`` (blank: unset)."""
    return _given(os.environ.get(DATA_DIR_ENV, "").strip())


def find_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the vaelab data directory (MNIST lives in ``<dir>/mnist/``; cached feature nets live in
    :func:`vaelab.fileio.find_cache_dir`).

    Order: the ``data_dir`` argument, else ``$VAELAB_DATA_DIR``, else ``~/.cache/vaelab``.  ``~`` is
    expanded; the directory is not created.
    """
    return _given(data_dir) or _env_data_dir() or Path.home() / ".cache" / "vaelab"


def data_roots(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The configured data roots a run's recorded paths may point into: ``data_dir`` (--data-dir) and
    ``$VAELAB_DATA_DIR``, where set."""
    return [root for root in (_given(data_dir), _env_data_dir()) if root is not None]
