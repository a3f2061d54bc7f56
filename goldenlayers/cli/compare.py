"""`goldenlayers compare`: LGA vs CMA vs brute force, Table 2 of the paper, as a resumable run (docs/selection.md).

The command writes the experiment's config (the model, the dataset, an exact proxy/test split, the editing method
with its preset, --set overrides and key statistics, the selectors) into a run directory
`<output-dir>/compare-<hash of the config>` and executes its jobs with the run engine (goldenlayers.runs), so it
goes through the same cell loop as `evaluate`, `run` and the demo, and every finished cell, selector table and
test row is stored at once: a killed compare, run again with the same options, resumes where it stopped without
losing or duplicating a result. Each selector's layer is printed as soon as it is chosen and each test row as
soon as it is measured; the table at the end is Table 2 computed from the stored rows
(goldenlayers.report.tables.comparison). Brute force sweeps the proxy set and picks its golden layer of Overall
(the test set is then edited there); with --truth it sweeps every case, and the test sweep is the ground truth
every selector is scored against (regret, Spearman's rho, cost).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import typer

from goldenlayers.cli.common import PRESET_HELP, STATS_HELP, STATS_TOKENS_HELP, console, fail

COMPARE_METRICS = ("rewrite", "rephrase", "locality", "portability")


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.3f}" if abs(x) < 100 else f"{x:.0f}"


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


def selection_line(selector: str, layer: int, cases: int, seconds: float, ranking: list[int]) -> str:
    """One line printed as soon as a selector has chosen its layer."""
    return (f"{selector}: layer {layer} chosen on {cases} proxy case{'' if cases == 1 else 's'} in {seconds:.1f} s "
            f"(best-ranked: {', '.join(map(str, ranking[:3]))})")


def row_line(r: dict) -> str:
    """One line printed as soon as a selector's test-set row is known."""
    parts = [f"{m} {_fmt(r.get(m))}" for m in (*METRIC_HEADS, "overall") if r.get(m) is not None]
    if "regret" in r:
        parts += [f"regret {_fmt(r['regret'])}", f"rho {_fmt(r.get('spearman'))}", f"cost {_fmt(r.get('cost'))}"]
    return f"{r['selector']} at layer {r['layer']} on the test set: " + ", ".join(parts)


def model_label(model: str) -> str:
    """The model's label in the run's rows: the name itself, or a path's last part (without .gguf)."""
    if "/" not in model and "\\" not in model and not model.endswith(".gguf"):
        return model
    p = Path(model)
    return (p.stem if p.suffix == ".gguf" else p.name) or "model"


def compare_config(model: str, dataset: str, data_file: str | None, limit: int, proxy_fraction: float, editor: str,
                   selectors: list[str], fluency: bool, truth: bool, overall_weights: str, seed: int,
                   preset: str | None, overrides: dict | None, stats: str | None, stats_tokens: int,
                   output_dir: str = "runs") -> dict:
    """The run config of a comparison; its name is compare-<hash of everything but output_dir>."""
    metrics = [*COMPARE_METRICS, *(["fluency"] if fluency else [])]
    label = model_label(model)
    sel: dict = {name: {} for name in selectors if name != "bruteforce"}  # each with its settings' defaults
    if "bruteforce" in selectors or truth:
        sel["bruteforce"] = dict(layers="all", metrics=metrics, split="all" if truth else "proxy", pick="overall",
                                 overall=overall_weights)
    cfg = dict(
        name="compare", description=f"goldenlayers compare: {', '.join(selectors)} on {label} / {dataset}",
        models=[dict(name=label, **({"path": model} if label != model else {}))],
        datasets=[dict(name=dataset, limit=limit, **({"file": str(Path(data_file).resolve())} if data_file else {}))],
        split=dict(proxy_fraction=proxy_fraction, seed=seed),
        methods=[dict(name=editor, preset=preset, hparams=overrides or {})], selectors=sel, metrics=metrics,
        stats=dict(source=stats, tokens=stats_tokens), output_dir=output_dir)
    digest = hashlib.sha1(json.dumps({k: v for k, v in cfg.items() if k != "output_dir"},
                                     sort_keys=True).encode()).hexdigest()[:8]
    cfg["name"] = f"compare-{digest}"
    return cfg


