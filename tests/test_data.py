"""Datasets: built-ins, binarization protocols, batches, user files, validation split."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vaelab.viz import grids as viz
from vaelab.data import batches, for_evaluation, load_dataset, load_from_info, info_dict, split_validation


def test_digits_shapes_and_range(digits):
    train, test = digits
    assert train.x.shape == (1437, 1, 8, 8) and test.x.shape == (360, 1, 8, 8)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert float(train.x.min()) == 0.0 and float(train.x.max()) == 1.0
    assert train.info.shape == (1, 8, 8) and train.info.n_classes == 10 and train.info.is_image
    assert sorted(torch.unique(test.y).tolist()) == list(range(10))
    assert len(train.info.class_names) == 10


def test_swiss_roll_shapes():
    train, test = load_dataset("swiss-roll", "train"), load_dataset("swiss-roll", "test")
    assert train.x.shape == (4000, 3) and test.x.shape == (1000, 3)
    assert not train.info.is_image and train.info.shape == (3,)
    assert train.info.n_classes == 10 and int(train.y.min()) == 0 and int(train.y.max()) == 9
    assert torch.isfinite(train.x).all()
    assert train.x.mean(0).abs().max() < 0.5 and (train.x.std(0) - 1).abs().max() < 0.5  # roughly standardised
    assert not torch.equal(train.x[:1000], test.x)


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match=r"split='val' is not known; allowed: \['train', 'test'\]"):
        load_dataset("digits", "val")


def test_dynamic_binarization_draws_fresh_bits_each_epoch(digits):
    train, _ = digits
    ds = load_dataset("digits", binarize="dynamic")
    assert torch.equal(ds.x, train.x), "dynamic data stays grey; bits are drawn per batch"
    n = len(ds)
    ids = torch.arange(n)
    gen = torch.Generator().manual_seed(0)
    epochs = []
    for _ in range(2):
        xs, ys = [], []
        for xb, yb in batches(ds.x, ids, 100, binarize="dynamic", generator=gen):
            xs.append(xb), ys.append(yb)
        order = torch.cat(ys)
        assert sorted(order.tolist()) == list(range(n)), "each epoch covers the permutation exactly once"
        bits = torch.empty_like(ds.x)
        bits[order] = torch.cat(xs)
        assert set(torch.unique(bits).tolist()) <= {0.0, 1.0}
        grey = ds.x
        assert (bits[grey == 0] == 0).all() and (bits[grey == 1] == 1).all()
        epochs.append((order, bits))
    assert not torch.equal(epochs[0][0], epochs[1][0]), "a new permutation each epoch"
    assert not torch.equal(epochs[0][1], epochs[1][1]), "fresh Bernoulli draws each epoch"
    # the draws are unbiased: the mean bit matches the mean grey level
    assert abs(float(epochs[0][1].mean()) - float(ds.x.mean())) < 0.01


def test_unshuffled_batches_are_in_order(digits):
    train, _ = digits
    out = list(batches(train.x, train.y, 500, shuffle=False))
    assert [len(xb) for xb, _ in out] == [500, 500, 437]
    assert torch.equal(torch.cat([xb for xb, _ in out]), train.x)
    assert torch.equal(torch.cat([yb for _, yb in out]), train.y)


def test_static_binarization_is_the_same_on_every_load():
    a, b = load_dataset("digits", binarize="static"), load_dataset("digits", binarize="static")
    assert torch.equal(a.x, b.x)
    assert set(torch.unique(a.x).tolist()) == {0.0, 1.0}
    grey = load_dataset("digits").x
    assert abs(float(a.x.mean()) - float(grey.mean())) < 0.01
    # batches do not redraw static bits
    xb, _ = next(batches(a.x, None, len(a), shuffle=False, binarize=a.info.binarize))
    assert torch.equal(xb, a.x)


def test_for_evaluation_is_one_fixed_draw():
    ds = load_dataset("digits", "test", binarize="dynamic")
    e1, e2 = for_evaluation(ds), for_evaluation(ds)
    assert torch.equal(e1.x, e2.x) and set(torch.unique(e1.x).tolist()) == {0.0, 1.0}
    assert not torch.equal(e1.x, for_evaluation(ds, seed=1).x)
    plain = load_dataset("digits", "test")
    assert for_evaluation(plain) is plain


def test_binarize_needs_unit_interval_data():
    with pytest.raises(ValueError, match="binarize='static' needs pixel values in"):
        load_dataset("swiss-roll", binarize="static")


def _write_folder(root, n_per_class=6, size=(10, 12), mode="L"):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            shape = size[::-1] if mode == "L" else (*size[::-1], 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / cls / f"{i}.png")


def test_image_folder_via_load_dataset(tmp_path):
    _write_folder(tmp_path / "imgs")
    train = load_dataset(str(tmp_path / "imgs"), "train")
    test = load_dataset(str(tmp_path / "imgs"), "test")
    assert train.x.shape[1:] == (1, 12, 10) and len(train) + len(test) == 12
    assert len(train) == 11 and len(test) == 1                       # fixed 90/10 split
    assert train.info.class_names == ("cat", "dog") and train.info.n_classes == 2
    assert 0 <= float(train.x.min()) and float(train.x.max()) <= 1
    resized = load_dataset(str(tmp_path / "imgs"), "train", size=6)
    assert resized.x.shape[1:] == (1, 6, 6)
    again = load_from_info(info_dict(resized.info), "train")         # a run reloads the same data
    assert torch.equal(again.x, resized.x)


def test_rgb_folder_has_three_channels(tmp_path):
    _write_folder(tmp_path / "rgb", mode="RGB")
    assert load_dataset(str(tmp_path / "rgb")).x.shape[1:] == (3, 12, 10)


def test_npz_via_load_dataset(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 5)).astype(np.float32), rng.integers(0, 3, 50)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    train, test = load_dataset(str(tmp_path / "d.npz"), "train"), load_dataset(str(tmp_path / "d.npz"), "test")
    assert train.x.shape == (45, 5) and test.x.shape == (5, 5)
    assert not train.info.is_image and train.info.shape == (5,)
    both = torch.cat([train.x, test.x])
    assert sorted(both[:, 0].tolist()) == sorted(x[:, 0].tolist()), "train + test = the whole file, disjoint"
    assert train.info.n_classes == test.info.n_classes == 3


def test_npz_classes_come_from_the_whole_file(tmp_path):
    """A class present only in the test split still counts: train and test agree on n_classes."""
    x = np.random.default_rng(0).random((20, 4)).astype(np.float32)
    y = np.zeros(20, dtype=np.int64)
    test_idx = load_dataset_test_index(tmp_path, x)
    y[test_idx] = 4                                                 # label 4 only in the test split
    np.savez(tmp_path / "d.npz", x=x, y=y)
    train = load_dataset(str(tmp_path / "d.npz"), "train")
    test = load_dataset(str(tmp_path / "d.npz"), "test")
    assert int(test.y.max()) == 4
    assert train.info.n_classes == test.info.n_classes == 5


def load_dataset_test_index(tmp_path, x) -> list[int]:
    """Which rows of x land in the test split (found by loading x with its row numbers as labels)."""
    np.savez(tmp_path / "probe.npz", x=x, y=np.arange(len(x)))
    return load_dataset(str(tmp_path / "probe.npz"), "test").y.tolist()


@pytest.mark.parametrize("y,needle", [
    (np.arange(10) - 1, "has label -1"),
    (np.arange(10) + 0.5, "non-integer labels"),
])
def test_bad_labels_are_rejected(tmp_path, y, needle):
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 3), np.float32), y=y)
    with pytest.raises(ValueError, match=rf"{needle}.*allowed: integers >= 0"):
        load_dataset(str(tmp_path / "d.npz"))


@pytest.mark.parametrize("fraction,n_val", [(0.1, 144), (0.25, 359), (0.0, 0)])
def test_split_validation_sizes(digits, fraction, n_val):
    train, _ = digits
    tr, val = split_validation(train, fraction, seed=0)
    if n_val == 0:
        assert val is None and tr is train
        return
    assert len(val) == n_val and len(tr) == len(train) - n_val
    rows = torch.cat([tr.x, val.x]).flatten(1)
    assert torch.equal(rows.sum(0), train.x.flatten(1).sum(0)), "a partition of the training set"
    tr2, val2 = split_validation(train, fraction, seed=0)
    assert torch.equal(val.x, val2.x), "the same split for the same seed"


@pytest.mark.parametrize("bad", [1.0, -0.1])
def test_split_validation_rejects_bad_fraction(digits, bad):
    with pytest.raises(ValueError, match=rf"val_fraction={bad} must be in \[0, 1\)"):
        split_validation(digits[0], bad)


def test_mnist_loads_with_the_right_shapes(mnist_dir):
    test = load_dataset("mnist", "test", data_dir=mnist_dir)
    assert test.x.shape == (10000, 1, 28, 28) and test.info.n_classes == 10
    assert float(test.x.min()) == 0.0 and float(test.x.max()) == 1.0
    assert torch.bincount(test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 30), c=st.sampled_from([1, 3]), h=st.integers(1, 9), w=st.integers(1, 9),
       ncol=st.one_of(st.none(), st.integers(1, 8)), pad=st.integers(0, 2))
def test_image_grid_shape(n, c, h, w, ncol, pad):
    grid = viz.image_grid(torch.rand(n, c, h, w), ncol=ncol, pad=pad)
    cols = ncol or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    assert grid.shape == (rows * (h + pad) + pad, cols * (w + pad) + pad, c)
    assert grid.dtype == np.uint8
