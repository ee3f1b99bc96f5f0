"""Shared CLI plumbing: clear one-line errors instead of tracebacks; options from config fields."""
from __future__ import annotations

import functools
import types
import typing
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
