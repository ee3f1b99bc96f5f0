"""VQ-VAE: straight-through gradient, EMA codebook against hand-computed values, perplexity, the PixelCNN prior
(causal, normalised, sampled as it scores) and the ELBO as a lower bound on the exact log p(x)."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

import vaelab
from vaelab import objectives, rundir
from vaelab.models import build_model
from vaelab.models.codes import SMOOTHING, Codebook, GatedPixelCNN
from vaelab.objectives import ObjectiveConfig
from vaelab.train import TrainConfig, fit


def _model(**kw):
    torch.manual_seed(0)
    params = dict(input_shape=(1, 8, 8), code_dim=3, codebook_size=5, prior_channels=8, prior_layers=2)
    return build_model("vqvae", **{**params, **kw})


def test_straight_through_copies_the_decoder_input_gradient_onto_the_encoder_output(digits):
    model = _model().eval()
    x = digits[1].x[:4]
    seen = {}
    model.encoder.register_forward_hook(lambda m, i, out: seen.update(ze=out) or out.retain_grad())
    zq, codes, _ = model.quantize(x)
    zq.retain_grad()
    (-model.decode(zq).log_prob(x).sum()).backward()
    torch.testing.assert_close(seen["ze"].grad.flatten(1), zq.grad, rtol=0, atol=0)
    assert zq.grad.abs().sum() > 0
    torch.testing.assert_close(zq.detach(), model.embed(codes))  # the forward value is the codebook's


def test_codebook_ema_step_equals_hand_computed_values():
    cb = Codebook(2, 2, decay=0.9, restart_below=0.0)
    cb.embedding.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    cb.ema_sum.copy_(cb.embedding)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]])
    idx = cb.nearest(z)
    assert idx.tolist() == [0, 0, 1]
    cb.update(z, idx)
    # N = 0.9 * 1 + 0.1 * (2, 1) = (1.1, 1.0);  m_0 = 0.1 * (1, 1);  m_1 = 0.9 * (10, 10) + 0.1 * (9, 9)
    torch.testing.assert_close(cb.ema_count, torch.tensor([1.1, 1.0]))
    torch.testing.assert_close(cb.ema_sum, torch.tensor([[0.1, 0.1], [9.9, 9.9]]))
    n, eps = 2.1, SMOOTHING
    smoothed = [(1.1 + eps) / (n + 2 * eps) * n, (1.0 + eps) / (n + 2 * eps) * n]
    expect = torch.tensor([[0.1 / smoothed[0]] * 2, [9.9 / smoothed[1]] * 2])
    torch.testing.assert_close(cb.embedding, expect)
    assert abs(float(cb.embedding[0, 0]) - 0.1 / 1.1) < 1e-4  # ~ the plain EMA mean m / N


def test_dead_code_is_restarted_onto_an_encoder_output():
    cb = Codebook(3, 2, decay=0.9, restart_below=0.95)
    z = torch.randn(6, 2) + 100.0                       # far from every initial code
    idx = torch.zeros(6, dtype=torch.long)              # all assigned to code 0
    cb.update(z, idx)                                   # codes 1 and 2: N = 0.9 < 0.95 -> restarted
    for k in (1, 2):
        assert any(torch.equal(cb.embedding[k], row) for row in z)
        assert float(cb.ema_count[k]) == 1.0 and torch.equal(cb.ema_sum[k], cb.embedding[k])


@pytest.mark.parametrize("k", [1, 4, 7])
def test_perplexity_of_uniform_usage_is_k(k):
    cb = Codebook(7, 2, 0.99, 0.0)
    stats = cb.stats(torch.arange(k).repeat(5))
    assert stats["perplexity"] == pytest.approx(k) and stats["codebook_usage"] == pytest.approx(k / 7)
    skewed = cb.stats(torch.tensor([0, 0, 0, 1]))       # H = -(3/4 log 3/4 + 1/4 log 1/4)
    assert skewed["perplexity"] == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))


def test_pixelcnn_logits_depend_only_on_earlier_positions():
    torch.manual_seed(0)
    net = GatedPixelCNN(4, channels=8, layers=3)
    h, w = 3, 4
    codes = torch.randint(0, 4, (1, h, w))
    base = net.logits(codes)
    for p in range(h * w):
        i, j = divmod(p, w)
        later = codes.clone().flatten()
        later[p:] = torch.randint(0, 4, (h * w - p,))
        later[p:] = (later[p:] + 1) % 4               # every later code (and the own one) changed
        torch.testing.assert_close(net.logits(later.reshape(1, h, w))[..., i, j], base[..., i, j], rtol=0, atol=0)
        for q in ([p - 1] if j > 0 else []) + ([p - w] if i > 0 else []):  # left and above neighbours matter
            earlier = codes.clone().flatten()
            earlier[q] = (earlier[q] + 1) % 4
            assert not torch.allclose(net.logits(earlier.reshape(1, h, w))[..., i, j], base[..., i, j])


def test_pixelcnn_probabilities_sum_to_one_and_sampling_follows_them():
    torch.manual_seed(1)
    net = GatedPixelCNN(3, channels=8, layers=2)
    grids = torch.tensor(list(itertools.product(range(3), repeat=4))).reshape(-1, 2, 2)  # all 81 grids
    with torch.no_grad():
        p = net.log_prob_per_position(grids).sum(1).exp()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-5)
    n = 20000
    draws = net.sample(n, (2, 2), generator=torch.Generator().manual_seed(0))
    index = (draws.flatten(1) * torch.tensor([27, 9, 3, 1])).sum(1)
    freq = torch.bincount(index, minlength=81).double() / n
    se = (p.double() * (1 - p.double()) / n).sqrt()
    assert ((freq - p.double()).abs() <= 5 * se + 1e-3).all()


def test_elbo_is_a_lower_bound_on_the_exact_log_likelihood(digits):
    """log p(x) = logsumexp_c log p(x|e_c) + log p(c) over all K^(h w) code grids; the ELBO is one term."""
    model = _model(arch="mlp", n_codes=2, codebook_size=3, hidden=(16,)).eval()
    x = torch.bernoulli(digits[1].x[:5], generator=torch.Generator().manual_seed(0))
    grids = torch.tensor(list(itertools.product(range(3), repeat=2))).reshape(-1, 1, 2)   # (9, 1, 2)
    with torch.no_grad():
        recon, rate = model.elbo_parts(x)
        elbo = recon - rate.sum(-1)                                                         # (5,)
        log_prior = model.code_log_prob(grids).sum(1)                                       # (9,)
        log_px_c = model.decode(model.embed(grids)[:, None]).log_prob(x)                    # (9, 5)
        joint = log_px_c + log_prior[:, None]                                               # (9, 5)
        exact = torch.logsumexp(joint, 0)
        own = (model.codes(x).flatten(1) * torch.tensor([3, 1])).sum(1)                     # index of c(x)
    torch.testing.assert_close(elbo, joint[own, torch.arange(5)])   # the ELBO is the term of c(x) ...
    assert (elbo <= exact + 1e-4).all() and (rate >= 0).all()        # ... so it bounds the sum
    assert torch.exp(log_prior).sum() == pytest.approx(1.0, abs=1e-5)


def test_one_training_step_updates_the_codebook_once_and_adds_the_commitment(digits):
    model = _model(restart_below=0.0)
    x = digits[0].x[:16]
    before = model.codebook.ema_count.sum().item()
    with torch.no_grad():
        commitment = model.eval().quantize(x)[2].mean()       # against the codebook before the step
    terms = objectives.compute(model.train(), x, None, ObjectiveConfig())
    positions = 16 * model.grid[0] * model.grid[1]
    assert model.codebook.ema_count.sum().item() == pytest.approx(0.99 * before + 0.01 * positions, rel=1e-5)
    assert set(terms.extra) == {"commitment"}
    torch.testing.assert_close(terms.extra["commitment"].detach(), commitment)
    assert float(commitment) > 0


def test_conv_vqvae_trains_uses_its_codebook_and_round_trips(digits, tmp_path):
    train, test = digits
    model = _model(codebook_size=16, prior_channels=16)
    assert model.grid == (2, 2) and model.latent_dim == 12
    before = model.codebook_stats(test.x)
    history = fit(model, train, test, cfg=TrainConfig(epochs=3, batch_size=64, lr=2e-3, progress=False, device="cpu"))
    assert history[-1]["loss"] < history[0]["loss"] and history[-1]["skipped_steps"] == 0
    after = model.codebook_stats(test.x)
    # every epoch's row carries the validation codes' usage and perplexity (metrics.jsonl, the curves)
    assert all(0 < r["val_codebook_usage"] <= 1 and 1 <= r["val_perplexity"] <= 16 for r in history)
    assert history[-1]["val_perplexity"] == pytest.approx(model.codebook_stats(test.x[:1000])["perplexity"])
    assert after["perplexity"] > max(2.0, before["perplexity"] / 2) and 0 < after["codebook_usage"] <= 1
    rundir.save_model(tmp_path / "run", model)
    loaded = vaelab.load(tmp_path / "run")
    torch.testing.assert_close(loaded.encode(test.x[:8]).mean, model.encode(test.x[:8]).mean, rtol=0, atol=0)
    a = loaded.sample(6, generator=torch.Generator().manual_seed(3))
    b = model.sample(6, generator=torch.Generator().manual_seed(3))
    assert a.shape == (6, 1, 8, 8) and torch.equal(a, b)
    assert model.prior(4).log_prob(model.encode(test.x[:4]).mean).isfinite().all()
    from vaelab.eval.evaluate import evaluate  # eval.json reports the codebook's usage and perplexity

    stats = evaluate(model, test, iw_samples=2, fd=False, max_examples=len(test))["latent_stats"]
    assert stats == pytest.approx(after) and 1 <= stats["perplexity"] <= 16


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="arch='conv' needs image data"):
        build_model("vqvae", input_shape=(5,))
    with pytest.raises(ValueError, match="codebook_size=1 must be >= 2"):
        build_model("vqvae", input_shape=(1, 8, 8), codebook_size=1)
    with pytest.raises(ValueError, match=r"decay=1\.0 must be in \[0, 1\)"):
        build_model("vqvae", input_shape=(1, 8, 8), decay=1.0)
