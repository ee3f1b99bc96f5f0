"""Shared CLI plumbing: clear one-line errors instead of tracebacks."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer

USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, KeyError, RuntimeError)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user errors into 'error: <message>' and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            typer.echo(f"error: {msg}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    """'512,256' -> (512, 256)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{what}={text!r} must be comma-separated integers, e.g. 512,256") from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"{what}={text!r} must list integers >= 1")
    return values
