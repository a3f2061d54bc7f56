"""Helpers shared by the commands: turning --dataset/--data-file/--limit into edit cases, key statistics for the
editing settings of `edit`/`evaluate`, and error exits.

`--dataset world` without a file builds the synthetic world the model was trained on (its `world.json` sits in
the model folder of the embedded defaults) and samples edit cases from it; `--dataset realfacts` without a file
builds the real-world fact set and keeps the facts the model knows (docs/realfacts.md); any other dataset reads
its file through goldenlayers.datasets.load_dataset.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape


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

    text = error_line(message)
    if option and not text.startswith(option):
        text = f"{option}: {text}"
    make_console().print(f"[red]error:[/red] {escape(text)}", soft_wrap=True)
    raise typer.Exit(code)


def model_folder(model: str) -> Path:
    """The local folder of --model without loading or fetching anything (to look for files beside the model,
    e.g. world.json); a bad --model exits as in load_model_or_fail."""
    from goldenlayers.models.loader import resolve_model_path

    try:
        return Path(resolve_model_path(model))
    except _model_errors() as e:  # evaluated only on an error: no import of torch before it
        fail(e, option=f"--model {model}")


def _model_errors() -> tuple[type[BaseException], ...]:
    from goldenlayers.models.adapters import UnknownArchitectureError
    from goldenlayers.models.gguf import MissingExtraError
    from goldenlayers.models.named import FetchError
    from goldenlayers.models.names import UnknownModelError

    return (UnknownModelError, MissingExtraError, FetchError, FileNotFoundError, UnknownArchitectureError)


def editing_settings(lm, method: str, overrides: dict | None, preset: str | None, layers: list[int] | None,
                     source: str | None, tokens: int, model: str):
    """(settings, C) for `edit`/`evaluate`/`select`/`compare`, each resolved once here and passed down typed:
    `method`'s settings (goldenlayers.editing.resolve_settings: the model's preset, or `preset`, with the --set
    `overrides`; the preset and why it was chosen are printed), and C (goldenlayers.editing.stats.
    resolve_key_stats): None (C = I) unless the settings use key statistics (mom2_adjustment), else C of `layers`
    (default: the settings' layers) from the statistics cache, collected on a miss from `source` (--stats;
    default: the model's own synthetic world) over `tokens` tokens."""
    from goldenlayers.editing import resolve_settings
    from goldenlayers.editing.hparams import StatsSettings, preset_choice

    hp = resolve_settings(lm.model, method, preset, overrides, name=lm.name)
    choice = preset_choice(lm.model, lm.name)
    console.print(escape(f"editing settings: preset {preset or choice.preset} "
                         f"({'--preset' if preset else choice.reason}){' with --set overrides' if overrides else ''}"))
    if not hp.mom2_adjustment or not (layers or hp.layers):
        return hp, None  # no C needed; a missing layer is the editor's error to report
    from goldenlayers.editing.stats import resolve_key_stats

    return hp, resolve_key_stats(lm.model, lm.tokenizer, lm.adapter, hp, StatsSettings(source=source, tokens=tokens),
                                 layers, model_source=model, name=lm.name, lazy=True)


def announce_model(model: str) -> None:
    """The first line of a command that uses a model: which one (every command defaults to default-gpt2)."""

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


def load_model_or_fail(model: str, dtype: str = "float32", device: str | None = None, **kwargs):
    """load_model for a command's --model (the one place commands resolve it), with a user's mistake as one line
    and exit status 2: a bad --dtype/--device, an unknown name ("did you mean ...", the models that are there), a
    missing folder, a folder that is no model, an architecture without an adapter, a GGUF file without the `gguf`
    extra, a failed fetch of a named model. No network call is made for a name that is not a hub name
    (goldenlayers.models.names)."""
    from goldenlayers.models.adapters import UnknownArchitectureError
    from goldenlayers.models.loader import load_model

    check_model_options(dtype, device)
    try:
        return load_model(model, dtype=dtype, device=device, **kwargs)
    except UnknownArchitectureError as e:
        fail(str(e).splitlines()[0], option="--model")
    except (*_model_errors(), OSError, ValueError, KeyError) as e:  # evaluated only on an error
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
              "world:PATH, a folder of .txt files, hf:NAME, wikipedia-vital (real English, docs/editing.md); "
              "default: the model's own synthetic world")
