"""The `goldenlayers` command line: a thin typer shell over the library (DESIGN.md house style 6).

Each area keeps its commands in its own module here (`world.py`, `edit.py`, `evaluate.py`, `select.py`,
...), each exposing `register(app)`; this module builds the app and adds `ls`.
"""

from __future__ import annotations

import importlib
import os
import time

import typer

STARTED = time.perf_counter()  # when the command started (after Python's own start-up): `run` reports from here

app = typer.Typer(
    name="goldenlayers",
    help="Find golden layers for knowledge editing (LGA, CMA, brute force) and edit facts there.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# Listing functions contributed by areas for `goldenlayers ls` (title -> callable returning names).
LISTINGS: dict[str, object] = {}

_AREAS = ("world", "realfacts", "edit", "evaluate", "select", "demo", "run", "models")


@app.callback()
def _main() -> None:
    """goldenlayers: layer selection and knowledge editing for Hugging Face causal LMs."""


@app.command("ls")
def ls() -> None:
    """List supported architectures, and the methods, selectors and datasets the installed version offers."""
    from goldenlayers.cli.common import make_console
    from goldenlayers.models import supported_architectures

    con = make_console()
    con.print("[bold]architectures[/bold]: " + ", ".join(supported_architectures()))
    for title, fn in LISTINGS.items():
        con.print(f"[bold]{title}[/bold]: " + ", ".join(fn()))


def _register_areas() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for area in _AREAS:
        try:
            mod = importlib.import_module(f"goldenlayers.cli.{area}")
        except ModuleNotFoundError as e:  # an area not built yet
            if e.name == f"goldenlayers.cli.{area}":
                continue
            raise
        mod.register(app)


_register_areas()
