"""Training: one loop (``fit``), the run driver (``train_run``) and data-parallel helpers."""
from .loop import TrainConfig, TrainingDiverged, fit, pick_device, score  # noqa: F401
from .run import train_run  # noqa: F401