def compare_command(
    model: str = typer.Option("default-gpt2", help="embedded default name, real model name, or a local model folder"),
    dataset: str = typer.Option("world"),
    data_file: str | None = typer.Option(None),
    limit: int = typer.Option(200, min=1, help="cases in all (proxy + test; N >= 1)"),
    proxy_fraction: float = typer.Option(0.1, help="share of the cases used as the proxy set (between 0 and 1; exactly rounded)"),
    editor: str = typer.Option("r-rome", help="editing method"),
    selectors: str = typer.Option("race,lga,cma,bruteforce", help="comma-separated selectors: any registered one "
                                  "(race, lga and its readings such as lga-neg, cma, bruteforce; `goldenlayers ls`)"),
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
    output_dir: Path = typer.Option(Path("runs"), help="where the run directory goes (<output-dir>/compare-<hash>)"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Find a layer with each selector on a proxy set, edit the test set there, and print Table 2 with wall times
    (with --truth: against brute force on the test set). Each result is printed and stored as soon as it is known;
    running the same command again resumes it."""
    from goldenlayers.cli.common import announce_model, check_model_options, model_folder, read_dataset
    from goldenlayers.cli.edit import _parse_settings
    from goldenlayers.cli.select import _check_editor
    from goldenlayers.evaluation.overall import OverallSpec
    from goldenlayers.runs import ConfigError, validate_config

    announce_model(model)
    if not 0 < proxy_fraction < 1:
        fail(f"{proxy_fraction} is not between 0 and 1 (both excluded)", option="--proxy-fraction")
    try:
        spec = OverallSpec.parse(overall_weights)
    except ValueError as e:
        fail(e, option="--overall-weights")
    names = selector_names(selectors)
    _check_editor(editor)
    check_model_options(device=device)
    try:
        overrides = _parse_settings(set_)
    except typer.BadParameter as e:
        fail(e)
    model_folder(model)  # a bad --model fails before anything runs
    if data_file is not None:
        read_dataset(dataset, data_file, limit)  # a bad file fails now (exit 2), not inside a job
    try:
        cfg = validate_config(compare_config(model, dataset, data_file, limit, proxy_fraction, editor, names,
                                             not no_fluency, truth, overall_weights, seed, preset, overrides, stats,
                                             stats_tokens, str(output_dir)), "compare")
    except ConfigError as e:
        fail(e)
    failed = _execute(cfg, names, spec, device, progress)
    if failed:
        raise typer.Exit(3)


def _execute(cfg, names: list[str], spec, device: str | None, progress: bool) -> int:
    """Run the comparison's jobs one by one, printing each result as it is stored; then Table 2. Returns the
    number of failed jobs."""
    from goldenlayers.report.data import RunData
    from goldenlayers.report.tables import comparison
    from goldenlayers.runs import (
        ConfigMismatchError,
        RunDir,
        RunLockedError,
        StoreDamagedError,
        execute,
        plan,
    )
    from goldenlayers.runs.engine import make_engine

    model, ds, editor = cfg.models[0].name, cfg.datasets[0].name, cfg.methods[0].name
    try:
        run = RunDir.create_or_resume(cfg, command="goldenlayers compare")
    except (ConfigMismatchError, RunLockedError, StoreDamagedError, OSError) as e:
        fail(e)
    engine = make_engine(device=device, progress=progress)
    failed = 0
    with run:
        console.print(f"run directory: {run.path} (run the same command again to resume it)", soft_wrap=True)
        for job in plan(cfg):
            summary = execute(run, engine, jobs=[job])
            if summary.failed:
                failed += 1
                console.print(f"[red]failed:[/red] {job.describe()}: {summary.failed[job.key]}", soft_wrap=True)
                continue
            if job.kind == "select" or (job.kind == "bruteforce" and job.split == "proxy"):
                console.print(_selection(cfg, run.store, job), soft_wrap=True)
            if job.kind == "evaluate" or (job.kind == "bruteforce" and job.split == "all"):
                for r in comparison(RunData(run.store), model, ds, editor, "overall", spec).rows:
                    if row_of(cfg, r["selector"], [job.selector]) and (job.kind == "evaluate" or "regret" in r):
                        console.print(row_line(r), soft_wrap=True)
        engine.close()
        cmp = comparison(RunData(run.store), model, ds, editor, "overall", spec)
        cmp.rows = [r for r in cmp.rows if row_of(cfg, r["selector"], names)]
        n = split_sizes(run.store, model, ds)
        console.print(render_comparison(cmp, f"{model}: {n[0]} proxy / {n[1]} test cases"))
    return failed


def selector_names(option: str) -> list[str]:
    """The registered selectors of a --selectors list (aliases to their names); one line and exit 2 else."""
    from goldenlayers.registry import SELECTORS

    names = [s.strip() for s in option.split(",") if s.strip()]
    unknown = [s for s in names if s not in SELECTORS]
    if unknown or not names:
        fail(f"unknown selector(s) {', '.join(map(repr, unknown)) or '(empty list)'}; choose from "
             f"{', '.join(SELECTORS.registered())}", option="--selectors")
    return list(dict.fromkeys(SELECTORS.canonical(s) for s in names))


def row_of(cfg, stored: str, names: list[str]) -> bool:
    """Whether a stored row's selector name belongs to one of the configured selectors `names` (brute force:
    its family, "bruteforce" or "bruteforce-<pick>")."""
    from goldenlayers.report.data import selector_family
    from goldenlayers.runs.engine_jobs import selector_name

    if selector_family(stored) == "bruteforce":
        return "bruteforce" in names
    return stored in {selector_name(cfg, n) for n in names if n != "bruteforce"}


def split_sizes(store, model: str, ds: str) -> tuple[int, int]:
    """(proxy, test) cases with stored rows of `model` on `ds`."""
    counts = dict(store.query("SELECT split, COUNT(DISTINCT case_id) FROM results WHERE model=? AND dataset=? "
                              "GROUP BY split", (model, ds)))
    return counts.get("proxy", 0), counts.get("test", 0)


def _selection(cfg, store, job) -> str:
    """The selection line of a finished select job (or proxy brute-force job), read back from the store."""
    from goldenlayers.evaluation.overall import OverallSpec
    from goldenlayers.runs.engine_jobs import bruteforce_pick, chosen_layer
    from goldenlayers.selection.bruteforce import bruteforce_scores

    model, ds = job.model, job.dataset
    if job.kind == "bruteforce":
        bf = cfg.selectors.bruteforce
        name, layer = bruteforce_pick(cfg, store, model, ds, job.method)
        rows = store.rows("results", model=model, dataset=ds, method=job.method, selector="bruteforce", split="proxy")
        table = bruteforce_scores(rows, bf.pick, overall_spec=OverallSpec.parse(bf.overall))
        return selection_line(name, layer, table.cases, table.seconds, table.ranking())
    name, layer = chosen_layer(cfg, store, model, ds, job.selector)
    rows = sorted(store.rows("selectors", selector=name, dataset=ds, model=model), key=lambda r: -r["score"])
    return selection_line(name, layer, rows[0]["cases"], rows[0]["seconds"], [r["layer"] for r in rows])


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)
