"""The ResNet encoder/decoder (``arch="resnet"``): shapes, defaults per image size, refusals, normalisation,
the model contract suite for resnet vae/cvae/ae, the CLI, and a tiny training run that lowers the loss."""
from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import BUILT_BATCH, assert_cli_error, cli
from vaelab.models import build_model
from vaelab.nn import Decoder, Encoder
from vaelab.resnet import ResBlock, ResNetSpec, default_channels, grid
from vaelab.train import TrainConfig, fit

# The model contract suite (tests/test_contract.py) run again over resnet configurations: pytest collects
# these imported tests here, where the ``built`` fixture below replaces conftest's.
from test_contract import (  # noqa: F401
    test_conditional_models_need_y, test_decode_returns_distribution_with_input_shapes,
    test_elbo_parts_and_loss_are_finite, test_encode_returns_distribution_with_latent_shapes,
    test_fit_runs_a_couple_of_epochs, test_log_weights_shape, test_reconstruct_shapes_flat_and_image,
    test_sample_rejects_bad_arguments, test_sample_shapes, test_save_load_round_trip_gives_equal_outputs,
    test_temperature_shrinks_the_spread_of_prior_codes)

SMALL = {"arch": "resnet", "channels": (8, 16), "hidden": (32,), "latent_dim": 2}
HVAE = {"arch": "resnet", "channels": (8, 16), "hidden": ((32,),), "latent_dims": (4, 2)}
VARIANTS = {  # test id -> (model, constructor arguments besides input_shape)
    "vae": ("vae", SMALL),
    "cvae": ("cvae", {**SMALL, "n_classes": 10}),
    "ae": ("ae", SMALL),
    "vae-batchnorm-2blocks": ("vae", {**SMALL, "norm": "batch", "blocks": (2, 1)}),
    "vae-nonorm-silu": ("vae", {**SMALL, "norm": "none", "activation": "silu"}),
    "hvae-top-down": ("hvae", HVAE),
    "hvae-bottom-up": ("hvae", {**HVAE, "inference": "bottom-up"}),
}


@pytest.fixture(params=sorted(VARIANTS))
def built(request, digits):
    """A resnet model on the 8x8 digits: (model in eval mode, x (6, 1, 8, 8), y (6,) or None)."""
    name, kwargs = VARIANTS[request.param]
    torch.manual_seed(0)
    model = build_model(name, input_shape=(1, 8, 8), **kwargs)
    _, test = digits
    x, y = test.x[:BUILT_BATCH], test.y[:BUILT_BATCH]
    return model.eval(), x, (y if model.capabilities.needs_labels else None)


def spec(shape: tuple[int, ...], **kw) -> ResNetSpec:
    return ResNetSpec(kw.pop("channels", default_channels(shape)), **kw)


@pytest.mark.parametrize("side", [28, 32, 64])
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("out_mult", [1, 3])
def test_encoder_decoder_shapes(side, c, out_mult):
    shape = (c, side, side)
    s = spec(shape, channels=(4, 8, 8, 8)[: len(default_channels(shape))])  # default stage count, narrow
    enc, dec = Encoder(shape, (16,), 6, "resnet", resnet=s), Decoder(shape, (16,), 3, "resnet", out_mult=out_mult,
                                                                     resnet=s)
    x = torch.rand(2, *shape)
    h = enc(x)
    assert h.shape == (2, 6)
    out = dec(h[:, :3])
    assert out.shape == (2, c * out_mult, side, side)
    assert dec(torch.randn(4, 2, 3)).shape == (4, 2, c * out_mult, side, side)  # extra leading dims


