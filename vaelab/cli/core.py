"""vaelab train / sample / reconstruct."""
from __future__ import annotations

import dataclasses
import inspect
import sys
import typing
from pathlib import Path
from typing import Any, List, Optional

import typer

from .. import rundir
from ..config import field_default, field_help, from_dict
from ..models import DATA_FIELDS, REGISTRY, load_plugins, model_class
from ..train import distributed
from ..data import BUILTIN
from ..objectives import ObjectiveConfig
from ..train.run import resume_conflicts, train_run
from ..train.loop import TrainConfig
from . import app
from .common import SCALARS, epoch_lines, friendly, option_type, parse_text, unwrap_optional


# -- vaelab train: options generated from the config dataclasses ------------------------------------------


@dataclasses.dataclass(frozen=True)
class Generated:
    """One generated option of ``vaelab train``: python parameter ``param`` fills config ``field``."""

    param: str   # parameter name (the option is --param-with-dashes)
    field: str   # config field it sets
    source: str  # "model", "objective" or "train"

    @property
    def flag(self) -> str:
        return "--" + self.param.replace("_", "-")


def _fixed_options() -> list[tuple[str, Any, Any]]:
    """The options that are not config fields: (name, type, typer.Option)."""
    return [
        ("model", str, typer.Option("vae", help=f"registered model: {', '.join(REGISTRY)}")),
        ("data", str, typer.Option("digits", help=f"{' | '.join(BUILTIN)} | an image folder | a .npy/.npz file")),
        ("binarize", str, typer.Option("none", help="none | dynamic | static")),
        ("size", Optional[int], typer.Option(None, help="resize image folders to size x size (see --crop)")),
        ("crop", str, typer.Option("center", help="with --size: center (no distortion) | random (training crops "
                                   "of a 1/8 larger resize, center crop for evaluation) | squash")),
        ("flip", bool, typer.Option(False, help="flip training images left-right at random (augmentation)")),
        ("test_fraction", Optional[float], typer.Option(
            None, help="share of a folder / array file (0.1) or of digits (0.2) held out as the test split")),
        ("val_fraction", float, typer.Option(0.1, help="share of the training split held out for validation")),
        ("out", Path, typer.Option(Path("runs/x"), help="run folder to write")),
        ("data_dir", Optional[Path], typer.Option(None, help="where mnist/ lives (else $VAELAB_DATA_DIR)")),
        ("resume", bool, typer.Option(False, help="continue the run in --out from its last epoch")),
        ("overwrite", bool, typer.Option(False, help="replace the run in --out (removes vaelab's files in it)")),
        ("plugin", Optional[List[str]], typer.Option(
            None, help="import this module first: models from outside vaelab (repeatable; also $VAELAB_PLUGINS)")),
    ]


def _most_common(texts: list[str]) -> str:
    texts = [t for t in texts if t]
    return max(texts, key=texts.count) if texts else ""


