"""FD_vaelab: a Fréchet distance in the feature space of a small classifier vaelab trains itself.

This is NOT the Inception FID. Inception features are meaningless on 8x8 digits or 28x28 MNIST and
need a download; instead vaelab trains a small MLP classifier (D -> 256 -> 128 -> classes, ReLU) once
per dataset on its TRAIN split and measures the Fréchet distance between Gaussians fitted to the
128-d penultimate-layer features of real test images and of generated samples:

    FD = |mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))

Numbers are comparable only between models scored with the same feature net (same dataset, same
cache entry; eval.json records it as ``fd_features``), never with published FID values.

The trained net is cached as ``<root>/features/<dataset>-<hash>.safetensors`` plus a ``.json`` with its
settings, where root is ``vaelab.data.find_cache_dir(cache_dir)``: ``cache_dir``, else
``$XDG_CACHE_HOME/vaelab``, else ``~/.cache/vaelab`` (never the data directory). The hash
covers the dataset info, a digest of the training data and the net's settings, so changed data or
settings train a new net. Weights are read with safetensors (nothing is unpickled).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from dataclasses import asdict, dataclass
from typing import Any
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .. import rundir
from ..data import Dataset, find_cache_dir
from ..models import LatentModel
from ..samplers import Sampler
from .likelihood import batch_slices

TRAIN_COUNT = 0  # how many feature nets this process has trained (the cache tests read it)


@dataclass(frozen=True)
class FeatureNetConfig:
    hidden: tuple[int, ...] = (256, 128)  # the last size is the feature dimension
    steps: int = 1000                     # Adam steps, as whole epochs: 2 <= epochs <= max_epochs
    max_epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    version: int = 1                      # bump to invalidate every cached net


class FeatureNet(nn.Module):
    """x (B, *shape) -> logits (B, classes); ``features`` gives the penultimate layer (B, hidden[-1])."""

    def __init__(self, dim: int, n_classes: int, hidden: tuple[int, ...] = (256, 128)) -> None:
        super().__init__()
        sizes = [dim, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(sizes[-1], n_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.body(x))


def _key(train: Dataset, cfg: FeatureNetConfig) -> tuple[str, dict]:
    info = train.info
    digest = hashlib.sha256(train.x.detach().cpu().contiguous().numpy().tobytes())
    digest.update(train.y.detach().cpu().numpy().astype(np.int64).tobytes())
    settings = {"dataset": info.name, "shape": list(info.shape), "n_classes": info.n_classes,
                "binarize": info.binarize, "size": info.size, "n_train": len(train),
                "data_sha256": digest.hexdigest(), "net": {**asdict(cfg), "hidden": list(cfg.hidden)}}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(info.name).name or "data")[:40]
    return f"{stem}-{h}", settings


def _train(net: FeatureNet, train: Dataset, cfg: FeatureNetConfig) -> float:
    """Adam on cross-entropy; returns the final training accuracy."""
    global TRAIN_COUNT
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    x, y = train.x, train.y
    per_epoch = math.ceil(len(x) / cfg.batch_size)
    epochs = min(cfg.max_epochs, max(2, math.ceil(cfg.steps / per_epoch)))
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            xb = x[idx]
            if train.info.binarize == "dynamic":
                xb = torch.bernoulli(xb, generator=gen)
            loss = nn.functional.cross_entropy(net(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    TRAIN_COUNT += 1
    return accuracy(net, train)


@torch.inference_mode()
def accuracy(net: FeatureNet, ds: Dataset, batch_size: int = 2000) -> float:
    hits = sum(int((net(ds.x[i:i + batch_size]).argmax(1) == ds.y[i:i + batch_size]).sum())
               for i in range(0, len(ds), batch_size))
    return hits / len(ds)


def feature_net(train: Dataset, cache_dir: str | Path | None = None,
                cfg: FeatureNetConfig = FeatureNetConfig()) -> tuple[FeatureNet, str]:
    """The cached feature classifier for ``train``'s dataset (trained on first use); and its cache name."""
    if train.y is None or not train.info.n_classes:
        raise ValueError(f"FD_vaelab needs labelled data to train its feature classifier; "
                         f"data {train.info.name!r} has no labels")
    name, settings = _key(train, cfg)
    folder = find_cache_dir(cache_dir) / "features"
    weights, meta = folder / f"{name}.safetensors", folder / f"{name}.json"
    net = FeatureNet(train.info.dim, train.info.n_classes, cfg.hidden)
    if weights.exists() and meta.exists():
        from safetensors.torch import load_file

        try:
            net.load_state_dict(load_file(str(weights)), strict=True)
            return net.eval(), name
        except Exception:  # noqa: BLE001  (a corrupted cache entry is retrained and overwritten)
            pass
    torch.manual_seed(cfg.seed)
    net = FeatureNet(train.info.dim, train.info.n_classes, cfg.hidden)
    train_acc = _train(net, train, cfg)
    _save(net, weights, meta, {**settings, "train_accuracy": train_acc,
                               "what": "FD_vaelab feature classifier (not Inception)"})
    return net, name


