"""vaelab: PCA -> autoencoder -> VAE -> conditional and hierarchical VAEs, trained and measured."""
__version__ = "0.1.0"

from .api import AE, CVAE, PCA, VAE  # noqa: E402
from .checkpoint import load  # noqa: E402
from .models import REGISTRY, build_model  # noqa: E402

__all__ = ["AE", "CVAE", "PCA", "VAE", "REGISTRY", "build_model", "load", "__version__"]
