"""The latent-space explorer: ``vaelab serve RUN`` (FastAPI app + one static page)."""
from .app import create_app
from .explorer import Explorer

__all__ = ["Explorer", "create_app"]
