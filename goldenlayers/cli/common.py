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


def fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def load_model_or_exit(model: str, **kwargs):
    """load_model for a command's --model (the one place commands resolve it): an unknown name, a missing folder,
    a folder that is no model, a GGUF file without the `gguf` extra or a failed fetch of a named model prints one
    line ("did you mean ...", the models that are there) and exits with status 2; no network call is made for a
    name that is not a hub name (goldenlayers.models.names)."""
    from goldenlayers.models.loader import load_model

    try:
        return load_model(model, **kwargs)
    except _model_errors() as e:  # evaluated only on an error: no import of torch before it
        fail(escape(f"--model {model}: {e}"))


def model_folder(model: str) -> Path:
    """The local folder of --model without loading or fetching anything (to look for files beside the model,
    e.g. world.json); a bad --model exits as in load_model_or_exit."""
    from goldenlayers.models.loader import resolve_model_path

    try:
        return Path(resolve_model_path(model))
    except _model_errors() as e:  # evaluated only on an error: no import of torch before it
        fail(f"--model {model}: {e}")


def _model_errors() -> tuple[type[BaseException], ...]:
    from goldenlayers.models.adapters import UnknownArchitectureError
    from goldenlayers.models.gguf import MissingExtraError
    from goldenlayers.models.named import FetchError
    from goldenlayers.models.names import UnknownModelError

    return (UnknownModelError, MissingExtraError, FetchError, FileNotFoundError, UnknownArchitectureError)


def editing_settings(lm, method: str, overrides: dict | None, preset: str | None, layers: list[int] | None,
                     source: str | None, tokens: int, model: str):
    """(settings, C) for `edit`/`evaluate`/`select`/`compare`: `method`'s settings (the model's preset, or `preset`,
    with the --set `overrides`; the preset and why it was chosen are printed), and when they use key statistics
    (mom2_adjustment) C of `layers` (default: the settings' layers) from the statistics cache, collected on a miss
    from `source` (default: the model's own synthetic world); C is None (C = I) otherwise."""
    from goldenlayers.editing import get_method, resolve_hparams
    from goldenlayers.editing.hparams import preset_choice

    hp = resolve_hparams(get_method(method).family, overrides, lm.model, preset=preset, name=lm.name)
    choice = preset_choice(lm.model, lm.name)
    console.print(escape(f"editing settings: preset {preset or choice.preset} "
                         f"({'--preset' if preset else choice.reason}){' with --set overrides' if overrides else ''}"))
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


def load_cases(dataset: str, data_file: str | None, limit: int | None, model: str, shuffle_seed: int | None = None,
               seed: int = 0, lm=None) -> list:
    """Edit cases for a command; prints the loader's skip summary. Exits with status 2 on bad input (a bad
    --model too, before any file is read).

    lm: the loaded model, used (and otherwise loaded from `model`) by `--dataset realfacts` without a file."""
    if lm is None:
        model_folder(model)
    if dataset == "world" and data_file is None:
        return world_of_model(model).edit_cases(limit or 100, seed=seed)
    if dataset == "realfacts" and data_file is None:
        if lm is None:
            lm = load_model_or_exit(model)
        return realfacts_cases(lm, limit, seed)
    if data_file is None:
        fail(f"--dataset {dataset} needs --data-file (the benchmark's JSON file)")
    from goldenlayers.datasets import DatasetFileError, load_dataset

    try:
        data = load_dataset(dataset, data_file, limit=limit, shuffle_seed=shuffle_seed)
    except (KeyError, DatasetFileError, ValueError) as e:
        fail(str(e.args[0] if isinstance(e, KeyError) else e))
    console.print(data.report.summary())
    for s in data.report.skipped[:5]:
        console.print(f"  skipped {s}")
    if not data.cases:
        fail("no usable case in the file")
    return list(data.cases)
