"""vaelab plot: one picture of a run (latent scatter, manifold, interpolation, ... training curves)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import typer

import torch

from .. import rundir, samplers
from ..data import Dataset, load_recorded
from ..models import LatentModel
from ..rundir import write_picture
from ..viz import plots
from . import app
from .common import friendly


def parse_dims(text: str | None) -> tuple[int, ...] | None:
    """'0,1' -> (0, 1); dimensions may be 0."""
    if text is None:
        return None
    try:
        dims = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--dims {text!r} must be comma-separated latent dimensions, e.g. 0,1") from None
    if not dims or min(dims) < 0:
        raise ValueError(f"--dims {text!r} must list latent dimensions >= 0, e.g. 0,1")
    return dims


@app.command()
@friendly
def plot(
    run: Path = typer.Argument(..., help="run folder"),
    kind: str = typer.Option(..., help="latent | manifold | interpolate | recon | samples | traverse | curves"),
    out: Path = typer.Option(Path("plot.png"), help="PNG file to write"),
    dims: Optional[str] = typer.Option(None, help="latent dims, e.g. 0,1 (manifold/latent: two; traverse: any)"),
    n: Optional[int] = typer.Option(None, "--n", "-n", help="count: images, steps or grid side (kind default)"),
    temperature: float = typer.Option(1.0, help="scale of the prior draws (samples)"),
    label: Optional[int] = typer.Option(None, help="class to condition on (conditional models)"),
    data_dir: Optional[Path] = typer.Option(None, help="where mnist/ lives (else $VAELAB_DATA_DIR)"),
    data: Optional[Path] = typer.Option(None, "--data", help="use this dataset (a built-in name or a path) "
                                        "instead of the one recorded in config.json"),
    seed: int = typer.Option(0, help="seeds prior draws and the choice of test images"),
    sampler: str = typer.Option("prior", help="samples: prior (the model's own p(z)) | gmm | two-stage (a density "
                                "fitted to the run's training codes on first use, kept in RUN/samplers/)"),
    refit: bool = typer.Option(False, help="samples: fit the sampler again even when RUN/samplers/ holds one"),
) -> None:
    """Draw one picture of a trained run into a PNG."""
    if kind == "samples":
        typer.echo(draw_samples(run, out, n=n, label=label, temperature=temperature, seed=seed, sampler=sampler,
                                refit=refit, data_dir=data_dir))
        return
    if sampler != "prior" or refit:
        raise ValueError(f"--sampler / --refit apply to --kind samples only; got --kind {kind}")
    typer.echo(draw(kind, run, out, dims=dims, n=n, temperature=temperature, label=label, seed=seed,
                    data_dir=data_dir, data=data))


def draw_samples(run: Path, out: Path, *, n: int | None = None, label: int | None = None, temperature: float = 1.0,
                 seed: int = 0, sampler: str = "prior", refit: bool = False, data_dir: Path | None = None) -> str:
    """Samples of ``run`` into the PNG ``out``: the one way (``vaelab plot --kind samples`` and its short form
    ``vaelab sample``). ``sampler`` prior: the model's own p(z); gmm / two-stage: a density fitted to its
    training codes (vaelab.samplers)."""
    check_sampler(sampler)
    if n is not None and not 1 <= n <= 10000:
        raise ValueError(f"n={n} must be >= 1 and <= 10000")
    model = rundir.load(run)
    if label is not None and model.n_classes == 0:
        raise ValueError(f"--label {label} needs a conditional model; {model.name!r} is not")
    if sampler == "prior":
        if not model.has_prior:
            raise ValueError(f"model {model.name!r} has no prior p(z) to sample: use --sampler gmm or --sampler "
                             "two-stage (a density fitted to its codes of the training set)")
        return draw("samples", run, out, n=n, temperature=temperature, label=label, seed=seed, data_dir=data_dir)
    if label is not None:
        raise ValueError(f"--label applies to --sampler prior; {sampler!r} samples the codes of every class")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    fitted, note = fitted_sampler(run, sampler, model, lambda: load_recorded(
        rundir.read_config(run).get("data"), "train", run, data_dir), refit=refit)
    x = fitted.sample(model, n or 64, temperature, torch.Generator().manual_seed(seed))
    write_picture(out, plots.sample_grid(model, x), run)
    return f"{note}wrote {n or 64} samples ({sampler}) of {model.name} run {str(run)!r} to {out}"


def check_sampler(name: str) -> None:
    if name not in samplers.SAMPLERS:
        raise ValueError(f"--sampler {name!r} is not known; allowed: {', '.join(samplers.SAMPLERS)}")


def fitted_sampler(run: Path, name: str, model: LatentModel, train: Callable[[], Dataset],
                   refit: bool = False) -> tuple[samplers.Sampler | None, str]:
    """(None, "") for 'prior'; else the run's stored sampler ``name`` (fitted to ``train()`` and stored now
    when missing, stale or ``refit``) and a line saying so when it was fitted now (else "")."""
    check_sampler(name)
    if name == "prior":
        return None, ""
    fitted, fresh = samplers.for_run(run, name, model, train, refit=refit)
    note = f"fitted sampler {name} to {fitted.n_codes} training codes -> {run / samplers.FOLDER / name}\n"
    return fitted, note if fresh else ""


def draw(kind: str, run: Path, out: Path, *, dims: str | None = None, n: int | None = None,
         temperature: float = 1.0, label: int | None = None, seed: int = 0, data_dir: Path | None = None,
         data: Path | None = None) -> str:
    """Draw picture ``kind`` of ``run`` into the PNG ``out``; returns the line to print. The one way every
    picture is made: ``vaelab plot`` and its short forms (``vaelab reconstruct`` = ``plot --kind recon``)."""
    if kind not in plots.KINDS:
        raise ValueError(f"--kind {kind!r} is not known; allowed: {list(plots.KINDS)}")
    opts = plots.PlotOptions(dims=parse_dims(dims), n=n, temperature=temperature, seed=seed, label=label)
    loaded = plots.load_run(run, data_dir, with_test=kind in plots.NEEDS_TEST_DATA, data=data)
    picture = plots.make_plot(kind, loaded.model, loaded.test, loaded.history, opts)
    write_picture(out, picture, run)  # the PNG names the weights it shows
    return f"wrote {kind} of {loaded.model.name} run {str(run)!r} to {out}"
