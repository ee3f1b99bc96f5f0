"""The ``shapes`` data set: drawn deterministically from its factors, binary, each factor doing what it says."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vaelab.data import DataInfo, Dataset, for_evaluation, load_dataset, split_validation
from vaelab.data.shapes import (FACTOR_NAMES, GRID, MARGIN, SIDE, SHAPES, factor_grid, factor_values, render,
                                split_rows)

SMALL = (3, 3, 5, 5, 5)  # a small grid for the factor checks (5 rotations: no symmetry of a shape repeats one)


def at(sizes=GRID, **fixed: int) -> np.ndarray:
    """Grid rows (N, 5) whose factors equal ``fixed`` (e.g. shape=1, x=3), the others free."""
    g = factor_grid(sizes)
    keep = np.ones(len(g), bool)
    for name, value in fixed.items():
        keep &= g[:, FACTOR_NAMES.index(name)] == value
    return g[keep]


def centroid(img: np.ndarray) -> tuple[float, float]:
    """(column, row) mean of the on pixels of one (1, H, W) image."""
    rows, cols = np.nonzero(img[0])
    return cols.mean(), rows.mean()


def test_images_are_binary_and_the_same_on_every_draw():
    f = factor_grid(SMALL)
    a, b = render(f, SMALL), render(f.copy(), SMALL)
    assert a.shape == (len(f), 1, SIDE, SIDE) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert set(np.unique(a)) == {0, 255}
    assert (a.reshape(len(f), -1).max(1) == 255).all(), "every image shows its shape"
    # nothing touches the border: every shape fits inside the image at every position
    assert a[..., 0, :].max() == a[..., -1, :].max() == a[..., :, 0].max() == a[..., :, -1].max() == 0


def test_loaded_dataset_is_deterministic_and_carries_its_factors():
    a, b = load_dataset("shapes", "test"), load_dataset("shapes", "test")
    assert torch.equal(a.storage, b.storage) and torch.equal(a.factors, b.factors)
    n = int(np.prod(GRID))
    assert len(a) == round(0.1 * n) == len(split_rows(n, "test"))
    assert a.storage.dtype == torch.uint8 and a.info.levels == 2 and a.info.shape == (1, SIDE, SIDE)
    assert a.factor_names == FACTOR_NAMES and a.info.class_names == SHAPES
    assert a.factors.shape == (len(a), 5) and torch.equal(a.y, a.factors[:, 0])
    # the images are those of their factors
    assert np.array_equal(a.storage[:50].numpy(), render(a.factors[:50].numpy()))
    # splits, subsets and evaluation copies keep each example's factors
    tr, val = split_validation(a, 0.2, seed=1)
    assert torch.equal(torch.cat([tr.factors, val.factors]).unique(dim=0), a.factors.unique(dim=0))
    assert torch.equal(val.y, val.factors[:, 0])
    dyn = for_evaluation(load_dataset("shapes", "test", binarize="dynamic"))
    assert torch.equal(dyn.factors, a.factors)
    assert load_dataset("digits", "test").factors is None


def test_splits_partition_the_grid():
    n = int(np.prod(GRID))
    train, test = split_rows(n, "train"), split_rows(n, "test")
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == n
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
    first = factor_grid()[test[:500]]
    assert len(np.unique(first[:, 0])) == 3, "the first test examples are spread over the grid"


def test_x_and_y_move_the_centroid_by_the_grid_step():
    step = (SIDE - 2 * MARGIN) / (SMALL[3] - 1)
    for shape in range(3):
        rows = at(SMALL, shape=shape, scale=1, rotation=0, y=2)            # x = 0..4
        cx, cy = zip(*(centroid(im) for im in render(rows, SMALL)))
        assert np.allclose(np.diff(cx), step, atol=0.6), (SHAPES[shape], cx)
        assert np.ptp(cy) < 0.6
        rows = at(SMALL, shape=shape, scale=1, rotation=0, x=2)            # y = 0..4, image rows grow downwards
        cx, cy = zip(*(centroid(im) for im in render(rows, SMALL)))
        assert np.allclose(np.diff(cy), step, atol=0.6), (SHAPES[shape], cy)
        assert np.ptp(cx) < 0.6


def test_scale_grows_the_area_as_its_square_and_rotation_keeps_it():
    for shape in range(3):
        area = [(render(at(SMALL, shape=shape, scale=s, rotation=0, x=2, y=2), SMALL) > 0).sum() for s in range(3)]
        scales = factor_values(np.array([[0, s, 0, 0, 0] for s in range(3)]), SMALL)[:, 1]
        # pixel edges make small shapes up to ~15 % off scale^2
        assert np.allclose(np.array(area) / area[-1], (scales / scales[-1]) ** 2, rtol=0.15), (SHAPES[shape], area)
        turned = render(at(SMALL, shape=shape, scale=2, x=2, y=2), SMALL)  # every rotation
        areas = (turned > 0).reshape(len(turned), -1).sum(1)
        assert np.ptp(areas) / areas.mean() < 0.1  # pixel edges: the square is 20 x 20 px upright, 372 px tilted
        if shape > 0:  # the square at 90 degrees looks the same; the others turn visibly
            assert len({im.tobytes() for im in turned}) == len(turned)


def test_rotation_turns_the_ellipse_by_its_angle():
    rows = at(SMALL, shape=1, scale=2, x=2, y=2)
    for f, im in zip(rows, render(rows, SMALL)):
        r, c = np.nonzero(im[0])
        cov = np.cov(np.stack([c, -r]))                                # x right, y up
        w, v = np.linalg.eigh(cov)
        angle = np.arctan2(v[1, -1], v[0, -1]) % np.pi                  # the long axis
        want = factor_values(f[None], SMALL)[0, 2] % np.pi
        assert min(abs(angle - want), np.pi - abs(angle - want)) < np.radians(4), (f, angle, want)


def test_the_three_shapes_differ_and_the_heart_is_upright():
    ims = render(at(SMALL, scale=2, rotation=0, x=2, y=2), SMALL)[:, 0] > 0   # square, ellipse, heart
    assert len({im.tobytes() for im in ims}) == 3
    heart = ims[2]
    rows = np.nonzero(heart)[0]
    top_width = heart[rows.min() + 2].sum()                               # the two lobes
    bottom_width = heart[rows.max() - 2].sum()                            # the tip
    assert top_width > 2 * bottom_width
    assert not np.array_equal(heart, heart[::-1])


def test_bad_grids_and_factors_are_refused():
    with pytest.raises(ValueError, match="sizes"):
        factor_grid((4, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="grid indices"):
        render(np.array([[0, 0, 0, 0, 99]]))
    with pytest.raises(ValueError, match="factor_names"):
        Dataset(torch.zeros(3, 1, 2, 2), None, DataInfo("t", (1, 2, 2)), factors=torch.zeros(3, 2), factor_names=("a",))
