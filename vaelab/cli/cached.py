"""Help and usage errors at once: each command's options, cached, so that ``vaelab train --help`` or
``vaelab train --epochs x`` need not import torch and every model file (~5 s) to answer.

When a command is built for real (its module imported), its signature - the option names, types, defaults
and help texts, and the docstring - is written as JSON to ``<cache root>/cli/<key>/<command>.json`` (the
cache root of :func:`vaelab.fileio.find_cache_dir`). The key hashes vaelab's version, every ``.py`` file of
the package (the model files make ``train``'s options), typer's version and Python's, so an edited or
upgraded vaelab never meets a stale spec. The next invocation of that command builds a stand-in command
from the JSON with typer itself and lets click parse the command line with it: ``--help`` and usage errors
are answered by it (the same text: tests/test_cli_cached.py compares them with the real command's); a
command line that parses is run by the real command. With plugins (``--plugin``, ``$VAELAB_PLUGINS`` or
installed entry points) the cache is neither read nor written: their options are not in the key.

A spec may also list the names a parameter takes that the command checks before anything else (``train
--model``: the registered models): the stand-in refuses ``--model vea`` with the command's own message.

A spec is read only when every field has the expected type and each option type is one of ``TYPES``;
anything else (a damaged or foreign file) is ignored and the real command answers.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import sys
import typing
from pathlib import Path
from typing import Any, List, Optional

import typer
from typer.models import ArgumentInfo, CommandInfo, OptionInfo

from ..config import unknown_name
from ..fileio import atomic_write, find_cache_dir
from ..version import __version__
from .common import did_you_mean

FORMAT = 2  # 2: the names lists
PLUGIN_ENV, PLUGIN_GROUP = "VAELAB_PLUGINS", "vaelab.models"  # as vaelab.models.plugins (not imported: torch)
# the parameter types a cached command may have, by name (a command with any other is not cached)
TYPES: dict[str, Any] = {
    "str": str, "int": int, "float": float, "bool": bool, "Path": Path,
    "str?": Optional[str], "int?": Optional[int], "float?": Optional[float], "bool?": Optional[bool],
    "Path?": Optional[Path], "list[str]?": Optional[List[str]], "list[Path]": list[Path],
}
# the option / argument settings a cached parameter may carry besides its default (JSON scalars)
SETTINGS = ("help", "min", "max", "show_default", "hidden", "metavar")


class NeedsCommand(Exception):
    """The command line parsed: the real command must run it."""


def plugins_requested(argv: list[str]) -> bool:
    """Whether plugins may add options: ``--plugin`` given, ``$VAELAB_PLUGINS`` set, or entry points installed."""
    from importlib.metadata import entry_points

    if any(a == "--plugin" or a.startswith("--plugin=") for a in argv) or os.environ.get(PLUGIN_ENV, "").strip():
        return True
    return bool(list(entry_points(group=PLUGIN_GROUP)))


def key() -> str:
    """A hash of what the commands' options come from: vaelab's sources and version, typer's and Python's."""
    h = hashlib.sha256(f"{FORMAT} {__version__} {typer.__version__} {sys.version_info[:2]}".encode())
    root = Path(__file__).resolve().parents[1]  # the vaelab package
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:24]


def spec_path(name: str) -> Path:
    return find_cache_dir() / "cli" / key() / f"{name}.json"


# -- writing: the real command's signature as JSON ------------------------------------------------------
def _type_name(tp: Any) -> str | None:
    return next((n for n, t in TYPES.items() if t == tp), None)


def _value(v: Any) -> Any:
    """A default as JSON: scalars as they are, a Path as {"path": ...}, a required parameter as {"required": true}."""
    if v is ...:
        return {"required": True}
    if isinstance(v, Path):
        return {"path": str(v)}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"default {v!r} has no JSON form here")


def _param(p: inspect.Parameter, tp: Any) -> dict[str, Any]:
    info = p.default
    if not isinstance(info, (OptionInfo, ArgumentInfo)) or _type_name(tp) is None:
        raise TypeError(f"parameter {p.name!r}: {tp!r} is not a cached type")
    base = vars(typer.Option() if isinstance(info, OptionInfo) else typer.Argument())
    extra = {k for k, v in vars(info).items() if k != "default" and v != base.get(k)}
    if not extra <= {*SETTINGS, "param_decls"}:
        raise TypeError(f"parameter {p.name!r}: settings {sorted(extra - set(SETTINGS))} are not cached")
    settings = {k: getattr(info, k) for k in SETTINGS if k in extra}
    if any(v is not None and not isinstance(v, (bool, int, float, str)) for v in settings.values()):
        raise TypeError(f"parameter {p.name!r}: a setting is not a JSON scalar")
    decls = list(getattr(info, "param_decls", ()) or ())
    return {"name": p.name, "kind": "option" if isinstance(info, OptionInfo) else "argument",
            "type": _type_name(tp), "default": _value(info.default), "decls": decls, "settings": settings}


def dump(name: str, info: CommandInfo, names: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The JSON spec of registered command ``info`` (TypeError: it has something a spec cannot hold).
    ``names``: parameter -> the values it may take, checked by the command before anything else it does
    (``train --model``: the registered models); the stand-in refuses any other value as the command would."""
    if info.help is not None or info.context_settings or info.epilog or info.short_help or info.hidden \
            or info.no_args_is_help or info.deprecated:
        raise TypeError(f"command {name!r} has settings a spec does not hold")
    hints = typing.get_type_hints(info.callback)
    sig = inspect.signature(info.callback)
    params = [_param(p, hints.get(p.name, p.annotation)) for p in sig.parameters.values()]
    try:
        names = _names(dict(names or {}), set(sig.parameters))  # the check load() makes
    except ValueError:
        raise TypeError(f"command {name!r}: names {sorted(names or {})} are not lists of strings for its "
                        "parameters") from None
    return {"format": FORMAT, "name": name, "doc": inspect.getdoc(info.callback) or "", "params": params,
            "names": names}


