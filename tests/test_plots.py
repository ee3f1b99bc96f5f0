"""vaelab plot: every kind x every registered model gives a PNG of the documented size, or a clear error."""
from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import contract_params, quiet_env
from matplotlib.figure import Figure
from PIL import Image
from typer.testing import CliRunner

from vaelab.viz import grids as viz, plots
from vaelab.viz.grids import min_font_px
from vaelab.cli import app
from vaelab.rundir import write_png
from vaelab.models import REGISTRY, config_fields
from vaelab.train.run import train_run
from vaelab.train import TrainConfig

SCALE = 6            # 8x8 digits are upscaled to about 48 px (plots.upscale_for)
CELL = 8 + 1         # one digit plus the 1-px grid padding
# Figures of a fixed documented size (width, height) in pixels; recon: 16 digits 50 px wide + labels
FIXED_SIZES = {"latent": (500, 450), "manifold": (640, 640), "curves": (1000, 320), "recon": (930, 190)}
SMALLEST_TEXT_PX = 9 * 100 / 72   # 9 pt at 100 dpi: 12.5 px, >= 10 px on a page showing it at 80 %
VARIANTS = ("small", "wide")   # contract_params' latent size; latent_dim=3 where the model takes one
# (model, variant) pairs that exist: hvae sets its size through latent_dims, so it has no 'wide' variant
CASES = [(name, variant) for name in sorted(REGISTRY) for variant in VARIANTS
         if variant == "small" or "latent_dim" in config_fields(name)]


def grid_px(rows: int, cols: int) -> tuple[int, int]:
    """(width, height) of an upscaled grid of 8x8 digits."""
    return (cols * CELL + 1) * SCALE, (rows * CELL + 1) * SCALE


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[tuple[str, str], plots.RunData]:
    """(model name, variant) -> loaded tiny run on digits, for every registered model."""
    root = tmp_path_factory.mktemp("plot_runs")
    out = {}
    for name in REGISTRY:
        options = {k: v for k, v in contract_params(name).items() if k not in ("input_shape", "n_classes")}
        for variant in (v for n, v in CASES if n == name):
            if variant == "wide":
                options = {**options, "latent_dim": 3}
            cfg = TrainConfig(epochs=2, batch_size=128, seed=0, device="cpu", progress=False)
            train_run(name, "digits", root / f"{name}-{variant}", options, cfg, val_fraction=0.1)
            out[name, variant] = plots.load_run(root / f"{name}-{variant}")
    return out


def expected_error(kind: str, data: plots.RunData) -> str | None:
    """The message fragment a kind that does not apply must give (None: it applies)."""
    if kind == "curves" and not type(data.model).trainable:
        return "closed form"
    if kind == "manifold" and data.model.latent_dim != 2:
        return f"manifold needs a 2-D latent or --dims i,j; this model has latent_dim={data.model.latent_dim}"
    return None


def saved_png(picture, path: Path) -> Image.Image:
    write_png(path, picture)
    assert path.stat().st_size > 0
    img = Image.open(path)
    img.load()
    return img


@pytest.mark.parametrize("name,variant", CASES)
@pytest.mark.parametrize("kind", plots.KINDS)
def test_every_kind_for_every_model(runs, kind, name, variant, tmp_path):
    data = runs[name, variant]
    model = data.model
    err = expected_error(kind, data)
    if err is not None:
        with pytest.raises(ValueError, match=err.replace("(", r"\(").replace(")", r"\)")):
            plots.make_plot(kind, model, data.test, data.history)
        return
    picture = plots.make_plot(kind, model, data.test, data.history)
    img = saved_png(picture, tmp_path / f"{kind}.png")
    pixels = np.asarray(img.convert("L"))
    assert pixels.std() > 1.0, "picture is blank"
    if isinstance(picture, Figure):
        w, h = picture.get_size_inches() * picture.dpi
        assert img.size == (round(w), round(h))
        if kind in FIXED_SIZES:
            assert img.size == FIXED_SIZES[kind]
        assert min_font_px(picture) >= SMALLEST_TEXT_PX - 1e-9, "a text too small to read"
    elif kind == "samples":
        assert img.size == (grid_px(model.n_classes, 8) if model.n_classes else grid_px(8, 8))
    else:
        pytest.fail(f"kind {kind!r} returned a {type(picture).__name__}, expected a Figure")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_manifold_on_a_wide_latent_with_dims(runs, name, tmp_path):
    data = runs.get((name, "wide")) or runs[name, "small"]
    d = data.model.latent_dim
    if d < 3:
        pytest.skip("needs a latent with more than 2 dims")
    fig = plots.make_plot("manifold", data.model, data.test, opts=plots.PlotOptions(dims=(0, d - 1), n=5))
    assert saved_png(fig, tmp_path / "m.png").size == FIXED_SIZES["manifold"]
    with pytest.raises(ValueError, match=f"in 0..{d - 1}"):
        plots.make_plot("manifold", data.model, data.test, opts=plots.PlotOptions(dims=(0, d)))
    with pytest.raises(ValueError, match="distinct"):
        plots.make_plot("manifold", data.model, data.test, opts=plots.PlotOptions(dims=(1, 1)))


