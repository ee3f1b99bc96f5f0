"""A run folder: ``config.json`` + ``model.safetensors`` (+ ``trainer.pt`` for --resume, ``metrics.jsonl``,
``eval.json``), and the one place that writes vaelab's files.

Training commits each epoch whole (:func:`commit_epoch`): its files are staged as ``.epoch-N.<name>``, then
one atomic rename of ``checkpoint.json`` makes epoch N current, then the staged files are renamed onto
their names; readers resolve names through :func:`committed`, and a writer holds ``.lock`` (:func:`writing`).

Files are written to a temporary name and renamed (:func:`atomic_write`, :func:`atomic_path`), so a crash
never leaves a half-written checkpoint and a failed run never overwrites the last good one. JSON goes
through :func:`write_json` (strict: NaN/Inf become null), pictures through :func:`encode_png` /
:func:`write_png`. Derived files (eval.json, PNG pictures) record the weights they came from
(:func:`checkpoint_id`); :func:`display_metrics` ignores an eval.json of other weights and says so.
Nothing is unpickled: weights come from safetensors and the trainer state is read with
``torch.load(weights_only=True)``.

Modules: ``names`` (file names), ``files`` (JSON/PNG writers), ``weights`` (config.json + safetensors
writers), ``commit`` (epoch commits, recovery), ``checkpoint`` (validated readers), ``derived``
(eval.json / picture provenance), ``lock`` (one writer).
"""
from ..fileio import atomic_path, atomic_write, check_finite_weights, finite_or_none, fsync_dir
from .checkpoint import json_rows, load, load_trainer, read_config, read_metrics, save_trainer
from .commit import (clear_run, commit_epoch, committed, digest, holds_run, read_committed, read_manifest, recover,
                     staged_path, verify_commit)
from .derived import checkpoint_id, display_metrics, picture_source, write_eval, write_picture
from .files import encode_png, json_text, write_json, write_png
from .lock import RunLocked, writing
from .names import BEST, CONFIG, EVAL, LOCK, MANIFEST, METRICS, OWN_FILES, REPORT, STAGED, TRAINER, WEIGHTS
from .weights import config_of, save_best, save_model, weights_writer

__all__ = [
    "BEST", "CONFIG", "EVAL", "LOCK", "MANIFEST", "METRICS", "OWN_FILES", "REPORT", "STAGED", "TRAINER", "WEIGHTS",
    "RunLocked", "atomic_path", "atomic_write", "check_finite_weights", "checkpoint_id", "clear_run",
    "commit_epoch", "committed", "config_of", "digest", "display_metrics", "encode_png", "finite_or_none",
    "fsync_dir", "holds_run", "json_rows", "json_text", "load", "load_trainer", "picture_source", "read_committed",
    "read_config", "read_manifest", "read_metrics", "recover", "save_best", "save_model", "save_trainer",
    "staged_path", "verify_commit", "weights_writer", "write_eval", "write_json", "write_picture", "write_png", "writing",
]
