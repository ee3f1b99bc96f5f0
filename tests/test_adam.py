"""vaelab.train.adam.Adam: the same updates and state as torch.optim.Adam(fused=True), bit for bit, on
its own fast path and on every fallback; and training, saving and resuming never import torch._dynamo."""
from __future__ import annotations

import copy
import subprocess
import sys
import textwrap

import pytest
import torch

from vaelab.train.adam import Adam


def _params(seed: int = 0, dtypes: tuple[torch.dtype, ...] = (torch.float32,)) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(7, 5), (5,), (3, 7), (3,)]
    return [torch.nn.Parameter(torch.randn(s, generator=g).to(dtypes[i % len(dtypes)]))
            for i, s in enumerate(shapes)]


def _run(opt_cls, steps: int = 6, skip_grad: int | None = 2, dtypes=(torch.float32,), **kw) -> tuple:
    """``steps`` Adam steps on fixed pseudo-random gradients (parameter ``skip_grad`` gets none on odd
    steps), the lr changed by a LambdaLR every step; returns (parameters, optimizer state_dict)."""
    ps = _params(dtypes=dtypes)
    opt = opt_cls(ps, lr=0.05, eps=1e-6, fused=True, **kw)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    g = torch.Generator().manual_seed(1)
    for s in range(steps):
        opt.zero_grad(set_to_none=True)
        for i, p in enumerate(ps):
            grad = torch.randn(p.shape, generator=g).to(p.dtype)
            p.grad = None if (i == skip_grad and s % 2) else grad
        opt.step()
        sched.step()
    return [p.detach().clone() for p in ps], opt.state_dict()


def _assert_same(a: tuple, b: tuple) -> None:
    (pa, sa), (pb, sb) = a, b
    for x, y in zip(pa, pb):
        assert torch.equal(x, y)
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        assert sa["state"][k].keys() == sb["state"][k].keys()
        for name, v in sa["state"][k].items():
            assert v.dtype == sb["state"][k][name].dtype and v.device == sb["state"][k][name].device
            assert torch.equal(v, sb["state"][k][name]), (k, name)


@pytest.mark.parametrize("kw", [{}, {"weight_decay": 0.1}, {"amsgrad": True}, {"maximize": True},
                                {"betas": (0.5, 0.9)}])
def test_updates_and_state_equal_torch_fused_adam(kw):
    """The fast path ({}, weight decay, other betas) and the fallbacks (amsgrad, maximize) alike."""
    _assert_same(_run(Adam, **kw), _run(torch.optim.Adam, **kw))


def test_parameters_of_two_dtypes_take_torchs_grouping():
    mixed = (torch.float32, torch.float64)
    _assert_same(_run(Adam, dtypes=mixed), _run(torch.optim.Adam, dtypes=mixed))


@pytest.mark.parametrize("second", [torch.float32, torch.float64])
def test_several_param_groups_step_once_each(second):
    """Two groups, the second all float32 (fast path) or mixed (torch's grouping for the whole step)."""
    def run(cls):
        a, b = _params(0), _params(1, dtypes=(torch.float32, second))
        opt = cls([{"params": a}, {"params": b, "lr": 0.2}], lr=0.05, fused=True)
        g = torch.Generator().manual_seed(2)
        for _ in range(3):
            for p in a + b:
                p.grad = torch.randn(p.shape, generator=g).to(p.dtype)
            opt.step()
        return [p.detach().clone() for p in a + b], opt.state_dict()
    _assert_same(run(Adam), run(torch.optim.Adam))


def test_a_closure_is_evaluated():
    p = torch.nn.Parameter(torch.ones(3))
    opt = Adam([p], lr=0.1, fused=True)

    def closure():
        opt.zero_grad()
        loss = (p ** 2).sum()
        loss.backward()
        return loss

    assert float(opt.step(closure).detach()) == 3.0 and bool((p < 1).all())


@pytest.mark.parametrize("first, second", [(Adam, torch.optim.Adam), (torch.optim.Adam, Adam)])
def test_state_dict_moves_between_the_two(first, second):
    """A trainer.pt written by either continues identically in the other."""
    ps = _params()
    a = first(ps, lr=0.01, fused=True)
    for _ in range(3):
        for p in ps:
            p.grad = torch.full_like(p, 0.3)
        a.step()
    saved = a.state_dict()
    runs = []
    for cls in (first, second):
        qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
        b = cls(qs, lr=0.01, fused=True)
        b.load_state_dict(copy.deepcopy(saved))  # (loading shares the tensors; a step updates them)
        for q in qs:
            q.grad = torch.full_like(q, -0.2)
        b.step()
        runs.append(([q.detach() for q in qs], b.state_dict()))
    _assert_same(*runs)


def test_training_saving_and_resuming_do_not_import_dynamo(tmp_path):
    """The point of the class: a whole fit, its checkpoints and a resume stay clear of torch._dynamo
    (1.5-2.2 s and ~70 MB a process when imported)."""
    code = textwrap.dedent(f"""
        import sys, torch
        from vaelab.data import DataInfo, Dataset
        from vaelab.models import build_model
        from vaelab.train import TrainConfig, fit
        x = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        data = Dataset(x, None, DataInfo(name="toy", shape=(1, 4, 4)))
        cfg = dict(batch_size=16, device="cpu", progress=False)
        fit(build_model("vae", input_shape=(1, 4, 4), latent_dim=2, hidden=(8,)), data,
            cfg=TrainConfig(epochs=1, **cfg), run_dir={str(tmp_path / 'run')!r})
        rows = fit(build_model("vae", input_shape=(1, 4, 4), latent_dim=2, hidden=(8,)), data,
                   cfg=TrainConfig(epochs=2, **cfg), run_dir={str(tmp_path / 'run')!r}, resume=True)
        assert [r["epoch"] for r in rows] == [1, 2], rows
        print("dynamo imported:", "torch._dynamo" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "dynamo imported: False" in out.stdout, out.stdout
