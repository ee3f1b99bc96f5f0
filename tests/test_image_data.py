"""Image data as users have it: uint8 storage until the batch, crops, flips, test split, photos32, levels."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vaelab.data import (
    Dataset, for_evaluation, info_dict, info_from_dict, load_dataset, load_from_info, split_validation,
)
from vaelab.data import photos
from vaelab.data.images import margin


def _epoch(ds: Dataset, seed: int, train: bool = True, batch_size: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of batches as (x in dataset order, the order), with example ids as labels."""
    ds = Dataset(ds.storage, torch.arange(len(ds.storage)), ds.info, ds.rows)
    xs, ids = zip(*ds.batches(batch_size, generator=torch.Generator().manual_seed(seed), train=train))
    order = torch.cat(ids)
    x = torch.empty((len(ds.storage), *ds.info.shape))
    x[order] = torch.cat(xs)
    return x, order


# ------------------------------------------------------------------ uint8 until the batch


def test_mnist_is_stored_as_uint8_and_converted_on_the_batch(mnist_dir):
    ds = load_dataset("mnist", "train", data_dir=mnist_dir)
    assert ds.storage.dtype == torch.uint8 and ds.storage.nbytes == 60000 * 784  # 47 MB, not 188 MB as float32
    assert ds.info.levels == 256
    xb, _ = next(ds.batches(256, shuffle=False))
    assert xb.dtype == torch.float32
    assert torch.equal(xb * 255, ds.storage[:256].float())                           # v / 255, nothing else
    train, val = split_validation(ds, 0.1, seed=0)
    assert train.storage is ds.storage and val.storage is ds.storage                # index views, no copies
    assert len(train) == 54000 and len(val) == 6000
    assert not set(train.rows.tolist()) & set(val.rows.tolist())


def test_training_never_converts_the_whole_uint8_set():
    from vaelab.models import build_model
    from vaelab.train import TrainConfig
    from vaelab.train.loop import fit

    train, val = split_validation(load_dataset("photos32", "train", binarize="dynamic").subset(torch.arange(300)), 0.2)
    model = build_model("vae", input_shape=(3, 32, 32), latent_dim=2, hidden=(16,))
    fit(model, train, val, cfg=TrainConfig(epochs=1, batch_size=64, device="cpu", progress=False))
    assert train._x is None, "the training set was converted to float32 as a whole"


def test_dynamic_bits_are_drawn_per_batch_from_the_generator():
    ds = load_dataset("photos32", "test", binarize="dynamic")
    assert ds.info.levels == 2 and ds.storage.dtype == torch.uint8
    a, order_a = _epoch(ds, seed=3)
    b, order_b = _epoch(ds, seed=3)
    c, _ = _epoch(ds, seed=4)
    assert torch.equal(a, b) and torch.equal(order_a, order_b), "the same generator seed, the same bits"
    assert set(torch.unique(a).tolist()) == {0.0, 1.0} and not torch.equal(a, c)
    assert abs(float(a.mean()) - float(ds.x.mean())) < 0.01                      # unbiased draws
    fixed = for_evaluation(ds)
    assert fixed.storage.dtype == torch.uint8 and torch.equal(fixed.x, for_evaluation(ds).x)


# ------------------------------------------------------------------ levels: what the values are


def test_levels_say_how_many_values_the_data_take(tmp_path):
    assert load_dataset("photos32", "test").info.levels == 256
    assert load_dataset("digits").info.levels == 17                              # k / 16
    assert load_dataset("digits", binarize="static").info.levels == 2
    assert load_dataset("swiss-roll").info.levels is None
    rng = np.random.default_rng(0)
    for name, x, levels in (("u8.npy", rng.integers(0, 256, (10, 4, 4), dtype=np.uint8), 256),
                            ("bin.npy", rng.integers(0, 2, (10, 4, 4)), 2),
                            ("f.npy", rng.random((10, 4, 4)), None)):
        np.save(tmp_path / name, x)
        ds = load_dataset(str(tmp_path / name))
        assert ds.info.levels == levels
        assert (ds.storage.dtype == torch.uint8) == (levels is not None)
        values = torch.unique(ds.x) * ((levels or 2) - 1)
        assert levels is None or torch.allclose(values, values.round(), atol=1e-4)  # on the k/(levels-1) grid
    info = load_dataset("photos32", "test", flip=True).info
    assert info_from_dict(info_dict(info)) == info                               # recorded in config.json


