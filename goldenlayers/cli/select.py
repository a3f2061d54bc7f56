"""`goldenlayers select` (one selector's layer ranking) and `goldenlayers compare` (LGA vs CMA vs brute force,
Table 2 of the paper). Thin shells over goldenlayers.selection.compare."""

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
    method: str = typer.Option("race", help="selector: race (default: successive halving of real edits on the "
                               "proxy cases), lga and its readings (lga-neg, lga-abs, lga-cosine, ...; `goldenlayers "
                               "ls`), cma or bruteforce"),
    dataset: str = typer.Option("world", help="dataset name (see `goldenlayers ls`)"),
    data_file: str | None = typer.Option(None, help="benchmark file (not needed for --dataset world or realfacts)"),
    limit: int = typer.Option(20, min=1, help="number of proxy cases (N >= 1)"),
    editor: str = typer.Option("r-rome", help="editing method for race and brute force"),
    metric: str = typer.Option("rewrite", help="brute-force metric whose golden layer is chosen"),
    tukey_k: float = typer.Option(1.5, min=0, help="Tukey fence factor for LGA"),
    top: int = typer.Option(5, min=1, help="how many ranked layers to print"),
    preset: str | None = typer.Option(None, help=PRESET_HELP),
    set_: list[str] = typer.Option([], "--set", help="override an editing setting: key=value (repeatable)"),
    stats: str | None = typer.Option(None, help=STATS_HELP),
    stats_tokens: int = typer.Option(100_000, min=1, help=STATS_TOKENS_HELP),
    device: str | None = typer.Option(None, help="cuda or cpu (default: cuda when available)"),
) -> None:
    """Rank the layers of a model for editing with one selector and print the chosen layer and the time spent."""
    from goldenlayers.cli.common import announce_model, cases_and_model, check_model_options
    from goldenlayers.selection.compare import SELECTORS, select_layer

    announce_model(model)
    if method not in SELECTORS:
        fail(f"unknown selector {method!r}; choose one of {', '.join(SELECTORS)}", option="--method")
    _check_editor(editor)
    check_model_options(device=device)
    cases, lm = cases_and_model(dataset, data_file, limit, model, device)
    hp, C = (None, None) if method not in ("bruteforce", "race") else \
        _settings(lm, editor, preset, set_, stats, stats_tokens, model)
    try:
        sel = select_layer(lm.model, lm.tokenizer, cases, method, editor=editor, metric=metric, tukey_k=tukey_k,
                           model_name=lm.name, hparams=hp, stats=C)
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
    if sel.selector == "race":
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


METRIC_HEADS = dict(rewrite="rew", rephrase="reph", locality="loc", portability="port", fluency="flu")


def render_comparison(cmp, title: str):
    """The Table-2 rows of a comparison; with ground truth also regret, Spearman's rho and cost (and under it,
    a second table of the regret per metric)."""
    from rich.console import Group
    from rich.table import Table

    truth = getattr(cmp, "truth", None)
    t = Table(title=title)
    cols = ["method", "selector", "layer", *METRIC_HEADS, "overall"]
    heads = ["method", "selector", "layer", *METRIC_HEADS.values(), "overall"]
    if truth is not None:
        cols += ["regret", "spearman", "cost"]
        heads += ["regret", "rho", "cost"]
    cols += ["seconds", "speedup_vs_bruteforce"]
    heads += ["sec", "xBF"]
    for h in heads:
        t.add_column(h, justify="right", no_wrap=True)
    for r in cmp.rows:
        t.add_row(*(str(r[c]) if c in ("method", "selector", "layer") else _fmt(r.get(c)) for c in cols))
    caption = ("rew/reph/loc/port: rewrite, rephrase, locality, portability accuracy; flu: fluency (n-gram entropy, "
               "bits); sec: selector wall time; xBF: times faster than brute force on the proxy set. ")
    if truth is None:
        t.caption = caption + cmp.normalisation
        return t
    t.caption = caption + (f"Metrics: test-set means at the chosen layer from the sweep of every layer on the "
                           f"{truth.cases} test cases ({truth.seconds:.1f} s); regret: test Overall at the test "
                           f"golden layer ({truth.golden['overall']}) minus at the chosen layer; rho: Spearman "
                           "correlation of the selector's layer scores with the per-layer test Overall; cost: "
                           f"selector time / sweep time. {cmp.normalisation}")
    metrics = list(truth.means)
    per = Table(title="regret per metric (best test mean minus the mean at the chosen layer; fluency: the reverse)")
    for h in ["selector", "layer", *(METRIC_HEADS.get(m, m) for m in metrics), "overall"]:
        per.add_column(h, justify="right", no_wrap=True)
    per.add_row("golden", "", *(str(truth.golden[m]) for m in metrics), str(truth.golden["overall"]))
    for r in cmp.rows:
        per.add_row(r["selector"], str(r["layer"]), *(_fmt(r.get(f"regret_{m}")) for m in metrics),
                    _fmt(r.get("regret")))
    return Group(t, per)


