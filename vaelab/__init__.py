"""vaelab: PCA -> autoencoder -> VAE -> conditional and hierarchical VAEs, trained and measured.

Layout (imports point down this list; import-linter holds it, see pyproject.toml):
    cli/ | web/ | api        surfaces
    viz/                     image grids, plot kinds, HTML reports (pure)
    eval/                    importance-sampled NLL, latent statistics, FD_vaelab
    train/                   the loop (fit), the run driver, data-parallel helpers
    rundir                   the run folder's one owner: names, atomic writes, readers
    objectives               ELBO / IWAE with beta, warm-up, free bits (an nn.Module)
    models/                  registry, capabilities, one file a model
    data/ | distributions | nn | device
    config | version
"""
from .version import __version__
from .rundir import load  # noqa: E402
from .models import REGISTRY, build_model  # noqa: E402

_SUBMODULES = ("api", "data", "eval", "models", "objectives", "rundir", "train", "viz", "config", "distributions")

__all__ = ["REGISTRY", "build_model", "load", "__version__"]


def __getattr__(name: str):
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)  # e.g. vaelab.eval.evaluate(model, test)
    if not name.startswith("_"):
        api = importlib.import_module(".api", __name__)  # loads scikit-learn: only on first use
        if name in api.__all__:
            return getattr(api, name)
    raise AttributeError(f"module 'vaelab' has no attribute {name!r}")