def train_options() -> tuple[list[inspect.Parameter], list[Generated]]:
    """The parameters of ``vaelab train`` for the models registered now, and which config field each fills.

    Objective fields (``kind`` as --objective) and TrainConfig fields keep their names; a field with the
    name of a fixed option shares that option. Model options are the union of every registered model's
    config fields (but input_shape and n_classes): typed when all models agree on a scalar type, else
    text parsed by the chosen model's field type; a model field whose name is taken is --model-NAME."""
    fixed = _fixed_options()
    taken = {name for name, _, _ in fixed}
    params: dict[str, inspect.Parameter] = {}
    generated: list[Generated] = []

    def add(name: str, tp: Any, option: Any) -> None:
        params[name] = inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=tp)

    for name, tp, option in fixed[:2]:  # --model, --data first
        add(name, tp, option)

    # model fields: the union over the registry
    by_field: dict[str, list[tuple[str, Any, str]]] = {}
    for model_name, cls in REGISTRY.items():
        hints, helps = typing.get_type_hints(cls.Config), field_help(cls.Config)
        for f in dataclasses.fields(cls.Config):
            if f.name not in DATA_FIELDS:
                by_field.setdefault(f.name, []).append((model_name, hints[f.name], helps.get(f.name, "")))
    config_names = {f.name for c in (ObjectiveConfig, TrainConfig) for f in dataclasses.fields(c)} | {"objective"}
    for field, entries in by_field.items():
        param = field if field not in taken | config_names else f"model_{field}"
        tp = option_type([h for _, h, _ in entries])
        text = _most_common([t for _, _, t in entries])
        if any(typing.get_origin(unwrap_optional(h)) is tuple for _, h, _ in entries):
            nested = any(typing.get_origin(unwrap_optional((typing.get_args(unwrap_optional(h)) or (None,))[0]))
                         is tuple for _, h, _ in entries)
            text += "; comma-separated" + ("; ';' separates per-layer specs" if nested else "")
        users = sorted(m for m, _, _ in entries)
        if len(users) < len(REGISTRY):
            text += f" (models: {', '.join(users)})"
        add(param, Optional[tp], typer.Option(None, help=text.strip("; ")))
        generated.append(Generated(param, field, "model"))
        taken.add(param)

    for name, tp, option in fixed[2:7]:  # the data options: --binarize, --size, --crop, --flip, --test-fraction
        add(name, tp, option)

    # objective and training fields, with their defaults
    for cls, source in ((ObjectiveConfig, "objective"), (TrainConfig, "train")):
        hints, helps = typing.get_type_hints(cls), field_help(cls)
        for f in dataclasses.fields(cls):
            name = "objective" if (cls is ObjectiveConfig and f.name == "kind") else f.name
            if name in {n for n, _, _ in fixed}:
                generated.append(Generated(name, f.name, source))  # shares the fixed option
                continue
            if name in taken:
                name = f"{source}_{name}"
            tp, default = option_type([hints[f.name]]), field_default(f)
            if not isinstance(default, SCALARS):
                default, tp = None, Optional[tp]  # text: the config's default when unset
            elif default is None:
                tp = Optional[tp]
            add(name, tp, typer.Option(default, help=helps.get(f.name, "")))
            generated.append(Generated(name, f.name, source))
            taken.add(name)

    for name, tp, option in fixed[7:]:
        add(name, tp, option)
    return list(params.values()), generated


_GENERATED: list[Generated] = []


def checked_names() -> dict[str, dict[str, list[str]]]:
    """Command -> parameter -> the names it takes, checked before anything else the command does (for
    its cached spec: cli/cached.py answers an unknown model without importing torch)."""
    return {"train": {"model": sorted(REGISTRY)}}


def _train(**values: Any) -> None:
    """Train a model and write OUT/config.json, model.safetensors, metrics.jsonl."""
    plugin_names = list(values.get("plugin") or ())
    load_plugins(plugin_names)  # normally imported already by vaelab.cli.main (so their options exist)
    model = values["model"]
    cls = model_class(model)  # an unknown name is an error listing the known ones
    hints = {"model": typing.get_type_hints(cls.Config), "objective": typing.get_type_hints(ObjectiveConfig),
             "train": typing.get_type_hints(TrainConfig)}
    parts: dict[str, dict[str, Any]] = {"model": {}, "objective": {}, "train": {}}
    for g in _GENERATED:
        value = values.get(g.param)
        if value is None:
            continue
        hint = hints[g.source].get(g.field)
        parts[g.source][g.field] = value if hint is None else parse_text(hint, value, g.flag)
    obj = from_dict(ObjectiveConfig, parts["objective"])
    if not sys.stderr.isatty():
        parts["train"]["progress"] = False  # no terminal to redraw a bar on: one line per epoch instead
    cfg = from_dict(TrainConfig, parts["train"])
    if values.get("resume"):
        _check_resume(values, parts["model"])
    with epoch_lines():  # the loop logs one line per epoch when there is no bar (--no-progress)
        net, history = train_run(model, values["data"], values["out"], parts["model"], cfg, obj,
                                 data_dir=values["data_dir"], binarize=values["binarize"], size=values["size"],
                                 crop=values["crop"], flip=values["flip"], test_fraction=values["test_fraction"],
                                 val_fraction=values["val_fraction"], resume=values["resume"], plugins=plugin_names,
                                 overwrite=bool(values.get("overwrite")))
    last = history[-1] if history else {}
    keys = ("val_", "elbo", "loss") if net.has_likelihood else ("val_", "loss")  # an AE has no ELBO
    shown = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if k.startswith(keys))
    if distributed.is_main():  # under torchrun only rank 0 reports
        typer.echo(f"trained {model} on {values['data']}: {shown} -> {values['out']}")


