"""Reloading a run's data from its config.json, which is untrusted (run folders get shared).

``datasets.info_from_dict`` checks the types of the recorded ``data`` entry; :func:`resolve_recorded` decides
which dataset name or file may be opened: a built-in name, or a recorded path that resolves (symlinks
followed) inside the run folder or a configured data root (``--data-dir``, ``$VAELAB_DATA_DIR``); anything
else needs the user's explicit ``--data PATH``. :func:`load_recorded` is the one call readers make.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from .datasets import BUILTIN, DataInfo, Dataset, data_options, info_from_dict, load_dataset
from .paths import data_roots


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.is_relative_to(root.resolve())
    except OSError:
        return False


def resolve_recorded(info: Any, run_dir: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None = None,
                     override: str | os.PathLike[str] | None = None) -> DataInfo:
    """The run's data info with the name that may be opened.

    ``override`` (the user's ``--data PATH``) wins, unchecked. Otherwise a built-in name is kept; a recorded
    path (relative ones are taken relative to the run folder) must resolve, symlinks followed, inside the
    run folder or a data root (:func:`data_roots`), else ValueError naming ``--data PATH``."""
    base = info_from_dict(info)
    if override is not None and str(override) != "":
        name = str(override)
        if name not in BUILTIN:
            name = str(Path(name).expanduser().resolve())
        return dataclasses.replace(base, name=name)
    if base.name in BUILTIN:
        return base
    run = Path(run_dir)
    recorded = Path(base.name).expanduser()
    target = (recorded if recorded.is_absolute() else run / recorded).resolve()
    if any(_inside(target, root) for root in [run, *data_roots(data_dir)]):
        return dataclasses.replace(base, name=str(target))
    raise ValueError(f"run {str(run_dir)!r} refers to data at {base.name!r} outside the run folder and the "
                     "data roots; pass --data PATH to use it")


def load_recorded(info: Any, split: str, run_dir: str | os.PathLike[str],
                  data_dir: str | os.PathLike[str] | None = None,
                  override: str | os.PathLike[str] | None = None) -> Dataset:
    """Reload split ``split`` of a run's data, following only the paths :func:`resolve_recorded` allows."""
    safe = resolve_recorded(info, run_dir, data_dir, override)
    return load_dataset(safe.name, split, data_dir=data_dir, **data_options(safe))
