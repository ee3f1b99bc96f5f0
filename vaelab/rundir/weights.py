"""Writing a model: config.json (model name + constructor arguments) and model.safetensors."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from ..config import to_dict
from ..fileio import atomic_path
from ..models import LatentModel
from .files import write_json
from .names import CONFIG, MANIFEST, WEIGHTS


def _version() -> str:
    from ..version import __version__

    return __version__


def config_of(model: LatentModel, extra: dict[str, Any]) -> dict[str, Any]:
    """config.json's content: vaelab version, model name, constructor arguments, then ``extra``."""
    return {"vaelab_version": _version(), "model": model.name, "model_config": to_dict(model.config), **extra}


def weights_writer(model: LatentModel) -> Callable[[Path], None]:
    """Writes the model's weights (a CPU copy taken now) as safetensors to the path it is given."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return lambda p: save_file(state, str(p))


def save_model(run_dir: str | Path, model: LatentModel, **extra: Any) -> Path:
    """Write config.json (model name + constructor args + ``extra``) and the weights, atomically."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    (run / MANIFEST).unlink(missing_ok=True)  # a plain save: no epoch commit describes these files any more
    with atomic_path(run / WEIGHTS) as tmp:
        weights_writer(model)(tmp)
    write_json(run / CONFIG, config_of(model, extra))
    return run


def save_best(run_dir: str | Path, model: LatentModel, name: str = "model_best.safetensors") -> Path:
    """The best epoch's weights beside the last ones (early stopping), written atomically; loads like
    model.safetensors (same config.json)."""
    path = Path(run_dir) / name
    with atomic_path(path) as tmp:
        weights_writer(model)(tmp)
    return path
