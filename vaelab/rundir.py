"""A run folder: ``config.json`` + ``model.safetensors`` (+ ``trainer.pt`` for --resume, ``metrics.jsonl``,
``eval.json``), and the one place that writes vaelab's files.

Training commits each epoch whole (:func:`commit_epoch`): its files are staged as ``.epoch-N.<name>``, then
one atomic rename of ``checkpoint.json`` makes epoch N current, then the staged files are renamed onto
their names; readers resolve names through :func:`committed`, and a writer holds ``.lock`` (:func:`writing`).

Files are written to a temporary name and renamed (:func:`atomic_write`, :func:`atomic_path`), so a crash
never leaves a half-written checkpoint and a failed run never overwrites the last good one. JSON goes
through :func:`write_json` (strict: NaN/Inf become null), pictures through :func:`encode_png` /
:func:`write_png`, and :func:`display_metrics` decides which numbers describe a run. Nothing is unpickled:
weights come from safetensors and the trainer state is read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import from_dict, to_dict
from .fileio import atomic_path, atomic_write, check_finite_weights, finite_or_none, fsync_dir
from .models import LatentModel, model_class, plugins

CONFIG, WEIGHTS, TRAINER, METRICS = "config.json", "model.safetensors", "trainer.pt", "metrics.jsonl"
EVAL, REPORT = "eval.json", "report.html"   # written by vaelab eval / vaelab report (and demo)
MANIFEST, LOCK, BEST = "checkpoint.json", ".lock", "model_best.safetensors"
# what --overwrite removes (vaelab's own files; pictures and anything else stay)
OWN_FILES = (CONFIG, WEIGHTS, TRAINER, METRICS, EVAL, REPORT, MANIFEST, BEST)
_STAGED = re.compile(r"^\.epoch-(\d+)\.(.+)$")   # .epoch-N.<name>: a file of epoch N's commit


# -- writing files ------------------------------------------------------------------------------------
def json_text(data: Any) -> str:
    """Strict JSON text (NaN/Inf -> null), indented, with a final newline."""
    return json.dumps(finite_or_none(data), indent=2, allow_nan=False) + "\n"


def write_json(path: str | Path, data: Any) -> Path:
    """Strict JSON (NaN/Inf -> null), indented, written atomically."""
    return atomic_write(path, json_text(data))


def encode_png(picture: Any) -> bytes:
    """PNG bytes of a uint8 array (H, W), (H, W, 1), (H, W, 3) or a matplotlib Figure (encoded in memory)."""
    buf = io.BytesIO()
    if hasattr(picture, "savefig"):  # a matplotlib Figure (not imported here: rundir stays light)
        picture.savefig(buf, format="png")
        return buf.getvalue()
    import numpy as np
    from PIL import Image

    arr = np.asarray(picture)
    arr = arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: str | Path, picture: Any) -> Path:
    """Write ``picture`` (see :func:`encode_png`) as a PNG file, atomically; creates the folder."""
    return atomic_write(path, encode_png(picture))


# -- reading what a run reports ------------------------------------------------------------------------
def display_metrics(run_dir: str | Path) -> dict[str, Any]:
    """The numbers that describe a run: RUN/eval.json when present and readable, else the last row of
    RUN/metrics.jsonl (else no values).

    Returns ``{"source": EVAL or METRICS, "values": {...}}`` with NaN/Inf as None; a ``"warning"`` entry says
    what was skipped (an unreadable eval.json, unparsable metrics lines) so the caller can show it."""
    run = Path(run_dir)
    warnings: list[str] = []
    path = run / EVAL
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError(f"it holds a {type(data).__name__}, not an object")
            return {"source": EVAL, "values": finite_or_none(data)}
        except (ValueError, OSError) as e:  # JSONDecodeError is a ValueError
            warnings.append(f"{EVAL} is not valid JSON ({e}); showing {METRICS} instead")
    rows, bad = _json_rows((run / METRICS).read_text() if (run / METRICS).is_file() else "")
    if bad:
        warnings.append(f"skipped {len(bad)} unreadable line(s) of {METRICS}")
    out: dict[str, Any] = {"source": METRICS, "values": finite_or_none(rows[-1]) if rows else {}}
    if warnings:
        out["warning"] = "; ".join(warnings)
    return out


# -- the checkpoint -------------------------------------------------------------------------------------


def _version() -> str:
    from .version import __version__

    return __version__


def _config_of(model: LatentModel, extra: dict[str, Any]) -> dict[str, Any]:
    """config.json's content: vaelab version, model name, constructor arguments, then ``extra``."""
    return {"vaelab_version": _version(), "model": model.name, "model_config": to_dict(model.config), **extra}


