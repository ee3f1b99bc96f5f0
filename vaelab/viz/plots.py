"""One picture per plot kind from a model, its test data and its training history (what ``vaelab plot`` draws).

Pure: every kind returns a uint8 image grid (H, W, C) or a matplotlib Figure; only the CLI writes files.
Only the model contract is used (encode / decode / sample / prior / latent_dim / n_classes / capabilities),
so every registered model gets every kind that makes sense for it, and a clear ValueError naming the reason
otherwise. Lattices and traversals follow the model's prior: exact N(0, 1) quantiles when it declares the
standard prior, quantiles of draws from ``model.prior`` otherwise, the range of the test codes without one.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from .. import rundir
from . import grids as viz
from ..data import Dataset, for_evaluation, load_recorded
from ..eval.disentangle import entropies, mutual_info_matrix
from ..models import LatentModel, posterior_means

Picture = Union[np.ndarray, Figure]
KINDS = ("latent", "manifold", "interpolate", "recon", "samples", "traverse", "curves")
NEEDS_TEST_DATA = frozenset({"latent", "manifold", "interpolate", "recon", "traverse"})
IMAGE_KINDS = frozenset({"manifold", "interpolate", "recon", "samples", "traverse"})
PRIOR_DRAWS = 10_000  # draws from a model's own prior whose per-dimension quantiles place lattices and traversals


@dataclass(frozen=True)
class PlotOptions:
    dims: tuple[int, ...] | None = None  # latent dimensions to show (manifold/latent: two; traverse: any)
    n: int | None = None                 # kind-specific count; None: the kind's default
    temperature: float = 1.0             # scale of the prior draws (samples)
    seed: int = 0                        # seeds prior draws and the choice of test images
    label: int | None = None             # class to condition on (conditional models; default 0)


@dataclass
class RunData:
    model: LatentModel
    config: dict[str, Any]
    test: Dataset | None
    history: list[dict[str, Any]]


def load_run(run: str | Path, data_dir: str | Path | None = None, with_test: bool = True,
             data: str | Path | None = None) -> RunData:
    """A run folder's model (on the automatic device), config, test split (when asked) and metrics rows.

    The test split is reloaded from config.json through the confinement rule (a recorded path only
    inside the run folder or the data roots; ``data`` overrides it: ``vaelab.data.resolve_recorded``)."""
    from ..device import pick_device

    model = rundir.load(run, pick_device())
    cfg = rundir.read_config(run)
    test = for_evaluation(load_recorded(cfg.get("data"), "test", run, data_dir, data)) if with_test else None
    return RunData(model, cfg, test, rundir.read_metrics(run))


def upscale_for(shape: tuple[int, ...]) -> int:
    """Nearest-neighbour factor so that an image is shown about 48 px wide (8x8 digits: 6, MNIST: 2)."""
    return max(1, round(48 / max(shape[-2:])))


def make_plot(kind: str, model: LatentModel, test: Dataset | None = None,
              history: list[dict[str, Any]] | None = None, opts: PlotOptions = PlotOptions()) -> Picture:
    """Draw ``kind`` for ``model``; ValueError (naming why) where the kind does not apply."""
    if kind not in _PLOTS:
        raise ValueError(f"kind={kind!r} is not known; allowed: {list(KINDS)}")
    if kind in IMAGE_KINDS and not (len(model.input_shape) == 3 and model.input_shape[0] in (1, 3)):
        raise ValueError(f"plot kind {kind!r} draws images, but model {model.name!r} takes examples of shape "
                         f"{model.input_shape}; allowed kinds here: ['latent', 'curves']")
    if kind in NEEDS_TEST_DATA and (test is None or len(test) == 0):
        raise ValueError(f"plot kind {kind!r} needs the run's test data")
    if opts.n is not None and opts.n < 1:
        raise ValueError(f"n={opts.n} must be >= 1")
    if opts.label is not None and not model.n_classes:
        raise ValueError(f"label={opts.label} needs a conditional model; {model.name!r} is not")
    model.eval()
    with torch.no_grad():
        return _PLOTS[kind](model, test, history or [], opts)


# -- helpers ----------------------------------------------------------------------------------------------
def _y(model: LatentModel, y: Tensor | None) -> Tensor | None:
    return y.to(model.device) if model.n_classes and y is not None else None


def prior_quantiles(model: LatentModel, u: Tensor, seed: int = 0) -> Tensor:
    """Per-dimension quantiles of the prior at levels u (m,) in (0, 1): (m, latent_dim) on the CPU.

    Exactly Phi^-1(u) for a model declaring the N(0, I) prior; otherwise empirical quantiles of PRIOR_DRAWS
    draws from ``model.prior`` (seeded with ``seed``)."""
    u = u.double()
    if model.capabilities.standard_prior:
        return torch.special.ndtri(u).float()[:, None].expand(len(u), model.latent_dim).clone()
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # any prior with .sample(); the caller's RNG is left alone
        torch.manual_seed(seed)
        draws = model.prior(PRIOR_DRAWS).sample()                         # (PRIOR_DRAWS, d)
    return torch.quantile(draws.detach().double().cpu(), u, dim=0).float()


def decoded_means(model: LatentModel, z: Tensor, y: Tensor | None = None, batch: int = 1000) -> Tensor:
    """Decoded means of codes z (N, d): (N, *input_shape) on the CPU."""
    out = [model.decode(z[i:i + batch].to(model.device), None if y is None else y[i:i + batch].to(model.device)).mean
           for i in range(0, len(z), batch)]
    return torch.cat(out).cpu()


def _check_dims(dims: tuple[int, ...], d: int, count: int | None) -> tuple[int, ...]:
    if count is not None and len(dims) != count:
        raise ValueError(f"dims={','.join(map(str, dims))} must name {count} latent dimensions, e.g. 0,1")
    if len(set(dims)) != len(dims) or any(not 0 <= i < d for i in dims):
        raise ValueError(f"dims={','.join(map(str, dims))} must be distinct dimensions in 0..{d - 1} "
                         f"(latent_dim={d})")
    return dims


def _label(model: LatentModel, opts: PlotOptions, n: int) -> Tensor | None:
    """The conditioning label repeated n times (conditional models; class 0 unless chosen)."""
    if not model.n_classes:
        return None
    k = 0 if opts.label is None else opts.label
    if not 0 <= k < model.n_classes:
        raise ValueError(f"label={k} is out of range; allowed: 0..{model.n_classes - 1}")
    return torch.full((n,), k, dtype=torch.long)


def sample_grid(model: LatentModel, x: Tensor, ncol: int | None = None) -> np.ndarray:
    """Images x (n, *shape) tiled ``ncol`` wide (default ~sqrt(n)) and upscaled for the model's image size."""
    return viz.upscale(viz.image_grid(x, ncol=ncol), upscale_for(model.input_shape))


