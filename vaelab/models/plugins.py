"""Models from outside the package: a plugin is a module that registers a model with ``@register``.

Plugins are found three ways: by dotted module name (``load_plugins(["mypkg.models"])``,
``vaelab train --plugin mypkg.models``), through the environment variable ``VAELAB_PLUGINS``
(comma-separated module names) and through the entry-point group ``vaelab.models`` of installed
packages (``[project.entry-points."vaelab.models"] mymodel = "mypkg.models"``). A run records the
modules its model needs (config.json "plugins"); ``vaelab.load`` imports them again.
"""
from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Iterable
from importlib.metadata import entry_points

from .base import REGISTRY

ENV_VAR = "VAELAB_PLUGINS"
ENTRY_POINT_GROUP = "vaelab.models"

_LOADED: list[str] = []  # module names imported through this module, in order


def check_name(name: str) -> str:
    """A plugin is a dotted module name (identifiers separated by dots), never a path."""
    if not isinstance(name, str) or not name or not all(part.isidentifier() for part in name.split(".")):
        raise ValueError(f"plugin={name!r} cannot be imported: not a dotted module name "
                         "(identifiers separated by dots, e.g. mypkg.models; no paths)")
    return name


def load_plugins(names: Iterable[str]) -> list[str]:
    """Import each module (registering its models); returns the names. Already imported: no-op."""
    names = [n.strip() if isinstance(n, str) else n for n in names]
    names = [n for n in names if n != ""]
    for name in names:
        check_name(name)
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001  (any failure inside the plugin is the plugin's)
            raise ValueError(f"plugin={name!r} cannot be imported: {type(e).__name__}: {e}") from e
        if name not in _LOADED:
            _LOADED.append(name)
    return names


def env_plugins() -> list[str]:
    """The module names in $VAELAB_PLUGINS (comma-separated)."""
    return [n.strip() for n in os.environ.get(ENV_VAR, "").split(",") if n.strip()]


def load_entry_points() -> list[str]:
    """Import the modules of installed packages' ``vaelab.models`` entry points; a broken one warns."""
    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        module = ep.value.split(":")[0].strip()
        try:
            load_plugins([module])
        except ValueError as e:
            warnings.warn(f"entry point {ep.name!r} of group {ENTRY_POINT_GROUP!r}: {e}", stacklevel=2)
            continue
        loaded.append(module)
    return loaded


def discover(names: Iterable[str] = ()) -> list[str]:
    """Load ``names``, the modules in $VAELAB_PLUGINS and the installed entry points."""
    return [*load_plugins([*names, *env_plugins()]), *load_entry_points()]


def loaded() -> list[str]:
    """Plugin modules imported so far through this module."""
    return list(_LOADED)


def modules_for(model_name: str) -> list[str]:
    """The plugin modules to import before ``model_name`` can be looked up ([] for a built-in model).

    The loaded plugins that hold the model's class (the module or a package above it); else the
    class's own module (a plugin imported directly)."""
    cls = REGISTRY.get(model_name)
    if cls is None:
        return []
    module = cls.__module__
    if module == "vaelab" or module.startswith("vaelab.") or module == "__main__":
        return []
    owners = [m for m in _LOADED if module == m or module.startswith(m + ".")]
    return owners or [module]
