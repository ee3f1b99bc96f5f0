"""Reading a run back: config.json, the weights, the trainer state and metrics.jsonl, each validated."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..config import from_dict
from ..fileio import atomic_path, check_finite_weights
from ..models import LatentModel, model_class, plugins
from .commit import committed, read_committed, read_manifest
from .names import CONFIG, METRICS, TRAINER, WEIGHTS


def read_config(run_dir: str | Path) -> dict[str, Any]:
    run = Path(run_dir)
    path = run / CONFIG
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {str(run)!r} does not exist")
    path = committed(run, CONFIG)
    if not path.exists() or not committed(run, WEIGHTS).exists():
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
    try:
        model = cls(from_dict(cls.Config, cfg["model_config"]))
    except (TypeError, ValueError) as e:
        where = str(committed(Path(run_dir), CONFIG))
        raise ValueError(str(e) if where in str(e) else f"{where!r}: {e}") from None
    path = Path(run_dir) / WEIGHTS
    try:
        state = read_committed(Path(run_dir), WEIGHTS, lambda p: load_file(str(p)))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{str(path)!r} is corrupted or not a safetensors file ({e})") from None
    check_finite_weights(state, path)  # NaN/Inf weights are refused, naming the file and the tensor
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
    if not committed(Path(run_dir), TRAINER).exists():
        raise FileNotFoundError(f"cannot resume: {str(path)!r} does not exist (train without --resume first)")
    try:
        state = read_committed(Path(run_dir), TRAINER,
                                lambda p: torch.load(p, map_location="cpu", weights_only=True))
    except Exception as e:  # noqa: BLE001  (any unpickling failure means a bad file)
        raise ValueError(f"{str(path)!r} is corrupted or not a vaelab trainer state ({e})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{str(path)!r} is not a vaelab trainer state (it holds a {type(state).__name__})")
    return state


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch rows of metrics.jsonl (empty when there are none); with a checkpoint.json only the
    rows of the committed epochs (a row a crashed process wrote beyond them is not part of the run)."""
    run = Path(run_dir)
    try:
        text = read_committed(run, METRICS, lambda p: p.read_text())
    except FileNotFoundError:
        return []
    rows, bad = json_rows(text)
    lines = text.splitlines()
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i in bad:
        try:
            json.loads(lines[i])
        except ValueError as e:
            if i == last:  # a torn LAST line (a crash mid-append in an older run) is dropped
                continue
            raise ValueError(f"{str(run / METRICS)!r} line {i + 1} is not JSON ({e}); "
                             "the metrics file is corrupted") from None
        raise ValueError(f"{str(run / METRICS)!r} line {i + 1} is not a JSON object; the metrics file is corrupted")
    for n, row in enumerate(rows, 1):
        _check_row(row, f"{str(run / METRICS)!r} row {n}")
    manifest = read_manifest(run)
    if manifest is not None:
        rows = [r for r in rows if r["epoch"] <= manifest["epoch"]]
    return rows


def _check_row(row: dict[str, Any], where: str) -> None:
    """A metrics row: an integer epoch >= 1 and numbers (or null) for every value."""
    epoch = row.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        raise ValueError(f"{where} has epoch={epoch!r}; expected an integer >= 1 (the metrics file is corrupted)")
    for key, value in row.items():
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise ValueError(f"{where} has {key}={value!r}; expected a number or null (the metrics file is corrupted)")


def json_rows(text: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The JSON objects of a JSON-lines text, and the (0-based) indices of the non-blank lines that are not
    one (unparsable, or not an object)."""
    rows, bad = [], []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:  # JSONDecodeError is a ValueError
            row = None
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad.append(i)
    return rows, bad
