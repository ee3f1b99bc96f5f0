"""Which torch device to use: the one rule every layer asks."""
from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """cuda > mps > cpu when ``name`` is 'auto'."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
