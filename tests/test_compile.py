"""TrainConfig.compile: the objective runs through torch.compile once the KL weight is constant; it learns
as the eager step does, saves the same checkpoint keys, and warm-up epochs do not recompile every step."""
from __future__ import annotations

import torch
from torch._dynamo.utils import counters

from vaelab.models import build_model
from vaelab.objectives import ObjectiveConfig
from vaelab.rundir.checkpoint import load as load_run_model
from vaelab.train import TrainConfig, fit

VAE = {"latent_dim": 4, "hidden": (32,)}


def _fit(train, test, objective=ObjectiveConfig(), run=None, **kw):
    torch.manual_seed(0)
    model = build_model("vae", input_shape=train.info.shape, **VAE)
    cfg = TrainConfig(**{"epochs": 3, "batch_size": 64, "lr": 3e-3, "device": "cpu", "progress": False, **kw})
    return model, fit(model, train, test, objective=objective, cfg=cfg, run_dir=run)


def test_compiled_training_learns_like_eager_saves_the_same_keys_and_compiles_once(digits, tmp_path):
    train, test = digits[0].subset(torch.arange(640)), digits[1].subset(torch.arange(200))
    warm = ObjectiveConfig(warmup=1.0)  # epoch 1: KL weight rising every step (eager); then constant (compiled)
    eager, rows_e = _fit(train, test, objective=warm)
    torch._dynamo.reset()
    counters.clear()
    compiled, rows_c = _fit(train, test, objective=warm, compile=True, run=tmp_path / "run")
    # 10 steps per epoch: one graph captured after the warm-up, not one per step
    assert 1 <= counters["stats"]["unique_graphs"] <= 2
    assert rows_c[0]["loss"] == rows_e[0]["loss"]  # the warm-up epoch ran the same eager steps
    # compiled epochs: the same model learning, up to the posterior draws (inductor draws its own random
    # numbers); the last validation ELBOs agree within 3%
    assert rows_c[-1]["loss"] < rows_c[0]["loss"]
    assert abs(rows_c[-1]["val_elbo"] - rows_e[-1]["val_elbo"]) < 0.03 * abs(rows_e[-1]["val_elbo"])
    assert set(compiled.state_dict()) == set(eager.state_dict())  # no _orig_mod. prefixes
    loaded = load_run_model(tmp_path / "run")
    for key, value in compiled.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
