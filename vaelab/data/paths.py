"""Where vaelab keeps its data and caches: the one rule every reader and cache uses."""
from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "VAELAB_DATA_DIR"


def find_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the vaelab data directory (MNIST lives in ``<dir>/mnist/``; cached feature nets live in
    :func:`find_cache_dir`).

    Order: the ``data_dir`` argument, else ``$VAELAB_DATA_DIR``, else ``~/.cache/vaelab``.  ``~`` is
    expanded; the directory is not created.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "vaelab"


CACHE_ENV = "XDG_CACHE_HOME"


def find_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return vaelab's cache root (trained feature nets live in ``<root>/features/``).

    Order: the ``cache_dir`` argument (--cache-dir), else ``$XDG_CACHE_HOME/vaelab``, else
    ``~/.cache/vaelab``; never the data directory (a read-only or shared data root stays untouched).
    ``~`` is expanded; the directory is not created."""
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    xdg = os.environ.get(CACHE_ENV, "").strip()
    if xdg and Path(xdg).expanduser().is_absolute():  # the XDG spec: relative values are ignored
        return Path(xdg).expanduser() / "vaelab"
    return Path.home() / ".cache" / "vaelab"