def _save(net: FeatureNet, weights: Path, meta: Path, settings: dict) -> None:
    from safetensors.torch import save_file

    with rundir.atomic_path(weights) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp))
    rundir.write_json(meta, settings)


@torch.inference_mode()
def features(net: FeatureNet, x: Tensor, batch_size: int = 2000) -> np.ndarray:
    """Penultimate-layer features of ``x`` (N, *shape) on the CPU: (N, hidden[-1]) float64."""
    x = x.detach().cpu().float()
    return torch.cat([net.features(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]).double().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (N, F) and b (M, F)."""
    from scipy import linalg

    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError(f"frechet_distance needs two (N>=2, F) arrays with the same F; got {a.shape}, {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # dead ReLU features make the product singular: handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s_a @ s_b)
        if not np.isfinite(covmean).all():  # nudge both diagonals (as pytorch-fid does)
            off = np.eye(len(s_a)) * 1e-6
            covmean = linalg.sqrtm((s_a + off) @ (s_b + off))
    covmean = np.real(covmean)
    fd = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))
    return max(fd, 0.0)


@torch.inference_mode()
def generate(model: LatentModel, n: int, seed: int = 0, binary: bool = False, batch_size: int = 1000,
             sampler: Sampler | None = None) -> Tensor:
    """n samples (n, *shape) on the CPU (classes 0, 1, ... in turn for a conditional model): the decoded
    means of ``model.sample`` (its prior; N(0, I) for a model without one), or of codes from a fitted
    ``sampler`` (vaelab.samplers); when ``binary`` (statically binarized data), pixels drawn with those means
    as probabilities. The noise comes from one generator seeded with ``seed`` (not torch's global RNG)."""
    gen = torch.Generator().manual_seed(seed % (2 ** 63))
    out = []
    for sl in batch_slices(n, batch_size):
        y = torch.arange(sl.start, sl.stop, device=model.device) % model.n_classes if model.n_classes else None
        if sampler is not None:
            x = sampler.sample(model, sl.stop - sl.start, 1.0, gen).float().cpu()
        else:
            x = model.sample(sl.stop - sl.start, y, generator=gen).float().cpu()
        out.append(torch.bernoulli(x.clamp(0, 1), generator=gen) if binary else x)
    return torch.cat(out)


def sample_source(model: LatentModel, sampler: Sampler | None = None) -> str:
    """What generated samples come from: 'prior', 'N(0, I)' (a model without a prior, e.g. the ae), or the
    fitted sampler's name (gmm, two-stage)."""
    if sampler is not None:
        return sampler.name
    return "prior" if model.has_prior else "N(0, I)"


@dataclass(frozen=True)
class SampleSet:
    """Generated samples beside the test images they are compared with, in FD_vaelab's feature space."""
    net: FeatureNet
    name: str            # the feature net's cache name
    real: Dataset        # the first min(len(test), max_samples) test images
    means: Tensor        # decoded means of as many samples (n, *shape): what sharpness looks at
    fake: Tensor         # what FD and precision/recall compare: the means, or bits drawn with them (static)
    f_real: np.ndarray   # features of real.x (n, F)
    f_fake: np.ndarray   # features of fake (n, F)
    source: str          # where the samples' codes came from (``sample_source``)


def sample_set(model: LatentModel, test: Dataset, train: Dataset, cache_dir: str | Path | None = None,
               max_samples: int = 10_000, seed: int = 0, sampler: Sampler | None = None) -> SampleSet:
    """Generate once, featurize once: the samples FD_vaelab, sharpness and precision/recall all score."""
    net, name = feature_net(train, cache_dir)
    real = test.subset(torch.arange(min(len(test), max_samples)))
    binary = test.info.binarize == "static"
    fake = generate(model, len(real), seed, binary=binary, sampler=sampler)
    means = generate(model, len(real), seed, sampler=sampler) if binary else fake
    return SampleSet(net, name, real, means, fake, features(net, real.x), features(net, fake),
                     sample_source(model, sampler))


def fd_scores(s: SampleSet) -> dict[str, Any]:
    """FD_vaelab of a sample set, the feature net's name and test accuracy, and the samples' source."""
    return {"frechet_distance": frechet_distance(s.f_real, s.f_fake), "fd_features": f"FD_vaelab:{s.name}",
            "fd_sampler": s.source, "fd_classifier_accuracy": accuracy(s.net, s.real) if s.real.y is not None else None}


def fd_vaelab(model: LatentModel, test: Dataset, train: Dataset, cache_dir: str | Path | None = None,
              max_samples: int = 10_000, seed: int = 0, sampler: Sampler | None = None) -> dict[str, Any]:
    """FD_vaelab between test images and as many samples (the prior's, or ``sampler``'s; see
    vaelab.features), plus its classifier; ``fd_sampler`` says where the samples came from."""
    return fd_scores(sample_set(model, test, train, cache_dir, max_samples, seed, sampler))
