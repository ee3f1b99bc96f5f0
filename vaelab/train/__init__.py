"""Training: one loop (``fit``), its callbacks, the run driver (``train_run``) and data-parallel helpers."""
from .callbacks import Callback, EarlyStopping, TensorBoard, TimeBudget  # noqa: F401
from .loop import TrainConfig, TrainingDiverged, fit, pick_device, score  # noqa: F401
from .run import train_run  # noqa: F401
