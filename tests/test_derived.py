"""Derived files name the weights they came from, and a stale one is ignored (and says so).

eval.json records ``checkpoint`` = {sha256 of model.safetensors, epoch}; a PNG from ``vaelab plot`` carries
the same in a text chunk. After the run trains on (resume, overwrite), the report and the explorer show the
training rows instead of the old eval.json, with a warning naming why.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import cli
from vaelab import rundir
from vaelab.viz.report import run_metrics

EVAL = ["eval", "--iw-samples", "4", "--max-examples", "40", "--no-fd", "--no-progress", "--no-curve"]


@pytest.fixture
def run(digits_runs, tmp_path) -> Path:
    out = tmp_path / "vae"
    shutil.copytree(digits_runs["vae"], out)
    return out


def _resume_one_more_epoch(run: Path) -> None:
    done = len(rundir.read_metrics(run))
    r = cli("train", "--model", "vae", "--epochs", str(done + 1), "--resume", "--no-progress", "--out", run)
    assert r.exit_code == 0, r.output


def test_eval_json_names_the_weights_it_scored(run):
    r = cli(*EVAL[:1], run, *EVAL[1:])
    assert r.exit_code == 0, r.output
    saved = json.loads((run / rundir.EVAL).read_text())
    assert saved["checkpoint"] == rundir.checkpoint_id(run)
    assert saved["checkpoint"]["epoch"] == len(rundir.read_metrics(run))
    shown = rundir.display_metrics(run)
    assert shown["source"] == rundir.EVAL and "warning" not in shown
    assert "checkpoint" not in shown["values"]  # provenance is not a metric


def test_a_stale_eval_json_is_ignored_and_says_why(run):
    assert cli(*EVAL[:1], run, *EVAL[1:]).exit_code == 0
    epoch = len(rundir.read_metrics(run))
    _resume_one_more_epoch(run)
    shown = rundir.display_metrics(run)
    assert shown["source"] == rundir.METRICS
    assert f"computed from epoch {epoch}" in shown["warning"] and "vaelab eval" in shown["warning"]
    values, source = run_metrics(run)
    assert source.startswith(rundir.METRICS) and f"epoch {epoch}" in source
    assert values["elbo"] == pytest.approx(rundir.read_metrics(run)[-1]["val_elbo"])


def test_an_eval_json_without_provenance_is_not_trusted(run):
    rundir.write_json(run / rundir.EVAL, {"nll": 1.0})  # e.g. written by an older vaelab
    shown = rundir.display_metrics(run)
    assert shown["source"] == rundir.METRICS and "does not say which weights" in shown["warning"]


def test_replaced_weights_make_eval_json_stale(run, digits_runs):
    assert cli(*EVAL[:1], run, *EVAL[1:]).exit_code == 0
    shutil.copy(digits_runs["cvae"] / rundir.WEIGHTS, run / rundir.WEIGHTS)
    assert "not the current model.safetensors" in rundir.display_metrics(run)["warning"]


def test_pictures_name_the_weights_they_show(run, tmp_path):
    png = tmp_path / "s.png"
    assert cli("plot", run, "--kind", "samples", "--out", png).exit_code == 0
    assert rundir.picture_source(png) == rundir.checkpoint_id(run)
    _resume_one_more_epoch(run)
    assert rundir.picture_source(png) != rundir.checkpoint_id(run)  # the picture is now of older weights
    plain = rundir.write_png(tmp_path / "plain.png", np.zeros((2, 2), np.uint8))  # not from a run
    assert rundir.picture_source(plain) is None
