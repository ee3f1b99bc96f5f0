"""Data-parallel training (DistributedDataParallel via train.fit) on CPU with the gloo backend.

Two ranks are real processes: ``torch.multiprocessing`` for the numeric checks, ``torchrun`` for the CLI.
The model is the autoencoder (no sampling noise), so two ranks on batches of B must match one process on
batches of 2B step for step."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import vaelab
from vaelab import rundir
from vaelab.data import Dataset, load_dataset, split_validation
from vaelab.models import build_model
from vaelab.train import TrainConfig, TrainingDiverged, distributed, fit

WORLD = 2
N = 249          # odd: the last global batch (57) splits 29 / 28, so gradients must be weighted by shard size
BATCH = 32       # per rank; one process uses WORLD * BATCH
MODEL = {"input_shape": (1, 8, 8), "latent_dim": 2, "hidden": (32,)}


def _data() -> Dataset:
    return load_dataset("digits", "train").subset(torch.arange(N))


def _cfg(batch_size: int, **kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": batch_size, "lr": 1e-2, "seed": 0, "device": "cpu",
                          "progress": False, **kw})


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    """One rank: trains the ae on its shards, then a run where rank 1's data is all NaN."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=60))
    wrapped: list[str] = []
    real_wrap = distributed.wrap

    def wrap(objective, device):  # records what fit trains through
        out = real_wrap(objective, device)
        wrapped.append(type(out).__name__)
        return out

    distributed.wrap = wrap
    try:
        torch.manual_seed(100 + rank)  # different initial weights per rank: fit must start all from rank 0's
        model = build_model("ae", **MODEL)
        history = fit(model, _data(), cfg=_cfg(BATCH))
        result: dict = {"state": model.state_dict(), "history": history, "wrapped": list(wrapped)}

        # a callback on rank 0 (a spent time budget) stops every rank after the same epoch
        stopped = fit(build_model("ae", **MODEL), _data(), cfg=_cfg(BATCH, epochs=3, max_minutes=1e-9))
        result["stopped_epochs"] = [r["epoch"] for r in stopped]

        data = _data()
        if rank == 1:
            data = Dataset(torch.full_like(data.x, math.nan), data.y, data.info)
        try:
            fit(build_model("ae", **MODEL), data, cfg=_cfg(BATCH, max_bad_steps=2))
            result["nan_run"] = "finished"
        except TrainingDiverged:
            result["nan_run"] = "diverged"
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    ctx = mp.start_processes(_worker, args=(str(out / "rendezvous"), str(out)), nprocs=WORLD,
                             join=False, start_method="spawn")
    try:
        for _ in range(12):  # up to 120 s; a hang (ranks disagreeing on a collective) fails the test
            if ctx.join(timeout=10):
                break
        else:
            pytest.fail("distributed workers did not finish in 120 s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


def test_fit_trains_through_distributed_data_parallel(ranks):
    assert [r["wrapped"] for r in ranks] == [["DistributedDataParallel"]] * WORLD


def test_a_stop_on_rank_0_stops_every_rank(ranks):
    assert [r["stopped_epochs"] for r in ranks] == [[1], [1]]


def test_ranks_end_with_identical_weights(ranks):
    a, b = ranks[0]["state"], ranks[1]["state"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_two_ranks_equal_one_process_on_the_global_batch(ranks):
    torch.manual_seed(100)  # rank 0's initial weights
    model = build_model("ae", **MODEL)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    history = fit(model, _data(), cfg=_cfg(WORLD * BATCH))
    for k, v in model.state_dict().items():
        assert not torch.allclose(v, init[k]), f"{k} did not train: the comparison would be vacuous"
        torch.testing.assert_close(ranks[0]["state"][k], v, rtol=1e-4, atol=1e-5,
                                   msg=lambda m, k=k: f"{k}: {m}")
    for rank_row, row in zip(ranks[0]["history"], history):  # epoch metrics summed over both ranks
        assert rank_row["loss"] == pytest.approx(row["loss"], rel=1e-5)
        assert rank_row["examples_per_s"] * rank_row["seconds"] == pytest.approx(N)


def test_a_non_finite_rank_makes_every_rank_skip_and_stop(ranks):
    # rank 0's data is clean: it stops only because the skip decision is shared
    assert [r["nan_run"] for r in ranks] == ["diverged", "diverged"]


def test_torchrun_cli_writes_one_loadable_run(tmp_path):
    out = tmp_path / "runs" / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={WORLD}",
           "-m", "vaelab", "train", "--model", "ae", "--data", "digits", "--latent-dim", "2", "--hidden", "32",
           "--epochs", "2", "--batch-size", "64", "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["ddp"]
    assert {"config.json", "model.safetensors", "metrics.jsonl"} <= {p.name for p in out.iterdir()}
    assert rundir.read_config(out)["world_size"] == WORLD
    train, _ = split_validation(load_dataset("digits", "train"), 0.1, seed=0)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:  # both ranks' examples, validated once
        assert r["examples_per_s"] * r["seconds"] == pytest.approx(len(train))
        assert "val_mse" in r
    model = vaelab.load(out)
    x = train.x[:5]
    assert model.reconstruct(x).shape == x.shape