def describe_codes(model: LatentModel) -> str:
    return "posterior means" if model.has_prior else "codes"


# -- the kinds ------------------------------------------------------------------------------------------
def plot_latent(model: LatentModel, test: Dataset, history: list, opts: PlotOptions) -> Figure:
    """Test-set posterior means coloured by class (PCA of the means when d > 2, or ``dims``): 500 x 450 px."""
    n = min(opts.n or 5000, len(test))
    z = posterior_means(model, test.x[:n], None if test.y is None else test.y[:n]).numpy()
    labels = ("z[0]", "z[1]")
    if opts.dims is not None:
        i, j = _check_dims(opts.dims, model.latent_dim, 2)
        z, labels = z[:, [i, j]], (f"z[{i}]", f"z[{j}]")
    y = None if test.y is None else test.y[:n].numpy()
    return viz.latent_scatter(z, y, title=f"{model.name}: test-set {describe_codes(model)} (n={n})",
                              class_names=test.info.class_names, axis_labels=labels)


def plot_manifold(model: LatentModel, test: Dataset, history: list, opts: PlotOptions) -> Figure:
    """Decoded grid over two latent dims (640 x 640 px): the prior's quantile lattice z = Phi^-1(u)
    (Kingma & Welling, fig. 4), or the 1..99 % range of the test codes for a model with no prior (ae)."""
    d = model.latent_dim
    if opts.dims is None and d != 2:
        raise ValueError(f"manifold needs a 2-D latent or --dims i,j; this model has latent_dim={d}")
    i, j = _check_dims(opts.dims or (0, 1), d, 2)
    n = min(opts.n or 15, 40)
    if n < 2:
        raise ValueError(f"n={n} must be >= 2 points per side for a manifold")
    if model.capabilities.prior:  # the prior's marginal quantiles at the lattice levels (and the median)
        q = prior_quantiles(model, torch.cat([viz.lattice_levels(n), torch.tensor([0.5], dtype=torch.float64)]),
                            opts.seed)
        xs, ys, base = q[:n, i], q[:n, j], q[n]                      # N(0, I): Phi^-1(u), other dims 0
        if model.capabilities.standard_prior:
            how = "prior quantiles z = Phi^-1(u)" + ("" if d == 2 else ", other dims 0")
        else:
            how = f"quantiles of {PRIOR_DRAWS} prior draws" + ("" if d == 2 else ", other dims at their median")
    else:
        codes = posterior_means(model, test.x, test.y)
        lo, hi = torch.quantile(codes, 0.01, dim=0), torch.quantile(codes, 0.99, dim=0)
        xs, ys = torch.linspace(float(lo[i]), float(hi[i]), n), torch.linspace(float(lo[j]), float(hi[j]), n)
        base = codes.median(0).values
        how = "no prior: grid over 1-99 % of test codes" + ("" if d == 2 else ", other dims at their median")
    z = viz.lattice_codes(xs, ys, (i, j), base)                      # (n * n, d)
    y = _label(model, opts, len(z))
    grid = viz.image_grid(decoded_means(model, z, y), ncol=n)
    cls = "" if y is None else f", class {int(y[0])}"
    return viz.image_figure(grid, f"{model.name} manifold: {how}{cls}", (6.4, 6.4),
                            row_labels=[f"{v:.2g}" for v in ys.flip(0).tolist()],
                            col_labels=[f"{v:.2g}" for v in xs.tolist()], xlabel=f"z[{i}]", ylabel=f"z[{j}]")


