"""Helpers shared by the commands: turning --dataset/--data-file/--limit into edit cases, and error exits.

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


def fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def world_of_model(model: str):
    """The World a default (or train-world) model was trained on, from its folder's world.json."""
    from goldenlayers.datasets.synthetic.world import World
    from goldenlayers.models.loader import resolve_model_path

    path = Path(resolve_model_path(model)) / "world.json"
    if not path.exists():
        fail(f"--dataset world needs a model trained on the synthetic world (no {path}); pass --data-file")
    return World.load(path)


def load_cases(dataset: str, data_file: str | None, limit: int | None, model: str, shuffle_seed: int | None = None,
               seed: int = 0) -> list:
    """Edit cases for a command; prints the loader's skip summary. Exits with status 2 on bad input."""
    if dataset == "world" and data_file is None:
        return world_of_model(model).edit_cases(limit or 100, seed=seed)
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
