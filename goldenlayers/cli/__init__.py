"""The `goldenlayers` command line: a thin typer shell over the library (docs/design.md "House style" 6).

Each area keeps its commands in its own module here (`world.py`, `edit.py`, `evaluate.py`, `select.py`,
...), each exposing `register(app)`; this module builds the app and adds `ls`. Registering imports nothing
heavy (torch is imported by a command when it runs), so `goldenlayers --help` answers at once. `ls` lists the
package's registries (goldenlayers.registry.LISTED: architectures, methods, selectors, datasets, metrics) and
the settings presets; computing those names imports torch, so they are kept (CACHED_LISTINGS) in a small JSON
file in the cache ($GOLDENLAYERS_CACHE, else ~/.cache/goldenlayers) keyed by a fingerprint of the package's
source files. Listings that depend on this machine (LISTINGS, e.g. the models found here) are computed every
time (benchmarks/bench_cli_startup.py).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import time
from pathlib import Path

import typer

STARTED = time.perf_counter()  # when the command started (after Python's own start-up): `run` reports from here

app = typer.Typer(
    name="goldenlayers",
    help="Find golden layers for knowledge editing (LGA, CMA, brute force) and edit facts there.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# Live listings contributed by areas for `goldenlayers ls` (title -> callable returning names), after the cached.
LISTINGS: dict[str, object] = {}
# Listings fixed by the package's code, in `ls` order: cached by `ls` (see the module docstring).
CACHED_LISTINGS = ("architectures", "methods", "presets", "selectors", "datasets", "metrics")

_AREAS = ("world", "realfacts", "edit", "evaluate", "select", "compare", "demo", "run", "models")


@app.callback()
def _main() -> None:
    """goldenlayers: layer selection and knowledge editing for Hugging Face causal LMs."""


@app.command("ls")
def ls() -> None:
    """List supported architectures, and the methods, selectors and datasets the installed version offers."""
    from goldenlayers.cli.common import make_console

    con = make_console()
    listings = {**_cached_listings(), **{title: fn() for title, fn in LISTINGS.items()}}
    for title, names in listings.items():
        con.print(f"[bold]{title}[/bold]: " + ", ".join(names), soft_wrap=True)


def _registry_listings() -> dict[str, list[str]]:
    """The CACHED_LISTINGS, read from the registries: every name with its aliases ("bruteforce (golden)"), the
    metric families, and each settings preset with the methods it has settings for."""
    from goldenlayers.editing.hparams import PRESETS
    from goldenlayers.metric_names import FAMILIES
    from goldenlayers.registry import LISTED, METHODS

    out = {title: [n + (f" ({', '.join(reg.aliases(n))})" if reg.aliases(n) else "")
                   for n in (reg.registered() if title == "metrics" else reg.names())]  # metrics: the paper's order
           for title, reg in LISTED.items()}
    out["metrics"] += [f"{f} (family)" for f in FAMILIES]
    out["presets"] = [f"{name} ({'/'.join(m for m in METHODS.names() if METHODS.get(m).family in PRESETS[name])})"
                      for name in sorted(PRESETS)]
    return {title: out[title] for title in CACHED_LISTINGS}


def _source_fingerprint() -> str:
    """A digest of the package's source files (path, size, mtime): it changes whenever the code does."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha1()
    for p in sorted(root.rglob("*.py")):
        st = p.stat()
        h.update(f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def _cached_listings() -> dict[str, list[str]]:
    """The CACHED_LISTINGS, read back from the cache when the source is unchanged, else computed and written
    (an unwritable cache only costs the time)."""
    from goldenlayers.cache import cache_root

    path = cache_root() / "ls" / f"listings-{_source_fingerprint()}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    names = _registry_listings()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(names))
        os.replace(tmp, path)
    except OSError:
        pass
    return names


def _register_areas() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for area in _AREAS:
        importlib.import_module(f"goldenlayers.cli.{area}").register(app)


_register_areas()
