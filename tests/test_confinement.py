"""config.json is untrusted: recorded data paths are followed only inside the run folder or a data root;
``--data PATH`` overrides; the recorded ``data`` entry is type-checked; the explorer checks Host/Origin."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_cli_error, cli, contract_params

from vaelab import rundir
from vaelab.data import DATA_DIR_ENV, info_dict, load_dataset, load_from_info, resolve_recorded
from vaelab.models import build_model

OUTSIDE = "refers to data at"


@pytest.fixture(scope="module")
def array_file(tmp_path_factory) -> Path:
    """60 digits (+ labels) as a .npz outside every data root and run folder."""
    test = load_dataset("digits", "test")
    path = tmp_path_factory.mktemp("elsewhere") / "d.npz"
    np.savez(path, x=test.x[:60].numpy(), y=test.y[:60].numpy())
    return path


def make_run(folder: Path, data_info: dict) -> Path:
    torch.manual_seed(0)
    model = build_model("vae", **contract_params("vae"))
    return rundir.save_model(folder, model, data=data_info)


@pytest.fixture
def outside_run(tmp_path, array_file) -> Path:
    return make_run(tmp_path / "run", info_dict(load_dataset(str(array_file), "test").info))


# -- the rule ---------------------------------------------------------------------------------------------
def test_recorded_paths_are_absolute(tmp_path, array_file, monkeypatch):
    monkeypatch.chdir(array_file.parent)
    info = load_dataset("d.npz", "test").info
    assert info.name == str(array_file.resolve())


def test_outside_path_refused_and_override(outside_run, array_file):
    info = rundir.read_config(outside_run)["data"]
    with pytest.raises(ValueError, match=f"run '{outside_run}' {OUTSIDE} '{array_file}' outside the run "
                                         "folder and the data roots; pass --data PATH to use it"):
        resolve_recorded(info, outside_run)
    assert resolve_recorded(info, outside_run, override=array_file).name == str(array_file.resolve())
    assert resolve_recorded(info, outside_run, data_dir=array_file.parent).name == str(array_file.resolve())


def test_system_path_refused(tmp_path):
    info = {"name": "/usr/share", "shape": [1, 8, 8]}
    with pytest.raises(ValueError, match=f"{OUTSIDE} '/usr/share' outside"):
        resolve_recorded(info, tmp_path)


def test_inside_run_folder_and_relative(tmp_path, array_file):
    run = tmp_path / "run"
    run.mkdir()
    (run / "d.npz").write_bytes(array_file.read_bytes())
    for name in (str(run / "d.npz"), "d.npz"):  # relative: taken relative to the run folder
        got = resolve_recorded({"name": name, "shape": [1, 8, 8]}, run)
        assert got.name == str((run / "d.npz").resolve())
    with pytest.raises(ValueError, match=OUTSIDE):
        resolve_recorded({"name": "../../etc", "shape": [1, 8, 8]}, run)


def test_symlink_out_of_run_folder_refused(tmp_path, array_file):
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(array_file, run / "link.npz")
    with pytest.raises(ValueError, match=OUTSIDE):
        resolve_recorded({"name": str(run / "link.npz"), "shape": [1, 8, 8]}, run)


def test_env_data_root_allows(tmp_path, array_file, monkeypatch):
    info = {"name": str(array_file), "shape": [1, 8, 8]}
    monkeypatch.setenv(DATA_DIR_ENV, str(array_file.parent))
    assert resolve_recorded(info, tmp_path).name == str(array_file.resolve())
    monkeypatch.delenv(DATA_DIR_ENV)
    with pytest.raises(ValueError, match=OUTSIDE):
        resolve_recorded(info, tmp_path)


def test_builtin_names_pass(tmp_path):
    assert resolve_recorded({"name": "digits", "shape": [1, 8, 8]}, tmp_path).name == "digits"


@pytest.mark.parametrize("info, needle", [
    ("digits", "'data' must be an object"),
    (["digits"], "'data' must be an object"),
    ({"name": 3, "shape": [1, 8, 8]}, "data.name=3"),
    ({"name": "digits", "shape": "1,8,8"}, "data.shape='1,8,8'"),
    ({"name": "digits", "shape": [1, 8, True]}, "data.shape"),
    ({"name": "digits", "shape": [1, 8, 8], "binarize": 1}, "data.binarize=1"),
    ({"name": "digits", "shape": [1, 8, 8], "size": "8"}, "data.size='8'"),
    ({"name": "digits", "shape": [1, 8, 8], "is_image": "yes"}, "data.is_image"),
    ({"name": "digits", "shape": [1, 8, 8], "class_names": "abc"}, "data.class_names"),
    ({"name": "digits", "shape": [1, 8, 8], "n_classes": 1.5}, "data.n_classes"),
    ({"name": "digits", "shape": [1, 8, 8], "evil": 1}, "unknown key(s) ['evil']"),
    ({"shape": [1, 8, 8]}, "lacks 'name'"),
])
def test_data_info_types_checked(tmp_path, info, needle):
    with pytest.raises(ValueError, match="config.json") as e:
        load_from_info(info, "test")
    assert needle in str(e.value)
    with pytest.raises(ValueError, match="config.json"):
        resolve_recorded(info, tmp_path)


# -- the commands ---------------------------------------------------------------------------------------
def test_eval_refuses_then_override(outside_run, array_file):
    args = ("eval", outside_run, "--iw-samples", "2", "--no-fd", "--no-progress", "--max-examples", "8")
    assert_cli_error(cli(*args), OUTSIDE, "--data PATH")
    r = cli(*args, "--data", array_file)
    assert r.exit_code == 0, r.output
    assert (outside_run / "eval.json").exists()


def test_plot_refuses_then_override(outside_run, array_file, tmp_path):
    out = tmp_path / "p.png"
    assert_cli_error(cli("plot", outside_run, "--kind", "recon", "--out", out), OUTSIDE)
    assert not out.exists()
    r = cli("plot", outside_run, "--kind", "recon", "--out", out, "--data", array_file)
    assert r.exit_code == 0, r.output
    assert out.exists()


def test_report_refuses_then_override(outside_run, array_file, tmp_path):
    out = tmp_path / "r.html"
    assert_cli_error(cli("report", outside_run, "--out", out), OUTSIDE)
    r = cli("report", outside_run, "--out", out, "--data", array_file)
    assert r.exit_code == 0, r.output
    assert out.exists()


def test_string_data_entry_is_a_cli_error(tmp_path):
    run = make_run(tmp_path / "run", {"name": "digits", "shape": [1, 8, 8]})
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"] = "/usr/share"
    (run / "config.json").write_text(json.dumps(cfg))
    assert_cli_error(cli("plot", run, "--kind", "recon", "--out", tmp_path / "p.png"), "config.json", "'data'")


def test_serve_app_refuses_then_override(outside_run, array_file):
    pytest.importorskip("fastapi")
    from vaelab.web import create_app

    with pytest.raises(ValueError, match=OUTSIDE):
        create_app(outside_run)
    assert create_app(outside_run, data=array_file) is not None


def test_feature_cache_default_is_not_the_data_dir(tmp_path, monkeypatch):
    from vaelab.data import find_cache_dir

    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert find_cache_dir() == tmp_path / "xdg" / "vaelab"
    assert find_cache_dir(tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert find_cache_dir() == tmp_path / "home" / ".cache" / "vaelab"