def selection_line(sel) -> str:
    """One line printed as soon as a selector has chosen its layer."""
    n = sel.table.cases
    return (f"{sel.selector}: layer {sel.layer} chosen on {n} proxy case{'' if n == 1 else 's'} in {sel.seconds:.1f} s "
            f"(best-ranked: {', '.join(map(str, sel.table.ranking()[:3]))})")


def row_line(r: dict) -> str:
    """One line printed as soon as a selector's test-set row is known."""
    parts = [f"{m} {_fmt(r.get(m))}" for m in (*METRIC_HEADS, "overall") if r.get(m) is not None]
    if "regret" in r:
        parts += [f"regret {_fmt(r['regret'])}", f"rho {_fmt(r.get('spearman'))}", f"cost {_fmt(r.get('cost'))}"]
    return f"{r['selector']} at layer {r['layer']} on the test set: " + ", ".join(parts)


def compare_command(
    model: str = typer.Option("default-gpt2", help="embedded default name or a local Hugging Face model folder"),
    dataset: str = typer.Option("world"),
    data_file: str | None = typer.Option(None),
    limit: int = typer.Option(200, min=1, help="cases in all (proxy + test; N >= 1)"),
    proxy_fraction: float = typer.Option(0.1, help="share of the cases used as the proxy set (between 0 and 1; exactly rounded)"),
    editor: str = typer.Option("r-rome", help="editing method"),
    selectors: str = typer.Option("race,lga,cma,bruteforce", help="comma-separated selectors (`goldenlayers ls`)"),
    no_fluency: bool = typer.Option(False, "--no-fluency", help="skip the fluency generation"),
    truth: bool = typer.Option(False, "--truth", help="also sweep every layer on the test set (ground truth): adds "
                               "regret, Spearman's rho and cost per selector"),
    overall_weights: str = typer.Option("", help="Overall weights, e.g. rewrite=2,fluency=0 (default: all 1)"),
    seed: int = typer.Option(0, help="seed of the proxy/test split"),
    preset: str | None = typer.Option(None, help=PRESET_HELP),
    set_: list[str] = typer.Option([], "--set", help="override an editing setting: key=value (repeatable)"),
    stats: str | None = typer.Option(None, help=STATS_HELP),
    stats_tokens: int = typer.Option(100_000, min=1, help=STATS_TOKENS_HELP),
    device: str | None = typer.Option(None),
) -> None:
    """Find a layer with each selector on a proxy set, edit the test set there, and print Table 2 with wall times
    (with --truth: against brute force on the test set). Each selector's result is printed as soon as it is known."""
    from goldenlayers.cli.common import announce_model, cases_and_model, check_model_options
    from goldenlayers.datasets.split import split_cases
    from goldenlayers.evaluation.overall import OverallSpec
    from goldenlayers.selection.compare import SELECTORS, compare_selectors

    announce_model(model)
    if not 0 < proxy_fraction < 1:
        fail(f"{proxy_fraction} is not between 0 and 1 (both excluded)", option="--proxy-fraction")
    try:
        spec = OverallSpec.parse(overall_weights)
    except ValueError as e:
        fail(e, option="--overall-weights")
    names = [s.strip() for s in selectors.split(",") if s.strip()]
    unknown = [s for s in names if s not in SELECTORS]
    if unknown or not names:
        fail(f"unknown selector(s) {', '.join(map(repr, unknown)) or '(empty list)'}; choose from "
             f"{', '.join(SELECTORS)}", option="--selectors")
    _check_editor(editor)
    check_model_options(device=device)
    cases, lm = cases_and_model(dataset, data_file, limit, model, device)
    hp, C = _settings(lm, editor, preset, set_, stats, stats_tokens, model)
    try:
        split = split_cases(cases, proxy_fraction=proxy_fraction, seed=seed)
    except ValueError as e:
        fail(e, option="--proxy-fraction / --limit")
    console.print(f"{lm.name}: {len(split.proxy)} proxy / {len(split.test)} test cases")
    try:
        cmp = compare_selectors(lm.model, lm.tokenizer, split.proxy, split.test, editor=editor, selectors=names,
                                fluency=not no_fluency, model_name=lm.name, truth=truth, overall_spec=spec,
                                hparams=hp, stats=C,
                                on_selection=lambda sel: console.print(selection_line(sel)),
                                on_row=lambda r: console.print(row_line(r)))
    except (KeyError, ValueError) as e:
        fail(e)
    console.print(render_comparison(cmp, f"{lm.name}: {len(split.proxy)} proxy / {len(split.test)} test cases"))


def register(app: typer.Typer) -> None:
    app.command("select")(select_command)
    app.command("compare")(compare_command)
