"""Every model registers itself here on import."""
from .base import REGISTRY, LatentModel, build_model, config_fields, model_class, register
from . import ae, hvae, pca, vae  # noqa: F401  (registration side effect)

__all__ = ["REGISTRY", "LatentModel", "build_model", "config_fields", "model_class", "register"]
