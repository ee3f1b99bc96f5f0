"""Mixed precision (TrainConfig.precision): the networks run in 16 bits inside the training step only,
the weights stay fp32, the likelihood / KL / reported nats are fp32, and bad values are one error line."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from conftest import assert_cli_error, cli
from vaelab.models import build_model
from vaelab.objectives import Objective
from vaelab.train import TrainConfig, TrainingDiverged, fit, loop
from vaelab.train.epoch import finite_probe
from vaelab.train.precision import Precision

VAE = {"latent_dim": 4, "hidden": (32,)}


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 64, "lr": 3e-3, "device": "cpu", "progress": False, **kw})


def _dtypes_seen(model: nn.Module) -> list[tuple[bool, torch.dtype]]:
    """Record (training?, output dtype) of the encoder's first Linear on every call."""
    seen: list[tuple[bool, torch.dtype]] = []
    first = next(m for m in model.encoder.modules() if isinstance(m, nn.Linear))
    first.register_forward_hook(lambda m, a, out: seen.append((model.training, out.dtype)))
    return seen


def test_bf16_training_is_finite_keeps_fp32_weights_and_validates_in_fp32(digits):
    train, test = digits[0].subset(torch.arange(640)), digits[1].subset(torch.arange(200))
    torch.manual_seed(0)
    model = build_model("vae", input_shape=train.info.shape, **VAE)
    seen = _dtypes_seen(model)
    rows = fit(model, train, test, cfg=_cfg(precision="bf16", epochs=3))
    assert all(torch.isfinite(torch.tensor([r["loss"], r["val_elbo"]])).all() for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"]  # it learns
    assert rows[-1]["skipped_steps"] == 0
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {d for training, d in seen if training} == {torch.bfloat16}   # the training steps' GEMMs
    assert {d for training, d in seen if not training} == {torch.float32}  # validation scores
    hooked = [m for m in model.modules() if m._forward_pre_hooks]
    assert not hooked  # fit removed its autocast hooks: later use of the model is plain fp32


def test_bf16_terms_are_fp32_log_probs_of_the_network_outputs(digits):
    """The likelihood and KL are summed in fp32 from the networks' (bf16-computed) outputs: they equal a
    float64 recomputation from those outputs far below bf16's resolution (0.125 nats at 20-40 nats)."""
    train, _ = digits
    torch.manual_seed(0)
    model = build_model("vae", input_shape=train.info.shape, **VAE)
    x = train.take(64)  # (64, 1, 8, 8)
    precision = Precision("bf16", model, torch.device("cpu"))
    outs: dict[str, torch.Tensor] = {}  # what the model's code receives (hooks after precision's)
    model.decoder.register_forward_hook(lambda m, a, out: outs.__setitem__("logits", out))
    model.encoder.register_forward_hook(lambda m, a, out: outs.__setitem__("h", out))
    obj = Objective(model)
    with precision.autocast():
        terms = obj(x)
    precision.close()
    assert terms.recon.dtype == terms.kl.dtype == terms.loss.dtype == torch.float32
    logits, h = outs["logits"].double(), outs["h"].double()
    assert outs["logits"].dtype == torch.float32  # handed back as fp32 ...
    assert torch.equal(outs["logits"], outs["logits"].bfloat16().float())  # ... after a bf16 GEMM
    xd = x.double().reshape(logits.shape)
    recon64 = -nn.functional.binary_cross_entropy_with_logits(logits, xd, reduction="none").flatten(1).sum(1)
    mu, logvar = h.chunk(2, -1)
    kl64 = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)
    assert recon64.abs().min() > 16  # magnitudes where bf16 spacing is >= 0.125
    assert torch.allclose(terms.recon.double(), recon64, atol=1e-3, rtol=0)
    assert torch.allclose(terms.kl.double(), kl64, atol=1e-4, rtol=0)


def test_fp16_loss_scaling_reports_the_unscaled_loss(digits, monkeypatch):
    """fp16 is offered on CUDA only; its GradScaler path runs on the CPU too when the device check is
    lifted: the reported loss is the unscaled one (near the fp32 run's), weights stay fp32."""
    train, _ = digits
    rows = {}
    monkeypatch.setattr(loop, "check_precision", lambda precision, device: None)
    for precision in ("fp32", "fp16"):
        torch.manual_seed(0)
        model = build_model("vae", input_shape=train.info.shape, **VAE)
        rows[precision] = fit(model, train, None, cfg=_cfg(precision=precision))
        assert {p.dtype for p in model.parameters()} == {torch.float32}
    fp32, fp16 = rows["fp32"][-1]["loss"], rows["fp16"][-1]["loss"]
    assert abs(fp16 - fp32) < 0.02 * fp32, (fp16, fp32)


def test_precision_is_recorded_in_the_run(tmp_path):
    r = cli("train", "--model", "vae", "--data", "digits", "--epochs", "1", "--latent-dim", "2",
            "--precision", "bf16", "--out", tmp_path / "run", "--no-progress")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["precision"] == "bf16"


@pytest.mark.parametrize("value, needles", [
    ("fp8", ["precision='fp8'", "allowed", "bf16"]),
    pytest.param("fp16", ["precision='fp16'", "CUDA", "allowed on cpu"],
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is allowed on CUDA")),
])
def test_bad_precision_is_one_error_line(tmp_path, value, needles):
    r = cli("train", "--model", "vae", "--data", "digits", "--epochs", "1", "--device", "cpu",
            "--precision", value, "--out", tmp_path / "run", "--no-progress")
    assert_cli_error(r, *needles)
    assert not (tmp_path / "run" / "config.json").exists()


# -- the step's finiteness probe (every precision) ------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_finite_probe_flags_any_non_finite_gradient(bad):
    grads = [torch.randn(40, 30), torch.randn(30), torch.randn(5)]
    assert torch.isfinite(finite_probe(grads))
    assert finite_probe(grads) == pytest.approx(float(sum(g.double().sum() for g in grads)), rel=1e-5)
    grads[1][7] = bad
    assert not torch.isfinite(finite_probe(grads))


def test_a_nan_gradient_under_a_finite_loss_is_skipped(digits):
    train, _ = digits
    torch.manual_seed(0)
    model = build_model("vae", input_shape=train.info.shape, **VAE)
    weight = next(model.decoder.parameters())
    weight.register_hook(lambda g: g * float("nan"))  # the loss stays finite, one gradient does not
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TrainingDiverged, match="3 non-finite steps in a row"):
        fit(model, train, cfg=_cfg(epochs=1, max_bad_steps=3, output_init=False))  # only steps could change them
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_model_whose_kl_comes_out_in_16_bits_is_refused(digits):
    """A model that computes its KL from tensors kept from inside a network call gets them in bf16: fit
    says so instead of reporting degraded nats."""
    train, _ = digits
    model = build_model("vae", input_shape=train.info.shape, **VAE)
    parts = model.elbo_parts
    model.elbo_parts = lambda x, y=None, generator=None: (parts(x, y)[0], parts(x, y)[1].bfloat16())
    with pytest.raises(ValueError, match=r"precision='bf16': model 'vae' computes its kl in torch.bfloat16"):
        fit(model, train, cfg=_cfg(precision="bf16"))
    assert fit(model, train, cfg=_cfg(epochs=1))[-1]["skipped_steps"] == 0  # fp32 checks nothing