STATS_TOKENS_HELP = "tokens of the text source that C is collected over"


def world_of_model(model: str):
    """The World a default (or train-world) model was trained on, from its folder's world.json."""
    from goldenlayers.datasets.synthetic.world import World
    path = model_folder(model) / "world.json"
    if not path.exists():
        fail(f"--dataset world needs a model trained on the synthetic world (no {path}); pass --data-file")
    return World.load(path)


def realfacts_cases(lm, limit: int | None, seed: int = 0) -> list:
    """The real-fact cases that the loaded model `lm` knows (first `limit`); prints the kept counts per relation."""
    from goldenlayers.datasets.realfacts import SourceMissingError, build_realfacts

    try:
        data = build_realfacts(lm, limit=limit, seed=seed)
    except SourceMissingError as e:
        fail(str(e))
    counts = ", ".join(f"{r} {c.known}/{c.facts}" for r, c in data.counts.items())
    console.print(f"realfacts: {lm.name} knows {sum(c.known for c in data.counts.values())} of {len(data.facts)} "
                  f"facts ({counts}); {len(data.cases)} cases")
    if not data.cases:
        fail(f"{lm.name} knows none of the real facts")
    return data.cases


def cases_and_model(dataset: str, data_file: str | None, limit: int | None, model: str,
                    device: str | None = None, seed: int = 0):
    """(edit cases, loaded model) for `select`/`compare`: a data file is read before the model loads (a bad file
    fails fast); `--dataset realfacts` without a file needs the model first (the facts it knows)."""
    if dataset == "realfacts" and data_file is None:
        lm = load_model_or_fail(model, device=device)
        return load_cases(dataset, data_file, limit, model, seed=seed, lm=lm), lm
    cases = load_cases(dataset, data_file, limit, model, seed=seed)
    return cases, load_model_or_fail(model, device=device)


def load_cases(dataset: str, data_file: str | None, limit: int | None, model: str, shuffle_seed: int | None = None,
               seed: int = 0, lm=None) -> list:
    """Edit cases for a command; prints the loader's skip summary. Exits with status 2 on bad input (a bad
    --model too, before any file is read).

    lm: the loaded model, used (and otherwise loaded from `model`) by `--dataset realfacts` without a file."""
    if lm is None:
        model_folder(model)
    if dataset == "world" and data_file is None:
        return world_of_model(model).edit_cases(100 if limit is None else limit, seed=seed)
    if dataset == "realfacts" and data_file is None:
        if lm is None:
            lm = load_model_or_fail(model)
        return realfacts_cases(lm, limit, seed)
    if data_file is None:
        fail(f"--dataset {dataset} needs --data-file (the benchmark's JSON file)")
    return list(read_dataset(dataset, data_file, limit, shuffle_seed).cases)


def read_dataset(dataset: str, data_file: str, limit: int | None, shuffle_seed: int | None = None, shown: int = 5):
    """load_dataset for a command: prints the loader's summary and the first `shown` skipped records; a bad file
    or one without a usable case exits with status 2."""
    from goldenlayers.datasets import DatasetFileError, load_dataset

    try:
        data = load_dataset(dataset, data_file, limit=limit, shuffle_seed=shuffle_seed, progress=True)
    except (KeyError, DatasetFileError, ValueError) as e:
        fail(e)
    console.print(data.report.summary(), soft_wrap=True)
    for s in data.report.skipped[:shown]:
        console.print(f"  skipped {s}", soft_wrap=True)
    if len(data.report.skipped) > shown:
        console.print(f"  ... and {len(data.report.skipped) - shown} more", soft_wrap=True)
    if not data.cases:
        fail(f"{data_file}: no usable case in the file")
    return data
