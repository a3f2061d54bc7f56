"""`goldenlayers evaluate`: load a model and a benchmark file, edit each case, print the metrics table.

A thin shell over `goldenlayers.datasets.load_dataset` and `goldenlayers.evaluation.evaluate` (the cell loop with
the v* of a batch of cases optimised together; docs/evaluation.md): a progress bar while it runs, then a rich table with one row per (dataset, method, layer),
post-edit means with the unedited model's value in parentheses, Overall and its normalisation, and the skipped
records / failed cases. `--out FILE.json` writes the rows, the table and the failures. Editing settings: the
model's preset or `--preset NAME`, `--set` overrides, and key statistics C when they use them (from the statistics
cache, collected on a miss from `--stats`, default the model's own world). Bad input (unknown dataset, unreadable
file, bad layer list, unknown setting or preset, no source for C) prints one clear line and exits with status 2.
Adds "datasets" and "metrics" to `goldenlayers ls`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import typer

from goldenlayers.cli.common import LIMIT_HELP, PRESET_HELP, STATS_HELP, STATS_TOKENS_HELP, editing_settings


def _parse_layers(text: str | None) -> list[int] | int | None:
    if text is None:
        return None
    try:
        layers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"--layer: expects an int or a comma-separated list of ints, got {text!r}") from None
    return layers[0] if len(layers) == 1 else layers


def _parse_settings(pairs: list[str]) -> dict | None:
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--set: expects key=value, got {pair!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out or None


def _json_safe(x):
    """NaN (a metric no case had) as null, so the file is strict JSON."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return x


