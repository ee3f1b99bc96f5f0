"""vaelab eval: test-set NLL, ELBO terms, bits/dim, active units, probe accuracy, FD_vaelab -> RUN/eval.json."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from .. import rundir
from ..data import load_recorded
from ..eval.evaluate import evaluate
from ..device import pick_device
from . import app
from .common import friendly, parse_ints
from .plot import fitted_sampler

EVAL_JSON = rundir.EVAL


def format_table(result: dict[str, Any]) -> str:
    """Two aligned columns, one row per number (lists shortened)."""
    rows = []
    for key, value in result.items():
        if isinstance(value, float):
            text = f"{value:.4f}"
        elif isinstance(value, list):
            text = "[" + ", ".join(f"{v:.3g}" for v in value[:8]) + (", ...]" if len(value) > 8 else "]")
        elif isinstance(value, dict):
            text = ", ".join(f"{k}: {v:.3f}" for k, v in value.items())
        else:
            text = "-" if value is None else str(value)
        rows.append((key, text))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@app.command(name="eval")
@friendly
def eval_run(
    run: Path = typer.Argument(..., help="run folder (from vaelab train)"),
    iw_samples: int = typer.Option(1000, help="importance samples K per test example for the NLL"),
    data_dir: Optional[Path] = typer.Option(None, help="where mnist/ lives (else $VAELAB_DATA_DIR)"),
    data: Optional[Path] = typer.Option(None, "--data", help="use this dataset (a built-in name or a path) "
                                        "instead of the one recorded in config.json"),
    batch_size: Optional[int] = typer.Option(None, help="test examples per NLL batch (default: 2048 / chunk)"),
    chunk: Optional[int] = typer.Option(None, help="importance samples per decoder call (default 256)"),
    seed: int = typer.Option(0, help="seeds the importance samples, generated samples and probe subsample"),
    max_examples: Optional[int] = typer.Option(None, help="score only the first N test examples"),
    curve: bool = typer.Option(False, help="also report the IWAE_k curve (iwae_curve in eval.json)"),
    curve_ks: str = typer.Option("1,5,50,500", help="k values for --curve"),
    fd: bool = typer.Option(True, help="compute FD_vaelab (image data with labels only)"),
    cache_dir: Optional[Path] = typer.Option(None, help="feature-net cache root "
                                             "(else $XDG_CACHE_HOME/vaelab or ~/.cache/vaelab)"),
    workers: Optional[int] = typer.Option(None, help="CPU threads scoring batches (default: torch threads)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps"),
    progress: bool = typer.Option(True, help="show a progress bar for the NLL"),
    dequantize: Optional[bool] = typer.Option(None, "--dequantize/--no-dequantize",
                                              help="score a density model on discrete data by uniform "
                                              "dequantization (a bound on the probability of the 8-bit/L-level "
                                              "data, in bits/dim); default: yes when the data take fixed levels"),
    sampler: str = typer.Option("prior", help="where FD / sharpness / precision-recall samples come from: prior "
                                "(the model's own p(z)), gmm | two-stage (fitted to the training codes, stored "
                                "in RUN/samplers/ like vaelab sample --sampler)"),
) -> None:
    """Score a run on its test split; write RUN/eval.json and print a table."""
    if iw_samples < 1:
        raise ValueError(f"--iw-samples {iw_samples} must be >= 1")
    cfg = rundir.read_config(run)
    source = rundir.checkpoint_id(run)  # the weights scored, named in eval.json
    model = rundir.load(run, pick_device(device))
    test = load_recorded(cfg.get("data"), "test", run, data_dir, data)
    train = load_recorded(cfg.get("data"), "train", run, data_dir, data) if test.y is not None else None
    fitted, note = fitted_sampler(run, sampler, model, lambda: train or load_recorded(cfg.get("data"), "train", run,
                                                                                     data_dir, data))
    if note:
        typer.echo(note.rstrip("\n"))
    result = evaluate(model, test, train, iw_samples, batch_size=batch_size, chunk=chunk, seed=seed,
                      max_examples=max_examples, curve=parse_ints(curve_ks, "--curve-ks") if curve else None,
                      fd=fd, cache_dir=cache_dir, workers=workers, progress=progress,
                      dequantize=dequantize, sampler=fitted)
    rundir.write_eval(run, result, source)
    typer.echo(format_table(result))
    typer.echo(f"wrote {Path(run) / EVAL_JSON}")
