"""One writer at a time: an advisory fcntl lock on RUN/.lock."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .names import LOCK

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
