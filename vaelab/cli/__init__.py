"""The ``vaelab`` command: thin commands over the Python API.

Commands load on demand: ``vaelab --help``, ``vaelab --version`` and a mistyped command name import
neither torch nor the command modules (``COMMANDS`` names each command's module and help line;
tests/test_cli_core.py holds them equal to the real docstrings). ``vaelab NAME ...`` imports NAME's module,
which registers its command on ``app``.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click
import typer
from typer.core import TyperCommand, TyperGroup

from ..version import __version__

try:  # typer >= 0.2x vendors click: its exceptions are typer._click's, not click's
    from typer._click import exceptions as _cx
except ImportError:  # pragma: no cover - older typer on click
    from click import exceptions as _cx
_NO_ARGS = getattr(_cx, "NoArgsIsHelpError", ())  # click >= 8.2: bare command with no_args_is_help

# command -> (module under vaelab.cli that registers it, the first paragraph of its docstring)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("core", "Train a model and write OUT/config.json, model.safetensors, metrics.jsonl."),
    "sample": ("core", "Draw samples (the model's prior, or a sampler fitted to its codes) into a PNG: short for "
                       "plot --kind samples."),
    "reconstruct": ("core", "Test images (top row) and their reconstructions (bottom row)."),
    "demo": ("demo", "Train PCA, an autoencoder, a VAE and a VAE-GAN with 2-D latents (and the autoencoder and "
                     "VAE again with 16-D latents for the sampling contrast); write metrics.json, pictures and "
                     "report.html."),
    "plot": ("plot", "Draw one picture of a trained run into a PNG."),
    "report": ("report", "Write ONE self-contained HTML file: a metrics table (one row per run), latent scatters, "
                         "samples, reconstructions and training curves (eval.json numbers when present, else "
                         "the last epoch's)."),
    "serve": ("serve", "Explore a trained run: latent map, live decoding, interpolation, prior samples, metrics."),
    "eval": ("evaluate", "Score a run on its test split; write RUN/eval.json and print a table."),
}


class LazyGroup(TyperGroup):
    """A command group whose commands are placeholders (name + help, for ``--help`` and "did you mean")
    until one is invoked: then its module is imported and the real command built."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for name, (_, text) in COMMANDS.items():
            self.commands.setdefault(name, TyperCommand(name=name, help=text))

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] in COMMANDS:
            self.commands[args[0]] = STAND_INS.get(args[0]) or load_command(args[0])
        return super().resolve_command(ctx, args)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        """As click's, but a usage error (unknown option, bad value, missing argument) is ONE line,
        ``error: ...`` naming the option and pointing at the command's --help, exit code 2."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS as e:  # bare `vaelab`: the help text, as before
            e.show()
            sys.exit(e.exit_code)
        except _cx.UsageError as e:
            where = e.ctx.command_path if e.ctx is not None else "vaelab"
            typer.echo(f"error: {e.format_message()}{_given(e)} (see '{where} --help')", err=True)
            sys.exit(2)
        except _cx.ClickException as e:
            typer.echo(f"error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except typer.Abort:  # click turns Ctrl-C (KeyboardInterrupt) and EOF into Abort
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _given(e: Exception) -> str:
    """' (got VALUE)' when a bad option value's parse error carries the text given (typer's pydantic
    coercion does), else ''."""
    errors = getattr(e.__cause__, "errors", None)
    try:
        return f" (got {errors()[0]['input']!r})" if callable(errors) else ""
    except (IndexError, KeyError, TypeError):
        return ""


# command -> its stand-in built from the cached spec (cli/cached.py), while main() tries it
STAND_INS: dict[str, click.Command] = {}
_SAVE_SPECS = False  # main(), no plugins, no valid cached spec: load_command writes the real command's spec

app = typer.Typer(help="vaelab: PCA, autoencoders and VAEs on your images - train, sample, measure, explore.",
                  cls=LazyGroup, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"vaelab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_show_version,
                                       help="Print the version and exit.")) -> None:
    """vaelab: PCA, autoencoders and VAEs on your images - train, sample, measure, explore."""


def load_command(name: str) -> click.Command:
    """Import the module of command ``name`` and build its click command from what it registered."""
    importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")
    for info in app.registered_commands:
        if (info.name or typer.main.get_command_name(info.callback.__name__)) == name:
            if _SAVE_SPECS:
                from . import cached

                cached.save(name, info, checked_names(name))
            return _command(info)
    raise RuntimeError(f"module vaelab.cli.{COMMANDS[name][0]} registers no command {name!r}")


def checked_names(name: str) -> dict[str, list[str]] | None:
    """The names command ``name`` checks first (its module's ``checked_names``; e.g. train's --model), for
    its cached spec."""
    module = importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")
    return getattr(module, "checked_names", dict)().get(name)


def _command(info: Any) -> click.Command:
    return typer.main.get_command_from_info(info, pretty_exceptions_short=app.pretty_exceptions_short,
                                            rich_markup_mode=app.rich_markup_mode)


def answer_from_cache(name: str) -> bool:
    """Let the cached stand-in of command ``name`` parse the command line (sys.argv): it prints the help or the
    usage error and exits; a command line that parses returns True, for the real command. False: no valid
    spec in the cache (returned at once)."""
    from . import cached

    info = cached.load(name)
    if info is None:
        return False
    STAND_INS[name] = _command(info)
    try:
        app()
    except cached.NeedsCommand:
        pass
    finally:
        STAND_INS.pop(name, None)
    return True


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
    from ..models import plugins
    from . import core

    loaded = plugins.discover(names)
    core.refresh_train()
    return loaded


def _command_in(argv: Sequence[str]) -> str | None:
    """The command a command line invokes (its first word that is not an option), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def main() -> None:
    # Plugins first, for the commands that read models (their options come from the registered ones);
    # help, --version and unknown commands import nothing heavy; a command's help and usage errors come
    # from its cached spec when there is one (cli/cached.py).
    global _SAVE_SPECS
    argv = sys.argv[1:]
    name = _command_in(argv)
    if name in COMMANDS:
        from .cached import plugins_requested

        if not plugins_requested(argv):  # help and usage errors without importing torch; else write the spec
            _SAVE_SPECS = not answer_from_cache(name)
        try:
            use_plugins(plugin_args(argv))
        except ValueError as e:
            typer.echo(f"error: {e}", err=True)
            raise SystemExit(2) from None
    app()