def test_sizes_follow_n_and_the_conditional_layout(runs):
    vae, cvae = runs["vae", "small"], runs["cvae", "small"]
    recon = plots.make_plot("recon", vae.model, vae.test, opts=plots.PlotOptions(n=5))
    assert tuple(recon.get_size_inches()) == viz.grid_figure_size(2, 5)
    assert plots.make_plot("samples", vae.model, opts=plots.PlotOptions(n=10)).shape[:2] == grid_px(3, 4)[::-1]
    # conditional: one row per class, n per row
    assert plots.make_plot("samples", cvae.model, opts=plots.PlotOptions(n=3)).shape[:2] == grid_px(10, 3)[::-1]


def test_samples_follow_the_seed_and_temperature(runs):
    m = runs["vae", "small"].model
    a, b, c = (plots.make_plot("samples", m, opts=plots.PlotOptions(n=9, seed=s)) for s in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    cold = plots.make_plot("samples", m, opts=plots.PlotOptions(n=9, seed=1, temperature=0.01))
    assert not np.array_equal(a, cold)
    with pytest.raises(ValueError, match="temperature=0"):
        plots.make_plot("samples", m, opts=plots.PlotOptions(temperature=0))


def test_image_kinds_refuse_non_image_data(tmp_path):
    cfg = TrainConfig(epochs=1, device="cpu", progress=False)
    train_run("pca", "swiss-roll", tmp_path / "roll", {"latent_dim": 2}, cfg, val_fraction=0.0)
    data = plots.load_run(tmp_path / "roll")
    for kind in sorted(plots.IMAGE_KINDS):
        with pytest.raises(ValueError, match=r"draws images.*shape \(3,\)"):
            plots.make_plot(kind, data.model, data.test, data.history)
    assert isinstance(plots.make_plot("latent", data.model, data.test), Figure)


def test_unknown_kind_and_bad_label(runs):
    data = runs["vae", "small"]
    with pytest.raises(ValueError, match="allowed: .*'manifold'"):
        plots.make_plot("scatter", data.model, data.test)
    with pytest.raises(ValueError, match="needs a conditional model"):
        plots.make_plot("samples", data.model, opts=plots.PlotOptions(label=3))
    cvae = runs["cvae", "small"]
    with pytest.raises(ValueError, match=r"label=10 is out of range; allowed: 0..9"):
        plots.make_plot("manifold", cvae.model, cvae.test, opts=plots.PlotOptions(label=10))


# -- the CLI ----------------------------------------------------------------------------------------------
def test_cli_plot_writes_png_and_errors_clearly(tmp_path):
    cfg = TrainConfig(epochs=1, device="cpu", progress=False)
    train_run("vae", "digits", tmp_path / "v3", {"latent_dim": 3, "hidden": (16,)}, cfg, val_fraction=0.0)
    runner = CliRunner()
    out = tmp_path / "t.png"
    r = runner.invoke(app, ["plot", str(tmp_path / "v3"), "--kind", "traverse", "--dims", "0,2", "--n", "5",
                            "--out", str(out)], env=quiet_env())
    assert r.exit_code == 0, r.output
    fig_h = 0.55 * 2 + 1.1                                   # two rows (dims 0 and 2)
    assert Image.open(out).size[1] == round(fig_h * 100)
    r = runner.invoke(app, ["plot", str(tmp_path / "v3"), "--kind", "manifold", "--out", str(tmp_path / "m.png")],
                      env=quiet_env())
    assert r.exit_code == 2
    assert "manifold needs a 2-D latent or --dims i,j; this model has latent_dim=3" in r.output
    assert not (tmp_path / "m.png").exists()
    r = runner.invoke(app, ["plot", str(tmp_path / "v3"), "--kind", "pie"], env=quiet_env())
    assert r.exit_code == 2 and "allowed:" in r.output and "curves" in r.output
    r = runner.invoke(app, ["plot", str(tmp_path / "v3"), "--kind", "latent", "--dims", "0,x"], env=quiet_env())
    assert r.exit_code == 2 and "--dims '0,x'" in r.output


# -- the latent geometry ----------------------------------------------------------------------------------
def test_gaussian_lattice_is_the_inverse_cdf_of_an_even_grid():
    z = viz.gaussian_lattice(7)
    want = [statistics.NormalDist().inv_cdf((i + 0.5) / 7) for i in range(7)]
    assert torch.allclose(z, torch.tensor(want, dtype=torch.float32), atol=1e-5)
    assert float(z[3]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="n=1"):
        viz.gaussian_lattice(1)


def test_lattice_codes_put_high_values_at_the_top():
    xs, ys = torch.tensor([-1.0, 0.0, 1.0]), torch.tensor([-2.0, 2.0])
    z = viz.lattice_codes(xs, ys, (2, 0), torch.full((4,), 7.0)).reshape(2, 3, 4)   # (rows, cols, d)
    assert torch.equal(z[0, :, 2], xs) and torch.equal(z[:, 0, 0], torch.tensor([2.0, -2.0]))
    assert (z[..., [1, 3]] == 7).all()


def test_slerp_follows_the_great_circle_and_lerp_the_chord():
    a, b = torch.tensor([2.0, 0.0, 0.0]), torch.tensor([0.0, 2.0, 0.0])
    s, line = viz.slerp(a, b, 5), viz.lerp(a, b, 5)
    assert torch.allclose(s[0], a) and torch.allclose(s[-1], b) and torch.allclose(line[-1], b)
    assert torch.allclose(s.norm(dim=1), torch.full((5,), 2.0))               # stays on the sphere
    assert float(line[2].norm()) == pytest.approx(2 / math.sqrt(2), rel=1e-5)  # the chord dips inside
    angles = torch.atan2(s[:, 1], s[:, 0])
    assert torch.allclose(angles.diff(), torch.full((4,), math.pi / 8), atol=1e-5)  # equal angle steps
    assert torch.allclose(viz.slerp(a, 3 * a, 4), viz.lerp(a, 3 * a, 4))      # parallel: falls back to lerp


def test_traversal_codes_change_one_dimension_per_row():
    base = torch.tensor([0.5, -0.5, 1.0])
    values = torch.linspace(-3, 3, 4)
    z = viz.traversal_codes(base, [2, 0], values).reshape(2, 4, 3)
    assert torch.equal(z[0, :, 2], values) and (z[0, :, :2] == base[:2]).all()
    assert torch.equal(z[1, :, 0], values) and (z[1, :, 1:] == base[1:]).all()


def test_recon_rows_are_labelled_and_each_digit_is_shown_big(runs):
    data = runs["vae", "small"]
    fig = plots.make_plot("recon", data.model, data.test)
    fig.canvas.draw()
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["original", "reconstruction"]
    grid_w = ax.get_images()[0].get_array().shape[1]               # 16 digits of 8 px + 17 px padding
    shown_w = ax.get_window_extent().width                          # pixels of the PNG the grid spans
    assert shown_w / 16 >= 40, f"each digit only {shown_w / 16:.0f} px wide"
    assert grid_w == 16 * CELL + 1
    # the top row is the test images themselves
    top = ax.get_images()[0].get_array()[1:9, 1:9]
    assert np.array_equal(np.asarray(top), (data.test.x[0, 0].numpy() * 255).round().astype(np.uint8))


def test_a_three_class_scatter_has_a_legend_of_three_discrete_colours():
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(90, 2)), np.repeat([2, 0, 1], 30)
    fig = viz.latent_scatter(z, y, "three", class_names=("setosa", "versicolor", "virginica"))
    assert len(fig.axes) == 1, "a colour bar was drawn"
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["setosa", "versicolor", "virginica"]
    colours = [tuple(h.get_color()) for h in legend.legend_handles]
    assert len(set(colours)) == 3
    points = fig.axes[0].collections[0].get_facecolors()[:, :3]     # (90, 3) in data order
    for k in range(3):  # every point has its class's legend colour
        assert np.allclose(points[y == k], np.asarray(colours[k])[:3])
    assert min_font_px(fig) >= SMALLEST_TEXT_PX - 1e-9
    # the same class keeps its colour when other classes are absent (as in the explorer's tab10 palette)
    only = viz.latent_scatter(z[y == 2], y[y == 2], class_names=("a", "b", "c"))
    assert np.allclose(only.axes[0].get_legend().legend_handles[0].get_color()[:3], colours[2][:3])


def test_many_classes_fall_back_to_a_colour_bar():
    rng = np.random.default_rng(0)
    fig = viz.latent_scatter(rng.normal(size=(100, 2)), np.arange(100) % 25)
    assert len(fig.axes) == 2 and fig.axes[0].get_legend() is None


def test_thinned_labels_keep_both_ends():
    assert viz.thinned(5, 11) == [0, 1, 2, 3, 4]
    for n in (12, 15, 16, 22, 40):
        shown = viz.thinned(n, 11)
        assert shown[0] == 0 and shown[-1] == n - 1 and len(shown) <= 12
        assert min(np.diff(shown)) >= 2  # no two neighbouring labels crowd each other
