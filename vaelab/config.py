"""Frozen dataclass configs: JSON round-trip that rejects unknown keys, dotted overrides, field help."""
from __future__ import annotations

import dataclasses
import inspect
import io
import json
import textwrap
import tokenize
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain JSON-able values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _coerce(tp: Any, value: Any) -> Any:
    """Turn a JSON value back into the annotated type (lists -> tuples)."""
    origin = typing.get_origin(tp)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v) for v in value)
    if origin in (typing.Union, types.UnionType) and value is not None:
        for arg in typing.get_args(tp):
            if arg is not type(None):
                return _coerce(arg, value)
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict, naming any unknown key and the allowed ones."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; allowed: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _coerce(hints[k], v) for k, v in data.items()})


def _field_comments(cls: type) -> dict[str, str]:
    """``name: type = default  # comment`` lines of one class body -> {name: comment} ({} without source)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (OSError, TypeError, tokenize.TokenError, IndentationError, SyntaxError):
        return {}
    comments: dict[str, str] = {}
    depth, at_start, field = 0, True, None
    for i, tok in enumerate(tokens):
        if tok.type == tokenize.INDENT:
            depth += 1
        elif tok.type == tokenize.DEDENT:
            depth -= 1
        elif tok.type == tokenize.NEWLINE:  # end of a logical line (a statement)
            at_start, field = True, None
            continue
        elif tok.type == tokenize.COMMENT:
            if field is not None:  # the statement's trailing comment (the last one if it spans lines)
                comments[field] = tok.string.lstrip("#").strip()
            continue
        elif tok.type == tokenize.NL:
            continue
        elif at_start:
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if (depth == 1 and tok.type == tokenize.NAME and nxt is not None
                    and nxt.type == tokenize.OP and nxt.string == ":"):
                field = tok.string  # an annotated assignment in the class body: a field
            at_start = False
    return comments


def field_help(cls: type) -> dict[str, str]:
    """Each dataclass field's help: its trailing ``# comment`` in the class source.

    Walks the MRO, so a subclass config inherits the comments of the fields it does not redeclare;
    falls back to ``field.metadata["help"]``, then to "" (e.g. when the source is unavailable)."""
    found: dict[str, str] = {}
    for klass in cls.__mro__:
        if klass is object:
            continue
        for name, text in _field_comments(klass).items():
            found.setdefault(name, text)  # the most derived class wins
    return {f.name: found.get(f.name) or f.metadata.get("help", "")
            for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
