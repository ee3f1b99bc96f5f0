"""Sample-quality metrics (vaelab.eval.quality): sharpness ranks blur below the original, precision / recall
behave as their definitions say on sets whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from conftest import contract_params
from vaelab.eval import quality
from vaelab.models import build_model


def test_sharpness_ranks_a_blurred_image_below_its_original(digits):
    x = digits[1].x[:50].numpy()                                         # (50, 1, 8, 8)
    blurred = ndimage.gaussian_filter(x, sigma=(0, 0, 1.0, 1.0))
    for fn in (quality.laplacian_variance, quality.gradient_energy):
        sharp, soft = fn(x), fn(blurred)
        assert sharp.shape == (50,) and (soft < sharp).all(), fn.__name__
    s = quality.sharpness(blurred, x)
    assert s["sharpness_ratio"] < 1 and s["gradient_energy_ratio"] < 1
    assert s["sharpness_samples_se"] > 0 and np.isclose(s["sharpness_test"], quality.laplacian_variance(x).mean())


def test_laplacian_variance_is_per_channel_and_zero_for_a_flat_image():
    flat = np.full((2, 3, 6, 6), 0.7)
    assert np.allclose(quality.laplacian_variance(flat), 0) and np.allclose(quality.gradient_energy(flat), 0)
    ramp = np.tile(np.arange(6.0), (6, 1))                               # linear in x: Laplacian 0 inside
    img = np.stack([ramp, np.zeros((6, 6))])[None]                       # channel 0 ramp, channel 1 flat
    assert np.isclose(quality.gradient_energy(img)[0], 0.5 * 1.0)        # (1 + 0) / 2 channels; dy = 0
    with pytest.raises(ValueError, match="at least 2x2"):
        quality.laplacian_variance(np.zeros((3, 1, 1, 5)))


def test_precision_recall_of_a_set_against_itself_is_one():
    a = np.random.default_rng(0).normal(size=(300, 16))
    pr = quality.precision_recall(a, a, k=3)
    assert pr["precision"] == 1.0 and pr["recall"] == 1.0 and pr["pr_k"] == 3 and pr["pr_n_real"] == 300


def test_precision_recall_of_far_apart_clusters_is_zero():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8)) + 100.0
    pr = quality.precision_recall(a, b)
    assert pr["precision"] == 0.0 and pr["recall"] == 0.0


def test_precision_and_recall_separate_realism_from_coverage():
    """Samples from half of the data: realistic (precision ~1) but covering half of it (recall ~1/2)."""
    rng = np.random.default_rng(2)
    real = np.concatenate([rng.normal(size=(300, 4)), rng.normal(size=(300, 4)) + 50.0])
    fake = rng.normal(size=(300, 4))
    pr = quality.precision_recall(real, fake)
    assert pr["precision"] > 0.9 and 0.4 < pr["recall"] <= 0.5
    with pytest.raises(ValueError, match="k=5 must be"):
        quality.precision_recall(real[:5], fake[:5], k=5)


def test_sample_quality_of_a_model(digits, tmp_path):
    train, test = digits
    torch.manual_seed(0)
    model = build_model("vae", **contract_params("vae")).eval()
    out = quality.sample_quality(model, test, train, tmp_path, max_samples=120, k=3)
    assert out["quality_n"] == 120 and out["pr_n_samples"] == 120 and out["pr_features"].startswith("FD_vaelab:")
    assert 0 <= out["precision"] <= 1 and 0 <= out["recall"] <= 1
    assert out["sharpness_test"] > 0 and np.isfinite(out["sharpness_ratio"])
