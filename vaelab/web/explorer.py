"""The model side of the web explorer: a loaded run, its encoded test set, the 2-D map and decoding.

Nothing here knows about HTTP. Every method takes already-validated Python values and returns plain
JSON-able values (lists, strings); images travel as base64 PNG strings (``rundir.encode_png``), the run's
numbers come from ``rundir.display_metrics`` and slerp is ``vaelab.viz.grids.slerp``. Model calls run under
``torch.inference_mode`` and only use the generic contract: ``encode(x, y).mean``, ``decode(z, y).mean``,
``sample(n, y, temperature)``, ``latent_dim``, ``n_classes``, ``input_shape``.
"""
from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import rundir
from ..data import for_evaluation, load_recorded
from ..models import posterior_means
from ..viz.grids import lerp, slerp

EVAL = rundir.EVAL


class Explorer:
    """A trained run ready to be explored: the model, the first ``max_points`` test images, their means."""

    def __init__(self, run_dir: str | Path, data_dir: str | Path | None = None, max_points: int = 5000,
                 device: str | torch.device = "cpu", data: str | Path | None = None) -> None:
        if max_points < 2:
            raise ValueError(f"max_points={max_points} must be >= 2")
        self.run = Path(run_dir)
        self.config = rundir.read_config(self.run)
        self.model = rundir.load(self.run, device)
        self.name = self.config["model"]
        data_info = self.config.get("data")
        if not isinstance(data_info, dict):
            raise ValueError(f"run {str(self.run)!r} has no 'data' entry in config.json: it cannot be explored "
                             "(save it with vaelab train or rundir.save_model(..., data=info_dict(info)))")
        # config.json is untrusted: only paths inside the run folder / data roots, or the user's --data
        test = for_evaluation(load_recorded(data_info, "test", self.run, data_dir, data))
        n = min(len(test), max_points)
        self.x = test.x[:n]                                            # (N, *shape) float32, on cpu
        self.y = None if test.y is None else test.y[:n]                # (N,) int64
        self.class_names = list(test.info.class_names) or [str(i) for i in range(self.model.n_classes)]
        self.is_image = bool(test.info.is_image) and len(self.model.input_shape) == 3 \
            and self.model.input_shape[0] in (1, 3)
        self.metrics = rundir.display_metrics(self.run)
        self.means = self._encode_all()                                # (N, d) float32 numpy
        self.projection = self._fit_projection(self.means)
        self.points = self.to_map(self.means)                          # (N, 2)

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def n_classes(self) -> int:
        return self.model.n_classes

    @property
    def n_points(self) -> int:
        return len(self.x)

    @property
    def pixel_count(self) -> int:
        return math.prod(self.model.input_shape)

    # -- the map ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def _encode_all(self, batch: int = 1000) -> np.ndarray:
        return posterior_means(self.model, self.x, self.y, batch).float().numpy()  # (N, d)

    def _fit_projection(self, means: np.ndarray) -> dict[str, Any]:
        """identity for d <= 2; the first two principal components of the means for d > 2."""
        d = means.shape[1]
        if d <= 2:
            return {"kind": "identity", "mean": [0.0] * d, "components": np.eye(2, d).tolist(),
                    "explained_variance_ratio": None}
        from sklearn.decomposition import PCA

        pca = PCA(2, random_state=0).fit(means.astype(np.float64))
        return {"kind": "pca", "mean": pca.mean_.tolist(), "components": pca.components_.tolist(),
                "explained_variance_ratio": pca.explained_variance_ratio_.tolist()}

    def to_map(self, z: np.ndarray) -> np.ndarray:
        """Latent codes (N, d) -> map coordinates (N, 2); for d == 1 the second coordinate is 0."""
        mean = np.asarray(self.projection["mean"])                     # (d,)
        comps = np.asarray(self.projection["components"])              # (2, d)
        return (np.asarray(z, dtype=np.float64) - mean) @ comps.T

    def from_map(self, uv: np.ndarray) -> np.ndarray:
        """Map coordinates (N, 2) -> latent codes (N, d): the PCA inverse transform for d > 2."""
        mean = np.asarray(self.projection["mean"])
        comps = np.asarray(self.projection["components"])
        return np.asarray(uv, dtype=np.float64) @ comps + mean

    def info(self) -> dict[str, Any]:
        return {
            "model": self.name, "run": self.run.name, "config": rundir.finite_or_none(self.config),
            "latent_dim": self.latent_dim, "n_classes": self.n_classes, "conditional": bool(self.n_classes),
            "class_names": self.class_names, "input_shape": list(self.model.input_shape),
            "is_image": self.is_image, "n_points": self.n_points, "metrics": self.metrics,
            "latent_range": [float(self.means.min()) if self.n_points else -3.0,
                             float(self.means.max()) if self.n_points else 3.0],
            "map": {"points": np.round(self.points, 4).tolist(),
                    "labels": None if self.y is None else self.y.tolist(),
                    "projection": self.projection},
        }

    # -- model calls ---------------------------------------------------------------------------------
    def _y(self, y: int | None, n: int) -> Tensor | None:
        if not self.n_classes:
            return None
        return torch.full((n,), int(y), dtype=torch.long, device=self.model.device)

    def render(self, x: Tensor) -> list[dict[str, Any]]:
        """Decoded means (n, *shape) -> one {"image": base64 PNG} (or {"values": [...]}) per example."""
        x = x.detach().float().cpu()
        if not self.is_image:
            return [{"values": rundir.finite_or_none([round(float(v), 5) for v in row])}
                    for row in x.reshape(len(x), -1)]
        arr = (x.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # (n, H, W, C)
        return [{"image": base64.b64encode(rundir.encode_png(a)).decode("ascii")} for a in arr]

    def decode(self, z: list[list[float]], y: int | None = None) -> list[dict[str, Any]]:
        with torch.inference_mode():
            zt = torch.tensor(z, dtype=torch.float32, device=self.model.device)    # (n, d)
            return self.render(self.model.decode(zt, self._y(y, len(zt))).mean)

    def encode_index(self, index: int) -> dict[str, Any]:
        z = self.means[index]
        label = None if self.y is None else int(self.y[index])
        return {"index": index, "label": label, "z": z.tolist(), "map": self.to_map(z[None])[0].tolist(),
                "original": self.render(self.x[index:index + 1])[0]}

    def encode_pixels(self, x: list[float], y: int | None = None) -> dict[str, Any]:
        with torch.inference_mode():
            xt = torch.tensor(x, dtype=torch.float32, device=self.model.device).reshape(1, *self.model.input_shape)
            z = self.model.encode(xt, self._y(y, 1)).mean.float().cpu().numpy()[0]   # (d,)
        return {"z": z.tolist(), "map": self.to_map(z[None])[0].tolist()}

    def sample(self, n: int, temperature: float, y: int | None = None) -> list[dict[str, Any]]:
        with torch.inference_mode():
            labels = None if (y is None or not self.n_classes) else int(y)
            return self.render(self.model.sample(n, labels, temperature))

    def interpolate(self, i: int, j: int, steps: int, method: str,
                    y: int | None = None) -> tuple[list[dict[str, Any]], np.ndarray]:
        """Decode ``steps`` codes from the mean of test image i to that of j; also their map points.

        A conditional model decodes every step with class ``y`` when given, else with the label of
        image i for the first half of the path and that of j for the second."""
        a, b = torch.from_numpy(self.means[i]).double(), torch.from_numpy(self.means[j]).double()
        t = np.linspace(0.0, 1.0, steps)[:, None]                                   # (steps, 1)
        z = (slerp if method == "slerp" else lerp)(a, b, steps).numpy()            # (steps, d)
        with torch.inference_mode():
            zt = torch.tensor(z, dtype=torch.float32, device=self.model.device)
            ys = None
            if self.n_classes:
                if y is not None:
                    ys = self._y(y, steps)
                else:
                    yi, yj = int(self.y[i]), int(self.y[j])
                    ys = torch.tensor([yi if tt < 0.5 else yj for tt in t[:, 0]], device=self.model.device)
            images = self.render(self.model.decode(zt, ys).mean)
        return images, self.to_map(z)
