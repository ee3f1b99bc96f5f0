"""Training on dequantized data (TrainConfig.dequantize): each step sees y = (k + u) / L, fresh u ~ U[0, 1),
which is the density the dequantized bound of ``vaelab eval`` scores."""
from __future__ import annotations

import pytest
import torch

from vaelab.data import dequantize, load_dataset
from vaelab.eval.evaluate import evaluate
from vaelab.models import build_model
from vaelab.train import TrainConfig, fit
from vaelab.train.epoch import _dequantized


def test_dequantized_batches_stay_in_their_bins():
    ds = load_dataset("digits", "train")
    levels = ds.info.levels
    assert levels == 17
    gen = torch.Generator().manual_seed(0)
    (x, _), = [next(ds.batches(64, generator=torch.Generator().manual_seed(1)))]
    (y, _), = [next(_dequantized(iter([(x, None)]), levels, gen))]
    k = torch.round(x * (levels - 1))
    assert ((y * levels - k) >= 0).all() and ((y * levels - k) < 1).all()  # y in [k / L, (k + 1) / L)
    assert (y * levels - k).std() > 0.2  # uniform noise: sd 1/sqrt(12) = 0.29
    assert torch.equal(dequantize(x, torch.zeros_like(x), levels), k / levels)


def test_continuous_data_cannot_be_dequantized():
    ds = load_dataset("swiss-roll", "train")
    with pytest.raises(ValueError, match="needs data that take fixed levels"):
        fit(build_model("vae", input_shape=ds.info.shape, latent_dim=2, likelihood="gaussian", hidden=(8,)), ds,
            cfg=TrainConfig(epochs=1, progress=False, device="cpu", dequantize=True))


def test_a_dequantized_model_gets_a_tighter_discrete_bound():
    """A learned-sigma Gaussian trained on the 17 values puts its density on them and scores badly once
    dequantized; trained on dequantized data it scores far better on the same discrete scale."""
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    bits = {}
    for deq in (False, True):
        torch.manual_seed(0)
        model = build_model("vae", input_shape=(1, 8, 8), latent_dim=4, hidden=(64,), likelihood="gaussian-learned")
        fit(model, train, cfg=TrainConfig(epochs=15, batch_size=64, lr=3e-3, progress=False, device="cpu",
                                          dequantize=deq))
        out = evaluate(model, test, iw_samples=20, fd=False, max_examples=200)
        assert out["scale"] == "discrete" and out["dequantized"] and out["levels"] == 17
        bits[deq] = out["bits_per_dim"]
    assert 0 < bits[True] < bits[False], bits
    assert bits[True] < 4.09  # better than a uniform guess over 17 levels (log2 17)
