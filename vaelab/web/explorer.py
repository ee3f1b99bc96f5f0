"""The model side of the web explorer: a loaded run, its encoded test set, the 2-D map and decoding.

Nothing here knows about HTTP. Every method takes already-validated Python values and returns plain
JSON-able values (lists, strings); images travel as base64 PNG strings (``rundir.encode_png``), the run's
numbers come from ``rundir.display_metrics`` (labelled by ``web.metrics``) and slerp is
``vaelab.viz.grids.slerp``. Model calls run under ``torch.inference_mode`` and only use the generic contract:
``encode(x, y).mean``, ``decode(z, y).mean``, ``sample(n, y, temperature)``, ``latent_dim``, ``n_classes``,
``input_shape``, ``capabilities`` and ``likelihood_name``; log p(x) comes from ``vaelab.eval``.
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
from ..distributions import Scale, get_likelihood, grid_levels, likelihood_scale
from ..eval.evaluate import data_levels, exact_log_px, model_scale
from ..eval.likelihood import log_likelihood_estimate
from ..models import posterior_means
from ..viz.grids import lerp, slerp
from ..viz.report import recorded_scale
from .metrics import metric_table

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
        self.metrics = rundir.display_metrics(self.run)                # raw numbers, as recorded
        self.levels = data_levels(test) if self.is_image else None    # values per pixel (None: continuous)
        self.eval_scale = recorded_scale(self.metrics["values"]) if self.metrics["source"] == EVAL else None
        data_scale = model_scale(self.model, test, dequantize=False) if self.model.has_likelihood else None
        self.metric_table = metric_table(self.run, self.model, data_scale)  # labelled rows with units
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
            "metric_table": self.metric_table,
            "latent_range": [float(self.means.min()) if self.n_points else -3.0,
                             float(self.means.max()) if self.n_points else 3.0],
            "map": {"points": np.round(self.points, 4).tolist(),
                    "labels": None if self.y is None else self.y.tolist(),
                    "projection": self.projection},
            "prior": self.prior_info(), "likelihood": self.likelihood_info(), "frame": self.frame(),
        }

    def prior_info(self) -> dict[str, str]:
        """Which prior the map can draw: 'standard_normal' (N(0, I): sigma circles), 'own' or 'none'."""
        caps = self.model.capabilities
        if not caps.prior:
            return {"kind": "none", "text": f"{self.name} has no prior p(z) (an autoencoder): no sigma circles"}
        if not caps.standard_prior:
            return {"kind": "own", "text": f"{self.name} has its own prior p(z), not N(0, I): no sigma circles drawn"}
        text = ("dashed circles: the N(0, I) prior at radius 1, 2, 3 (they hold 39 %, 86 %, 99 % of its mass)")
        if self.projection["kind"] == "pca":
            text += "; projected on the map's orthonormal axes the prior is N(0, I) in 2-D, centred at z = 0's image"
        return {"kind": "standard_normal", "text": text}

    def likelihood_info(self) -> dict[str, Any]:
        """What /api/likelihood can say: whether log p(x) exists and how it is computed."""
        caps = self.model.capabilities
        method = None if not caps.likelihood else (
            "exact (closed form)" if caps.exact_likelihood else "importance sampling (IWAE bound)")
        return {"available": bool(caps.likelihood), "method": method, "levels": self.levels,
                "test_scale": None if self.eval_scale is None else self.eval_scale.label}

    def frame(self) -> dict[str, float] | None:
        """How the test images sit in their frame, so a drawing can be placed alike: the background and ink
        grey levels and the median size of the ink's bounding box as a fraction of the frame (None: no images)."""
        if not self.is_image or not self.n_points:
            return None
        g = self.x.float().mean(1).numpy()                                           # (N, H, W) grey
        border = np.concatenate([g[:, 0], g[:, -1], g[:, :, 0], g[:, :, -1]], 1)     # (N, 2H + 2W)
        background = float(np.median(border))
        ink = float(np.quantile(g, 0.99 if background < 0.5 else 0.01))
        inked = np.abs(g - background) > 0.5 * abs(ink - background)                 # (N, H, W)
        rows, cols = inked.any(2), inked.any(1)                                      # (N, H), (N, W)
        height = rows.shape[1] - rows.argmax(1) - rows[:, ::-1].argmax(1)
        width = cols.shape[1] - cols.argmax(1) - cols[:, ::-1].argmax(1)
        extent = np.maximum(height / g.shape[1], width / g.shape[2])[rows.any(1)]
        return {"background": round(background, 4), "ink": round(ink, 4),
                "extent": round(float(np.median(extent)) if len(extent) else 1.0, 4)}

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

    def _pixels(self, x: list[float]) -> Tensor:
        return torch.tensor(x, dtype=torch.float32, device=self.model.device).reshape(1, *self.model.input_shape)

    def encode_pixels(self, x: list[float], y: int | None = None) -> dict[str, Any]:
        """Flat pixels -> the posterior mean z, its map point and its reconstruction (the decoded mean at z)."""
        with torch.inference_mode():
            yt = self._y(y, 1)
            z = self.model.encode(self._pixels(x), yt).mean                         # (1, d)
            rec = self.render(self.model.decode(z, yt).mean)[0]
            z = z.float().cpu().numpy()[0]                                           # (d,)
        return {"z": z.tolist(), "map": self.to_map(z[None])[0].tolist(), "reconstruction": rec}

    def log_likelihood(self, x: list[float], y: int | None = None, k: int = 100, seed: int = 0) -> dict[str, Any]:
        """log p(x) of flat pixels: exact for a model that declares it, else the importance-sampled IWAE_k
        estimate with its Monte Carlo standard error and effective sample size (same seed, same answer).

        The scale follows the data: the pixels' levels (``grid_levels``) and, when the run's eval.json says its
        density was dequantized, the same dequantization, so the number compares with the test NLL."""
        xt = self._pixels(x)
        name = self.model.likelihood_name
        if get_likelihood(name).needs_unit_interval and not bool(((xt >= 0) & (xt <= 1)).all()):
            raise ValueError(f"likelihood {name!r} is defined for pixels in [0, 1]; x has values in "
                             f"[{float(xt.min()):.4g}, {float(xt.max()):.4g}]")
        dequantize = None if self.eval_scale is None else self.eval_scale.dequantized
        scale = likelihood_scale(name, self._levels_of(xt), dequantize)
        levels = scale.levels if scale.dequantized else None
        yt = self._y(y, 1)
        if self.model.capabilities.exact_likelihood:
            lp, se = exact_log_px(self.model, xt, levels, seed)
            out = {"method": "exact (closed form)" + (", dequantized: Monte Carlo over the noise" if levels else ""),
                   "k": None, "ess": None, "elbo": None}
        else:
            est = log_likelihood_estimate(self.model, xt, yt, k, seed=seed, workers=1, levels=levels)
            lp, se = est.log_px, est.se
            out = {"method": f"importance sampling: IWAE bound with K={k} draws from q(z|x), seed {seed}",
                   "k": k, "ess": float(est.ess[0]), "elbo": float(est.elbo[0])}
        dims = self.pixel_count
        bits = -float(lp[0]) / (dims * math.log(2)) if scale.kind == "discrete" else None
        compare = self._test_nll(scale)
        return {**out, "log_px": float(lp[0]), "se": float(se[0]), "unit": "nats", "scale": scale_dict(scale),
                "bits_per_dim": bits, "test_nll": compare}

    def _levels_of(self, x: Tensor) -> int | None:
        """The data's levels when x lies on their grid k / (L - 1) (then x is a possible data point and
        its number compares with the data's), else x's own levels (``grid_levels``; None: continuous)."""
        if self.levels is not None:
            scaled = x.double() * (self.levels - 1)
            if bool((scaled >= -1e-6).all() and (scaled <= self.levels - 1 + 1e-6).all()
                    and ((scaled - scaled.round()).abs() < 1e-4).all()):
                return self.levels
        return grid_levels(x)

    def _test_nll(self, scale: Scale) -> float | None:
        """The run's test NLL (eval.json) when it is on the same scale as ``scale``; else None."""
        if self.eval_scale is None or self.eval_scale.key != scale.key:
            return None
        return self.metrics["values"].get("nll")

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


def scale_dict(scale: Scale) -> dict[str, Any]:
    """A ``distributions.Scale`` as JSON: kind, levels, dequantized and its label."""
    return {"kind": scale.kind, "levels": scale.levels, "dequantized": scale.dequantized, "label": scale.label}
