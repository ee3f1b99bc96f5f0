"""Which torch device to use: the one rule every layer asks."""
from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """cuda > mps > cpu when ``name`` is 'auto'."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError as e:
            raise ValueError(f"device={name!r} is not a torch device ({e}); allowed: auto, cpu, cuda, mps") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={name!r}: CUDA is not available on this machine; allowed here: auto, cpu")
        if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"device={name!r}: MPS is not available on this machine; allowed here: auto, cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
