"""Help and usage errors from the cached option specs (vaelab/cli/cached.py): the stand-in built from a
command's spec answers exactly as the real command, a warm cache answers without importing torch, a command
line that parses still runs the real command, and a damaged spec is ignored."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from vaelab.cli import COMMANDS, STAND_INS, _command, app, cached, checked_names, load_command

ENV = {"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}
# per command: command lines the stand-in must answer as the real command does (help, usage errors)
LINES = {name: [["--help"], ["--no-such-option"]] for name in COMMANDS}
LINES["train"] += [["--epochs", "x"], ["--lr"], ["--latent-dim", "2.5"], ["--help", "--epochs", "x"],
                   ["--model", "vea"], ["--model", "vea", "--data", "mnsit", "--epochs", "0"], ["--model", "xyz"]]
LINES["sample"] += [["run", "--n", "4"], []]
LINES["eval"] += [[], ["run", "--k", "x"]]
LINES["serve"] += [["run", "--port", "x"]]


def info_of(name: str):
    load_command(name)  # imports the module, which registers the command
    return next(i for i in app.registered_commands
                if (i.name or i.callback.__name__.replace("_", "-")) == name)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "vaelab" / "cli"


def invoke(args: list[str]):
    return CliRunner().invoke(app, args, env=ENV)


@pytest.mark.parametrize("name, args", [(n, a) for n, lines in LINES.items() for a in lines])
def test_the_stand_in_answers_as_the_real_command(cache, name, args):
    real = invoke([name, *args])
    cached.save(name, info_of(name), checked_names(name))
    info = cached.load(name)
    assert info is not None, f"command {name!r} has no cached spec"
    STAND_INS[name] = _command(info)
    try:
        stand_in = invoke([name, *args])
    finally:
        STAND_INS.pop(name)
    assert (stand_in.exit_code, stand_in.output) == (real.exit_code, real.output)
    assert not isinstance(stand_in.exception, cached.NeedsCommand)  # answered, not handed on


def test_a_line_that_parses_is_handed_to_the_real_command(cache):
    cached.save("train", info_of("train"))
    STAND_INS["train"] = _command(cached.load("train"))
    try:
        r = invoke(["train", "--epochs", "1", "--data", "digits"])
    finally:
        STAND_INS.pop("train")
    assert isinstance(r.exception, cached.NeedsCommand)


def child(args: list[str], xdg, **extra: str) -> subprocess.CompletedProcess:
    """``vaelab.cli.main()`` in a new process; its last stdout line says whether torch was imported."""
    code = ("import sys; sys.argv = ['vaelab', *sys.argv[1:]]\nfrom vaelab.cli import main\ncode = 0\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)")
    env = {**os.environ, **ENV, "XDG_CACHE_HOME": str(xdg), "VAELAB_PLUGINS": "", **extra}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                          env=env)


def test_a_warm_cache_answers_without_torch_and_real_runs_still_run(tmp_path):
    xdg = tmp_path / "xdg"
    cold = child(["train", "--help"], xdg)
    assert cold.stdout.splitlines()[-1] == "TORCH 0", cold.stderr
    (spec,) = (xdg / "vaelab" / "cli").glob("*/train.json")  # the spec written on the way
    written = spec.stat().st_mtime_ns
    warm = child(["train", "--help"], xdg)
    assert warm.stdout.splitlines()[-1] == "NO-TORCH 0", warm.stderr
    assert warm.stdout == cold.stdout.replace("TORCH 0", "NO-TORCH 0")
    bad = child(["train", "--epochs", "x"], xdg)
    assert bad.stdout.splitlines()[-1] == "NO-TORCH 2"
    assert bad.stderr.startswith("error: ") and "(got 'x')" in bad.stderr and len(bad.stderr.splitlines()) == 1
    unknown = child(["train", "--model", "vea"], xdg)  # a name the command refuses first: refused at once too
    assert unknown.stdout.splitlines()[-1] == "NO-TORCH 2"
    assert unknown.stderr.startswith("error: model='vea' is not known") and "did you mean 'vae'" in unknown.stderr
    out = tmp_path / "run"
    ok = child(["train", "--data", "digits", "--latent-dim", "2", "--hidden", "16", "--epochs", "1",
                "--no-progress", "--out", str(out)], xdg)
    assert ok.stdout.splitlines()[-1] == "TORCH 0", ok.stderr
    assert (out / "model.safetensors").is_file()
    assert spec.stat().st_mtime_ns == written  # a valid spec is read, not written again


def test_with_plugins_the_cache_is_neither_read_nor_written(tmp_path):
    xdg = tmp_path / "xdg"
    r = child(["train", "--help"], xdg, VAELAB_PLUGINS="json")
    assert r.stdout.splitlines()[-1] == "TORCH 0", r.stderr
    assert not (xdg / "vaelab" / "cli").exists()
    assert cached.plugins_requested(["train", "--plugin=x"]) and cached.plugins_requested(["train", "--plugin", "x"])


@pytest.mark.parametrize("damage", [
    lambda s: "{not json",
    lambda s: json.dumps({**s, "format": 99}),
    lambda s: json.dumps({**s, "name": "sample"}),
    lambda s: json.dumps({**s, "params": [{**s["params"][0], "type": "dict"}]}),
    lambda s: json.dumps({**s, "params": [{**s["params"][0], "settings": {"callback": "os.system"}}]}),
    lambda s: json.dumps({**s, "params": [{**s["params"][0], "name": "a b"}]}),
    lambda s: json.dumps({**s, "params": [{**s["params"][0], "default": {"object": "x"}}]}),
    lambda s: json.dumps({**s, "params": "all"}),
    lambda s: json.dumps({**s, "names": {"model": "vae"}}),
    lambda s: json.dumps({**s, "names": {"no_such_param": ["vae"]}}),
    lambda s: json.dumps({**s, "names": [["model", ["vae"]]]}),
])
def test_a_damaged_spec_is_ignored(cache, damage):
    cached.save("train", info_of("train"), checked_names("train"))
    path = cached.spec_path("train")
    path.write_text(damage(json.loads(path.read_text())))
    assert cached.load("train") is None


def test_the_key_follows_the_version(cache, monkeypatch):
    before = cached.key()
    monkeypatch.setattr(cached, "__version__", "0.0.0-other")
    assert cached.key() != before


def test_a_new_key_replaces_the_old_specs_and_nothing_else(cache, monkeypatch):
    cached.save("train", info_of("train"))
    old = cached.spec_path("train").parent
    mine = cache / "notes"  # not a key folder: left alone
    mine.mkdir()
    (mine / "x.json").write_text("{}")
    monkeypatch.setattr(cached, "__version__", "0.0.0-other")
    cached.save("train", info_of("train"))
    assert not old.exists() and cached.spec_path("train").is_file() and (mine / "x.json").is_file()


def test_no_home_folder_means_no_cache_not_a_crash(monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(cached.Path, "home", staticmethod(no_home))
    cached.save("train", info_of("train"))
    assert cached.load("train") is None
