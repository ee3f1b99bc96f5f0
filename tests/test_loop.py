"""The training loop's pieces: lr schedules (closed forms, warm-up, resume), callbacks (early stopping with
the best weights kept, time budget, TensorBoard), and the Objective module."""
from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from safetensors.torch import load_file

from vaelab import objectives, rundir
from vaelab.models import build_model
from vaelab.objectives import Objective, ObjectiveConfig
from vaelab.train import EarlyStopping, TensorBoard, TimeBudget, TrainConfig, fit
from vaelab.train import loop
from vaelab.train.epoch import steps_per_epoch
from vaelab.train.schedule import make_scheduler

AE = {"input_shape": (1, 8, 8), "latent_dim": 2, "hidden": (16,)}
LR = 0.01


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 3, "batch_size": 128, "lr": LR, "device": "cpu", "progress": False, **kw})


def _lrs(cfg: TrainConfig, spe: int, n_steps: int) -> list[float]:
    """The lr of each of the first n_steps optimisation steps."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = make_scheduler(opt, cfg, spe)
    out = []
    for _ in range(n_steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("kw, closed_form", [
    ({}, lambda e: LR),
    ({"lr_schedule": "exponential", "lr_gamma": 0.5}, lambda e: LR * 0.5 ** e),
    ({"lr_schedule": "exponential", "lr_gamma": 0.5, "lr_min": LR / 8}, lambda e: max(LR / 8, LR * 0.5 ** e)),
    ({"lr_schedule": "step", "lr_gamma": 0.1, "lr_step": 2}, lambda e: LR * 0.1 ** (e // 2)),
    ({"lr_schedule": "cosine", "epochs": 4, "lr_min": 1e-4},
     lambda e: 1e-4 + (LR - 1e-4) * (1 + math.cos(math.pi * min(1, e / 4))) / 2),
])
def test_schedules_follow_their_closed_form(kw, closed_form):
    spe = 4
    lrs = _lrs(_cfg(**kw), spe, 6 * spe)
    for epoch in (0, 0.25, 1, 1.5, 2, 3, 3.75, 4, 5):  # fractional epochs = step / spe
        step = int(epoch * spe)
        assert lrs[step] == pytest.approx(closed_form(epoch), rel=1e-9), epoch
    if kw.get("lr_schedule") == "cosine":
        assert lrs[-1] == pytest.approx(1e-4)  # stays at lr_min after the last epoch


def test_warmup_rises_linearly_then_follows_the_schedule():
    spe = 5
    lrs = _lrs(_cfg(lr_warmup=2, lr_schedule="exponential", lr_gamma=0.5), spe, 4 * spe)
    for step in range(4 * spe):
        e = step / spe
        assert lrs[step] == pytest.approx(LR * 0.5 ** e * min(1, (step + 1) / (2 * spe))), step
    assert lrs[0] == pytest.approx(LR * 1 / 10) and lrs[0] > 0


def test_fit_logs_the_lr_of_each_epoch(digits):
    train, _ = digits
    model = build_model("ae", **AE)
    history = fit(model, train, cfg=_cfg(lr_schedule="exponential", lr_gamma=0.5))
    assert [r["lr"] for r in history] == pytest.approx([LR, LR / 2, LR / 4])


def test_resume_continues_the_schedule_exactly(digits, tmp_path):
    train, _ = digits
    cfg = dict(lr_schedule="exponential", lr_gamma=0.7, lr_warmup=1.5, seed=3)
    torch.manual_seed(0)
    straight = build_model("ae", **AE)
    rows = fit(straight, train, cfg=_cfg(epochs=4, **cfg))
    torch.manual_seed(0)
    fit(build_model("ae", **AE), train, cfg=_cfg(epochs=2, **cfg), run_dir=tmp_path)
    state = rundir.load_trainer(tmp_path)
    assert state["scheduler"]["last_epoch"] == 2 * steps_per_epoch(len(train), 128, 1)
    resumed = build_model("ae", **AE)
    rows2 = fit(resumed, train, cfg=_cfg(epochs=4, **cfg), run_dir=tmp_path, resume=True)
    assert [r["lr"] for r in rows2] == pytest.approx([r["lr"] for r in rows], rel=1e-12)
    assert [r["epoch"] for r in rundir.read_metrics(tmp_path)] == [1, 2, 3, 4]
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=1e-6, atol=1e-7)


def _commits(monkeypatch) -> list[int]:
    """The epochs ``fit`` commits from now on (the commits still happen)."""
    seen: list[int] = []
    real = loop.checkpoint.commit

    def spy(out, model, meta, rows, epoch, *rest):
        assert [r["epoch"] for r in rows] == list(range(1, epoch + 1))  # every row so far, in the commit
        seen.append(epoch)
        return real(out, model, meta, rows, epoch, *rest)

    monkeypatch.setattr(loop.checkpoint, "commit", spy)
    return seen


class Stopper:
    """Stops training after epoch ``at`` (1-based), or raises KeyboardInterrupt there with ``interrupt``."""

    def __init__(self, at: int, interrupt: bool = False) -> None:
        self.at, self.interrupt = at, interrupt

    def on_epoch_end(self, row, model) -> bool:
        if row["epoch"] == self.at and self.interrupt:
            raise KeyboardInterrupt
        return row["epoch"] == self.at


def test_checkpoint_every_commits_every_nth_and_the_last_epoch(digits, tmp_path, monkeypatch):
    train, _ = digits
    seen = _commits(monkeypatch)
    torch.manual_seed(0)
    every = build_model("ae", **AE)
    rows = fit(every, train, cfg=_cfg(epochs=7, checkpoint_every=3), run_dir=tmp_path)
    assert seen == [3, 6, 7]
    assert [r["epoch"] for r in rundir.read_metrics(tmp_path)] == [1, 2, 3, 4, 5, 6, 7]
    torch.manual_seed(0)
    plain = fit(build_model("ae", **AE), train, cfg=_cfg(epochs=7))  # no run folder: the same training
    assert [r["loss"] for r in plain] == [r["loss"] for r in rows]
    saved = load_file(str(tmp_path / "model.safetensors"))
    for k, v in every.state_dict().items():
        assert torch.equal(saved[k], v)


def test_a_stop_is_committed_and_an_interrupt_keeps_the_last_commit(digits, tmp_path, monkeypatch):
    train, _ = digits
    seen = _commits(monkeypatch)
    fit(build_model("ae", **AE), train, cfg=_cfg(epochs=9, checkpoint_every=4), run_dir=tmp_path / "stop",
        callbacks=[Stopper(2)])
    assert seen == [2]  # the epoch a callback stopped at
    with pytest.raises(KeyboardInterrupt):
        fit(build_model("ae", **AE), train, cfg=_cfg(epochs=9, checkpoint_every=4), run_dir=tmp_path / "int",
            callbacks=[Stopper(6, interrupt=True)])
    assert seen == [2, 4]
    assert [r["epoch"] for r in rundir.read_metrics(tmp_path / "int")] == [1, 2, 3, 4]  # epoch 4, whole
    resumed = fit(build_model("ae", **AE), train, cfg=_cfg(epochs=5, checkpoint_every=4), run_dir=tmp_path / "int",
                  resume=True)
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4, 5] and seen == [2, 4, 5]


class Recorder:
    """Records each row it sees (a copy) and the weights after that epoch."""

    def __init__(self) -> None:
        self.rows, self.states = [], []

    def on_epoch_end(self, row, model) -> None:
        self.rows.append(dict(row))
        self.states.append({k: v.detach().clone() for k, v in model.state_dict().items()})


def _scripted_scores(monkeypatch, key: str, values: list[float]) -> None:
    """Make the validation score of epoch i be values[i] (the rest of score() stays real)."""
    it = iter(values)
    real = loop.score
    monkeypatch.setattr(loop, "score", lambda model, ds: {**real(model, ds), key: next(it)})


@pytest.mark.parametrize("monitor, values, best", [
    ("val_mse", [5.0, 3.0, 4.0, 3.5, 1.0], 2),    # lower is better
    ("val_elbo", [-5.0, -3.0, -4.0, -3.5, 0.0], 2),  # higher is better
])
def test_early_stopping_stops_and_keeps_the_best_weights(monkeypatch, digits, tmp_path, monitor, values, best):
    train, val = digits
    model_name = "ae" if monitor == "val_mse" else "vae"
    _scripted_scores(monkeypatch, monitor.removeprefix("val_"), values)
    rec = Recorder()
    model = build_model(model_name, **AE)
    history = fit(model, train, val.subset(torch.arange(100)), cfg=_cfg(epochs=10, early_stopping=2),
                  run_dir=tmp_path, callbacks=[rec])
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]  # two epochs without improving on epoch 2
    assert [r["best_epoch"] for r in history] == [1, 2, 2, 2]
    assert [r["best_epoch"] for r in rundir.read_metrics(tmp_path)] == [1, 2, 2, 2]
    saved = load_file(str(tmp_path / "model_best.safetensors"))
    for k, v in rec.states[best - 1].items():
        assert torch.equal(saved[k], v), k
    assert not all(torch.equal(saved[k], v) for k, v in model.state_dict().items())  # last != best
    assert rundir.read_config(tmp_path)["train"]["early_stopping"] == 2


def test_early_stopping_needs_what_it_monitors(digits):
    train, _ = digits
    with pytest.raises(ValueError, match="no validation data"):
        fit(build_model("ae", **AE), train, cfg=_cfg(early_stopping=2))
    with pytest.raises(ValueError, match="monitors 'val_elbo'"):
        EarlyStopping("val_elbo", 1).on_epoch_end({"epoch": 1, "val_mse": 1.0}, build_model("ae", **AE))


def test_callbacks_get_every_row_and_time_budget_stops(digits):
    train, _ = digits
    rec = Recorder()
    history = fit(build_model("ae", **AE), train, cfg=_cfg(epochs=5),
                  callbacks=[rec, TimeBudget(1e-9, training_only=True)])
    assert len(history) == 1 and rec.rows == history
    history = fit(build_model("ae", **AE), train, cfg=_cfg(epochs=5, max_minutes=1e-9))
    assert len(history) == 1
    budget = TimeBudget(10)
    assert not budget.on_epoch_end({"epoch": 1, "seconds": 1.0}, None)
    with pytest.raises(ValueError, match="minutes=0"):
        TimeBudget(0)


def test_closed_form_fit_calls_the_callbacks(digits):
    train, val = digits
    rec = Recorder()
    history = fit(build_model("pca", input_shape=(1, 8, 8), latent_dim=2), train, val, callbacks=[rec])
    assert rec.rows == history and len(history) == 1


def test_tensorboard_writes_or_explains(digits, tmp_path):
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(ImportError, match=r"vaelab\[tensorboard\]"):
            TensorBoard(tmp_path)
        return
    train, _ = digits
    tb = TensorBoard(tmp_path / "tb")
    fit(build_model("ae", **AE), train, cfg=_cfg(epochs=2), callbacks=[tb])
    tb.close()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())


@pytest.mark.parametrize("kw, message", [
    ({"lr_schedule": "foo"}, r"lr_schedule='foo' is not known; allowed: \['constant'"),
    ({"monitor": "val_acc"}, r"monitor='val_acc' is not known; allowed"),
    ({"lr_gamma": 0.0}, r"lr_gamma=0.0 must be in \(0, 1\]"),
    ({"lr_min": 1.0}, r"lr_min=1.0 must be <= lr"),
    ({"early_stopping": -1}, r"early_stopping=-1 must be >= 0"),
    ({"max_minutes": -1.0}, r"max_minutes=-1.0 must be >= 0"),
    ({"lr_step": 0}, r"lr_step=0 must be >= 1"),
    ({"checkpoint_every": 0}, r"checkpoint_every=0 must be >= 1"),
])
def test_config_checks_name_the_bad_value(kw, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kw)


@pytest.mark.parametrize("kind", ["elbo", "iwae"])
def test_objective_module_gives_the_same_terms_as_compute(digits, kind):
    x = digits[0].x[:16]
    model = build_model("vae", **AE)
    cfg = ObjectiveConfig(kind=kind, k=3, beta=0.5, warmup=2.0)
    torch.manual_seed(1)
    ref = objectives.compute(model, x, None, cfg, 0.5)
    torch.manual_seed(1)
    obj = Objective(model, cfg)
    terms = obj(x, None, 0.5)
    for name in ("loss", "elbo", "recon", "kl"):
        torch.testing.assert_close(getattr(terms, name), getattr(ref, name))
    terms.loss.backward()
    assert obj.loss_seen() == pytest.approx(float(ref.loss))  # the probe carries the loss
    assert obj.probe.item() == 0 and all(p is not obj.probe for p in model.parameters())
