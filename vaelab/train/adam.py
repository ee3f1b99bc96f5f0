"""Adam for the training loop: ``torch.optim.Adam`` with its fused kernel, called without two costs of
torch.optim's generic machinery.

- ``torch._dynamo``: torch.optim wraps ``Optimizer.add_param_group``, ``zero_grad``, ``state_dict``,
  ``load_state_dict`` and the functional ``adam`` in ``torch._disable_dynamo``, which imports
  torch._dynamo on its first call: 1.5-2.2 s and ~70 MB in every ``vaelab train`` process that never
  compiles anything (bench/RESULTS.md, "start-up"). ``Adam`` calls the undecorated functions; a run with
  ``compile=True`` imports dynamo anyway and is unaffected.
- per-step Python: ``Adam.step`` rebuilds its tensor lists and regroups them by device every step;
  here the plain case (fused kernel, one device and dtype, no amsgrad / maximize / differentiable /
  capturable, no GradScaler) is one ``torch._fused_adam_`` call over the same tensors, the same kernel
  ``torch.optim.Adam(fused=True)`` runs, so the updates are bitwise the same (tests/test_adam.py).

Everything else (the state format saved in trainer.pt, lr schedulers, GradScaler, other devices) is
``torch.optim.Adam``'s own; a case outside the plain one takes ``torch.optim.Adam.step`` unchanged.
"""
from __future__ import annotations

from typing import Any, Callable

import torch


def _undecorated(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The function under ``torch._disable_dynamo``'s wrapper (functools.wraps keeps it as __wrapped__)."""
    return getattr(fn, "__wrapped__", fn)


_Base = torch.optim.Optimizer


class Adam(torch.optim.Adam):
    """``torch.optim.Adam`` that does not import torch._dynamo and steps in one fused call (module docstring)."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _undecorated(_Base.add_param_group)(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        _undecorated(_Base.zero_grad)(self, set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return _undecorated(_Base.state_dict)(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        _undecorated(_Base.load_state_dict)(self, state_dict)

    def _plain(self, group: dict[str, Any]) -> bool:
        """The group's update is exactly one fused kernel call (see the module docstring)."""
        return bool(group["fused"]) and not (
            group["amsgrad"] or group["maximize"] or group["differentiable"] or group["capturable"]
            or group.get("decoupled_weight_decay", False) or isinstance(group["lr"], torch.Tensor)
            or getattr(self, "grad_scale", None) is not None or getattr(self, "found_inf", None) is not None)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        if closure is not None or not all(self._plain(g) for g in self.param_groups):
            return super().step(closure)
        all_lists = [self._group_lists(g) for g in self.param_groups]
        if any(lists is None for lists in all_lists):  # several devices / dtypes, sparse: torch's own grouping
            return super().step()
        for group, lists in zip(self.param_groups, all_lists):
            params, grads, avgs, sqs, steps = lists
            if not params:
                continue
            torch._foreach_add_(steps, 1)
            beta1, beta2 = group["betas"]
            torch._fused_adam_(params, grads, avgs, sqs, [], steps, amsgrad=False, lr=group["lr"],
                               beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                               maximize=False, grad_scale=None, found_inf=None)
        return None

    def _group_lists(self, group: dict[str, Any]) -> tuple[list[torch.Tensor], ...] | None:
        """(params, grads, exp_avgs, exp_avg_sqs, steps) of the group's parameters that have a gradient,
        their state created as torch.optim.Adam creates it for the fused kernel; None when they do not
        share one device and dtype, or one is complex or has a sparse gradient."""
        params, grads, avgs, sqs, steps = [], [], [], [], []
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            if g.is_sparse or p.is_complex() or (params and (p.device != params[0].device or p.dtype != params[0].dtype)):
                return None
            state = self.state[p]
            if not state:  # torch.optim.Adam's fused state: a float32 step counter on the parameter's device
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(g)
            avgs.append(state["exp_avg"])
            sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        return params, grads, avgs, sqs, steps