def _given(name: str) -> bool:
    """Whether option ``name`` was on the command line (or in the environment), not its default."""
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return True
    source = ctx.get_parameter_source(name)
    return source is not None and source not in (click.core.ParameterSource.DEFAULT,
                                                 click.core.ParameterSource.DEFAULT_MAP)


def _check_resume(values: dict[str, Any], model_options: dict[str, Any]) -> None:
    """--resume with model or data options that contradict the saved run is an error naming them all
    (options not given are fine: the run's own are used)."""
    out = values["out"]
    try:
        saved = rundir.read_config(out)
    except (FileNotFoundError, ValueError):
        return  # train_run says what is missing or broken
    if saved.get("model") != values["model"]:
        return  # train_run names the two models
    data = {k: values[v] for k, v in (("name", "data"), ("binarize", "binarize"), ("size", "size"), ("crop", "crop"),
                                      ("flip", "flip"), ("test_fraction", "test_fraction")) if _given(v)}
    conflicts = resume_conflicts(saved, model_options, data)
    if conflicts:
        raise ValueError(f"cannot resume run {str(out)!r} with options that contradict it: {'; '.join(conflicts)} "
                         "(leave them out to continue it as it is, or train a new run)")


train = friendly(_train)
train.__name__ = train.__qualname__ = "train"


def refresh_train() -> None:
    """(Re)build ``vaelab train``'s signature from the models registered now (after loading plugins).

    typer reads ``__signature__`` / ``__annotations__`` each time it builds the command, so the one
    registered function picks up a plugin's options."""
    params, generated = train_options()
    _GENERATED[:] = generated
    train.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    train.__annotations__ = {p.name: p.annotation for p in params}


refresh_train()
app.command(name="train")(train)


@app.command()
@friendly
def sample(
    run: Path = typer.Argument(..., help="run folder"),
    n: int = typer.Option(64, "-n", help="number of samples"),
    out: Path = typer.Option(Path("samples.png")),
    label: Optional[int] = typer.Option(None, help="class to generate (conditional models)"),
    temperature: float = typer.Option(1.0, help="scale of the prior draws"),
    seed: int = typer.Option(0),
    sampler: str = typer.Option("prior", help="prior (the model's own p(z)) | gmm | two-stage: a density fitted "
                                "to the run's training codes on first use, kept in RUN/samplers/"),
    refit: bool = typer.Option(False, help="fit the sampler again even when RUN/samplers/ holds one"),
    data_dir: Optional[Path] = typer.Option(None, help="where mnist/ lives, to fit a sampler (else $VAELAB_DATA_DIR)"),
) -> None:
    """Draw samples (the model's prior, or a sampler fitted to its codes) into a PNG: short for plot --kind samples."""
    from .plot import draw_samples  # matplotlib: imported by the commands that draw, not by `vaelab train`

    typer.echo(draw_samples(run, out, n=n, label=label, temperature=temperature, seed=seed, sampler=sampler,
                            refit=refit, data_dir=data_dir))


@app.command()
@friendly
def reconstruct(
    run: Path = typer.Argument(..., help="run folder"),
    out: Path = typer.Option(Path("recon.png"), help="PNG file to write"),
    n: int = typer.Option(16, "--n", "-n", help="test images to show"),
    data_dir: Optional[Path] = typer.Option(None, help="where mnist/ lives (else $VAELAB_DATA_DIR)"),
    data: Optional[Path] = typer.Option(None, "--data", help="use this dataset (a built-in name or a path) "
                                        "instead of the one recorded in config.json"),
) -> None:
    """Test images (top row) and their reconstructions (bottom row)."""
    # the short form of `vaelab plot RUN --kind recon`: the same picture, drawn by the same code
    from .plot import draw

    typer.echo(draw("recon", run, out, n=n, data_dir=data_dir, data=data))
