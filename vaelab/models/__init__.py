"""Every model registers itself here on import (plugins: vaelab.models.plugins)."""
from .base import (DATA_FIELDS, REGISTRY, Capabilities, LatentModel, build_model, check_shape, config_fields, model_class,
                   posterior_means, register)
from . import ae, hvae, pca, vae  # noqa: F401  (registration side effect)
from . import iaf, vamp  # noqa: F401  (registration side effect: richer posteriors / priors)
from . import hvae_vamp  # noqa: F401  (registration side effect: hvae with a VampPrior on top)
from . import tdvae  # noqa: F401  (registration side effect: conv top-down hierarchy, NVAE/VDVAE style)
from . import vqvae  # noqa: F401  (registration side effect: discrete codes + PixelCNN prior)
from . import vaegan  # noqa: F401  (registration side effect: a VAE trained against a discriminator)
from .plugins import load_plugins

__all__ = ["DATA_FIELDS", "REGISTRY", "Capabilities", "LatentModel", "build_model", "check_shape", "config_fields",
           "load_plugins", "model_class", "posterior_means", "register"]