def test_default_channels_per_image_size():
    """Stages halve until the last is 4..8 px on its shorter side; widths 32, 64, 128, 256."""
    table = {8: ((32, 64), 4), 16: ((32, 64), 8), 28: ((32, 64, 128), 7), 32: ((32, 64, 128), 8),
             64: ((32, 64, 128, 256), 8), 128: ((32, 64, 128, 256, 256), 8)}
    for side, (channels, last) in table.items():
        assert default_channels((3, side, side)) == channels, side
        assert grid((3, side, side), len(channels)) == (last, last)
    cfg = build_model("vae", input_shape=(3, 32, 32), arch="resnet").config
    assert cfg.channels == (32, 64, 128)  # () resolved, so config.json records the widths used
    assert build_model("vae", input_shape=(3, 32, 32)).config.channels == ()  # mlp: no stages


@pytest.mark.parametrize("shape", [(3, 30, 30), (1, 28, 20), (3, 33, 17), (1, 8, 8)])
def test_sizes_that_do_not_halve_evenly_round_trip(shape):
    model = build_model("vae", input_shape=shape, arch="resnet", channels=(4, 8, 8), latent_dim=3,
                        likelihood="gaussian")
    x = torch.rand(2, *shape)
    q = model.encode(x)
    assert q.mean.shape == (2, 3)
    assert model.decode(q.rsample()).mean.shape == x.shape
    assert model.reconstruct(x).shape == x.shape


def test_out_mult_gives_each_value_its_own_outputs():
    """out_mult=k: k output channels per data channel, and each depends on z (none is padding)."""
    shape = (3, 16, 16)
    torch.manual_seed(0)
    dec = Decoder(shape, (), 4, "resnet", out_mult=5, resnet=spec(shape, channels=(4, 8)))
    z = torch.randn(2, 4, requires_grad=True)
    out = dec(z)
    assert out.shape == (2, 15, 16, 16)
    grads = [torch.autograd.grad(out[:, ch].sum(), z, retain_graph=True)[0] for ch in range(15)]
    assert all(g.abs().sum() > 0 for g in grads)


def test_resblock_starts_as_the_identity_and_learns():
    block = ResBlock(8, "group", torch.nn.ReLU)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)
    block(x).square().sum().backward()
    assert block.f[-1].weight.grad.abs().sum() > 0  # the zero layer still gets a gradient


@pytest.mark.parametrize("norm,independent_in_train", [("group", True), ("none", True), ("batch", False)])
def test_per_example_outputs_and_the_batch(norm, independent_in_train):
    """Group norm (the default) and none: an example's code does not depend on the rest of its batch, in train
    mode too; batch norm: it does in train mode (so a per-example ELBO is not), and does not in eval mode."""
    torch.manual_seed(0)
    model = build_model("vae", input_shape=(3, 16, 16), arch="resnet", channels=(4, 8), norm=norm,
                        latent_dim=3, likelihood="gaussian")
    x = torch.rand(8, 3, 16, 16)
    for training in (True, False):
        model.train(training)
        alone, together = model.encode(x[:1]).mean, model.encode(x).mean[:1]
        same = torch.allclose(alone, together, atol=1e-5)
        assert same == (independent_in_train or not training), (norm, training)


@pytest.mark.parametrize("kwargs,needle", [
    ({"input_shape": (1, 8, 8), "channels": (4, 8, 16, 32, 64)}, "needs a side >= 16 px; got 8x8"),
    ({"input_shape": (64,)}, "needs image data (C, H, W)"),
    ({"input_shape": (1, 8, 8), "channels": (4, 0)}, "channels=(4, 0) must list one width >= 1"),
    ({"input_shape": (1, 8, 8), "channels": (4, 8), "blocks": (1, 1, 1)}, "blocks=(1, 1, 1) must be 1 entry"),
    ({"input_shape": (1, 8, 8), "norm": "layer"}, "norm='layer' is not known; allowed: ['group', 'batch', 'none']"),
])
def test_bad_resnet_configs_are_refused(kwargs, needle):
    with pytest.raises(ValueError) as e:
        build_model("vae", arch="resnet", **kwargs)
    assert needle in str(e.value)


def test_channels_without_resnet_are_refused():
    with pytest.raises(ValueError, match="channels=\\(8,\\) only applies to arch='resnet'"):
        build_model("ae", input_shape=(1, 8, 8), channels=(8,))


