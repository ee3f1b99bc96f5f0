"""The names of a run folder's files (one place)."""
import re

CONFIG, WEIGHTS, TRAINER, METRICS = "config.json", "model.safetensors", "trainer.pt", "metrics.jsonl"
EVAL, REPORT = "eval.json", "report.html"   # written by vaelab eval / vaelab report (and demo)
MANIFEST, LOCK, BEST = "checkpoint.json", ".lock", "model_best.safetensors"
# what --overwrite removes (vaelab's own files; pictures and anything else stay)
OWN_FILES = (CONFIG, WEIGHTS, TRAINER, METRICS, EVAL, REPORT, MANIFEST, BEST)
STAGED = re.compile(r"^\.epoch-(\d+)\.(.+)$")   # .epoch-N.<name>: a file of epoch N's commit