def test_runs_recorded_before_crop_existed_reload_squashed():
    old = {"name": "imgs", "shape": [1, 6, 6], "size": 6}
    assert info_from_dict(old).crop == "squash"                                  # what they were trained on
    assert info_from_dict({"name": "digits", "shape": [1, 8, 8]}).crop == "center"
    with pytest.raises(ValueError, match="data.levels=1 must be null or an integer >= 2"):
        info_from_dict({**old, "levels": 1})


# ------------------------------------------------------------------ crops and flips


def _wide_image(path, width=20, height=10):
    """Black left and right quarters, a white middle half: a center crop is all white, squashing is not."""
    a = np.zeros((height, width), np.uint8)
    a[:, width // 4: width - width // 4] = 255
    Image.fromarray(a).save(path)


def test_center_crop_keeps_the_aspect_ratio_squash_does_not(tmp_path):
    (tmp_path / "imgs").mkdir()
    for i in range(4):
        _wide_image(tmp_path / "imgs" / f"{i}.png")
    center = load_dataset(str(tmp_path / "imgs"), size=8, test_fraction=0.25)
    squash = load_dataset(str(tmp_path / "imgs"), size=8, crop="squash", test_fraction=0.25)
    assert center.x.shape[1:] == squash.x.shape[1:] == (1, 8, 8)
    assert float(center.x.min()) == 1.0                                          # only the white middle
    assert float(squash.x[:, :, :, 0].max()) < 0.2                               # black edges squeezed in


def test_random_crops_in_training_center_crop_for_evaluation(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    ds = load_dataset(str(tmp_path / "imgs"), size=8, crop="random", test_fraction=0.5)
    stored = ds.storage.float() / 255                                            # (6, 3, 9, 9): 8 + ceil(8/8)
    assert tuple(stored.shape[2:]) == margin((8, 8)) == (9, 9) and ds.info.shape == (3, 8, 8)
    assert torch.equal(_epoch(ds, 0, train=False)[0][ds.rows], stored[ds.rows][:, :, 0:8, 0:8])  # center: (9-8)//2
    assert torch.equal(ds.x, stored[ds.rows][:, :, 0:8, 0:8])
    offsets = set()
    for seed in range(8):
        x, _ = _epoch(ds, seed)
        for i in ds.rows.tolist():
            hits = [(t, l) for t in range(2) for l in range(2) if torch.equal(x[i], stored[i, :, t:t + 8, l:l + 8])]
            assert len(hits) == 1, "every training example is one 8x8 window of its stored image"
            offsets.add(hits[0])
    assert offsets == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_flips_only_in_training_batches():
    ds = load_dataset("photos32", "test", flip=True).subset(torch.arange(40))
    plain = ds.storage.float() / 255
    assert torch.equal(ds.x, plain[:40]) and torch.equal(_epoch(ds, 0, train=False)[0][:40], plain[:40])
    asymmetric = [i for i in range(40) if not torch.equal(plain[i], plain[i].flip(-1))]
    flipped = 0
    for seed in range(3):
        x, _ = _epoch(ds, seed)
        for i in range(40):
            assert torch.equal(x[i], plain[i]) or torch.equal(x[i], plain[i].flip(-1))
        flipped += sum(not torch.equal(x[i], plain[i]) for i in asymmetric)
    n = 3 * len(asymmetric)
    assert n >= 60 and abs(flipped - n / 2) < 4 * (n / 4) ** 0.5, f"{flipped} of {n} flipped; p = 1/2 expected"
    no_flip = load_dataset("photos32", "test").subset(torch.arange(40))
    assert torch.equal(_epoch(no_flip, 0)[0][:40], plain[:40])
    with pytest.raises(ValueError, match="flip=True mirrors images"):
        load_dataset("swiss-roll", flip=True)


# ------------------------------------------------------------------ test split fraction


@pytest.mark.parametrize("fraction,n_test", [(None, 10), (0.3, 30), (0.55, 55)])
def test_test_fraction_is_honoured(tmp_path, fraction, n_test):
    x = np.random.default_rng(0).random((100, 3)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(100))
    train = load_dataset(str(tmp_path / "d.npz"), "train", test_fraction=fraction)
    test = load_dataset(str(tmp_path / "d.npz"), "test", test_fraction=fraction)
    assert len(test) == n_test and len(train) == 100 - n_test
    assert sorted(train.y.tolist() + test.y.tolist()) == list(range(100))          # disjoint, complete
    assert torch.equal(load_from_info(info_dict(test.info), "test").x, test.x)     # recorded, reloaded
    assert test.info.test_fraction == (fraction or 0.1)


def test_test_fraction_for_digits_and_not_for_published_splits():
    assert len(load_dataset("digits", "test", test_fraction=0.5)) == 899             # ceil(0.5 * 1797)
    assert len(load_dataset("digits", "test")) == 360                                 # the default 0.2
    with pytest.raises(ValueError, match="has its own test split"):
        load_dataset("photos32", test_fraction=0.2)
    with pytest.raises(ValueError, match=r"test_fraction=1.0 must be in \(0, 1\)"):
        load_dataset("digits", test_fraction=1.0)


# ------------------------------------------------------------------ photos32


def test_photos32_is_deterministic_8bit_rgb():
    a, b = load_dataset("photos32", "train"), load_dataset("photos32", "train")
    assert torch.equal(a.storage, b.storage) and torch.equal(a.y, b.y)
    test = load_dataset("photos32", "test")
    assert a.info.shape == (3, 32, 32) and a.info.levels == 256 and a.info.class_names == ("china", "flower")
    assert a.storage.dtype == torch.uint8 and len(a) == 5604 and len(test) == 520
    mean_train = a.storage.double().mean((0, 2, 3))
    mean_test = test.storage.double().mean((0, 2, 3))
    assert (mean_train - mean_test).abs().max() < 4.0                            # the documented 3.5 / 255


def test_photos32_train_and_test_come_from_disjoint_regions(monkeypatch):
    """Photos whose pixels are 255 in the held-out regions (rows < 213 and columns 320..479, rows >= 213 and
    columns < 160) and 0 elsewhere: every training crop must be all 0, every test crop all 255."""
    mask = np.zeros((427, 640, 3), np.uint8)
    mask[:213, 320:480] = 255
    mask[213:, :160] = 255

    class Fake:
        images = [mask, mask.copy()]

    monkeypatch.setattr("sklearn.datasets.load_sample_images", lambda: Fake)
    train_x, _ = photos.load_photos32("train")
    test_x, _ = photos.load_photos32("test")
    assert len(train_x) == 5604 and len(test_x) == 520
    assert train_x.max() == 0, "a training crop holds pixels of a test region"
    assert test_x.min() == 255, "a test crop holds pixels of a training region"


# ------------------------------------------------------------------ the CLI


def test_train_cli_records_the_data_options(tmp_path):
    import json

    from conftest import assert_cli_error, cli

    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    run = tmp_path / "run"
    common = ("train", "--data", tmp_path / "imgs", "--model", "vae", "--hidden", "8", "--latent-dim", "2",
              "--epochs", "1", "--out", run, "--no-progress")
    r = cli(*common, "--size", "8", "--crop", "random", "--flip", "--test-fraction", "0.2")
    assert r.exit_code == 0, r.output
    data = json.loads((run / "config.json").read_text())["data"]
    assert (data["crop"], data["flip"], data["test_fraction"], data["levels"], data["shape"]) == \
        ("random", True, 0.2, 256, [3, 8, 8])
    assert_cli_error(cli(*common, "--resume", "--no-flip"), "flip: given False, the run has True")
    assert_cli_error(cli(*common, "--size", "8", "--crop", "diagonal", "--overwrite"),
                     "crop='diagonal' is not known; allowed: ['center', 'random', 'squash']")
    assert_cli_error(cli(*common, "--crop", "random", "--overwrite"), "crop='random'", "--size")