def test_cli_trains_a_resnet_and_refuses_a_bad_one(tmp_path):
    out = tmp_path / "run"
    r = cli("train", "--model", "vae", "--data", "digits", "--arch", "resnet", "--channels", "4,8",
            "--blocks", "1", "--norm", "group", "--hidden", "16", "--epochs", "1", "--batch-size", "128",
            "--no-progress", "--device", "cpu", "--out", out)
    assert r.exit_code == 0, r.output
    model = json.loads((out / "config.json").read_text())["model_config"]
    assert model["arch"] == "resnet" and model["channels"] == [4, 8] and model["norm"] == "group"
    r = cli("train", "--model", "vae", "--data", "digits", "--arch", "resnet", "--channels", "4,8,8,8,8",
            "--epochs", "1", "--no-progress", "--out", tmp_path / "bad")
    assert_cli_error(r, "needs a side >= 16 px; got 8x8")


def test_training_a_resnet_vae_on_digits_lowers_the_loss(digits):
    """A few epochs on the 8x8 digits: the validation negative ELBO drops well below its value at the
    start (an untrained decoder's Bernoulli cross-entropy is about 64 * log 2 = 44 nats)."""
    train, test = digits
    torch.manual_seed(0)
    model = build_model("vae", input_shape=(1, 8, 8), arch="resnet", channels=(8, 16), hidden=(64,),
                        latent_dim=4)
    history = fit(model, train.subset(torch.arange(1024)), test.subset(torch.arange(200)),
                  cfg=TrainConfig(epochs=4, batch_size=64, lr=2e-3, progress=False, device="cpu"))
    first, last = history[0]["loss"], history[-1]["loss"]
    assert all(math.isfinite(r["loss"]) for r in history)
    assert last < first - 3, [r["loss"] for r in history]
    assert -history[-1]["val_elbo"] < 0.8 * 64 * math.log(2), history[-1]


def test_channels_last_trains_like_nchw_saves_nchw_and_resumes(tmp_path):
    """TrainConfig.channels_last: the conv weights train in NHWC memory, the losses follow the NCHW run's (the
    same math; conv kernels differ in summation order), model.safetensors holds ordinary contiguous tensors
    that load into a fresh model, and --resume continues such a run."""
    from vaelab.rundir.checkpoint import load as load_run_model
    from vaelab.train import TrainConfig
    from vaelab.train.run import train_run

    opts = {**SMALL, "latent_dim": 3}
    runs = {}
    for name, cl in (("nchw", False), ("nhwc", True)):
        cfg = TrainConfig(epochs=2, batch_size=64, lr=2e-3, seed=0, device="cpu", progress=False, channels_last=cl)
        torch.manual_seed(0)
        runs[name] = train_run("vae", "digits", tmp_path / name, opts, cfg, val_fraction=0.1)
    model, rows = runs["nhwc"]
    convs = [p for p in model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert any(not p.is_contiguous() for p in convs)  # (a weight with one input channel or 1x1 kernels is both)
    for a, b in zip(runs["nchw"][1], rows):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3) and a["val_elbo"] == pytest.approx(b["val_elbo"], rel=1e-3)
    loaded = load_run_model(tmp_path / "nhwc")
    assert all(v.is_contiguous() for v in loaded.state_dict().values())
    x = torch.rand(5, 1, 8, 8)
    model.eval()
    assert torch.allclose(loaded.encode(x).mean, model.encode(x).mean, atol=1e-5)
    cfg = TrainConfig(epochs=3, batch_size=64, lr=2e-3, seed=0, device="cpu", progress=False, channels_last=True)
    _, resumed = train_run("vae", "digits", tmp_path / "nhwc", opts, cfg, val_fraction=0.1, resume=True)
    assert [r["epoch"] for r in resumed] == [1, 2, 3] and resumed[-1]["loss"] < resumed[0]["loss"]
