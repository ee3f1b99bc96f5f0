"""A run folder is untrusted input: hypothesis-fuzzed trainer.pt, metrics.jsonl and safetensors headers
give exit 0 or one `error:` line naming the file (exit 2), never a traceback or a crash, never run code,
and nothing already saved is lost (config.json fuzzing: tests/test_bad_input.py)."""
from __future__ import annotations

import io
import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vaelab
from conftest import cli
from vaelab import rundir

FUZZ = settings(max_examples=12, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_LEAF = (st.none() | st.booleans() | st.integers(-2, 300) | st.floats(allow_nan=True) | st.text(max_size=5)
         | st.lists(st.integers(0, 4), max_size=3).map(lambda s: torch.zeros(s)))
_OBJ = st.recursive(_LEAF, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["epoch", "optimizer", "state", "param_groups", "rng",
                                                        "history", "model", "x", "step"]), inner, max_size=4),
                    max_leaves=10)


_ROW = st.dictionaries(st.sampled_from(["epoch", "elbo", "val_elbo", "kl", "seconds"]),
                       st.none() | st.integers(-5, 9) | st.floats() | st.text(max_size=3), max_size=4)


@pytest.fixture(scope="module")
def source(digits_runs) -> Path:
    return digits_runs["vae"]


def fresh(source: Path, tmp: Path) -> Path:
    run = tmp / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(source, run)
    return run


def assert_clean(r, file: str) -> None:
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output, r.output
    assert r.exit_code in (0, 2), (r.exit_code, r.output)
    if r.exit_code == 2:
        assert r.output.startswith("error: ") and file in r.output, r.output


def resume(run: Path, done: int = 4):
    """One more epoch of the digits vae run (trained for ``done`` epochs)."""
    return cli("train", "--model", "vae", "--epochs", str(done + 1), "--resume", "--no-progress", "--out", run)


def mutate(data: bytes, draw) -> bytes:
    """Truncate, flip or splice bytes of a real file."""
    how = draw(st.sampled_from(["truncate", "flip", "splice"]))
    i = draw(st.integers(0, max(len(data) - 1, 0)))
    if how == "truncate":
        return data[:i]
    if how == "flip":
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    return data[:i] + draw(st.binary(min_size=1, max_size=16)) + data[i:]


@FUZZ
@given(data=st.data())
def test_fuzzed_trainer_state(source, tmp_path_factory, data):
    run = fresh(source, tmp_path_factory.getbasetemp())
    before = vaelab.load(run).state_dict()
    if data.draw(st.booleans()):
        buf = io.BytesIO()
        torch.save(data.draw(_OBJ), buf)
        payload = buf.getvalue()
    else:
        payload = mutate((run / rundir.TRAINER).read_bytes(), data.draw)
    (run / rundir.TRAINER).write_bytes(payload)
    r = resume(run)
    assert_clean(r, rundir.TRAINER)
    if r.exit_code == 2:  # refused: the saved run is untouched
        assert all(torch.equal(before[k], v) for k, v in vaelab.load(run).state_dict().items())


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(_Payload.marker),))


def test_a_code_running_trainer_state_runs_nothing(source, tmp_path):
    run = fresh(source, tmp_path)
    _Payload.marker = str(tmp_path / "pwned")
    torch.save({"epoch": 1, "x": _Payload()}, run / rundir.TRAINER)
    r = resume(run)
    assert_clean(r, rundir.TRAINER)
    assert r.exit_code == 2 and not (tmp_path / "pwned").exists()


@FUZZ
@given(data=st.data())
def test_fuzzed_metrics_lines(source, tmp_path_factory, data):
    run = fresh(source, tmp_path_factory.getbasetemp())
    path = run / rundir.METRICS
    lines = path.read_text().splitlines()
    i = data.draw(st.integers(0, len(lines) - 1))
    lines[i] = data.draw(st.text(max_size=40) | st.builds(json.dumps, _ROW))
    path.write_text("\n".join(lines) + "\n")
    assert_clean(cli("plot", run, "--kind", "curves", "--out", run / "c.png"), rundir.METRICS)
    assert_clean(resume(run, len(lines)), rundir.METRICS)


@FUZZ
@given(data=st.data())
def test_fuzzed_safetensors_header(source, tmp_path_factory, data):
    run = fresh(source, tmp_path_factory.getbasetemp())
    path = run / rundir.WEIGHTS
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header, body = json.loads(raw[8:8 + n]), raw[8 + n:]
    name = data.draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
    field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", "whole", "length"]))
    if field == "length":
        blob = raw[8:8 + n]
        n = data.draw(st.sampled_from([0, n - 1, n + 1, 2 ** 40, 2 ** 64 - 1]))
    else:
        value = data.draw(st.sampled_from(["F16", "I64", "BOOL", "XX", None, 7])) if field == "dtype" else \
            data.draw(st.lists(st.integers(-1, 2 ** 33), max_size=4))
        if field == "whole":
            header[name] = value
        else:
            header[name] = {**header[name], field: value}
        blob = json.dumps(header).encode()
        n = len(blob)
    path.write_bytes(struct.pack("<Q", n) + blob + body)
    r = cli("plot", run, "--kind", "samples", "--out", run / "s.png")
    assert_clean(r, rundir.WEIGHTS)
