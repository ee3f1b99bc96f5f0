"""MIG and DCI: ~1 for latents that are the factors, ~0 for noise, and the DCI formulas on known matrices."""
from __future__ import annotations

import numpy as np
import pytest

from vaelab.data.shapes import FACTOR_NAMES, factor_grid
from vaelab.eval.disentangle import (dci_scores, discretize, disentanglement, entropies, importance_matrix, mig,
                                     mutual_info_matrix)

GRID = (3, 4, 5, 6, 6)  # every combination once: the factors are exactly independent


@pytest.fixture(scope="module")
def factors() -> np.ndarray:
    return factor_grid(GRID)                                               # (2160, 5)


def noise(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def test_mutual_information_of_a_copy_is_the_entropy(factors):
    mi = mutual_info_matrix(factors.astype(float), factors)                  # (5, 5)
    h = entropies(factors)
    assert np.allclose(np.diag(mi), h) and np.allclose(h, np.log(GRID))      # uniform factors: log(values)
    assert np.allclose(mi[~np.eye(5, dtype=bool)], 0, atol=1e-12)           # independent factors
    binned = discretize(np.linspace(0, 1, 1000)[:, None])
    assert binned.min() == 0 and binned.max() == 19 and np.all(np.bincount(binned[:, 0]) == 50)


def test_mig_is_one_for_latents_equal_to_the_factors_and_zero_for_noise(factors):
    n = len(factors)
    perfect = np.hstack([factors[:, ::-1] * 0.7 + 3.0, noise(n, 5)])         # any order, scale, extra noise dims
    score, gaps = mig(perfect, factors)
    assert score > 0.97 and (gaps > 0.95).all()
    exact, _ = mig(factors.astype(float), factors)
    assert exact == pytest.approx(1.0)
    assert mig(noise(n, 10), factors)[0] < 0.03
    # two latents holding the same factor: no gap for it
    twice = np.hstack([factors, factors[:, :1] * 2.0])
    assert mig(twice, factors)[1][0] == pytest.approx(0.0, abs=1e-12)
    # a rotated (entangled) code sits in between
    mixed = factors / factors.std(0) @ np.linalg.qr(np.random.default_rng(1).normal(size=(5, 5)))[0]
    assert 0.03 < mig(mixed, factors)[0] < 0.6


def test_dci_formulas_on_known_importances():
    assert dci_scores(np.eye(4)) == pytest.approx((1.0, 1.0))
    assert dci_scores(np.ones((4, 4))) == pytest.approx((0.0, 0.0))
    # one latent holds both factors: not disentangled, but each factor is complete in one latent
    assert dci_scores(np.array([[0.5, 0.5], [0.0, 0.0]])) == pytest.approx((0.0, 1.0))
    # each factor spread over two latents that hold nothing else: disentangled, not complete
    d, c = dci_scores(np.array([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]]))
    assert d == pytest.approx(1.0) and c == pytest.approx(1.0 - np.log(2) / np.log(4))


def test_dci_is_one_for_latents_equal_to_the_factors_and_zero_for_noise(factors):
    n = len(factors)
    r, acc = importance_matrix(np.hstack([factors * 1.5, noise(n, 3)]), factors)
    d, c = dci_scores(r)
    assert d > 0.9 and c > 0.9 and acc.min() > 0.95
    assert np.allclose(r.sum(0), 1.0)
    r, acc = importance_matrix(noise(n, 8), factors)
    d, c = dci_scores(r)
    assert d < 0.1 and c < 0.1
    assert (acc < 1.5 / np.array(GRID) + 0.05).all(), "noise predicts a factor about as well as chance"


def test_constant_factors_are_left_out_and_bad_input_refused(factors):
    n = len(factors)
    with_const = np.hstack([factors, np.zeros((n, 1), dtype=np.int64)])
    out = disentanglement(factors.astype(float), with_const, (*FACTOR_NAMES, "colour"))
    assert set(out["mig_per_factor"]) == set(FACTOR_NAMES) == set(out["dci_informativeness_per_factor"])
    assert out["mig"] == pytest.approx(1.0) and out["dci_disentanglement"] > 0.9
    assert out["disentanglement_examples"] == n
    with pytest.raises(ValueError, match="single value"):
        mig(noise(n, 2), np.zeros((n, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="same N"):
        mig(noise(n - 1, 2), factors)
    with pytest.raises(ValueError, match="NaN"):
        mig(np.full((n, 2), np.nan), factors)
    with pytest.raises(ValueError, match="names"):
        disentanglement(factors.astype(float), factors, ("a",))


def test_traverse_rows_follow_each_latents_top_factor():
    import torch

    from vaelab.data import DataInfo, Dataset
    from vaelab.data.shapes import render
    from vaelab.models import build_model
    from vaelab.viz import plots

    f = factor_grid((3, 2, 2, 4, 4))
    info = DataInfo("shapes", (1, 64, 64), n_classes=3, levels=2)
    test = Dataset(torch.from_numpy(render(f, (3, 2, 2, 4, 4))), torch.from_numpy(f[:, 0]), info,
                   factors=torch.from_numpy(f), factor_names=FACTOR_NAMES)
    torch.manual_seed(0)
    model = build_model("vae", input_shape=(1, 64, 64), latent_dim=6, hidden=(16,))
    fig = plots.make_plot("traverse", model, test, opts=plots.PlotOptions(n=3))
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert sorted(int(lab.split("]")[0][2:]) for lab in labels) == list(range(6))
    named = [lab.split()[1] for lab in labels]
    assert all(n in FACTOR_NAMES for n in named)
    assert [FACTOR_NAMES.index(n) for n in named] == sorted(FACTOR_NAMES.index(n) for n in named)
    assert "top factor" in fig.axes[0].get_title()


def test_mig_and_dci_are_labelled_in_the_explorer_and_the_report():
    from vaelab.viz import report as rep
    from vaelab.web.metrics import eval_rows

    values = {"mig": 0.05, "dci_disentanglement": 0.1, "dci_informativeness": 0.55,
              "disentanglement_examples": 4608, "dci_estimator": "random forest (30 trees, min leaf 10)"}
    rows = {r["label"].split(":")[0].split(" (")[0]: r for r in eval_rows(values, 10)}
    assert rows["MIG"]["text"] == "0.050" and "4608 test examples" in rows["MIG"]["note"]
    assert rows["DCI informativeness"]["text"] == "55.0%" and "random forest" in rows["DCI disentanglement"]["note"]
    assert not any("estimator" in label or "examples" == label for label in rows)       # folded into the notes
    run = rep.RunSummary("r", "vae", "shapes", 10, values, "eval.json")
    table = rep.metrics_table([run])
    assert "<th>MIG</th>" in table and "<td>0.050</td>" in table and "<th>DCI disentanglement</th>" in table