def _fmt(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def render_table(result, title: str):
    """A rich Table of `result.table()`: post mean (pre mean) per metric, Overall, and the normalisation note."""
    from rich.table import Table

    from goldenlayers.metric_names import ABBREVIATIONS, ROME_SCORE

    rows = result.table()
    metrics = result.metrics() + ([ROME_SCORE] if rows and ROME_SCORE in rows[0] else [])
    t = Table(title=title)
    for col in ("dataset", "method", "layer", "cases", "failed", *metrics, "overall"):
        t.add_column(ABBREVIATIONS.get(col, col), justify="left" if col in ("dataset", "method") else "right")
    for r in rows:
        cells = [str(r["dataset"]), str(r["method"]), str(r["layer"]), str(r["cases"]), str(r["failures"])]
        for m in metrics:
            pre = r.get(f"{m}_pre", math.nan)
            cells.append(_fmt(r.get(m)) + ("" if math.isnan(pre) else f" ({_fmt(pre)})"))
        cells.append(_fmt(r["overall"]))
        t.add_row(*cells)
    notes = dict.fromkeys(r["normalisation"] for r in rows)
    t.caption = "post-edit mean (unedited model); " + " | ".join(notes)
    return t


def evaluate_command(
    model: str = typer.Option("default-gpt2", help="embedded default name or a local Hugging Face model folder"),
    dataset: str = typer.Option(..., help="dataset name (see `goldenlayers ls`): zsre, wikibio, wiki_counterfact, ..."),
    data_file: str | None = typer.Option(None, help="the benchmark JSON file, or a folder holding its usual file name "
                                         "(none for realfacts: the facts the model knows, docs/realfacts.md)"),
    method: str = typer.Option("r-rome", help="editing method (see `goldenlayers ls`), or 'none' for no edit"),
    layer: str | None = typer.Option(None, help="layer to edit, or a comma-separated list to compare, e.g. 3,5,7"),
    limit: int | None = typer.Option(None, min=1, help=LIMIT_HELP + " (after --shuffle-seed)"),
    shuffle_seed: int | None = typer.Option(None, help="shuffle the cases (seeded) before --limit"),
    metrics: str = typer.Option(",".join(("rewrite", "rephrase", "locality", "portability", "fluency")),
                                help="comma-separated metrics or families: easyedit (the default metrics), "
                                     "counterfact-rome (ROME's ES/PS/NS, magnitudes, generation entropy, Score)"),
    no_fluency: bool = typer.Option(False, "--no-fluency", help="skip the (slow) fluency generation"),
    batch_size: int = typer.Option(16, min=1, help="teacher-forced prompts per forward pass"),
    seed: int = typer.Option(0, help="seed of the fluency samples"),
    preset: str | None = typer.Option(None, help=PRESET_HELP),
    set_: list[str] = typer.Option([], "--set", help="override an editing setting: key=value (repeatable)"),
    stats: str | None = typer.Option(None, help=STATS_HELP),
    stats_tokens: int = typer.Option(100_000, help=STATS_TOKENS_HELP),
    dtype: str = typer.Option("float32", help="float32, bfloat16, float16 or auto"),
    device: str | None = typer.Option(None, help="cuda or cpu (default: cuda when available)"),
    out: str | None = typer.Option(None, help="write rows, table and failures to this JSON file"),
) -> None:
    """Edit each case of a benchmark file at a layer and report rewrite, rephrase, locality, portability, fluency."""
    from pydantic import ValidationError

    from goldenlayers.cli.common import (
        announce_model,
        check_layers,
        check_model_options,
        fail,
        load_model_or_fail,
        make_console,
        model_folder,
        read_dataset,
        realfacts_cases,
    )
    from goldenlayers.editing import StatsError
    from goldenlayers.editing.sources import SourceError
    from goldenlayers.evaluation import evaluate
    from goldenlayers.metric_names import ALL_METRICS, FAMILIES, expand_metrics

    metric_names = expand_metrics(m.strip() for m in metrics.split(",") if m.strip())

    con = make_console()
    announce_model(model)
    unknown = [m for m in metric_names if m not in ALL_METRICS]
    if unknown:
        fail(f"unknown metric(s) {', '.join(map(repr, unknown))}; known: {', '.join(ALL_METRICS)} and the families "
             f"{', '.join(FAMILIES)}", option="--metrics")
    try:
        layers = _parse_layers(layer)
        hparams = _parse_settings(set_)
    except typer.BadParameter as e:
        fail(e)
    check_model_options(dtype, device)
    model_folder(model)  # a bad --model fails before the data file is read (no download, no weights)
    data = None  # --dataset realfacts without a file: built once the model is loaded (the facts it knows)
    if not (dataset == "realfacts" and data_file is None):
        data = read_dataset(dataset, data_file, limit, shuffle_seed, shown=10)
    lm = load_model_or_fail(model, dtype, device)
    if data is None:
        from goldenlayers.datasets import LoadedDataset, LoadReport

        cases = realfacts_cases(lm, limit, shuffle_seed or 0)
        data = LoadedDataset(dataset, "", cases, LoadReport(dataset, "", len(cases), len(cases)))
    check_layers(lm, [layers] if isinstance(layers, int) else layers or [])
    hp = C = None
    if method != "none":  # the model's preset (or --preset), the --set overrides, and C when they use it
        try:
            hp, C = editing_settings(lm, method, hparams, preset, [layers] if isinstance(layers, int) else layers,
                                     stats, stats_tokens, model)
        except (KeyError, SourceError, StatsError, ValueError) as e:
            fail(e, option="--set" if isinstance(e, ValidationError) else None)
    try:
        result = evaluate(lm.model, lm.tokenizer, data.cases, editor=None if method == "none" else method,
                          layer=layers, hparams=hp, stats=C, model_name=lm.name, metrics=metric_names,
                          batch_size=batch_size, fluency=not no_fluency, seed=seed, progress=True)
    except (KeyError, SourceError, StatsError, ValueError) as e:
        fail(e)
    con.print(render_table(result, f"{lm.name} on {dataset} ({len(data.cases)} cases, {result.seconds:.1f} s)"))
    for f in result.failures[:10]:
        con.print(f"  failed case {f.case_id!r} at layer {f.layer} ({f.stage}): {f.reason}", soft_wrap=True)
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(_json_safe({"rows": [r.as_dict() for r in result.rows], "table": result.table(),
                                  "failures": [asdict(f) for f in result.failures],
                                  "skipped": [asdict(s) for s in data.report.skipped]}), fh, indent=1)
        con.print(f"wrote {out}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
