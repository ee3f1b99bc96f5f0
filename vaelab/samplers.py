"""Post-hoc samplers: a density q(z) fitted to a trained model's codes of the training set, decoded.

A model is not a sampler (pythae's split): ``prior`` draws from the model's own p(z) (``model.sample``);
``gmm`` fits a Gaussian mixture to the posterior means E[z|x] (scikit-learn's ``GaussianMixture``; Ghosh et
al. 2020, "From variational to deterministic autoencoders"); ``two-stage`` trains a second, small VAE on
them (Dai & Wipf 2019: its learned-variance Gaussian decoder can match the aggregate posterior where
N(0, I) does not) and draws z from its prior through its decoder. Both work for any unconditional model
with an encoder, the autoencoder included: that is how an autoencoder is sampled.

Stored in the run folder, never pickled: ``RUN/samplers/<name>/sampler.json`` (settings, the checkpoint of
the weights it was fitted to, sizes) and ``sampler.safetensors`` (the arrays: mixture weights, means,
covariances; the code standardisation); the two-stage VAE is itself a run folder there (config.json +
model.safetensors). A sampler fitted to other weights (the run was retrained) is refitted, not used.
Fitting is deterministic given ``seed``.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from . import rundir
from .config import from_dict, to_dict
from .data import DataInfo, Dataset, batches, for_evaluation
from .models import LatentModel, build_model
from .train import TrainConfig, fit

SAMPLERS = ("prior", "gmm", "two-stage")
FOLDER, META, ARRAYS = "samplers", "sampler.json", "sampler.safetensors"


@dataclass(frozen=True)
class GMMConfig:
    components: int = 10             # mixture components (10 as in Ghosh et al. 2020 on MNIST)
    covariance: str = "full"         # full | diag covariance per component
    seed: int = 0                    # seeds scikit-learn's k-means initialisation

    def __post_init__(self) -> None:
        if self.components < 1:
            raise ValueError(f"components={self.components} must be >= 1")
        if self.covariance not in ("full", "diag"):
            raise ValueError(f"covariance={self.covariance!r} is not known; allowed: ['diag', 'full']")


@dataclass(frozen=True)
class TwoStageConfig:
    latent_dim: int = 0              # size of the second VAE's u; 0: the model's latent_dim (Dai & Wipf)
    hidden: tuple[int, ...] = (256, 256)  # second VAE's MLP sizes
    epochs: int = 40                 # passes over the codes
    batch_size: int = 128            # codes per Adam step
    lr: float = 1e-3                 # Adam learning rate
    seed: int = 0                    # seeds the second VAE's weights and batches

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.latent_dim < 0:
            raise ValueError(f"latent_dim={self.latent_dim} must be >= 0 (0: the model's latent_dim)")


class Sampler:
    """A fitted q(z): ``fit(codes)``, ``sample_codes(n)``, stored as arrays + JSON settings."""

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()
        self.n_codes = 0                                   # codes it was fitted to
        self.fit_seconds: float | None = None              # time the last fit took (None: loaded)

    def fit(self, codes: Tensor) -> "Sampler":
        raise NotImplementedError

    def sample_codes(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """n codes (n, d) on the CPU; ``temperature`` scales the spread about each component's mean."""
        raise NotImplementedError

    def arrays(self) -> dict[str, Tensor]:
        raise NotImplementedError

    def load_arrays(self, arrays: dict[str, Tensor], folder: Path) -> None:
        raise NotImplementedError

    def save_extra(self, folder: Path) -> None:
        """Files beyond the arrays (the two-stage VAE's run folder)."""

    @torch.no_grad()
    def sample(self, model: LatentModel, n: int, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Decoded means of n codes: (n, *model.input_shape)."""
        z = self.sample_codes(n, temperature, generator).float().to(model.device)
        return model.decode(z).mean


def _randn(shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
    return torch.randn(shape, dtype=torch.float64, generator=generator)


class GMMSampler(Sampler):
    name, Config = "gmm", GMMConfig

    def fit(self, codes: Tensor) -> "GMMSampler":
        from sklearn.mixture import GaussianMixture

        c = self.config
        gm = GaussianMixture(c.components, covariance_type=c.covariance, random_state=c.seed).fit(codes.double().numpy())
        cov = torch.as_tensor(gm.covariances_)
        cov = torch.diag_embed(cov) if c.covariance == "diag" else cov          # (C, d, d)
        self.weights, self.means = torch.as_tensor(gm.weights_), torch.as_tensor(gm.means_)
        self.covariances, self.n_codes = cov, len(codes)
        return self

    def mixture(self) -> torch.distributions.MixtureSameFamily:
        """The fitted density as a torch distribution (log_prob, mean, variance)."""
        D = torch.distributions
        return D.MixtureSameFamily(D.Categorical(probs=self.weights),
                                   D.MultivariateNormal(self.means, covariance_matrix=self.covariances))

    def sample_codes(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)   # (n,)
        chol = torch.linalg.cholesky(self.covariances)                                      # (C, d, d)
        eps = _randn((n, self.means.shape[1], 1), generator)
        return self.means[comp] + temperature * (chol[comp] @ eps).squeeze(-1)               # (n, d)

    def arrays(self) -> dict[str, Tensor]:
        return {"weights": self.weights, "means": self.means, "covariances": self.covariances}

    def load_arrays(self, arrays: dict[str, Tensor], folder: Path) -> None:
        self.weights, self.means, self.covariances = arrays["weights"], arrays["means"], arrays["covariances"]


class TwoStageSampler(Sampler):
    name, Config = "two-stage", TwoStageConfig

    def fit(self, codes: Tensor) -> "TwoStageSampler":
        c, d = self.config, codes.shape[1]
        codes = codes.float()
        self.shift, self.scale = codes.mean(0), codes.std(0).clamp_min(1e-6)                # (d,) each
        u = (codes - self.shift) / self.scale                                              # standardised codes
        with torch.random.fork_rng():  # the caller's RNG is left alone
            torch.manual_seed(c.seed)
            self.vae = build_model("vae", input_shape=(d,), latent_dim=c.latent_dim or d, hidden=c.hidden,
                                   likelihood="gaussian-learned", sigma=1.0)
            fit(self.vae, Dataset(u, None, DataInfo(name="codes", shape=(d,), is_image=False)),
                cfg=TrainConfig(epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, seed=c.seed, progress=False))
        self.vae.eval()
        self.n_codes = len(codes)
        return self

    def sample_codes(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        gen = None if generator is None else torch.Generator().manual_seed(
            int(torch.randint(0, 2 ** 62, (1,), generator=generator)))
        u = self.vae.sample(n, temperature=temperature, generator=gen).cpu()               # (n, d)
        return (u * self.scale + self.shift).double()

    def arrays(self) -> dict[str, Tensor]:
        return {"shift": self.shift, "scale": self.scale}

    def load_arrays(self, arrays: dict[str, Tensor], folder: Path) -> None:
        self.shift, self.scale = arrays["shift"], arrays["scale"]
        self.vae = rundir.load(folder)

    def save_extra(self, folder: Path) -> None:
        rundir.save_model(folder, self.vae, role="second-stage VAE of a two-stage sampler (Dai & Wipf 2019)")


CLASSES: dict[str, type[Sampler]] = {"gmm": GMMSampler, "two-stage": TwoStageSampler}


def sampler_class(name: str) -> type[Sampler]:
    if name not in CLASSES:
        raise ValueError(f"sampler={name!r} cannot be fitted; allowed: {sorted(CLASSES)} ('prior' is the model's own)")
    return CLASSES[name]


@torch.no_grad()
def codes_of(model: LatentModel, data: Dataset, batch_size: int = 1000) -> Tensor:
    """Posterior means E[z|x] of every example (dynamic binarization: one fixed draw): (N, d) on the CPU."""
    if model.n_classes:
        raise ValueError(f"model {model.name!r} is conditional: a sampler of q(z) would ignore the label; "
                         "use --sampler prior with --label")
    model.eval()
    return torch.cat([model.encode(xb).mean.reshape(len(xb), -1).cpu()
                      for xb, _ in batches(for_evaluation(data).x, None, batch_size, shuffle=False,
                                           device=model.device)])


def fit_sampler(name: str, model: LatentModel, data: Dataset, config: Any = None) -> Sampler:
    """Fit sampler ``name`` to the codes of ``data`` (the training set)."""
    return sampler_class(name)(config).fit(codes_of(model, data))


def save(sampler: Sampler, run_dir: str | Path) -> Path:
    """Write RUN/samplers/<name>/ (sampler.json, sampler.safetensors, extra files); returns the folder."""
    run = Path(run_dir)
    folder = run / FOLDER / sampler.name
    folder.mkdir(parents=True, exist_ok=True)
    sampler.save_extra(folder)
    with rundir.atomic_path(folder / ARRAYS) as tmp:
        save_file({k: v.contiguous() for k, v in sampler.arrays().items()}, str(tmp))
    rundir.write_json(folder / META, {"sampler": sampler.name, "settings": to_dict(sampler.config),
                                      "n_codes": sampler.n_codes, "checkpoint": rundir.checkpoint_id(run)})
    return folder


def load(run_dir: str | Path, name: str, config: Any = None) -> Sampler | None:
    """The sampler stored in the run, or None when there is none, or it was fitted with other settings
    (``config``, when given) or to other weights."""
    folder = Path(run_dir) / FOLDER / name
    cls = sampler_class(name)
    if not (folder / META).is_file():
        return None
    try:
        meta = json.loads((folder / META).read_text())
        if meta.get("checkpoint") != rundir.checkpoint_id(run_dir):
            return None  # fitted to other weights
        stored = from_dict(cls.Config, meta.get("settings") or {})
        if config is not None and stored != config:
            return None
        sampler = cls(stored)
        sampler.n_codes = int(meta.get("n_codes", 0))
        sampler.load_arrays(load_file(str(folder / ARRAYS)), folder)
    except Exception:  # noqa: BLE001  (an unreadable stored sampler is refitted and overwritten)
        return None
    return sampler


def for_run(run_dir: str | Path, name: str, model: LatentModel, train: Callable[[], Dataset],
            config: Any = None, refit: bool = False) -> tuple[Sampler, bool]:
    """The run's sampler ``name``: the stored one when it fits these weights and settings, else fitted to
    the codes of ``train()`` (the training split; loaded only then) and saved under the run's lock.
    Returns (sampler, whether it was fitted now)."""
    if not refit:
        stored = load(run_dir, name, config)
        if stored is not None:
            return stored, False
    t0 = time.perf_counter()
    sampler = fit_sampler(name, model, train(), config)
    with rundir.writing(run_dir):
        save(sampler, run_dir)
    sampler.fit_seconds = time.perf_counter() - t0
    return sampler, True
