"""The only place that writes pictures: PNGs from arrays and figures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def write_png(path: str | Path, picture: np.ndarray | Figure) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(picture, Figure):
        picture.savefig(path, format="png")
        return path
    from PIL import Image

    arr = picture[..., 0] if picture.ndim == 3 and picture.shape[2] == 1 else picture
    Image.fromarray(arr).save(path, format="PNG")
    return path