def _weights_writer(model: LatentModel) -> Callable[[Path], None]:
    """Writes the model's weights (a CPU copy taken now) as safetensors to the path it is given."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return lambda p: save_file(state, str(p))


def save_model(run_dir: str | Path, model: LatentModel, **extra: Any) -> Path:
    """Write config.json (model name + constructor args + ``extra``) and the weights, atomically."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    (run / MANIFEST).unlink(missing_ok=True)  # a plain save: no epoch commit describes these files any more
    with atomic_path(run / WEIGHTS) as tmp:
        _weights_writer(model)(tmp)
    write_json(run / CONFIG, _config_of(model, extra))
    return run


def read_config(run_dir: str | Path) -> dict[str, Any]:
    run = Path(run_dir)
    path = run / CONFIG
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {str(run)!r} does not exist")
    path = committed(run, CONFIG)
    if not path.exists() or not committed(run, WEIGHTS).exists():
        raise FileNotFoundError(f"{str(run)!r} holds no checkpoint: expected {CONFIG} and {WEIGHTS} in it")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(path)!r} is not valid JSON ({e}); the checkpoint is corrupted") from None
    if not isinstance(cfg, dict) or "model" not in cfg or "model_config" not in cfg:
        raise ValueError(f"{str(path)!r} lacks the 'model' and 'model_config' entries of a vaelab checkpoint")
    plugins.load_plugins(cfg.get("plugins") or ())  # a model from outside vaelab: import its module again
    return cfg


def load(run_dir: str | Path, device: str | torch.device = "cpu") -> LatentModel:
    """Rebuild the model saved in ``run_dir`` (in eval mode)."""
    cfg = read_config(run_dir)
    cls = model_class(cfg["model"])
    model = cls(from_dict(cls.Config, cfg["model_config"]))
    path = Path(run_dir) / WEIGHTS
    try:
        state = _read_committed(Path(run_dir), WEIGHTS, lambda p: load_file(str(p)))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{str(path)!r} is corrupted or not a safetensors file ({e})") from None
    check_finite_weights(state, path)  # NaN/Inf weights are refused, naming the file and the tensor
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ValueError(f"{str(path)!r} does not match its config.json ({first})") from None
    return model.to(device).eval()


def save_trainer(run_dir: str | Path, state: dict[str, Any]) -> None:
    with atomic_path(Path(run_dir) / TRAINER) as tmp:
        torch.save(state, tmp)


