"""Derived files and what describes a run.

A derived file (eval.json, a PNG picture) records the weights it was computed from: ``checkpoint_id`` is
the sha256 of the committed model.safetensors (and the epoch of checkpoint.json when there is one).
:func:`display_metrics` shows eval.json only while it matches the current weights; after retraining,
resuming or overwriting, it falls back to metrics.jsonl and says why.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..fileio import finite_or_none
from .checkpoint import json_rows
from .commit import committed, digest, read_committed, read_manifest
from .files import write_json, write_png
from .names import EVAL, METRICS, WEIGHTS

SOURCE_KEY = "checkpoint"          # eval.json's entry naming the weights it describes
PNG_KEY = "vaelab:checkpoint"      # the PNG text chunk naming them


def checkpoint_id(run_dir: str | Path) -> dict[str, Any]:
    """``{"sha256", "epoch"}`` of the run's committed weights (epoch None for a run without checkpoint.json)."""
    run = Path(run_dir)
    if not committed(run, WEIGHTS).exists():
        raise FileNotFoundError(f"{str(run / WEIGHTS)!r} does not exist")
    manifest = read_manifest(run)
    return {"sha256": read_committed(run, WEIGHTS, digest)["sha256"],
            "epoch": manifest["epoch"] if manifest is not None else None}


def write_eval(run_dir: str | Path, result: dict[str, Any], source: dict[str, Any] | None = None) -> Path:
    """RUN/eval.json = ``result`` + the weights it was computed from (``source``: taken before scoring,
    else now)."""
    run = Path(run_dir)
    return write_json(run / EVAL, {**result, SOURCE_KEY: source or checkpoint_id(run)})


def write_picture(path: str | Path, picture: Any, run_dir: str | Path | None = None) -> Path:
    """A PNG (see :func:`encode_png`) that names, when ``run_dir`` is given, the weights it shows."""
    meta = {PNG_KEY: json.dumps(checkpoint_id(run_dir))} if run_dir is not None else None
    return write_png(path, picture, meta)


def picture_source(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint a vaelab PNG was drawn from (None: not recorded)."""
    from PIL import Image

    with Image.open(path) as im:
        text = getattr(im, "text", {}) or {}
    try:
        data = json.loads(text[PNG_KEY])
    except (KeyError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_eval(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"it holds a {type(data).__name__}, not an object")
    return data


def _stale_reason(run: Path, data: dict[str, Any]) -> str | None:
    """Why eval.json does not describe the current weights (None: it does)."""
    source = data.get(SOURCE_KEY)
    if not isinstance(source, dict) or not isinstance(source.get("sha256"), str):
        return f"{EVAL} does not say which weights it was computed from"
    try:
        now = checkpoint_id(run)
    except (OSError, ValueError):
        return f"{WEIGHTS} cannot be read"
    if now["sha256"] != source["sha256"]:
        was = f"epoch {source.get('epoch')}" if source.get("epoch") is not None else "other weights"
        return f"{EVAL} was computed from {was}, not the current {WEIGHTS}"
    return None


def display_metrics(run_dir: str | Path) -> dict[str, Any]:
    """The numbers that describe a run: RUN/eval.json when present, readable and computed from the current
    weights, else the last row of RUN/metrics.jsonl (else no values).

    Returns ``{"source": EVAL or METRICS, "values": {...}}`` with NaN/Inf as None; a ``"warning"`` entry says
    what was skipped (a stale or unreadable eval.json, unparsable metrics lines) so the caller can show it."""
    run = Path(run_dir)
    warnings: list[str] = []
    path = run / EVAL
    if path.is_file():
        try:
            data = _read_eval(path)
            reason = _stale_reason(run, data)
            if reason is None:
                values = {k: v for k, v in data.items() if k != SOURCE_KEY}
                return {"source": EVAL, "values": finite_or_none(values)}
            warnings.append(f"{reason}; showing {METRICS} instead (run `vaelab eval` again)")
        except (ValueError, OSError) as e:  # JSONDecodeError is a ValueError
            warnings.append(f"{EVAL} is not valid JSON ({e}); showing {METRICS} instead")
    rows, bad = json_rows((run / METRICS).read_text() if (run / METRICS).is_file() else "")
    if bad:
        warnings.append(f"skipped {len(bad)} unreadable line(s) of {METRICS}")
    out: dict[str, Any] = {"source": METRICS, "values": finite_or_none(rows[-1]) if rows else {}}
    if warnings:
        out["warning"] = "; ".join(warnings)
    return out
