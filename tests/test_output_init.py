"""The data-dependent start of p(x|z) (``LatentModel.start_at_mean``, ``TrainConfig.output_init``) and
``Dataset.mean``: what the start sets, for every registered model, and that fit applies it to fresh models
only (never to loaded or already trained weights)."""
from __future__ import annotations

import pytest
import torch

from vaelab.data.info import DataInfo
from vaelab.data.store import Dataset
from vaelab.distributions import get_likelihood
from vaelab.models import build_model
from vaelab.train import TrainConfig, fit


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_every_model_starts_its_output_bias_or_changes_nothing(built, digits):
    model, _, _ = built
    before = _state(model)
    done = model.start_at_mean(digits[0].mean())
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert isinstance(done, bool)
    if not done:
        assert changed == [], f"{model.name}: start_at_mean said False but changed {changed}"
    else:  # one bias: the decoder's last layer, finite
        assert len(changed) == 1 and changed[0].endswith("bias"), f"{model.name}: changed {changed}"
        assert torch.isfinite(after[changed[0]]).all()
        assert model.output_decoder() is not None


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "laplace", "gaussian-learned"])
def test_mlp_decoder_starts_at_the_mean(digits, likelihood):
    """With the last layer's weights zeroed, p(x|z) has exactly the data mean (Bernoulli: clamped to
    [1e-3, 1 - 1e-3], the mean of a logit that exists) whatever z is."""
    mean = digits[0].mean()                                                    # (1, 8, 8)
    model = build_model("vae", input_shape=(1, 8, 8), latent_dim=2, hidden=(16,), likelihood=likelihood)
    assert model.start_at_mean(mean)
    with torch.no_grad():
        model.decoder.head[-1].weight.zero_()
        p = model.decode(torch.randn(5, 2))
    want = mean.clamp(1e-3, 1 - 1e-3) if likelihood == "bernoulli" else mean
    torch.testing.assert_close(p.mean, want.expand(5, 1, 8, 8), atol=1e-6, rtol=1e-5)


def test_conv_and_hierarchical_decoders_start_per_channel_and_per_value(digits):
    mean = digits[0].mean()                                                    # (1, 8, 8)
    logit = torch.logit(mean.clamp(1e-3, 1 - 1e-3))
    conv = build_model("vae", input_shape=(1, 8, 8), latent_dim=2, hidden=(16,), arch="conv")
    assert conv.start_at_mean(mean)
    torch.testing.assert_close(conv.decoder.body[-1].bias, logit.flatten(1).mean(1))  # (C,) channel means
    hvae = build_model("hvae", input_shape=(1, 8, 8), latent_dims=(3, 2), hidden=((16,), (8,)))
    assert hvae.start_at_mean(mean)
    torch.testing.assert_close(hvae.decoder.head[-1].bias, logit.flatten())
    dmol = build_model("vae", input_shape=(1, 8, 8), latent_dim=2, hidden=(16,), likelihood="dmol")
    before = _state(dmol)
    assert not dmol.start_at_mean(mean)  # several outputs per value: no start
    assert all(torch.equal(v, dmol.state_dict()[k]) for k, v in before.items())
    assert get_likelihood("dmol").start is None


def test_dataset_mean_matches_x_for_uint8_float_and_subsets():
    g = torch.Generator().manual_seed(0)
    raw = torch.randint(0, 256, (50, 1, 6, 6), dtype=torch.uint8, generator=g)
    info = DataInfo(name="t", shape=(1, 6, 6))
    for ds in (Dataset(raw, None, info), Dataset(raw.float() / 255, None, info),
               Dataset(raw, None, info).subset(torch.tensor([3, 1, 4, 1, 5, 9, 2, 6]))):
        torch.testing.assert_close(ds.mean(), ds.x.mean(0), atol=1e-6, rtol=1e-6)


def _tiny_fit(model, train, **kw) -> None:
    fit(model, train, cfg=TrainConfig(epochs=1, batch_size=256, lr=1e-9, device="cpu", progress=False, **kw))


def test_fit_starts_a_fresh_model_only(digits):
    """fit applies the start to a freshly built model; with output_init=False, to a model whose weights
    were loaded, and on a second fit of the same model, the output bias is left as it was (lr 1e-9: a
    step moves it by ~1e-9)."""
    train = digits[0]
    logit = torch.logit(train.mean().clamp(1e-3, 1 - 1e-3)).flatten()

    def model():
        torch.manual_seed(0)
        return build_model("vae", input_shape=(1, 8, 8), latent_dim=2, hidden=(16,))

    fresh = model()
    assert fresh.fresh
    _tiny_fit(fresh, train)
    torch.testing.assert_close(fresh.decoder.head[-1].bias, logit, atol=1e-6, rtol=0)
    assert not fresh.fresh
    fresh.decoder.head[-1].bias.data.fill_(0.25)  # a second fit continues from the weights it has
    _tiny_fit(fresh, train)
    torch.testing.assert_close(fresh.decoder.head[-1].bias, torch.full_like(logit, 0.25), atol=1e-6, rtol=0)

    off, start = model(), model().decoder.head[-1].bias.detach().clone()
    _tiny_fit(off, train, output_init=False)
    torch.testing.assert_close(off.decoder.head[-1].bias, start, atol=1e-6, rtol=0)

    loaded = model()
    loaded.load_state_dict(off.state_dict())
    assert not loaded.fresh
    _tiny_fit(loaded, train)
    torch.testing.assert_close(loaded.decoder.head[-1].bias, start, atol=1e-6, rtol=0)