def load_trainer(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / TRAINER
    if not committed(Path(run_dir), TRAINER).exists():
        raise FileNotFoundError(f"cannot resume: {str(path)!r} does not exist (train without --resume first)")
    try:
        state = _read_committed(Path(run_dir), TRAINER,
                                lambda p: torch.load(p, map_location="cpu", weights_only=True))
    except Exception as e:  # noqa: BLE001  (any unpickling failure means a bad file)
        raise ValueError(f"{str(path)!r} is corrupted or not a vaelab trainer state ({e})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{str(path)!r} is not a vaelab trainer state (it holds a {type(state).__name__})")
    return state


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch rows of metrics.jsonl (empty when there are none); with a checkpoint.json only the
    rows of the committed epochs (a row a crashed process wrote beyond them is not part of the run)."""
    run = Path(run_dir)
    try:
        text = _read_committed(run, METRICS, lambda p: p.read_text())
    except FileNotFoundError:
        return []
    rows, bad = _json_rows(text)
    lines = text.splitlines()
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i in bad:
        try:
            json.loads(lines[i])
        except ValueError as e:
            if i == last:  # a torn LAST line (a crash mid-append in an older run) is dropped
                continue
            raise ValueError(f"{str(run / METRICS)!r} line {i + 1} is not JSON ({e}); "
                             "the metrics file is corrupted") from None
        raise ValueError(f"{str(run / METRICS)!r} line {i + 1} is not a JSON object; the metrics file is corrupted")
    manifest = read_manifest(run)
    if manifest is not None:
        rows = [r for r in rows if not isinstance(r, dict) or int(r.get("epoch", 0)) <= manifest["epoch"]]
    return rows


def _json_rows(text: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The JSON objects of a JSON-lines text, and the (0-based) indices of the non-blank lines that are not
    one (unparsable, or not an object)."""
    rows, bad = [], []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:  # JSONDecodeError is a ValueError
            row = None
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad.append(i)
    return rows, bad


def save_best(run_dir: str | Path, model: LatentModel, name: str = "model_best.safetensors") -> Path:
    """The best epoch's weights beside the last ones (early stopping), written atomically; loads like
    model.safetensors (same config.json)."""
    path = Path(run_dir) / name
    with atomic_path(path) as tmp:
        _weights_writer(model)(tmp)
    return path


# -- epoch commits: every file of an epoch, then one rename of checkpoint.json -------------------------
# Protocol (the writer holds RUN/.lock, see :func:`writing`):
#   1. each file of epoch N is written, fsynced and renamed to RUN/.epoch-N.<name> (atomic_path);
#   2. RUN/checkpoint.json = {"epoch": N, "files": {name: {"sha256", "size"}}} is written atomically and
#      the folder fsynced: THIS rename commits epoch N (before it, the folder is epoch N-1's);
#   3. each .epoch-N.<name> is renamed onto <name> (roll forward), the folder fsynced.
# A crash before 2 leaves staged files that :func:`recover` deletes; a crash during 3 leaves staged files
# that readers use in place of the final names (:func:`committed`) and :func:`recover` renames.
def staged_path(run_dir: str | Path, epoch: int, name: str) -> Path:
    return Path(run_dir) / f".epoch-{epoch}.{name}"


def read_manifest(run_dir: str | Path) -> dict[str, Any] | None:
    """RUN/checkpoint.json ({"epoch", "files"}), or None for a run without one (older runs, plain saves)."""
    path = Path(run_dir) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, OSError) as e:
        raise ValueError(f"{str(path)!r} is corrupted ({e})") from None
    if (not isinstance(data, dict) or not isinstance(data.get("epoch"), int) or isinstance(data["epoch"], bool)
            or data["epoch"] < 0 or not isinstance(data.get("files"), dict)):
        raise ValueError(f"{str(path)!r} is corrupted: expected {{'epoch': int, 'files': {{...}}}}")
    return data


def committed(run_dir: str | Path, name: str) -> Path:
    """Where the committed copy of ``name`` is: its staged file while a commit's roll-forward is pending
    (a crash in step 3), else RUN/name."""
    run = Path(run_dir)
    manifest = read_manifest(run)
    if manifest is not None and name in manifest["files"]:
        staged = staged_path(run, manifest["epoch"], name)
        if staged.exists():
            return staged
    return run / name


def _read_committed(run: Path, name: str, reader: Callable[[Path], Any]) -> Any:
    try:
        return reader(committed(run, name))
    except FileNotFoundError:  # the staged file was renamed onto its name meanwhile: read that
        return reader(run / name)


