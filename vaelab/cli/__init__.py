"""The ``vaelab`` command: thin commands over the Python API."""
from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

app = typer.Typer(help="vaelab: PCA, autoencoders and VAEs on your images - train, sample, measure, explore.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

from . import core, demo  # noqa: E402,F401  (each module registers its commands on ``app``)
from . import plot, report  # noqa: E402,F401
from . import serve  # noqa: E402,F401
from . import evaluate  # noqa: E402,F401
from ..models import plugins  # noqa: E402


def plugin_args(argv: Sequence[str]) -> list[str]:
    """The module names given as ``--plugin X`` or ``--plugin=X`` in a command line."""
    names, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--plugin" and i + 1 < len(argv):
            names.append(argv[i + 1])
            i += 1
        elif arg.startswith("--plugin="):
            names.append(arg.split("=", 1)[1])
        i += 1
    return names


def use_plugins(names: Sequence[str] = ()) -> list[str]:
    """Import plugin modules (``names``, $VAELAB_PLUGINS, the ``vaelab.models`` entry points) and
    rebuild ``vaelab train`` so their models' options exist. For in-process use (typer's CliRunner)."""
    loaded = plugins.discover(names)
    core.refresh_train()
    return loaded


def main() -> None:
    # Plugins first: the train command's options come from the models registered when typer builds it.
    try:
        use_plugins(plugin_args(sys.argv[1:]))
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise SystemExit(2) from None
    app()
