"""Where vaelab keeps its data and caches: the one rule every reader and cache uses."""
from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "VAELAB_DATA_DIR"


def find_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the vaelab data directory (MNIST lives in ``<dir>/mnist/``, cached feature nets in
    ``<dir>/features/``).

    Order: the ``data_dir`` argument, else ``$VAELAB_DATA_DIR``, else ``~/.cache/vaelab``.  ``~`` is
    expanded; the directory is not created.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "vaelab"
