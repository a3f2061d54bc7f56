"""`goldenlayers select`: one selector's layer ranking (a thin shell over goldenlayers.selection.select_layer);
`goldenlayers compare` lives in cli/compare.py."""

from __future__ import annotations

import math

import typer

from goldenlayers.cli.common import PRESET_HELP, STATS_HELP, STATS_TOKENS_HELP, console, fail


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.3f}" if abs(x) < 100 else f"{x:.0f}"


def _check_editor(editor: str) -> None:
    from goldenlayers.editing import get_method

    try:
        get_method(editor)
    except KeyError as e:
        fail(e, option="--editor")


def _settings(lm, editor: str, preset: str | None, set_: list[str], stats: str | None, tokens: int, model: str):
    """(settings, C) of the brute-force / evaluation editor, as `edit` resolves them (cli.common.editing_settings,
    which prints the preset and why), with C of every layer (a selector may pick any)."""
    from goldenlayers.cli.common import editing_settings
    from goldenlayers.cli.edit import _parse_settings
    from goldenlayers.editing import StatsError
    from goldenlayers.editing.sources import SourceError

    try:
        overrides = _parse_settings(set_)
        hp, C = editing_settings(lm, editor, overrides, preset, list(range(lm.adapter.n_layers(lm.model))), stats,
                                 tokens, model)
    except (StatsError, SourceError, KeyError, ValueError, typer.BadParameter) as e:
        fail(e)
    where = stats or "the model's own world"
    console.print(f"key statistics C: {'from ' + where if C is not None else 'identity (C = I)'}", soft_wrap=True)
    return hp, C


def select_command(
    model: str = typer.Option("default-gpt2", help="embedded default name or a local Hugging Face model folder"),
    method: str = typer.Option("race", help="selector: any registered one (`goldenlayers ls`): race (default: "
                               "successive halving of real edits on the proxy cases), lga and its readings (lga-neg, "
                               "lga-abs, lga-cosine, ...), cma or bruteforce"),
    dataset: str = typer.Option("world", help="dataset name (see `goldenlayers ls`)"),
    data_file: str | None = typer.Option(None, help="benchmark file (not needed for --dataset world or realfacts)"),
    limit: int = typer.Option(20, min=1, help="number of proxy cases (N >= 1)"),
    editor: str = typer.Option("r-rome", help="editing method for race and brute force"),
    metric: str = typer.Option("rewrite", help="brute-force metric whose golden layer is chosen"),
    tukey_k: float | None = typer.Option(None, min=0, help="Tukey fence factor of a selector that picks with "
                                         "Tukey's fences (LGA; default: the reading's, 1.5)"),
    top: int = typer.Option(5, min=1, help="how many ranked layers to print"),
    preset: str | None = typer.Option(None, help=PRESET_HELP),
    set_: list[str] = typer.Option([], "--set", help="override an editing setting: key=value (repeatable)"),
    stats: str | None = typer.Option(None, help=STATS_HELP),
    stats_tokens: int = typer.Option(100_000, min=1, help=STATS_TOKENS_HELP),
    device: str | None = typer.Option(None, help="cuda or cpu (default: cuda when available)"),
) -> None:
    """Rank the layers of a model for editing with one selector and print the chosen layer and the time spent."""
    from goldenlayers.cli.common import announce_model, cases_and_model, check_model_options
    from goldenlayers.registry import SELECTORS, UnknownNameError
    from goldenlayers.selection import select_layer

    announce_model(model)
    try:
        entry = SELECTORS.get(method)
    except UnknownNameError as e:
        fail(e, option="--method")
    fences = {"k": tukey_k} if tukey_k is not None and "k" in getattr(entry.settings_class, "model_fields", {}) else {}
    _check_editor(editor)
    check_model_options(device=device)
    cases, lm = cases_and_model(dataset, data_file, limit, model, device)
    hp, C = _settings(lm, editor, preset, set_, stats, stats_tokens, model) if entry.edits else (None, None)
    try:
        sel = select_layer(lm.model, lm.tokenizer, cases, entry.name, editor=editor, metric=metric,
                           model_name=lm.name, hparams=hp, stats=C, **fences)
    except (KeyError, ValueError) as e:
        fail(e)
    ranking = sel.table.ranking()[:top]
    console.print(f"[bold]{sel.selector}[/bold] on {len(cases)} {dataset} cases ({sel.table.cases} used): "
                  f"chosen layer [bold]{sel.layer}[/bold] in {sel.seconds:.2f} s")
    console.print("ranking: " + ", ".join(f"{layer} ({sel.table.score_of(layer):.4g})" for layer in ranking))
    if sel.pick is not None:
        f = sel.pick.fences
        console.print(f"Tukey fences (k={sel.pick.k}): [{f.lower:.4g}, {f.upper:.4g}]; excluded layers: "
                      f"{sel.pick.excluded or 'none'}")
    if "rounds" in sel.table.meta:  # a racing selector: why its layer won
        console.print(race_lines(sel.table.meta), soft_wrap=True)
    for cid, why in list(sel.table.skipped.items())[:5]:
        console.print(f"  skipped {cid}: {why}", soft_wrap=True)


def race_lines(meta: dict) -> str:
    """The race's rounds, one line each: layers raced, cases, v* steps, the best estimates (why a layer won)."""
    lines = []
    for i, r in enumerate(meta["rounds"]):
        best = ", ".join(f"{layer} ({est:.3f})" for layer, est in list(zip(r["layers"], r["estimates"]))[:4])
        lines.append(f"round {i}: {len(r['layers'])} layers x {r['cases']} cases, "
                     f"{max(1, round(meta['full_steps'] * r['steps']))} v* steps; best (Overall of the means): {best}")
    over = " (over the budget: too few proxy cases or layers to halve)" if meta.get("over_budget") else ""
    lines.append(f"planned cost {meta['planned_cells']:.0f} edit cells of {meta['brute_force_proxy_cells']} for brute "
                 f"force on these cases; budget {meta['budget_cells']:.0f}{over}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command("select")(select_command)
