"""What ending `vaelab demo` with its story report costs: the whole demo vs the report step, same run.

    .venv/bin/python bench/demo_report.py [--epochs-scale 1.0] [--repeats 3]

Runs the full demo (training + pictures + report.html) once, then rebuilds only the story report
(`story_html`: IWAE_100 on the test set, decoded grids, embedded PNGs) `--repeats` times from the saved
runs. Prints wall and CPU seconds of both and the report's share of the demo; CPU time is the steadier
number on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from typer.testing import CliRunner

import vaelab
from vaelab.cli import app
from vaelab.cli.demo import demo_pictures, story_html
from vaelab.data import load_dataset


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs-scale", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        r, wall, cpu = timed(lambda: CliRunner().invoke(
            app, ["demo", "--out", str(out), "--epochs-scale", str(args.epochs_scale), "--no-progress"]))
        assert r.exit_code == 0, r.output
        print(f"whole demo (epochs x{args.epochs_scale}): wall {wall:.2f} s, cpu {cpu:.2f} s, "
              f"report.html {(out / 'report.html').stat().st_size / 1e3:.0f} kB")
        test = load_dataset("digits", "test")
        models = {n: vaelab.load(out / n) for n in ("pca", "ae", "vae")}
        metrics = json.loads((out / "metrics.json").read_text())
        pics = {k: v for n, m in models.items() for k, v in demo_pictures(n, m, test).items()}
        walls, cpus = [], []
        for _ in range(args.repeats):
            _, w, c = timed(lambda: story_html(models, test, metrics, pics))
            walls.append(w)
            cpus.append(c)
        w, c = statistics.median(walls), statistics.median(cpus)
        print(f"story report alone (median of {args.repeats}): wall {w:.2f} s, cpu {c:.2f} s")
        print(f"report / whole demo: wall {w / wall:.1%}, cpu {c / cpu:.1%}")


if __name__ == "__main__":
    main()
