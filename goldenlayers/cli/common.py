"""Helpers shared by the commands: turning --dataset/--data-file/--limit into edit cases, key statistics for the
editing settings of `edit`/`evaluate`, and error exits.

`--dataset world` without a file builds the synthetic world the model was trained on (its `world.json` sits in
the model folder of the embedded defaults) and samples edit cases from it; any other dataset reads its file
through goldenlayers.datasets.load_dataset.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console


def make_console() -> Console:
    """A rich Console; when the output is not a terminal (a pipe, a log file, a test runner) it is 160 columns
    wide instead of rich's 80, so that the metric tables are not cut to ellipses. COLUMNS still overrides."""
    import os
    import sys

    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console()
    return Console(width=160)


console = make_console()


def error_line(e: BaseException | str, options: bool = False) -> str:
    """One line for a user's mistake: a KeyError's message without its quotes, a pydantic ValidationError as
    "field: message" items joined by "; " (never pydantic's multi-line dump with its documentation links; with
    options=True the fields are written as the command's options, `table1_split` as `--table1-split`), any other
    exception's message with its lines joined."""
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        parts = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            loc = "--" + loc.replace("_", "-") if options and loc else loc
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
        return "; ".join(dict.fromkeys(parts))
    if isinstance(e, KeyError) and e.args:
        e = str(e.args[0])
    return " ".join(str(e).split())


def fail(message: BaseException | str, code: int = 2, option: str | None = None):
    """Print `error: [option: ]message` as one unwrapped line and exit with `code` (2: bad input)."""
    from rich.markup import escape

    text = error_line(message)
    if option and not text.startswith(option):
        text = f"{option}: {text}"
    make_console().print(f"[red]error:[/red] {escape(text)}", soft_wrap=True)
    raise typer.Exit(code)


def editing_settings(lm, method: str, overrides: dict | None, preset: str | None, layers: list[int] | None,
                     source: str | None, tokens: int, model: str):
    """(settings, C) for `edit`/`evaluate`: `method`'s settings (the model's preset, or `preset`, with the --set
    `overrides`), and when they use key statistics (mom2_adjustment) C of `layers` (default: the settings' layers)
    from the statistics cache, collected on a miss from `source` (default: the model's own synthetic world);
    C is None (C = I) otherwise."""
    from goldenlayers.editing import get_method, resolve_hparams

    hp = resolve_hparams(get_method(method).family, overrides, lm.model, preset=preset, name=lm.name)
    layers = layers or hp.layers
    if not hp.mom2_adjustment or not layers:
        return hp, None  # no C needed; a missing layer is the editor's error to report
    from goldenlayers.editing.sources import model_world_source
    from goldenlayers.editing.stats import StatsSettings, key_stats

    source = source or model_world_source(model)
    if source is None:
        raise ValueError(f"these settings use key statistics C (mom2_adjustment) and {model} has no synthetic world "
                         "to take them from: pass --stats SOURCE (a folder of .txt files, hf:NAME, ...) or "
                         "--set mom2_adjustment=false for C = I")
    return hp, key_stats(lm.model, lm.tokenizer, lm.adapter, layers, StatsSettings(source=source, max_tokens=tokens),
                         name=lm.name, lazy=True)


def announce_model(model: str) -> None:
    """The first line of a command that uses a model: which one (every command defaults to default-gpt2)."""
    from rich.markup import escape

    make_console().print(f"model: [bold]{escape(model)}[/bold]", soft_wrap=True)


def check_model_options(dtype: str | None = None, device: str | None = None) -> None:
    """Exit 2 on a --dtype or --device this torch cannot use, before any model is read."""
    import torch

    from goldenlayers.models.loader import resolve_dtype

    if dtype is not None:
        try:
            resolve_dtype(dtype)
        except ValueError as e:
            fail(e, option="--dtype")
    if device is not None:
        try:
            dev = torch.device(device)
        except RuntimeError:
            fail(f"unknown device {device!r}; use cpu, cuda or cuda:N", option="--device")
        if dev.type == "cuda" and not torch.cuda.is_available():
            fail(f"{device!r} asked for, but this torch {torch.__version__} sees no CUDA GPU; use --device cpu",
                 option="--device")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            fail(f"{device!r}: only {torch.cuda.device_count()} CUDA device(s)", option="--device")


def load_model_or_fail(model: str, dtype: str = "float32", device: str | None = None):
    """load_model(model, dtype, device), with a user's mistake (bad --dtype/--device, a folder that is not a
    model, an architecture without an adapter, a name that cannot be found) as one line and exit status 2."""
    from goldenlayers.models.adapters import UnknownArchitectureError
    from goldenlayers.models.loader import load_model

    check_model_options(dtype, device)
    try:
        return load_model(model, dtype=dtype, device=device)
    except UnknownArchitectureError as e:
        fail(str(e).splitlines()[0], option="--model")
    except (OSError, ValueError, KeyError) as e:
        fail(e, option=f"--model {model}")


def check_layers(lm, layers: list[int], option: str = "--layer") -> None:
    """Exit 2 when a layer is outside the loaded model's 0..L-1."""
    for x in layers:
        try:
            lm.adapter.check_layer(lm.model, x)
        except IndexError as e:
            fail(e, option=option)


LIMIT_HELP = "use the first N cases (N >= 1; leave it out for every case of a file)"
PRESET_HELP = "settings preset by name instead of the model's own, e.g. default-gpt2-quality (docs/editing.md)"
STATS_HELP = ("text source of the key statistics C when the settings use them (mom2_adjustment): world, "
              "world:PATH, a folder of .txt files, hf:NAME; default: the model's own synthetic world")
STATS_TOKENS_HELP = "tokens of the text source that C is collected over"


def world_of_model(model: str):
    """The World a default (or train-world) model was trained on, from its folder's world.json."""
    from goldenlayers.datasets.synthetic.world import World
    from goldenlayers.models.loader import resolve_model_path

    try:
        path = Path(resolve_model_path(model)) / "world.json"
    except (OSError, ValueError, KeyError) as e:
        fail(e, option=f"--model {model}")
    if not path.exists():
        fail(f"--dataset world needs a model trained on the synthetic world (no {path}); pass --data-file")
    return World.load(path)


def load_cases(dataset: str, data_file: str | None, limit: int | None, model: str, shuffle_seed: int | None = None,
               seed: int = 0) -> list:
    """Edit cases for a command; prints the loader's skip summary. Exits with status 2 on bad input."""
    if dataset == "world" and data_file is None:
        return world_of_model(model).edit_cases(100 if limit is None else limit, seed=seed)
    if data_file is None:
        fail(f"--dataset {dataset} needs --data-file (the benchmark's JSON file)")
    from goldenlayers.datasets import DatasetFileError, load_dataset

    try:
        data = load_dataset(dataset, data_file, limit=limit, shuffle_seed=shuffle_seed, progress=True)
    except (KeyError, DatasetFileError, ValueError) as e:
        fail(e)
    console.print(data.report.summary(), soft_wrap=True)
    for s in data.report.skipped[:5]:
        console.print(f"  skipped {s}", soft_wrap=True)
    if not data.cases:
        fail(f"{data_file}: no usable case in the file")
    return list(data.cases)
