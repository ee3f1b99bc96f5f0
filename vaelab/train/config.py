"""``TrainConfig``: every training option, one comment each (the CLI's --help), every check in
``__post_init__``."""
from __future__ import annotations

from dataclasses import dataclass

SCHEDULES = ("constant", "exponential", "cosine", "step")
# Early-stopping monitors. Direction rule: names ending in "elbo" or "recon" (log-likelihoods) are higher
# is better; all others (loss, kl, mse) are lower is better. "auto": val_elbo, or val_mse for a model
# without a likelihood (autoencoder, PCA).
MONITORS = ("auto", "val_elbo", "val_recon", "val_kl", "val_mse", "loss")
PRECISIONS = ("fp32", "bf16", "fp16")  # fp16 on CUDA only (with loss scaling); see precision.py


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10          # passes over the training set
    batch_size: int = 128     # examples per Adam step
    lr: float = 1e-3          # Adam learning rate (the schedule's peak)
    seed: int = 0             # seeds weights, shuffling and dynamic binarization
    device: str = "auto"      # auto (cuda > mps > cpu) or a torch device name
    max_bad_steps: int = 20   # consecutive non-finite steps before giving up
    grad_clip: float = 0.0    # max gradient norm (0: no clipping)
    progress: bool = True     # show a progress bar
    adam_eps: float = 1e-8    # Adam's epsilon (Burda et al. 2015 used 1e-4)
    lr_schedule: str = "constant"  # lr over (fractional) epochs: constant, exponential, cosine or step
    lr_warmup: float = 0.0    # epochs over which the lr rises linearly to its scheduled value (0: none)
    lr_gamma: float = 0.9     # exponential: lr factor per epoch; step: factor every lr_step epochs
    lr_step: int = 10         # step schedule: epochs between lr drops by lr_gamma
    lr_min: float = 0.0       # floor of the decaying schedules (cosine ends there)
    early_stopping: int = 0   # stop after this many epochs without improving the monitor (0: off)
    monitor: str = "auto"     # early-stopping metric: auto, val_elbo, val_recon, val_kl, val_mse or loss
    max_minutes: float = 0.0  # stop after the epoch that passes this wall-clock budget (0: none)
    precision: str = "fp32"   # the training step's networks in fp32, bf16 or fp16 (CUDA only): autocast; weights and nats stay fp32
    compile: bool = False     # torch.compile the objective (model + likelihood + KL) after any KL warm-up; pays on long runs (bench/compile_step.py)
    channels_last: bool = False  # conv models: weights and activations in NHWC memory (speed depends on widths and CPU: bench/resnet_throughput.py); saved weights stay NCHW
    dequantize: bool = False  # train on (k + u) / L, u ~ U[0, 1) fresh each step (data with L levels): the density eval's dequantized bound scores
    output_init: bool = True  # a fresh model's decoder output bias starts at the training data's mean (Bernoulli: its logit); never a loaded or trained one
    checkpoint_every: int = 1  # commit the run folder every N epochs (the last epoch and one that stops training always); a crash or Ctrl-C loses at most N - 1 finished epochs

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_bad_steps", "lr_step", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        for name in ("lr", "adam_eps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)} must be > 0")
        for name in ("grad_clip", "lr_warmup", "lr_min", "early_stopping", "max_minutes"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule={self.lr_schedule!r} is not known; allowed: {list(SCHEDULES)}")
        if not 0 < self.lr_gamma <= 1:
            raise ValueError(f"lr_gamma={self.lr_gamma} must be in (0, 1]")
        if self.lr_min > self.lr:
            raise ValueError(f"lr_min={self.lr_min} must be <= lr={self.lr}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is not known; allowed: {list(PRECISIONS)}")
        if self.monitor not in MONITORS:
            raise ValueError(f"monitor={self.monitor!r} is not known; allowed: {list(MONITORS)}")


class TrainingDiverged(RuntimeError):
    """Raised when the loss or gradients stay non-finite."""