def save(name: str, info: CommandInfo, names: dict[str, list[str]] | None = None) -> None:
    """Write command ``name``'s spec (``names``: see ``dump``) and remove the specs of other keys (older
    sources); best effort: a command the spec cannot hold, or an unwritable cache folder, leaves the cache
    as it was."""
    try:
        path = atomic_write(spec_path(name), json.dumps(dump(name, info, names), indent=1))
    except (TypeError, OSError, RuntimeError):  # RuntimeError: no home folder
        return
    for old in path.parent.parent.iterdir():
        if old != path.parent and _is_spec_folder(old):
            shutil.rmtree(old, ignore_errors=True)


def _is_spec_folder(path: Path) -> bool:
    """A folder this module wrote: a key's name (24 hex digits) holding only .json files."""
    name = path.name
    return (path.is_dir() and not path.is_symlink() and len(name) == 24 and all(c in "0123456789abcdef" for c in name)
            and all(f.is_file() and f.suffix == ".json" for f in path.iterdir()))


# -- reading: a stand-in command built by typer from the spec ----------------------------------------------
def _default(v: Any) -> Any:
    if isinstance(v, dict):
        if v == {"required": True}:
            return ...
        if set(v) == {"path"} and isinstance(v["path"], str):
            return Path(v["path"])
        raise ValueError("bad default")
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise ValueError("bad default")


def _rebuild(p: Any) -> inspect.Parameter:
    if not (isinstance(p, dict) and isinstance(p.get("name"), str) and p["name"].isidentifier()
            and p.get("kind") in ("option", "argument") and p.get("type") in TYPES
            and isinstance(p.get("decls"), list) and all(isinstance(d, str) for d in p["decls"])
            and isinstance(p.get("settings"), dict) and set(p["settings"]) <= set(SETTINGS)
            and all(v is None or isinstance(v, (bool, int, float, str)) for v in p["settings"].values())):
        raise ValueError("bad parameter")
    make = typer.Option if p["kind"] == "option" else typer.Argument
    info = make(_default(p.get("default")), *p["decls"], **p["settings"])
    return inspect.Parameter(p["name"], inspect.Parameter.KEYWORD_ONLY, default=info, annotation=TYPES[p["type"]])


def _names(v: Any, params: set[str]) -> dict[str, list[str]]:
    if not (isinstance(v, dict) and set(v) <= params
            and all(isinstance(a, list) and all(isinstance(n, str) for n in a) for a in v.values())):
        raise ValueError("bad names")
    return v


def load(name: str) -> CommandInfo | None:
    """The stand-in for command ``name`` from the cache (None: no valid spec). Invoking it raises
    NeedsCommand: it only parses."""
    try:
        spec = json.loads(spec_path(name).read_text(encoding="utf-8"))
        if not (isinstance(spec, dict) and spec.get("format") == FORMAT and spec.get("name") == name
                and isinstance(spec.get("doc"), str) and isinstance(spec.get("params"), list)):
            return None
        params = [_rebuild(p) for p in spec["params"]]
        names = _names(spec.get("names"), {p.name for p in params})
    except (OSError, ValueError, TypeError, RuntimeError):  # RuntimeError: no home folder
        return None

    def stand_in(**values: Any) -> None:
        for param, allowed in names.items():  # what the command refuses first, refused here the same way
            if values.get(param) is not None and values[param] not in allowed:
                typer.echo(f"error: {did_you_mean(unknown_name(param, values[param], allowed))}", err=True)
                raise typer.Exit(2)
        raise NeedsCommand(name)

    stand_in.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    stand_in.__doc__ = spec["doc"]
    return CommandInfo(name=name, callback=stand_in)
