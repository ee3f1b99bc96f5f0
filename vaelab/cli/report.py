"""vaelab report: one self-contained HTML page comparing runs side by side."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..rundir import REPORT, atomic_write
from ..viz import report as rep
from . import app
from .common import friendly


def run_names(runs: list[Path]) -> list[str]:
    """Folder names, or the paths as given where two folders share a name."""
    names = [r.name or str(r) for r in runs]
    return [str(r) if names.count(n) > 1 else n for r, n in zip(runs, names)]


@app.command()
@friendly
def report(
    runs: list[Path] = typer.Argument(..., help="run folders to compare"),
    out: Path = typer.Option(Path(REPORT), help="HTML file to write"),
    data_dir: Optional[Path] = typer.Option(None, help="where mnist/ lives (else $VAELAB_DATA_DIR)"),
    data: Optional[Path] = typer.Option(None, "--data", help="use this dataset (a built-in name or a path) "
                                        "for every run instead of the one recorded in its config.json"),
    seed: int = typer.Option(0, help="seeds the prior samples"),
) -> None:
    """Write ONE self-contained HTML file: a metrics table (one row per run), latent scatters, samples,
    reconstructions and training curves (eval.json numbers when present, else the last epoch's)."""
    opts = rep.plots.PlotOptions(seed=seed)
    summaries = [rep.summarize_run(r, data_dir, name, opts=opts, data_path=data) for r, name in zip(runs, run_names(runs))]
    atomic_write(out, rep.comparison_html(summaries))
    typer.echo(f"wrote a report on {len(runs)} run(s) to {out}")
