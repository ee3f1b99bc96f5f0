"""A run folder: ``config.json`` + ``model.safetensors`` (+ ``trainer.pt`` for --resume, ``metrics.jsonl``,
``eval.json``), and the one place that writes vaelab's files.

Files are written to a temporary name and renamed (:func:`atomic_write`, :func:`atomic_path`), so a crash
never leaves a half-written checkpoint and a failed run never overwrites the last good one. JSON goes
through :func:`write_json` (strict: NaN/Inf become null), pictures through :func:`encode_png` /
:func:`write_png`, and :func:`display_metrics` decides which numbers describe a run. Nothing is unpickled:
weights come from safetensors and the trainer state is read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import from_dict, to_dict
from .fileio import atomic_path, atomic_write, finite_or_none
from .models import LatentModel, model_class, plugins

CONFIG, WEIGHTS, TRAINER, METRICS = "config.json", "model.safetensors", "trainer.pt", "metrics.jsonl"
EVAL, REPORT = "eval.json", "report.html"   # written by vaelab eval / vaelab report (and demo)


# -- writing files ------------------------------------------------------------------------------------
def write_json(path: str | Path, data: Any) -> Path:
    """Strict JSON (NaN/Inf -> null), indented, written atomically."""
    return atomic_write(path, json.dumps(finite_or_none(data), indent=2, allow_nan=False) + "\n")


def encode_png(picture: Any) -> bytes:
    """PNG bytes of a uint8 array (H, W), (H, W, 1), (H, W, 3) or a matplotlib Figure (encoded in memory)."""
    buf = io.BytesIO()
    if hasattr(picture, "savefig"):  # a matplotlib Figure (not imported here: rundir stays light)
        picture.savefig(buf, format="png")
        return buf.getvalue()
    import numpy as np
    from PIL import Image

    arr = np.asarray(picture)
    arr = arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: str | Path, picture: Any) -> Path:
    """Write ``picture`` (see :func:`encode_png`) as a PNG file, atomically; creates the folder."""
    return atomic_write(path, encode_png(picture))


# -- reading what a run reports ------------------------------------------------------------------------
def display_metrics(run_dir: str | Path) -> dict[str, Any]:
    """The numbers that describe a run: RUN/eval.json when present and readable, else the last row of
    RUN/metrics.jsonl (else no values).

    Returns ``{"source": EVAL or METRICS, "values": {...}}`` with NaN/Inf as None; a ``"warning"`` entry says
    what was skipped (an unreadable eval.json, unparsable metrics lines) so the caller can show it."""
    run = Path(run_dir)
    warnings: list[str] = []
    path = run / EVAL
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError(f"it holds a {type(data).__name__}, not an object")
            return {"source": EVAL, "values": finite_or_none(data)}
        except (ValueError, OSError) as e:  # JSONDecodeError is a ValueError
            warnings.append(f"{EVAL} is not valid JSON ({e}); showing {METRICS} instead")
    rows, bad = [], 0
    lines = (run / METRICS).read_text().splitlines() if (run / METRICS).is_file() else []
    for line in filter(str.strip, lines):
        try:
            row = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    if bad:
        warnings.append(f"skipped {bad} unreadable line(s) of {METRICS}")
    out: dict[str, Any] = {"source": METRICS, "values": finite_or_none(rows[-1]) if rows else {}}
    if warnings:
        out["warning"] = "; ".join(warnings)
    return out


# -- the checkpoint -------------------------------------------------------------------------------------


def _version() -> str:
    from .version import __version__

    return __version__


def save_model(run_dir: str | Path, model: LatentModel, **extra: Any) -> Path:
    """Write config.json (model name + constructor args + ``extra``) and the weights, atomically."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(run / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    write_json(run / CONFIG, {"vaelab_version": _version(), "model": model.name,
                             "model_config": to_dict(model.config), **extra})
    return run


def read_config(run_dir: str | Path) -> dict[str, Any]:
    run = Path(run_dir)
    path = run / CONFIG
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {str(run)!r} does not exist")
    if not path.exists() or not (run / WEIGHTS).exists():
        raise FileNotFoundError(f"{str(run)!r} holds no checkpoint: expected {CONFIG} and {WEIGHTS} in it")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(path)!r} is not valid JSON ({e}); the checkpoint is corrupted") from None
    if not isinstance(cfg, dict) or "model" not in cfg or "model_config" not in cfg:
        raise ValueError(f"{str(path)!r} lacks the 'model' and 'model_config' entries of a vaelab checkpoint")
    plugins.load_plugins(cfg.get("plugins") or ())  # a model from outside vaelab: import its module again
    return cfg


def load(run_dir: str | Path, device: str | torch.device = "cpu") -> LatentModel:
    """Rebuild the model saved in ``run_dir`` (in eval mode)."""
    cfg = read_config(run_dir)
    cls = model_class(cfg["model"])
    model = cls(from_dict(cls.Config, cfg["model_config"]))
    path = Path(run_dir) / WEIGHTS
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{str(path)!r} is corrupted or not a safetensors file ({e})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ValueError(f"{str(path)!r} does not match its config.json ({first})") from None
    return model.to(device).eval()


def save_trainer(run_dir: str | Path, state: dict[str, Any]) -> None:
    with atomic_path(Path(run_dir) / TRAINER) as tmp:
        torch.save(state, tmp)


def load_trainer(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / TRAINER
    if not path.exists():
        raise FileNotFoundError(f"cannot resume: {str(path)!r} does not exist (train without --resume first)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (any unpickling failure means a bad file)
        raise ValueError(f"{str(path)!r} is corrupted or not a vaelab trainer state ({e})") from None


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch rows of metrics.jsonl (empty when there are none)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def save_best(run_dir: str | Path, model: LatentModel, name: str = "model_best.safetensors") -> Path:
    """The best epoch's weights beside the last ones (early stopping), written atomically; loads like
    model.safetensors (same config.json)."""
    path = Path(run_dir) / name
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    return path
