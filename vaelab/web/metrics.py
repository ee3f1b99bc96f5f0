"""The explorer's metrics panel: a run's numbers as labelled rows with units and, for likelihood numbers,
their scale (``distributions.Scale``), never raw keys.

Two groups at most: the test-set evaluation (eval.json, when it is current) and the last training epoch
(metrics.jsonl: its training and validation columns, each row saying which). A key this table does not
know is shown with its name spelled out, so nothing recorded is hidden.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import rundir
from ..distributions import Scale
from ..models import LatentModel
from ..viz.report import recorded_scale

NATS = "nats / example"
# key -> (label, unit, format, on the likelihood scale?)
EVAL_ROWS: dict[str, tuple[str, str, str, bool]] = {
    "nll": ("negative log-likelihood -log p(x)", NATS, "{:.2f}", True),
    "bits_per_dim": ("bits per dimension", "bits / dim", "{:.4f}", True),
    "elbo": ("ELBO", NATS, "{:.2f}", True),
    "recon": ("reconstruction term E[log p(x|z)]", NATS, "{:.2f}", True),
    "kl": ("KL(q(z|x) || p(z))", NATS, "{:.2f}", False),
    "nll_iw": ("NLL, importance-sampled (IWAE bound)", NATS, "{:.2f}", True),
    "nll_exact": ("NLL, closed form", NATS, "{:.2f}", True),
    "ess": ("effective sample size of the K weights (mean)", "of K", "{:.1f}", False),
    "ess_min": ("effective sample size (smallest)", "of K", "{:.1f}", False),
    "iw_samples": ("importance samples per example K", "", "{:d}", False),
    "recon_mse": ("reconstruction mean squared error", "per value", "{:.4f}", False),
    "active_units": ("active latent units (Var of the posterior mean > 0.01)", "units", "{:d}", False),
    "probe_accuracy": ("linear-probe accuracy on the posterior means", "%", "{:.1%}", False),
    "frechet_distance": ("Frechet distance of samples to test images (FD_vaelab; lower is better)", "", "{:.3g}", False),
    "fd_classifier_accuracy": ("accuracy of the FD feature network", "%", "{:.1%}", False),
    "sharpness_ratio": ("sharpness of samples / of test images (variance of the Laplacian; < 1: blurrier)",
                        "ratio", "{:.3f}", False),
    "sharpness_samples": ("variance of the Laplacian of samples (mean per image)", "", "{:.4g}", False),
    "sharpness_test": ("variance of the Laplacian of test images (mean per image)", "", "{:.4g}", False),
    "gradient_energy_ratio": ("gradient energy of samples / of test images", "ratio", "{:.3f}", False),
    "gradient_energy_samples": ("gradient energy of samples (mean squared pixel difference)", "", "{:.4g}", False),
    "gradient_energy_test": ("gradient energy of test images (mean squared pixel difference)", "", "{:.4g}", False),
    "precision": ("precision: share of samples on the test images' k-NN manifold (FD features)", "%", "{:.1%}", False),
    "recall": ("recall: share of test images on the samples' k-NN manifold (FD features)", "%", "{:.1%}", False),
    "mig": ("MIG: mutual information gap to the ground-truth factors (1: each factor in one latent)", "", "{:.3f}", False),
    "dci_disentanglement": ("DCI disentanglement (each latent explains one factor)", "", "{:.3f}", False),
    "dci_completeness": ("DCI completeness (each factor in one latent)", "", "{:.3f}", False),
    "dci_informativeness": ("DCI informativeness (factor accuracy from the latents)", "%", "{:.1%}", False),
    "n_examples": ("test examples scored", "examples", "{:d}", False),
    "seconds": ("evaluation time", "s", "{:.1f}", False),
}
# rows about generated samples: their note names where the samples came from (eval.json fd_sampler)
SAMPLE_ROWS = frozenset({"frechet_distance", "sharpness_ratio", "sharpness_samples", "gradient_energy_ratio",
                         "gradient_energy_samples", "precision", "recall"})
# shown inside another row, or in the group title
FOLDED = {"model", "dataset", "latent_dim", "seed", "scale", "levels", "dequantized", "scale_label", "nll_se",
          "nll_iw_se", "bits_per_dim_se", "kl_se", "kl_estimated", "nll_method", "fd_features", "fd_sampler",
          "posterior_mean_variance", "kl_per_dim", "iwae_curve", "sharpness_samples_se", "sharpness_test_se",
          "gradient_energy_samples_se", "gradient_energy_test_se", "pr_k", "pr_n_real", "pr_n_samples",
          "pr_features", "quality_n", "dci_estimator", "disentanglement_examples"}
SE_OF = {"nll": "nll_se", "nll_iw": "nll_iw_se", "bits_per_dim": "bits_per_dim_se", "kl": "kl_se",
         "sharpness_samples": "sharpness_samples_se", "sharpness_test": "sharpness_test_se",
         "gradient_energy_samples": "gradient_energy_samples_se", "gradient_energy_test": "gradient_energy_test_se"}
# metrics.jsonl: key (without val_) -> (label, unit, format, on the likelihood scale?)
EPOCH_ROWS: dict[str, tuple[str, str, str, bool]] = {
    "elbo": ("ELBO", NATS, "{:.2f}", True),
    "recon": ("reconstruction term E[log p(x|z)]", NATS, "{:.2f}", True),
    "kl": ("KL(q(z|x) || p(z))", NATS, "{:.3f}", False),
    "mse": ("reconstruction mean squared error", "per value", "{:.4f}", False),
    "loss": ("training loss (epoch mean)", "per example", "{:.2f}", False),
    "epoch": ("epochs trained", "", "{:d}", False),
    "best_epoch": ("best epoch so far (early stopping)", "", "{:d}", False),
    "skipped_steps": ("skipped updates (non-finite loss or gradient), all epochs", "steps", "{:d}", False),
    "seconds": ("time of the epoch's training steps", "s", "{:.1f}", False),
    "examples_per_s": ("training speed", "examples / s", "{:,.0f}", False),
    "lr": ("learning rate (the epoch's first step)", "", "{:.3g}", False),
}


def _text(value: Any, spec: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    try:
        return spec.format(int(value) if spec == "{:d}" else float(value))
    except (TypeError, ValueError):
        return str(value)


def _row(label: str, value: Any, unit: str, spec: str, scale: Scale | None, note: str = "") -> dict[str, Any]:
    return {"label": label, "value": value, "text": "–" if value is None else _text(value, spec), "unit": unit,
            "scale": None if scale is None else scale.label, "note": note}


def _spelled(key: str) -> str:
    return key.replace("_", " ")


def eval_rows(values: dict[str, Any], latent_dim: int) -> list[dict[str, Any]]:
    """eval.json -> rows: every likelihood number with the scale it was recorded on and its standard error."""
    scale = recorded_scale(values)
    rows = []
    for key, (label, unit, spec, on_scale) in EVAL_ROWS.items():
        if values.get(key) is None:
            continue
        text_unit = f"of {latent_dim}" if key == "active_units" else unit
        row = _row(label, values[key], text_unit, spec, scale if on_scale else None)
        se = values.get(SE_OF.get(key, ""))
        if se:
            row["text"] += f" ± {se:.2g}"
            row["note"] = "± Monte Carlo standard error"
        if key == "nll" and values.get("nll_method"):
            row["note"] = ", ".join(filter(None, [_spelled(str(values["nll_method"])), row["note"]]))
        if key == "kl" and values.get("kl_estimated"):
            row["note"] = "Monte Carlo estimate"
        if key in ("precision", "recall") and values.get("pr_k"):
            row["note"] = (f"Kynkaanniemi et al. 2019, k={values['pr_k']}, {values.get('pr_n_real')} test images "
                           f"vs {values.get('pr_n_samples')} samples")
        if key.startswith(("mig", "dci")) and values.get("disentanglement_examples"):
            row["note"] = (f"posterior means of {values['disentanglement_examples']} test examples"
                           + (f"; importances: {values['dci_estimator']}" if key.startswith("dci") else ""))
        if key in SAMPLE_ROWS and values.get("fd_sampler"):
            row["note"] = ", ".join(filter(None, [row["note"], f"samples from: {values['fd_sampler']}"]))
        if on_scale and scale is None:
            row["note"] = ", ".join(filter(None, [row["note"], "scale not recorded (older eval.json)"]))
        rows.append(row)
    if isinstance(values.get("iwae_curve"), dict):
        curve = ", ".join(f"K={k}: {v:.2f}" for k, v in values["iwae_curve"].items() if v is not None)
        rows.append(_row("IWAE bound by K (log p(x) from below)", curve, NATS, "", scale))
    known = set(EVAL_ROWS) | FOLDED
    rows += [_row(_spelled(k), v, "", "{:.4g}", None) for k, v in values.items()
             if k not in known and v is not None and not isinstance(v, (list, dict))]
    return rows


def epoch_rows(row: dict[str, Any], scale: Scale | None, has_likelihood: bool) -> list[dict[str, Any]]:
    """The last metrics.jsonl row -> rows naming the split (training / validation) of every number."""
    out = []
    for key, (label, unit, spec, on_scale) in EPOCH_ROWS.items():
        if key in ("elbo", "recon", "kl") and not has_likelihood:
            continue  # an autoencoder's rows carry these names, but it has no p(x) or prior
        if key == "loss" and has_likelihood:
            unit = NATS
        for name, split in ((key, "training (epoch mean)"), (f"val_{key}", "validation")):
            if row.get(name) is None:
                continue
            shown = label if key in ("loss", "epoch", "best_epoch", "skipped_steps", "seconds", "examples_per_s",
                                     "lr") else f"{label}, {split}"
            out.append(_row(shown, row[name], unit, spec, scale if on_scale else None))
    known = set(EPOCH_ROWS) | {f"val_{k}" for k in EPOCH_ROWS}
    out += [_row(_spelled(k), v, "", "{:.4g}", None) for k, v in row.items()
            if k not in known and v is not None and not isinstance(v, (list, dict))]
    return out


def metric_table(run: str | Path, model: LatentModel, data_scale: Scale | None) -> dict[str, Any]:
    """The panel's groups: test set (eval.json, when current) and last epoch (metrics.jsonl). ``data_scale``
    is the scale of the training numbers (the model's likelihood on the run's data, not dequantized)."""
    shown = rundir.display_metrics(run)
    groups = []
    if shown["source"] == rundir.EVAL:
        v = shown["values"]
        n, k = v.get("n_examples"), v.get("iw_samples")
        title = "test set (eval.json" + (f", {n} examples" if n else "") + (f", K={k}" if k else "") + ")"
        groups.append({"title": title, "rows": eval_rows(v, model.latent_dim)})
    try:
        rows = rundir.read_metrics(run)
    except ValueError:
        rows = [shown["values"]] if shown["source"] == rundir.METRICS and shown["values"] else []
    if rows:
        last = rows[-1]
        groups.append({"title": f"last training epoch ({last.get('epoch', '?')}, metrics.jsonl)",
                       "rows": epoch_rows(last, data_scale, model.has_likelihood)})
    return {"groups": groups, "warning": shown.get("warning")}