def _digest(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return {"sha256": h.hexdigest(), "size": path.stat().st_size}


def commit_epoch(run_dir: str | Path, epoch: int, model: LatentModel, config: dict[str, Any],
                 rows: list[dict[str, Any]], trainer: dict[str, Any] | None = None,
                 hook: Callable[[], None] = lambda: None) -> None:
    """Make epoch ``epoch`` the run's current one: config.json (model + ``config``), the weights, the
    trainer state (when given) and metrics.jsonl (``rows``, whole) in one commit (protocol above).
    ``hook`` is called before each file operation (a test kills the process there)."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    cfg = _config_of(model, config)
    text = "".join(json.dumps(finite_or_none(r), allow_nan=False) + "\n" for r in rows)
    writers: dict[str, Callable[[Path], None]] = {
        CONFIG: lambda p: p.write_text(json_text(cfg)),
        WEIGHTS: _weights_writer(model),
        **({TRAINER: lambda p: torch.save(trainer, p)} if trainer is not None else {}),
        METRICS: lambda p: p.write_text(text),
    }
    files = {}
    for name, write in writers.items():
        hook()
        with atomic_path(staged_path(run, epoch, name)) as tmp:
            write(tmp)
            hook()  # written, not yet renamed
        files[name] = _digest(staged_path(run, epoch, name))
    hook()
    write_json(run / MANIFEST, {"epoch": epoch, "files": files})
    fsync_dir(run)
    _roll_forward(run, epoch, files, hook)
    if trainer is None:  # a closed-form model: a trainer state from an earlier run is not this run's
        (run / TRAINER).unlink(missing_ok=True)


def _roll_forward(run: Path, epoch: int, files: dict[str, Any], hook: Callable[[], None] = lambda: None) -> None:
    for name in files:
        staged = staged_path(run, epoch, name)
        if staged.exists():
            hook()
            os.replace(staged, run / name)
    fsync_dir(run)


def recover(run_dir: str | Path, verify: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """Finish or undo an interrupted commit (the caller holds the lock): rename the committed epoch's
    staged files onto their names, delete staged files of uncommitted epochs and stray temporary files.
    Then check that the files named in ``verify`` match checkpoint.json; returns the manifest (or None)."""
    run = Path(run_dir)
    if not run.is_dir():
        return None
    manifest = read_manifest(run)
    if manifest is not None:
        _roll_forward(run, manifest["epoch"], manifest["files"])
    commit_files = (CONFIG, WEIGHTS, TRAINER, METRICS, MANIFEST)
    for p in run.iterdir():
        n = p.name
        if _STAGED.match(n) or (n.endswith(".tmp") and (n.startswith("..epoch-")
                                                        or any(n.startswith(f".{f}.") for f in commit_files))):
            p.unlink(missing_ok=True)
    if verify:
        return verify_commit(run, verify)
    return manifest


def verify_commit(run_dir: str | Path, names: tuple[str, ...]) -> dict[str, Any] | None:
    """Check (read-only) that the committed copies of ``names`` match checkpoint.json; returns the
    manifest, or None for a run without one (nothing to check against)."""
    run = Path(run_dir)
    manifest = read_manifest(run)
    if manifest is None:
        return None
    for name in names:
        want = manifest["files"].get(name)
        if want is None:
            continue
        path = run / name
        try:
            got = _read_committed(run, name, _digest)
        except FileNotFoundError:
            raise FileNotFoundError(f"{str(path)!r} is missing: {MANIFEST} (epoch {manifest['epoch']}) "
                                    "lists it") from None
        if got != want:
            raise ValueError(f"{str(path)!r} is corrupted or was replaced: it does not match {MANIFEST} "
                             f"(epoch {manifest['epoch']}); restore the run's own copy or train anew")
    return manifest


def holds_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds (part of) a trained run."""
    run = Path(run_dir)
    return run.is_dir() and any((run / n).exists() for n in (CONFIG, WEIGHTS, TRAINER, METRICS, MANIFEST))


def clear_run(run_dir: str | Path) -> None:
    """Remove vaelab's own files from a run folder (for --overwrite); anything else in it stays.
    The manifest goes first, so a crash midway leaves a folder without a commit, not a wrong one."""
    run = Path(run_dir)
    (run / MANIFEST).unlink(missing_ok=True)
    for name in OWN_FILES:
        (run / name).unlink(missing_ok=True)
    for p in run.iterdir() if run.is_dir() else ():
        if _STAGED.match(p.name):
            p.unlink(missing_ok=True)
    fsync_dir(run)


# -- one writer at a time ---------------------------------------------------------------------------------
try:
    import fcntl
except ImportError:  # Windows: no advisory lock (training there is not protected against a second writer)
    fcntl = None  # type: ignore[assignment]

_held: dict[Path, int] = {}


class RunLocked(RuntimeError):
    """Another process is writing the run folder."""


@contextmanager
def writing(run_dir: str | Path) -> Iterator[Path]:
    """Hold RUN/.lock (``fcntl.flock``, non-blocking) while writing a run; another process that tries
    gets :class:`RunLocked` naming the holder's pid. Re-entrant within a process."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    key = run.resolve()
    if fcntl is None or key in _held:
        _held[key] = _held.get(key, 0) + 1
        try:
            yield run
        finally:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]
        return
    fh = open(run / LOCK, "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        pid = fh.read().strip() or "?"
        fh.close()
        raise RunLocked(f"run folder {str(run)!r} is being written by another process (pid {pid})") from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        _held[key] = 1
        yield run
    finally:
        _held.pop(key, None)
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()
