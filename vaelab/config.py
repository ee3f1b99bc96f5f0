"""Frozen dataclass configs: JSON round-trip that rejects unknown keys, dotted overrides, field help."""
from __future__ import annotations

import dataclasses
import inspect
import io
import json
import numbers
import textwrap
import tokenize
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config as plain JSON-able values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def unknown_name(field: str, value: Any, allowed: list[str]) -> str:
    """The message refusing a name that is not one of ``allowed`` ("model='vea' is not known; allowed: [...]");
    the CLI adds "did you mean" (``cli.common.did_you_mean``)."""
    return f"{field}={value!r} is not known; allowed: {allowed}"


def field_default(f: dataclasses.Field, missing: Any = None) -> Any:
    """A dataclass field's default (its factory called), or ``missing`` for a required field."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return missing


_NONE = type(None)


def _type_name(tp: Any) -> str:
    """int, float, str, bool, tuple[int, ...], int | None, ... as users read them."""
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(tp: Any, value: Any, field: str = "value") -> Any:
    """Check a JSON value against the annotated type and turn it into it (lists -> tuples, int -> float);
    ValueError naming ``field``, the value and the type otherwise. bools are not numbers; unknown
    annotations (Any, plugin types) pass through unchanged."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if _NONE in args:
                return None
            raise _wrong(field, value, tp)
        for arg in args:
            if arg is _NONE:
                continue
            try:
                return _coerce(arg, value, field)
            except ValueError:
                continue
        raise _wrong(field, value, tp)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _wrong(field, value, tp)
        args = typing.get_args(tp)
        if not args:
            return tuple(value)
        if len(args) == 2 and args[1] is Ellipsis:
            inner = typing.get_args(args[0])
            if (typing.get_origin(args[0]) is tuple and len(inner) == 2 and inner[1] is Ellipsis and value
                    and not any(isinstance(v, (list, tuple)) for v in value)):
                # a flat list where a list of lists is annotated: the one-entry shorthand (hvae --hidden
                # 200,200); its items are checked and the model's __post_init__ nests it
                return tuple(_coerce(inner[0], v, f"{field}[{i}]") for i, v in enumerate(value))
            return tuple(_coerce(args[0], v, f"{field}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise _wrong(field, value, tp)
        return tuple(_coerce(a, v, f"{field}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _wrong(field, value, tp)
    if tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise _wrong(field, value, tp)
    if tp is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        raise _wrong(field, value, tp)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _wrong(field, value, tp)
    if typing.get_origin(tp) is typing.Literal:
        if any(value == a and type(value) is type(a) for a in typing.get_args(tp)):
            return value
        raise _wrong(field, value, tp)
    return value


def _wrong(field: str, value: Any, tp: Any) -> ValueError:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return ValueError(f"config.json field {field}={text} must be {_type_name(tp)}")


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict, naming any unknown key and the allowed ones; every value is checked
    against its field's annotation first (``_coerce``), so a bad type never reaches the constructor."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} must be a JSON object of fields; got a {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; allowed: {sorted(fields)}")
    missing = sorted(name for name, f in fields.items() if name not in data and f.init
                     and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    if missing:
        raise ValueError(f"{cls.__name__} lacks the required field(s) {missing}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _coerce(hints[k], v, k) for k, v in data.items()})


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