def _pick_pair(test: Dataset, conditional: bool, seed: int) -> tuple[int, int]:
    """Two test images: different classes (same class for a conditional model) when labels exist."""
    rng = np.random.default_rng(seed)
    a = int(rng.integers(len(test)))
    if len(test) < 2:
        raise ValueError("interpolation needs at least 2 test images")
    others = np.arange(len(test)) != a
    if test.y is not None:
        same = (test.y.numpy() == int(test.y[a]))
        pool = others & (same if conditional else ~same)
        others = pool if pool.any() else others
    return a, int(rng.choice(np.flatnonzero(others)))


def plot_interpolate(model: LatentModel, test: Dataset, history: list, opts: PlotOptions) -> Figure:
    """Rows lerp and slerp between two test images' posterior means, the originals at both ends."""
    steps = max(opts.n or 10, 2)
    a, b = _pick_pair(test, bool(model.n_classes), opts.seed)
    x = test.x[[a, b]]
    y = None if test.y is None else test.y[[a, a]]                 # a conditional model keeps a's class
    za, zb = posterior_means(model, x, y)
    rows = []
    for path in (viz.lerp(za, zb, steps), viz.slerp(za, zb, steps)):
        yk = None if y is None or not model.n_classes else y[:1].expand(steps)
        rows += [x[:1].cpu(), decoded_means(model, path, yk), x[1:].cpu()]
    grid = viz.image_grid(torch.cat(rows), ncol=steps + 2)
    cols = ["x_A"] + [f"{t:.2g}" for t in torch.linspace(0, 1, steps).tolist()] + ["x_B"]
    return viz.image_figure(grid, f"{model.name}: interpolating test images {a} -> {b} "
                            f"({describe_codes(model)}; ends: originals)", (max(6.0, 0.55 * (steps + 2) + 1.2), 2.8),
                            row_labels=["lerp", "slerp"], col_labels=cols, xlabel="t")


def plot_recon(model: LatentModel, test: Dataset, history: list, opts: PlotOptions) -> Figure:
    """n test images (row "original") over their reconstructions (row "reconstruction": the decoded mean at
    the posterior mean), each shown 50 px wide; columns name the test image."""
    n = min(opts.n or 16, len(test))
    x, y = test.x[:n], None if test.y is None else test.y[:n]
    rec = decoded_means(model, posterior_means(model, x, y), _y(model, y))
    grid = viz.image_grid(viz.pairs(x, rec, n), ncol=n)
    return viz.image_figure(grid, f"{model.name}: test images and their reconstructions (decoded "
                            f"{describe_codes(model)})", viz.grid_figure_size(2, n),
                            row_labels=["original", "reconstruction"], col_labels=[str(i) for i in range(n)],
                            xlabel="test image")


def plot_samples(model: LatentModel, test: Dataset | None, history: list, opts: PlotOptions) -> np.ndarray:
    """Decoded prior draws z ~ N(0, T^2 I): n in a square grid (of class ``label`` for a conditional model),
    or without a label n per class, one row per class."""
    if opts.temperature <= 0:
        raise ValueError(f"temperature={opts.temperature} must be > 0")
    torch.manual_seed(opts.seed)  # (an ae has no prior: its N(0, I) "samples" are what the report contrasts)
    if model.n_classes and opts.label is not None:
        n = opts.n or 64
        y = torch.full((n,), opts.label, dtype=torch.long, device=model.device)
        return sample_grid(model, model.sample(n, y, opts.temperature).cpu(), ncol=math.ceil(math.sqrt(n)))
    if model.n_classes:
        n = opts.n or 8
        y = torch.arange(model.n_classes, device=model.device).repeat_interleave(n)
        return sample_grid(model, model.sample(len(y), y, opts.temperature).cpu(), ncol=n)
    n = opts.n or 64
    return sample_grid(model, model.sample(n, None, opts.temperature).cpu(), ncol=math.ceil(math.sqrt(n)))


