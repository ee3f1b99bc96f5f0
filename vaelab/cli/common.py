"""Shared CLI plumbing: clear one-line errors instead of tracebacks; options from config fields."""
from __future__ import annotations

import contextlib
import difflib
import functools
import logging
import os
import re
import types
import typing
from collections.abc import Callable
from typing import Any

import click
import typer

USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, KeyError, RuntimeError)
DEBUG_ENV = "VAELAB_DEBUG"
ISSUES = "https://github.com/vaelab/vaelab/issues"


def _os_message(e: OSError) -> str:
    """'cannot write|read|open PATH: <strerror>' (disk full, permission denied, is a directory...)."""
    import errno

    verb = {errno.ENOSPC: "write", errno.EROFS: "write", errno.EDQUOT: "write"}.get(e.errno or 0, "read/write")
    what = e.filename if e.filename is not None else None
    reason = e.strerror or str(e) or type(e).__name__
    if what is None:
        return f"cannot {verb}: {reason}"
    extra = f" -> {e.filename2!r}" if getattr(e, "filename2", None) else ""
    return f"cannot {verb} {str(what)!r}{extra}: {reason}"


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn errors into 'error: <message>' and exit code 2: user errors as they are, OSError as
    'cannot read/write PATH: reason', anything else as an unexpected error to report (the traceback comes
    back with VAELAB_DEBUG=1)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit, KeyboardInterrupt, click.exceptions.ClickException):
            raise
        except Exception as e:  # noqa: BLE001  (the one place every error becomes a one-line message)
            if os.environ.get(DEBUG_ENV, "").strip() not in ("", "0"):
                raise
            typer.echo(f"error: {error_message(e)}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def did_you_mean(message: str) -> str:
    """``message`` + " (did you mean 'vae'?)" when it refuses a quoted name ("model='vea' is not known;
    allowed: [...]", "data='digts' is neither a built-in dataset [...]") and one of the listed names is close."""
    bad = re.search(r"'([^']+)' is (?:not known|neither)", message)
    if bad is None:
        return message
    names = [n for group in re.findall(r"\[([^\]]*)\]", message[bad.end():]) for n in re.findall(r"'([^']+)'", group)]
    close = difflib.get_close_matches(bad.group(1), names, n=1, cutoff=0.6)
    return f"{message} (did you mean {close[0]!r}?)" if close else message


def error_message(e: BaseException) -> str:
    """The one line ``friendly`` prints for ``e`` (without the 'error: ' prefix)."""
    if isinstance(e, USER_ERRORS) and not isinstance(e, OSError):
        return did_you_mean(str(e.args[0] if isinstance(e, KeyError) and e.args else e))
    if isinstance(e, (FileNotFoundError, NotADirectoryError)) and e.filename is None:
        return str(e)  # vaelab's own messages (e.g. 'run folder ... does not exist')
    if isinstance(e, OSError):
        return _os_message(e)
    detail = str(e).strip().splitlines()[0] if str(e).strip() else "(no message)"
    return (f"unexpected {type(e).__name__}: {detail} (please report it at {ISSUES}; "
            f"rerun with {DEBUG_ENV}=1 for the traceback)")


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    """'512,256' -> (512, 256)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{what}={text!r} must be comma-separated integers, e.g. 512,256") from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"{what}={text!r} must list integers >= 1")
    return values


SCALARS = (bool, int, float, str)


def unwrap_optional(tp: Any) -> Any:
    """``X | None`` (or ``Optional[X]``) -> X; anything else unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def option_type(hints: list[Any]) -> type:
    """The typer type of an option for fields of these types: the scalar they all share, else text."""
    kinds = {unwrap_optional(h) for h in hints}
    if len(kinds) == 1 and next(iter(kinds)) in SCALARS:
        return next(iter(kinds))
    return str


def _scalar(tp: Any, text: str, flag: str) -> Any:
    tp = unwrap_optional(tp)
    text = text.strip()
    try:
        if tp is bool:
            low = text.lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return low in ("true", "1", "yes")
        if tp in (int, float):
            return tp(text)
    except ValueError:
        raise ValueError(f"{flag}={text!r} must be {'an integer' if tp is int else 'a ' + tp.__name__}") from None
    return text


def parse_text(tp: Any, value: Any, flag: str) -> Any:
    """An option's text as the config field type ``tp``: '512,256' -> (512, 256) for a tuple of ints;
    for a tuple of tuples ';' separates the entries ('200,200' is one entry, '200;100,50' two)."""
    tp = unwrap_optional(tp)
    if not isinstance(value, str):
        return value  # typer converted it already
    if typing.get_origin(tp) is not tuple:
        return _scalar(tp, value, flag)
    args = typing.get_args(tp)
    inner = unwrap_optional(args[0]) if args else str
    if typing.get_origin(inner) is tuple:
        parts = tuple(parse_text(inner, part, flag) for part in value.split(";") if part.strip())
    else:
        items = [v for v in value.split(",") if v.strip()]
        try:
            parts = tuple(_scalar(inner, v, flag) for v in items)
        except ValueError:
            example = "512,256" if inner is int else "0.5,1.5" if inner is float else "a,b"
            kind = {int: "integers", float: "numbers"}.get(inner, "values")
            raise ValueError(f"{flag}={value!r} must be comma-separated {kind}, e.g. {example}") from None
    if not parts:
        raise ValueError(f"{flag}={value!r} must list at least one value")
    return parts


class _Echo(logging.Handler):
    """Writes each record's message to the current stderr (``typer.echo``: also under CliRunner)."""

    def emit(self, record: logging.LogRecord) -> None:
        typer.echo(self.format(record), err=True)


@contextlib.contextmanager
def epoch_lines(logger: str = "vaelab.train"):
    """Show the training loop's one line per epoch (logged at INFO when there is no progress bar)."""
    log, handler = logging.getLogger(logger), _Echo()
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
