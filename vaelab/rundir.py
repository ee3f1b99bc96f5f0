"""A run folder: ``config.json`` + ``model.safetensors`` (+ ``trainer.pt`` for --resume, ``metrics.jsonl``).

Files are written to a temporary name and renamed, so a crash never leaves a half-written checkpoint
and a failed run never overwrites the last good one. Nothing is unpickled: weights come from
safetensors and the trainer state is read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import from_dict, save_json, to_dict
from .models import LatentModel, model_class

CONFIG, WEIGHTS, TRAINER, METRICS = "config.json", "model.safetensors", "trainer.pt", "metrics.jsonl"


def _version() -> str:
    from .version import __version__

    return __version__


def save_model(run_dir: str | Path, model: LatentModel, **extra: Any) -> Path:
    """Write config.json (model name + constructor args + ``extra``) and the weights, atomically."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = run / (WEIGHTS + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, run / WEIGHTS)
    save_json(run / CONFIG, {"vaelab_version": _version(), "model": model.name,
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
    run = Path(run_dir)
    tmp = run / (TRAINER + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, run / TRAINER)


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