def plot_traverse(model: LatentModel, test: Dataset, history: list, opts: PlotOptions) -> Figure:
    """Row i varies z[i] over -3..3 (N(0, I) prior sd units; for a model's own prior its quantiles at the same
    levels Phi(-3..3); the test codes' 1..99 % range for an ae) with the others at one test image's posterior
    mean. At most 16 rows unless ``dims`` names them. Data with ground-truth factors (shapes): rows ordered
    by the factor each latent shares most information with, named with that normalised MI (``factor_rows``)."""
    d = model.latent_dim
    dims = list(_check_dims(opts.dims, d, None) if opts.dims else range(min(d, 16)))
    labels = [f"z[{i}]" for i in dims]
    if test.factors is not None:
        dims, labels = factor_rows(model, test, dims)
    steps = max(opts.n or 9, 2)
    k = int(np.random.default_rng(opts.seed).integers(len(test)))
    y = None if test.y is None else test.y[k:k + 1]
    base = posterior_means(model, test.x[k:k + 1], y)[0]
    levels = torch.linspace(-3, 3, steps)
    if model.capabilities.prior and model.capabilities.standard_prior:
        values, how = levels, "-3..3"
    elif model.capabilities.prior:
        values = prior_quantiles(model, torch.special.ndtr(levels.double()), opts.seed)[:, dims].T  # (rows, steps)
        how = "prior quantiles at Phi(-3..3)"
    else:
        codes = posterior_means(model, test.x, test.y)[:, dims]     # (N, rows)
        lo, hi = torch.quantile(codes, 0.01, dim=0), torch.quantile(codes, 0.99, dim=0)
        values = lo[:, None] + (hi - lo)[:, None] * torch.linspace(0, 1, steps)   # (rows, steps)
        how = "1..99 % of test codes"
    z = viz.traversal_codes(base, dims, values)
    yk = None if y is None or not model.n_classes else y.expand(len(z))
    grid = viz.image_grid(decoded_means(model, z, yk), ncol=steps)
    shown = "" if opts.dims or d <= 16 else f" (first 16 of {d} dims)"
    shown += "; rows: latent, its top factor, I(z; factor) / H(factor)" if test.factors is not None else ""
    cols = [f"{v:.2g}" for v in levels.tolist()] if model.has_prior else []
    return viz.image_figure(grid, f"{model.name}: traversals {how} around test image {k}{shown}",
                            (max(5.0, 0.55 * steps + 1.5), 0.55 * len(dims) + 1.1),
                            row_labels=labels, col_labels=cols)


def factor_rows(model: LatentModel, test: Dataset, dims: list[int]) -> tuple[list[int], list[str]]:
    """Latents ``dims`` grouped by the ground-truth factor k with the largest I(z_j; v_k) / H(v_k) (posterior
    means of the test data, 20 bins: ``eval.disentangle``), strongest first, labelled e.g. 'z[3] x 0.83'."""
    codes = posterior_means(model, test.x, test.y)[:, dims].numpy()              # (N, rows)
    factors = test.factors.numpy()                                               # (N, F)
    mi = mutual_info_matrix(codes, factors) / np.maximum(entropies(factors), 1e-12)  # (rows, F)
    top = mi.argmax(1)
    order = sorted(range(len(dims)), key=lambda r: (top[r], -mi[r, top[r]]))
    return ([dims[r] for r in order],
            [f"z[{dims[r]}] {test.factor_names[top[r]]} {mi[r, top[r]]:.2f}" for r in order])


def plot_curves(model: LatentModel, test: Dataset | None, history: list, opts: PlotOptions) -> Figure:
    """Training curves per epoch from metrics.jsonl (ELBO, recon, KL; an ae: loss and MSE): 1000 x 320 px."""
    if not model.trainable:
        raise ValueError(f"model {model.name!r} is fitted in closed form (no epochs): it has no training curves")
    if not history:
        raise ValueError("the run has no metrics.jsonl rows: no training curves to draw")
    keys = ("elbo", "recon", "kl") if model.has_likelihood else ("loss", "mse")
    return viz.training_curves(history, keys, title=f"{model.name}: training curves")


_PLOTS: dict[str, Callable[..., Picture]] = {
    "latent": plot_latent, "manifold": plot_manifold, "interpolate": plot_interpolate, "recon": plot_recon,
    "samples": plot_samples, "traverse": plot_traverse, "curves": plot_curves,
}
