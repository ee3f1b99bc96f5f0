"""Epoch commits: every file of an epoch, then one rename of checkpoint.json (see the protocol below)."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..fileio import atomic_path, finite_or_none, fsync_dir
from ..models import LatentModel
from .files import json_text, write_json
from .names import CONFIG, MANIFEST, METRICS, OWN_FILES, STAGED, TRAINER, WEIGHTS
from .weights import config_of, weights_writer


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


def read_committed(run: Path, name: str, reader: Callable[[Path], Any]) -> Any:
    try:
        return reader(committed(run, name))
    except FileNotFoundError:  # the staged file was renamed onto its name meanwhile: read that
        return reader(run / name)


def digest(path: Path) -> dict[str, Any]:
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
    cfg = config_of(model, config)
    text = "".join(json.dumps(finite_or_none(r), allow_nan=False) + "\n" for r in rows)
    writers: dict[str, Callable[[Path], None]] = {
        CONFIG: lambda p: p.write_text(json_text(cfg)),
        WEIGHTS: weights_writer(model),
        **({TRAINER: lambda p: torch.save(trainer, p)} if trainer is not None else {}),
        METRICS: lambda p: p.write_text(text),
    }
    files = {}
    for name, write in writers.items():
        hook()
        with atomic_path(staged_path(run, epoch, name)) as tmp:
            write(tmp)
            hook()  # written, not yet renamed
        files[name] = digest(staged_path(run, epoch, name))
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
        if STAGED.match(n) or (n.endswith(".tmp") and (n.startswith("..epoch-")
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
            got = read_committed(run, name, digest)
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
        if STAGED.match(p.name):
            p.unlink(missing_ok=True)
    fsync_dir(run)
