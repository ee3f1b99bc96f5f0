"""vaelab: PCA -> autoencoder -> VAE -> conditional and hierarchical VAEs, trained and measured."""
__version__ = "0.1.0"

from .checkpoint import load  # noqa: E402
from .models import REGISTRY, build_model  # noqa: E402

_ESTIMATORS = ("AE", "CVAE", "PCA", "VAE")  # in vaelab.api; imported on first use (it loads scikit-learn)

__all__ = [*_ESTIMATORS, "REGISTRY", "build_model", "load", "__version__"]


def __getattr__(name: str):
    if name in _ESTIMATORS:
        from . import api

        return getattr(api, name)
    if name in ("evaluate", "plots", "report", "viz", "data", "train", "objectives"):
        import importlib

        return importlib.import_module(f".{name}", __name__)  # e.g. vaelab.evaluate.evaluate(model, test)
    raise AttributeError(f"module 'vaelab' has no attribute {name!r}")
