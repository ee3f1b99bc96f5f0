"""The ``vaelab`` command: thin commands over the Python API."""
from __future__ import annotations

import typer

app = typer.Typer(help="vaelab: PCA, autoencoders and VAEs on your images - train, sample, measure, explore.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

from . import core, demo  # noqa: E402,F401  (each module registers its commands on ``app``)
from . import plot, report  # noqa: E402,F401
from . import serve  # noqa: E402,F401
from . import evaluate  # noqa: E402,F401


def main() -> None:
    app()
