"""`goldenlayers select` (one selector's layer ranking) and `goldenlayers compare` (LGA vs CMA vs brute force,
Table 2 of the paper). Thin shells over goldenlayers.selection.compare."""

from __future__ import annotations

import math

import typer

from goldenlayers.cli.common import PRESET_HELP, STATS_HELP, STATS_TOKENS_HELP, console, fail, load_cases


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.3f}" if abs(x) < 100 else f"{x:.0f}"


def _settings(lm, editor: str, preset: str | None, set_: list[str], stats: str | None, tokens: int, model: str):
    """(settings, C) of the brute-force / evaluation editor, as `edit` resolves them (cli.common.editing_settings),
    with C of every layer (a selector may pick any)."""
    from goldenlayers.cli.common import editing_settings
    from goldenlayers.cli.edit import _parse_settings
    from goldenlayers.editing import StatsError
    from goldenlayers.editing.sources import SourceError

    try:
        overrides = _parse_settings(set_)
        hp, C = editing_settings(lm, editor, overrides, preset, list(range(lm.adapter.n_layers(lm.model))), stats,
                                 tokens, model)
    except (StatsError, SourceError, KeyError, ValueError, typer.BadParameter) as e:
        fail(str(e.args[0] if isinstance(e, KeyError) else e))
    where = stats or "the model's own world"
    console.print(f"key statistics C: {'from ' + where if C is not None else 'identity (C = I)'}")
    return hp, C


def select_command(
    model: str = typer.Option("default-gpt2", help="embedded default name or a local Hugging Face model folder"),
    method: str = typer.Option("lga", help="selector: lga, cma or bruteforce"),
    dataset: str = typer.Option("world", help="dataset name (see `goldenlayers ls`)"),
    data_file: str | None = typer.Option(None, help="benchmark file (not needed for --dataset world)"),
    limit: int | None = typer.Option(20, help="number of proxy cases"),
    editor: str = typer.Option("r-rome", help="editing method for brute force"),
    metric: str = typer.Option("rewrite", help="brute-force metric whose golden layer is chosen"),
    tukey_k: float = typer.Option(1.5, help="Tukey fence factor for LGA"),
    top: int = typer.Option(5, help="how many ranked layers to print"),
    preset: str | None = typer.Option(None, help=PRESET_HELP),
    set_: list[str] = typer.Option([], "--set", help="override an editing setting: key=value (repeatable)"),
    stats: str | None = typer.Option(None, help=STATS_HELP),
    stats_tokens: int = typer.Option(100_000, help=STATS_TOKENS_HELP),
    device: str | None = typer.Option(None, help="cuda or cpu (default: cuda when available)"),
) -> None:
    """Rank the layers of a model for editing with one selector and print the chosen layer and the time spent."""
    from goldenlayers.cli.common import load_model_or_exit
    from goldenlayers.selection.compare import select_layer

    cases = load_cases(dataset, data_file, limit, model)
    lm = load_model_or_exit(model, device=device)
    hp, C = (None, None) if method != "bruteforce" else \
        _settings(lm, editor, preset, set_, stats, stats_tokens, model)
    try:
        sel = select_layer(lm.model, lm.tokenizer, cases, method, editor=editor, metric=metric, tukey_k=tukey_k,
                           model_name=lm.name, hparams=hp, stats=C)
    except ValueError as e:
        fail(str(e))
    ranking = sel.table.ranking()[:top]
    console.print(f"[bold]{sel.selector}[/bold] on {len(cases)} {dataset} cases ({sel.table.cases} used): "
                  f"chosen layer [bold]{sel.layer}[/bold] in {sel.seconds:.2f} s")
    console.print("ranking: " + ", ".join(f"{layer} ({sel.table.score_of(layer):.4g})" for layer in ranking))
    if sel.pick is not None:
        f = sel.pick.fences
        console.print(f"Tukey fences (k={sel.pick.k}): [{f.lower:.4g}, {f.upper:.4g}]; excluded layers: "
                      f"{sel.pick.excluded or 'none'}")
    for cid, why in list(sel.table.skipped.items())[:5]:
        console.print(f"  skipped {cid}: {why}")


def render_comparison(cmp, title: str):
    from rich.table import Table

    t = Table(title=title)
    cols = ("method", "selector", "layer", "rewrite", "rephrase", "locality", "portability", "fluency", "overall",
            "seconds", "speedup_vs_bruteforce")
    heads = ("method", "selector", "layer", "rew", "reph", "loc", "port", "flu", "overall", "sec", "xBF")
    for h in heads:
        t.add_column(h, justify="right", no_wrap=True)
    for r in cmp.rows:
        t.add_row(*(str(r[c]) if c in ("method", "selector", "layer") else _fmt(r[c]) for c in cols))
    t.caption = (f"rew/reph/loc/port: rewrite, rephrase, locality, portability accuracy; flu: fluency (n-gram entropy, "
                 f"bits); sec: selector wall time; xBF: times faster than brute force. Overall: {cmp.normalisation}")
    return t


def compare_command(
    model: str = typer.Option("default-gpt2", help="embedded default name or a local Hugging Face model folder"),
    dataset: str = typer.Option("world"),
    data_file: str | None = typer.Option(None),
    limit: int | None = typer.Option(200, help="cases in all (proxy + test)"),
    proxy_fraction: float = typer.Option(0.1, help="share of the cases used as the proxy set"),
    editor: str = typer.Option("r-rome", help="editing method"),
    selectors: str = typer.Option("lga,cma,bruteforce", help="comma-separated selectors"),
    no_fluency: bool = typer.Option(False, "--no-fluency", help="skip the fluency generation"),
    seed: int = typer.Option(0, help="seed of the proxy/test split"),
    preset: str | None = typer.Option(None, help=PRESET_HELP),
    set_: list[str] = typer.Option([], "--set", help="override an editing setting: key=value (repeatable)"),
    stats: str | None = typer.Option(None, help=STATS_HELP),
    stats_tokens: int = typer.Option(100_000, help=STATS_TOKENS_HELP),
    device: str | None = typer.Option(None),
) -> None:
    """Find a layer with each selector on a proxy set, edit the test set there, and print Table 2 with wall times."""
    from goldenlayers.cli.common import load_model_or_exit
    from goldenlayers.datasets.split import split_cases
    from goldenlayers.selection.compare import compare_selectors

    cases = load_cases(dataset, data_file, limit, model)
    split = split_cases(cases, proxy_fraction=proxy_fraction, seed=seed)
    if not split.proxy or not split.test:
        fail(f"the split left an empty side ({len(split.proxy)} proxy, {len(split.test)} test): use more cases")
    lm = load_model_or_exit(model, device=device)
    hp, C = _settings(lm, editor, preset, set_, stats, stats_tokens, model)
    cmp = compare_selectors(lm.model, lm.tokenizer, split.proxy, split.test, editor=editor,
                            selectors=[s.strip() for s in selectors.split(",")], fluency=not no_fluency,
                            model_name=lm.name, hparams=hp, stats=C)
    console.print(render_comparison(cmp, f"{lm.name}: {len(split.proxy)} proxy / {len(split.test)} test cases"))


def register(app: typer.Typer) -> None:
    from goldenlayers.cli import LISTINGS
    from goldenlayers.selection.compare import SELECTORS

    app.command("select")(select_command)
    app.command("compare")(compare_command)
    LISTINGS["selectors"] = lambda: list(SELECTORS)
