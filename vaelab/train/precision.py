"""Mixed precision for training: the model's networks under ``torch.autocast``, everything else in fp32.

With ``precision="bf16"`` or ``"fp16"`` each outermost network call the model makes during a training step
(its encoder, decoder, flow steps, ...: any submodule's ``forward``) runs under ``torch.autocast``, so its
GEMMs and convolutions run in 16 bits against the fp32 master weights (Adam keeps and updates fp32), and
hands its floating outputs back as fp32. The model's own code after that (the likelihood's log_prob, the
KL, the objective) therefore computes every reported nat in fp32, and validation / evaluation run in fp32
(autocast is on only inside the training step). ``fp16`` adds loss scaling (``torch.amp.GradScaler``); it
is offered on CUDA only. ``fp32`` installs nothing.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """ValueError when ``device`` cannot train at ``precision``, naming what it can."""
    allowed = ["fp32", *(["bf16"] if _bf16_ok(device) else []), *(["fp16"] if device.type == "cuda" else [])]
    if precision not in allowed:
        why = "fp16 needs a CUDA device (autocast with loss scaling)" if precision == "fp16" \
            else f"no bf16 autocast on {device}"
        raise ValueError(f"precision={precision!r}: {why}; allowed on {device.type}: {allowed}")


def _bf16_ok(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu"  # (fast only on CPUs with bf16 instructions: AVX512-BF16 / AMX)


class NetworkAutocast:
    """Forward hooks on every submodule of ``model``: while ``on()`` is active, the outermost submodule call
    enters autocast at ``dtype`` and leaves it on return, casting floating outputs to fp32."""

    def __init__(self, model: nn.Module, dtype: torch.dtype, device_type: str) -> None:
        self.dtype, self.device_type = dtype, device_type
        self.active, self.depth = False, 0
        self._ctx: torch.autocast | None = None
        self._handles = []
        for m in model.modules():
            if m is not model:
                self._handles.append(m.register_forward_pre_hook(self._enter))
                self._handles.append(m.register_forward_hook(self._leave, always_call=True))

    def _enter(self, module: nn.Module, args: Any) -> None:
        if not self.active:
            return
        if self.depth == 0:
            self._ctx = torch.autocast(self.device_type, dtype=self.dtype)
            self._ctx.__enter__()
        self.depth += 1

    def _leave(self, module: nn.Module, args: Any, output: Any) -> Any:
        if not self.active or self.depth == 0:
            return None
        self.depth -= 1
        if self.depth > 0:
            return None
        assert self._ctx is not None
        self._ctx.__exit__(None, None, None)
        self._ctx = None
        return _to_fp32(output)

    @contextmanager
    def on(self) -> Iterator[None]:
        """Autocast the networks inside this block (the training step's forward)."""
        self.active, self.depth = True, 0
        try:
            yield
        finally:
            if self._ctx is not None:  # a forward that raised inside a network
                self._ctx.__exit__(None, None, None)
                self._ctx = None
            self.active, self.depth = False, 0

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def _to_fp32(out: Any) -> Any:
    """Floating tensors in ``out`` (a tensor, or a tuple / list / dict of them) as fp32."""
    if isinstance(out, torch.Tensor):
        return out.float() if out.dtype in (torch.bfloat16, torch.float16) else out
    if isinstance(out, tuple) and hasattr(out, "_fields"):  # a namedtuple
        return type(out)(*map(_to_fp32, out))
    if isinstance(out, (tuple, list)):
        return type(out)(map(_to_fp32, out))
    if isinstance(out, dict):
        return {k: _to_fp32(v) for k, v in out.items()}
    return out


class Precision:
    """What a training step needs for ``precision``: ``autocast()`` (a context for the loss computation),
    ``scaler`` (a GradScaler for fp16, else None). ``close()`` removes the hooks."""

    def __init__(self, precision: str, model: nn.Module, device: torch.device) -> None:
        self.name = precision
        self._amp = NetworkAutocast(model, DTYPES[precision], device.type) if precision in DTYPES else None
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    @contextmanager
    def autocast(self) -> Iterator[None]:
        """The training step's forward: the networks under autocast (a no-op at fp32)."""
        if self._amp is None:
            yield
            return
        with self._amp.on():
            yield

    def check_terms(self, terms: Any, model_name: str) -> None:
        """Refuse a model whose likelihood or KL came out in 16 bits (it computed them from tensors captured
        inside a network call, e.g. through a callback): the nats it reports would be degraded."""
        if self._amp is None:
            return
        low = [k for k in ("recon", "kl") if getattr(terms, k).dtype in (torch.bfloat16, torch.float16)]
        if low:
            raise ValueError(f"precision={self.name!r}: model {model_name!r} computes its {' and '.join(low)} in "
                             f"{getattr(terms, low[0]).dtype} under autocast (from tensors it keeps from inside a "
                             "network call); train it with precision='fp32'")

    def close(self) -> None:
        if self._amp is not None:
            self._amp.remove()
