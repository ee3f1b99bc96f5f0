"""A run folder survives crashes, a second writer, a foreign trainer.pt and a repeated --out.

- a trainer.pt of another model is refused with an error naming the file and the field (it used to
  crash the fused Adam step);
- an epoch is committed whole (checkpoint.json is renamed last): a process SIGKILLed at any file
  operation of a commit leaves a folder that loads, and --resume ends with the same weights and metrics
  rows as a run that was never interrupted;
- RUN/.lock keeps a second writer out; --out of an existing run needs --resume or --overwrite;
  --resume with model/data options that contradict the run is an error naming them.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vaelab
from conftest import CLI_ENV, assert_cli_error, cli
from vaelab import rundir
from vaelab.models import build_model
from vaelab.train import TrainConfig, TrainingDiverged, fit
from vaelab.train.checkpoint import check_trainer_state

ENV = CLI_ENV
AE = ["train", "--data", "digits", "--model", "ae", "--hidden", "16", "--no-progress", "--device", "cpu"]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return vaelab.load(run).state_dict()


# -- 1. a trainer.pt of another model -------------------------------------------------------------------
def test_foreign_trainer_state_is_refused_not_a_segfault(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(*AE, "--epochs", "1", "--out", a).exit_code == 0
    assert cli(*AE, "--epochs", "1", "--hidden", "24", "--out", b).exit_code == 0
    shutil.copy(b / rundir.TRAINER, a / rundir.TRAINER)
    # with checkpoint.json: the copy does not match the commit
    assert_cli_error(cli(*AE, "--epochs", "2", "--resume", "--out", a), "trainer.pt", "checkpoint.json")
    # an older run without checkpoint.json: the state itself is checked against the parameters
    (a / rundir.MANIFEST).unlink()
    assert_cli_error(cli(*AE, "--epochs", "2", "--resume", "--out", a), "trainer.pt", "optimizer.state",
                     "shape", "(24, 64)", "(16, 64)")


def test_check_trainer_state_fields():
    model = build_model("ae", input_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
    opt = torch.optim.Adam(model.parameters())
    loss = sum(p.sum() for p in model.parameters())
    loss.backward()
    opt.step()
    gen = torch.Generator()
    good = {"optimizer": opt.state_dict(), "scheduler": {}, "generator": gen.get_state(), "epoch": 1}
    assert check_trainer_state("T", good, opt, gen) == 1

    def broken(**change):
        state = json_copy(good)
        for path, value in change.items():
            *keys, last = path.split("__")
            d = state
            for k in keys:
                d = d[int(k)] if k.isdigit() and int(k) in d else d[k]
            d[int(last) if last.isdigit() else last] = value
        return state

    cases = {
        "optimizer.param_groups": broken(optimizer__param_groups=[]),
        "optimizer.state[0].step": broken(optimizer__state__0__step=torch.tensor(float("nan"))),
        "optimizer.state[0].exp_avg": broken(optimizer__state__0__exp_avg=torch.zeros(3)),
        "optimizer.state[1].exp_avg_sq": broken(optimizer__state__1__exp_avg_sq=torch.full(
            tuple(good["optimizer"]["state"][1]["exp_avg_sq"].shape), float("inf"))),
        "generator": broken(generator=torch.zeros(3)),
        "scheduler": broken(scheduler=[1, 2]),
        "epoch": broken(epoch=-1),
    }
    for field, state in cases.items():
        with pytest.raises(ValueError, match=rf"'T'.*{field.replace('[', '.').replace(']', '.')}"):
            check_trainer_state("T", state, opt, gen)


def json_copy(state):
    if isinstance(state, dict):
        return {k: json_copy(v) for k, v in state.items()}
    if isinstance(state, list):
        return [json_copy(v) for v in state]
    return state.clone() if isinstance(state, torch.Tensor) else state


# -- 2. the commit --------------------------------------------------------------------------------------
def test_checkpoint_json_describes_the_committed_epoch(tmp_path):
    run = tmp_path / "r"
    assert cli(*AE, "--epochs", "2", "--out", run).exit_code == 0
    manifest = rundir.read_manifest(run)
    assert manifest["epoch"] == 2
    assert set(manifest["files"]) == {rundir.CONFIG, rundir.WEIGHTS, rundir.TRAINER, rundir.METRICS}
    assert not [p.name for p in run.iterdir() if p.name.startswith(".") and p.name != rundir.LOCK]
    # a row beyond the committed epoch (an older vaelab appended before it saved) is not part of the run
    with open(run / rundir.METRICS, "a") as f:
        f.write(json.dumps({"epoch": 3, "loss": 1.0}) + "\n")
    assert [r["epoch"] for r in rundir.read_metrics(run)] == [1, 2]


def test_a_pending_roll_forward_is_read_and_finished(tmp_path):
    run = tmp_path / "r"
    assert cli(*AE, "--epochs", "2", "--out", run).exit_code == 0
    before = weights(run)
    # as if killed after checkpoint.json was renamed, before model.safetensors was
    os.replace(run / rundir.WEIGHTS, rundir.staged_path(run, 2, rundir.WEIGHTS))
    assert all(torch.equal(before[k], v) for k, v in weights(run).items())  # readers use the staged file
    r = cli(*AE, "--epochs", "3", "--resume", "--out", run)
    assert r.exit_code == 0, r.output
    assert [r["epoch"] for r in rundir.read_metrics(run)] == [1, 2, 3]
    assert not rundir.staged_path(run, 2, rundir.WEIGHTS).exists()


def test_a_replaced_weights_file_is_refused_on_resume(tmp_path):
    run, other = tmp_path / "r", tmp_path / "o"
    assert cli(*AE, "--epochs", "1", "--out", run).exit_code == 0
    assert cli(*AE, "--epochs", "1", "--seed", "3", "--out", other).exit_code == 0
    shutil.copy(other / rundir.WEIGHTS, run / rundir.WEIGHTS)
    assert_cli_error(cli(*AE, "--epochs", "2", "--resume", "--out", run), "model.safetensors", "checkpoint.json")


# -- 3. one writer ---------------------------------------------------------------------------------------
def test_a_second_writer_is_refused(tmp_path):
    pytest.importorskip("fcntl")
    run = tmp_path / "r"
    run.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time\n"
         f"f = open({str(run / rundir.LOCK)!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX); f.write('4242\\n'); "
         "f.flush(); print('locked', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = cli(*AE, "--epochs", "1", "--out", run)
        assert_cli_error(r, f"run folder '{run}' is being written by another process (pid 4242)")
        assert not (run / rundir.CONFIG).exists()
    finally:
        holder.kill()
        holder.wait()
    assert cli(*AE, "--epochs", "1", "--out", run).exit_code == 0  # the lock went with its holder


# -- 4. nothing overwritten unless asked ------------------------------------------------------------------
def test_existing_run_needs_resume_or_overwrite(tmp_path):
    run = tmp_path / "r"
    assert cli(*AE, "--epochs", "1", "--out", run).exit_code == 0
    (run / "notes.txt").write_text("mine")
    saved = (run / rundir.WEIGHTS).read_bytes()
    assert_cli_error(cli(*AE, "--epochs", "1", "--out", run),
                     f"'{run}' already holds a trained run; pass --resume to continue it or --overwrite to replace it")
    assert (run / rundir.WEIGHTS).read_bytes() == saved
    r = cli(*AE, "--epochs", "1", "--seed", "4", "--overwrite", "--out", run)
    assert r.exit_code == 0, r.output
    assert (run / rundir.WEIGHTS).read_bytes() != saved
    assert (run / "notes.txt").read_text() == "mine"
    assert [r["epoch"] for r in rundir.read_metrics(run)] == [1]


def test_resume_with_contradicting_options_names_them(tmp_path):
    run = tmp_path / "r"
    assert cli(*AE, "--epochs", "1", "--latent-dim", "2", "--out", run).exit_code == 0
    r = cli(*AE, "--epochs", "2", "--latent-dim", "3", "--hidden", "24", "--data", "swiss-roll", "--resume",
            "--out", run)
    assert_cli_error(r, "latent_dim", "hidden", "data", "swiss-roll", "contradict")
    assert [r["epoch"] for r in rundir.read_metrics(run)] == [1]
    # the same values, or none, are fine
    r = cli(*AE, "--epochs", "2", "--latent-dim", "2", "--resume", "--out", run)
    assert r.exit_code == 0, r.output
    assert [r["epoch"] for r in rundir.read_metrics(run)] == [1, 2]


def test_a_diverging_run_keeps_the_metrics(digits, tmp_path):
    train, _ = digits
    cfg = dict(batch_size=128, progress=False, device="cpu")
    fit(build_model("ae", input_shape=(1, 8, 8), latent_dim=2, hidden=(16,)), train,
        cfg=TrainConfig(epochs=1, **cfg), run_dir=tmp_path)
    saved = {f: (tmp_path / f).read_bytes() for f in (rundir.METRICS, rundir.WEIGHTS, rundir.MANIFEST)}
    with pytest.raises(TrainingDiverged):
        fit(build_model("ae", input_shape=(1, 8, 8), latent_dim=2, hidden=(16,)), train,
            cfg=TrainConfig(epochs=2, lr=1e8, max_bad_steps=2, **cfg), run_dir=tmp_path)
    for f, data in saved.items():
        assert (tmp_path / f).read_bytes() == data, f


# -- 5. killed anywhere ------------------------------------------------------------------------------------
# file operations of one ae commit (each preceded by the test hook): 4 files x (write, rename into
# .epoch-N.name) + checkpoint.json + 4 renames onto the final names
OPS = 13


def committed_when_killed(n: int) -> int | None:
    """The epoch a folder holds when the process is killed at hook call ``n`` (epoch e's commit is calls
    (e-1)*OPS+1 .. e*OPS; its checkpoint.json is written after the 9th)."""
    epoch, op = divmod(n - 1, OPS)
    done = epoch + (op >= 9)
    return done or None


# every file operation of epoch 2's commit, and the first, the checkpoint.json and the last of epoch 1's
KILL_AT = [1, 9, 10, 13, *range(OPS + 1, 2 * OPS + 1)]


def test_killed_at_any_file_operation_resumes_to_the_same_run(tmp_path):
    vaelab_bin = Path(sys.executable).parent / "vaelab"
    env = {**os.environ, **ENV, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = {}
    for n in KILL_AT:  # all at once (most of each is importing torch)
        procs[n] = subprocess.Popen([str(vaelab_bin), *AE, "--epochs", "3", "--out", str(tmp_path / f"k{n}")],
                                    env={**env, "VAELAB_TEST_KILL_AT": str(n)},
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    straight = tmp_path / "straight"
    assert cli(*AE, "--epochs", "3", "--out", straight).exit_code == 0
    want = weights(straight)
    want_rows = rundir.read_metrics(straight)
    for n, proc in procs.items():
        out, _ = proc.communicate(timeout=900)  # generous: 17 processes share the CPUs
        assert proc.returncode in (-9, 137), (n, proc.returncode, out)
        run = tmp_path / f"k{n}"
        manifest = rundir.read_manifest(run)
        assert (manifest and manifest["epoch"]) == committed_when_killed(n), (n, manifest, out)
        if manifest is None:  # killed before the first commit: no run; training anew works
            assert not rundir.holds_run(run), (n, list(run.iterdir()))
            r = cli(*AE, "--epochs", "3", "--out", run)
        else:
            vaelab.load(run)  # the folder loads as it was left
            done = [row["epoch"] for row in rundir.read_metrics(run)]
            assert done == list(range(1, manifest["epoch"] + 1)), (n, done)
            r = cli(*AE, "--epochs", "3", "--resume", "--out", run)
        assert r.exit_code == 0, (n, r.output)
        rows = rundir.read_metrics(run)
        assert [row["epoch"] for row in rows] == [1, 2, 3], n
        assert [row["loss"] for row in rows] == [row["loss"] for row in want_rows], n
        got = weights(run)
        assert all(torch.equal(got[k], v) for k, v in want.items()), n
        assert not [p.name for p in run.iterdir() if p.name.startswith(".") and p.name != rundir.LOCK], n


def test_train_run_refuses_only_when_asked(tmp_path):
    """The Python API refuses an existing run like the CLI (overwrite=False, the default); True clears
    vaelab's files first."""
    from vaelab.train.run import train_run

    cfg = TrainConfig(epochs=1, progress=False, device="cpu")
    train_run("pca", "digits", tmp_path, {"latent_dim": 3}, cfg)
    with pytest.raises(ValueError, match="already holds a trained run"):
        train_run("pca", "digits", tmp_path, {"latent_dim": 2}, cfg)
    assert vaelab.load(tmp_path).latent_dim == 3
    train_run("pca", "digits", tmp_path, {"latent_dim": 2}, cfg, overwrite=True)
    assert vaelab.load(tmp_path).latent_dim == 2 and rundir.read_manifest(tmp_path)["epoch"] == 1


def test_a_torn_last_metrics_line_is_dropped_and_a_bad_middle_line_named(tmp_path):
    from vaelab import rundir

    (tmp_path / rundir.METRICS).write_text('{"epoch": 1, "loss": 2.0}\n{"epoch": 2, "lo')
    assert rundir.read_metrics(tmp_path) == [{"epoch": 1, "loss": 2.0}]
    (tmp_path / rundir.METRICS).write_text('{"epoch": 1, "lo\n{"epoch": 2, "loss": 1.0}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl' line 1 is not JSON"):
        rundir.read_metrics(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_an_unavailable_device_is_a_clear_error():
    from vaelab.device import pick_device

    with pytest.raises(ValueError, match="CUDA is not available on this machine"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="is not a torch device"):
        pick_device("gpu0")
