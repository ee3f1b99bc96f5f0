"""One readable training loop: Adam, any registered model, any objective, a run folder.

It knows nothing about the model beyond the contract (``elbo_parts`` / ``log_weights`` via the
objective). Non-finite steps are skipped and counted; too many in a row abort with a clear message,
leaving the last good checkpoint in place.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import objectives, rundir
from . import distributed
from ..config import to_dict
from ..data import Dataset, batches, for_evaluation, info_dict
from ..distributions import get_likelihood
from ..models import LatentModel
from ..objectives import ObjectiveConfig
from ..device import pick_device  # noqa: F401  (re-exported: vaelab.train.pick_device)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10          # passes over the training set
    batch_size: int = 128     # examples per Adam step
    lr: float = 1e-3          # Adam learning rate
    seed: int = 0             # seeds weights, shuffling and dynamic binarization
    device: str = "auto"      # auto (cuda > mps > cpu) or a torch device name
    max_bad_steps: int = 20   # consecutive non-finite steps before giving up
    grad_clip: float = 0.0    # max gradient norm (0: no clipping)
    progress: bool = True     # show a progress bar

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_bad_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be > 0")


class TrainingDiverged(RuntimeError):
    """Raised when the loss or gradients stay non-finite."""


def check_data_for_model(model: LatentModel, ds: Dataset) -> None:
    """Boundary checks: shapes, labels for conditional models, [0, 1] for Bernoulli."""
    model.check_input(ds.x[:1])
    lik = getattr(model.config, "likelihood", None)
    if lik and get_likelihood(lik).needs_unit_interval and (ds.x.min() < 0 or ds.x.max() > 1):
        raise ValueError(f"likelihood={lik!r} needs data in [0, 1]; data {ds.info.name!r} spans "
                         f"[{float(ds.x.min()):.3g}, {float(ds.x.max()):.3g}]: use likelihood='gaussian'")
    if model.n_classes:
        if ds.y is None:
            raise ValueError(f"model {model.name!r} is conditional but data {ds.info.name!r} has no labels")
        if int(ds.y.max()) >= model.n_classes:
            raise ValueError(f"label {int(ds.y.max())} is out of range for n_classes={model.n_classes}")


@torch.no_grad()
def score(model: LatentModel, ds: Dataset, batch_size: int = 1000) -> dict[str, float]:
    """Mean ELBO, recon, KL (nats/example, one posterior sample) and recon MSE per pixel on ``ds``."""
    model.eval()
    ds = for_evaluation(ds)
    sums = {"elbo": 0.0, "recon": 0.0, "kl": 0.0, "mse": 0.0}
    for xb, yb in batches(ds.x, ds.y, batch_size, shuffle=False, device=model.device):
        recon, kl = model.elbo_parts(xb, yb)
        kl = kl.sum(-1)
        sums["recon"] += float(recon.sum())
        sums["kl"] += float(kl.sum())
        sums["elbo"] += float((recon - kl).sum())
        sums["mse"] += float(((model.reconstruct(xb, yb) - xb) ** 2).flatten(1).mean(1).sum())
    out = {k: v / len(ds) for k, v in sums.items()}
    if not model.has_likelihood:
        out = {"mse": out["mse"]}
    return out


def _log(run_dir: Path | None, row: dict[str, Any]) -> None:
    if run_dir is not None:
        with open(run_dir / rundir.METRICS, "a") as f:
            f.write(json.dumps(row) + "\n")


def fit(model: LatentModel, train: Dataset, val: Dataset | None = None,
        objective: ObjectiveConfig = ObjectiveConfig(), cfg: TrainConfig = TrainConfig(),
        run_dir: str | Path | None = None, resume: bool = False,
        extra_config: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Train ``model`` in place; returns one metrics row per epoch (also in run_dir/metrics.jsonl).

    Under torchrun (or in an initialised process group) every rank trains on its share of each global
    batch of world_size * batch_size examples; only rank 0 writes the run folder (see distributed.py)."""
    check_data_for_model(model, train)
    device, rank, world = distributed.setup(pick_device(cfg.device))  # rank 0 of 1 without torchrun
    torch.manual_seed(cfg.seed + rank)  # model noise (posterior samples) differs across ranks
    model.to(device)
    distributed.broadcast_parameters(model)
    run = Path(run_dir) if run_dir is not None else None
    out = run if rank == 0 else None  # where to write: rank 0 only
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    meta = {"data": info_dict(train.info), "train": to_dict(cfg), "objective": to_dict(objective),
            **({"world_size": world} if world > 1 else {}), **(extra_config or {})}
    if out is not None and not resume and (out / rundir.METRICS).exists():
        (out / rundir.METRICS).unlink()

    if not model.trainable:  # closed form (PCA)
        model.fit_closed_form(train.x.to(device))
        row = {"epoch": 1, **{f"val_{k}": v for k, v in (score(model, val) if val else {}).items()}}
        _log(out, row)
        if out is not None:
            rundir.save_model(out, model, **meta)
        return [row]

    # fused: one kernel for the whole Adam update instead of ~10 ops per parameter tensor
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=device.type in ("cpu", "cuda") or None)
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(cfg.seed)
    start, history = 0, []
    if resume:
        if run is None:
            raise ValueError("resume=True needs a run_dir")
        state = rundir.load_trainer(run)
        model.load_state_dict(rundir.load(run, device).state_dict())
        opt.load_state_dict(state["optimizer"])
        for group in opt.param_groups:  # the lr asked for now, not the one saved with the optimizer
            group["lr"] = cfg.lr
        gen.set_state(state["generator"])
        start, history = int(state["epoch"]), rundir.read_metrics(run)
        if cfg.epochs < start:
            raise ValueError(f"epochs={cfg.epochs} is below the {start} epochs run {str(run)!r} already has; "
                             f"pass epochs > {start} to continue it")

    steps_per_epoch = math.ceil(len(train) / (cfg.batch_size * world))
    bar = _progress(cfg.progress and rank == 0, total=(cfg.epochs - start) * steps_per_epoch, desc=model.name)
    bad_in_a_row, skipped = 0, 0
    for epoch in range(start, cfg.epochs):
        model.train()
        # (loss * batch, elbo, recon, kl) summed on the device, read back once per epoch
        t0, acc, n_seen = time.perf_counter(), torch.zeros(4, dtype=torch.float64, device=device), 0
        global_batches = batches(train.x, train.y, cfg.batch_size * world, binarize=train.info.binarize,
                                 generator=gen, device=device)
        for i, (xb, yb) in enumerate(distributed.shard(global_batches, rank, world)):
            terms = objectives.compute(model, xb, yb, objective, epoch + i / steps_per_epoch)
            opt.zero_grad(set_to_none=True)
            terms.loss.backward()  # a non-finite loss gives non-finite gradients: skipped below
            # with several ranks: gradients and loss averaged over all of them (identical on every rank)
            loss = distributed.average_gradients(params, terms.loss.detach(), len(xb))
            grads = [p.grad for p in params if p.grad is not None]
            if cfg.grad_clip:
                norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
            else:
                norm = torch.nn.utils.get_total_norm(grads, foreach=True)
            if not bool(torch.isfinite(loss) & torch.isfinite(norm)):  # one host sync a step
                skipped, bad_in_a_row = skipped + 1, bad_in_a_row + 1
                if bad_in_a_row >= cfg.max_bad_steps:
                    raise TrainingDiverged(
                        f"{bad_in_a_row} non-finite steps in a row at epoch {epoch + 1}: the loss or gradients "
                        f"are NaN/Inf. Try a lower lr (now {cfg.lr}), grad_clip, or check the data; "
                        "the last good checkpoint was kept.")
                bar.update(1)
                continue
            bad_in_a_row = 0
            opt.step()
            b = len(xb)
            n_seen += b
            with torch.no_grad():
                acc += torch.stack([loss * b, terms.elbo.sum(), terms.recon.sum(), terms.kl.sum()])
            bar.update(1)
        acc, n_seen = distributed.sum_over_ranks(acc, n_seen)  # all ranks' examples
        sums = dict(zip(("loss", "elbo", "recon", "kl"), acc.tolist()))
        secs = time.perf_counter() - t0  # training steps only: validation below is not timed
        row = {"epoch": epoch + 1, **{k: v / n_seen if n_seen else math.nan for k, v in sums.items()},
               "skipped_steps": skipped, "seconds": secs, "examples_per_s": n_seen / secs}
        if val is not None and rank == 0:  # the weights are the same on every rank: validate once
            row.update({f"val_{k}": v for k, v in score(model, val).items()})
        finite = rank > 0 or _scores_finite(model, row, train if val is None and bad_in_a_row else None)
        if not distributed.all_agree(finite, device):
            raise TrainingDiverged(
                f"the model's scores are NaN/Inf after epoch {epoch + 1} ({bad_in_a_row} non-finite steps at its "
                f"end): a step broke the weights. Try a lower lr (now {cfg.lr}) or grad_clip; "
                + (f"the last good checkpoint (epoch {epoch}) was kept." if epoch else "nothing was saved."))
        bar.set_postfix({k: f"{row[k]:.2f}" for k in ("loss", "val_elbo") if k in row})
        history.append(row)
        _log(out, row)
        if out is not None:
            rundir.save_model(out, model, **meta)
            rundir.save_trainer(out, {"optimizer": opt.state_dict(), "generator": gen.get_state(),
                                          "epoch": epoch + 1})
    bar.close()
    model.eval()
    return history


def _scores_finite(model: LatentModel, row: dict[str, Any], probe: Dataset | None) -> bool:
    """True when the epoch's validation scores (or, given ``probe``, scores on up to 1000 of its examples)
    are finite: a model that gives NaN/Inf is never checkpointed over the last good one."""
    values = [v for k, v in row.items() if k.startswith("val_")]
    if probe is not None:
        values += list(score(model, probe.subset(torch.arange(min(len(probe), 1000)))).values())
    return all(math.isfinite(v) for v in values)


def _progress(enabled: bool, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)
