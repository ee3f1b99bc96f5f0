"""vaelab: PCA -> autoencoder -> VAE -> conditional and hierarchical VAEs, trained and measured.

Layout (imports point down this list; import-linter holds it, see pyproject.toml):
    cli/ | web/ | api/       surfaces
    viz/                     image grids, plot kinds, HTML reports (pure)
    eval/                    importance-sampled NLL, latent statistics, FD_vaelab
    train/                   the loop (fit), the run driver, data-parallel helpers
    rundir/                  the run folder's one owner: names, atomic writes, readers
    objectives               ELBO / IWAE with beta, warm-up, free bits (an nn.Module)
    models/                  registry, capabilities, one file a model
    data/ | distributions | nn | device
    config | version

``import vaelab`` loads nothing heavy: torch comes with the first use of ``vaelab.load``, ``vaelab.REGISTRY``
or a submodule, scikit-learn with the first estimator (``vaelab.VAE``), so ``vaelab --help`` answers at once.
"""
from .version import __version__

_SUBMODULES = ("api", "data", "eval", "models", "objectives", "rundir", "train", "viz", "config", "distributions")
_LAZY = {"load": "rundir", "REGISTRY": "models", "build_model": "models"}  # name -> submodule defining it
_API = ("AE", "CVAE", "Estimator", "HVAE", "PCA", "VAE", "estimator", "load_estimator")

__all__ = ["REGISTRY", "build_model", "load", "__version__", *_API]


def __getattr__(name: str):
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)  # e.g. vaelab.eval.evaluate(model, test)
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _API:
        return getattr(importlib.import_module(".api", __name__), name)  # loads scikit-learn: first use only
    raise AttributeError(f"module 'vaelab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_SUBMODULES})
